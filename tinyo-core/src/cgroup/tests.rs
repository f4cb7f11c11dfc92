//! Unit tests on fake trees (a tempdir standing in for `/`), plus a few root-only tests on the
//! real host when it is hybrid.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use oci_spec::runtime::LinuxResources;
use serde_json::json;

use super::devices::{DevType, Emulator, Rule, ACC_MKNOD, ACC_READ, ACC_WRITE};
use super::resources::{self, Op, Sys};
use super::*;

/// This host (hybrid, memory nested).
const MI_HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
const CG_HYBRID: &str = "\
9:name=systemd:/
8:pids:/
7:blkio:/
6:freezer:/
5:devices:/
4:memory:/process_api/s1
3:cpuset:/
2:cpuacct:/
1:cpu:/
0::/
";

/// Ubuntu 20.04 (systemd hybrid: cgroup2 holds no controllers, cpu,cpuacct comounted).
const MI_UBUNTU: &str = "\
25 24 0:22 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
26 25 0:23 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
27 25 0:24 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,xattr,name=systemd
30 25 0:27 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:14 - cgroup cgroup rw,cpu,cpuacct
31 25 0:28 / /sys/fs/cgroup/net_cls,net_prio rw,nosuid,nodev,noexec,relatime shared:15 - cgroup cgroup rw,net_cls,net_prio
32 25 0:29 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:16 - cgroup cgroup rw,memory
33 25 0:30 / /sys/fs/cgroup/hugetlb rw,nosuid,nodev,noexec,relatime shared:17 - cgroup cgroup rw,hugetlb
34 25 0:31 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:18 - cgroup cgroup rw,pids
";
const CG_UBUNTU: &str = "\
7:pids:/user.slice/user-1000.slice/session-2.scope
6:hugetlb:/
5:memory:/user.slice/user-1000.slice/session-2.scope
4:net_cls,net_prio:/
3:cpu,cpuacct:/user.slice
1:name=systemd:/user.slice/user-1000.slice/session-2.scope
0::/user.slice/user-1000.slice/session-2.scope
";

/// CentOS 7 (v1 only; `cpuacct,cpu` in that order, release_agent option).
const MI_CENTOS: &str = "\
24 18 0:20 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:8 - tmpfs tmpfs ro,seclabel,mode=755
25 24 0:21 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:9 - cgroup cgroup rw,seclabel,xattr,release_agent=/usr/lib/systemd/systemd-cgroups-agent,name=systemd
27 24 0:23 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:10 - cgroup cgroup rw,seclabel,cpuacct,cpu
28 24 0:24 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,seclabel,memory
29 24 0:25 / /sys/fs/cgroup/devices rw,nosuid,nodev,noexec,relatime shared:12 - cgroup cgroup rw,seclabel,devices
30 24 0:26 / /sys/fs/cgroup/freezer rw,nosuid,nodev,noexec,relatime shared:13 - cgroup cgroup rw,seclabel,freezer
";
const CG_CENTOS: &str = "\
5:freezer:/
4:devices:/system.slice/sshd.service
3:memory:/system.slice/sshd.service
2:cpuacct,cpu:/system.slice/sshd.service
1:name=systemd:/system.slice/sshd.service
";

/// Fedora (pure v2).
const MI_FEDORA: &str = "\
22 98 0:21 / /sys rw,nosuid,nodev,noexec,relatime shared:2 - sysfs sysfs rw,seclabel
35 22 0:30 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,seclabel,nsdelegate,memory_recursiveprot
";
const CG_FEDORA: &str = "0::/user.slice/user-1000.slice/session-3.scope\n";

struct Fake {
    tmp: tempfile::TempDir,
}

