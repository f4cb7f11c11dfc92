//! Developer tasks for tinyo: `cargo xtask <task>`.
//!
//! - `test`: the whole suite (fmt, clippy, no-default-features build, unit and end-to-end
//!   tests, and the static release build). This is what CI runs.
//! - `dist`: the static musl release in `dist/`.
//! - `bench`: benchmarks that compare tinyo with its peers in one interleaved run.
//! - `demo`: tinyo's main job without internet: pull from a loopback registry, then run.

mod bench;
mod demo;
mod dist;
mod test;

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "cargo xtask", about = "tinyo developer tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Run the whole test suite, as CI does (needs root for the end-to-end tests).
    Test(test::Args),
    /// Build the static release: dist/bin/*, dist/SHA256SUMS and the tarball.
    Dist(dist::Args),
    /// Run benchmarks against the peers and print min / median / p95 and ratios.
    Bench(bench::Args),
    /// Pull a busybox image from a loopback registry and run it (no internet needed).
    Demo(demo::Args),
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.task {
        Task::Test(a) => test::run(a),
        Task::Dist(a) => dist::run(a).map(|_| ()),
        Task::Bench(a) => bench::run(a),
        Task::Demo(a) => demo::run(a),
    };
    if let Err(e) = result {
        eprintln!("xtask: error: {e:#}");
        std::process::exit(1);
    }
}

/// The workspace's top directory.
pub fn root() -> PathBuf {
    tinyo_tests::workspace_root()
}

/// `cargo`, as the one that runs us.
pub fn cargo() -> Command {
    let mut c = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    c.current_dir(root());
    c
}

/// Runs `cmd`, echoing it first, failing with its exit status.
pub fn step(what: &str, cmd: &mut Command) -> Result<()> {
    eprintln!("\n==> {what}: {cmd:?}");
    let status = cmd.status().with_context(|| format!("starting {cmd:?}"))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}
