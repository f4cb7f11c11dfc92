//! End-to-end tests of `tinyo-init` as PID 1: in a fresh PID namespace (`unshare --pid --fork
//! --mount-proc`, so nothing of the host is touched) and as the init of a busybox container
//! run by runc. Every test runs as root and fails (never skips) when a tool is missing.
//!
//! Nothing here asserts a timing: waits poll with generous deadlines, and a watchdog kills
//! whatever a test started if it hangs.

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use tinyo_tests::bins::bin;
use tinyo_tests::busybox::Bundle;
use tinyo_tests::host::{require_root, require_tool, unique};

/// How long anything may take before the watchdog kills it.
const DEADLINE: Duration = Duration::from_secs(120);

fn init() -> PathBuf {
    bin("tinyo-init")
}

/// A started process with its stdout read line by line, stderr collected in a file, and a
/// watchdog that runs `kill` if the test is still waiting after [`DEADLINE`].
struct Running {
    child: Child,
    out: BufReader<ChildStdout>,
    err: tempfile::NamedTempFile,
    lines: Vec<String>,
    done: Arc<AtomicBool>,
    kill: Arc<dyn Fn() + Send + Sync>,
}

impl Running {
    fn start(cmd: &mut Command, kill: impl Fn() + Send + Sync + 'static) -> Self {
        let err = tempfile::NamedTempFile::new().expect("stderr file");
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(err.reopen().expect("reopen stderr file"))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        let out = BufReader::new(child.stdout.take().expect("piped stdout"));
        let done = Arc::new(AtomicBool::new(false));
        let kill: Arc<dyn Fn() + Send + Sync> = Arc::new(kill);
        let (d, k) = (done.clone(), kill.clone());
        thread::spawn(move || {
            let t = Instant::now();
            while !d.load(Ordering::SeqCst) {
                if t.elapsed() > DEADLINE {
                    eprintln!("watchdog: killing a test process that ran over {DEADLINE:?}");
                    k();
                    return;
                }
                thread::sleep(Duration::from_millis(100));
            }
        });
        Self {
            child,
            out,
            err,
            lines: Vec::new(),
            done,
            kill,
        }
    }

    /// The host pid of the started process.
    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Reads stdout until a line equal to `want`; panics at end of file.
    fn expect_line(&mut self, want: &str) {
        loop {
            let mut line = String::new();
            let n = self.out.read_line(&mut line).expect("read stdout");
            assert!(
                n > 0,
                "end of output before {want:?}; output so far: {:?}; stderr: {}",
                self.lines,
                self.stderr()
            );
            let line = line.trim_end().to_string();
            self.lines.push(line.clone());
            if line == want {
                return;
            }
        }
    }

    fn stderr(&self) -> String {
        let mut s = String::new();
        let _ = fs::File::open(self.err.path()).and_then(|mut f| f.read_to_string(&mut s));
        s
    }

