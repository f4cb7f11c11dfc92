//! cgroup v2 device control: a `BPF_PROG_TYPE_CGROUP_DEVICE` program generated from the
//! emulated rule state, loaded and attached with raw `bpf(2)` calls.
//!
//! Program shape (the context is `struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32
//! minor; }`, `access_type = access << 16 | type`):
//!
//! ```text
//!   r2 = ctx.access_type & 0xffff   (type: 1 block, 2 char)
//!   r3 = ctx.access_type >> 16      (access: 1 mknod, 2 read, 4 write)
//!   r4 = ctx.major; r5 = ctx.minor
//!   per exception: if it does not match, jump to the next block; else r0 = !default; exit
//!   r0 = default; exit
//! ```

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use super::devices::{DevType, Emulator, ACC_ALL};
use super::CgroupError;

/// One eBPF instruction (`struct bpf_insn`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    pub code: u8,
    /// dst register in the low nibble, src in the high one.
    pub regs: u8,
    pub off: i16,
    pub imm: i32,
}

const LDX_MEM_W: u8 = 0x61;
const ALU32_AND_K: u8 = 0x54;
const ALU32_RSH_K: u8 = 0x74;
const ALU32_MOV_X: u8 = 0xbc;
const ALU64_MOV_K: u8 = 0xb7;
const JMP_JEQ_K: u8 = 0x15;
const JMP_JNE_K: u8 = 0x55;
const JMP_JSET_K: u8 = 0x45;
const JMP_EXIT: u8 = 0x95;

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (src << 4) | dst,
        off,
        imm,
    }
}

fn bpf_type(t: DevType) -> Option<i32> {
    match t {
        DevType::All => None,
        DevType::Block => Some(1),
        DevType::Char => Some(2),
    }
}

/// The program for `emu`, or `None` when it allows everything (nothing to attach).
pub fn program(emu: &Emulator) -> Option<Vec<Insn>> {
    if emu.default_allow && emu.exceptions.is_empty() {
        return None;
    }
    let mut p = vec![
        insn(LDX_MEM_W, 2, 1, 0, 0),
        insn(ALU32_AND_K, 2, 0, 0, 0xffff),
        insn(LDX_MEM_W, 3, 1, 0, 0),
        insn(ALU32_RSH_K, 3, 0, 0, 16),
        insn(LDX_MEM_W, 4, 1, 4, 0),
        insn(LDX_MEM_W, 5, 1, 8, 0),
    ];
    let verdict = i32::from(!emu.default_allow);
    for &(typ, major, minor, access) in &emu.exceptions {
        // Each check is (instructions before the jump, jump opcode, register, immediate).
        let mut block: Vec<(Vec<Insn>, u8, u8, i32)> = Vec::new();
        if let Some(t) = bpf_type(typ) {
            block.push((Vec::new(), JMP_JNE_K, 2, t));
        }
        if emu.default_allow {
            // A deny exception matches when any requested bit is in it.
            if access & ACC_ALL != ACC_ALL {
                block.push((
                    vec![
                        insn(ALU32_MOV_X, 1, 3, 0, 0),
                        insn(ALU32_AND_K, 1, 0, 0, i32::from(access)),
                    ],
                    JMP_JEQ_K,
                    1,
                    0,
                ));
            }
        } else {
            // An allow exception matches when it covers every requested bit.
            let missing = !access & ACC_ALL;
            if missing != 0 {
                block.push((Vec::new(), JMP_JSET_K, 3, i32::from(missing)));
            }
        }
        if let Some(m) = major {
            block.push((Vec::new(), JMP_JNE_K, 4, m as i32));
        }
        if let Some(m) = minor {
            block.push((Vec::new(), JMP_JNE_K, 5, m as i32));
        }
        let len: usize = block.iter().map(|(pre, ..)| pre.len() + 1).sum::<usize>() + 2;
        let mut emitted = 0usize;
        for (pre, op, reg, imm) in block {
            emitted += pre.len() + 1;
            p.extend(pre);
            // Jump past the rest of this block (offsets count from the next instruction).
            let off = (len - emitted) as i16;
            p.push(insn(op, reg, 0, off, imm));
        }
        p.push(insn(ALU64_MOV_K, 0, 0, 0, verdict));
        p.push(insn(JMP_EXIT, 0, 0, 0, 0));
    }
    p.push(insn(ALU64_MOV_K, 0, 0, 0, i32::from(emu.default_allow)));
    p.push(insn(JMP_EXIT, 0, 0, 0, 0));
    Some(p)
}

/// Runs `prog` on one device access the way the kernel would (an interpreter for the few
/// opcodes [`program`] emits), for tests and self-checks.
pub fn run(prog: &[Insn], typ: DevType, major: u32, minor: u32, access: u8) -> Option<bool> {
    let ctx = [
        (u32::from(access) << 16) | bpf_type(typ)? as u32,
        major,
        minor,
    ];
    let mut r = [0u64; 11];
    let mut pc = 0usize;
    for _ in 0..10_000 {
        let i = *prog.get(pc)?;
        let (dst, src) = ((i.regs & 0xf) as usize, (i.regs >> 4) as usize);
        pc += 1;
        let jump = |cond: bool, pc: &mut usize| {
            if cond {
                *pc = (*pc as isize + isize::from(i.off)) as usize;
            }
        };
        match i.code {
            LDX_MEM_W => r[dst] = u64::from(ctx[(i.off / 4) as usize]),
            ALU32_AND_K => r[dst] = u64::from(r[dst] as u32 & i.imm as u32),
            ALU32_RSH_K => r[dst] = u64::from((r[dst] as u32) >> i.imm),
            ALU32_MOV_X => r[dst] = u64::from(r[src] as u32),
            ALU64_MOV_K => r[dst] = i64::from(i.imm) as u64,
            JMP_JEQ_K => jump(r[dst] == i64::from(i.imm) as u64, &mut pc),
            JMP_JNE_K => jump(r[dst] != i64::from(i.imm) as u64, &mut pc),
            JMP_JSET_K => jump(r[dst] & i64::from(i.imm) as u64 != 0, &mut pc),
            JMP_EXIT => return Some(r[0] == 1),
            _ => return None,
        }
    }
    None
}

