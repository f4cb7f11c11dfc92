//! tinyo-shim's restart policies and health checks end to end: `run --restart`, the kubelet's
//! backoff, restarts in `ps`/`inspect`, `stop` ending the restarting; `--health-*` verdicts,
//! timeouts, and an unhealthy container restarted as a Kubernetes liveness probe would. Each test has its own root and network
//! namespace (see `tinyo_tests::shim`).

use std::time::{Duration, Instant};

use serde_json::Value;
use tinyo_tests::shim::Shim;

/// Polls `ps` until `name`'s status satisfies `want` (generous bound: restarts after a 10 s
/// backoff take that long; not a timing assertion).
fn wait_for(shim: &Shim, name: &str, what: &str, want: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = shim.status(name).unwrap_or_default();
        if want(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "{name} never {what}: last {s:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn inspect(shim: &Shim, name: &str) -> Value {
    let v: Value = serde_json::from_str(&shim.ok(&["inspect", name])).unwrap();
    v[0].clone()
}

/// `run -d FLAGS IMAGE true` fails with exit 125 and an error containing `words`.
fn refused(shim: &Shim, flags: &[&str], words: &str) {
    let mut args = vec!["run", "-d"];
    args.extend_from_slice(flags);
    args.extend([shim.image.as_str(), "true"]);
    let o = shim.out(&args);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(125), "{flags:?}: {err}");
    assert!(err.contains(words), "{flags:?}: {err}");
}

/// Seconds since midnight of a CRI log line's RFC 3339 timestamp.
fn log_seconds(line: &str) -> f64 {
    let ts = line.split(' ').next().unwrap();
    let time = ts.split('T').nth(1).unwrap().trim_end_matches('Z');
    let f: Vec<f64> = time.split(':').map(|p| p.parse().unwrap()).collect();
    f[0] * 3600.0 + f[1] * 60.0 + f[2]
}

#[test]
fn on_failure_restarts_up_to_its_limit_with_the_kubelets_backoff() {
    let shim = Shim::new();
    let id = shim.ok(&[
        "run",
        "-d",
        "--restart",
        "on-failure:2",
        "--name",
        "crash",
        &shim.image,
        "sh",
        "-c",
        "echo run; exit 3",
    ]);
    let id = id.trim().to_string();
    let s = wait_for(&shim, "crash", "gave up", |s| s.starts_with("exited"));
    assert_eq!(s, "exited (3), 2 restarts");
    let rec = inspect(&shim, "crash");
    assert_eq!(rec["restart"], "on-failure:2");
    assert_eq!(rec["restarts"], 2);
    assert_eq!(rec["id"], id.as_str(), "restarts keep the container's id");
    // Three runs in one log; the first restart at once, the second after the 10 s backoff.
    let log = std::fs::read_to_string(rec["log_path"].as_str().unwrap()).unwrap();
    let runs: Vec<&str> = log.lines().filter(|l| l.ends_with(" run")).collect();
    assert_eq!(runs.len(), 3, "{log}");
    let gap = log_seconds(runs[2]) - log_seconds(runs[1]);
    assert!(
        gap >= 10.0,
        "second restart {gap} s after the first, before the backoff: {log}"
    );
    assert_eq!(shim.ok(&["logs", "crash"]), "run\nrun\nrun\n");
    shim.ok(&["rm", "crash"]);
    shim.assert_nothing_left();
}

#[test]
fn on_failure_leaves_a_clean_exit_alone_and_a_kill_restarts_at_once() {
    let shim = Shim::new();
    shim.ok(&[
        "run",
        "-d",
        "--restart",
        "on-failure",
        "--name",
        "ok",
        &shim.image,
        "true",
    ]);
    assert_eq!(
        wait_for(&shim, "ok", "exited", |s| s.starts_with("exited")),
        "exited (0)"
    );
    // A crash (SIGKILL to the container) is a failure: restarted without delay.
    let script = "echo up; while sleep 0.05; do :; done";
    shim.ok(&[
        "run",
        "-d",
        "--restart",
        "on-failure",
        "--name",
        "svc",
        &shim.image,
        "sh",
        "-c",
        script,
    ]);
    wait_for(&shim, "svc", "ran", |s| s == "running");
    let first = inspect(&shim, "svc")["pid"]["pid"].as_i64().unwrap();
    shim.ok(&["kill", "svc"]);
    let s = wait_for(&shim, "svc", "came back", |s| s == "running, 1 restart");
    let rec = inspect(&shim, "svc");
    assert_ne!(
        rec["pid"]["pid"].as_i64().unwrap(),
        first,
        "{s}: a new process"
    );
    assert_eq!(
        rec["exit_code"], 137,
        "the last run's status stays on record"
    );
    shim.ok(&["stop", "svc"]);
    let s = wait_for(&shim, "svc", "stopped", |s| s.starts_with("exited"));
    // SIGTERM ended the second run (143); it is not restarted.
    assert_eq!(s, "exited (143), 1 restart", "stop ends the restarting");
    shim.ok(&["rm", "ok", "svc"]);
    shim.assert_nothing_left();
}

