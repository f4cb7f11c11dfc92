//! Carrying out a [`Plan`] in the container's (new, private) mount namespace. Runs in the
//! cloned child only. Every destination is opened with `openat2(RESOLVE_IN_ROOT)` below the
//! rootfs and mounted on through `/proc/self/fd/N`, so a symlink in the image can never send a
//! mount out of the root.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use crate::mounts::{ms, DestKind, Op, Plan};
use crate::sys::{self, cstr, fd_path};

/// An error while setting up the filesystem, naming the step.
#[derive(Debug, thiserror::Error)]
#[error("{what}")]
pub struct RootfsError {
    what: String,
    #[source]
    source: io::Error,
}

fn ctx<T>(r: io::Result<T>, what: impl FnOnce() -> String) -> Result<T, RootfsError> {
    r.map_err(|source| RootfsError {
        what: what(),
        source,
    })
}

/// Runs every op in order. The cgroup paths are those of the container (per hierarchy mount
/// point, e.g. `/sys/fs/cgroup/memory` → its directory), used for the `cgroup` mount type.
/// `entered` runs right after the process entered the new root and before masked and
/// read-only paths are applied: sysctls must be written while `/proc/sys` is still writable,
/// as runc does. `before_enter` runs right before the process enters the new root, once every
/// mount is made (where runc runs the createRuntime and createContainer hooks).
/// `detached` holds the trees the runtime prepared for the plan's idmapped binds, in order.
pub fn apply(
    plan: &Plan,
    cgroups: &[(String, String)],
    detached: &[OwnedFd],
    before_enter: &mut dyn FnMut() -> Result<(), String>,
    entered: &mut dyn FnMut() -> Result<(), String>,
) -> Result<(), RootfsError> {
    let mut root: Option<OwnedFd> = None;
    let mut rootfs_path = None;
    let mut did_enter = false;
    let mut detached = detached.iter();
    let slash = c"/";
    for op in &plan.ops {
        match op {
            // runc's default: rslave, so host mounts still show up inside (HostToContainer
            // volumes work) while nothing mounted inside can propagate out.
            Op::PrivatizeHost => ctx(
                sys::mount(None, slash, None, (ms::REC | ms::SLAVE) as _, None),
                || "making / a slave of the host's mounts in the container's namespace".into(),
            )?,
            Op::OverlayRoot { rootfs, data } => {
                let what = || format!("mounting the overlay root on {}", rootfs.display());
                let target = ctx(cstr(rootfs), what)?;
                let data = ctx(cstr(data), what)?;
                ctx(
                    sys::mount(Some(c"overlay"), &target, Some(c"overlay"), 0, Some(&data)),
                    what,
                )?;
            }
            Op::BindRootfs { rootfs } => {
                let p = ctx(cstr(rootfs), || format!("rootfs {}", rootfs.display()))?;
                ctx(
                    sys::mount(Some(&p), &p, None, (ms::BIND | ms::REC) as _, None),
                    || format!("binding rootfs {}", rootfs.display()),
                )?;
                root = Some(ctx(sys::open_dir(rootfs), || {
                    format!("opening rootfs {}", rootfs.display())
                })?);
                rootfs_path = Some(rootfs.clone());
            }
            Op::OpenRoot { rootfs } => {
                root = Some(ctx(sys::open_dir(rootfs), || {
                    format!("opening rootfs {}", rootfs.display())
                })?);
                rootfs_path = Some(rootfs.clone());
            }
            Op::Chroot | Op::EnterRoot { .. } => {
                let rootfs = rootfs_path.as_deref().unwrap_or(Path::new("/"));
                before_enter().map_err(|e| RootfsError {
                    what: "before entering the root".into(),
                    source: io::Error::other(e),
                })?;
                match op {
                    Op::EnterRoot { pivot } => enter_root(rootfs, *pivot)?,
                    _ => {
                        let name = || format!("chroot into {}", rootfs.display());
                        ctx(std::env::set_current_dir(rootfs), name)?;
                        ctx(std::os::unix::fs::chroot("."), name)?;
                        ctx(std::env::set_current_dir("/"), name)?;
                    }
                }
                root = None;
                did_enter = true;
                entered().map_err(|what| RootfsError {
                    what,
                    source: io::Error::other("container system settings"),
                })?;
            }
            Op::RootPropagation { flags } if did_enter => {
                ctx(sys::mount(None, slash, None, *flags as _, None), || {
                    "linux.rootfsPropagation of the new /".into()
                })?
            }
            Op::Mask { path } => mask(path)?,
            Op::ReadOnly { path } => readonly(path)?,
            Op::ReadOnlyRoot => ctx(
                sys::mount(
                    None,
                    slash,
                    None,
                    (ms::BIND | ms::REMOUNT | ms::RDONLY) as _,
                    None,
                ),
                || "remounting / read-only (root.readonly)".into(),
            )?,
            other => {
                let Some(root) = root.as_ref() else {
                    return Err(RootfsError {
                        what: format!("{other:?} planned outside the rootfs"),
                        source: io::Error::from_raw_os_error(libc::EINVAL),
                    });
                };
                in_root(root, other, cgroups, &mut detached)?;
            }
        }
    }
    if !did_enter {
        before_enter().map_err(|e| RootfsError {
            what: "before entering the root".into(),
            source: io::Error::other(e),
        })?;
        entered().map_err(|what| RootfsError {
            what,
            source: io::Error::other("container system settings"),
        })?;
    }
    Ok(())
}

