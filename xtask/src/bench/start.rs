//! `start`: how long one container start takes — `run` of /bin/true in a busybox bundle, from
//! exec of the runtime to its exit — and how much CPU it burns (all descendants).
//!
//! Contenders: tinyo (the static dist build), runc (the reference), crun — each also with
//! podman's default seccomp profile in the config (`+seccomp`) — and `unshare` + `chroot` as
//! the floor that any namespace-based runtime pays. A second pair of tables times
//! the create → start → kill → delete cycle of the three runtimes.

use std::os::unix::process::CommandExt;
use std::process::Command;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Result};
use tinyo_tests::busybox::Bundle;

use super::{interleaved, peer, time_command, Contender, Opts, Report};

pub fn run(opts: &Opts) -> Result<Vec<Report>> {
    crate::tools::require_root("bench", "it starts containers")?;
    crate::tools::ensure(
        "bench",
        &[crate::tools::need(
            "busybox",
            "busybox-static",
            "the busybox bundle of the start benchmark",
        )],
    )?;
    let state = tempfile::Builder::new()
        .prefix("tinyo-bench-start-")
        .tempdir()?;
    let mut contenders = Vec::new();
    let mut notes = vec!["tinyo is the static musl `dist` build".to_string()];

    let tinyo = super::dist_binary("tinyo")?;
    let profile = seccomp_profile()?;
    notes.push(format!(
        "\"+seccomp\": the config carries podman's default profile ({} syscall names, tinyo-core/src/seccomp/default.json)",
        syscall_names(&profile)
    ));
    let mut runtimes: Vec<(&str, PathBuf, bool)> = vec![("tinyo", tinyo.clone(), false)];
    if let Some(runc) = peer("runc") {
        runtimes.push(("runc", runc, false));
    }
    if let Some(crun) = peer("crun") {
        notes.push("crun runs in a private mount namespace with /sys/fs/cgroup/unified hidden (it refuses hybrid hosts); the namespace is made in the forked child, no extra process".into());
        runtimes.push(("crun", crun, true));
    }
    let mut bundles = Vec::new();
    for (name, bin, hide) in &runtimes {
        for seccomp in [false, true] {
            let label = if seccomp {
                format!("{name}+seccomp")
            } else {
                name.to_string()
            };
            let id = format!("bench-{}", label.replace('+', "-"));
            let bundle = Bundle::new(&id, &["/bin/true"]);
            if seccomp {
                let mut spec = bundle.config();
                spec["linux"]["seccomp"] = profile.clone();
                bundle.write_config(&spec);
            }
            let root = state.path().join(&id);
            let b = bundle.path().to_path_buf();
            bundles.push(bundle);
            let (bin, hide) = (bin.clone(), *hide);
            contenders.push(Contender::new(label, move || {
                let mut cmd = Command::new(&bin);
                cmd.arg("--root")
                    .arg(&root)
                    .args(["run", "--bundle"])
                    .arg(&b)
                    .arg(&id);
                if hide {
                    // SAFETY: only async-signal-safe syscalls run between fork and exec.
                    unsafe { cmd.pre_exec(hide_cgroup2) };
                }
                let (wall, cpu) = time_command(&mut cmd)?;
                Ok(vec![wall, cpu])
            }));
        }
    }

    let floor = Bundle::new("bench-floor", &["/bin/true"]);
    let rootfs = floor.rootfs();
    contenders.push(Contender::new("unshare+chroot (floor)", move || {
        let (wall, cpu) = time_command(
            Command::new("unshare")
                .args([
                    "--pid", "--fork", "--mount", "--uts", "--ipc", "--net", "chroot",
                ])
                .arg(&rootfs)
                .arg("/bin/true"),
        )?;
        Ok(vec![wall, cpu])
    }));

    let mut reports = interleaved(
        &[
            ("start latency of run /bin/true", "ms"),
            ("CPU per start (all processes)", "ms"),
        ],
        "runc",
        &mut contenders,
        opts,
    )?;
    for r in &mut reports {
        r.notes.extend(notes.iter().cloned());
    }
    reports.extend(cycle(opts, &tinyo, state.path())?);
    Ok(reports)
}

