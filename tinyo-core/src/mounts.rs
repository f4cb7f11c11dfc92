//! Planning the container's filesystem: from a bundle's spec, an ordered list of [`Op`]s that
//! [`crate::rootfs`] carries out in the child. Planning is pure (no system calls), so every
//! decision — flags parsed from options, default devices, masked paths — is unit-tested
//! without root.

use std::path::{Component, Path, PathBuf};

use oci_spec::runtime::Spec;

/// Why the filesystem of a container cannot be planned. Every variant names the mount.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("mount {dest}: type {typ:?} is not supported")]
    BadType { dest: String, typ: String },
    #[error("{what} {path}: the path escapes the container root")]
    Escape { what: &'static str, path: String },
    #[error("linux.rootfsPropagation {0:?} is not a propagation mode")]
    Propagation(String),
    #[error("device {path}: type {typ:?} is not one of c, b, u, p")]
    DeviceType { path: String, typ: String },
    #[error("mount {dest}: {why}")]
    Idmap { dest: String, why: &'static str },
    #[error("mount {0}: option \"tmpcopyup\" applies to tmpfs mounts only")]
    CopyUp(String),
    #[error(
        "linux.namespaces: the config has no mount namespace, and tinyo makes no mount in the \
         host's namespace, but the config needs {0}: add a mount namespace, or drop the mounts \
         (mounts, maskedPaths, readonlyPaths, root.readonly, rootfsPropagation)"
    )]
    NeedsMountNamespace(String),
    #[error("overlay root: {0:?} must be an absolute path without ',', ':', '\\' or newlines")]
    Overlay(String),
}

/// What a mount destination must be before something is mounted on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DestKind {
    Dir,
    /// A bind mount whose source is not a directory: the destination is an empty file.
    File,
}

/// One step of setting up the container's filesystem, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// `mount("", "/", MS_REC|MS_SLAVE)` (runc's default): nothing mounted later can propagate
    /// to the host, while host mounts still propagate in.
    PrivatizeHost,
    /// Mount an overlay filesystem on the (empty) rootfs directory: the container's root is
    /// read-only image layers plus its own upper directory. Made inside the container's
    /// mount namespace, so it disappears with it and never shows on the host.
    OverlayRoot { rootfs: PathBuf, data: String },
    /// Bind the rootfs onto itself (`MS_BIND|MS_REC`) so it is a mount point for pivot_root.
    BindRootfs { rootfs: PathBuf },
    /// Mount something at `dest` (a path inside the container root).
    Mount {
        source: Option<PathBuf>,
        dest: PathBuf,
        fstype: Option<String>,
        flags: u64,
        data: String,
        kind: DestKind,
        /// `tmpcopyup`: copy what the image has at `dest` into the new (tmpfs) mount.
        copy_up: bool,
    },
    /// An idmapped bind (`idmap`/`ridmap`): the runtime prepares a detached copy of `source`
    /// whose ids show through `maps` (the mount's own uid and gid mappings, or the container's
    /// when `None`) and the container process attaches it at `dest`.
    IdmapBind {
        source: PathBuf,
        dest: PathBuf,
        kind: DestKind,
        recursive: bool,
        maps: Option<IdTriples>,
    },
    /// Remount a bind mount to apply flags that a bind ignores (ro, nosuid, nodev, noexec…).
    Remount { dest: PathBuf, flags: u64 },
    /// Change the propagation of the mount at `dest`.
    Propagation { dest: PathBuf, flags: u64 },
    /// Recursive mount attributes (`rro`, `rnosuid`, …) on the mount at `dest` and every mount
    /// below it: mount_setattr(2) with `AT_RECURSIVE`.
    RecursiveAttr { dest: PathBuf, set: u64, clear: u64 },
    /// The `cgroup` mount type: a tmpfs at `dest` holding a read-only bind of the container's
    /// own cgroup in every hierarchy the host has (what runc does on cgroup v1 hosts).
    Cgroup { dest: PathBuf, flags: u64 },
    /// Create a device node.
    Device {
        path: PathBuf,
        kind: u32,
        major: i64,
        minor: i64,
        mode: u32,
        uid: u32,
        gid: u32,
    },
    /// Create a symlink `link -> target` (target is not resolved).
    Symlink { target: PathBuf, link: PathBuf },
    /// After entering the root: the propagation of the new `/` (`linux.rootfsPropagation`).
    RootPropagation { flags: u64 },
    /// Make the root the container's `/`: pivot_root, or chroot with `--no-pivot`.
    EnterRoot { pivot: bool },
    /// Without a mount namespace: open the rootfs as it is (no bind of it, which would be a
    /// mount in the host's namespace).
    OpenRoot { rootfs: PathBuf },
    /// Without a mount namespace: chroot into the rootfs (pivot_root or moving a mount would
    /// change the host's).
    Chroot,
    /// After entering the root: hide a path (tmpfs over a directory, /dev/null over a file).
    Mask { path: PathBuf },
    /// After entering the root: bind a path onto itself read-only.
    ReadOnly { path: PathBuf },
    /// After entering the root: remount `/` read-only (`root.readonly`).
    ReadOnlyRoot,
}