#[test]
fn always_restarts_a_clean_exit_and_stop_ends_it_during_the_backoff() {
    let shim = Shim::new();
    shim.ok(&[
        "run",
        "-d",
        "--restart",
        "always",
        "--name",
        "tick",
        &shim.image,
        "sh",
        "-c",
        "echo tick",
    ]);
    // Restarted at once after the first exit; after the second it waits out 10 s.
    wait_for(&shim, "tick", "waited for its second restart", |s| {
        s == "restarting (exited 0), 2 restarts"
    });
    assert!(inspect(&shim, "tick")["next_restart"].is_string());
    let t = Instant::now();
    shim.ok(&["stop", "tick"]);
    assert_eq!(
        shim.status("tick").as_deref(),
        Some("exited (0), 2 restarts")
    );
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "stop waited for the backoff instead of ending it"
    );
    // Its supervisor is gone: nothing restarts it later.
    assert!(inspect(&shim, "tick")["supervisor"].is_null());
    assert_eq!(shim.ok(&["logs", "tick"]), "tick\ntick\n");
    shim.ok(&["rm", "tick"]);
    shim.assert_nothing_left();
}

#[test]
fn start_runs_an_exited_container_again_with_its_changes_and_log() {
    let shim = Shim::new();
    shim.ok(&[
        "run",
        "-d",
        "--name",
        "again",
        &shim.image,
        "sh",
        "-c",
        "echo run >> /runs; echo runs: $(wc -l < /runs)",
    ]);
    wait_for(&shim, "again", "exited", |s| s.starts_with("exited (0)"));
    shim.ok(&["start", "again"]);
    wait_for(&shim, "again", "exited again", |s| {
        s.starts_with("exited (0)")
    });
    let logs = shim.ok(&["logs", "again"]);
    assert_eq!(logs, "runs: 1\nruns: 2\n", "the rootfs keeps its changes");
    // A failing start leaves the container as it was: here its image layers are gone.
    let dir = shim
        .containers()
        .join(inspect(&shim, "again")["id"].as_str().unwrap());
    let lower = std::fs::read(dir.join("lower.json")).unwrap();
    std::fs::write(dir.join("lower.json"), b"[\"/nonexistent\"]").unwrap();
    let o = shim.out(&["start", "again"]);
    assert_ne!(o.status.code(), Some(0), "{o:?}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("starting again"),
        "{o:?}"
    );
    assert!(shim.ps()[0]["status"]
        .as_str()
        .unwrap()
        .starts_with("exited"));
    std::fs::write(dir.join("lower.json"), lower).unwrap();
    shim.ok(&["start", "again"]);
    wait_for(&shim, "again", "exited a third time", |s| {
        s.starts_with("exited (0)")
    });
    assert!(shim.ok(&["logs", "again"]).ends_with("runs: 3\n"));
    let o = shim.out(&["start", "nosuch"]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("nosuch"),
        "{o:?}"
    );
    // Two starts at once: one runs it, the other finds it no longer exited (or, if the second
    // came after the first run had already ended, runs it once more): never two at a time.
    let both: Vec<_> = (0..2)
        .map(|_| {
            shim.cmd(&["start", "again"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outs: Vec<_> = both
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    let ok = outs.iter().filter(|o| o.status.success()).count();
    assert!(ok >= 1, "{outs:?}");
    if let Some(refused) = outs.iter().find(|o| !o.status.success()) {
        assert!(
            String::from_utf8_lossy(&refused.stderr).contains("not exited"),
            "{refused:?}"
        );
    }
    wait_for(&shim, "again", "exited a fourth time", |s| {
        s.starts_with("exited (0)")
    });
    let want: String = (1..=3 + ok).map(|n| format!("runs: {n}\n")).collect();
    assert_eq!(shim.ok(&["logs", "again"]), want);
    shim.ok(&["rm", "again"]);
    shim.assert_nothing_left();
}

#[test]
fn after_a_crash_of_everything_pod_start_all_and_start_all_bring_back_what_should_run() {
    let shim = Shim::new();
    shim.ok(&[
        "pod",
        "create",
        "--network",
        "bridge",
        "-p",
        "8082:80",
        "web",
    ]);
    let loop_ = "while sleep 0.05; do :; done";
    shim.ok(&[
        "run",
        "-d",
        "--pod",
        "web",
        "--name",
        "server",
        "--restart",
        "always",
        &shim.image,
        "sh",
        "-c",
        "mkdir -p /w && echo back > /w/index.html && exec httpd -f -p 80 -h /w",
    ]);
    for (name, policy) in [
        ("keeper", "unless-stopped"),
        ("stopped", "unless-stopped"),
        ("never", "no"),
    ] {
        shim.ok(&[
            "run",
            "-d",
            "--name",
            name,
            "--restart",
            policy,
            &shim.image,
            "sh",
            "-c",
            loop_,
        ]);
    }
    shim.ok(&["stop", "-t", "1", "stopped"]);
    // What a power cut does: every supervisor, container and infra process gone at once, the
    // records still saying running.
    let pid = |v: &Value| v["pid"].as_i64().map(|p| p as i32);
    let mut victims = Vec::new();
    for name in ["server", "keeper", "never"] {
        let r = inspect(&shim, name);
        victims.extend(pid(&r["supervisor"]));
        victims.extend(pid(&r["pid"]));
    }
    let pods: Value = serde_json::from_str(&shim.ok(&["pod", "inspect", "web"])).unwrap();
    victims.push(pods[0]["infra_pid"].as_i64().unwrap() as i32);
    for p in victims {
        // SAFETY: kill(2) with a pid and a signal number.
        unsafe { libc::kill(p, libc::SIGKILL) };
    }
    for name in ["server", "keeper", "never"] {
        wait_for(&shim, name, "lost", |s| s.starts_with("exited"));
    }

    assert_eq!(shim.ok(&["pod", "start", "--all"]).trim(), "web");
    wait_for(&shim, "server", "running again", |s| {
        s.starts_with("running")
    });
    let started = shim.ok(&[
        "start",
        "--all",
        "--filter",
        "restart-policy=always",
        "--filter",
        "restart-policy=unless-stopped",
    ]);
    assert_eq!(
        started.trim(),
        "keeper",
        "a stopped unless-stopped and a `no` stay down"
    );
    wait_for(&shim, "keeper", "running again", |s| {
        s.starts_with("running")
    });
    assert!(shim.status("stopped").unwrap().starts_with("exited"));
    assert!(shim.status("never").unwrap().starts_with("exited"));
    let mut body = Err(String::new());
    for _ in 0..100 {
        body = tinyo_tests::host::http_get_in(&shim.netns(), "127.0.0.1:8082");
        if body.is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(body.as_deref().map(str::trim), Ok("back"));
    let o = shim.out(&["start", "--all", "--filter", "color=blue"]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("only restart-policy"),
        "{o:?}"
    );
    for name in ["keeper", "stopped", "never"] {
        shim.ok(&["rm", "-f", name]);
    }
    shim.ok(&["pod", "rm", "-f", "web"]);
    shim.assert_nothing_left();
}

#[test]
fn bad_restart_flags_are_refused_and_leave_nothing() {
    let shim = Shim::new();
    for (flags, words) in [
        (&["--restart", "sometimes"][..], "--restart \"sometimes\""),
        (
            &["--restart", "on-failure:x"][..],
            "on-failure[:MAX-RETRIES]",
        ),
        (
            &["--rm", "--restart", "always"][..],
            "--rm and --restart always conflict",
        ),
    ] {
        refused(&shim, flags, words);
    }
    assert!(shim.ps().is_empty());
    shim.assert_nothing_left();
}

#[test]
fn health_checks_turn_healthy_unhealthy_and_back() {
    let shim = Shim::new();
    shim.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "--health-cmd",
        "test -e /tmp/ok && echo fine",
        "--health-interval",
        "100ms",
        "--health-retries",
        "2",
        &shim.image,
        "sh",
        "-c",
        "touch /tmp/ok; while sleep 0.05; do :; done",
    ]);
    wait_for(&shim, "web", "healthy", |s| s == "running (healthy)");
    let h = &inspect(&shim, "web")["health"];
    assert_eq!(
        h["log"].as_array().unwrap().last().unwrap()["output"],
        "fine\n"
    );
    assert_eq!(shim.ps()[0]["health"], "healthy");
    shim.ok(&["exec", "web", "rm", "/tmp/ok"]);
    wait_for(&shim, "web", "unhealthy", |s| s == "running (unhealthy)");
    let h = &inspect(&shim, "web")["health"];
    assert!(h["failing_streak"].as_u64().unwrap() >= 2, "{h}");
    let log = h["log"].as_array().unwrap();
    assert!(log.len() <= 5, "docker keeps the last five results: {h}");
    assert_eq!(log.last().unwrap()["exit_code"], 1, "{h}");
    // Report only by default: still running, never restarted.
    shim.ok(&["exec", "web", "touch", "/tmp/ok"]);
    wait_for(&shim, "web", "healthy again", |s| s == "running (healthy)");
    shim.ok(&["rm", "-f", "web"]);
    shim.assert_nothing_left();
}

#[test]
fn the_images_healthcheck_runs_unless_the_flags_replace_or_disable_it() {
    // What a Dockerfile's `HEALTHCHECK --interval=100ms --retries=2 CMD test -e /tmp/ok`
    // writes into the image config.
    let shim = Shim::with_image(|c| {
        c["config"]["Healthcheck"] = serde_json::json!({
            "Test": ["CMD", "test", "-e", "/tmp/ok"],
            "Interval": 100_000_000u64,
            "Retries": 2,
        });
    });
    let body = "touch /tmp/ok; while sleep 0.05; do :; done";
    shim.ok(&["run", "-d", "--name", "img", &shim.image, "sh", "-c", body]);
    wait_for(&shim, "img", "healthy", |s| s == "running (healthy)");
    let h = &inspect(&shim, "img")["healthcheck"];
    assert_eq!(h["cmd"], "'test' '-e' '/tmp/ok'", "{h}");
    assert_eq!(h["interval_ms"], 100, "{h}");
    assert_eq!(h["timeout_ms"], 30_000, "docker's default timeout: {h}");
    shim.ok(&["exec", "img", "rm", "/tmp/ok"]);
    wait_for(&shim, "img", "unhealthy", |s| s == "running (unhealthy)");
    // --health-cmd replaces it; --no-healthcheck disables it.
    shim.ok(&[
        "run",
        "-d",
        "--name",
        "flag",
        "--health-cmd",
        "true",
        "--health-interval",
        "100ms",
        &shim.image,
        "sh",
        "-c",
        "while sleep 0.05; do :; done",
    ]);
    wait_for(&shim, "flag", "healthy", |s| s == "running (healthy)");
    shim.ok(&[
        "run",
        "-d",
        "--name",
        "none",
        "--no-healthcheck",
        &shim.image,
        "sh",
        "-c",
        body,
    ]);
    wait_for(&shim, "none", "running", |s| s == "running");
    assert!(inspect(&shim, "none")["healthcheck"].is_null());
    for n in ["img", "flag", "none"] {
        shim.ok(&["rm", "-f", n]);
    }
    shim.assert_nothing_left();
}

#[test]
fn a_check_past_its_timeout_is_killed_and_fails() {
    let shim = Shim::new();
    shim.ok(&[
        "run",
        "-d",
        "--name",
        "slow",
        "--health-cmd",
        "sleep 30",
        "--health-timeout",
        "200ms",
        "--health-interval",
        "100ms",
        "--health-retries",
        "1",
        &shim.image,
        "sleep",
        "1000",
    ]);
    wait_for(&shim, "slow", "unhealthy", |s| s == "running (unhealthy)");
    let h = &inspect(&shim, "slow")["health"];
    let last = h["log"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["exit_code"], -1, "{h}");
    assert!(
        last["output"]
            .as_str()
            .unwrap()
            .contains("exceeded its timeout"),
        "{h}"
    );
    let o = shim.ok(&["exec", "slow", "sh", "-c", "ps -o comm | grep -c '^sleep$'"]);
    assert!(
        o.trim().parse::<u32>().unwrap() <= 2,
        "timed-out checks pile up: {o}"
    );
    shim.ok(&["rm", "-f", "slow"]);
    shim.assert_nothing_left();
}

#[test]
fn an_unhealthy_container_is_restarted_like_a_liveness_probe() {
    let shim = Shim::new();
    shim.ok(&[
        "run",
        "-d",
        "--name",
        "live",
        "--health-cmd",
        "test -e /tmp/ok",
        "--health-interval",
        "100ms",
        "--health-retries",
        "2",
        "--health-on-failure",
        "restart",
        &shim.image,
        "sh",
        "-c",
        "touch /tmp/ok; echo started; while sleep 0.05; do :; done",
    ]);
    wait_for(&shim, "live", "healthy", |s| s == "running (healthy)");
    shim.ok(&["exec", "live", "rm", "/tmp/ok"]);
    // Killed once unhealthy, run again although the restart policy is `no`.
    let s = wait_for(&shim, "live", "came back healthy", |s| {
        if s.starts_with("exited") {
            let o = shim.out(&["logs", "live"]);
            panic!("{s}: {}", String::from_utf8_lossy(&o.stderr));
        }
        s == "running (healthy), 1 restart"
    });
    assert_eq!(inspect(&shim, "live")["exit_code"], 137, "{s}");
    assert_eq!(shim.ok(&["logs", "live"]), "started\nstarted\n");
    let o = shim.out(&["logs", "live"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("unhealthy (2 failed health checks in a row): restarting it"),
        "{err}"
    );
    shim.ok(&["stop", "-t", "1", "live"]);
    assert!(shim.status("live").unwrap().starts_with("exited"));
    shim.ok(&["rm", "live"]);
    shim.assert_nothing_left();
}

#[test]
fn bad_health_flags_are_refused() {
    let shim = Shim::new();
    for (flags, words) in [
        (
            &["--health-cmd", "true", "--health-interval", "10x"][..],
            "--health-interval",
        ),
        (
            &["--health-cmd", "true", "--health-on-failure", "stop"][..],
            "none, kill or restart",
        ),
        (&["--health-cmd", " "][..], "--health-cmd is empty"),
        (
            &[
                "--rm",
                "--health-cmd",
                "true",
                "--health-on-failure",
                "restart",
            ][..],
            "conflict",
        ),
    ] {
        refused(&shim, flags, words);
    }
    assert!(shim.ps().is_empty());
    shim.assert_nothing_left();
}

#[test]
fn a_startup_check_holds_the_health_check_back_until_it_passes() {
    let shim = Shim::new();
    shim.ok(&[
        "run",
        "-d",
        "--name",
        "slowstart",
        "--health-startup-cmd",
        "test -e /tmp/up",
        "--health-startup-interval",
        "100ms",
        "--health-startup-retries",
        "1000",
        "--health-cmd",
        "false",
        "--health-interval",
        "100ms",
        "--health-retries",
        "1",
        &shim.image,
        "sleep",
        "1000",
    ]);
    wait_for(&shim, "slowstart", "ran", |s| s == "running (starting up)");
    // Several startup intervals: the (always failing) health check has not run once.
    std::thread::sleep(Duration::from_millis(600));
    let rec = inspect(&shim, "slowstart");
    assert!(
        rec["startup_state"]["log"].as_array().unwrap().len() >= 2,
        "{rec}"
    );
    assert_eq!(rec["health"]["log"], serde_json::json!([]), "{rec}");
    assert_eq!(
        shim.status("slowstart").as_deref(),
        Some("running (starting up)")
    );
    shim.ok(&["exec", "slowstart", "touch", "/tmp/up"]);
    // Started: now the health check runs (and fails: report only).
    wait_for(&shim, "slowstart", "was checked", |s| {
        s == "running (unhealthy)"
    });
    shim.ok(&["rm", "-f", "slowstart"]);

    // A startup check that keeps failing gets the container killed; the policy decides next.
    shim.ok(&[
        "run",
        "-d",
        "--name",
        "never",
        "--health-startup-cmd",
        "false",
        "--health-startup-interval",
        "100ms",
        "--health-startup-retries",
        "2",
        &shim.image,
        "sleep",
        "1000",
    ]);
    assert_eq!(
        wait_for(&shim, "never", "was killed", |s| s.starts_with("exited")),
        "exited (137)"
    );
    let o = shim.out(&["logs", "never"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("did not start (2 failed startup checks in a row)"),
        "{err}"
    );
    shim.ok(&["rm", "never"]);
    shim.assert_nothing_left();
}
