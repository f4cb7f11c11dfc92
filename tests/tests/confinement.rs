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

#[test]
fn idmapped_binds_show_host_files_as_the_containers_own() {
    let rt = Runtime::tinyo();
    let id = unique("idmap");
    let host = tempfile::Builder::new()
        .prefix("tinyo-idmap-")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(host.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(host.path().join("f"), "x").unwrap(); // owned by host root
    let script = "stat -c '%u %n' /plain/f /idmap/f /own/f; touch /idmap/made && echo made";
    let b = mapped_bundle(&id, script);
    // The rootfs belongs to the host's root: its mount points must exist already.
    for d in ["plain", "idmap", "own"] {
        std::fs::create_dir(b.rootfs().join(d)).unwrap();
    }
    let mut spec = b.config();
    let src = host.path().to_str().unwrap();
    let mounts = spec["mounts"].as_array_mut().unwrap();
    mounts.push(
        json!({"destination": "/plain", "type": "bind", "source": src, "options": ["rbind"]}),
    );
    mounts.push(json!({"destination": "/idmap", "type": "bind", "source": src, "options": ["rbind", "idmap"]}));
    mounts.push(json!({
        "destination": "/own", "type": "bind", "source": src, "options": ["bind", "idmap"],
        "uidMappings": [{"containerID": 0, "hostID": 101000, "size": 1000}],
        "gidMappings": [{"containerID": 0, "hostID": 101000, "size": 1000}],
    }));
    b.write_config(&spec);
    let (code, out, err) = rt.run(&b, &id);
    assert_eq!(code, Some(0), "{out} {err}");
    // Without idmap the host's root is nobody; through the container's own mapping it is the
    // container's root; through the mount's mapping (0 → 101000) it is uid 1000 inside.
    assert_eq!(
        out, "65534 /plain/f\n0 /idmap/f\n1000 /own/f\nmade\n",
        "{err}"
    );
    // What the container's root made through the idmapped bind belongs to root on disk.
    let made = std::fs::metadata(host.path().join("made")).unwrap();
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&made), 0);
}

#[test]
fn idmap_without_any_mapping_is_refused_before_anything_runs() {
    let rt = Runtime::tinyo();
    let id = unique("idmap-bad");
    let b = Bundle::new(&id, &["true"]);
    let mut spec = b.config();
    spec["mounts"].as_array_mut().unwrap().push(
        json!({"destination": "/x", "type": "bind", "source": "/tmp", "options": ["rbind", "idmap"]}),
    );
    b.write_config(&spec);
    let (code, _, err) = rt.run(&b, &id);
    assert_eq!(code, Some(1));
    assert!(err.contains("idmap needs the mount's uidMappings"), "{err}");
    assert!(!rt.root().join(&id).exists());
    assert!(leftover_cgroups(&format!("tinyo-test-{id}")).is_empty());
}

/// A detached container running `script`, with `resources`; deleted by the runtime on drop.
fn detached(rt: &Runtime, name: &str, script: &str, resources: Value) -> (String, Bundle) {
    let id = unique(name);
    let b = Bundle::new(&id, &["sh", "-c", script]);
    let mut spec = b.config();
    spec["linux"]["resources"] = resources;
    b.write_config(&spec);
    rt.track(&id);
    rt.ok(&[
        "run",
        "--detach",
        "--bundle",
        b.path().to_str().unwrap(),
        &id,
    ]);
    (id, b)
}

/// Reads lines of `child`'s stdout until one satisfies `want` (or the stream ends).
fn read_until(child: &mut std::process::Child, want: impl Fn(&str) -> bool) -> Vec<String> {
    use std::io::BufRead;
    let out = child.stdout.take().unwrap();
    let mut lines = Vec::new();
    for line in std::io::BufReader::new(out).lines() {
        let line = line.unwrap();
        let done = want(&line);
        lines.push(line);
        if done {
            break;
        }
    }
    lines
}

