//! `linux.seccomp` compiled to a classic-BPF seccomp filter in pure Rust (no libseccomp), a
//! cache of compiled programs, and the `seccomp(2)` call that installs one.
//!
//! - [`compile`] turns an OCI [`LinuxSeccomp`] into a [`Compiled`] program: instructions, the
//!   `seccomp(2)` flags, whether a user-notification listener is wanted, and the syscall names
//!   that were skipped because no enabled ABI knows them (runc skips those silently; the
//!   caller may debug-log [`Compiled::skipped`]).
//! - [`compile_cached`] does the same through an on-disk cache.
//! - [`install`] loads a program into the calling thread (or process, with TSYNC) and returns
//!   the listener fd when one was requested. The caller is responsible for `no_new_privs` (or
//!   `CAP_SYS_ADMIN`) and for sending the listener to `listenerPath`.
//!
//! # Semantics (mirroring runc + libseccomp where profiles depend on it)
//!
//! - **Actions.** `SCMP_ACT_KILL` and `SCMP_ACT_KILL_THREAD` are `SECCOMP_RET_KILL_THREAD`;
//!   `SCMP_ACT_KILL_PROCESS`, `SCMP_ACT_TRAP`, `SCMP_ACT_ALLOW`, `SCMP_ACT_LOG` map directly;
//!   `SCMP_ACT_ERRNO` returns `errnoRet` (default `EPERM`); `SCMP_ACT_TRACE` passes `errnoRet`
//!   as the tracer message (default `EPERM`, as runc); `SCMP_ACT_NOTIFY` is
//!   `SECCOMP_RET_USER_NOTIF` and adds `SECCOMP_FILTER_FLAG_NEW_LISTENER`. `errnoRet` above
//!   65535 does not fit `SECCOMP_RET_DATA` and is an error (runc truncates it silently).
//!   As in runc, `SCMP_ACT_NOTIFY` is refused as the default action and for `write` (the
//!   runtime needs `write` to pass the listener fd on, so the container would hang).
//! - **Architectures.** The filter always covers the native ABI, x86_64 (libseccomp filters
//!   always contain the native arch and runc only adds to it; an empty list means x86_64 only).
//!   `SCMP_ARCH_X86` adds the i386 ABI (`AUDIT_ARCH_I386`), `SCMP_ARCH_X32` the x32 ABI
//!   (`AUDIT_ARCH_X86_64` with `nr >= 0x40000000`). Every other architecture libseccomp knows
//!   (ARM, AARCH64, MIPS*, PPC*, S390*, RISCV64, LOONGARCH64, PARISC*, M68K, SH*) is accepted
//!   and never matches on this host. The oci-spec `Arch` type rejects unknown names when the
//!   config is parsed, so [`compile`] never sees one.
//! - **Bad architecture.** A syscall from an architecture that is not in the filter, and an
//!   x32 syscall (`nr >= 0x40000000` under `AUDIT_ARCH_X86_64`) when x32 is not listed, get
//!   `SECCOMP_RET_KILL_PROCESS`. libseccomp's default bad-arch action (`SCMP_FLTATR_ACT_BADARCH`,
//!   which runc never changes) is `SCMP_ACT_KILL`, i.e. kill *thread*; we choose kill-process
//!   deliberately: a multi-threaded process must not survive with one thread silently gone,
//!   and the outcome for the usual single-threaded victim is the same (death by `SIGSYS`).
//! - **Arguments.** `index` 0..=5; ops `SCMP_CMP_NE/LT/LE/EQ/GE/GT` compare `value`;
//!   `SCMP_CMP_MASKED_EQ` tests `(arg & value) == valueTwo` (`value` is the mask, as in
//!   libseccomp's `SCMP_CMP(MASKED_EQ, mask, datum)`). On x86_64 and x32 arguments are 64-bit:
//!   both halves are compared, with unsigned 64-bit ordering for LT/LE/GE/GT. On i386
//!   arguments are 32-bit and, like libseccomp's `_db_rule_gen_32`, only the low word is
//!   compared against the low word of `value` (the upper bits of `value` are dropped).
//!   Conditions of one rule are ANDed. As in runc's `matchCall`: if two or more conditions of
//!   a rule use the same argument index, *every* condition of that rule becomes a rule of its
//!   own (ORed), not only the ones that share the index.
//! - **Unknown names** (on every enabled ABI) are skipped and reported in
//!   [`Compiled::skipped`]. A name known on some enabled ABI only (e.g. `socketcall` on i386)
//!   applies where it exists. An empty name is an error (runc).
//!
//! # Precedence when a syscall has several rules
//!
//! 1. A rule whose action (including its errno) equals the default action is dropped first,
//!    as runc does before handing rules to libseccomp.
//! 2. If the syscall has an unconditional rule (no `args`), the **first** such rule decides
//!    and every conditional rule for the syscall is ignored, whatever their order. That is
//!    libseccomp's `db_rule_add`: an unconditional entry replaces existing argument chains and
//!    later rules for the syscall are dropped. (Podman's profile relies on this: `setns` is in
//!    the big allow list and also in the `CAP_SYS_ADMIN`-excluded `EPERM` list, and ends up
//!    allowed under runc/crun; so it does here.)
//! 3. Otherwise conditional rules are tried in document order and the first whose conditions
//!    all hold decides; if none does, the default action applies. This agrees with libseccomp
//!    whenever rules with different actions cannot match the same call, which is how real
//!    profiles are written (podman/docker `personality`, `socket`, `clone`: several
//!    same-action alternatives, or different actions on disjoint argument values).
//!    libseccomp's tree merge of *overlapping* conditional rules with different actions is
//!    not reproduced.
//!
//! # Program shape
//!
//! `ld arch`, then one section per enabled ABI: `ld nr`, then a balanced binary search tree of
//! `jge` over the syscall-number space in which consecutive numbers with the same
//! unconditional outcome (including the default) form one range (podman's default profile:
//! 329 instructions, at most 15 executed for any x86_64 syscall without argument rules).
//! Syscalls with argument rules are single-number leaves holding
//! their comparison chains. The program is assembled back to front, so every jump target
//! exists when the jump is emitted: targets beyond the 255 reach of `jt`/`jf` go through a
//! `ja` trampoline (32-bit offset) or a local copy of the `ret`. More than 4096 instructions
//! is an error.
//!
//! # Not supported
//!
//! - Hosts other than x86_64 (the tables are the x86 ABIs only).
//! - The i386 multiplexers `socketcall(2)`/`ipc(2)` are plain syscalls here: a rule for
//!   `socket` matches the direct syscall only (libseccomp also adds `socketcall(SYS_SOCKET)`).
//! - `SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV` (unknown to runc as well) is an error.
//! - runc's `-ENOSYS` stub for syscalls newer than the profile (`patchbpf`) is not generated.
//!
//! # Cache
//!
//! [`compile_cached`] keys programs by SHA-256 over [`COMPILER_VERSION`], the digest of the
//! kernel headers the syscall tables came from, and the section's serde_json serialisation
//! (field order is fixed by the type, so it is canonical). The file is
//! `<cache_dir>/<hex>.bpf`: [`Compiled::to_bytes`] (magic, format version, flags, notify
//! flag, instruction count, skipped-names length, instructions, names) followed by a 32-byte
//! seal, SHA-256 over the key and those bytes. It is written to a temporary file (mode 0600, in a 0700 directory) and renamed
//! into place. On read the file must be a regular file owned by us and not group/other
//! writable, the seal must match and the program must pass a structural check; anything else
//! (missing, short, corrupt) is silently recompiled and rewritten.

