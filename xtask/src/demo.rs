//! `cargo xtask demo`: tinyo's main job on a machine without internet access — what
//! `tinyo-pull alpine && tinyo-shim run alpine echo hello` does on a connected one. It builds
//! the binaries, starts a loopback registry holding a busybox image (built from Debian's
//! `busybox-static`) as `docker.io/library/busybox`'s mirror, pulls `busybox` through that
//! mirror with tinyo-pull, runs a container that prints a greeting with tinyo-shim, then
//! removes the container and stops the registry. Everything lives under `target/demo/`.
//!
//! It runs as root and needs nothing installed by hand: the two tools it uses from Debian
//! ([`NEEDS`]) are installed with apt-get when missing.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use tinyo_tests::catalogue;
use tinyo_tests::registry::Registry;

use crate::tools::{need, Need};
use crate::{cargo, root, step};

/// Everything the demo runs that is not built from this workspace (the fixtures it calls
/// start docker-registry and copy busybox; the plain registry needs neither openssl nor
/// htpasswd, and `--network none` needs no CNI plugins).
pub const NEEDS: [Need; 2] = [
    need(
        "docker-registry",
        "docker-registry",
        "a loopback registry to pull from",
    ),
    need(
        "busybox",
        "busybox-static",
        "a static busybox for the image's root filesystem",
    ),
];

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Command to run in the container.
    #[arg(default_values_t = ["sh".to_string(), "-c".to_string(), "echo hello from $(hostname), PID $$ under $(cat /proc/1/comm); ls /".to_string()])]
    command: Vec<String>,
}

pub fn run(args: Args) -> Result<()> {
    crate::tools::require_root("demo", "it mounts, makes namespaces and runs a container")?;
    crate::tools::ensure("demo", &NEEDS)?;
    require_static_busybox()?;
    step(
        "build tinyo-pull and tinyo-shim",
        cargo().args(["build", "--release", "-p", "tinyo-pull", "-p", "tinyo-shim"]),
    )?;
    // tinyo-init runs inside the container, whose root has no C library: static (musl).
    if !crate::dist::ensure_musl() {
        bail!("needs the x86_64-unknown-linux-musl Rust target for a static tinyo-init, and adding it failed: run `rustup target add x86_64-unknown-linux-musl`");
    }
    step(
        "build a static tinyo-init",
        cargo().args([
            "build",
            "--release",
            "--target",
            "x86_64-unknown-linux-musl",
            "-p",
            "tinyo-init",
        ]),
    )?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"));
    let tinyo_pull = target.join("release/tinyo-pull");
    let tinyo_shim = target.join("release/tinyo-shim");
    let init = target.join("x86_64-unknown-linux-musl/release/tinyo-init");
    let demo = target.join("demo");
    let _ = std::fs::remove_dir_all(&demo);
    std::fs::create_dir_all(&demo).with_context(|| format!("creating {}", demo.display()))?;

    eprintln!("\n==> starting a loopback registry with a busybox image");
    let reg = Registry::plain();
    let cat = catalogue::build(&demo.join("layout"));
    let img = cat.get(catalogue::SINGLE);
    reg.push(&demo.join("layout"), &img.root, "library/busybox", "latest");
    let conf = demo.join("registries.conf");
    std::fs::write(
        &conf,
        format!(
            "[[registry]]\nprefix = \"docker.io\"\nlocation = \"registry-1.docker.io\"\n\n\
             [[registry.mirror]]\nlocation = \"{}\"\ninsecure = true\n",
            reg.host()
        ),
    )?;
    eprintln!(
        "    {} mirrors docker.io (see {})",
        reg.host(),
        conf.display()
    );
    let store = demo.join("root");
    let env = |c: &mut Command| {
        c.env("CONTAINERS_REGISTRIES_CONF", &conf)
            .env("TINYO_ROOT", &store)
            .env("TINYO_INIT", &init);
    };

    let mut pull = Command::new(&tinyo_pull);
    pull.arg("busybox");
    env(&mut pull);
    step("tinyo-pull busybox", &mut pull)?;

    eprintln!(
        "\n==> tinyo-shim run --rm busybox {}",
        args.command.join(" ")
    );
    let mut run = Command::new(&tinyo_shim);
    run.args([
        "run",
        "--rm",
        "--network",
        "none",
        "--name",
        "demo",
        "busybox",
    ])
    .args(&args.command)
    .stdin(Stdio::inherit());
    env(&mut run);
    let status = run.status().context("running tinyo-shim")?;
    let mut rm = Command::new(&tinyo_shim);
    rm.args(["rm", "-f", "demo"]);
    env(&mut rm);
    let _ = rm.output();
    if !status.success() {
        bail!("the container exited with {status}");
    }
    let mut images = Command::new(&tinyo_shim);
    images.arg("images");
    env(&mut images);
    step("tinyo-shim images", &mut images)?;
    eprintln!("\n==> done: store and state in {}", store.display());
    Ok(())
}

/// The container has no C library: its busybox must be static. Debian's `busybox` package
/// (dynamic) and `busybox-static` conflict, so a dynamic one is reported, not replaced.
fn require_static_busybox() -> Result<()> {
    let Some(path) = tinyo_tests::host::which("busybox") else {
        bail!("busybox is not installed: apt-get install busybox-static");
    };
    let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    let linking = tinyo_core::elf::linking(&bytes)
        .with_context(|| format!("reading ELF headers of {}", path.display()))?;
    if !linking.is_static() {
        bail!(
            "{} is dynamically linked (Debian's busybox package), but the demo's container has no C library: \
             replace it with the static one: apt-get install busybox-static",
            path.display()
        );
    }
    Ok(())
}
