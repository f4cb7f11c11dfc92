//! `tinyo delete [--force] ID`: remove a container (its cgroups and state).

use anyhow::{Context, Result};
use tinyo_core::container::Runtime;

use crate::log::Logger;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Kill the container first if it is still running.
    #[arg(short, long)]
    pub force: bool,
    /// Container id.
    pub id: String,
}

pub fn run(rt: &Runtime, log: &Logger, args: Args) -> Result<i32> {
    let warnings = rt
        .delete(&args.id, args.force)
        .with_context(|| format!("deleting container {:?}", args.id))?;
    // Failing poststop hooks only warn, as in runc.
    for w in &warnings {
        log.warn(w);
    }
    Ok(0)
}
