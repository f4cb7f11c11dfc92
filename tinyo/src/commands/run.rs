//! `tinyo run`: create and start; in the foreground wait and exit with the container's exit
//! code (128+N when killed by signal N), then delete it.

use anyhow::{Context, Result};
use tinyo_core::container::{forward_signals, wait_exit_code, Runtime};

use crate::log::Logger;

#[derive(Debug, clap::Args)]
#[group(id = "run_args")]
pub struct Args {
    /// Everything `create` takes (bundle, pid file, console socket, preserved fds, id…).
    #[command(flatten)]
    pub create: super::create::Args,
    /// Do not wait: leave the container running and return.
    #[arg(short, long)]
    pub detach: bool,
    /// Keep the container's state after it exits (foreground only).
    #[arg(long)]
    pub keep: bool,
}

pub fn run(rt: &Runtime, log: &Logger, args: Args) -> Result<i32> {
    let create = &args.create;
    let id = &create.id;
    let opts = super::create::options(create)?;
    let created = rt
        .create(id, &create.bundle, &opts)
        .with_context(|| format!("creating container {:?}", id))?;
    for n in &created.notes {
        log.debug(n);
    }
    for w in &created.warnings {
        log.warn(w);
    }
    // Forward signals from now on (before start, so none is lost in between).
    if !args.detach {
        if let Err(e) = forward_signals(created.pid) {
            log.warn(&format!("{e:#}"));
        }
    }
    match rt.start(id) {
        Ok(warnings) => {
            for w in &warnings {
                log.warn(w);
            }
        }
        Err(e) => {
            let _ = rt.delete(id, true);
            return Err(e).with_context(|| format!("starting container {:?}", id));
        }
    }
    if args.detach {
        return Ok(0);
    }
    let code = wait_exit_code(created.pid);
    // An OOM kill is said as such, not left to look like any other SIGKILL.
    if let Ok((ooms, _)) = rt.oom_kills(id) {
        if ooms > 0 {
            log.error(&format!(
                "container {id:?}: the kernel OOM-killed {ooms} process(es) at the memory limit"
            ));
        }
    }
    if !args.keep {
        let warnings = rt
            .delete(id, true)
            .with_context(|| format!("deleting container {:?}", id))?;
        for w in &warnings {
            log.warn(w);
        }
    }
    Ok(code?)
}
