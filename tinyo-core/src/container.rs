//! The container lifecycle: create, start, state, kill, delete, list — state kept under a root
//! directory (`<root>/<id>/state.json`, written by rename), one lock per container (`flock` on
//! its directory), and an exec barrier FIFO (`<root>/<id>/exec.fifo`) on which the created
//! process waits until `start`.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxNamespaceType;
use serde::{Deserialize, Serialize};

use crate::bundle::{Bundle, BundleError};
use crate::cgroup;
use crate::hooks::{self, Hooks};
use crate::mounts::{self, PlanError, PlanOptions};
use crate::process::{self, ProcessError, ProcessPlan};
use crate::sys;
use crate::terminal;
use crate::userns::{IdMaps, UsernsError};

/// Why a lifecycle command failed. Each message names the container or the thing at fault.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Bundle(#[from] BundleError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Process(#[from] ProcessError),
    #[error(transparent)]
    Userns(#[from] UsernsError),
    #[error(transparent)]
    Seccomp(#[from] crate::seccomp::SeccompError),
    #[error(transparent)]
    Cgroup(#[from] cgroup::CgroupError),
    #[error("container {id:?} is {status}: {what} needs a running container")]
    WrongStatus {
        id: String,
        status: Status,
        what: &'static str,
    },
    #[error(
        "container {0:?} has no cgroup (a rootless container without a delegated cgroup subtree)"
    )]
    NoCgroup(String),
    #[error("container {0:?} does not exist")]
    NotFound(String),
    #[error("container {0:?} already exists")]
    Exists(String),
    #[error("container id {0:?} is invalid (use letters, digits, '_', '+', '-', '.')")]
    BadId(String),
    #[error("container {id:?} is {status}, not created: cannot start it")]
    NotCreated { id: String, status: Status },
    #[error("container {id:?} is {status}: stop it first or use --force")]
    StillRunning { id: String, status: Status },
    /// runc's words: containerd's shim reads "container not running" as "already exited".
    #[error("container {0:?}: container not running")]
    NotRunning(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("container setup failed: {0}")]
    Setup(String),
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
}

/// The caller's namespaces for children (pid, time) to go back to when dropped.
struct ChildNamespaces(Vec<(OwnedFd, libc::c_int)>);

impl Drop for ChildNamespaces {
    fn drop(&mut self) {
        for (fd, flag) in self.0.drain(..).rev() {
            let _ = sys::setns(fd.as_fd(), flag);
        }
    }
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}

/// The runtime-spec status of a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Creating,
    Created,
    Running,
    /// Running, with every process frozen (`pause`).
    Paused,
    Stopped,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        })
    }
}

/// What is kept in `state.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Saved {
    pub id: String,
    pub pid: i32,
    /// Field 22 of /proc/PID/stat at creation, to tell our process from a reused pid.
    pub start_time: u64,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub created: String,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    #[serde(default)]
    pub cgroups: Vec<cgroup::Dir>,
    /// The config's hooks (poststart and poststop run from `start` and `delete`).
    #[serde(default, skip_serializing_if = "Hooks::is_empty")]
    pub hooks: Hooks,
}

/// The runtime-spec state of a container (what `tinyo state` prints), plus runc's extras.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct State {
    pub oci_version: String,
    pub id: String,
    pub status: Status,
    pub pid: i32,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub created: String,
    pub owner: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub annotations: BTreeMap<String, String>,
}

/// Options of `exec`.
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    pub pid_file: Option<PathBuf>,
    /// Where to send the pty master when the process has `terminal: true`.
    pub console_socket: Option<PathBuf>,
    /// Descriptors 3..3+N of this process are passed on to the process.
    pub preserve_fds: u32,
}

/// Options of `create`.
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    pub no_pivot: bool,
    pub pid_file: Option<PathBuf>,
    /// Where to send the pty master when `process.terminal` is true.
    pub console_socket: Option<PathBuf>,
    /// Descriptors 3..3+N of this process are passed on to the container process.
    pub preserve_fds: u32,
    /// Mount this overlay on the (empty) root.path directory, in the container's mount
    /// namespace, before anything else (what tinyo-shim does for image-based containers).
    pub overlay: Option<mounts::Overlay>,
}

/// A created container, as `create` returns it.
#[derive(Debug)]
pub struct Created {
    pub pid: i32,
    /// Settings of the config that are accepted but not applied (logged by the caller).
    pub warnings: Vec<String>,
    /// Notes for a debug log (e.g. seccomp syscall names this kernel does not know).
    pub notes: Vec<String>,
}

/// A runtime rooted at a state directory.
#[derive(Debug, Clone)]
pub struct Runtime {
    root: PathBuf,
}

const STATE: &str = "state.json";
/// The cgroups a `create` made, written before anything else can fail and read only when it
/// died before writing [`STATE`].
const UNFINISHED_CGROUPS: &str = "cgroups.json";
const FIFO: &str = "exec.fifo";

/// A held container lock; released on drop.
struct Locked {
    dir: PathBuf,
    fd: OwnedFd,
}

fn check_id(id: &str) -> Result<(), Error> {
    let ok = !id.is_empty()
        && id != "."
        && id != ".."
        && id.len() <= 1024
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_+-.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(Error::BadId(id.to_string()))
    }
}

/// (year, month, day) of a day count since 1970-01-01 (Howard Hinnant's `civil_from_days`).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// RFC 3339 UTC time with nanoseconds, as runc writes `created`.
pub fn now_rfc3339() -> String {
    rfc3339(std::time::SystemTime::now())
}

/// `t` as RFC 3339 in UTC with nanoseconds.
pub fn rfc3339(t: std::time::SystemTime) -> String {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        d.subsec_nanos()
    )
}

/// (state char, start time) of a process from /proc/PID/stat.
fn proc_stat(pid: i32) -> Option<(char, u64)> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &s[s.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split(' ').collect();
    let state = fields.first()?.chars().next()?;
    let start = fields.get(19)?.parse().ok()?;
    Some((state, start))
}

impl Saved {
    /// Whether the container's process is alive (not a zombie, not a reused pid).
    fn alive(&self) -> bool {
        match proc_stat(self.pid) {
            Some((state, start)) => start == self.start_time && state != 'Z' && state != 'X',
            None => false,
        }
    }
}

impl Runtime {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    fn dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    /// Where compiled seccomp programs are kept, keyed by a hash of the config's section.
    fn seccomp_cache(&self) -> PathBuf {
        self.root.join(".seccomp-cache")
    }

    /// Removes the state directory of a container whose `create` never wrote its state,
    /// once no live `create` holds its lock.
    fn remove_unfinished(&self, id: &str) -> Result<(), Error> {
        let dir = self.dir(id);
        let Ok(f) = fs::File::open(&dir) else {
            return Ok(());
        };
        let fd = OwnedFd::from(f);
        sys::flock_exclusive(fd.as_fd()).map_err(io_err(format!("locking {}", dir.display())))?;
        if !dir.join(STATE).exists() {
            // The container process died with its creator (parent-death signal), but anything
            // it forked may linger in the cgroups: kill them, then remove the cgroups.
            if let Ok(text) = fs::read(dir.join(UNFINISHED_CGROUPS)) {
                if let Ok(cgroups) = serde_json::from_slice::<Vec<cgroup::Dir>>(&text) {
                    for p in cgroup::pids(&cgroups) {
                        let _ = sys::kill(p, libc::SIGKILL);
                    }
                    cgroup::remove(&cgroups);
                }
            }
            fs::remove_dir_all(&dir).map_err(io_err(format!("removing {}", dir.display())))?;
        }
        Ok(())
    }

