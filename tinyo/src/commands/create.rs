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
    /// Unix socket to send the pty master to (needed when process.terminal is true).
    #[arg(long)]
    pub console_socket: Option<PathBuf>,
    /// Pass this many extra file descriptors (3, 4, …) to the container process.
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
    check_preserved(args.preserve_fds)?;
    // The pid file is written relative to where tinyo was started, as runc does.
    let pid_file = match &args.pid_file {
        Some(p) if p.is_relative() => Some(std::env::current_dir()?.join(p)),
        other => other.clone(),
    };
    Ok(CreateOptions {
        no_pivot: args.no_pivot,
        pid_file,
        console_socket: absolute(args.console_socket.as_ref())?,
        preserve_fds: args.preserve_fds,
        overlay: None,
    })
}

/// `--preserve-fds N`: descriptors 3..3+N must be open here.
pub fn check_preserved(n: u32) -> Result<()> {
    for fd in 3..3u32.saturating_add(n) {
        if !tinyo_core::sys::fd_is_open(fd as i32) {
            bail!("--preserve-fds {n}: descriptor {fd} is not open");
        }
    }
    Ok(())
}

/// A path made absolute against where tinyo was started.
pub fn absolute(p: Option<&PathBuf>) -> Result<Option<PathBuf>> {
    Ok(match p {
        Some(p) if p.is_relative() => Some(std::env::current_dir()?.join(p)),
        other => other.cloned(),
    })
}

pub fn run(rt: &Runtime, log: &Logger, args: Args) -> Result<i32> {
    let opts = options(&args)?;
    let created = rt
        .create(&args.id, &args.bundle, &opts)
        .with_context(|| format!("creating container {:?}", args.id))?;
    for n in &created.notes {
        log.debug(n);
    }
    for w in &created.warnings {
        log.warn(w);
    }
    log.debug(&format!(
        "container {:?} created, pid {}",
        args.id, created.pid
    ));
    Ok(0)
}
