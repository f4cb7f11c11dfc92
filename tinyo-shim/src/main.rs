//! `tinyo-shim`: the per-container supervisor and the everyday CLI (`run`, `ps`, `logs`, …).
//!
//! Nothing of the supervisor exists yet. The binary is built and shipped so the release layout
//! is final, but it offers no subcommand until one works.

use clap::Parser;

#[derive(Debug, Parser)]
#[command(
    name = "tinyo-shim",
    version,
    about = "Container supervisor and CLI (early: running containers is not implemented yet)"
)]
struct Cli {}

fn main() {
    let _cli = Cli::parse();
    eprintln!("tinyo-shim: no subcommand is implemented yet; see --help");
    std::process::exit(2);
}
