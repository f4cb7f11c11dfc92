//! podman, through conmon, drives tinyo as its OCI runtime (`--runtime <tinyo>`), with a local
//! busybox image and all podman state in a temporary directory, in a private mount namespace.
//! The containers run under podman's default seccomp profile, which tinyo compiles itself.

use std::process::Output;

use tinyo_tests::bins::bin;
use tinyo_tests::busybox;
use tinyo_tests::host::unique;
use tinyo_tests::podman::Podman;

/// podman with tinyo as its runtime and the busybox image.
fn podman() -> Podman {
    Podman::new(&bin("tinyo"), busybox::rootfs())
}

/// `podman run` flags for tinyo (podman's defaults, its seccomp profile included).
fn run_args<'a>(p: &'a Podman, extra: &[&'a str]) -> Vec<&'a str> {
    p.run_args(extra)
}

fn text(o: &Output) -> String {
    format!(
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn podman_run_returns_output_and_exit_code() {
    let p = podman();
    let mut args = run_args(&p, &["--rm"]);
    args.extend([p.image(), "sh", "-c", "echo hi from tinyo; id -u; exit 5"]);
    let o = p.run(&args);
    assert_eq!(o.status.code(), Some(5), "{}", text(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "hi from tinyo\n0\n");
}

#[test]
fn podman_detached_exec_logs_stop_rm() {
    let p = podman();
    let name = unique("pd");
    let script = "echo started; trap 'echo stopping; exit 0' TERM; while true; do sleep 0.1; done";
    let mut args = run_args(&p, &["-d", "--name", &name]);
    args.extend([p.image(), "sh", "-c", script]);
    let o = p.run(&args);
    assert!(o.status.success(), "run -d: {}", text(&o));
    let o = p.run(&[
        "exec",
        &name,
        "sh",
        "-c",
        "echo exec works; cat /proc/1/cmdline | tr '\\0' ' '",
    ]);
    assert!(o.status.success(), "exec: {}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).starts_with("exec works\nsh -c"),
        "{}",
        text(&o)
    );
    let o = p.run(&["stop", "-t", "10", &name]);
    assert!(o.status.success(), "stop: {}", text(&o));
    let o = p.run(&["logs", &name]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "started\nstopping\n",
        "{}",
        text(&o)
    );
    let o = p.run(&["inspect", "--format", "{{.State.ExitCode}}", &name]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "0",
        "{}",
        text(&o)
    );
    let o = p.run(&["rm", &name]);
    assert!(o.status.success(), "rm: {}", text(&o));
    let o = p.run(&["ps", "--all", "--format", "{{.Names}}"]);
    assert!(
        !String::from_utf8_lossy(&o.stdout).contains(&name),
        "{}",
        text(&o)
    );
}

#[test]
fn podman_run_t_gets_a_pty_through_the_console_socket() {
    let p = podman();
    let mut args = run_args(&p, &["--rm", "-t"]);
    args.extend([
        p.image(),
        "sh",
        "-c",
        "tty; test -t 0 && test -t 1 && echo stdio-is-a-tty; exit 4",
    ]);
    let o = p.run(&args);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    // Through the pty, lines end in CR LF.
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).replace('\r', ""),
        "/dev/pts/0\nstdio-is-a-tty\n",
        "{}",
        text(&o)
    );
}

/// `podman build` with a RUN step: buildah runs it through `tinyo create/start/state/delete`
/// with capabilities listed as ambient but not inheritable (issue 12.9: the ambient raise used
/// to fail the step with "while running runtime: exit status 1"). The layer it commits holds
/// what the step wrote.
#[test]
fn podman_build_runs_a_run_step() {
    let p = podman();
    let ctx = tempfile::Builder::new()
        .prefix("tinyo-build-")
        .tempdir()
        .expect("build context");
    std::fs::write(
        ctx.path().join("Containerfile"),
        format!("FROM {}\nRUN echo built by tinyo > /x\n", p.image()),
    )
    .expect("write Containerfile");
    let tag = format!("localhost/{}:latest", unique("built"));
    let ctx_dir = ctx.path().display().to_string();
    let mut args = vec!["build"];
    args.extend_from_slice(&tinyo_tests::podman::HOST_FLAGS);
    args.extend(["-t", &tag, &ctx_dir]);
    let o = p.run(&args);
    assert!(o.status.success(), "build: {}", text(&o));
    let mut args = run_args(&p, &["--rm"]);
    args.extend([tag.as_str(), "cat", "/x"]);
    let o = p.run(&args);
    assert!(o.status.success(), "run: {}", text(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "built by tinyo\n");
}

/// The exit codes podman derives from the runtime's error words (126: cannot execute, 127: not
/// found), for `run` and for `exec`, as with runc.
#[test]
fn podman_exec_errors_map_to_126_and_127() {
    let runc = tinyo_tests::host::require_tool("runc", "runc");
    for p in [Podman::new(&runc, busybox::rootfs()), podman()] {
        exec_codes(&p);
    }
}

/// The cases of [`podman_exec_errors_map_to_126_and_127`] for one runtime.
fn exec_codes(p: &Podman) {
    for (cmd, code) in [("/no/such/command", 127), ("nosuch", 127), ("/etc", 126)] {
        let mut args = run_args(p, &["--rm"]);
        args.extend([p.image(), cmd]);
        let o = p.run(&args);
        assert_eq!(
            o.status.code(),
            Some(code),
            "{:?} run {cmd}: {}",
            p.runtime(),
            text(&o)
        );
    }
    let name = unique("pexec");
    let mut args = run_args(p, &["-d", "--name", &name]);
    args.extend([p.image(), "sleep", "1000"]);
    let o = p.run(&args);
    assert!(o.status.success(), "run -d: {}", text(&o));
    for (cmd, code) in [("/no/such/command", 127), ("nosuch", 127), ("/etc", 126)] {
        let o = p.run(&["exec", &name, cmd]);
        assert_eq!(
            o.status.code(),
            Some(code),
            "{:?} exec {cmd}: {}",
            p.runtime(),
            text(&o)
        );
    }
    let o = p.run(&["rm", "-f", "-t", "0", &name]);
    assert!(o.status.success(), "rm: {}", text(&o));
}

/// `--tmpfs` over an image directory: podman asks for `tmpcopyup`, so the tmpfs holds the
/// image's files (here the shell itself).
#[test]
fn podman_tmpfs_over_an_image_directory_keeps_its_content() {
    let p = podman();
    let mut args = run_args(&p, &["--rm", "--tmpfs", "/bin"]);
    args.extend([
        p.image(),
        "/bin/sh",
        "-c",
        "awk '$2 == \"/bin\" { print $3 }' /proc/self/mounts; ls /bin/busybox",
    ]);
    let o = p.run(&args);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "tmpfs\n/bin/busybox\n");
}

/// podman's own kill test: every signal but KILL, STOP (and CHLD, which the shell's own
/// children raise) reaches a trap in the container, standard and real-time alike.
#[test]
fn podman_kill_delivers_every_signal() {
    let p = podman();
    let name = unique("pkill");
    let signals: Vec<u32> = (1..=64)
        .filter(|s| ![9, 17, 19, 32, 33].contains(s))
        .collect();
    let traps: String = signals
        .iter()
        .map(|s| format!("trap 'echo got {s}' {s}; "))
        .collect();
    let script = format!("{traps}echo ready; while :; do sleep 0.05; done");
    let mut args = run_args(&p, &["-d", "--name", &name]);
    args.extend([p.image(), "sh", "-c", script.as_str()]);
    let o = p.run(&args);
    assert!(o.status.success(), "run -d: {}", text(&o));
    let logs_contain = |want: &str| {
        for _ in 0..400 {
            let o = p.run(&["logs", &name]);
            if String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| l == want)
            {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
        false
    };
    assert!(logs_contain("ready"), "the container never started");
    for s in &signals {
        let o = p.run(&["kill", "-s", &s.to_string(), &name]);
        assert!(o.status.success(), "kill -s {s}: {}", text(&o));
        assert!(
            logs_contain(&format!("got {s}")),
            "signal {s} never arrived"
        );
    }
    let o = p.run(&["rm", "-f", "-t", "0", &name]);
    assert!(o.status.success(), "rm: {}", text(&o));
}

/// No cgroup outlives its container (issue 16.4): not a paused one removed with `rm -f`, nor
/// one without its own PID namespace whose init leaves a child behind (`--pid host`): as runc,
/// tinyo kills what is left in the cgroups and removes them, in every hierarchy.
#[test]
fn podman_rm_leaves_no_cgroup_or_process_behind() {
    use tinyo_tests::host::leftover_cgroups;
    let p = podman();
    // The orphan's command line, unique to this test run.
    let marker = format!("sleep {}", 900_000 + std::process::id() % 99_999);
    let mut ids = Vec::new();
    // Paused, then removed by force.
    let name = unique("paused");
    let mut args = run_args(&p, &["-d", "--name", &name]);
    args.extend([p.image(), "sleep", "1000"]);
    let o = p.run(&args);
    assert!(o.status.success(), "run -d: {}", text(&o));
    ids.push(String::from_utf8_lossy(&o.stdout).trim().to_string());
    let o = p.run(&["pause", &name]);
    assert!(o.status.success(), "pause: {}", text(&o));
    let o = p.run(&["rm", "-f", &name]);
    assert!(o.status.success(), "rm -f: {}", text(&o));
    // The host's PID namespace: the init exits, its background child must not survive.
    let name = unique("hostpid");
    let script = format!("{marker} & echo started");
    let mut args = run_args(&p, &["--name", &name, "--pid", "host"]);
    args.extend([p.image(), "sh", "-c", script.as_str()]);
    let o = p.run(&args);
    assert!(o.status.success(), "run --pid host: {}", text(&o));
    let o = p.run(&["inspect", "--format", "{{.Id}}", &name]);
    ids.push(String::from_utf8_lossy(&o.stdout).trim().to_string());
    let o = p.run(&["rm", &name]);
    assert!(o.status.success(), "rm: {}", text(&o));
    for id in &ids {
        assert!(!id.is_empty());
        let left = leftover_cgroups(&format!("libpod-{id}"));
        assert!(left.is_empty(), "cgroups left behind: {left:?}");
    }
    let survivors = tinyo_tests::host::processes_running(&marker);
    assert!(survivors.is_empty(), "processes left behind: {survivors:?}");
}

/// Volumes: read-write, read-only, and a noexec volume whose program podman reports with 126.
#[test]
fn podman_volumes_rw_ro_and_noexec() {
    use std::os::unix::fs::PermissionsExt;
    let p = podman();
    let dir = tempfile::tempdir().unwrap();
    let prog = dir.path().join("prog");
    std::fs::write(&prog, "#!/bin/sh\necho ran\n").unwrap();
    std::fs::set_permissions(&prog, std::fs::Permissions::from_mode(0o755)).unwrap();
    let vol = |opts: &str| format!("{}:/v{opts}", dir.path().display());
    let (rw, ro, noexec) = (vol(""), vol(":ro"), vol(":noexec"));
    let mut args = run_args(&p, &["--rm", "-v", &rw]);
    args.extend([p.image(), "sh", "-c", "echo written > /v/out && /v/prog"]);
    let o = p.run(&args);
    assert!(o.status.success(), "rw: {}", text(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "ran\n");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("out")).unwrap(),
        "written\n"
    );
    let mut args = run_args(&p, &["--rm", "-v", &ro]);
    args.extend([
        p.image(),
        "sh",
        "-c",
        "touch /v/x 2>/dev/null && echo writable || echo ro",
    ]);
    let o = p.run(&args);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "ro\n", "{}", text(&o));
    let mut args = run_args(&p, &["--rm", "-v", &noexec]);
    args.extend([p.image(), "/v/prog"]);
    let o = p.run(&args);
    assert_eq!(o.status.code(), Some(126), "noexec: {}", text(&o));
}
