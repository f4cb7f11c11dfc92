//! The supervisor: one small process per container that owns its lifecycle and stdio.
//!
//! It creates and starts the container through tinyo-core in this very process (the container
//! is its child), is the child subreaper of whatever the container leaves behind, relays
//! stdio between the caller (foreground) and the container, writes the CRI log, forwards
//! signals, and when the container exits records the exit status and time atomically, tears
//! down what the container had (runtime state, cgroups, network) and, with `--rm`, the
//! container itself. With a restart policy it then waits out the backoff and runs the
//! container again (see [`crate::restart`]). One thread, no async runtime, one `poll` loop.
//!
//! It runs as `tinyo-shim supervise ID`: exec'd in place of `run` in the foreground (same pid,
//! same terminal), or started detached in its own session by `run -d`, which waits for its
//! readiness report on a pipe.

use std::fs;
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use anyhow::{anyhow, Context, Result};
use tinyo_core::container::CreateOptions;
use tinyo_core::mounts::Overlay;
use tinyo_core::sys;

use std::time::{Duration, Instant};

use crate::health::{self, Checker};
use crate::logs::{LogWriter, Stream};
use crate::restart::Backoff;
use crate::state::{self, Proc, Record, Roots, Status};
use crate::term::{self, Copied};

/// Signals the supervisor handles through a signalfd; the rest keep their defaults.
const SIGNALS: &[libc::c_int] = &[
    libc::SIGCHLD,
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGWINCH,
];

/// The container's stdio as the supervisor holds it.
struct Stdio {
    /// Its stdout and stderr pipes (read ends), or the pty master as stdout.
    out: Option<OwnedFd>,
    err: Option<OwnedFd>,
    /// Where the caller's input goes: the stdin pipe (write end) or the pty master.
    input: Option<OwnedFd>,
    /// The pty master, for window size changes.
    master: Option<OwnedFd>,
}

/// Runs the supervisor for container `id`; returns the exit code for the caller (the
/// container's, or 125 when the container could not be set up).
pub fn run(roots: &Roots, id: &str, ready: Option<OwnedFd>, existing: bool) -> i32 {
    let dir = roots.container(id);
    let mut ready = ready.map(fs::File::from);
    let mut backoff = Backoff::default();
    let mut first = true;
    loop {
        let began = Instant::now();
        let ended = match setup(roots, id, &dir) {
            Ok((pid, stdio, rec)) => {
                if let Some(mut r) = ready.take() {
                    let _ = r.write_all(b"ok\n");
                }
                supervise(roots, id, &dir, pid, stdio, rec)
            }
            Err(e) if first => {
                let msg = format!("{e:#}");
                if existing {
                    unstarted(roots, id, &dir);
                } else {
                    teardown_failed(roots, id, &dir);
                }
                match ready.as_mut() {
                    Some(r) => {
                        let _ = writeln!(r, "error: {msg}");
                    }
                    None => eprintln!("tinyo-shim: {msg}"),
                }
                return 125;
            }
            Err(e) => {
                // A restart that could not set the container up counts as a failed run; the
                // reason goes to its log, where `logs` shows it.
                note_in_log(&dir, &format!("tinyo-shim: restarting failed: {e:#}"));
                Ended {
                    code: 125,
                    restart: false,
                }
            }
        };
        first = false;
        let code = ended.code;
        let Some(delay) = finish(roots, id, &dir, &ended, began.elapsed(), &mut backoff) else {
            return code;
        };
        if !wait_to_restart(&dir, delay) {
            stopped_while_waiting(&dir);
            return code;
        }
    }
}

/// Appends one stderr line from the supervisor itself to the container's log.
fn note_in_log(dir: &Path, line: &str) {
    let Ok(rec) = state::load(dir) else { return };
    if let Ok(mut log) = LogWriter::open(&dir.join("ctr.log"), rec.log_max_size, rec.log_max_files)
    {
        let _ = log.write(Stream::Stderr, format!("{line}\n").as_bytes());
        let _ = log.flush();
    }
}

