//! `tinyo start`: let a created container exec its process.

use anyhow::{Context, Result};
use tinyo_core::container::Runtime;

use crate::log::Logger;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Container id.
    pub id: String,
}

pub fn run(rt: &Runtime, log: &Logger, args: Args) -> Result<i32> {
    let warnings = rt
        .start(&args.id)
        .with_context(|| format!("starting container {:?}", args.id))?;
    // Failing poststart hooks only warn, as in runc.
    for w in &warnings {
        log.warn(w);
    }
    Ok(0)
}