    /// Waits for the end: (exit code, all stdout lines, stderr).
    fn finish(mut self) -> (i32, Vec<String>, String) {
        let mut rest = String::new();
        self.out.read_to_string(&mut rest).expect("read stdout");
        self.lines.extend(rest.lines().map(str::to_string));
        let status = self.child.wait().expect("wait");
        self.done.store(true, Ordering::SeqCst);
        let code = status
            .code()
            .unwrap_or_else(|| panic!("killed: {status}; stderr: {}", self.stderr()));
        (code, std::mem::take(&mut self.lines), self.stderr())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.done.store(true, Ordering::SeqCst);
        if let Ok(None) = self.child.try_wait() {
            (self.kill)();
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The host pids of the children of `pid`.
fn children(pid: u32) -> Vec<i32> {
    fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// Polls `f` until it is true, panicking with `what` after the deadline.
fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < DEADLINE, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(20));
    }
}

/// `tinyo-init ARGS` as PID 1 of a fresh PID namespace with its own /proc.
fn in_pid_ns(args: &[&str]) -> Running {
    require_root();
    let unshare = require_tool("unshare", "util-linux");
    let mut cmd = Command::new(unshare);
    cmd.args(["--pid", "--fork", "--mount-proc"])
        .arg(init())
        .args(args);
    let pid = Arc::new(std::sync::Mutex::new(0u32));
    let p = pid.clone();
    let r = Running::start(&mut cmd, move || {
        // Killing the namespace's init kills everything in the namespace.
        let unshare = *p.lock().unwrap_or_else(|e| e.into_inner());
        for c in children(unshare) {
            // SAFETY: kill takes only a pid and a signal number.
            unsafe { libc::kill(c, libc::SIGKILL) };
        }
    });
    *pid.lock().unwrap_or_else(|e| e.into_inner()) = r.pid();
    r
}

/// The host pid of the namespace's init once it runs tinyo-init with its signals blocked (a
/// signal sent to a namespace init before that would be dropped by the kernel).
fn ns_init_ready(r: &Running) -> i32 {
    let exe = fs::canonicalize(init()).expect("canonical path of tinyo-init");
    let mut pid = 0;
    wait_until("tinyo-init to start as the namespace's PID 1", || {
        let Some(&p) = children(r.pid()).first() else {
            return false;
        };
        pid = p;
        let status = fs::read_to_string(format!("/proc/{p}/status")).unwrap_or_default();
        let blocked = status
            .lines()
            .find_map(|l| l.strip_prefix("SigBlk:"))
            .is_some_and(|m| !m.trim().trim_start_matches('0').is_empty());
        fs::read_link(format!("/proc/{p}/exe")).ok().as_deref() == Some(exe.as_path()) && blocked
    });
    pid
}

fn kill(pid: i32, sig: i32) {
    // SAFETY: kill takes only a pid and a signal number.
    let r = unsafe { libc::kill(pid, sig) };
    assert_eq!(
        r,
        0,
        "kill({pid}, {sig}): {}",
        std::io::Error::last_os_error()
    );
}

/// A shell snippet that waits (up to 60 s) until no process in the PID namespace is a zombie,
/// then prints `zombies=N`.
/// Waits (up to 60 s) until every orphaned `sleep` has exited and no zombie is left, then
/// prints the zombie count. Waiting for the sleeps too matters: while one is still running it
/// can exit, and show as a zombie for an instant, right when the count is taken.
const COUNT_ZOMBIES: &str = r#"
zombies() { grep -l '^State:.Z' /proc/[0-9]*/status 2>/dev/null | wc -l; }
sleepers() { grep -l '^Name:.sleep' /proc/[0-9]*/status 2>/dev/null | wc -l; }
n=0
while { [ "$(zombies)" -gt 0 ] || [ "$(sleepers)" -gt 0 ]; } && [ $n -lt 600 ]; do sleep 0.1; n=$((n+1)); done
echo "zombies=$(zombies)"
"#;

#[test]
fn exit_codes_and_signal_deaths_come_through() {
    for (args, want) in [
        (&["--", "sh", "-c", "exit 7"][..], 7),
        (&["sh", "-c", "exit 0"][..], 0),
        (&["--", "sh", "-c", "kill -KILL $$"][..], 128 + 9),
        (&["--", "sh", "-c", "kill -TERM $$"][..], 128 + 15),
        (&["-e", "7", "--", "sh", "-c", "exit 7"][..], 0),
        (
            &["-e7", "-e", "143", "--", "sh", "-c", "kill -TERM $$"][..],
            0,
        ),
        (&["-e", "7", "--", "sh", "-c", "exit 8"][..], 8),
    ] {
        let (code, _, err) = in_pid_ns(args).finish();
        assert_eq!(code, want, "tinyo-init {args:?}; stderr: {err}");
    }
}

#[test]
fn bad_input_is_one_line_and_a_shell_exit_code() {
    for (args, want, needle) in [
        (&["--", "/no/such/program"][..], 127, "/no/such/program"),
        (
            &["no-such-program-on-path"][..],
            127,
            "no-such-program-on-path",
        ),
        (&["/etc/passwd"][..], 126, "/etc/passwd"),
        (&["/"][..], 126, "'/'"),
        (&["-x", "true"][..], 2, "-x"),
        (&["--bogus", "true"][..], 2, "--bogus"),
        (&[][..], 2, "no program"),
        (&["-e", "300", "true"][..], 2, "300"),
        (&["-p", "SIGNOPE", "true"][..], 2, "SIGNOPE"),
    ] {
        let (code, _, err) = in_pid_ns(args).finish();
        assert_eq!(code, want, "tinyo-init {args:?}; stderr: {err}");
        assert_eq!(err.lines().count(), 1, "one line for {args:?}: {err:?}");
        assert!(err.contains(needle), "{args:?}: {err:?} names {needle}");
        assert!(!err.contains("panick"), "{err}");
    }
}

#[test]
fn version_and_help() {
    let out = Command::new(init()).arg("--version").output().expect("run");
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("tinyo-init {}", env!("CARGO_PKG_VERSION"))
    );
    let out = Command::new(init()).arg("-h").output().expect("run");
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for opt in ["-s", "-p SIGNAL", "-v", "-g", "-e CODE", "-P", "--version"] {
        assert!(help.contains(opt), "help mentions {opt}: {help}");
    }
}

