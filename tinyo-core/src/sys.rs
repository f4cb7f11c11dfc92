//! The syscall seam: every raw system call tinyo-core makes goes through a small safe wrapper
//! here, so the rest of the crate (the mount planner above all) is plain, testable Rust.
//!
//! Paths taken from a config are never opened with plain `open`: [`open_in_root`] uses
//! `openat2(RESOLVE_IN_ROOT)`, so `..` and symlinks (absolute or relative) are resolved as if
//! the container root were `/` and can never lead out of it.

use std::ffi::{CStr, CString, OsStr};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// A NUL-terminated copy of a path or string; interior NULs are an `InvalidInput` error.
pub fn cstr(s: impl AsRef<OsStr>) -> io::Result<CString> {
    CString::new(s.as_ref().as_bytes()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{:?} contains a NUL byte", s.as_ref()),
        )
    })
}

fn check(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn check_long(r: libc::c_long) -> io::Result<libc::c_long> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
const RESOLVE_IN_ROOT: u64 = 0x10;

/// `path` made relative (leading `/` stripped); `.` for the root itself.
fn relative(path: &Path) -> PathBuf {
    let rel: PathBuf = path
        .components()
        .filter(|c| !matches!(c, Component::RootDir | Component::Prefix(_)))
        .collect();
    if rel.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        rel
    }
}

/// Opens `path` (absolute or relative, as written in a config) inside the directory `root`,
/// resolving `..` and every symlink as if `root` were `/`. `flags` are `open(2)` flags;
/// `O_CLOEXEC` is always added.
pub fn open_in_root(root: BorrowedFd<'_>, path: &Path, flags: libc::c_int) -> io::Result<OwnedFd> {
    let rel = cstr(relative(path))?;
    let how = OpenHow {
        flags: (flags | libc::O_CLOEXEC) as u64,
        mode: 0,
        resolve: RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
    };
    // SAFETY: `rel` is NUL-terminated and `how` is a valid open_how of the size passed; the
    // kernel does not keep either pointer.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            root.as_raw_fd(),
            rel.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    };
    let fd = check_long(fd)? as RawFd;
    // SAFETY: openat2 just returned this descriptor and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Opens a host path with `O_PATH|O_DIRECTORY` (used for roots and the state directory).
pub fn open_dir(path: &Path) -> io::Result<OwnedFd> {
    let p = cstr(path)?;
    // SAFETY: `p` is NUL-terminated.
    let fd = unsafe {
        libc::open(
            p.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    let fd = check(fd)?;
    // SAFETY: open just returned this descriptor and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Splits a path into its parent and final component; `None` for the root.
fn split(path: &Path) -> Option<(PathBuf, CString)> {
    let rel = relative(path);
    let name = rel.file_name()?;
    let name = cstr(name).ok()?;
    let parent = rel.parent().map(Path::to_path_buf).unwrap_or_default();
    Some((parent, name))
}

/// Creates the directory `path` and its missing parents inside `root` (mode 0755), every step
/// resolved in the root. A dangling symlink on the way is followed inside the root and its
/// target created there (as runc's securejoin does). Returns an `O_PATH` descriptor of the
/// directory.
pub fn mkdir_all_in_root(root: BorrowedFd<'_>, path: &Path) -> io::Result<OwnedFd> {
    mkdir_all_depth(root, path, 0)
}

fn mkdir_all_depth(root: BorrowedFd<'_>, path: &Path, depth: u32) -> io::Result<OwnedFd> {
    if depth > 40 {
        return Err(io::Error::from_raw_os_error(libc::ELOOP));
    }
    let rel = relative(path);
    let mut prefix = PathBuf::new();
    let mut parent = open_in_root(root, Path::new("."), libc::O_PATH | libc::O_DIRECTORY)?;
    for comp in rel.components() {
        if matches!(comp, Component::CurDir) {
            continue;
        }
        let above = prefix.clone();
        prefix.push(comp);
        let next = match open_in_root(root, &prefix, libc::O_PATH | libc::O_DIRECTORY) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                let name = cstr(comp.as_os_str())?;
                // SAFETY: `parent` is a live directory descriptor and `name` is NUL-terminated.
                let r = unsafe { libc::mkdirat(parent.as_raw_fd(), name.as_ptr(), 0o755) };
                match check(r) {
                    Ok(_) => {}
                    Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                        // A dangling symlink: create its target, resolved in the root.
                        let dir =
                            open_in_root(parent.as_fd_borrow(), Path::new("."), libc::O_DIRECTORY)?;
                        let Some(target) = readlink_in(dir.as_fd_borrow(), &name) else {
                            return Err(e);
                        };
                        mkdir_all_depth(root, &above.join(target), depth + 1)?;
                    }
                    Err(e) => return Err(e),
                }
                open_in_root(root, &prefix, libc::O_PATH | libc::O_DIRECTORY)?
            }
            Err(e) => return Err(e),
        };
        parent = next;
    }
    Ok(parent)
}

/// `readlinkat(2)`; `None` if `name` is not a symlink.
fn readlink_in(dir: BorrowedFd<'_>, name: &CStr) -> Option<PathBuf> {
    let mut buf = vec![0u8; libc::PATH_MAX as usize];
    // SAFETY: `dir` is live, `name` NUL-terminated, and `buf` writable for its length.
    let n = unsafe {
        libc::readlinkat(
            dir.as_raw_fd(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n < 0 {
        return None;
    }
    buf.truncate(n as usize);
    Some(PathBuf::from(OsStr::from_bytes(&buf).to_os_string()))
}

/// Makes sure `path` exists inside `root` as a regular file (created empty, mode 0644, if it
/// is missing) and returns an `O_PATH` descriptor of whatever is there.
pub fn touch_in_root(root: BorrowedFd<'_>, path: &Path) -> io::Result<OwnedFd> {
    match open_in_root(root, path, libc::O_PATH) {
        Ok(fd) => return Ok(fd),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
        Err(e) => return Err(e),
    }
    let (parent, name) = split(path).ok_or_else(|| io::Error::from_raw_os_error(libc::EISDIR))?;
    let dir = mkdir_all_in_root(root, &parent)?;
    let dir = open_in_root(dir.as_fd_borrow(), Path::new("."), libc::O_DIRECTORY)?;
    // SAFETY: `dir` is a live directory descriptor and `name` is NUL-terminated.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            name.as_ptr(),
            libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_CLOEXEC | libc::O_NOFOLLOW,
            0o644 as libc::c_uint,
        )
    };
    match check(fd) {
        // SAFETY: openat just returned this descriptor and nothing else owns it.
        Ok(fd) => drop(unsafe { OwnedFd::from_raw_fd(fd) }),
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
        Err(e) => return Err(e),
    }
    open_in_root(root, path, libc::O_PATH)
}

/// Borrowing helper so callers need not import `AsFd`.
trait AsFdBorrow {
    fn as_fd_borrow(&self) -> BorrowedFd<'_>;
}

impl AsFdBorrow for OwnedFd {
    fn as_fd_borrow(&self) -> BorrowedFd<'_> {
        self.as_fd()
    }
}

