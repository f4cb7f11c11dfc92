//! The container's cgroups on cgroup v1, v2 (unified) and hybrid hosts.
//!
//! - [`layout`]: which hierarchies the host mounts, which controller lives where, and where a
//!   `cgroupsPath` puts the container in each ([`plan`], [`mount_binds`]).
//! - [`create`] makes the directories (seeding v1 cpusets, enabling v2 controllers in the
//!   ancestors' `cgroup.subtree_control`), [`remove`] takes them away again.
//! - [`apply`] / [`update`] validate every `linux.resources` field against the host *before*
//!   writing anything, then write the v1 or v2 files of the hierarchy holding each controller
//!   (`resources`, `v1`, `v2`, `devices`, `devices_bpf`).
//! - [`freeze`], [`thaw`], [`kill_all`], [`oom_kills`], [`OomWatcher`] and [`stats`] serve
//!   pause/resume, kill --all, events and events --stats.
//!
//! On a hybrid host every v1 controller hierarchy gets a directory, and so does the cgroup2
//! hierarchy (grouping, `cgroup.kill`, `cgroup.freeze`, and whichever controllers it holds).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use oci_spec::runtime::LinuxResources;

pub mod devices;
pub mod devices_bpf;
pub mod layout;
mod resources;
pub mod stats;
mod v1;
mod v2;

#[cfg(test)]
mod tests;

pub use layout::{Hierarchy, Host, Layout, Mode};
pub use stats::{oom_kills, stats, OomWatcher, Stats};

/// Why a cgroup operation failed. Each message names the field, file, or value at fault; the
/// errno is the `source`.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("cgroupsPath {path:?} is invalid: {why}")]
    BadPath { path: String, why: String },
    /// The error [`plan`] met, reported again by the operations on its placeholder.
    #[error("{0}")]
    Planned(String),
    /// A limit this host cannot honour (controller missing, knob absent, v1-only knob on v2, …).
    #[error("{field}: {why}")]
    Unsupported { field: String, why: String },
    #[error("{field}: value {value} is invalid: {why}")]
    BadValue {
        field: String,
        value: String,
        why: String,
    },
    #[error("{field}: writing {value:?} to {}", path.display())]
    Write {
        field: String,
        path: PathBuf,
        value: String,
        #[source]
        source: io::Error,
    },
    #[error("reading {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("creating cgroup {}", path.display())]
    Create {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{} did not become {want} within {waited:?} (last seen: {last:?})", path.display())]
    Timeout {
        path: PathBuf,
        want: String,
        last: String,
        waited: Duration,
    },
    #[error("{what} for {}", path.display())]
    Bpf {
        what: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{what}")]
    Sys {
        what: String,
        #[source]
        source: io::Error,
    },
}

impl CgroupError {
    fn kind(&self) -> io::ErrorKind {
        match self {
            Self::Write { source, .. }
            | Self::Read { source, .. }
            | Self::Create { source, .. }
            | Self::Bpf { source, .. }
            | Self::Sys { source, .. } => source.kind(),
            Self::Timeout { .. } => io::ErrorKind::TimedOut,
            Self::BadPath { .. } | Self::BadValue { .. } | Self::Planned(_) => {
                io::ErrorKind::InvalidInput
            }
            Self::Unsupported { .. } => io::ErrorKind::Unsupported,
        }
    }
}

impl From<CgroupError> for io::Error {
    /// Keeps the `CgroupError` as the inner error (its Display, and its source as the next link).
    fn from(e: CgroupError) -> Self {
        io::Error::new(e.kind(), e)
    }
}

/// One hierarchy: its mount point (`/sys/fs/cgroup/memory`) and the container's directory.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Dir {
    pub mountpoint: String,
    pub path: String,
    /// Ancestors of `path` that `create` made (outermost first), removed again with the
    /// container when empty: a nested cgroupsPath leaves nothing behind.
    #[serde(default)]
    pub created: Vec<String>,
    /// 1 or 2; 0 (state from before this field) means v1.
    #[serde(default)]
    pub version: u8,
    /// The controllers this hierarchy holds for the container; empty in old state (then the
    /// mount point's name says, as before).
    #[serde(default)]
    pub controllers: Vec<String>,
    /// Set by [`plan`] for an invalid `cgroupsPath`: [`create`] fails with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The leaf existed before `create` (another owner's cgroup, joined): [`remove`] only
    /// removes it if empty and never kills what runs in it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub joined: bool,
    /// Ancestors tinyo owns but shares between containers (the `tinyo/` of the default path):
    /// whichever container leaves last removes them, not only the one that made them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shared: Vec<String>,
}