fn in_root(
    root: &OwnedFd,
    op: &Op,
    cgroups: &[(String, String)],
    detached: &mut std::slice::Iter<'_, OwnedFd>,
) -> Result<(), RootfsError> {
    let root = root.as_fd();
    match op {
        Op::IdmapBind {
            source, dest, kind, ..
        } => {
            let name = || format!("idmapped mount {} on {}", source.display(), dest.display());
            let tree = detached.next().ok_or_else(|| RootfsError {
                what: name(),
                source: io::Error::other("the runtime prepared no detached tree for it"),
            })?;
            let target = match kind {
                DestKind::Dir => ctx(sys::mkdir_all_in_root(root, dest), name)?,
                DestKind::File => ctx(sys::touch_in_root(root, dest), name)?,
            };
            ctx(sys::move_mount_to(tree.as_fd(), target.as_fd()), name)?;
        }
        Op::Mount {
            source,
            dest,
            fstype,
            flags,
            data,
            kind,
            copy_up,
        } => {
            let name = || format!("mount {}", dest.display());
            let target = match kind {
                DestKind::Dir => ctx(sys::mkdir_all_in_root(root, dest), name)?,
                DestKind::File => ctx(sys::touch_in_root(root, dest), name)?,
            };
            // tmpcopyup: hold what the image has at `dest` before the tmpfs covers it, and
            // mount writable until the copy is made (read-only comes with a remount after).
            let dir_flags = libc::O_RDONLY | libc::O_DIRECTORY;
            let below = match copy_up {
                true => Some(ctx(sys::open_in_root(root, dest, dir_flags), name)?),
                false => None,
            };
            let mount_flags = match below {
                Some(_) => flags & !ms::RDONLY,
                None => *flags,
            };
            let src = match source {
                Some(s) => Some(ctx(cstr(s), name)?),
                None => fstype.as_deref().map(cstr).transpose().ok().flatten(),
            };
            let fstype = fstype.as_deref().map(cstr).transpose();
            let fstype = ctx(fstype, name)?;
            let data = (!data.is_empty()).then(|| cstr(data)).transpose();
            let data = ctx(data, name)?;
            let r = sys::mount(
                src.as_deref(),
                &fd_path(&target),
                fstype.as_deref(),
                mount_flags as _,
                data.as_deref(),
            );
            ctx(r, || match source {
                Some(s) => format!("mount {} on {}", s.display(), dest.display()),
                None => name(),
            })?;
            if let Some(below) = below {
                let what = || {
                    format!(
                        "tmpcopyup: copying the image's {} into its new tmpfs",
                        dest.display()
                    )
                };
                let top = ctx(sys::open_in_root(root, dest, dir_flags), what)?;
                ctx(sys::copy_tree(below.as_fd(), top.as_fd()), what)?;
                if mount_flags != *flags {
                    let r =
                        sys::mount(None, &fd_path(&top), None, (ms::REMOUNT | flags) as _, None);
                    ctx(r, || format!("remounting {} read-only", dest.display()))?;
                }
            }
        }
        Op::Remount { dest, flags } => {
            let target = ctx(sys::open_in_root(root, dest, libc::O_PATH), || {
                format!("remount {}", dest.display())
            })?;
            let r = sys::mount(
                None,
                &fd_path(&target),
                None,
                (ms::REMOUNT | ms::BIND | flags) as _,
                None,
            );
            ctx(r, || format!("remount {} with its options", dest.display()))?;
        }
        Op::RecursiveAttr { dest, set, clear } => {
            let target = ctx(sys::open_in_root(root, dest, libc::O_PATH), || {
                format!("recursive attributes of {}", dest.display())
            })?;
            ctx(
                sys::mount_setattr_recursive(target.as_fd(), *set, *clear),
                || {
                    format!(
                        "recursive mount attributes (rro, rnosuid, …) of {}",
                        dest.display()
                    )
                },
            )?;
        }
        Op::Propagation { dest, flags } => {
            let target = ctx(sys::open_in_root(root, dest, libc::O_PATH), || {
                format!("propagation of {}", dest.display())
            })?;
            let r = sys::mount(None, &fd_path(&target), None, *flags as _, None);
            ctx(r, || format!("propagation of {}", dest.display()))?;
        }
        Op::Cgroup { dest, flags } => cgroup_mount(root, dest, *flags, cgroups)?,
        Op::Device {
            path,
            kind,
            major,
            minor,
            mode,
            uid,
            gid,
        } => {
            let name = || format!("device {}", path.display());
            let (dir, file) = ctx(sys::parent_in_root(root, path), name)?;
            let dev = libc::makedev(*major as u32, *minor as u32);
            match sys::mknod_in(dir.as_fd(), &file, kind | (mode & 0o7777), dev, *uid, *gid) {
                // In a user namespace the kernel refuses device nodes: bind the host's node
                // over an empty file instead (what runc does for user-namespaced containers).
                Err(e) if e.raw_os_error() == Some(libc::EPERM) && *kind != libc::S_IFIFO => {
                    bind_host_device(root, path)?
                }
                r => ctx(r, name)?,
            }
        }
        Op::Symlink { target, link } => {
            let name = || format!("symlink {}", link.display());
            let (dir, file) = ctx(sys::parent_in_root(root, link), name)?;
            let t = ctx(cstr(target), name)?;
            if link == Path::new("/dev/ptmx") {
                ctx(sys::unlink_in(dir.as_fd(), &file), name)?;
            }
            ctx(sys::symlink_in(dir.as_fd(), &t, &file), name)?;
        }
        _ => {}
    }
    Ok(())
}

