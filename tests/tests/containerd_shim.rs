//! containerd drives tinyo through its native shim, `containerd-shim-tinyo-v2`
//! (`--runtime io.containerd.tinyo.v2`): containerd from Debian, started by the test in its own
//! root, state, sockets and namespace; images from the fixture catalogue.

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use tinyo_tests::bins::bin;
use tinyo_tests::catalogue;
use tinyo_tests::containerd::{shim_pids, Containerd};
use tinyo_tests::host::{leftover_cgroups, require_root, unique};

const RUNTIME: &str = "io.containerd.tinyo.v2";

fn text(o: &Output) -> String {
    format!(
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn setup() -> (Containerd, tempfile::TempDir) {
    require_root();
    let shim = bin("containerd-shim-tinyo-v2");
    let c = Containerd::start_with_path(shim.parent());
    let layout = tempfile::tempdir().unwrap();
    catalogue::build(layout.path());
    c.import_layout(layout.path(), "localhost/bbox");
    (c, layout)
}

/// The shim processes serving namespace `ns`.
fn shims(ns: &str) -> Vec<i32> {
    shim_pids("containerd-shim-tinyo-v2", ns)
}

fn task_status(c: &Containerd, id: &str) -> String {
    let o = c.ctr(&["task", "ls"]);
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .find(|l| l.split_whitespace().next() == Some(id))
        .and_then(|l| l.split_whitespace().nth(2))
        .unwrap_or("")
        .to_string()
}

/// `ctr run -d --runtime io.containerd.tinyo.v2 FLAGS IMAGE ID ARGS`, which must succeed.
fn run_detached(c: &Containerd, flags: &[&str], image: &str, id: &str, args: &[&str]) {
    let mut all = vec!["run", "-d", "--runtime", RUNTIME];
    all.extend_from_slice(flags);
    all.extend_from_slice(&[image, id]);
    all.extend_from_slice(args);
    let o = c.ctr(&all);
    assert!(o.status.success(), "run -d {id}: {}\n{}", text(&o), c.log());
}

fn wait_status(c: &Containerd, id: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while task_status(c, id) != want {
        assert!(
            Instant::now() < deadline,
            "{id} never became {want}: {}",
            c.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn ctr_run_on_the_native_shim_returns_output_and_exit_code() {
    let (c, _layout) = setup();
    let id = unique("nshim");
    let o = c.ctr(&[
        "run",
        "--rm",
        "--runtime",
        RUNTIME,
        "localhost/bbox:single",
        &id,
        "sh",
        "-c",
        "echo hi from the tinyo shim; id -u; exit 4",
    ]);
    assert_eq!(o.status.code(), Some(4), "{}\n{}", text(&o), c.log());
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "hi from the tinyo shim\n0\n"
    );
    // The shim exits once its last container is gone.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !shims(c.namespace()).is_empty() {
        assert!(Instant::now() < deadline, "the shim did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!Path::new("/run/containerd/tinyo")
        .join(c.namespace())
        .join(&id)
        .exists());
}

#[test]
fn native_shim_detached_exec_pause_metrics_kill_rm() {
    let (c, _layout) = setup();
    let id = unique("nshimd");
    run_detached(
        &c,
        &["--memory-limit", "67108864"],
        "localhost/bbox:multi",
        &id,
        &[
            "sh",
            "-c",
            "trap 'exit 0' TERM; while true; do sleep 0.1; done",
        ],
    );
    wait_status(&c, &id, "RUNNING");
    let o = c.ctr(&["task", "exec", "--exec-id", "e1", &id, "cat", "/data/keep"]);
    assert!(o.status.success(), "exec: {}\n{}", text(&o), c.log());
    assert_eq!(String::from_utf8_lossy(&o.stdout), "keep\n");
    let o = c.ctr(&["task", "exec", "--exec-id", "e2", &id, "sh", "-c", "exit 7"]);
    assert_eq!(o.status.code(), Some(7), "exec exit code: {}", text(&o));
    let o = c.ctr(&["task", "ps", &id]);
    assert!(o.status.success(), "ps: {}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).lines().count() >= 2,
        "{}",
        text(&o)
    );
    let o = c.ctr(&["task", "pause", &id]);
    assert!(o.status.success(), "pause: {}\n{}", text(&o), c.log());
    wait_status(&c, &id, "PAUSED");
    let o = c.ctr(&["task", "resume", &id]);
    assert!(o.status.success(), "resume: {}", text(&o));
    wait_status(&c, &id, "RUNNING");
    let o = c.ctr(&["task", "metrics", "--format", "json", &id]);
    assert!(o.status.success(), "metrics: {}\n{}", text(&o), c.log());
    let m: serde_json::Value = serde_json::from_slice(&o.stdout).expect("metrics JSON");
    assert_eq!(m["memory"]["usage"]["limit"], 67108864, "{m}");
    assert!(m["pids"]["current"].as_u64().unwrap_or(0) >= 1, "{m}");
    let o = c.ctr(&["task", "kill", &id]);
    assert!(o.status.success(), "kill: {}", text(&o));
    wait_status(&c, &id, "STOPPED");
    let o = c.ctr(&["task", "rm", &id]);
    assert!(o.status.success(), "task rm: {}\n{}", text(&o), c.log());
    let o = c.ctr(&["container", "rm", &id]);
    assert!(o.status.success(), "container rm: {}", text(&o));
    assert!(
        leftover_cgroups(&id).is_empty(),
        "{:?}",
        leftover_cgroups(&id)
    );
}

#[test]
fn a_pods_containers_share_one_shim() {
    let (c, _layout) = setup();
    let pod = unique("pod");
    let ids = [unique("pod-a"), unique("pod-b")];
    for id in &ids {
        run_detached(
            &c,
            &[
                "--annotation",
                &format!("io.kubernetes.cri.sandbox-id={pod}"),
            ],
            "localhost/bbox:single",
            id,
            &["sleep", "1000"],
        );
    }
    for id in &ids {
        wait_status(&c, id, "RUNNING");
    }
    assert_eq!(shims(c.namespace()).len(), 1, "one shim for the pod");
    for id in &ids {
        let o = c.ctr(&["task", "kill", "-s", "SIGKILL", id]);
        assert!(o.status.success(), "kill {id}: {}", text(&o));
        wait_status(&c, id, "STOPPED");
        let o = c.ctr(&["task", "rm", id]);
        assert!(o.status.success(), "rm {id}: {}", text(&o));
        let _ = c.ctr(&["container", "rm", id]);
    }
}

#[test]
fn a_killed_shim_is_cleaned_up_by_delete() {
    let (c, _layout) = setup();
    let id = unique("nshimk");
    run_detached(&c, &[], "localhost/bbox:single", &id, &["sleep", "1000"]);
    wait_status(&c, &id, "RUNNING");
    for pid in shims(c.namespace()) {
        let _ = tinyo_core::sys::kill(pid, libc::SIGKILL);
    }
    // containerd notices, runs `containerd-shim-tinyo-v2 delete`, and the task is gone.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !task_status(&c, &id).is_empty() && task_status(&c, &id) != "STOPPED" {
        assert!(Instant::now() < deadline, "task still listed: {}", c.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = c.ctr(&["task", "rm", "-f", &id]);
    let o = c.ctr(&["container", "rm", &id]);
    assert!(
        o.status.success(),
        "container rm: {}\n{}",
        text(&o),
        c.log()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !leftover_cgroups(&id).is_empty() {
        assert!(
            Instant::now() < deadline,
            "cgroups left: {:?}",
            leftover_cgroups(&id)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!Path::new("/run/containerd/tinyo")
        .join(c.namespace())
        .join(&id)
        .exists());
    remove_fifos(&id);
}

/// `ctr run -d` leaves its FIFOs to `ctr task rm`, which has no shim to talk to once the shim
/// was killed: remove those of container `id`.
fn remove_fifos(id: &str) {
    for dir in std::fs::read_dir("/run/containerd/fifo")
        .into_iter()
        .flatten()
        .flatten()
    {
        let ours = std::fs::read_dir(dir.path())
            .into_iter()
            .flatten()
            .flatten()
            .any(|f| f.file_name().to_string_lossy().starts_with(id));
        if ours {
            let _ = std::fs::remove_dir_all(dir.path());
        }
    }
}

/// A container that ended before its shim was killed: the status containerd hears from the
/// shim's `delete` (its `/tasks/exit` event for the dead shim) is the container's own, not 137.
#[test]
fn exit_status_outlives_a_killed_shim() {
    let (c, _layout) = setup();
    let id = unique("nshimx");
    let events = c.dir().join("events.log");
    let mut watch = c
        .ctr_cmd(&["events"])
        .stdout(std::fs::File::create(&events).unwrap())
        .spawn()
        .unwrap();
    let exits = |events: &Path| -> Vec<String> {
        std::fs::read_to_string(events)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("/tasks/exit") && l.contains(&id))
            .map(str::to_string)
            .collect()
    };
    run_detached(
        &c,
        &[],
        "localhost/bbox:single",
        &id,
        &["sh", "-c", "exit 3"],
    );
    wait_status(&c, &id, "STOPPED");
    let deadline = Instant::now() + Duration::from_secs(30);
    while exits(&events).is_empty() {
        assert!(Instant::now() < deadline, "no exit event: {}", c.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    for pid in shims(c.namespace()) {
        let _ = tinyo_core::sys::kill(pid, libc::SIGKILL);
    }
    // containerd runs `containerd-shim-tinyo-v2 delete` and publishes what it reported.
    while exits(&events).len() < 2 {
        assert!(
            Instant::now() < deadline,
            "no exit event for the dead shim: {:?}\n{}",
            exits(&events),
            c.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = watch.kill();
    let _ = watch.wait();
    for e in exits(&events) {
        assert!(e.contains("\"exit_status\":3"), "{e}");
    }
    let _ = c.ctr(&["task", "rm", "-f", &id]);
    let o = c.ctr(&["container", "rm", &id]);
    assert!(o.status.success(), "container rm: {}", text(&o));
    remove_fifos(&id);
}

/// `ctr run -t` (through `script`, which gives ctr the terminal it needs): the container's
/// stdio is a pty whose master the shim relays.
#[test]
fn native_shim_gives_a_terminal() {
    let (c, _layout) = setup();
    let script = tinyo_tests::host::require_tool("script", "bsdutils");
    let id = unique("nshimt");
    let ctr = c.ctr_cmd(&[
        "run",
        "--rm",
        "-t",
        "--runtime",
        RUNTIME,
        "localhost/bbox:single",
        &id,
        "sh",
        "-c",
        "tty; exit 3",
    ]);
    let line = format!(
        "{} {}",
        ctr.get_program().to_string_lossy(),
        ctr.get_args()
            .map(|a| format!("'{}'", a.to_string_lossy()))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let o = std::process::Command::new(script)
        .args(["-qec", &line, "/dev/null"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(3), "{}\n{}", text(&o), c.log());
    assert!(out.contains("/dev/pts/"), "{out}");
}

/// A container that runs out of memory: its task exits 137 and containerd hears `/tasks/oom`.
#[test]
fn native_shim_reports_oom() {
    let (c, _layout) = setup();
    let mut events = c.ctr_cmd(&["events"]);
    let events_out = tempfile::tempfile().unwrap();
    let mut events = events
        .stdout(events_out.try_clone().unwrap())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let id = unique("nshimoom");
    let o = c.ctr(&[
        "run",
        "--rm",
        "--runtime",
        RUNTIME,
        "--memory-limit",
        "16777216",
        "localhost/bbox:single",
        &id,
        "tail",
        "/dev/zero",
    ]);
    assert_eq!(o.status.code(), Some(137), "{}\n{}", text(&o), c.log());
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !seen.contains("/tasks/oom") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        use std::io::{Read, Seek};
        let mut f = events_out.try_clone().unwrap();
        f.seek(std::io::SeekFrom::Start(0)).unwrap();
        seen.clear();
        f.read_to_string(&mut seen).unwrap();
    }
    let _ = events.kill();
    let _ = events.wait();
    assert!(seen.contains("/tasks/oom"), "events: {seen}");
}

/// `Update` (what the CRI plugin sends for a pod's new limits; ctr 1.6 has no `task update`):
/// called on the shim's own socket with containerd's encoding (runtime-spec JSON in an Any),
/// it rewrites the container's memory and pids limits.
#[test]
fn update_changes_the_limits_of_a_running_task() {
    use containerd_shim_protos::api::UpdateTaskRequest;
    use containerd_shim_protos::protobuf::well_known_types::any::Any;
    use containerd_shim_protos::ttrpc::{context, Client};
    use containerd_shim_protos::TaskClient;

    let (c, _layout) = setup();
    let id = unique("nshimu");
    run_detached(&c, &[], "localhost/bbox:single", &id, &["sleep", "1000"]);
    wait_status(&c, &id, "RUNNING");
    // The shim's socket, named as containerd-shim names it: a hash of containerd's address,
    // the namespace and the grouping (here the container's own id).
    let address = {
        use sha2::Digest;
        let key = c.socket().join(c.namespace()).join(&id);
        let hash = sha2::Sha256::digest(key.to_str().unwrap().as_bytes());
        let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
        format!("unix:///run/containerd/s/{hex}")
    };
    let task = TaskClient::new(Client::connect(&address).unwrap());
    let resources = serde_json::json!({
        "memory": {"limit": 64 << 20},
        "pids": {"limit": 77},
    });
    let req = UpdateTaskRequest {
        id: id.clone(),
        resources: Some(Any {
            type_url: "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources".into(),
            value: serde_json::to_vec(&resources).unwrap(),
            ..Default::default()
        })
        .into(),
        ..Default::default()
    };
    task.update(context::with_timeout(10_000_000_000), &req)
        .unwrap_or_else(|e| panic!("update: {e:?}\n{}", c.log()));
    // The limits, as the container's cgroups hold them.
    let o = c.ctr(&[
        "task",
        "exec",
        "--exec-id",
        "u1",
        &id,
        "cat",
        "/proc/self/cgroup",
    ]);
    assert!(o.status.success(), "exec: {}", text(&o));
    let cgroups = String::from_utf8_lossy(&o.stdout).to_string();
    let path_of = |controller: &str| {
        cgroups
            .lines()
            .find_map(|l| {
                let mut f = l.splitn(3, ':');
                let (_, names, path) = (f.next()?, f.next()?, f.next()?);
                names
                    .split(',')
                    .any(|n| n == controller)
                    .then(|| path.to_string())
            })
            .unwrap_or_else(|| panic!("no {controller} cgroup in {cgroups}"))
    };
    let read = |controller: &str, file: &str| {
        let p = format!("/sys/fs/cgroup/{controller}{}/{file}", path_of(controller));
        std::fs::read_to_string(&p)
            .unwrap_or_else(|e| panic!("{p}: {e}"))
            .trim()
            .to_string()
    };
    assert_eq!(
        read("memory", "memory.limit_in_bytes"),
        (64u64 << 20).to_string()
    );
    assert_eq!(read("pids", "pids.max"), "77");
    let _ = c.ctr(&["task", "kill", "-s", "SIGKILL", &id]);
    wait_status(&c, &id, "STOPPED");
    let _ = c.ctr(&["task", "rm", &id]);
    let _ = c.ctr(&["container", "rm", &id]);
}
