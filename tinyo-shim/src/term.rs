//! Terminal helpers for a foreground `run -t` / `exec -t`: the caller's terminal in raw mode
//! while the container owns it, window sizes, and copying between the terminal and the
//! container's pty master without blocking on reads.
//!
//! Errors name the operation, the descriptor and what it refers to (from `/proc/self/fd`),
//! and keep the errno (`… (os error N)`).

// Used by the supervisor's foreground relay and `exec -t`; whatever is not used yet stays.
#![allow(dead_code)]

use std::fmt;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};

/// `e`, saying what was done to which descriptor.
fn named(e: io::Error, what: &str, fd: impl AsRawFd) -> io::Error {
    let raw = fd.as_raw_fd();
    let target = std::fs::read_link(format!("/proc/self/fd/{raw}"))
        .map(|p| format!(" ({})", p.display()))
        .unwrap_or_default();
    io::Error::new(e.kind(), format!("{what} fd {raw}{target}: {e}"))
}

fn last_error(what: &str, fd: impl AsRawFd) -> io::Error {
    named(io::Error::last_os_error(), what, fd)
}

fn tcgetattr(fd: BorrowedFd<'_>) -> io::Result<libc::termios> {
    let mut t = MaybeUninit::<libc::termios>::uninit();
    // SAFETY: `t` is valid for writing one termios, which tcgetattr fills on success.
    let r = unsafe { libc::tcgetattr(fd.as_raw_fd(), t.as_mut_ptr()) };
    if r != 0 {
        return Err(last_error("tcgetattr on", fd));
    }
    // SAFETY: tcgetattr returned 0, so it initialised `t`.
    Ok(unsafe { t.assume_init() })
}

/// Sets `t` once output written so far has gone out (`TCSADRAIN`), retrying on EINTR.
fn tcsetattr(fd: RawFd, t: &libc::termios) -> io::Result<()> {
    loop {
        // SAFETY: `t` points to a valid termios that tcsetattr only reads; a bad `fd` is an
        // error (EBADF), nothing worse.
        let r = unsafe { libc::tcsetattr(fd, libc::TCSADRAIN, t) };
        if r == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(named(e, "tcsetattr on", fd));
        }
    }
}

/// What glibc's `cfmakeraw` does: no line editing, echo, signals or output processing;
/// 8-bit characters; reads return as soon as one byte is there.
fn make_raw(t: &mut libc::termios) {
    t.c_iflag &= !(libc::IGNBRK
        | libc::BRKINT
        | libc::PARMRK
        | libc::ISTRIP
        | libc::INLCR
        | libc::IGNCR
        | libc::ICRNL
        | libc::IXON);
    t.c_oflag &= !libc::OPOST;
    t.c_lflag &= !(libc::ECHO | libc::ECHONL | libc::ICANON | libc::ISIG | libc::IEXTEN);
    t.c_cflag &= !(libc::CSIZE | libc::PARENB);
    t.c_cflag |= libc::CS8;
    t.c_cc[libc::VMIN] = 1;
    t.c_cc[libc::VTIME] = 0;
}

/// A terminal in raw mode; its previous settings come back on [`RawMode::restore`] or drop.
///
/// The guard keeps the descriptor number only (so it can outlive the borrow of
/// `io::stdin()`): the descriptor must stay open while the guard lives.
pub struct RawMode {
    fd: RawFd,
    saved: libc::termios,
    active: bool,
}

impl fmt::Debug for RawMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawMode")
            .field("fd", &self.fd)
            .field("active", &self.active)
            .finish_non_exhaustive()
    }
}

impl RawMode {
    /// Saves the settings of the terminal `fd` and makes it raw (`cfmakeraw`), applied after
    /// pending output is written (`TCSADRAIN`). Fails with ENOTTY if `fd` is no terminal.
    pub fn enter(fd: BorrowedFd<'_>) -> io::Result<Self> {
        let saved = tcgetattr(fd)?;
        let mut raw = saved;
        make_raw(&mut raw);
        tcsetattr(fd.as_raw_fd(), &raw)?;
        Ok(Self {
            fd: fd.as_raw_fd(),
            saved,
            active: true,
        })
    }

