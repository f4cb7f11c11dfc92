//! Classic-BPF code generation for the seccomp compiler: a backwards assembler that keeps every
//! jump within reach, the syscall-number dispatch tree, argument comparisons, and the structural
//! check applied to programs read back from bytes.

use std::collections::HashMap;

/// One classic-BPF instruction, laid out exactly like the kernel's `struct sock_filter`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Insn {
    /// Opcode (`BPF_LD|BPF_W|BPF_ABS`, `BPF_JMP|BPF_JEQ|BPF_K`, …).
    pub code: u16,
    /// Forward offset taken when a conditional jump's test is true.
    pub jt: u8,
    /// Forward offset taken when a conditional jump's test is false.
    pub jf: u8,
    /// The constant operand (offset, comparand, jump distance or return value).
    pub k: u32,
}

// `install` hands a `&[Insn]` to the kernel as `struct sock_filter *`.
const _: () = assert!(std::mem::size_of::<Insn>() == std::mem::size_of::<libc::sock_filter>());
const _: () = assert!(std::mem::align_of::<Insn>() == std::mem::align_of::<libc::sock_filter>());

pub(crate) const LD_W_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
pub(crate) const ALU_AND_K: u16 = (libc::BPF_ALU | libc::BPF_AND | libc::BPF_K) as u16;
pub(crate) const JMP_JA: u16 = (libc::BPF_JMP | libc::BPF_JA) as u16;
pub(crate) const JMP_JEQ_K: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
pub(crate) const JMP_JGT_K: u16 = (libc::BPF_JMP | libc::BPF_JGT | libc::BPF_K) as u16;
pub(crate) const JMP_JGE_K: u16 = (libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K) as u16;
pub(crate) const RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;

/// The kernel's limit on a filter's length (`BPF_MAXINSNS`).
pub const MAX_INSNS: usize = 4096;

/// `offsetof(struct seccomp_data, …)`.
pub(crate) const OFF_NR: u32 = 0;
pub(crate) const OFF_ARCH: u32 = 4;
pub(crate) const OFF_ARGS: u32 = 16;
/// `sizeof(struct seccomp_data)`.
const SECCOMP_DATA_LEN: u32 = 64;

/// Where control goes: an instruction already emitted, or "return this action" (materialised
/// as a shared `ret` when one is in reach, else a fresh one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    /// Index into the reversed instruction list (0 = the program's last instruction).
    Label(usize),
    Ret(u32),
}

/// A comparison operator, after runc's same-index splitting has been applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    Ne,
    Lt,
    Le,
    Eq,
    Ge,
    Gt,
    /// `(arg & mask) == value`.
    MaskedEq,
}

/// One argument condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Cond {
    pub arg: u8,
    pub op: Op,
    pub value: u64,
    /// Only meaningful for [`Op::MaskedEq`].
    pub mask: u64,
}

/// A conditional rule: all `conds` hold ⇒ `action`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Rule {
    pub conds: Vec<Cond>,
    pub action: u32,
}

/// What happens to one syscall-number range.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Leaf<'a> {
    Ret(u32),
    /// Conditional rules, first match wins, then the default action.
    Rules(&'a [Rule]),
}

/// A segment of the syscall-number space, from `start` up to the next segment's start.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Seg<'a> {
    pub start: u32,
    pub leaf: Leaf<'a>,
}

/// Builds a program back to front. Every jump goes forward, so by the time a jump is emitted
/// its targets already exist and their distance is known; a target more than 255 instructions
/// away is reached through a trampoline (`ja`, 32-bit offset) or a nearby copy of the `ret`
/// placed right after the jump.
#[derive(Debug, Default)]
pub(crate) struct Asm {
    /// Instructions in reverse program order.
    rev: Vec<Insn>,
    /// The nearest (most recently emitted) `ret` per action value.
    rets: HashMap<u32, usize>,
}

impl Asm {
    pub(crate) fn with_capacity(n: usize) -> Self {
        Asm {
            rev: Vec::with_capacity(n),
            rets: HashMap::new(),
        }
    }

    fn top(&self) -> Option<usize> {
        self.rev.len().checked_sub(1)
    }

    fn push(&mut self, insn: Insn) -> Target {
        self.rev.push(insn);
        Target::Label(self.rev.len() - 1)
    }

    /// Offset from an instruction about to be emitted at reversed index `at` to `t`, if a jump
    /// can encode it.
    fn offset(&self, t: Target, at: usize) -> Option<u8> {
        let label = match t {
            Target::Label(l) => l,
            Target::Ret(v) => *self.rets.get(&v)?,
        };
        u8::try_from(at - 1 - label).ok()
    }