/// Binds the host cgroup directory `dir` at `sub` in the root, then remounts it with `flags`.
fn bind_cgroup(
    root: std::os::fd::BorrowedFd<'_>,
    sub: &Path,
    dir: &str,
    flags: u64,
) -> Result<(), RootfsError> {
    let name = || format!("mount cgroup on {}", sub.display());
    let t = ctx(sys::mkdir_all_in_root(root, sub), name)?;
    let src = ctx(cstr(dir), name)?;
    let r = sys::mount(
        Some(&src),
        &fd_path(&t),
        None,
        (ms::BIND | ms::REC) as _,
        None,
    );
    ctx(r, || format!("binding cgroup {dir} on {}", sub.display()))?;
    // Reopen: the descriptor from before the bind names the covered directory.
    let t = ctx(sys::open_in_root(root, sub, libc::O_PATH), name)?;
    let r = sys::mount(
        None,
        &fd_path(&t),
        None,
        (ms::BIND | ms::REMOUNT | flags) as _,
        None,
    );
    ctx(r, || format!("remounting cgroup {}", sub.display()))
}

/// Binds the host's device node at `path` onto an empty file at the same path in the root.
fn bind_host_device(root: std::os::fd::BorrowedFd<'_>, path: &Path) -> Result<(), RootfsError> {
    let name = || {
        format!(
            "device {} (bound from the host in a user namespace)",
            path.display()
        )
    };
    let host = ctx(cstr(path), name)?;
    let target = ctx(sys::touch_in_root(root, path), name)?;
    ctx(
        sys::mount(Some(&host), &fd_path(&target), None, ms::BIND as _, None),
        name,
    )
}