/// (uid, gid) mappings as (container id, host id, size) triples.
pub type IdTriples = (Vec<(u32, u32, u32)>, Vec<(u32, u32, u32)>);

/// The result of planning: the ops in the order they must run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub ops: Vec<Op>,
}

/// Mount flags (`MS_*`), as u64 so the planner does not depend on the platform's `c_ulong`.
// `c_ulong` is u64 here but not on every target: the casts keep this portable.
#[allow(clippy::unnecessary_cast)]
pub mod ms {
    pub const RDONLY: u64 = libc::MS_RDONLY as u64;
    pub const NOSUID: u64 = libc::MS_NOSUID as u64;
    pub const NODEV: u64 = libc::MS_NODEV as u64;
    pub const NOEXEC: u64 = libc::MS_NOEXEC as u64;
    pub const SYNCHRONOUS: u64 = libc::MS_SYNCHRONOUS as u64;
    pub const REMOUNT: u64 = libc::MS_REMOUNT as u64;
    pub const MANDLOCK: u64 = libc::MS_MANDLOCK as u64;
    pub const DIRSYNC: u64 = libc::MS_DIRSYNC as u64;
    pub const NOATIME: u64 = libc::MS_NOATIME as u64;
    pub const NODIRATIME: u64 = libc::MS_NODIRATIME as u64;
    pub const BIND: u64 = libc::MS_BIND as u64;
    pub const REC: u64 = libc::MS_REC as u64;
    pub const SILENT: u64 = libc::MS_SILENT as u64;
    pub const UNBINDABLE: u64 = libc::MS_UNBINDABLE as u64;
    pub const PRIVATE: u64 = libc::MS_PRIVATE as u64;
    pub const SLAVE: u64 = libc::MS_SLAVE as u64;
    pub const SHARED: u64 = libc::MS_SHARED as u64;
    pub const RELATIME: u64 = libc::MS_RELATIME as u64;
    pub const STRICTATIME: u64 = libc::MS_STRICTATIME as u64;
}

/// Mount options split the way the kernel wants them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParsedOptions {
    /// `MS_*` flags for mount(2).
    pub flags: u64,
    /// Propagation changes to apply afterwards, in order.
    pub propagation: Vec<u64>,
    /// Everything else, comma-joined, as the filesystem's data string.
    pub data: String,
    /// Recursive attributes (`rro`, `rnosuid`, …) as `MOUNT_ATTR_*` bits to set and clear
    /// with `mount_setattr(AT_RECURSIVE)` once the mount exists.
    pub attr_set: u64,
    pub attr_clr: u64,
    /// `idmap` (Some(false)) or `ridmap` (Some(true)).
    pub idmap: Option<bool>,
    /// `tmpcopyup`.
    pub copy_up: bool,
}

/// `MOUNT_ATTR_*` bits of mount_setattr(2).
pub mod attr {
    pub const RDONLY: u64 = 0x1;
    pub const NOSUID: u64 = 0x2;
    pub const NODEV: u64 = 0x4;
    pub const NOEXEC: u64 = 0x8;
    pub const ATIME_MASK: u64 = 0x70;
    pub const RELATIME: u64 = 0x0;
    pub const NOATIME: u64 = 0x10;
    pub const STRICTATIME: u64 = 0x20;
    pub const NODIRATIME: u64 = 0x80;
    pub const NOSYMFOLLOW: u64 = 0x0020_0000;
}

/// The recursive form of a mount option, as `(set, clear)` of `MOUNT_ATTR_*` bits (runc's and
/// crun's table).
fn recursive_attr(o: &str) -> Option<(u64, u64)> {
    use attr::*;
    Some(match o {
        "rro" => (RDONLY, 0),
        "rrw" => (0, RDONLY),
        "rnosuid" => (NOSUID, 0),
        "rsuid" => (0, NOSUID),
        "rnodev" => (NODEV, 0),
        "rdev" => (0, NODEV),
        "rnoexec" => (NOEXEC, 0),
        "rexec" => (0, NOEXEC),
        "rnodiratime" => (NODIRATIME, 0),
        "rdiratime" => (0, NODIRATIME),
        // Changing the access-time mode must clear the whole field.
        "rrelatime" => (RELATIME, ATIME_MASK),
        "rnoatime" => (NOATIME, ATIME_MASK),
        "rstrictatime" | "ratime" => (STRICTATIME, ATIME_MASK),
        // MOUNT_ATTR_RELATIME is 0: clearing it changes nothing, so the mount keeps the
        // atime mode its source has (runc's behaviour; crun's too).
        "rnorelatime" => (0, 0),
        "rnosymfollow" => (NOSYMFOLLOW, 0),
        "rsymfollow" => (0, NOSYMFOLLOW),
        _ => return None,
    })
}