impl Fake {
    fn new() -> Self {
        Self {
            tmp: tempfile::tempdir().unwrap(),
        }
    }
    fn root(&self) -> &Path {
        self.tmp.path()
    }
    fn p(&self, rel: &str) -> PathBuf {
        self.root().join(rel.trim_start_matches('/'))
    }
    fn put(&self, rel: &str, text: &str) {
        let p = self.p(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }
    fn get(&self, rel: &str) -> String {
        fs::read_to_string(self.p(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
    }
    fn host(&self, mi: &str, cg: &str) -> Host {
        Host {
            mountinfo: mi.into(),
            self_cgroup: cg.into(),
            prefix: self.root().to_path_buf(),
        }
    }
    fn sys(&self) -> Sys {
        fs::create_dir_all(self.p("sys/kernel/mm/hugepages/hugepages-2048kB")).unwrap();
        fs::create_dir_all(self.p("sys/kernel/mm/hugepages/hugepages-1048576kB")).unwrap();
        Sys {
            hugepages: self.p("sys/kernel/mm/hugepages"),
        }
    }
}

/// Makes empty knob files in a directory (as cgroupfs would show them).
fn touch(dir: &str, names: &[&str]) {
    for n in names {
        fs::write(Path::new(dir).join(n), "").unwrap();
    }
}

fn res(v: serde_json::Value) -> LinuxResources {
    serde_json::from_value(v).unwrap()
}

fn dir<'a>(dirs: &'a [Dir], controller: &str) -> &'a Dir {
    holder(dirs, controller).unwrap_or_else(|| panic!("no dir for {controller}"))
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap()
}

fn writes(plan: &resources::Plan) -> Vec<(String, String)> {
    plan.ops
        .iter()
        .filter_map(|o| match o {
            Op::Write { path, value, .. } => Some((
                path.file_name().unwrap().to_string_lossy().into_owned(),
                value.clone(),
            )),
            Op::Bpf { .. } => None,
        })
        .collect()
}

// ---------------------------------------------------------------- layout

#[test]
fn layout_hybrid_this_host() {
    let f = Fake::new();
    f.put("sys/fs/cgroup/unified/cgroup.controllers", "hugetlb\n");
    let l = f.host(MI_HYBRID, CG_HYBRID).layout();
    assert_eq!(l.mode, Mode::Hybrid);
    let mem = l.holder("memory").unwrap();
    assert_eq!(mem.version, 1);
    assert_eq!(mem.mountpoint, f.p("sys/fs/cgroup/memory"));
    assert_eq!(mem.own, "process_api/s1");
    assert_eq!(l.holder("pids").unwrap().own, "");
    let hug = l.holder("hugetlb").unwrap();
    assert_eq!(hug.version, 2);
    assert_eq!(hug.mountpoint, f.p("sys/fs/cgroup/unified"));
    assert_eq!(l.unified().unwrap().controllers, vec!["hugetlb"]);
    assert!(l.holder("name=systemd").unwrap().is_named_only());
    assert_eq!(l.hierarchies.len(), 10);
}

#[test]
fn layout_hybrid_ubuntu_comounted() {
    let f = Fake::new();
    f.put("sys/fs/cgroup/unified/cgroup.controllers", "");
    let l = f.host(MI_UBUNTU, CG_UBUNTU).layout();
    assert_eq!(l.mode, Mode::Hybrid);
    let cpu = l.holder("cpu").unwrap();
    assert_eq!(cpu.controllers, vec!["cpu", "cpuacct"]);
    assert_eq!(cpu.own, "user.slice");
    assert_eq!(l.holder("cpuacct").unwrap().mountpoint, cpu.mountpoint);
    assert_eq!(l.holder("net_prio").unwrap().version, 1);
    assert!(l.unified().unwrap().controllers.is_empty());
    assert_eq!(
        l.unified().unwrap().own,
        "user.slice/user-1000.slice/session-2.scope"
    );
}

#[test]
fn layout_legacy_centos() {
    let f = Fake::new();
    let l = f.host(MI_CENTOS, CG_CENTOS).layout();
    assert_eq!(l.mode, Mode::Legacy);
    assert!(l.unified().is_none());
    // "cpuacct,cpu" in both files, in any order.
    let cpu = l.holder("cpu").unwrap();
    assert_eq!(cpu.own, "system.slice/sshd.service");
    assert_eq!(l.holder("freezer").unwrap().own, "");
    // release_agent=… and xattr are options, not controllers.
    assert_eq!(
        l.holder("name=systemd").unwrap().controllers,
        vec!["name=systemd"]
    );
}

#[test]
fn layout_unified_fedora() {
    let f = Fake::new();
    f.put(
        "sys/fs/cgroup/cgroup.controllers",
        "cpuset cpu io memory hugetlb pids rdma misc\n",
    );
    let l = f.host(MI_FEDORA, CG_FEDORA).layout();
    assert_eq!(l.mode, Mode::Unified);
    assert_eq!(l.hierarchies.len(), 1);
    assert_eq!(l.holder("memory").unwrap().version, 2);
    assert_eq!(
        l.unified().unwrap().own,
        "user.slice/user-1000.slice/session-3.scope"
    );
}

#[test]
fn layout_v1_bound_controller_is_not_in_v2() {
    let f = Fake::new();
    // A v2 root offering memory too: memory is bound to v1, so only hugetlb counts.
    f.put(
        "sys/fs/cgroup/unified/cgroup.controllers",
        "memory hugetlb\n",
    );
    let l = f.host(MI_HYBRID, CG_HYBRID).layout();
    assert_eq!(l.unified().unwrap().controllers, vec!["hugetlb"]);
    assert_eq!(l.holder("memory").unwrap().version, 1);
}

#[test]
fn layout_container_mount_root_and_duplicates() {
    let f = Fake::new();
    let mi = "\
100 99 0:32 /docker/abc /sys/fs/cgroup/memory ro,nosuid - cgroup cgroup rw,memory
101 99 0:32 /docker/abc /run/x/sys/fs/cgroup/memory ro,nosuid - cgroup cgroup rw,memory
102 99 0:36 /docker/abc /sys/fs/cgroup/my\\040pids rw - cgroup cgroup rw,pids
";
    let cg = "5:memory:/docker/abc/inner\n4:pids:/docker/abc\n";
    let l = f.host(mi, cg).layout();
    assert_eq!(l.hierarchies.len(), 2, "{l:?}");
    assert_eq!(l.holder("memory").unwrap().own, "inner");
    let pids = l.holder("pids").unwrap();
    assert_eq!(pids.own, "");
    assert_eq!(pids.mountpoint, f.p("sys/fs/cgroup/my pids"));
}

// ---------------------------------------------------------------- paths

fn hybrid(f: &Fake) -> Host {
    f.put("sys/fs/cgroup/cpuset/cpuset.cpus", "0-1\n");
    f.put("sys/fs/cgroup/cpuset/cpuset.mems", "0\n");
    hybrid_no_cpuset_files(f)
}

/// A fake directory cannot be rmdir'ed with files in it (cgroupfs ones can): remove the
/// regular files the way the kernel would not need to.
fn strip_files(dirs: &[Dir]) {
    fn strip(p: &Path) {
        for e in fs::read_dir(p).into_iter().flatten().flatten() {
            if e.file_type().unwrap().is_dir() {
                strip(&e.path());
            } else {
                fs::remove_file(e.path()).unwrap();
            }
        }
    }
    for d in dirs {
        for a in d.created.iter().chain([&d.path]) {
            strip(Path::new(a));
        }
    }
}

fn hybrid_no_cpuset_files(f: &Fake) -> Host {
    f.put("sys/fs/cgroup/unified/cgroup.controllers", "hugetlb\n");
    f.put("sys/fs/cgroup/unified/cgroup.subtree_control", "");
    for h in [
        "cpuset",
        "cpu",
        "cpuacct",
        "memory/process_api/s1",
        "devices",
        "freezer",
        "blkio",
        "pids",
        "systemd",
    ] {
        fs::create_dir_all(f.p(&format!("sys/fs/cgroup/{h}"))).unwrap();
    }
    f.host(MI_HYBRID, CG_HYBRID)
}

#[test]
fn plan_default_relative_absolute() {
    let f = Fake::new();
    let h = hybrid(&f);
    let dirs = h.plan(None, "c1").unwrap();
    // Every v1 controller hierarchy and the v2 one; not name=systemd.
    assert_eq!(dirs.len(), 9);
    assert!(dirs.iter().all(|d| !d.mountpoint.ends_with("systemd")));
    assert_eq!(
        dir(&dirs, "memory").path,
        f.p("sys/fs/cgroup/memory/process_api/s1/tinyo/c1")
            .display()
            .to_string()
    );
    assert_eq!(
        dir(&dirs, "pids").path,
        f.p("sys/fs/cgroup/pids/tinyo/c1").display().to_string()
    );
    let v2 = dir(&dirs, "hugetlb");
    assert!(v2.is_v2());
    assert_eq!(
        v2.path,
        f.p("sys/fs/cgroup/unified/tinyo/c1").display().to_string()
    );

    let dirs = h.plan(Some(Path::new("/a/b")), "c1").unwrap();
    assert_eq!(
        dir(&dirs, "memory").path,
        f.p("sys/fs/cgroup/memory/a/b").display().to_string()
    );
    let dirs = h.plan(Some(Path::new("x/./y")), "c1").unwrap();
    assert_eq!(
        dir(&dirs, "memory").path,
        f.p("sys/fs/cgroup/memory/process_api/s1/x/y")
            .display()
            .to_string()
    );
    assert_eq!(
        dir(&dirs, "cpu").path,
        f.p("sys/fs/cgroup/cpu/x/y").display().to_string()
    );
    // `..` that stays inside is normalised away.
    let dirs = h.plan(Some(Path::new("/a/../b")), "c1").unwrap();
    assert_eq!(
        dir(&dirs, "pids").path,
        f.p("sys/fs/cgroup/pids/b").display().to_string()
    );
}

#[test]
fn plan_refuses_escaping_paths() {
    let f = Fake::new();
    let h = hybrid(&f);
    for bad in ["../x", "/../x", "a/../../x", "/", ".", "a/.."] {
        let e = h.plan(Some(Path::new(bad)), "c1").unwrap_err();
        assert!(matches!(e, CgroupError::BadPath { .. }), "{bad}: {e}");
        assert!(e.to_string().contains(bad), "{e}");
    }
    assert!(h.plan(None, "..").is_err(), "an id of `..` must not escape");
    // The infallible wrapper turns it into a placeholder that create refuses.
    let mut dirs = plan(Some(Path::new("../../etc")), "c1");
    assert_eq!(dirs.len(), 1);
    let e = try_create(&mut dirs).unwrap_err();
    assert_eq!(
        e.to_string(),
        "cgroupsPath \"../../etc\" is invalid: `..` climbs out of the runtime's own cgroup"
    );
    assert!(pids(&dirs).is_empty());
    remove(&dirs); // a no-op, not a removal of "" or "cgroup.procs"
}

#[test]
fn mount_binds_hybrid_and_unified() {
    let f = Fake::new();
    let h = hybrid(&f);
    let dirs = h.plan(None, "c1").unwrap();
    let b = h.mount_binds(&dirs);
    assert_eq!(b.len(), 10);
    let get = |m: &str| {
        b.iter()
            .find(|(mp, _)| mp.ends_with(m))
            .unwrap_or_else(|| panic!("{m} missing in {b:?}"))
            .1
            .clone()
    };
    assert!(get("/unified").ends_with("unified/tinyo/c1"));
    assert!(get("/memory").ends_with("memory/process_api/s1/tinyo/c1"));
    // Unmanaged: the creator's own cgroup.
    assert_eq!(
        get("/systemd"),
        f.p("sys/fs/cgroup/systemd").display().to_string()
    );

    let g = Fake::new();
    g.put("sys/fs/cgroup/cgroup.controllers", "memory pids\n");
    let h = g.host(MI_FEDORA, CG_FEDORA);
    let dirs = h.plan(Some(Path::new("/k/c2")), "c2").unwrap();
    let b = h.mount_binds(&dirs);
    assert_eq!(
        b,
        vec![(
            g.p("sys/fs/cgroup").display().to_string(),
            g.p("sys/fs/cgroup/k/c2").display().to_string()
        )]
    );
}

// ---------------------------------------------------------------- create

#[test]
fn create_seeds_cpusets_records_ancestors_enables_v2() {
    let f = Fake::new();
    let h = hybrid(&f);
    let mut dirs = h.plan(Some(Path::new("/outer/mid/c1")), "c1").unwrap();
    try_create(&mut dirs).unwrap();
    let cs = dir(&dirs, "cpuset");
    assert_eq!(
        cs.created,
        vec![
            f.p("sys/fs/cgroup/cpuset/outer").display().to_string(),
            f.p("sys/fs/cgroup/cpuset/outer/mid").display().to_string()
        ]
    );
    assert_eq!(
        f.get("sys/fs/cgroup/cpuset/outer/mid/c1/cpuset.cpus"),
        "0-1"
    );
    assert_eq!(f.get("sys/fs/cgroup/cpuset/outer/cpuset.mems"), "0");
    // Not a cpuset hierarchy: nothing seeded.
    assert!(!f.p("sys/fs/cgroup/pids/outer/cpuset.cpus").exists());
    assert_eq!(
        f.get("sys/fs/cgroup/unified/cgroup.subtree_control"),
        "+hugetlb"
    );
    strip_files(&dirs);
    remove(&dirs);
    for h in ["cpuset", "pids", "unified", "memory"] {
        assert!(
            !f.p(&format!("sys/fs/cgroup/{h}/outer")).exists(),
            "{h}/outer left behind"
        );
    }
}

#[test]
fn create_keeps_shared_ancestors() {
    let f = Fake::new();
    let h = hybrid(&f);
    fs::create_dir_all(f.p("sys/fs/cgroup/pids/shared")).unwrap();
    let mut dirs = h.plan(Some(Path::new("/shared/c1")), "c1").unwrap();
    try_create(&mut dirs).unwrap();
    assert!(dir(&dirs, "pids").created.is_empty());
    assert_eq!(dir(&dirs, "memory").created.len(), 1);
    strip_files(&dirs);
    remove(&dirs);
    assert!(f.p("sys/fs/cgroup/pids/shared").exists());
    assert!(!f.p("sys/fs/cgroup/pids/shared/c1").exists());
    assert!(!f.p("sys/fs/cgroup/memory/shared").exists());
}

#[test]
fn default_parent_is_removed_by_the_last_container_out() {
    let f = Fake::new();
    let h = hybrid(&f);
    let mut a = h.plan(None, "a").unwrap();
    let mut b = h.plan(None, "b").unwrap();
    assert_eq!(
        dir(&a, "pids").shared,
        vec![f.p("sys/fs/cgroup/pids/tinyo").display().to_string()]
    );
    try_create(&mut a).unwrap();
    try_create(&mut b).unwrap();
    // `a` made `tinyo/`, `b` found it: `a` leaves first, `b` still removes it.
    assert_eq!(dir(&a, "pids").created.len(), 1);
    assert!(dir(&b, "pids").created.is_empty());
    assert!(!dir(&a, "pids").joined && !dir(&b, "pids").joined);
    strip_files(&a);
    strip_files(&b);
    remove(&a);
    assert!(f.p("sys/fs/cgroup/pids/tinyo/b").exists());
    remove(&b);
    for h in ["cpuset", "pids", "unified", "memory/process_api/s1"] {
        assert!(
            !f.p(&format!("sys/fs/cgroup/{h}/tinyo")).exists(),
            "{h}/tinyo left behind"
        );
    }
    // An explicit cgroupsPath shares nothing.
    assert!(h.plan(Some(Path::new("x/c")), "c").unwrap()[0]
        .shared
        .is_empty());
}

#[test]
fn an_existing_leaf_is_joined_and_its_fake_procs_left_alone() {
    let f = Fake::new();
    let h = hybrid(&f);
    // A fake tree's cgroup.procs is never read as pids to kill (not on cgroupfs).
    f.put("sys/fs/cgroup/pids/theirs/c1/cgroup.procs", "1\n2\n");
    let mut dirs = h.plan(Some(Path::new("/theirs/c1")), "c1").unwrap();
    try_create(&mut dirs).unwrap();
    assert!(dir(&dirs, "pids").joined);
    assert!(!dir(&dirs, "memory").joined);
    let own: Vec<&Dir> = dirs.iter().collect();
    assert!(members(&own).is_empty());
    // Old state (no `joined`, no `shared`) still reads.
    let old: Dir = serde_json::from_value(json!({"mountpoint": "/m", "path": "/m/c"})).unwrap();
    assert!(!old.joined && old.shared.is_empty());
    assert!(!serde_json::to_string(&old).unwrap().contains("joined"));
}

#[test]
fn create_cleans_up_on_failure() {
    let f = Fake::new();
    let h = hybrid_no_cpuset_files(&f);
    // pids/tinyo is a file: making pids/tinyo/c1 fails after cpu … blkio were made.
    f.put("sys/fs/cgroup/pids/tinyo", "");
    let mut dirs = h.plan(None, "c1").unwrap();
    let e = try_create(&mut dirs).unwrap_err();
    assert!(matches!(e, CgroupError::Create { .. }), "{e}");
    assert!(e.to_string().contains("pids/tinyo/c1"), "{e}");
    for h in ["cpu", "cpuacct", "cpuset", "devices", "blkio", "freezer"] {
        assert!(
            !f.p(&format!("sys/fs/cgroup/{h}/tinyo")).exists(),
            "{h}/tinyo left behind"
        );
    }
    assert!(!f.p("sys/fs/cgroup/memory/process_api/s1/tinyo").exists());
    assert!(f.p("sys/fs/cgroup/pids/tinyo").is_file());
    // The io::Error wrapper keeps the typed error.
    let mut dirs = h.plan(None, "c1").unwrap();
    let e = create(&mut dirs).unwrap_err();
    assert!(e.get_ref().unwrap().downcast_ref::<CgroupError>().is_some());
}

// ---------------------------------------------------------------- apply v1

/// A created hybrid container with the v1 knob files present.
fn hybrid_container(f: &Fake) -> Vec<Dir> {
    let h = hybrid(f);
    let mut dirs = h.plan(None, "c1").unwrap();
    try_create(&mut dirs).unwrap();
    touch(
        &dir(&dirs, "memory").path,
        &[
            "memory.limit_in_bytes",
            "memory.memsw.limit_in_bytes",
            "memory.soft_limit_in_bytes",
            "memory.swappiness",
            "memory.oom_control",
            "memory.usage_in_bytes",
            "memory.kmem.tcp.limit_in_bytes",
        ],
    );
    fs::write(
        Path::new(&dir(&dirs, "memory").path).join("memory.limit_in_bytes"),
        "9223372036854771712\n",
    )
    .unwrap();
    touch(
        &dir(&dirs, "cpu").path,
        &[
            "cpu.shares",
            "cpu.cfs_period_us",
            "cpu.cfs_quota_us",
            "cpu.cfs_burst_us",
            "cpu.rt_period_us",
            "cpu.rt_runtime_us",
            "cpu.idle",
        ],
    );
    touch(&dir(&dirs, "pids").path, &["pids.max"]);
    touch(
        &dir(&dirs, "blkio").path,
        &[
            "blkio.bfq.weight",
            "blkio.bfq.weight_device",
            "blkio.throttle.read_bps_device",
            "blkio.throttle.write_iops_device",
        ],
    );
    touch(
        &dir(&dirs, "devices").path,
        &["devices.allow", "devices.deny"],
    );
    let v2 = dirs.iter().find(|d| d.is_v2()).unwrap();
    fs::write(Path::new(&v2.path).join("cgroup.controllers"), "hugetlb\n").unwrap();
    touch(
        &v2.path,
        &[
            "hugetlb.2MB.max",
            "hugetlb.2MB.rsvd.max",
            "hugetlb.1GB.max",
            "cgroup.freeze",
        ],
    );
    dirs
}

#[test]
fn apply_v1_hybrid_writes_the_right_files() {
    let f = Fake::new();
    let dirs = hybrid_container(&f);
    let sys = f.sys();
    let r = res(json!({
        "memory": {"limit": 104857600, "reservation": 52428800, "swap": 209715200,
                   "swappiness": 10, "disableOOMKiller": true, "kernel": 1000,
                   "kernelTCP": 8388608},
        "pids": {"limit": 64},
        "cpu": {"shares": 512, "quota": 50000, "period": 100000, "burst": 1000,
                "realtimePeriod": 1000000, "realtimeRuntime": 950000, "cpus": "0-1", "mems": "0",
                "idle": 0},
        "blockIO": {"weight": 300, "weightDevice": [{"major": 8, "minor": 0, "weight": 200}],
                    "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1048576}],
                    "throttleWriteIOPSDevice": [{"major": 8, "minor": 16, "rate": 100}]},
        "hugepageLimits": [{"pageSize": "2MB", "limit": 4194304}],
        "devices": [{"allow": false, "access": "rwm"},
                    {"allow": true, "type": "c", "major": 4, "minor": 1, "access": "r"},
                    {"allow": false, "type": "b", "major": 8, "access": "w"}]
    }));
    // Raising both above the current 50 MiB: memsw first, then the limit.
    fs::write(
        dir(&dirs, "memory").file("memory.limit_in_bytes"),
        "52428800\n",
    )
    .unwrap();
    let plan = resources::plan(&dirs, &r, &sys, false).unwrap();
    let w = writes(&plan);
    let pos = |f: &str| w.iter().position(|(n, _)| n == f).unwrap();
    assert!(pos("memory.memsw.limit_in_bytes") < pos("memory.limit_in_bytes"));
    let dev: Vec<_> = w
        .iter()
        .filter(|(n, _)| n.starts_with("devices."))
        .cloned()
        .collect();
    assert_eq!(
        &dev[..4],
        &[
            ("devices.deny".to_string(), "a".to_string()),
            ("devices.allow".into(), "c 4:1 r".into()),
            ("devices.deny".into(), "b 8:* w".into()),
            ("devices.allow".into(), "c *:* m".into()),
        ]
    );
    assert_eq!(dev.len(), 3 + devices::DEFAULT_ALLOWED.len());
    assert!(dev.contains(&("devices.allow".into(), "c 136:* rwm".into())));
    // memory.kernel is warned about once, by crate::fields, not here.
    assert_eq!(plan.warnings, Vec::<String>::new());

    let warnings = resources::apply_with(&dirs, &r, &sys, false).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    let m = |n: &str| read(&dir(&dirs, "memory").file(n));
    assert_eq!(m("memory.limit_in_bytes"), "104857600");
    assert_eq!(m("memory.memsw.limit_in_bytes"), "209715200");
    assert_eq!(m("memory.soft_limit_in_bytes"), "52428800");
    assert_eq!(m("memory.swappiness"), "10");
    assert_eq!(m("memory.oom_control"), "1");
    assert_eq!(m("memory.kmem.tcp.limit_in_bytes"), "8388608");
    assert_eq!(read(&dir(&dirs, "pids").file("pids.max")), "64");
    let c = |n: &str| read(&dir(&dirs, "cpu").file(n));
    assert_eq!(c("cpu.shares"), "512");
    assert_eq!(c("cpu.cfs_quota_us"), "50000");
    assert_eq!(c("cpu.cfs_period_us"), "100000");
    assert_eq!(c("cpu.cfs_burst_us"), "1000");
    assert_eq!(c("cpu.rt_period_us"), "1000000");
    assert_eq!(c("cpu.rt_runtime_us"), "950000");
    assert_eq!(c("cpu.idle"), "0");
    assert_eq!(read(&dir(&dirs, "cpuset").file("cpuset.cpus")), "0-1");
    assert_eq!(read(&dir(&dirs, "cpuset").file("cpuset.mems")), "0");
    let b = |n: &str| read(&dir(&dirs, "blkio").file(n));
    assert_eq!(b("blkio.bfq.weight"), "300");
    assert_eq!(b("blkio.bfq.weight_device"), "8:0 200");
    assert_eq!(b("blkio.throttle.read_bps_device"), "8:0 1048576");
    assert_eq!(b("blkio.throttle.write_iops_device"), "8:16 100");
    // hugetlb lives in v2 here.
    let v2 = dir(&dirs, "hugetlb");
    assert_eq!(read(&v2.file("hugetlb.2MB.max")), "4194304");
    assert_eq!(read(&v2.file("hugetlb.2MB.rsvd.max")), "4194304");
}

#[test]
fn apply_v1_lowering_memory_writes_limit_first_and_unlimited_lifts_swap() {
    let f = Fake::new();
    let dirs = hybrid_container(&f);
    let sys = f.sys();
    let mem = dir(&dirs, "memory");
    fs::write(mem.file("memory.limit_in_bytes"), "500000000").unwrap();
    let r = res(json!({"memory": {"limit": 100000000, "swap": 200000000}}));
    let w = writes(&resources::plan(&dirs, &r, &sys, true).unwrap());
    assert_eq!(
        w,
        vec![
            ("memory.limit_in_bytes".into(), "100000000".into()),
            ("memory.memsw.limit_in_bytes".into(), "200000000".into())
        ]
    );
    let r = res(json!({"memory": {"limit": -1}}));
    let w = writes(&resources::plan(&dirs, &r, &sys, true).unwrap());
    assert_eq!(
        w,
        vec![
            ("memory.memsw.limit_in_bytes".into(), "-1".into()),
            ("memory.limit_in_bytes".into(), "-1".into())
        ]
    );
    // checkBeforeUpdate: below the usage is refused.
    fs::write(mem.file("memory.usage_in_bytes"), "300000000").unwrap();
    let r = res(json!({"memory": {"limit": 200000000, "checkBeforeUpdate": true}}));
    let e = update(&dirs, &r).unwrap_err();
    assert!(e.to_string().contains("current usage 300000000"), "{e}");
    // swap below the limit is refused.
    let r = res(json!({"memory": {"limit": 200000000, "swap": 100000000}}));
    assert!(resources::plan(&dirs, &r, &sys, false).is_err());
}

#[test]
fn apply_v1_blkio_prefers_what_exists() {
    let f = Fake::new();
    let dirs = hybrid_container(&f);
    let sys = f.sys();
    let b = dir(&dirs, "blkio");
    fs::remove_file(b.file("blkio.bfq.weight")).unwrap();
    let r = res(json!({"blockIO": {"weight": 300}}));
    let e = resources::plan(&dirs, &r, &sys, false).unwrap_err();
    assert!(
        e.to_string()
            .contains("neither blkio.weight nor blkio.bfq.weight"),
        "{e}"
    );
    touch(&b.path, &["blkio.weight"]);
    let w = writes(&resources::plan(&dirs, &r, &sys, false).unwrap());
    assert_eq!(w, vec![("blkio.weight".into(), "300".into())]);
    // Leaf weights are obsolete: a warning, not a silent drop.
    let r = res(json!({"blockIO": {"leafWeight": 300}}));
    let p = resources::plan(&dirs, &r, &sys, false).unwrap();
    assert!(p.ops.is_empty());
    assert!(p.warnings[0].contains("leaf_weight"), "{:?}", p.warnings);
}

// ---------------------------------------------------------------- validation

#[test]
fn validation_errors_name_field_and_reason() {
    let f = Fake::new();
    let dirs = hybrid_container(&f);
    let sys = f.sys();
    let pids_max = dir(&dirs, "pids").file("pids.max");
    let cases = [
        (
            json!({"pids": {"limit": 5}, "hugepageLimits": [{"pageSize": "4MB", "limit": 1}]}),
            "not a huge page size of this host (it has: 1GB, 2MB)",
        ),
        (
            json!({"pids": {"limit": 5}, "unified": {"memory.max": "100"}}),
            "memory is a cgroup v1 controller on this host",
        ),
        (
            json!({"unified": {"../memory.max": "1"}}),
            "not a cgroup v2 interface file name",
        ),
        (
            json!({"unified": {"rdma.max": "1"}}),
            "rdma controller is not available in cgroup v2",
        ),
        (
            json!({"network": {"classID": 1}}),
            "no net_cls v1 hierarchy on this host",
        ),
        (
            json!({"rdma": {"mlx5_0": {"hcaHandles": 1}}}),
            "no rdma controller",
        ),
        (json!({"cpu": {"shares": 1}}), "must be 2..=262144"),
        (json!({"cpu": {"cpus": "0-1;rm"}}), "not a list"),
        (
            json!({"memory": {"limit": -5}}),
            "linux.resources.memory.limit",
        ),
        (json!({"memory": {"swappiness": 101}}), "0..=100"),
        (json!({"blockIO": {"weight": 5}}), "10..=1000"),
        (
            json!({"devices": [{"allow": true, "type": "p"}]}),
            "linux.resources.devices[0]",
        ),
    ];
    for (v, want) in cases {
        let e = resources::apply_with(&dirs, &res(v.clone()), &sys, false).unwrap_err();
        assert!(e.to_string().contains(want), "{v}: {e}");
        // Validation comes first: nothing was written.
        assert_eq!(read(&pids_max), "", "{v} wrote pids.max");
    }
    // A v2 controller not enabled for the container (parent's subtree_control lacks it).
    let v2 = dir(&dirs, "hugetlb");
    fs::write(v2.file("cgroup.controllers"), "").unwrap();
    let e = resources::plan(
        &dirs,
        &res(json!({"hugepageLimits": [{"pageSize": "2MB", "limit": 1}]})),
        &sys,
        false,
    )
    .unwrap_err();
    assert!(e.to_string().contains("not enabled"), "{e}");
    // Swap without accounting.
    fs::remove_file(dir(&dirs, "memory").file("memory.memsw.limit_in_bytes")).unwrap();
    let e = resources::plan(
        &dirs,
        &res(json!({"memory": {"limit": 100, "swap": 200}})),
        &sys,
        false,
    )
    .unwrap_err();
    assert!(e.to_string().contains("swap accounting"), "{e}");
}

#[test]
fn missing_controller_on_legacy_host() {
    let f = Fake::new();
    for m in ["systemd", "cpu,cpuacct", "memory", "devices", "freezer"] {
        fs::create_dir_all(f.p(&format!("sys/fs/cgroup/{m}"))).unwrap();
    }
    let h = f.host(MI_CENTOS, CG_CENTOS);
    let mut dirs = h.plan(None, "c1").unwrap();
    try_create(&mut dirs).unwrap();
    let e = apply_resources(&dirs, &res(json!({"pids": {"limit": 5}}))).unwrap_err();
    assert_eq!(
        e.to_string(),
        "linux.resources.pids: no pids controller on this host (no v1 hierarchy mounts it and \
         cgroup v2 does not offer pids)"
    );
    let e = apply_resources(&dirs, &res(json!({"unified": {"pids.max": "5"}}))).unwrap_err();
    assert!(e.to_string().contains("no cgroup v2 hierarchy"), "{e}");
}

// ---------------------------------------------------------------- apply v2

fn unified_container(f: &Fake) -> Vec<Dir> {
    let all = "cpuset cpu io memory hugetlb pids rdma";
    f.put("sys/fs/cgroup/cgroup.controllers", all);
    f.put("sys/fs/cgroup/cgroup.subtree_control", "");
    let h = f.host(MI_FEDORA, CG_FEDORA);
    let mut dirs = h.plan(Some(Path::new("/machine/c1")), "c1").unwrap();
    try_create(&mut dirs).unwrap();
    assert_eq!(dirs.len(), 1);
    let d = &dirs[0];
    fs::write(d.file("cgroup.controllers"), all).unwrap();
    touch(
        &d.path,
        &[
            "memory.max",
            "memory.swap.max",
            "memory.low",
            "memory.high",
            "memory.current",
            "cpu.weight",
            "cpu.max.burst",
            "cpu.idle",
            "cpuset.cpus",
            "cpuset.mems",
            "io.weight",
            "io.max",
            "hugetlb.2MB.max",
            "pids.max",
            "rdma.max",
            "cgroup.freeze",
        ],
    );
    fs::write(d.file("cpu.max"), "max 100000\n").unwrap();
    dirs
}

#[test]
fn apply_v2_converts_and_writes() {
    let f = Fake::new();
    let dirs = unified_container(&f);
    let sys = f.sys();
    // create enabled the controllers in the root and the made ancestor (fake: the root only
    // offers them, so only it is written).
    assert_eq!(
        f.get("sys/fs/cgroup/cgroup.subtree_control"),
        "+cpuset +cpu +io +memory +hugetlb +pids +rdma"
    );
    let r = res(json!({
        "memory": {"limit": 100000000, "swap": 300000000, "reservation": 50000000},
        "pids": {"limit": 0},
        "cpu": {"shares": 1024, "quota": 50000, "burst": 1000, "cpus": "1", "idle": 1},
        "blockIO": {"weight": 500,
                    "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1048576}],
                    "throttleWriteIOPSDevice": [{"major": 8, "minor": 0, "rate": 100}],
                    "throttleWriteBpsDevice": [{"major": 8, "minor": 16, "rate": 0}]},
        "hugepageLimits": [{"pageSize": "2MB", "limit": -1}],
        "rdma": {"mlx5_0": {"hcaHandles": 3}},
        "unified": {"memory.high": "90000000"}
    }));
    let plan = resources::plan(&dirs, &r, &sys, false).unwrap();
    let io_max: Vec<_> = writes(&plan)
        .into_iter()
        .filter(|(n, _)| n == "io.max")
        .map(|(_, v)| v)
        .collect();
    assert_eq!(io_max, vec!["8:0 rbps=1048576 wiops=100", "8:16 wbps=max"]);
    resources::apply_with(&dirs, &r, &sys, false).unwrap();
    let g = |n: &str| read(&dirs[0].file(n));
    assert_eq!(g("memory.max"), "100000000");
    assert_eq!(g("memory.swap.max"), "200000000");
    assert_eq!(g("memory.low"), "50000000");
    assert_eq!(g("pids.max"), "max");
    assert_eq!(g("cpu.weight"), "39"); // 1 + (1022 * 9999) / 262142
    assert_eq!(g("cpu.max"), "50000 100000");
    assert_eq!(g("cpu.max.burst"), "1000");
    assert_eq!(g("cpu.idle"), "1");
    assert_eq!(g("cpuset.cpus"), "1");
    assert_eq!(g("io.weight"), "4950"); // 1 + (500 - 10) * 9999 / 990
    assert_eq!(g("hugetlb.2MB.max"), "max");
    assert_eq!(g("rdma.max"), "mlx5_0 hca_handle=3 hca_object=max");
    assert_eq!(g("memory.high"), "90000000");

    // update: only what is set; quota -1 → max, keeping the period in effect.
    fs::write(dirs[0].file("cpu.max"), "50000 20000\n").unwrap();
    update(&dirs, &res(json!({"cpu": {"quota": -1}}))).unwrap();
    assert_eq!(g("cpu.max"), "max 20000");
    assert_eq!(g("memory.max"), "100000000");
    update(&dirs, &res(json!({"memory": {"limit": -1}}))).unwrap();
    assert_eq!(g("memory.max"), "max");
    assert_eq!(g("memory.swap.max"), "max");
}

#[test]
fn v2_refuses_v1_only_knobs() {
    let f = Fake::new();
    let dirs = unified_container(&f);
    let sys = f.sys();
    let e = resources::plan(
        &dirs,
        &res(json!({"cpu": {"realtimeRuntime": 1000}})),
        &sys,
        false,
    )
    .unwrap_err();
    assert!(e.to_string().contains("cgroup v1 knobs (cpu.rt_*)"), "{e}");
    let e = resources::plan(
        &dirs,
        &res(json!({"memory": {"swappiness": 5}})),
        &sys,
        false,
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("memory.swappiness is a cgroup v1 knob"),
        "{e}"
    );
    let e = resources::plan(
        &dirs,
        &res(json!({"network": {"priorities": [{"name": "eth0", "priority": 1}]}})),
        &sys,
        false,
    )
    .unwrap_err();
    assert!(e.to_string().contains("cgroup v2 has no net_prio"), "{e}");
    let e =
        resources::plan(&dirs, &res(json!({"memory": {"swap": 100}})), &sys, false).unwrap_err();
    assert!(e.to_string().contains("needs a memory limit"), "{e}");
    let p = resources::plan(
        &dirs,
        &res(json!({"memory": {"disableOOMKiller": true}})),
        &sys,
        false,
    )
    .unwrap();
    assert!(p.ops.is_empty() && p.warnings[0].contains("OOM killer"));
    // No kernel TCP limit in v2: warned about, not applied.
    let p = resources::plan(
        &dirs,
        &res(json!({"memory": {"kernelTCP": 1048576}})),
        &sys,
        false,
    )
    .unwrap();
    assert!(p.ops.is_empty(), "{:?}", p.ops);
    assert!(p.warnings[0].contains("kernelTCP"), "{:?}", p.warnings);
    let e = resources::plan(
        &dirs,
        &res(json!({"memory": {"kernelTCP": -2}})),
        &sys,
        false,
    )
    .unwrap_err();
    assert!(e.to_string().contains("kernelTCP"), "{e}");
}

#[test]
fn v2_devices_become_a_bpf_program() {
    let f = Fake::new();
    let dirs = unified_container(&f);
    let sys = f.sys();
    let r = res(json!({"devices": [{"allow": false, "access": "rwm"},
                                   {"allow": true, "type": "c", "major": 4, "minor": 1, "access": "r"}]}));
    let plan = resources::plan(&dirs, &r, &sys, false).unwrap();
    let [Op::Bpf { dir, prog, replace }] = &plan.ops[..] else {
        panic!("{:?}", plan.ops)
    };
    assert_eq!(dir, Path::new(&dirs[0].path));
    assert!(!replace);
    let run = |t, ma, mi, a| devices_bpf::run(prog, t, ma, mi, a).unwrap();
    assert!(run(DevType::Char, 4, 1, ACC_READ));
    assert!(!run(DevType::Char, 4, 1, ACC_READ | ACC_WRITE));
    assert!(run(DevType::Char, 1, 3, ACC_READ | ACC_WRITE)); // default /dev/null
    assert!(run(DevType::Block, 8, 0, ACC_MKNOD)); // default mknod
    assert!(!run(DevType::Block, 8, 0, ACC_READ));
    // update replaces the previous program.
    let plan = resources::plan(&dirs, &r, &sys, true).unwrap();
    assert!(matches!(&plan.ops[0], Op::Bpf { replace: true, .. }));
}

#[test]
fn conversions() {
    assert_eq!(v2::shares_to_weight(0), 0);
    assert_eq!(v2::shares_to_weight(2), 1);
    assert_eq!(v2::shares_to_weight(1024), 39);
    assert_eq!(v2::shares_to_weight(262_144), 10_000);
    assert_eq!(v2::blkio_weight_to_io(10), 1);
    assert_eq!(v2::blkio_weight_to_io(1000), 10_000);
    assert_eq!(v2::swap_max(0, 100), Ok(None));
    assert_eq!(v2::swap_max(0, -1), Ok(Some(-1)));
    assert_eq!(v2::swap_max(-1, 100), Ok(Some(-1)));
    assert_eq!(v2::swap_max(300, 100), Ok(Some(200)));
    assert!(v2::swap_max(50, 100).is_err());
    assert_eq!(resources::page_size_name(2048), "2MB");
    assert_eq!(resources::page_size_name(1_048_576), "1GB");
    assert_eq!(resources::page_size_name(64), "64KB");
}

// ---------------------------------------------------------------- devices

fn rule(allow: bool, typ: DevType, major: Option<u32>, minor: Option<u32>, access: u8) -> Rule {
    Rule {
        allow,
        typ,
        major,
        minor,
        access,
    }
}

/// The generated program agrees with the emulated v1 semantics on every probe.
fn check_program(rules: &[Rule]) -> Emulator {
    let emu = Emulator::from_rules(rules);
    let Some(prog) = devices_bpf::program(&emu) else {
        assert!(emu.default_allow && emu.exceptions.is_empty());
        return emu;
    };
    for typ in [DevType::Char, DevType::Block] {
        for (ma, mi) in [(1, 3), (4, 1), (4, 2), (8, 0), (136, 5), (10, 200)] {
            for acc in 1..=7u8 {
                assert_eq!(
                    devices_bpf::run(&prog, typ, ma, mi, acc),
                    Some(emu.allows(typ, ma, mi, acc)),
                    "{typ:?} {ma}:{mi} acc {acc} with {emu:?}"
                );
            }
        }
    }
    emu
}

#[test]
fn device_emulator_and_program() {
    use DevType::*;
    let all = ACC_READ | ACC_WRITE | ACC_MKNOD;
    // Deny-all, then allow read of c 4:1 and everything of c 1:*.
    let emu = check_program(&[
        rule(false, All, None, None, all),
        rule(true, Char, Some(4), Some(1), ACC_READ),
        rule(true, Char, Some(1), None, all),
    ]);
    assert!(!emu.default_allow);
    assert!(emu.allows(Char, 4, 1, ACC_READ));
    assert!(!emu.allows(Char, 4, 1, ACC_WRITE));
    assert!(!emu.allows(Char, 4, 1, ACC_READ | ACC_WRITE));
    assert!(emu.allows(Char, 1, 77, all));
    assert!(!emu.allows(Block, 1, 3, ACC_READ));
    // Allow-all with a write deny: any overlap denies.
    let emu = check_program(&[rule(false, Char, Some(4), Some(1), ACC_WRITE)]);
    assert!(emu.allows(Char, 4, 1, ACC_READ));
    assert!(!emu.allows(Char, 4, 1, ACC_READ | ACC_WRITE));
    // An allow agreeing with the default takes bits out of an identical exception.
    let emu = check_program(&[
        rule(false, Char, Some(4), Some(1), all),
        rule(true, Char, Some(4), Some(1), ACC_READ),
    ]);
    assert!(emu.allows(Char, 4, 1, ACC_READ));
    assert!(!emu.allows(Char, 4, 1, ACC_WRITE));
    // Allow-all resets, and the program is then not needed.
    let emu = check_program(&[
        rule(false, All, None, None, all),
        rule(true, Char, Some(1), Some(3), all),
        rule(true, All, None, None, all),
    ]);
    assert!(emu.default_allow && emu.exceptions.is_empty());
    // The defaults after a deny-all.
    let mut rules = vec![rule(false, All, None, None, all)];
    rules.extend(devices::DEFAULT_ALLOWED.iter().cloned());
    let emu = check_program(&rules);
    assert!(emu.allows(Char, 136, 5, all));
    assert!(!emu.allows(Char, 4, 2, ACC_READ));
    assert!(emu.allows(Block, 8, 0, ACC_MKNOD));
    // v1 lines.
    assert_eq!(rule(false, All, None, None, all).v1_line(), "a");
    assert_eq!(
        rule(true, Char, None, Some(3), ACC_READ | ACC_MKNOD).v1_line(),
        "c *:3 rm"
    );
}

// ---------------------------------------------------------------- stats, oom, freezer

#[test]
fn stats_v1_and_oom_kills() {
    let f = Fake::new();
    let dirs = hybrid_container(&f);
    let mem = dir(&dirs, "memory");
    fs::write(mem.file("memory.usage_in_bytes"), "4096\n").unwrap();
    fs::write(mem.file("memory.limit_in_bytes"), "104857600\n").unwrap();
    fs::write(mem.file("memory.memsw.limit_in_bytes"), "209715200\n").unwrap();
    fs::write(mem.file("memory.failcnt"), "3\n").unwrap();
    fs::write(
        mem.file("memory.stat"),
        "cache 8192\nrss 4096\ntotal_cache 8192\n",
    )
    .unwrap();
    fs::write(
        mem.file("memory.oom_control"),
        "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
    )
    .unwrap();
    let acct = dir(&dirs, "cpuacct");
    fs::write(acct.file("cpuacct.usage"), "123456789\n").unwrap();
    fs::write(acct.file("cpuacct.usage_percpu"), "100 200 \n").unwrap();
    fs::write(
        acct.file("cpuacct.usage_all"),
        "cpu user system\n0 60 40\n1 150 50\n",
    )
    .unwrap();
    fs::write(acct.file("cpuacct.stat"), "user 5\nsystem 2\n").unwrap();
    fs::write(
        dir(&dirs, "cpu").file("cpu.stat"),
        "nr_periods 10\nnr_throttled 4\nthrottled_time 5000\n",
    )
    .unwrap();
    let p = dir(&dirs, "pids");
    fs::write(p.file("pids.current"), "7\n").unwrap();
    fs::write(p.file("pids.max"), "max\n").unwrap();
    fs::write(
        dir(&dirs, "blkio").file("blkio.throttle.io_service_bytes_recursive"),
        "8:0 Read 4096\n8:0 Write 8192\nTotal 12288\n",
    )
    .unwrap();
    let v2 = dir(&dirs, "hugetlb");
    fs::write(v2.file("hugetlb.2MB.current"), "2097152\n").unwrap();
    fs::write(v2.file("hugetlb.2MB.events"), "max 1\n").unwrap();

    let s = stats(&dirs);
    assert_eq!(s.memory.usage.usage, 4096);
    assert_eq!(s.memory.usage.limit, 104857600);
    assert_eq!(s.memory.usage.failcnt, 3);
    assert_eq!(s.memory.swap.limit, 209715200);
    assert_eq!(s.memory.cache, 8192);
    assert_eq!(s.memory.raw["rss"], 4096);
    assert_eq!(s.cpu.usage.total, 123456789);
    assert_eq!(s.cpu.usage.percpu, vec![100, 200]);
    assert_eq!(s.cpu.usage.percpu_user, vec![60, 150]);
    assert_eq!(s.cpu.usage.percpu_kernel, vec![40, 50]);
    assert_eq!(s.cpu.usage.user, 50_000_000);
    assert_eq!(s.cpu.usage.kernel, 20_000_000);
    assert_eq!(s.cpu.throttling.throttled_periods, 4);
    assert_eq!(s.cpu.throttling.throttled_time, 5000);
    assert_eq!(s.pids.current, 7);
    assert_eq!(s.pids.limit, 0);
    assert_eq!(s.blkio.io_service_bytes_recursive.len(), 2);
    assert_eq!(s.blkio.io_service_bytes_recursive[1].op, "Write");
    assert_eq!(s.hugetlb["2MB"].usage, 2097152);
    assert_eq!(s.hugetlb["2MB"].failcnt, 1);
    assert_eq!(s.hugetlb.len(), 1);
    assert_eq!(oom_kills(&dirs), 2);
    let j = serde_json::to_value(&s).unwrap();
    assert_eq!(j["cpu"]["throttling"]["throttledPeriods"], 4);
    assert_eq!(j["memory"]["usage"]["limit"], 104857600);
    // Missing files: zeros, no panic.
    assert_eq!(stats(&[]), Stats::default());
}

#[test]
fn stats_v2_and_oom_kills() {
    let f = Fake::new();
    let dirs = unified_container(&f);
    let d = &dirs[0];
    fs::write(d.file("memory.current"), "1000\n").unwrap();
    fs::write(d.file("memory.max"), "max\n").unwrap();
    fs::write(d.file("memory.stat"), "anon 500\nfile 300\n").unwrap();
    fs::write(
        d.file("memory.events"),
        "low 0\nhigh 0\nmax 9\noom 2\noom_kill 1\n",
    )
    .unwrap();
    fs::write(
        d.file("cpu.stat"),
        "usage_usec 10\nuser_usec 6\nsystem_usec 4\nnr_periods 3\nnr_throttled 1\nthrottled_usec 7\n",
    )
    .unwrap();
    fs::write(d.file("pids.current"), "2\n").unwrap();
    fs::write(d.file("pids.max"), "100\n").unwrap();
    fs::write(
        d.file("io.stat"),
        "8:0 rbytes=4096 wbytes=512 rios=2 wios=1 dbytes=0 dios=0\n",
    )
    .unwrap();
    let s = stats(&dirs);
    assert_eq!(s.memory.usage.usage, 1000);
    assert_eq!(s.memory.usage.limit, u64::MAX);
    assert_eq!(s.memory.usage.failcnt, 9);
    assert_eq!(s.memory.cache, 300);
    assert_eq!(s.cpu.usage.total, 10_000);
    assert_eq!(s.cpu.usage.kernel, 4_000);
    assert_eq!(s.cpu.throttling.throttled_time, 7_000);
    assert_eq!(s.pids.limit, 100);
    let reads: Vec<_> = s
        .blkio
        .io_service_bytes_recursive
        .iter()
        .map(|e| (e.major, e.minor, e.op.as_str(), e.value))
        .collect();
    assert_eq!(reads[..2], [(8, 0, "Read", 4096), (8, 0, "Write", 512)]);
    assert_eq!(s.blkio.io_serviced_recursive[0].value, 2);
    assert_eq!(oom_kills(&dirs), 1);
}

#[test]
fn freeze_v1_fake() {
    let f = Fake::new();
    let dirs = hybrid_container(&f);
    let fz = dir(&dirs, "freezer");
    fs::write(fz.file("freezer.state"), "THAWED\n").unwrap();
    assert!(!is_frozen(&dirs));
    freeze(&dirs).unwrap();
    assert_eq!(read(&fz.file("freezer.state")), "FROZEN");
    assert!(is_frozen(&dirs));
    // The v1 freezer is preferred: the v2 cgroup.freeze is untouched.
    assert_eq!(read(&dir(&dirs, "hugetlb").file("cgroup.freeze")), "");
    thaw(&dirs).unwrap();
    assert_eq!(read(&fz.file("freezer.state")), "THAWED");
}

#[test]
fn freeze_v2_fake_waits_for_events() {
    let f = Fake::new();
    let dirs = unified_container(&f);
    let events = dirs[0].file("cgroup.events");
    fs::write(&events, "populated 1\nfrozen 0\n").unwrap();
    // The "kernel" reports frozen a little later.
    let ev = events.clone();
    let flip = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(60));
        fs::write(ev, "populated 1\nfrozen 1\n").unwrap();
    });
    let t = std::time::Instant::now();
    freeze(&dirs).unwrap();
    assert!(t.elapsed() >= Duration::from_millis(50), "did not wait");
    flip.join().unwrap();
    assert_eq!(read(&dirs[0].file("cgroup.freeze")), "1");
    assert!(is_frozen(&dirs));
    // Never reported thawed: a timeout error naming cgroup.events.
    let e = set_frozen(&dirs, false, Duration::from_millis(50)).unwrap_err();
    assert!(matches!(e, CgroupError::Timeout { .. }));
    assert!(e.to_string().contains("cgroup.events"), "{e}");
    // And a freeze that never completes is undone.
    fs::write(&events, "populated 1\nfrozen 0\n").unwrap();
    assert!(set_frozen(&dirs, true, Duration::from_millis(30)).is_err());
    assert_eq!(read(&dirs[0].file("cgroup.freeze")), "0");
}