/// The `cgroup` mount type on a v1/hybrid host: a tmpfs, then each hierarchy's container
/// cgroup bound read-only at the hierarchy's name (`cpu,cpuacct`, `memory`, `unified`, …).
fn cgroup_mount(
    root: std::os::fd::BorrowedFd<'_>,
    dest: &Path,
    flags: u64,
    cgroups: &[(String, String)],
) -> Result<(), RootfsError> {
    let name = || format!("mount cgroup on {}", dest.display());
    let base = ms::NOSUID | ms::NODEV | ms::NOEXEC;
    // A pure cgroup v2 host has one hierarchy mounted at /sys/fs/cgroup itself: the
    // container's directory is bound straight at `dest`.
    if let [(mountpoint, dir)] = cgroups {
        if Path::new(mountpoint) == Path::new("/sys/fs/cgroup") {
            return bind_cgroup(root, dest, dir, base | (flags & ms::RDONLY));
        }
    }
    let target = ctx(sys::mkdir_all_in_root(root, dest), name)?;
    ctx(
        sys::mount(
            Some(c"tmpfs"),
            &fd_path(&target),
            Some(c"tmpfs"),
            base as _,
            Some(c"mode=755"),
        ),
        name,
    )?;
    for (mountpoint, dir) in cgroups {
        let Some(leaf) = Path::new(mountpoint).file_name() else {
            continue;
        };
        bind_cgroup(root, &dest.join(leaf), dir, base | (flags & ms::RDONLY))?;
    }
    // Like runc, the tmpfs itself stays writable; the hierarchies below are read-only.
    Ok(())
}

fn enter_root(rootfs: &Path, pivot: bool) -> Result<(), RootfsError> {
    let name = || format!("entering rootfs {}", rootfs.display());
    ctx(std::env::set_current_dir(rootfs), name)?;
    let dot = c".";
    if pivot {
        ctx(sys::pivot_root(dot, dot), || {
            format!("pivot_root into {} (try --no-pivot)", rootfs.display())
        })?;
        // The old root is stacked under the new one at ".": keep its unmount from propagating,
        // then detach it.
        ctx(
            sys::mount(None, dot, None, (ms::REC | ms::SLAVE) as _, None),
            name,
        )?;
        ctx(sys::umount2(dot, libc::MNT_DETACH), || {
            "detaching the old root".into()
        })?;
    } else {
        let here = ctx(cstr(rootfs), name)?;
        ctx(
            sys::mount(Some(&here), c"/", None, libc::MS_MOVE as _, None),
            name,
        )?;
        ctx(std::os::unix::fs::chroot("."), name)?;
    }
    ctx(std::env::set_current_dir("/"), name)
}

fn path_c(path: &Path) -> Result<CString, RootfsError> {
    ctx(cstr(path), || format!("path {}", path.display()))
}

fn mask(path: &Path) -> Result<(), RootfsError> {
    let p = path_c(path)?;
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(RootfsError {
                what: format!("masking {}", path.display()),
                source,
            })
        }
    };
    let r = if meta.is_dir() {
        sys::mount(Some(c"tmpfs"), &p, Some(c"tmpfs"), ms::RDONLY as _, None)
    } else {
        sys::mount(Some(c"/dev/null"), &p, None, ms::BIND as _, None)
    };
    ctx(r, || format!("masking {}", path.display()))
}

fn readonly(path: &Path) -> Result<(), RootfsError> {
    let p = path_c(path)?;
    match sys::mount(Some(&p), &p, None, (ms::BIND | ms::REC) as _, None) {
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
        r => ctx(r, || format!("read-only path {}", path.display()))?,
    }
    // Keep the flags the mount already has (nosuid, nodev, …), add read-only.
    let keep = sys::mount_flags(path).unwrap_or(0);
    let r = sys::mount(
        None,
        &p,
        None,
        (ms::BIND | ms::REMOUNT | ms::RDONLY | keep) as _,
        None,
    );
    ctx(r, || format!("remounting {} read-only", path.display()))
}
