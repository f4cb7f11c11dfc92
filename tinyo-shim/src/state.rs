//! Where tinyo-shim keeps things, and each container's record.
//!
//! - the image store: `/var/lib/tinyo` (tinyo-pull's), or `$TINYO_ROOT`;
//! - state: `/run/tinyo/shim`, or `$TINYO_ROOT/shim`: `containers/<id>/` (the record
//!   `container.json`, the bundle `config.json`, `rootfs/` (the overlay's mount point, mounted
//!   only inside the container), `upper/` and `work/`, the log `ctr.log`), `runtime/`
//!   (tinyo-core's state), `net/` (networking).
//!
//! A record is only ever replaced whole (write to a temp file, rename), under the container's
//! lock (`flock` on `<id>/lock`), so readers never see half of one.

use std::fs;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

/// The store and state directories.
#[derive(Debug, Clone)]
pub struct Roots {
    pub store: PathBuf,
    pub state: PathBuf,
}

impl Roots {
    /// `root` is `--root`/`TINYO_ROOT`: everything goes under it; else the system defaults.
    pub fn new(root: Option<PathBuf>) -> Self {
        match root {
            Some(r) => Self {
                state: r.join("shim"),
                store: r,
            },
            None => Self {
                store: PathBuf::from("/var/lib/tinyo"),
                state: PathBuf::from("/run/tinyo/shim"),
            },
        }
    }

    pub fn containers(&self) -> PathBuf {
        self.state.join("containers")
    }

    pub fn container(&self, id: &str) -> PathBuf {
        self.containers().join(id)
    }

    /// tinyo-core's state root for the shim's containers.
    pub fn runtime(&self) -> tinyo_core::container::Runtime {
        tinyo_core::container::Runtime::new(self.state.join("runtime"))
    }
}

/// Where a container is in its life, as `ps` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Being set up by its supervisor.
    Created,
    Running,
    /// Exited, and its supervisor will start it again after the backoff delay.
    Restarting,
    Exited,
}

/// A process identified beyond its pid (pids are reused): (pid, start time in ticks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proc {
    pub pid: i32,
    pub start: u64,
}

impl Proc {
    pub fn of(pid: i32) -> Option<Self> {
        start_time(pid).map(|start| Self { pid, start })
    }

    /// Alive, not a zombie, and the same process.
    pub fn alive(&self) -> bool {
        let Ok(s) = fs::read_to_string(format!("/proc/{}/stat", self.pid)) else {
            return false;
        };
        let Some(after) = s.rfind(')').map(|i| &s[i + 2..]) else {
            return false;
        };
        let fields: Vec<&str> = after.split(' ').collect();
        let state = fields.first().and_then(|f| f.chars().next());
        let start = fields.get(19).and_then(|f| f.parse::<u64>().ok());
        start == Some(self.start) && !matches!(state, Some('Z' | 'X') | None)
    }
}

fn start_time(pid: i32) -> Option<u64> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &s[s.rfind(')')? + 2..];
    after.split(' ').nth(19)?.parse().ok()
}

/// What tinyo-shim knows of one container (`container.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    pub name: String,
    /// The image as stored (`docker.io/library/alpine:latest`) and its manifest digest.
    pub image: String,
    pub image_digest: String,
    /// The command line the container runs (after the init, if any).
    pub command: Vec<String>,
    pub created: String,
    pub status: Status,
    /// The container's init process (host pid) while it runs.
    #[serde(default)]
    pub pid: Option<Proc>,
    /// The supervisor, while it lives.
    #[serde(default)]
    pub supervisor: Option<Proc>,
    #[serde(default)]
    pub started: Option<String>,
    #[serde(default)]
    pub exit_code: Option<i32>,
    #[serde(default)]
    pub exited: Option<String>,
    /// The kernel OOM-killed a process of the container.
    #[serde(default)]
    pub oom_killed: bool,
    pub tty: bool,
    pub interactive: bool,
    pub detached: bool,
    pub auto_remove: bool,
    /// `none`, `host` or `bridge`.
    pub network: String,
    #[serde(default)]
    pub ports: Vec<String>,
    /// The bridge attachment, for teardown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub net: Option<serde_json::Value>,
    /// Log size cap in bytes (0 = none) and rotated files kept.
    pub log_max_size: u64,
    pub log_max_files: u32,
    /// `--restart`, and how many times the supervisor has restarted the container.
    #[serde(default)]
    pub restart: crate::restart::Policy,
    #[serde(default)]
    pub restarts: u32,
    /// While restarting: when the next run starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_restart: Option<String>,
    /// `stop` or `rm -f` asked for it to end: it is not restarted again.
    #[serde(default)]
    pub stop_requested: bool,
    /// `--health-*`, and the checks' verdict while it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<crate::health::Config>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<crate::health::Health>,
    /// `--readiness-*` (a Kubernetes readinessProbe), and whether it is ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readiness: Option<crate::health::Config>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<crate::health::Health>,
    /// `--health-startup-*` (a Kubernetes startupProbe) and its progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub startup: Option<crate::health::Config>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub startup_state: Option<crate::health::Health>,
    /// The pod whose namespaces it joined (`run --pod`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
}

impl Record {
    /// The status as it really is: a record that says running but whose supervisor and
    /// container are both gone is reported as exited (lost), never running forever.
    pub fn live_status(&self) -> (Status, &'static str) {
        match self.status {
            Status::Exited => (Status::Exited, ""),
            s => {
                let sup = self.supervisor.is_some_and(|p| p.alive());
                let ctr = self.pid.is_some_and(|p| p.alive());
                match (sup, ctr) {
                    (true, _) => (s, ""),
                    (false, true) => (s, "unsupervised"),
                    (false, false) => (Status::Exited, "lost"),
                }
            }
        }
    }
}