/// Waits `delay` before a restart; false when a stop was asked for in the meantime (the
/// record's flag, or SIGTERM/SIGINT/SIGHUP sent to this supervisor).
fn wait_to_restart(dir: &Path, delay: Duration) -> bool {
    let stop_asked = || state::load(dir).map_or(true, |r| r.stop_requested);
    if delay.is_zero() {
        return !stop_asked();
    }
    let Ok(sigfd) = signalfd() else {
        return false;
    };
    let deadline = Instant::now() + delay;
    loop {
        if stop_asked() {
            return false;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return true;
        }
        let mut p = libc::pollfd {
            fd: sigfd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = left.as_millis().min(i32::MAX as u128) as i32 + 1;
        // SAFETY: one valid pollfd.
        if unsafe { libc::poll(&mut p, 1, ms) } > 0 {
            for sig in read_signals(sigfd.as_fd()) {
                match sig {
                    libc::SIGTERM | libc::SIGINT | libc::SIGHUP | libc::SIGQUIT => return false,
                    // What the last run left behind (this process is their subreaper).
                    libc::SIGCHLD => {
                        let _ = reap(-1);
                    }
                    _ => {}
                }
            }
        }
    }
}

/// A stop during the backoff: the container stays exited with its last status.
fn stopped_while_waiting(dir: &Path) {
    let _ = state::update(dir, |r| {
        r.status = Status::Exited;
        r.next_restart = None;
        r.supervisor = None;
    });
}

/// After a failed setup: nothing is left half-made (runtime state, cgroups, network, the
/// container directory itself).
fn teardown_failed(roots: &Roots, id: &str, dir: &Path) {
    let rt = roots.runtime();
    let _ = rt.delete(id, true);
    if let Ok(rec) = state::load(dir) {
        let _ = crate::network::teardown(roots, &rec);
    }
    let _ = fs::remove_dir_all(dir);
}

/// A `start` whose setup failed: the container stays, exited as before, with nothing of the
/// attempt left (runtime state, network).
fn unstarted(roots: &Roots, id: &str, dir: &Path) {
    let _ = roots.runtime().delete(id, true);
    if let Ok(rec) = state::load(dir) {
        let _ = crate::network::teardown(roots, &rec);
    }
    let _ = state::update(dir, |r| {
        r.status = Status::Exited;
        r.pid = None;
        r.net = None;
        r.supervisor = None;
    });
}

/// Creates the container with its stdio, attaches its network and starts it.
fn setup(roots: &Roots, id: &str, dir: &Path) -> Result<(i32, Stdio, Record)> {
    // SAFETY: prctl(PR_SET_CHILD_SUBREAPER) takes integers only.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1) };
    let me = Proc::of(std::process::id() as i32);
    let rec = state::update(dir, |r| r.supervisor = me)?;
    let lower: Vec<std::path::PathBuf> = serde_json::from_slice(
        &fs::read(dir.join("lower.json")).context("reading the container's image layers")?,
    )?;
    let overlay = Overlay {
        lower,
        upper: dir.join("upper"),
        work: dir.join("work"),
    };
    let console = dir.join("console.sock");
    let listener = if rec.tty {
        let _ = fs::remove_file(&console);
        Some(
            std::os::unix::net::UnixListener::bind(&console)
                .with_context(|| format!("listening on {}", console.display()))?,
        )
    } else {
        None
    };
    let opts = CreateOptions {
        console_socket: rec.tty.then(|| console.clone()),
        overlay: Some(overlay),
        ..Default::default()
    };
    let rt = roots.runtime();
    let (created, mut stdio) = if rec.tty {
        (rt.create(id, dir, &opts)?, None)
    } else {
        let (created, stdio) = with_stdio_pipes(rec.interactive, || {
            rt.create(id, dir, &opts).map_err(anyhow::Error::from)
        })?;
        (created, Some(stdio))
    };
    let pid = created.pid;
    if let Some(l) = listener {
        // The container connected and sent the pty master during create.
        let (conn, _) = l.accept().context("accepting the container's console")?;
        let master = sys::recv_fd(conn.as_fd()).context("receiving the pty master")?;
        let _ = fs::remove_file(&console);
        let input = master.try_clone()?;
        stdio = Some(Stdio {
            out: Some(master.try_clone()?),
            err: None,
            input: Some(input),
            master: Some(master),
        });
    }
    let net = crate::network::setup(roots, &rec, pid)?;
    rt.start(id)?;
    let rec = state::update(dir, |r| {
        r.net = net;
        r.status = Status::Running;
        r.pid = Proc::of(pid);
        r.started = Some(tinyo_core::container::now_rfc3339());
        r.health = r.healthcheck.as_ref().map(|_| health::Health::starting());
        r.ready = r.readiness.as_ref().map(|_| health::Health::starting());
        r.startup_state = r.startup.as_ref().map(|_| health::Health::starting());
    })?;
    let stdio = stdio.ok_or_else(|| anyhow!("no stdio for the container"))?;
    Ok((pid, stdio, rec))
}

/// Runs `create` with fds 0/1/2 pointing at fresh pipes (the container inherits them), then
/// puts this process's own stdio back.
fn with_stdio_pipes<T>(
    interactive: bool,
    create: impl FnOnce() -> Result<T>,
) -> Result<(T, Stdio)> {
    let (out_r, out_w) = sys::pipe().context("creating the stdout pipe")?;
    let (err_r, err_w) = sys::pipe().context("creating the stderr pipe")?;
    let (in_child, in_parent) = if interactive {
        let (r, w) = sys::pipe().context("creating the stdin pipe")?;
        (r, Some(w))
    } else {
        let null = fs::File::open("/dev/null").context("opening /dev/null")?;
        (OwnedFd::from(null), None)
    };
    let value = redirected([in_child.as_fd(), out_w.as_fd(), err_w.as_fd()], create)?;
    Ok((
        value,
        Stdio {
            out: Some(out_r),
            err: Some(err_r),
            input: in_parent,
            master: None,
        },
    ))
}

/// A signalfd for [`SIGNALS`], which are blocked from now on.
fn signalfd() -> io::Result<OwnedFd> {
    // SAFETY: an all-zero sigset_t is valid to initialise with sigemptyset.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid sigset_t.
    unsafe { libc::sigemptyset(&mut set) };
    for s in SIGNALS {
        // SAFETY: as above, and `s` is a valid signal number.
        unsafe { libc::sigaddset(&mut set, *s) };
    }
    // SAFETY: `set` is valid; the old mask is not needed.
    unsafe { libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    // SAFETY: `set` is valid; -1 asks for a new descriptor.
    let fd = unsafe { libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: signalfd just returned this descriptor and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Reads pending signals from the signalfd.
fn read_signals(fd: BorrowedFd<'_>) -> Vec<i32> {
    let mut out = Vec::new();
    loop {
        // SAFETY: an all-zero signalfd_siginfo is a valid buffer.
        let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
        let size = std::mem::size_of::<libc::signalfd_siginfo>();
        // SAFETY: `info` is a writable buffer of `size` bytes.
        let n = unsafe {
            libc::read(
                fd.as_raw_fd(),
                (&mut info as *mut libc::signalfd_siginfo).cast(),
                size,
            )
        };
        if n != size as isize {
            break;
        }
        out.push(info.ssi_signo as i32);
    }
    out
}

/// Exit code of a wait status, shell style (128+N for a signal).
fn exit_code(status: i32) -> i32 {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        255
    }
}

/// Reaps every exited child: (pid, exit code) of each.
fn reap_all() -> Vec<(i32, i32)> {
    let mut out = Vec::new();
    loop {
        let mut status = 0;
        // SAFETY: waitpid with a valid status pointer.
        let r = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if r <= 0 {
            break;
        }
        out.push((r, exit_code(status)));
    }
    out
}

/// Reaps children; returns the container's exit code once it has exited.
fn reap(pid: i32) -> Option<i32> {
    reap_all()
        .into_iter()
        .find_map(|(p, c)| (p == pid).then_some(c))
}

/// What a check is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// The health verdict, acted on by `--health-on-failure` (a liveness probe).
    Health,
    /// Reported only (a readiness probe).
    Readiness,
    /// Runs first, alone, until it passes; failing, the container is killed (a startup probe).
    Startup,
}

/// A health check in flight.
struct Probe {
    pid: i32,
    began_at: String,
    deadline: Instant,
    timed_out: bool,
}

/// The supervisor's side of health checks: runs them in the container, folds in results.
struct Prober {
    kind: Kind,
    checker: Checker,
    process: Option<oci_spec::runtime::Process>,
    out: std::path::PathBuf,
    probe: Option<Probe>,
    /// Set when the container was killed for being unhealthy with `--health-on-failure
    /// restart`: the supervisor then restarts it whatever the policy.
    pub restart: bool,
}

impl Prober {
    fn new(dir: &Path, cfg: health::Config, kind: Kind) -> Self {
        let process = fs::read(dir.join("config.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|spec| {
                let mut p = spec["process"].clone();
                p["args"] = serde_json::json!(["/bin/sh", "-c", cfg.cmd]);
                p["terminal"] = serde_json::json!(false);
                p.as_object_mut()?.remove("consoleSize");
                serde_json::from_value(p).ok()
            });
        Self {
            kind,
            checker: Checker::new(cfg, Instant::now()),
            process,
            out: dir.join(match kind {
                Kind::Health => "health.out",
                Kind::Readiness => "ready.out",
                Kind::Startup => "startup.out",
            }),
            probe: None,
            restart: false,
        }
    }

    /// A startup check that has passed runs no more.
    fn done(&self) -> bool {
        self.kind == Kind::Startup && self.checker.health.status == health::Status::Healthy
    }

    /// How long poll may sleep before the prober has something to do (None: nothing to do).
    fn wake_in(&self, now: Instant) -> Option<Duration> {
        if self.done() && self.probe.is_none() {
            return None;
        }
        let at = self
            .probe
            .as_ref()
            .map_or(self.checker.due(), |p| p.deadline);
        Some(at.saturating_duration_since(now))
    }

    /// Starts a due check, or kills one past its timeout.
    fn tick(
        &mut self,
        rt: &tinyo_core::container::Runtime,
        id: &str,
        dir: &Path,
        log: &mut Option<LogWriter>,
    ) {
        let now = Instant::now();
        if let Some(p) = self.probe.as_mut() {
            if now >= p.deadline && !p.timed_out {
                p.timed_out = true;
                let _ = sys::kill(p.pid, libc::SIGKILL);
            }
            return;
        }
        if now < self.checker.due() || self.done() {
            return;
        }
        let began_at = tinyo_core::container::now_rfc3339();
        match self.spawn(rt, id) {
            Ok(pid) => {
                self.probe = Some(Probe {
                    pid,
                    began_at,
                    deadline: now + self.checker.cfg.timeout(),
                    timed_out: false,
                })
            }
            Err(e) => {
                let outcome = health::Outcome {
                    start: began_at,
                    end: tinyo_core::container::now_rfc3339(),
                    exit_code: -1,
                    output: format!("{e:#}"),
                };
                self.fold(outcome, rt, id, dir, log);
            }
        }
    }

    /// Execs the check with stdin from /dev/null and its output to `health.out`.
    fn spawn(&self, rt: &tinyo_core::container::Runtime, id: &str) -> Result<i32> {
        let process = self
            .process
            .clone()
            .ok_or_else(|| anyhow!("the container's process config cannot be read"))?;
        let null = fs::File::open("/dev/null").context("opening /dev/null")?;
        let out = fs::File::create(&self.out)
            .with_context(|| format!("creating {}", self.out.display()))?;
        let fds = [null.as_fd(), out.as_fd(), out.as_fd()];
        redirected(fds, || {
            rt.exec(id, process, &tinyo_core::container::ExecOptions::default())
                .map_err(anyhow::Error::from)
        })
    }

    /// A reaped child: true when it was the check in flight (whose result is now in).
    fn reaped(
        &mut self,
        pid: i32,
        code: i32,
        rt: &tinyo_core::container::Runtime,
        id: &str,
        dir: &Path,
        log: &mut Option<LogWriter>,
    ) -> bool {
        let Some(p) = self.probe.take_if(|p| p.pid == pid) else {
            return false;
        };
        let mut output = fs::read(&self.out).unwrap_or_default();
        output.truncate(health::OUTPUT_CAP);
        let mut output = String::from_utf8_lossy(&output).into_owned();
        let exit_code = if p.timed_out {
            output = format!(
                "the health check exceeded its timeout ({} ms)",
                self.checker.cfg.timeout_ms
            );
            -1
        } else {
            code
        };
        let outcome = health::Outcome {
            start: p.began_at,
            end: tinyo_core::container::now_rfc3339(),
            exit_code,
            output,
        };
        self.fold(outcome, rt, id, dir, log);
        true
    }

    fn fold(
        &mut self,
        outcome: health::Outcome,
        rt: &tinyo_core::container::Runtime,
        id: &str,
        dir: &Path,
        log: &mut Option<LogWriter>,
    ) {
        let became_unhealthy = self.checker.record(outcome, Instant::now());
        let h = self.checker.health.clone();
        let kind = self.kind;
        let _ = state::update(dir, |r| match kind {
            Kind::Health => r.health = Some(h),
            Kind::Readiness => r.ready = Some(h),
            Kind::Startup => r.startup_state = Some(h),
        });
        if !became_unhealthy || kind == Kind::Readiness {
            return;
        }
        let cfg = &self.checker.cfg;
        let (what, checks) = match (kind, cfg.on_failure) {
            (Kind::Startup, _) => ("killing it (the restart policy decides)", "startup checks"),
            (_, health::OnFailure::None) => return,
            (_, health::OnFailure::Kill) => ("killing it", "health checks"),
            (_, health::OnFailure::Restart) => ("restarting it", "health checks"),
        };
        if let Some(l) = log.as_mut() {
            let state = if kind == Kind::Startup {
                "did not start"
            } else {
                "is unhealthy"
            };
            let line = format!(
                "tinyo-shim: the container {state} ({} failed {checks} in a row): {what}\n",
                self.checker.health.failing_streak
            );
            let _ = l.write(Stream::Stderr, line.as_bytes());
        }
        self.restart = kind == Kind::Health && cfg.on_failure == health::OnFailure::Restart;
        let _ = rt.kill(id, libc::SIGKILL, true);
    }

    /// The container ended: a check still in flight dies with it.
    fn abandon(&mut self) {
        if let Some(p) = self.probe.take() {
            let _ = sys::kill(p.pid, libc::SIGKILL);
        }
    }
}

/// Runs `f` with fds 0, 1 and 2 pointing at `fds`, then puts this process's own back.
fn redirected<T>(fds: [BorrowedFd<'_>; 3], f: impl FnOnce() -> Result<T>) -> Result<T> {
    let saved: Vec<OwnedFd> = (0..3)
        .map(|fd| {
            // SAFETY: fds 0..3 stay open for the life of this process.
            let b = unsafe { BorrowedFd::borrow_raw(fd) };
            b.try_clone_to_owned()
        })
        .collect::<io::Result<_>>()
        .context("saving stdio")?;
    let moved = fds
        .iter()
        .enumerate()
        .try_for_each(|(i, fd)| sys::dup2(*fd, i as RawFd))
        .context("redirecting stdio");
    let result = moved.and_then(|()| f());
    for (i, fd) in saved.iter().enumerate() {
        let _ = sys::dup2(fd.as_fd(), i as RawFd);
    }
    result
}

/// Gives back the pages of this binary that setup touched and the relay loop will not need:
/// every read-only file mapping with no dirty page is dropped from this process with
/// `MADV_DONTNEED` (its pages are read again from the page cache if touched), so an idle
/// supervisor keeps resident only what its loop uses.
fn shed_clean_mappings() {
    let Ok(smaps) = fs::read_to_string("/proc/self/smaps") else {
        return;
    };
    let flush = |m: Option<(usize, usize, bool)>, dirty: u64| {
        if let Some((start, end, file_ro)) = m {
            if file_ro && dirty == 0 {
                // SAFETY: the range is a read-only, clean, file-backed mapping of this
                // process: dropping its pages only makes later accesses fault them back in
                // from the file, unchanged.
                unsafe {
                    libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED)
                };
            }
        }
    };
    let mut current: Option<(usize, usize, bool)> = None;
    let mut dirty = 0u64;
    for line in smaps.lines() {
        let mut f = line.split_whitespace();
        let first = f.next().unwrap_or("");
        if first.ends_with(':') {
            if first == "Private_Dirty:" || first == "Shared_Dirty:" {
                dirty += f.next().and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            }
            continue;
        }
        let Some((a, b)) = first.split_once('-') else {
            continue;
        };
        flush(current.take(), dirty);
        dirty = 0;
        let (Ok(start), Ok(end)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16))
        else {
            continue;
        };
        let perms = f.next().unwrap_or("");
        let path = f.nth(3).unwrap_or("");
        current = Some((start, end, path.starts_with('/') && !perms.contains('w')));
    }
    flush(current, dirty);
}

/// How one run of the container ended.
struct Ended {
    code: i32,
    /// Killed for being unhealthy with `--health-on-failure restart`.
    restart: bool,
}

/// The relay loop and the end of the container's life.
fn supervise(roots: &Roots, id: &str, dir: &Path, pid: i32, stdio: Stdio, rec: Record) -> Ended {
    let rt = roots.runtime();
    let mut log = LogWriter::open(&dir.join("ctr.log"), rec.log_max_size, rec.log_max_files).ok();
    let sigfd = match signalfd() {
        Ok(fd) => fd,
        Err(e) => {
            eprintln!("tinyo-shim: signalfd: {e}");
            return Ended {
                code: 125,
                restart: false,
            };
        }
    };
    let mut probers: Vec<Prober> = [
        (rec.startup.clone(), Kind::Startup),
        (rec.healthcheck.clone(), Kind::Health),
        (rec.readiness.clone(), Kind::Readiness),
    ]
    .into_iter()
    .filter_map(|(c, k)| c.map(|c| Prober::new(dir, c, k)))
    .collect();
    let foreground = !rec.detached;
    // The caller's terminal, raw while a tty container runs in the foreground.
    let raw = if foreground && rec.tty && term::is_tty(io::stdin().as_fd()) {
        term::RawMode::enter(io::stdin().as_fd()).ok()
    } else {
        None
    };
    let copy_winsize = |master: &OwnedFd| {
        if let Ok((rows, cols)) = term::window_size(io::stdin().as_fd()) {
            let _ = term::set_window_size(master.as_fd(), rows, cols);
        }
    };
    if let (Some(m), true) = (&stdio.master, foreground) {
        copy_winsize(m);
    }
    let Stdio {
        mut out,
        mut err,
        mut input,
        master,
    } = stdio;
    for fd in [&out, &err].into_iter().flatten() {
        let _ = term::set_nonblocking(fd.as_fd(), true);
    }
    // Stdin is relayed only in the foreground with -i (a detached container's stdin pipe
    // stays open and empty, as `docker run -d -i` leaves it).
    let mut stdin_open = foreground && rec.interactive;
    let (stdout, stderr) = (io::stdout(), io::stderr());
    let mut code = reap(pid);
    shed_clean_mappings();
    let mut buf = [0u8; 16384];
    let mut exited_at = None;
    loop {
        if code.is_some() && out.is_none() && err.is_none() {
            break;
        }
        let mut fds = Vec::with_capacity(4);
        fds.push(libc::pollfd {
            fd: sigfd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        });
        for f in [&out, &err].into_iter().flatten() {
            fds.push(libc::pollfd {
                fd: f.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            });
        }
        if stdin_open && input.is_some() {
            fds.push(libc::pollfd {
                fd: 0,
                events: libc::POLLIN,
                revents: 0,
            });
        }
        // After the exit, output still in the pipes is drained for a moment, then left.
        let timeout = match exited_at {
            Some(t) => {
                let left = 2000u128.saturating_sub(std::time::Instant::elapsed(&t).as_millis());
                if left == 0 {
                    break;
                }
                left as i32
            }
            // Health checks wake the loop when one is due or overdue.
            None => probers
                .iter()
                .filter_map(|p| p.wake_in(Instant::now()))
                .min()
                .map_or(-1, |d| d.as_millis().min(i32::MAX as u128 - 1) as i32 + 1),
        };
        // SAFETY: `fds` is a valid array of pollfd of the given length.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
        if n < 0 {
            if io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            break;
        }
        for p in &fds {
            if p.revents == 0 {
                continue;
            }
            if p.fd == sigfd.as_raw_fd() {
                for sig in read_signals(sigfd.as_fd()) {
                    match sig {
                        libc::SIGCHLD => {
                            for (p, c) in reap_all() {
                                if p == pid {
                                    code = Some(c);
                                } else {
                                    for pr in probers.iter_mut() {
                                        if pr.reaped(p, c, &rt, id, dir, &mut log) {
                                            break;
                                        }
                                    }
                                }
                            }
                        }
                        libc::SIGWINCH => {
                            if let Some(m) = &master {
                                copy_winsize(m);
                            }
                        }
                        s => {
                            let _ = rt.kill(id, s, false);
                        }
                    }
                }
            } else if p.fd == 0 {
                match term::read_available(io::stdin().as_fd(), &mut buf) {
                    Ok(Copied::Bytes(n)) => {
                        if let Some(i) = &input {
                            let _ = term::write_all(i.as_fd(), &buf[..n]);
                        }
                    }
                    Ok(Copied::WouldBlock) => {}
                    Ok(Copied::Eof) | Err(_) => {
                        stdin_open = false;
                        // EOF: the container's stdin closes too (a pty keeps its master).
                        if master.is_none() {
                            input = None;
                        }
                    }
                }
            } else {
                let (stream, target) = if out.as_ref().is_some_and(|o| o.as_raw_fd() == p.fd) {
                    (Stream::Stdout, stdout.as_fd())
                } else {
                    (Stream::Stderr, stderr.as_fd())
                };
                let slot = if stream == Stream::Stdout {
                    &mut out
                } else {
                    &mut err
                };
                let Some(fd) = slot.as_ref() else { continue };
                match term::read_available(fd.as_fd(), &mut buf) {
                    Ok(Copied::Bytes(n)) => {
                        if foreground {
                            let _ = term::write_all(target, &buf[..n]);
                        }
                        if let Some(l) = log.as_mut() {
                            let _ = l.write(stream, &buf[..n]);
                        }
                    }
                    Ok(Copied::WouldBlock) => {}
                    Ok(Copied::Eof) | Err(_) => *slot = None,
                }
            }
        }
        if code.is_some() && exited_at.is_none() {
            exited_at = Some(std::time::Instant::now());
            for p in probers.iter_mut() {
                p.abandon();
            }
        }
        if code.is_none() {
            // Until a startup check passes, the others wait (their first check one interval
            // after it passed).
            let starting = probers.iter().any(|p| p.kind == Kind::Startup && !p.done());
            let now = Instant::now();
            for p in probers.iter_mut() {
                if starting && p.kind != Kind::Startup {
                    p.checker.hold(now);
                } else {
                    p.tick(&rt, id, dir, &mut log);
                }
            }
        }
    }
    let code = code.unwrap_or(255);
    if let Some(l) = log.as_mut() {
        let _ = l.flush();
    }
    drop(raw);
    Ended {
        code,
        restart: probers.iter().any(|p| p.restart),
    }
}

/// Records the exit and removes what the container had (with `--rm`, the container too).
/// Returns the delay before the next run when its restart policy runs it again.
fn finish(
    roots: &Roots,
    id: &str,
    dir: &Path,
    ended: &Ended,
    ran: Duration,
    backoff: &mut Backoff,
) -> Option<Duration> {
    let code = ended.code;
    let rt = roots.runtime();
    let oom = rt.oom_kills(id).map(|(n, _)| n > 0).unwrap_or(false);
    let _ = rt.delete(id, true);
    let rec = state::load(dir).ok()?;
    if let Err(e) = crate::network::teardown(roots, &rec) {
        eprintln!("tinyo-shim: {e:#}");
    }
    if oom && !rec.detached {
        eprintln!(
            "tinyo-shim: container {}: the kernel OOM-killed a process at the memory limit",
            rec.name
        );
    }
    if rec.auto_remove {
        let _ = fs::remove_dir_all(dir);
        return None;
    }
    let mut delay = None;
    let _ = state::update(dir, |r| {
        r.exit_code = Some(code);
        r.exited = Some(tinyo_core::container::now_rfc3339());
        r.oom_killed = oom;
        r.pid = None;
        r.net = None;
        // Decided under the record's lock, so a `stop` is either seen here or sees this.
        if !r.stop_requested && (ended.restart || r.restart.restarts(code, r.restarts)) {
            let d = backoff.next(ran);
            r.status = Status::Restarting;
            r.restarts += 1;
            r.next_restart = Some(tinyo_core::container::rfc3339(
                std::time::SystemTime::now() + d,
            ));
            delay = Some(d);
        } else {
            r.status = Status::Exited;
            r.next_restart = None;
            r.supervisor = None;
        }
    });
    delay
}
