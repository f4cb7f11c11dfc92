//! One tinyo-core operation in a forked, single-threaded child.
//!
//! The shim serves ttrpc from several threads, while tinyo-core's `create` and `exec` clone the
//! container process (which needs a single-threaded caller), may join a pid namespace for
//! their children, and run hooks whose exit statuses the shim's reaper must not steal. So each
//! such operation runs in a fork: the fork sets up the process's stdio, calls tinyo-core, sends
//! the result back as JSON over a pipe and exits. The container process it made is re-parented
//! to the shim (a child subreaper), whose reaper collects its exit status. There is no exec.

use std::io::{Read, Write};
use std::os::fd::RawFd;

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Runs `f` in a forked child with `stdio` (where given) as its descriptors 0, 1 and 2, and
/// returns what it returned. An `Err` is the operation's own error text.
pub fn run<T, F>(stdio: [Option<RawFd>; 3], f: F) -> Result<T, String>
where
    T: Serialize + DeserializeOwned,
    F: FnOnce() -> Result<T, String>,
{
    let (rd, wr) = tinyo_core::sys::pipe().map_err(|e| format!("creating the helper pipe: {e}"))?;
    // SAFETY: the child only sets up descriptors, runs `f` (tinyo-core, which allocates: glibc's
    // and musl's malloc are consistent after fork) and leaves with _exit, never returning into
    // the shim's code.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(format!("fork: {}", std::io::Error::last_os_error()));
    }
    if pid == 0 {
        drop(rd);
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            for (target, fd) in stdio.iter().enumerate() {
                if let Some(fd) = fd {
                    // SAFETY: `fd` is an open descriptor the caller owns; dup2 onto 0..2.
                    if unsafe { libc::dup2(*fd, target as RawFd) } < 0 {
                        return Err(format!(
                            "dup2 of the process's stdio: {}",
                            std::io::Error::last_os_error()
                        ));
                    }
                }
            }
            f()
        }))
        .unwrap_or_else(|_| Err("the helper panicked".into()));
        // One line: the container process the helper made inherits this pipe until it
        // execs, so the shim reads up to the newline rather than to EOF.
        let mut text = serde_json::to_vec(&result).unwrap_or_default();
        text.push(b'\n');
        let mut w = std::fs::File::from(wr);
        let _ = w.write_all(&text);
        drop(w);
        // SAFETY: leaving the forked child without running the shim's exit handlers.
        unsafe { libc::_exit(0) }
    }
    drop(wr);
    let mut text = Vec::new();
    let mut r = std::fs::File::from(rd);
    let mut buf = [0u8; 4096];
    while !text.contains(&b'\n') {
        match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => text.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("reading the helper's result: {e}")),
        }
    }
    // The shim's reaper collects the helper itself.
    let line = text.split(|b| *b == b'\n').next().unwrap_or_default();
    serde_json::from_slice::<Result<T, String>>(line)
        .map_err(|_| "the helper died before reporting a result".to_string())?
}