// ---------------------------------------------------------------- the real host

/// The real host when it is hybrid with hugetlb in v2 and a pids v1 hierarchy, and we are root.
fn real_hybrid() -> Option<Layout> {
    if crate::sys::geteuid() != 0 {
        eprintln!("skipped: not root");
        return None;
    }
    let l = Host::real().layout();
    if l.mode != Mode::Hybrid
        || l.holder("pids").is_none_or(|h| h.version != 1)
        || l.holder("hugetlb").is_none_or(|h| h.version != 2)
    {
        eprintln!("skipped: host is not hybrid with v1 pids and v2 hugetlb ({l:?})");
        return None;
    }
    Some(l)
}

static REAL_HOST: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Runs `f` (one real-host test at a time), then restores the v2 root's `cgroup.subtree_control` (create enables the v2
/// controllers there, as runc does; the tests leave the host as they found it).
fn keeping_v2_root<T>(f: impl FnOnce() -> T) -> T {
    let _one_at_a_time = REAL_HOST.lock().unwrap_or_else(|e| e.into_inner());
    let root = Host::real()
        .layout()
        .unified()
        .map(|h| h.mountpoint.join("cgroup.subtree_control"));
    let before = root
        .as_ref()
        .and_then(|p| fs::read_to_string(p).ok())
        .unwrap_or_default();
    let out = f();
    if let Some(p) = root {
        let now = fs::read_to_string(&p).unwrap_or_default();
        for c in now.split_whitespace() {
            if !before.split_whitespace().any(|b| b == c) {
                let _ = fs::write(&p, format!("-{c}"));
            }
        }
    }
    out
}

