//! `play kube`: Kubernetes YAML as pods on this machine.
//!
//! Multi-document YAML is read whole and turned into a plan before anything runs: Pods, and
//! Deployments (`replicas` pods named `<name>-<i>`), with ConfigMaps and Secrets from the same
//! file for env and volumes. Liveness probes become restarting health checks, readiness
//! probes reported checks, startup probes checks that hold the others back until they pass. Each pod becomes a tinyo-shim pod; each container a `run --pod`
//! with the flags that mean what the manifest says. Kinds that are not supported are an error
//! naming the kind; fields that are not understood are warnings naming them.

use std::collections::BTreeMap;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;

/// A volume's content on the host, made before the pod's containers start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A fresh directory in the pod's state (gone with the pod).
    EmptyDir,
    /// A host directory (created when missing, as `DirectoryOrCreate`).
    HostPath(String),
    /// Files (key → content, mode) written into a fresh directory, mounted read-only.
    Files(Vec<(String, Vec<u8>)>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    pub name: String,
    pub source: Source,
}

/// One container as `run` flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    /// `<pod>-<container>`.
    pub name: String,
    /// Flags before the image (`--name`, `--pod` and `-d` are added when run).
    pub flags: Vec<String>,
    /// `-v` mounts as (volume name, container path, read-only).
    pub mounts: Vec<(String, String, bool)>,
    pub image: String,
    /// Arguments after the image.
    pub args: Vec<String>,
    /// `securityContext.privileged: true` (its flags have `--privileged`); `play kube` runs
    /// it only with `--allow-privileged`.
    pub privileged: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pod {
    pub name: String,
    pub hostname: String,
    /// `-p` values for the pod.
    pub ports: Vec<String>,
    pub volumes: Vec<Volume>,
    pub init: Vec<Container>,
    pub containers: Vec<Container>,
}

/// What a file asks for, and what was not understood in it.
#[derive(Debug, Default)]
pub struct Plan {
    pub pods: Vec<Pod>,
    pub warnings: Vec<String>,
}

type Data = BTreeMap<String, BTreeMap<String, Vec<u8>>>;

/// Parses `yaml` (any number of documents).
pub fn plan(yaml: &str) -> Result<Plan> {
    let mut docs = Vec::new();
    for (i, d) in serde_yaml_ng::Deserializer::from_str(yaml).enumerate() {
        let v: Value = serde::Deserialize::deserialize(d)
            .map_err(|e| anyhow!("document {}: not valid YAML: {e}", i + 1))?;
        if !v.is_null() {
            docs.push((i + 1, v));
        }
    }
    let mut plan = Plan::default();
    let (mut config_maps, mut secrets) = (Data::new(), Data::new());
    for (n, d) in &docs {
        let kind = d["kind"].as_str().unwrap_or("");
        let name = || -> Result<String> {
            d["metadata"]["name"]
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| anyhow!("document {n}: {kind} without metadata.name"))
        };
        match kind {
            "ConfigMap" => {
                let mut m = BTreeMap::new();
                for (k, v) in d["data"].as_object().into_iter().flatten() {
                    m.insert(k.clone(), scalar(v).into_bytes());
                }
                config_maps.insert(name()?, m);
            }
            "Secret" => {
                let mut m = BTreeMap::new();
                for (k, v) in d["data"].as_object().into_iter().flatten() {
                    let b = base64(v.as_str().unwrap_or(""))
                        .with_context(|| format!("document {n}: Secret data {k:?}"))?;
                    m.insert(k.clone(), b);
                }
                for (k, v) in d["stringData"].as_object().into_iter().flatten() {
                    m.insert(k.clone(), scalar(v).into_bytes());
                }
                secrets.insert(name()?, m);
            }
            "Pod" | "Deployment" => {}
            "" => bail!("document {n}: no kind"),
            other => bail!(
                "document {n}: kind {other} is not supported (Pod, Deployment, ConfigMap, Secret)"
            ),
        }
    }
    for (n, d) in &docs {
        let kind = d["kind"].as_str().unwrap_or("");
        let name = d["metadata"]["name"].as_str().unwrap_or("");
        let ctx = |what: &str| format!("document {n} ({kind} {name}){what}");
        match kind {
            "Pod" => {
                let p = pod(name, &d["spec"], &config_maps, &secrets, &mut plan.warnings)
                    .with_context(|| ctx(""))?;
                plan.pods.push(p);
            }
            "Deployment" => {
                let replicas = d["spec"]["replicas"].as_u64().unwrap_or(1);
                let spec = &d["spec"]["template"]["spec"];
                if !spec.is_object() {
                    bail!("{}: no spec.template.spec", ctx(""));
                }
                for i in 0..replicas {
                    let pname = format!("{name}-{i}");
                    let p = pod(&pname, spec, &config_maps, &secrets, &mut plan.warnings)
                        .with_context(|| ctx(""))?;
                    plan.pods.push(p);
                }
            }
            _ => {}
        }
    }
    check_host_ports(&plan.pods)?;
    Ok(plan)
}

