//! `tinyo delete [--force] ID`: remove a container (its cgroups and state).

use anyhow::{Context, Result};
use tinyo_core::container::Runtime;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Kill the container first if it is still running.
    #[arg(short, long)]
    pub force: bool,
    /// Container id.
    pub id: String,
}

pub fn run(rt: &Runtime, args: Args) -> Result<i32> {
    rt.delete(&args.id, args.force)
        .with_context(|| format!("deleting container {:?}", args.id))?;
    Ok(0)
}