// bpf(2) commands and constants (linux/bpf.h).
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_DETACH: libc::c_long = 9;
const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_PROG_QUERY: libc::c_long = 16;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

#[repr(C)]
#[derive(Default)]
struct AttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

#[repr(C)]
#[derive(Default)]
struct QueryAttr {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
    _pad: u32,
}

#[repr(C)]
#[derive(Default)]
struct GetFdAttr {
    prog_id: u32,
    next_id: u32,
    open_flags: u32,
}

/// bpf(cmd, attr, sizeof attr).
fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a live, exclusively borrowed #[repr(C)] prefix of `union bpf_attr` and
    // the size passed is its size; the kernel reads/writes only within it (and zero-fills the
    // rest of its own copy).
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T as *mut libc::c_void,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn owned(fd: libc::c_long) -> OwnedFd {
    // SAFETY: `fd` was just returned by bpf(2) as a new descriptor that nothing else owns.
    unsafe { OwnedFd::from_raw_fd(fd as RawFd) }
}

/// Loads `prog`; a verifier refusal carries the verifier's log.
pub fn load(prog: &[Insn], dir: &Path) -> Result<OwnedFd, CgroupError> {
    let mut log = vec![0u8; 64 * 1024];
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: prog.len() as u32,
        insns: prog.as_ptr() as u64,
        license: c"Apache".as_ptr() as u64,
        log_level: 1,
        log_size: log.len() as u32,
        log_buf: log.as_mut_ptr() as u64,
        ..Default::default()
    };
    attr.prog_name[..5].copy_from_slice(b"tinyo");
    match bpf(BPF_PROG_LOAD, &mut attr) {
        Ok(fd) => Ok(owned(fd)),
        Err(source) => {
            let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
            let text = String::from_utf8_lossy(&log[..end]).trim().to_string();
            Err(CgroupError::Bpf {
                what: if text.is_empty() {
                    "loading the device program (BPF_PROG_LOAD)".into()
                } else {
                    format!("loading the device program (BPF_PROG_LOAD; verifier: {text})")
                },
                path: dir.to_path_buf(),
                source,
            })
        }
    }
}

/// The ids of the device programs attached to `cg`.
fn attached(cg: RawFd) -> io::Result<Vec<u32>> {
    let mut ids = vec![0u32; 64];
    let mut q = QueryAttr {
        target_fd: cg as u32,
        attach_type: BPF_CGROUP_DEVICE,
        prog_ids: ids.as_mut_ptr() as u64,
        prog_cnt: ids.len() as u32,
        ..Default::default()
    };
    bpf(BPF_PROG_QUERY, &mut q)?;
    ids.truncate(q.prog_cnt as usize);
    Ok(ids)
}

/// Loads `prog` and attaches it to the cgroup2 directory `dir` (BPF_F_ALLOW_MULTI, so a
/// parent's programs keep applying). With `replace`, the device programs attached before are
/// detached once the new one is in place (no window without a filter).
pub fn attach(dir: &Path, prog: &[Insn], replace: bool) -> Result<(), CgroupError> {
    // O_RDONLY, not O_PATH: older kernels refuse an O_PATH cgroup descriptor.
    let cg = std::fs::File::open(dir).map_err(|source| CgroupError::Read {
        path: dir.to_path_buf(),
        source,
    })?;
    let old = if replace {
        attached(cg.as_raw_fd()).unwrap_or_default()
    } else {
        Vec::new()
    };
    let fd = load(prog, dir)?;
    let mut a = AttachAttr {
        target_fd: cg.as_raw_fd() as u32,
        attach_bpf_fd: fd.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
        ..Default::default()
    };
    bpf(BPF_PROG_ATTACH, &mut a).map_err(|source| CgroupError::Bpf {
        what: "attaching the device program (BPF_PROG_ATTACH)".into(),
        path: dir.to_path_buf(),
        source,
    })?;
    for id in old {
        let mut g = GetFdAttr {
            prog_id: id,
            ..Default::default()
        };
        let Ok(old_fd) = bpf(BPF_PROG_GET_FD_BY_ID, &mut g).map(owned) else {
            continue;
        };
        let mut d = AttachAttr {
            target_fd: cg.as_raw_fd() as u32,
            attach_bpf_fd: old_fd.as_raw_fd() as u32,
            attach_type: BPF_CGROUP_DEVICE,
            ..Default::default()
        };
        bpf(BPF_PROG_DETACH, &mut d).map_err(|source| CgroupError::Bpf {
            what: format!("detaching the previous device program {id} (BPF_PROG_DETACH)"),
            path: dir.to_path_buf(),
            source,
        })?;
    }
    Ok(())
}
