//! `tinyo update [flags] ID`: change a running container's cgroup limits, from a
//! `linux.resources` JSON (`--resources FILE`, `-` for stdin) and/or runc's flags.

use std::io::Read;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use oci_spec::runtime::{LinuxBlockIoBuilder, LinuxPidsBuilder, LinuxResources};
use tinyo_core::container::Runtime;

use crate::log::Logger;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A `linux.resources` JSON file to apply (`-` reads standard input).
    #[arg(short, long)]
    pub resources: Option<PathBuf>,
    /// Memory limit in bytes (suffixes k, m, g; -1 = unlimited).
    #[arg(long, allow_hyphen_values = true)]
    pub memory: Option<String>,
    /// Memory soft limit (reservation) in bytes.
    #[arg(long, allow_hyphen_values = true)]
    pub memory_reservation: Option<String>,
    /// Memory plus swap limit in bytes (-1 = unlimited).
    #[arg(long, allow_hyphen_values = true)]
    pub memory_swap: Option<String>,
    /// Maximum number of tasks (0 or -1 = unlimited).
    #[arg(long, allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
    /// CPU CFS quota in microseconds per period (-1 = unlimited).
    #[arg(long, allow_hyphen_values = true)]
    pub cpu_quota: Option<i64>,
    /// CPU CFS period in microseconds.
    #[arg(long)]
    pub cpu_period: Option<u64>,
    /// CPU shares (relative weight).
    #[arg(long)]
    pub cpu_share: Option<u64>,
    /// CPU realtime period in microseconds.
    #[arg(long)]
    pub cpu_rt_period: Option<u64>,
    /// CPU realtime runtime in microseconds.
    #[arg(long, allow_hyphen_values = true)]
    pub cpu_rt_runtime: Option<i64>,
    /// CPUs the container may use (e.g. 0-1).
    #[arg(long)]
    pub cpuset_cpus: Option<String>,
    /// Memory nodes the container may use.
    #[arg(long)]
    pub cpuset_mems: Option<String>,
    /// Block IO weight (10 to 1000).
    #[arg(long)]
    pub blkio_weight: Option<u16>,
    /// Container id.
    pub id: String,
}

/// Parses `1024`, `512k`, `100m`, `2g` (binary units, case-insensitive) and `-1`.
pub fn parse_bytes(s: &str) -> Result<i64> {
    let t = s.trim().to_ascii_lowercase();
    if t == "-1" {
        return Ok(-1);
    }
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (num, shift) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 10),
        Some('m') => (&t[..t.len() - 1], 20),
        Some('g') => (&t[..t.len() - 1], 30),
        Some('t') => (&t[..t.len() - 1], 40),
        _ => (t, 0),
    };
    let n: f64 = num
        .parse()
        .with_context(|| format!("{s:?} is not a size (use bytes, or a k/m/g suffix)"))?;
    if n.is_nan() || n < 0.0 {
        bail!("{s:?} is not a size");
    }
    Ok((n * (1u64 << shift) as f64) as i64)
}

fn resources(args: &Args) -> Result<LinuxResources> {
    let mut res = match &args.resources {
        Some(p) => {
            let mut text = Vec::new();
            if p.as_os_str() == "-" {
                std::io::stdin()
                    .read_to_end(&mut text)
                    .context("reading resources from standard input")?;
            } else {
                text = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
            }
            serde_json::from_slice(&text)
                .with_context(|| format!("{} is not a linux.resources JSON object", p.display()))?
        }
        None => LinuxResources::default(),
    };
    let bytes = |s: &Option<String>| s.as_deref().map(parse_bytes).transpose();
    let (limit, reservation, swap) = (
        bytes(&args.memory)?,
        bytes(&args.memory_reservation)?,
        bytes(&args.memory_swap)?,
    );
    if limit.is_some() || reservation.is_some() || swap.is_some() {
        let mut m = (*res.memory()).unwrap_or_default();
        if let Some(v) = limit {
            m.set_limit(Some(v));
        }
        if let Some(v) = reservation {
            m.set_reservation(Some(v));
        }
        if let Some(v) = swap {
            m.set_swap(Some(v));
        }
        res.set_memory(Some(m));
    }
    if let Some(n) = args.pids_limit {
        res.set_pids(Some(LinuxPidsBuilder::default().limit(n).build()?));
    }
    let cpu_set = args.cpu_quota.is_some()
        || args.cpu_period.is_some()
        || args.cpu_share.is_some()
        || args.cpu_rt_period.is_some()
        || args.cpu_rt_runtime.is_some()
        || args.cpuset_cpus.is_some()
        || args.cpuset_mems.is_some();
    if cpu_set {
        let mut c = res.cpu().clone().unwrap_or_default();
        if let Some(v) = args.cpu_quota {
            c.set_quota(Some(v));
        }
        if let Some(v) = args.cpu_period {
            c.set_period(Some(v));
        }
        if let Some(v) = args.cpu_share {
            c.set_shares(Some(v));
        }
        if let Some(v) = args.cpu_rt_period {
            c.set_realtime_period(Some(v));
        }
        if let Some(v) = args.cpu_rt_runtime {
            c.set_realtime_runtime(Some(v));
        }
        if let Some(v) = &args.cpuset_cpus {
            c.set_cpus(Some(v.clone()));
        }
        if let Some(v) = &args.cpuset_mems {
            c.set_mems(Some(v.clone()));
        }
        res.set_cpu(Some(c));
    }
    if let Some(w) = args.blkio_weight {
        res.set_block_io(Some(LinuxBlockIoBuilder::default().weight(w).build()?));
    }
    Ok(res)
}

pub fn run(rt: &Runtime, log: &Logger, args: Args) -> Result<i32> {
    let res = resources(&args)?;
    if res == LinuxResources::default() {
        bail!("nothing to update: give --resources or a limit flag (see --help)");
    }
    for w in rt
        .update(&args.id, &res)
        .with_context(|| format!("updating container {:?}", args.id))?
    {
        log.warn(&w);
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::parse_bytes;

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("1024").unwrap(), 1024);
        assert_eq!(parse_bytes("512k").unwrap(), 512 << 10);
        assert_eq!(parse_bytes("100M").unwrap(), 100 << 20);
        assert_eq!(parse_bytes("2g").unwrap(), 2 << 30);
        assert_eq!(parse_bytes("1.5m").unwrap(), 3 << 19);
        assert_eq!(parse_bytes("-1").unwrap(), -1);
        assert!(parse_bytes("lots").is_err());
        assert!(parse_bytes("-5").is_err());
    }
}
