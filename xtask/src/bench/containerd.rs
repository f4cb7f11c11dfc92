//! `containerd`: containerd's shims side by side, with containerd 1.6 from Debian running in its
//! own root, state and namespace.
//!
//! - Container start to exit, `ctr run --rm IMAGE ID true`: `io.containerd.tinyo.v2` (the
//!   native shim, static `dist` build) against `io.containerd.runc.v2` with runc, and with
//!   tinyo as its runc binary (`--runc-binary`, the `BinaryName` route).
//! - Per-pod shim memory: one detached `sleep` container per runtime; the shim process's
//!   resident, private and anonymous memory (smaps_rollup), its thread count and how often it
//!   wakes up while the container idles.
//! - Pod start through the CRI plugin, as the kubelet asks for it: RunPodSandbox, then
//!   CreateContainer + StartContainer of one container, per runtime handler (`tinyo` native,
//!   `runc`, `runc` with tinyo as `BinaryName`), host-network pods (no CNI in the sample).

use anyhow::{bail, Context, Result};
use std::cell::RefCell;
use std::path::Path;
use std::time::Instant;

use tinyo_tests::containerd::{Containerd, Cri, Handler, PAUSE_IMAGE};
use tinyo_tests::cri;

use super::{dist_binary, interleaved, smaps_rollup, time_command, Contender, Opts, Report};

/// Context switches of all of `pid`'s threads so far (each idle wake-up is one).
fn switches(pid: i32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("status")).ok())
        .map(|s| {
            s.lines()
                .filter(|l| l.contains("ctxt_switches:"))
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum::<u64>()
        })
        .sum()
}

fn threads(pid: i32) -> f64 {
    std::fs::read_dir(format!("/proc/{pid}/task")).map_or(0.0, |d| d.count() as f64)
}

/// The shim process serving container `id` (its command line names it).
fn shim_of(id: &str) -> Option<i32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: i32 = e.file_name().to_str()?.parse().ok()?;
        let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        (cmd.contains("containerd-shim") && cmd.contains(&format!("-id {id} "))).then_some(pid)
    })
}