#[test]
fn signals_reach_the_child() {
    for sig in [
        "TERM", "INT", "HUP", "USR1", "USR2", "QUIT", "WINCH", "CONT",
    ] {
        let script = format!(
            "trap 'echo got-{sig}; exit 42' {sig}; echo ready; \
             while :; do sleep 1 & wait $!; done"
        );
        let mut r = in_pid_ns(&["--", "sh", "-c", &script]);
        let init_pid = ns_init_ready(&r);
        r.expect_line("ready");
        let signo = match sig {
            "TERM" => libc::SIGTERM,
            "INT" => libc::SIGINT,
            "HUP" => libc::SIGHUP,
            "USR1" => libc::SIGUSR1,
            "USR2" => libc::SIGUSR2,
            "QUIT" => libc::SIGQUIT,
            "WINCH" => libc::SIGWINCH,
            _ => libc::SIGCONT,
        };
        kill(init_pid, signo);
        let (code, lines, err) = r.finish();
        assert!(
            lines.contains(&format!("got-{sig}")),
            "{sig}: {lines:?} {err}"
        );
        assert_eq!(code, 42, "SIG{sig}: stderr {err}");
    }
}

#[test]
fn an_untrapped_signal_kills_the_child_and_gives_128_plus_n() {
    let mut r = in_pid_ns(&["--", "sh", "-c", "echo ready; while :; do sleep 1; done"]);
    let init_pid = ns_init_ready(&r);
    r.expect_line("ready");
    kill(init_pid, libc::SIGTERM);
    let (code, _, err) = r.finish();
    assert_eq!(code, 128 + libc::SIGTERM, "{err}");
}

#[test]
fn group_mode_reaches_grandchildren() {
    let dir = tempfile::tempdir().expect("tempdir");
    let grand = dir.path().join("grand.sh");
    fs::write(
        &grand,
        "trap 'echo grand-got-USR1; exit 5' USR1\necho grand-ready\n\
         while :; do sleep 1 & wait $!; done\n",
    )
    .expect("write grand.sh");
    let outer = format!(
        "trap 'echo parent-got-USR1' USR1\nsh {} &\ng=$!\nwait $g\nwait $g\n\
         echo grand-exit=$?\nexit 7\n",
        grand.display()
    );
    let mut r = in_pid_ns(&["-g", "--", "sh", "-c", &outer]);
    let init_pid = ns_init_ready(&r);
    r.expect_line("grand-ready");
    kill(init_pid, libc::SIGUSR1);
    let (code, lines, err) = r.finish();
    for want in ["grand-got-USR1", "parent-got-USR1", "grand-exit=5"] {
        assert!(
            lines.iter().any(|l| l == want),
            "{want} in {lines:?}; {err}"
        );
    }
    assert_eq!(code, 7, "{err}");
}

#[test]
fn orphans_are_reaped_as_pid_1() {
    let script =
        format!("for i in $(seq 50); do (sleep 0.2 &); (true &); done\n{COUNT_ZOMBIES}\nexit 3");
    let (code, lines, err) = in_pid_ns(&["--", "sh", "-c", &script]).finish();
    assert!(lines.iter().any(|l| l == "zombies=0"), "{lines:?} {err}");
    assert_eq!(code, 3, "{err}");
}