    /// Locks an existing container and reads its state.
    fn open(&self, id: &str) -> Result<(Locked, Saved), Error> {
        check_id(id)?;
        let dir = self.dir(id);
        let fd = fs::File::open(&dir).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => Error::NotFound(id.into()),
            _ => Error::Io {
                what: format!("opening {}", dir.display()),
                source: e,
            },
        })?;
        let fd = OwnedFd::from(fd);
        sys::flock_exclusive(fd.as_fd()).map_err(io_err(format!("locking {}", dir.display())))?;
        let text = match fs::read(dir.join(STATE)) {
            Ok(t) => t,
            // Deleted while we waited, or a create that never finished.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(Error::NotFound(id.into()))
            }
            Err(e) => return Err(io_err(format!("reading {}", dir.join(STATE).display()))(e)),
        };
        let saved: Saved = serde_json::from_slice(&text).map_err(|e| Error::Io {
            what: format!("{} is corrupt", dir.join(STATE).display()),
            source: io::Error::new(io::ErrorKind::InvalidData, e),
        })?;
        Ok((Locked { dir, fd }, saved))
    }

    fn status(&self, dir: &Path, saved: &Saved) -> Status {
        if !saved.alive() {
            Status::Stopped
        } else if dir.join(FIFO).exists() {
            Status::Created
        } else if cgroup::is_frozen(&saved.cgroups) {
            Status::Paused
        } else {
            Status::Running
        }
    }

    fn report(&self, dir: &Path, saved: &Saved) -> State {
        let owner = fs::metadata(dir)
            .map(|m| {
                use std::os::unix::fs::MetadataExt;
                m.uid()
            })
            .unwrap_or(0);
        let status = self.status(dir, saved);
        State {
            oci_version: crate::OCI_SPEC_VERSION.into(),
            id: saved.id.clone(),
            status,
            pid: if status == Status::Stopped {
                0
            } else {
                saved.pid
            },
            bundle: saved.bundle.clone(),
            rootfs: saved.rootfs.clone(),
            created: saved.created.clone(),
            owner: if owner == 0 {
                "root".into()
            } else {
                owner.to_string()
            },
            annotations: saved.annotations.clone(),
        }
    }

    /// The state of one container.
    pub fn state(&self, id: &str) -> Result<State, Error> {
        let (lock, saved) = self.open(id)?;
        Ok(self.report(&lock.dir, &saved))
    }

    /// The states of every container under the root (none if the root does not exist).
    pub fn list(&self) -> Result<Vec<State>, Error> {
        let rd = match fs::read_dir(&self.root) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(format!("reading {}", self.root.display()))(e)),
        };
        let mut out = Vec::new();
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if check_id(&name).is_err() || !e.path().is_dir() {
                continue;
            }
            match self.open(&name) {
                Ok((lock, saved)) => out.push(self.report(&lock.dir, &saved)),
                Err(Error::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    /// Creates the container: the process is cloned into its namespaces, sets up its root and
    /// waits on the exec barrier. Returns once it is waiting; nothing of this process is needed
    /// afterwards (the container is reparented to the caller's subreaper when it exits).
    pub fn create(&self, id: &str, bundle: &Path, opts: &CreateOptions) -> Result<Created, Error> {
        check_id(id)?;
        let bundle_dir = fs::canonicalize(bundle).map_err(|source| {
            Error::Bundle(BundleError::Read {
                path: bundle.join("config.json"),
                source,
            })
        })?;
        let b = Bundle::load(&bundle_dir)?;
        let prepared = Prepared::new(&b, id, opts, &self.seccomp_cache())?;

        fs::create_dir_all(&self.root)
            .map_err(io_err(format!("creating {}", self.root.display())))?;
        let _ = fs::set_permissions(&self.root, fs::Permissions::from_mode(0o711));
        let dir = self.dir(id);
        match fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(Error::Exists(id.into()))
            }
            Err(e) => return Err(io_err(format!("creating {}", dir.display()))(e)),
        }
        let guard = fs::File::open(&dir).map(OwnedFd::from);
        let result = guard
            .map_err(io_err(format!("opening {}", dir.display())))
            .and_then(|fd| {
                sys::flock_exclusive(fd.as_fd()).map_err(io_err("locking the new container"))?;
                let lock = Locked {
                    dir: dir.clone(),
                    fd,
                };
                self.create_locked(&lock, id, &b, prepared, opts)
            });
        if result.is_err() {
            let _ = fs::remove_dir_all(&dir);
        }
        result
    }

    fn create_locked(
        &self,
        lock: &Locked,
        id: &str,
        b: &Bundle,
        prepared: Prepared,
        opts: &CreateOptions,
    ) -> Result<Created, Error> {
        let fifo = lock.dir.join(FIFO);
        sys::mkfifo(&fifo, 0o600).map_err(io_err(format!("creating {}", fifo.display())))?;
        // Writable by the container's user, whoever that is (it opens the FIFO by an O_PATH
        // descriptor taken while root; the state directory stays closed to it).
        fs::set_permissions(&fifo, fs::Permissions::from_mode(0o622)).map_err(io_err(format!(
            "opening {} to the container's user",
            fifo.display()
        )))?;
        if let Some(m) = &prepared.idmaps {
            // The container's root opens the barrier from inside its user namespace.
            let (uid, gid) = (m.host_uid(0), m.host_gid(0));
            std::os::unix::fs::chown(&fifo, uid, gid).map_err(io_err(format!(
                "handing {} to the container's root",
                fifo.display()
            )))?;
        }
        let state_fd = sys::open_dir(&lock.dir).map_err(io_err("opening the state directory"))?;
        let mut warnings = prepared.warnings.clone();
        let mut prepared = prepared;
        cgroup::try_create(&mut prepared.cgroups)?;
        // Until state.json exists, this is all a `delete --force` after a crash has to go by.
        if let Ok(json) = serde_json::to_vec(&prepared.cgroups) {
            let _ = fs::write(lock.dir.join(UNFINISHED_CGROUPS), json);
        }
        let fail = |e: Error| {
            cgroup::remove(&prepared.cgroups);
            e
        };
        if let Some(res) = b
            .spec()
            .linux()
            .as_ref()
            .and_then(|l| l.resources().as_ref())
        {
            // Only linux.resources.devices and the default list become device rules: the
            // nodes linux.devices creates are usable only where a rule allows them (runc).
            match cgroup::apply_resources(&prepared.cgroups, res) {
                Ok(w) => warnings.extend(w),
                Err(e) => return Err(fail(e.into())),
            }
        }
        let console = match &opts.console_socket {
            Some(path) if prepared.terminal => Some(terminal::connect(path).map_err(|e| {
                fail(io_err(format!(
                    "connecting to --console-socket {}",
                    path.display()
                ))(e))
            })?),
            _ => None,
        };
        let listener = match &prepared.seccomp_listener {
            Some((path, _)) => Some(
                std::os::unix::net::UnixStream::connect(path)
                    .map(OwnedFd::from)
                    .map_err(|e| {
                        fail(io_err(format!(
                            "connecting to linux.seccomp.listenerPath {}",
                            path.display()
                        ))(e))
                    })?,
            ),
            None => None,
        };
        let pid =
            spawn(&prepared, state_fd, lock.fd.as_raw_fd(), console, listener).map_err(fail)?;
        let start_time = proc_stat(pid).map(|s| s.1).unwrap_or(0);
        let saved = Saved {
            id: id.into(),
            pid,
            start_time,
            bundle: b.dir().to_path_buf(),
            rootfs: b.rootfs(),
            created: now_rfc3339(),
            annotations: b
                .spec()
                .annotations()
                .clone()
                .unwrap_or_default()
                .into_iter()
                .collect(),
            cgroups: prepared.cgroups.clone(),
            hooks: prepared.hooks.clone(),
        };
        let written = write_state(&lock.dir, &saved).and_then(|()| match &opts.pid_file {
            Some(p) => write_atomic(p, pid.to_string().as_bytes()),
            None => Ok(()),
        });
        if let Err(e) = written {
            let _ = sys::kill(pid, libc::SIGKILL);
            let _ = sys::waitpid(pid, 0);
            return Err(fail(e));
        }
        Ok(Created {
            pid,
            warnings,
            notes: prepared.notes.clone(),
        })
    }

    /// Lets a created container run its process.
    pub fn start(&self, id: &str) -> Result<Vec<String>, Error> {
        let (lock, saved) = self.open(id)?;
        let status = self.status(&lock.dir, &saved);
        if status != Status::Created {
            return Err(Error::NotCreated {
                id: id.into(),
                status,
            });
        }
        let fifo = lock.dir.join(FIFO);
        let mut f = fs::OpenOptions::new()
            .read(true)
            .custom_flags_nonblock()
            .open(&fifo)
            .map_err(io_err(format!("opening {}", fifo.display())))?;
        // Wait for the container to open its end, run its startContainer hooks and write one
        // byte: `0` when it is about to exec, `E` and the reason when a hook failed. EOF with
        // the container gone means it died before it could be started.
        let mut byte = [0u8; 1];
        let mut tries = 0;
        // startContainer hooks run before the byte is written: wait as long as it lives.
        let bound = if saved.hooks.start_container.is_empty() {
            2000
        } else {
            u64::MAX
        };
        loop {
            match f.read(&mut byte) {
                Ok(1) => break,
                Ok(_) | Err(_) if tries < bound && saved.alive() => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_micros(500));
                }
                Ok(_) | Err(_) => {
                    let _ = fs::remove_file(&fifo);
                    return Err(Error::Setup(format!(
                        "container {id:?} exited before it could be started"
                    )));
                }
            }
        }
        // Then the FIFO closes when the exec succeeds; after `0`, `E` and the reason tell of
        // a failed exec.
        let mut rest = Vec::new();
        loop {
            let mut buf = [0u8; 4096];
            match f.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => rest.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && saved.alive() => {
                    std::thread::sleep(std::time::Duration::from_micros(200));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        let failure = if byte[0] == b'E' {
            Some(&rest[..])
        } else {
            rest.strip_prefix(b"E")
        };
        if let Some(msg) = failure {
            let _ = fs::remove_file(&fifo);
            return Err(Error::Setup(
                String::from_utf8_lossy(msg).trim().to_string(),
            ));
        }
        fs::remove_file(&fifo).map_err(io_err(format!("removing {}", fifo.display())))?;
        let mut warnings = Vec::new();
        if !saved.hooks.poststart.is_empty() {
            // runc hands poststart hooks the state as it was before the start: "created".
            let state =
                hooks::state_json(id, "created", saved.pid, &saved.bundle, &saved.annotations);
            if let Err(e) = hooks::run("poststart", &saved.hooks.poststart, &state) {
                warnings.push(e);
            }
        }
        Ok(warnings)
    }

    /// Sends `signal` to the container's process (or, with `all`, to every process in its
    /// cgroup).
    pub fn kill(&self, id: &str, signal: i32, all: bool) -> Result<(), Error> {
        let (lock, saved) = self.open(id)?;
        let status = self.status(&lock.dir, &saved);
        if status == Status::Stopped {
            if !all {
                return Err(Error::NotRunning(id.into()));
            }
            // As runc: `kill --all` of a stopped container still signals whatever is left in
            // its cgroup (children of an init that died in a shared PID namespace).
            return if saved.cgroups.is_empty() {
                Ok(())
            } else {
                cgroup::kill_all(&saved.cgroups, signal).map_err(Error::from)
            };
        }
        let sent = if all && !saved.cgroups.is_empty() {
            cgroup::kill_all(&saved.cgroups, signal).map_err(Error::from)
        } else {
            sys::kill(saved.pid, signal).map_err(io_err(format!("signalling container {id:?}")))
        };
        if sent.is_ok() && status == Status::Paused && signal == libc::SIGKILL {
            // As runc: a SIGKILL to a paused container thaws it, or the kill never lands.
            let _ = cgroup::thaw(&saved.cgroups);
        }
        sent
    }

    /// Opens a container that must be alive (created, running or paused) and have cgroups.
    fn open_live(&self, id: &str, what: &'static str) -> Result<(Saved, Status), Error> {
        let (lock, saved) = self.open(id)?;
        let status = self.status(&lock.dir, &saved);
        if status == Status::Stopped {
            return Err(Error::WrongStatus {
                id: id.into(),
                status,
                what,
            });
        }
        if saved.cgroups.is_empty() {
            return Err(Error::NoCgroup(id.into()));
        }
        Ok((saved, status))
    }

    /// Freezes every process of the container (`pause`).
    pub fn pause(&self, id: &str) -> Result<(), Error> {
        let (saved, status) = self.open_live(id, "pause")?;
        if status == Status::Paused {
            return Err(Error::WrongStatus {
                id: id.into(),
                status,
                what: "pause",
            });
        }
        Ok(cgroup::freeze(&saved.cgroups)?)
    }

    /// Thaws a paused container (`resume`).
    pub fn resume(&self, id: &str) -> Result<(), Error> {
        let (saved, status) = self.open_live(id, "resume")?;
        if status != Status::Paused {
            return Err(Error::WrongStatus {
                id: id.into(),
                status,
                what: "resume (it is not paused)",
            });
        }
        Ok(cgroup::thaw(&saved.cgroups)?)
    }

    /// Changes the container's cgroup limits (`update`); returns warnings.
    pub fn update(
        &self,
        id: &str,
        resources: &oci_spec::runtime::LinuxResources,
    ) -> Result<Vec<String>, Error> {
        let (saved, _) = self.open_live(id, "update")?;
        Ok(cgroup::update(&saved.cgroups, resources)?)
    }

    /// The container's cgroup counters (`events --stats`).
    pub fn stats(&self, id: &str) -> Result<cgroup::Stats, Error> {
        let (saved, _) = self.open_live(id, "stats")?;
        Ok(cgroup::stats(&saved.cgroups))
    }

    /// Something to block on until the kernel reports an OOM in the container's memory cgroup.
    pub fn oom_watcher(&self, id: &str) -> Result<cgroup::OomWatcher, Error> {
        let (saved, _) = self.open_live(id, "events")?;
        Ok(cgroup::OomWatcher::new(&saved.cgroups)?)
    }

    /// How many processes of the container the kernel has OOM-killed (0 without a memory
    /// cgroup), and whether the container is still alive.
    pub fn oom_kills(&self, id: &str) -> Result<(u64, bool), Error> {
        let (lock, saved) = self.open(id)?;
        let alive = self.status(&lock.dir, &saved) != Status::Stopped;
        Ok((cgroup::oom_kills(&saved.cgroups), alive))
    }

    /// Starts another process in a running container: it joins the container's namespaces,
    /// cgroups and root, and takes `process` (user, capabilities, rlimits, env, cwd) as given.
    /// Returns its pid once it is about to exec; it is this process's child, so the caller can
    /// wait for it.
    pub fn exec(
        &self,
        id: &str,
        process: oci_spec::runtime::Process,
        opts: &ExecOptions,
    ) -> Result<i32, Error> {
        let (lock, saved) = self.open(id)?;
        let status = self.status(&lock.dir, &saved);
        if status != Status::Running && status != Status::Created {
            return Err(Error::NotRunning(id.into()));
        }
        let terminal = process.terminal() == Some(true);
        check_terminal(terminal, opts.console_socket.as_deref())?;
        let console_size = terminal::console_size(&process);
        let b = Bundle::load(&saved.bundle)?;
        let mut spec = b.spec().clone();
        spec.set_process(Some(process));
        spec.set_hostname(None);
        spec.set_domainname(None);
        let mut plan = ProcessPlan::from_spec(&spec)?;
        plan.sysctl.clear();
        // The container's seccomp filter applies to every process in it (as with runc); a
        // notify filter's listener only goes to the agent at create, so exec runs without it.
        let seccomp = match spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) {
            Some(section) => Some(crate::seccomp::compile_cached(
                section,
                &self.seccomp_cache(),
            )?),
            None => None,
        };
        plan.preserve_fds = opts.preserve_fds;
        if plan.args.is_empty() {
            return Err(ProcessError::NoProcess.into());
        }
        // The container's namespaces, by its init's /proc entries, and its root.
        let mut ns_fds = Vec::new();
        let linux = spec.linux().as_ref();
        for ns in linux
            .and_then(|l| l.namespaces().as_ref())
            .into_iter()
            .flatten()
        {
            let name = match ns.typ() {
                LinuxNamespaceType::Mount => "mnt",
                LinuxNamespaceType::Cgroup => "cgroup",
                LinuxNamespaceType::Uts => "uts",
                LinuxNamespaceType::Ipc => "ipc",
                LinuxNamespaceType::User => "user",
                LinuxNamespaceType::Pid => "pid",
                LinuxNamespaceType::Network => "net",
                LinuxNamespaceType::Time => "time",
            };
            let path = format!("/proc/{}/ns/{name}", saved.pid);
            let f = fs::File::open(&path).map_err(io_err(format!("opening {path}")))?;
            ns_fds.push((ns_flag(ns.typ()), OwnedFd::from(f)));
        }
        let root_path = PathBuf::from(format!("/proc/{}/root", saved.pid));
        let root = sys::open_dir(&root_path)
            .map_err(io_err(format!("opening {}", root_path.display())))?;
        // Settings that apply to children must be joined before cloning; the caller's own
        // come back when this returns, so a long-lived caller (a supervisor running health
        // checks) does not clone its next container into this one's namespaces.
        let mut _restore = ChildNamespaces(Vec::new());
        for (flag, fd) in &ns_fds {
            let own = match *flag {
                libc::CLONE_NEWPID => "/proc/self/ns/pid_for_children",
                libc::CLONE_NEWTIME => "/proc/self/ns/time_for_children",
                _ => continue,
            };
            let mine = fs::File::open(own).map_err(io_err(format!("opening {own}")))?;
            _restore.0.push((OwnedFd::from(mine), *flag));
            sys::setns(fd.as_fd(), *flag)
                .map_err(io_err("joining the container's pid namespace"))?;
        }
        let (mut rd, wr) = {
            let (r, w) = sys::pipe().map_err(io_err("creating the sync pipe"))?;
            (fs::File::from(r), w)
        };
        let console = match &opts.console_socket {
            Some(path) if terminal => Some(terminal::connect(path).map_err(io_err(format!(
                "connecting to --console-socket {}",
                path.display()
            )))?),
            _ => None,
        };
        // SAFETY: the tinyo CLI is single-threaded; the child never returns from this block.
        let (pid, in_v2) = unsafe { clone_in_cgroup(0, &saved.cgroups) }
            .map_err(io_err("cloning the exec process"))?;
        let Some(pid) = pid else {
            drop(rd);
            sys::close_raw(lock.fd.as_raw_fd());
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                exec_child(
                    &plan,
                    (&saved.cgroups, in_v2),
                    &ns_fds,
                    root,
                    wr,
                    (console, console_size),
                    seccomp.as_ref(),
                )
            }));
            sys::exit_now(1);
        };
        drop(wr);
        drop(console);
        let mut first = [0u8; 1];
        let mut after = Vec::new();
        if rd.read(&mut first).unwrap_or(0) == 1
            && first[0] == b'R'
            && rd.read_to_end(&mut after).is_ok()
            && after.is_empty()
        {
            if let Some(p) = &opts.pid_file {
                if let Err(e) = write_atomic(p, pid.to_string().as_bytes()) {
                    let _ = sys::kill(pid, libc::SIGKILL);
                    let _ = sys::waitpid(pid, 0);
                    return Err(e);
                }
            }
            return Ok(pid);
        }
        let mut buf = after;
        let _ = rd.read_to_end(&mut buf);
        let _ = sys::waitpid(pid, 0);
        let msg = String::from_utf8_lossy(buf.strip_prefix(b"E").unwrap_or(&buf))
            .trim()
            .to_string();
        Err(Error::Setup(if msg.is_empty() {
            "the exec process exited during setup".into()
        } else {
            msg
        }))
    }

    /// The pids of the container's processes (its cgroup's members, or just its init).
    pub fn pids(&self, id: &str) -> Result<Vec<i32>, Error> {
        let (lock, saved) = self.open(id)?;
        if self.status(&lock.dir, &saved) == Status::Stopped {
            return Ok(Vec::new());
        }
        let mut pids = cgroup::pids(&saved.cgroups);
        if pids.is_empty() {
            pids.push(saved.pid);
        }
        Ok(pids)
    }

    /// Removes the container: its cgroups and state. A container that is still running needs
    /// `force`, which kills it (SIGKILL) first.
    pub fn delete(&self, id: &str, force: bool) -> Result<Vec<String>, Error> {
        let (lock, saved) = match self.open(id) {
            // As runc: `delete --force` of a container that does not exist succeeds, and removes
            // what a `create` that died before writing its state left behind.
            Err(Error::NotFound(_)) if force => {
                self.remove_unfinished(id)?;
                return Ok(Vec::new());
            }
            other => other?,
        };
        let status = self.status(&lock.dir, &saved);
        if status != Status::Stopped {
            // As runc: a running or paused container needs --force; a created one does not.
            if !force && status != Status::Created {
                return Err(Error::StillRunning {
                    id: id.into(),
                    status,
                });
            }
            for p in cgroup::pids(&saved.cgroups) {
                let _ = sys::kill(p, libc::SIGKILL);
            }
            let _ = sys::kill(saved.pid, libc::SIGKILL);
            if status == Status::Paused {
                // A frozen process only dies once thawed.
                let _ = cgroup::thaw(&saved.cgroups);
            }
            // Our own child (run): reap it. Otherwise wait until it is a zombie or gone.
            for _ in 0..2000 {
                let _ = sys::waitpid(saved.pid, libc::WNOHANG);
                if !saved.alive() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        }
        // Also SIGKILLs what outlived the init (no PID namespace of its own) and waits for it.
        cgroup::remove(&saved.cgroups);
        let mut warnings = Vec::new();
        if !saved.hooks.poststop.is_empty() {
            let state =
                hooks::state_json(id, "stopped", saved.pid, &saved.bundle, &saved.annotations);
            if let Err(e) = hooks::run("poststop", &saved.hooks.poststop, &state) {
                warnings.push(e);
            }
        }
        fs::remove_dir_all(&lock.dir)
            .map_err(io_err(format!("removing {}", lock.dir.display())))?;
        Ok(warnings)
    }
}