pub fn run(opts: &Opts) -> Result<Vec<Report>> {
    crate::tools::require_root("bench", "it runs containers")?;
    use crate::tools::need;
    crate::tools::require(&[
        need("containerd", "containerd", "the containerd benchmark"),
        need("ctr", "containerd", "the containerd benchmark"),
        need("runc", "runc", "the containerd benchmark's reference"),
    ])?;
    let shim = dist_binary("containerd-shim-tinyo-v2")?;
    let tinyo = dist_binary("tinyo")?;
    let c = Containerd::start_with_path(shim.parent());
    let layout = tempfile::tempdir()?;
    tinyo_tests::catalogue::build(layout.path());
    c.import_layout(layout.path(), "localhost/bbox");
    let image = "localhost/bbox:single";
    let tinyo_s = tinyo.display().to_string();
    let runtimes: [(&str, Vec<String>); 3] = [
        (
            "tinyo-v2 (native shim)",
            vec!["--runtime".into(), "io.containerd.tinyo.v2".into()],
        ),
        ("runc-v2 + runc", vec![]),
        (
            "runc-v2 + tinyo",
            vec!["--runc-binary".into(), tinyo_s.clone()],
        ),
    ];
    let counter = std::cell::Cell::new(0u64);
    let mut contenders: Vec<Contender<'_>> = runtimes
        .iter()
        .map(|(name, flags)| {
            let (c, counter) = (&c, &counter);
            Contender::new(*name, move || {
                // A fresh id each sample.
                counter.set(counter.get() + 1);
                let k = counter.get();
                let id = format!("bench-{}-{k}", std::process::id());
                let mut args = vec!["run".to_string(), "--rm".into()];
                args.extend(flags.iter().cloned());
                args.extend([image.to_string(), id, "true".into()]);
                let refs: Vec<&str> = args.iter().map(String::as_str).collect();
                let (wall, _) = time_command(&mut c.ctr_cmd(&refs))?;
                Ok(vec![wall])
            })
        })
        .collect();
    let mut reports = interleaved(
        &[("ctr run --rm IMAGE true, wall", "ms")],
        "runc-v2 + runc",
        &mut contenders,
        opts,
    )?;
    drop(contenders);
    reports[0].notes.push(
        "containerd 1.6 in its own root and namespace; every sample includes ctr's own start"
            .into(),
    );

    // Memory of one idle container's shim, per runtime.
    let mut rss = Vec::new();
    let mut private = Vec::new();
    let mut anon = Vec::new();
    let mut nthreads = Vec::new();
    let mut wakeups = Vec::new();
    for (i, (name, flags)) in runtimes.iter().enumerate() {
        let id = format!("bench-idle-{}-{i}", std::process::id());
        let mut args = vec!["run".to_string(), "-d".into()];
        args.extend(flags.iter().cloned());
        args.extend([image.to_string(), id.clone(), "sleep".into(), "1000".into()]);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = c.ctr(&refs);
        if !o.status.success() {
            bail!(
                "ctr run -d ({name}): {}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
        // Let the shim settle (Go's runtime grows its heap right after start).
        std::thread::sleep(std::time::Duration::from_millis(500));
        let pid = shim_of(&id).with_context(|| format!("the shim of {id}"))?;
        let m = smaps_rollup(pid).context("shim memory")?;
        rss.push((name.to_string(), m.rss / 1024.0));
        private.push((name.to_string(), m.private / 1024.0));
        anon.push((name.to_string(), m.anonymous / 1024.0));
        nthreads.push((name.to_string(), threads(pid)));
        let before = switches(pid);
        std::thread::sleep(std::time::Duration::from_secs(2));
        wakeups.push((name.to_string(), (switches(pid) - before) as f64 / 2.0));
        let _ = c.ctr(&["task", "kill", "-s", "SIGKILL", &id]);
        for _ in 0..200 {
            if c.ctr(&["task", "rm", &id]).status.success() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let _ = c.ctr(&["container", "rm", &id]);
    }
    let reference = "runc-v2 + runc";
    reports.push(Report::values(
        "shim of one idle container: resident memory",
        "MiB",
        reference,
        rss,
    ));
    reports.push(Report::values(
        "shim of one idle container: private memory",
        "MiB",
        reference,
        private,
    ));
    let mut a = Report::values(
        "shim of one idle container: anonymous memory (heap, stacks: what each more pod costs)",
        "MiB",
        reference,
        anon,
    );
    a.notes.push(
        "private memory counts the shim binary's text while one shim maps it; with more pods \
         the text is shared and the anonymous part is what each adds"
            .into(),
    );
    reports.push(a);
    reports.push(Report::values(
        "shim of one idle container: threads",
        "threads",
        reference,
        nthreads,
    ));
    reports.push(Report::values(
        "shim of one idle container: wake-ups (context switches) per second",
        "1/s",
        reference,
        wakeups,
    ));
    drop(c);
    reports.extend(cri_pods(opts, &shim, &tinyo)?);
    Ok(reports)
}

/// Pod and container start through the CRI plugin, per runtime handler.
fn cri_pods(opts: &Opts, shim: &Path, tinyo: &Path) -> Result<Vec<Report>> {
    let handler = |name: &str, runtime_type: &str, binary: Option<&Path>| Handler {
        name: name.into(),
        runtime_type: runtime_type.into(),
        binary_name: binary.map(Path::to_path_buf),
    };
    let handlers = [
        ("tinyo-v2 (native shim)", "tinyo"),
        ("runc-v2 + runc", "runc"),
        ("runc-v2 + tinyo", "runctinyo"),
    ];
    let c = Containerd::start_cri(
        shim.parent(),
        &Cri {
            sandbox_image: PAUSE_IMAGE.into(),
            handlers: vec![
                handler("tinyo", "io.containerd.tinyo.v2", None),
                handler("runc", "io.containerd.runc.v2", None),
                handler("runctinyo", "io.containerd.runc.v2", Some(tinyo)),
            ],
        },
    );
    c.import_cri_fixtures();
    let client = RefCell::new(cri::Client::connect(&c.socket()).map_err(anyhow::Error::msg)?);
    let logs = tempfile::tempdir()?;
    let counter = std::cell::Cell::new(0u64);
    let cgroup_parent = format!("/tinyo-bench-cri-{}", std::process::id());
    let mut contenders: Vec<Contender<'_>> = handlers
        .iter()
        .map(|&(name, handler)| {
            let (client, counter, logs, parent, c) =
                (&client, &counter, logs.path(), &cgroup_parent, &c);
            Contender::new(name, move || {
                counter.set(counter.get() + 1);
                let pod_name = format!("bench-{}-{}", std::process::id(), counter.get());
                let pod = cri::host_network_pod(&pod_name, logs, parent);
                let ctr = cri::container("app", "localhost/bbox:single", &["sleep", "1000"]);
                let mut cri = client.borrow_mut();
                let fail = |e: String| anyhow::anyhow!("{e}\n{}", c.log());
                let t = Instant::now();
                let sandbox = cri.run_pod_sandbox(&pod, handler).map_err(fail)?;
                let t_sandbox = t.elapsed();
                let id = cri.create_container(&sandbox, &ctr, &pod).map_err(fail)?;
                cri.start_container(&id).map_err(fail)?;
                let total = t.elapsed();
                // Torn down outside the sample, as the kubelet would much later.
                cri.stop_container(&id, 0).map_err(fail)?;
                cri.remove_container(&id).map_err(fail)?;
                cri.stop_pod_sandbox(&sandbox).map_err(fail)?;
                cri.remove_pod_sandbox(&sandbox).map_err(fail)?;
                let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
                Ok(vec![ms(total), ms(t_sandbox), ms(total - t_sandbox)])
            })
        })
        .collect();
    let mut reports = interleaved(
        &[
            (
                "CRI pod start: RunPodSandbox + CreateContainer + StartContainer, wall",
                "ms",
            ),
            ("CRI RunPodSandbox (pause container running), wall", "ms"),
            (
                "CRI CreateContainer + StartContainer in a running pod, wall",
                "ms",
            ),
        ],
        "runc-v2 + runc",
        &mut contenders,
        opts,
    )?;
    drop(contenders);
    reports[0].notes.push(
        "containerd 1.6's CRI plugin over gRPC on its socket; host-network pods, so no CNI; \
         each sample is a new pod, torn down after the sample"
            .into(),
    );
    for d in tinyo_tests::host::leftover_cgroups(cgroup_parent.trim_start_matches('/')) {
        let _ = std::fs::remove_dir(d);
    }
    Ok(reports)
}