/// The magic-link path through which a descriptor is used as a mount source or target.
pub fn fd_path(fd: &OwnedFd) -> CString {
    // A decimal number never contains NUL.
    CString::new(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap_or_default()
}

/// `mount(2)`.
pub fn mount(
    source: Option<&CStr>,
    target: &CStr,
    fstype: Option<&CStr>,
    flags: libc::c_ulong,
    data: Option<&CStr>,
) -> io::Result<()> {
    let opt = |c: Option<&CStr>| c.map_or(std::ptr::null(), CStr::as_ptr);
    // SAFETY: every pointer is NUL-terminated or null, which mount(2) allows for source,
    // fstype and data.
    let r = unsafe {
        libc::mount(
            opt(source),
            target.as_ptr(),
            opt(fstype),
            flags,
            opt(data).cast(),
        )
    };
    check(r).map(drop)
}

/// `mount_setattr(2)` with `AT_RECURSIVE | AT_EMPTY_PATH` on an open mount point: change the
/// `MOUNT_ATTR_*` attributes of that mount and every mount below it.
pub fn mount_setattr_recursive(fd: BorrowedFd<'_>, set: u64, clear: u64) -> io::Result<()> {
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    let attr = MountAttr {
        attr_set: set,
        attr_clr: clear,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: the path is an empty NUL-terminated string (AT_EMPTY_PATH), `attr` is a valid
    // struct mount_attr whose size we pass, and the kernel only reads it.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH | libc::AT_RECURSIVE,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `open_tree(2)` with `OPEN_TREE_CLONE`: a detached copy of the mount at `path` (and, with
/// `recursive`, every mount below it), to be changed and attached elsewhere.
pub fn open_tree_clone(path: &CStr, recursive: bool) -> io::Result<OwnedFd> {
    const OPEN_TREE_CLONE: libc::c_uint = 1;
    let mut flags = OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint;
    if recursive {
        flags |= libc::AT_RECURSIVE as libc::c_uint;
    }
    // SAFETY: `path` is NUL-terminated; integer arguments otherwise.
    let r = unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, path.as_ptr(), flags) };
    let fd = check_long(r)?;
    // SAFETY: open_tree just returned this descriptor and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// `mount_setattr(2)` with `MOUNT_ATTR_IDMAP` on a detached tree: ids on disk are shown
/// through the mappings of the user namespace `userns`.
pub fn mount_setattr_idmap(
    fd: BorrowedFd<'_>,
    userns: BorrowedFd<'_>,
    recursive: bool,
) -> io::Result<()> {
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_IDMAP,
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns.as_raw_fd() as u64,
    };
    let mut flags = libc::AT_EMPTY_PATH;
    if recursive {
        flags |= libc::AT_RECURSIVE;
    }
    // SAFETY: the path is an empty NUL-terminated string (AT_EMPTY_PATH), `attr` is a valid
    // struct mount_attr whose size we pass, and the kernel only reads it.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            flags,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    check_long(r).map(drop)
}

/// `move_mount(2)` of a detached tree onto the directory or file open as `target`.
pub fn move_mount_to(fd: BorrowedFd<'_>, target: BorrowedFd<'_>) -> io::Result<()> {
    const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
    const MOVE_MOUNT_T_EMPTY_PATH: libc::c_uint = 0x40;
    // SAFETY: both paths are empty NUL-terminated strings (the descriptors are used); the
    // kernel only reads them.
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            fd.as_raw_fd(),
            c"".as_ptr(),
            target.as_raw_fd(),
            c"".as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
        )
    };
    check_long(r).map(drop)
}

/// `umount2(2)`.
pub fn umount2(target: &CStr, flags: libc::c_int) -> io::Result<()> {
    // SAFETY: `target` is NUL-terminated.
    check(unsafe { libc::umount2(target.as_ptr(), flags) }).map(drop)
}

/// `pivot_root(2)`.
pub fn pivot_root(new_root: &CStr, put_old: &CStr) -> io::Result<()> {
    // SAFETY: both paths are NUL-terminated.
    let r = unsafe { libc::syscall(libc::SYS_pivot_root, new_root.as_ptr(), put_old.as_ptr()) };
    check_long(r).map(drop)
}

