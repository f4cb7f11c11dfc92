//! tinyo-pull: from an image reference to a verified OCI layout store and a safe rootfs.
//!
//! What exists today:
//! - [`reference`]: parsing and normalisation of image references
//!   (`alpine` → `docker.io/library/alpine:latest`);
//! - [`digest`]: digests and readers that verify a stream against its descriptor;
//! - [`unpack`]: the layer applier — streaming verify → inflate → diff_id → apply, with every
//!   path resolved inside the rootfs.
//!
//! - [`client`], [`config`]: the registry API client (auth, TLS, mirrors, retries, resume)
//!   and the containers configuration files;
//! - [`store`]: the OCI layout store with unpacked rootfs per image;
//! - [`pull`]: everything together, streaming downloads into the applier.

pub mod bundle;
pub mod client;
pub mod config;
pub mod digest;
pub mod download;
pub mod pull;
pub mod reference;
pub mod store;
pub mod unpack;

pub use reference::{Reference, ReferenceError};

/// An error and its sources joined with `: `, as the binaries print them.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