impl Dir {
    pub fn is_v2(&self) -> bool {
        self.version == 2
    }

    /// Whether this hierarchy holds `controller` for the container.
    pub fn has(&self, controller: &str) -> bool {
        if self.controllers.is_empty() && !self.is_v2() {
            return Path::new(&self.mountpoint)
                .file_name()
                .is_some_and(|n| n.to_string_lossy().split(',').any(|c| c == controller));
        }
        self.controllers.iter().any(|c| c == controller)
    }

    fn usable(&self) -> bool {
        self.error.is_none() && !self.path.is_empty()
    }

    pub(crate) fn file(&self, name: &str) -> PathBuf {
        Path::new(&self.path).join(name)
    }
}

/// The usable directories (not an invalid-plan placeholder).
fn usable(dirs: &[Dir]) -> impl Iterator<Item = &Dir> {
    dirs.iter().filter(|d| d.usable())
}

/// The directory of the hierarchy holding `controller` (v1 first: a controller bound to v1 is
/// not usable in v2).
pub(crate) fn holder<'a>(dirs: &'a [Dir], controller: &str) -> Option<&'a Dir> {
    usable(dirs)
        .find(|d| !d.is_v2() && d.has(controller))
        .or_else(|| usable(dirs).find(|d| d.is_v2() && d.has(controller)))
}

/// The container's cgroup2 directory, if any.
pub(crate) fn v2_dir(dirs: &[Dir]) -> Option<&Dir> {
    usable(dirs).find(|d| d.is_v2())
}

