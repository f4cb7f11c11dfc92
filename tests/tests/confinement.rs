//! End-to-end tests of confinement (issue 6): user namespaces and rootless, seccomp, cgroup
//! limits that bite, and the lifecycle commands on top of cgroups (update, pause/resume,
//! events, kill --all). Every container runs in a private mount namespace and is deleted on
//! drop; tests compare with runc where the two can be compared.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use serde_json::{json, Value};
use tinyo_tests::bins::bin;
use tinyo_tests::busybox::Bundle;
use tinyo_tests::host::{leftover_cgroups, require_root, require_tool, unique};
use tinyo_tests::oci::Runtime;

/// What a user-namespaced container sees of itself, and how the host sees its process.
const USERNS_VIEW: &str = "id; cat /proc/self/uid_map /proc/self/gid_map; \
    stat -c '%u:%g %n' / /bin/busybox /dev/null; touch /tmp/x && stat -c '%u:%g %n' /tmp/x";

fn mapped_bundle(id: &str, script: &str) -> Bundle {
    let b = Bundle::new(id, &["sh", "-c", script]);
    let mut spec = b.config();
    spec["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "user"}));
    spec["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    spec["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    // /tmp belongs to the container's root (host uid 100000), as an engine would chown it.
    b.write_config(&spec);
    let tmp = b.rootfs().join("tmp");
    std::os::unix::fs::chown(&tmp, Some(100000), Some(100000)).unwrap();
    // The container's root must reach the rootfs through the bundle directory.
    std::fs::set_permissions(b.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    b
}

#[test]
fn user_namespace_maps_root_to_a_host_range_like_runc() {
    let tinyo = Runtime::tinyo();
    let runc = Runtime::runc();
    let mut views = Vec::new();
    for rt in [&tinyo, &runc] {
        let id = unique("userns");
        let b = mapped_bundle(&id, USERNS_VIEW);
        let (code, out, err) = rt.run(&b, &id);
        assert_eq!(code, Some(0), "{} failed: {out} {err}", rt.name);
        views.push(out);
    }
    assert_eq!(views[0], views[1], "tinyo and runc disagree");
    assert!(
        views[0].starts_with("uid=0(root) gid=0(root)"),
        "{}",
        views[0]
    );
    assert!(views[0].contains("0     100000      65536"), "{}", views[0]);
    // Host-owned files show as the overflow id; what the container makes is its root's.
    assert!(
        views[0].contains("65534:65534 /bin/busybox"),
        "{}",
        views[0]
    );
    assert!(views[0].contains("0:0 /tmp/x"), "{}", views[0]);
}

#[test]
fn user_namespaced_process_is_the_mapped_uid_on_the_host_and_exec_joins_it() {
    let rt = Runtime::tinyo();
    let id = unique("userns-exec");
    let b = mapped_bundle(&id, "sleep 30");
    rt.track(&id);
    rt.ok(&[
        "run",
        "--detach",
        "--bundle",
        b.path().to_str().unwrap(),
        &id,
    ]);
    let pid = rt.state(&id)["pid"].as_i64().unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert_eq!(
        uid_line.split_whitespace().nth(1),
        Some("100000"),
        "{uid_line}"
    );
    let out = rt.ok(&["exec", &id, "sh", "-c", "id -u; cat /proc/self/uid_map"]);
    assert!(out.starts_with("0\n"), "{out}");
    assert!(out.contains("100000"), "{out}");
    rt.ok(&["kill", &id, "KILL"]);
    rt.wait_status(&id, "stopped");
    rt.ok(&["delete", &id]);
}

#[test]
fn mappings_without_a_user_namespace_are_refused() {
    let rt = Runtime::tinyo();
    let id = unique("userns-bad");
    let b = Bundle::new(&id, &["true"]);
    let mut spec = b.config();
    spec["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 1}]);
    b.write_config(&spec);
    let (code, _, err) = rt.run(&b, &id);
    assert_eq!(code, Some(1));
    assert!(err.contains("no new user namespace"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(!rt.root().join(&id).exists());
}

/// The uid and gid of `nobody`, an ordinary user every Debian machine has.
const NOBODY: u32 = 65534;

#[test]
fn rootless_container_runs_as_an_ordinary_user() {
    require_root();
    let setpriv = require_tool("setpriv", "util-linux");
    let id = unique("rootless");
    let b = Bundle::new(&id, &["true"]);
    let dir = b.path();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::remove_file(dir.join("config.json")).unwrap();
    let state = tempfile::Builder::new()
        .prefix("tinyo-rootless-")
        .tempdir()
        .unwrap();
    std::os::unix::fs::chown(state.path(), Some(NOBODY), Some(NOBODY)).unwrap();
    let as_nobody = |args: &[&str]| {
        let mut c = Command::new("unshare");
        c.args(["--mount", "--propagation", "private"])
            .arg(&setpriv)
            .args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
            .arg(bin("tinyo"))
            .arg("--root")
            .arg(state.path())
            .args(args)
            .current_dir(dir);
        c.output().unwrap()
    };
    let o = as_nobody(&["spec", "--rootless"]);
    assert!(o.status.success(), "{o:?}");
    let mut spec: Value =
        serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(
        spec["linux"]["uidMappings"],
        json!([{"containerID": 0, "hostID": NOBODY, "size": 1}])
    );
    spec["process"]["terminal"] = json!(false);
    spec["process"]["args"] = json!([
        "sh",
        "-c",
        "id; cat /proc/self/uid_map; echo hi > /dev/null && ls /proc/1/status"
    ]);
    b.write_config(&spec);
    let o = as_nobody(&["run", "--bundle", dir.to_str().unwrap(), &id]);
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert!(o.status.success(), "rootless run failed: {out} {err}");
    assert!(out.starts_with("uid=0(root) gid=0(root)"), "{out}");
    assert!(out.contains("0      65534          1"), "{out}");
    assert!(out.contains("/proc/1/status"), "{out}");
    // No delegated cgroup subtree here: said once, and nothing made.
    assert!(
        err.contains("rootless: no writable delegated cgroup subtree"),
        "{err}"
    );
    assert!(leftover_cgroups(&format!("tinyo-test-{id}")).is_empty());
    assert!(!state.path().join(&id).exists());
}