    /// Emits something directly reachable that continues to `t` (a `ret` or a `ja`).
    fn materialise(&mut self, t: Target) -> Target {
        match t {
            Target::Ret(v) => {
                let l = self.push(ret(v));
                if let Target::Label(i) = l {
                    self.rets.insert(v, i);
                }
                l
            }
            Target::Label(l) => {
                let at = self.rev.len();
                let k = u32::try_from(at - 1 - l).unwrap_or(u32::MAX);
                self.push(Insn {
                    code: JMP_JA,
                    jt: 0,
                    jf: 0,
                    k,
                })
            }
        }
    }

    /// Makes `t` a label (emitting a `ret` if it is an action). Used for the program's entry.
    pub(crate) fn label(&mut self, t: Target) -> Target {
        match t {
            Target::Label(_) => t,
            Target::Ret(_) => self.materialise(t),
        }
    }

    /// A conditional jump `if A <op> k goto t else goto f`.
    pub(crate) fn jump(&mut self, code: u16, k: u32, mut t: Target, mut f: Target) -> Target {
        if t == f {
            return t;
        }
        loop {
            let at = self.rev.len();
            match (self.offset(t, at), self.offset(f, at)) {
                (Some(jt), Some(jf)) => return self.push(Insn { code, jt, jf, k }),
                (None, _) => t = self.materialise(t),
                (_, None) => f = self.materialise(f),
            }
        }
    }

    /// A non-jump instruction (load, ALU) followed by `next`.
    pub(crate) fn stmt(&mut self, insn: Insn, next: Target) -> Target {
        match next {
            // `ret K` does not read the accumulator: the statement would be dead.
            Target::Ret(_) => next,
            Target::Label(l) if Some(l) == self.top() => self.push(insn),
            Target::Label(_) => {
                self.materialise(next);
                self.push(insn)
            }
        }
    }

    pub(crate) fn finish(self) -> Vec<Insn> {
        let mut v = self.rev;
        v.reverse();
        v
    }

    pub(crate) fn len(&self) -> usize {
        self.rev.len()
    }
}

pub(crate) fn ret(v: u32) -> Insn {
    Insn {
        code: RET_K,
        jt: 0,
        jf: 0,
        k: v,
    }
}

pub(crate) fn ld(off: u32) -> Insn {
    Insn {
        code: LD_W_ABS,
        jt: 0,
        jf: 0,
        k: off,
    }
}

fn and(mask: u32) -> Insn {
    Insn {
        code: ALU_AND_K,
        jt: 0,
        jf: 0,
        k: mask,
    }
}

