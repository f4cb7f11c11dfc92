//! `tinyo run`: create and start; in the foreground wait and exit with the container's exit
//! code (128+N when killed by signal N), then delete it.

use std::path::PathBuf;

use anyhow::{Context, Result};
use tinyo_core::container::{forward_signals, wait_exit_code, Runtime};

use crate::log::Logger;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Bundle directory (holding config.json).
    #[arg(short, long, default_value = ".")]
    pub bundle: PathBuf,
    /// Do not wait: leave the container running and return.
    #[arg(short, long)]
    pub detach: bool,
    /// Write the container process's pid to this file.
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    /// Unix socket to send the pty master to (needed when process.terminal is true; tinyo
    /// does not relay a terminal itself).
    #[arg(long)]
    pub console_socket: Option<PathBuf>,
    /// Pass this many extra file descriptors (3, 4, …) to the container process.
    #[arg(long, default_value_t = 0)]
    pub preserve_fds: u32,
    /// Enter the root with chroot instead of pivot_root.
    #[arg(long)]
    pub no_pivot: bool,
    /// Accepted for runc compatibility.
    #[arg(long)]
    pub no_new_keyring: bool,
    /// Keep the container's state after it exits (foreground only).
    #[arg(long)]
    pub keep: bool,
    /// Container id.
    pub id: String,
}

pub fn run(rt: &Runtime, log: &Logger, args: Args) -> Result<i32> {
    let create = super::create::Args {
        bundle: args.bundle,
        pid_file: args.pid_file,
        console_socket: args.console_socket,
        preserve_fds: args.preserve_fds,
        no_pivot: args.no_pivot,
        no_new_keyring: args.no_new_keyring,
        id: args.id.clone(),
    };
    let opts = super::create::options(&create)?;
    let created = rt
        .create(&args.id, &create.bundle, &opts)
        .with_context(|| format!("creating container {:?}", args.id))?;
    for w in &created.warnings {
        log.warn(w);
    }
    // Forward signals from now on (before start, so none is lost in between).
    if !args.detach {
        if let Err(e) = forward_signals(created.pid) {
            log.warn(&format!("{e:#}"));
        }
    }
    match rt.start(&args.id) {
        Ok(warnings) => {
            for w in &warnings {
                log.warn(w);
            }
        }
        Err(e) => {
            let _ = rt.delete(&args.id, true);
            return Err(e).with_context(|| format!("starting container {:?}", args.id));
        }
    }
    if args.detach {
        return Ok(0);
    }
    let code = wait_exit_code(created.pid);
    if !args.keep {
        let warnings = rt
            .delete(&args.id, true)
            .with_context(|| format!("deleting container {:?}", args.id))?;
        for w in &warnings {
            log.warn(w);
        }
    }
    Ok(code?)
}
