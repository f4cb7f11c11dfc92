//! Fixtures shared by tinyo's end-to-end tests and benchmarks.
//!
//! - [`busybox`]: a busybox rootfs built from Debian's `busybox-static`, and OCI bundles around it.
//! - [`image`]: OCI image layouts built here, with no network (layers, manifests, indexes).
//! - [`catalogue`]: the standard images every pull test uses, each with what its rootfs must hold.
//! - [`hostile`]: images built to attack a puller or unpacker.
//! - [`oci`]: a runtime CLI (tinyo, runc, crun) with its own root, run as an engine runs it.
//! - [`podman`]: podman with its state in a temp dir, a chosen runtime and a local image.
//! - [`proxy`]: a misbehaving front for a registry (auth, 429, cut downloads, redirects).
//! - [`containerd`]: containerd with its own root, state and socket, driven by `ctr`.
//! - [`registry`]: Debian's `docker-registry` on a free loopback port, plain or TLS + basic auth.
//! - [`shim`]: tinyo-shim with its store, state and network namespace of its own.
//! - [`host`]: what a test needs from the host (root, tools), failing loudly when it is missing.
//! - [`bins`]: where the binaries under test are.
//!
//! Everything a fixture starts or creates is torn down by `Drop`, whatever the test's outcome.

pub mod bins;
pub mod busybox;
pub mod catalogue;
pub mod containerd;
pub mod cri;
pub mod expect;
pub mod host;
pub mod hostile;
pub mod image;
pub mod oci;
pub mod podman;
pub mod profiles;
pub mod proxy;
pub mod registry;
pub mod shim;
pub mod token;

use std::path::PathBuf;

/// The directory where fixtures that are costly to build are cached between runs
/// (`$CARGO_TARGET_DIR/tinyo-fixtures`, else `target/tinyo-fixtures` in the workspace).
pub fn cache_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    target.join("tinyo-fixtures")
}

/// The workspace's top directory.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(data);
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// `sha256:<hex>` of `data`.
pub fn digest_of(data: &[u8]) -> String {
    format!("sha256:{}", sha256_hex(data))
}
