//! `tinyo`: a runc-compatible runtime CLI. Each subcommand lives in its own file under
//! `commands/` and only translates flags into tinyo-core calls.
//!
//! Implemented so far: `spec`. The container lifecycle commands (`create`, `start`, `state`,
//! `kill`, `delete`, `run`, `exec`, …) are not implemented yet and are therefore not offered.

mod commands;

use clap::{Parser, Subcommand};

const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    "\nspec: ",
    "1.2.0",
    "\nnote: only `spec` is implemented; the container lifecycle is not yet"
);

#[derive(Debug, Parser)]
#[command(
    name = "tinyo",
    version = VERSION,
    about = "A runc-compatible OCI container runtime (early: only `spec` works so far)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write a default runtime-spec config.json into a bundle directory.
    Spec(commands::spec::Args),
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Spec(args) => commands::spec::run(args),
    };
    if let Err(err) = result {
        eprintln!("tinyo: {err:#}");
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn version_names_the_spec_version_the_core_reads() {
        assert!(super::VERSION.contains(tinyo_core::OCI_SPEC_VERSION));
    }
}
