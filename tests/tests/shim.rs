//! tinyo-shim end to end: images from a loopback registry, containers under tinyo-init with
//! an overlay root, the supervisor's stdio, logs and exit status, and bad input. Every test
//! has its own root and network namespace (see `tinyo_tests::shim`).

use std::process::Stdio;

use serde_json::Value;
use tinyo_tests::host::http_get_in;
use tinyo_tests::shim::Shim;

fn text(o: &std::process::Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn foreground_run_prints_and_returns_the_exit_code() {
    let shim = Shim::new();
    let o = shim.out(&[
        "run",
        "--rm",
        &shim.image,
        "sh",
        "-c",
        "echo hello; echo oops >&2; exit 3",
    ]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(3), "{out} {err}");
    assert_eq!(out, "hello\n");
    assert!(err.contains("oops"), "{err}");
    shim.assert_nothing_left();
}

#[test]
fn the_container_runs_under_tinyo_init_with_dockers_defaults() {
    let shim = Shim::new();
    let script = "cat /proc/1/cmdline | tr '\\0' ' '; echo; grep -E '^(CapEff|Seccomp):' /proc/self/status; \
        hostname; id -u; ls /dev | tr '\\n' ' '";
    let out = shim.ok(&[
        "run",
        "--rm",
        "--name",
        "defaults",
        &shim.image,
        "sh",
        "-c",
        script,
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("/.tinyo-init -- sh -c"), "{out}");
    // Docker's 14 default capabilities, and a seccomp filter.
    assert_eq!(lines[1], "CapEff:\t00000000a80425fb", "{out}");
    assert_eq!(lines[2], "Seccomp:\t2", "{out}");
    assert_eq!(lines[3].len(), 12, "the hostname is the short id: {out}");
    assert_eq!(lines[4], "0");
    assert!(
        lines[5].contains("null") && !lines[5].contains("sda"),
        "{out}"
    );
    let out = shim.ok(&[
        "run",
        "--rm",
        "--no-init",
        &shim.image,
        "cat",
        "/proc/1/cmdline",
    ]);
    assert_eq!(out, "cat\0/proc/1/cmdline\0");
}

#[test]
fn image_config_then_flags_shape_the_process() {
    let shim = Shim::with_image(|c| {
        c["config"]["Env"] = serde_json::json!(["PATH=/bin:/usr/bin", "FROM_IMAGE=1"]);
        c["config"]["Entrypoint"] = serde_json::json!(["sh", "-c"]);
        c["config"]["Cmd"] = serde_json::json!(["echo image cmd"]);
        c["config"]["WorkingDir"] = serde_json::json!("/tmp");
    });
    // The image's entrypoint and command.
    assert_eq!(shim.ok(&["run", "--rm", &shim.image]), "image cmd\n");
    // A command replaces Cmd, keeps Entrypoint; env, workdir, user and hostname from flags.
    let vol = tempfile::tempdir().unwrap();
    std::fs::write(vol.path().join("f"), "from the host\n").unwrap();
    let envf = vol.path().join("env");
    std::fs::write(&envf, "# comment\nFROM_FILE=2\n").unwrap();
    let v = format!("{}:/data:ro", vol.path().display());
    let out = shim.ok(&[
        "run",
        "--rm",
        "-e",
        "FLAG=3",
        "--env-file",
        envf.to_str().unwrap(),
        "-w",
        "/data",
        "-u",
        "1000:1000",
        "--hostname",
        "box",
        "-v",
        &v,
        "--read-only",
        &shim.image,
        "echo $FROM_IMAGE$FROM_FILE$FLAG $(pwd) $(id -u):$(id -g) $(hostname); cat f; \
         touch /x 2>/dev/null || echo ro-root; touch /data/y 2>/dev/null || echo ro-vol",
    ]);
    assert_eq!(
        out,
        "123 /data 1000:1000 box\nfrom the host\nro-root\nro-vol\n"
    );
    // --entrypoint replaces the image's and drops its Cmd.
    assert_eq!(
        shim.ok(&["run", "--rm", "--entrypoint", "echo", &shim.image, "a", "b"]),
        "a b\n"
    );
}

#[test]
fn containers_share_a_pristine_image_through_overlays() {
    let shim = Shim::new();
    shim.ok(&[
        "run",
        "--name",
        "writer",
        &shim.image,
        "sh",
        "-c",
        "echo x > /etc/written; rm /bin/ls",
    ]);
    let out = shim.ok(&[
        "run",
        "--rm",
        &shim.image,
        "sh",
        "-c",
        "ls /etc/written 2>&1; ls / >/dev/null && echo ls-ok",
    ]);
    assert!(
        out.contains("No such file") && out.contains("ls-ok"),
        "{out}"
    );
    // The writer's changes live in its own upper directory only.
    let rec: Value = serde_json::from_str(&shim.ok(&["inspect", "writer"])).unwrap();
    let bundle = rec[0]["bundle"].as_str().unwrap();
    let upper = std::path::Path::new(bundle).join("upper");
    assert_eq!(
        std::fs::read_to_string(upper.join("etc/written")).unwrap(),
        "x\n"
    );
    shim.ok(&["rm", "writer"]);
    shim.assert_nothing_left();
}

#[test]
fn detached_container_logs_ps_stop_and_rm() {
    let shim = Shim::new();
    let script = "echo started; echo to-stderr >&2; trap 'echo bye; exit 0' TERM; \
        while true; do sleep 0.05; done";
    let id = shim.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        &shim.image,
        "sh",
        "-c",
        script,
    ]);
    let id = id.trim();
    assert_eq!(id.len(), 32, "run -d prints the id: {id}");
    assert_eq!(shim.status("web").as_deref(), Some("running"));
    // Logs: stdout to stdout, stderr to stderr; the file is in the CRI format.
    let mut out = String::new();
    for _ in 0..500 {
        out = shim.ok(&["logs", "web"]);
        if out.contains("started") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(out, "started\n");
    let o = shim.out(&["logs", &id[..8]]);
    assert_eq!(text(&o).1, "to-stderr\n");
    let rec: Value = serde_json::from_str(&shim.ok(&["inspect", "web"])).unwrap();
    let log = std::fs::read_to_string(rec[0]["log_path"].as_str().unwrap()).unwrap();
    let first = log.lines().next().unwrap();
    let parts: Vec<&str> = first.splitn(4, ' ').collect();
    assert!(parts[0].ends_with('Z') && parts[0].contains('T'), "{first}");
    assert_eq!(&parts[1..], ["stdout", "F", "started"], "{first}");
    // A running container cannot be removed without -f; stop sends SIGTERM to it.
    let o = shim.out(&["rm", "web"]);
    assert!(
        !o.status.success() && text(&o).1.contains("is running"),
        "{o:?}"
    );
    shim.ok(&["stop", "web"]);
    assert_eq!(shim.status("web").as_deref(), Some("exited (0)"));
    assert!(shim.ok(&["logs", "--tail", "1", "web"]).contains("bye"));
    // Running containers only, unless -a.
    assert!(!shim.ok(&["ps"]).contains("web"));
    // Stop on an exited container is refused.
    let o = shim.out(&["stop", "web"]);
    assert!(!o.status.success());
    assert!(text(&o).1.contains("not running"), "{o:?}");
    shim.ok(&["rm", "web"]);
    assert!(shim.ps().is_empty());
    shim.assert_nothing_left();
}

/// `stop` and `rm -f` of several containers signal them all before waiting: one that ignores
/// SIGTERM is killed at the deadline while the other stops on SIGTERM, and `rm -f` removes
/// every one named, reporting the unknown name and exiting 1.
#[test]
fn stop_and_rm_f_of_several_containers() {
    let shim = Shim::new();
    let polite = "trap 'exit 0' TERM; while true; do sleep 0.05; done";
    let stubborn = "trap '' TERM; while true; do sleep 0.05; done";
    for (name, script) in [("polite", polite), ("stubborn", stubborn)] {
        shim.ok(&["run", "-d", "--name", name, &shim.image, "sh", "-c", script]);
    }
    assert_eq!(
        shim.ok(&["stop", "-t", "1", "polite", "stubborn"]),
        "polite\nstubborn\n"
    );
    assert_eq!(shim.status("polite").as_deref(), Some("exited (0)"));
    assert_eq!(shim.status("stubborn").as_deref(), Some("exited (137)"));
    for (name, script) in [("one", polite), ("two", stubborn)] {
        shim.ok(&["run", "-d", "--name", name, &shim.image, "sh", "-c", script]);
    }
    let o = shim.out(&["rm", "-f", "one", "ghost", "two", "polite", "stubborn"]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let (out, err) = text(&o);
    assert_eq!(out, "one\ntwo\npolite\nstubborn\n");
    assert!(err.contains("ghost"), "{err}");
    assert!(shim.ps().is_empty());
    shim.assert_nothing_left();
}

#[test]
fn exec_joins_a_running_container() {
    let shim = Shim::new();
    shim.ok(&[
        "run",
        "-d",
        "--name",
        "box",
        "--hostname",
        "boxhost",
        &shim.image,
        "sleep",
        "60",
    ]);
    let out = shim.ok(&[
        "exec",
        "-e",
        "X=1",
        "-w",
        "/etc",
        "box",
        "sh",
        "-c",
        "echo $X $(pwd) $(hostname)",
    ]);
    assert_eq!(out, "1 /etc boxhost\n");
    let o = shim.out(&["exec", "box", "sh", "-c", "exit 4"]);
    assert_eq!(o.status.code(), Some(4));
    shim.ok(&["rm", "-f", "box"]);
    shim.assert_nothing_left();
}

#[test]
fn stdin_with_i_and_signals_reach_the_container() {
    let shim = Shim::new();
    let mut c = shim.cmd(&[
        "run",
        "--rm",
        "-i",
        &shim.image,
        "sh",
        "-c",
        "cat; echo done",
    ]);
    let mut child = c
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"line one\n").unwrap();
    }
    let o = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout), "line one\ndone\n");
    // SIGTERM to the foreground tinyo-shim goes to the container.
    let script = "trap 'echo got-term; exit 7' TERM; echo ready; while true; do sleep 0.05; done";
    let mut child = shim
        .cmd(&["run", "--rm", &shim.image, "sh", "-c", script])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut buf = [0u8; 6];
    std::io::Read::read_exact(&mut out, &mut buf).unwrap();
    assert_eq!(&buf, b"ready\n");
    // nsenter → unshare → tinyo-shim: signal the shim itself (the deepest descendant).
    let shim_pid = descendant(child.id() as i32);
    // SAFETY: kill(2) with integer arguments.
    unsafe { libc::kill(shim_pid, libc::SIGTERM) };
    let status = child.wait().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    assert_eq!(rest, "got-term\n");
    assert_eq!(status.code(), Some(7));
}