/// The create → start → kill → delete cycle of a `sleep` container, four CLI calls each.
fn cycle(opts: &Opts, tinyo: &Path, state: &Path) -> Result<Vec<Report>> {
    let mut contenders = Vec::new();
    let mut bundles = Vec::new();
    let mut runtimes: Vec<(&str, PathBuf, bool)> = vec![("tinyo", tinyo.to_path_buf(), false)];
    if let Some(runc) = peer("runc") {
        runtimes.push(("runc", runc, false));
    }
    if let Some(crun) = peer("crun") {
        runtimes.push(("crun", crun, true));
    }
    for (name, _, _) in &runtimes {
        let id = format!("bench-cycle-{name}");
        bundles.push(Bundle::new(&id, &["/bin/sleep", "100"]));
    }
    for ((name, bin, hide), bundle) in runtimes.into_iter().zip(&bundles) {
        let root = state.join(format!("cycle-{name}"));
        let b = bundle.path().to_path_buf();
        let id = format!("bench-cycle-{name}");
        contenders.push(Contender::new(name, move || {
            let cpu0 = super::children_cpu_ms();
            let t = Instant::now();
            let bs = b.to_str().unwrap_or_default();
            for args in [
                &["create", "--bundle", bs, &id][..],
                &["start", &id],
                &["kill", &id, "KILL"],
                &["delete", "--force", &id],
            ] {
                let mut cmd = Command::new(&bin);
                cmd.arg("--root").arg(&root).args(args);
                // The created container inherits stdio: never a pipe we would wait on.
                cmd.stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null());
                if hide {
                    // SAFETY: only async-signal-safe syscalls run between fork and exec.
                    unsafe { cmd.pre_exec(hide_cgroup2) };
                }
                let st = cmd.status()?;
                if !st.success() {
                    bail!("{name} {args:?} failed with {st}");
                }
            }
            Ok(vec![
                t.elapsed().as_secs_f64() * 1e3,
                super::children_cpu_ms() - cpu0,
            ])
        }));
    }
    let mut reports = interleaved(
        &[
            ("create→start→kill→delete cycle", "ms"),
            ("CPU per cycle (runtime processes)", "ms"),
        ],
        "runc",
        &mut contenders,
        opts,
    )?;
    for r in &mut reports {
        r.notes.push(
            "four CLI calls per cycle; the container (sleep) is reparented away, its CPU is not counted"
                .into(),
        );
    }
    Ok(reports)
}

/// In the forked child: a private mount namespace without the cgroup2 mount, as crun needs on a
/// hybrid host. A missing mount is fine (the host is not hybrid).
fn hide_cgroup2() -> std::io::Result<()> {
    // SAFETY: unshare takes only flags.
    if unsafe { libc::unshare(libc::CLONE_NEWNS) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: static NUL-terminated strings; null pointers are allowed for source/type/data.
    let r = unsafe {
        libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: static NUL-terminated path.
    let _ = unsafe { libc::umount2(c"/sys/fs/cgroup/unified".as_ptr(), libc::MNT_DETACH) };
    Ok(())
}

/// Podman's default seccomp profile as the OCI section podman hands a runtime.
fn seccomp_profile() -> Result<serde_json::Value> {
    let path = tinyo_tests::workspace_root().join("tinyo-core/src/seccomp/default.json");
    let text =
        std::fs::read(&path).map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
    Ok(serde_json::from_slice(&text)?)
}

fn syscall_names(profile: &serde_json::Value) -> usize {
    profile["syscalls"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s["names"].as_array())
                .map(Vec::len)
                .sum()
        })
        .unwrap_or(0)
}