/// `mknodat(2)` followed by `fchmodat` (so the umask does not matter) and `fchownat`.
pub fn mknod_in(
    dir: BorrowedFd<'_>,
    name: &CStr,
    mode: libc::mode_t,
    dev: libc::dev_t,
    uid: u32,
    gid: u32,
) -> io::Result<()> {
    // SAFETY: `dir` is a live descriptor and `name` is NUL-terminated.
    let r = unsafe { libc::mknodat(dir.as_raw_fd(), name.as_ptr(), mode, dev) };
    match check(r) {
        Ok(_) => {}
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => return Ok(()),
        Err(e) => return Err(e),
    }
    // SAFETY: as above; fchmodat takes no ownership.
    check(unsafe { libc::fchmodat(dir.as_raw_fd(), name.as_ptr(), mode & 0o7777, 0) })?;
    // SAFETY: as above; AT_SYMLINK_NOFOLLOW keeps the change on the node itself.
    let r = unsafe {
        libc::fchownat(
            dir.as_raw_fd(),
            name.as_ptr(),
            uid,
            gid,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    check(r).map(drop)
}

/// `symlinkat(2)`; an existing entry is left alone.
pub fn symlink_in(dir: BorrowedFd<'_>, target: &CStr, name: &CStr) -> io::Result<()> {
    // SAFETY: `dir` is live, both strings are NUL-terminated.
    let r = unsafe { libc::symlinkat(target.as_ptr(), dir.as_raw_fd(), name.as_ptr()) };
    match check(r) {
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(()),
        other => other.map(drop),
    }
}

/// `unlinkat(2)`; a missing entry is fine.
pub fn unlink_in(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<()> {
    // SAFETY: `dir` is live and `name` is NUL-terminated.
    let r = unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), 0) };
    match check(r) {
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        other => other.map(drop),
    }
}

/// Opens the parent directory of `path` inside `root` (creating it) and returns it with the
/// final component's name.
pub fn parent_in_root(root: BorrowedFd<'_>, path: &Path) -> io::Result<(OwnedFd, CString)> {
    let (parent, name) = split(path).ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
    let dir = mkdir_all_in_root(root, &parent)?;
    let dir = open_in_root(dir.as_fd_borrow(), Path::new("."), libc::O_DIRECTORY)?;
    Ok((dir, name))
}

/// `sethostname(2)`.
pub fn sethostname(name: &str) -> io::Result<()> {
    // SAFETY: the pointer and length describe `name`'s bytes.
    check(unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) }).map(drop)
}

/// `setdomainname(2)`.
pub fn setdomainname(name: &str) -> io::Result<()> {
    // SAFETY: the pointer and length describe `name`'s bytes.
    check(unsafe { libc::setdomainname(name.as_ptr().cast(), name.len()) }).map(drop)
}

/// `setrlimit(2)` with a raw resource number.
pub fn setrlimit(resource: libc::c_int, soft: u64, hard: u64) -> io::Result<()> {
    let lim = libc::rlimit {
        rlim_cur: soft as libc::rlim_t,
        rlim_max: hard as libc::rlim_t,
    };
    // SAFETY: `lim` is a valid rlimit; the resource number is checked by the kernel.
    check(unsafe { libc::setrlimit(resource as _, &lim) }).map(drop)
}

/// `prctl(2)` with integer arguments.
pub fn prctl(option: libc::c_int, a2: libc::c_ulong, a3: libc::c_ulong) -> io::Result<libc::c_int> {
    // SAFETY: every option used by this crate takes integer arguments only.
    check(unsafe { libc::prctl(option, a2, a3, 0 as libc::c_ulong, 0 as libc::c_ulong) })
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// `capset(2)` for the calling thread with 64-bit masks.
pub fn capset(effective: u64, permitted: u64, inheritable: u64) -> io::Result<()> {
    const VERSION_3: u32 = 0x2008_0522;
    let mut header = CapHeader {
        version: VERSION_3,
        pid: 0,
    };
    let data = [
        CapData {
            effective: effective as u32,
            permitted: permitted as u32,
            inheritable: inheritable as u32,
        },
        CapData {
            effective: (effective >> 32) as u32,
            permitted: (permitted >> 32) as u32,
            inheritable: (inheritable >> 32) as u32,
        },
    ];
    // SAFETY: header and two data elements, as the v3 ABI requires.
    let r = unsafe {
        libc::syscall(
            libc::SYS_capset,
            &mut header as *mut CapHeader,
            data.as_ptr(),
        )
    };
    check_long(r).map(drop)
}

/// `setgroups(2)`.
pub fn setgroups(gids: &[u32]) -> io::Result<()> {
    // SAFETY: pointer and length describe `gids`.
    check(unsafe { libc::setgroups(gids.len(), gids.as_ptr()) }).map(drop)
}

/// `setresgid(2)` with all three ids equal, straight through the syscall so it only affects
/// this (single) thread.
pub fn setgid(gid: u32) -> io::Result<()> {
    // SAFETY: integer arguments only.
    check_long(unsafe { libc::syscall(libc::SYS_setresgid, gid, gid, gid) }).map(drop)
}

/// `setresuid(2)` with all three ids equal.
pub fn setuid(uid: u32) -> io::Result<()> {
    // SAFETY: integer arguments only.
    check_long(unsafe { libc::syscall(libc::SYS_setresuid, uid, uid, uid) }).map(drop)
}

/// `setns(2)`.
pub fn setns(fd: BorrowedFd<'_>, nstype: libc::c_int) -> io::Result<()> {
    // SAFETY: `fd` is live; the kernel checks its type.
    check(unsafe { libc::setns(fd.as_raw_fd(), nstype) }).map(drop)
}

/// `unshare(2)`.
pub fn unshare(flags: libc::c_int) -> io::Result<()> {
    // SAFETY: integer argument only.
    check(unsafe { libc::unshare(flags) }).map(drop)
}

#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// `clone3(2)` with fork semantics (no new stack): returns `Some(pid)` in the parent and
/// `None` in the child, which gets `SIGCHLD` as its exit signal.
///
/// # Safety
/// The caller must be single-threaded (as after `fork`, only the calling thread exists in the
/// child, and locks held by other threads would never be released), and the child must not
/// return into code that assumes it is the parent.
pub unsafe fn clone3(flags: u64) -> io::Result<Option<libc::pid_t>> {
    // SAFETY: the caller's promise, passed on.
    unsafe { clone3_into(flags, None) }
}

/// As [`clone3`], with the child born in the cgroup v2 directory `cgroup` (an open directory
/// descriptor) when given: `CLONE_INTO_CGROUP`, which needs no migration afterwards (a
/// migration by `cgroup.procs` waits for an RCU grace period, several milliseconds).
///
/// # Safety
/// As for [`clone3`].
pub unsafe fn clone3_into(
    flags: u64,
    cgroup: Option<BorrowedFd<'_>>,
) -> io::Result<Option<libc::pid_t>> {
    const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;
    let args = CloneArgs {
        flags: flags | cgroup.map_or(0, |_| CLONE_INTO_CGROUP),
        exit_signal: libc::SIGCHLD as u64,
        cgroup: cgroup.map_or(0, |fd| fd.as_raw_fd() as u64),
        ..Default::default()
    };
    // SAFETY: `args` is a valid clone_args of the given size; with a null stack the child runs
    // on a copy of this stack, exactly like fork. The caller upholds single-threadedness.
    let r = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    match check_long(r)? {
        0 => Ok(None),
        pid => Ok(Some(pid as libc::pid_t)),
    }
}

/// `kill(2)`.
pub fn kill(pid: libc::pid_t, sig: libc::c_int) -> io::Result<()> {
    // SAFETY: integer arguments only.
    check(unsafe { libc::kill(pid, sig) }).map(drop)
}

/// `waitpid(2)`, retried on `EINTR`; returns the raw wait status.
pub fn waitpid(pid: libc::pid_t, flags: libc::c_int) -> io::Result<(libc::pid_t, libc::c_int)> {
    loop {
        let mut status = 0;
        // SAFETY: `status` is a valid out-pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, flags) };
        match check(r) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
            Ok(p) => return Ok((p, status)),
        }
    }
}

