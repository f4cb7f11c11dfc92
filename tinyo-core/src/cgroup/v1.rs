//! cgroup v1 writers (`memory.limit_in_bytes`, `cpu.cfs_quota_us`, `blkio.*`, `hugetlb.*`).

use std::fs;

use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxMemory};

use super::resources::{Plan, Target};
use super::CgroupError;

fn read_i64(t: &Target<'_>, name: &str) -> Option<i64> {
    fs::read_to_string(t.dir.file(name))
        .ok()?
        .trim()
        .parse()
        .ok()
}

pub(super) fn memory(
    p: &mut Plan,
    t: &Target<'_>,
    m: &LinuxMemory,
    update: bool,
) -> Result<(), CgroupError> {
    let f = |sub: &str| format!("{}.{sub}", t.field);
    let limit = m.limit().filter(|&l| l != 0);
    let mut swap = m.swap().filter(|&s| s != 0);
    // As runc: an unlimited memory limit with no swap given lifts the swap limit too.
    if limit == Some(-1) && swap.is_none() {
        swap = Some(-1);
    }
    let memsw = t.opt("memory.memsw.limit_in_bytes");
    if memsw.is_none() {
        match swap {
            Some(-1) => swap = None, // no swap accounting: nothing to lift
            Some(s) => {
                return Err(t.unsupported(format!(
                    "swap {s}: swap accounting is off (no memory.memsw.limit_in_bytes in {}; \
                     boot with swapaccount=1)",
                    t.dir.path
                )))
            }
            None => {}
        }
    }
    if update && m.check_before_update() == Some(true) {
        if let Some(l) = limit.filter(|&l| l > 0) {
            if let Some(usage) = read_i64(t, "memory.usage_in_bytes") {
                if l < usage {
                    return Err(t.bad(
                        "limit",
                        l,
                        format!("below the current usage {usage} (checkBeforeUpdate)"),
                    ));
                }
            }
        }
    }
    let limit_file = if limit.is_some() {
        Some(t.file("memory.limit_in_bytes")?)
    } else {
        None
    };
    // The kernel keeps memsw >= limit at every step: when raising (or lifting) the swap limit
    // above the current memory limit, memsw goes first; otherwise the memory limit does.
    let swap_first = match (limit, swap) {
        (Some(_), Some(s)) => {
            let cur = read_i64(t, "memory.limit_in_bytes").unwrap_or(i64::MAX);
            s == -1 || cur < s
        }
        _ => false,
    };
    let write_swap = |p: &mut Plan| {
        if let (Some(s), Some(file)) = (swap, &memsw) {
            p.write(&f("swap"), file.clone(), s.to_string());
        }
    };
    if swap_first {
        write_swap(p);
    }
    if let (Some(l), Some(file)) = (limit, limit_file) {
        p.write(&f("limit"), file, l.to_string());
    }
    if !swap_first {
        write_swap(p);
    }
    if let Some(r) = m.reservation().filter(|&r| r != 0) {
        p.write(
            &f("reservation"),
            t.file("memory.soft_limit_in_bytes")?,
            r.to_string(),
        );
    }
    if let Some(s) = m.swappiness() {
        p.write(
            &f("swappiness"),
            t.file("memory.swappiness")?,
            s.to_string(),
        );
    }
    if let Some(d) = m.disable_oom_killer() {
        if d || update {
            p.write(
                &f("disableOOMKiller"),
                t.file("memory.oom_control")?,
                if d { "1" } else { "0" },
            );
        }
    }
    Ok(())
}