/// The tinyo-shim process at or below `pid` (nsenter and unshare exec rather than fork, but
/// look down the chain in case a version forks).
fn descendant(pid: i32) -> i32 {
    let comm = |p: i32| std::fs::read_to_string(format!("/proc/{p}/comm")).unwrap_or_default();
    let mut p = pid;
    for _ in 0..5 {
        if comm(p).trim() == "tinyo-shim" {
            return p;
        }
        let children =
            std::fs::read_to_string(format!("/proc/{p}/task/{p}/children")).unwrap_or_default();
        match children
            .split_whitespace()
            .next()
            .and_then(|c| c.parse().ok())
        {
            Some(c) => p = c,
            None => break,
        }
    }
    panic!("no tinyo-shim process under {pid}");
}

#[test]
fn limits_from_flags_bite() {
    let shim = Shim::new();
    let out = shim.ok(&[
        "run",
        "--rm",
        "--memory",
        "32m",
        "--pids-limit",
        "20",
        "--cpus",
        "0.5",
        &shim.image,
        "cat",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
        "/sys/fs/cgroup/pids/pids.max",
        "/sys/fs/cgroup/cpu/cpu.cfs_quota_us",
    ]);
    assert_eq!(out, "33554432\n20\n50000\n");
    let o = shim.out(&[
        "run",
        "--rm",
        "--memory",
        "16m",
        &shim.image,
        "sh",
        "-c",
        "tail -c 200m /dev/zero",
    ]);
    assert_eq!(o.status.code(), Some(137));
    assert!(text(&o).1.contains("OOM-killed"), "{o:?}");
}