/// Every mount option [`parse_options`] applies (what `tinyo features` reports).
pub const MOUNT_OPTIONS: &[&str] = &[
    "async",
    "atime",
    "bind",
    "defaults",
    "dev",
    "diratime",
    "dirsync",
    "exec",
    "idmap",
    "loud",
    "mand",
    "noatime",
    "nodev",
    "nodiratime",
    "noexec",
    "nomand",
    "norelatime",
    "nostrictatime",
    "nosuid",
    "private",
    "ratime",
    "rbind",
    "rdev",
    "rdiratime",
    "relatime",
    "remount",
    "rexec",
    "ridmap",
    "rnoatime",
    "rnodev",
    "rnodiratime",
    "rnoexec",
    "rnorelatime",
    "rnosuid",
    "rnosymfollow",
    "ro",
    "rprivate",
    "rrelatime",
    "rro",
    "rrw",
    "rshared",
    "rslave",
    "rstrictatime",
    "rsuid",
    "rsymfollow",
    "runbindable",
    "rw",
    "shared",
    "silent",
    "slave",
    "strictatime",
    "suid",
    "sync",
    "tmpcopyup",
    "unbindable",
];

/// Parses fstab-style options as runc does: known flags set or clear `MS_*` bits, propagation
/// names are collected separately, recursive attributes (`rro`, …) become `MOUNT_ATTR_*` bits,
/// `tmpcopyup` and `idmap`/`ridmap` are noted, and anything else is filesystem data.
pub fn parse_options(options: &[String]) -> ParsedOptions {
    use ms::*;
    let mut p = ParsedOptions::default();
    let mut data: Vec<&str> = Vec::new();
    for o in options {
        let (set, clear) = match o.as_str() {
            "defaults" => (0, 0),
            "ro" => (RDONLY, 0),
            "rw" => (0, RDONLY),
            "nosuid" => (NOSUID, 0),
            "suid" => (0, NOSUID),
            "nodev" => (NODEV, 0),
            "dev" => (0, NODEV),
            "noexec" => (NOEXEC, 0),
            "exec" => (0, NOEXEC),
            "sync" => (SYNCHRONOUS, 0),
            "async" => (0, SYNCHRONOUS),
            "dirsync" => (DIRSYNC, 0),
            "remount" => (REMOUNT, 0),
            "mand" => (MANDLOCK, 0),
            "nomand" => (0, MANDLOCK),
            "atime" => (0, NOATIME),
            "noatime" => (NOATIME, 0),
            "diratime" => (0, NODIRATIME),
            "nodiratime" => (NODIRATIME, 0),
            "relatime" => (RELATIME, 0),
            "norelatime" => (0, RELATIME),
            "strictatime" => (STRICTATIME, 0),
            "nostrictatime" => (0, STRICTATIME),
            "silent" => (SILENT, 0),
            "loud" => (0, SILENT),
            "bind" => (BIND, 0),
            "rbind" => (BIND | REC, 0),
            "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave" | "unbindable"
            | "runbindable" => {
                p.propagation.push(propagation_flags(o).unwrap_or(PRIVATE));
                continue;
            }
            "idmap" | "ridmap" => {
                p.idmap = Some(o == "ridmap");
                continue;
            }
            "tmpcopyup" => {
                p.copy_up = true;
                continue;
            }
            r if recursive_attr(r).is_some() => {
                let (set, clr) = recursive_attr(r).unwrap_or_default();
                p.attr_set = (p.attr_set & !clr) | set;
                p.attr_clr = (p.attr_clr | clr) & !set | (clr & attr::ATIME_MASK);
                continue;
            }
            other => {
                data.push(other);
                continue;
            }
        };
        p.flags = (p.flags | set) & !clear;
    }
    p.data = data.join(",");
    p
}

/// `MS_*` flags of a propagation name (`rprivate` → `MS_REC|MS_PRIVATE`).
pub fn propagation_flags(name: &str) -> Option<u64> {
    use ms::*;
    Some(match name {
        "private" => PRIVATE,
        "rprivate" => REC | PRIVATE,
        "shared" => SHARED,
        "rshared" => REC | SHARED,
        "slave" => SLAVE,
        "rslave" => REC | SLAVE,
        "unbindable" => UNBINDABLE,
        "runbindable" => REC | UNBINDABLE,
        _ => return None,
    })
}

/// Filesystem types a `mounts[]` entry may name.
const KNOWN_TYPES: &[&str] = &[
    "bind",
    "none",
    "proc",
    "sysfs",
    "tmpfs",
    "devpts",
    "mqueue",
    "cgroup",
    "cgroup2",
    "overlay",
    "ramfs",
    "hugetlbfs",
    "securityfs",
    "debugfs",
    "tracefs",
    "bpf",
    "fusectl",
    "configfs",
    "binfmt_misc",
    "devtmpfs",
];

