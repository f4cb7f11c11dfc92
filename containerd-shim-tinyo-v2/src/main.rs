//! `containerd-shim-tinyo-v2`: containerd's shim v2 (`runtime_type = "io.containerd.tinyo.v2"`)
//! on tinyo-core. One process serves every container of a pod (grouped by the CRI sandbox id,
//! as `io.containerd.runc.v2` does) and does the container work through the tinyo-core
//! library: no runtime binary is exec'd.
//!
//! - [`service`]: the ttrpc Task service and the shim's `start`/`delete` actions.
//! - [`helper`]: the short-lived, single-threaded fork that runs one tinyo-core operation.
//! - [`stdio`]: containerd's FIFOs and terminals wired to a container process.
//! - [`metrics`]: tinyo-core's cgroup statistics in containerd's `Metrics` message.

mod events;
mod helper;
mod metrics;
mod service;
mod stdio;

fn main() {
    containerd_shim::run::<service::Shim>("io.containerd.tinyo.v2", None)
}
