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
    /// Allocate a terminal (its master goes to --console-socket).
    #[arg(short, long)]
    pub tty: bool,
    /// Unix socket to send the pty master to (needed with a terminal).
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
    /// Pass this many extra file descriptors (3, 4, …) to the process.
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
    p.set_terminal(Some(args.tty));
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
    super::create::check_preserved(args.preserve_fds)?;
    let state = rt.state(&args.id)?;
    let bundle = tinyo_core::bundle::Bundle::load(&state.bundle)?;
    let p = process(bundle.spec().process().clone(), &args)?;
    let pid_file = match &args.pid_file {
        Some(p) if p.is_relative() => Some(std::env::current_dir()?.join(p)),
        other => other.clone(),
    };
    let pid = rt
        .exec(
            &args.id,
            p,
            &ExecOptions {
                pid_file,
                console_socket: super::create::absolute(args.console_socket.as_ref())?,
                preserve_fds: args.preserve_fds,
            },
        )
        .with_context(|| format!("exec in container {:?}", args.id))?;
    if args.detach {
        return Ok(0);
    }
    if let Err(e) = forward_signals(pid) {
        log.warn(&format!("{e:#}"));
    }
    Ok(wait_exit_code(pid)?)
}
