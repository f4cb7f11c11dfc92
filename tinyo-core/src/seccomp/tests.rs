//! Unit tests: a small classic-BPF interpreter runs compiled programs on synthetic
//! `seccomp_data`, a straightforward reference model of the documented semantics checks large
//! programs, podman's default profile is converted and compiled, and a few forked children
//! install real filters.

use super::*;

use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::Instant;

use oci_spec::runtime::LinuxSeccompArg;
use serde_json::{json, Value};

const ALLOW: u32 = libc::SECCOMP_RET_ALLOW;
const LOG: u32 = libc::SECCOMP_RET_LOG;
const KILL_PROCESS: u32 = libc::SECCOMP_RET_KILL_PROCESS;
const AUDIT_ARCH_AARCH64: u32 = 0xc000_00b7;

fn errno(e: i32) -> u32 {
    libc::SECCOMP_RET_ERRNO | e as u32
}

fn section(v: Value) -> LinuxSeccomp {
    serde_json::from_value(v).expect("a valid linux.seccomp section")
}

fn build(v: Value) -> Compiled {
    compile(&section(v)).expect("the section compiles")
}

fn nr(abi: Abi, name: &str) -> u32 {
    syscall_number(abi, name).unwrap_or_else(|| panic!("{name} unknown on {abi:?}"))
}

/// Runs `prog` on a synthetic `struct seccomp_data`; returns the action and the number of
/// instructions executed.
fn run_steps(prog: &[Insn], arch: u32, nr: u32, args: [u64; 6]) -> (u32, usize) {
    let mut data = [0u8; 64];
    data[0..4].copy_from_slice(&nr.to_le_bytes());
    data[4..8].copy_from_slice(&arch.to_le_bytes());
    data[8..16].copy_from_slice(&0x7f00_dead_beefu64.to_le_bytes());
    for (i, a) in args.iter().enumerate() {
        data[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_le_bytes());
    }
    let (mut acc, mut pc, mut steps) = (0u32, 0usize, 0usize);
    loop {
        let insn = *prog
            .get(pc)
            .unwrap_or_else(|| panic!("pc {pc} ran off a {}-insn program", prog.len()));
        steps += 1;
        pc += 1;
        match insn.code {
            bpf::LD_W_ABS => {
                let k = insn.k as usize;
                acc = u32::from_le_bytes(data[k..k + 4].try_into().expect("4 bytes"));
            }
            bpf::ALU_AND_K => acc &= insn.k,
            bpf::JMP_JA => pc += insn.k as usize,
            bpf::JMP_JEQ_K | bpf::JMP_JGT_K | bpf::JMP_JGE_K => {
                let taken = match insn.code {
                    bpf::JMP_JEQ_K => acc == insn.k,
                    bpf::JMP_JGT_K => acc > insn.k,
                    _ => acc >= insn.k,
                };
                pc += usize::from(if taken { insn.jt } else { insn.jf });
            }
            bpf::RET_K => return (insn.k, steps),
            other => panic!("unexpected opcode {other:#x} at {}", pc - 1),
        }
    }
}

fn run(prog: &[Insn], arch: u32, nr: u32, args: [u64; 6]) -> u32 {
    run_steps(prog, arch, nr, args).0
}

/// The x86_64 outcome of `name` with `args`.
fn x64(c: &Compiled, name: &str, args: [u64; 6]) -> u32 {
    run(c.program(), AUDIT_ARCH_X86_64, nr(Abi::X86_64, name), args)
}

fn i386(c: &Compiled, name: &str, args: [u64; 6]) -> u32 {
    run(c.program(), AUDIT_ARCH_I386, nr(Abi::X86, name), args)
}

fn x32(c: &Compiled, name: &str, args: [u64; 6]) -> u32 {
    run(c.program(), AUDIT_ARCH_X86_64, nr(Abi::X32, name), args)
}

fn a0(v: u64) -> [u64; 6] {
    [v, 0, 0, 0, 0, 0]
}

const NO_ARGS: [u64; 6] = [0; 6];

// ---------------------------------------------------------------------------------------
// Reference model: the documented semantics, evaluated directly on the section.

fn arg_matches(a: &LinuxSeccompArg, args: &[u64; 6], abi32: bool) -> bool {
    let narrow = |x: u64| if abi32 { x & 0xffff_ffff } else { x };
    let x = narrow(args[a.index()]);
    let v = narrow(a.value());
    use LinuxSeccompOperator as O;
    match a.op() {
        O::ScmpCmpNe => x != v,
        O::ScmpCmpLt => x < v,
        O::ScmpCmpLe => x <= v,
        O::ScmpCmpEq => x == v,
        O::ScmpCmpGe => x >= v,
        O::ScmpCmpGt => x > v,
        O::ScmpCmpMaskedEq => x & v == narrow(a.value_two().unwrap_or(0)) & v,
    }
}

fn reference(s: &LinuxSeccomp, arch: u32, nr: u32, args: [u64; 6]) -> u32 {
    let listed = |a: Arch| s.architectures().iter().flatten().any(|x| *x == a);
    let abi = match arch {
        AUDIT_ARCH_X86_64 if nr < X32_SYSCALL_BIT => Abi::X86_64,
        AUDIT_ARCH_X86_64 if listed(Arch::ScmpArchX32) => Abi::X32,
        AUDIT_ARCH_I386 if listed(Arch::ScmpArchX86) => Abi::X86,
        _ => return KILL_PROCESS,
    };
    // oci-spec's own mapping (EPERM = 1 when errnoRet is absent).
    let default = s.default_action().as_u32(s.default_errno_ret());
    let names: Vec<&str> = abi
        .syscalls()
        .filter(|&(_, n)| n == nr)
        .map(|(name, _)| name)
        .collect();
    let mut fixed = None;
    let mut conditional: Vec<(Vec<LinuxSeccompArg>, u32)> = Vec::new();
    for rule in s.syscalls().iter().flatten() {
        let act = rule.action().as_u32(rule.errno_ret());
        if act == default {
            continue;
        }
        for name in rule.names() {
            if !names.contains(&name.as_str()) {
                continue;
            }
            let args = rule.args().clone().unwrap_or_default();
            if args.is_empty() {
                fixed.get_or_insert(act);
            } else if (0..6).any(|i| args.iter().filter(|a| a.index() == i).count() > 1) {
                conditional.extend(args.iter().map(|a| (vec![*a], act)));
            } else {
                conditional.push((args, act));
            }
        }
    }
    if let Some(f) = fixed {
        return f;
    }
    conditional
        .iter()
        .find(|(conds, _)| conds.iter().all(|a| arg_matches(a, &args, abi == Abi::X86)))
        .map_or(default, |(_, act)| *act)
}