/// One machine has each host port once: a second pod (or container) asking for a port an
/// earlier one publishes is refused before anything runs, where Kubernetes would leave the
/// pod Pending for want of a node with the port free.
fn check_host_ports(pods: &[Pod]) -> Result<()> {
    // (host IP or "" for every address, host port, protocol) → pod
    let mut taken: Vec<(&str, &str, &str, &str)> = Vec::new();
    for p in pods {
        for spec in &p.ports {
            let (addr, proto) = spec.split_once('/').unwrap_or((spec, "tcp"));
            let mut parts = addr.rsplitn(3, ':');
            let (_ctr, host, ip) = (
                parts.next(),
                parts.next().unwrap_or(""),
                parts.next().unwrap_or(""),
            );
            if let Some((_, _, _, other)) = taken.iter().find(|(i, h, pr, _)| {
                *h == host && *pr == proto && (i.is_empty() || ip.is_empty() || *i == ip)
            }) {
                let whom = if *other == p.name {
                    "another of its containers".to_string()
                } else {
                    format!("pod {other}")
                };
                bail!(
                    "pod {}: hostPort {host}/{proto} is already published by {whom}; a host port \
                     can be published once on this machine (Kubernetes would leave the pod \
                     Pending: set replicas to 1 or drop the hostPort)",
                    p.name
                );
            }
            taken.push((ip, host, proto, &p.name));
        }
    }
    Ok(())
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn base64(s: &str) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut acc = 0u32;
    let mut bits = 0;
    for c in s.bytes().filter(|c| !c.is_ascii_whitespace()) {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            _ => bail!("not base64"),
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Ok(out)
}

/// Warns about the keys of `v` not in `known`.
fn unknown(v: &Value, known: &[&str], at: &str, warnings: &mut Vec<String>) {
    for k in v.as_object().into_iter().flatten().map(|(k, _)| k) {
        if !known.contains(&k.as_str()) {
            warnings.push(format!("{at}: field {k:?} is not supported (ignored)"));
        }
    }
}

fn pod(name: &str, spec: &Value, cms: &Data, secrets: &Data, w: &mut Vec<String>) -> Result<Pod> {
    crate::state::check_name(name)?;
    unknown(
        spec,
        &[
            "containers",
            "initContainers",
            "volumes",
            "restartPolicy",
            "hostname",
        ],
        &format!("pod {name}"),
        w,
    );
    let restart = match spec["restartPolicy"].as_str().unwrap_or("Always") {
        "Always" => "always",
        "OnFailure" => "on-failure",
        "Never" => "no",
        other => bail!("restartPolicy {other:?}: use Always, OnFailure or Never"),
    };
    let mut volumes = Vec::new();
    for v in spec["volumes"].as_array().into_iter().flatten() {
        let vname = v["name"]
            .as_str()
            .context("a volume without a name")?
            .to_string();
        let files = |data: Option<&BTreeMap<String, Vec<u8>>>, what: &str, of: &str| {
            data.map(|m| m.iter().map(|(k, b)| (k.clone(), b.clone())).collect())
                .ok_or_else(|| anyhow!("volume {vname}: no {what} {of:?} in this file"))
        };
        let source = if v.get("emptyDir").is_some() {
            Source::EmptyDir
        } else if let Some(p) = v["hostPath"]["path"].as_str() {
            Source::HostPath(p.to_string())
        } else if let Some(cm) = v["configMap"]["name"].as_str() {
            Source::Files(files(cms.get(cm), "ConfigMap", cm)?)
        } else if let Some(s) = v["secret"]["secretName"].as_str() {
            Source::Files(files(secrets.get(s), "Secret", s)?)
        } else {
            bail!("volume {vname}: only emptyDir, hostPath, configMap and secret volumes are supported");
        };
        volumes.push(Volume {
            name: vname,
            source,
        });
    }
    let mut ports = Vec::new();
    let mut make = |c: &Value, init: bool, w: &mut Vec<String>| -> Result<Container> {
        container(
            name,
            c,
            init,
            restart,
            (cms, secrets),
            &volumes,
            &mut ports,
            w,
        )
    };
    let mut init = Vec::new();
    for c in spec["initContainers"].as_array().into_iter().flatten() {
        init.push(make(c, true, w)?);
    }
    let mut containers = Vec::new();
    for c in spec["containers"].as_array().into_iter().flatten() {
        containers.push(make(c, false, w)?);
    }
    if containers.is_empty() {
        bail!("pod {name} has no containers");
    }
    Ok(Pod {
        name: name.to_string(),
        hostname: spec["hostname"].as_str().unwrap_or(name).to_string(),
        ports,
        volumes,
        init,
        containers,
    })
}

/// Single-quotes `s` for /bin/sh.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// A probe as a shell command run in the container.
fn probe_cmd(p: &Value) -> Result<String> {
    if let Some(cmd) = p["exec"]["command"].as_array() {
        let argv: Vec<String> = cmd.iter().map(scalar).collect();
        if argv.is_empty() {
            bail!("an exec probe without a command");
        }
        return Ok(argv
            .iter()
            .map(|a| sh_quote(a))
            .collect::<Vec<_>>()
            .join(" "));
    }
    if p.get("httpGet").is_some() {
        let port = scalar(&p["httpGet"]["port"]);
        let path = p["httpGet"]["path"].as_str().unwrap_or("/");
        return Ok(format!(
            "wget -q -O /dev/null {}",
            sh_quote(&format!("http://127.0.0.1:{port}{path}"))
        ));
    }
    if p.get("tcpSocket").is_some() {
        let port = scalar(&p["tcpSocket"]["port"]);
        return Ok(format!("nc -z 127.0.0.1 {}", sh_quote(&port)));
    }
    bail!("a probe needs exec, httpGet or tcpSocket")
}

/// A probe's timing as `run`'s `--PREFIX-*` flags, with the kubelet's defaults; `liveness`
/// adds the start period and the restart that a failing liveness probe means.
fn probe_flags(prefix: &str, probe: &Value, cmd: String, liveness: bool) -> Vec<String> {
    let secs = |k: &str, d: u64| probe[k].as_u64().unwrap_or(d);
    let mut f = vec![
        format!("--{prefix}-cmd"),
        cmd,
        format!("--{prefix}-interval"),
        format!("{}s", secs("periodSeconds", 10)),
        format!("--{prefix}-timeout"),
        format!("{}s", secs("timeoutSeconds", 1)),
        format!("--{prefix}-retries"),
        secs("failureThreshold", 3).to_string(),
    ];
    if prefix == "readiness" {
        f.extend([
            "--readiness-successes".to_string(),
            secs("successThreshold", 1).to_string(),
        ]);
    }
    if liveness {
        f.extend([
            format!("--{prefix}-start-period"),
            format!("{}s", secs("initialDelaySeconds", 0)),
            format!("--{prefix}-on-failure"),
            "restart".to_string(),
        ]);
    }
    f
}

/// Kubernetes quantities as `run` flags: memory `64Mi`/`1G` → `-m`, cpu `500m`/`2` → `--cpus`.
fn memory(q: &str) -> Result<String> {
    let t = q.trim();
    let (num, unit) = t.split_at(t.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(t.len()));
    let mult: f64 = match unit {
        "" => 1.0,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        _ => bail!("memory {q:?}: use e.g. 64Mi, 1Gi, 500M"),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| anyhow!("memory {q:?} is not a quantity"))?;
    Ok(format!("{}", (n * mult) as u64))
}

fn cpus(q: &str) -> Result<String> {
    let v = match q.strip_suffix('m') {
        Some(milli) => milli.parse::<f64>().map(|m| m / 1000.0),
        None => q.parse::<f64>(),
    }
    .map_err(|_| anyhow!("cpu {q:?}: use e.g. 500m or 2"))?;
    Ok(format!("{v}"))
}

#[allow(clippy::too_many_arguments)]
fn container(
    pod: &str,
    c: &Value,
    init: bool,
    restart: &str,
    (cms, secrets): (&Data, &Data),
    volumes: &[Volume],
    ports: &mut Vec<String>,
    w: &mut Vec<String>,
) -> Result<Container> {
    let cname = c["name"].as_str().context("a container without a name")?;
    let at = format!("pod {pod} container {cname}");
    unknown(
        c,
        &[
            "name",
            "image",
            "command",
            "args",
            "env",
            "ports",
            "volumeMounts",
            "resources",
            "securityContext",
            "livenessProbe",
            "readinessProbe",
            "startupProbe",
            "workingDir",
            "imagePullPolicy",
        ],
        &at,
        w,
    );
    let image = c["image"]
        .as_str()
        .with_context(|| format!("{at}: no image"))?
        .to_string();
    let mut flags = vec![
        "--restart".to_string(),
        if init { "no" } else { restart }.to_string(),
    ];
    let strings =
        |v: &Value| -> Vec<String> { v.as_array().into_iter().flatten().map(scalar).collect() };
    let command = strings(&c["command"]);
    let mut args = strings(&c["args"]);
    if let Some((first, rest)) = command.split_first() {
        flags.extend(["--entrypoint".to_string(), first.clone()]);
        let mut a = rest.to_vec();
        a.append(&mut args);
        args = a;
    }
    if let Some(wd) = c["workingDir"].as_str() {
        flags.extend(["-w".to_string(), wd.to_string()]);
    }
    for e in c["env"].as_array().into_iter().flatten() {
        let k = e["name"]
            .as_str()
            .with_context(|| format!("{at}: env without a name"))?;
        let from = &e["valueFrom"];
        let key_ref = |r: &Value, data: &Data, what: &str| -> Result<String> {
            let (n, key) = (
                r["name"].as_str().unwrap_or(""),
                r["key"].as_str().unwrap_or(""),
            );
            data.get(n)
                .and_then(|m| m.get(key))
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .ok_or_else(|| {
                    anyhow!("{at}: env {k}: no key {key:?} in {what} {n:?} in this file")
                })
        };
        let v = if from.is_null() {
            scalar(&e["value"])
        } else if from.get("configMapKeyRef").is_some() {
            key_ref(&from["configMapKeyRef"], cms, "ConfigMap")?
        } else if from.get("secretKeyRef").is_some() {
            key_ref(&from["secretKeyRef"], secrets, "Secret")?
        } else if from["fieldRef"]["fieldPath"] == "metadata.name" {
            pod.to_string()
        } else {
            bail!("{at}: env {k}: only value, configMapKeyRef, secretKeyRef and fieldRef metadata.name are supported");
        };
        flags.extend(["-e".to_string(), format!("{k}={v}")]);
    }
    for p in c["ports"].as_array().into_iter().flatten() {
        let Some(host) = p["hostPort"].as_u64() else {
            continue;
        };
        let ctr = p["containerPort"]
            .as_u64()
            .with_context(|| format!("{at}: a hostPort without containerPort"))?;
        let proto = match p["protocol"].as_str().unwrap_or("TCP") {
            "TCP" => "",
            "UDP" => "/udp",
            other => bail!("{at}: protocol {other} is not supported (TCP, UDP)"),
        };
        let ip = p["hostIP"]
            .as_str()
            .map(|ip| format!("{ip}:"))
            .unwrap_or_default();
        ports.push(format!("{ip}{host}:{ctr}{proto}"));
    }
    let mut mounts = Vec::new();
    for m in c["volumeMounts"].as_array().into_iter().flatten() {
        let vname = m["name"].as_str().unwrap_or("");
        let path = m["mountPath"]
            .as_str()
            .with_context(|| format!("{at}: volumeMount {vname} without mountPath"))?;
        let v = volumes.iter().find(|v| v.name == vname).with_context(|| {
            format!("{at}: volumeMount of {vname:?}, which is not a volume of the pod")
        })?;
        let ro = m["readOnly"].as_bool().unwrap_or(false) || matches!(v.source, Source::Files(_));
        mounts.push((vname.to_string(), path.to_string(), ro));
    }
    let limits = &c["resources"]["limits"];
    if let Some(m) = limits.get("memory") {
        flags.extend([
            "-m".to_string(),
            memory(&scalar(m)).with_context(|| at.clone())?,
        ]);
    }
    if let Some(cpu) = limits.get("cpu") {
        flags.extend([
            "--cpus".to_string(),
            cpus(&scalar(cpu)).with_context(|| at.clone())?,
        ]);
    }
    let sc = &c["securityContext"];
    let privileged = sc["privileged"] == Value::Bool(true);
    if privileged {
        flags.push("--privileged".to_string());
    }
    match (sc["runAsUser"].as_u64(), sc["runAsGroup"].as_u64()) {
        (Some(u), Some(g)) => flags.extend(["-u".to_string(), format!("{u}:{g}")]),
        (Some(u), None) => flags.extend(["-u".to_string(), u.to_string()]),
        (None, Some(g)) => bail!("{at}: runAsGroup {g} without runAsUser is not supported"),
        (None, None) => {}
    }
    if sc["readOnlyRootFilesystem"] == Value::Bool(true) {
        flags.push("--read-only".to_string());
    }
    for (key, flag) in [("add", "--cap-add"), ("drop", "--cap-drop")] {
        for cap in strings(&sc["capabilities"][key]) {
            flags.extend([flag.to_string(), cap]);
        }
    }
    // Liveness restarts (with its initial delay as the start period); readiness is
    // reported; startup holds the others back.
    for (key, prefix, extra) in [
        ("livenessProbe", "health", true),
        ("readinessProbe", "readiness", false),
        ("startupProbe", "health-startup", false),
    ] {
        let probe = &c[key];
        if probe.is_object() {
            let cmd = probe_cmd(probe).with_context(|| format!("{at}: {key}"))?;
            if prefix != "readiness" && probe["successThreshold"].as_u64().is_some_and(|n| n != 1) {
                bail!("{at}: {key}: successThreshold must be 1 (as Kubernetes requires)");
            }
            flags.extend(probe_flags(prefix, probe, cmd, extra));
        }
    }
    Ok(Container {
        name: format!("{pod}-{cname}"),
        flags,
        mounts,
        image,
        args,
        privileged,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: cfg}
data: {greeting: hello, port: "8080"}
---
apiVersion: v1
kind: Secret
metadata: {name: pw}
data: {password: czNjcjN0}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  template:
    spec:
      restartPolicy: OnFailure
      volumes:
        - {name: shared, emptyDir: {}}
        - {name: conf, configMap: {name: cfg}}
      initContainers:
        - {name: prep, image: bbox, command: [sh, -c, "echo prep"]}
      containers:
        - name: app
          image: bbox
          command: [sh, -c]
          args: ["echo $GREETING"]
          env:
            - {name: GREETING, valueFrom: {configMapKeyRef: {name: cfg, key: greeting}}}
            - {name: PASSWORD, valueFrom: {secretKeyRef: {name: pw, key: password}}}
            - {name: POD, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
            - {name: PLAIN, value: 7}
          ports: [{containerPort: 80, hostPort: 8080}]
          volumeMounts:
            - {name: shared, mountPath: /data}
            - {name: conf, mountPath: /etc/conf}
          resources: {limits: {memory: 64Mi, cpu: 500m}}
          securityContext: {runAsUser: 1000, runAsGroup: 1000, readOnlyRootFilesystem: true,
                            capabilities: {drop: [ALL], add: [NET_BIND_SERVICE]}}
          livenessProbe: {exec: {command: [cat, /tmp/it's]}, periodSeconds: 2}
          readinessProbe: {tcpSocket: {port: 80}, successThreshold: 2}
          startupProbe: {httpGet: {port: 80, path: /healthz}, failureThreshold: 30}
          tty: true
"#;

    #[test]
    fn a_deployment_becomes_replica_pods_with_the_manifests_meaning() {
        let conflict = plan(MANIFEST).unwrap_err();
        assert!(
            format!("{conflict:#}").contains(
                "pod web-1: hostPort 8080/tcp is already published by pod web-0; a host port can \
                 be published once on this machine"
            ),
            "{conflict:#}"
        );
        // Replicas without the host port are fine; one replica may publish it.
        let spread = plan(&MANIFEST.replace(", hostPort: 8080", "")).unwrap();
        assert_eq!(spread.pods.len(), 2);
        assert!(spread.pods[1].ports.is_empty());
        let plan = plan(&MANIFEST.replace("replicas: 2", "replicas: 1")).unwrap();
        assert_eq!(plan.pods.len(), 1);
        let p = &plan.pods[0];
        assert_eq!(p.name, "web-0");
        assert_eq!(p.ports, ["8080:80"]);
        assert_eq!(p.init[0].flags, ["--restart", "no", "--entrypoint", "sh"]);
        assert_eq!(p.init[0].args, ["-c", "echo prep"]);
        let c = &p.containers[0];
        assert_eq!(c.name, "web-0-app");
        assert_eq!(c.args, ["-c", "echo $GREETING"]);
        let f = c.flags.join(" ");
        for want in [
            "--restart on-failure",
            "--entrypoint sh",
            "-e GREETING=hello",
            "-e PASSWORD=s3cr3t",
            "-e POD=web-0",
            "-e PLAIN=7",
            "-m 67108864",
            "--cpus 0.5",
            "-u 1000:1000",
            "--read-only",
            "--cap-add NET_BIND_SERVICE",
            "--cap-drop ALL",
            "--health-cmd 'cat' '/tmp/it'\\''s' --health-interval 2s --health-timeout 1s",
            "--health-on-failure restart",
        ] {
            assert!(f.contains(want), "{want:?} in {f}");
        }
        assert_eq!(
            c.mounts,
            [
                ("shared".to_string(), "/data".to_string(), false),
                ("conf".to_string(), "/etc/conf".to_string(), true)
            ]
        );
        assert_eq!(
            p.volumes[1].source,
            Source::Files(vec![
                ("greeting".into(), b"hello".to_vec()),
                ("port".into(), b"8080".to_vec())
            ])
        );
        let w = plan.warnings.join("\n");
        assert!(
            w.contains("container app: field \"tty\" is not supported"),
            "{w}"
        );
        assert!(
            f.contains("--readiness-cmd nc -z 127.0.0.1 '80' --readiness-interval 10s"),
            "{f}"
        );
        assert!(
            f.contains("--health-startup-cmd wget -q -O /dev/null 'http://127.0.0.1:80/healthz'"),
            "{f}"
        );
        assert!(f.contains("--health-startup-retries 30"), "{f}");
        assert!(f.contains("--readiness-successes 2"), "{f}");
    }

    #[test]
    fn bad_manifests_name_what_is_wrong() {
        let err = |y: &str| format!("{:#}", plan(y).unwrap_err());
        assert!(
            err("kind: Service\nmetadata: {name: s}\n").contains("kind Service is not supported")
        );
        let privileged = "kind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - {name: c, image: i, securityContext: {privileged: true}}\n";
        let c = &plan(privileged).unwrap().pods[0].containers[0];
        assert!(c.privileged && c.flags.contains(&"--privileged".to_string()));
        let missing = "kind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - name: c\n    image: i\n    env: [{name: X, valueFrom: {configMapKeyRef: {name: nope, key: k}}}]\n";
        assert!(err(missing).contains("no key \"k\" in ConfigMap \"nope\""));
        assert!(err("kind: Pod\nmetadata: {name: p}\nspec: {}\n").contains("no containers"));
        assert!(err("a: [\n").contains("not valid YAML"));
        let live = "kind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - {name: c, image: i, livenessProbe: {exec: {command: [x]}, successThreshold: 2}}\n";
        assert!(err(live).contains("livenessProbe: successThreshold must be 1"));
    }

    #[test]
    fn quantities() {
        assert_eq!(memory("1Gi").unwrap(), (1u64 << 30).to_string());
        assert_eq!(memory("500M").unwrap(), "500000000");
        assert!(memory("1Xi").is_err());
        assert_eq!(cpus("250m").unwrap(), "0.25");
        assert_eq!(cpus("2").unwrap(), "2");
        assert_eq!(base64("czNjcjN0").unwrap(), b"s3cr3t");
    }
}