/// Lexically checks that `path` stays inside the root (`..` never climbs above it).
fn check_inside(what: &'static str, path: &Path) -> Result<(), PlanError> {
    let mut depth: i32 = 0;
    for c in path.components() {
        match c {
            Component::ParentDir => depth -= 1,
            Component::Normal(_) => depth += 1,
            _ => {}
        }
        if depth < 0 {
            return Err(PlanError::Escape {
                what,
                path: path.display().to_string(),
            });
        }
    }
    Ok(())
}

/// A container root made of read-only `lower` directories (the first is the top-most), the
/// container's own `upper` directory and overlayfs's `work` directory (same filesystem as
/// `upper`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overlay {
    pub lower: Vec<PathBuf>,
    pub upper: PathBuf,
    pub work: PathBuf,
}

impl Overlay {
    /// The op mounting this overlay on `rootfs`. Paths must be absolute and free of the
    /// characters overlayfs's option string cannot carry (`,`, `:`, `\\`, newlines).
    pub fn op(&self, rootfs: &Path) -> Result<Op, PlanError> {
        let check = |p: &Path| {
            let s = p.display().to_string();
            if !p.is_absolute() || s.contains([',', ':', '\\', '\n']) {
                return Err(PlanError::Overlay(s));
            }
            Ok(s)
        };
        if self.lower.is_empty() {
            return Err(PlanError::Overlay("(no lower directory)".into()));
        }
        let lower = self
            .lower
            .iter()
            .map(|l| check(l))
            .collect::<Result<Vec<_>, _>>()?
            .join(":");
        let data = format!(
            "lowerdir={lower},upperdir={},workdir={}",
            check(&self.upper)?,
            check(&self.work)?
        );
        Ok(Op::OverlayRoot {
            rootfs: rootfs.to_path_buf(),
            data,
        })
    }
}

/// Options that decide how a `mounts[]` entry is planned, beyond the spec itself.
#[derive(Debug, Clone, Copy, Default)]
pub struct PlanOptions {
    /// `--no-pivot`: chroot instead of pivot_root.
    pub no_pivot: bool,
}

/// Whether `path` (a bind source) is a directory on the host; a missing source counts as a
/// directory so the mount fails later with the kernel's own error naming it.
fn source_is_dir(path: &Path) -> bool {
    std::fs::metadata(path).map(|m| m.is_dir()).unwrap_or(true)
}