fn leftovers(name: &str) -> Vec<String> {
    Host::real()
        .layout()
        .hierarchies
        .iter()
        .map(|h| h.mountpoint.join(name))
        .filter(|p| p.exists())
        .map(|p| p.display().to_string())
        .collect()
}

#[test]
fn real_host_hybrid_pids_and_hugetlb() {
    let Some(_) = real_hybrid() else { return };
    let name = format!("tinyo-cgtest-{}", std::process::id());
    let path = PathBuf::from("/").join(&name).join("c");
    let (result, left) = keeping_v2_root(|| {
        let mut dirs = try_plan(Some(&path), "c").unwrap();
        try_create(&mut dirs).unwrap();
        let run = || -> Result<(), String> {
            let r = res(json!({
                "pids": {"limit": 42},
                "hugepageLimits": [{"pageSize": "2MB", "limit": 4194304}],
                "memory": {"limit": 67108864},
                "cpu": {"shares": 512, "quota": 20000, "period": 100000, "cpus": "0"},
            }));
            let w = apply_resources(&dirs, &r).map_err(|e| format!("{e:#?}"))?;
            if !w.is_empty() {
                return Err(format!("warnings {w:?}"));
            }
            let binds = mount_binds(&dirs);
            let v2 = dir(&dirs, "hugetlb");
            if !binds.contains(&(v2.mountpoint.clone(), v2.path.clone())) {
                return Err(format!("the v2 dir is not bound: {binds:?}"));
            }
            let pids = read(&dir(&dirs, "pids").file("pids.max"));
            let huge = read(&dir(&dirs, "hugetlb").file("hugetlb.2MB.max"));
            let mem = read(&dir(&dirs, "memory").file("memory.limit_in_bytes"));
            let cpus = read(&dir(&dirs, "cpuset").file("cpuset.cpus"));
            if pids.trim() != "42" || huge.trim() != "4194304" || mem.trim() != "67108864" {
                return Err(format!("read back {pids:?} {huge:?} {mem:?}"));
            }
            if cpus.trim() != "0" {
                return Err(format!("cpuset.cpus {cpus:?}"));
            }
            // Validation against the real kernel: memory is v1 here.
            let e = apply_resources(&dirs, &res(json!({"unified": {"memory.max": "1"}})))
                .err()
                .ok_or("unified memory.max accepted")?;
            if !e.to_string().contains("v1 controller") {
                return Err(e.to_string());
            }
            // Freeze/thaw with the v1 freezer and an empty cgroup; stats read.
            freeze(&dirs).map_err(|e| e.to_string())?;
            if !is_frozen(&dirs) {
                return Err("not frozen".into());
            }
            thaw(&dirs).map_err(|e| e.to_string())?;
            let s = stats(&dirs);
            if s.pids.limit != 42 || s.memory.usage.limit != 67108864 {
                return Err(format!("stats {s:?}"));
            }
            Ok(())
        };
        let result = run();
        remove(&dirs);
        let left = leftovers(&name);
        (result, left)
    });
    result.unwrap();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn real_host_oom_watch_and_kill_all() {
    let Some(_) = real_hybrid() else { return };
    let name = format!("tinyo-cgtest-{}-oom", std::process::id());
    let (result, left) = keeping_v2_root(|| {
        let mut dirs = try_plan(Some(&PathBuf::from("/").join(&name)), "x").unwrap();
        try_create(&mut dirs).unwrap();
        let run = || -> Result<(), String> {
            apply_resources(&dirs, &res(json!({"memory": {"limit": 16777216}})))
                .map_err(|e| e.to_string())?;
            let mut w = OomWatcher::new(&dirs).map_err(|e| e.to_string())?;
            let procs: Vec<String> = dirs
                .iter()
                .map(|d| format!("echo $$ > {}/cgroup.procs", d.path))
                .collect();
            // Buffers 64 MiB without a newline: the OOM killer takes it.
            let st = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!(
                    "{} && head -c 67108864 /dev/zero | tail > /dev/null",
                    procs.join(" && ")
                ))
                .status()
                .map_err(|e| e.to_string())?;
            if st.success() {
                return Err("the memory hog was not killed".into());
            }
            if !w
                .wait(Some(Duration::from_secs(5)))
                .map_err(|e| e.to_string())?
            {
                return Err("no OOM event".into());
            }
            if oom_kills(&dirs) < 1 {
                return Err("oom_kill count is 0".into());
            }
            // kill_all: a sleeper in the container is gone after SIGKILL via cgroup.kill.
            let mut child = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!("{} && exec sleep 30", procs.join(" && ")))
                .spawn()
                .map_err(|e| e.to_string())?;
            for _ in 0..200 {
                if !pids(&dirs).is_empty() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            kill_all(&dirs, libc::SIGKILL).map_err(|e| e.to_string())?;
            let st = child.wait().map_err(|e| e.to_string())?;
            use std::os::unix::process::ExitStatusExt;
            if st.signal() != Some(libc::SIGKILL) {
                return Err(format!("sleeper ended with {st:?}"));
            }
            Ok(())
        };
        let result = run();
        remove(&dirs);
        let left = leftovers(&name);
        (result, left)
    });
    result.unwrap();
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// `remove` kills what is left in the container's cgroups, frozen or not, in child cgroups
/// too, and then removes them all: nothing outlives a deleted container.
#[test]
fn real_host_remove_kills_leftovers_even_frozen() {
    let Some(_) = real_hybrid() else { return };
    let name = format!("tinyo-cgtest-{}-rm", std::process::id());
    let (result, left) = keeping_v2_root(|| {
        let mut dirs = try_plan(Some(&PathBuf::from("/").join(&name).join("c")), "c").unwrap();
        try_create(&mut dirs).unwrap();
        let run = || -> Result<(), String> {
            let procs: Vec<String> = dirs
                .iter()
                .map(|d| format!("echo 0 > {}/cgroup.procs", d.path))
                .collect();
            // An orphan (its parent shell exits) and one in a child cgroup of the freezer.
            let freezer = dir(&dirs, "freezer").path.clone();
            let st = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!(
                    "{} && mkdir {freezer}/sub || exit 1; sleep 60 & \
                     (echo 0 > {freezer}/sub/cgroup.procs && exec sleep 60) &",
                    procs.join(" && ")
                ))
                .status()
                .map_err(|e| e.to_string())?;
            if !st.success() {
                return Err(format!("setup shell: {st:?}"));
            }
            let own: Vec<&Dir> = dirs.iter().collect();
            for _ in 0..400 {
                if members(&own).len() >= 2 {
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            let before = members(&own);
            if before.len() < 2 {
                return Err(format!("sleepers not seen: {before:?}"));
            }
            freeze(&dirs).map_err(|e| e.to_string())?;
            remove(&dirs);
            let alive: Vec<i32> = before
                .iter()
                .copied()
                .filter(|p| {
                    fs::read_to_string(format!("/proc/{p}/stat")).is_ok_and(|s| !s.contains(") Z "))
                })
                .collect();
            if !alive.is_empty() {
                return Err(format!("still alive after remove: {alive:?}"));
            }
            Ok(())
        };
        let result = run();
        remove(&dirs);
        for h in Host::real().layout().hierarchies {
            let _ = fs::remove_dir(h.mountpoint.join(&name));
        }
        let left = leftovers(&name);
        (result, left)
    });
    result.unwrap();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn real_host_bpf_device_program() {
    if real_hybrid().is_none() {
        return;
    }
    let Some(v2) = Host::real().layout().unified().cloned() else {
        return;
    };
    let d = v2
        .mountpoint
        .join(format!("tinyo-cgtest-{}-bpf", std::process::id()));
    fs::create_dir(&d).unwrap();
    let run = || -> Result<(), String> {
        let all = devices::ACC_ALL;
        let emu = Emulator::from_rules(&[
            rule(false, DevType::All, None, None, all),
            rule(true, DevType::Char, Some(1), Some(5), all), // /dev/zero
        ]);
        let prog = devices_bpf::program(&emu).ok_or("no program")?;
        devices_bpf::attach(&d, &prog, false).map_err(|e| format!("{e:#?}"))?;
        // Replacing (update) leaves exactly one working program.
        devices_bpf::attach(&d, &prog, true).map_err(|e| format!("{e:#?}"))?;
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "echo $$ > {}/cgroup.procs && head -c 3 /dev/zero | wc -c && cat /dev/null",
                d.display()
            ))
            .output()
            .map_err(|e| e.to_string())?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if stdout.trim() != "3" || out.status.success() || !stderr.contains("not permitted") {
            return Err(format!("{:?} out {stdout:?} err {stderr:?}", out.status));
        }
        Ok(())
    };
    let result = run();
    for _ in 0..100 {
        if fs::remove_dir(&d).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    result.unwrap();
    assert!(!d.exists(), "left behind: {}", d.display());
}