#[test]
fn memory_limit_oom_kills_and_the_kill_is_reported() {
    let rt = Runtime::tinyo();
    // After a second, a pipeline buffers 256 MiB against a 32 MiB limit; then the shell waits.
    let script =
        "sleep 1; head -c 256m /dev/zero | tail -c 256m > /dev/null; echo survived; sleep 60";
    let (id, _b) = detached(&rt, "oom", script, json!({"memory": {"limit": 33554432}}));
    let mut events = rt
        .cmd(&["events", "--interval", "1s", &id])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let lines = read_until(&mut events, |l| l.contains("\"oom\""));
    let last: Value = serde_json::from_str(lines.last().unwrap()).unwrap();
    assert_eq!(last, json!({"type": "oom", "id": id}), "{lines:?}");
    // The stats events before it were real counters.
    let stats: Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(stats["type"], "stats");
    assert_eq!(
        stats["data"]["memory"]["usage"]["limit"],
        json!(33554432u64)
    );
    rt.ok(&["kill", &id, "KILL"]);
    let status = events.wait().unwrap();
    assert!(
        status.success(),
        "events ends when the container stops: {status}"
    );
    rt.ok(&["delete", "--force", &id]);

    // In the foreground, an OOM-killed init is said as such, with 128+9.
    let id = unique("oom-fg");
    let b = Bundle::new(&id, &["sh", "-c", "exec tail -c 256m /dev/zero"]);
    let mut spec = b.config();
    spec["linux"]["resources"] = json!({"memory": {"limit": 33554432}});
    b.write_config(&spec);
    let (code, _, err) = rt.run(&b, &id);
    assert_eq!(code, Some(137), "{err}");
    assert!(err.contains("OOM-killed 1 process"), "{err}");
}

#[test]
fn pids_limit_stops_a_fork_loop_like_runc() {
    let mut results = Vec::new();
    for rt in [Runtime::tinyo(), Runtime::runc()] {
        let id = unique("pids");
        // Builtins only after the loop: at the limit, nothing more can fork.
        // busybox sh gives up when a fork fails: the loop runs in a subshell.
        let script = "(for i in $(seq 1 40); do sleep 30 & done) 2>/dev/null; \
            read c < /sys/fs/cgroup/pids/pids.current; read m < /sys/fs/cgroup/pids/pids.max; \
            echo $c $m";
        let b = Bundle::new(&id, &["sh", "-c", script]);
        let mut spec = b.config();
        spec["linux"]["resources"] = json!({"pids": {"limit": 12}});
        b.write_config(&spec);
        let (code, out, err) = rt.run(&b, &id);
        assert_eq!(code, Some(0), "{}: {err}", rt.name);
        results.push(out);
    }
    // The subshell stopped at the limit (12 with it), leaving the shell and 10 sleeps.
    assert_eq!(results[0], "11 12\n", "the loop did not stop at the limit");
    assert_eq!(results[0], results[1], "tinyo and runc disagree");
}

#[test]
fn pause_freezes_every_process_and_resume_thaws_them() {
    let rt = Runtime::tinyo();
    let script = "i=0; while true; do i=$((i+1)); echo $i > /tmp/count; sleep 0.02; done";
    let (id, b) = detached(&rt, "pause", script, json!({}));
    let count = || -> u64 {
        let text = std::fs::read_to_string(b.rootfs().join("tmp/count")).unwrap_or_default();
        text.trim().parse().unwrap_or(0)
    };
    let progressed = |from: u64| {
        (0..500).any(|_| {
            std::thread::sleep(std::time::Duration::from_millis(10));
            count() > from + 2
        })
    };
    assert!(progressed(0), "the loop never ran");
    rt.ok(&["pause", &id]);
    assert_eq!(rt.state(&id)["status"], "paused");
    let frozen = count();
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(count() <= frozen + 1, "a paused container made progress");
    // Pausing twice and resuming a running container are refused in one line.
    let o = rt.out(&["pause", &id]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("is paused"));
    rt.ok(&["resume", &id]);
    assert_eq!(rt.state(&id)["status"], "running");
    assert!(progressed(count()), "a resumed container made no progress");
    let o = rt.out(&["resume", &id]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("not paused"));
    rt.ok(&["delete", "--force", &id]);
}