#[test]
fn a_fork_bomb_of_short_children_leaves_no_zombie() {
    let script =
        format!("i=0; while [ $i -lt 3000 ]; do (true &); i=$((i+1)); done\n{COUNT_ZOMBIES}");
    let (code, lines, err) = in_pid_ns(&["--", "sh", "-c", &script]).finish();
    assert!(lines.iter().any(|l| l == "zombies=0"), "{lines:?} {err}");
    assert_eq!(code, 0, "{err}");
}

#[test]
fn subreaper_mode_reaps_orphans_when_not_pid_1() {
    require_root();
    // Zombies among the init's children ($PPID is tinyo-init, not PID 1 here).
    let script = r#"
for i in $(seq 30); do (true &); done
zombies() { n=0; for c in $(cat /proc/$PPID/task/$PPID/children); do
  grep -q '^State:.Z' /proc/$c/status 2>/dev/null && n=$((n+1)); done; echo $n; }
n=0
while [ "$(zombies)" -gt 0 ] && [ $n -lt 600 ]; do sleep 0.1; n=$((n+1)); done
echo "zombies=$(zombies)"
"#;
    let mut cmd = Command::new(init());
    cmd.args(["-s", "--", "sh", "-c", script]);
    let (code, lines, err) = Running::start(&mut cmd, || {}).finish();
    assert!(lines.iter().any(|l| l == "zombies=0"), "{lines:?} {err}");
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("warning"), "{err}");

    // Without -s (and not PID 1) it warns, once; TINI_SUBREAPER counts as -s.
    let (code, _, err) = Running::start(Command::new(init()).arg("true"), || {}).finish();
    assert_eq!(code, 0);
    assert_eq!(err.matches("not running as PID 1").count(), 1, "{err}");
    assert!(
        err.contains("zombie reaping won't work"),
        "tini's words: {err}"
    );
    let (code, _, err) = Running::start(
        Command::new(init()).arg("true").env("TINI_SUBREAPER", ""),
        || {},
    )
    .finish();
    assert_eq!(code, 0);
    assert_eq!(err, "", "TINI_SUBREAPER makes it a subreaper");
}

#[test]
fn reaped_zombies_are_reported_in_tinis_words() {
    require_root();
    let mut cmd = Command::new(init());
    cmd.args(["-s", "-w", "--", "sh", "-c", "(sleep 0.1 &); sleep 0.5"]);
    let (code, _, err) = Running::start(&mut cmd, || {}).finish();
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("Reaped zombie process with pid="), "{err}");
}

#[test]
fn the_program_starts_with_default_signals_and_none_blocked() {
    // The caller ignores SIGPIPE (as every Rust program does) and SIGUSR1: the program must
    // still see every signal at its default, none blocked, and be able to trap them.
    let run = |inner: &str| {
        let script = format!("trap '' PIPE USR1; exec {} -s -- {inner}", init().display());
        let out = Command::new("sh").args(["-c", &script]).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{text} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    };
    let masks = run("grep -E '^Sig(Ign|Blk)' /proc/self/status");
    assert_eq!(
        masks,
        "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n"
    );
    let trapped = run("sh -c \"trap 'echo got PIPE' PIPE; kill -PIPE \\$\\$\"");
    assert_eq!(trapped, "got PIPE\n");
}