/// Dispatch on the syscall number (already in A) over `segs`, which cover the whole range the
/// caller can reach, sorted by start, adjacent equal `Ret`s merged. A balanced binary tree of
/// `jge` splits: depth ⌈log2(segments)⌉.
pub(crate) fn tree(asm: &mut Asm, segs: &[Seg<'_>], default: u32, abi32: bool) -> Target {
    match segs {
        [] => Target::Ret(default),
        [one] => match one.leaf {
            Leaf::Ret(v) => Target::Ret(v),
            Leaf::Rules(rules) => rule_block(asm, rules, default, abi32),
        },
        _ => {
            let mid = segs.len() / 2;
            let (left, right) = segs.split_at(mid);
            // Right first: emitted back to front, the left subtree ends up right after the
            // split, so its jump is a fall-through.
            let r = tree(asm, right, default, abi32);
            let l = tree(asm, left, default, abi32);
            asm.jump(JMP_JGE_K, right[0].start, r, l)
        }
    }
}

/// Conditional rules of one syscall: each rule's conditions ANDed, rules tried in order, the
/// first that matches decides, none ⇒ `default`.
fn rule_block(asm: &mut Asm, rules: &[Rule], default: u32, abi32: bool) -> Target {
    let mut next = Target::Ret(default);
    for rule in rules.iter().rev() {
        let mut ok = Target::Ret(rule.action);
        for c in rule.conds.iter().rev() {
            ok = if abi32 {
                cond32(asm, c, ok, next)
            } else {
                cond64(asm, c, ok, next)
            };
        }
        next = ok;
    }
    next
}

fn arg_lo(arg: u8) -> u32 {
    OFF_ARGS + 8 * u32::from(arg)
}

/// A condition on a 32-bit ABI (i386): like libseccomp, only the low word of the argument is
/// compared, against the low word of the value (and mask).
fn cond32(asm: &mut Asm, c: &Cond, t: Target, f: Target) -> Target {
    let v = c.value as u32;
    let j = match c.op {
        Op::Eq => asm.jump(JMP_JEQ_K, v, t, f),
        Op::Ne => asm.jump(JMP_JEQ_K, v, f, t),
        Op::Gt => asm.jump(JMP_JGT_K, v, t, f),
        Op::Ge => asm.jump(JMP_JGE_K, v, t, f),
        Op::Lt => asm.jump(JMP_JGE_K, v, f, t),
        Op::Le => asm.jump(JMP_JGT_K, v, f, t),
        Op::MaskedEq => {
            let m = c.mask as u32;
            if m == 0 {
                // (x & 0) == (v & 0) always holds.
                return t;
            }
            let j = asm.jump(JMP_JEQ_K, v & m, t, f);
            asm.stmt(and(m), j)
        }
    };
    asm.stmt(ld(arg_lo(c.arg)), j)
}

/// A condition on a 64-bit argument, as two 32-bit halves (little endian: low word first) with
/// unsigned 64-bit semantics.
fn cond64(asm: &mut Asm, c: &Cond, t: Target, f: Target) -> Target {
    let lo_off = arg_lo(c.arg);
    let hi_off = lo_off + 4;
    let (vh, vl) = ((c.value >> 32) as u32, c.value as u32);
    match c.op {
        Op::Eq | Op::Ne => {
            let (t, f) = if c.op == Op::Eq { (t, f) } else { (f, t) };
            let lo = asm.jump(JMP_JEQ_K, vl, t, f);
            let lo = asm.stmt(ld(lo_off), lo);
            let hi = asm.jump(JMP_JEQ_K, vh, lo, f);
            asm.stmt(ld(hi_off), hi)
        }
        Op::MaskedEq => {
            let (mh, ml) = ((c.mask >> 32) as u32, c.mask as u32);
            let lo = if ml == 0 {
                t
            } else {
                let j = asm.jump(JMP_JEQ_K, vl & ml, t, f);
                let j = asm.stmt(and(ml), j);
                asm.stmt(ld(lo_off), j)
            };
            if mh == 0 {
                return lo;
            }
            let j = asm.jump(JMP_JEQ_K, vh & mh, lo, f);
            let j = asm.stmt(and(mh), j);
            asm.stmt(ld(hi_off), j)
        }
        Op::Gt | Op::Ge | Op::Lt | Op::Le => {
            // hi > vh decides "greater", hi < vh decides "less", hi == vh defers to the low
            // word. For LT/LE the outcomes are swapped and the low test inverted.
            let (greater, less) = match c.op {
                Op::Gt | Op::Ge => (t, f),
                _ => (f, t),
            };
            let lo = match c.op {
                Op::Gt => asm.jump(JMP_JGT_K, vl, t, f),
                Op::Ge => asm.jump(JMP_JGE_K, vl, t, f),
                Op::Lt => asm.jump(JMP_JGE_K, vl, f, t),
                _ => asm.jump(JMP_JGT_K, vl, f, t),
            };
            let lo = asm.stmt(ld(lo_off), lo);
            let eq = asm.jump(JMP_JEQ_K, vh, lo, less);
            let hi = asm.jump(JMP_JGT_K, vh, greater, eq);
            asm.stmt(ld(hi_off), hi)
        }
    }
}

/// Structural check of a program read back from bytes: only the opcodes this compiler emits,
/// loads inside `struct seccomp_data`, every jump inside the program, a `ret` at the end.
pub(crate) fn verify(prog: &[Insn]) -> Result<(), &'static str> {
    if prog.is_empty() {
        return Err("empty program");
    }
    if prog.len() > MAX_INSNS {
        return Err("program longer than 4096 instructions");
    }
    let len = prog.len() as u64;
    for (i, insn) in prog.iter().enumerate() {
        let next = i as u64 + 1;
        match insn.code {
            _ if insn.code != JMP_JEQ_K
                && insn.code != JMP_JGT_K
                && insn.code != JMP_JGE_K
                && (insn.jt, insn.jf) != (0, 0) =>
            {
                return Err("jump offsets on an instruction that does not branch");
            }
            LD_W_ABS => {
                if insn.k >= SECCOMP_DATA_LEN || insn.k % 4 != 0 {
                    return Err("load outside struct seccomp_data");
                }
            }
            ALU_AND_K | RET_K => {}
            JMP_JA => {
                if next + u64::from(insn.k) >= len {
                    return Err("jump past the end of the program");
                }
            }
            JMP_JEQ_K | JMP_JGT_K | JMP_JGE_K => {
                if next + u64::from(insn.jt.max(insn.jf)) >= len {
                    return Err("jump past the end of the program");
                }
            }
            _ => return Err("unexpected opcode"),
        }
    }
    if prog[prog.len() - 1].code != RET_K {
        return Err("program does not end with a return");
    }
    Ok(())
}