/// Plans the container filesystem for `spec`, whose rootfs is `rootfs` and bundle `bundle`
/// (relative bind sources are taken relative to the bundle).
pub fn plan(
    spec: &Spec,
    bundle: &Path,
    rootfs: &Path,
    opts: PlanOptions,
) -> Result<Plan, PlanError> {
    use ms::*;
    let mut ops = vec![
        Op::PrivatizeHost,
        Op::BindRootfs {
            rootfs: rootfs.to_path_buf(),
        },
    ];
    let mut dev_is_bind = false;
    for m in spec.mounts().iter().flatten() {
        let dest = m.destination().clone();
        check_inside("mount destination", &dest)?;
        let dest_s = dest.display().to_string();
        let options = parse_options(m.options().as_deref().unwrap_or_default());
        let typ = m.typ().clone().unwrap_or_default();
        if !typ.is_empty() && !KNOWN_TYPES.contains(&typ.as_str()) {
            return Err(PlanError::BadType { dest: dest_s, typ });
        }
        let is_bind = typ == "bind" || options.flags & BIND != 0;
        if options.copy_up && (is_bind || typ != "tmpfs") {
            return Err(PlanError::CopyUp(dest_s));
        }
        if typ.is_empty() && !is_bind {
            return Err(PlanError::BadType {
                dest: dest_s,
                typ: "(none, and no bind option)".into(),
            });
        }
        if typ == "cgroup" && !is_bind {
            ops.push(Op::Cgroup {
                dest,
                flags: options.flags,
            });
            continue;
        }
        if is_bind {
            let source = m
                .source()
                .clone()
                .map(|s| if s.is_absolute() { s } else { bundle.join(s) });
            let kind = match &source {
                Some(s) if !source_is_dir(s) => DestKind::File,
                _ => DestKind::Dir,
            };
            if Path::new("/dev") == dest {
                dev_is_bind = true;
            }
            let flags = options.flags | BIND;
            let triples = |m: &Option<Vec<oci_spec::runtime::LinuxIdMapping>>| {
                m.iter()
                    .flatten()
                    .map(|m| (m.container_id(), m.host_id(), m.size()))
                    .collect::<Vec<_>>()
            };
            let (uids, gids) = (triples(m.uid_mappings()), triples(m.gid_mappings()));
            if options.idmap.is_some() || !uids.is_empty() || !gids.is_empty() {
                let idmap_err = |why| PlanError::Idmap {
                    dest: dest_s.clone(),
                    why,
                };
                if uids.is_empty() != gids.is_empty() {
                    return Err(idmap_err("uidMappings and gidMappings go together"));
                }
                let source = source.ok_or_else(|| idmap_err("an idmapped bind needs a source"))?;
                ops.push(Op::IdmapBind {
                    source,
                    dest: dest.clone(),
                    kind,
                    recursive: options.idmap == Some(true)
                        || (options.idmap.is_none() && flags & REC != 0),
                    maps: (!uids.is_empty()).then_some((uids, gids)),
                });
            } else {
                ops.push(Op::Mount {
                    source,
                    dest: dest.clone(),
                    fstype: None,
                    flags: flags & (BIND | REC),
                    data: options.data.clone(),
                    kind,
                    copy_up: false,
                });
            }
            // A bind ignores every other flag: apply them with a remount.
            let rest = flags & !(BIND | REC | REMOUNT);
            if rest != 0 {
                ops.push(Op::Remount {
                    dest: dest.clone(),
                    flags: rest,
                });
            }
        } else if options.idmap.is_some() {
            return Err(PlanError::Idmap {
                dest: dest_s,
                why: "idmap/ridmap apply to bind mounts only",
            });
        } else {
            ops.push(Op::Mount {
                source: m.source().clone(),
                dest: dest.clone(),
                copy_up: options.copy_up,
                fstype: Some(typ),
                flags: options.flags,
                data: options.data.clone(),
                kind: DestKind::Dir,
            });
        }
        if options.attr_set != 0 || options.attr_clr != 0 {
            ops.push(Op::RecursiveAttr {
                dest: dest.clone(),
                set: options.attr_set,
                clear: options.attr_clr,
            });
        }
        for p in options.propagation {
            ops.push(Op::Propagation {
                dest: dest.clone(),
                flags: p,
            });
        }
    }
    let linux = spec.linux().as_ref();
    let spec_devices = linux.and_then(|l| l.devices().as_ref());
    if !dev_is_bind {
        // A node the spec lists itself takes the place of the default one (runc).
        let listed: Vec<&Path> = spec_devices
            .into_iter()
            .flatten()
            .map(|d| d.path().as_path())
            .collect();
        default_devices(&mut ops, &listed);
    }
    for d in spec_devices.into_iter().flatten() {
        check_inside("device", d.path())?;
        let kind = match d.typ() {
            oci_spec::runtime::LinuxDeviceType::C | oci_spec::runtime::LinuxDeviceType::U => {
                libc::S_IFCHR
            }
            oci_spec::runtime::LinuxDeviceType::B => libc::S_IFBLK,
            oci_spec::runtime::LinuxDeviceType::P => libc::S_IFIFO,
            other => {
                return Err(PlanError::DeviceType {
                    path: d.path().display().to_string(),
                    typ: format!("{other:?}"),
                })
            }
        };
        ops.push(Op::Device {
            path: d.path().clone(),
            kind,
            major: d.major(),
            minor: d.minor(),
            mode: d.file_mode().unwrap_or(0o666),
            uid: d.uid().unwrap_or(0),
            gid: d.gid().unwrap_or(0),
        });
    }
    let root_prop = match linux.and_then(|l| l.rootfs_propagation().as_ref()) {
        Some(name) if !name.is_empty() => {
            Some(propagation_flags(name).ok_or_else(|| PlanError::Propagation(name.clone()))?)
        }
        _ => None,
    };
    ops.push(Op::EnterRoot {
        pivot: !opts.no_pivot,
    });
    for p in linux
        .and_then(|l| l.readonly_paths().as_ref())
        .into_iter()
        .flatten()
    {
        check_inside("readonly path", Path::new(p))?;
        ops.push(Op::ReadOnly { path: p.into() });
    }
    for p in linux
        .and_then(|l| l.masked_paths().as_ref())
        .into_iter()
        .flatten()
    {
        check_inside("masked path", Path::new(p))?;
        ops.push(Op::Mask { path: p.into() });
    }
    if spec.root().as_ref().and_then(|r| r.readonly()) == Some(true) {
        ops.push(Op::ReadOnlyRoot);
    }
    // Last: pivot_root refuses a shared new root, and masked and read-only paths are binds,
    // which an unbindable tree refuses; so the root's own propagation is set on the new `/`
    // once everything else is mounted (crun sets it after pivot_root too).
    if let Some(flags) = root_prop {
        ops.push(Op::RootPropagation { flags });
    }
    Ok(Plan { ops })
}