#[test]
fn update_changes_the_limits_of_a_running_container() {
    let rt = Runtime::tinyo();
    let (id, b) = detached(
        &rt,
        "update",
        "sleep 60",
        json!({"pids": {"limit": 50}, "memory": {"limit": 67108864}}),
    );
    let read = || {
        rt.ok(&[
            "exec",
            &id,
            "cat",
            "/sys/fs/cgroup/pids/pids.max",
            "/sys/fs/cgroup/memory/memory.limit_in_bytes",
            "/sys/fs/cgroup/cpu/cpu.cfs_quota_us",
        ])
    };
    assert_eq!(read(), "50\n67108864\n-1\n");
    rt.ok(&[
        "update",
        "--pids-limit",
        "20",
        "--memory",
        "32m",
        "--cpu-quota",
        "50000",
        &id,
    ]);
    assert_eq!(read(), "20\n33554432\n50000\n");
    let file = b.path().join("resources.json");
    std::fs::write(&file, r#"{"pids": {"limit": 30}}"#).unwrap();
    rt.ok(&["update", "--resources", file.to_str().unwrap(), &id]);
    assert_eq!(read(), "30\n33554432\n50000\n");
    // A limit this host cannot honour is refused and changes nothing.
    std::fs::write(&file, r#"{"unified": {"memory.max": "1000000"}}"#).unwrap();
    let o = rt.out(&["update", "--resources", file.to_str().unwrap(), &id]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("memory") && err.contains("v1"), "{err}");
    assert_eq!(read(), "30\n33554432\n50000\n");
    let stats: Value = serde_json::from_str(&rt.ok(&["events", "--stats", &id])).unwrap();
    assert_eq!(stats["type"], "stats");
    assert_eq!(stats["data"]["pids"]["limit"], 30);
    assert!(
        stats["data"]["pids"]["current"].as_u64().unwrap() >= 1,
        "{stats}"
    );
    rt.ok(&["delete", "--force", &id]);
}

#[test]
fn limits_the_host_cannot_honour_fail_before_the_process_starts() {
    let rt = Runtime::tinyo();
    for (name, resources, want) in [
        (
            "hp",
            json!({"hugepageLimits": [{"pageSize": "3MB", "limit": 1048576}]}),
            "3MB",
        ),
        (
            "v2key",
            json!({"unified": {"memory.max": "1000"}}),
            "memory",
        ),
        ("netcls", json!({"network": {"classID": 1}}), "net_cls"),
    ] {
        let id = unique(name);
        let b = Bundle::new(&id, &["true"]);
        let mut spec = b.config();
        spec["linux"]["resources"] = resources;
        b.write_config(&spec);
        let (code, _, err) = rt.run(&b, &id);
        assert_eq!(code, Some(1), "{name}: {err}");
        assert!(err.contains(want), "{name}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{name}: {err}");
        assert!(!rt.root().join(&id).exists(), "{name}: state left");
        assert!(
            leftover_cgroups(&format!("tinyo-test-{id}")).is_empty(),
            "{name}: cgroup left"
        );
    }
}

/// Podman's default profile as the OCI section podman hands a runtime.
fn podman_profile() -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tinyo-core/src/seccomp/default.json");
    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
}

#[test]
fn seccomp_errno_kill_and_argument_rules_bite_like_runc() {
    let script = "mkdir /tmp/x; echo mkdir=$?; kill -USR1 $$; echo usr1=$?; kill -0 $$; \
        echo zero=$?; (sync); echo sync=$?";
    let seccomp = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [
            {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
            {"names": ["kill"], "action": "SCMP_ACT_ERRNO",
             "args": [{"index": 1, "value": 10, "op": "SCMP_CMP_EQ"}]},
            {"names": ["sync"], "action": "SCMP_ACT_KILL_PROCESS"},
            {"names": ["no_such_syscall_here"], "action": "SCMP_ACT_ERRNO"}
        ]
    });
    let mut outs = Vec::new();
    for rt in [Runtime::tinyo(), Runtime::runc()] {
        let id = unique("seccomp");
        let b = Bundle::new(&id, &["sh", "-c", script]);
        let mut spec = b.config();
        spec["linux"]["seccomp"] = seccomp.clone();
        b.write_config(&spec);
        let (code, out, err) = rt.run(&b, &id);
        assert_eq!(code, Some(0), "{}: {err}", rt.name);
        outs.push((out, err));
    }
    let (out, err) = &outs[0];
    assert_eq!(
        out, "mkdir=1\nusr1=1\nzero=0\nsync=159\n",
        "ENOSYS for mkdir, EPERM for kill(…, SIGUSR1) only, SIGSYS for sync: {err}"
    );
    assert!(err.contains("Function not implemented"), "{err}");
    assert_eq!(outs[0].0, outs[1].0, "tinyo and runc disagree");
}

