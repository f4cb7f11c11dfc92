//! `cargo xtask test`: everything CI checks, in the order that fails fastest.
//!
//! First it makes sure the host has what the tests use: the Debian packages in [`NEEDS`]
//! (what `.ci/run` installs; installed with apt-get when missing) and cargo's fmt and clippy
//! (added with rustup when missing).

use std::process::Stdio;

use anyhow::{bail, Result};

use crate::tools::{need, Need};
use crate::{cargo, step};

const PEERS: &str = "peers and fixture sources of the end-to-end tests";

/// What the end-to-end tests run from the host, one binary per Debian package (as `.ci/run`
/// installs them).
pub const NEEDS: &[Need] = &[
    need("busybox", "busybox-static", PEERS),
    need("docker-registry", "docker-registry", PEERS),
    need("skopeo", "skopeo", PEERS),
    need("umoci", "umoci", PEERS),
    need("runc", "runc", PEERS),
    need("crun", "crun", PEERS),
    need("htpasswd", "apache2-utils", PEERS),
    need("openssl", "openssl", PEERS),
    need("unshare", "util-linux", PEERS),
    need("nsenter", "util-linux", PEERS),
    need("setpriv", "util-linux", PEERS),
    need("script", "util-linux", PEERS),
    need("newuidmap", "uidmap", PEERS),
    need("ps", "procps", PEERS),
    need("ip", "iproute2", PEERS),
    need("iptables", "iptables", PEERS),
    need("nft", "nftables", PEERS),
    need("/usr/lib/cni/bridge", "containernetworking-plugins", PEERS),
    need("tini", "tini", PEERS),
    need("catatonit", "catatonit", PEERS),
    need("dumb-init", "dumb-init", PEERS),
    need("podman", "podman", PEERS),
    need("conmon", "conmon", PEERS),
    need("containerd", "containerd", PEERS),
    need("ctr", "containerd", PEERS),
    need("containerd-shim-runc-v2", "containerd", PEERS),
    need("dpkg-deb", "dpkg", PEERS),
];

/// The C compiler for C dependencies of the static release.
const MUSL_GCC: Need = need(
    "musl-gcc",
    "musl-tools",
    "C dependencies of the static release",
);

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
const RELEASE_TESTS: [&str; 10] = [
    "cli",
    "init",
    "pull",
    "runtime",
    "confinement",
    "conformance",
    "shim",
    "podman",
    "containerd",
    "containerd_shim",
];

pub fn run(args: Args) -> Result<()> {
    crate::tools::require_root(
        "test",
        "the end-to-end tests create namespaces, mounts and cgroups",
    )?;
    let mut needs = NEEDS.to_vec();
    if !args.no_dist {
        needs.push(MUSL_GCC);
    }
    crate::tools::ensure("test", &needs)?;
    ensure_cargo_component("fmt", "rustfmt")?;
    ensure_cargo_component("clippy", "clippy")?;
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

/// Makes sure `cargo SUB` works, adding rustup component `component` when it does not.
fn ensure_cargo_component(sub: &str, component: &str) -> Result<()> {
    let works = || {
        cargo()
            .args([sub, "--version"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if works() {
        return Ok(());
    }
    eprintln!("xtask test: adding {component} (for `cargo {sub}`) with `rustup component add {component}`");
    let added = std::process::Command::new("rustup")
        .args(["component", "add", component])
        .status()
        .is_ok_and(|s| s.success());
    if !added {
        bail!("needs `cargo {sub}`, and adding it failed: run `rustup component add {component}`");
    }
    if !works() {
        bail!("`cargo {sub} --version` still fails after `rustup component add {component}`");
    }
    Ok(())
}