/// Checks the compiled program against the reference model on every syscall number of every
/// x86 ABI (plus some numbers no ABI has), for each argument vector.
fn check_against_reference(s: &LinuxSeccomp, c: &Compiled, arg_sets: &[[u64; 6]]) {
    bpf::verify(c.program()).expect("structurally valid");
    let mut cases: Vec<(u32, u32)> = Vec::new();
    for (arch, abi) in [
        (AUDIT_ARCH_X86_64, Abi::X86_64),
        (AUDIT_ARCH_I386, Abi::X86),
        (AUDIT_ARCH_X86_64, Abi::X32),
    ] {
        cases.extend(abi.syscalls().map(|(_, n)| (arch, n)));
    }
    for n in [1000, 0x3fff_ffff, 0x4000_1000, 0xffff_ffff] {
        cases.extend([(AUDIT_ARCH_X86_64, n), (AUDIT_ARCH_I386, n)]);
    }
    cases.push((AUDIT_ARCH_AARCH64, 0));
    for (arch, n) in cases {
        for args in arg_sets {
            assert_eq!(
                run(c.program(), arch, n, *args),
                reference(s, arch, n, *args),
                "arch {arch:#x} nr {n:#x} args {args:x?}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// Syscall tables.

#[test]
fn syscall_tables_are_sorted_and_match_the_kernel_abi() {
    assert!(
        syscalls::SYSCALLS.windows(2).all(|w| w[0].0 < w[1].0),
        "the table is not sorted by name or has duplicates"
    );
    for (abi, min) in [(Abi::X86_64, 330), (Abi::X86, 400), (Abi::X32, 330)] {
        let n = abi.syscalls().count();
        assert!(n >= min, "{abi:?} has only {n} syscalls");
        let mut numbers: Vec<u32> = abi.syscalls().map(|(_, n)| n).collect();
        numbers.sort_unstable();
        numbers.dedup();
        assert_eq!(numbers.len(), n, "{abi:?} has two names for one number");
    }
    assert_eq!(nr(Abi::X86_64, "read"), 0);
    assert_eq!(nr(Abi::X86, "read"), 3);
    assert_eq!(nr(Abi::X32, "read"), X32_SYSCALL_BIT);
    assert_eq!(nr(Abi::X32, "rt_sigaction"), X32_SYSCALL_BIT + 512);
    assert_eq!(nr(Abi::X86, "socketcall"), 102);
    assert!(syscall_number(Abi::X86_64, "socketcall").is_none());
    assert!(Abi::X32.syscalls().all(|(_, n)| n >= X32_SYSCALL_BIT));
    assert!(Abi::X86_64.syscalls().all(|(_, n)| n < X32_SYSCALL_BIT));
    for (name, n) in [
        ("getppid", libc::SYS_getppid),
        ("clone3", libc::SYS_clone3),
        ("openat2", libc::SYS_openat2),
        ("personality", libc::SYS_personality),
        ("_sysctl", libc::SYS__sysctl),
        ("seccomp", libc::SYS_seccomp),
    ] {
        assert_eq!(i64::from(nr(Abi::X86_64, name)), n, "{name}");
    }
}

// ---------------------------------------------------------------------------------------
// Actions.

#[test]
fn default_action_values() {
    for (action, errno_ret, want) in [
        ("SCMP_ACT_KILL", None, libc::SECCOMP_RET_KILL_THREAD),
        ("SCMP_ACT_KILL_THREAD", None, libc::SECCOMP_RET_KILL_THREAD),
        ("SCMP_ACT_KILL_PROCESS", None, KILL_PROCESS),
        ("SCMP_ACT_TRAP", None, libc::SECCOMP_RET_TRAP),
        ("SCMP_ACT_ERRNO", None, errno(libc::EPERM)),
        ("SCMP_ACT_ERRNO", Some(38), errno(libc::ENOSYS)),
        ("SCMP_ACT_TRACE", None, libc::SECCOMP_RET_TRACE | 1),
        ("SCMP_ACT_TRACE", Some(77), libc::SECCOMP_RET_TRACE | 77),
        ("SCMP_ACT_ALLOW", None, ALLOW),
        ("SCMP_ACT_LOG", None, LOG),
    ] {
        let mut v = json!({ "defaultAction": action });
        if let Some(e) = errno_ret {
            v["defaultErrnoRet"] = json!(e);
        }
        let c = build(v);
        for name in ["read", "getpid", "clone3"] {
            assert_eq!(
                x64(&c, name, NO_ARGS),
                want,
                "{action} {errno_ret:?} {name}"
            );
        }
        assert!(!c.needs_listener());
    }
    let err = compile(&section(json!({ "defaultAction": "SCMP_ACT_NOTIFY" }))).unwrap_err();
    assert!(matches!(err, SeccompError::NotifyDefault), "{err}");
}

#[test]
fn rule_action_values() {
    for (action, errno_ret, want) in [
        ("SCMP_ACT_KILL", None, libc::SECCOMP_RET_KILL_THREAD),
        ("SCMP_ACT_KILL_THREAD", None, libc::SECCOMP_RET_KILL_THREAD),
        ("SCMP_ACT_KILL_PROCESS", None, KILL_PROCESS),
        ("SCMP_ACT_TRAP", None, libc::SECCOMP_RET_TRAP),
        ("SCMP_ACT_ERRNO", None, errno(libc::EPERM)),
        ("SCMP_ACT_ERRNO", Some(0), errno(0)),
        ("SCMP_ACT_ERRNO", Some(4095), errno(4095)),
        ("SCMP_ACT_TRACE", None, libc::SECCOMP_RET_TRACE | 1),
        (
            "SCMP_ACT_TRACE",
            Some(0xffff),
            libc::SECCOMP_RET_TRACE | 0xffff,
        ),
        ("SCMP_ACT_LOG", None, LOG),
        ("SCMP_ACT_NOTIFY", None, libc::SECCOMP_RET_USER_NOTIF),
    ] {
        let mut rule = json!({ "names": ["getpid"], "action": action });
        if let Some(e) = errno_ret {
            rule["errnoRet"] = json!(e);
        }
        let c = build(json!({ "defaultAction": "SCMP_ACT_ALLOW", "syscalls": [rule] }));
        assert_eq!(x64(&c, "getpid", NO_ARGS), want, "{action} {errno_ret:?}");
        assert_eq!(x64(&c, "getppid", NO_ARGS), ALLOW);
    }
}

#[test]
fn errno_out_of_range_is_an_error_naming_the_rule() {
    let err = compile(&section(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{ "names": ["getpid", "getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 70000 }]
    })))
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("70000") && msg.contains("getpid,getppid"),
        "{msg}"
    );
    let err = compile(&section(json!({
        "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 65536
    })))
    .unwrap_err();
    assert!(err.to_string().contains("defaultErrnoRet"), "{err}");
}

// ---------------------------------------------------------------------------------------
// Argument comparisons.

fn expected_64(op: &str, x: u64, v: u64) -> bool {
    match op {
        "SCMP_CMP_NE" => x != v,
        "SCMP_CMP_LT" => x < v,
        "SCMP_CMP_LE" => x <= v,
        "SCMP_CMP_EQ" => x == v,
        "SCMP_CMP_GE" => x >= v,
        "SCMP_CMP_GT" => x > v,
        _ => unreachable!(),
    }
}

const OPS: [&str; 6] = [
    "SCMP_CMP_NE",
    "SCMP_CMP_LT",
    "SCMP_CMP_LE",
    "SCMP_CMP_EQ",
    "SCMP_CMP_GE",
    "SCMP_CMP_GT",
];

const INTERESTING: [u64; 10] = [
    0,
    1,
    0x7fff_ffff,
    0xffff_ffff,
    0x1_0000_0000,
    0x1_0000_0001,
    0x1234_5678_9abc_def0,
    0x8000_0000_0000_0000,
    0xffff_ffff_0000_0000,
    u64::MAX,
];

/// Arguments around `v`: v-1, v, v+1 and the halves swapped or perturbed.
fn around(v: u64) -> Vec<u64> {
    let mut xs = vec![
        v.wrapping_sub(1),
        v,
        v.wrapping_add(1),
        v ^ 0xffff_ffff,
        v ^ 0xffff_ffff_0000_0000,
        v.rotate_left(32),
        v.wrapping_add(1 << 32),
        v.wrapping_sub(1 << 32),
    ];
    xs.extend(INTERESTING);
    xs
}

#[test]
fn every_comparison_op_has_unsigned_64_bit_semantics() {
    for op in OPS {
        for v in INTERESTING {
            let c = build(json!({
                "defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{ "names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 7,
                               "args": [{ "index": 2, "value": v, "op": op }] }]
            }));
            for x in around(v) {
                let want = if expected_64(op, x, v) {
                    errno(7)
                } else {
                    ALLOW
                };
                // Noise in the neighbouring arguments must not matter.
                let args = [u64::MAX, 0x5555, x, !x, 0, 1];
                assert_eq!(
                    x64(&c, "getpid", args),
                    want,
                    "{op} value {v:#x} arg {x:#x}"
                );
                assert_eq!(x32(&c, "getpid", args), KILL_PROCESS, "x32 not listed");
            }
        }
    }
}

#[test]
fn masked_eq_compares_both_halves_and_masks_the_datum() {
    let masks = [
        0xff,
        0xff_0000_0000,
        0x8000_0000_0000_0001,
        u64::MAX,
        0,
        0x7e02_0000,
    ];
    let datums = [0, 1, 0x12, 0x12_0000_0000, 0x8000_0000_0000_0000, u64::MAX];
    for mask in masks {
        for datum in datums {
            let c = build(json!({
                "defaultAction": "SCMP_ACT_ALLOW",
                "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
                "syscalls": [{ "names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 3,
                               "args": [{ "index": 5, "value": mask, "valueTwo": datum,
                                          "op": "SCMP_CMP_MASKED_EQ" }] }]
            }));
            for x in around(datum).into_iter().chain(around(mask)) {
                let args = [1, 2, 3, 4, 5, x];
                let want = if x & mask == datum & mask {
                    errno(3)
                } else {
                    ALLOW
                };
                assert_eq!(
                    x64(&c, "getpid", args),
                    want,
                    "mask {mask:#x} datum {datum:#x} x {x:#x}"
                );
                let (x, m, d) = (x as u32, mask as u32, datum as u32);
                let want = if x & m == d & m { errno(3) } else { ALLOW };
                assert_eq!(
                    i386(&c, "getpid", args),
                    want,
                    "i386 mask {m:#x} datum {d:#x} x {x:#x}"
                );
            }
        }
    }
}

#[test]
fn i386_compares_only_the_low_word() {
    let c = build(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86"],
        "syscalls": [
            { "names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 5,
              "args": [{ "index": 0, "value": 0x1_0000_0005u64, "op": "SCMP_CMP_EQ" }] },
            { "names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 6,
              "args": [{ "index": 1, "value": 0x1_0000_0000u64, "op": "SCMP_CMP_GT" }] }
        ]
    }));
    // The value's high word is dropped (libseccomp), the argument's high word ignored.
    assert_eq!(i386(&c, "getpid", a0(5)), errno(5));
    assert_eq!(i386(&c, "getpid", a0(0x7_0000_0005)), errno(5));
    assert_eq!(i386(&c, "getpid", a0(6)), ALLOW);
    assert_eq!(
        i386(&c, "getppid", [0, 1, 0, 0, 0, 0]),
        errno(6),
        "1 > 0 after truncation"
    );
    assert_eq!(i386(&c, "getppid", [0, 0x5_0000_0000, 0, 0, 0, 0]), ALLOW);
    // x86_64 keeps full 64-bit semantics.
    assert_eq!(x64(&c, "getpid", a0(5)), ALLOW);
    assert_eq!(x64(&c, "getpid", a0(0x1_0000_0005)), errno(5));
    assert_eq!(x64(&c, "getppid", [0, 1, 0, 0, 0, 0]), ALLOW);
    assert_eq!(x64(&c, "getppid", [0, 0x1_0000_0001, 0, 0, 0, 0]), errno(6));
    // i386 numbers are different syscalls: getpid is 20 there, 39 on x86_64.
    assert_eq!(nr(Abi::X86, "getpid"), 20);
    assert_eq!(run(c.program(), AUDIT_ARCH_I386, 39, a0(5)), ALLOW);
}

