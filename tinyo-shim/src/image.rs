//! Images for containers: found in tinyo-pull's store, or pulled into it on demand.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use serde_json::Value;
use tinyo_pull::digest::Digest;
use tinyo_pull::store::{ImageRef, Store};

/// An image ready to run: its stored name, manifest digest, unpacked rootfs and config.
#[derive(Debug)]
pub struct Image {
    pub name: String,
    pub digest: String,
    pub rootfs: PathBuf,
    /// The image configuration blob (`config.Entrypoint`, `config.Env`, …).
    pub config: Value,
}

/// The stored image `input` names: a reference (`alpine`, `localhost:5000/x:tag`), a stored
/// name, or a manifest digest prefix.
pub fn find(refs: &[ImageRef], input: &str) -> Option<ImageRef> {
    let normal = tinyo_pull::Reference::parse(input)
        .map(|r| r.to_string())
        .unwrap_or_else(|_| input.to_string());
    let hex = input.trim_start_matches("sha256:");
    refs.iter()
        .find(|r| r.name == normal || r.name == input)
        .or_else(|| {
            let by_digest: Vec<&ImageRef> = refs
                .iter()
                .filter(|r| {
                    hex.len() >= 6
                        && r.manifest
                            .digest
                            .trim_start_matches("sha256:")
                            .starts_with(hex)
                })
                .collect();
            (by_digest.len() == 1).then(|| by_digest[0])
        })
        .cloned()
}

/// Opens the store, finds `input` there or pulls it, and reads its config.
pub fn resolve(store_root: &std::path::Path, input: &str, pull: bool) -> Result<Image> {
    let store = Store::open(store_root)
        .with_context(|| format!("opening the image store at {}", store_root.display()))?;
    let (name, digest) = match find(&store.refs()?, input) {
        Some(r) => (r.name, r.manifest.digest),
        None if pull => {
            if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
                eprintln!("tinyo-shim: {input} is not in the store, pulling it");
            }
            let opts = tinyo_pull::pull::Options {
                registries: tinyo_pull::config::Registries::load(None)?,
                progress: Arc::new(tinyo_pull::download::Quiet),
                ..Default::default()
            };
            let pulled = tinyo_pull::pull::pull(&store, input, &opts)
                .map_err(|e| anyhow::anyhow!(tinyo_pull::error_chain(&e)))?;
            (pulled.name, pulled.manifest.to_string())
        }
        None => bail!("no such image: {input}"),
    };
    let d = Digest::parse(&digest).with_context(|| format!("stored digest {digest}"))?;
    let Some(rootfs) = store.rootfs(&d) else {
        bail!("{name}: the store has no unpacked rootfs for {digest} (pull it again)");
    };
    let manifest: Value = serde_json::from_slice(&store.read_blob(&d)?)
        .with_context(|| format!("{name}: stored manifest"))?;
    let config_digest = manifest["config"]["digest"]
        .as_str()
        .and_then(|s| Digest::parse(s).ok())
        .with_context(|| format!("{name}: the stored manifest has no config"))?;
    let config: Value = serde_json::from_slice(&store.read_blob(&config_digest)?)
        .with_context(|| format!("{name}: image config"))?;
    Ok(Image {
        name,
        digest,
        rootfs,
        config,
    })
}
