//! `tinyo-shim logs [-f] [--tail N] [-t] ID`: the container's output from its CRI log, stdout
//! to stdout and stderr to stderr.

use anyhow::{Context, Result};

use crate::state::{self, Roots, Status};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Keep printing new output until the container exits.
    #[arg(short, long)]
    pub follow: bool,
    /// Only the last N lines.
    #[arg(long)]
    pub tail: Option<usize>,
    /// Prefix lines with their timestamps.
    #[arg(short, long)]
    pub timestamps: bool,
    /// The container (name, id or id prefix).
    pub id: String,
}

pub fn run(roots: &Roots, a: Args) -> Result<i32> {
    let r = state::find(roots, &a.id)?;
    let dir = roots.container(&r.id);
    let opts = crate::logs::ReadOptions {
        follow: a.follow,
        tail: a.tail,
        timestamps: a.timestamps,
    };
    let mut still_running = || {
        state::load(&dir)
            .map(|r| r.live_status().0 != Status::Exited)
            .unwrap_or(false)
    };
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    crate::logs::print(
        &dir.join("ctr.log"),
        &opts,
        &mut stdout.lock(),
        &mut stderr.lock(),
        &mut still_running,
    )
    .with_context(|| format!("reading the log of {}", r.name))?;
    Ok(0)
}
