//! `linux.resources` → a list of file writes (and a v2 device program), built and validated in
//! full before anything is written.

use std::fs;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxResources};

use super::devices_bpf::Insn;
use super::{devices, devices_bpf, holder, v1, v2, v2_dir, write_file, CgroupError, Dir};

/// Host facts outside cgroupfs that validation needs.
#[derive(Debug, Clone)]
pub(crate) struct Sys {
    /// `/sys/kernel/mm/hugepages` (its `hugepages-<N>kB` entries are the page sizes).
    pub hugepages: PathBuf,
}

impl Sys {
    pub fn real() -> Self {
        Self {
            hugepages: PathBuf::from("/sys/kernel/mm/hugepages"),
        }
    }

    /// The host's huge page sizes in the spec's notation (`2MB`, `1GB`, `64KB`).
    pub fn hugepage_sizes(&self) -> Vec<String> {
        let mut out: Vec<String> = fs::read_dir(&self.hugepages)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let n = e.file_name().to_string_lossy().into_owned();
                let kb: u64 = n
                    .strip_prefix("hugepages-")?
                    .strip_suffix("kB")?
                    .parse()
                    .ok()?;
                Some(page_size_name(kb))
            })
            .collect();
        out.sort();
        out
    }
}

/// 2048 (kB) → "2MB", as the spec and the hugetlb file names spell it.
pub(crate) fn page_size_name(kb: u64) -> String {
    if kb >= 1 << 20 && kb % (1 << 20) == 0 {
        format!("{}GB", kb >> 20)
    } else if kb >= 1 << 10 && kb % (1 << 10) == 0 {
        format!("{}MB", kb >> 10)
    } else {
        format!("{kb}KB")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Op {
    Write {
        field: String,
        path: PathBuf,
        value: String,
    },
    /// Load the program and attach it to the v2 directory; `replace` detaches the device
    /// programs attached before (update).
    Bpf {
        dir: PathBuf,
        prog: Vec<Insn>,
        replace: bool,
    },
}

#[derive(Debug, Default)]
pub(crate) struct Plan {
    pub ops: Vec<Op>,
    pub warnings: Vec<String>,
}

impl Plan {
    pub fn write(&mut self, field: &str, path: PathBuf, value: impl Into<String>) {
        self.ops.push(Op::Write {
            field: field.into(),
            path,
            value: value.into(),
        });
    }
}

/// The directory a controller's files are written in, for one spec field.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Target<'a> {
    pub dir: &'a Dir,
    pub field: &'a str,
}

impl Target<'_> {
    pub fn v2(&self) -> bool {
        self.dir.is_v2()
    }

    pub fn opt(&self, name: &str) -> Option<PathBuf> {
        let p = self.dir.file(name);
        p.exists().then_some(p)
    }

    /// `name` in the directory; an error naming the field when the kernel does not offer it.
    pub fn file(&self, name: &str) -> Result<PathBuf, CgroupError> {
        self.opt(name).ok_or_else(|| CgroupError::Unsupported {
            field: self.field.into(),
            why: format!(
                "{} does not exist (this kernel or cgroup does not offer {name})",
                self.dir.file(name).display()
            ),
        })
    }

    pub fn unsupported(&self, why: impl Into<String>) -> CgroupError {
        CgroupError::Unsupported {
            field: self.field.into(),
            why: why.into(),
        }
    }

    pub fn bad(&self, sub: &str, value: impl ToString, why: impl Into<String>) -> CgroupError {
        CgroupError::BadValue {
            field: format!("{}.{sub}", self.field),
            value: value.to_string(),
            why: why.into(),
        }
    }
}

