//! `start`: how long one container start takes — `run` of /bin/true in a busybox bundle, from
//! exec of the runtime to its exit — and how much CPU it burns (all descendants).
//!
//! Contenders: runc (the reference), crun, and `unshare` + `chroot` as the floor that any
//! namespace-based runtime pays. tinyo joins this table when `tinyo run` exists.

use std::os::unix::process::CommandExt;
use std::process::Command;

use anyhow::Result;
use tinyo_tests::busybox::Bundle;

use super::{interleaved, peer, time_command, Contender, Opts, Report};

pub fn run(opts: &Opts) -> Result<Vec<Report>> {
    tinyo_tests::host::require_root();
    let state = tempfile::Builder::new()
        .prefix("tinyo-bench-start-")
        .tempdir()?;
    let mut contenders = Vec::new();
    let mut notes = vec!["tinyo is not in this table yet: `tinyo run` does not exist".to_string()];

    let runc_bundle;
    if let Some(runc) = peer("runc") {
        runc_bundle = Bundle::new("bench-runc", &["/bin/true"]);
        let root = state.path().join("runc");
        let b = runc_bundle.path().to_path_buf();
        contenders.push(Contender::new("runc", move || {
            let (wall, cpu) = time_command(
                Command::new(&runc)
                    .arg("--root")
                    .arg(&root)
                    .args(["run", "--bundle"])
                    .arg(&b)
                    .arg("bench-runc"),
            )?;
            Ok(vec![wall, cpu])
        }));
    }

    let crun_bundle;
    if let Some(crun) = peer("crun") {
        crun_bundle = Bundle::new("bench-crun", &["/bin/true"]);
        let root = state.path().join("crun");
        let b = crun_bundle.path().to_path_buf();
        notes.push("crun runs in a private mount namespace with /sys/fs/cgroup/unified hidden (it refuses hybrid hosts); the namespace is made in the forked child, no extra process".into());
        contenders.push(Contender::new("crun", move || {
            let mut cmd = Command::new(&crun);
            cmd.arg("--root")
                .arg(&root)
                .args(["run", "--bundle"])
                .arg(&b)
                .arg("bench-crun");
            // SAFETY: only async-signal-safe syscalls run between fork and exec.
            unsafe { cmd.pre_exec(hide_cgroup2) };
            let (wall, cpu) = time_command(&mut cmd)?;
            Ok(vec![wall, cpu])
        }));
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