// ---------------------------------------------------------------------------------------
// Architectures.

#[test]
fn x32_is_separate_and_killed_unless_listed() {
    let rules = json!([
        { "names": ["read"], "action": "SCMP_ACT_ERRNO", "errnoRet": 9 },
        { "names": ["rt_sigaction"], "action": "SCMP_ACT_ERRNO", "errnoRet": 10 }
    ]);
    let with = build(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X32"],
        "syscalls": rules
    }));
    assert_eq!(x64(&with, "read", NO_ARGS), errno(9));
    assert_eq!(x32(&with, "read", NO_ARGS), errno(9));
    assert_eq!(x64(&with, "rt_sigaction", NO_ARGS), errno(10));
    assert_eq!(
        x32(&with, "rt_sigaction", NO_ARGS),
        errno(10),
        "x32 number 512"
    );
    // X32_SYSCALL_BIT | 13 is not rt_sigaction on x32 (that one is 512): default.
    assert_eq!(
        run(
            with.program(),
            AUDIT_ARCH_X86_64,
            X32_SYSCALL_BIT | 13,
            NO_ARGS
        ),
        ALLOW
    );
    assert_eq!(
        run(with.program(), AUDIT_ARCH_X86_64, u32::MAX, NO_ARGS),
        ALLOW
    );
    assert_eq!(
        i386(&with, "read", NO_ARGS),
        KILL_PROCESS,
        "i386 not listed"
    );

    let without = build(json!({ "defaultAction": "SCMP_ACT_ALLOW", "syscalls": rules }));
    assert_eq!(x64(&without, "read", NO_ARGS), errno(9));
    assert_eq!(x64(&without, "getpid", NO_ARGS), ALLOW);
    for n in [
        X32_SYSCALL_BIT,
        X32_SYSCALL_BIT + 39,
        X32_SYSCALL_BIT + 512,
        u32::MAX,
    ] {
        assert_eq!(
            run(without.program(), AUDIT_ARCH_X86_64, n, NO_ARGS),
            KILL_PROCESS
        );
    }
}

