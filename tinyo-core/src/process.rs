//! The container process's own settings, applied in the cloned child after the filesystem:
//! hostname, sysctl, rlimits, oom score, user and groups, capabilities, no_new_privs, cwd,
//! umask, and the executable looked up on the container's PATH.

use std::collections::HashSet;
use std::ffi::CString;
use std::io;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{Capabilities, Spec};

use crate::sys;

/// Docker's default capability set: what tinyo-shim gives containers, and the set podman's
/// seccomp profile is evaluated against for the default profile.
pub const DOCKER_DEFAULT_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Capability names in kernel order (`CAP_CHOWN` is 0).
pub const CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

const RLIMITS: &[&str] = &[
    "RLIMIT_CPU",
    "RLIMIT_FSIZE",
    "RLIMIT_DATA",
    "RLIMIT_STACK",
    "RLIMIT_CORE",
    "RLIMIT_RSS",
    "RLIMIT_NPROC",
    "RLIMIT_NOFILE",
    "RLIMIT_MEMLOCK",
    "RLIMIT_AS",
    "RLIMIT_LOCKS",
    "RLIMIT_SIGPENDING",
    "RLIMIT_MSGQUEUE",
    "RLIMIT_NICE",
    "RLIMIT_RTPRIO",
    "RLIMIT_RTTIME",
];

/// The serde name of a spec enum value (`"CAP_CHOWN"`, `"RLIMIT_NOFILE"`).
fn serde_name<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// A capability set as a bit mask (kernel numbering).
pub fn cap_mask(set: Option<&Capabilities>) -> u64 {
    let mut mask = 0;
    for c in set.into_iter().flatten() {
        if let Some(bit) = CAPS.iter().position(|n| *n == serde_name(c)) {
            mask |= 1u64 << bit;
        }
    }
    mask
}

/// Everything the child needs, computed in the parent before cloning (so errors in the spec
/// surface before any process exists).
#[derive(Debug, Clone, Default)]
pub struct ProcessPlan {
    pub hostname: Option<String>,
    pub domainname: Option<String>,
    pub sysctl: Vec<(String, String)>,
    pub rlimits: Vec<(libc::c_int, u64, u64)>,
    pub oom_score_adj: Option<i32>,
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub umask: Option<u32>,
    /// bounding, effective, permitted, inheritable, ambient.
    pub caps: Option<[u64; 5]>,
    pub no_new_privileges: bool,
    pub cwd: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<String>,
    /// Descriptors 3..3+N are passed on through exec (`--preserve-fds N`).
    pub preserve_fds: u32,
    /// AppArmor/SELinux labels for the exec (only those this host enforces).
    pub labels: crate::lsm::Labels,
    /// `process.ioPriority` as ioprio_set(2)'s value (class << 13 | level).
    pub io_priority: Option<u32>,
    /// `process.scheduler` as sched_setattr(2)'s attributes.
    pub scheduler: Option<sys::SchedAttr>,
    /// `linux.personality` as personality(2)'s persona.
    pub personality: Option<u32>,
}

/// Why a spec's process section cannot be run.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("process.rlimits: unknown limit {0:?}")]
    Rlimit(String),
    #[error("{field}: {why}")]
    Invalid { field: &'static str, why: String },
    #[error("linux.sysctl: {0:?} is not a valid key")]
    Sysctl(String),
    #[error("the config has no process to run")]
    NoProcess,
    /// runc's words (Go's `exec.LookPath`), which podman and others map to exit code 127.
    #[error("exec: {0:?}: executable file not found in $PATH")]
    NotFound(String),
    /// A path that does not resolve (127 for podman): `stat PATH: no such file or directory`.
    #[error("exec: {arg:?}: stat {path}: {why}")]
    Missing {
        arg: String,
        path: String,
        why: String,
    },
    /// A directory, a file without execute permission or on a noexec mount (126).
    #[error("exec: {0:?}: permission denied")]
    Denied(String),
}

