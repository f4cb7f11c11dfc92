//! Kubernetes' routes to tinyo: containerd's CRI plugin with a `tinyo` runtime handler
//! (`runtime_type = "io.containerd.tinyo.v2"`, the native shim) and with a `runctinyo` handler
//! (containerd's runc shim with tinyo as its `BinaryName`), driven over the CRI gRPC API the way
//! the kubelet drives it. containerd from Debian, started by the test in its own root, state and
//! socket; a host-network pod, so no CNI plugin is involved.

use std::time::{Duration, Instant};

use tinyo_tests::bins::bin;
use tinyo_tests::containerd::{shim_pids, Containerd, Cri, Handler, CRI_NAMESPACE, PAUSE_IMAGE};
use tinyo_tests::cri::{self, container_state, sandbox_state};
use tinyo_tests::host::{leftover_cgroups, require_root, unique};

/// containerd with CRI on, the `tinyo` and `runctinyo` handlers, and the pause and busybox
/// images imported.
fn setup() -> Containerd {
    require_root();
    let shim = bin("containerd-shim-tinyo-v2");
    let c = Containerd::start_cri(
        shim.parent(),
        &Cri {
            sandbox_image: PAUSE_IMAGE.into(),
            handlers: vec![
                Handler {
                    name: "tinyo".into(),
                    runtime_type: "io.containerd.tinyo.v2".into(),
                    binary_name: None,
                },
                Handler {
                    name: "runctinyo".into(),
                    runtime_type: "io.containerd.runc.v2".into(),
                    binary_name: Some(bin("tinyo")),
                },
            ],
        },
    );
    c.import_cri_fixtures();
    c
}