pub(crate) fn read_file(path: &Path) -> Result<String, CgroupError> {
    fs::read_to_string(path).map_err(|source| CgroupError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes one value with one write(2) (cgroupfs takes one command per write). No O_CREAT: a
/// missing file is ENOENT, as it is on the kernel.
pub(crate) fn write_file(field: &str, path: &Path, value: &str) -> Result<(), CgroupError> {
    use std::io::Write;
    let err = |source| CgroupError::Write {
        field: field.to_string(),
        path: path.to_path_buf(),
        value: value.to_string(),
        source,
    };
    let mut f = fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .map_err(err)?;
    f.write_all(value.as_bytes()).map_err(err)
}

/// The directories for `cgroups_path` (absolute: from each hierarchy's root; relative: below
/// this process's own cgroup in that hierarchy, as runc does; none: `tinyo/<id>` below it), one
/// per managed hierarchy: every v1 hierarchy with a controller (named ones such as
/// `name=systemd` are left alone) and the cgroup2 hierarchy.
pub fn try_plan(cgroups_path: Option<&Path>, id: &str) -> Result<Vec<Dir>, CgroupError> {
    Host::real().plan(cgroups_path, id)
}

/// [`try_plan`] for callers that cannot fail here: an invalid `cgroupsPath` yields one
/// placeholder [`Dir`] on which [`create`] fails with the reason.
pub fn plan(cgroups_path: Option<&Path>, id: &str) -> Vec<Dir> {
    try_plan(cgroups_path, id).unwrap_or_else(|e| {
        vec![Dir {
            mountpoint: String::new(),
            path: String::new(),
            created: Vec::new(),
            version: 0,
            controllers: Vec::new(),
            error: Some(e.to_string()),
            joined: false,
            shared: Vec::new(),
        }]
    })
}

/// What the `cgroup` mount type binds, in the host's mount order: (hierarchy mount point,
/// source directory) — the container's directory where tinyo made one, else the creating
/// process's own cgroup in that hierarchy (as runc shows unmanaged hierarchies). Includes the
/// cgroup2 mount on hybrid hosts; on a pure v2 host it is the only entry.
pub fn mount_binds(dirs: &[Dir]) -> Vec<(String, String)> {
    Host::real().mount_binds(dirs)
}

/// Creates the directories, recording which ancestors it had to make; seeds v1 cpusets from
/// their parents and enables the v2 controllers in the ancestors' `cgroup.subtree_control`. On
/// error everything made so far is removed.
pub fn create(dirs: &mut [Dir]) -> io::Result<()> {
    try_create(dirs).map_err(io::Error::from)
}

/// [`create`] with the typed error.
pub fn try_create(dirs: &mut [Dir]) -> Result<(), CgroupError> {
    if let Some(e) = dirs.iter().find_map(|d| d.error.clone()) {
        return Err(CgroupError::Planned(e));
    }
    for i in 0..dirs.len() {
        if let Err(e) = create_one(&mut dirs[i]) {
            remove(&dirs[..=i]);
            return Err(e);
        }
    }
    Ok(())
}

fn create_one(d: &mut Dir) -> Result<(), CgroupError> {
    // A concurrent `delete` may remove a shared ancestor (`tinyo/`) between our mkdirs: walk
    // again from the top when a parent vanished.
    let mut tries = 0;
    loop {
        match create_walk(d) {
            Err(CgroupError::Create { source, .. })
                if source.kind() == io::ErrorKind::NotFound && tries < 5 =>
            {
                tries += 1;
            }
            other => return other,
        }
    }
}

fn create_walk(d: &mut Dir) -> Result<(), CgroupError> {
    let mount = PathBuf::from(&d.mountpoint);
    let path = PathBuf::from(&d.path);
    let rel = path
        .strip_prefix(&mount)
        .map_err(|_| CgroupError::BadPath {
            path: d.path.clone(),
            why: format!("not below its hierarchy {}", d.mountpoint),
        })?
        .to_path_buf();
    d.created.clear();
    d.joined = false;
    let cpuset = !d.is_v2() && d.has("cpuset");
    let mut cur = mount.clone();
    let comps: Vec<_> = rel.components().collect();
    for (n, c) in comps.iter().enumerate() {
        let parent = cur.clone();
        cur.push(c);
        let leaf = n + 1 == comps.len();
        if d.is_v2() {
            enable_subtree(&parent, &d.controllers);
        }
        match fs::create_dir(&cur) {
            Ok(()) => {
                if !leaf {
                    d.created.push(cur.display().to_string());
                }
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                if leaf {
                    d.joined = true;
                }
            }
            Err(source) => {
                return Err(CgroupError::Create { path: cur, source });
            }
        }
        if cpuset {
            seed_cpuset(&parent, &cur)?;
        }
    }
    Ok(())
}

/// v1 cpuset: a new cgroup starts with empty `cpuset.cpus`/`cpuset.mems` and refuses tasks until
/// they are set; copy them from the parent (as runc does) where empty.
fn seed_cpuset(parent: &Path, dir: &Path) -> Result<(), CgroupError> {
    for f in ["cpuset.cpus", "cpuset.mems"] {
        let Ok(from) = fs::read_to_string(parent.join(f)) else {
            continue; // no such file (a `noprefix` mount): nothing to seed
        };
        let mine = dir.join(f);
        if !fs::read_to_string(&mine)
            .unwrap_or_default()
            .trim()
            .is_empty()
        {
            continue;
        }
        fs::write(&mine, from.trim()).map_err(|source| CgroupError::Write {
            field: "cpuset seeding".into(),
            path: mine.clone(),
            value: from.trim().to_string(),
            source,
        })?;
    }
    Ok(())
}

/// v2: enables in `dir`'s `cgroup.subtree_control` every one of `wanted` that `dir` offers and
/// has not enabled yet. Best effort (a busy or delegated ancestor may refuse): [`apply`] reports
/// a controller that is not enabled when a limit needs it.
fn enable_subtree(dir: &Path, wanted: &[String]) {
    let offered = fs::read_to_string(dir.join("cgroup.controllers")).unwrap_or_default();
    let enabled = fs::read_to_string(dir.join("cgroup.subtree_control")).unwrap_or_default();
    let missing: Vec<String> = wanted
        .iter()
        .filter(|c| offered.split_whitespace().any(|o| o == c.as_str()))
        .filter(|c| !enabled.split_whitespace().any(|o| o == c.as_str()))
        .map(|c| format!("+{c}"))
        .collect();
    if missing.is_empty() {
        return;
    }
    let file = dir.join("cgroup.subtree_control");
    if write_file("enabling controllers", &file, &missing.join(" ")).is_err() {
        for m in &missing {
            let _ = write_file("enabling controllers", &file, m);
        }
    }
}

/// Applies `linux.resources` at create time. Compatibility wrapper of [`apply_resources`]
/// (the `io::Error` carries the [`CgroupError`]).
pub fn apply(dirs: &[Dir], res: &LinuxResources) -> io::Result<Vec<String>> {
    apply_resources(dirs, res).map_err(io::Error::from)
}

/// Validates every field of `res` against the host, then writes them; returns warnings (only
/// for genuinely obsolete knobs such as kernel memory limits).
pub fn apply_resources(dirs: &[Dir], res: &LinuxResources) -> Result<Vec<String>, CgroupError> {
    resources::apply_with(dirs, res, &resources::Sys::real(), false)
}

/// Changes the limits of a running container: only the fields set in `res`, with the same
/// validation as [`apply_resources`].
pub fn update(dirs: &[Dir], res: &LinuxResources) -> Result<Vec<String>, CgroupError> {
    resources::apply_with(dirs, res, &resources::Sys::real(), true)
}

/// Moves the calling process, which must be single-threaded, into every directory (`0` = the
/// writer); a v2 directory is skipped when `in_v2` (the process was cloned into it).
///
/// v1 hierarchies are joined through `tasks`, which moves only the writing thread: for a
/// single-threaded process that is the whole process, and the kernel then skips the global
/// threadgroup lock whose first writer waits out an RCU grace period (several milliseconds
/// per container; `cgroup.procs` takes it every time).
pub fn join_self(dirs: &[Dir], in_v2: bool) -> io::Result<()> {
    for d in usable(dirs) {
        if d.is_v2() && in_v2 {
            continue;
        }
        let p = d.file(if d.is_v2() { "cgroup.procs" } else { "tasks" });
        fs::write(&p, "0")
            .map_err(|e| io::Error::new(e.kind(), format!("joining cgroup {}: {e}", d.path)))?;
    }
    Ok(())
}

/// The files through which a process joins `dirs` by writing `0` into each (as
/// [`join_self`] does): opened beforehand, so that a child between fork and exec can join with
/// nothing but `write(2)`, which is async-signal-safe.
pub fn join_files(dirs: &[Dir]) -> io::Result<Vec<fs::File>> {
    usable(dirs)
        .map(|d| {
            let p = d.file(if d.is_v2() { "cgroup.procs" } else { "tasks" });
            fs::OpenOptions::new()
                .write(true)
                .open(&p)
                .map_err(|e| io::Error::new(e.kind(), format!("opening {}: {e}", p.display())))
        })
        .collect()
}

/// The pids in the container's cgroup (from the pids, freezer, or v2 hierarchy, else the
/// first).
pub fn pids(dirs: &[Dir]) -> Vec<i32> {
    let d = holder(dirs, "pids")
        .or_else(|| holder(dirs, "freezer"))
        .or_else(|| v2_dir(dirs))
        .or_else(|| usable(dirs).next());
    let Some(d) = d else { return Vec::new() };
    read_pids(d)
}

fn read_pids(d: &Dir) -> Vec<i32> {
    fs::read_to_string(d.file("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// Removes the directories (missing ones are fine) and any child cgroups the container made in
/// them, retrying briefly while the kernel still counts exiting tasks (EBUSY), then the
/// ancestors `create` made (and the shared `tinyo/`) if nothing else uses them.
///
/// Whatever still runs in the container's own cgroups is SIGKILLed first, frozen cgroups are
/// thawed so the kill lands, and this waits (up to [`KILL_WAIT`]) until they are empty: without
/// its own PID namespace a container's init can die and leave its children running, and a
/// paused container's processes would stay frozen forever. A joined leaf (one that existed
/// before `create`) is left to its owner: it is only removed if empty.
pub fn remove(dirs: &[Dir]) {
    let own: Vec<&Dir> = usable(dirs).filter(|d| !d.joined).collect();
    kill_members(&own, KILL_WAIT);
    for d in usable(dirs) {
        rmdir_tree(Path::new(&d.path));
        for a in d.created.iter().rev() {
            if fs::remove_dir(a).is_err() {
                break; // still used by another container
            }
        }
        for s in d.shared.iter().rev() {
            if fs::remove_dir(s).is_err() {
                break;
            }
        }
    }
}

/// How long [`remove`] waits for the killed processes of a container to leave its cgroups.
pub const KILL_WAIT: Duration = Duration::from_secs(5);

/// Every pid in the cgroups `dirs` and their descendants (only on a real cgroup filesystem:
/// never a fake tree's `cgroup.procs`), without this process.
fn members(dirs: &[&Dir]) -> std::collections::BTreeSet<i32> {
    fn walk(dir: &Path, out: &mut std::collections::BTreeSet<i32>) {
        out.extend(
            fs::read_to_string(dir.join("cgroup.procs"))
                .unwrap_or_default()
                .lines()
                .filter_map(|l| l.trim().parse::<i32>().ok())
                .filter(|&p| p > 1),
        );
        for e in fs::read_dir(dir).into_iter().flatten().flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                walk(&e.path(), out);
            }
        }
    }
    let mut out = std::collections::BTreeSet::new();
    for d in dirs {
        let p = Path::new(&d.path);
        if is_cgroupfs(p) {
            walk(p, &mut out);
        }
    }
    out.remove(&(std::process::id() as i32));
    out
}

/// Whether `path` is on cgroupfs (v1 or v2).
fn is_cgroupfs(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `c` is NUL-terminated and `st` a zeroed statfs the call fills in.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above; the pointers live across the call.
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return false;
    }
    // `f_type` is an i64 on glibc and an u64 on musl; the magic numbers fit either.
    #[allow(clippy::unnecessary_cast)]
    let magic = st.f_type as u64;
    magic == 0x0027_e0eb || magic == 0x6367_7270 // CGROUP_SUPER_MAGIC, CGROUP2_SUPER_MAGIC
}

/// Thaws `dir` and its descendants wherever they are frozen (v1 `freezer.state`, v2
/// `cgroup.freeze`).
fn thaw_tree(dir: &Path) {
    if let Ok(s) = fs::read_to_string(dir.join("freezer.state")) {
        if s.trim() != "THAWED" {
            let _ = write_file("freezer", &dir.join("freezer.state"), "THAWED");
        }
    }
    if let Ok(s) = fs::read_to_string(dir.join("cgroup.freeze")) {
        if s.trim() != "0" {
            let _ = write_file("freezer", &dir.join("cgroup.freeze"), "0");
        }
    }
    for e in fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            thaw_tree(&e.path());
        }
    }
}

