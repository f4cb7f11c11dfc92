//! cgroup v2 writers (`memory.max`, `cpu.max`, `io.max`, `hugetlb.*.max`, …) and the
//! conversions from the spec's v1-shaped values.

use std::collections::BTreeMap;
use std::fs;

use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxMemory};

use super::resources::{Plan, Target};
use super::CgroupError;

/// cpu.shares (2..=262144) → cpu.weight (1..=10000); 0 = unset.
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    1 + ((shares.saturating_sub(2)) * 9999) / 262_142
}

/// blkio weight (10..=1000) → io.weight (1..=10000).
pub fn blkio_weight_to_io(w: u16) -> u64 {
    1 + (u64::from(w).saturating_sub(10)) * 9999 / 990
}

/// memory.swap.max from the spec's memory+swap and memory values (runc's rules): `None` =
/// leave unset, `Some(-1)` = max.
pub fn swap_max(swap: i64, limit: i64) -> Result<Option<i64>, String> {
    if limit == -1 && swap == 0 {
        return Ok(Some(-1));
    }
    if swap == 0 {
        return Ok(None);
    }
    if swap == -1 {
        return Ok(Some(-1));
    }
    if limit <= 0 {
        return Err("a swap limit needs a memory limit (cgroup v2 limits swap alone)".into());
    }
    if swap < limit {
        return Err(format!("memory+swap must be >= the memory limit {limit}"));
    }
    Ok(Some(swap - limit))
}

fn max_or(v: i64) -> String {
    if v < 0 {
        "max".into()
    } else {
        v.to_string()
    }
}

pub(super) fn memory(
    p: &mut Plan,
    t: &Target<'_>,
    m: &LinuxMemory,
    update: bool,
) -> Result<(), CgroupError> {
    let f = |sub: &str| format!("{}.{sub}", t.field);
    if let Some(s) = m.swappiness() {
        return Err(t.unsupported(format!(
            "swappiness {s}: memory.swappiness is a cgroup v1 knob; cgroup v2 has none"
        )));
    }
    let limit = m.limit().unwrap_or(0);
    let swap = swap_max(m.swap().unwrap_or(0), limit)
        .map_err(|why| t.bad("swap", m.swap().unwrap_or(0), why))?;
    if update && m.check_before_update() == Some(true) && limit > 0 {
        let usage = fs::read_to_string(t.dir.file("memory.current"))
            .ok()
            .and_then(|s| s.trim().parse::<i64>().ok());
        if let Some(usage) = usage.filter(|&u| limit < u) {
            return Err(t.bad(
                "limit",
                limit,
                format!("below the current usage {usage} (checkBeforeUpdate)"),
            ));
        }
    }
    if let Some(s) = swap {
        match t.opt("memory.swap.max") {
            Some(file) => p.write(&f("swap"), file, max_or(s)),
            None if s == -1 => {} // no swap support: nothing to lift
            None => {
                return Err(t.unsupported(format!(
                    "swap: {} has no memory.swap.max (no swap accounting)",
                    t.dir.path
                )))
            }
        }
    }
    if limit != 0 {
        p.write(&f("limit"), t.file("memory.max")?, max_or(limit));
    }
    if let Some(r) = m.reservation().filter(|&r| r != 0) {
        p.write(&f("reservation"), t.file("memory.low")?, max_or(r));
    }
    if m.disable_oom_killer() == Some(true) {
        // runc ignores it on v2; say so.
        p.warnings.push(format!(
            "{}: cgroup v2 cannot disable the OOM killer; ignored",
            f("disableOOMKiller")
        ));
    }
    Ok(())
}

