//! tinyo-pull: from an image reference to a verified OCI layout store and a safe rootfs.
//!
//! What exists today: [`reference`], the parsing and normalisation of image references
//! (`alpine` → `docker.io/library/alpine:latest`). Registry access, the store and layer
//! unpacking are not implemented yet.

pub mod reference;

pub use reference::{Reference, ReferenceError};
