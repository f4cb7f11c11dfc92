//! `tinyo-shim play kube` end to end, with manifests in the style of the Kubernetes docs: a
//! two-container pod sharing an emptyDir (one writes, the other serves it over HTTP on a
//! hostPort) with a ConfigMap in env and as a volume and an init container; a Deployment of
//! three replicas whose exec liveness probe gets a container restarted and whose readiness
//! probe is reported; and `--down`.

use serde_json::Value;
use tinyo_tests::host::{http_get_in, leftover_cgroups};
use tinyo_tests::shim::Shim;

fn write(dir: &tempfile::TempDir, yaml: &str) -> String {
    let p = dir.path().join("app.yaml");
    std::fs::write(&p, yaml).unwrap();
    p.display().to_string()
}

fn fetch(shim: &Shim, addr: &str, want: &str) -> String {
    let mut last = String::new();
    for _ in 0..300 {
        match http_get_in(&shim.netns(), addr) {
            Ok(b) if b == want => return b,
            Ok(b) => last = b,
            Err(e) => last = e,
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    last
}

#[test]
fn a_pod_with_an_init_container_a_shared_emptydir_and_a_configmap() {
    let shim = Shim::new();
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        r#"apiVersion: v1
kind: ConfigMap
metadata:
  name: site
data:
  title: hello from a configmap
---
apiVersion: v1
kind: Pod
metadata:
  name: web
spec:
  volumes:
  - name: html
    emptyDir: {{}}
  - name: conf
    configMap:
      name: site
  initContainers:
  - name: prepare
    image: {img}
    command: ["sh", "-c", "echo prepared > /html/init.txt"]
    volumeMounts:
    - {{name: html, mountPath: /html}}
  containers:
  - name: writer
    image: {img}
    command: ["sh", "-c"]
    args: ["cat /html/init.txt > /html/index.html; echo \"$TITLE from $POD\" >> /html/index.html; cat /conf/title >> /html/index.html; exec sleep 1000"]
    env:
    - name: TITLE
      valueFrom:
        configMapKeyRef: {{name: site, key: title}}
    - name: POD
      valueFrom:
        fieldRef: {{fieldPath: metadata.name}}
    volumeMounts:
    - {{name: html, mountPath: /html}}
    - {{name: conf, mountPath: /conf}}
  - name: server
    image: {img}
    command: ["httpd", "-f", "-p", "80", "-h", "/srv"]
    ports:
    - containerPort: 80
      hostPort: 8090
    volumeMounts:
    - name: html
      mountPath: /srv
      readOnly: true
    resources:
      limits: {{memory: 64Mi, cpu: 500m}}
    stdin: true
"#,
        img = shim.image
    );
    let file = write(&dir, &yaml);
    let o = shim.out(&["play", "kube", "--network", "bridge", &file]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("container server: field \"stdin\" is not supported"),
        "{err}"
    );
    let want = "prepared\nhello from a configmap from web\nhello from a configmap";
    assert_eq!(fetch(&shim, "127.0.0.1:8090", want), want);
    let pods: Value = serde_json::from_str(&shim.ok(&["pod", "inspect", "web"])).unwrap();
    let ctrs = pods[0]["containers"].as_array().unwrap();
    assert_eq!(ctrs.len(), 3, "{pods}");
    let status = |name: &str| {
        ctrs.iter().find(|c| c["name"] == name).unwrap()["status"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(status("web-prepare"), "exited (0)");
    assert_eq!(status("web-server"), "running");
    let o = shim.out(&["exec", "web-server", "sh", "-c", "echo x > /srv/x"]);
    assert_ne!(o.status.code(), Some(0), "readOnly volumeMount");
    let rec: Value = serde_json::from_str(&shim.ok(&["inspect", "web/server"])).unwrap();
    assert_eq!(rec[0]["name"], "web-server");
    // A second play of the same file is refused; --down removes everything.
    let o = shim.out(&["play", "kube", &file]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("exists already"),
        "{o:?}"
    );
    shim.ok(&["play", "kube", "--down", &file]);
    assert!(shim.ps().is_empty());
    let id = pods[0]["id"].as_str().unwrap();
    assert!(leftover_cgroups(&format!("pod-{}", &id[..12])).is_empty());
    assert!(!shim.root().join("shim/pods/web").exists());
}

#[test]
fn a_deployment_runs_its_replicas_and_liveness_restarts_a_container() {
    let shim = Shim::new();
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: api
spec:
  replicas: 3
  selector:
    matchLabels: {{app: api}}
  template:
    metadata:
      labels: {{app: api}}
    spec:
      containers:
      - name: app
        image: {img}
        args: ["sh", "-c", "touch /tmp/healthy; echo up; exec sleep 1000"]
        livenessProbe:
          exec:
            command: ["cat", "/tmp/healthy"]
          periodSeconds: 1
          failureThreshold: 2
        readinessProbe:
          exec:
            command: ["test", "-e", "/tmp/ready"]
          periodSeconds: 1
          failureThreshold: 1
"#,
        img = shim.image
    );
    let file = write(&dir, &yaml);
    shim.ok(&["play", "kube", "--network", "none", &file]);
    let pods: Value = serde_json::from_str(&shim.ok(&["pod", "ps", "--format", "json"])).unwrap();
    let names: Vec<&str> = pods
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["api-0", "api-1", "api-2"]);
    shim.wait_status("api-1-app", "running (healthy, not ready)");
    // Readiness is reported, never acted on.
    shim.ok(&["exec", "api-2/app", "touch", "/tmp/ready"]);
    shim.wait_status("api-2-app", "running (healthy, ready)");
    let ps = shim.ps();
    let api2 = ps.iter().find(|c| c["name"] == "api-2-app").unwrap();
    assert_eq!(api2["ready"], true, "{api2}");
    // The probe starts failing in one replica: the kubelet's answer is a restart.
    shim.ok(&["exec", "api-1/app", "rm", "/tmp/healthy"]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while shim.status("api-1-app").as_deref() != Some("running (healthy, not ready), 1 restart") {
        assert!(
            std::time::Instant::now() < deadline,
            "{:?}",
            shim.status("api-1-app")
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(shim.ok(&["logs", "api-1/app"]), "up\nup\n");
    assert_eq!(
        shim.status("api-0-app").as_deref(),
        Some("running (healthy, not ready)")
    );
    shim.ok(&["play", "kube", "--down", &file]);
    assert!(shim.ps().is_empty());
}

#[test]
fn unsupported_kinds_and_bad_manifests_are_refused_before_anything_runs() {
    let shim = Shim::new();
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "kind: Pod\nmetadata: {{name: ok}}\nspec:\n  containers:\n  - {{name: c, image: {}}}\n---\nkind: Service\nmetadata: {{name: svc}}\n",
        shim.image
    );
    let o = shim.out(&["play", "kube", &write(&dir, &yaml)]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(125), "{err}");
    assert!(
        err.contains("document 2: kind Service is not supported"),
        "{err}"
    );
    assert!(shim.ps().is_empty());
    // A failing init container: the pod it made is gone again.
    let yaml = format!(
        "kind: Pod\nmetadata: {{name: bad}}\nspec:\n  initContainers:\n  - {{name: i, image: {img}, command: [sh, -c, 'exit 4']}}\n  containers:\n  - {{name: c, image: {img}}}\n",
        img = shim.image
    );
    let o = shim.out(&["play", "kube", "--network", "none", &write(&dir, &yaml)]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("init container bad-i exited with 4"), "{err}");
    let pods: Value = serde_json::from_str(&shim.ok(&["pod", "ps", "--format", "json"])).unwrap();
    assert_eq!(pods, serde_json::json!([]));
    assert!(shim.ps().is_empty());
    // App containers start side by side: one that cannot start (its image reference is not
    // one) fails the play, names itself, and takes the pod and its started siblings with it.
    let missing = "'Not/A:Ref::'";
    let yaml = format!(
        "kind: Pod\nmetadata: {{name: half}}\nspec:\n  containers:\n  - {{name: a, image: {img}, command: [sleep, '1000']}}\n  - {{name: b, image: {missing}}}\n  - {{name: c, image: {img}, command: [sleep, '1000']}}\n",
        img = shim.image
    );
    let o = shim.out(&["play", "kube", "--network", "none", &write(&dir, &yaml)]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(125), "{err}");
    assert!(
        err.contains("container half-b") && err.contains("Not/A:Ref"),
        "{err}"
    );
    let pods: Value = serde_json::from_str(&shim.ok(&["pod", "ps", "--format", "json"])).unwrap();
    assert_eq!(pods, serde_json::json!([]));
    assert!(shim.ps().is_empty());
    shim.assert_nothing_left();
}

#[test]
fn a_privileged_container_runs_only_when_allowed_and_is_unconfined() {
    let shim = Shim::new();
    let dir = tempfile::tempdir().unwrap();
    // What confinement leaves visible: capabilities, seccomp mode, the masked /proc/keys,
    // /sys read-only, a host device.
    let probe = "grep -E '^(CapEff|Seccomp):' /proc/self/status; \
                 grep -c ' /proc/keys ' /proc/mounts; \
                 grep ' /sys ' /proc/mounts | cut -d' ' -f4 | cut -d, -f1; \
                 test -c /dev/loop-control && echo loop-control";
    let yaml = format!(
        "kind: Pod\nmetadata: {{name: priv}}\nspec:\n  restartPolicy: Never\n  containers:\n  - name: c\n    image: {}\n    command: [sh, -c, \"{probe}\"]\n    securityContext: {{privileged: true}}\n",
        shim.image
    );
    let file = write(&dir, &yaml);
    let o = shim.out(&["play", "kube", "--network", "none", &file]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(125), "{err}");
    assert!(
        err.contains("pod priv container c: privileged: true is refused")
            && err.contains("--allow-privileged"),
        "{err}"
    );
    let pods: Value = serde_json::from_str(&shim.ok(&["pod", "ps", "--format", "json"])).unwrap();
    assert_eq!(pods, serde_json::json!([]));

    let wait_exit = |name: &str| {
        for _ in 0..250 {
            let s = shim.ps().into_iter().find(|c| c["name"] == name);
            if s.is_some_and(|c| c["status"].as_str().unwrap_or("").starts_with("exited")) {
                return shim.ok(&["logs", name]);
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        panic!("{name} did not exit: {:?}", shim.ps());
    };
    shim.ok(&[
        "play",
        "kube",
        "--network",
        "none",
        "--allow-privileged",
        &file,
    ]);
    let out = wait_exit("priv-c");
    let host_has_loop = std::path::Path::new("/dev/loop-control").exists();
    // Every capability this host can give (its bounding set: this one lacks CAP_SYS_RESOURCE).
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let bounding = status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .unwrap()
        .trim()
        .to_string();
    assert!(out.contains(&format!("CapEff:\t{bounding}\n")), "{out}");
    assert!(out.contains("Seccomp:\t0"), "{out}");
    assert!(
        out.contains("\n0\nrw\n"),
        "/proc/keys unmasked, /sys rw: {out}"
    );
    assert_eq!(out.contains("loop-control"), host_has_loop, "{out}");
    shim.ok(&["play", "kube", "--down", &file]);

    // The same probe confined, for contrast.
    shim.ok(&[
        "run",
        "-d",
        "--name",
        "plain",
        "--network",
        "none",
        &shim.image,
        "sh",
        "-c",
        probe,
    ]);
    let out = wait_exit("plain");
    assert!(!out.contains(&format!("CapEff:\t{bounding}\n")), "{out}");
    assert!(out.contains("Seccomp:\t2"), "{out}");
    assert!(
        out.contains("\n1\nro\n"),
        "/proc/keys masked, /sys ro: {out}"
    );
    assert!(!out.contains("loop-control"), "{out}");
    shim.ok(&["rm", "plain"]);
    shim.assert_nothing_left();
}