trait NonBlock {
    fn custom_flags_nonblock(&mut self) -> &mut Self;
}

impl NonBlock for fs::OpenOptions {
    fn custom_flags_nonblock(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.custom_flags(libc::O_NONBLOCK)
    }
}

fn write_atomic(path: &Path, data: &[u8]) -> Result<(), Error> {
    let tmp = path.with_file_name(format!(
        ".{}.tmp",
        path.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default()
    ));
    fs::write(&tmp, data)
        .and_then(|()| fs::rename(&tmp, path))
        .map_err(io_err(format!("writing {}", path.display())))
}

fn write_state(dir: &Path, saved: &Saved) -> Result<(), Error> {
    let json = serde_json::to_vec(saved).map_err(|e| Error::Io {
        what: "serialising state".into(),
        source: io::Error::other(e),
    })?;
    write_atomic(&dir.join(STATE), &json)
}

/// Everything computed before cloning.
struct Prepared {
    plan: mounts::Plan,
    process: ProcessPlan,
    cgroups: Vec<cgroup::Dir>,
    cgroup_binds: Vec<(String, String)>,
    /// Namespaces to create (clone flags) and to join (type flag, path).
    clone_flags: u64,
    join: Vec<(libc::c_int, PathBuf)>,
    uts: bool,
    /// The mappings of a new user namespace, written by the runtime after the clone.
    idmaps: Option<IdMaps>,
    /// The compiled `linux.seccomp` filter, and where its listener goes (path, metadata).
    seccomp: Option<crate::seccomp::Compiled>,
    seccomp_listener: Option<(PathBuf, String)>,
    /// Debug notes for the caller.
    notes: Vec<String>,
    /// How many idmapped binds the plan has: their detached trees are made by a helper in
    /// the container's mount namespace and sent over a socket (see [`send_idmapped_trees`]).
    idmapped: usize,
    warnings: Vec<String>,
    hooks: Hooks,
    /// `process.terminal`, and `process.consoleSize` as (rows, columns).
    terminal: bool,
    console_size: Option<(u16, u16)>,
    /// The state hooks read: id, bundle, annotations.
    id: String,
    bundle: PathBuf,
    annotations: BTreeMap<String, String>,
}

