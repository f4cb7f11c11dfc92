//! `shim`: the everyday engine path and what a supervisor costs.
//!
//! - `run --rm IMAGE true` end to end: tinyo-shim (static `dist` build) against podman (with
//!   runc through conmon, overlay storage), both with no network, in one interleaved run.
//! - Idle containers: N detached `sleep` containers of each; the supervisors' resident and
//!   private memory per container (tinyo-shim's supervisor against conmon), and the total
//!   proportional memory (PSS) of everything that stays resident for them: supervisors plus
//!   the containers' processes.
//! - Crash to restarted: a `--restart always` container whose command writes a line into a
//!   FIFO on a bind mount each time it starts; a sample SIGKILLs the container's process and
//!   times until the restarted container writes its line (each sample a fresh container, so
//!   the restart is its first one, which tinyo-shim runs without backoff delay).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use tinyo_tests::podman::Podman;
use tinyo_tests::shim::Shim;

use super::{interleaved, peer, time_command, Contender, Opts, Report};

/// (RSS, private, PSS) of a process in KiB, from /proc/PID/smaps_rollup.
fn memory(pid: i32) -> Option<(f64, f64, f64)> {
    super::smaps_rollup(pid).map(|m| (m.rss, m.private, m.pss))
}

/// `pid` and all its descendants.
fn tree(pid: i32) -> Vec<i32> {
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() {
        let p = out[i];
        let kids =
            std::fs::read_to_string(format!("/proc/{p}/task/{p}/children")).unwrap_or_default();
        out.extend(
            kids.split_whitespace()
                .filter_map(|k| k.parse::<i32>().ok()),
        );
        i += 1;
    }
    out
}

