//! `tinyo start`: let a created container exec its process.

use anyhow::{Context, Result};
use tinyo_core::container::Runtime;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Container id.
    pub id: String,
}

pub fn run(rt: &Runtime, args: Args) -> Result<i32> {
    rt.start(&args.id)
        .with_context(|| format!("starting container {:?}", args.id))?;
    Ok(0)
}