/// The plan for a container without a mount namespace of its own: the same file operations
/// (device nodes, links) on the rootfs, entered by chroot, and no mount at all — the first op
/// that would mount something in the host's namespace makes it an error naming what needs it.
pub fn without_mount_namespace(plan: Plan) -> Result<Plan, PlanError> {
    let mut ops = Vec::with_capacity(plan.ops.len());
    for op in plan.ops {
        let needs = match &op {
            Op::PrivatizeHost => continue,
            Op::BindRootfs { rootfs } => {
                ops.push(Op::OpenRoot {
                    rootfs: rootfs.clone(),
                });
                continue;
            }
            Op::EnterRoot { .. } => {
                ops.push(Op::Chroot);
                continue;
            }
            Op::Device { .. } | Op::Symlink { .. } | Op::OpenRoot { .. } | Op::Chroot => {
                ops.push(op);
                continue;
            }
            Op::OverlayRoot { .. } => "an overlay root".to_string(),
            Op::Mount { dest, .. } | Op::IdmapBind { dest, .. } => {
                format!("a mount on {}", dest.display())
            }
            Op::Remount { dest, .. } | Op::RecursiveAttr { dest, .. } => {
                format!("a remount of {}", dest.display())
            }
            Op::Propagation { dest, .. } => format!("the propagation of {}", dest.display()),
            Op::Cgroup { dest, .. } => format!("a cgroup mount on {}", dest.display()),
            Op::RootPropagation { .. } => "linux.rootfsPropagation".to_string(),
            Op::Mask { path } => format!("masked path {}", path.display()),
            Op::ReadOnly { path } => format!("read-only path {}", path.display()),
            Op::ReadOnlyRoot => "root.readonly".to_string(),
        };
        return Err(PlanError::NeedsMountNamespace(needs));
    }
    Ok(Plan { ops })
}