#[test]
fn podmans_default_profile_runs_a_container_and_denies_what_it_denies() {
    let script = "echo ok; unshare -U true; echo unshare=$?";
    let mut outs = Vec::new();
    for rt in [Runtime::tinyo(), Runtime::runc()] {
        let id = unique("seccomp-podman");
        let b = Bundle::new(&id, &["sh", "-c", script]);
        let mut spec = b.config();
        spec["linux"]["seccomp"] = podman_profile();
        b.write_config(&spec);
        let (code, out, err) = rt.run(&b, &id);
        assert_eq!(code, Some(0), "{}: {err}", rt.name);
        outs.push(out);
    }
    assert!(outs[0].starts_with("ok\n"), "{}", outs[0]);
    assert_eq!(outs[0], outs[1], "tinyo and runc disagree");
    // The filter also binds processes exec'd into the container.
    let rt = Runtime::tinyo();
    let id = unique("seccomp-exec");
    let b = Bundle::new(&id, &["sleep", "60"]);
    let mut spec = b.config();
    spec["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}]
    });
    b.write_config(&spec);
    rt.track(&id);
    rt.ok(&[
        "run",
        "--detach",
        "--bundle",
        b.path().to_str().unwrap(),
        &id,
    ]);
    let o = rt.out(&["exec", &id, "mkdir", "/tmp/y"]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("Function not implemented"),
        "{o:?}"
    );
    assert!(
        rt.root().join(".seccomp-cache").is_dir(),
        "compiled programs are cached"
    );
    rt.ok(&["delete", "--force", &id]);
}

#[test]
fn seccomp_notify_sends_the_listener_and_state_to_the_agent() {
    let rt = Runtime::tinyo();
    let id = unique("seccomp-notify");
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("agent.sock");
    let agent = std::os::unix::net::UnixListener::bind(&sock_path).unwrap();
    let b = Bundle::new(&id, &["sh", "-c", "echo started; sleep 60"]);
    let mut spec = b.config();
    spec["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "listenerPath": sock_path,
        "listenerMetadata": "from-the-test",
        "syscalls": [{"names": ["mkdirat", "mkdir"], "action": "SCMP_ACT_NOTIFY"}]
    });
    b.write_config(&spec);
    rt.track(&id);
    rt.ok(&[
        "run",
        "--detach",
        "--bundle",
        b.path().to_str().unwrap(),
        &id,
    ]);
    let (conn, _) = agent.accept().unwrap();
    let (fd, state) = recv_fd(&conn);
    let state: Value = serde_json::from_str(&state).unwrap();
    let pid = rt.state(&id)["pid"].clone();
    assert_eq!(state["fds"], json!(["seccompFd"]));
    assert_eq!(state["metadata"], "from-the-test");
    assert_eq!(state["pid"], pid);
    assert_eq!(state["state"]["id"], json!(id));
    // The descriptor is a seccomp listener: fdinfo names it.
    let link = std::fs::read_link(format!(
        "/proc/self/fd/{}",
        std::os::fd::AsRawFd::as_raw_fd(&fd)
    ))
    .unwrap();
    assert!(
        link.to_string_lossy().contains("seccomp notify"),
        "{link:?}"
    );
    rt.ok(&["delete", "--force", &id]);
}