mod bpf;
mod cache;
mod syscalls;
#[cfg(test)]
mod tests;

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompFilterFlag, LinuxSeccompOperator,
};

pub use bpf::{Insn, MAX_INSNS};
pub use cache::{compile_cached, COMPILER_VERSION};

use bpf::{Asm, Cond, Leaf, Op, Rule, Seg, Target};

/// `AUDIT_ARCH_X86_64` (`EM_X86_64 | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE`).
pub const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
/// `AUDIT_ARCH_I386` (`EM_386 | __AUDIT_ARCH_LE`).
pub const AUDIT_ARCH_I386: u32 = 0x4000_0003;
/// `__X32_SYSCALL_BIT`: x32 syscalls arrive as `AUDIT_ARCH_X86_64` with this bit set.
pub const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// The seccomp(2) filter flags this module sets (`SECCOMP_FILTER_FLAG_*`).
const FLAG_TSYNC: u32 = libc::SECCOMP_FILTER_FLAG_TSYNC as u32;
const FLAG_LOG: u32 = libc::SECCOMP_FILTER_FLAG_LOG as u32;
const FLAG_SPEC_ALLOW: u32 = libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW as u32;
const FLAG_NEW_LISTENER: u32 = libc::SECCOMP_FILTER_FLAG_NEW_LISTENER as u32;
const FLAG_TSYNC_ESRCH: u32 = libc::SECCOMP_FILTER_FLAG_TSYNC_ESRCH as u32;
const KNOWN_FLAGS: u32 =
    FLAG_TSYNC | FLAG_LOG | FLAG_SPEC_ALLOW | FLAG_NEW_LISTENER | FLAG_TSYNC_ESRCH;