/// Finds where `field`'s controller lives: the v1 hierarchy named `v1`, else the v2 controller
/// `v2` (which must be enabled for the container's directory).
pub(crate) fn locate<'a>(
    dirs: &'a [Dir],
    field: &'a str,
    v1: &str,
    v2: Option<&str>,
) -> Result<Target<'a>, CgroupError> {
    if let Some(d) = holder(dirs, v1).filter(|d| !d.is_v2()) {
        return Ok(Target { dir: d, field });
    }
    let unsupported = |why: String| CgroupError::Unsupported {
        field: field.into(),
        why,
    };
    let Some(v2name) = v2 else {
        return Err(unsupported(format!(
            "no {v1} v1 hierarchy on this host, and cgroup v2 has no {v1} controller"
        )));
    };
    match v2_dir(dirs) {
        Some(d) if d.has(v2name) => {
            let enabled = fs::read_to_string(d.file("cgroup.controllers")).unwrap_or_default();
            if enabled.split_whitespace().any(|c| c == v2name) {
                Ok(Target { dir: d, field })
            } else {
                Err(unsupported(format!(
                    "the {v2name} controller is not enabled for {} (not in its cgroup.controllers; \
                     the parent's cgroup.subtree_control lacks +{v2name})",
                    d.path
                )))
            }
        }
        _ => Err(unsupported(format!(
            "no {v1} controller on this host (no v1 hierarchy mounts it and cgroup v2 does not \
             offer {v2name})"
        ))),
    }
}

pub(crate) fn apply_with(
    dirs: &[Dir],
    res: &LinuxResources,
    sys: &Sys,
    update: bool,
) -> Result<Vec<String>, CgroupError> {
    let plan = plan(dirs, res, sys, update)?;
    for op in &plan.ops {
        match op {
            Op::Write { field, path, value } => write_file(field, path, value)?,
            Op::Bpf { dir, prog, replace } => devices_bpf::attach(dir, prog, *replace)?,
        }
    }
    Ok(plan.warnings)
}

/// Validates everything and lists the writes, in order.
pub(crate) fn plan(
    dirs: &[Dir],
    res: &LinuxResources,
    sys: &Sys,
    update: bool,
) -> Result<Plan, CgroupError> {
    if let Some(e) = dirs.iter().find_map(|d| d.error.clone()) {
        return Err(CgroupError::Planned(e));
    }
    let mut p = Plan::default();
    if let Some(m) = res.memory() {
        memory(&mut p, dirs, m, update)?;
    }
    if let Some(pids) = res.pids() {
        let t = locate(dirs, "linux.resources.pids", "pids", Some("pids"))?;
        let v = if pids.limit() > 0 {
            pids.limit().to_string()
        } else {
            "max".into()
        };
        p.write(t.field, t.file("pids.max")?, v);
    }
    if let Some(c) = res.cpu() {
        cpu(&mut p, dirs, c, update)?;
    }
    if let Some(b) = res.block_io() {
        block_io(&mut p, dirs, b)?;
    }
    if let Some(h) = res.hugepage_limits().as_ref().filter(|h| !h.is_empty()) {
        let t = locate(
            dirs,
            "linux.resources.hugepageLimits",
            "hugetlb",
            Some("hugetlb"),
        )?;
        let sizes = sys.hugepage_sizes();
        for l in h {
            if !sizes.contains(l.page_size()) {
                return Err(t.bad(
                    "pageSize",
                    l.page_size(),
                    format!(
                        "not a huge page size of this host (it has: {})",
                        if sizes.is_empty() {
                            "none".into()
                        } else {
                            sizes.join(", ")
                        }
                    ),
                ));
            }
            if t.v2() {
                v2::hugetlb(&mut p, &t, l.page_size(), l.limit())?;
            } else {
                v1::hugetlb(&mut p, &t, l.page_size(), l.limit())?;
            }
        }
    }
    if let Some(n) = res.network() {
        if let Some(id) = n.class_id() {
            let t = locate(dirs, "linux.resources.network.classID", "net_cls", None)?;
            p.write(t.field, t.file("net_cls.classid")?, id.to_string());
        }
        if let Some(prios) = n.priorities().as_ref().filter(|p| !p.is_empty()) {
            let t = locate(dirs, "linux.resources.network.priorities", "net_prio", None)?;
            let f = t.file("net_prio.ifpriomap")?;
            for pr in prios {
                if pr.name().is_empty() || pr.name().contains(char::is_whitespace) {
                    return Err(t.bad("name", pr.name(), "not an interface name"));
                }
                p.write(
                    t.field,
                    f.clone(),
                    format!("{} {}", pr.name(), pr.priority()),
                );
            }
        }
    }
    if let Some(r) = res.rdma().as_ref().filter(|r| !r.is_empty()) {
        let t = locate(dirs, "linux.resources.rdma", "rdma", Some("rdma"))?;
        let f = t.file("rdma.max")?;
        let mut devs: Vec<_> = r.iter().collect();
        devs.sort_by(|a, b| a.0.cmp(b.0));
        for (dev, l) in devs {
            if dev.is_empty() || dev.contains(char::is_whitespace) {
                return Err(t.bad("device", dev, "not an RDMA device name"));
            }
            let n = |v: Option<u32>| v.map_or("max".to_string(), |v| v.to_string());
            p.write(
                t.field,
                f.clone(),
                format!(
                    "{dev} hca_handle={} hca_object={}",
                    n(l.hca_handles()),
                    n(l.hca_objects())
                ),
            );
        }
    }
    if let Some(u) = res.unified().as_ref().filter(|u| !u.is_empty()) {
        unified(&mut p, dirs, u)?;
    }
    if let Some(rules) = res.devices() {
        devices_section(&mut p, dirs, rules, update)?;
    }
    Ok(p)
}

