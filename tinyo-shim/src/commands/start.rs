//! `tinyo-shim start NAME…`: runs exited containers again, detached, each from its record and
//! bundle as a restart would (same rootfs changes, log, restart policy and checks). A member of
//! a pod joins the pod's current infra process, so the pod must run (`pod start`).

use anyhow::{bail, Context, Result};

use crate::state::{self, Roots, Status};

#[derive(Debug, clap::Args)]
pub struct StartArgs {
    #[arg(required = true)]
    pub ids: Vec<String>,
}

pub fn run(roots: &Roots, a: StartArgs) -> Result<i32> {
    for key in &a.ids {
        let r = state::find(roots, key)?;
        start(roots, &r.id).with_context(|| format!("starting {}", r.name))?;
        println!("{key}");
    }
    Ok(0)
}

/// Starts the exited container `id` again and waits until it runs.
pub fn start(roots: &Roots, id: &str) -> Result<()> {
    let dir = roots.container(id);
    {
        // Checked and claimed under the state root's lock, as `run` claims a name: two
        // `start`s cannot both spawn a supervisor.
        let _guard = state::lock(&roots.state)?;
        let r = state::load(&dir)?;
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
        // forgotten. The supervisor's setup marks it running.
        state::update(&dir, |r| {
            r.stop_requested = false;
            r.next_restart = None;
            r.detached = true;
            r.interactive = false;
            r.status = Status::Created;
            r.supervisor = None;
        })?;
    }
    let started = super::run::spawn_detached_supervisor(roots, id, true);
    if started.is_err() {
        // The supervisor puts it back itself when its setup fails; not when it never ran.
        let _ = state::update(&dir, |r| {
            if r.status == Status::Created {
                r.status = Status::Exited;
            }
        });
    }
    started
}