impl ProcessPlan {
    /// Translates the spec's process section.
    pub fn from_spec(spec: &Spec) -> Result<Self, ProcessError> {
        let process = spec.process().as_ref().ok_or(ProcessError::NoProcess)?;
        let mut p = ProcessPlan {
            hostname: spec.hostname().clone(),
            domainname: spec.domainname().clone(),
            cwd: process.cwd().clone(),
            args: process.args().clone().unwrap_or_default(),
            env: process.env().clone().unwrap_or_default(),
            no_new_privileges: process.no_new_privileges().unwrap_or(false),
            oom_score_adj: process.oom_score_adj(),
            ..Default::default()
        };
        let user = process.user();
        p.uid = user.uid();
        p.gid = user.gid();
        // Duplicates are dropped, as runc does, before they reach setgroups(2).
        for g in user.additional_gids().iter().flatten() {
            if !p.additional_gids.contains(g) {
                p.additional_gids.push(*g);
            }
        }
        p.umask = user.umask();
        for r in process.rlimits().iter().flatten() {
            let name = serde_name(&r.typ());
            let n = RLIMITS
                .iter()
                .position(|x| *x == name)
                .ok_or(ProcessError::Rlimit(name))?;
            p.rlimits.push((n as libc::c_int, r.soft(), r.hard()));
        }
        if let Some(sysctl) = spec.linux().as_ref().and_then(|l| l.sysctl().as_ref()) {
            for (k, v) in sysctl {
                if k.is_empty() || k.contains("..") || k.contains('/') && k.contains('.') {
                    return Err(ProcessError::Sysctl(k.clone()));
                }
                p.sysctl.push((k.replace('.', "/"), v.clone()));
            }
        }
        p.labels = crate::lsm::Labels::from_spec(spec).0;
        if let Some(io) = process.io_priority() {
            p.io_priority = Some(io_priority(io)?);
        }
        if let Some(s) = process.scheduler() {
            p.scheduler = Some(scheduler(s)?);
        }
        if let Some(per) = spec.linux().as_ref().and_then(|l| l.personality().as_ref()) {
            if per.flags().as_ref().is_some_and(|f| !f.is_empty()) {
                return Err(ProcessError::Invalid {
                    field: "linux.personality.flags",
                    why: "personality flags are not supported (only the domain)".into(),
                });
            }
            p.personality = Some(match per.domain() {
                oci_spec::runtime::LinuxPersonalityDomain::PerLinux => 0x0000,
                oci_spec::runtime::LinuxPersonalityDomain::PerLinux32 => 0x0008,
            });
        }
        if let Some(c) = process.capabilities() {
            p.caps = Some([
                cap_mask(c.bounding().as_ref()),
                cap_mask(c.effective().as_ref()),
                cap_mask(c.permitted().as_ref()),
                cap_mask(c.inheritable().as_ref()),
                cap_mask(c.ambient().as_ref()),
            ]);
        }
        Ok(p)
    }

    /// The PATH the container's environment sets, or the usual default.
    fn path_var(&self) -> &str {
        self.env
            .iter()
            .find_map(|e| e.strip_prefix("PATH="))
            .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    }

    /// Looks args[0] up on the container's PATH (call after entering the root, as the
    /// container's user), as runc (Go's `exec.LookPath`) does, with its error words.
    pub fn resolve_exe(&self) -> Result<PathBuf, ProcessError> {
        let arg0 = self.args.first().cloned().unwrap_or_default();
        if arg0.contains('/') {
            let p = if Path::new(&arg0).is_absolute() {
                PathBuf::from(&arg0)
            } else {
                self.cwd.join(&arg0)
            };
            return match executable(&p) {
                Ok(true) => Ok(p),
                Ok(false) => Err(ProcessError::Denied(arg0)),
                Err(e) => Err(ProcessError::Missing {
                    path: arg0.clone(),
                    arg: arg0,
                    why: sys::errno_text(&e),
                }),
            };
        }
        if arg0.is_empty() {
            return Err(ProcessError::NotFound(arg0));
        }
        self.path_var()
            .split(':')
            .map(|d| Path::new(if d.is_empty() { "." } else { d }).join(&arg0))
            .find(|p| matches!(executable(p), Ok(true)))
            .ok_or(ProcessError::NotFound(arg0))
    }
}

/// `process.ioPriority` → ioprio_set(2)'s value: class in bits 13–15, level 0–7 below.
fn io_priority(io: &oci_spec::runtime::LinuxIOPriority) -> Result<u32, ProcessError> {
    use oci_spec::runtime::IOPriorityClass as C;
    let class = match io.class() {
        C::IoprioClassRt => 1,
        C::IoprioClassBe => 2,
        C::IoprioClassIdle => 3,
    };
    let level = io.priority();
    if !(0..=7).contains(&level) {
        return Err(ProcessError::Invalid {
            field: "process.ioPriority.priority",
            why: format!("{level} is not a level between 0 (highest) and 7"),
        });
    }
    // The idle class has no levels: the kernel wants 0.
    let level = if class == 3 { 0 } else { level as u32 };
    Ok(class << 13 | level)
}

