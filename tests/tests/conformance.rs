//! Conformance with runc on what its clients depend on: `runc spec`'s own config, signal
//! dispositions a container starts with, runc's error words for a program that cannot be
//! executed, setup failures that must fail `create`, and a seccomp profile that allows only
//! what a shell needs. runc is the oracle wherever it can run the same bundle.
//!
//! Runtimes run inside `unshare --mount --propagation private` (see `tinyo_tests::oci`).

use std::process::Command;

use tinyo_tests::busybox::Bundle;
use tinyo_tests::host::unique;
use tinyo_tests::oci::Runtime;

/// The config `runc spec` writes (runc 1.1: ambient capabilities without inheritable ones),
/// made non-interactive and given a shell probe.
fn runc_spec_bundle(id: &str, script: &str) -> Bundle {
    let bundle = Bundle::new(id, &["true"]);
    std::fs::remove_file(bundle.path().join("config.json")).unwrap();
    let st = Command::new(tinyo_tests::host::require_tool("runc", "runc"))
        .arg("spec")
        .current_dir(bundle.path())
        .status()
        .unwrap();
    assert!(st.success(), "runc spec");
    let mut cfg = bundle.config();
    assert!(cfg["process"]["capabilities"]["inheritable"].is_null());
    assert!(cfg["process"]["capabilities"]["ambient"].is_array());
    cfg["process"]["terminal"] = false.into();
    cfg["process"]["args"] = serde_json::json!(["/bin/sh", "-c", script]);
    cfg["root"]["readonly"] = false.into();
    cfg["linux"]["cgroupsPath"] = format!("tinyo-test-{id}").into();
    bundle.write_config(&cfg);
    bundle
}

#[test]
fn runc_spec_default_config_runs_as_under_runc() {
    let id = unique("cf-spec");
    let bundle = runc_spec_bundle(&id, "grep -E '^(Cap|NoNewPrivs)' /proc/self/status; id");
    let (rc, want, rerr) = Runtime::runc().run(&bundle, &id);
    assert_eq!(rc, Some(0), "runc: {want}\n{rerr}");
    let (tc, got, terr) = Runtime::tinyo().run(&bundle, &id);
    assert_eq!(tc, Some(0), "tinyo: {got}\n{terr}");
    assert_eq!(
        got, want,
        "tinyo (left) vs runc (right); tinyo stderr {terr}"
    );
}

/// Traps every catchable signal 1–31 but SIGKILL and SIGSTOP, sends each to itself and
/// prints which arrived.
const TRAPS: &str = "for s in $(seq 1 31); do [ $s = 9 ] || [ $s = 19 ] && continue; \
    trap \"echo got $s\" $s; kill -$s $$; done";

#[test]
fn every_signal_is_trappable_in_the_container() {
    let id = unique("cf-sig");
    let bundle = Bundle::new(&id, &["/bin/sh", "-c", TRAPS]);
    let traps: String = (1..=31)
        .filter(|s| *s != 9 && *s != 19)
        .map(|s| format!("got {s}\n"))
        .collect();
    for rt in [Runtime::runc(), Runtime::tinyo()] {
        let (code, out, err) = rt.run(&bundle, &id);
        assert_eq!(code, Some(0), "{}: {out}\n{err}", rt.name);
        assert_eq!(out, traps, "{}: stderr {err}", rt.name);
    }
    // The container's first program starts with nothing ignored and nothing blocked (runc
    // leaves signal 32, the Go runtime's, ignored).
    let probe = Bundle::new(
        &id,
        &["/bin/grep", "-E", "^Sig(Ign|Blk)", "/proc/self/status"],
    );
    let (code, out, err) = Runtime::tinyo().run(&probe, &id);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        out,
        "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n"
    );
}

/// What follows runc's `unable to start container process: ` (or tinyo's last `: `-free
/// prefix): the part podman reads to choose exit code 126 or 127.
fn exec_error(stderr: &str) -> String {
    let line = stderr
        .lines()
        .find(|l| l.contains("exec"))
        .unwrap_or(stderr);
    let line = line.trim_end_matches('"');
    let at = line
        .find("exec: ")
        .or_else(|| line.find("exec "))
        .unwrap_or(0);
    line[at..].replace("\\\"", "\"")
}