const RET_KILL_PROCESS: u32 = libc::SECCOMP_RET_KILL_PROCESS;

/// Why a seccomp section could not be compiled, cached or read back.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// `defaultAction: SCMP_ACT_NOTIFY`.
    #[error(
        "SCMP_ACT_NOTIFY cannot be the default seccomp action: every syscall, write included, \
         would wait for the seccomp agent"
    )]
    NotifyDefault,
    /// `SCMP_ACT_NOTIFY` on `write`.
    #[error(
        "SCMP_ACT_NOTIFY cannot be used for the write syscall: the runtime writes the listener \
         fd to its parent after installing the filter and would hang"
    )]
    NotifyWrite,
    /// `errnoRet`/`defaultErrnoRet` above 65535.
    #[error(
        "errnoRet {errno} for {what} does not fit the 16-bit seccomp return data (at most 65535)"
    )]
    ErrnoOutOfRange {
        /// `defaultErrnoRet` or the syscall name(s) of the rule.
        what: String,
        /// The offending value.
        errno: u32,
    },
    /// An argument index outside 0..=5.
    #[error("seccomp rule for syscall {syscall}: argument index {index} is out of range (0 to 5)")]
    ArgIndex {
        /// The syscall name(s) of the rule.
        syscall: String,
        /// The offending index.
        index: usize,
    },
    /// A rule naming the empty string.
    #[error("seccomp rule with an empty syscall name")]
    EmptyName,
    /// A filter flag this compiler does not support.
    #[error(
        "seccomp flag {flag} is not supported (supported: SECCOMP_FILTER_FLAG_TSYNC, \
         SECCOMP_FILTER_FLAG_LOG, SECCOMP_FILTER_FLAG_SPEC_ALLOW)"
    )]
    UnsupportedFlag {
        /// The flag's name.
        flag: String,
    },
    /// The program exceeds the kernel's limit.
    #[error("seccomp program has {len} instructions, over the kernel's limit of 4096")]
    TooLarge {
        /// The program's length.
        len: usize,
    },
    /// Serialised program bytes that do not describe a valid program.
    #[error("invalid serialised seccomp program: {0}")]
    Corrupt(&'static str),
    /// The cache directory may be written by someone else.
    #[error("seccomp cache directory {path} is unsafe: {why}")]
    CacheDirInsecure {
        /// The directory.
        path: PathBuf,
        /// What is wrong with it.
        why: &'static str,
    },
    /// An I/O error on the cache.
    #[error("seccomp cache: cannot {op} {path}")]
    Cache {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The section could not be serialised for the cache key.
    #[error("cannot serialise the seccomp section for the cache key")]
    Serialize(#[source] serde_json::Error),
}

/// A compiled seccomp filter, ready for [`install`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Compiled {
    program: Vec<Insn>,
    flags: u32,
    needs_listener: bool,
    skipped: Vec<String>,
}

impl Compiled {
    /// The BPF program.
    pub fn program(&self) -> &[Insn] {
        &self.program
    }

    /// The `seccomp(2)` flags [`install`] passes (`SECCOMP_FILTER_FLAG_*`).
    pub fn flags(&self) -> u32 {
        self.flags
    }

    /// Whether the program can return `SECCOMP_RET_USER_NOTIF` (some `SCMP_ACT_NOTIFY` rule
    /// names a known syscall and survived precedence): [`install`] then returns a listener fd.
    pub fn needs_listener(&self) -> bool {
        self.needs_listener
    }

    /// Syscall names no enabled ABI knows, skipped (first occurrence order, no duplicates).
    pub fn skipped(&self) -> &[String] {
        &self.skipped
    }

    /// Serialises the program: a 28-byte header (magic `TINYOBPF`, format version, flags,
    /// notify, instruction count, skipped-names length; little-endian u32s), the instructions
    /// (8 bytes each: code u16, jt, jf, k u32) and the skipped names joined by `\n`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let names = self.skipped.join("\n");
        let mut out = Vec::with_capacity(HEADER_LEN + 8 * self.program.len() + names.len());
        out.extend_from_slice(MAGIC);
        for v in [
            FORMAT_VERSION,
            self.flags,
            u32::from(self.needs_listener),
            self.program.len() as u32,
            names.len() as u32,
        ] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        for i in &self.program {
            out.extend_from_slice(&i.code.to_le_bytes());
            out.push(i.jt);
            out.push(i.jf);
            out.extend_from_slice(&i.k.to_le_bytes());
        }
        out.extend_from_slice(names.as_bytes());
        out
    }

    /// Parses [`Compiled::to_bytes`] output, validating the header, the length and the
    /// program's structure (opcodes, load offsets, jump ranges, final `ret`).
    pub fn from_bytes(b: &[u8]) -> Result<Compiled, SeccompError> {
        let corrupt = SeccompError::Corrupt;
        if b.len() < HEADER_LEN {
            return Err(corrupt("shorter than the header"));
        }
        if &b[..8] != MAGIC {
            return Err(corrupt("bad magic"));
        }
        let word = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        if word(8) != FORMAT_VERSION {
            return Err(corrupt("unknown format version"));
        }
        let flags = word(12);
        let notify = word(16);
        let count = word(20) as usize;
        let names_len = word(24) as usize;
        if flags & !KNOWN_FLAGS != 0 {
            return Err(corrupt("unknown filter flags"));
        }
        let needs_listener = match notify {
            0 => false,
            1 => true,
            _ => return Err(corrupt("bad notify field")),
        };
        if needs_listener != (flags & FLAG_NEW_LISTENER != 0) {
            return Err(corrupt("notify field disagrees with the flags"));
        }
        if count == 0 || count > MAX_INSNS {
            return Err(corrupt("bad instruction count"));
        }
        if b.len() != HEADER_LEN + 8 * count + names_len {
            return Err(corrupt("length does not match the header"));
        }
        let program: Vec<Insn> = b[HEADER_LEN..HEADER_LEN + 8 * count]
            .chunks_exact(8)
            .map(|c| Insn {
                code: u16::from_le_bytes([c[0], c[1]]),
                jt: c[2],
                jf: c[3],
                k: u32::from_le_bytes([c[4], c[5], c[6], c[7]]),
            })
            .collect();
        bpf::verify(&program).map_err(corrupt)?;
        let names = std::str::from_utf8(&b[HEADER_LEN + 8 * count..])
            .map_err(|_| corrupt("skipped names are not UTF-8"))?;
        let skipped = if names.is_empty() {
            Vec::new()
        } else {
            names.split('\n').map(str::to_owned).collect()
        };
        Ok(Compiled {
            program,
            flags,
            needs_listener,
            skipped,
        })
    }
}