/// `process.scheduler` → sched_setattr(2)'s attributes, checked as runc checks them.
fn scheduler(s: &oci_spec::runtime::Scheduler) -> Result<sys::SchedAttr, ProcessError> {
    use oci_spec::runtime::LinuxSchedulerFlag as F;
    use oci_spec::runtime::LinuxSchedulerPolicy as P;
    let bad = |field, why: String| ProcessError::Invalid { field, why };
    let policy = match s.policy() {
        P::SchedOther => 0,
        P::SchedFifo => 1,
        P::SchedRr => 2,
        P::SchedBatch => 3,
        P::SchedIso => {
            return Err(bad(
                "process.scheduler.policy",
                "SCHED_ISO is not implemented by Linux".into(),
            ))
        }
        P::SchedIdle => 5,
        P::SchedDeadline => 6,
    };
    let nice = s.nice().unwrap_or(0);
    if !(-20..=19).contains(&nice) {
        return Err(bad(
            "process.scheduler.nice",
            format!("{nice} is not in -20..=19"),
        ));
    }
    let priority = s.priority().unwrap_or(0);
    let realtime = policy == 1 || policy == 2;
    if realtime && !(1..=99).contains(&priority) {
        return Err(bad(
            "process.scheduler.priority",
            format!("{priority}: SCHED_FIFO and SCHED_RR need a priority in 1..=99"),
        ));
    }
    if !realtime && priority != 0 {
        return Err(bad(
            "process.scheduler.priority",
            format!("{priority}: only SCHED_FIFO and SCHED_RR take a priority"),
        ));
    }
    let deadline = policy == 6;
    let (runtime, dl, period) = (
        s.runtime().unwrap_or(0),
        s.deadline().unwrap_or(0),
        s.period().unwrap_or(0),
    );
    if !deadline && (runtime != 0 || dl != 0 || period != 0) {
        return Err(bad(
            "process.scheduler",
            "runtime, deadline and period are for SCHED_DEADLINE only".into(),
        ));
    }
    if deadline && (runtime == 0 || runtime > dl || (period != 0 && dl > period)) {
        return Err(bad(
            "process.scheduler",
            format!(
                "SCHED_DEADLINE needs 0 < runtime ({runtime}) <= deadline ({dl}) <= period \
                 ({period}, 0 = deadline)"
            ),
        ));
    }
    let mut flags = 0u64;
    for f in s.flags().iter().flatten() {
        flags |= match f {
            F::SchedResetOnFork => 0x01,
            F::SchedFlagReclaim => 0x02,
            F::SchedFlagDLOverrun => 0x04,
            F::SchedFlagKeepPolicy => 0x08,
            F::SchedFlagKeepParams => 0x10,
            F::SchedFlagUtilClampMin | F::SchedFlagUtilClampMax => {
                return Err(bad(
                    "process.scheduler.flags",
                    format!(
                        "{}: the runtime-spec has no utilization values to clamp to",
                        serde_name(f)
                    ),
                ))
            }
        };
    }
    Ok(sys::SchedAttr {
        size: std::mem::size_of::<sys::SchedAttr>() as u32,
        sched_policy: policy,
        sched_flags: flags,
        sched_nice: nice,
        sched_priority: priority as u32,
        sched_runtime: runtime,
        sched_deadline: dl,
        sched_period: period,
    })
}

/// Whether `path` is a file this process may execute (`Ok(false)`: it exists but is a
/// directory, lacks execute permission or is on a noexec mount); the `stat` error otherwise.
fn executable(path: &Path) -> io::Result<bool> {
    let m = std::fs::metadata(path)?;
    Ok(m.is_file() && sys::is_executable(path))
}

fn ctx(r: io::Result<()>, what: impl FnOnce() -> String) -> Result<(), String> {
    r.map_err(|e| format!("{}: {e}", what()))
}