#[test]
fn exec_errors_use_runcs_words() {
    let cases = [
        ("/no/such/command", "no such file or directory"),
        ("nosuch", "executable file not found in $PATH"),
        ("/etc", "permission denied"),
        ("/etc/passwd", "permission denied"),
    ];
    let (runc, tinyo) = (Runtime::runc(), Runtime::tinyo());
    for (cmd, words) in cases {
        let id = unique("cf-exec");
        let bundle = Bundle::new(&id, &[cmd]);
        let (rc, _, rerr) = runc.run(&bundle, &id);
        let (tc, _, terr) = tinyo.run(&bundle, &id);
        assert_ne!(rc, Some(0), "runc {cmd}");
        assert_ne!(tc, Some(0), "tinyo {cmd}");
        assert!(exec_error(&rerr).ends_with(words), "runc {cmd}: {rerr}");
        assert_eq!(exec_error(&terr), exec_error(&rerr), "tinyo {cmd}: {terr}");
        // create fails, so no container is left to delete.
        assert!(!tinyo.out(&["state", &id]).status.success());
    }
}

#[test]
fn exec_into_a_running_container_fails_with_runcs_words() {
    let rt = Runtime::tinyo();
    let id = unique("cf-exec2");
    let bundle = Bundle::new(&id, &["sleep", "100"]);
    rt.track(&id);
    rt.ok(&[
        "run",
        "-d",
        "--bundle",
        bundle.path().to_str().unwrap(),
        &id,
    ]);
    rt.wait_status(&id, "running");
    for (cmd, words) in [
        ("/etc", "exec: \"/etc\": permission denied"),
        (
            "nosuch",
            "exec: \"nosuch\": executable file not found in $PATH",
        ),
    ] {
        let o = rt.out(&["exec", &id, cmd]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_ne!(o.status.code(), Some(0), "{cmd}");
        assert!(err.contains(words), "{cmd}: {err}");
    }
    rt.ok(&["delete", "--force", &id]);
}

#[test]
fn setup_failures_fail_create_not_the_container() {
    // Effective capabilities beyond the permitted set: capset(2) refuses them.
    let rt = Runtime::tinyo();
    let id = unique("cf-caps");
    let bundle = Bundle::new(&id, &["true"]);
    let mut cfg = bundle.config();
    cfg["process"]["capabilities"]["effective"] = serde_json::json!(["CAP_SYS_ADMIN"]);
    cfg["process"]["capabilities"]["permitted"] = serde_json::json!(["CAP_KILL"]);
    bundle.write_config(&cfg);
    rt.track(&id);
    let o = rt.out(&["create", "--bundle", bundle.path().to_str().unwrap(), &id]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_ne!(o.status.code(), Some(0), "create must fail: {err}");
    assert!(err.contains("setting capabilities"), "{err}");
    assert!(!rt.out(&["state", &id]).status.success(), "nothing left");
}

#[test]
fn duplicate_additional_gids_are_dropped_like_runc() {
    let id = unique("cf-gids");
    let bundle = Bundle::new(&id, &["/bin/sh", "-c", "grep Groups /proc/self/status"]);
    let mut cfg = bundle.config();
    cfg["process"]["user"] =
        serde_json::json!({"uid": 0, "gid": 0, "additionalGids": [10, 10, 1, 10]});
    bundle.write_config(&cfg);
    let (rc, want, rerr) = Runtime::runc().run(&bundle, &id);
    assert_eq!(rc, Some(0), "runc: {rerr}");
    let (tc, got, terr) = Runtime::tinyo().run(&bundle, &id);
    assert_eq!(tc, Some(0), "tinyo: {terr}");
    assert_eq!(got, want);
    assert_eq!(got.trim(), "Groups:\t1 10");
}

/// An allow-list with what busybox's shell needs and nothing of a runtime's own
/// (no `close_range`, `sendmsg`, `capset`, `setuid` …).
const SHELL_SYSCALLS: &[&str] = &[
    "execve",
    "arch_prctl",
    "set_tid_address",
    "brk",
    "mmap",
    "munmap",
    "mprotect",
    "read",
    "write",
    "writev",
    "open",
    "openat",
    "close",
    "fstat",
    "newfstatat",
    "stat",
    "lstat",
    "statx",
    "exit",
    "exit_group",
    "rt_sigaction",
    "rt_sigprocmask",
    "rt_sigreturn",
    "getpid",
    "getppid",
    "getuid",
    "geteuid",
    "getgid",
    "getegid",
    "ioctl",
    "fcntl",
    "uname",
    "getcwd",
    "dup2",
    "dup3",
    "wait4",
    "clone",
    "fork",
    "vfork",
    "lseek",
    "access",
    "faccessat",
    "faccessat2",
    "getdents64",
    "prlimit64",
    "sigaltstack",
    "futex",
];

#[test]
fn a_shell_only_seccomp_profile_runs_the_container() {
    let rt = Runtime::tinyo();
    let id = unique("cf-seccomp");
    let bundle = Bundle::new(
        &id,
        &["/bin/sh", "-c", "echo hello; ls / >/dev/null; echo done"],
    );
    let mut cfg = bundle.config();
    cfg["linux"]["seccomp"] = serde_json::json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [{"names": SHELL_SYSCALLS, "action": "SCMP_ACT_ALLOW"}],
    });
    // With noNewPrivileges (runc spec's default) the filter is the last step before execve,
    // so nothing of the runtime's own setup runs under it.
    cfg["process"]["noNewPrivileges"] = true.into();
    bundle.write_config(&cfg);
    let (code, out, err) = rt.run(&bundle, &id);
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert_eq!(out, "hello\ndone\n", "{err}");
}