const MAGIC: &[u8; 8] = b"TINYOBPF";
const FORMAT_VERSION: u32 = 1;
const HEADER_LEN: usize = 28;

/// One x86 ABI the filter covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Abi {
    X86_64,
    X86,
    X32,
}

impl Abi {
    /// The ABI's column in [`syscalls::SYSCALLS`].
    fn col(self) -> usize {
        match self {
            Abi::X86_64 => 0,
            Abi::X86 => 1,
            Abi::X32 => 2,
        }
    }

    /// The syscall-number range the ABI's section dispatches over: `[lo, hi)`.
    fn range(self) -> (u64, u64) {
        match self {
            Abi::X86_64 => (0, u64::from(X32_SYSCALL_BIT)),
            Abi::X86 => (0, 1 << 32),
            Abi::X32 => (u64::from(X32_SYSCALL_BIT), 1 << 32),
        }
    }

    /// The number of the syscall at `idx` in [`syscalls::SYSCALLS`] on this ABI, if it has one.
    fn number(self, idx: usize) -> Option<u32> {
        Some(syscalls::SYSCALLS[idx].1[self.col()]).filter(|&n| n != syscalls::NONE)
    }

    /// Every (name, number) this ABI has.
    #[cfg(test)]
    fn syscalls(self) -> impl Iterator<Item = (&'static str, u32)> {
        (0..syscalls::SYSCALLS.len())
            .filter_map(move |i| self.number(i).map(|n| (syscalls::SYSCALLS[i].0, n)))
    }
}