#[test]
fn a_killed_supervisor_leaves_a_truthful_state_and_rm_f_cleans_up() {
    let shim = Shim::new();
    shim.ok(&["run", "-d", "--name", "orphan", &shim.image, "sleep", "60"]);
    let rec: Value = serde_json::from_str(&shim.ok(&["inspect", "orphan"])).unwrap();
    let sup = rec[0]["supervisor"]["pid"].as_i64().unwrap() as i32;
    let ctr = rec[0]["pid"]["pid"].as_i64().unwrap() as i32;
    // SAFETY: kill(2) with integer arguments.
    unsafe { libc::kill(sup, libc::SIGKILL) };
    shim.wait_status("orphan", "running (unsupervised)");
    // SAFETY: as above.
    unsafe { libc::kill(ctr, libc::SIGKILL) };
    shim.wait_status("orphan", "exited (lost)");
    shim.ok(&["rm", "-f", "orphan"]);
    shim.assert_nothing_left();
}

#[test]
fn bad_input_gets_one_line_and_leaves_nothing() {
    let shim = Shim::new();
    shim.ok(&["run", "-d", "--name", "taken", &shim.image, "sleep", "60"]);
    let vol = format!("{}:data", shim.root().display());
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["run", "--rm", "127.0.0.1:1/nope/nothing:latest", "true"],
            "nothing",
        ),
        (
            vec!["run", "--rm", "--name", "taken", &shim.image, "true"],
            "already in use",
        ),
        (
            vec!["run", "--rm", "-v", &vol, &shim.image, "true"],
            "bad volume",
        ),
        (
            vec!["run", "--rm", "-v", "/no/such/dir:/d", &shim.image, "true"],
            "does not exist",
        ),
        (
            vec!["run", "--rm", "--network", "mesh", &shim.image, "true"],
            "mesh",
        ),
        (
            vec!["run", "--rm", "--memory", "lots", &shim.image, "true"],
            "lots",
        ),
        (
            vec!["run", "--rm", &shim.image, "/no/such/program"],
            "/no/such/program",
        ),
        (vec!["stop", "ghost"], "no such container"),
        (vec!["rm", "ghost"], "no such container"),
        (vec!["logs", "ghost"], "no such container"),
        (vec!["exec", "ghost", "true"], "no such container"),
    ];
    for (args, want) in cases {
        let o = shim.out(&args);
        let (_, err) = text(&o);
        assert!(!o.status.success(), "{args:?} succeeded");
        assert!(err.contains(want), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
    }
    let names: Vec<String> = shim
        .ps()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["taken"], "only the first container exists");
    shim.ok(&["rm", "-f", "taken"]);
    shim.assert_nothing_left();
}

