//! tinyo-core: the library that turns an OCI runtime-spec bundle into a running container.
//!
//! What exists today: loading and validating a bundle's `config.json` ([`bundle::Bundle`]).
//! Namespaces, rootfs, mounts, processes, cgroups and seccomp are not implemented yet; nothing
//! in this crate pretends otherwise.

pub mod bundle;

/// The OCI runtime-spec version this crate reads and reports.
pub const OCI_SPEC_VERSION: &str = "1.2.0";
