//! podman for tests: all its state (root, runroot, tmpdir) in a temporary directory, vfs
//! storage, cgroupfs, file events, run in a private mount namespace, with a chosen OCI runtime
//! and a local image imported from a rootfs. Containers are removed on drop.
//!
//! [`Podman::networked`] gives podman a network of its own: every command runs in one network
//! and mount namespace held for this instance, where `/var/lib` (CNI's lease and result
//! cache) and `/run/netns` are private directories and the CNI network configs live in the
//! state directory, so podman's bridges, iptables rules and leases never reach the host.

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
    /// The holder of [`Podman::networked`]'s network and mount namespaces.
    namespaces: Option<std::process::Child>,
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
        Self::build(runtime, rootfs, storage_driver, false)
    }

    /// As [`Podman::with_storage`], with podman's own CNI networking (bridge, portmap) confined
    /// to a network namespace of this instance (see the module doc). Ports it publishes answer
    /// on the loopback of [`Podman::netns`].
    pub fn networked(runtime: &Path, rootfs: &Path, storage_driver: &'static str) -> Self {
        Self::build(runtime, rootfs, storage_driver, true)
    }

    fn build(runtime: &Path, rootfs: &Path, storage_driver: &'static str, net: bool) -> Self {
        require_root();
        require_tool("conmon", "conmon");
        let podman = require_tool("podman", "podman");
        let state = tempfile::Builder::new()
            .prefix("tinyo-podman-")
            .tempdir()
            .expect("podman dir");
        let namespaces = net.then(|| hold_namespaces(state.path()));
        let p = Self {
            state,
            podman,
            runtime: runtime.to_path_buf(),
            image: format!("localhost/{}:latest", unique("bbox")),
            storage_driver,
            namespaces,
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

    /// The network namespace of a [`Podman::networked`] instance.
    pub fn netns(&self) -> Option<PathBuf> {
        let h = self.namespaces.as_ref()?;
        Some(format!("/proc/{}/ns/net", h.id()).into())
    }

    /// A podman command with this instance's state, storage and runtime.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c;
        if let Some(h) = &self.namespaces {
            c = Command::new("nsenter");
            c.arg(format!("--mount=/proc/{}/ns/mnt", h.id()))
                .arg(format!("--net=/proc/{}/ns/net", h.id()))
                .arg(&self.podman)
                .env("CONTAINERS_CONF", self.state.path().join("containers.conf"));
        } else {
            c = Command::new("unshare");
            c.args(["--mount", "--propagation", "private"])
                .arg(&self.podman);
        }
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

/// Starts the holder of a networked podman's namespaces (see the module doc) and waits until
/// it is ready: `lo` up, `/var/lib` and `/run/netns` private. Writes the `containers.conf`
/// that points podman at its CNI configs under `state`.
fn hold_namespaces(state: &Path) -> std::process::Child {
    let conf = format!(
        "[containers]\n\
         default_ulimits = [\"nofile=20000:20000\", \"nproc=32768:32768\"]\n\
         [network]\n\
         network_backend = \"cni\"\n\
         network_config_dir = \"{}\"\n\
         cni_plugin_dirs = [\"/usr/lib/cni\"]\n",
        state.join("net.d").display()
    );
    std::fs::write(state.join("containers.conf"), conf).expect("write containers.conf");
    for d in ["net.d", "var-lib", "run-netns"] {
        std::fs::create_dir_all(state.join(d)).expect("podman network dirs");
    }
    let ready = state.join("namespaces-ready");
    // /run/netns may not exist on the host; podman would create it (empty) as it always does.
    let script = r#"set -e
ip link set lo up
mount --bind "$1/var-lib" /var/lib
if [ -d /run/netns ]; then mount --bind "$1/run-netns" /run/netns; fi
touch "$1/namespaces-ready"
exec sleep 1000000"#;
    let mut holder = Command::new("unshare");
    holder
        .args([
            "--net",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            script,
            "sh",
        ])
        .arg(state)
        .stdin(Stdio::null());
    crate::host::die_with_parent(&mut holder);
    let mut child = holder.spawn().expect("unshare --net --mount for podman");
    for _ in 0..1000 {
        if ready.exists() {
            return child;
        }
        if let Ok(Some(st)) = child.try_wait() {
            panic!("podman's namespace holder exited: {st}");
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let _ = child.kill();
    panic!("podman's namespace holder did not get ready in 5 s");
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.run(&["pod", "rm", "--all", "--force"]);
        let _ = self.run(&["rm", "--all", "--force"]);
        if let Some(mut h) = self.namespaces.take() {
            let _ = h.kill();
            let _ = h.wait();
        }
    }
}
