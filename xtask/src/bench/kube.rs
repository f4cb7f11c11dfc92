//! `kube`: a 3-container pod from Kubernetes YAML, `tinyo-shim play kube` against
//! `podman play kube` of the same manifest (the image named as each engine stores it), and
//! the matching `--down`.
//!
//! Both with no pod network: podman here has none to give (its networks would touch the
//! host), so the pod is timed until each command returns with all three containers started,
//! not until a port answers.

use std::path::PathBuf;

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
        ),
        c("writer", "exec /bin/busybox sleep 1000"),
        c("sidecar", "exec /bin/busybox sleep 1000"),
    )
}

pub fn run(opts: &Opts) -> Result<Vec<Report>> {
    crate::tools::require_root("bench", "it runs containers")?;
    use crate::tools::need;
    crate::tools::require(&[
        need("podman", "podman", "the kube benchmark's reference"),
        need("conmon", "conmon", "the kube benchmark's reference"),
        need("catatonit", "catatonit", "podman's pod infra image"),
        need("runc", "runc", "the kube benchmark's reference"),
    ])?;
    let shim_bin = super::dist_binary("tinyo-shim")?;
    let bin_dir = shim_bin.parent().map(PathBuf::from).unwrap_or_default();
    std::env::set_var("TINYO_BIN_DIR", &bin_dir);
    let shim = Shim::new();
    let runc = peer("runc").context("runc is needed for podman (apt-get install runc)")?;
    let podman = Podman::with_storage(&runc, tinyo_tests::busybox::rootfs(), "overlay");
    let dir = tempfile::tempdir()?;
    // podman's defaults raise RLIMIT_NOFILE past this host's hard limit (no CAP_SYS_RESOURCE).
    let conf = dir.path().join("containers.conf");
    std::fs::write(
        &conf,
        "[containers]\ndefault_ulimits = [\"nofile=20000:20000\", \"nproc=32768:32768\"]\n",
    )?;
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
            let (up, _) = time_command(&mut shim.cmd(&["play", "kube", "--network", "none", &ty]))?;
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
            Ok(vec![up, down])
        }));
    }
    {
        let (podman, py, conf) = (&podman, py.clone(), conf.clone());
        contenders.push(Contender::new("podman", move || {
            let mut up = podman.cmd(&["play", "kube", "--network", "none", &py]);
            up.env("CONTAINERS_CONF", &conf);
            let (t_up, _) = time_command(&mut up)?;
            let mut ps = podman.cmd(&["ps", "--filter", "status=running", "-q"]);
            ps.env("CONTAINERS_CONF", &conf);
            let out = ps.output()?;
            // The infra container counts too.
            let running = String::from_utf8_lossy(&out.stdout).lines().count();
            if running != 4 {
                bail!("podman play kube: {running} of 4 containers (infra included) running");
            }
            let mut down = podman.cmd(&["play", "kube", "--down", &py]);
            down.env("CONTAINERS_CONF", &conf);
            let (t_down, _) = time_command(&mut down)?;
            Ok(vec![t_up, t_down])
        }));
    }
    let mut reports = interleaved(
        &[
            (
                "play kube: a 3-container pod up (all containers started)",
                "ms",
            ),
            ("play kube --down: the pod and its containers gone", "ms"),
        ],
        "podman",
        &mut contenders,
        opts,
    )?;
    reports[0].notes.push(
        "tinyo-shim: static dist build, pod infra tinyo-init -P; podman 4.3 with runc through \
         conmon, overlay storage, cgroupfs, its podman-pause infra image (catatonit); both \
         --network none (see the module doc)"
            .into(),
    );
    Ok(reports)
}
