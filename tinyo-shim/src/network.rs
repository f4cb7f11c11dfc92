//! The container's network as `run` asked for it, set up by the supervisor between create
//! and start (the container's network namespace exists, nothing runs in it yet) and torn down
//! when it exits or is removed.

use std::path::Path;

use anyhow::{Context, Result};
use serde_json::Value;

use crate::net::{self, Mode, Network};
use crate::state::{Record, Roots};

/// `bridge` when the CNI plugins are installed (as Docker defaults to its bridge), else `none`
/// with a note saying why.
pub fn default_mode() -> Mode {
    match Network::new("/nonexistent") {
        Ok(_) => Mode::Bridge,
        Err(e) => {
            eprintln!("tinyo-shim: no bridge network ({e}): running with --network none");
            Mode::None
        }
    }
}

pub fn mode_name(m: &Mode) -> &'static str {
    match m {
        Mode::None => "none",
        Mode::Host => "host",
        Mode::Bridge => "bridge",
    }
}

/// Attaches container `rec` (whose init is `pid`): returns what to record for teardown.
pub fn setup(roots: &Roots, rec: &Record, pid: i32) -> Result<Option<Value>> {
    let netns = format!("/proc/{pid}/ns/net");
    match rec.network.as_str() {
        "bridge" => {
            let n = Network::new(&roots.state)?;
            let ports = rec
                .ports
                .iter()
                .map(|p| net::parse_port(p))
                .collect::<Result<Vec<_>, _>>()?;
            let a = n
                .attach(&rec.id, Path::new(&netns), &ports)
                .with_context(|| format!("attaching {} to the bridge network", rec.name))?;
            Ok(Some(serde_json::to_value(a)?))
        }
        "none" => {
            // Only `lo`, and up, as Docker's none network has it.
            loopback_up(Path::new(&netns))
                .with_context(|| format!("bringing up lo in {}", rec.name))?;
            Ok(None)
        }
        _ => Ok(None),
    }
}

/// Sets `lo` up in the network namespace `netns`: the calling thread joins it for
/// one ioctl and comes back. In process, not through the CNI loopback plugin, which costs a Go
/// program's start (~30 ms) per container.
pub fn loopback_up(netns: &Path) -> std::io::Result<()> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let own = std::fs::File::open("/proc/thread-self/ns/net")?;
    let target = std::fs::File::open(netns)?;
    let join = |f: &std::fs::File| {
        // SAFETY: setns with a namespace descriptor and a constant; it changes only this
        // thread's network namespace.
        if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    };
    join(&target)?;
    let result = (|| {
        // SAFETY: socket(2) with constants.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: socket just returned this descriptor and nothing else owns it.
        let sock = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: an all-zero ifreq is a valid value to fill in.
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        for (i, b) in b"lo".iter().enumerate() {
            req.ifr_name[i] = *b as libc::c_char;
        }
        // SAFETY: SIOCGIFFLAGS fills the flags of the named interface into `req`.
        if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS as _, &mut req) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: the union member for SIOCGIFFLAGS/SIOCSIFFLAGS is ifru_flags.
        let flags = unsafe { req.ifr_ifru.ifru_flags };
        req.ifr_ifru.ifru_flags = flags | libc::IFF_UP as libc::c_short;
        // SAFETY: SIOCSIFFLAGS reads `req`.
        if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS as _, &req) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    })();
    join(&own)?;
    result
}

/// Detaches a container from the bridge, when it was attached (idempotent).
pub fn teardown(roots: &Roots, rec: &Record) -> Result<()> {
    let Some(v) = &rec.net else { return Ok(()) };
    let a: net::Attached = serde_json::from_value(v.clone()).context("the recorded network")?;
    let n = Network::new(&roots.state)?;
    let netns = rec
        .pid
        .filter(|p| p.alive())
        .map(|p| format!("/proc/{}/ns/net", p.pid));
    n.detach(&rec.id, netns.as_deref().map(Path::new), &a)
        .with_context(|| format!("detaching {} from the bridge network", rec.name))?;
    Ok(())
}