/// A held container lock (released on drop).
#[derive(Debug)]
pub struct Lock(#[allow(dead_code)] OwnedFd);

/// Locks the container directory `dir` (blocking).
pub fn lock(dir: &Path) -> Result<Lock> {
    let f = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("lock"))
        .with_context(|| format!("opening {}", dir.join("lock").display()))?;
    let fd = OwnedFd::from(f);
    tinyo_core::sys::flock_exclusive(fd.as_fd())
        .with_context(|| format!("locking {}", dir.display()))?;
    Ok(Lock(fd))
}

/// Reads `container.json` of `dir`.
pub fn load(dir: &Path) -> Result<Record> {
    let p = dir.join("container.json");
    let text = fs::read(&p).with_context(|| format!("reading {}", p.display()))?;
    serde_json::from_slice(&text).with_context(|| format!("{} is corrupt", p.display()))
}

/// Replaces `container.json` of `dir` atomically.
pub fn save(dir: &Path, r: &Record) -> Result<()> {
    let json = serde_json::to_vec_pretty(r)?;
    write_atomic(&dir.join("container.json"), &json)
}

pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, data).with_context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))
}

/// Updates a record under its lock.
pub fn update(dir: &Path, f: impl FnOnce(&mut Record)) -> Result<Record> {
    let _l = lock(dir)?;
    let mut r = load(dir)?;
    f(&mut r);
    save(dir, &r)?;
    Ok(r)
}

/// Every container record (those being created or half-removed are skipped).
pub fn list(roots: &Roots) -> Result<Vec<Record>> {
    let rd = match fs::read_dir(roots.containers()) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(e).with_context(|| format!("reading {}", roots.containers().display()))
        }
    };
    let mut out = Vec::new();
    for e in rd.flatten() {
        if let Ok(r) = load(&e.path()) {
            out.push(r);
        }
    }
    out.sort_by(|a, b| a.created.cmp(&b.created).then(a.id.cmp(&b.id)));
    Ok(out)
}

/// Finds a container by name, full id or unique id prefix.
pub fn find(roots: &Roots, key: &str) -> Result<Record> {
    let all = list(roots)?;
    // POD/CONTAINER: a container of a pod by its name in the pod (`play kube` names them so).
    if let Some((pod, ctr)) = key.split_once('/') {
        let name = format!("{pod}-{ctr}");
        return all
            .into_iter()
            .find(|r| r.pod.as_deref() == Some(pod) && r.name == name)
            .ok_or_else(|| anyhow::anyhow!("no container {ctr} in pod {pod}"));
    }
    if let Some(r) = all.iter().find(|r| r.name == key || r.id == key) {
        return Ok(r.clone());
    }
    let matches: Vec<&Record> = all.iter().filter(|r| r.id.starts_with(key)).collect();
    match (key.len() >= 3, matches.as_slice()) {
        (true, [one]) => Ok((*one).clone()),
        (true, [_, _, ..]) => bail!("{key:?} matches several containers; give more of the id"),
        _ => bail!("no such container: {key}"),
    }
}

/// A new random container id: 32 hex digits.
pub fn new_id() -> String {
    let mut b = [0u8; 16];
    let r = fs::File::open("/dev/urandom").and_then(|mut f| io::Read::read_exact(&mut f, &mut b));
    if r.is_err() {
        // Fall back on time and pid: unique enough for one host.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        b.copy_from_slice(&(t ^ u128::from(std::process::id()) << 64).to_le_bytes());
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A name must be usable as a hostname-ish label: letters, digits, `_.-`, starting alnum.
pub fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !ok {
        bail!("invalid container name {name:?}: use letters, digits, '_', '.', '-'");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_ids() {
        assert!(check_name("web-1").is_ok());
        assert!(check_name("-x").is_err());
        assert!(check_name("a/b").is_err());
        let a = new_id();
        assert_eq!(a.len(), 32);
        assert_ne!(a, new_id());
    }

    #[test]
    fn a_dead_supervisor_and_container_read_as_lost() {
        let r = Record {
            id: "x".into(),
            name: "x".into(),
            image: String::new(),
            image_digest: String::new(),
            command: vec![],
            created: String::new(),
            status: Status::Running,
            pid: Some(Proc {
                pid: i32::MAX,
                start: 1,
            }),
            supervisor: Some(Proc {
                pid: i32::MAX,
                start: 1,
            }),
            started: None,
            exit_code: None,
            exited: None,
            oom_killed: false,
            tty: false,
            interactive: false,
            detached: true,
            auto_remove: false,
            network: "none".into(),
            ports: vec![],
            net: None,
            log_max_size: 0,
            log_max_files: 1,
            restart: crate::restart::Policy::No,
            restarts: 0,
            next_restart: None,
            stop_requested: false,
            healthcheck: None,
            health: None,
            pod: None,
            readiness: None,
            ready: None,
            startup: None,
            startup_state: None,
        };
        assert_eq!(r.live_status(), (Status::Exited, "lost"));
        let me = Proc::of(std::process::id() as i32).unwrap();
        let r = Record {
            supervisor: Some(me),
            ..r
        };
        assert_eq!(r.live_status(), (Status::Running, ""));
    }
}