/// Settings that need the container's /proc and UTS namespace but not yet the final user:
/// run after the filesystem is set up.
pub fn apply_system(p: &ProcessPlan, uts: bool) -> Result<(), String> {
    if let Some(h) = &p.hostname {
        if uts {
            ctx(sys::sethostname(h), || format!("setting hostname {h:?}"))?;
        }
    }
    if let Some(d) = &p.domainname {
        if uts {
            ctx(sys::setdomainname(d), || {
                format!("setting domainname {d:?}")
            })?;
        }
    }
    for (k, v) in &p.sysctl {
        let path = Path::new("/proc/sys").join(k);
        ctx(std::fs::write(&path, v), || {
            format!("sysctl {}={v}", k.replace('/', "."))
        })?;
    }
    for &(res, soft, hard) in &p.rlimits {
        let name = RLIMITS.get(res as usize).copied().unwrap_or("?");
        ctx(sys::setrlimit(res, soft, hard), || {
            format!("setrlimit {name} {soft}:{hard}")
        })?;
    }
    if let Some(persona) = p.personality {
        ctx(sys::personality(persona), || {
            format!("linux.personality (personality {persona:#x})")
        })?;
    }
    if let Some(v) = p.io_priority {
        ctx(sys::ioprio_set_self(v), || {
            format!(
                "process.ioPriority (ioprio_set class {} level {})",
                v >> 13,
                v & 7
            )
        })?;
    }
    if let Some(a) = &p.scheduler {
        ctx(sys::sched_setattr_self(a), || {
            format!(
                "process.scheduler (sched_setattr policy {} priority {} nice {})",
                a.sched_policy, a.sched_priority, a.sched_nice
            )
        })?;
    }
    if let Some(adj) = p.oom_score_adj {
        ctx(
            std::fs::write("/proc/self/oom_score_adj", adj.to_string()),
            || format!("oomScoreAdj {adj}"),
        )?;
    }
    Ok(())
}

/// The program to exec, with its arguments and environment converted up front: nothing
/// between the seccomp filter and `execve` allocates or makes a syscall a profile may refuse.
#[derive(Debug)]
pub struct Ready {
    exe: PathBuf,
    path: CString,
    argv: Vec<CString>,
    envp: Vec<CString>,
}

/// The last of the process's setup, run in the container root once mounts, hooks and system
/// settings are done: descriptors close-on-exec, signals reset, the container user and
/// capabilities, cwd and umask, the program looked up as that user, and the seccomp filter.
/// After it only [`exec`] remains, so every failure of setup is reported here (and so by
/// `create`), as runc does.
///
/// The filter goes in as late as it can: last with `noNewPrivileges`; without it, before the
/// user changes, while CAP_SYS_ADMIN is still held (as runc and crun do). Returns the user
/// notification listener when the filter has one.
pub fn finish(
    p: &ProcessPlan,
    seccomp: Option<&crate::seccomp::Compiled>,
) -> Result<(Ready, Option<std::os::fd::OwnedFd>), String> {
    p.labels.apply()?;
    let mut listener = None;
    let install = |listener: &mut Option<std::os::fd::OwnedFd>| {
        if let Some(filter) = seccomp {
            *listener = crate::seccomp::install(filter)
                .map_err(|e| format!("installing the seccomp filter: {e}"))?;
        }
        Ok::<(), String>(())
    };
    let last_cap = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .unwrap_or(40);
    if let Some([bounding, ..]) = p.caps {
        for cap in 0..=last_cap {
            if bounding & (1 << cap) == 0 {
                match sys::prctl(libc::PR_CAPBSET_DROP, cap as _, 0) {
                    Ok(_) => {}
                    Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
                    Err(e) => {
                        return Err(format!(
                            "dropping capability {cap} from the bounding set: {e}"
                        ))
                    }
                }
            }
        }
    }
    // No descriptor of the runtime's reaches the program (CVE-2024-21626); those passed on
    // with --preserve-fds stay open.
    let first = 3 + p.preserve_fds;
    ctx(sys::cloexec_from(first), || {
        "marking descriptors close-on-exec".into()
    })?;
    for fd in 3..first {
        ctx(sys::clear_cloexec(fd as i32), || {
            format!("--preserve-fds: descriptor {fd}")
        })?;
    }
    ctx(sys::reset_signals(), || {
        "resetting signal dispositions".into()
    })?;
    if !p.no_new_privileges {
        install(&mut listener)?;
    }
    ctx(sys::prctl(libc::PR_SET_KEEPCAPS, 1, 0).map(drop), || {
        "PR_SET_KEEPCAPS".into()
    })?;
    // In a user namespace mapped by an unprivileged user, setgroups(2) is denied for good:
    // nothing to do without additional groups, and a clear error with them.
    if !(p.additional_gids.is_empty() && crate::userns::setgroups_denied()) {
        ctx(sys::setgroups(&p.additional_gids), || {
            let why = if crate::userns::setgroups_denied() {
                " (denied in a user namespace mapped without newgidmap)"
            } else {
                ""
            };
            format!("setgroups {:?}{why}", p.additional_gids)
        })?;
    }
    ctx(sys::setgid(p.gid), || format!("setgid {}", p.gid))?;
    ctx(sys::setuid(p.uid), || format!("setuid {}", p.uid))?;
    if let Some([_, effective, permitted, inheritable, ambient]) = p.caps {
        ctx(sys::capset(effective, permitted, inheritable), || {
            "setting capabilities".into()
        })?;
        for cap in 0..=last_cap {
            if ambient & (1 << cap) != 0 {
                let raise = libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong;
                match sys::prctl(libc::PR_CAP_AMBIENT, raise, cap as _) {
                    Ok(_) => {}
                    // Not in the permitted and inheritable sets (runc's default config lists
                    // ambient capabilities but no inheritable ones), or unknown to this
                    // kernel: skipped, as runc and crun do.
                    Err(e) if matches!(e.raw_os_error(), Some(libc::EPERM | libc::EINVAL)) => {}
                    Err(e) => return Err(format!("raising ambient capability {cap}: {e}")),
                }
            }
        }
    } else if p.uid != 0 {
        // No capabilities section: a non-root user keeps none (as with a plain setuid).
        ctx(sys::capset(0, 0, 0), || "clearing capabilities".into())?;
    }
    ctx(sys::prctl(libc::PR_SET_KEEPCAPS, 0, 0).map(drop), || {
        "PR_SET_KEEPCAPS".into()
    })?;
    ctx(std::env::set_current_dir(&p.cwd), || {
        format!("process.cwd {}", p.cwd.display())
    })?;
    sys::umask(p.umask.unwrap_or(0o022));
    let exe = p.resolve_exe().map_err(|e| e.to_string())?;
    let to_c =
        |v: &[String]| -> Result<Vec<CString>, io::Error> { v.iter().map(sys::cstr).collect() };
    let (Ok(argv), Ok(envp), Ok(path)) = (to_c(&p.args), to_c(&p.env), sys::cstr(&exe)) else {
        return Err("process.args or env contain a NUL byte".into());
    };
    let ready = Ready {
        exe,
        path,
        argv,
        envp,
    };
    if p.no_new_privileges {
        ctx(
            sys::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0).map(drop),
            || "noNewPrivileges".into(),
        )?;
        install(&mut listener)?;
    }
    Ok((ready, listener))
}