pub(super) fn cpu(
    p: &mut Plan,
    t: &Target<'_>,
    c: &LinuxCpu,
    update: bool,
) -> Result<(), CgroupError> {
    let f = |sub: &str| format!("{}.{sub}", t.field);
    if c.realtime_runtime().is_some() || c.realtime_period().is_some() {
        return Err(t.unsupported(
            "realtimeRuntime/realtimePeriod are cgroup v1 knobs (cpu.rt_*); cgroup v2 cannot \
             limit real-time tasks",
        ));
    }
    if let Some(s) = c.shares().filter(|&s| s != 0) {
        p.write(
            &f("shares"),
            t.file("cpu.weight")?,
            shares_to_weight(s).to_string(),
        );
    }
    if c.quota().is_some() || c.period().is_some() {
        let file = t.file("cpu.max")?;
        let current = fs::read_to_string(&file).unwrap_or_default();
        let mut cur = current.split_whitespace();
        let cur_quota = cur.next().unwrap_or("max").to_string();
        let cur_period: Option<u64> = cur.next().and_then(|s| s.parse().ok());
        let quota = match c.quota() {
            Some(q) if q > 0 => q.to_string(),
            Some(_) => "max".into(),
            None if update => cur_quota,
            None => "max".into(),
        };
        let period = c
            .period()
            .or(if update { cur_period } else { None })
            .unwrap_or(100_000);
        p.write(&f("quota"), file, format!("{quota} {period}"));
    }
    if let Some(b) = c.burst() {
        p.write(&f("burst"), t.file("cpu.max.burst")?, b.to_string());
    }
    if let Some(i) = c.idle() {
        p.write(&f("idle"), t.file("cpu.idle")?, i.to_string());
    }
    Ok(())
}

pub(super) fn io(p: &mut Plan, t: &Target<'_>, b: &LinuxBlockIo) -> Result<(), CgroupError> {
    let f = |sub: &str| format!("{}.{sub}", t.field);
    let bfq = t.opt("io.bfq.weight");
    let weight_file = || {
        bfq.clone().or_else(|| t.opt("io.weight")).ok_or_else(|| {
            t.unsupported(format!(
                "neither io.bfq.weight nor io.weight exists in {} (no BFQ scheduler or io.cost)",
                t.dir.path
            ))
        })
    };
    // io.bfq.weight takes the blkio range (1..=1000) as is; io.weight its own 1..=10000.
    let value = |w: u16| {
        if bfq.is_some() {
            w.to_string()
        } else {
            blkio_weight_to_io(w).to_string()
        }
    };
    if let Some(w) = b.weight() {
        p.write(&f("weight"), weight_file()?, value(w));
    }
    if b.leaf_weight().is_some()
        || b.weight_device()
            .iter()
            .flatten()
            .any(|w| w.leaf_weight().is_some())
    {
        p.warnings.push(format!(
            "{}: leaf weights are obsolete (CFQ-only; cgroup v2 has none); not applied",
            f("leafWeight")
        ));
    }
    for wd in b.weight_device().iter().flatten() {
        if let Some(w) = wd.weight() {
            p.write(
                &f("weightDevice"),
                weight_file()?,
                format!("{}:{} {}", wd.major(), wd.minor(), value(w)),
            );
        }
    }
    // One io.max line per device with every limit of it.
    let mut per_dev: BTreeMap<(i64, i64), Vec<String>> = BTreeMap::new();
    for (key, list) in [
        ("rbps", b.throttle_read_bps_device()),
        ("wbps", b.throttle_write_bps_device()),
        ("riops", b.throttle_read_iops_device()),
        ("wiops", b.throttle_write_iops_device()),
    ] {
        for d in list.iter().flatten() {
            let v = if d.rate() == 0 {
                "max".to_string()
            } else {
                d.rate().to_string()
            };
            per_dev
                .entry((d.major(), d.minor()))
                .or_default()
                .push(format!("{key}={v}"));
        }
    }
    if !per_dev.is_empty() {
        let file = t.file("io.max")?;
        for ((maj, min), kv) in per_dev {
            p.write(
                &f("throttle"),
                file.clone(),
                format!("{maj}:{min} {}", kv.join(" ")),
            );
        }
    }
    Ok(())
}

pub(super) fn hugetlb(
    p: &mut Plan,
    t: &Target<'_>,
    size: &str,
    limit: i64,
) -> Result<(), CgroupError> {
    let field = format!("{}[{size}]", t.field);
    p.write(
        &field,
        t.file(&format!("hugetlb.{size}.max"))?,
        max_or(limit),
    );
    if let Some(rsvd) = t.opt(&format!("hugetlb.{size}.rsvd.max")) {
        p.write(&field, rsvd, max_or(limit));
    }
    Ok(())
}