fn ns_flag(t: LinuxNamespaceType) -> libc::c_int {
    match t {
        LinuxNamespaceType::Mount => libc::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => libc::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => libc::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => libc::CLONE_NEWIPC,
        LinuxNamespaceType::User => libc::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => libc::CLONE_NEWPID,
        LinuxNamespaceType::Network => libc::CLONE_NEWNET,
        LinuxNamespaceType::Time => libc::CLONE_NEWTIME,
    }
}

impl Prepared {
    fn new(
        b: &Bundle,
        id: &str,
        opts: &CreateOptions,
        seccomp_cache: &Path,
    ) -> Result<Self, Error> {
        let spec = b.spec();
        let plan = mounts::plan(
            spec,
            b.dir(),
            &b.rootfs(),
            PlanOptions {
                no_pivot: opts.no_pivot,
            },
        )?;
        let mut plan = plan;
        if let Some(overlay) = &opts.overlay {
            // Right after the host's mounts are made private, before the root is bound.
            let at = plan
                .ops
                .iter()
                .position(|o| matches!(o, mounts::Op::BindRootfs { .. }))
                .unwrap_or(0);
            plan.ops.insert(at, overlay.op(&b.rootfs())?);
        }
        let mut process = ProcessPlan::from_spec(spec)?;
        process.preserve_fds = opts.preserve_fds;
        if process.args.is_empty() {
            return Err(ProcessError::NoProcess.into());
        }
        let linux = spec.linux().as_ref();
        let mut clone_flags = 0u64;
        let mut join = Vec::new();
        let mut has_mount = false;
        let mut uts = false;
        for ns in linux
            .and_then(|l| l.namespaces().as_ref())
            .into_iter()
            .flatten()
        {
            let flag = ns_flag(ns.typ());
            match ns.typ() {
                LinuxNamespaceType::Mount => has_mount = true,
                LinuxNamespaceType::Uts => uts = true,
                _ => {}
            }
            match ns.path() {
                Some(p) if !p.as_os_str().is_empty() => {
                    // The real reason (EACCES on another pid namespace's /proc entry is not
                    // "does not exist").
                    if let Err(e) = fs::metadata(p) {
                        return Err(Error::Unsupported(format!(
                            "linux.namespaces: {:?} namespace path {}: {}",
                            serde_name(&ns.typ()),
                            p.display(),
                            sys::errno_text(&e)
                        )));
                    }
                    join.push((flag, p.clone()));
                }
                _ => clone_flags |= flag as u64,
            }
        }
        // runc's check and words: without a UTS namespace the host's names would change.
        for (field, value) in [
            ("hostname", spec.hostname()),
            ("domainname", spec.domainname()),
        ] {
            if !uts && value.as_deref().is_some_and(|v| !v.is_empty()) {
                return Err(Error::Unsupported(format!(
                    "unable to set {field} without a private UTS namespace"
                )));
            }
        }
        if !has_mount {
            // The host's mount namespace: no mount at all, or a clear refusal naming the
            // first one the config needs (nothing could undo it reliably at delete).
            plan = mounts::without_mount_namespace(plan)?;
        }
        let mut warnings = b.warnings().to_vec();
        let l = linux;
        let mut notes = crate::lsm::Labels::from_spec(spec).1;
        let (seccomp, seccomp_listener) = match l.and_then(|l| l.seccomp().as_ref()) {
            Some(section) => {
                let compiled = crate::seccomp::compile_cached(section, seccomp_cache)?;
                if !compiled.skipped().is_empty() {
                    notes.push(format!(
                        "linux.seccomp: syscalls unknown here, skipped: {}",
                        compiled.skipped().join(" ")
                    ));
                }
                let listener = match (compiled.needs_listener(), section.listener_path()) {
                    (true, Some(path)) => Some((
                        path.clone(),
                        section.listener_metadata().clone().unwrap_or_default(),
                    )),
                    (true, None) => {
                        return Err(Error::Unsupported(
                            "linux.seccomp: SCMP_ACT_NOTIFY needs listenerPath (where the runtime sends the notification descriptor)".into(),
                        ))
                    }
                    (false, _) => None,
                };
                (Some(compiled), listener)
            }
            None => (None, None),
        };
        let idmaps = IdMaps::from_spec(
            clone_flags & libc::CLONE_NEWUSER as u64 != 0,
            l.and_then(|l| l.uid_mappings().as_deref()),
            l.and_then(|l| l.gid_mappings().as_deref()),
        )?;
        let proc_spec = spec.process().as_ref();
        let terminal = proc_spec.is_some_and(|p| p.terminal() == Some(true));
        check_terminal(terminal, opts.console_socket.as_deref())?;
        let console_size = proc_spec.and_then(terminal::console_size);
        let hooks = Hooks::from_spec(spec).map_err(Error::Unsupported)?;
        let cgroups_path = l.and_then(|l| l.cgroups_path().as_deref());
        let mut cgroups = cgroup::try_plan(cgroups_path, id)?;
        if sys::geteuid() != 0 && !cgroups.is_empty() {
            // Rootless: cgroups only where a delegated subtree lets this user make them.
            let writable = cgroups.iter().all(|d| {
                let parent = Path::new(&d.path).ancestors().find(|a| a.exists());
                parent.is_some_and(sys::is_writable_dir)
            });
            if !writable {
                warnings.push(format!(
                    "rootless: no writable delegated cgroup subtree for {}, running without cgroups (linux.resources not applied)",
                    cgroups[0].path
                ));
                cgroups.clear();
            }
        }
        let cgroup_binds = if plan
            .ops
            .iter()
            .any(|o| matches!(o, mounts::Op::Cgroup { .. }))
        {
            // On a hybrid host the container sees the v1 hierarchies only, as under runc.
            let mut binds = cgroup::mount_binds(&cgroups);
            if binds.len() > 1 {
                binds.retain(|(mountpoint, _)| !mountpoint.ends_with("/unified"));
            }
            binds
        } else {
            Vec::new()
        };
        let idmapped_count = plan
            .ops
            .iter()
            .filter(|o| matches!(o, mounts::Op::IdmapBind { .. }))
            .count();
        Ok(Self {
            plan,
            process,
            cgroups,
            cgroup_binds,
            clone_flags,
            join,
            uts,
            idmaps,
            idmapped: idmapped_count,
            seccomp,
            seccomp_listener,
            notes,
            warnings,
            hooks,
            terminal,
            console_size,
            id: id.to_string(),
            bundle: b.dir().to_path_buf(),
            annotations: spec
                .annotations()
                .clone()
                .unwrap_or_default()
                .into_iter()
                .collect(),
        })
    }
}