/// `struct seccomp_notif` and `struct seccomp_notif_resp` (linux/seccomp.h).
#[repr(C)]
#[derive(Default)]
struct Notif {
    id: u64,
    pid: u32,
    flags: u32,
    nr: i32,
    arch: u32,
    ip: u64,
    args: [u64; 6],
}

#[repr(C)]
struct NotifResp {
    id: u64,
    val: i64,
    error: i32,
    flags: u32,
}

const SECCOMP_IOCTL_NOTIF_RECV: libc::c_ulong = 0xc050_2100;
const SECCOMP_IOCTL_NOTIF_SEND: libc::c_ulong = 0xc018_2101;

/// The agent side of seccomp notify, as youki's and runc's tests drive it: the listener comes
/// during `create` (state `creating`), before `start`, and the agent answers the container's
/// first notified syscall (mkdir) with EROFS, which the container then sees.
#[test]
fn seccomp_notify_listener_arrives_at_create_and_answers_a_syscall() {
    use std::os::fd::AsRawFd;
    let rt = Runtime::tinyo();
    let id = unique("seccomp-agent");
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("agent.sock");
    let agent = std::os::unix::net::UnixListener::bind(&sock_path).unwrap();
    let b = Bundle::new(
        &id,
        &[
            "sh",
            "-c",
            "mkdir /tmp/notified 2>/tmp/err; echo $? > /tmp/rc",
        ],
    );
    let mut spec = b.config();
    spec["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "listenerPath": sock_path,
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}]
    });
    b.write_config(&spec);
    rt.track(&id);
    // The agent receives the listener while create runs: create returns only after sending.
    let receiver = std::thread::spawn(move || {
        let (conn, _) = agent.accept().unwrap();
        recv_fd(&conn)
    });
    rt.ok(&["create", "--bundle", b.path().to_str().unwrap(), &id]);
    let (fd, state) = receiver.join().unwrap();
    let state: Value = serde_json::from_str(&state).unwrap();
    assert_eq!(state["state"]["status"], "creating", "{state}");
    assert_eq!(
        rt.state(&id)["status"],
        "created",
        "the container has not started"
    );
    // Answer the first notification with EROFS.
    let answer = std::thread::spawn(move || {
        let mut n = Notif::default();
        // SAFETY: `n` is a seccomp_notif-sized, writable buffer; the fd is the listener.
        let r = unsafe { libc::ioctl(fd.as_raw_fd(), SECCOMP_IOCTL_NOTIF_RECV, &mut n) };
        assert_eq!(r, 0, "NOTIF_RECV: {}", std::io::Error::last_os_error());
        let resp = NotifResp {
            id: n.id,
            val: 0,
            error: -libc::EROFS,
            flags: 0,
        };
        // SAFETY: `resp` is a seccomp_notif_resp the kernel reads.
        let r = unsafe { libc::ioctl(fd.as_raw_fd(), SECCOMP_IOCTL_NOTIF_SEND, &resp) };
        assert_eq!(r, 0, "NOTIF_SEND: {}", std::io::Error::last_os_error());
        n.nr
    });
    rt.ok(&["start", &id]);
    let nr = answer.join().unwrap();
    assert!(
        [libc::SYS_mkdir, libc::SYS_mkdirat].contains(&(nr as i64)),
        "notified syscall {nr}"
    );
    rt.wait_status(&id, "stopped");
    let read = |f: &str| std::fs::read_to_string(b.rootfs().join(f)).unwrap_or_default();
    assert_eq!(read("tmp/rc").trim(), "1");
    assert!(
        read("tmp/err").contains("Read-only file system"),
        "{}",
        read("tmp/err")
    );
    assert!(!b.rootfs().join("tmp/notified").exists());
    rt.ok(&["delete", &id]);
}

