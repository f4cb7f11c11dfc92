//! `kube`: a 3-container pod from Kubernetes YAML, `tinyo-shim play kube` against
//! `podman play kube` of the same manifest (the image named as each engine stores it), and
//! the matching `--down`.
//!
//! Both give the pod a bridge network with the server's `hostPort` published, each in a
//! network namespace of its own (tinyo-shim's CNI bridge in the `Shim` fixture's, podman's CNI
//! `podman-default-kube-network` in [`Podman::networked`]'s), so nothing touches the host's
//! network. Each round times the command's return (all containers started) and the moment
//! the server first answers `GET /` on `127.0.0.1:8080` in that namespace (up and serving),
//! then the `--down`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tinyo_tests::podman::Podman;
use tinyo_tests::shim::Shim;

use super::{interleaved, peer, time_command, Contender, Opts, Report};

fn manifest(image: &str) -> String {
    let c = |name: &str, cmd: &str| {
        format!(
            "  - name: {name}\n    image: {image}\n    command: [\"/bin/sh\", \"-c\", \"{cmd}\"]\n"
        )
    };
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: bench\nspec:\n  containers:\n{}{}{}",
        c(
            "server",
            "mkdir -p /www; echo ok > /www/index.html; exec /bin/busybox httpd -f -p 80 -h /www"
        ) + "    ports:\n    - containerPort: 80\n      hostPort: 8080\n",
        c("writer", "exec /bin/busybox sleep 1000"),
        c("sidecar", "exec /bin/busybox sleep 1000"),
    )
}

/// Runs `cmd` (the `play kube`), then polls `GET /` on `127.0.0.1:8080` inside `netns` every
/// millisecond; returns (ms until the command returned, ms until the first `ok` answer), both
/// from the command's start.
fn up_and_serving(cmd: &mut Command, netns: &Path) -> Result<(f64, f64)> {
    let t = Instant::now();
    let (up, _) = time_command(cmd)?;
    let deadline = t + Duration::from_secs(30);
    loop {
        match tinyo_tests::host::http_get_in(netns, "127.0.0.1:8080") {
            Ok(body) if body.trim() == "ok" => return Ok((up, t.elapsed().as_secs_f64() * 1e3)),
            Ok(body) => bail!("127.0.0.1:8080 answered {body:?}, not ok"),
            Err(e) if Instant::now() > deadline => {
                bail!("127.0.0.1:8080 did not answer within 30 s: {e}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(1)),
        }
    }
}

pub fn run(opts: &Opts) -> Result<Vec<Report>> {
    crate::tools::require_root("bench", "it runs containers")?;
    use crate::tools::need;
    crate::tools::require(&[
        need("podman", "podman", "the kube benchmark's reference"),
        need(
            "/usr/lib/cni/bridge",
            "containernetworking-plugins",
            "both engines' pod networks",
        ),
        need("conmon", "conmon", "the kube benchmark's reference"),
        need("catatonit", "catatonit", "podman's pod infra image"),
        need("runc", "runc", "the kube benchmark's reference"),
    ])?;
    let shim_bin = super::dist_binaries(&["tinyo-shim", "tinyo-pull", "tinyo-init"])?.remove(0);
    let bin_dir = shim_bin.parent().map(PathBuf::from).unwrap_or_default();
    std::env::set_var("TINYO_BIN_DIR", &bin_dir);
    let shim = Shim::new();
    let runc = peer("runc").context("runc is needed for podman (apt-get install runc)")?;
    // Its containers.conf keeps ulimits within this host's hard limits (no CAP_SYS_RESOURCE).
    let podman = Podman::networked(&runc, tinyo_tests::busybox::rootfs(), "overlay");
    let podman_ns = podman.netns().context("a networked podman has a netns")?;
    let dir = tempfile::tempdir()?;
    let tinyo_yaml = dir.path().join("tinyo.yaml");
    std::fs::write(&tinyo_yaml, manifest(&shim.image))?;
    let podman_yaml = dir.path().join("podman.yaml");
    std::fs::write(&podman_yaml, manifest(podman.image()))?;
    let (ty, py) = (
        tinyo_yaml.display().to_string(),
        podman_yaml.display().to_string(),
    );
    let mut contenders = Vec::new();
    {
        let (shim, ty) = (&shim, ty.clone());
        contenders.push(Contender::new("tinyo-shim", move || {
            let (up, serving) = up_and_serving(
                &mut shim.cmd(&["play", "kube", "--network", "bridge", &ty]),
                &shim.netns(),
            )?;
            let running = shim
                .ps()
                .iter()
                .filter(|c| {
                    c["status"]
                        .as_str()
                        .is_some_and(|s| s.starts_with("running"))
                })
                .count();
            if running != 3 {
                let ps: Vec<String> = shim.ps().iter().map(|c| format!("{} {}", c["name"], c["status"])).collect();
                let logs = shim.out(&["logs", "bench/server"]);
                bail!(
                    "tinyo-shim play kube: {running} of 3 containers running: {ps:?}; server log: {}",
                    String::from_utf8_lossy(&logs.stderr)
                );
            }
            let (down, _) = time_command(&mut shim.cmd(&["play", "kube", "--down", &ty]))?;
            Ok(vec![up, serving, down])
        }));
    }
    {
        let (podman, py, podman_ns) = (&podman, py.clone(), podman_ns.clone());
        contenders.push(Contender::new("podman", move || {
            let (t_up, t_serving) =
                up_and_serving(&mut podman.cmd(&["play", "kube", &py]), &podman_ns)?;
            let out = podman
                .cmd(&["ps", "--filter", "status=running", "-q"])
                .output()?;
            // The infra container counts too.
            let running = String::from_utf8_lossy(&out.stdout).lines().count();
            if running != 4 {
                bail!("podman play kube: {running} of 4 containers (infra included) running");
            }
            let (t_down, _) = time_command(&mut podman.cmd(&["play", "kube", "--down", &py]))?;
            Ok(vec![t_up, t_serving, t_down])
        }));
    }
    let mut reports = interleaved(
        &[
            (
                "play kube: a 3-container pod up (command returned, all containers started)",
                "ms",
            ),
            (
                "play kube: a 3-container pod up and serving (first GET / on its hostPort)",
                "ms",
            ),
            ("play kube --down: the pod and its containers gone", "ms"),
        ],
        "podman",
        &mut contenders,
        opts,
    )?;
    reports[0].notes.push(
        "tinyo-shim: static dist build, pod infra tinyo-init -P, --network bridge (CNI bridge \
         plugin for veth and address, its own NAT and port rules in one iptables-restore); podman 4.3 with runc through conmon, overlay storage, cgroupfs, its \
         podman-pause infra image (catatonit), its default kube network (CNI bridge + portmap); \
         each in a network namespace of its own"
            .into(),
    );
    Ok(reports)
}
