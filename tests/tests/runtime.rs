//! tinyo as a runtime, with runc as the oracle: the same busybox bundles run under both and the
//! container must see the same things (user, hostname, capabilities, /dev, mounts, rlimits,
//! exit codes); the create → start → state → kill → delete lifecycle; and bad input that must
//! fail with one line and leave nothing behind.
//!
//! Every runtime runs inside `unshare --mount --propagation private`, so nothing it mounts can
//! reach the host, and every container is deleted with `--force` whatever the test did.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use tinyo_tests::busybox::Bundle;
use tinyo_tests::host::{leftover_cgroups, unique};
use tinyo_tests::oci::Runtime;

/// Mount lines of the host naming `path`.
fn mounts_mentioning(path: &Path) -> Vec<String> {
    let p = path.display().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.contains(&p))
        .map(str::to_string)
        .collect()
}

fn alive(pid: i64) -> bool {
    // A zombie still answers kill(0): look at its state instead.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").map(|(_, r)| r.chars().next()))
        .flatten()
        .is_some_and(|c| c != 'Z' && c != 'X')
}

/// What the container sees, printed by busybox; /proc/mounts reduced to mount point, type
/// and options (the source column names the host's mounts differently across runtimes).
const PROBE: &str = "id; hostname; grep -E '^(Cap|NoNewPrivs)' /proc/self/status; ls -A /dev; \
    ls -l /dev/ptmx /dev/fd /dev/stdin | awk '{print $1, $9, $10, $11}'; \
    awk '{print $2, $3, $4}' /proc/mounts; ulimit -n; ulimit -Hn; umask; pwd; \
    cat /proc/kcore 2>&1 | head -c 40; echo; ls /proc/acpi | wc -l; \
    touch /proc/sys/kernel/x 2>&1 | sed 's/^touch: //'; exit 3";

#[test]
fn container_sees_the_same_as_under_runc() {
    let id = unique("rt-view");
    let bundle = Bundle::new(&id, &["/bin/sh", "-c", PROBE]);
    let runc = Runtime::runc();
    let tinyo = Runtime::tinyo();
    let (rc, want, rerr) = runc.run(&bundle, &id);
    assert_eq!(rc, Some(3), "runc: {want}\n{rerr}");
    let (tc, got, terr) = tinyo.run(&bundle, &id);
    assert_eq!(tc, Some(3), "tinyo exit code; stdout {got}\nstderr {terr}");
    assert_eq!(
        got, want,
        "tinyo (left) and runc (right) disagree; tinyo stderr: {terr}"
    );
    assert!(
        got.contains("uid=0(root)") && got.contains("\ntinyo\n"),
        "{got}"
    );
    assert!(leftover_cgroups(&format!("tinyo-test-{id}")).is_empty());
    assert!(
        tinyo.out(&["state", &id]).status.code() != Some(0),
        "run leaves no state"
    );
}

#[test]
fn non_root_user_groups_caps_and_cwd_match_runc() {
    let id = unique("rt-user");
    let bundle = Bundle::new(
        &id,
        &[
            "/bin/sh",
            "-c",
            "id; grep -E '^(Cap|Groups)' /proc/self/status; umask; pwd; touch /root/x 2>&1 | sed 's/^touch: //'",
        ],
    );
    let mut cfg = bundle.config();
    cfg["process"]["user"] =
        serde_json::json!({"uid": 1000, "gid": 1000, "additionalGids": [65534], "umask": 63});
    cfg["process"]["cwd"] = serde_json::json!("/home/tinyo");
    cfg["process"]["capabilities"]["ambient"] = serde_json::json!(["CAP_KILL"]);
    cfg["process"]["capabilities"]["inheritable"] = serde_json::json!(["CAP_KILL"]);
    cfg["process"]["rlimits"] =
        serde_json::json!([{"type": "RLIMIT_NOFILE", "soft": 512, "hard": 1024}]);
    bundle.write_config(&cfg);
    let (rc, want, rerr) = Runtime::runc().run(&bundle, &id);
    assert_eq!(rc, Some(0), "runc: {want}\n{rerr}");
    let (tc, got, terr) = Runtime::tinyo().run(&bundle, &id);
    assert_eq!(tc, Some(0), "tinyo: {got}\n{terr}");
    assert_eq!(
        got, want,
        "tinyo (left) vs runc (right); tinyo stderr {terr}"
    );
    assert!(got.starts_with("uid=1000(tinyo) gid=1000(tinyo)"), "{got}");
}

#[test]
fn exit_codes_and_signals_like_runc() {
    // crun too: the exit-code contract is the same for every runtime.
    for rt in [Runtime::runc(), Runtime::crun(), Runtime::tinyo()] {
        let id = unique("rt-exit");
        let bundle = Bundle::new(&id, &["/bin/sh", "-c", "exit 3"]);
        let (code, _, err) = rt.run(&bundle, &id);
        assert_eq!(code, Some(3), "{}: {err}", rt.name);

        // Killed from outside while running in the foreground: 128 + 9.
        let id = unique("rt-sig");
        let bundle = Bundle::new(&id, &["/bin/sleep", "100"]);
        rt.track(&id);
        let mut child: Child = rt
            .cmd(&["run", "--bundle", bundle.path().to_str().unwrap(), &id])
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        rt.wait_status(&id, "running");
        rt.ok(&["kill", &id, "KILL"]);
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(137), "{} run after kill KILL", rt.name);
    }
}