/// A terminal needs a console socket to send its master to (tinyo never relays a pty itself),
/// and a console socket is only for a terminal, as runc has it.
fn check_terminal(terminal: bool, socket: Option<&Path>) -> Result<(), Error> {
    match (terminal, socket) {
        (true, None) => Err(Error::Unsupported(
            "process.terminal is true but no --console-socket was given (tinyo does not relay a terminal itself: pass --console-socket, or set \"terminal\": false)".into(),
        )),
        (false, Some(s)) => Err(Error::Unsupported(format!(
            "--console-socket {} given but process.terminal is false",
            s.display()
        ))),
        _ => Ok(()),
    }
}

fn serde_name<T: Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// Clones the container process and waits until it reports that it is set up and waiting on
/// the exec barrier (or why it failed). On the way it may ask (`H`) for the prestart and
/// createRuntime hooks, which run here, in the runtime's namespaces.
fn spawn(
    p: &Prepared,
    state_fd: OwnedFd,
    lock_fd: std::os::fd::RawFd,
    console: Option<OwnedFd>,
    listener: Option<OwnedFd>,
) -> Result<i32, Error> {
    let (mut rd, wr) = {
        let (r, w) = sys::pipe().map_err(io_err("creating the sync pipe"))?;
        (fs::File::from(r), w)
    };
    let (reply_rd, reply_wr) = sys::pipe().map_err(io_err("creating the hook pipe"))?;
    let (idmap_parent, idmap_child) = if p.idmapped > 0 {
        let (a, b) = std::os::unix::net::UnixStream::pair()
            .map_err(io_err("creating the idmapped mount socket"))?;
        (Some(OwnedFd::from(a)), Some(OwnedFd::from(b)))
    } else {
        (None, None)
    };
    // Join namespaces given by path: the pid namespace must be joined before cloning (it
    // applies to children); the others are joined in the child.
    let mut ns_fds = Vec::new();
    for (flag, path) in &p.join {
        let f = fs::File::open(path)
            .map_err(io_err(format!("opening namespace {}", path.display())))?;
        ns_fds.push((*flag, OwnedFd::from(f)));
    }
    for (flag, fd) in &ns_fds {
        if *flag == libc::CLONE_NEWPID {
            sys::setns(fd.as_fd(), *flag).map_err(io_err("joining the pid namespace"))?;
        }
    }
    // The cgroup namespace is made by the child once it is in its cgroups (as runc does), so
    // that its root is the container's cgroup and not the creator's.
    let flags = p.clone_flags & !(libc::CLONE_NEWCGROUP as u64);
    // SAFETY: the tinyo CLI is single-threaded when it creates a container (the containerd
    // shim creates from a single-threaded fork); the child never returns from `child_main`.
    let (pid, in_v2) = unsafe { clone_in_cgroup(flags, &p.cgroups) }
        .map_err(io_err("cloning the container process"))?;
    let Some(pid) = pid else {
        drop(rd);
        drop(reply_wr);
        // The lock is the creator's: a copy held here would block `start` forever.
        sys::close_raw(lock_fd);
        let code = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let fds = ChildFds {
                state_fd,
                sync: wr,
                reply: reply_rd,
                console,
                idmap_sock: idmap_child,
            };
            child_main(p, &ns_fds, fds, in_v2)
        })) {
            Ok(()) => 1,
            Err(_) => 2,
        };
        sys::exit_now(code);
    };
    drop(wr);
    drop(state_fd);
    drop(console);
    drop(reply_rd);
    let mut reply = fs::File::from(reply_wr);
    let fail = |msg: String| {
        let _ = sys::kill(pid, libc::SIGKILL);
        let _ = sys::waitpid(pid, 0);
        Error::Setup(msg)
    };
    if let Some(maps) = &p.idmaps {
        if let Err(e) = maps.write(pid, sys::geteuid(), sys::getegid()) {
            let _ = sys::kill(pid, libc::SIGKILL);
            let _ = sys::waitpid(pid, 0);
            return Err(e.into());
        }
        if reply.write_all(b"U").is_err() {
            return Err(fail(
                "the container process exited before its user namespace was mapped".into(),
            ));
        }
    }
    drop(idmap_child);
    if let Some(sock) = &idmap_parent {
        if let Err(e) = send_idmapped_trees(p, pid, sock) {
            let _ = sys::kill(pid, libc::SIGKILL);
            let _ = sys::waitpid(pid, 0);
            return Err(e);
        }
    }
    let mut buf = Vec::new();
    loop {
        let mut first = [0u8; 1];
        let n = rd.read(&mut first).unwrap_or(0);
        match (n, first[0]) {
            (1, b'R') => return Ok(pid),
            (1, b'S') => {
                // The container's seccomp listener: to the agent, with the state "creating".
                let mut num = [0u8; 4];
                let sent = rd
                    .read_exact(&mut num)
                    .map_err(|e| format!("reading the seccomp listener's number: {e}"))
                    .and_then(|()| send_listener(p, pid, i32::from_le_bytes(num), &listener));
                if let Err(e) = sent {
                    return Err(fail(e));
                }
            }
            (1, b'H') => {
                let state = hooks::state_json(&p.id, "creating", pid, &p.bundle, &p.annotations);
                let ran = hooks::run("prestart", &p.hooks.prestart, &state)
                    .and_then(|()| hooks::run("createRuntime", &p.hooks.create_runtime, &state));
                if let Err(e) = ran {
                    return Err(fail(e));
                }
                if reply.write_all(b"K").is_err() {
                    break;
                }
            }
            _ => break,
        }
    }
    let _ = rd.read_to_end(&mut buf);
    let msg = String::from_utf8_lossy(&buf).trim().to_string();
    Err(fail(if msg.is_empty() {
        "the container process exited during setup".into()
    } else {
        msg
    }))
}