fn idle_count() -> usize {
    std::env::var("TINYO_BENCH_IDLE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100)
}

pub fn run(opts: &Opts) -> Result<Vec<Report>> {
    crate::tools::require_root("bench", "it runs containers")?;
    use crate::tools::need;
    crate::tools::ensure(
        "bench",
        &[
            need(
                "busybox",
                "busybox-static",
                "the busybox image of the shim benchmark",
            ),
            need(
                "docker-registry",
                "docker-registry",
                "the loopback registry of the shim benchmark",
            ),
        ],
    )?;
    // podman is the reference here, and too big to install on the side.
    crate::tools::require(&[
        need("podman", "podman", "the shim benchmark's reference"),
        need("conmon", "conmon", "the shim benchmark's reference"),
        need("runc", "runc", "the shim benchmark's reference"),
    ])?;
    let shim_bin = super::dist_binaries(&["tinyo-shim", "tinyo-pull", "tinyo-init"])?.remove(0);
    let bin_dir = shim_bin.parent().map(PathBuf::from).unwrap_or_default();
    // The fixtures then drive the static release binaries (and their static tinyo-init).
    std::env::set_var("TINYO_BIN_DIR", &bin_dir);
    let shim = Shim::new();
    let image = shim.image.clone();
    let mut notes = vec![
        "tinyo-shim is the static musl `dist` build, run as `unshare --mount tinyo-shim …` (for idle containers: in the test sandbox's network namespace)".to_string(),
        "podman 4.3 with runc through conmon, overlay storage, cgroupfs, run as `unshare --mount podman …`; both with --network none".to_string(),
    ];
    let runc = peer("runc").context("runc is needed for podman (apt-get install runc)")?;
    let podman = Podman::with_storage(&runc, tinyo_tests::busybox::rootfs(), "overlay");
    let mut contenders = Vec::new();
    {
        let shim = &shim;
        let image = image.clone();
        let shim_bin = shim_bin.clone();
        let root = shim.root().to_path_buf();
        contenders.push(Contender::new("tinyo-shim", move || {
            // The same wrapper podman gets: a private mount namespace, nothing else.
            let mut cmd = std::process::Command::new("unshare");
            cmd.args(["--mount", "--propagation", "private"])
                .arg(&shim_bin)
                .arg("--root")
                .arg(&root)
                .args(["run", "--rm", "--network", "none", &image, "/bin/true"])
                .stdin(std::process::Stdio::null());
            let (wall, cpu) = time_command(&mut cmd)?;
            Ok(vec![wall, cpu])
        }));
    }
    {
        let podman = &podman;
        contenders.push(Contender::new("podman", move || {
            let mut args = podman.run_args(&["--rm"]);
            args.extend([podman.image(), "/bin/true"]);
            let (wall, cpu) = time_command(&mut podman.cmd(&args))?;
            Ok(vec![wall, cpu])
        }));
    }
    let mut reports = interleaved(
        &[
            ("run --rm busybox /bin/true, end to end", "ms"),
            ("CPU per run (all processes)", "ms"),
        ],
        "podman",
        &mut contenders,
        opts,
    )?;
    drop(contenders);
    reports.extend(restarts(opts, &shim, &image, &podman)?);

    // Idle containers.
    let n = idle_count();
    notes.push(format!(
        "idle: {n} detached `sleep 3600` containers of each engine (TINYO_BENCH_IDLE=N to change)"
    ));
    let mut tinyo_sup = Vec::new();
    let mut tinyo_all = Vec::new();
    for i in 0..n {
        let name = format!("idle{i}");
        shim.ok(&[
            "run",
            "-d",
            "--network",
            "none",
            "--name",
            &name,
            &image,
            "sleep",
            "3600",
        ]);
    }
    // Let every supervisor settle into its idle loop before measuring.
    std::thread::sleep(std::time::Duration::from_secs(1));
    for c in shim.ps() {
        let rec: serde_json::Value =
            serde_json::from_str(&shim.ok(&["inspect", c["name"].as_str().unwrap_or_default()]))?;
        let sup = rec[0]["supervisor"]["pid"]
            .as_i64()
            .context("supervisor pid")? as i32;
        tinyo_sup.push(memory(sup).context("supervisor memory")?);
        for p in tree(sup) {
            tinyo_all.extend(memory(p));
        }
    }
    let mut podman_sup = Vec::new();
    let mut podman_all = Vec::new();
    for _ in 0..n {
        let mut args = podman.run_args(&["-d"]);
        args.extend([podman.image(), "sleep", "3600"]);
        let o = podman.run(&args);
        if !o.status.success() {
            bail!("podman run -d: {}", String::from_utf8_lossy(&o.stderr));
        }
        let id = String::from_utf8_lossy(&o.stdout).trim().to_string();
        let o = podman.run(&["inspect", "--format", "{{.State.ConmonPid}}", &id]);
        let conmon: i32 = String::from_utf8_lossy(&o.stdout)
            .trim()
            .parse()
            .context("conmon pid")?;
        podman_sup.push(memory(conmon).context("conmon memory")?);
        for p in tree(conmon) {
            podman_all.extend(memory(p));
        }
    }
    let mib = |v: f64| v / 1024.0;
    let avg = |v: &[(f64, f64, f64)], f: fn(&(f64, f64, f64)) -> f64| {
        v.iter().map(f).sum::<f64>() / v.len().max(1) as f64
    };
    let sum = |v: &[(f64, f64, f64)]| v.iter().map(|m| m.2).sum::<f64>();
    reports.push(Report::values(
        "supervisor RSS per container",
        "MiB",
        "conmon",
        vec![
            (
                "tinyo-shim supervisor".into(),
                mib(avg(&tinyo_sup, |m| m.0)),
            ),
            ("conmon".into(), mib(avg(&podman_sup, |m| m.0))),
        ],
    ));
    reports.push(Report::values(
        "supervisor private memory per container",
        "MiB",
        "conmon",
        vec![
            (
                "tinyo-shim supervisor".into(),
                mib(avg(&tinyo_sup, |m| m.1)),
            ),
            ("conmon".into(), mib(avg(&podman_sup, |m| m.1))),
        ],
    ));
    reports.push(Report::values(
        &format!("{n} idle containers: PSS of supervisors + container processes"),
        "MiB",
        "conmon+runc",
        vec![
            ("tinyo-shim".into(), mib(sum(&tinyo_all))),
            ("conmon+runc".into(), mib(sum(&podman_all))),
        ],
    ));
    for r in &mut reports {
        r.notes.extend(notes.iter().cloned());
    }
    Ok(reports)
}

/// The FIFO a restarting container reports to, held open read-write so it never reads EOF.
struct Fifo {
    dir: tempfile::TempDir,
    file: std::fs::File,
}

impl Fifo {
    fn new() -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("up");
        let st = std::process::Command::new("mkfifo").arg(&path).status()?;
        if !st.success() {
            bail!("mkfifo {}", path.display());
        }
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)?;
        Ok(Self { dir, file })
    }

    /// The `-v` argument that shows it as /w/up in the container.
    fn volume(&self) -> String {
        format!("{}:/w", self.dir.path().display())
    }

    /// Waits (at most 30 s) for the container to write its line.
    fn wait_line(&mut self) -> Result<()> {
        use std::io::Read;
        use std::os::fd::AsRawFd;
        let mut p = libc::pollfd {
            fd: self.file.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        if unsafe { libc::poll(&mut p, 1, 30_000) } != 1 {
            bail!("the container did not (re)start within 30 s");
        }
        let mut buf = [0u8; 64];
        self.file.read(&mut buf).context("reading the FIFO")?;
        Ok(())
    }
}