/// Looks `name` up in [`syscalls::SYSCALLS`] (sorted by name).
fn lookup(name: &str) -> Option<usize> {
    syscalls::SYSCALLS
        .binary_search_by(|(n, _)| (*n).cmp(name))
        .ok()
}

/// The number of `name` on `abi`, if it has one.
#[cfg(test)]
fn syscall_number(abi: Abi, name: &str) -> Option<u32> {
    lookup(name).and_then(|i| abi.number(i))
}

/// What the filter does with one syscall on one ABI.
#[derive(Debug)]
enum Plan {
    /// An unconditional rule decided.
    Fixed(u32),
    /// Conditional rules, first match wins.
    Rules(Vec<Rule>),
}

/// Per-ABI rule state, indexed like [`syscalls::SYSCALLS`].
#[derive(Debug)]
struct AbiPlans {
    abi: Abi,
    plans: Vec<Option<Plan>>,
}

impl AbiPlans {
    fn new(abi: Abi) -> Self {
        let mut plans = Vec::new();
        plans.resize_with(syscalls::SYSCALLS.len(), || None);
        AbiPlans { abi, plans }
    }

    /// Adds one rule (`conds` empty = unconditional) with libseccomp's precedence.
    fn add(&mut self, idx: usize, conds: &[Vec<Cond>], action: u32) {
        let slot = &mut self.plans[idx];
        match slot {
            Some(Plan::Fixed(_)) => {}
            _ if conds.is_empty() => *slot = Some(Plan::Fixed(action)),
            Some(Plan::Rules(rules)) => rules.extend(conds.iter().map(|c| Rule {
                conds: c.clone(),
                action,
            })),
            None => {
                *slot = Some(Plan::Rules(
                    conds
                        .iter()
                        .map(|c| Rule {
                            conds: c.clone(),
                            action,
                        })
                        .collect(),
                ))
            }
        }
    }