/// The optional fields of the container's `/` in its mountinfo: what its propagation is.
const ROOT_PROPAGATION: &str = "awk '$5 == \"/\" { for (i = 7; $i != \"-\"; i++) \
    { sub(/:.*/, \"\", $i); printf \"%s \", $i } print \"end\" }' /proc/self/mountinfo";

#[test]
fn every_rootfs_propagation_runs_with_and_without_pivot_root() {
    let rt = Runtime::tinyo();
    for (mode, want) in [
        ("private", "end"),
        ("rprivate", "end"),
        ("shared", "shared end"),
        ("rshared", "shared end"),
        // A slave of a private mount (the test's namespace is private) has no master.
        ("slave", "end"),
        ("rslave", "end"),
        ("unbindable", "unbindable end"),
        ("runbindable", "unbindable end"),
    ] {
        for no_pivot in [false, true] {
            let id = unique("cf-prop");
            let bundle = Bundle::new(&id, &["/bin/sh", "-c", ROOT_PROPAGATION]);
            let mut cfg = bundle.config();
            cfg["linux"]["rootfsPropagation"] = mode.into();
            bundle.write_config(&cfg);
            rt.track(&id);
            let b = bundle.path().to_str().unwrap();
            let mut args = vec!["run", "--bundle", b];
            if no_pivot {
                args.push("--no-pivot");
            }
            args.push(&id);
            let o = rt.out(&args);
            let (out, err) = (
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr),
            );
            assert!(o.status.success(), "{mode} no_pivot={no_pivot}: {err}");
            assert_eq!(out.trim(), want, "{mode} no_pivot={no_pivot}: {err}");
        }
    }
}

#[test]
fn recursive_atime_options_match_runc() {
    let src = tempfile::tempdir().unwrap();
    let (runc, tinyo) = (Runtime::runc(), Runtime::tinyo());
    for opt in ["rnorelatime", "rrelatime", "rnoatime", "rstrictatime"] {
        let id = unique("cf-atime");
        let script = "awk '$5 == \"/mnt/v\" { n = split($6, o, \",\"); \
            for (i = 1; i <= n; i++) if (o[i] ~ /atime/) printf \"%s \", o[i]; print \"end\" }' \
            /proc/self/mountinfo";
        let bundle = Bundle::new(&id, &["/bin/sh", "-c", script]);
        let mut cfg = bundle.config();
        cfg["mounts"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({
                "destination": "/mnt/v", "type": "bind",
                "source": src.path(), "options": ["rbind", opt]
            }));
        bundle.write_config(&cfg);
        let (rc, want, rerr) = runc.run(&bundle, &id);
        assert_eq!(rc, Some(0), "runc {opt}: {rerr}");
        let (tc, got, terr) = tinyo.run(&bundle, &id);
        assert_eq!(tc, Some(0), "tinyo {opt}: {terr}");
        assert_eq!(got, want, "{opt}: tinyo (left) vs runc (right)");
        if opt == "rnorelatime" {
            // The source's mode is kept: /tmp's filesystem here is relatime.
            let host = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
            assert!(!got.contains("noatime"), "{got} (host: {host})");
        }
    }
}