fn ns_of(pid: &str, ns: &str) -> String {
    std::fs::read_link(format!("/proc/{pid}/ns/{ns}"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/ns/{ns}: {e}"))
        .display()
        .to_string()
}

fn until(what: &str, c: &Containerd, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "{what}: timed out\n{}", c.log());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Removes the pod's cgroup parent the way the kubelet does once the pod is gone (the runtime
/// only creates and removes the containers' own cgroups under it).
fn remove_parent(parent: &str) -> Vec<String> {
    let mut left = Vec::new();
    for d in leftover_cgroups(parent.trim_start_matches('/')) {
        if std::fs::remove_dir(&d).is_err() {
            left.push(d);
        }
    }
    left
}

#[test]
fn cri_runs_a_pod_sandbox_and_a_container_on_the_tinyo_handler() {
    pod_lifecycle("tinyo", "containerd-shim-tinyo-v2");
}

#[test]
fn cri_runs_a_pod_on_runcs_shim_with_tinyo_as_its_binary() {
    pod_lifecycle("runctinyo", "containerd-shim-runc-v2");
}

/// What the kubelet does with one pod of one container on `handler`, whose shim binary is
/// `shim_bin`: every step checked against what Kubernetes relies on, then nothing left.
fn pod_lifecycle(handler: &str, shim_bin: &str) {
    let c = setup();
    let shims = || shim_pids(shim_bin, CRI_NAMESPACE);
    let mut cri = cri::Client::connect(&c.socket()).unwrap();
    let v = cri.version().unwrap();
    assert_eq!(v.runtime_name, "containerd", "{v:?}");
    assert_eq!(v.runtime_api_version, "v1", "{v:?}");

    let logs = tempfile::tempdir().unwrap();
    let parent = format!("/{}", unique("tinyo-cri-pod"));
    let pod = cri::host_network_pod("web", logs.path(), &parent);
    let sandbox = cri
        .run_pod_sandbox(&pod, handler)
        .unwrap_or_else(|e| panic!("{e}\n{}", c.log()));
    let st = cri.pod_sandbox_status(&sandbox).unwrap();
    let status = st.status.clone().expect("sandbox status");
    assert_eq!(status.state, sandbox_state::READY, "{st:?}");
    assert_eq!(status.runtime_handler, handler);
    let sandbox_pid = cri::info_pid(&st.info).expect("sandbox pid").to_string();
    let shim = shims();
    assert_eq!(shim.len(), 1, "one {shim_bin} for the sandbox: {shim:?}");

    let script = "echo hello from cri; trap 'echo bye; exit 42' TERM; while sleep 0.1; do :; done";
    let config = cri::container("app", "localhost/bbox:single", &["sh", "-c", script]);
    let id = cri
        .create_container(&sandbox, &config, &pod)
        .unwrap_or_else(|e| panic!("{e}\n{}", c.log()));
    cri.start_container(&id)
        .unwrap_or_else(|e| panic!("{e}\n{}", c.log()));
    let state = |cri: &mut cri::Client| cri.container_status(&id).unwrap();
    let s = state(&mut cri);
    assert_eq!(
        s.status.as_ref().map(|s| s.state),
        Some(container_state::RUNNING),
        "{s:?}"
    );
    let pid = cri::info_pid(&s.info).expect("container pid").to_string();

    // The container joined its pod: the sandbox's shim serves it too (grouped by the sandbox
    // id annotation), it shares the sandbox's IPC namespace and the host's network, and has a
    // PID namespace and a cgroup of its own under the pod's parent.
    assert_eq!(shims(), shim, "the pod's one shim serves the container");
    assert_eq!(ns_of(&pid, "ipc"), ns_of(&sandbox_pid, "ipc"));
    assert_eq!(ns_of(&pid, "net"), ns_of("self", "net"));
    assert_ne!(ns_of(&pid, "pid"), ns_of(&sandbox_pid, "pid"));
    let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let pids_line = cgroup
        .lines()
        .find(|l| l.split(':').nth(1) == Some("pids"))
        .unwrap_or_else(|| panic!("no pids cgroup: {cgroup}"));
    assert!(
        pids_line.ends_with(&format!("{parent}/{id}")),
        "container's cgroup is PARENT/ID: {pids_line}"
    );

    // ExecSync: the kubelet's exec probes and `kubectl exec` without a terminal.
    let r = cri
        .exec_sync(&id, &["sh", "-c", "echo out; echo err >&2; exit 7"], 10)
        .unwrap_or_else(|e| panic!("{e}\n{}", c.log()));
    assert_eq!(
        (r.stdout.as_slice(), r.stderr.as_slice(), r.exit_code),
        (&b"out\n"[..], &b"err\n"[..], 7)
    );

    // Stats come from the shim's cgroup metrics.
    let stats = cri
        .container_stats(&id)
        .unwrap_or_else(|e| panic!("{e}\n{}", c.log()));
    let mem = stats
        .memory
        .and_then(|m| m.working_set_bytes)
        .map(|v| v.value);
    assert!(mem.is_some_and(|m| m > 0), "memory working set: {mem:?}");
    let cpu = stats
        .cpu
        .and_then(|c| c.usage_core_nano_seconds)
        .map(|v| v.value);
    assert!(cpu.is_some_and(|n| n > 0), "CPU time: {cpu:?}");

    // StopContainer sends SIGTERM; the trap's status is what CRI reports.
    cri.stop_container(&id, 10)
        .unwrap_or_else(|e| panic!("{e}\n{}", c.log()));
    let s = state(&mut cri).status.expect("status");
    assert_eq!(
        (s.state, s.exit_code),
        (container_state::EXITED, 42),
        "{s:?}"
    );
    let log = std::fs::read_to_string(logs.path().join("app/0.log")).unwrap_or_default();
    let lines: Vec<_> = log
        .lines()
        .map(|l| l.splitn(4, ' ').skip(1).collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(
        lines,
        ["stdout F hello from cri", "stdout F bye"],
        "CRI log of the container:\n{log}"
    );

    cri.remove_container(&id).unwrap();
    cri.stop_pod_sandbox(&sandbox)
        .unwrap_or_else(|e| panic!("{e}\n{}", c.log()));
    cri.remove_pod_sandbox(&sandbox).unwrap();
    until("the pod's shim exits", &c, || shims().is_empty());
    // The pause process is gone (other tests' pods may run the same command line).
    let gone = |pid: &str| {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| {
            s.rsplit(')')
                .next()
                .is_some_and(|t| t.trim_start().starts_with('Z'))
        })
    };
    until("the pause process exits", &c, || {
        gone(&sandbox_pid) && gone(&pid)
    });
    for leaf in [&id, &sandbox] {
        let left = leftover_cgroups(leaf);
        assert!(left.is_empty(), "cgroups left: {left:?}");
    }
    let left = remove_parent(&parent);
    assert!(left.is_empty(), "pod cgroup parent not empty: {left:?}");
    let mounts =
        std::fs::read_to_string(format!("/proc/{}/mountinfo", c.pid())).unwrap_or_default();
    assert!(
        !mounts.contains(&sandbox) && !mounts.contains(&id),
        "mounts left in containerd's namespace:\n{mounts}"
    );
}