/// Receives one descriptor and its payload from a unix socket.
fn recv_fd(stream: &std::os::unix::net::UnixStream) -> (std::os::fd::OwnedFd, String) {
    let (fd, data) = tinyo_core::sys::recv_fd_payload(std::os::fd::AsFd::as_fd(stream))
        .expect("receiving the listener and the state");
    (fd, String::from_utf8_lossy(&data).into_owned())
}

#[test]
fn rootless_wider_mappings_go_through_newuidmap() {
    require_root();
    let setpriv = require_tool("setpriv", "util-linux");
    require_tool("newuidmap", "uidmap");
    let id = unique("rootless-sub");
    let b = Bundle::new(
        &id,
        &[
            "sh",
            "-c",
            "id -u; cat /proc/self/uid_map /proc/self/gid_map",
        ],
    );
    std::fs::set_permissions(b.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut spec = b.config();
    let maps = json!([
        {"containerID": 0, "hostID": NOBODY, "size": 1},
        {"containerID": 1, "hostID": 300000, "size": 1000}
    ]);
    spec["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "user"}));
    spec["linux"]["uidMappings"] = maps.clone();
    spec["linux"]["gidMappings"] = maps;
    spec["linux"].as_object_mut().unwrap().remove("resources");
    b.write_config(&spec);
    // The subordinate ids newuidmap checks, granted to nobody in this test's mount namespace
    // only: /etc/subuid and /etc/subgid of the host are never touched.
    let state = tempfile::Builder::new()
        .prefix("tinyo-rootless-sub-")
        .tempdir()
        .unwrap();
    let sub = state.path().join("subids");
    std::fs::write(&sub, format!("{NOBODY}:300000:1000\n")).unwrap();
    let root = state.path().join("root");
    std::fs::create_dir(&root).unwrap();
    std::os::unix::fs::chown(&root, Some(NOBODY), Some(NOBODY)).unwrap();
    let o = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(r#"mount --bind "$1" /etc/subuid && mount --bind "$1" /etc/subgid && shift && exec "$@""#)
        .arg("sh")
        .arg(&sub)
        .arg(&setpriv)
        .args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
        .arg(bin("tinyo"))
        .arg("--root")
        .arg(&root)
        .args(["run", "--bundle", b.path().to_str().unwrap(), &id])
        .output()
        .unwrap();
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert!(o.status.success(), "{out} {err}");
    let lines: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines[0], ["0"], "{out}");
    for i in [1, 3] {
        assert_eq!(lines[i], ["0", "65534", "1"], "{out}");
        assert_eq!(lines[i + 1], ["1", "300000", "1000"], "{out}");
    }
    assert!(!root.join(&id).exists());
}

#[test]
fn lsm_labels_without_that_lsm_are_ignored_with_a_debug_note() {
    let rt = Runtime::tinyo();
    if std::path::Path::new("/sys/fs/selinux/enforce").exists()
        || std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
            .is_ok_and(|s| s.trim() == "Y")
    {
        eprintln!("skipped: this host runs AppArmor or SELinux");
        return;
    }
    let id = unique("lsm");
    let b = Bundle::new(&id, &["true"]);
    let mut spec = b.config();
    spec["process"]["apparmorProfile"] = json!("docker-default");
    spec["process"]["selinuxLabel"] = json!("system_u:system_r:container_t:s0");
    b.write_config(&spec);
    rt.track(&id);
    let o = rt.out(&[
        "--debug",
        "run",
        "--bundle",
        b.path().to_str().unwrap(),
        &id,
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("apparmorProfile \"docker-default\" ignored"),
        "{err}"
    );
    assert!(err.contains("selinuxLabel"), "{err}");
    // Without --debug the run is quiet.
    let id = unique("lsm-quiet");
    rt.track(&id);
    let o = rt.out(&["run", "--bundle", b.path().to_str().unwrap(), &id]);
    assert!(o.status.success());
    assert_eq!(String::from_utf8_lossy(&o.stderr), "");
}

/// Runs tinyo in a private mount namespace that shows only the cgroup2 hierarchy, mounted at
/// /sys/fs/cgroup — what a pure cgroup v2 host looks like (here it holds only hugetlb, since
/// the host binds the other controllers to v1). The host's mounts are never touched.
fn on_pure_v2(rt: &Runtime, args: &[&str]) -> std::process::Output {
    let setup = "grep ' - cgroup ' /proc/self/mountinfo | cut -d' ' -f5 | \
        while read m; do umount -l \"$m\"; done; \
        umount -l /sys/fs/cgroup/unified && umount -l /sys/fs/cgroup && \
        mount -t cgroup2 cgroup2 /sys/fs/cgroup && exec \"$@\"";
    let mut c = Command::new("unshare");
    c.args([
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        setup,
        "sh",
    ])
    .arg(&rt.bin)
    .arg("--root")
    .arg(rt.root())
    .args(args)
    .stdin(std::process::Stdio::null());
    rt.out_of(c, args)
}

#[test]
fn a_pure_cgroup_v2_layout_works_on_the_real_kernel() {
    let rt = Runtime::tinyo();
    if !std::path::Path::new("/sys/fs/cgroup/unified/cgroup.controllers").exists() {
        eprintln!("skipped: this host has no cgroup2 mount at /sys/fs/cgroup/unified");
        return;
    }
    let id = unique("v2");
    let script = "{ read l < /sys/fs/cgroup/hugetlb.2MB.max; echo hugetlb=$l; \
        echo x > /dev/null && echo null=ok; head -c1 /dev/kmsg > /dev/null 2>&1; echo kmsg=$?; \
        ls /sys/fs/cgroup/cgroup.procs; } > /tmp/out 2>&1; sleep 60";
    let b = Bundle::new(&id, &["sh", "-c", script]);
    let mut spec = b.config();
    spec["linux"]["resources"] = json!({
        "hugepageLimits": [{"pageSize": "2MB", "limit": 4194304}],
        "devices": [{"allow": false, "access": "rwm"}]
    });
    spec["mounts"].as_array_mut().unwrap().push(
        json!({"destination": "/dev/kmsg", "type": "bind", "source": "/dev/kmsg", "options": ["bind"]}),
    );
    b.write_config(&spec);
    rt.track(&id);
    let o = on_pure_v2(
        &rt,
        &["create", "--bundle", b.path().to_str().unwrap(), &id],
    );
    assert!(o.status.success(), "{o:?}");
    let o = on_pure_v2(&rt, &["start", &id]);
    assert!(o.status.success(), "{o:?}");
    let out_file = b.rootfs().join("tmp/out");
    let mut out = String::new();
    for _ in 0..1000 {
        out = std::fs::read_to_string(&out_file).unwrap_or_default();
        if out.contains("cgroup.procs") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    // The limit is in v2, the eBPF device filter lets /dev/null through and stops /dev/kmsg,
    // and the container sees its own cgroup at /sys/fs/cgroup.
    assert_eq!(
        out,
        "hugetlb=4194304\nnull=ok\nkmsg=1\n/sys/fs/cgroup/cgroup.procs\n"
    );
    // Its cgroup is in the v2 hierarchy only.
    let pid = rt.state(&id)["pid"].as_i64().unwrap();
    let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let v2 = cg
        .lines()
        .find(|l| l.starts_with("0::"))
        .unwrap()
        .to_string();
    assert!(v2.ends_with(&format!("tinyo-test-{id}")), "{cg}");
    // Freeze through cgroup.freeze, thaw, then kill through cgroup.kill.
    let o = on_pure_v2(&rt, &["pause", &id]);
    assert!(o.status.success(), "{o:?}");
    // The hierarchy is the host's /sys/fs/cgroup/unified, seen from outside that namespace.
    let events = format!("/sys/fs/cgroup/unified{}/cgroup.events", &v2[3..]);
    let frozen = || {
        std::fs::read_to_string(&events)
            .unwrap()
            .contains("frozen 1")
    };
    assert!(frozen(), "pause did not freeze the cgroup");
    let o = on_pure_v2(&rt, &["state", &id]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("\"paused\""),
        "{o:?}"
    );
    let o = on_pure_v2(&rt, &["resume", &id]);
    assert!(o.status.success(), "{o:?}");
    assert!(!frozen(), "resume did not thaw the cgroup");
    let o = on_pure_v2(&rt, &["events", "--stats", &id]);
    let stats: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("{o:?}"));
    assert_eq!(stats["type"], "stats", "{stats}");
    let o = on_pure_v2(&rt, &["kill", "--all", &id, "KILL"]);
    assert!(o.status.success(), "{o:?}");
    rt.wait_status(&id, "stopped");
    let o = on_pure_v2(&rt, &["delete", &id]);
    assert!(o.status.success(), "{o:?}");
    assert!(leftover_cgroups(&format!("tinyo-test-{id}")).is_empty());
}

/// podman's and docker's default profiles, as each engine hands them to the runtime, with and
/// without noNewPrivileges: the container and an exec into it run as under runc (issue 16.1:
/// nothing tinyo does after loading the filter may need a syscall a profile refuses).
#[test]
fn podman_and_docker_default_profiles_run_and_exec_as_under_runc() {
    use tinyo_tests::profiles;
    let (runc, tinyo) = (Runtime::runc(), Runtime::tinyo());
    for (engine, source) in [
        ("podman", profiles::podman_source()),
        ("docker", profiles::docker_source()),
    ] {
        for nnp in [true, false] {
            let id = unique("seccomp-engine");
            let script = "echo ok; grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status; \
                ls /bin > /dev/null && echo listed; (unshare -m true 2>/dev/null && echo unshared) \
                || echo no-unshare";
            let b = Bundle::new(&id, &["sh", "-c", script]);
            let mut spec = b.config();
            let caps: Vec<String> = spec["process"]["capabilities"]["bounding"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c.as_str().unwrap().to_string())
                .collect();
            let caps: Vec<&str> = caps.iter().map(String::as_str).collect();
            spec["linux"]["seccomp"] = profiles::to_oci(&source, &caps);
            spec["process"]["noNewPrivileges"] = nnp.into();
            b.write_config(&spec);
            let (rc, want, rerr) = runc.run(&b, &id);
            assert_eq!(rc, Some(0), "runc {engine} nnp={nnp}: {rerr}");
            let (tc, got, terr) = tinyo.run(&b, &id);
            assert_eq!(tc, Some(0), "tinyo {engine} nnp={nnp}: {terr}");
            assert_eq!(
                got, want,
                "{engine} nnp={nnp}: tinyo (left) vs runc (right)"
            );
            assert!(
                got.contains("Seccomp:\t2") && got.contains("no-unshare"),
                "{got}"
            );

            // exec into a running container under the same filter.
            let id = unique("seccomp-engine-x");
            spec["process"]["args"] = json!(["sleep", "1000"]);
            b.write_config(&spec);
            tinyo.track(&id);
            tinyo.ok(&["run", "-d", "--bundle", b.path().to_str().unwrap(), &id]);
            let out = tinyo.ok(&["exec", &id, "sh", "-c", "echo exec-ok"]);
            assert_eq!(out, "exec-ok\n", "{engine} nnp={nnp}");
            tinyo.ok(&["delete", "--force", &id]);
        }
    }
}
