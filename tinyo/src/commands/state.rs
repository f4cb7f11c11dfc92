//! `tinyo state`: the runtime-spec state of a container as JSON.

use anyhow::Result;
use tinyo_core::container::Runtime;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Container id.
    pub id: String,
}

pub fn run(rt: &Runtime, args: Args) -> Result<i32> {
    let state = rt.state(&args.id)?;
    println!("{}", serde_json::to_string_pretty(&state)?);
    Ok(0)
}