fn memory(p: &mut Plan, dirs: &[Dir], m: &LinuxMemory, update: bool) -> Result<(), CgroupError> {
    let field = "linux.resources.memory";
    // memory.kernel is warned about where the config is read (crate::fields).
    if let Some(tcp) = m.kernel_tcp() {
        // cgroup v1 still has the file on many kernels (crun writes it); v2 has no such limit.
        let file = holder(dirs, "memory")
            .filter(|d| !d.is_v2())
            .map(|d| d.file("memory.kmem.tcp.limit_in_bytes"))
            .filter(|f| f.exists());
        if tcp < -1 {
            return Err(CgroupError::BadValue {
                field: format!("{field}.kernelTCP"),
                value: tcp.to_string(),
                why: "must be -1 (unlimited) or >= 0".into(),
            });
        }
        match file {
            Some(f) => p.write(&format!("{field}.kernelTCP"), f, tcp.to_string()),
            None => p.warnings.push(format!(
                "{field}.kernelTCP: this host has no memory.kmem.tcp.limit_in_bytes (kernel TCP \
                 memory limits exist only in cgroup v1); not applied"
            )),
        }
    }
    if m.use_hierarchy() == Some(false) {
        p.warnings.push(format!(
            "{field}.useHierarchy: false is obsolete (memory cgroups are always hierarchical \
             since Linux 5.x); ignored"
        ));
    }
    let wanted = m.limit().is_some()
        || m.reservation().is_some()
        || m.swap().is_some()
        || m.swappiness().is_some()
        || m.disable_oom_killer().is_some();
    if !wanted {
        return Ok(());
    }
    let t = locate(dirs, field, "memory", Some("memory"))?;
    let check = |sub: &str, v: Option<i64>| -> Result<(), CgroupError> {
        match v {
            Some(v) if v < -1 => Err(t.bad(sub, v, "must be -1 (unlimited), 0 (unset) or > 0")),
            _ => Ok(()),
        }
    };
    check("limit", m.limit())?;
    check("reservation", m.reservation())?;
    check("swap", m.swap())?;
    if let (Some(l), Some(s)) = (m.limit(), m.swap()) {
        if l > 0 && s > 0 && s < l {
            return Err(t.bad(
                "swap",
                s,
                format!("memory+swap must be >= the memory limit {l}"),
            ));
        }
    }
    if let Some(s) = m.swappiness() {
        if s > 100 {
            return Err(t.bad("swappiness", s, "must be 0..=100"));
        }
    }
    if t.v2() {
        v2::memory(p, &t, m, update)
    } else {
        v1::memory(p, &t, m, update)
    }
}