#[test]
fn foreign_architectures_are_killed() {
    let plain = build(json!({ "defaultAction": "SCMP_ACT_ERRNO" }));
    let listed = build(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
    }));
    for c in [&plain, &listed] {
        assert_eq!(
            run(c.program(), AUDIT_ARCH_AARCH64, 63, NO_ARGS),
            KILL_PROCESS
        );
        assert_eq!(run(c.program(), 0, 0, NO_ARGS), KILL_PROCESS);
        assert_eq!(x64(c, "read", NO_ARGS), errno(libc::EPERM));
    }
    assert_eq!(i386(&plain, "read", NO_ARGS), KILL_PROCESS);
    assert_eq!(i386(&listed, "read", NO_ARGS), errno(libc::EPERM));
}

#[test]
fn every_known_arch_name_is_accepted_and_unknown_names_are_rejected() {
    let all = [
        "SCMP_ARCH_NATIVE",
        "SCMP_ARCH_X86",
        "SCMP_ARCH_X86_64",
        "SCMP_ARCH_X32",
        "SCMP_ARCH_ARM",
        "SCMP_ARCH_AARCH64",
        "SCMP_ARCH_MIPS",
        "SCMP_ARCH_MIPS64",
        "SCMP_ARCH_MIPS64N32",
        "SCMP_ARCH_MIPSEL",
        "SCMP_ARCH_MIPSEL64",
        "SCMP_ARCH_MIPSEL64N32",
        "SCMP_ARCH_PPC",
        "SCMP_ARCH_PPC64",
        "SCMP_ARCH_PPC64LE",
        "SCMP_ARCH_S390",
        "SCMP_ARCH_S390X",
        "SCMP_ARCH_PARISC",
        "SCMP_ARCH_PARISC64",
        "SCMP_ARCH_RISCV64",
        "SCMP_ARCH_LOONGARCH64",
        "SCMP_ARCH_M68K",
        "SCMP_ARCH_SH",
        "SCMP_ARCH_SHEB",
    ];
    for arch in all {
        let c = build(
            json!({ "defaultAction": "SCMP_ACT_ALLOW", "architectures": [arch],
                              "syscalls": [{ "names": ["read"], "action": "SCMP_ACT_LOG" }] }),
        );
        assert_eq!(x64(&c, "read", NO_ARGS), LOG, "{arch}");
    }
    // Unknown names cannot even be represented: the config fails to parse.
    let err = serde_json::from_value::<LinuxSeccomp>(json!({
        "defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_VAX"]
    }))
    .unwrap_err();
    assert!(err.to_string().contains("SCMP_ARCH_VAX"), "{err}");
    assert!(
        serde_json::from_value::<LinuxSeccomp>(json!({ "defaultAction": "SCMP_ACT_NOPE" }))
            .is_err()
    );
}

// ---------------------------------------------------------------------------------------
// Names and precedence.

#[test]
fn unknown_names_are_skipped_and_reported_once() {
    let rules = json!([
        { "names": ["no_such_syscall", "getpid", "arm_fadvise64_64", "socketcall"],
          "action": "SCMP_ACT_ERRNO", "errnoRet": 4 },
        { "names": ["no_such_syscall"], "action": "SCMP_ACT_LOG" }
    ]);
    let c = build(json!({ "defaultAction": "SCMP_ACT_ALLOW", "syscalls": rules }));
    assert_eq!(
        c.skipped(),
        ["no_such_syscall", "arm_fadvise64_64", "socketcall"]
    );
    assert_eq!(x64(&c, "getpid", NO_ARGS), errno(4));

    // socketcall exists on i386: with that ABI enabled it applies there and is not skipped.
    let c = build(json!({ "defaultAction": "SCMP_ACT_ALLOW",
                          "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
                          "syscalls": rules }));
    assert_eq!(c.skipped(), ["no_such_syscall", "arm_fadvise64_64"]);
    assert_eq!(i386(&c, "socketcall", NO_ARGS), errno(4));
    assert_eq!(i386(&c, "getpid", NO_ARGS), errno(4));

    let err = compile(&section(json!({ "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{ "names": ["getpid", ""], "action": "SCMP_ACT_LOG" }] })))
    .unwrap_err();
    assert!(matches!(err, SeccompError::EmptyName), "{err}");
}

#[test]
fn duplicate_names_and_the_first_unconditional_rule_wins() {
    let c = build(json!({ "defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        { "names": ["getpid", "getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1 },
        { "names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 2 },
        { "names": ["getpid"], "action": "SCMP_ACT_LOG",
          "args": [{ "index": 0, "value": 1, "op": "SCMP_CMP_EQ" }] }
    ]}));
    assert_eq!(x64(&c, "getpid", a0(1)), errno(1));
    assert_eq!(x64(&c, "getpid", a0(2)), errno(1));
}

#[test]
fn precedence_between_conditional_and_unconditional_rules() {
    let ge = |v: u64| json!([{ "index": 0, "value": v, "op": "SCMP_CMP_GE" }]);
    // An unconditional rule replaces earlier conditional ones (libseccomp db_rule_add).
    let c = build(json!({ "defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        { "names": ["getpid"], "action": "SCMP_ACT_LOG", "args": ge(10) },
        { "names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 5 }
    ]}));
    assert_eq!(x64(&c, "getpid", a0(11)), errno(5));
    assert_eq!(x64(&c, "getpid", a0(1)), errno(5));

    // Conditional rules in document order, first match wins.
    let c = build(json!({ "defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        { "names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 5, "args": ge(10) },
        { "names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 6, "args": ge(5) }
    ]}));
    assert_eq!(x64(&c, "getpid", a0(12)), errno(5));
    assert_eq!(x64(&c, "getpid", a0(7)), errno(6));
    assert_eq!(x64(&c, "getpid", a0(1)), ALLOW);

    // Rules doing what the default does are dropped first (runc), so they win nothing.
    let rules = json!([
        { "names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1, "args": ge(10) },
        { "names": ["getpid"], "action": "SCMP_ACT_ALLOW", "args": ge(5) }
    ]);
    let c = build(json!({ "defaultAction": "SCMP_ACT_ERRNO", "syscalls": rules }));
    assert_eq!(x64(&c, "getpid", a0(12)), ALLOW);
    assert_eq!(x64(&c, "getpid", a0(1)), errno(1));
    let c = build(
        json!({ "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38,
                          "syscalls": rules }),
    );
    assert_eq!(x64(&c, "getpid", a0(12)), errno(1));
    assert_eq!(x64(&c, "getpid", a0(7)), ALLOW);
    assert_eq!(x64(&c, "getpid", a0(1)), errno(38));
}

#[test]
fn conditions_are_anded_unless_an_index_repeats() {
    let c = build(json!({ "defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        { "names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1, "args": [
            { "index": 0, "value": 1, "op": "SCMP_CMP_EQ" },
            { "index": 1, "value": 2, "op": "SCMP_CMP_EQ" } ] },
        // Index 0 twice: runc turns all three conditions into separate, ORed rules.
        { "names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 2, "args": [
            { "index": 0, "value": 10, "op": "SCMP_CMP_GE" },
            { "index": 0, "value": 20, "op": "SCMP_CMP_LE" },
            { "index": 1, "value": 3, "op": "SCMP_CMP_EQ" } ] }
    ]}));
    assert_eq!(x64(&c, "getpid", [1, 2, 0, 0, 0, 0]), errno(1));
    assert_eq!(x64(&c, "getpid", [1, 3, 0, 0, 0, 0]), ALLOW);
    assert_eq!(x64(&c, "getpid", [0, 2, 0, 0, 0, 0]), ALLOW);
    assert_eq!(x64(&c, "getppid", [5, 0, 0, 0, 0, 0]), errno(2), "5 <= 20");
    assert_eq!(
        x64(&c, "getppid", [100, 0, 0, 0, 0, 0]),
        errno(2),
        "100 >= 10"
    );
    assert_eq!(x64(&c, "getppid", [u64::MAX, 0, 0, 0, 0, 0]), errno(2));

    let err = compile(&section(
        json!({ "defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        { "names": ["getpid"], "action": "SCMP_ACT_LOG",
          "args": [{ "index": 6, "value": 1, "op": "SCMP_CMP_EQ" }] } ]}),
    ))
    .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("getpid") && msg.contains("index 6"), "{msg}");
}

