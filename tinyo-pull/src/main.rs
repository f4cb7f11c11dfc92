//! `tinyo-pull`: the image puller's command line.
//!
//! Pulling is not implemented yet; the binary offers nothing it cannot do.

use clap::Parser;

#[derive(Debug, Parser)]
#[command(
    name = "tinyo-pull",
    version,
    about = "Pull OCI/Docker images into a verified store (early: pulling is not implemented yet)"
)]
struct Cli {}

fn main() {
    let _cli = Cli::parse();
    eprintln!("tinyo-pull: pulling is not implemented yet; see --help");
    std::process::exit(2);
}