#[test]
fn bridge_network_with_a_published_port() {
    let shim = Shim::new();
    // busybox httpd serves one file on port 80; 8080 on the host side maps to it.
    let script = "mkdir -p /www && echo served-by-tinyo > /www/index.html && \
        exec httpd -f -p 80 -h /www";
    shim.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "--network",
        "bridge",
        "-p",
        "8080:80",
        &shim.image,
        "sh",
        "-c",
        script,
    ]);
    let rec: Value = serde_json::from_str(&shim.ok(&["inspect", "web"])).unwrap();
    let ip = rec[0]["net"]["ip"].as_str().unwrap().to_string();
    assert!(ip.starts_with("10.89.0."), "{rec}");
    // From the test's network namespace: the container's address, and the published port on
    // the bridge's gateway address and on localhost.
    let fetch = |addr: &str| {
        let mut last = String::new();
        for _ in 0..200 {
            match http_get_in(&shim.netns(), addr) {
                Ok(body) => return body,
                Err(e) => last = e,
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let logs = text(&shim.out(&["logs", "web"]));
        let inside = shim.out(&["exec", "web", "sh", "-c", "ps; netstat -ln; ip addr"]);
        panic!(
            "{addr}: {last}; container logs {logs:?}; inside: {:?}",
            text(&inside)
        );
    };
    assert_eq!(fetch(&format!("{ip}:80")), "served-by-tinyo\n");
    assert_eq!(fetch("10.89.0.1:8080"), "served-by-tinyo\n");
    assert_eq!(fetch("127.0.0.1:8080"), "served-by-tinyo\n");
    // The container reaches out through the bridge: its default route is the gateway.
    let out = shim.ok(&["exec", "web", "ip", "route"]);
    assert!(out.contains("default via 10.89.0.1"), "{out}");
    // The port is taken now: a second container is refused and leaves nothing.
    let o = shim.out(&["run", "--rm", "-p", "8080:80", &shim.image, "true"]);
    assert!(!o.status.success());
    let (_, err) = text(&o);
    assert!(err.contains("8080"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert_eq!(shim.ps().len(), 1);
    // Removal tears the attachment down: the veth goes, the address is free again.
    shim.ok(&["rm", "-f", "web"]);
    let links = shim.in_netns("ip", &["-o", "link"]).output().unwrap();
    let links = String::from_utf8_lossy(&links.stdout).into_owned();
    assert!(!links.contains("veth"), "{links}");
    let leases = std::fs::read_dir(shim.root().join("shim/net/ipam/tinyo"))
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("10."))
                .count()
        })
        .unwrap_or(0);
    assert_eq!(leases, 0, "the IPAM lease is released");
    shim.assert_nothing_left();
}

#[test]
fn network_none_has_only_loopback_and_host_shares_the_namespace() {
    let shim = Shim::new();
    let out = shim.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        &shim.image,
        "ip",
        "-o",
        "link",
    ]);
    let names: Vec<&str> = out.lines().filter_map(|l| l.split(": ").nth(1)).collect();
    assert_eq!(names, ["lo"], "{out}");
    assert!(
        out.contains("UP") || out.contains("LOWER_UP"),
        "lo is up: {out}"
    );
    let inside = shim.ok(&[
        "run",
        "--rm",
        "--network",
        "host",
        &shim.image,
        "readlink",
        "/proc/self/ns/net",
    ]);
    let outside = shim
        .in_netns("readlink", &["/proc/self/ns/net"])
        .output()
        .unwrap();
    assert_eq!(inside, String::from_utf8_lossy(&outside.stdout));
}