    /// Puts the saved settings back (once; later calls and the drop do nothing).
    pub fn restore(&mut self) -> io::Result<()> {
        if self.active {
            tcsetattr(self.fd, &self.saved)?;
            self.active = false;
        }
        Ok(())
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = self.restore();
    }
}

/// The window size of the terminal `fd`: (rows, columns).
pub fn window_size(fd: BorrowedFd<'_>) -> io::Result<(u16, u16)> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one winsize through the pointer, which is valid for that.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) };
    if r != 0 {
        return Err(last_error("TIOCGWINSZ on", fd));
    }
    Ok((ws.ws_row, ws.ws_col))
}

/// Sets the window size of the terminal `fd` (a pty master: the container sees SIGWINCH).
pub fn set_window_size(fd: BorrowedFd<'_>, rows: u16, cols: u16) -> io::Result<()> {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize through the pointer, which points to one.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    if r != 0 {
        return Err(last_error("TIOCSWINSZ on", fd));
    }
    Ok(())
}

/// Whether `fd` is a terminal.
pub fn is_tty(fd: BorrowedFd<'_>) -> bool {
    // SAFETY: isatty only looks at the descriptor.
    unsafe { libc::isatty(fd.as_raw_fd()) == 1 }
}

/// Sets or clears `O_NONBLOCK`. That flag belongs to the open file, shared with every
/// descriptor duplicated from it (e.g. a stdin inherited from the shell): put it back
/// before exiting.
pub fn set_nonblocking(fd: BorrowedFd<'_>, on: bool) -> io::Result<()> {
    // SAFETY: F_GETFL takes no argument and only reads the file's flags.
    let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
    if flags < 0 {
        return Err(last_error("F_GETFL on", fd));
    }
    let new = if on {
        flags | libc::O_NONBLOCK
    } else {
        flags & !libc::O_NONBLOCK
    };
    if new != flags {
        // SAFETY: F_SETFL takes an int of flags.
        let r = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, new) };
        if r < 0 {
            return Err(last_error("F_SETFL on", fd));
        }
    }
    Ok(())
}

/// The outcome of [`copy_available`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Copied {
    /// This many bytes were read and all written.
    Bytes(usize),
    /// The source is at its end: end of file, or EIO from a pty master whose slave side is
    /// closed by everyone (the container's processes are gone).
    Eof,
    /// Nothing to read right now (`from` is non-blocking).
    WouldBlock,
}

/// One read from `from` (meant to be non-blocking) into `buf`: `Bytes(n)` with the data in
/// `buf[..n]`, `Eof` (end of file, or EIO from a pty master whose slave side is gone), or
/// `WouldBlock`. EINTR is retried.
pub fn read_available(from: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<Copied> {
    if buf.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "read_available: empty buffer",
        ));
    }
    loop {
        // SAFETY: `buf` is valid for writing `buf.len()` bytes.
        let r = unsafe { libc::read(from.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if r > 0 {
            return Ok(Copied::Bytes(r as usize));
        }
        if r == 0 {
            return Ok(Copied::Eof);
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => {}
            Some(libc::EAGAIN) => return Ok(Copied::WouldBlock),
            Some(libc::EIO) => return Ok(Copied::Eof),
            _ => return Err(named(e, "reading from", from)),
        }
    }
}

/// One read from `from` (meant to be non-blocking) into `buf`, then all of it written to `to`
/// (if `to` is non-blocking and full, this waits until it takes more: the data is already
/// read).
pub fn copy_available(
    from: BorrowedFd<'_>,
    to: BorrowedFd<'_>,
    buf: &mut [u8],
) -> io::Result<Copied> {
    let got = read_available(from, buf)?;
    if let Copied::Bytes(n) = got {
        write_all(to, &buf[..n])?;
    }
    Ok(got)
}

/// Writes all of `data` to `fd`, retrying on EINTR and waiting while a non-blocking `fd` is
/// full.
pub fn write_all(fd: BorrowedFd<'_>, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        // SAFETY: `data` is valid for reading `data.len()` bytes.
        let r = unsafe { libc::write(fd.as_raw_fd(), data.as_ptr().cast(), data.len()) };
        if r > 0 {
            data = &data[r as usize..];
            continue;
        }
        if r == 0 {
            return Err(named(io::ErrorKind::WriteZero.into(), "writing to", fd));
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => {}
            Some(libc::EAGAIN) => wait_writable(fd)?,
            _ => return Err(named(e, "writing to", fd)),
        }
    }
    Ok(())
}

