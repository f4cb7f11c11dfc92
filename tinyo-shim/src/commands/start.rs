//! `tinyo-shim start NAME…`: runs exited containers again, detached, each from its record and
//! bundle as a restart would (same rootfs changes, log, restart policy and checks). A member of
//! a pod joins the pod's current infra process, so the pod must run (`pod start`).
//!
//! `start --all [--filter restart-policy=P]…` is what a boot-time unit runs, there being no
//! daemon to bring containers back after a reboot (as `podman-restart.service` does): every
//! exited container outside a stopped pod, or those with one of the policies. With
//! `unless-stopped`, a container a user stopped (`stop`) stays stopped.

use anyhow::{bail, Context, Result};

use crate::state::{self, Roots, Status};

#[derive(Debug, clap::Args)]
pub struct StartArgs {
    /// Every exited container (not those of a pod that is not running).
    #[arg(short, long, conflicts_with = "ids")]
    pub all: bool,
    /// With --all: only containers with this restart policy (restart-policy=always,
    /// unless-stopped, on-failure or no); may be repeated.
    #[arg(long, requires = "all")]
    pub filter: Vec<String>,
    #[arg(required_unless_present = "all")]
    pub ids: Vec<String>,
}

pub fn run(roots: &Roots, a: StartArgs) -> Result<i32> {
    if !a.all {
        for key in &a.ids {
            let r = state::find(roots, key)?;
            start(roots, &r.id).with_context(|| format!("starting {}", r.name))?;
            println!("{key}");
        }
        return Ok(0);
    }
    let mut policies = Vec::new();
    for f in &a.filter {
        match f.split_once('=') {
            Some(("restart-policy", p)) => {
                let p: crate::restart::Policy = p.parse()?;
                policies.push(p.to_string().split(':').next().unwrap_or("").to_string());
            }
            _ => bail!("--filter {f:?}: only restart-policy=POLICY is supported"),
        }
    }
    let mut failed = 0;
    for r in state::list(roots)? {
        if r.live_status().0 != Status::Exited || r.auto_remove {
            continue;
        }
        let policy = r.restart.to_string();
        let policy = policy.split(':').next().unwrap_or("");
        if !policies.is_empty() && !policies.iter().any(|p| p == policy) {
            continue;
        }
        if r.restart == crate::restart::Policy::UnlessStopped && r.stop_requested {
            continue;
        }
        if let Some(pod) = &r.pod {
            if !crate::pod::load(roots, pod).is_ok_and(|p| p.running()) {
                continue;
            }
        }
        match start(roots, &r.id) {
            Ok(()) => println!("{}", r.name),
            Err(e) => {
                eprintln!("tinyo-shim: starting {}: {e:#}", r.name);
                failed += 1;
            }
        }
    }
    Ok(if failed > 0 { 125 } else { 0 })
}

/// Starts the exited container `id` again and waits until it runs.
pub fn start(roots: &Roots, id: &str) -> Result<()> {
    let dir = roots.container(id);
    {
        // Checked and claimed under the state root's lock, as `run` claims a name: two
        // `start`s cannot both spawn a supervisor.
        let _guard = state::lock(&roots.state)?;
        let r = state::load(&dir)?;
        if r.status != Status::Exited && r.live_status().0 == Status::Exited {
            // Lost (its supervisor died with the machine): clear what the last run left.
            super::stop::clean_unsupervised(roots, &r);
        }
        match r.live_status().0 {
            Status::Exited => {}
            _ => bail!(
                "container {} is {}, not exited",
                r.name,
                super::ps::status_text(&r)
            ),
        }
        if let Some(name) = &r.pod {
            let p = crate::pod::load(roots, name)?;
            if !p.running() {
                bail!("pod {name} is not running (start it with tinyo-shim pod start {name})");
            }
            // The namespaces are those of the pod's infra process now running.
            let path = dir.join("config.json");
            let mut spec: serde_json::Value = serde_json::from_slice(
                &std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?,
            )
            .with_context(|| format!("parsing {}", path.display()))?;
            super::run::join_pod(&mut spec, &p, id)?;
            state::write_atomic(&path, &serde_json::to_vec_pretty(&spec)?)?;
        }
        // Started detached: no terminal or stdin to relay; a stop asked of the last run is
        // forgotten. Claimed with this process as its supervisor until the real one takes
        // over in its setup, so a second `start` meanwhile sees it created, not exited (and
        // if this process dies first, it is lost, as any dead supervisor's container).
        state::update(&dir, |r| {
            r.stop_requested = false;
            r.next_restart = None;
            r.detached = true;
            r.interactive = false;
            r.status = Status::Created;
            r.supervisor = state::Proc::of(std::process::id() as i32);
        })?;
    }
    let started = super::run::spawn_detached_supervisor(roots, id, true);
    if started.is_err() {
        // The supervisor puts it back itself when its setup fails; not when it never ran.
        let _ = state::update(&dir, |r| {
            if r.status == Status::Created {
                r.status = Status::Exited;
                r.supervisor = None;
            }
        });
    }
    started
}
