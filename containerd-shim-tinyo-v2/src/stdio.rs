//! containerd's stdio for a container process: FIFOs (`stdin`, `stdout`, `stderr` paths, any
//! of them empty) or, with a terminal, a pty whose master tinyo-core sends over a console
//! socket the shim listens on.
//!
//! Output FIFOs are opened read-write, so opening never waits for containerd's reader, and
//! only the container keeps them: the reader sees EOF when the container's last copy closes.
//! Stdin goes through a pipe the shim feeds from the FIFO, so `CloseIO` can end it.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// Where containerd wants a process's stdio.
#[derive(Debug, Clone, Default)]
pub struct Paths {
    pub stdin: String,
    pub stdout: String,
    pub stderr: String,
    pub terminal: bool,
}

/// The shim's side of a process's stdio, kept while the process lives.
#[derive(Debug, Default)]
pub struct Io {
    /// The write end of the process's stdin (`CloseIO` drops it).
    pub stdin: Arc<Mutex<Option<File>>>,
    /// The pty master (terminal processes), for `ResizePty`.
    pub console: Arc<Mutex<Option<File>>>,
}

impl Io {
    pub fn close_stdin(&self) {
        if let Ok(mut s) = self.stdin.lock() {
            s.take();
        }
    }

    pub fn resize(&self, width: u32, height: u32) -> std::io::Result<()> {
        let c = self
            .console
            .lock()
            .map_err(|_| std::io::Error::other("poisoned"))?;
        match c.as_ref() {
            Some(m) => tinyo_core::sys::set_winsize(m.as_fd(), height as u16, width as u16),
            None => Ok(()),
        }
    }
}

/// What a helper fork needs to give the process its stdio.
#[derive(Debug, Default)]
pub struct Prepared {
    /// Descriptors for 0, 1, 2 (None: inherit the shim's /dev/null).
    pub fds: [Option<OwnedFd>; 3],
    /// With a terminal: the console socket tinyo-core sends the pty master to.
    pub console_socket: Option<PathBuf>,
    pub io: Io,
}

impl Prepared {
    pub fn raw(&self) -> [Option<RawFd>; 3] {
        [0, 1, 2].map(|i| self.fds[i].as_ref().map(|f| f.as_raw_fd()))
    }
}

fn fifo_rw(path: &str) -> std::io::Result<OwnedFd> {
    let f = OpenOptions::new().read(true).write(true).open(path)?;
    Ok(OwnedFd::from(f))
}

/// Copies `from` into the shared writer until EOF or until the writer is dropped.
fn feed(mut from: File, to: Arc<Mutex<Option<File>>>) {
    let mut buf = [0u8; 8192];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let Ok(mut guard) = to.lock() else { break };
        match guard.as_mut() {
            Some(w) => {
                if w.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            None => break,
        }
    }
    if let Ok(mut g) = to.lock() {
        g.take();
    }
}

/// Sets up stdio for a process.
pub fn prepare(paths: &Paths) -> std::io::Result<Prepared> {
    let mut p = Prepared::default();
    if paths.terminal {
        // Bundle paths easily exceed a socket path's 108 bytes: a short name in /tmp.
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let sock =
            std::env::temp_dir().join(format!("tinyo-shim-{}-{n}.console", std::process::id()));
        let _ = std::fs::remove_file(&sock);
        let listener = UnixListener::bind(&sock)?;
        p.console_socket = Some(sock.clone());
        let (stdin, stdout) = (paths.stdin.clone(), paths.stdout.clone());
        let console = p.io.console.clone();
        let stdin_slot = p.io.stdin.clone();
        std::thread::spawn(move || {
            let accepted = listener.accept();
            let _ = std::fs::remove_file(&sock);
            let Ok((conn, _)) = accepted else { return };
            let Ok(master) = tinyo_core::sys::recv_fd(conn.as_fd()) else {
                return;
            };
            let master = File::from(master);
            let (Ok(out), Ok(inp)) = (master.try_clone(), master.try_clone()) else {
                return;
            };
            if let Ok(mut c) = console.lock() {
                *c = Some(master);
            }
            if !stdin.is_empty() {
                if let Ok(mut s) = stdin_slot.lock() {
                    *s = Some(inp);
                }
                let slot = stdin_slot.clone();
                std::thread::spawn(move || {
                    if let Ok(f) = File::open(&stdin) {
                        feed(f, slot);
                    }
                });
            }
            if !stdout.is_empty() {
                if let Ok(w) = OpenOptions::new().write(true).open(&stdout) {
                    feed(out, Arc::new(Mutex::new(Some(w))));
                }
            }
        });
        return Ok(p);
    }
    if !paths.stdin.is_empty() {
        let (r, w) = tinyo_core::sys::pipe()?;
        let w = File::from(w);
        p.fds[0] = Some(r);
        *p.io
            .stdin
            .lock()
            .map_err(|_| std::io::Error::other("poisoned"))? = Some(w);
        let (path, slot) = (paths.stdin.clone(), p.io.stdin.clone());
        std::thread::spawn(move || {
            // Blocks until containerd (or ctr) opens the FIFO for writing.
            if let Ok(f) = File::open(&path) {
                feed(f, slot);
            }
        });
    }
    if !paths.stdout.is_empty() {
        p.fds[1] = Some(fifo_rw(&paths.stdout)?);
    }
    if !paths.stderr.is_empty() {
        p.fds[2] = Some(fifo_rw(&paths.stderr)?);
    }
    Ok(p)
}
