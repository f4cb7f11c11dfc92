//! tinyo-init: a tiny PID 1 for containers.
//!
//! Not implemented yet: the supervisor (spawn, reap, forward signals) arrives with its own issue.
//! This crate currently only carries the version string the binary prints.

/// The version the binary reports.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