// ---------------------------------------------------------------------------------------
// Notify and flags.

#[test]
fn notify_requests_a_listener_and_write_is_refused() {
    let c = build(json!({ "defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        { "names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY" } ]}));
    assert!(c.needs_listener());
    assert_eq!(c.flags(), FLAG_NEW_LISTENER);
    assert_eq!(x64(&c, "mkdirat", NO_ARGS), libc::SECCOMP_RET_USER_NOTIF);

    let c = build(json!({ "defaultAction": "SCMP_ACT_ALLOW",
        "flags": ["SECCOMP_FILTER_FLAG_TSYNC"],
        "syscalls": [{ "names": ["mkdir"], "action": "SCMP_ACT_NOTIFY" }]}));
    assert_eq!(c.flags(), FLAG_TSYNC | FLAG_NEW_LISTENER | FLAG_TSYNC_ESRCH);

    for names in [json!(["write"]), json!(["read", "write"])] {
        let err = compile(&section(json!({ "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{ "names": names, "action": "SCMP_ACT_NOTIFY" }]})))
        .unwrap_err();
        assert!(matches!(err, SeccompError::NotifyWrite), "{err}");
    }
    // A notify rule that names no known syscall, or loses to an earlier unconditional rule,
    // asks for no listener.
    let c = build(json!({ "defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        { "names": ["no_such_syscall"], "action": "SCMP_ACT_NOTIFY" },
        { "names": ["mkdir"], "action": "SCMP_ACT_LOG" },
        { "names": ["mkdir"], "action": "SCMP_ACT_NOTIFY" } ]}));
    assert!(!c.needs_listener());
    assert_eq!(c.flags(), 0);
    // write with another action is fine.
    let c = build(json!({ "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{ "names": ["write"], "action": "SCMP_ACT_LOG" }]}));
    assert!(!c.needs_listener());
    assert_eq!(c.flags(), 0);
}

#[test]
fn filter_flags() {
    let c = build(json!({ "defaultAction": "SCMP_ACT_ALLOW", "flags": [
        "SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"
    ]}));
    assert_eq!(c.flags(), FLAG_TSYNC | FLAG_LOG | FLAG_SPEC_ALLOW);
    assert_eq!(c.flags(), 7);
    let err = compile(&section(json!({ "defaultAction": "SCMP_ACT_ALLOW",
        "flags": ["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"] })))
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"),
        "{err}"
    );
    assert!(serde_json::from_value::<LinuxSeccomp>(json!({
        "defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_BOGUS"] }))
    .is_err());
}

// ---------------------------------------------------------------------------------------
// Program size and long jumps.

#[test]
fn programs_over_4096_instructions_are_refused() {
    let rules: Vec<Value> = (0..1100u64)
        .map(|v| {
            json!({ "names": ["getpid"], "action": "SCMP_ACT_LOG",
                         "args": [{ "index": 0, "value": v << 20, "op": "SCMP_CMP_EQ" }] })
        })
        .collect();
    let err = compile(&section(
        json!({ "defaultAction": "SCMP_ACT_ALLOW", "syscalls": rules }),
    ))
    .unwrap_err();
    match err {
        SeccompError::TooLarge { len } => assert!(len > MAX_INSNS),
        other => panic!("{other}"),
    }
}

/// A profile big enough that many jumps need trampolines, over all three ABIs, checked
/// against the reference model everywhere.
fn large_profile() -> Value {
    let ops = [
        "SCMP_CMP_EQ",
        "SCMP_CMP_NE",
        "SCMP_CMP_LT",
        "SCMP_CMP_LE",
        "SCMP_CMP_GE",
        "SCMP_CMP_GT",
        "SCMP_CMP_MASKED_EQ",
    ];
    let mut rules = vec![json!({ "names": Abi::X86_64.syscalls().step_by(3)
                                     .map(|(n, _)| n).collect::<Vec<_>>(),
                                 "action": "SCMP_ACT_ALLOW" })];
    for (i, (name, _)) in Abi::X86.syscalls().enumerate().step_by(5) {
        let i = i as u64;
        let arg = |k: u64| {
            let op = ops[((i + k) % 7) as usize];
            json!({ "index": (i + k) % 6, "value": (i * 0x1_0000_0001 + k) << (k * 7),
                    "valueTwo": i << 3, "op": op })
        };
        rules.push(
            json!({ "names": [name], "action": "SCMP_ACT_ERRNO", "errnoRet": i % 50,
                           "args": [arg(0), arg(1)] }),
        );
        rules.push(
            json!({ "names": [name], "action": "SCMP_ACT_TRACE", "errnoRet": i,
                           "args": [arg(2)] }),
        );
    }
    json!({ "defaultAction": "SCMP_ACT_KILL_PROCESS",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "syscalls": rules })
}

fn arg_sets() -> Vec<[u64; 6]> {
    let mut sets = vec![NO_ARGS, [u64::MAX; 6], [1, 2, 3, 4, 5, 6]];
    for i in [0u64, 5, 10, 35, 100, 205] {
        for k in 0..3u64 {
            let v = (i * 0x1_0000_0001 + k) << (k * 7);
            sets.push([v; 6]);
            sets.push([v.wrapping_add(1); 6]);
            sets.push([v.wrapping_sub(1); 6]);
        }
    }
    sets
}

#[test]
fn large_profile_needs_trampolines_and_matches_the_reference() {
    let s = section(large_profile());
    let c = compile(&s).expect("compiles");
    assert!(c.program().len() > 1000, "only {} insns", c.program().len());
    assert!(c.program().len() <= MAX_INSNS);
    assert!(
        c.program().iter().any(|i| i.code == bpf::JMP_JA),
        "no trampoline: the test does not exercise long jumps"
    );
    check_against_reference(&s, &c, &arg_sets());
}

#[test]
fn serialisation_round_trips_and_rejects_damage() {
    let c = compile(&section(large_profile())).expect("compiles");
    let c = Compiled {
        skipped: vec!["a".into(), "bc".into()],
        ..c
    };
    let bytes = c.to_bytes();
    assert_eq!(Compiled::from_bytes(&bytes).expect("round trip"), c);
    assert!(
        Compiled::from_bytes(&bytes[..bytes.len() - 1]).is_err(),
        "short"
    );
    assert!(Compiled::from_bytes(&bytes[..20]).is_err(), "header only");
    let mut bad = bytes.clone();
    bad[0] ^= 1;
    assert!(Compiled::from_bytes(&bad).is_err(), "magic");
    let mut bad = bytes.clone();
    bad[12] = 0x80;
    assert!(Compiled::from_bytes(&bad).is_err(), "flags");
    let mut bad = bytes.clone();
    bad[16] = 1;
    assert!(
        Compiled::from_bytes(&bad).is_err(),
        "notify without NEW_LISTENER"
    );
    // Last instruction is a ret: turn it into a jump past the end.
    let last = HEADER_LEN + 8 * (c.program().len() - 1);
    let mut bad = bytes.clone();
    bad[last..last + 2].copy_from_slice(&bpf::JMP_JEQ_K.to_le_bytes());
    bad[last + 2] = 1;
    assert!(Compiled::from_bytes(&bad).is_err(), "jump out of range");
    let mut bad = bytes.clone();
    bad[HEADER_LEN..HEADER_LEN + 2].copy_from_slice(&0x07u16.to_le_bytes());
    assert!(Compiled::from_bytes(&bad).is_err(), "opcode");
    let mut bad = bytes;
    bad[HEADER_LEN + 4..HEADER_LEN + 8].copy_from_slice(&64u32.to_le_bytes());
    assert!(
        Compiled::from_bytes(&bad).is_err(),
        "load beyond seccomp_data"
    );
}

// ---------------------------------------------------------------------------------------
// Cache.

fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).expect("stat").permissions().mode() & 0o7777
}

fn cache_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .expect("read cache dir")
        .map(|e| e.expect("entry").path())
        .collect();
    v.sort();
    v
}

#[test]
fn cache_miss_hit_and_recovery() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("state/seccomp");
    let a = section(large_profile());
    let b = section(json!({ "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [{ "names": ["read", "nosuch"], "action": "SCMP_ACT_ALLOW" }] }));

    let ca = compile_cached(&a, &dir).expect("miss");
    assert_eq!(ca, compile(&a).expect("compiles"));
    assert_eq!(mode(&dir), 0o700);
    let files = cache_files(&dir);
    assert_eq!(files.len(), 1);
    let fa = files[0].clone();
    assert!(fa.extension().is_some_and(|e| e == "bpf"));
    assert_eq!(fa.file_stem().expect("stem").len(), 64);
    assert_eq!(mode(&fa), 0o600);
    let key_a = cache::cache_key(&a).expect("key");

    // A hit returns the same program, including skipped names.
    assert_eq!(compile_cached(&a, &dir).expect("hit"), ca);
    let cb = compile_cached(&b, &dir).expect("miss b");
    assert_eq!(cb.skipped(), ["nosuch"]);
    assert_eq!(compile_cached(&b, &dir).expect("hit b"), cb);
    let fb = cache_files(&dir)
        .into_iter()
        .find(|p| *p != fa)
        .expect("b's file");

    // A file holding another section's program (right format, wrong key) is not trusted.
    std::fs::copy(&fa, &fb).expect("copy");
    assert_eq!(compile_cached(&b, &dir).expect("foreign"), cb);
    // Corrupt, short and empty files are recompiled and rewritten.
    let good = std::fs::read(&fa).expect("read");
    let body = &good[..good.len() - 32];
    assert_eq!(&good[good.len() - 32..], cache::seal(&key_a, body));
    assert_eq!(Compiled::from_bytes(body).expect("valid body"), ca);
    // One flipped bit in a comparand passes the structural check: only the seal catches it.
    let mut flipped = good.clone();
    flipped[HEADER_LEN + 8 + 4] ^= 0x01;
    assert!(Compiled::from_bytes(&flipped[..flipped.len() - 32]).is_ok());
    let damaged: [&[u8]; 4] = [b"garbage", &good[..good.len() / 2], b"", &flipped];
    for bytes in damaged {
        std::fs::write(&fa, bytes).expect("damage");
        assert_eq!(compile_cached(&a, &dir).expect("recovers"), ca);
        assert_eq!(std::fs::read(&fa).expect("reread"), good);
    }
    // A group-writable file is not trusted either; the rewrite is 0600 again.
    std::fs::set_permissions(&fa, std::os::unix::fs::PermissionsExt::from_mode(0o666))
        .expect("chmod");
    assert_eq!(compile_cached(&a, &dir).expect("rewrites"), ca);
    assert_eq!(mode(&fa), 0o600);
    assert_eq!(cache_files(&dir).len(), 2, "no temporary files left behind");

    // A directory others can write to is refused.
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o777))
        .expect("chmod dir");
    let err = compile_cached(&a, &dir).unwrap_err();
    assert!(
        matches!(err, SeccompError::CacheDirInsecure { .. }),
        "{err}"
    );
    assert!(
        err.to_string().contains("writable by group or others"),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------
// Podman's default profile.

const PODMAN_SOURCE: &str = "/usr/share/containers/seccomp.json";

fn fixture_path() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src/seccomp/default.json")
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// Converts podman's source profile (archMap, includes/excludes) into the OCI section podman
/// would generate for an amd64 container with `caps` as its bounding set. minKernel is taken
/// as satisfied (this host runs 6.x).
fn podman_to_oci(src: &Value, caps: &[&str]) -> LinuxSeccomp {
    const GOARCH: &str = "amd64";
    let mut out = serde_json::Map::new();
    out.insert("defaultAction".into(), src["defaultAction"].clone());
    if src["defaultErrnoRet"].is_u64() {
        out.insert("defaultErrnoRet".into(), src["defaultErrnoRet"].clone());
    }
    let arches = src["archMap"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["architecture"] == "SCMP_ARCH_X86_64")
        .map(|m| {
            let mut v = vec![m["architecture"].clone()];
            v.extend(
                m["subArchitectures"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .cloned(),
            );
            v
        })
        .unwrap_or_default();
    if !arches.is_empty() {
        out.insert("architectures".into(), Value::Array(arches));
    }
    if src["flags"].as_array().is_some_and(|f| !f.is_empty()) {
        out.insert("flags".into(), src["flags"].clone());
    }
    let mut syscalls = Vec::new();
    for call in src["syscalls"].as_array().into_iter().flatten() {
        let (inc, exc) = (&call["includes"], &call["excludes"]);
        let inc_arches = strings(&inc["arches"]);
        if !inc_arches.is_empty() && !inc_arches.contains(&GOARCH) {
            continue;
        }
        if strings(&inc["caps"]).iter().any(|c| !caps.contains(c)) {
            continue;
        }
        if strings(&exc["arches"]).contains(&GOARCH) {
            continue;
        }
        if strings(&exc["caps"]).iter().any(|c| caps.contains(c)) {
            continue;
        }
        let mut entry = json!({ "names": call["names"], "action": call["action"] });
        if call["errnoRet"].is_u64() {
            entry["errnoRet"] = call["errnoRet"].clone();
        }
        if call["args"].as_array().is_some_and(|a| !a.is_empty()) {
            entry["args"] = call["args"].clone();
        }
        syscalls.push(entry);
    }
    out.insert("syscalls".into(), Value::Array(syscalls));
    serde_json::from_value(Value::Object(out)).expect("podman's profile converts")
}

fn load_fixture() -> LinuxSeccomp {
    let path = fixture_path();
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Behaviour podman's default profile (containers-common 0.50 as on Debian 12) gives an amd64
/// container with Docker's default capabilities.
fn check_podman_behaviour(s: &LinuxSeccomp, c: &Compiled) {
    let enosys = errno(libc::ENOSYS);
    let eperm = errno(libc::EPERM);
    assert!(c.program().len() <= MAX_INSNS);
    assert!(!c.needs_listener());
    assert_eq!(c.flags(), 0);
    for name in [
        "read",
        "write",
        "openat",
        "execve",
        "exit_group",
        "futex",
        "mmap",
        "clone3",
    ] {
        assert_eq!(x64(c, name, NO_ARGS), ALLOW, "{name}");
        assert_eq!(x32(c, name, NO_ARGS), ALLOW, "x32 {name}");
    }
    assert_eq!(i386(c, "read", NO_ARGS), ALLOW);
    assert_eq!(i386(c, "socketcall", NO_ARGS), ALLOW);
    // The profile allows reboot and relies on CAP_SYS_BOOT being absent.
    assert_eq!(x64(c, "reboot", NO_ARGS), ALLOW);
    // Explicit EPERM list, and CAP_SYS_ADMIN / CAP_SYS_MODULE / ... excluded groups.
    for name in [
        "kexec_load",
        "userfaultfd",
        "vmsplice",
        "bpf",
        "perf_event_open",
        "init_module",
        "acct",
        "kcmp",
        "iopl",
        "settimeofday",
        "vhangup",
        "open_by_handle_at",
    ] {
        assert_eq!(x64(c, name, NO_ARGS), eperm, "{name}");
    }
    // CAP_SYS_CHROOT is in Docker's set.
    assert_eq!(x64(c, "chroot", NO_ARGS), ALLOW);
    // setns: allowed by the big list first, so the later EPERM rule loses (libseccomp).
    assert_eq!(x64(c, "setns", NO_ARGS), ALLOW);
    // personality: only the listed personas.
    for p in [0, 8, 0x20000, 0x20008, 0xffff_ffff] {
        assert_eq!(x64(c, "personality", a0(p)), ALLOW, "persona {p:#x}");
        assert_eq!(i386(c, "personality", a0(p)), ALLOW, "i386 persona {p:#x}");
    }
    for p in [1, 9, 0x0040_0000, 0x1_0000_0000] {
        assert_eq!(x64(c, "personality", a0(p)), enosys, "persona {p:#x}");
    }
    // On i386 the high word is not compared: 0x1_0000_0000 is persona 0 there.
    assert_eq!(i386(c, "personality", a0(0x1_0000_0000)), ALLOW);
    // clone has no argument rule in this profile: namespace flags are up to capabilities.
    let newns = (libc::CLONE_NEWUSER | libc::CLONE_NEWNS | libc::CLONE_NEWNET) as u64;
    assert_eq!(x64(c, "clone", a0(newns)), ALLOW);
    assert_eq!(x64(c, "unshare", a0(newns)), ALLOW);
    // socket: unconditional with CAP_AUDIT_WRITE, so AF_VSOCK and NETLINK_AUDIT pass.
    assert_eq!(
        x64(c, "socket", [libc::AF_VSOCK as u64, 1, 0, 0, 0, 0]),
        ALLOW
    );
    assert_eq!(x64(c, "socket", [16, 3, 9, 0, 0, 0]), ALLOW);
    // Unlisted syscalls get the default ENOSYS; foreign arches are killed.
    assert_eq!(x64(c, "afs_syscall", NO_ARGS), enosys);
    assert_eq!(x64(c, "uselib", NO_ARGS), eperm);
    assert_eq!(run(c.program(), AUDIT_ARCH_X86_64, 999, NO_ARGS), enosys);
    assert_eq!(
        run(c.program(), AUDIT_ARCH_AARCH64, 63, NO_ARGS),
        KILL_PROCESS
    );
    // Skipped: names from other architectures only.
    for name in ["arm_fadvise64_64", "s390_runtime_instr", "sync_file_range2"] {
        assert!(
            !c.skipped().iter().any(|n| n == name),
            "{name} is arm/s390 only"
        );
    }
    assert!(c.skipped().iter().all(|n| {
        [Abi::X86_64, Abi::X86, Abi::X32]
            .iter()
            .all(|&abi| syscall_number(abi, n).is_none())
    }));
    // Dispatch is a tree: no x86_64 syscall takes more than a few dozen instructions.
    let worst = Abi::X86_64
        .syscalls()
        .map(|(_, n)| run_steps(c.program(), AUDIT_ARCH_X86_64, n, NO_ARGS).1)
        .max()
        .unwrap_or(0);
    println!("podman profile: worst x86_64 path {worst} instructions");
    assert!(worst <= 24, "worst x86_64 path is {worst} instructions");
    check_against_reference(
        s,
        c,
        &[NO_ARGS, a0(8), a0(0x1_0000_0008), a0(0xffff_ffff), a0(1)],
    );
}

#[test]
fn podman_source_profile_converts_compiles_and_matches_the_fixture() {
    let Ok(text) = std::fs::read_to_string(PODMAN_SOURCE) else {
        println!("note: {PODMAN_SOURCE} absent, skipping (apt-get install golang-github-containers-common)");
        return;
    };
    let src: Value = serde_json::from_str(&text).expect("podman's profile is JSON");
    let s = podman_to_oci(&src, crate::process::DOCKER_DEFAULT_CAPS);
    assert_eq!(
        s.architectures().as_deref(),
        Some(&[Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32][..])
    );
    let c = compile(&s).expect("podman's profile compiles");
    check_podman_behaviour(&s, &c);

    let pretty = serde_json::to_string_pretty(&s).expect("serialises") + "\n";
    let path = fixture_path();
    let current = std::fs::read_to_string(&path).ok();
    if current.is_none() || std::env::var_os("TINYO_UPDATE_SECCOMP_FIXTURE").is_some() {
        std::fs::write(&path, &pretty).expect("write the fixture");
        println!("wrote {}", path.display());
    } else if current.as_deref() != Some(pretty.as_str()) {
        println!(
            "note: {} differs from this host's {PODMAN_SOURCE}; rerun with \
             TINYO_UPDATE_SECCOMP_FIXTURE=1 to regenerate it",
            path.display()
        );
    }
}

#[test]
fn podman_fixture_compiles_and_behaves() {
    let s = load_fixture();
    let c = compile(&s).expect("the fixture compiles");
    println!(
        "podman fixture: {} instructions, skipped {:?}",
        c.program().len(),
        c.skipped()
    );
    check_podman_behaviour(&s, &c);
}

#[test]
fn podman_profile_timing_report() {
    // Prints timings (run with --release --nocapture); asserts nothing about them.
    let s = load_fixture();
    let n = 200u32;
    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(compile(std::hint::black_box(&s)).expect("compiles"));
    }
    let compile_time = t.elapsed() / n;
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("cache");
    let mut miss = std::time::Duration::ZERO;
    for _ in 0..n {
        for f in std::fs::read_dir(&dir).into_iter().flatten() {
            std::fs::remove_file(f.expect("entry").path()).expect("remove");
        }
        let t = Instant::now();
        std::hint::black_box(compile_cached(&s, &dir).expect("miss"));
        miss += t.elapsed();
    }
    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(compile_cached(&s, &dir).expect("hit"));
    }
    let hit = t.elapsed() / n;
    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(cache::cache_key(&s).expect("key"));
    }
    let key = t.elapsed() / n;
    let insns = compile(&s).expect("compiles").program().len();
    println!(
        "podman profile: {insns} instructions; compile {compile_time:?}; cache miss \
         (key+compile+write) {:?}; cache hit {hit:?} (of which key {key:?})",
        miss / n
    );
}

// ---------------------------------------------------------------------------------------
// Real kernel.

/// Forks; the child runs `f`, which must be async-signal-safe (no allocation, no locks: every
/// buffer is prepared before the fork), and `_exit`s with its result. Returns the wait status.
fn in_child(f: impl FnOnce() -> i32) -> libc::c_int {
    // SAFETY: the child only runs `f` (kept async-signal-safe by the callers) and `_exit`s;
    // it never returns into the test harness.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", io::Error::last_os_error());
    if pid == 0 {
        let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or(101);
        // SAFETY: `_exit` is async-signal-safe and skips the harness's exit handlers.
        unsafe { libc::_exit(code) }
    }
    let mut status = 0;
    loop {
        // SAFETY: waiting for our own child with a valid status pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid {
            return status;
        }
        assert_eq!(io::Error::last_os_error().raw_os_error(), Some(libc::EINTR));
    }
}

fn no_new_privs() -> bool {
    // SAFETY: PR_SET_NO_NEW_PRIVS takes integer arguments only.
    let r = unsafe {
        libc::prctl(
            libc::PR_SET_NO_NEW_PRIVS,
            1 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    };
    r == 0
}

/// A raw syscall with up to four arguments: `Ok(return)` or `Err(errno)`.
fn sys(nr: libc::c_long, a: [u64; 4]) -> Result<libc::c_long, i32> {
    // SAFETY: the syscalls used by these tests take integers (or null pointers) only.
    let r = unsafe { libc::syscall(nr, a[0], a[1], a[2], a[3]) };
    if r < 0 {
        Err(io::Error::last_os_error().raw_os_error().unwrap_or(0))
    } else {
        Ok(r)
    }
}

fn exited_with(status: libc::c_int) -> Option<i32> {
    libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status))
}

#[test]
fn kernel_applies_errno_and_64_bit_argument_rules() {
    let c = build(json!({ "defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        { "names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38 },
        { "names": ["getpgid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 18,
          "args": [{ "index": 0, "value": 0x1_0000_0000u64, "op": "SCMP_CMP_EQ" }] }
    ]}));
    let status = in_child(|| {
        if !no_new_privs() {
            return 10;
        }
        if install(&c).is_err() {
            return 11;
        }
        if sys(libc::SYS_getppid, [0; 4]) != Err(libc::ENOSYS) {
            return 12;
        }
        // pid 0 is "self": allowed, also with a different high word (the kernel truncates).
        if sys(libc::SYS_getpgid, [0; 4]).is_err() {
            return 13;
        }
        if sys(libc::SYS_getpgid, [0x1_0000_0000, 0, 0, 0]) != Err(libc::EXDEV) {
            return 14;
        }
        if sys(libc::SYS_getpgid, [0x2_0000_0000, 0, 0, 0]).is_err() {
            return 15;
        }
        0
    });
    assert_eq!(exited_with(status), Some(0), "wait status {status:#x}");
}

#[test]
fn kernel_kill_process_delivers_sigsys() {
    let c = build(json!({ "defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        { "names": ["getppid"], "action": "SCMP_ACT_KILL_PROCESS" } ]}));
    let status = in_child(|| {
        let no_core = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: a valid rlimit pointer.
        if unsafe { libc::setrlimit(libc::RLIMIT_CORE, &no_core) } != 0 {
            return 20;
        }
        if !no_new_privs() || install(&c).is_err() {
            return 21;
        }
        let _ = sys(libc::SYS_getppid, [0; 4]);
        22
    });
    assert!(
        libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGSYS,
        "wait status {status:#x}"
    );
}

#[test]
fn kernel_returns_a_listener_for_notify() {
    let c = build(json!({ "defaultAction": "SCMP_ACT_ALLOW",
        "flags": ["SECCOMP_FILTER_FLAG_TSYNC"],
        "syscalls": [{ "names": ["getppid"], "action": "SCMP_ACT_NOTIFY" }] }));
    let status = in_child(|| {
        if !no_new_privs() {
            return 30;
        }
        match install(&c) {
            Ok(Some(fd)) if fd.as_raw_fd() >= 0 => 0,
            Ok(_) => 31,
            Err(_) => 32,
        }
    });
    assert_eq!(exited_with(status), Some(0), "wait status {status:#x}");
}

#[test]
fn kernel_accepts_the_podman_profile() {
    let c = compile(&load_fixture()).expect("compiles");
    let mut fds = [0; 2];
    // SAFETY: a valid two-int array.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    let status = in_child(|| {
        if !no_new_privs() {
            return 40;
        }
        if install(&c).is_err() {
            return 41;
        }
        if sys(libc::SYS_getpid, [0; 4]).is_err() {
            return 42;
        }
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: a valid timespec pointer.
        if unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) } != 0 {
            return 43;
        }
        // SAFETY: writing one byte from a static buffer to our pipe.
        if unsafe { libc::write(fds[1], b"x".as_ptr().cast(), 1) } != 1 {
            return 44;
        }
        // Denied by the profile (EPERM list, CAP_SYS_ADMIN group), then an argument rule:
        // persona 0xffffffff only queries, persona 1 is not in the list (default ENOSYS).
        if sys(libc::SYS_userfaultfd, [libc::O_CLOEXEC as u64, 0, 0, 0]) != Err(libc::EPERM) {
            return 45;
        }
        if sys(libc::SYS_bpf, [0; 4]) != Err(libc::EPERM) {
            return 46;
        }
        if sys(libc::SYS_personality, [0xffff_ffff, 0, 0, 0]).is_err() {
            return 47;
        }
        if sys(libc::SYS_personality, [1, 0, 0, 0]) != Err(libc::ENOSYS) {
            return 48;
        }
        0
    });
    // SAFETY: closing the pipe we created; nothing else uses these descriptors.
    unsafe {
        libc::close(fds[1]);
    }
    let mut byte = [0u8; 1];
    // SAFETY: reading one byte into a valid buffer.
    let n = unsafe { libc::read(fds[0], byte.as_mut_ptr().cast(), 1) };
    // SAFETY: as above.
    unsafe {
        libc::close(fds[0]);
    }
    assert_eq!(exited_with(status), Some(0), "wait status {status:#x}");
    assert_eq!((n, byte), (1, *b"x"));
}

#[test]
fn the_embedded_default_profile_parses_and_compiles() {
    let p = super::default_profile();
    assert!(p.syscalls().as_ref().is_some_and(|s| s.len() > 10));
    let c = compile(&p).unwrap();
    assert!(c.program().len() > 100);
}
