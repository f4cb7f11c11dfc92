//! `tinyo spec`: write the default runtime-spec `config.json`, as `runc spec` does.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Bundle directory to write config.json into.
    #[arg(short, long, default_value = ".")]
    bundle: PathBuf,
}

pub fn run(args: Args) -> Result<()> {
    let path = args.bundle.join("config.json");
    let spec = oci_spec::runtime::Spec::default();
    let json = serde_json::to_vec_pretty(&spec).context("serialising the default spec")?;
    // create_new: never clobber a config someone wrote by hand (runc refuses too).
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(&json)
        .and_then(|()| file.write_all(b"\n"))
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
