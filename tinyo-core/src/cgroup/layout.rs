//! Which cgroup hierarchies the host has (from `/proc/self/mountinfo`), which controller lives
//! where, where this process sits in each (`/proc/self/cgroup`), and how a `cgroupsPath` maps to
//! one directory per managed hierarchy.

use std::collections::HashSet;
use std::fs;
use std::path::{Component, Path, PathBuf};

use super::{CgroupError, Dir};

/// The v1 controllers the kernel knows; anything else in a v1 mount's options is an option.
const V1_CONTROLLERS: &[&str] = &[
    "cpuset",
    "cpu",
    "cpuacct",
    "blkio",
    "memory",
    "devices",
    "freezer",
    "net_cls",
    "perf_event",
    "net_prio",
    "hugetlb",
    "pids",
    "rdma",
    "misc",
    "debug",
];

/// How the host mounts cgroups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Mode {
    /// cgroup v1 only.
    Legacy,
    /// v1 controller hierarchies plus a cgroup2 mount (which may hold some controllers).
    Hybrid,
    /// cgroup v2 only (a named v1 hierarchy such as `name=systemd` may still exist).
    Unified,
}

/// One mounted hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    /// Where it is mounted (with the [`Host`] prefix, if any).
    pub mountpoint: PathBuf,
    /// 1 or 2.
    pub version: u8,
    /// v1: the mount's controllers (including `name=…`); v2: the controllers this host uses
    /// from it (listed in the root's `cgroup.controllers` and not bound to a v1 hierarchy).
    pub controllers: Vec<String>,
    /// The cgroup this mount shows at its mount point (mountinfo's root field).
    pub mount_root: String,
    /// This process's cgroup, relative to the mount point ("" = the mount point itself).
    pub own: String,
}

impl Hierarchy {
    /// A named-only v1 hierarchy (`name=systemd`): bound into containers, never managed.
    pub fn is_named_only(&self) -> bool {
        self.version == 1 && self.controllers.iter().all(|c| c.starts_with("name="))
    }

    fn own_dir(&self) -> PathBuf {
        if self.own.is_empty() {
            self.mountpoint.clone()
        } else {
            self.mountpoint.join(&self.own)
        }
    }
}

/// The host's cgroup layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub mode: Mode,
    /// In mountinfo order, one per hierarchy (repeated mounts of one hierarchy dropped).
    pub hierarchies: Vec<Hierarchy>,
}

impl Layout {
    /// The hierarchy holding `controller` (v1 wins: a controller bound to v1 is not in v2).
    pub fn holder(&self, controller: &str) -> Option<&Hierarchy> {
        self.hierarchies
            .iter()
            .find(|h| h.controllers.iter().any(|c| c == controller))
    }

    /// The cgroup2 hierarchy, if mounted.
    pub fn unified(&self) -> Option<&Hierarchy> {
        self.hierarchies.iter().find(|h| h.version == 2)
    }
}

/// Where the layout is read from: the real host, or fake files in tests.
#[derive(Debug, Clone)]
pub struct Host {
    /// `/proc/self/mountinfo` text.
    pub mountinfo: String,
    /// `/proc/self/cgroup` text.
    pub self_cgroup: String,
    /// Prepended to every mount point (a tempdir standing in for `/`); empty for the host.
    pub prefix: PathBuf,
}

impl Host {
    /// The running system.
    pub fn real() -> Self {
        Self {
            mountinfo: fs::read_to_string("/proc/self/mountinfo").unwrap_or_default(),
            self_cgroup: fs::read_to_string("/proc/self/cgroup").unwrap_or_default(),
            prefix: PathBuf::new(),
        }
    }

    fn at(&self, mountpoint: &str) -> PathBuf {
        if self.prefix.as_os_str().is_empty() {
            PathBuf::from(mountpoint)
        } else {
            self.prefix.join(mountpoint.trim_start_matches('/'))
        }
    }

    /// Reads the layout. A v2 root's `cgroup.controllers` is read below the prefix.
    pub fn layout(&self) -> Layout {
        let own = parse_self_cgroup(&self.self_cgroup);
        let mut seen_dev = HashSet::new();
        let mut out: Vec<Hierarchy> = Vec::new();
        let mut v2_index = None;
        for line in self.mountinfo.lines() {
            let Some(m) = parse_mountinfo_line(line) else {
                continue;
            };
            let version = match m.fstype {
                "cgroup" => 1,
                "cgroup2" => 2,
                _ => continue,
            };
            // The same hierarchy mounted twice: keep the first (the host's own mount comes
            // before later binds of it).
            if !seen_dev.insert(m.dev.to_string()) {
                continue;
            }
            let controllers: Vec<String> = if version == 1 {
                m.super_opts
                    .split(',')
                    .filter(|o| o.starts_with("name=") || V1_CONTROLLERS.contains(o))
                    .map(str::to_string)
                    .collect()
            } else {
                Vec::new()
            };
            if version == 1 && controllers.is_empty() {
                continue;
            }
            let cg = if version == 2 {
                own.iter()
                    .find(|(k, _)| k.is_empty())
                    .map(|(_, p)| p.clone())
            } else {
                let want: HashSet<&str> = controllers.iter().map(String::as_str).collect();
                own.iter()
                    .find(|(k, _)| !k.is_empty() && k.split(',').collect::<HashSet<&str>>() == want)
                    .map(|(_, p)| p.clone())
            };
            let cg = cg.unwrap_or_else(|| "/".into());
            if version == 2 {
                if v2_index.is_some() {
                    continue;
                }
                v2_index = Some(out.len());
            }
            out.push(Hierarchy {
                mountpoint: self.at(&m.mountpoint),
                version,
                controllers,
                mount_root: m.root.clone(),
                own: relative_to_root(&cg, &m.root),
            });
        }
        let v1_bound: HashSet<String> = out
            .iter()
            .filter(|h| h.version == 1)
            .flat_map(|h| h.controllers.iter().cloned())
            .collect();
        if let Some(i) = v2_index {
            let text = fs::read_to_string(out[i].mountpoint.join("cgroup.controllers"))
                .unwrap_or_default();
            out[i].controllers = text
                .split_whitespace()
                .filter(|c| !v1_bound.contains(*c))
                .map(str::to_string)
                .collect();
        }
        let v1_real = out.iter().any(|h| h.version == 1 && !h.is_named_only());
        let mode = match (v1_real, v2_index.is_some()) {
            (true, true) => Mode::Hybrid,
            (false, true) => Mode::Unified,
            _ => Mode::Legacy,
        };
        Layout {
            mode,
            hierarchies: out,
        }
    }