/// The descriptors the container process takes over from the runtime.
struct ChildFds {
    /// The state directory (`O_PATH`), where the exec FIFO is.
    state_fd: OwnedFd,
    /// Reports to the runtime (`R` ready, `H` hooks please, `E` + error).
    sync: OwnedFd,
    /// The runtime's answers (`U` user namespace mapped, `K` hooks done).
    reply: OwnedFd,
    console: Option<OwnedFd>,
    /// Where the idmapped mounts' detached trees arrive.
    idmap_sock: Option<OwnedFd>,
}

/// Clones a process (fork semantics) born in the v2 directory of `cgroups` where the kernel
/// allows it (`CLONE_INTO_CGROUP`: no `cgroup.procs` migration, whose first writer waits out an
/// RCU grace period), else plainly; the flag says which, for [`cgroup::join_self`].
///
/// # Safety
/// As for [`sys::clone3`].
unsafe fn clone_in_cgroup(
    flags: u64,
    cgroups: &[cgroup::Dir],
) -> io::Result<(Option<libc::pid_t>, bool)> {
    let v2 = cgroup::v2_dir(cgroups).and_then(|d| sys::open_dir(Path::new(&d.path)).ok());
    if let Some(fd) = &v2 {
        // SAFETY: the caller's promise, passed on.
        if let Ok(pid) = unsafe { sys::clone3_into(flags, Some(fd.as_fd())) } {
            return Ok((pid, true));
        }
    }
    // SAFETY: as above.
    unsafe { sys::clone3(flags) }.map(|pid| (pid, false))
}

