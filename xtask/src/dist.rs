//! `cargo xtask dist`: the static release.
//!
//! Builds the four binaries for x86_64-unknown-linux-musl with the `dist` profile (LTO, one
//! codegen unit, abort on panic, stripped, not position-independent; opt-level "z" for tinyo-init and tinyo-shim), checks
//! each is static, and writes `dist/bin/*`, the tarball and `dist/SHA256SUMS`. Without the musl
//! target (and no way to add it) it falls back to a glibc `+crt-static` build and says so.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::{cargo, root, step};

pub const BINARIES: [&str; 5] = [
    "tinyo",
    "tinyo-shim",
    "tinyo-pull",
    "tinyo-init",
    "containerd-shim-tinyo-v2",
];
const MUSL: &str = "x86_64-unknown-linux-musl";
const GNU: &str = "x86_64-unknown-linux-gnu";

#[derive(Debug, Default, clap::Args)]
pub struct Args {
    /// Output directory (default: dist/ in the workspace).
    #[arg(long)]
    out: Option<PathBuf>,
}

/// Static, and not position-independent: a static PIE relocates ~230 KiB of tables at every
/// start, which become private memory in each resident process (every tinyo-shim supervisor);
/// a fixed-address executable maps them clean from the file. The price is no ASLR for these
/// binaries' own code.
pub const RELEASE_RUSTFLAGS: &str = "-C relocation-model=static";

/// Sets `flags` for the crates of `target` only (build scripts and proc macros run on the
/// host as usual). Every release-profile build (dist, benchmarks) must use the same flags, or
/// cargo rebuilds everything each time the flags change.
pub fn set_rustflags(cmd: &mut Command, target: &str, flags: &str) {
    let var = format!(
        "CARGO_TARGET_{}_RUSTFLAGS",
        target.to_uppercase().replace('-', "_")
    );
    cmd.env(var, flags);
}

/// Builds the release and returns the output directory.
pub fn run(args: Args) -> Result<PathBuf> {
    let out = args.out.unwrap_or_else(|| root().join("dist"));
    let (target, rustflags) = if ensure_musl() {
        (MUSL, RELEASE_RUSTFLAGS)
    } else {
        eprintln!(
            "xtask dist: WARNING: the {MUSL} target is not installed and `rustup target add` failed; \
             falling back to a glibc build linked with +crt-static"
        );
        (
            GNU,
            "-C target-feature=+crt-static -C relocation-model=static",
        )
    };
    let mut build = cargo();
    build.args(["build", "--profile", "dist", "--target", target, "--bins"]);
    for b in BINARIES {
        build.args(["-p", b]);
    }
    set_rustflags(&mut build, target, rustflags);
    step(&format!("release build for {target}"), &mut build)?;

    let built = target_dir().join(target).join("dist");
    if out.exists() {
        fs::remove_dir_all(&out).with_context(|| format!("removing old {}", out.display()))?;
    }
    fs::create_dir_all(out.join("bin"))
        .with_context(|| format!("creating {}", out.join("bin").display()))?;
    let mut rows = Vec::new();
    for b in BINARIES {
        let src = built.join(b);
        let dst = out.join("bin").join(b);
        fs::copy(&src, &dst)
            .with_context(|| format!("copying {} to {}", src.display(), dst.display()))?;
        let bytes = fs::read(&dst).with_context(|| format!("reading {}", dst.display()))?;
        let linking = tinyo_core::elf::linking(&bytes)
            .with_context(|| format!("reading ELF headers of {}", dst.display()))?;
        if !linking.is_static() {
            bail!(
                "{} is not static: interpreter {:?}, {} shared libraries needed",
                dst.display(),
                linking.interpreter,
                linking.needed
            );
        }
        rows.push((b, bytes.len() as u64, tinyo_tests::sha256_hex(&bytes)));
    }

    let version = env!("CARGO_PKG_VERSION");
    let tarball = format!("tinyo-{version}-x86_64-linux.tar.gz");
    write_tarball(&out.join(&tarball), &out, version).context("writing the release tarball")?;
    let tar_hash = tinyo_tests::sha256_hex(&fs::read(out.join(&tarball))?);

    let mut sums = String::new();
    for (b, _, h) in &rows {
        sums += &format!("{h}  bin/{b}\n");
    }
    sums += &format!("{tar_hash}  {tarball}\n");
    fs::write(out.join("SHA256SUMS"), sums).context("writing SHA256SUMS")?;

    println!(
        "\n{target} release in {} (all binaries static, stripped):",
        out.display()
    );
    println!("  {:<12} {:>10} {:>9}", "binary", "bytes", "KiB");
    for (b, size, _) in &rows {
        println!("  {:<12} {:>10} {:>9.1}", b, size, *size as f64 / 1024.0);
    }
    println!(
        "  {tarball}: {} bytes",
        fs::metadata(out.join(&tarball))?.len()
    );
    Ok(out)
}

/// Whether the musl target is usable, adding it with rustup when missing.
pub fn ensure_musl() -> bool {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| l.trim() == MUSL)
        })
        .unwrap_or(false);
    if installed {
        return true;
    }
    eprintln!(
        "xtask: the {MUSL} Rust target is not installed; adding it with `rustup target add {MUSL}`"
    );
    Command::new("rustup")
        .args(["target", "add", MUSL])
        .status()
        .is_ok_and(|s| s.success())
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}

/// `tinyo-VERSION/bin/*` plus the README, with fixed mtimes and owners so the tarball is
/// reproducible.
fn write_tarball(path: &Path, out: &Path, version: &str) -> Result<()> {
    let file = fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let gz = flate2::write::GzEncoder::new(file, flate2::Compression::best());
    let mut tar = tar::Builder::new(gz);
    tar.mode(tar::HeaderMode::Deterministic);
    let prefix = format!("tinyo-{version}");
    for b in BINARIES {
        tar.append_path_with_name(out.join("bin").join(b), format!("{prefix}/bin/{b}"))?;
    }
    tar.append_path_with_name(root().join("README.md"), format!("{prefix}/README.md"))?;
    let mut gz = tar.into_inner()?;
    gz.flush()?;
    gz.finish()?.sync_all()?;
    Ok(())
}