    /// The directories for `cgroups_path`, one per managed hierarchy (every v1 hierarchy with a
    /// real controller, and the cgroup2 hierarchy when mounted). See [`super::try_plan`].
    pub fn plan(&self, cgroups_path: Option<&Path>, id: &str) -> Result<Vec<Dir>, CgroupError> {
        let (absolute, rel) = resolve(cgroups_path, id)?;
        // The default `tinyo/<id>`: `tinyo/` is ours, shared by every such container.
        let default_parent = cgroups_path.is_none();
        let layout = self.layout();
        Ok(layout
            .hierarchies
            .iter()
            .filter(|h| !h.is_named_only())
            .map(|h| {
                let base = if absolute {
                    h.mountpoint.clone()
                } else {
                    h.own_dir()
                };
                Dir {
                    mountpoint: h.mountpoint.display().to_string(),
                    path: base.join(&rel).display().to_string(),
                    created: Vec::new(),
                    version: h.version,
                    controllers: h
                        .controllers
                        .iter()
                        .filter(|c| !c.starts_with("name="))
                        .cloned()
                        .collect(),
                    error: None,
                    joined: false,
                    shared: if default_parent {
                        vec![base.join("tinyo").display().to_string()]
                    } else {
                        Vec::new()
                    },
                }
            })
            .collect())
    }

    /// See [`super::mount_binds`].
    pub fn mount_binds(&self, dirs: &[Dir]) -> Vec<(String, String)> {
        self.layout()
            .hierarchies
            .iter()
            .map(|h| {
                let mp = h.mountpoint.display().to_string();
                let src = match dirs
                    .iter()
                    .find(|d| d.error.is_none() && d.mountpoint == mp)
                {
                    Some(d) => d.path.clone(),
                    None => h.own_dir().display().to_string(),
                };
                (mp, src)
            })
            .collect()
    }
}

struct MountLine {
    dev: String,
    root: String,
    mountpoint: String,
    fstype: &'static str,
    super_opts: String,
}

/// Undoes mountinfo's octal escapes (`\040` for a space, …).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 4 <= b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_mountinfo_line(line: &str) -> Option<MountLine> {
    let (left, right) = line.split_once(" - ")?;
    let l: Vec<&str> = left.split(' ').collect();
    let mut r = right.split(' ');
    let fstype = match r.next()? {
        "cgroup" => "cgroup",
        "cgroup2" => "cgroup2",
        _ => "other",
    };
    let _source = r.next();
    let super_opts = r.next().unwrap_or("").to_string();
    Some(MountLine {
        dev: l.get(2)?.to_string(),
        root: unescape(l.get(3)?),
        mountpoint: unescape(l.get(4)?),
        fstype,
        super_opts,
    })
}

/// `/proc/self/cgroup` as (controllers field, path): `("memory", "/a/b")`, `("", "/")` for v2.
fn parse_self_cgroup(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.splitn(3, ':');
            let _id = it.next()?;
            let ctrls = it.next()?;
            let path = it.next()?;
            Some((ctrls.to_string(), path.to_string()))
        })
        .collect()
}

/// `cg` (a path from the hierarchy's root) relative to a mount showing `root`; "" for the root
/// itself. A cgroup outside the mounted subtree (another cgroup namespace) counts as the root.
fn relative_to_root(cg: &str, root: &str) -> String {
    let cg = Path::new(cg);
    let rel = cg.strip_prefix(root).unwrap_or(cg);
    let rel = rel.strip_prefix("/").unwrap_or(rel);
    rel.display().to_string()
}

/// `cgroupsPath` as runc reads it: (absolute, normalised relative path). Absolute paths start at
/// each hierarchy's root, relative ones below this process's own cgroup, none means
/// `tinyo/<id>` below it. `..` may not climb out of that base, and the result must name a
/// cgroup below it (never the base itself).
pub(crate) fn resolve(
    cgroups_path: Option<&Path>,
    id: &str,
) -> Result<(bool, PathBuf), CgroupError> {
    let given = cgroups_path
        .map(Path::to_path_buf)
        .unwrap_or_else(|| Path::new("tinyo").join(id));
    let bad = |why: &str| CgroupError::BadPath {
        path: given.display().to_string(),
        why: why.into(),
    };
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
    for c in given.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Prefix(_) => return Err(bad("not a Linux path")),
            Component::ParentDir => {
                if parts.pop().is_none() {
                    return Err(bad(if given.is_absolute() {
                        "`..` climbs above the hierarchy root"
                    } else {
                        "`..` climbs out of the runtime's own cgroup"
                    }));
                }
            }
            Component::Normal(n) => parts.push(n),
        }
    }
    if parts.is_empty() {
        return Err(bad(
            "names the hierarchy root or the runtime's own cgroup, not a cgroup below it",
        ));
    }
    Ok((given.is_absolute(), parts.iter().collect()))
}
