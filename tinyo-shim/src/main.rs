//! `tinyo-shim`: the everyday container CLI (`run`, `ps`, `logs`, `exec`, `stop`, `kill`, `rm`,
//! `inspect`, `images`, `rmi`) and the per-container supervisor behind it.
//!
//! Images come from tinyo-pull's store (pulled on demand); each container gets an overlay root
//! over the image (mounted inside its own mount namespace), tinyo-init as PID 1, Docker's
//! default capabilities, a default seccomp profile, and a supervisor that owns its stdio, log
//! and exit status (see [`supervise`]).

mod commands;
mod health;
mod image;
mod kube;
mod logs;
mod net;
mod network;
mod pod;
mod restart;
mod spec;
mod state;
mod supervise;
mod term;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "tinyo-shim",
    version,
    about = "Run containers from images: a small supervisor per container, and the CLI to drive them"
)]
struct Cli {
    /// Put everything (image store, container state, logs) under DIR
    /// [default: images in /var/lib/tinyo, state in /run/tinyo/shim].
    #[arg(long, global = true, env = "TINYO_ROOT")]
    root: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a command in a new container from an image (pulled when missing).
    Run(Box<commands::run::Args>),
    /// List containers (running ones; -a for all).
    Ps(commands::ps::Args),
    /// Print a container's output (from its log).
    Logs(commands::logs::Args),
    /// Run another command in a running container.
    Exec(commands::exec::Args),
    /// Start exited containers again, detached (their restart policy and checks apply).
    Start(commands::start::StartArgs),
    /// Stop a container: SIGTERM, then SIGKILL after a grace period.
    Stop(commands::stop::StopArgs),
    /// Send a signal to a container's main process.
    Kill(commands::stop::KillArgs),
    /// Remove containers (-f also stops running ones).
    Rm(commands::stop::RmArgs),
    /// Print what is known of a container, as JSON.
    Inspect(commands::ps::InspectArgs),
    /// List the images in the store.
    Images(commands::images::ImagesArgs),
    /// Remove images from the store.
    Rmi(commands::images::RmiArgs),
    /// Pods: containers sharing network, IPC and UTS namespaces.
    #[command(subcommand)]
    Pod(commands::pod::PodCommand),
    /// Run Kubernetes YAML: `play kube FILE` (and `--down`).
    #[command(subcommand)]
    Play(commands::play::PlayCommand),
    /// (internal) The supervisor of one container, started by `run`.
    #[command(hide = true)]
    Supervise(commands::run::SuperviseArgs),
}

fn main() {
    let cli = Cli::parse();
    let roots = state::Roots::new(cli.root);
    let result = match cli.command {
        Command::Run(a) => commands::run::run(&roots, *a),
        Command::Ps(a) => commands::ps::run(&roots, a),
        Command::Logs(a) => commands::logs::run(&roots, a),
        Command::Exec(a) => commands::exec::run(&roots, a),
        Command::Start(a) => commands::start::run(&roots, a),
        Command::Stop(a) => commands::stop::stop(&roots, a),
        Command::Kill(a) => commands::stop::kill(&roots, a),
        Command::Rm(a) => commands::stop::rm(&roots, a),
        Command::Inspect(a) => commands::ps::inspect(&roots, a),
        Command::Images(a) => commands::images::images(&roots, a),
        Command::Rmi(a) => commands::images::rmi(&roots, a),
        Command::Pod(c) => commands::pod::run(&roots, c),
        Command::Play(c) => commands::play::run(&roots, c),
        Command::Supervise(a) => Ok(commands::run::supervise(a)),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            let msg = format!("{e:#}");
            eprintln!("tinyo-shim: {msg}");
            std::process::exit(exit_code(&msg));
        }
    }
}

/// docker's exit codes for a failed `run`: 127 when the command does not exist, 126 when it
/// cannot be executed, 125 for any other error (the runtime's words, as runc's, tell which).
fn exit_code(msg: &str) -> i32 {
    let Some(at) = msg.find("exec: \"").or_else(|| msg.find("exec /")) else {
        return 125;
    };
    let tail = &msg[at..];
    if tail.contains("executable file not found in $PATH")
        || tail.contains("no such file or directory")
    {
        127
    } else if tail.contains("permission denied") {
        126
    } else {
        125
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn exec_failures_get_dockers_exit_codes() {
        let c = super::exit_code;
        assert_eq!(
            c(r#"creating: exec: "nosuch": executable file not found in $PATH"#),
            127
        );
        assert_eq!(c(r#"exec: "/x": stat /x: no such file or directory"#), 127);
        assert_eq!(c(r#"exec: "/etc": permission denied"#), 126);
        assert_eq!(c("exec /bin/x: permission denied"), 126);
        assert_eq!(c("pulling alpine: no such file or directory"), 125);
    }
}