fn cpu(p: &mut Plan, dirs: &[Dir], c: &LinuxCpu, update: bool) -> Result<(), CgroupError> {
    let field = "linux.resources.cpu";
    if c.cpus().is_some() || c.mems().is_some() {
        let t = locate(dirs, field, "cpuset", Some("cpuset"))?;
        for (sub, v, file) in [
            ("cpus", c.cpus(), "cpuset.cpus"),
            ("mems", c.mems(), "cpuset.mems"),
        ] {
            let Some(v) = v else { continue };
            if v.is_empty()
                || !v
                    .chars()
                    .all(|ch| ch.is_ascii_digit() || ch == ',' || ch == '-')
            {
                return Err(t.bad(sub, v, "not a list like 0-3,5"));
            }
            p.write(&format!("{field}.{sub}"), t.file(file)?, v.as_str());
        }
    }
    let wanted = c.shares().is_some()
        || c.quota().is_some()
        || c.period().is_some()
        || c.burst().is_some()
        || c.realtime_runtime().is_some()
        || c.realtime_period().is_some()
        || c.idle().is_some();
    if !wanted {
        return Ok(());
    }
    let t = locate(dirs, field, "cpu", Some("cpu"))?;
    if let Some(s) = c.shares() {
        if s != 0 && !(2..=262_144).contains(&s) {
            return Err(t.bad("shares", s, "must be 2..=262144"));
        }
    }
    if let Some(per) = c.period() {
        if !(1_000..=1_000_000).contains(&per) {
            return Err(t.bad("period", per, "must be 1000..=1000000 (µs)"));
        }
    }
    if let Some(q) = c.quota() {
        if q > 0 && q < 1_000 {
            return Err(t.bad("quota", q, "must be >= 1000 (µs), or <= 0 for unlimited"));
        }
    }
    if let Some(i) = c.idle() {
        if !(0..=1).contains(&i) {
            return Err(t.bad("idle", i, "must be 0 or 1"));
        }
    }
    if t.v2() {
        v2::cpu(p, &t, c, update)
    } else {
        v1::cpu(p, &t, c)
    }
}

fn block_io(p: &mut Plan, dirs: &[Dir], b: &LinuxBlockIo) -> Result<(), CgroupError> {
    let t = locate(dirs, "linux.resources.blockIO", "blkio", Some("io"))?;
    let weight_ok = |sub: &str, w: u16| {
        if (10..=1000).contains(&w) {
            Ok(())
        } else {
            Err(t.bad(sub, w, "must be 10..=1000"))
        }
    };
    if let Some(w) = b.weight() {
        weight_ok("weight", w)?;
    }
    if let Some(w) = b.leaf_weight() {
        weight_ok("leafWeight", w)?;
    }
    for wd in b.weight_device().iter().flatten() {
        dev_ok(&t, wd.major(), wd.minor())?;
        if let Some(w) = wd.weight() {
            weight_ok("weightDevice.weight", w)?;
        }
        if let Some(w) = wd.leaf_weight() {
            weight_ok("weightDevice.leafWeight", w)?;
        }
    }
    for list in [
        b.throttle_read_bps_device(),
        b.throttle_write_bps_device(),
        b.throttle_read_iops_device(),
        b.throttle_write_iops_device(),
    ] {
        for d in list.iter().flatten() {
            dev_ok(&t, d.major(), d.minor())?;
        }
    }
    if t.v2() {
        v2::io(p, &t, b)
    } else {
        v1::blkio(p, &t, b)
    }
}

