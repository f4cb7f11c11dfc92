//! `process.terminal`: the container process gets a pty of the container's own devpts as its
//! controlling terminal and stdio, and the master goes to whoever listens on the
//! `--console-socket` (conmon, containerd-shim), passed with `SCM_RIGHTS` as runc does.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use crate::sys;

/// Connects to the console socket (in the runtime, before the container process exists; the
/// returned descriptor is close-on-exec).
pub fn connect(path: &Path) -> io::Result<OwnedFd> {
    UnixStream::connect(path).map(OwnedFd::from)
}

/// The window size of `process.consoleSize` as (rows, columns), if set.
pub fn console_size(p: &oci_spec::runtime::Process) -> Option<(u16, u16)> {
    p.console_size().as_ref().and_then(|b| {
        let (h, w) = (b.height(), b.width());
        (h > 0 && w > 0).then(|| (h.min(u16::MAX as u64) as u16, w.min(u16::MAX as u64) as u16))
    })
}

/// Run in the container process once it is inside the container's root (its /dev/pts mounted):
/// opens a new pty from /dev/ptmx, makes the slave the controlling terminal of a new session
/// and stdin/stdout/stderr, and sends the master over `socket` with the slave's path as the
/// message, like runc, `/dev/ptmx` (the name the master was opened by). Neither the master
/// nor the socket stays open here.
pub fn setup(socket: OwnedFd, size: Option<(u16, u16)>) -> Result<(), String> {
    let (master, n) = sys::open_pty(Path::new("/dev/ptmx"))
        .map_err(|e| format!("process.terminal: opening /dev/ptmx in the container: {e}"))?;
    let slave_path = format!("/dev/pts/{n}");
    if let Some((rows, cols)) = size {
        sys::set_winsize(master.as_fd(), rows, cols)
            .map_err(|e| format!("process.consoleSize: {e}"))?;
    }
    sys::setsid().map_err(|e| format!("process.terminal: setsid: {e}"))?;
    let slave = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&slave_path)
        .map(OwnedFd::from)
        .map_err(|e| format!("process.terminal: opening {slave_path}: {e}"))?;
    sys::set_ctty(slave.as_fd())
        .map_err(|e| format!("process.terminal: making {slave_path} the controlling tty: {e}"))?;
    for fd in 0..3 {
        sys::dup2(slave.as_fd(), fd)
            .map_err(|e| format!("process.terminal: {slave_path} as fd {fd}: {e}"))?;
    }
    if slave.as_raw_fd() > 2 {
        drop(slave);
    } else {
        std::mem::forget(slave);
    }
    sys::send_fd(socket.as_fd(), master.as_fd(), b"/dev/ptmx")
        .map_err(|e| format!("--console-socket: sending the pty master: {e}"))?;
    Ok(())
}
