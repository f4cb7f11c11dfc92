//! `cargo xtask test`: everything CI checks, in the order that fails fastest.

use anyhow::{bail, Result};

use crate::{cargo, step};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Skip the static release build and its checks (quicker local runs; CI never skips).
    #[arg(long)]
    no_dist: bool,
    /// Extra arguments for `cargo test` (for example a test name filter).
    #[arg(last = true)]
    test_args: Vec<String>,
}

/// The end-to-end suites that drive the binaries: run a second time against `dist/bin`, so
/// what ships is what was tested (podman and containerd drive the static tinyo).
const RELEASE_TESTS: [&str; 8] = [
    "cli",
    "init",
    "pull",
    "runtime",
    "confinement",
    "shim",
    "podman",
    "containerd",
];

pub fn run(args: Args) -> Result<()> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the end-to-end tests create namespaces, mounts and cgroups: run `cargo xtask test` as root");
    }
    step("format", cargo().args(["fmt", "--all", "--check"]))?;
    step(
        "clippy",
        cargo().args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]),
    )?;
    step(
        "build without default features",
        cargo().args([
            "check",
            "--workspace",
            "--all-targets",
            "--no-default-features",
        ]),
    )?;
    step(
        "build the binaries",
        cargo().args(["build", "--workspace", "--bins"]),
    )?;
    step(
        "unit and end-to-end tests",
        cargo()
            .args(["test", "--workspace"])
            .arg("--")
            .args(&args.test_args),
    )?;
    if !args.no_dist {
        let out = crate::dist::run(crate::dist::Args::default())?;
        // The release binaries must pass the same end-to-end tests as the debug ones.
        step(
            "end-to-end tests against the static release binaries",
            cargo()
                .args(["test", "--workspace"])
                .args(RELEASE_TESTS.iter().flat_map(|t| ["--test", t]))
                .env("TINYO_BIN_DIR", out.join("bin")),
        )?;
    }
    eprintln!("\nxtask test: all steps passed");
    Ok(())
}
