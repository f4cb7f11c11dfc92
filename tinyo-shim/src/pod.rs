//! Pods: containers that share a network, IPC and UTS namespace, as Kubernetes pods do.
//!
//! The namespaces are held by an infra process: tinyo-init in pause mode (`-P`), started by
//! `pod create` in new network, IPC and UTS namespaces (its hostname is the pod's), in its own
//! session, with nothing but the host's root under it: no image, no rootfs, no supervisor.
//! The pod's network (bridge with its published ports, or only `lo`) is attached to that
//! namespace once. `run --pod NAME` then joins the three namespaces by path; each container
//! keeps its own mount and PID namespaces, rootfs, supervisor, log and exit status, and gets its
//! cgroup under the pod's (`tinyo-shim/pod-<id>/<container id>`). The infra process has its
//! own beside them (`tinyo-shim/pod-<id>/infra`), as a kubelet's pause container has; `pod rm`
//! removes it and the pod's cgroup with it.
//!
//! The record is `pods/<name>/pod.json`, replaced whole under the state root's lock.

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::state::{self, Proc, Roots};

/// What tinyo-shim knows of one pod.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Pod {
    pub id: String,
    pub name: String,
    pub created: String,
    pub hostname: String,
    /// `bridge` or `none`.
    pub network: String,
    #[serde(default)]
    pub ports: Vec<String>,
    /// The infra process (tinyo-init -P) while the pod runs.
    #[serde(default)]
    pub infra: Option<Proc>,
    /// The bridge attachment, for teardown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub net: Option<serde_json::Value>,
    /// The infra process's cgroups (`<cgroup parent>/infra` in each hierarchy); their
    /// `created` ancestors include the pod's own cgroup.
    #[serde(default)]
    pub cgroups: Vec<tinyo_core::cgroup::Dir>,
}

impl Pod {
    pub fn running(&self) -> bool {
        self.infra.is_some_and(|p| p.alive())
    }

    /// The cgroup parent of its containers (relative, under tinyo-shim's own).
    pub fn cgroup_parent(&self) -> String {
        format!("tinyo-shim/pod-{}", &self.id[..12])
    }

    /// `/proc/<infra>/ns/<kind>`, for a container joining it.
    pub fn ns_path(&self, kind: &str) -> Result<String> {
        match self.infra.filter(|p| p.alive()) {
            Some(p) => Ok(format!("/proc/{}/ns/{kind}", p.pid)),
            None => bail!(
                "pod {} is not running (its infra process is gone)",
                self.name
            ),
        }
    }
}

pub fn pods_dir(roots: &Roots) -> PathBuf {
    roots.state.join("pods")
}

fn pod_dir(roots: &Roots, name: &str) -> PathBuf {
    pods_dir(roots).join(name)
}

pub fn load(roots: &Roots, name: &str) -> Result<Pod> {
    let path = pod_dir(roots, name).join("pod.json");
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!("no such pod: {name}"),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", path.display()))
}

pub fn save(roots: &Roots, pod: &Pod) -> Result<()> {
    let dir = pod_dir(roots, &pod.name);
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    state::write_atomic(&dir.join("pod.json"), &serde_json::to_vec_pretty(pod)?)
}

pub fn list(roots: &Roots) -> Result<Vec<Pod>> {
    let mut out = Vec::new();
    let rd = match fs::read_dir(pods_dir(roots)) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e).context("listing pods"),
    };
    for e in rd.flatten() {
        if let Some(name) = e.file_name().to_str() {
            if let Ok(p) = load(roots, name) {
                out.push(p);
            }
        }
    }
    out.sort_by(|a, b| a.created.cmp(&b.created));
    Ok(out)
}

pub fn remove(roots: &Roots, name: &str) -> Result<()> {
    let dir = pod_dir(roots, name);
    fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))
}

/// Makes the infra process's cgroups, `<parent>/infra` in every hierarchy (and the pod's
/// cgroup `parent` with them).
pub fn infra_cgroups(parent: &str, id: &str) -> Result<Vec<tinyo_core::cgroup::Dir>> {
    let path = format!("{parent}/infra");
    let mut dirs = tinyo_core::cgroup::try_plan(Some(Path::new(&path)), id)
        .with_context(|| format!("planning the infra cgroup {path}"))?;
    tinyo_core::cgroup::try_create(&mut dirs)
        .with_context(|| format!("creating the infra cgroup {path}"))?;
    Ok(dirs)
}

/// Starts the infra process: `init -P` in new network, IPC and UTS namespaces named
/// `hostname`, in its own session and the `cgroups`, its stdio on /dev/null. Returns once it
/// runs.
pub fn start_infra(
    init: &Path,
    hostname: &str,
    cgroups: &[tinyo_core::cgroup::Dir],
) -> Result<Proc> {
    use std::os::fd::AsRawFd;
    let host = std::ffi::CString::new(hostname).context("hostname")?;
    let join = tinyo_core::cgroup::join_files(cgroups).context("joining the infra cgroup")?;
    let join_fds: Vec<libc::c_int> = join.iter().map(|f| f.as_raw_fd()).collect();
    let mut cmd = Command::new(init);
    cmd.arg("-P")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let hook = move || {
        let check = |r: libc::c_int| {
            if r < 0 {
                Err(std::io::Error::last_os_error())
            } else {
                Ok(())
            }
        };
        for fd in &join_fds {
            // SAFETY: write(2) of a 1-byte constant buffer to a descriptor this process owns
            // (opened above, alive until spawn returns); async-signal-safe.
            if unsafe { libc::write(*fd, b"0".as_ptr().cast(), 1) } != 1 {
                return Err(std::io::Error::last_os_error());
            }
        }
        // SAFETY: setsid takes no arguments and is async-signal-safe.
        check(unsafe { libc::setsid() })?;
        // SAFETY: unshare takes flags only and is async-signal-safe.
        check(unsafe {
            libc::unshare(libc::CLONE_NEWNET | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS)
        })?;
        // SAFETY: `host` is a valid C string of that length, alive for the call.
        check(unsafe { libc::sethostname(host.as_ptr(), host.as_bytes().len()) })
    };
    // SAFETY: the hook makes only async-signal-safe calls between fork and exec.
    unsafe { cmd.pre_exec(hook) };
    let child = cmd
        .spawn()
        .with_context(|| format!("starting the pod's infra process {}", init.display()))?;
    let pid = child.id() as i32;
    // It lives on in its own session; reparented to init when this command exits.
    drop(child);
    // Wait until it is tinyo-init itself (exec done), so its namespaces are the pod's.
    let exe = fs::canonicalize(init).unwrap_or_else(|_| init.to_path_buf());
    for _ in 0..500 {
        if fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|e| e == exe) {
            return Proc::of(pid).context("the infra process exited at once");
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let _ = tinyo_core::sys::kill(pid, libc::SIGKILL);
    bail!("the pod's infra process did not start")
}

/// Ends the infra process (tinyo-init -P ends on SIGTERM), SIGKILL after a second.
pub fn stop_infra(p: Proc) {
    if !p.alive() {
        return;
    }
    let _ = tinyo_core::sys::kill(p.pid, libc::SIGTERM);
    for _ in 0..100 {
        if !p.alive() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let _ = tinyo_core::sys::kill(p.pid, libc::SIGKILL);
}

/// Removes the infra cgroups and the pod's own cgroup once its containers' cgroups are gone
/// (whatever still runs in the infra cgroup is killed first).
pub fn remove_cgroups(p: &Pod) {
    tinyo_core::cgroup::remove(&p.cgroups);
}
