//! Minimal cgroup v1 support until issue 6 does cgroups properly: the container gets a
//! directory at its `cgroupsPath` in every v1 hierarchy the host mounts (except `cpuset`,
//! which needs seeding, and named hierarchies), the simple limits are written there, and
//! anything in `linux.resources` that is not applied is reported as a warning — never
//! silently dropped.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxResources;

/// One hierarchy: its mount point (`/sys/fs/cgroup/memory`) and the container's directory.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Dir {
    pub mountpoint: String,
    pub path: String,
    /// Ancestors of `path` that `create` made (outermost first), removed again with the
    /// container when empty: a nested cgroupsPath leaves nothing behind.
    #[serde(default)]
    pub created: Vec<String>,
}

/// The v1 hierarchies of this host: (mount point, controllers, whether tinyo makes a directory
/// there). `cpuset` (needs seeding) and named hierarchies (`name=systemd`) are not managed.
fn hierarchies() -> Vec<(String, Vec<String>, bool)> {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for line in info.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let mut r = right.split(' ');
        if r.next() != Some("cgroup") {
            continue;
        }
        let Some(mountpoint) = left.split(' ').nth(4) else {
            continue;
        };
        let supers = r.nth(1).unwrap_or("");
        let controllers: Vec<String> = supers
            .split(',')
            .filter(|o| !matches!(*o, "rw" | "ro") && (o.starts_with("name=") || !o.contains('=')))
            .filter(|o| {
                !matches!(
                    *o,
                    "noprefix" | "clone_children" | "xattr" | "cpuset_v2_mode"
                )
            })
            .map(str::to_string)
            .collect();
        let managed = !controllers.is_empty()
            && !controllers
                .iter()
                .any(|c| c == "cpuset" || c.starts_with("name="));
        out.push((mountpoint.to_string(), controllers, managed));
    }
    out
}

/// This process's cgroup path in the hierarchy holding `controllers`.
fn own_path(controllers: &[String]) -> String {
    let text = fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    for line in text.lines() {
        let mut it = line.splitn(3, ':');
        let (_, ctrls, path) = (it.next(), it.next().unwrap_or(""), it.next().unwrap_or("/"));
        let set: Vec<&str> = ctrls.split(',').collect();
        if controllers.iter().all(|c| set.contains(&c.as_str())) {
            return path.to_string();
        }
    }
    "/".into()
}

/// The directories for `cgroups_path` (absolute: from each hierarchy's root; relative: below
/// this process's own cgroup, as runc does; none: `tinyo/<id>` below it).
pub fn plan(cgroups_path: Option<&Path>, id: &str) -> Vec<Dir> {
    let rel = cgroups_path
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("tinyo").join(id));
    hierarchies()
        .into_iter()
        .filter(|h| h.2)
        .map(|(mountpoint, controllers, _)| {
            let base = if rel.is_absolute() {
                PathBuf::from("/")
            } else {
                PathBuf::from(own_path(&controllers))
            };
            let inner = base.join(&rel);
            let inner = inner.strip_prefix("/").unwrap_or(&inner);
            Dir {
                path: Path::new(&mountpoint).join(inner).display().to_string(),
                mountpoint,
                created: Vec::new(),
            }
        })
        .collect()
}

/// What the `cgroup` mount type binds, in the host's mount order: (hierarchy mount point,
/// source directory) — the container's directory where tinyo made one, else the creating
/// process's own cgroup in that hierarchy (as runc shows unmanaged hierarchies).
pub fn mount_binds(dirs: &[Dir]) -> Vec<(String, String)> {
    hierarchies()
        .into_iter()
        .map(|(mountpoint, controllers, _)| {
            let path = match dirs.iter().find(|d| d.mountpoint == mountpoint) {
                Some(d) => d.path.clone(),
                None => {
                    let own = own_path(&controllers);
                    let own = own.trim_start_matches('/');
                    Path::new(&mountpoint).join(own).display().to_string()
                }
            };
            (mountpoint, path)
        })
        .collect()
}

fn controller_dir<'a>(dirs: &'a [Dir], controller: &str) -> Option<&'a Dir> {
    dirs.iter().find(|d| {
        Path::new(&d.mountpoint)
            .file_name()
            .is_some_and(|n| n.to_string_lossy().split(',').any(|c| c == controller))
    })
}

fn write(dirs: &[Dir], controller: &str, file: &str, value: &str) -> io::Result<()> {
    let d = controller_dir(dirs, controller).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("no {controller} hierarchy"),
        )
    })?;
    let path = Path::new(&d.path).join(file);
    fs::write(&path, value)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

/// Creates the directories, recording which ancestors it had to make. On error the ones
/// already made are removed.
pub fn create(dirs: &mut [Dir]) -> io::Result<()> {
    for i in 0..dirs.len() {
        let d = &mut dirs[i];
        let mut missing = Vec::new();
        let mut p = Path::new(&d.path).parent();
        while let Some(a) =
            p.filter(|a| a.starts_with(&d.mountpoint) && *a != Path::new(&d.mountpoint))
        {
            if a.exists() {
                break;
            }
            missing.push(a.display().to_string());
            p = a.parent();
        }
        missing.reverse();
        d.created = missing;
        if let Err(e) = fs::create_dir_all(&d.path) {
            let what = format!("creating cgroup {}: {e}", d.path);
            remove(&dirs[..=i]);
            return Err(io::Error::new(e.kind(), what));
        }
    }
    Ok(())
}

