//! `cargo xtask demo`: tinyo's main job on a machine without internet access. It starts a
//! loopback registry holding a busybox image built from Debian's `busybox-static`, pulls it
//! with tinyo-pull (store and bundle under `target/demo/`), and runs the bundle with tinyo's
//! runtime. Everything it starts is stopped before it returns.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use tinyo_tests::catalogue;
use tinyo_tests::registry::Registry;

use crate::{cargo, root, step};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Command to run in the container.
    #[arg(default_values_t = ["sh".to_string(), "-c".to_string(), "echo hello from $(hostname), PID $$; ls /".to_string()])]
    command: Vec<String>,
}

pub fn run(args: Args) -> Result<()> {
    tinyo_tests::host::require_root();
    step(
        "build tinyo-pull and tinyo",
        cargo().args(["build", "--release", "-p", "tinyo-pull", "-p", "tinyo"]),
    )?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"));
    let tinyo_pull = target.join("release/tinyo-pull");
    let tinyo = target.join("release/tinyo");
    let demo = target.join("demo");
    let _ = std::fs::remove_dir_all(&demo);
    std::fs::create_dir_all(&demo).with_context(|| format!("creating {}", demo.display()))?;

    eprintln!("\n==> starting a loopback registry with a busybox image");
    let reg = Registry::plain();
    let cat = catalogue::build(&demo.join("layout"));
    let img = cat.get(catalogue::SINGLE);
    reg.push(&demo.join("layout"), &img.root, "demo/busybox", "latest");
    let image = format!("{}/demo/busybox:latest", reg.host());

    let bundle = demo.join("bundle");
    step(
        &format!("tinyo-pull {image}"),
        Command::new(&tinyo_pull)
            .arg("--root")
            .arg(demo.join("store"))
            .arg("--bundle")
            .arg(&bundle)
            .arg(&image)
            .env("CONTAINERS_REGISTRIES_CONF", "/dev/null"),
    )?;
    step(
        "tinyo-pull images",
        Command::new(&tinyo_pull)
            .arg("--root")
            .arg(demo.join("store"))
            .arg("images"),
    )?;

    let config_path = bundle.join("config.json");
    let mut config: serde_json::Value = serde_json::from_slice(&std::fs::read(&config_path)?)?;
    config["process"]["args"] = serde_json::json!(args.command);
    config["hostname"] = serde_json::json!("tinyo-demo");
    config["linux"]["cgroupsPath"] = serde_json::json!("tinyo-demo");
    std::fs::write(&config_path, serde_json::to_vec_pretty(&config)?)?;
    let state = demo.join("tinyo");
    eprintln!("\n==> tinyo run {}", bundle.display());
    let status = Command::new("unshare")
        .args(["--mount", "--propagation", "private"])
        .arg(&tinyo)
        .arg("--root")
        .arg(&state)
        .args(["run", "--bundle"])
        .arg(&bundle)
        .arg("tinyo-demo")
        .stdin(Stdio::inherit())
        .status()
        .context("running tinyo")?;
    let _ = Command::new(&tinyo)
        .arg("--root")
        .arg(&state)
        .args(["delete", "--force", "tinyo-demo"])
        .output();
    if !status.success() {
        bail!("the container exited with {status}");
    }
    eprintln!(
        "\n==> done: store in {}, bundle in {}",
        demo.join("store").display(),
        bundle.display()
    );
    Ok(())
}