#[test]
fn lifecycle_create_start_state_kill_delete() {
    let rt = Runtime::tinyo();
    let id = unique("rt-life");
    let bundle = Bundle::new(
        &id,
        &[
            "/bin/sh",
            "-c",
            "echo started > /tmp/started; exec sleep 100",
        ],
    );
    let mut cfg = bundle.config();
    cfg["annotations"] = serde_json::json!({"org.tinyo.test": "yes"});
    bundle.write_config(&cfg);
    let pid_file = rt.root.path().join("pidfile");
    rt.track(&id);
    let b = bundle.path().to_str().unwrap();
    // Flags after the id, as conmon passes them.
    rt.ok(&[
        "create",
        &id,
        "--bundle",
        b,
        "--pid-file",
        pid_file.to_str().unwrap(),
    ]);

    let st = rt.state(&id);
    assert_eq!(st["ociVersion"], "1.2.0");
    assert_eq!(st["id"], id.as_str());
    assert_eq!(st["status"], "created");
    assert_eq!(st["bundle"], b);
    assert_eq!(st["annotations"]["org.tinyo.test"], "yes");
    let pid = st["pid"].as_i64().unwrap();
    assert!(pid > 0 && alive(pid), "{st}");
    let from_file: i64 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(from_file, pid);
    assert!(
        !bundle.rootfs().join("tmp/started").exists(),
        "process ran before start"
    );

    let list: Value = serde_json::from_str(&rt.ok(&["list", "--format", "json"])).unwrap();
    assert_eq!(list[0]["id"], id.as_str());
    assert_eq!(list[0]["status"], "created");

    rt.ok(&["start", &id]);
    rt.wait_status(&id, "running");
    for _ in 0..1000 {
        if bundle.rootfs().join("tmp/started").exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        bundle.rootfs().join("tmp/started").exists(),
        "process never ran"
    );

    let o = rt.out(&["start", &id]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("running"),
        "start twice: {err}"
    );
    let o = rt.out(&["delete", &id]);
    assert!(
        !o.status.success(),
        "delete of a running container needs --force"
    );

    rt.ok(&["kill", &id, "SIGKILL"]);
    let st = rt.wait_status(&id, "stopped");
    assert_eq!(st["pid"], 0);
    rt.ok(&["delete", &id]);
    assert!(!rt.root.path().join(&id).exists(), "state dir left behind");
    assert!(!alive(pid));
    assert!(leftover_cgroups(&format!("tinyo-test-{id}")).is_empty());
    assert!(mounts_mentioning(bundle.path()).is_empty());
    let o = rt.out(&["state", &id]);
    assert!(!o.status.success());
}

#[test]
fn delete_force_kills_a_created_container() {
    let rt = Runtime::tinyo();
    let id = unique("rt-force");
    let bundle = Bundle::new(&id, &["/bin/true"]);
    rt.track(&id);
    rt.ok(&["create", "--bundle", bundle.path().to_str().unwrap(), &id]);
    let pid = rt.state(&id)["pid"].as_i64().unwrap();
    rt.ok(&["delete", "--force", &id]);
    assert!(
        !alive(pid),
        "container process {pid} survived delete --force"
    );
    assert!(!rt.root.path().join(&id).exists());
    assert!(leftover_cgroups(&format!("tinyo-test-{id}")).is_empty());
}

/// Runs a failing command and checks: non-zero, one line on stderr mentioning `want`, and no
/// state, mount or cgroup left for `id`.
fn fails_cleanly(rt: &Runtime, args: &[&str], id: &str, want: &str, bundle: Option<&Path>) {
    let o = rt.out(args);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{args:?} succeeded");
    assert_eq!(
        err.trim().lines().count(),
        1,
        "{args:?}: not one line: {err}"
    );
    assert!(
        err.contains(want),
        "{args:?}: {err:?} does not mention {want:?}"
    );
    assert!(
        !rt.root.path().join(id).exists(),
        "{args:?} left state behind"
    );
    assert!(
        leftover_cgroups(&format!("tinyo-test-{id}")).is_empty(),
        "{args:?} left a cgroup"
    );
    if let Some(b) = bundle {
        assert!(mounts_mentioning(b).is_empty(), "{args:?} left mounts");
    }
}