/// `mkfifo(3)` with an explicit mode (the umask is applied by the kernel; callers chmod).
pub fn mkfifo(path: &Path, mode: libc::mode_t) -> io::Result<()> {
    let p = cstr(path)?;
    // SAFETY: `p` is NUL-terminated.
    check(unsafe { libc::mkfifo(p.as_ptr(), mode) }).map(drop)
}

/// `flock(2)` (exclusive, blocking), retried on `EINTR`.
pub fn flock_exclusive(fd: BorrowedFd<'_>) -> io::Result<()> {
    loop {
        // SAFETY: `fd` is live.
        let r = unsafe { libc::flock(fd.as_raw_fd(), libc::LOCK_EX) };
        match check(r) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other.map(drop),
        }
    }
}

/// `pipe2(O_CLOEXEC)`: (read end, write end).
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for two descriptors.
    check(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: pipe2 just returned these descriptors and nothing else owns them.
    let r = unsafe { OwnedFd::from_raw_fd(fds[0]) };
    // SAFETY: as above.
    let w = unsafe { OwnedFd::from_raw_fd(fds[1]) };
    Ok((r, w))
}

/// Marks every descriptor from `first` up close-on-exec: `close_range(CLOSE_RANGE_CLOEXEC)`,
/// or, where the kernel or a seccomp profile refuses it (`ENOSYS`, `EPERM`, `EINVAL`), one
/// `fcntl` per descriptor listed in `/proc/self/fd` (or up to the descriptor limit without it).
pub fn cloexec_from(first: u32) -> io::Result<()> {
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    // SAFETY: integer arguments only; nothing is closed, only flagged.
    let r = unsafe { libc::syscall(libc::SYS_close_range, first, u32::MAX, CLOSE_RANGE_CLOEXEC) };
    match check_long(r) {
        Ok(_) => Ok(()),
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::ENOSYS | libc::EPERM | libc::EINVAL)
            ) =>
        {
            cloexec_sweep(first)
        }
        Err(e) => Err(e),
    }
}

/// The fallback of [`cloexec_from`]: `FD_CLOEXEC` on each open descriptor from `first` up.
pub fn cloexec_sweep(first: u32) -> io::Result<()> {
    let fds: Vec<RawFd> = match std::fs::read_dir("/proc/self/fd") {
        // The listing's own descriptor is among them; flagging it too is harmless.
        Ok(dir) => dir
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect(),
        Err(_) => {
            let mut lim = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            // SAFETY: `lim` is a valid rlimit to fill in.
            check(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) })?;
            (0..lim.rlim_cur.min(1 << 20) as RawFd).collect()
        }
    };
    for fd in fds.into_iter().filter(|&fd| fd >= first as RawFd) {
        // SAFETY: integer arguments only; a descriptor that is not open fails with EBADF.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
        if flags < 0 {
            continue;
        }
        // SAFETY: as above.
        check(unsafe { libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) })?;
    }
    Ok(())
}

/// Every signal back to its default action and none blocked: what a freshly exec'd program
/// expects, whatever this process (a Rust binary ignores `SIGPIPE`) had set.
pub fn reset_signals() -> io::Result<()> {
    for sig in 1..=64 {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // The kernel's own sigaction, not the C library's, which refuses the signals it
        // reserves (32, 33) though they may have been inherited ignored.
        #[repr(C)]
        struct KernelSigaction {
            handler: libc::sighandler_t,
            flags: libc::c_ulong,
            restorer: usize,
            mask: u64,
        }
        let act = KernelSigaction {
            handler: libc::SIG_DFL,
            flags: 0,
            restorer: 0,
            mask: 0,
        };
        // SAFETY: `act` is a valid kernel sigaction for the duration of the call; SIG_DFL
        // needs no restorer; the old action is not asked for.
        unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                sig,
                &act as *const KernelSigaction,
                std::ptr::null_mut::<KernelSigaction>(),
                8usize,
            )
        };
    }
    // SAFETY: sigset_t is plain data; all-zero is the empty set.
    let set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid sigset_t; the old mask is not asked for.
    check(unsafe { libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut()) })?;
    Ok(())
}

/// `pidfd_open(2)`.
pub fn pidfd_open(pid: libc::pid_t) -> io::Result<OwnedFd> {
    // SAFETY: integer arguments only.
    let fd = check_long(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) })?;
    // SAFETY: pidfd_open just returned this descriptor and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// `pidfd_getfd(2)`: a copy of descriptor `fd` of the process behind `pidfd`.
pub fn pidfd_getfd(pidfd: BorrowedFd<'_>, fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: integer arguments only.
    let r = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0) };
    let fd = check_long(r)?;
    // SAFETY: pidfd_getfd just returned this descriptor and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// An `O_PATH` descriptor of `name` in the directory `dir` (no permission on the file needed).