fn dev_ok(t: &Target<'_>, major: i64, minor: i64) -> Result<(), CgroupError> {
    if !(0..=0xfff).contains(&major) || !(0..=0xf_ffff).contains(&minor) {
        return Err(t.bad(
            "device",
            format!("{major}:{minor}"),
            "not a device number (major 0..=4095, minor 0..=1048575)",
        ));
    }
    Ok(())
}

const CORE_FORBIDDEN: &[&str] = &["cgroup.procs", "cgroup.threads", "cgroup.subtree_control"];

fn unified(
    p: &mut Plan,
    dirs: &[Dir],
    u: &std::collections::HashMap<String, String>,
) -> Result<(), CgroupError> {
    let mut keys: Vec<_> = u.iter().collect();
    keys.sort_by(|a, b| a.0.cmp(b.0));
    for (k, v) in keys {
        let field = format!("linux.resources.unified[{k:?}]");
        let err = |why: String| CgroupError::Unsupported {
            field: field.clone(),
            why,
        };
        if k.is_empty()
            || k.contains('/')
            || k.starts_with('.')
            || !k.contains('.')
            || CORE_FORBIDDEN.contains(&k.as_str())
        {
            return Err(err(
                "not a cgroup v2 interface file name (plain `<controller>.<knob>`; \
                 cgroup.procs/threads/subtree_control are the runtime's)"
                    .into(),
            ));
        }
        let Some(d) = v2_dir(dirs) else {
            return Err(err("this host has no cgroup v2 hierarchy".into()));
        };
        let controller = k.split('.').next().unwrap_or("");
        if controller != "cgroup" {
            if let Some(v1d) = dirs.iter().find(|x| !x.is_v2() && x.has(controller)) {
                return Err(err(format!(
                    "{controller} is a cgroup v1 controller on this host (mounted at {}); \
                     unified keys only reach cgroup v2",
                    v1d.mountpoint
                )));
            }
            let enabled = fs::read_to_string(d.file("cgroup.controllers")).unwrap_or_default();
            if !enabled.split_whitespace().any(|c| c == controller) {
                return Err(err(format!(
                    "the {controller} controller is not available in cgroup v2 for {}",
                    d.path
                )));
            }
        }
        let path = Path::new(&d.path).join(k);
        if !path.exists() {
            return Err(err(format!("{} does not exist", path.display())));
        }
        p.write(&field, path, v.as_str());
    }
    Ok(())
}

fn devices_section(
    p: &mut Plan,
    dirs: &[Dir],
    rules: &[oci_spec::runtime::LinuxDeviceCgroup],
    update: bool,
) -> Result<(), CgroupError> {
    let field = "linux.resources.devices";
    let mut all = Vec::with_capacity(rules.len() + devices::DEFAULT_ALLOWED.len());
    for (i, r) in rules.iter().enumerate() {
        all.push(
            devices::Rule::from_spec(r).map_err(|why| CgroupError::BadValue {
                field: format!("{field}[{i}]"),
                value: format!("{r:?}"),
                why,
            })?,
        );
    }
    all.extend(devices::DEFAULT_ALLOWED.iter().cloned());
    if let Some(d) = dirs
        .iter()
        .find(|d| d.error.is_none() && !d.is_v2() && d.has("devices"))
    {
        let t = Target { dir: d, field };
        let allow = t.file("devices.allow")?;
        let deny = t.file("devices.deny")?;
        for r in &all {
            let f = if r.allow { &allow } else { &deny };
            p.write(field, f.clone(), r.v1_line());
        }
        return Ok(());
    }
    if let Some(d) = v2_dir(dirs) {
        let emu = devices::Emulator::from_rules(&all);
        if let Some(prog) = devices_bpf::program(&emu) {
            p.ops.push(Op::Bpf {
                dir: PathBuf::from(&d.path),
                prog,
                replace: update,
            });
        }
        return Ok(());
    }
    Err(CgroupError::Unsupported {
        field: field.into(),
        why: "no devices v1 hierarchy and no cgroup v2 hierarchy to attach a device program to"
            .into(),
    })
}