/// linux.devices makes nodes (a FIFO too); only linux.resources.devices and the default list
/// decide which of them may be opened, as under runc.
#[test]
fn config_devices_are_nodes_and_only_resource_rules_allow_them() {
    let script = "test -p /dev/myfifo && echo fifo; test -c /dev/fuse && echo chr; \
        (exec 3<>/dev/fuse) 2>/dev/null && echo opened || echo denied";
    let (runc, tinyo) = (Runtime::runc(), Runtime::tinyo());
    for allow in [false, true] {
        let id = unique("cf-dev");
        let bundle = Bundle::new(&id, &["/bin/sh", "-c", script]);
        let mut cfg = bundle.config();
        cfg["linux"]["devices"] = serde_json::json!([
            {"path": "/dev/myfifo", "type": "p", "major": 0, "minor": 0, "fileMode": 420},
            {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 438}
        ]);
        let mut rules = vec![serde_json::json!({"allow": false, "access": "rwm"})];
        if allow {
            rules.push(serde_json::json!(
                {"allow": true, "type": "c", "major": 10, "minor": 229, "access": "rwm"}
            ));
        }
        cfg["linux"]["resources"]["devices"] = rules.into();
        bundle.write_config(&cfg);
        let (rc, want, rerr) = runc.run(&bundle, &id);
        assert_eq!(rc, Some(0), "runc allow={allow}: {rerr}");
        let (tc, got, terr) = tinyo.run(&bundle, &id);
        assert_eq!(tc, Some(0), "tinyo allow={allow}: {terr}");
        assert_eq!(got, want, "allow={allow}: tinyo (left) vs runc (right)");
        let open = if allow { "opened" } else { "denied" };
        assert_eq!(got, format!("fifo\nchr\n{open}\n"));
    }
}

/// `tmpcopyup` (podman's `--tmpfs` over an image directory): the tmpfs starts with the image's
/// content, modes and owners, and is read-only afterwards when asked, as under runc (tinyo
/// also keeps the times, which runc resets).
#[test]
fn tmpcopyup_fills_the_tmpfs_with_the_image_content_like_runc() {
    let script = "stat -c '%n %a %u %g %s' /bin /bin/busybox /bin/sh; \
        awk '$2 == \"/bin\" { print $3 }' /proc/self/mounts; \
        touch /bin/new 2>/dev/null && echo writable || echo read-only";
    let (runc, tinyo) = (Runtime::runc(), Runtime::tinyo());
    for ro in [false, true] {
        let id = unique("cf-copyup");
        let bundle = Bundle::new(&id, &["/bin/sh", "-c", script]);
        let mut cfg = bundle.config();
        let mut options = vec!["nosuid", "nodev", "tmpcopyup"];
        if ro {
            options.push("ro");
        }
        cfg["mounts"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({
                "destination": "/bin", "type": "tmpfs", "source": "tmpfs", "options": options
            }));
        bundle.write_config(&cfg);
        let (rc, want, rerr) = runc.run(&bundle, &id);
        assert_eq!(rc, Some(0), "runc ro={ro}: {rerr}");
        let (tc, got, terr) = tinyo.run(&bundle, &id);
        assert_eq!(tc, Some(0), "tinyo ro={ro}: {terr}");
        assert_eq!(got, want, "ro={ro}: tinyo (left) vs runc (right)");
        assert!(got.contains("tmpfs\n"), "{got}");
        assert!(
            got.ends_with(if ro { "read-only\n" } else { "writable\n" }),
            "{got}"
        );
        assert!(
            !bundle.rootfs().join("bin/new").exists(),
            "the image's directory is untouched"
        );
    }
}