pub fn open_path_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<OwnedFd> {
    // SAFETY: `dir` is live and `name` NUL-terminated.
    let fd = check(unsafe {
        libc::openat(
            dir.as_raw_fd(),
            name.as_ptr(),
            libc::O_PATH | libc::O_CLOEXEC,
        )
    })?;
    // SAFETY: openat just returned this descriptor and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The text of an errno as Go (and so runc) prints it: `no such file or directory`.
pub fn errno_text(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => {
            // SAFETY: strerror returns a valid NUL-terminated string for any errno value.
            let text = unsafe { libc::strerror(n) };
            // SAFETY: as above; the string is copied before anything else runs.
            let s = unsafe { CStr::from_ptr(text) };
            s.to_string_lossy().to_lowercase()
        }
        None => e.to_string(),
    }
}

/// `execve(2)`; returns only on failure.
pub fn execve(path: &CStr, argv: &[CString], envp: &[CString]) -> io::Error {
    let mut a: Vec<*const libc::c_char> = argv.iter().map(|s| s.as_ptr()).collect();
    a.push(std::ptr::null());
    let mut e: Vec<*const libc::c_char> = envp.iter().map(|s| s.as_ptr()).collect();
    e.push(std::ptr::null());
    // SAFETY: both arrays are NULL-terminated arrays of NUL-terminated strings that outlive
    // the call.
    unsafe { libc::execve(path.as_ptr(), a.as_ptr(), e.as_ptr()) };
    io::Error::last_os_error()
}

/// `umask(2)`.
pub fn umask(mask: u32) {
    // SAFETY: integer argument only; umask cannot fail.
    unsafe { libc::umask(mask as libc::mode_t) };
}

/// `_exit(2)`: leaves without running destructors or atexit handlers (for a cloned child).
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit is always safe to call.
    unsafe { libc::_exit(code) }
}

/// `access(path, X_OK)` on a regular file.
pub fn is_executable(path: &Path) -> bool {
    let Ok(p) = cstr(path) else { return false };
    // SAFETY: `p` is NUL-terminated.
    let ok = unsafe { libc::access(p.as_ptr(), libc::X_OK) } == 0;
    ok && std::fs::metadata(path).is_ok_and(|m| m.is_file())
}

/// The calling process's euid.
pub fn geteuid() -> u32 {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() }
}

/// `getegid(2)`.
pub fn getegid() -> u32 {
    // SAFETY: getegid cannot fail.
    unsafe { libc::getegid() }
}

/// Whether this process may create entries in the directory `path` (`access(W_OK|X_OK)`).
pub fn is_writable_dir(path: &Path) -> bool {
    let Ok(c) = cstr(path) else { return false };
    // SAFETY: `c` is NUL-terminated; access(2) only reads it.
    unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) == 0 }
}

/// The `MS_*` flags of the mount holding `path` (from `statvfs`).
pub fn mount_flags(path: &Path) -> io::Result<u64> {
    let p = cstr(path)?;
    // SAFETY: an all-zero statvfs is a valid value to be overwritten.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `p` is NUL-terminated and `st` a valid out-pointer.
    check(unsafe { libc::statvfs(p.as_ptr(), &mut st) })?;
    // Every ST_* bit kept here equals its MS_* twin except relatime (bit 12 vs bit 21), which
    // musl's libc crate does not even name.
    const ST_RELATIME: libc::c_ulong = 4096;
    let keep = libc::ST_RDONLY
        | libc::ST_NOSUID
        | libc::ST_NODEV
        | libc::ST_NOEXEC
        | libc::ST_SYNCHRONOUS
        | libc::ST_MANDLOCK
        | libc::ST_NOATIME
        | libc::ST_NODIRATIME;
    let mut flags = (st.f_flag & keep) as u64;
    if st.f_flag & ST_RELATIME != 0 {
        flags |= crate::mounts::ms::RELATIME;
    }
    Ok(flags)
}

/// `close(2)` of a descriptor this process inherited a copy of (in a cloned child).
pub fn close_raw(fd: RawFd) {
    // SAFETY: the caller gives up this descriptor; nothing in the child uses it afterwards.
    unsafe { libc::close(fd) };
}

/// The pid `forward_signals` sends to (0: none yet).
static FORWARD_TO: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

extern "C" fn forward(sig: libc::c_int) {
    let pid = FORWARD_TO.load(std::sync::atomic::Ordering::Relaxed);
    if pid > 0 {
        // SAFETY: kill is async-signal-safe; integer arguments only.
        unsafe { libc::kill(pid, sig) };
    }
}

/// From now on, the listed signals received by this process are sent on to `pid` (how a
/// foreground `run` passes ^C or `kill` on to its container). Uses `SA_RESTART`.
pub fn forward_signals(pid: libc::pid_t, signals: &[libc::c_int]) -> io::Result<()> {
    FORWARD_TO.store(pid, std::sync::atomic::Ordering::Relaxed);
    for &sig in signals {
        // SAFETY: an all-zero sigaction is a valid value to fill in.
        let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
        sa.sa_sigaction = forward as *const () as libc::sighandler_t;
        sa.sa_flags = libc::SA_RESTART;
        // SAFETY: `sa.sa_mask` is a valid sigset to initialise.
        unsafe { libc::sigemptyset(&mut sa.sa_mask) };
        // SAFETY: `sa` is fully initialised and the handler only calls async-signal-safe
        // functions.
        check(unsafe { libc::sigaction(sig, &sa, std::ptr::null_mut()) })?;
    }
    Ok(())
}

/// `fcntl(F_GETFD)`: whether `fd` is an open descriptor of this process.
pub fn fd_is_open(fd: RawFd) -> bool {
    // SAFETY: F_GETFD only reads the descriptor's flags; an unopened number gives EBADF.
    unsafe { libc::fcntl(fd, libc::F_GETFD) >= 0 }
}