#[test]
fn a_terminal_with_t() {
    let shim = Shim::new();
    // script(1) gives tinyo-shim a terminal of its own; the container gets a pty of its own,
    // in raw mode relayed by the supervisor.
    let line = shim.command_line(&[
        "run",
        "--rm",
        "-t",
        &shim.image,
        "sh",
        "-c",
        "tty; echo $TERM",
    ]);
    let o = std::process::Command::new("script")
        .args(["-q", "-e", "-c", &line, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout).replace('\r', "");
    assert!(
        o.status.success(),
        "{out} {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(out.contains("/dev/pts/0\nxterm\n"), "{out:?}");
}

#[test]
fn security_flags_and_capabilities() {
    let shim = Shim::new();
    let probe = "grep -E '^(CapEff|Seccomp|NoNewPrivs):' /proc/self/status | tr -s '\\t' ' '";
    let out = shim.ok(&[
        "run",
        "--rm",
        "--cap-drop",
        "ALL",
        "--cap-add",
        "NET_ADMIN",
        "--security-opt",
        "seccomp=unconfined",
        "--security-opt",
        "no-new-privileges",
        &shim.image,
        "sh",
        "-c",
        probe,
    ]);
    assert_eq!(out, "CapEff: 0000000000001000\nNoNewPrivs: 1\nSeccomp: 0\n");
    let o = shim.out(&["run", "--rm", "--cap-add", "FLYING", &shim.image, "true"]);
    assert!(
        !o.status.success() && text(&o).1.contains("FLYING"),
        "{o:?}"
    );
}

#[test]
fn images_and_rmi_guard_what_containers_use() {
    let shim = Shim::new();
    let out = shim.ok(&["images"]);
    assert!(out.contains(&shim.image), "{out}");
    shim.ok(&["run", "--name", "user", &shim.image, "true"]);
    let o = shim.out(&["rmi", &shim.image]);
    assert!(!o.status.success(), "{o:?}");
    assert!(text(&o).1.contains("used by container(s) user"), "{o:?}");
    shim.ok(&["rm", "user"]);
    shim.ok(&["rmi", &shim.image]);
    let images: Vec<Value> =
        serde_json::from_str(&shim.ok(&["images", "--format", "json"])).unwrap();
    assert!(images.is_empty(), "{images:?}");
    // The unpacked image is gone from the store too.
    let left = std::fs::read_dir(shim.root().join("images"))
        .map(|rd| rd.count())
        .unwrap_or(0);
    assert_eq!(left, 0);
}

#[test]
fn logs_rotate_at_the_size_cap() {
    let shim = Shim::new();
    // 400 lines of 100 bytes against a 10 KiB cap with 2 files: the newest lines survive.
    let script = "i=0; while [ $i -lt 400 ]; do printf '%099d\\n' $i; i=$((i+1)); done";
    shim.ok(&[
        "run",
        "--name",
        "chatty",
        "--log-max-size",
        "10k",
        "--log-max-files",
        "2",
        &shim.image,
        "sh",
        "-c",
        script,
    ]);
    let rec: Value = serde_json::from_str(&shim.ok(&["inspect", "chatty"])).unwrap();
    let log = std::path::PathBuf::from(rec[0]["log_path"].as_str().unwrap());
    let size = |p: &std::path::Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    assert!(size(&log) <= 10 * 1024, "{}", size(&log));
    assert!(log.with_extension("log.1").exists());
    assert!(
        !log.with_extension("log.2").exists(),
        "only 2 files are kept"
    );
    let out = shim.ok(&["logs", "--tail", "2", "chatty"]);
    assert_eq!(out, format!("{:099}\n{:099}\n", 398, 399));
    shim.ok(&["rm", "chatty"]);
}

#[test]
fn exec_with_a_terminal() {
    let shim = Shim::new();
    shim.ok(&["run", "-d", "--name", "box", &shim.image, "sleep", "60"]);
    let line = shim.command_line(&["exec", "-t", "box", "sh", "-c", "tty; exit 5"]);
    let o = std::process::Command::new("script")
        .args(["-q", "-e", "-c", &line, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout).replace('\r', "");
    assert!(out.contains("/dev/pts/"), "{out:?}");
    assert_eq!(o.status.code(), Some(5), "{out:?}");
    shim.ok(&["rm", "-f", "box"]);
}