    /// The ABI's number space as segments (sorted, covering `range()`, equal neighbours merged).
    fn segments(&self, default: u32) -> Vec<Seg<'_>> {
        let mut listed: Vec<(u32, &Plan)> = self
            .plans
            .iter()
            .enumerate()
            .filter_map(|(i, p)| Some((self.abi.number(i)?, p.as_ref()?)))
            .collect();
        listed.sort_unstable_by_key(|&(nr, _)| nr);
        let (lo, hi) = self.abi.range();
        let mut segs: Vec<Seg<'_>> = Vec::with_capacity(2 * listed.len() + 1);
        let mut cur = lo;
        for (nr, plan) in listed {
            let nr = u64::from(nr);
            if nr > cur {
                push(&mut segs, cur, Leaf::Ret(default));
            }
            let leaf = match plan {
                Plan::Fixed(v) => Leaf::Ret(*v),
                Plan::Rules(r) => Leaf::Rules(r),
            };
            push(&mut segs, nr, leaf);
            cur = nr + 1;
        }
        if cur < hi {
            push(&mut segs, cur, Leaf::Ret(default));
        }
        segs
    }
}

/// Appends a segment, merging it into the previous one when both return the same action.
fn push<'a>(segs: &mut Vec<Seg<'a>>, start: u64, leaf: Leaf<'a>) {
    if let (Some(last), Leaf::Ret(v)) = (segs.last(), leaf) {
        if matches!(last.leaf, Leaf::Ret(w) if w == v) {
            return;
        }
    }
    segs.push(Seg {
        start: start as u32,
        leaf,
    });
}

/// The `SECCOMP_RET_*` value of an action; `Err(errno)` when `errno_ret` does not fit the
/// 16-bit return data.
fn action_value(action: LinuxSeccompAction, errno_ret: Option<u32>) -> Result<u32, u32> {
    let data = || match errno_ret.unwrap_or(libc::EPERM as u32) {
        e if e > 0xffff => Err(e),
        e => Ok(e),
    };
    use LinuxSeccompAction as A;
    Ok(match action {
        A::ScmpActKill | A::ScmpActKillThread => libc::SECCOMP_RET_KILL_THREAD,
        A::ScmpActKillProcess => libc::SECCOMP_RET_KILL_PROCESS,
        A::ScmpActTrap => libc::SECCOMP_RET_TRAP,
        A::ScmpActErrno => libc::SECCOMP_RET_ERRNO | data()?,
        A::ScmpActTrace => libc::SECCOMP_RET_TRACE | data()?,
        A::ScmpActAllow => libc::SECCOMP_RET_ALLOW,
        A::ScmpActLog => libc::SECCOMP_RET_LOG,
        A::ScmpActNotify => libc::SECCOMP_RET_USER_NOTIF,
    })
}

fn op(o: LinuxSeccompOperator) -> Op {
    use LinuxSeccompOperator as O;
    match o {
        O::ScmpCmpNe => Op::Ne,
        O::ScmpCmpLt => Op::Lt,
        O::ScmpCmpLe => Op::Le,
        O::ScmpCmpEq => Op::Eq,
        O::ScmpCmpGe => Op::Ge,
        O::ScmpCmpGt => Op::Gt,
        O::ScmpCmpMaskedEq => Op::MaskedEq,
    }
}

/// The default profile for containers that do not bring their own (what tinyo-shim applies):
/// podman's default profile for Docker's default capability set, as the OCI section
/// (`default.json`, generated by this module's tests from containers-common's seccomp.json).
pub fn default_profile() -> LinuxSeccomp {
    // The file is part of the binary and a unit test parses it: it cannot fail here.
    serde_json::from_str(include_str!("default.json")).unwrap_or_default()
}

