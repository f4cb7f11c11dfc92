//! `init`: what the PID 1 costs — tinyo-init (the static musl `dist` build) beside tini-static,
//! tini, catatonit and dumb-init: size on disk, resident memory as PID 1 of a fresh PID
//! namespace, and the wall time of `INIT -- /bin/true` against `/bin/true` alone.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::{interleaved, peer, time_command, Contender, Opts, Report};

const REFERENCE: &str = "tini-static";

pub fn run(opts: &Opts) -> Result<Vec<Report>> {
    crate::tools::require_root("bench", "it runs each init as PID 1 of a new PID namespace")?;
    let ours = super::dist_binary("tinyo-init")?;
    let mut inits: Vec<(String, PathBuf)> = vec![("tinyo-init".into(), ours)];
    let mut notes = Vec::new();
    for name in ["tini-static", "tini", "catatonit", "dumb-init"] {
        match peer(name) {
            Some(p) => inits.push((name.into(), p)),
            None => notes.push(format!("{name} is not installed: not measured")),
        }
    }

    let mut sizes = Vec::new();
    for (name, path) in &inits {
        let meta = fs::metadata(path).with_context(|| format!("stat {}", path.display()))?;
        let linking = if is_static(path)? {
            "static"
        } else {
            "dynamic"
        };
        sizes.push((format!("{name} ({linking})"), meta.len() as f64 / 1024.0));
    }
    let mut size = Report::values(
        "size on disk",
        "KiB",
        &format!("{REFERENCE} (static)"),
        sizes,
    );
    size.notes
        .push("dynamic binaries do not count the C library they load".into());

    let mut rss_contenders: Vec<Contender<'_>> = inits
        .iter()
        .map(|(name, path)| {
            let path = path.clone();
            Contender::new(name.clone(), move || Ok(vec![rss_as_pid1(&path)?]))
        })
        .collect();
    let mut rss = interleaved(
        &[("RSS as PID 1 (VmRSS, child `sleep` running)", "KiB")],
        REFERENCE,
        &mut rss_contenders,
        opts,
    )?;

    let truth = which_true()?;
    let mut start_contenders: Vec<Contender<'_>> = inits
        .iter()
        .map(|(name, path)| {
            let (path, truth) = (path.clone(), truth.clone());
            Contender::new(name.clone(), move || {
                let (wall, _) = time_command(Command::new(&path).arg("--").arg(&truth))?;
                Ok(vec![wall])
            })
        })
        .collect();
    {
        let truth = truth.clone();
        start_contenders.push(Contender::new("/bin/true alone (floor)", move || {
            Ok(vec![time_command(&mut Command::new(&truth))?.0])
        }));
    }
    let mut start = interleaved(
        &[("wall time of INIT -- /bin/true", "ms")],
        REFERENCE,
        &mut start_contenders,
        opts,
    )?;
    for r in &mut start {
        r.notes
            .push("start overhead = an init's row minus the floor row".into());
    }

    let mut reports = vec![size];
    reports.append(&mut rss);
    reports.append(&mut start);
    for r in &mut reports {
        r.notes.extend(notes.iter().cloned());
    }
    Ok(reports)
}

/// Builds (or finds up to date) the static tinyo-init and returns its path.
fn is_static(path: &Path) -> Result<bool> {
    let bytes = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(tinyo_core::elf::linking(&bytes)
        .with_context(|| format!("ELF headers of {}", path.display()))?
        .is_static())
}

fn which_true() -> Result<PathBuf> {
    ["/bin/true", "/usr/bin/true"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .context("no /bin/true")
}

/// Kills (SIGKILL) the namespace's init, which ends the whole namespace, and reaps `unshare`.
struct Ns(Child);

impl Drop for Ns {
    fn drop(&mut self) {
        for pid in children(self.0.id()) {
            // SAFETY: kill takes only a pid and a signal number.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn children(pid: u32) -> Vec<i32> {
    fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// VmRSS (KiB) of `init` running as PID 1 of a new PID namespace with `sleep` as its child,
/// read once the child has exec'd sleep.
fn rss_as_pid1(init: &Path) -> Result<f64> {
    let sleep = fs::canonicalize(which("sleep")?)?;
    let exe = fs::canonicalize(init)?;
    let child = Command::new("unshare")
        .args(["--pid", "--fork"])
        .arg(init)
        .arg("--")
        .arg(&sleep)
        .arg("1000")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting unshare")?;
    let ns = Ns(child);
    let t = Instant::now();
    loop {
        if let Some(&pid) = children(ns.0.id()).first() {
            let is = |p: i32, want: &Path| {
                fs::read_link(format!("/proc/{p}/exe")).ok().as_deref() == Some(want)
            };
            let pid_u = u32::try_from(pid)?;
            if is(pid, &exe) && children(pid_u).iter().any(|&c| is(c, &sleep)) {
                let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
                let kib = status
                    .lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.split_whitespace().next())
                    .and_then(|v| v.parse::<f64>().ok())
                    .context("no VmRSS in /proc/PID/status")?;
                return Ok(kib);
            }
        }
        if t.elapsed() > Duration::from_secs(20) {
            bail!(
                "{} did not start sleep as PID 1 within 20 s",
                init.display()
            );
        }
        thread::sleep(Duration::from_millis(2));
    }
}

fn which(tool: &str) -> Result<PathBuf> {
    peer(tool).with_context(|| format!("{tool} is not installed"))
}
