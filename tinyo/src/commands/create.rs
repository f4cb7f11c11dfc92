//! `tinyo create`: set up a container whose process waits for `start`.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use tinyo_core::container::{CreateOptions, Runtime};

use crate::log::Logger;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Bundle directory (holding config.json).
    #[arg(short, long, default_value = ".")]
    pub bundle: PathBuf,
    /// Write the container process's pid (as seen from here) to this file.
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    /// Unix socket to send a pty master to (not supported yet: refused).
    #[arg(long)]
    pub console_socket: Option<PathBuf>,
    /// Pass this many extra file descriptors (after stdio) to the container (only 0 for now).
    #[arg(long, default_value_t = 0)]
    pub preserve_fds: u32,
    /// Enter the root with chroot instead of pivot_root (for ramfs roots).
    #[arg(long)]
    pub no_pivot: bool,
    /// Accepted for runc compatibility (tinyo never creates a session keyring).
    #[arg(long)]
    pub no_new_keyring: bool,
    /// Container id.
    pub id: String,
}

/// Checks the flags tinyo does not support yet and builds the core's options.
pub fn options(args: &Args) -> Result<CreateOptions> {
    if let Some(s) = &args.console_socket {
        bail!(
            "--console-socket {}: terminals are not supported yet (run without -t)",
            s.display()
        );
    }
    if args.preserve_fds != 0 {
        bail!(
            "--preserve-fds {}: passing extra descriptors is not supported yet",
            args.preserve_fds
        );
    }
    // The pid file is written relative to where tinyo was started, as runc does.
    let pid_file = match &args.pid_file {
        Some(p) if p.is_relative() => Some(std::env::current_dir()?.join(p)),
        other => other.clone(),
    };
    Ok(CreateOptions {
        no_pivot: args.no_pivot,
        pid_file,
    })
}

pub fn run(rt: &Runtime, log: &Logger, args: Args) -> Result<i32> {
    let opts = options(&args)?;
    let created = rt
        .create(&args.id, &args.bundle, &opts)
        .with_context(|| format!("creating container {:?}", args.id))?;
    for w in &created.warnings {
        log.warn(w);
    }
    log.debug(&format!(
        "container {:?} created, pid {}",
        args.id, created.pid
    ));
    Ok(0)
}