/// SIGKILLs every process in `dirs` (and their child cgroups) until none is left or `wait`
/// has passed: v2 `cgroup.kill` where there is one (the whole subtree at once, forks too), each
/// listed pid otherwise, then a thaw so a frozen process can die. Returns whether they emptied.
fn kill_members(dirs: &[&Dir], wait: Duration) -> bool {
    let start = Instant::now();
    let mut delay = Duration::from_millis(1);
    loop {
        let pids = members(dirs);
        if pids.is_empty() {
            return true;
        }
        if start.elapsed() >= wait {
            return false;
        }
        for d in dirs.iter().filter(|d| d.is_v2()) {
            let f = d.file("cgroup.kill");
            if f.exists() {
                let _ = write_file("kill", &f, "1");
            }
        }
        for &p in &pids {
            let _ = crate::sys::kill(p, libc::SIGKILL);
        }
        for d in dirs {
            thaw_tree(Path::new(&d.path));
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_millis(20));
    }
}

fn rmdir_tree(dir: &Path) {
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                rmdir_tree(&e.path());
            }
        }
    }
    let mut delay = Duration::from_millis(1);
    let deadline = Instant::now() + Duration::from_millis(1000);
    loop {
        match fs::remove_dir(dir) {
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_millis(50));
            }
            _ => break,
        }
    }
}