#[test]
fn parent_death_signal_is_delivered_and_forwarded() {
    // sh (the parent) runs tinyo-init -p SIGUSR1, whose child traps USR1. Killing the parent
    // makes the kernel send SIGUSR1 to tinyo-init, which forwards it to its child.
    let inner =
        "trap 'echo got-USR1; exit 0' USR1; echo ready; while :; do sleep 1 & wait $!; done";
    let pids = Arc::new(std::sync::Mutex::new(Vec::<i32>::new()));
    let p = pids.clone();
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "\"$0\" -s -p SIGUSR1 -- sh -c \"$1\" & wait"])
        .arg(init())
        .arg(inner);
    let mut r = Running::start(&mut cmd, move || {
        for &pid in p.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            // SAFETY: kill takes only a pid and a signal number.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    });
    r.expect_line("ready");
    let init_pid = children(r.pid())[0];
    let child = children(u32::try_from(init_pid).expect("pid"))[0];
    pids.lock()
        .unwrap_or_else(|e| e.into_inner())
        .extend([init_pid, child]);
    kill(i32::try_from(r.pid()).expect("pid"), libc::SIGKILL);
    let mut rest = String::new();
    r.out.read_to_string(&mut rest).expect("read stdout");
    assert!(
        rest.lines().any(|l| l == "got-USR1"),
        "{rest:?}; stderr {}",
        r.stderr()
    );
}

#[test]
fn pause_mode_reaps_and_exits_on_sigterm() {
    let nsenter = require_tool("nsenter", "util-linux");
    let mut r = in_pid_ns(&["-P"]);
    let init_pid = ns_init_ready(&r);
    // Ignored in pause mode.
    kill(init_pid, libc::SIGHUP);
    // Orphans made inside the namespace are reparented to the paused init.
    let out = Command::new(nsenter)
        .args(["-t", &init_pid.to_string(), "-p", "--", "sh", "-c"])
        .arg("for i in $(seq 50); do (true &); (sleep 0.1 &); done")
        .stdin(Stdio::null())
        .output()
        .expect("nsenter");
    assert!(out.status.success(), "nsenter: {out:?}");
    let init_u = u32::try_from(init_pid).expect("pid");
    wait_until("the paused init to reap every orphan", || {
        children(init_u).is_empty()
    });
    assert!(
        matches!(r.child.try_wait(), Ok(None)),
        "SIGHUP must not end pause mode"
    );
    kill(init_pid, libc::SIGTERM);
    let (code, _, err) = r.finish();
    assert_eq!(code, 0, "{err}");

    let r = in_pid_ns(&["-P"]);
    let init_pid = ns_init_ready(&r);
    kill(init_pid, libc::SIGINT);
    assert_eq!(r.finish().0, 0);
}

/// A busybox bundle running tinyo-init as its process, with the binary (and, for a dynamic
/// debug build, the shared libraries `ldd` lists, at the same paths) copied into the rootfs.
fn init_bundle(id: &str, args: &[&str]) -> Bundle {
    let mut full = vec!["/sbin/tinyo-init"];
    full.extend_from_slice(args);
    let bundle = Bundle::new(id, &full);
    let rootfs = bundle.rootfs();
    let dest = rootfs.join("sbin/tinyo-init");
    let _ = fs::remove_file(&dest);
    fs::copy(init(), &dest).expect("copy tinyo-init into the rootfs");
    let ldd = Command::new("ldd").arg(init()).output().expect("ldd");
    for line in String::from_utf8_lossy(&ldd.stdout).lines() {
        let path = match line.split_once("=>") {
            Some((_, rest)) => rest.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        let Some(path) = path.filter(|p| p.starts_with('/')) else {
            continue;
        };
        let target = rootfs.join(path.trim_start_matches('/'));
        if target.exists() {
            continue;
        }
        if let Some(parent) = target.parent() {
            // The rootfs may have /lib64 etc. as symlinks; create_dir_all follows them.
            fs::create_dir_all(parent).expect("library directory");
        }
        fs::copy(path, &target).unwrap_or_else(|e| panic!("copy {path}: {e}"));
    }
    bundle
}

/// `runc run` of a bundle in a private mount namespace, with a state dir of its own and
/// `runc delete -f` on drop and on timeout.
struct Container {
    running: Option<Running>,
    runc: PathBuf,
    root: tempfile::TempDir,
    id: String,
}

impl Container {
    fn run(bundle: &Bundle, id: &str) -> Self {
        require_root();
        let runc = require_tool("runc", "runc");
        let root = tempfile::Builder::new()
            .prefix("tinyo-init-runc-")
            .tempdir()
            .expect("runc root");
        let mut cmd = Command::new(require_tool("unshare", "util-linux"));
        cmd.args(["-m", "--propagation", "private"])
            .arg(&runc)
            .arg("--root")
            .arg(root.path())
            .args(["run", "--bundle"])
            .arg(bundle.path())
            .arg(id);
        let (r, rr, i) = (runc.clone(), root.path().to_path_buf(), id.to_string());
        let running = Running::start(&mut cmd, move || delete(&r, &rr, &i));
        Self {
            running: Some(running),
            runc,
            root,
            id: id.into(),
        }
    }

    fn running(&mut self) -> &mut Running {
        self.running.as_mut().expect("running")
    }

    fn kill(&self, sig: &str) {
        let out = Command::new(&self.runc)
            .arg("--root")
            .arg(self.root.path())
            .args(["kill", &self.id, sig])
            .output()
            .expect("runc kill");
        assert!(out.status.success(), "runc kill: {out:?}");
    }

    fn finish(mut self) -> (i32, Vec<String>, String) {
        self.running.take().expect("running").finish()
    }
}

fn delete(runc: &Path, root: &Path, id: &str) {
    let _ = Command::new(runc)
        .arg("--root")
        .arg(root)
        .args(["delete", "-f", id])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

impl Drop for Container {
    fn drop(&mut self) {
        drop(self.running.take());
        delete(&self.runc, self.root.path(), &self.id);
    }
}

#[test]
fn in_a_container_it_is_pid_1_reaps_orphans_and_passes_the_exit_code() {
    let id = unique("init-reap");
    let script = format!(
        "echo pid1=$(tr '\\0' ' ' < /proc/1/cmdline)\n\
         for i in $(seq 100); do (true &); (sleep 0.1 &); done\n{COUNT_ZOMBIES}\nexit 3"
    );
    let bundle = init_bundle(&id, &["--", "/bin/sh", "-c", &script]);
    let (code, lines, err) = Container::run(&bundle, &id).finish();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("pid1=/sbin/tinyo-init -- /bin/sh")),
        "{lines:?} {err}"
    );
    assert!(lines.iter().any(|l| l == "zombies=0"), "{lines:?} {err}");
    assert_eq!(code, 3, "{lines:?} {err}");
}

#[test]
fn in_a_container_sigterm_reaches_the_child() {
    let id = unique("init-term");
    let bundle = init_bundle(
        &id,
        &[
            "--",
            "/bin/sh",
            "-c",
            "trap 'echo got-TERM; exit 42' TERM; echo ready; while :; do sleep 1 & wait $!; done",
        ],
    );
    let mut c = Container::run(&bundle, &id);
    c.running().expect_line("ready");
    c.kill("TERM");
    let (code, lines, err) = c.finish();
    assert!(lines.iter().any(|l| l == "got-TERM"), "{lines:?} {err}");
    assert_eq!(code, 42, "{err}");
}

/// The real client: podman (with runc, through conmon) runs tinyo-init as the container's
/// init via `--init --init-path`, exactly as users plug in tini or catatonit. podman keeps
/// all its state in a temporary directory and runs in a private mount namespace.
#[test]
fn podman_runs_it_as_the_container_init() {
    let runc = require_tool("runc", "runc");
    let id = unique("podman-init");
    // The image: the busybox rootfs plus, for a dynamic debug build, its libraries.
    let bundle = init_bundle(&id, &[]);
    let p = tinyo_tests::podman::Podman::new(&runc, &bundle.rootfs());
    let init_path = format!("--init-path={}", init().display());
    let out = p.run(&p.run_args(&[
        "--rm",
        "--init",
        &init_path,
        p.image(),
        "sh",
        "-c",
        "/run/podman-init --version; tr '\\0' ' ' < /proc/1/cmdline; echo; exit 7",
    ]));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(7),
        "exit code of the command through podman; stdout {stdout}, stderr {stderr}"
    );
    let mut lines = stdout.lines();
    assert_eq!(
        lines.next(),
        Some(format!("tinyo-init {}", env!("CARGO_PKG_VERSION")).as_str()),
        "{stdout}"
    );
    assert!(
        lines
            .next()
            .is_some_and(|l| l.starts_with("/run/podman-init -- sh -c")),
        "PID 1 is the init: {stdout}"
    );
}
