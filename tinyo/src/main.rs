//! `tinyo`: a runc-compatible runtime CLI. Each subcommand lives in its own file under
//! `commands/` and only translates flags into tinyo-core calls.
//!
//! Implemented: `spec`, `create`, `start`, `state`, `kill`, `delete`, `run`, `list`, `ps`,
//! `features`, `exec`, `pause`, `resume`, `update`, `events`. Terminals need `--console-socket`: tinyo
//! never relays a pty itself, so a foreground `run`/`exec` with a terminal and no console
//! socket is refused with a one-line error.

mod commands;
mod log;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "\nspec: ", "1.2.0");

#[derive(Debug, Parser)]
#[command(
    name = "tinyo",
    version = VERSION,
    about = "A runc-compatible OCI container runtime"
)]
struct Cli {
    /// Directory for container state [default: /run/tinyo; for an ordinary user
    /// $XDG_RUNTIME_DIR/tinyo, else /tmp/tinyo-UID].
    #[arg(long, global = true)]
    root: Option<PathBuf>,
    /// Also write errors to this file (appended).
    #[arg(long, global = true)]
    log: Option<PathBuf>,
    /// Format of --log lines: text or json (`{"level","msg","time"}`, as conmon and containerd
    /// parse).
    #[arg(long, global = true, default_value = "text")]
    log_format: log::Format,
    /// Log warnings and debug notes too.
    #[arg(long, global = true)]
    debug: bool,
    /// Use systemd for cgroups (not supported: refused).
    #[arg(long, global = true)]
    systemd_cgroup: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write a default runtime-spec config.json into a bundle directory.
    Spec(commands::spec::Args),
    /// Create a container; its process waits for `start`.
    Create(commands::create::Args),
    /// Run the process of a created container.
    Start(commands::start::Args),
    /// Print the runtime-spec state of a container as JSON.
    State(commands::state::Args),
    /// Send a signal to a container's process.
    Kill(commands::kill::Args),
    /// Delete a container and everything its creation made.
    Delete(commands::delete::Args),
    /// Create and start a container; in the foreground, exit with its exit code.
    Run(commands::run::Args),
    /// List containers.
    List(commands::list::Args),
    /// Run another process in a running container.
    Exec(commands::exec::Args),
    /// List the processes of a container.
    Ps(commands::ps::Args),
    /// Print what this runtime implements (runtime-spec features JSON).
    Features(commands::features::Args),
    /// Freeze every process of a container.
    Pause(commands::pause::Args),
    /// Thaw a paused container.
    Resume(commands::pause::Args),
    /// Change a container's cgroup limits.
    Update(commands::update::Args),
    /// Stream a container's events (OOM kills, stats) as JSON lines.
    Events(commands::events::Args),
}

fn main() {
    let cli = Cli::parse();
    let logger = log::Logger::new(cli.log.clone(), cli.log_format, cli.debug);
    let result = if cli.systemd_cgroup {
        Err(anyhow::anyhow!(
            "--systemd-cgroup is not supported: tinyo manages cgroups through cgroupfs only"
        ))
    } else {
        let root = cli.root.clone().unwrap_or_else(default_root);
        let rt = tinyo_core::container::Runtime::new(root);
        match cli.command {
            Command::Spec(args) => commands::spec::run(args).map(|()| 0),
            Command::Create(args) => commands::create::run(&rt, &logger, args),
            Command::Start(args) => commands::start::run(&rt, &logger, args),
            Command::State(args) => commands::state::run(&rt, args),
            Command::Kill(args) => commands::kill::run(&rt, args),
            Command::Delete(args) => commands::delete::run(&rt, &logger, args),
            Command::Run(args) => commands::run::run(&rt, &logger, args),
            Command::List(args) => commands::list::run(&rt, args),
            Command::Exec(args) => commands::exec::run(&rt, &logger, args),
            Command::Ps(args) => commands::ps::run(&rt, args),
            Command::Features(args) => commands::features::run(args),
            Command::Pause(args) => commands::pause::pause(&rt, args),
            Command::Resume(args) => commands::pause::resume(&rt, args),
            Command::Update(args) => commands::update::run(&rt, &logger, args),
            Command::Events(args) => commands::events::run(&rt, args),
        }
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(err) => {
            logger.error(&format!("{err:#}"));
            std::process::exit(1);
        }
    }
}

/// The state directory when `--root` is not given: runc's choice, for root and for an
/// ordinary user (who cannot write /run).
fn default_root() -> PathBuf {
    let uid = tinyo_core::sys::geteuid();
    if uid == 0 {
        return PathBuf::from("/run/tinyo");
    }
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir).join("tinyo"),
        _ => PathBuf::from(format!("/tmp/tinyo-{uid}")),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn version_names_the_spec_version_the_core_reads() {
        assert!(super::VERSION.contains(tinyo_core::OCI_SPEC_VERSION));
    }
}