#[test]
fn bad_input_fails_with_one_line_and_leaves_nothing() {
    let rt = Runtime::tinyo();
    let id = unique("rt-bad");
    rt.track(&id);
    let bundle = Bundle::new(&id, &["/bin/true"]);
    let b = bundle.path().to_str().unwrap();
    let good = bundle.config();

    fails_cleanly(
        &rt,
        &["create", "--bundle", "/nonexistent/bundle", &id],
        &id,
        "/nonexistent/bundle",
        None,
    );

    std::fs::write(bundle.path().join("config.json"), "{ not json").unwrap();
    fails_cleanly(
        &rt,
        &["create", "--bundle", b, &id],
        &id,
        "config.json",
        Some(bundle.path()),
    );

    let mut cfg = good.clone();
    cfg["linux"]["namespaces"][0]["type"] = serde_json::json!("bogus");
    bundle.write_config(&cfg);
    fails_cleanly(
        &rt,
        &["create", "--bundle", b, &id],
        &id,
        "config.json",
        Some(bundle.path()),
    );

    let mut cfg = good.clone();
    cfg["mounts"][0]["type"] = serde_json::json!("nosuchfs");
    bundle.write_config(&cfg);
    fails_cleanly(
        &rt,
        &["create", "--bundle", b, &id],
        &id,
        "nosuchfs",
        Some(bundle.path()),
    );

    let mut cfg = good.clone();
    cfg["mounts"][0]["destination"] = serde_json::json!("/../../../etc/x");
    bundle.write_config(&cfg);
    fails_cleanly(
        &rt,
        &["create", "--bundle", b, &id],
        &id,
        "escapes",
        Some(bundle.path()),
    );

    let mut cfg = good.clone();
    cfg["process"]["args"] = serde_json::json!(["no-such-binary"]);
    bundle.write_config(&cfg);
    fails_cleanly(
        &rt,
        &["create", "--bundle", b, &id],
        &id,
        "no-such-binary",
        Some(bundle.path()),
    );

    let mut cfg = good.clone();
    cfg["process"]["cwd"] = serde_json::json!("/does/not/exist");
    bundle.write_config(&cfg);
    fails_cleanly(
        &rt,
        &["create", "--bundle", b, &id],
        &id,
        "/does/not/exist",
        Some(bundle.path()),
    );

    for (cmd, extra) in [
        ("state", None),
        ("start", None),
        ("kill", Some("TERM")),
        ("delete", None),
    ] {
        let mut args = vec![cmd, id.as_str()];
        args.extend(extra);
        fails_cleanly(&rt, &args, &id, "does not exist", None);
    }
    // As runc: `delete --force` of an unknown id succeeds, and removes the state directory a
    // `create` that died before writing its state left behind.
    rt.ok(&["delete", "--force", &id]);
    let root = rt.root();
    std::fs::create_dir_all(root.join(&id)).unwrap();
    rt.ok(&["delete", "--force", &id]);
    assert!(
        !root.join(&id).exists(),
        "unfinished state directory removed"
    );
    fails_cleanly(
        &rt,
        &["--systemd-cgroup", "create", "--bundle", b, &id],
        &id,
        "systemd",
        None,
    );

    // A duplicate id is refused and the first container is untouched.
    bundle.write_config(&good);
    rt.ok(&["create", "--bundle", b, &id]);
    let o = rt.out(&["create", "--bundle", b, &id]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("already exists"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert_eq!(rt.state(&id)["status"], "created");
    rt.ok(&["delete", "--force", &id]);
    assert!(!rt.root.path().join(&id).exists());
}

#[test]
fn json_log_lines_for_errors() {
    let rt = Runtime::tinyo();
    let log = rt.root.path().join("log.json");
    let o = rt.out(&[
        "--log",
        log.to_str().unwrap(),
        "--log-format",
        "json",
        "state",
        "nope",
    ]);
    assert!(!o.status.success());
    let text = std::fs::read_to_string(&log).unwrap();
    let v: Value = serde_json::from_str(text.trim()).expect("one JSON line");
    assert_eq!(v["level"], "error");
    assert!(v["msg"].as_str().unwrap().contains("nope"), "{v}");
    assert!(v["time"].is_string());
}

#[test]
fn exec_ps_and_kill_all_in_a_running_container() {
    let rt = Runtime::tinyo();
    let id = unique("rt-exec");
    let bundle = Bundle::new(&id, &["/bin/sleep", "100"]);
    rt.track(&id);
    rt.ok(&["create", "--bundle", bundle.path().to_str().unwrap(), &id]);
    rt.ok(&["start", &id]);
    let init = rt.wait_status(&id, "running")["pid"].as_i64().unwrap();

    let o = rt.out(&[
        "exec",
        &id,
        "sh",
        "-c",
        "hostname; id -u; echo $$; tr '\\0' ' ' < /proc/1/cmdline; exit 5",
    ]);
    assert_eq!(
        o.status.code(),
        Some(5),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "tinyo\n0\n2\n/bin/sleep 100 "
    );

    let out = rt.ok(&[
        "exec",
        "--user",
        "1000:1000",
        "--cwd",
        "/home/tinyo",
        &id,
        "sh",
        "-c",
        "id -u; pwd",
    ]);
    assert_eq!(out, "1000\n/home/tinyo\n");

    let pid_file = rt.root.path().join("exec.pid");
    rt.ok(&[
        "exec",
        "-d",
        "--pid-file",
        pid_file.to_str().unwrap(),
        &id,
        "sleep",
        "50",
    ]);
    let exec_pid: i64 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let ps: Vec<i64> = serde_json::from_str(&rt.ok(&["ps", "--format", "json", &id])).unwrap();
    assert!(
        ps.contains(&init) && ps.contains(&exec_pid),
        "{ps:?} lacks {init} or {exec_pid}"
    );

    let o = rt.out(&["exec", &id, "no-such-binary"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("no-such-binary"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    rt.ok(&["kill", "--all", &id, "KILL"]);
    rt.wait_status(&id, "stopped");
    assert!(!alive(exec_pid), "kill --all left the exec'd process");
    rt.ok(&["delete", &id]);
    assert!(leftover_cgroups(&format!("tinyo-test-{id}")).is_empty());
}

#[test]
fn features_and_version_describe_the_runtime() {
    let rt = Runtime::tinyo();
    let v: Value = serde_json::from_str(&rt.ok(&["features"])).unwrap();
    assert_eq!(v["ociVersionMax"], "1.2.0");
    assert!(v["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .contains(&"pid".into()));
    assert_eq!(v["linux"]["seccomp"]["enabled"], true);
    assert!(v["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .contains(&"user".into()));
    assert!(rt.ok(&["--version"]).contains("spec: 1.2.0"));
}

#[test]
fn mount_destination_symlinks_stay_inside_the_root() {
    let rt = Runtime::tinyo();
    let id = unique("rt-link");
    let outside = tempfile::tempdir().unwrap();
    let bundle = Bundle::new(
        &id,
        &[
            "/bin/sh",
            "-c",
            "grep -c ' /escape/sub ' /proc/mounts; ls -d /escape/sub",
        ],
    );
    // /escape points at a host directory by absolute path.
    std::os::unix::fs::symlink(outside.path(), bundle.rootfs().join("escape")).unwrap();
    let mut cfg = bundle.config();
    cfg["mounts"].as_array_mut().unwrap().push(
        serde_json::json!({"destination": "/escape/sub", "type": "tmpfs", "source": "tmpfs"}),
    );
    bundle.write_config(&cfg);
    let (code, out, err) = rt.run(&bundle, &id);
    assert!(
        std::fs::read_dir(outside.path()).unwrap().next().is_none(),
        "tinyo created something in the host directory the symlink names"
    );
    let inside = bundle
        .rootfs()
        .join(outside.path().strip_prefix("/").unwrap());
    assert!(
        inside.join("sub").is_dir(),
        "the destination was not made inside the root"
    );
    assert_eq!(code, Some(0), "{out} {err}");
    // In the container the mount is where the link (resolved in the root) leads.
    assert!(out.ends_with("/escape/sub\n"), "{out}");
}

#[test]
fn cgroup_limits_match_runc_and_obsolete_ones_are_warned() {
    let id = unique("rt-cg");
    let probe = "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max \
        /sys/fs/cgroup/cpu/cpu.shares /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu/cpu.cfs_period_us";
    let bundle = Bundle::new(&id, &["/bin/sh", "-c", probe]);
    let mut cfg = bundle.config();
    cfg["linux"]["resources"]["memory"] = serde_json::json!({"limit": 67108864});
    cfg["linux"]["resources"]["pids"] = serde_json::json!({"limit": 50});
    cfg["linux"]["resources"]["cpu"] =
        serde_json::json!({"shares": 512, "quota": 50000, "period": 100000});
    bundle.write_config(&cfg);
    let (rc, want, rerr) = Runtime::runc().run(&bundle, &id);
    assert_eq!(rc, Some(0), "runc: {rerr}");
    let (tc, got, terr) = Runtime::tinyo().run(&bundle, &id);
    assert_eq!(tc, Some(0), "tinyo: {terr}");
    assert_eq!(got, want);
    assert_eq!(got, "67108864\n50\n512\n50000\n100000\n");
    assert!(leftover_cgroups(&format!("tinyo-test-{id}")).is_empty());

    // An obsolete limit is named in a warning; the container still runs.
    cfg["linux"]["resources"]["memory"] = serde_json::json!({"limit": 67108864, "kernel": 1048576});
    bundle.write_config(&cfg);
    let id2 = unique("rt-cg2");
    let (tc, _, terr) = Runtime::tinyo().run(&bundle, &id2);
    assert_eq!(tc, Some(0), "{terr}");
    assert!(
        terr.contains("warning") && terr.contains("kernel"),
        "{terr}"
    );
}

#[test]
fn kernel_tcp_limit_is_set_where_cgroup_v1_has_it() {
    let file = "/sys/fs/cgroup/memory/memory.kmem.tcp.limit_in_bytes";
    if !std::path::Path::new(file).exists() {
        eprintln!("skipped: this host has no {file}");
        return;
    }
    let id = unique("rt-ktcp");
    let bundle = Bundle::new(&id, &["cat", file]);
    let mut cfg = bundle.config();
    cfg["linux"]["resources"]["memory"] =
        serde_json::json!({"limit": 67108864, "kernelTCP": 8388608});
    bundle.write_config(&cfg);
    // crun is the oracle here: runc 1.1 drops kernelTCP silently.
    let (cc, want, cerr) = Runtime::crun().run(&bundle, &id);
    assert_eq!(cc, Some(0), "crun: {cerr}");
    let (tc, got, terr) = Runtime::tinyo().run(&bundle, &id);
    assert_eq!(tc, Some(0), "tinyo: {terr}");
    assert_eq!(got, want, "tinyo (left) vs crun (right)");
    assert_eq!(got, "8388608\n");
    assert!(
        !terr.contains("kernelTCP"),
        "applied, so not warned about: {terr}"
    );
}

#[test]
fn foreground_run_forwards_signals_like_runc() {
    for rt in [Runtime::runc(), Runtime::tinyo()] {
        let id = unique("rt-fwd");
        let bundle = Bundle::new(
            &id,
            &[
                "/bin/sh",
                "-c",
                "trap 'exit 7' TERM; echo ready > /tmp/ready; while :; do sleep 0.05; done",
            ],
        );
        rt.track(&id);
        let mut child = rt
            .cmd(&["run", "--bundle", bundle.path().to_str().unwrap(), &id])
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        for _ in 0..1000 {
            if bundle.rootfs().join("tmp/ready").exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        // unshare execs the runtime: the child's pid is the runtime's.
        let pid = child.id() as i32;
        // SAFETY: plain kill of our own child.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
        let status = child.wait().unwrap();
        assert_eq!(
            status.code(),
            Some(7),
            "{}: the container's TERM trap exit code",
            rt.name
        );
    }
}

/// Sysctls are written before /proc/sys becomes read-only (podman sets
/// net.ipv4.ping_group_range on every container), as runc does.
#[test]
fn sysctls_are_applied_before_proc_sys_is_read_only() {
    let id = unique("rt-sysctl");
    let bundle = Bundle::new(
        &id,
        &["/bin/sh", "-c", "cat /proc/sys/net/ipv4/ping_group_range; echo 1 > /proc/sys/net/ipv4/ip_forward 2>/dev/null || echo read-only"],
    );
    let mut cfg = bundle.config();
    cfg["linux"]["sysctl"] = serde_json::json!({"net.ipv4.ping_group_range": "0 0"});
    bundle.write_config(&cfg);
    let (rc, want, rerr) = Runtime::runc().run(&bundle, &id);
    assert_eq!(rc, Some(0), "runc: {want}\n{rerr}");
    let (tc, got, terr) = Runtime::tinyo().run(&bundle, &id);
    assert_eq!(tc, Some(0), "tinyo: {got}\n{terr}");
    assert_eq!(got, want);
    assert_eq!(
        got.split_whitespace().collect::<Vec<_>>(),
        ["0", "0", "read-only"]
    );
}

/// A console socket as conmon and containerd-shim have one: a unix socket in a temp dir on
/// which the runtime sends the pty master with `SCM_RIGHTS`.
struct ConsoleSocket {
    _dir: tempfile::TempDir,
    path: PathBuf,
    listener: std::os::unix::net::UnixListener,
}

impl ConsoleSocket {
    fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("tinyo-console-")
            .tempdir()
            .unwrap();
        let path = dir.path().join("console.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        listener.set_nonblocking(true).unwrap();
        Self {
            _dir: dir,
            path,
            listener,
        }
    }

    fn path(&self) -> &str {
        self.path.to_str().unwrap()
    }

    /// Accepts the runtime's connection (it must have connected already, as `create` returns
    /// only after the master was sent) and receives the master and the message with it.
    fn receive(&self) -> (std::os::fd::OwnedFd, String) {
        let mut tries = 0;
        let stream = loop {
            match self.listener.accept() {
                Ok((s, _)) => break s,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && tries < 3000 => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => panic!("nobody connected to the console socket: {e}"),
            }
        };
        stream.set_nonblocking(false).unwrap();
        recv_fd(&stream)
    }
}

/// One message carrying one descriptor (`SCM_RIGHTS`), and its text.
fn recv_fd(stream: &std::os::unix::net::UnixStream) -> (std::os::fd::OwnedFd, String) {
    let (fd, data) = tinyo_core::sys::recv_fd_payload(std::os::fd::AsFd::as_fd(stream))
        .expect("receiving the pty master from the console socket");
    let text = String::from_utf8_lossy(&data)
        .trim_end_matches('\0')
        .to_string();
    (fd, text)
}

/// Writes `input` to a pty master and reads until `until` appears or the slave side is gone
/// (EIO). Each wait for output is bounded (a hang guard, not a timing assertion).
fn converse(master: std::os::fd::OwnedFd, input: &str, until: &str) -> String {
    use std::io::{Read, Write};
    use std::os::fd::AsRawFd;
    let mut f = std::fs::File::from(master);
    f.write_all(input.as_bytes()).unwrap();
    let mut out = Vec::new();
    loop {
        let mut pfd = libc::pollfd {
            fd: f.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: `pfd` is one valid pollfd.
        let r = unsafe { libc::poll(&mut pfd, 1, 60_000) };
        assert!(
            r > 0,
            "no output from the pty: {:?}",
            String::from_utf8_lossy(&out)
        );
        let mut buf = [0u8; 4096];
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.raw_os_error() == Some(libc::EIO) => break,
            Err(e) => panic!("reading the pty: {e}"),
        }
        if String::from_utf8_lossy(&out).contains(until) {
            break;
        }
    }
    String::from_utf8_lossy(&out).replace('\r', "")
}

/// From a pty conversation: the `tty` line and the `stty size` line.
fn tty_and_size(out: &str) -> (String, String) {
    let tty = out
        .lines()
        .find(|l| l.starts_with("/dev/") || l.starts_with("not a tty"))
        .unwrap_or_default()
        .to_string();
    let size = out
        .lines()
        .find(|l| {
            let w: Vec<&str> = l.split(' ').collect();
            w.len() == 2
                && w.iter()
                    .all(|x| !x.is_empty() && x.bytes().all(|b| b.is_ascii_digit()))
        })
        .unwrap_or_default()
        .to_string();
    (tty, size)
}

const TTY_INPUT: &str = "tty; stty size; echo END-$((6*7)); exit\n";

/// What a terminal container sees through its pty, created with `create` or `run -d`.
fn terminal_view(rt: &Runtime, detach_run: bool) -> (String, String, String) {
    let id = unique(if detach_run { "rt-ttyrun" } else { "rt-tty" });
    let bundle = Bundle::new(&id, &["sh"]);
    let mut spec = bundle.config();
    spec["process"]["terminal"] = serde_json::json!(true);
    spec["process"]["consoleSize"] = serde_json::json!({"height": 33, "width": 101});
    bundle.write_config(&spec);
    let console = ConsoleSocket::new();
    rt.track(&id);
    let b = bundle.path().to_str().unwrap();
    if detach_run {
        rt.ok(&[
            "run",
            "-d",
            "--console-socket",
            console.path(),
            "--bundle",
            b,
            &id,
        ]);
    } else {
        rt.ok(&[
            "create",
            "--console-socket",
            console.path(),
            "--bundle",
            b,
            &id,
        ]);
    }
    let (master, payload) = console.receive();
    if !detach_run {
        rt.ok(&["start", &id]);
    }
    let out = converse(master, TTY_INPUT, "END-42");
    rt.wait_status(&id, "stopped");
    rt.ok(&["delete", &id]);
    let (tty, size) = tty_and_size(&out);
    assert!(out.contains("END-42"), "{}: {out:?}", rt.name);
    (tty, size, payload)
}

#[test]
fn terminal_over_console_socket_like_runc() {
    let runc = Runtime::runc();
    let tinyo = Runtime::tinyo();
    let want = terminal_view(&runc, false);
    let got = terminal_view(&tinyo, false);
    assert_eq!(got, want);
    assert_eq!((got.0.as_str(), got.1.as_str()), ("/dev/pts/0", "33 101"));
    assert_eq!(terminal_view(&tinyo, true), want);
    assert_eq!(terminal_view(&runc, true), want);
}

/// `exec -t -d --console-socket` in a running container without a terminal of its own.
fn exec_terminal_view(rt: &Runtime) -> (String, String) {
    let id = unique("rt-exectty");
    let bundle = Bundle::new(&id, &["sleep", "100"]);
    rt.track(&id);
    rt.ok(&["create", "--bundle", bundle.path().to_str().unwrap(), &id]);
    rt.ok(&["start", &id]);
    rt.wait_status(&id, "running");
    let console = ConsoleSocket::new();
    rt.ok(&[
        "exec",
        "-t",
        "-d",
        "--console-socket",
        console.path(),
        &id,
        "sh",
    ]);
    let (master, _) = console.receive();
    let out = converse(master, TTY_INPUT, "END-42");
    assert!(out.contains("END-42"), "{}: {out:?}", rt.name);
    rt.ok(&["kill", &id, "KILL"]);
    rt.wait_status(&id, "stopped");
    rt.ok(&["delete", &id]);
    tty_and_size(&out)
}

#[test]
fn exec_terminal_over_console_socket_like_runc() {
    let want = exec_terminal_view(&Runtime::runc());
    let got = exec_terminal_view(&Runtime::tinyo());
    assert_eq!(got, want);
    assert_eq!(got.0, "/dev/pts/0");
}

#[test]
fn terminal_without_console_socket_is_refused_in_one_line() {
    let rt = Runtime::tinyo();
    let id = unique("rt-notty");
    let bundle = Bundle::new(&id, &["sh"]);
    let mut spec = bundle.config();
    spec["process"]["terminal"] = serde_json::json!(true);
    bundle.write_config(&spec);
    rt.track(&id);
    let (code, _, err) = rt.run(&bundle, &id);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("--console-socket"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(!rt.root.path().join(&id).exists(), "state left behind");
}

/// `run --preserve-fds 2` with descriptors 3 and 4 open on files: what the container writes
/// to them and which descriptors it has.
fn preserved_fds_view(rt: &Runtime) -> (String, String, String) {
    let id = unique("rt-fds");
    let bundle = Bundle::new(
        &id,
        &[
            "sh",
            "-c",
            "echo to-three >&3; echo to-four >&4; ls /proc/self/fd | sort -n | tr '\\n' ' '",
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    let (three, four) = (dir.path().join("three"), dir.path().join("four"));
    rt.track(&id);
    let b = bundle.path().to_str().unwrap();
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("exec 3>\"$1\" 4>\"$2\"; shift 2; exec \"$@\"")
        .arg("sh")
        .arg(&three)
        .arg(&four);
    let runtime = self_cmd_args(rt, &["run", "--preserve-fds", "2", "--bundle", b, &id]);
    cmd.args(&runtime).stdin(Stdio::null());
    let o = rt.out_of(cmd, &["run", "--preserve-fds", "2"]);
    assert!(
        o.status.success(),
        "{}: {}",
        rt.name,
        String::from_utf8_lossy(&o.stderr)
    );
    (
        std::fs::read_to_string(&three).unwrap(),
        std::fs::read_to_string(&four).unwrap(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
    )
}

/// The argv of [`Runtime::cmd`], to run it under another program.
fn self_cmd_args(rt: &Runtime, args: &[&str]) -> Vec<String> {
    let c = rt.cmd(args);
    std::iter::once(c.get_program())
        .chain(c.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect()
}

#[test]
fn preserve_fds_pass_descriptors_like_runc() {
    let want = preserved_fds_view(&Runtime::runc());
    let got = preserved_fds_view(&Runtime::tinyo());
    assert_eq!(got, want);
    assert_eq!(got.0, "to-three\n");
    assert!(got.2.starts_with("0 1 2 3 4 "), "{}", got.2);

    // A descriptor that is not open is named.
    let rt = Runtime::tinyo();
    let id = unique("rt-fds-bad");
    let bundle = Bundle::new(&id, &["true"]);
    rt.track(&id);
    let o = rt.out(&[
        "run",
        "--preserve-fds",
        "40",
        "--bundle",
        bundle.path().to_str().unwrap(),
        &id,
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("--preserve-fds 40"),
        "{err}"
    );
}

/// A hook that writes its state, argv[0] and $HOOK to `out` (a path in the namespace where
/// the hook runs).
fn hook(name: &str, out: &Path) -> Value {
    serde_json::json!({
        "path": "/bin/sh",
        // argv[0] stays "sh" (busybox picks its applet by it); `$0` comes after the script.
        "args": ["sh", "-c", format!("{{ cat; echo; echo \"$0 $HOOK\"; }} > {}", out.display()), name],
        "env": ["HOOK=1"],
        "timeout": 30,
    })
}

/// Runs a container with one hook of every kind, each writing where it runs; returns each
/// hook's status and the line with its argv[0] and env.
fn hooks_view(rt: &Runtime) -> Vec<(String, String, String)> {
    let id = unique("rt-hooks");
    let bundle = Bundle::new(&id, &["true"]);
    let dir = tempfile::tempdir().unwrap();
    let host = |n: &str| dir.path().join(n);
    let mut spec = bundle.config();
    spec["hooks"] = serde_json::json!({
        "prestart": [hook("prestart", &host("prestart"))],
        "createRuntime": [hook("createRuntime", &host("createRuntime"))],
        // In the container's namespaces but before pivot_root: host paths still resolve.
        "createContainer": [hook("createContainer", &host("createContainer"))],
        // In the container after pivot_root: /bin/sh and the output are the container's.
        "startContainer": [hook("startContainer", Path::new("/startContainer"))],
        "poststart": [hook("poststart", &host("poststart"))],
        "poststop": [hook("poststop", &host("poststop"))],
    });
    bundle.write_config(&spec);
    rt.track(&id);
    let b = bundle.path().to_str().unwrap();
    rt.ok(&["create", "--bundle", b, &id]);
    rt.ok(&["start", &id]);
    rt.wait_status(&id, "stopped");
    rt.ok(&["delete", &id]);
    let mut seen = Vec::new();
    for kind in [
        "prestart",
        "createRuntime",
        "createContainer",
        "startContainer",
        "poststart",
        "poststop",
    ] {
        let path = if kind == "startContainer" {
            bundle.rootfs().join("startContainer")
        } else {
            host(kind)
        };
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {kind} hook wrote nothing: {e}", rt.name));
        let (json, rest) = text.split_once('\n').unwrap();
        let state: Value = serde_json::from_str(json).unwrap();
        assert_eq!(state["id"], id.as_str(), "{kind}");
        assert_eq!(state["bundle"], b, "{kind}");
        seen.push((
            kind.to_string(),
            state["status"].as_str().unwrap_or_default().to_string(),
            rest.trim().to_string(),
        ));
    }
    seen
}

#[test]
fn every_hook_kind_runs_where_runc_runs_it() {
    let want = hooks_view(&Runtime::runc());
    let got = hooks_view(&Runtime::tinyo());
    assert_eq!(got, want);
    assert_eq!(got[0].2, "prestart 1");
}

#[test]
fn failing_hooks_fail_create_and_start_cleanly_and_post_hooks_only_warn() {
    let rt = Runtime::tinyo();
    let fail = serde_json::json!([{"path": "/bin/sh", "args": ["sh", "-c", "echo hook-said-no >&2; exit 7"]}]);
    for kind in ["createRuntime", "createContainer", "prestart"] {
        let id = unique("rt-hookfail");
        let bundle = Bundle::new(&id, &["sleep", "100"]);
        let mut spec = bundle.config();
        spec["hooks"] = serde_json::json!({ kind: fail.clone() });
        bundle.write_config(&spec);
        rt.track(&id);
        let o = rt.out(&["create", "--bundle", bundle.path().to_str().unwrap(), &id]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{kind}: create succeeded");
        assert!(err.contains(kind) && err.contains("hook-said-no"), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(!rt.root.path().join(&id).exists(), "{kind}: state left");
        assert!(leftover_cgroups(&format!("tinyo-test-{id}")).is_empty());
    }

    // startContainer fails `start`; the container is stopped and deletes cleanly.
    let id = unique("rt-hookfail");
    let bundle = Bundle::new(&id, &["sleep", "100"]);
    let mut spec = bundle.config();
    spec["hooks"] = serde_json::json!({ "startContainer": fail.clone() });
    bundle.write_config(&spec);
    rt.track(&id);
    rt.ok(&["create", "--bundle", bundle.path().to_str().unwrap(), &id]);
    let o = rt.out(&["start", &id]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("startContainer"),
        "{err}"
    );
    rt.wait_status(&id, "stopped");
    rt.ok(&["delete", &id]);

    // poststart and poststop only warn.
    let id = unique("rt-hookwarn");
    let bundle = Bundle::new(&id, &["true"]);
    let mut spec = bundle.config();
    spec["hooks"] = serde_json::json!({ "poststart": fail.clone(), "poststop": fail });
    bundle.write_config(&spec);
    rt.track(&id);
    let (code, _, err) = rt.run(&bundle, &id);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains("poststart hook #0") && err.contains("poststop hook #0"),
        "{err}"
    );
    assert!(!rt.root.path().join(&id).exists());
}

/// Recursive mount attributes (`rro`, `rnosuid`, `rnoexec`) as runc applies them.
#[test]
fn recursive_mount_attributes_like_runc() {
    let id = unique("rt-rro");
    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join("file"), "x").unwrap();
    let bundle = Bundle::new(
        &id,
        &[
            "/bin/sh",
            "-c",
            "touch /mnt/new 2>/dev/null && echo writable || echo read-only; grep ' /mnt ' /proc/self/mountinfo | cut -d' ' -f6 | tr ',' '\\n' | sort | tr '\\n' ' '",
        ],
    );
    let mut cfg = bundle.config();
    cfg["mounts"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "destination": "/mnt", "type": "bind", "source": src.path(),
            "options": ["rbind", "rro", "rnosuid", "rnoexec", "rnodev"]
        }));
    bundle.write_config(&cfg);
    let (rc, want, rerr) = Runtime::runc().run(&bundle, &id);
    assert_eq!(rc, Some(0), "runc: {want}\n{rerr}");
    let (tc, got, terr) = Runtime::tinyo().run(&bundle, &id);
    assert_eq!(tc, Some(0), "tinyo: {got}\n{terr}");
    assert_eq!(got, want);
    assert!(
        got.starts_with("read-only\n")
            && got.contains("nosuid")
            && got.contains("noexec")
            && got.contains("nodev"),
        "{got}"
    );
    assert!(!src.path().join("new").exists());
}

/// A `create` killed half-way (here while a createRuntime hook runs) leaves a state directory
/// without state.json and the cgroups it made; `delete --force` removes both, as runc would.
#[test]
fn delete_force_cleans_up_after_a_create_killed_mid_way() {
    let rt = Runtime::tinyo();
    let id = unique("rt-crash");
    let bundle = Bundle::new(&id, &["/bin/true"]);
    let mut cfg = bundle.config();
    let nap = format!(
        "{}.{}",
        300 + std::process::id() % 100,
        std::process::id() % 997
    );
    cfg["hooks"] =
        serde_json::json!({"createRuntime": [{"path": "/bin/sleep", "args": ["sleep", nap]}]});
    bundle.write_config(&cfg);
    rt.track(&id);
    let mut create = rt
        .cmd(&["create", "--bundle", bundle.path().to_str().unwrap(), &id])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let leaf = format!("tinyo-test-{id}");
    for _ in 0..1000 {
        if !leftover_cgroups(&leaf).is_empty()
            && Command::new("pgrep")
                .args(["-f", &format!("sleep {nap}")])
                .output()
                .unwrap()
                .status
                .success()
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    create.kill().unwrap();
    create.wait().unwrap();
    let _ = Command::new("pkill")
        .args(["-KILL", "-f", &format!("sleep {nap}")])
        .status();
    assert!(
        rt.root().join(&id).is_dir(),
        "the unfinished state directory is there"
    );
    assert!(!rt.root().join(&id).join("state.json").exists());
    assert!(
        !leftover_cgroups(&leaf).is_empty(),
        "and so are its cgroups"
    );
    let o = rt.out(&["delete", &id]);
    assert!(!o.status.success(), "without --force it does not exist");
    rt.ok(&["delete", "--force", &id]);
    assert!(!rt.root().join(&id).exists());
    assert!(leftover_cgroups(&leaf).is_empty(), "cgroups removed");
}

/// Every way a container can end leaves no cgroup behind in any hierarchy, nor a process
/// (issue 16.4): a failing create (setup error, missing program), create+delete, run, killed,
/// deleted by force while running and while paused, and a container without its own PID
/// namespace whose init exits leaving a child in its cgroups.
#[test]
fn no_cgroup_or_process_outlives_its_container() {
    let rt = Runtime::tinyo();
    let marker = format!("sleep {}", 800_000 + std::process::id() % 99_999);
    let mut leaves = Vec::new();
    let mut case = |name: &str, args: &[&str], edit: &dyn Fn(&mut serde_json::Value)| {
        let id = unique(name);
        let bundle = Bundle::new(&id, args);
        let mut cfg = bundle.config();
        edit(&mut cfg);
        // Half of them in the default place (`tinyo/<id>`), shared with other containers.
        let leaf = if leaves.len() % 2 == 0 {
            cfg["linux"].as_object_mut().unwrap().remove("cgroupsPath");
            id.clone()
        } else {
            format!("tinyo-test-{id}")
        };
        bundle.write_config(&cfg);
        leaves.push(leaf);
        rt.track(&id);
        (id, bundle)
    };
    let create =
        |id: &str, b: &Bundle| rt.out(&["create", "--bundle", b.path().to_str().unwrap(), id]);
    let keep = |_: &mut serde_json::Value| {};
    // Fails in setup: effective capabilities beyond the permitted ones.
    let (id, b) = case("lk-caps", &["true"], &|c| {
        c["process"]["capabilities"]["effective"] = serde_json::json!(["CAP_SYS_ADMIN"]);
        c["process"]["capabilities"]["permitted"] = serde_json::json!(["CAP_KILL"]);
    });
    assert!(!create(&id, &b).status.success());
    // Fails: no such program.
    let (id, b) = case("lk-nocmd", &["/no/such"], &keep);
    assert!(!create(&id, &b).status.success());
    // Created, never started, deleted.
    let (id, b) = case("lk-created", &["true"], &keep);
    assert!(create(&id, &b).status.success());
    rt.ok(&["delete", &id]);
    // Run to completion.
    let (id, b) = case("lk-run", &["true"], &keep);
    assert_eq!(rt.run(&b, &id).0, Some(0));
    // Killed, then deleted.
    let (id, b) = case("lk-killed", &["sleep", "1000"], &keep);
    assert!(create(&id, &b).status.success());
    rt.ok(&["start", &id]);
    rt.ok(&["kill", &id, "KILL"]);
    rt.wait_status(&id, "stopped");
    rt.ok(&["delete", &id]);
    // Deleted by force while running, and while paused.
    for name in ["lk-force", "lk-paused"] {
        let (id, b) = case(name, &["sleep", "1000"], &keep);
        assert!(create(&id, &b).status.success());
        rt.ok(&["start", &id]);
        if name == "lk-paused" {
            rt.ok(&["pause", &id]);
            let o = rt.out(&["delete", &id]);
            assert!(
                !o.status.success(),
                "a paused container needs --force, as with runc"
            );
        }
        rt.ok(&["delete", "--force", &id]);
    }
    // No PID namespace: the init exits at once, its child stays in the container's cgroups.
    let script = format!("{marker} & exit 0");
    let (id, b) = case("lk-nopidns", &["/bin/sh", "-c", &script], &|c| {
        let ns = c["linux"]["namespaces"].as_array_mut().unwrap();
        ns.retain(|n| n["type"] != "pid");
    });
    assert!(create(&id, &b).status.success());
    rt.ok(&["start", &id]);
    rt.wait_status(&id, "stopped");
    rt.ok(&["delete", &id]);

    for leaf in &leaves {
        let left = tinyo_tests::host::leftover_cgroups(leaf);
        assert!(left.is_empty(), "cgroups left behind: {left:?}");
    }
    let survivors = tinyo_tests::host::processes_running(&marker);
    assert!(survivors.is_empty(), "processes left behind: {survivors:?}");
}
