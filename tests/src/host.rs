//! What tests need from the host. A missing requirement is a test failure with a message that
//! says how to fix it — never a silent skip.

use std::path::PathBuf;
use std::process::Command;

/// Whether this process runs as root (effective uid 0).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Panics unless running as root.
pub fn require_root() {
    assert!(
        is_root(),
        "this test must run as root (it creates namespaces, mounts and cgroups); run it with sudo or as root"
    );
}

/// Finds `tool` on PATH, or says which Debian package provides it. The non-panicking form of
/// [`require_tool`], for callers (xtask) that report errors rather than fail a test.
pub fn find_tool(tool: &str, package: &str) -> Result<PathBuf, String> {
    which(tool).ok_or_else(|| {
        format!("`{tool}` is not installed; install it with `apt-get install -y {package}` (.ci/run does)")
    })
}

/// Finds `tool` on PATH or panics, naming the Debian package that provides it.
pub fn require_tool(tool: &str, package: &str) -> PathBuf {
    find_tool(tool, package).unwrap_or_else(|e| panic!("{e}"))
}

/// `tool` on PATH (also searching the sbin directories, which a non-login PATH may lack); an
/// absolute `tool` is taken as it is.
pub fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

/// Runs a command to completion and returns its stdout, panicking with its stderr on failure.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed with {}:\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A short random-enough suffix for names that must not collide between concurrent tests.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}-{}-{}-{nanos:x}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// The cgroup directories (v1 and v2) named `leaf` anywhere under `/sys/fs/cgroup`: what a
/// container of that name could have left behind.
pub fn leftover_cgroups(leaf: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![PathBuf::from("/sys/fs/cgroup")];
    while let Some(dir) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                if e.file_name().to_string_lossy() == leaf {
                    found.push(e.path().display().to_string());
                }
                if e.path().components().count() < 9 {
                    stack.push(e.path());
                }
            }
        }
    }
    found
}

/// Makes `cmd` die with SIGKILL when the thread that spawns it exits (`PR_SET_PDEATHSIG`), so
/// a server a test starts cannot outlive it, even when the test is killed.
pub fn die_with_parent(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    let hook = || {
        // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe and touches no memory.
        if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    };
    // SAFETY: the hook only makes one async-signal-safe syscall between fork and exec.
    unsafe { cmd.pre_exec(hook) };
}

/// Command lines (NULs as spaces, trailing space trimmed) of the processes now running whose
/// command line is exactly `cmdline`: what a test finds left behind.
pub fn processes_running(cmdline: &str) -> Vec<String> {
    std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.trim_end() == cmdline)
        .collect()
}

/// Whether this process has capability number `cap` (see capabilities(7)) in its effective set.
pub fn has_cap(cap: u32) -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .is_some_and(|eff| cap < 64 && eff & (1 << cap) != 0)
}

/// `CAP_SYS_RESOURCE`: overriding resource limits, lowering `oom_score_adj`.
pub const CAP_SYS_RESOURCE: u32 = 24;

/// `GET /` over HTTP/1.0 to `addr`, from a thread that has joined the network namespace
/// `netns` (the test's own process stays where it is); returns the body.
pub fn http_get_in(netns: &std::path::Path, addr: &str) -> Result<String, String> {
    let netns = netns.to_path_buf();
    let addr = addr.to_string();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        use std::os::fd::AsRawFd;
        let ns = std::fs::File::open(&netns).map_err(|e| e.to_string())?;
        // SAFETY: setns on a namespace descriptor; it changes only this thread's namespace.
        if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(format!("setns: {}", std::io::Error::last_os_error()));
        }
        let sock: std::net::SocketAddr = addr.parse().map_err(|e| format!("{addr}: {e}"))?;
        let mut s = std::net::TcpStream::connect_timeout(&sock, std::time::Duration::from_secs(2))
            .map_err(|e| format!("connect {addr}: {e}"))?;
        s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .ok();
        s.write_all(b"GET / HTTP/1.0\r\n\r\n")
            .map_err(|e| e.to_string())?;
        let mut resp = String::new();
        s.read_to_string(&mut resp).map_err(|e| e.to_string())?;
        resp.split_once("\r\n\r\n")
            .map(|(_, body)| body.to_string())
            .ok_or_else(|| format!("not HTTP: {resp:?}"))
    })
    .join()
    .unwrap_or_else(|_| Err("the fetching thread panicked".into()))
}

/// A network namespace of the test's own, held open by a `sleep` that dies with the test;
/// it starts with only `lo`, brought up. Bridges, veths and iptables rules made in it never
/// touch the host's network, and go away with it.
#[derive(Debug)]
pub struct NetNs {
    holder: std::process::Child,
}

impl NetNs {
    pub fn new() -> Self {
        let mut holder = std::process::Command::new("unshare");
        holder
            .args(["--net", "sleep", "1000000"])
            .stdin(std::process::Stdio::null());
        die_with_parent(&mut holder);
        let holder = holder.spawn().expect("unshare --net");
        let ns = Self { holder };
        // Wait until the holder is in its own network namespace.
        let own = std::fs::read_link("/proc/self/ns/net").ok();
        for _ in 0..500 {
            let theirs = std::fs::read_link(ns.path()).ok();
            if theirs.is_some() && theirs != own {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        // A fresh network namespace has lo down; a host has it up.
        let up = std::process::Command::new("nsenter")
            .arg(format!("--net={}", ns.path().display()))
            .args(["ip", "link", "set", "lo", "up"])
            .status()
            .expect("ip link set lo up");
        assert!(
            up.success(),
            "bringing lo up in the test's network namespace"
        );
        ns
    }

    /// `/proc/PID/ns/net` of the holder.
    pub fn path(&self) -> std::path::PathBuf {
        format!("/proc/{}/ns/net", self.holder.id()).into()
    }
}

impl Default for NetNs {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}