/// How long [`freeze`] and [`thaw`] wait for the kernel to report the new state.
const FREEZE_WAIT: Duration = Duration::from_secs(5);

/// Freezes the container: v1 `freezer.state` (the freezer hierarchy is preferred where it is
/// mounted), else v2 `cgroup.freeze`; waits until the kernel reports it frozen.
pub fn freeze(dirs: &[Dir]) -> Result<(), CgroupError> {
    set_frozen(dirs, true, FREEZE_WAIT)
}

/// Thaws the container (see [`freeze`]).
pub fn thaw(dirs: &[Dir]) -> Result<(), CgroupError> {
    set_frozen(dirs, false, FREEZE_WAIT)
}

/// Whether the container is frozen (v1: `freezer.state` is FROZEN; v2: `frozen 1` in
/// `cgroup.events`).
pub fn is_frozen(dirs: &[Dir]) -> bool {
    match freezer(dirs) {
        Some(Freezer::V1(d)) => {
            fs::read_to_string(d.file("freezer.state")).is_ok_and(|s| s.trim() == "FROZEN")
        }
        Some(Freezer::V2(d)) => v2_frozen(d) == Some(true),
        None => false,
    }
}

enum Freezer<'a> {
    V1(&'a Dir),
    V2(&'a Dir),
}

fn freezer(dirs: &[Dir]) -> Option<Freezer<'_>> {
    if let Some(d) = usable(dirs).find(|d| !d.is_v2() && d.has("freezer")) {
        return Some(Freezer::V1(d));
    }
    v2_dir(dirs)
        .filter(|d| d.file("cgroup.freeze").exists())
        .map(Freezer::V2)
}