/// The container process: never returns normally except to report failure on `sync`.
fn child_main(p: &Prepared, ns_fds: &[(libc::c_int, OwnedFd)], fds: ChildFds, in_v2: bool) {
    let ChildFds {
        state_fd,
        sync,
        reply,
        console,
        idmap_sock,
    } = fds;
    let mut sync = fs::File::from(sync);
    let mut reply = fs::File::from(reply);
    let mut console = console;
    let report = |sync: &mut fs::File, msg: String| {
        let _ = sync.write_all(b"E");
        let _ = sync.write_all(msg.as_bytes());
    };
    // Die with the creating process until setup is finished.
    let _ = sys::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as _, 0);
    let sync_ref = &sync;
    let mut setup = || -> Result<(), String> {
        cgroup::join_self(&p.cgroups, in_v2).map_err(|e| e.to_string())?;
        if p.idmaps.is_some() {
            // Wait until the runtime has written the maps, then become the namespace's root
            // (a change of credentials clears the parent-death signal: set it again).
            let mut ok = [0u8; 1];
            if reply.read(&mut ok).unwrap_or(0) != 1 || ok[0] != b'U' {
                return Err("the runtime did not map the user namespace".into());
            }
            enter_userns_root()?;
            let _ = sys::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as _, 0);
        }
        // A user namespace given by path first: the others are then joined with its rights.
        let mut order: Vec<&(libc::c_int, OwnedFd)> = ns_fds
            .iter()
            .filter(|(f, _)| *f != libc::CLONE_NEWPID)
            .collect();
        order.sort_by_key(|(f, _)| *f != libc::CLONE_NEWUSER);
        for (flag, fd) in order {
            sys::setns(fd.as_fd(), *flag)
                .map_err(|e| format!("joining namespace {flag:#x}: {e}"))?;
            if *flag == libc::CLONE_NEWUSER {
                enter_userns_root()?;
            }
        }
        if p.clone_flags & libc::CLONE_NEWCGROUP as u64 != 0 {
            sys::unshare(libc::CLONE_NEWCGROUP)
                .map_err(|e| format!("creating the cgroup namespace: {e}"))?;
        }
        // Every mount is made: the runtime runs prestart and createRuntime hooks, then the
        // createContainer hooks run here, before pivot_root (as runc does).
        let mut hooks_before_enter = || -> Result<(), String> {
            if p.hooks.has_runtime_create() {
                let mut w = sync_ref;
                w.write_all(b"H")
                    .map_err(|e| format!("asking for hooks: {e}"))?;
                let mut ok = [0u8; 1];
                if reply.read(&mut ok).unwrap_or(0) != 1 || ok[0] != b'K' {
                    return Err("createRuntime hooks failed".into());
                }
            }
            if !p.hooks.create_container.is_empty() {
                let state = hooks::state_json(
                    &p.id,
                    "creating",
                    std::process::id() as i32,
                    &p.bundle,
                    &p.annotations,
                );
                hooks::run("createContainer", &p.hooks.create_container, &state)?;
            }
            Ok(())
        };
        // Hostname, sysctl, rlimits and the OOM score are set once inside the new root, before
        // /proc/sys and friends become read-only.
        let mut system = || process::apply_system(&p.process, p.uts);
        let mut detached = Vec::new();
        if let Some(sock) = &idmap_sock {
            for _ in 0..p.idmapped {
                detached.push(
                    sys::recv_fd(sock.as_fd())
                        .map_err(|e| format!("receiving an idmapped mount: {e}"))?,
                );
            }
        }
        crate::rootfs::apply(
            &p.plan,
            &p.cgroup_binds,
            &detached,
            &mut hooks_before_enter,
            &mut system,
        )
        .map_err(|e| error_chain(&e))?;
        if !p.process.cwd.is_dir() {
            return Err(format!(
                "process.cwd {} is not a directory in the container",
                p.process.cwd.display()
            ));
        }
        if let Some(socket) = console.take() {
            terminal::setup(socket, p.console_size)?;
        }
        Ok(())
    };
    if let Err(msg) = setup() {
        return report(&mut sync, msg);
    }
    // The exec barrier, by an O_PATH descriptor taken while still root: the container's user
    // opens it through /proc/self/fd, which needs no search permission on the state directory
    // (as runc does).
    let fifo = c"exec.fifo";
    let fifo_path = match sys::open_path_at(state_fd.as_fd(), fifo) {
        Ok(fd) => fd,
        Err(e) => return report(&mut sync, format!("opening the exec barrier: {e}")),
    };
    let Ok(fifo_proc) = std::ffi::CString::new(format!("/proc/self/fd/{}", fifo_path.as_raw_fd()))
    else {
        return;
    };
    // The rest of the setup: everything that can fail does so here, and `create` reports it.
    let (ready, notify) = match process::finish(&p.process, p.seccomp.as_ref()) {
        Ok(r) => r,
        Err(msg) => return report(&mut sync, msg),
    };
    // The seccomp agent gets the listener now, during create: the runtime takes it from us
    // by pidfd_getfd (so no sendmsg under the filter) while we wait below.
    if let (Some(n), true) = (&notify, p.seccomp_listener.is_some()) {
        let mut msg = [0u8; 5];
        msg[0] = b'S';
        msg[1..].copy_from_slice(&n.as_raw_fd().to_le_bytes());
        if sync.write_all(&msg).is_err() {
            return;
        }
    }
    let _ = sys::prctl(libc::PR_SET_PDEATHSIG, 0, 0);
    if sync.write_all(b"R").is_err() {
        return;
    }
    drop(sync);
    drop(reply);
    // The exec barrier: blocks until `start` opens the FIFO for reading. Without a /proc in
    // the container, the state directory's descriptor is the way (enough for its root).
    // SAFETY: `fifo_proc` is NUL-terminated.
    let mut fd = unsafe { libc::open(fifo_proc.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        // SAFETY: `state_fd` is a live O_PATH directory descriptor and `fifo` NUL-terminated.
        fd = unsafe {
            libc::openat(
                state_fd.as_raw_fd(),
                fifo.as_ptr(),
                libc::O_WRONLY | libc::O_CLOEXEC,
            )
        };
    }
    if fd < 0 {
        return;
    }
    // SAFETY: open just returned this descriptor and nothing else owns it.
    let mut f = fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    drop(fifo_path);
    drop(state_fd);
    // startContainer hooks: in the container, right before the exec; `start` waits for them
    // and fails with their error.
    if !p.hooks.start_container.is_empty() {
        let state = hooks::state_json(
            &p.id,
            "created",
            std::process::id() as i32,
            &p.bundle,
            &p.annotations,
        );
        if let Err(msg) = hooks::run("startContainer", &p.hooks.start_container, &state) {
            let _ = f.write_all(b"E");
            let _ = f.write_all(msg.as_bytes());
            return;
        }
    }
    // `0`: about to exec. The FIFO closes on a successful exec; a failed one writes `E` and
    // why after it, so `start` fails with the reason (as runc's does).
    if f.write_all(b"0").is_err() {
        return;
    }
    let err = process::exec(&ready);
    let _ = f.write_all(b"E");
    let _ = f.write_all(err.as_bytes());
    drop(notify);
}

/// Takes the container's seccomp listener (descriptor `fd` of `pid`) and sends it to the agent
/// on `listener` with the container's state.
fn send_listener(
    p: &Prepared,
    pid: i32,
    fd: i32,
    listener: &Option<OwnedFd>,
) -> Result<(), String> {
    let (Some(sock), Some((_, metadata))) = (listener, &p.seccomp_listener) else {
        return Ok(());
    };
    let notify = sys::pidfd_open(pid)
        .and_then(|pidfd| sys::pidfd_getfd(pidfd.as_fd(), fd))
        .map_err(|e| format!("taking the seccomp listener from the container process: {e}"))?;
    let state = seccomp_agent_state(p, pid, metadata);
    sys::send_fd(sock.as_fd(), notify.as_fd(), state.as_bytes())
        .map_err(|e| format!("sending the seccomp listener to the agent: {e}"))
}

/// The runtime-spec `containerProcessState` a seccomp agent receives with the listener.
fn seccomp_agent_state(p: &Prepared, pid: i32, metadata: &str) -> String {
    serde_json::json!({
        "ociVersion": crate::OCI_SPEC_VERSION,
        "fds": ["seccompFd"],
        "pid": pid,
        "metadata": metadata,
        "state": {
            "ociVersion": crate::OCI_SPEC_VERSION,
            "id": p.id,
            "status": "creating",
            "pid": pid,
            "bundle": p.bundle,
            "annotations": p.annotations,
        },
    })
    .to_string()
}

