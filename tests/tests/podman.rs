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
