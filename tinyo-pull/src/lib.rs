//! tinyo-pull: from an image reference to a verified OCI layout store and a safe rootfs.
//!
//! What exists today:
//! - [`reference`]: parsing and normalisation of image references
//!   (`alpine` → `docker.io/library/alpine:latest`);
//! - [`digest`]: digests and readers that verify a stream against its descriptor;
//! - [`unpack`]: the layer applier — streaming verify → inflate → diff_id → apply, with every
//!   path resolved inside the rootfs.
//!
//! Registry access and the store are not implemented yet.

pub mod digest;
pub mod reference;
pub mod unpack;

pub use reference::{Reference, ReferenceError};