/// Clears `FD_CLOEXEC` on `fd` (a descriptor passed on to the container with --preserve-fds).
pub fn clear_cloexec(fd: RawFd) -> io::Result<()> {
    // SAFETY: F_SETFD only changes the descriptor's flags.
    check(unsafe { libc::fcntl(fd, libc::F_SETFD, 0) }).map(drop)
}

/// `memfd_create(2)` with `MFD_CLOEXEC`: an anonymous file (to capture a hook's output).
pub fn memfd(name: &CStr) -> io::Result<OwnedFd> {
    // SAFETY: `name` is NUL-terminated.
    let fd = check(unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) })?;
    // SAFETY: memfd_create just returned this descriptor and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Opens the pty multiplexer at `path` (the container's `/dev/ptmx`), unlocks the new pty
/// and returns its master and the number N of its slave `/dev/pts/N`.
pub fn open_pty(path: &Path) -> io::Result<(OwnedFd, u32)> {
    let p = cstr(path)?;
    // SAFETY: `p` is NUL-terminated.
    let fd =
        check(unsafe { libc::open(p.as_ptr(), libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) })?;
    // SAFETY: open just returned this descriptor and nothing else owns it.
    let master = unsafe { OwnedFd::from_raw_fd(fd) };
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK reads one int from the valid pointer given.
    check(unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) })?;
    let mut n: libc::c_uint = 0;
    // SAFETY: TIOCGPTN writes one unsigned int to the valid pointer given.
    check(unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGPTN, &mut n) })?;
    Ok((master, n))
}

/// `TIOCSWINSZ`: sets a terminal's window size.
pub fn set_winsize(fd: BorrowedFd<'_>, rows: u16, cols: u16) -> io::Result<()> {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize from the valid pointer given.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws) }).map(drop)
}

/// `setsid(2)`; `EPERM` (already a process-group leader) is an error.
pub fn setsid() -> io::Result<()> {
    // SAFETY: no arguments.
    check(unsafe { libc::setsid() }).map(drop)
}

/// `TIOCSCTTY`: makes `fd` the controlling terminal of this (session leader) process.
pub fn set_ctty(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: TIOCSCTTY takes an integer argument (0: do not steal).
    check(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSCTTY, 0) }).map(drop)
}

/// `dup2(2)` (without `O_CLOEXEC` on the new descriptor).
pub fn dup2(old: BorrowedFd<'_>, new: RawFd) -> io::Result<()> {
    // SAFETY: `old` is live; `new` is replaced atomically, which the caller asked for.
    check(unsafe { libc::dup2(old.as_raw_fd(), new) }).map(drop)
}

/// Sends `fd` over the connected unix socket `sock` with `SCM_RIGHTS`, with `payload` as the
/// message's data (runc sends the name the master was opened by, `/dev/ptmx`).
pub fn send_fd(sock: BorrowedFd<'_>, fd: BorrowedFd<'_>, payload: &[u8]) -> io::Result<()> {
    let raw = fd.as_raw_fd();
    let mut data = payload.to_vec();
    if data.is_empty() {
        data.push(0);
    }
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr().cast(),
        iov_len: data.len(),
    };
    // SAFETY: CMSG_SPACE only computes a size.
    let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) } as usize;
    // u64 elements keep the control buffer aligned for cmsghdr.
    let mut control = vec![0u64; space.div_ceil(8)];
    // SAFETY: an all-zero msghdr is a valid value to fill in.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = space as _;
    // SAFETY: `msg` has a control buffer of CMSG_SPACE(sizeof fd) bytes, so the first header
    // exists.
    let cmsg = unsafe { libc::CMSG_FIRSTHDR(&msg) };
    if cmsg.is_null() {
        return Err(io::Error::other("no room for the control message"));
    }
    // SAFETY: `cmsg` points into `control`, which is large enough and aligned.
    unsafe {
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
    }
    // SAFETY: as above.
    unsafe {
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
    }
    // SAFETY: CMSG_LEN only computes a size.
    let len = unsafe { libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) };
    // SAFETY: as above.
    unsafe {
        (*cmsg).cmsg_len = len as _;
    }
    // SAFETY: `cmsg` is a valid header inside `control`; CMSG_DATA only computes an address.
    let data = unsafe { libc::CMSG_DATA(cmsg) }.cast::<RawFd>();
    // SAFETY: the data of this header has room for one descriptor (CMSG_SPACE above);
    // write_unaligned because the data need not be aligned for an int.
    unsafe { std::ptr::write_unaligned(data, raw) };
    loop {
        // SAFETY: `msg` and everything it points to are live for the call.
        let r = unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
        match check_long(r as libc::c_long) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other.map(drop),
        }
    }
}

/// Receives one descriptor sent with [`send_fd`], dropping the payload.
pub fn recv_fd(sock: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    recv_fd_payload(sock).map(|(fd, _)| fd)
}

/// Receives one message carrying one descriptor (`SCM_RIGHTS`) and up to 8 KiB of payload.
pub fn recv_fd_payload(sock: BorrowedFd<'_>) -> io::Result<(OwnedFd, Vec<u8>)> {
    let mut data = vec![0u8; 8192];
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr().cast(),
        iov_len: data.len(),
    };
    // SAFETY: CMSG_SPACE only computes a size.
    let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) } as usize;
    // u64 elements keep the control buffer aligned for cmsghdr.
    let mut control = vec![0u64; space.div_ceil(8)];
    // SAFETY: an all-zero msghdr is a valid value to fill in.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = space as _;
    let n = loop {
        // SAFETY: `msg` points at live buffers of the sizes it states.
        let r = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        match check_long(r as libc::c_long) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => break other?,
        }
    };
    if n == 0 {
        return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
    }
    if msg.msg_flags & libc::MSG_CTRUNC != 0 {
        return Err(io::Error::other(
            "the control message was truncated (more than one descriptor sent?)",
        ));
    }
    // SAFETY: `msg` was filled in by recvmsg and its control buffer is still live.
    let cmsg = unsafe { libc::CMSG_FIRSTHDR(&msg) };
    if cmsg.is_null() {
        return Err(io::Error::other("no descriptor in the message"));
    }
    // SAFETY: a non-null CMSG_FIRSTHDR points at a complete header inside `control`.
    let hdr = unsafe { std::ptr::read_unaligned(cmsg) };
    if (hdr.cmsg_level, hdr.cmsg_type) != (libc::SOL_SOCKET, libc::SCM_RIGHTS) {
        return Err(io::Error::other("not an SCM_RIGHTS message"));
    }
    // SAFETY: `cmsg` is a complete header inside `control`; CMSG_DATA only computes an address.
    let cdata = unsafe { libc::CMSG_DATA(cmsg) }.cast::<RawFd>();
    // SAFETY: an SCM_RIGHTS message of this size carries one descriptor in its data;
    // read_unaligned because the data need not be aligned for an int.
    let fd = unsafe { std::ptr::read_unaligned(cdata) };
    // SAFETY: the kernel just installed this descriptor in this process for us alone.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    data.truncate(n as usize);
    Ok((fd, data))
}