/// process.ioPriority, process.scheduler and linux.personality are applied to the container
/// process (runc 1.1 predates the first two, so the kernel's view is the oracle), and values
/// that cannot be applied fail create naming the field.
#[test]
fn io_priority_scheduler_and_personality_are_applied_or_refused() {
    let rt = Runtime::tinyo();
    let id = unique("cf-sched");
    let script =
        "cat /proc/self/personality; ionice; awk '{ print $19, $40, $41 }' /proc/self/stat";
    let bundle = Bundle::new(&id, &["/bin/sh", "-c", script]);
    let mut cfg = bundle.config();
    cfg["process"]["ioPriority"] = serde_json::json!({"class": "IOPRIO_CLASS_BE", "priority": 6});
    cfg["process"]["scheduler"] = serde_json::json!({"policy": "SCHED_BATCH", "nice": 5});
    cfg["linux"]["personality"] = serde_json::json!({"domain": "LINUX32"});
    bundle.write_config(&cfg);
    let (code, out, err) = rt.run(&bundle, &id);
    assert_eq!(code, Some(0), "{err}");
    // personality 8 (PER_LINUX32); best-effort level 6; nice 5, no rt priority, SCHED_BATCH (3).
    assert_eq!(out, "00000008\nbest-effort: prio 6\n5 0 3\n", "{err}");

    for (field, value, words) in [
        (
            "scheduler",
            serde_json::json!({"policy": "SCHED_OTHER", "nice": 30}),
            "process.scheduler.nice",
        ),
        (
            "scheduler",
            serde_json::json!({"policy": "SCHED_FIFO"}),
            "process.scheduler.priority",
        ),
        (
            "ioPriority",
            serde_json::json!({"class": "IOPRIO_CLASS_RT", "priority": 9}),
            "process.ioPriority.priority",
        ),
        (
            "execCPUAffinity",
            serde_json::json!({"initial": "0"}),
            "process.execCPUAffinity",
        ),
    ] {
        let id = unique("cf-sched-bad");
        let bundle = Bundle::new(&id, &["true"]);
        let mut cfg = bundle.config();
        cfg["process"][field] = value;
        bundle.write_config(&cfg);
        let (code, _, err) = rt.run(&bundle, &id);
        assert_ne!(code, Some(0), "{field}");
        assert!(err.contains(words), "{field}: {err}");
    }

    // A field tinyo has never heard of is named, not dropped silently.
    let id = unique("cf-unknown");
    let bundle = Bundle::new(&id, &["true"]);
    let mut cfg = bundle.config();
    cfg["linux"]["fancyNewThing"] = true.into();
    bundle.write_config(&cfg);
    let (code, _, err) = rt.run(&bundle, &id);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("unknown field linux.fancyNewThing"), "{err}");
}

/// A container with every namespace of the host's, as runtime-tools' ns_itype tests make: with
/// mounts it is refused at create naming the first one (tinyo makes no mount in the host's
/// namespace); without, it runs chrooted, and `state`, `kill`, `delete` work.
#[test]
fn a_container_in_the_hosts_namespaces_runs_without_mounts_or_is_refused() {
    let rt = Runtime::tinyo();
    let host_ns = |cfg: &mut serde_json::Value| {
        cfg["linux"]["namespaces"] = serde_json::json!([]);
        cfg.as_object_mut().unwrap().remove("hostname");
    };
    // With runc spec's mounts: refused, nothing left.
    let id = unique("cf-hostns");
    let bundle = Bundle::new(&id, &["true"]);
    let mut cfg = bundle.config();
    host_ns(&mut cfg);
    bundle.write_config(&cfg);
    rt.track(&id);
    let o = rt.out(&["create", "--bundle", bundle.path().to_str().unwrap(), &id]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("no mount namespace") && err.contains("a mount on /proc"),
        "{err}"
    );
    assert!(!rt.out(&["state", &id]).status.success());
    assert!(tinyo_tests::host::leftover_cgroups(&format!("tinyo-test-{id}")).is_empty());

    // Without mounts: runs chrooted, the same as under runc.
    let id = unique("cf-hostns");
    let script = "test -x /bin/busybox && echo chrooted; test -e /proc/self || echo no-proc; \
        test -c /dev/null && echo dev-null";
    let bundle = Bundle::new(&id, &["/bin/sh", "-c", script]);
    let mut cfg = bundle.config();
    host_ns(&mut cfg);
    cfg["mounts"] = serde_json::json!([]);
    cfg["linux"]["maskedPaths"] = serde_json::json!([]);
    cfg["linux"]["readonlyPaths"] = serde_json::json!([]);
    cfg["root"]["readonly"] = false.into();
    bundle.write_config(&cfg);
    // (runc 1.1 cannot run this one: it needs /proc in the root to close descriptors.)
    let want = "chrooted\nno-proc\ndev-null\n";
    // In one mount namespace: tinyo's run must leave its mount table as it found it.
    let probe = format!(
        "before=$(cat /proc/self/mountinfo | wc -l); {} run --root {} --bundle {} {id}; \
         after=$(cat /proc/self/mountinfo | wc -l); echo mounts $before $after",
        tinyo_tests::bins::bin("tinyo").display(),
        rt.root().display(),
        bundle.path().display()
    );
    let o = std::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &probe])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    let (got, counts) = out.rsplit_once("mounts ").unwrap_or((&out, ""));
    assert_eq!(got, want, "{err}");
    let counts: Vec<&str> = counts.split_whitespace().collect();
    assert_eq!(counts.len(), 2, "{out}");
    assert_eq!(
        counts[0], counts[1],
        "tinyo mounted something in the host's namespace"
    );

    // state, kill and delete of such a container.
    let id = unique("cf-hostns");
    let bundle = Bundle::new(&id, &["sleep", "1000"]);
    let mut c2 = cfg.clone();
    c2["process"]["args"] = serde_json::json!(["sleep", "1000"]);
    bundle.write_config(&c2);
    rt.track(&id);
    rt.ok(&[
        "run",
        "-d",
        "--bundle",
        bundle.path().to_str().unwrap(),
        &id,
    ]);
    let st = rt.wait_status(&id, "running");
    let pid = st["pid"].as_i64().unwrap();
    assert!(
        std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "a host pid"
    );
    rt.ok(&["kill", &id, "KILL"]);
    rt.wait_status(&id, "stopped");
    rt.ok(&["delete", &id]);
    assert!(!rt.out(&["state", &id]).status.success());
    assert!(tinyo_tests::host::leftover_cgroups(&format!("tinyo-test-{id}")).is_empty());
}

