//! `tinyo-shim ps [-a] [--format json]` and `tinyo-shim inspect ID...`.

use anyhow::Result;
use serde_json::{json, Value};

use crate::state::{self, Record, Roots, Status};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Also list exited containers.
    #[arg(short, long)]
    pub all: bool,
    /// table or json.
    #[arg(long, default_value = "table")]
    pub format: String,
    /// Only print ids.
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    /// Containers (names, ids or id prefixes).
    #[arg(required = true)]
    pub ids: Vec<String>,
}

/// `running`, `exited (0)`, `running (unsupervised)`, `exited (lost)`, `created`.
pub fn status_text(r: &Record) -> String {
    let (status, note) = r.live_status();
    let base = match status {
        Status::Created => "created".to_string(),
        Status::Running => {
            let starting_up = r
                .startup_state
                .as_ref()
                .is_some_and(|h| h.status != crate::health::Status::Healthy);
            let mut notes: Vec<String> = r.health.iter().map(|h| h.status.to_string()).collect();
            if starting_up {
                notes = vec!["starting up".to_string()];
            }
            if let Some(ready) = &r.ready {
                let yes = ready.status == crate::health::Status::Healthy;
                notes.push(if yes { "ready" } else { "not ready" }.to_string());
            }
            if notes.is_empty() {
                "running".to_string()
            } else {
                format!("running ({})", notes.join(", "))
            }
        }
        Status::Restarting => match r.exit_code {
            Some(c) => format!("restarting (exited {c})"),
            None => "restarting".to_string(),
        },
        Status::Exited => match (note, r.exit_code) {
            ("lost", _) => "exited (lost)".to_string(),
            (_, Some(c)) if r.oom_killed => format!("exited ({c}, OOM-killed)"),
            (_, Some(c)) => format!("exited ({c})"),
            _ => "exited".to_string(),
        },
    };
    let base = match r.restarts {
        0 => base,
        1 => format!("{base}, 1 restart"),
        n => format!("{base}, {n} restarts"),
    };
    if note == "unsupervised" {
        format!("{base} (unsupervised)")
    } else {
        base
    }
}

fn summary(r: &Record) -> Value {
    json!({
        "id": r.id, "name": r.name, "image": r.image, "command": r.command,
        "created": r.created, "status": status_text(r), "exit_code": r.exit_code,
        "ports": r.ports, "pid": r.pid.map(|p| p.pid),
        "restart_policy": r.restart, "restarts": r.restarts, "next_restart": r.next_restart,
        "health": r.health.as_ref().map(|h| h.status.to_string()), "pod": r.pod,
        "ready": r.ready.as_ref().map(|h| h.status == crate::health::Status::Healthy),
    })
}

pub fn run(roots: &Roots, a: Args) -> Result<i32> {
    let all: Vec<Record> = state::list(roots)?
        .into_iter()
        .filter(|r| a.all || r.live_status().0 != Status::Exited)
        .collect();
    if a.quiet {
        for r in &all {
            println!("{}", &r.id[..12]);
        }
        return Ok(0);
    }
    match a.format.as_str() {
        "json" => println!(
            "{}",
            serde_json::to_string_pretty(&all.iter().map(summary).collect::<Vec<_>>())?
        ),
        "table" => {
            println!(
                "{:<12}  {:<24}  {:<24}  {:<22}  {:<20}  NAME",
                "ID", "IMAGE", "COMMAND", "STATUS", "PORTS"
            );
            let cut = |s: &str, n: usize| -> String {
                if s.chars().count() > n {
                    format!("{}…", s.chars().take(n - 1).collect::<String>())
                } else {
                    s.to_string()
                }
            };
            for r in &all {
                let image = r.image.trim_start_matches("docker.io/library/");
                println!(
                    "{:<12}  {:<24}  {:<24}  {:<22}  {:<20}  {}",
                    &r.id[..12],
                    cut(image, 24),
                    cut(&r.command.join(" "), 24),
                    status_text(r),
                    cut(&r.ports.join(","), 20),
                    r.name
                );
            }
        }
        other => anyhow::bail!("--format {other:?}: use table or json"),
    }
    Ok(0)
}

pub fn inspect(roots: &Roots, a: InspectArgs) -> Result<i32> {
    let mut out = Vec::new();
    for key in &a.ids {
        let r = state::find(roots, key)?;
        let dir = roots.container(&r.id);
        let mut v = serde_json::to_value(&r)?;
        v["state"] = json!(status_text(&r));
        v["log_path"] = json!(dir.join("ctr.log"));
        v["bundle"] = json!(dir);
        if let Ok(s) = roots.runtime().state(&r.id) {
            v["runtime"] = serde_json::to_value(s)?;
        }
        out.push(v);
    }
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(0)
}
