//! Developer tasks for tinyo: `cargo xtask <task>`.
//!
//! - `test`: the whole suite (fmt, clippy, no-default-features build, unit and end-to-end
//!   tests, and the static release build). This is what CI runs.
//! - `dist`: the static musl release in `dist/`.
//! - `bench`: benchmarks that compare tinyo with its peers in one interleaved run.
//! - `demo`: tinyo's main job without internet: pull from a loopback registry, then run.
//!
//! A failure is one line on stderr, `xtask TASK: what went wrong: its cause: …`, and exit
//! status 1 — for errors and for panics in the fixtures xtask drives alike (a backtrace only
//! when `RUST_BACKTRACE` asks for one). Missing tools are installed or named ([`tools`]).

mod bench;
mod demo;
mod dist;
mod test;
mod tools;

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

impl Task {
    /// The name errors are reported under: `xtask demo: …`.
    fn name(&self) -> &'static str {
        match self {
            Task::Test(_) => "test",
            Task::Dist(_) => "dist",
            Task::Bench(_) => "bench",
            Task::Demo(_) => "demo",
        }
    }
}

fn main() {
    let cli = Cli::parse();
    let name = cli.task.name();
    install_panic_hook(name);
    // A panic (in a fixture, say) unwinds to here, so whatever it started is dropped and torn
    // down; the hook has already printed it.
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match cli.task {
        Task::Test(a) => test::run(a),
        Task::Dist(a) => dist::run(a).map(|_| ()),
        Task::Bench(a) => bench::run(a),
        Task::Demo(a) => demo::run(a),
    }));
    match result {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            eprintln!("{}", error_line(name, &e));
            std::process::exit(1);
        }
        Err(_) => std::process::exit(1),
    }
}

/// `xtask TASK: what went wrong: its cause: …`, on one line.
fn error_line(task: &str, e: &anyhow::Error) -> String {
    format!("xtask {task}: {e:#}")
}

/// Panics print as `xtask TASK: MESSAGE`, without the "thread 'main' panicked at" preamble or
/// a backtrace; with `RUST_BACKTRACE` set, as Rust prints them.
fn install_panic_hook(task: &'static str) {
    if std::env::var_os("RUST_BACKTRACE").is_some_and(|v| v != "0") {
        return;
    }
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let msg = payload
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("panicked");
        eprintln!("xtask {task}: {msg}");
    }));
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

#[cfg(test)]
mod tests {
    #[test]
    fn an_error_and_its_causes_are_one_line() {
        let e = anyhow::anyhow!("docker-registry is missing").context("starting the registry");
        assert_eq!(
            super::error_line("demo", &e),
            "xtask demo: starting the registry: docker-registry is missing"
        );
    }
}