/// Applies the limits this runtime knows; returns warnings for what it does not apply.
pub fn apply(dirs: &[Dir], res: &LinuxResources) -> io::Result<Vec<String>> {
    let mut warnings = Vec::new();
    if let Some(m) = res.memory() {
        if let Some(limit) = m.limit() {
            write(dirs, "memory", "memory.limit_in_bytes", &limit.to_string())?;
        }
        if let Some(r) = m.reservation() {
            write(dirs, "memory", "memory.soft_limit_in_bytes", &r.to_string())?;
        }
        if m.swap().is_some()
            || m.kernel().is_some()
            || m.kernel_tcp().is_some()
            || m.swappiness().is_some()
        {
            warnings.push("linux.resources.memory: only limit and reservation are applied (swap, kernel, swappiness are not yet)".into());
        }
    }
    if let Some(p) = res.pids() {
        let v = if p.limit() > 0 {
            p.limit().to_string()
        } else {
            "max".into()
        };
        write(dirs, "pids", "pids.max", &v)?;
    }
    if let Some(c) = res.cpu() {
        if let Some(s) = c.shares() {
            write(dirs, "cpu", "cpu.shares", &s.to_string())?;
        }
        if let Some(p) = c.period() {
            write(dirs, "cpu", "cpu.cfs_period_us", &p.to_string())?;
        }
        if let Some(q) = c.quota() {
            write(dirs, "cpu", "cpu.cfs_quota_us", &q.to_string())?;
        }
        if c.cpus().is_some()
            || c.mems().is_some()
            || c.realtime_runtime().is_some()
            || c.realtime_period().is_some()
            || c.idle().is_some()
        {
            warnings.push(
                "linux.resources.cpu: cpus, mems, realtime and idle are not applied yet".into(),
            );
        }
    }
    if let Some(devices) = res.devices() {
        if controller_dir(dirs, "devices").is_some() {
            for d in devices {
                let typ = d
                    .typ()
                    .map(|t| t.as_str().to_string())
                    .unwrap_or_else(|| "a".into());
                let num = |n: Option<i64>| n.map_or("*".to_string(), |n| n.to_string());
                let rule = format!(
                    "{typ} {}:{} {}",
                    num(d.major()),
                    num(d.minor()),
                    d.access().clone().unwrap_or_else(|| "rwm".into())
                );
                let file = if d.allow() {
                    "devices.allow"
                } else {
                    "devices.deny"
                };
                write(dirs, "devices", file, &rule)?;
            }
            // The devices every container gets (runc's list) stay usable.
            for rule in [
                "c *:* m",
                "b *:* m",
                "c 1:3 rwm",
                "c 1:5 rwm",
                "c 1:7 rwm",
                "c 5:0 rwm",
                "c 1:8 rwm",
                "c 1:9 rwm",
                "c 136:* rwm",
                "c 5:2 rwm",
                "c 10:200 rwm",
            ] {
                write(dirs, "devices", "devices.allow", rule)?;
            }
        } else if !devices.is_empty() {
            warnings
                .push("linux.resources.devices: no devices hierarchy, rules not applied".into());
        }
    }
    if res.block_io().is_some() {
        warnings.push("linux.resources.blockIO is not applied yet".into());
    }
    if res
        .hugepage_limits()
        .as_ref()
        .is_some_and(|h| !h.is_empty())
    {
        warnings.push("linux.resources.hugepageLimits are not applied yet".into());
    }
    if res.network().is_some() {
        warnings.push("linux.resources.network is not applied yet".into());
    }
    if res.rdma().as_ref().is_some_and(|r| !r.is_empty()) {
        warnings.push("linux.resources.rdma is not applied yet".into());
    }
    if res.unified().as_ref().is_some_and(|u| !u.is_empty()) {
        warnings.push(
            "linux.resources.unified is not applied yet (this host's cgroup2 has no controllers)"
                .into(),
        );
    }
    Ok(warnings)
}

/// Moves the calling process into every directory (`0` = the writer).
pub fn join_self(dirs: &[Dir]) -> io::Result<()> {
    for d in dirs {
        let p = Path::new(&d.path).join("cgroup.procs");
        fs::write(&p, "0")
            .map_err(|e| io::Error::new(e.kind(), format!("joining cgroup {}: {e}", d.path)))?;
    }
    Ok(())
}

/// The pids in the container's cgroup (from the first hierarchy that has the directory).
pub fn pids(dirs: &[Dir]) -> Vec<i32> {
    let d = controller_dir(dirs, "pids")
        .or_else(|| controller_dir(dirs, "freezer"))
        .or(dirs.first());
    let Some(d) = d else { return Vec::new() };
    fs::read_to_string(Path::new(&d.path).join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// Removes the directories (missing ones are fine), retrying briefly while the kernel still
/// counts exiting tasks, then the ancestors `create` made if nothing else uses them.
pub fn remove(dirs: &[Dir]) {
    for d in dirs {
        for _ in 0..100 {
            match fs::remove_dir(&d.path) {
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                    std::thread::sleep(std::time::Duration::from_millis(5))
                }
                _ => break,
            }
        }
        for a in d.created.iter().rev() {
            if fs::remove_dir(a).is_err() {
                break; // still used by another container
            }
        }
    }
}