/// The devices and links every container gets (runc's list), unless `/dev` is a host bind.
fn default_devices(ops: &mut Vec<Op>, listed: &[&Path]) {
    for (name, major, minor) in [
        ("null", 1, 3),
        ("zero", 1, 5),
        ("full", 1, 7),
        ("tty", 5, 0),
        ("urandom", 1, 9),
        ("random", 1, 8),
    ] {
        let path = Path::new("/dev").join(name);
        if listed.contains(&path.as_path()) {
            continue;
        }
        ops.push(Op::Device {
            path,
            kind: libc::S_IFCHR,
            major,
            minor,
            mode: 0o666,
            uid: 0,
            gid: 0,
        });
    }
    for (target, link) in [
        ("/proc/self/fd", "/dev/fd"),
        ("/proc/self/fd/0", "/dev/stdin"),
        ("/proc/self/fd/1", "/dev/stdout"),
        ("/proc/self/fd/2", "/dev/stderr"),
        ("pts/ptmx", "/dev/ptmx"),
    ] {
        ops.push(Op::Symlink {
            target: target.into(),
            link: link.into(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::ms::*;
    use super::*;

    fn spec(json: &str) -> Spec {
        serde_json::from_str(json).unwrap()
    }

    fn default_plan() -> Plan {
        let s = Spec::default();
        plan(
            &s,
            Path::new("/b"),
            Path::new("/b/rootfs"),
            PlanOptions::default(),
        )
        .unwrap()
    }

    #[test]
    fn options_set_and_clear_flags_and_keep_data() {
        let o: Vec<String> = [
            "nosuid", "ro", "rw", "noexec", "mode=755", "size=64k", "rbind", "rslave",
        ]
        .map(String::from)
        .to_vec();
        let p = parse_options(&o);
        assert_eq!(p.flags, NOSUID | NOEXEC | BIND | REC);
        assert_eq!(p.data, "mode=755,size=64k");
        assert_eq!(p.propagation, vec![REC | SLAVE]);
    }

    #[test]
    fn every_listed_mount_option_is_understood() {
        for o in MOUNT_OPTIONS {
            let p = parse_options(&[o.to_string()]);
            assert!(
                p.data.is_empty(),
                "{o} would be passed to the filesystem as data"
            );
        }
    }

    #[test]
    fn recursive_attributes_become_mount_attr_bits() {
        let o = |v: &[&str]| parse_options(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        let p = o(&["rbind", "rro", "rnosuid", "rnoatime"]);
        assert_eq!(
            p.flags,
            BIND | REC,
            "recursive attributes are not mount(2) flags"
        );
        assert_eq!(p.attr_set, attr::RDONLY | attr::NOSUID | attr::NOATIME);
        assert_eq!(
            p.attr_clr,
            attr::ATIME_MASK,
            "an atime mode clears the whole atime field"
        );
        let p = o(&["rbind", "rnorelatime"]);
        assert_eq!(
            (p.attr_set, p.attr_clr),
            (0, 0),
            "rnorelatime keeps the source's mode"
        );
        let p = o(&["rnoatime", "rnorelatime"]);
        assert_eq!(p.attr_set, attr::NOATIME);
        let p = o(&["rro", "rrw", "rexec"]);
        assert_eq!(
            (p.attr_set, p.attr_clr),
            (0, attr::RDONLY | attr::NOEXEC),
            "the last one wins"
        );
        assert!(o(&["tmpcopyup", "mode=755"]).copy_up);
        assert_eq!(o(&["tmpcopyup", "mode=755"]).data, "mode=755");
    }

    #[test]
    fn default_spec_plan_starts_private_and_enters_root_before_hiding_paths() {
        let p = default_plan();
        assert_eq!(p.ops[0], Op::PrivatizeHost);
        assert!(matches!(&p.ops[1], Op::BindRootfs { rootfs } if rootfs == Path::new("/b/rootfs")));
        let enter = p
            .ops
            .iter()
            .position(|o| matches!(o, Op::EnterRoot { pivot: true }))
            .unwrap();
        let first_mask = p
            .ops
            .iter()
            .position(|o| matches!(o, Op::Mask { .. }))
            .unwrap();
        let first_ro = p
            .ops
            .iter()
            .position(|o| matches!(o, Op::ReadOnly { .. }))
            .unwrap();
        // runc's order: read-only paths, then masked paths.
        assert!(enter < first_ro && first_ro < first_mask);
        // proc is mounted first, with the spec's order kept.
        assert!(
            matches!(&p.ops[2], Op::Mount { dest, fstype: Some(t), .. } if dest == Path::new("/proc") && t == "proc")
        );
        // /sys is read-only, nosuid, noexec, nodev.
        assert!(p
            .ops
            .iter()
            .any(|o| matches!(o, Op::Mount { dest, flags, .. }
            if dest == Path::new("/sys") && *flags == RDONLY | NOSUID | NOEXEC | NODEV)));
        // The default tmpfs /dev keeps its data.
        assert!(p
            .ops
            .iter()
            .any(|o| matches!(o, Op::Mount { dest, data, .. }
            if dest == Path::new("/dev") && data.contains("mode=755"))));
        assert!(p.ops.iter().any(|o| matches!(o, Op::Cgroup { .. })));
    }

    #[test]
    fn tmpcopyup_marks_a_tmpfs_and_is_refused_elsewhere() {
        let mk = |typ: &str| {
            spec(&format!(
                r#"{{"ociVersion": "1.0.2", "root": {{"path": "rootfs"}}, "mounts": [
                {{"destination": "/etc", "type": "{typ}", "source": "/tmp",
                  "options": ["tmpcopyup", "ro"]}}]}}"#
            ))
        };
        let p = plan(
            &mk("tmpfs"),
            Path::new("/b"),
            Path::new("/b/r"),
            PlanOptions::default(),
        )
        .unwrap();
        assert!(p
            .ops
            .iter()
            .any(|o| matches!(o, Op::Mount { dest, copy_up: true, flags, .. }
            if dest == Path::new("/etc") && *flags == RDONLY)));
        let e = plan(
            &mk("bind"),
            Path::new("/b"),
            Path::new("/b/r"),
            PlanOptions::default(),
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("tmpcopyup") && e.to_string().contains("/etc"),
            "{e}"
        );
    }

    #[test]
    fn without_a_mount_namespace_only_file_ops_and_chroot_remain() {
        let bare = spec(r#"{"ociVersion": "1.0.2", "root": {"path": "rootfs"}}"#);
        let p = plan(
            &bare,
            Path::new("/b"),
            Path::new("/b/r"),
            PlanOptions::default(),
        )
        .unwrap();
        let p = without_mount_namespace(p).unwrap();
        assert_eq!(
            p.ops[0],
            Op::OpenRoot {
                rootfs: "/b/r".into()
            }
        );
        assert_eq!(p.ops.last(), Some(&Op::Chroot));
        assert!(p.ops.iter().all(|o| matches!(
            o,
            Op::OpenRoot { .. } | Op::Device { .. } | Op::Symlink { .. } | Op::Chroot
        )));
        // The default spec mounts /proc first: that is named.
        let e = without_mount_namespace(default_plan()).unwrap_err();
        assert!(e.to_string().contains("a mount on /proc"), "{e}");
    }

    #[test]
    fn spec_devices_replace_defaults_and_fifos_are_nodes() {
        let s = spec(
            r#"{"ociVersion": "1.0.2", "root": {"path": "rootfs"}, "linux": {"devices": [
                {"path": "/dev/null", "type": "c", "major": 1, "minor": 3, "fileMode": 384},
                {"path": "/dev/myfifo", "type": "p", "major": 0, "minor": 0}]}}"#,
        );
        let p = plan(
            &s,
            Path::new("/b"),
            Path::new("/b/rootfs"),
            PlanOptions::default(),
        )
        .unwrap();
        let devs: Vec<_> = p
            .ops
            .iter()
            .filter_map(|o| match o {
                Op::Device {
                    path, kind, mode, ..
                } => Some((path.display().to_string(), *kind, *mode)),
                _ => None,
            })
            .collect();
        let null: Vec<_> = devs.iter().filter(|d| d.0 == "/dev/null").collect();
        assert_eq!(null, [&("/dev/null".to_string(), libc::S_IFCHR, 0o600)]);
        assert!(devs.contains(&("/dev/myfifo".into(), libc::S_IFIFO, 0o666)));
        assert!(devs.iter().any(|d| d.0 == "/dev/zero"));
    }

    #[test]
    fn default_devices_and_links_follow_the_mounts() {
        let p = default_plan();
        let devs: Vec<_> = p
            .ops
            .iter()
            .filter_map(|o| match o {
                Op::Device { path, .. } => Some(path.display().to_string()),
                _ => None,
            })
            .collect();
        assert_eq!(
            devs,
            [
                "/dev/null",
                "/dev/zero",
                "/dev/full",
                "/dev/tty",
                "/dev/urandom",
                "/dev/random"
            ]
        );
        assert!(p.ops.contains(&Op::Symlink {
            target: "pts/ptmx".into(),
            link: "/dev/ptmx".into()
        }));
        let last_mount = p
            .ops
            .iter()
            .rposition(|o| matches!(o, Op::Mount { .. }))
            .unwrap();
        let first_dev = p
            .ops
            .iter()
            .position(|o| matches!(o, Op::Device { .. }))
            .unwrap();
        assert!(last_mount < first_dev);
    }

    #[test]
    fn ro_bind_becomes_bind_then_remount_and_file_sources_need_a_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("file"), "x").unwrap();
        let s = spec(&format!(
            r#"{{"ociVersion":"1.0.2","root":{{"path":"rootfs"}},"mounts":[
              {{"destination":"/etc/x","source":"file","options":["bind","ro","nosuid"]}},
              {{"destination":"/data","type":"bind","source":"{}","options":["rbind","rprivate"]}}]}}"#,
            dir.path().display()
        ));
        let p = plan(
            &s,
            dir.path(),
            &dir.path().join("rootfs"),
            PlanOptions { no_pivot: true },
        )
        .unwrap();
        assert_eq!(
            p.ops[2],
            Op::Mount {
                source: Some(dir.path().join("file")),
                dest: "/etc/x".into(),
                fstype: None,
                copy_up: false,
                flags: BIND,
                data: String::new(),
                kind: DestKind::File
            }
        );
        assert_eq!(
            p.ops[3],
            Op::Remount {
                dest: "/etc/x".into(),
                flags: RDONLY | NOSUID
            }
        );
        assert!(
            matches!(&p.ops[4], Op::Mount { flags, kind: DestKind::Dir, .. } if *flags == BIND | REC)
        );
        assert_eq!(
            p.ops[5],
            Op::Propagation {
                dest: "/data".into(),
                flags: REC | PRIVATE
            }
        );
        // No /dev mount in this spec: default devices are still planned, and chroot is used.
        assert!(p.ops.iter().any(|o| matches!(o, Op::Device { .. })));
        assert!(p.ops.contains(&Op::EnterRoot { pivot: false }));
    }

    #[test]
    fn bad_type_escape_and_bad_propagation_are_named() {
        let base = r#"{"ociVersion":"1.0.2","root":{"path":"rootfs"},"mounts":[MOUNT]}"#;
        let check = |mount: &str, want: &str| {
            let s = spec(&base.replace("MOUNT", mount));
            let err = plan(
                &s,
                Path::new("/b"),
                Path::new("/b/r"),
                PlanOptions::default(),
            )
            .unwrap_err()
            .to_string();
            assert!(err.contains(want), "{err} should mention {want}");
        };
        check(r#"{"destination":"/x","type":"nosuchfs"}"#, "nosuchfs");
        check(r#"{"destination":"/../../etc","type":"tmpfs"}"#, "escapes");
        let s = spec(
            r#"{"ociVersion":"1.0.2","root":{"path":"r"},"linux":{"rootfsPropagation":"sideways"}}"#,
        );
        let err = plan(
            &s,
            Path::new("/b"),
            Path::new("/b/r"),
            PlanOptions::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("sideways"));
    }

    #[test]
    fn readonly_root_is_last_and_host_dev_bind_skips_default_devices() {
        let s = spec(
            r#"{"ociVersion":"1.0.2","root":{"path":"r","readonly":true},"mounts":[
            {"destination":"/dev","type":"bind","source":"/dev","options":["rbind"]}]}"#,
        );
        let p = plan(
            &s,
            Path::new("/b"),
            Path::new("/b/r"),
            PlanOptions::default(),
        )
        .unwrap();
        assert_eq!(p.ops.last(), Some(&Op::ReadOnlyRoot));
        assert!(!p.ops.iter().any(|o| matches!(o, Op::Device { .. })));
    }
}
