//! Statistics shaped like runc's `events --stats` data, OOM-kill counts, and an OOM watcher an
//! `events` loop can block on.

use std::collections::BTreeMap;
use std::fs;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use super::{holder, CgroupError, Dir};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    pub cpu: Cpu,
    pub memory: Memory,
    pub pids: Pids,
    pub blkio: Blkio,
    /// Per page size (`2MB`).
    pub hugetlb: BTreeMap<String, Hugetlb>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Cpu {
    pub usage: CpuUsage,
    pub throttling: Throttling,
}

/// Nanoseconds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CpuUsage {
    #[serde(skip_serializing_if = "is_zero")]
    pub total: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub percpu: Vec<u64>,
    #[serde(rename = "percpu_kernel", skip_serializing_if = "Vec::is_empty")]
    pub percpu_kernel: Vec<u64>,
    #[serde(rename = "percpu_user", skip_serializing_if = "Vec::is_empty")]
    pub percpu_user: Vec<u64>,
    pub kernel: u64,
    pub user: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Throttling {
    #[serde(skip_serializing_if = "is_zero")]
    pub periods: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub throttled_periods: u64,
    /// Nanoseconds.
    #[serde(skip_serializing_if = "is_zero")]
    pub throttled_time: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MemoryEntry {
    pub limit: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub usage: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub max: u64,
    pub failcnt: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Memory {
    #[serde(skip_serializing_if = "is_zero")]
    pub cache: u64,
    pub usage: MemoryEntry,
    pub swap: MemoryEntry,
    pub kernel: MemoryEntry,
    #[serde(rename = "kernelTCP")]
    pub kernel_tcp: MemoryEntry,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub raw: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Pids {
    #[serde(skip_serializing_if = "is_zero")]
    pub current: u64,
    /// 0 = unlimited.
    #[serde(skip_serializing_if = "is_zero")]
    pub limit: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BlkioEntry {
    pub major: u64,
    pub minor: u64,
    pub op: String,
    pub value: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Blkio {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub io_service_bytes_recursive: Vec<BlkioEntry>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub io_serviced_recursive: Vec<BlkioEntry>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Hugetlb {
    #[serde(skip_serializing_if = "is_zero")]
    pub usage: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub max: u64,
    pub failcnt: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

fn read(p: &Path) -> Option<String> {
    fs::read_to_string(p).ok()
}

/// A number, or `max` as u64::MAX (v2 limits); None when missing or unparsable.
fn num(p: &Path) -> Option<u64> {
    let s = read(p)?;
    let s = s.trim();
    if s == "max" {
        return Some(u64::MAX);
    }
    s.parse().ok()
}

fn n(p: &Path) -> u64 {
    num(p).unwrap_or(0)
}

/// `key value` lines (memory.stat, cpu.stat, memory.events, memory.oom_control).
pub(crate) fn flat_keyed(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(char::is_whitespace)?;
            Some((k.to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

fn keyed(p: &Path) -> BTreeMap<String, u64> {
    read(p).map(|t| flat_keyed(&t)).unwrap_or_default()
}

/// USER_HZ ticks (cpuacct.stat) → ns.
const NS_PER_TICK: u64 = 1_000_000_000 / 100;

/// Reads the container's statistics from whichever hierarchy holds each controller. Missing
/// files read as zero.
pub fn stats(dirs: &[Dir]) -> Stats {
    let mut s = Stats::default();
    cpu_stats(dirs, &mut s.cpu);
    if let Some(d) = holder(dirs, "memory") {
        s.memory = if d.is_v2() {
            memory_v2(d)
        } else {
            memory_v1(d)
        };
    }
    if let Some(d) = holder(dirs, "pids") {
        s.pids.current = n(&d.file("pids.current"));
        s.pids.limit = num(&d.file("pids.max"))
            .filter(|&v| v != u64::MAX)
            .unwrap_or(0);
    }
    if let Some(d) = holder(dirs, "blkio").filter(|d| !d.is_v2()) {
        s.blkio = blkio_v1(d);
    } else if let Some(d) = holder(dirs, "io") {
        s.blkio = io_v2(&read(&d.file("io.stat")).unwrap_or_default());
    }
    if let Some(d) = holder(dirs, "hugetlb") {
        s.hugetlb = hugetlb(d);
    }
    s
}

fn cpu_stats(dirs: &[Dir], c: &mut Cpu) {
    if let Some(d) = holder(dirs, "cpuacct").filter(|d| !d.is_v2()) {
        let u = &mut c.usage;
        u.total = n(&d.file("cpuacct.usage"));
        u.percpu = read(&d.file("cpuacct.usage_percpu"))
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|v| v.parse().ok())
            .collect();
        // cpuacct.usage_all: "cpu user system" per line, after a header.
        for line in read(&d.file("cpuacct.usage_all"))
            .unwrap_or_default()
            .lines()
            .skip(1)
        {
            let v: Vec<u64> = line
                .split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect();
            if v.len() == 3 {
                u.percpu_user.push(v[1]);
                u.percpu_kernel.push(v[2]);
            }
        }
        let st = keyed(&d.file("cpuacct.stat"));
        u.user = st.get("user").copied().unwrap_or(0) * NS_PER_TICK;
        u.kernel = st.get("system").copied().unwrap_or(0) * NS_PER_TICK;
    }
    if let Some(d) = holder(dirs, "cpu") {
        let st = keyed(&d.file("cpu.stat"));
        let g = |k: &str| st.get(k).copied().unwrap_or(0);
        c.throttling.periods = g("nr_periods");
        c.throttling.throttled_periods = g("nr_throttled");
        if d.is_v2() {
            c.throttling.throttled_time = g("throttled_usec") * 1000;
            c.usage.total = g("usage_usec") * 1000;
            c.usage.user = g("user_usec") * 1000;
            c.usage.kernel = g("system_usec") * 1000;
        } else {
            c.throttling.throttled_time = g("throttled_time");
        }
    }
}

fn entry_v1(d: &Dir, prefix: &str) -> MemoryEntry {
    let f = |s: &str| d.file(&format!("{prefix}{s}"));
    MemoryEntry {
        limit: n(&f("limit_in_bytes")),
        usage: n(&f("usage_in_bytes")),
        max: n(&f("max_usage_in_bytes")),
        failcnt: n(&f("failcnt")),
    }
}

fn memory_v1(d: &Dir) -> Memory {
    let raw = keyed(&d.file("memory.stat"));
    Memory {
        cache: raw
            .get("total_cache")
            .or(raw.get("cache"))
            .copied()
            .unwrap_or(0),
        usage: entry_v1(d, "memory."),
        swap: entry_v1(d, "memory.memsw."),
        kernel: entry_v1(d, "memory.kmem."),
        kernel_tcp: entry_v1(d, "memory.kmem.tcp."),
        raw,
    }
}

fn memory_v2(d: &Dir) -> Memory {
    let raw = keyed(&d.file("memory.stat"));
    let events = keyed(&d.file("memory.events"));
    Memory {
        cache: raw.get("file").copied().unwrap_or(0),
        usage: MemoryEntry {
            limit: n(&d.file("memory.max")),
            usage: n(&d.file("memory.current")),
            max: n(&d.file("memory.peak")),
            failcnt: events.get("max").copied().unwrap_or(0),
        },
        swap: MemoryEntry {
            limit: n(&d.file("memory.swap.max")),
            usage: n(&d.file("memory.swap.current")),
            max: n(&d.file("memory.swap.peak")),
            failcnt: keyed(&d.file("memory.swap.events"))
                .get("max")
                .copied()
                .unwrap_or(0),
        },
        kernel: MemoryEntry::default(),
        kernel_tcp: MemoryEntry::default(),
        raw,
    }
}

/// v1 `blkio.*_recursive` lines: `8:0 Read 4096` (and a `Total` line, skipped).
pub(crate) fn blkio_v1_entries(text: &str) -> Vec<BlkioEntry> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let (dev, op, v) = (it.next()?, it.next()?, it.next()?);
            let (ma, mi) = dev.split_once(':')?;
            Some(BlkioEntry {
                major: ma.parse().ok()?,
                minor: mi.parse().ok()?,
                op: op.to_string(),
                value: v.parse().ok()?,
            })
        })
        .collect()
}

fn blkio_v1(d: &Dir) -> Blkio {
    // BFQ's counters where BFQ is in use, else the throttle layer's (which sees all I/O).
    let pick = |bfq: &str, throttle: &str| {
        let b = read(&d.file(bfq))
            .map(|t| blkio_v1_entries(&t))
            .unwrap_or_default();
        if b.iter().any(|e| e.value != 0) {
            b
        } else {
            read(&d.file(throttle))
                .map(|t| blkio_v1_entries(&t))
                .unwrap_or_default()
        }
    };
    Blkio {
        io_service_bytes_recursive: pick(
            "blkio.bfq.io_service_bytes_recursive",
            "blkio.throttle.io_service_bytes_recursive",
        ),
        io_serviced_recursive: pick(
            "blkio.bfq.io_serviced_recursive",
            "blkio.throttle.io_serviced_recursive",
        ),
    }
}

/// v2 `io.stat`: `8:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=0 dios=0`.
pub(crate) fn io_v2(text: &str) -> Blkio {
    let mut b = Blkio::default();
    for line in text.lines() {
        let mut it = line.split_whitespace();
        let Some((ma, mi)) = it.next().and_then(|d| d.split_once(':')) else {
            continue;
        };
        let (Ok(major), Ok(minor)) = (ma.parse(), mi.parse()) else {
            continue;
        };
        for kv in it {
            let Some((k, v)) = kv.split_once('=') else {
                continue;
            };
            let Ok(value) = v.parse() else { continue };
            let (list, op) = match k {
                "rbytes" => (&mut b.io_service_bytes_recursive, "Read"),
                "wbytes" => (&mut b.io_service_bytes_recursive, "Write"),
                "dbytes" => (&mut b.io_service_bytes_recursive, "Discard"),
                "rios" => (&mut b.io_serviced_recursive, "Read"),
                "wios" => (&mut b.io_serviced_recursive, "Write"),
                "dios" => (&mut b.io_serviced_recursive, "Discard"),
                _ => continue,
            };
            list.push(BlkioEntry {
                major,
                minor,
                op: op.into(),
                value,
            });
        }
    }
    b
}

fn hugetlb(d: &Dir) -> BTreeMap<String, Hugetlb> {
    let mut out = BTreeMap::new();
    let Ok(rd) = fs::read_dir(&d.path) else {
        return out;
    };
    let suffix = if d.is_v2() {
        ".current"
    } else {
        ".usage_in_bytes"
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(size) = name
            .strip_prefix("hugetlb.")
            .and_then(|r| r.strip_suffix(suffix))
            .filter(|s| !s.contains('.'))
        else {
            continue;
        };
        let h = if d.is_v2() {
            Hugetlb {
                usage: n(&e.path()),
                max: 0,
                failcnt: keyed(&d.file(&format!("hugetlb.{size}.events")))
                    .get("max")
                    .copied()
                    .unwrap_or(0),
            }
        } else {
            Hugetlb {
                usage: n(&e.path()),
                max: n(&d.file(&format!("hugetlb.{size}.max_usage_in_bytes"))),
                failcnt: n(&d.file(&format!("hugetlb.{size}.failcnt"))),
            }
        };
        out.insert(size.to_string(), h);
    }
    out
}

/// How many times the OOM killer killed a process of the container (v1 `memory.oom_control`'s
/// `oom_kill`, v2 `memory.events`' `oom_kill`); 0 when unknown.
pub fn oom_kills(dirs: &[Dir]) -> u64 {
    let Some(d) = holder(dirs, "memory") else {
        return 0;
    };
    let file = if d.is_v2() {
        "memory.events"
    } else {
        "memory.oom_control"
    };
    keyed(&d.file(file)).get("oom_kill").copied().unwrap_or(0)
}

/// Waits for OOM events of a container: v1 registers an eventfd on `memory.oom_control`
/// through `cgroup.event_control`; v2 watches `memory.events` with inotify and compares the
/// `oom_kill` count. [`OomWatcher::as_fd`] can go into a poll set; [`OomWatcher::wait`] blocks.
#[derive(Debug)]
pub struct OomWatcher {
    fd: OwnedFd,
    dir: PathBuf,
    v2: bool,
    last: u64,
    /// Held open for the v1 registration's lifetime.
    _oom_control: Option<fs::File>,
}

fn sys_err(what: String) -> impl FnOnce(std::io::Error) -> CgroupError {
    move |source| CgroupError::Sys { what, source }
}

impl OomWatcher {
    pub fn new(dirs: &[Dir]) -> Result<Self, CgroupError> {
        let d = holder(dirs, "memory").ok_or_else(|| CgroupError::Unsupported {
            field: "oom events".into(),
            why: "no memory controller (neither a v1 hierarchy nor in cgroup v2)".into(),
        })?;
        let dir = PathBuf::from(&d.path);
        if d.is_v2() {
            let events = d.file("memory.events");
            // SAFETY: plain syscall with flag arguments only.
            let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK) };
            if fd < 0 {
                return Err(sys_err("inotify_init1".into())(
                    std::io::Error::last_os_error(),
                ));
            }
            // SAFETY: inotify_init1 just returned this descriptor; nothing else owns it.
            let fd = unsafe { OwnedFd::from_raw_fd(fd) };
            let c = crate::sys::cstr(&events)
                .map_err(sys_err(format!("watching {}", events.display())))?;
            // SAFETY: `fd` is an inotify descriptor and `c` a NUL-terminated path.
            let wd =
                unsafe { libc::inotify_add_watch(fd.as_raw_fd(), c.as_ptr(), libc::IN_MODIFY) };
            if wd < 0 {
                return Err(sys_err(format!("inotify watch on {}", events.display()))(
                    std::io::Error::last_os_error(),
                ));
            }
            let last = oom_kills(dirs);
            return Ok(Self {
                fd,
                dir,
                v2: true,
                last,
                _oom_control: None,
            });
        }
        let ctl = d.file("memory.oom_control");
        let oc = fs::File::open(&ctl).map_err(|source| CgroupError::Read {
            path: ctl.clone(),
            source,
        })?;
        // SAFETY: plain syscall with integer arguments.
        let efd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if efd < 0 {
            return Err(sys_err("eventfd".into())(std::io::Error::last_os_error()));
        }
        // SAFETY: eventfd just returned this descriptor; nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(efd) };
        super::write_file(
            "oom events",
            &d.file("cgroup.event_control"),
            &format!("{} {}", fd.as_raw_fd(), oc.as_raw_fd()),
        )?;
        Ok(Self {
            fd,
            dir,
            v2: false,
            last: oom_kills(dirs),
            _oom_control: Some(oc),
        })
    }

    /// Blocks until an OOM event (true) or the timeout / the cgroup's removal (false).
    pub fn wait(&mut self, timeout: Option<Duration>) -> Result<bool, CgroupError> {
        let deadline = timeout.map(|t| std::time::Instant::now() + t);
        loop {
            let ms = match deadline {
                None => -1,
                Some(d) => {
                    let left = d.saturating_duration_since(std::time::Instant::now());
                    left.as_millis().min(i32::MAX as u128) as i32
                }
            };
            let mut pfd = libc::pollfd {
                fd: self.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd, count 1.
            let r = unsafe { libc::poll(&mut pfd, 1, ms) };
            if r < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(sys_err("poll on the OOM watcher".into())(e));
            }
            if r == 0 {
                return Ok(false);
            }
            let mut buf = [0u8; 4096];
            // SAFETY: `buf` is writable for its length; the descriptor is ours and non-blocking.
            let _ = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if !self.dir.exists() {
                return Ok(false); // v1 signals the eventfd when the cgroup goes away
            }
            if !self.v2 {
                return Ok(true);
            }
            let now = keyed(&self.dir.join("memory.events"))
                .get("oom_kill")
                .copied()
                .unwrap_or(0);
            if now > self.last {
                self.last = now;
                return Ok(true);
            }
            if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
                return Ok(false);
            }
        }
    }
}

impl AsFd for OomWatcher {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
