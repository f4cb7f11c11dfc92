//! `tinyo-shim stop [-t SECS] ID...`, `kill [-s SIG] ID...` and `rm [-f] ID...`.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use crate::state::{self, Record, Roots, Status};

#[derive(Debug, clap::Args)]
pub struct StopArgs {
    /// Seconds to wait after SIGTERM before SIGKILL.
    #[arg(short = 't', long = "time", default_value_t = 10)]
    pub time: u64,
    #[arg(required = true)]
    pub ids: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct KillArgs {
    /// The signal (name or number).
    #[arg(short, long, default_value = "KILL")]
    pub signal: String,
    #[arg(required = true)]
    pub ids: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct RmArgs {
    /// Kill running containers first.
    #[arg(short, long)]
    pub force: bool,
    #[arg(required = true)]
    pub ids: Vec<String>,
}

/// Waits until the container has exited (its supervisor recorded it, or it is gone);
/// true when it did within `limit`. The record is re-read after 1, 2, 4 … 20 ms, and at once
/// when the supervisor exits (its pidfd), so a quick stop is not rounded up to a 20 ms tick.
fn wait_exited(roots: &Roots, r: &Record, limit: Duration) -> bool {
    let dir = roots.container(&r.id);
    let t = Instant::now();
    // Opened while the process is the recorded one: after that the pidfd cannot be reused.
    let sup = r.supervisor.and_then(|p| {
        tinyo_core::sys::pidfd_open(p.pid)
            .ok()
            .filter(|_| p.alive())
    });
    let mut tick = Duration::from_millis(1);
    loop {
        match state::load(&dir) {
            Ok(now) if now.live_status().0 != Status::Exited => {}
            _ => return true,
        }
        let left = limit.saturating_sub(t.elapsed());
        if left.is_zero() {
            return false;
        }
        let nap = tick.min(left);
        match &sup {
            Some(fd) => {
                let mut pfd = libc::pollfd {
                    fd: std::os::fd::AsRawFd::as_raw_fd(fd),
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: one pollfd on a descriptor we own, for the call's duration.
                let rc = unsafe { libc::poll(&mut pfd, 1, nap.as_millis().max(1) as libc::c_int) };
                if rc < 0 {
                    std::thread::sleep(nap); // EINTR: wait the tick out
                }
            }
            None => std::thread::sleep(nap),
        }
        tick = (tick * 2).min(Duration::from_millis(20));
    }
}

/// When no supervisor is left to do it: records the exit and tears down the container's
/// runtime state, cgroups and network.
pub(crate) fn clean_unsupervised(roots: &Roots, r: &Record) {
    let dir = roots.container(&r.id);
    let rt = roots.runtime();
    if let Some(p) = r.pid.filter(|p| p.alive()) {
        let _ = tinyo_core::sys::kill(p.pid, libc::SIGKILL);
    }
    let _ = rt.delete(&r.id, true);
    let _ = crate::network::teardown(roots, r);
    let _ = state::update(&dir, |r| {
        if r.status != Status::Exited {
            r.status = Status::Exited;
            r.exited = Some(tinyo_core::container::now_rfc3339());
        }
        r.pid = None;
        r.supervisor = None;
        r.net = None;
    });
}

/// Ends the restarting of `r`: the flag its supervisor checks before every restart, and
/// SIGTERM to the supervisor when it is waiting out a backoff (no container to signal).
fn request_stop(roots: &Roots, r: &Record) {
    let now = state::update(&roots.container(&r.id), |r| r.stop_requested = true);
    if let Ok(now) = now {
        if now.status == Status::Restarting {
            if let Some(p) = now.supervisor.filter(|p| p.alive()) {
                let _ = tinyo_core::sys::kill(p.pid, libc::SIGTERM);
            }
        }
    }
}

fn running(roots: &Roots, key: &str) -> Result<Record> {
    let r = state::find(roots, key)?;
    if r.live_status().0 == Status::Exited {
        bail!("container {} is not running", r.name);
    }
    Ok(r)
}

/// Signals every container first and then waits for them, so stopping N containers (a pod)
/// takes about as long as the slowest one, not the sum.
pub fn stop(roots: &Roots, a: StopArgs) -> Result<i32> {
    let records = a
        .ids
        .iter()
        .map(|key| running(roots, key))
        .collect::<Result<Vec<_>>>()?;
    let rt = roots.runtime();
    for r in &records {
        request_stop(roots, r);
        let _ = rt.kill(&r.id, libc::SIGTERM, false);
    }
    let deadline = Instant::now() + Duration::from_secs(a.time);
    for r in &records {
        if !wait_exited(roots, r, deadline.saturating_duration_since(Instant::now())) {
            let _ = rt.kill(&r.id, libc::SIGKILL, true);
            if !wait_exited(roots, r, Duration::from_secs(10)) {
                bail!("container {} did not stop after SIGKILL", r.name);
            }
        }
        if r.live_status().1 == "unsupervised" {
            clean_unsupervised(roots, r);
        }
        println!("{}", r.name);
    }
    Ok(0)
}

pub fn kill(roots: &Roots, a: KillArgs) -> Result<i32> {
    let sig = tinyo_core::signal::parse(&a.signal).map_err(anyhow::Error::msg)?;
    for key in &a.ids {
        let r = running(roots, key)?;
        roots.runtime().kill(&r.id, sig, false)?;
        println!("{}", r.name);
    }
    Ok(0)
}

/// Like [`stop`], `rm -f` kills every running container first and then waits for them.
pub fn rm(roots: &Roots, a: RmArgs) -> Result<i32> {
    let mut failed = false;
    let mut found = Vec::new();
    for key in &a.ids {
        match state::find(roots, key) {
            Ok(r) => found.push(r),
            Err(e) => {
                eprintln!("tinyo-shim: {e:#}");
                failed = true;
            }
        }
    }
    let mut killed = Vec::new();
    for r in &found {
        let (status, note) = r.live_status();
        if status != Status::Exited && a.force {
            request_stop(roots, r);
            let _ = roots.runtime().kill(&r.id, libc::SIGKILL, true);
            killed.push((r.id.clone(), note));
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    for r in found {
        let (status, note) = r.live_status();
        if let Some((_, note)) = killed.iter().find(|(id, _)| *id == r.id) {
            let left = deadline.saturating_duration_since(Instant::now());
            if *note == "unsupervised" || !wait_exited(roots, &r, left) {
                clean_unsupervised(roots, &r);
            }
        } else if status != Status::Exited {
            eprintln!(
                "tinyo-shim: container {} is running: stop it first, or use rm -f",
                r.name
            );
            failed = true;
            continue;
        } else if note == "lost" {
            clean_unsupervised(roots, &r);
        }
        let dir = roots.container(&r.id);
        if dir.exists() {
            // Whatever is left: runtime state and network (normally gone with the exit).
            let _ = roots.runtime().delete(&r.id, true);
            if let Ok(now) = state::load(&dir) {
                let _ = crate::network::teardown(roots, &now);
            }
            std::fs::remove_dir_all(&dir)
                .map_err(|e| anyhow::anyhow!("removing {}: {e}", dir.display()))?;
        }
        println!("{}", r.name);
    }
    Ok(if failed { 1 } else { 0 })
}
