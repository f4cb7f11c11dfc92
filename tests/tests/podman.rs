//! podman, through conmon, drives tinyo as its OCI runtime (`--runtime <tinyo>`), with a local
//! busybox image and all podman state in a temporary directory, in a private mount namespace.
//!
//! Not covered yet because tinyo does not implement it: podman's default seccomp profile (so
//! the containers run with `seccomp=unconfined`).

use std::process::{Command, Output, Stdio};

use tinyo_tests::bins::bin;
use tinyo_tests::busybox;
use tinyo_tests::host::{require_root, require_tool, unique};

struct Podman {
    state: tempfile::TempDir,
    podman: std::path::PathBuf,
    image: String,
}

impl Podman {
    fn new() -> Self {
        require_root();
        require_tool("conmon", "conmon");
        let podman = require_tool("podman", "podman");
        let state = tempfile::Builder::new()
            .prefix("tinyo-podman-rt-")
            .tempdir()
            .unwrap();
        let p = Self {
            state,
            podman,
            image: format!("localhost/{}:latest", unique("bbox")),
        };
        let mut tar = Command::new("tar")
            .arg("-C")
            .arg(busybox::rootfs())
            .args(["-c", "."])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let import = p
            .cmd(&["import", "-", &p.image])
            .stdin(tar.stdout.take().unwrap())
            .output()
            .unwrap();
        assert!(tar.wait().unwrap().success());
        assert!(
            import.status.success(),
            "podman import: {}",
            String::from_utf8_lossy(&import.stderr)
        );
        p
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("unshare");
        c.args(["--mount", "--propagation", "private"])
            .arg(&self.podman);
        for (flag, dir) in [
            ("--root", "root"),
            ("--runroot", "run"),
            ("--tmpdir", "tmp"),
        ] {
            c.arg(flag).arg(self.state.path().join(dir));
        }
        c.args([
            "--cgroup-manager",
            "cgroupfs",
            "--events-backend",
            "file",
            "--storage-driver",
            "vfs",
        ])
        .arg("--runtime")
        .arg(bin("tinyo"))
        .args(args)
        .stdin(Stdio::null());
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    fn run_args<'a>(&'a self, extra: &[&'a str]) -> Vec<&'a str> {
        let mut v = vec![
            "run",
            "--network",
            "none",
            "--ulimit",
            "nofile=20000:20000",
            "--ulimit",
            "nproc=32768:32768",
            "--security-opt",
            "seccomp=unconfined",
        ];
        v.extend_from_slice(extra);
        v
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.run(&["rm", "--all", "--force"]);
    }
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
    let p = Podman::new();
    let mut args = p.run_args(&["--rm"]);
    args.extend([
        p.image.as_str(),
        "sh",
        "-c",
        "echo hi from tinyo; id -u; exit 5",
    ]);
    let o = p.run(&args);
    assert_eq!(o.status.code(), Some(5), "{}", text(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "hi from tinyo\n0\n");
}

#[test]
fn podman_detached_exec_logs_stop_rm() {
    let p = Podman::new();
    let name = unique("pd");
    let script = "echo started; trap 'echo stopping; exit 0' TERM; while true; do sleep 0.1; done";
    let mut args = p.run_args(&["-d", "--name", &name]);
    args.extend([p.image.as_str(), "sh", "-c", script]);
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
    let p = Podman::new();
    let mut args = p.run_args(&["--rm", "-t"]);
    args.extend([
        p.image.as_str(),
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