#[test]
fn a_hostname_without_a_uts_namespace_is_refused_in_runcs_words() {
    let id = unique("cf-uts");
    let bundle = Bundle::new(&id, &["true"]);
    let mut cfg = bundle.config();
    cfg["hostname"] = "box".into();
    cfg["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .retain(|n| n["type"] != "uts");
    bundle.write_config(&cfg);
    let words = "unable to set hostname without a private UTS namespace";
    for rt in [Runtime::runc(), Runtime::tinyo()] {
        let (code, _, err) = rt.run(&bundle, &id);
        assert_ne!(code, Some(0), "{}", rt.name);
        assert!(err.contains(words), "{}: {err}", rt.name);
    }
}

/// With a cgroup namespace, the container sees its own cgroups as the root of every
/// hierarchy it is in (runc makes the namespace once the process is in its cgroups); the
/// controllers of the named systemd hierarchy are left out, as tinyo does not place
/// containers there.
#[test]
fn a_cgroup_namespace_is_rooted_at_the_containers_cgroups_like_runc() {
    let id = unique("cf-cgns");
    let bundle = runc_spec_bundle(&id, "grep -v name=systemd /proc/self/cgroup | sort");
    let mut cfg = bundle.config();
    cfg["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"type": "cgroup"}));
    bundle.write_config(&cfg);
    let (rc, want, rerr) = Runtime::runc().run(&bundle, &id);
    assert_eq!(rc, Some(0), "runc: {want}\n{rerr}");
    assert!(
        want.lines().all(|l| l.ends_with(":/")),
        "runc's view: {want}"
    );
    let (tc, got, terr) = Runtime::tinyo().run(&bundle, &id);
    assert_eq!(tc, Some(0), "tinyo: {got}\n{terr}");
    assert_eq!(
        got, want,
        "tinyo (left) vs runc (right); tinyo stderr {terr}"
    );
}

/// containerd's runc shim matches runc's words: "container not running" from `kill` is a
/// process already gone, not a failure. And `kill --all` of a stopped container still reaches
/// what is left in its cgroup and succeeds: the shim sends it whenever a container of a pod
/// exits, and an error there leaves the CRI plugin retrying the exit forever.
#[test]
fn killing_a_stopped_container_uses_runcs_words_and_all_succeeds() {
    for rt in [Runtime::tinyo(), Runtime::runc()] {
        let id = unique("cf-killstopped");
        let bundle = runc_spec_bundle(&id, "true");
        rt.track(&id);
        let b = bundle.path().to_str().unwrap();
        rt.ok(&["run", "-d", "--bundle", b, &id]);
        rt.wait_status(&id, "stopped");
        let o = rt.out(&["kill", &id, "KILL"]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_ne!(
            o.status.code(),
            Some(0),
            "{}: kill of a stopped container",
            rt.name
        );
        assert!(err.contains("container not running"), "{}: {err}", rt.name);
        rt.ok(&["kill", "--all", &id, "KILL"]);
        rt.ok(&["delete", &id]);
    }
}