/// Compiles a `linux.seccomp` section. See the module docs for the exact semantics.
pub fn compile(s: &LinuxSeccomp) -> Result<Compiled, SeccompError> {
    if s.default_action() == LinuxSeccompAction::ScmpActNotify {
        return Err(SeccompError::NotifyDefault);
    }
    let default = action_value(s.default_action(), s.default_errno_ret()).map_err(|errno| {
        SeccompError::ErrnoOutOfRange {
            what: "defaultErrnoRet".to_owned(),
            errno,
        }
    })?;

    let mut flags = 0;
    for f in s.flags().iter().flatten() {
        flags |= match f {
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => FLAG_TSYNC,
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => FLAG_LOG,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => FLAG_SPEC_ALLOW,
            other => {
                return Err(SeccompError::UnsupportedFlag {
                    flag: other.to_string(),
                })
            }
        };
    }

    let mut abis = vec![AbiPlans::new(Abi::X86_64)];
    for arch in s.architectures().iter().flatten() {
        let abi = match arch {
            Arch::ScmpArchX86 => Abi::X86,
            Arch::ScmpArchX32 => Abi::X32,
            // Native and x86_64 are always there; the rest never match on an x86_64 host.
            _ => continue,
        };
        if !abis.iter().any(|a| a.abi == abi) {
            abis.push(AbiPlans::new(abi));
        }
    }

    let mut skipped: Vec<String> = Vec::new();
    let mut conds: Vec<Vec<Cond>> = Vec::new();
    for rule in s.syscalls().iter().flatten() {
        let names = rule.names();
        let what = || names.join(",");
        let action = action_value(rule.action(), rule.errno_ret()).map_err(|errno| {
            SeccompError::ErrnoOutOfRange {
                what: format!("syscall {}", what()),
                errno,
            }
        })?;
        if rule.action() == LinuxSeccompAction::ScmpActNotify && names.iter().any(|n| n == "write")
        {
            return Err(SeccompError::NotifyWrite);
        }
        if names.iter().any(String::is_empty) {
            return Err(SeccompError::EmptyName);
        }

        // runc: one rule with all conditions ANDed, or, when an index repeats, one rule per
        // condition.
        conds.clear();
        let args = rule.args().as_deref().unwrap_or_default();
        let mut per_index = [0u8; 6];
        let mut all = Vec::with_capacity(args.len());
        for a in args {
            let index = a.index();
            if index > 5 {
                return Err(SeccompError::ArgIndex {
                    syscall: what(),
                    index,
                });
            }
            per_index[index] += 1;
            let (value, mask) = match op(a.op()) {
                // OCI `value` is the mask, `valueTwo` the datum (libseccomp's order); like
                // libseccomp, the datum is reduced to the mask's bits.
                Op::MaskedEq => {
                    let mask = a.value();
                    (a.value_two().unwrap_or(0) & mask, mask)
                }
                _ => (a.value(), u64::MAX),
            };
            all.push(Cond {
                arg: index as u8,
                op: op(a.op()),
                value,
                mask,
            });
        }
        if per_index.iter().any(|&n| n > 1) {
            conds.extend(all.into_iter().map(|c| vec![c]));
        } else if !all.is_empty() {
            conds.push(all);
        }

        // runc drops rules that would do what the default does anyway.
        if action == default {
            continue;
        }
        for name in names {
            let mut known = false;
            if let Some(idx) = lookup(name) {
                for plans in &mut abis {
                    if plans.abi.number(idx).is_some() {
                        known = true;
                        plans.add(idx, &conds, action);
                    }
                }
            }
            if !known && !skipped.iter().any(|n| n == name) {
                skipped.push(name.clone());
            }
        }
    }
    let program = generate(&abis, default);
    if program.len() > MAX_INSNS {
        return Err(SeccompError::TooLarge { len: program.len() });
    }
    // Only when a notify rule survived (known name, not overridden by precedence).
    let needs_listener = program
        .iter()
        .any(|i| i.code == bpf::RET_K && i.k == libc::SECCOMP_RET_USER_NOTIF);
    if needs_listener {
        flags |= FLAG_NEW_LISTENER;
        if flags & FLAG_TSYNC != 0 {
            // The kernel refuses TSYNC + NEW_LISTENER unless a failed sync reports ESRCH
            // instead of a thread id (which would be ambiguous with the listener fd).
            flags |= FLAG_TSYNC_ESRCH;
        }
    }
    Ok(Compiled {
        program,
        flags,
        needs_listener,
        skipped,
    })
}

