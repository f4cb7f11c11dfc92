//! `tinyo pause ID` / `tinyo resume ID`: freeze and thaw every process of a container
//! (cgroup v1 freezer or v2 `cgroup.freeze`, whichever holds the freezer here).

use anyhow::Result;
use tinyo_core::container::Runtime;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Container id.
    pub id: String,
}

pub fn pause(rt: &Runtime, args: Args) -> Result<i32> {
    rt.pause(&args.id)?;
    Ok(0)
}

pub fn resume(rt: &Runtime, args: Args) -> Result<i32> {
    rt.resume(&args.id)?;
    Ok(0)
}