/// Container command: report on the FIFO, then idle.
const REPORT_THEN_IDLE: &str = "echo up > /w/up; exec sleep 1000";

fn restarts(
    opts: &Opts,
    shim: &Shim,
    image: &str,
    podman: &tinyo_tests::podman::Podman,
) -> Result<Vec<Report>> {
    let kill = |pid: i64| -> Result<std::time::Instant> {
        let t = std::time::Instant::now();
        // SAFETY: kill takes integers; the pid is the container's process, just read.
        if unsafe { libc::kill(pid as i32, libc::SIGKILL) } != 0 {
            bail!("kill {pid}: {}", std::io::Error::last_os_error());
        }
        Ok(t)
    };
    let ms = |t: std::time::Instant| t.elapsed().as_secs_f64() * 1e3;
    let counter = std::cell::Cell::new(0u32);
    let mut tinyo_fifo = Fifo::new()?;
    let mut podman_fifo = Fifo::new()?;
    let mut contenders = Vec::new();
    {
        let (counter, tinyo_fifo) = (&counter, &mut tinyo_fifo);
        contenders.push(Contender::new("tinyo-shim", move || {
            counter.set(counter.get() + 1);
            let name = format!("restart{}", counter.get());
            let vol = tinyo_fifo.volume();
            shim.ok(&[
                "run",
                "-d",
                "--restart",
                "always",
                "--network",
                "none",
                "-v",
                &vol,
                "--name",
                &name,
                image,
                "sh",
                "-c",
                REPORT_THEN_IDLE,
            ]);
            tinyo_fifo.wait_line()?;
            let rec: serde_json::Value = serde_json::from_str(&shim.ok(&["inspect", &name]))?;
            let pid = rec[0]["pid"]["pid"].as_i64().context("container pid")?;
            let t = kill(pid)?;
            tinyo_fifo.wait_line()?;
            let sample = ms(t);
            shim.ok(&["rm", "-f", &name]);
            Ok(vec![sample])
        }));
    }
    {
        let podman_fifo = &mut podman_fifo;
        contenders.push(Contender::new("podman", move || {
            let vol = podman_fifo.volume();
            let mut args = podman.run_args(&["-d", "--restart", "always", "-v", &vol]);
            args.extend([podman.image(), "sh", "-c", REPORT_THEN_IDLE]);
            let o = podman.run(&args);
            if !o.status.success() {
                bail!("podman run -d: {}", String::from_utf8_lossy(&o.stderr));
            }
            let id = String::from_utf8_lossy(&o.stdout).trim().to_string();
            podman_fifo.wait_line()?;
            let o = podman.run(&["inspect", "--format", "{{.State.Pid}}", &id]);
            let pid: i64 = String::from_utf8_lossy(&o.stdout).trim().parse()?;
            let t = kill(pid)?;
            podman_fifo.wait_line()?;
            let sample = ms(t);
            let _ = podman.run(&["rm", "-f", &id]);
            Ok(vec![sample])
        }));
    }
    let mut reports = interleaved(
        &[(
            "crash (SIGKILL) to the restarted container running its command",
            "ms",
        )],
        "podman",
        &mut contenders,
        opts,
    )?;
    reports[0].notes.push(
        "`run -d --restart always`; the container's first restart (tinyo-shim: no backoff \
         before it, the kubelet's 10 s doubling after); podman restarts through conmon's exit \
         command (`podman container cleanup`)"
            .into(),
    );
    Ok(reports)
}