/// Lays out the whole program (see "Program shape" in the module docs).
fn generate(abis: &[AbiPlans], default: u32) -> Vec<Insn> {
    let section = |abi: Abi| abis.iter().find(|p| p.abi == abi);
    let mut asm = Asm::with_capacity(1024);
    let kill = Target::Ret(RET_KILL_PROCESS);
    // Back to front: i386 section, x32 tree, x86_64 tree, then the dispatch on arch.
    let x86 = match section(Abi::X86) {
        Some(p) => {
            let t = bpf::tree(&mut asm, &p.segments(default), default, true);
            asm.stmt(bpf::ld(bpf::OFF_NR), t)
        }
        None => kill,
    };
    let x32 = match section(Abi::X32) {
        Some(p) => bpf::tree(&mut asm, &p.segments(default), default, false),
        None => kill,
    };
    let x64 = match section(Abi::X86_64) {
        Some(p) => bpf::tree(&mut asm, &p.segments(default), default, false),
        None => kill,
    };
    let x64 = asm.jump(bpf::JMP_JGE_K, X32_SYSCALL_BIT, x32, x64);
    let x64 = asm.stmt(bpf::ld(bpf::OFF_NR), x64);
    let other = asm.jump(bpf::JMP_JEQ_K, AUDIT_ARCH_I386, x86, kill);
    let entry = asm.jump(bpf::JMP_JEQ_K, AUDIT_ARCH_X86_64, x64, other);
    let entry = asm.stmt(bpf::ld(bpf::OFF_ARCH), entry);
    asm.label(entry);
    debug_assert!(asm.len() > 0);
    asm.finish()
}

/// Installs `c` with `seccomp(SECCOMP_SET_MODE_FILTER, flags, &prog)`.
///
/// Returns the user-notification listener when [`Compiled::needs_listener`]. The caller must
/// have set `no_new_privs` or hold `CAP_SYS_ADMIN`. Allocation-free, so usable between
/// `fork` and `exec`. With TSYNC and no listener, a thread that cannot be synchronised is
/// reported as `ESRCH` (the kernel returns its thread id).
pub fn install(c: &Compiled) -> io::Result<Option<OwnedFd>> {
    let len = u16::try_from(c.program.len())
        .ok()
        .filter(|&n| n > 0 && usize::from(n) <= MAX_INSNS)
        .ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
    let prog = libc::sock_fprog {
        len,
        filter: c.program.as_ptr().cast::<libc::sock_filter>().cast_mut(),
    };
    // SAFETY: `prog` points at `len` initialised instructions with `struct sock_filter`'s
    // layout (asserted next to `Insn`), alive for the whole call; the kernel only reads them
    // and copies the program before returning.
    let r = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            libc::c_ulong::from(c.flags),
            &prog as *const libc::sock_fprog,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    if c.needs_listener {
        let fd = RawFd::try_from(r).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
        // SAFETY: with SECCOMP_FILTER_FLAG_NEW_LISTENER a successful call returns a new file
        // descriptor that nothing else owns.
        Ok(Some(unsafe { OwnedFd::from_raw_fd(fd) }))
    } else if r == 0 {
        Ok(None)
    } else {
        Err(io::Error::from_raw_os_error(libc::ESRCH))
    }
}
