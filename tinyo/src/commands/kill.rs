//! `tinyo kill ID [SIGNAL]`: signal a container (names like TERM or SIGTERM, or numbers).

use anyhow::Result;
use tinyo_core::container::Runtime;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Signal every process in the container's cgroup, not only its init.
    #[arg(short, long)]
    pub all: bool,
    /// Container id.
    pub id: String,
    /// Signal name (TERM, SIGTERM) or number.
    #[arg(default_value = "TERM")]
    pub signal: String,
}

/// Parses `TERM`, `SIGTERM`, `sigterm`, `15`, `RTMIN+3`.
pub fn parse_signal(s: &str) -> Result<i32> {
    tinyo_core::signal::parse(s).map_err(anyhow::Error::msg)
}

pub fn run(rt: &Runtime, args: Args) -> Result<i32> {
    let sig = parse_signal(&args.signal)?;
    rt.kill(&args.id, sig, args.all)?;
    Ok(0)
}