/// Waits until `fd` takes more data (or has an error, which the next write reports).
fn wait_writable(fd: BorrowedFd<'_>) -> io::Result<()> {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLOUT,
        revents: 0,
    };
    loop {
        // SAFETY: `p` is one valid pollfd and nfds is 1.
        let r = unsafe { libc::poll(&mut p, 1, -1) };
        if r >= 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(named(e, "polling", fd));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;
    use std::fs::OpenOptions;
    use std::os::fd::{AsFd, FromRawFd, OwnedFd};
    use std::os::unix::fs::OpenOptionsExt;

    /// A new pty: (master, slave).
    fn openpty() -> (OwnedFd, OwnedFd) {
        // SAFETY: posix_openpt takes no pointers.
        let m = unsafe { libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) };
        assert!(m >= 0, "posix_openpt: {}", io::Error::last_os_error());
        // SAFETY: posix_openpt just returned this descriptor and nothing else owns it.
        let master = unsafe { OwnedFd::from_raw_fd(m) };
        // SAFETY: grantpt only looks at the descriptor.
        assert_eq!(unsafe { libc::grantpt(m) }, 0, "grantpt");
        // SAFETY: unlockpt only looks at the descriptor.
        assert_eq!(unsafe { libc::unlockpt(m) }, 0, "unlockpt");
        let mut name = [0u8; 128];
        // SAFETY: `name` is valid for writing its length.
        let r = unsafe { libc::ptsname_r(m, name.as_mut_ptr().cast(), name.len()) };
        assert_eq!(r, 0, "ptsname_r");
        let name = CStr::from_bytes_until_nul(&name).unwrap().to_str().unwrap();
        let slave = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOCTTY)
            .open(name)
            .unwrap();
        (master, slave.into())
    }

    /// (read end, write end).
    fn pipe() -> (OwnedFd, OwnedFd) {
        let mut fds = [0; 2];
        // SAFETY: `fds` is valid for writing two ints.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        // SAFETY: pipe2 just returned these descriptors and nothing else owns them.
        let r = unsafe { OwnedFd::from_raw_fd(fds[0]) };
        // SAFETY: as above.
        let w = unsafe { OwnedFd::from_raw_fd(fds[1]) };
        (r, w)
    }

    fn write(fd: BorrowedFd<'_>, data: &[u8]) {
        write_all(fd, data).unwrap();
    }

    /// Reads whatever is there (the fd must be non-blocking).
    fn read_now(fd: BorrowedFd<'_>) -> Vec<u8> {
        let mut buf = [0u8; 256];
        // SAFETY: `buf` is valid for writing its length.
        let r = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        assert!(r >= 0, "read: {}", io::Error::last_os_error());
        buf[..r as usize].to_vec()
    }

    /// Waits (at most 5 s) for `fd` to be readable or hung up.
    fn wait_readable(fd: BorrowedFd<'_>) {
        let mut p = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: `p` is one valid pollfd and nfds is 1.
        let r = unsafe { libc::poll(&mut p, 1, 5000) };
        assert_eq!(r, 1, "nothing to read after 5 s");
    }

    fn flags(fd: BorrowedFd<'_>) -> i32 {
        // SAFETY: F_GETFL takes no argument.
        unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) }
    }

    #[test]
    fn is_tty_tells_ptys_from_pipes() {
        let (master, slave) = openpty();
        let (r, _w) = pipe();
        assert!(is_tty(slave.as_fd()));
        assert!(is_tty(master.as_fd()));
        assert!(!is_tty(r.as_fd()));
    }

    #[test]
    fn raw_mode_round_trip() {
        let (_master, slave) = openpty();
        let before = tcgetattr(slave.as_fd()).unwrap();
        assert_ne!(before.c_lflag & libc::ICANON, 0, "a new pty is canonical");
        assert_ne!(before.c_lflag & libc::ECHO, 0, "a new pty echoes");
        let same = |a: &libc::termios, b: &libc::termios| {
            (a.c_iflag, a.c_oflag, a.c_cflag, a.c_lflag, a.c_cc)
                == (b.c_iflag, b.c_oflag, b.c_cflag, b.c_lflag, b.c_cc)
        };
        {
            let _raw = RawMode::enter(slave.as_fd()).unwrap();
            let t = tcgetattr(slave.as_fd()).unwrap();
            assert_eq!(t.c_lflag & (libc::ICANON | libc::ECHO | libc::ISIG), 0);
            assert_eq!(t.c_oflag & libc::OPOST, 0);
            assert_eq!(t.c_iflag & (libc::ICRNL | libc::IXON), 0);
            assert_eq!(t.c_cflag & libc::CSIZE, libc::CS8);
            assert_eq!(t.c_cc[libc::VMIN], 1);
        }
        assert!(
            same(&tcgetattr(slave.as_fd()).unwrap(), &before),
            "restored on drop"
        );

        let mut raw = RawMode::enter(slave.as_fd()).unwrap();
        assert_eq!(tcgetattr(slave.as_fd()).unwrap().c_lflag & libc::ICANON, 0);
        raw.restore().unwrap();
        assert!(
            same(&tcgetattr(slave.as_fd()).unwrap(), &before),
            "restored"
        );
        // Settings changed after restore() are not undone by the drop.
        let mut t = before;
        t.c_lflag &= !libc::ECHO;
        tcsetattr(slave.as_raw_fd(), &t).unwrap();
        raw.restore().unwrap();
        drop(raw);
        assert_eq!(tcgetattr(slave.as_fd()).unwrap().c_lflag & libc::ECHO, 0);
    }

    #[test]
    fn raw_mode_needs_a_terminal() {
        let (r, _w) = pipe();
        let e = RawMode::enter(r.as_fd()).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("tcgetattr") && msg.contains("pipe:"), "{msg}");
        assert!(msg.contains(&format!("os error {}", libc::ENOTTY)), "{msg}");
        assert!(window_size(r.as_fd()).is_err());
    }

    #[test]
    fn window_size_set_and_get() {
        let (master, slave) = openpty();
        set_window_size(master.as_fd(), 40, 132).unwrap();
        assert_eq!(window_size(slave.as_fd()).unwrap(), (40, 132));
        assert_eq!(window_size(master.as_fd()).unwrap(), (40, 132));
        set_window_size(master.as_fd(), 25, 80).unwrap();
        assert_eq!(window_size(slave.as_fd()).unwrap(), (25, 80));
    }

    #[test]
    fn nonblocking_flag_toggles() {
        let (r, _w) = pipe();
        assert_eq!(flags(r.as_fd()) & libc::O_NONBLOCK, 0);
        set_nonblocking(r.as_fd(), true).unwrap();
        assert_ne!(flags(r.as_fd()) & libc::O_NONBLOCK, 0);
        set_nonblocking(r.as_fd(), true).unwrap();
        set_nonblocking(r.as_fd(), false).unwrap();
        assert_eq!(flags(r.as_fd()) & libc::O_NONBLOCK, 0);
    }

    #[test]
    fn copy_through_a_pipe() {
        let (src_r, src_w) = pipe();
        let (dst_r, dst_w) = pipe();
        set_nonblocking(src_r.as_fd(), true).unwrap();
        set_nonblocking(dst_r.as_fd(), true).unwrap();
        let mut buf = [0u8; 4];
        let copy = |buf: &mut [u8]| copy_available(src_r.as_fd(), dst_w.as_fd(), buf).unwrap();
        assert_eq!(copy(&mut buf), Copied::WouldBlock);
        write(src_w.as_fd(), b"hello");
        assert_eq!(copy(&mut buf), Copied::Bytes(4));
        assert_eq!(copy(&mut buf), Copied::Bytes(1));
        assert_eq!(copy(&mut buf), Copied::WouldBlock);
        assert_eq!(read_now(dst_r.as_fd()), b"hello");
        write(src_w.as_fd(), b"!");
        drop(src_w);
        assert_eq!(copy(&mut buf), Copied::Bytes(1));
        assert_eq!(copy(&mut buf), Copied::Eof);
        assert_eq!(read_now(dst_r.as_fd()), b"!");
        assert!(copy_available(src_r.as_fd(), dst_w.as_fd(), &mut []).is_err());
        // A closed destination is an error naming it.
        let (src_r, src_w) = pipe();
        write(src_w.as_fd(), b"x");
        drop(dst_r);
        let e = copy_available(src_r.as_fd(), dst_w.as_fd(), &mut buf).unwrap_err();
        assert!(
            e.to_string().contains(&format!("os error {}", libc::EPIPE)),
            "{e}"
        );
    }

    #[test]
    fn copy_waits_for_a_full_nonblocking_destination() {
        let (src_r, src_w) = pipe();
        let (dst_r, dst_w) = pipe();
        set_nonblocking(dst_w.as_fd(), true).unwrap();
        // Fill the destination pipe.
        let chunk = [b'f'; 4096];
        let mut filled = 0;
        loop {
            // SAFETY: `chunk` is valid for reading its length.
            let r = unsafe { libc::write(dst_w.as_raw_fd(), chunk.as_ptr().cast(), chunk.len()) };
            if r < 0 {
                assert_eq!(
                    io::Error::last_os_error().raw_os_error(),
                    Some(libc::EAGAIN)
                );
                break;
            }
            filled += r as usize;
        }
        let data = [b'd'; 10_000];
        write(src_w.as_fd(), &data);
        let drain = std::thread::spawn(move || {
            let mut total = Vec::new();
            let mut buf = [0u8; 8192];
            while total.len() < filled + data.len() {
                // SAFETY: `buf` is valid for writing its length.
                let r =
                    unsafe { libc::read(dst_r.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
                assert!(r > 0);
                total.extend_from_slice(&buf[..r as usize]);
            }
            total
        });
        let mut buf = [0u8; 16384];
        assert_eq!(
            copy_available(src_r.as_fd(), dst_w.as_fd(), &mut buf).unwrap(),
            Copied::Bytes(10_000)
        );
        let total = drain.join().unwrap();
        assert_eq!(&total[filled..], &data[..]);
    }

    #[test]
    fn copy_from_and_to_a_pty() {
        let (master, slave) = openpty();
        let raw = RawMode::enter(slave.as_fd()).unwrap();
        set_nonblocking(master.as_fd(), true).unwrap();
        let (out_r, out_w) = pipe();
        set_nonblocking(out_r.as_fd(), true).unwrap();
        let mut buf = [0u8; 64];

        // Terminal → container: into the master, out of the slave.
        let (in_r, in_w) = pipe();
        set_nonblocking(in_r.as_fd(), true).unwrap();
        write(in_w.as_fd(), b"typed");
        assert_eq!(
            copy_available(in_r.as_fd(), master.as_fd(), &mut buf).unwrap(),
            Copied::Bytes(5)
        );
        set_nonblocking(slave.as_fd(), true).unwrap();
        wait_readable(slave.as_fd());
        assert_eq!(read_now(slave.as_fd()), b"typed");

        // Container → terminal: out of the master.
        assert_eq!(
            copy_available(master.as_fd(), out_w.as_fd(), &mut buf).unwrap(),
            Copied::WouldBlock
        );
        write(slave.as_fd(), b"output");
        let mut got = Vec::new();
        while got.len() < 6 {
            wait_readable(master.as_fd());
            match copy_available(master.as_fd(), out_w.as_fd(), &mut buf).unwrap() {
                Copied::Bytes(_) => got.extend(read_now(out_r.as_fd())),
                Copied::WouldBlock => {}
                Copied::Eof => panic!("EOF before the output"),
            }
        }
        assert_eq!(got, b"output");

        // The slave closes: the master reads EIO, which is the end.
        write(slave.as_fd(), b"last");
        drop(raw);
        drop(slave);
        let mut got = Vec::new();
        loop {
            wait_readable(master.as_fd());
            match copy_available(master.as_fd(), out_w.as_fd(), &mut buf).unwrap() {
                Copied::Bytes(_) => got.extend(read_now(out_r.as_fd())),
                Copied::WouldBlock => {}
                Copied::Eof => break,
            }
        }
        assert_eq!(got, b"last");
        // It was EIO, not a 0-byte read.
        // SAFETY: `buf` is valid for writing its length.
        let r = unsafe { libc::read(master.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        assert_eq!(r, -1);
        assert_eq!(io::Error::last_os_error().raw_os_error(), Some(libc::EIO));
    }
}