/// Makes the detached, idmapped copy of every `idmap`/`ridmap` bind source, in plan order,
/// and sends each to the container process `pid` over `sock`. A detached tree can only be
/// attached in the mount namespace it was made in, and idmapping needs privilege over the
/// filesystem: so a forked helper stays in the host's user namespace but joins the
/// container's mount namespace to make them. Each tree goes through a user namespace with
/// the mount's own mappings, or the container's.
fn send_idmapped_trees(p: &Prepared, pid: i32, sock: &OwnedFd) -> Result<(), Error> {
    let mut namespaces: Vec<(IdMaps, OwnedFd)> = Vec::new();
    let mut jobs = Vec::new();
    for op in &p.plan.ops {
        let mounts::Op::IdmapBind {
            source,
            dest,
            recursive,
            maps,
            ..
        } = op
        else {
            continue;
        };
        let what = format!("idmapped mount {} on {}", source.display(), dest.display());
        let maps = match (maps, &p.idmaps) {
            (Some((uid, gid)), _) => IdMaps {
                uid: uid.clone(),
                gid: gid.clone(),
            },
            (None, Some(m)) => m.clone(),
            (None, None) => {
                return Err(Error::Unsupported(format!(
                    "{what}: idmap needs the mount's uidMappings/gidMappings or a user namespace with mappings"
                )))
            }
        };
        let userns = match namespaces.iter().position(|(m, _)| *m == maps) {
            Some(i) => i,
            None => {
                // SAFETY: create() runs single-threaded (documented on Runtime::create).
                let fd = unsafe { crate::userns::namespace_with(&maps) }?;
                namespaces.push((maps, fd));
                namespaces.len() - 1
            }
        };
        let src = sys::cstr(source).map_err(io_err(what.clone()))?;
        jobs.push((src, *recursive, userns, what));
    }
    let mnt = fs::File::open(format!("/proc/{pid}/ns/mnt"))
        .map_err(io_err("opening the container's mount namespace"))?;
    let (rd, wr) = sys::pipe().map_err(io_err("creating the idmap helper's pipe"))?;
    // SAFETY: create() runs single-threaded; the helper only makes syscalls and exits.
    let helper = unsafe { sys::clone3(0) }.map_err(io_err("forking the idmap helper"))?;
    let Some(helper) = helper else {
        drop(rd);
        let mut report = fs::File::from(wr);
        let run = || -> Result<(), String> {
            sys::setns(mnt.as_fd(), libc::CLONE_NEWNS)
                .map_err(|e| format!("joining the container's mount namespace: {e}"))?;
            for (src, recursive, userns, what) in &jobs {
                let tree = sys::open_tree_clone(src, *recursive)
                    .map_err(|e| format!("{what}: open_tree: {e}"))?;
                sys::mount_setattr_idmap(tree.as_fd(), namespaces[*userns].1.as_fd(), *recursive)
                    .map_err(|e| {
                        format!("{what}: mount_setattr(MOUNT_ATTR_IDMAP): {e} (does the filesystem support idmapped mounts?)")
                    })?;
                sys::send_fd(sock.as_fd(), tree.as_fd(), b"m")
                    .map_err(|e| format!("{what}: sending it to the container: {e}"))?;
            }
            Ok(())
        };
        let code = match run() {
            Ok(()) => 0,
            Err(msg) => {
                let _ = report.write_all(msg.as_bytes());
                1
            }
        };
        sys::exit_now(code);
    };
    drop(wr);
    let mut msg = String::new();
    let _ = fs::File::from(rd).read_to_string(&mut msg);
    let status = sys::waitpid(helper, 0).map(|(_, st)| st).unwrap_or(1);
    if status != 0 {
        return Err(Error::Setup(if msg.is_empty() {
            "the idmap helper failed".into()
        } else {
            msg
        }));
    }
    Ok(())
}

/// Becomes uid/gid 0 of the user namespace just entered, when 0 is mapped (as runc does), so
/// the setup that follows runs as the container's root.
fn enter_userns_root() -> Result<(), String> {
    let mapped = |file: &str| {
        fs::read_to_string(file).is_ok_and(|t| {
            t.lines().any(|l| {
                let mut it = l.split_whitespace().map(|x| x.parse::<u64>().unwrap_or(0));
                matches!((it.next(), it.nth(1)), (Some(0), Some(n)) if n > 0)
            })
        })
    };
    if mapped("/proc/self/gid_map") {
        sys::setgid(0).map_err(|e| format!("setgid 0 in the user namespace: {e}"))?;
    }
    if mapped("/proc/self/uid_map") {
        sys::setuid(0).map_err(|e| format!("setuid 0 in the user namespace: {e}"))?;
    }
    Ok(())
}

/// The exec'd process: joins everything of the container, then execs.
fn exec_child(
    p: &ProcessPlan,
    (cgroups, in_v2): (&[cgroup::Dir], bool),
    ns_fds: &[(libc::c_int, OwnedFd)],
    root: OwnedFd,
    sync: OwnedFd,
    (console, console_size): (Option<OwnedFd>, Option<(u16, u16)>),
    seccomp: Option<&crate::seccomp::Compiled>,
) {
    let mut sync = fs::File::from(sync);
    let _ = sys::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as _, 0);
    let setup = || -> Result<(process::Ready, Option<OwnedFd>), String> {
        cgroup::join_self(cgroups, in_v2).map_err(|e| e.to_string())?;
        // The mount namespace last: the others are opened by descriptor, so order is free.
        let mut order: Vec<&(libc::c_int, OwnedFd)> = ns_fds
            .iter()
            .filter(|(f, _)| *f != libc::CLONE_NEWPID && *f != libc::CLONE_NEWTIME)
            .collect();
        // The user namespace first (the rest are joined with its rights), the mount one last.
        order.sort_by_key(|(f, _)| (*f != libc::CLONE_NEWUSER, *f == libc::CLONE_NEWNS));
        for (flag, fd) in order {
            sys::setns(fd.as_fd(), *flag)
                .map_err(|e| format!("joining namespace {flag:#x}: {e}"))?;
            if *flag == libc::CLONE_NEWUSER {
                enter_userns_root()?;
            }
        }
        sys::fchdir(root.as_fd()).map_err(|e| format!("entering the container root: {e}"))?;
        std::os::unix::fs::chroot(".").map_err(|e| format!("entering the container root: {e}"))?;
        std::env::set_current_dir("/").map_err(|e| format!("entering the container root: {e}"))?;
        drop(root);
        process::apply_system(p, false)?;
        if !p.cwd.is_dir() {
            return Err(format!(
                "cwd {} is not a directory in the container",
                p.cwd.display()
            ));
        }
        if let Some(socket) = console {
            terminal::setup(socket, console_size)?;
        }
        process::finish(p, seccomp)
    };
    let ready = match setup() {
        Ok((ready, _)) => ready,
        Err(msg) => {
            let _ = sync.write_all(b"E");
            let _ = sync.write_all(msg.as_bytes());
            return;
        }
    };
    // `R`: about to exec; the pipe closes on a successful exec, a failed one says why.
    let _ = sys::prctl(libc::PR_SET_PDEATHSIG, 0, 0);
    if sync.write_all(b"R").is_err() {
        return;
    }
    let err = process::exec(&ready);
    let _ = sync.write_all(b"E");
    let _ = sync.write_all(err.as_bytes());
}

/// `err: cause: cause` on one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Signals a foreground `run` passes on to its container.
pub const FORWARDED_SIGNALS: &[i32] = &[
    libc::SIGHUP,
    libc::SIGINT,
    libc::SIGQUIT,
    libc::SIGTERM,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGWINCH,
];

/// Passes [`FORWARDED_SIGNALS`] received by this process on to `pid`.
pub fn forward_signals(pid: i32) -> Result<(), Error> {
    sys::forward_signals(pid, FORWARDED_SIGNALS).map_err(io_err("installing signal forwarding"))
}

/// Waits for our own child `pid` and turns its status into a shell-style exit code
/// (128+N for a signal).
pub fn wait_exit_code(pid: i32) -> Result<i32, Error> {
    let (_, status) = sys::waitpid(pid, 0).map_err(io_err("waiting for the container"))?;
    Ok(if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        1
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked() {
        for bad in ["", ".", "..", "a/b", "a b", "../x"] {
            assert!(check_id(bad).is_err(), "{bad:?}");
        }
        check_id("abc-1.2_x+y").unwrap();
    }

    #[test]
    fn time_is_rfc3339() {
        let t = now_rfc3339();
        assert_eq!(t.len(), "2026-11-29T11:00:23.123456789Z".len(), "{t}");
        assert!(
            t.starts_with("20") && t.ends_with('Z') && &t[10..11] == "T",
            "{t}"
        );
    }

    #[test]
    fn unknown_container_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let rt = Runtime::new(dir.path());
        let err = rt.state("nope").unwrap_err().to_string();
        assert!(err.contains("\"nope\" does not exist"), "{err}");
        assert!(rt.list().unwrap().is_empty());
    }
}