/// `fchdir(2)` (works on `O_PATH` directory descriptors).
pub fn fchdir(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: `fd` is live.
    check(unsafe { libc::fchdir(fd.as_raw_fd()) }).map(drop)
}

/// `struct sched_attr` of sched_setattr(2), its first version (48 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SchedAttr {
    pub size: u32,
    pub sched_policy: u32,
    pub sched_flags: u64,
    pub sched_nice: i32,
    pub sched_priority: u32,
    pub sched_runtime: u64,
    pub sched_deadline: u64,
    pub sched_period: u64,
}

/// `sched_setattr(0, attr, 0)`: the calling thread's scheduling policy and parameters.
pub fn sched_setattr_self(attr: &SchedAttr) -> io::Result<()> {
    // SAFETY: `attr` points to a live, initialised sched_attr whose `size` says its length.
    let r = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, attr as *const SchedAttr, 0) };
    check_long(r).map(drop)
}

/// `personality(2)`: the execution domain of this process and what it execs.
pub fn personality(persona: u32) -> io::Result<()> {
    // SAFETY: plain integer argument.
    check(unsafe { libc::personality(persona as libc::c_ulong) }).map(drop)
}

/// `ioprio_set(IOPRIO_WHO_PROCESS, 0, value)`: the calling thread's I/O priority.
pub fn ioprio_set_self(value: u32) -> io::Result<()> {
    const IOPRIO_WHO_PROCESS: libc::c_int = 1;
    // SAFETY: plain integer arguments.
    let r = unsafe { libc::syscall(libc::SYS_ioprio_set, IOPRIO_WHO_PROCESS, 0, value) };
    check_long(r).map(drop)
}

/// How deep [`copy_tree`] descends before refusing (a hostile image's nesting cannot exhaust
/// descriptors or the stack).
const COPY_DEPTH: u32 = 128;

/// Copies the contents of directory `src` into directory `dst` (`tmpcopyup`): files with
/// their data, directories, symlinks, FIFOs, sockets and device nodes, each with its mode,
/// owner and times; the mode, owner and times of `src` itself go to `dst`. Every entry is
/// reached relative to a directory descriptor with `O_NOFOLLOW`, so no symlink in the tree
/// is ever followed. Hard links become separate copies, as with runc and crun.
pub fn copy_tree(src: BorrowedFd<'_>, dst: BorrowedFd<'_>) -> io::Result<()> {
    copy_dir(src, dst, 0)?;
    let st = fstatat(src, c"", libc::AT_EMPTY_PATH)?;
    copy_attrs(dst, c"", &st, libc::AT_EMPTY_PATH)
}

fn fstatat(dir: BorrowedFd<'_>, name: &CStr, flags: libc::c_int) -> io::Result<libc::stat> {
    // SAFETY: an all-zero stat is a valid value for the kernel to overwrite.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `dir` is live, `name` NUL-terminated, `st` a valid out-pointer.
    check(unsafe { libc::fstatat(dir.as_raw_fd(), name.as_ptr(), &mut st, flags) })?;
    Ok(st)
}

fn openat(dir: BorrowedFd<'_>, name: &CStr, flags: libc::c_int, mode: u32) -> io::Result<OwnedFd> {
    let flags = flags | libc::O_CLOEXEC | libc::O_NOFOLLOW;
    // SAFETY: `dir` is live and `name` NUL-terminated; the result is checked.
    let fd = check(unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), flags, mode) })?;
    // SAFETY: `fd` was just returned by openat and is owned by no one else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Owner, mode and times of `st` onto `name` in `dir` (never following a symlink).
fn copy_attrs(
    dir: BorrowedFd<'_>,
    name: &CStr,
    st: &libc::stat,
    at: libc::c_int,
) -> io::Result<()> {
    let is_link = st.st_mode & libc::S_IFMT == libc::S_IFLNK;
    // SAFETY: `dir` is live, `name` NUL-terminated.
    check(unsafe {
        libc::fchownat(
            dir.as_raw_fd(),
            name.as_ptr(),
            st.st_uid,
            st.st_gid,
            at | libc::AT_SYMLINK_NOFOLLOW,
        )
    })?;
    let empty = at & libc::AT_EMPTY_PATH != 0;
    if !is_link {
        // After chown, which clears set-id bits. The entry is not a symlink: it was just
        // created as what `st` says, so fchmodat (which has no NOFOLLOW) is safe on it.
        let mode = st.st_mode & 0o7777;
        let r = if empty {
            // SAFETY: `dir` is a live descriptor.
            unsafe { libc::fchmod(dir.as_raw_fd(), mode) }
        } else {
            // SAFETY: `dir` is live and `name` NUL-terminated.
            unsafe { libc::fchmodat(dir.as_raw_fd(), name.as_ptr(), mode, 0) }
        };
        check(r)?;
    }
    let times = [
        libc::timespec {
            tv_sec: st.st_atime,
            tv_nsec: st.st_atime_nsec,
        },
        libc::timespec {
            tv_sec: st.st_mtime,
            tv_nsec: st.st_mtime_nsec,
        },
    ];
    let r = if empty {
        // SAFETY: `times` holds two timespecs and `dir` is live.
        unsafe { libc::futimens(dir.as_raw_fd(), times.as_ptr()) }
    } else {
        // SAFETY: as above, and `name` is NUL-terminated.
        unsafe {
            libc::utimensat(
                dir.as_raw_fd(),
                name.as_ptr(),
                times.as_ptr(),
                libc::AT_SYMLINK_NOFOLLOW,
            )
        }
    };
    check(r).map(drop)
}

