//! podman for tests: all its state (root, runroot, tmpdir) in a temporary directory, vfs
//! storage, cgroupfs, file events, run in a private mount namespace, with a chosen OCI runtime
//! and a local image imported from a rootfs. Containers are removed on drop.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::host::{require_root, require_tool, unique};

/// An isolated podman.
#[derive(Debug)]
pub struct Podman {
    state: tempfile::TempDir,
    podman: PathBuf,
    runtime: PathBuf,
    image: String,
    storage_driver: &'static str,
}

impl Podman {
    /// podman using `runtime` (an absolute path) as its OCI runtime, with `rootfs` imported as
    /// [`Podman::image`].
    pub fn new(runtime: &Path, rootfs: &Path) -> Self {
        Self::with_storage(runtime, rootfs, "vfs")
    }

    /// As [`Podman::new`] with another storage driver (`overlay` is podman's usual one; `vfs`
    /// copies the image per container but works anywhere).
    pub fn with_storage(runtime: &Path, rootfs: &Path, storage_driver: &'static str) -> Self {
        require_root();
        require_tool("conmon", "conmon");
        let podman = require_tool("podman", "podman");
        let state = tempfile::Builder::new()
            .prefix("tinyo-podman-")
            .tempdir()
            .expect("podman dir");
        let p = Self {
            state,
            podman,
            runtime: runtime.to_path_buf(),
            image: format!("localhost/{}:latest", unique("bbox")),
            storage_driver,
        };
        let mut tar = Command::new("tar")
            .arg("-C")
            .arg(rootfs)
            .args(["-c", "."])
            .stdout(Stdio::piped())
            .spawn()
            .expect("tar");
        let import = p
            .cmd(&["import", "-", &p.image])
            .stdin(tar.stdout.take().expect("tar stdout"))
            .output()
            .expect("podman import");
        assert!(
            tar.wait().expect("tar").success(),
            "tar of {} failed",
            rootfs.display()
        );
        assert!(
            import.status.success(),
            "podman import: {}",
            String::from_utf8_lossy(&import.stderr)
        );
        p
    }

    /// The OCI runtime this podman drives.
    pub fn runtime(&self) -> &Path {
        &self.runtime
    }

    /// The imported image's name.
    pub fn image(&self) -> &str {
        &self.image
    }

    /// A podman command with this instance's state, storage and runtime.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("unshare");
        c.args(["--mount", "--propagation", "private"])
            .arg(&self.podman);
        for (flag, dir) in [
            ("--root", "root"),
            ("--runroot", "run"),
            ("--tmpdir", "tmp"),
        ] {
            c.arg(flag).arg(self.state.path().join(dir));
        }
        c.args([
            "--cgroup-manager",
            "cgroupfs",
            "--events-backend",
            "file",
            "--storage-driver",
            self.storage_driver,
        ])
        .arg("--runtime")
        .arg(&self.runtime)
        .args(args)
        .stdin(Stdio::null());
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run podman")
    }

    /// `podman run` with the flags this host needs (no network; ulimits within the hard
    /// limits, as CAP_SYS_RESOURCE is absent), then `extra`.
    pub fn run_args<'a>(&'a self, extra: &[&'a str]) -> Vec<&'a str> {
        let mut v = vec!["run"];
        v.extend_from_slice(&HOST_FLAGS);
        v.extend_from_slice(extra);
        v
    }
}

/// What `podman run` and `podman build` need on this host: no network, and ulimits within the
/// hard limits (CAP_SYS_RESOURCE is absent).
pub const HOST_FLAGS: [&str; 6] = [
    "--network",
    "none",
    "--ulimit",
    "nofile=20000:20000",
    "--ulimit",
    "nproc=32768:32768",
];

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.run(&["rm", "--all", "--force"]);
    }
}
