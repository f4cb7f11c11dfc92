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
/// true when it did within `limit`.
fn wait_exited(roots: &Roots, r: &Record, limit: Duration) -> bool {
    let dir = roots.container(&r.id);
    let t = Instant::now();
    loop {
        match state::load(&dir) {
            Ok(now) if now.live_status().0 != Status::Exited => {}
            _ => return true,
        }
        if t.elapsed() >= limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
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

pub fn stop(roots: &Roots, a: StopArgs) -> Result<i32> {
    for key in &a.ids {
        let r = running(roots, key)?;
        request_stop(roots, &r);
        let rt = roots.runtime();
        let _ = rt.kill(&r.id, libc::SIGTERM, false);
        if !wait_exited(roots, &r, Duration::from_secs(a.time)) {
            let _ = rt.kill(&r.id, libc::SIGKILL, true);
            if !wait_exited(roots, &r, Duration::from_secs(10)) {
                bail!("container {} did not stop after SIGKILL", r.name);
            }
        }
        if r.live_status().1 == "unsupervised" {
            clean_unsupervised(roots, &r);
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

pub fn rm(roots: &Roots, a: RmArgs) -> Result<i32> {
    let mut failed = false;
    for key in &a.ids {
        let r = match state::find(roots, key) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("tinyo-shim: {e:#}");
                failed = true;
                continue;
            }
        };
        let (status, note) = r.live_status();
        if status != Status::Exited {
            if !a.force {
                eprintln!(
                    "tinyo-shim: container {} is running: stop it first, or use rm -f",
                    r.name
                );
                failed = true;
                continue;
            }
            request_stop(roots, &r);
            let _ = roots.runtime().kill(&r.id, libc::SIGKILL, true);
            if note == "unsupervised" || !wait_exited(roots, &r, Duration::from_secs(10)) {
                clean_unsupervised(roots, &r);
            }
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
