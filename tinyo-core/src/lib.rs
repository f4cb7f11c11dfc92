//! tinyo-core: the library that turns an OCI runtime-spec bundle into a running container.
//!
//! - [`bundle`]: loading and validating a bundle's `config.json`.
//! - [`fields`]: every runtime-spec field and whether tinyo applies, refuses or warns about it.
//! - [`mounts`]: planning the container filesystem (pure, unit-tested without root).
//! - [`rootfs`]: carrying out that plan in the container's mount namespace.
//! - [`process`]: the process's own settings (user, capabilities, rlimits, …) and exec.
//! - [`cgroup`]: cgroups on v1, v2 and hybrid hosts: placement, every `linux.resources`
//!   limit, freeze, kill, stats and OOM events.
//! - [`container`]: the lifecycle (create, start, state, kill, delete, list) and its state.
//! - [`elf`]: just enough ELF reading to tell a static binary from a dynamic one.
//! - [`hooks`]: the OCI hooks (prestart, createRuntime, createContainer, startContainer,
//!   poststart, poststop).
//! - [`terminal`]: `process.terminal`, a pty whose master goes over `--console-socket`.
//! - [`seccomp`]: `linux.seccomp` compiled to BPF in pure Rust, cached by content hash.
//! - [`lsm`]: AppArmor and SELinux labels, where the host runs them.
//! - [`userns`]: uid/gid mappings of user namespaces (root, rootless, newuidmap).
//! - [`signal`]: signal names as CLIs take them.
//! - [`sys`]: the thin syscall seam everything above goes through.
//!
//! A terminal needs a console socket (tinyo never relays a pty itself).

pub mod bundle;
pub mod cgroup;
pub mod container;
pub mod elf;
pub mod fields;
pub mod hooks;
pub mod lsm;
pub mod mounts;
pub mod process;
pub mod rootfs;
pub mod seccomp;
pub mod signal;
pub mod sys;
pub mod terminal;
pub mod userns;

/// The OCI runtime-spec version this crate reads and reports.
pub const OCI_SPEC_VERSION: &str = "1.2.0";