fn v2_frozen(d: &Dir) -> Option<bool> {
    let text = fs::read_to_string(d.file("cgroup.events")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("frozen "))
        .map(|v| v.trim() == "1")
}

pub(crate) fn set_frozen(dirs: &[Dir], frozen: bool, wait: Duration) -> Result<(), CgroupError> {
    let Some(f) = freezer(dirs) else {
        return Err(CgroupError::Unsupported {
            field: if frozen { "freeze" } else { "thaw" }.into(),
            why: "no freezer: neither a v1 freezer hierarchy nor cgroup.freeze in cgroup v2".into(),
        });
    };
    let start = Instant::now();
    match f {
        Freezer::V1(d) => {
            let file = d.file("freezer.state");
            let want = if frozen { "FROZEN" } else { "THAWED" };
            let mut i = 0u32;
            let last = loop {
                // A freeze can stick in FREEZING (a task in an uninterruptible sleep): as runc
                // does, thaw now and then and try again.
                if frozen && i > 0 && i % 50 == 0 {
                    write_file("freezer", &file, "THAWED")?;
                }
                write_file("freezer", &file, want)?;
                let state = read_file(&file)?.trim().to_string();
                if state == want {
                    return Ok(());
                }
                if start.elapsed() >= wait {
                    break state;
                }
                i += 1;
                std::thread::sleep(Duration::from_millis(if i < 10 { 1 } else { 10 }));
            };
            if frozen {
                let _ = write_file("freezer", &file, "THAWED");
            }
            Err(CgroupError::Timeout {
                path: file,
                want: want.into(),
                last,
                waited: start.elapsed(),
            })
        }
        Freezer::V2(d) => {
            let file = d.file("cgroup.freeze");
            write_file("freezer", &file, if frozen { "1" } else { "0" })?;
            let mut delay = Duration::from_millis(1);
            loop {
                let state = v2_frozen(d);
                if state == Some(frozen) {
                    return Ok(());
                }
                if start.elapsed() >= wait {
                    if frozen {
                        let _ = write_file("freezer", &file, "0");
                    }
                    return Err(CgroupError::Timeout {
                        path: d.file("cgroup.events"),
                        want: format!("frozen {}", u8::from(frozen)),
                        last: state.map_or("no frozen line".into(), |s| {
                            format!("frozen {}", u8::from(s))
                        }),
                        waited: start.elapsed(),
                    });
                }
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_millis(20));
            }
        }
    }
}

/// Signals every process of the container. SIGKILL goes through v2 `cgroup.kill` where the
/// container has a v2 directory with it (hybrid hosts too); otherwise the cgroup is frozen (if
/// a freezer exists and it is not frozen already), every pid in `cgroup.procs` signalled, and
/// thawed again (left frozen if it was).
pub fn kill_all(dirs: &[Dir], signal: i32) -> Result<(), CgroupError> {
    if signal == libc::SIGKILL {
        if let Some(d) = v2_dir(dirs) {
            let f = d.file("cgroup.kill");
            if f.exists() {
                return write_file("kill", &f, "1");
            }
        }
    }
    let was_frozen = is_frozen(dirs);
    let froze = !was_frozen && freezer(dirs).is_some() && freeze(dirs).is_ok();
    let mut failed = None;
    for pid in pids(dirs) {
        if let Err(e) = crate::sys::kill(pid, signal) {
            if e.raw_os_error() != Some(libc::ESRCH) {
                failed = Some(CgroupError::Sys {
                    what: format!("sending signal {signal} to pid {pid}"),
                    source: e,
                });
            }
        }
    }
    if froze {
        thaw(dirs)?;
    }
    failed.map_or(Ok(()), Err)
}
