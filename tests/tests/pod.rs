//! tinyo-shim pods end to end: `pod create` with an infra process (tinyo-init -P), containers
//! joining with `run --pod`, shared network/IPC/UTS, a port published on the pod, and
//! `pod stop`/`pod rm` leaving nothing. Each test has its own root and network namespace.

use serde_json::Value;
use tinyo_tests::host::{http_get_in, leftover_cgroups};
use tinyo_tests::shim::Shim;

fn ns(pid: i64, kind: &str) -> String {
    std::fs::read_link(format!("/proc/{pid}/ns/{kind}"))
        .unwrap()
        .display()
        .to_string()
}

fn pid_of(shim: &Shim, name: &str) -> i64 {
    let v: Value = serde_json::from_str(&shim.ok(&["inspect", name])).unwrap();
    v[0]["pid"]["pid"].as_i64().unwrap()
}

#[test]
fn containers_of_a_pod_share_its_network_ipc_and_hostname() {
    let shim = Shim::new();
    let id = shim.ok(&[
        "pod",
        "create",
        "--network",
        "bridge",
        "-p",
        "8081:80",
        "--hostname",
        "podhost",
        "web",
    ]);
    let pods: Value = serde_json::from_str(&shim.ok(&["pod", "inspect", "web"])).unwrap();
    let infra = pods[0]["infra_pid"].as_i64().expect("infra pid");
    assert_eq!(pods[0]["id"], id.trim());
    let cmdline = std::fs::read_to_string(format!("/proc/{infra}/cmdline")).unwrap();
    assert!(cmdline.contains("tinyo-init\0-P"), "{cmdline:?}");

    let serve =
        "mkdir -p /www && echo served-by-pod > /www/index.html && exec httpd -f -p 80 -h /www";
    shim.ok(&[
        "run",
        "-d",
        "--pod",
        "web",
        "--name",
        "server",
        &shim.image,
        "sh",
        "-c",
        serve,
    ]);
    shim.ok(&[
        "run",
        "-d",
        "--pod",
        "web",
        "--name",
        "side",
        &shim.image,
        "sleep",
        "1000",
    ]);
    // The sidecar reaches the server on the pod's loopback: one network namespace.
    let mut got = String::new();
    for _ in 0..200 {
        let o = shim.out(&["exec", "side", "wget", "-qO-", "http://127.0.0.1:80/"]);
        got = String::from_utf8_lossy(&o.stdout).into_owned();
        if got == "served-by-pod\n" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(got, "served-by-pod\n");
    assert_eq!(shim.ok(&["exec", "side", "hostname"]), "podhost\n");
    let (server, side) = (pid_of(&shim, "server"), pid_of(&shim, "side"));
    for kind in ["net", "ipc", "uts"] {
        assert_eq!(ns(server, kind), ns(infra, kind), "{kind}");
        assert_eq!(ns(side, kind), ns(infra, kind), "{kind}");
    }
    for kind in ["pid", "mnt"] {
        assert_ne!(
            ns(server, kind),
            ns(side, kind),
            "each container keeps its own {kind}"
        );
    }
    // Each container's cgroup is under the pod's.
    let cg = std::fs::read_to_string(format!("/proc/{side}/cgroup")).unwrap();
    let pod_cgroup = format!("pod-{}", &id.trim()[..12]);
    assert!(cg.contains(&format!("tinyo-shim/{pod_cgroup}/")), "{cg}");
    // The infra process has its own beside them, in every hierarchy with a controller.
    let cg = std::fs::read_to_string(format!("/proc/{infra}/cgroup")).unwrap();
    let lines: Vec<&str> = cg
        .lines()
        .filter(|l| l.contains(":memory:") || l.contains(":pids:") || l.starts_with("0::"))
        .collect();
    assert!(!lines.is_empty(), "{cg}");
    for line in lines {
        assert!(
            line.ends_with(&format!("tinyo-shim/{pod_cgroup}/infra")),
            "infra cgroup: {cg}"
        );
    }
    // The port is published on the pod.
    let mut body = Err(String::new());
    for _ in 0..100 {
        body = http_get_in(&shim.netns(), "127.0.0.1:8081");
        if body.is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(body.as_deref(), Ok("served-by-pod\n"));
    let ps: Value = serde_json::from_str(&shim.ok(&["pod", "ps", "--format", "json"])).unwrap();
    assert_eq!(ps[0]["status"], "running");
    assert_eq!(ps[0]["running_containers"], 2);
    assert_eq!(shim.ps()[0]["pod"], "web");

    // A pod's network is its containers': no flags of their own, and no such pod is an error.
    for (args, words) in [
        (
            vec!["run", "--pod", "web", "-p", "1:1", &shim.image, "true"],
            "pod create",
        ),
        (
            vec!["run", "--pod", "nosuch", &shim.image, "true"],
            "no such pod: nosuch",
        ),
    ] {
        let o = shim.out(&args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(125), "{err}");
        assert!(err.contains(words), "{err}");
    }
    let o = shim.out(&["pod", "rm", "web"]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("pod rm -f"),
        "{o:?}"
    );

    shim.ok(&["pod", "stop", "web"]);
    assert!(
        !std::path::Path::new(&format!("/proc/{infra}/exe")).exists()
            || std::fs::read_to_string(format!("/proc/{infra}/stat"))
                .is_ok_and(|s| s.contains(") Z"))
    );
    let pods: Value = serde_json::from_str(&shim.ok(&["pod", "inspect", "web"])).unwrap();
    assert_eq!(pods[0]["status"], "exited");
    for c in pods[0]["containers"].as_array().unwrap() {
        assert!(
            c["status"].as_str().unwrap().starts_with("exited"),
            "{pods}"
        );
    }
    let o = shim.out(&["run", "--pod", "web", &shim.image, "true"]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("pod web is not running"),
        "{o:?}"
    );
    let o = shim.out(&["start", "server"]);
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains("pod web is not running (start it with tinyo-shim pod start web)"),
        "{o:?}"
    );

    // pod start: a new infra process, the network and port again, the containers in it.
    shim.ok(&["pod", "start", "web"]);
    let pods: Value = serde_json::from_str(&shim.ok(&["pod", "inspect", "web"])).unwrap();
    assert_eq!(pods[0]["status"], "running", "{pods}");
    assert_eq!(pods[0]["running_containers"], 2, "{pods}");
    let infra2 = pods[0]["infra_pid"].as_i64().expect("infra pid");
    assert_ne!(infra2, infra);
    let server2 = pid_of(&shim, "server");
    for kind in ["net", "ipc", "uts"] {
        assert_eq!(ns(server2, kind), ns(infra2, kind), "{kind}");
    }
    let mut body = Err(String::new());
    for _ in 0..100 {
        body = http_get_in(&shim.netns(), "127.0.0.1:8081");
        if body.is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(body.as_deref().map(str::trim), Ok("served-by-pod"));
    let o = shim.out(&["pod", "start", "web"]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("pod web is already running"),
        "{o:?}"
    );
    let o = shim.out(&["start", "server"]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("container server is running"),
        "{o:?}"
    );
    shim.ok(&["pod", "stop", "web"]);
    shim.ok(&["pod", "rm", "web"]);
    assert!(shim.ps().is_empty());
    let pods: Value = serde_json::from_str(&shim.ok(&["pod", "ps", "--format", "json"])).unwrap();
    assert_eq!(pods, serde_json::json!([]));
    let left = leftover_cgroups(&pod_cgroup);
    assert!(left.is_empty(), "pod cgroups left: {left:?}");
    let links = shim.in_netns("ip", &["-o", "link"]).output().unwrap();
    assert!(
        !String::from_utf8_lossy(&links.stdout).contains("veth"),
        "the pod's veth stays"
    );
}