/// Execs the process; returns only with the reason it failed, in runc's words
/// (`exec /bin/x: no such file or directory`).
pub fn exec(ready: &Ready) -> String {
    let err = sys::execve(&ready.path, &ready.argv, &ready.envp);
    format!("exec {}: {}", ready.exe.display(), sys::errno_text(&err))
}

/// Capability names of a mask (for tests and messages).
pub fn cap_names(mask: u64) -> HashSet<&'static str> {
    CAPS.iter()
        .enumerate()
        .filter(|(i, _)| mask & (1 << i) != 0)
        .map(|(_, n)| *n)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_spec_translates_caps_rlimits_and_user() {
        let mut spec = Spec::default();
        spec.set_hostname(Some("box".into()));
        let p = ProcessPlan::from_spec(&spec).unwrap();
        let [bounding, effective, ..] = p.caps.unwrap();
        assert_eq!(
            cap_names(bounding),
            ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"].into()
        );
        assert_eq!(bounding, effective);
        assert_eq!(
            p.rlimits,
            vec![(libc::RLIMIT_NOFILE as libc::c_int, 1024, 1024)]
        );
        assert_eq!((p.uid, p.gid), (0, 0));
        assert_eq!(p.hostname.as_deref(), Some("box"));
        assert!(p.no_new_privileges);
    }

    #[test]
    fn sysctl_keys_become_proc_paths_and_bad_keys_are_refused() {
        let spec: Spec = serde_json::from_str(
            r#"{"ociVersion":"1.0.2","root":{"path":"r"},"process":{"cwd":"/","args":["sh"],"user":{"uid":0,"gid":0}},
            "linux":{"sysctl":{"net.ipv4.ip_forward":"1"}}}"#,
        )
        .unwrap();
        let p = ProcessPlan::from_spec(&spec).unwrap();
        assert_eq!(p.sysctl, vec![("net/ipv4/ip_forward".into(), "1".into())]);
        let spec: Spec = serde_json::from_str(
            r#"{"ociVersion":"1.0.2","root":{"path":"r"},"process":{"cwd":"/","args":["sh"],"user":{"uid":0,"gid":0}},
            "linux":{"sysctl":{"net..x":"1"}}}"#,
        )
        .unwrap();
        assert!(ProcessPlan::from_spec(&spec).is_err());
    }
}