fn copy_dir(src: BorrowedFd<'_>, dst: BorrowedFd<'_>, depth: u32) -> io::Result<()> {
    if depth > COPY_DEPTH {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("directories nested deeper than {COPY_DEPTH} levels"),
        ));
    }
    let listing = openat(src, c".", libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
    let path = format!("/proc/self/fd/{}", listing.as_raw_fd());
    for entry in std::fs::read_dir(&path)? {
        let name = cstr(entry?.file_name())?;
        let st = fstatat(src, &name, libc::AT_SYMLINK_NOFOLLOW)?;
        let mode = st.st_mode & 0o7777;
        match st.st_mode & libc::S_IFMT {
            libc::S_IFDIR => {
                // SAFETY: `dst` is live and `name` NUL-terminated.
                match check(unsafe { libc::mkdirat(dst.as_raw_fd(), name.as_ptr(), 0o700) }) {
                    Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
                    r => r.map(drop)?,
                }
                let s = openat(src, &name, libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
                let d = openat(dst, &name, libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
                copy_dir(s.as_fd_borrow(), d.as_fd_borrow(), depth + 1)?;
            }
            libc::S_IFREG => {
                let s = openat(src, &name, libc::O_RDONLY, 0)?;
                let d = openat(
                    dst,
                    &name,
                    libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC,
                    0o600,
                )?;
                let (mut s, mut d) = (std::fs::File::from(s), std::fs::File::from(d));
                io::copy(&mut s, &mut d)?;
            }
            libc::S_IFLNK => {
                let target = readlink_in(src, &name).ok_or_else(io::Error::last_os_error)?;
                symlink_in(dst, &cstr(&target)?, &name)?;
            }
            kind => {
                // SAFETY: `dst` is live and `name` NUL-terminated.
                check(unsafe {
                    libc::mknodat(dst.as_raw_fd(), name.as_ptr(), kind | mode, st.st_rdev)
                })?;
            }
        }
        copy_attrs(dst, &name, &st, 0)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_tree_keeps_modes_links_and_never_follows_a_symlink() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "host").unwrap();
        let src = tempfile::tempdir().unwrap();
        let s = src.path();
        std::fs::create_dir_all(s.join("a/b")).unwrap();
        std::fs::write(s.join("a/b/file"), "data").unwrap();
        std::fs::set_permissions(s.join("a/b/file"), std::fs::Permissions::from_mode(0o751))
            .unwrap();
        std::fs::set_permissions(s.join("a"), std::fs::Permissions::from_mode(0o1777)).unwrap();
        std::os::unix::fs::symlink(outside.path(), s.join("out")).unwrap();
        std::os::unix::fs::symlink("a/b/file", s.join("rel")).unwrap();
        mkfifo(&s.join("fifo"), 0o640).unwrap();
        std::fs::set_permissions(s, std::fs::Permissions::from_mode(0o710)).unwrap();
        let dst = tempfile::tempdir().unwrap();
        let (sfd, dfd) = (
            std::fs::File::open(s).unwrap(),
            std::fs::File::open(dst.path()).unwrap(),
        );
        copy_tree(sfd.as_fd(), dfd.as_fd()).unwrap();
        let d = dst.path();
        assert_eq!(std::fs::read_to_string(d.join("a/b/file")).unwrap(), "data");
        let mode = |p: &str| std::fs::symlink_metadata(d.join(p)).unwrap().mode();
        assert_eq!(mode("a/b/file") & 0o7777, 0o751);
        assert_eq!(mode("a") & 0o7777, 0o1777);
        assert_eq!(mode("fifo") & libc::S_IFMT, libc::S_IFIFO);
        assert_eq!(
            mode("") & 0o7777,
            0o710,
            "the top directory takes the source's mode"
        );
        assert_eq!(std::fs::read_link(d.join("out")).unwrap(), outside.path());
        assert_eq!(
            std::fs::read_link(d.join("rel")).unwrap(),
            Path::new("a/b/file")
        );
        assert_eq!(
            std::fs::read_dir(outside.path()).unwrap().count(),
            1,
            "nothing was written through the link"
        );
        let mtime = |p: &Path| std::fs::metadata(p).unwrap().mtime();
        assert_eq!(mtime(&d.join("a/b/file")), mtime(&s.join("a/b/file")));
    }

    #[test]
    fn symlinks_out_of_the_root_are_resolved_inside_it() {
        let outside = tempfile::tempdir().unwrap();
        let root = tempfile::tempdir().unwrap();
        // An absolute link to a host directory, and a relative one climbing out.
        std::os::unix::fs::symlink(outside.path(), root.path().join("abs")).unwrap();
        std::os::unix::fs::symlink("../../../../../..", root.path().join("rel")).unwrap();
        let rootfd = open_dir(root.path()).unwrap();
        mkdir_all_in_root(rootfd.as_fd(), Path::new("/abs/made")).unwrap();
        mkdir_all_in_root(rootfd.as_fd(), Path::new("rel/tmp/also")).unwrap();
        touch_in_root(rootfd.as_fd(), Path::new("/abs/file")).unwrap();
        assert!(
            std::fs::read_dir(outside.path()).unwrap().next().is_none(),
            "wrote outside the root"
        );
        let inside = root.path().join(outside.path().strip_prefix("/").unwrap());
        assert!(inside.join("made").is_dir());
        assert!(inside.join("file").is_file());
        assert!(root.path().join("tmp/also").is_dir());
        // `..` cannot climb above the root either.
        let fd = open_in_root(rootfd.as_fd(), Path::new("/../../.."), libc::O_PATH).unwrap();
        let got = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap();
        assert_eq!(got, root.path());
    }
}
