//! tinyo-core's cgroup statistics as containerd's cgroup v1 `Metrics` message (what
//! `ctr task metrics` and the CRI plugin decode from `io.containerd.cgroups.v1.Metrics`).

use containerd_shim::protos::cgroups::metrics::{
    BlkIOEntry, BlkIOStat, CPUStat, CPUUsage, HugetlbStat, MemoryEntry, MemoryStat, Metrics,
    PidsStat, Throttle,
};
use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::protobuf::Message;
use tinyo_core::cgroup::Stats;

/// The type URL containerd registers the v1 metrics under.
pub const TYPE_URL: &str = "io.containerd.cgroups.v1.Metrics";

fn entry(e: &tinyo_core::cgroup::stats::MemoryEntry) -> MemoryEntry {
    MemoryEntry {
        limit: e.limit,
        usage: e.usage,
        max: e.max,
        failcnt: e.failcnt,
        ..Default::default()
    }
}

pub fn metrics(s: &Stats) -> Metrics {
    let raw = |k: &str| s.memory.raw.get(k).copied().unwrap_or(0);
    let blk = |v: &[tinyo_core::cgroup::stats::BlkioEntry]| {
        v.iter()
            .map(|e| BlkIOEntry {
                op: e.op.clone(),
                major: e.major,
                minor: e.minor,
                value: e.value,
                ..Default::default()
            })
            .collect()
    };
    Metrics {
        pids: Some(PidsStat {
            current: s.pids.current,
            limit: s.pids.limit,
            ..Default::default()
        })
        .into(),
        cpu: Some(CPUStat {
            usage: Some(CPUUsage {
                total: s.cpu.usage.total,
                kernel: s.cpu.usage.kernel,
                user: s.cpu.usage.user,
                per_cpu: s.cpu.usage.percpu.clone(),
                ..Default::default()
            })
            .into(),
            throttling: Some(Throttle {
                periods: s.cpu.throttling.periods,
                throttled_periods: s.cpu.throttling.throttled_periods,
                throttled_time: s.cpu.throttling.throttled_time,
                ..Default::default()
            })
            .into(),
            ..Default::default()
        })
        .into(),
        memory: Some(MemoryStat {
            cache: s.memory.cache,
            rss: raw("rss").max(raw("anon")),
            mapped_file: raw("mapped_file").max(raw("file_mapped")),
            dirty: raw("dirty").max(raw("file_dirty")),
            writeback: raw("writeback").max(raw("file_writeback")),
            pg_fault: raw("pgfault"),
            pg_maj_fault: raw("pgmajfault"),
            inactive_anon: raw("inactive_anon"),
            active_anon: raw("active_anon"),
            inactive_file: raw("inactive_file"),
            active_file: raw("active_file"),
            unevictable: raw("unevictable"),
            usage: Some(entry(&s.memory.usage)).into(),
            swap: Some(entry(&s.memory.swap)).into(),
            kernel: Some(entry(&s.memory.kernel)).into(),
            kernel_tcp: Some(entry(&s.memory.kernel_tcp)).into(),
            ..Default::default()
        })
        .into(),
        blkio: Some(BlkIOStat {
            io_service_bytes_recursive: blk(&s.blkio.io_service_bytes_recursive),
            io_serviced_recursive: blk(&s.blkio.io_serviced_recursive),
            ..Default::default()
        })
        .into(),
        hugetlb: s
            .hugetlb
            .iter()
            .map(|(size, h)| HugetlbStat {
                usage: h.usage,
                max: h.max,
                failcnt: h.failcnt,
                pagesize: size.clone(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

/// The metrics packed as containerd expects them in a `StatsResponse`.
pub fn any(s: &Stats) -> Result<Any, String> {
    let value = metrics(s)
        .write_to_bytes()
        .map_err(|e| format!("encoding metrics: {e}"))?;
    Ok(Any {
        type_url: TYPE_URL.into(),
        value,
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_map_onto_containerds_fields() {
        let mut s = Stats::default();
        s.pids.current = 3;
        s.pids.limit = 64;
        s.cpu.usage.total = 1_000;
        s.memory.usage.usage = 4096;
        s.memory.usage.limit = 1 << 20;
        s.memory.raw.insert("rss".into(), 2048);
        let m = metrics(&s);
        assert_eq!(m.pids.current, 3);
        assert_eq!(m.pids.limit, 64);
        assert_eq!(m.cpu.usage.total, 1_000);
        assert_eq!(m.memory.usage.usage, 4096);
        assert_eq!(m.memory.rss, 2048);
        let a = any(&s).unwrap();
        assert_eq!(a.type_url, TYPE_URL);
        assert_eq!(Metrics::parse_from_bytes(&a.value).unwrap(), m);
    }
}