pub(super) fn cpu(p: &mut Plan, t: &Target<'_>, c: &LinuxCpu) -> Result<(), CgroupError> {
    let f = |sub: &str| format!("{}.{sub}", t.field);
    if let Some(s) = c.shares().filter(|&s| s != 0) {
        p.write(&f("shares"), t.file("cpu.shares")?, s.to_string());
    }
    if let Some(per) = c.period() {
        p.write(&f("period"), t.file("cpu.cfs_period_us")?, per.to_string());
    }
    if let Some(q) = c.quota() {
        let v = if q > 0 { q } else { -1 };
        p.write(&f("quota"), t.file("cpu.cfs_quota_us")?, v.to_string());
    }
    if let Some(b) = c.burst() {
        p.write(&f("burst"), t.file("cpu.cfs_burst_us")?, b.to_string());
    }
    // The period first: the runtime is checked against it.
    if let Some(per) = c.realtime_period() {
        p.write(
            &f("realtimePeriod"),
            t.file("cpu.rt_period_us")?,
            per.to_string(),
        );
    }
    if let Some(rt) = c.realtime_runtime() {
        p.write(
            &f("realtimeRuntime"),
            t.file("cpu.rt_runtime_us")?,
            rt.to_string(),
        );
    }
    if let Some(i) = c.idle() {
        p.write(&f("idle"), t.file("cpu.idle")?, i.to_string());
    }
    Ok(())
}

pub(super) fn blkio(p: &mut Plan, t: &Target<'_>, b: &LinuxBlockIo) -> Result<(), CgroupError> {
    let f = |sub: &str| format!("{}.{sub}", t.field);
    // CFQ's blkio.weight went with CFQ (Linux 5.0); BFQ offers blkio.bfq.weight.
    let weight_file = |dev: bool| -> Result<std::path::PathBuf, CgroupError> {
        let (plain, bfq) = if dev {
            ("blkio.weight_device", "blkio.bfq.weight_device")
        } else {
            ("blkio.weight", "blkio.bfq.weight")
        };
        t.opt(plain).or_else(|| t.opt(bfq)).ok_or_else(|| {
            t.unsupported(format!(
                "neither {plain} nor {bfq} exists in {} (no CFQ or BFQ I/O scheduler support)",
                t.dir.path
            ))
        })
    };
    if let Some(w) = b.weight() {
        p.write(&f("weight"), weight_file(false)?, w.to_string());
    }
    if let Some(w) = b.leaf_weight() {
        match t.opt("blkio.leaf_weight") {
            Some(file) => p.write(&f("leafWeight"), file, w.to_string()),
            None => p.warnings.push(format!(
                "{}: blkio.leaf_weight is obsolete (removed with CFQ in Linux 5.0); not applied",
                f("leafWeight")
            )),
        }
    }
    for wd in b.weight_device().iter().flatten() {
        let dev = format!("{}:{}", wd.major(), wd.minor());
        if let Some(w) = wd.weight() {
            p.write(&f("weightDevice"), weight_file(true)?, format!("{dev} {w}"));
        }
        if let Some(w) = wd.leaf_weight() {
            match t.opt("blkio.leaf_weight_device") {
                Some(file) => p.write(&f("weightDevice"), file, format!("{dev} {w}")),
                None => p.warnings.push(format!(
                    "{}: per-device leaf weights are obsolete (removed with CFQ); not applied",
                    f("weightDevice.leafWeight")
                )),
            }
        }
    }
    for (sub, list, file) in [
        (
            "throttleReadBpsDevice",
            b.throttle_read_bps_device(),
            "blkio.throttle.read_bps_device",
        ),
        (
            "throttleWriteBpsDevice",
            b.throttle_write_bps_device(),
            "blkio.throttle.write_bps_device",
        ),
        (
            "throttleReadIOPSDevice",
            b.throttle_read_iops_device(),
            "blkio.throttle.read_iops_device",
        ),
        (
            "throttleWriteIOPSDevice",
            b.throttle_write_iops_device(),
            "blkio.throttle.write_iops_device",
        ),
    ] {
        let Some(list) = list.as_ref().filter(|l| !l.is_empty()) else {
            continue;
        };
        let path = t.file(file)?;
        for d in list {
            p.write(
                &f(sub),
                path.clone(),
                format!("{}:{} {}", d.major(), d.minor(), d.rate()),
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
    let v = if limit < 0 {
        "-1".to_string()
    } else {
        limit.to_string()
    };
    let field = format!("{}[{size}]", t.field);
    p.write(
        &field,
        t.file(&format!("hugetlb.{size}.limit_in_bytes"))?,
        v.clone(),
    );
    if let Some(rsvd) = t.opt(&format!("hugetlb.{size}.rsvd.limit_in_bytes")) {
        p.write(&field, rsvd, v);
    }
    Ok(())
}
