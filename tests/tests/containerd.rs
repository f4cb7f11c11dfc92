//! containerd drives tinyo through its stock runc shim (`ctr run --runc-binary <tinyo>`), the
//! way Kubernetes reaches a runc-compatible runtime through a RuntimeClass. Images are local
//! (the fixture catalogue, imported as an OCI archive).

use std::process::Output;

use tinyo_tests::bins::bin;
use tinyo_tests::catalogue;
use tinyo_tests::containerd::Containerd;
use tinyo_tests::host::{require_root, unique};

fn text(o: &Output) -> String {
    format!(
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn setup() -> (Containerd, tempfile::TempDir) {
    require_root();
    let c = Containerd::start();
    let layout = tempfile::tempdir().unwrap();
    catalogue::build(layout.path());
    c.import_layout(layout.path(), "localhost/bbox");
    (c, layout)
}

#[test]
fn ctr_run_returns_output_and_exit_code() {
    let (c, _layout) = setup();
    let tinyo = bin("tinyo");
    let id = unique("ctr");
    let o = c.ctr(&[
        "run",
        "--rm",
        "--runc-binary",
        tinyo.to_str().unwrap(),
        "localhost/bbox:single",
        &id,
        "sh",
        "-c",
        "echo hi from tinyo; id -u; hostname; exit 4",
    ]);
    assert_eq!(o.status.code(), Some(4), "{}\n{}", text(&o), c.log());
    let out = String::from_utf8_lossy(&o.stdout);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[..2], ["hi from tinyo", "0"], "{}", text(&o));
    assert_eq!(lines.len(), 3);
}

#[test]
fn ctr_detached_exec_kill_rm() {
    let (c, _layout) = setup();
    let tinyo = bin("tinyo");
    let id = unique("ctrd");
    let o = c.ctr(&[
        "run",
        "-d",
        "--runc-binary",
        tinyo.to_str().unwrap(),
        "localhost/bbox:multi",
        &id,
        "sh",
        "-c",
        "trap 'exit 0' TERM; while true; do sleep 0.1; done",
    ]);
    assert!(o.status.success(), "run -d: {}\n{}", text(&o), c.log());
    let o = c.ctr(&["task", "ls"]);
    assert!(
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .any(|l| l.starts_with(&id) && l.contains("RUNNING")),
        "{}",
        text(&o)
    );
    let o = c.ctr(&[
        "task",
        "exec",
        "--exec-id",
        "e1",
        &id,
        "cat",
        "/data/keep",
        "/opaque/new",
    ]);
    assert!(o.status.success(), "exec: {}", text(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "keep\nnew\n",
        "the image's own files"
    );
    let o = c.ctr(&["task", "kill", &id]);
    assert!(o.status.success(), "kill: {}", text(&o));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let o = c.ctr(&["task", "ls"]);
        if String::from_utf8_lossy(&o.stdout)
            .lines()
            .any(|l| l.starts_with(&id) && l.contains("STOPPED"))
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "task did not stop: {}",
            text(&o)
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let o = c.ctr(&["task", "rm", &id]);
    assert!(o.status.success(), "task rm: {}", text(&o));
    let o = c.ctr(&["container", "rm", &id]);
    assert!(o.status.success(), "container rm: {}", text(&o));
    let runtime_state = std::path::Path::new("/run/containerd/runc")
        .join(c.namespace())
        .join(&id);
    // containerd asks for /<namespace>/<id>: tinyo removes the namespace level it created too.
    for h in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        assert!(
            !h.path().join(c.namespace()).exists(),
            "cgroup {} left behind",
            h.path().join(c.namespace()).display()
        );
    }
    assert!(
        !runtime_state.exists(),
        "tinyo's state for {id} left behind"
    );
}
