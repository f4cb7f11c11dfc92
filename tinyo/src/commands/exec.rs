//! `tinyo exec`: run another process in a running container (`--process FILE` or args).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use tinyo_core::container::{forward_signals, wait_exit_code, ExecOptions, Runtime};

use crate::log::Logger;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A runtime-spec process JSON file (overrides the args and the other process flags).
    #[arg(short, long)]
    pub process: Option<PathBuf>,
    /// Do not wait for the process.
    #[arg(short, long)]
    pub detach: bool,
    /// Allocate a terminal (not supported yet: refused).
    #[arg(short, long)]
    pub tty: bool,
    /// Unix socket for the pty master (not supported yet: refused).
    #[arg(long)]
    pub console_socket: Option<PathBuf>,
    /// Working directory inside the container.
    #[arg(long)]
    pub cwd: Option<PathBuf>,
    /// Extra environment variables (NAME=value), repeatable.
    #[arg(short, long)]
    pub env: Vec<String>,
    /// uid[:gid] to run as.
    #[arg(short, long)]
    pub user: Option<String>,
    /// Write the process's pid to this file.
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    /// Extra descriptors to pass (only 0 for now).
    #[arg(long, default_value_t = 0)]
    pub preserve_fds: u32,
    /// Container id.
    pub id: String,
    /// The command and its arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

fn process(
    rt_bundle: Option<oci_spec::runtime::Process>,
    args: &Args,
) -> Result<oci_spec::runtime::Process> {
    if let Some(path) = &args.process {
        let text = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        return serde_json::from_slice(&text)
            .with_context(|| format!("{} is not a runtime-spec process", path.display()));
    }
    if args.command.is_empty() {
        bail!("exec needs a command (or --process FILE)");
    }
    let mut p = rt_bundle.unwrap_or_default();
    p.set_args(Some(args.command.clone()));
    p.set_terminal(Some(false));
    if let Some(cwd) = &args.cwd {
        p.set_cwd(cwd.clone());
    }
    let mut env = p.env().clone().unwrap_or_default();
    env.extend(args.env.iter().cloned());
    p.set_env(Some(env));
    if let Some(u) = &args.user {
        let (uid, gid) = u.split_once(':').unwrap_or((u, "0"));
        let mut user = p.user().clone();
        user.set_uid(
            uid.parse()
                .with_context(|| format!("--user {u}: uid must be a number"))?,
        );
        user.set_gid(
            gid.parse()
                .with_context(|| format!("--user {u}: gid must be a number"))?,
        );
        user.set_additional_gids(None);
        p.set_user(user);
    }
    Ok(p)
}

pub fn run(rt: &Runtime, log: &Logger, args: Args) -> Result<i32> {
    if args.tty || args.console_socket.is_some() {
        bail!("exec: terminals (-t, --console-socket) are not supported yet");
    }
    if args.preserve_fds != 0 {
        bail!(
            "--preserve-fds {}: passing extra descriptors is not supported yet",
            args.preserve_fds
        );
    }
    let state = rt.state(&args.id)?;
    let bundle = tinyo_core::bundle::Bundle::load(&state.bundle)?;
    let p = process(bundle.spec().process().clone(), &args)?;
    let pid_file = match &args.pid_file {
        Some(p) if p.is_relative() => Some(std::env::current_dir()?.join(p)),
        other => other.clone(),
    };
    let pid = rt
        .exec(&args.id, p, &ExecOptions { pid_file })
        .with_context(|| format!("exec in container {:?}", args.id))?;
    if args.detach {
        return Ok(0);
    }
    if let Err(e) = forward_signals(pid) {
        log.warn(&format!("{e:#}"));
    }
    Ok(wait_exit_code(pid)?)
}
