//! containerd for tests: started by the test with its own config, root, state and sockets under
//! a temporary directory, in a private mount namespace, killed on drop and when the thread that
//! started it exits. Driven with `ctr` in a namespace of the test's own. The CRI plugin is off
//! unless started with [`Containerd::start_cri`]; it then serves the kubelet's API on the same
//! socket, works in the `k8s.io` namespace, and has no CNI networks (host-network pods only).
//!
//! The stock `containerd-shim-runc-v2` still keeps the runtime's state under
//! `/run/containerd/runc/<namespace>`; the fixture removes that directory (and the shim's
//! empty parents) on drop.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::host::{require_tool, unique};

/// A running containerd.
#[derive(Debug)]
pub struct Containerd {
    child: Child,
    dir: tempfile::TempDir,
    namespace: String,
    ctr: PathBuf,
    cri: bool,
}

/// The namespace the CRI plugin keeps its pods' images, containers and tasks in.
pub const CRI_NAMESPACE: &str = "k8s.io";

/// The pause image of the CRI fixtures' sandboxes (see [`Containerd::import_cri_fixtures`]).
pub const PAUSE_IMAGE: &str = "localhost/pause:pause";

/// The processes of shim binary `shim` serving containerd namespace `ns`.
pub fn shim_pids(shim: &str, ns: &str) -> Vec<i32> {
    let Ok(rd) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| {
            let pid: i32 = e.file_name().to_str()?.parse().ok()?;
            let cmd = fs::read(e.path().join("cmdline")).ok()?;
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            (cmd.contains(shim) && cmd.contains(&format!("-namespace {ns} "))).then_some(pid)
        })
        .collect()
}

/// One CRI runtime handler (`runtimes.NAME` in containerd's CRI config).
#[derive(Debug, Clone)]
pub struct Handler {
    pub name: String,
    /// `io.containerd.runc.v2`, `io.containerd.tinyo.v2`, …
    pub runtime_type: String,
    /// runc-v2's `BinaryName`: the OCI runtime it execs instead of `runc`.
    pub binary_name: Option<PathBuf>,
}

/// The CRI plugin's settings for [`Containerd::start_cri`].
#[derive(Debug, Clone)]
pub struct Cri {
    /// The pause image every sandbox runs (`sandbox_image`); the test imports it.
    pub sandbox_image: String,
    /// The handlers pods may name; the first is the default.
    pub handlers: Vec<Handler>,
}

impl Cri {
    fn config(&self, d: &Path) -> String {
        let p = "[plugins.\"io.containerd.grpc.v1.cri\"";
        // Stream server on an ephemeral loopback port; AppArmor off (the host may have no
        // parser); CNI directories of our own, empty: only host-network pods can run.
        // restrict_oom_score_adj: the sandbox asks for oomScoreAdj -998, which needs
        // CAP_SYS_RESOURCE; without it runc, crun and tinyo all refuse (EACCES), so on hosts
        // like the CI's containerd must clamp the score to its own.
        let mut s = format!(
            "{p}]\n  sandbox_image = \"{}\"\n  stream_server_address = \"127.0.0.1\"\n  \
             stream_server_port = \"0\"\n  disable_apparmor = true\n  restrict_oom_score_adj = {}\n\
             {p}.cni]\n  bin_dir = \"{}\"\n  conf_dir = \"{}\"\n\
             {p}.containerd]\n  default_runtime_name = \"{}\"\n",
            self.sandbox_image,
            !crate::host::has_cap(crate::host::CAP_SYS_RESOURCE),
            d.join("cni/bin").display(),
            d.join("cni/net.d").display(),
            self.handlers.first().map_or("runc", |h| h.name.as_str()),
        );
        for h in &self.handlers {
            s += &format!(
                "{p}.containerd.runtimes.{}]\n  runtime_type = \"{}\"\n",
                h.name, h.runtime_type
            );
            if let Some(b) = &h.binary_name {
                s += &format!(
                    "{p}.containerd.runtimes.{}.options]\n  BinaryName = \"{}\"\n",
                    h.name,
                    b.display()
                );
            }
        }
        s
    }
}

impl Containerd {
    pub fn start() -> Self {
        Self::start_with_path(None)
    }

    /// As [`Containerd::start`], with `dir` first on containerd's PATH: where it finds
    /// `containerd-shim-<name>-v2` for `--runtime io.containerd.<name>.v2`.
    pub fn start_with_path(path_dir: Option<&Path>) -> Self {
        Self::start_inner(path_dir, None)
    }

    /// As [`Containerd::start_with_path`], with the CRI plugin on: the kubelet's gRPC API on
    /// [`Containerd::socket`], pods and their images in [`CRI_NAMESPACE`].
    pub fn start_cri(path_dir: Option<&Path>, cri: &Cri) -> Self {
        Self::start_inner(path_dir, Some(cri))
    }

    fn start_inner(path_dir: Option<&Path>, cri: Option<&Cri>) -> Self {
        let bin = require_tool("containerd", "containerd");
        let ctr = require_tool("ctr", "containerd");
        require_tool("containerd-shim-runc-v2", "containerd");
        let dir = tempfile::Builder::new()
            .prefix("tinyo-containerd-")
            .tempdir()
            .expect("containerd dir");
        let d = dir.path();
        let mut config = format!(
            "version = 2\nroot = \"{}\"\nstate = \"{}\"\ndisabled_plugins = [{}]\n\
             [grpc]\n  address = \"{}\"\n[ttrpc]\n  address = \"{}\"\n",
            d.join("root").display(),
            d.join("state").display(),
            if cri.is_some() {
                ""
            } else {
                "\"io.containerd.grpc.v1.cri\""
            },
            d.join("containerd.sock").display(),
            d.join("containerd.sock.ttrpc").display()
        );
        if let Some(cri) = cri {
            config += &cri.config(d);
            for sub in ["cni/bin", "cni/net.d"] {
                fs::create_dir_all(d.join(sub)).expect("CNI dirs");
            }
        }
        fs::write(d.join("config.toml"), config).expect("write containerd config");
        let log = fs::File::create(d.join("containerd.log")).expect("log");
        let mut cmd = Command::new("unshare");
        // Its own directory as cwd: containerd also looks for shim binaries relative to it.
        cmd.current_dir(d)
            .args(["--mount", "--propagation", "private"])
            .arg(bin)
            .arg("--config")
            .arg(d.join("config.toml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log);
        if let Some(extra) = path_dir {
            let path = std::env::var("PATH").unwrap_or_default();
            cmd.env("PATH", format!("{}:{path}", extra.display()));
        }
        crate::host::die_with_parent(&mut cmd);
        let child = cmd.spawn().expect("spawn containerd");
        let c = Self {
            child,
            dir,
            namespace: unique("tinyo").replace('-', "_"),
            ctr,
            cri: cri.is_some(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !c.ctr(&["version"]).status.success() {
            assert!(
                Instant::now() < deadline,
                "containerd did not start:\n{}",
                c.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        c
    }

    /// The socket address for `ctr -a`.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("containerd.sock")
    }

    /// Its temporary directory (config, root, state, sockets, log), removed on drop.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// containerd's pid (its mount namespace holds the shims' rootfs mounts).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
    }

    /// A `ctr` command against this containerd, in the test's namespace.
    pub fn ctr_cmd(&self, args: &[&str]) -> Command {
        self.ctr_in(&self.namespace, args)
    }

    /// A `ctr` command against this containerd, in namespace `ns`.
    pub fn ctr_in(&self, ns: &str, args: &[&str]) -> Command {
        let mut c = Command::new(&self.ctr);
        c.arg("-a")
            .arg(self.socket())
            .args(["-n", ns])
            .args(args)
            .stdin(Stdio::null());
        c
    }

    pub fn ctr(&self, args: &[&str]) -> Output {
        self.ctr_cmd(args).output().expect("run ctr")
    }

    /// Imports the OCI layout at `layout` (all its tagged images) as `base:TAG`.
    pub fn import_layout(&self, layout: &Path, base: &str) {
        self.import_layout_in(&self.namespace, layout, base)
    }

    /// The fixture catalogue (as `localhost/bbox:TAG`) and the pause image ([`PAUSE_IMAGE`])
    /// in [`CRI_NAMESPACE`], where the CRI plugin finds them.
    pub fn import_cri_fixtures(&self) {
        let images = tempfile::tempdir_in(self.dir()).expect("image layouts");
        let (bbox, pause) = (images.path().join("bbox"), images.path().join("pause"));
        crate::catalogue::build(&bbox);
        crate::catalogue::pause(&pause);
        self.import_layout_in(CRI_NAMESPACE, &bbox, "localhost/bbox");
        self.import_layout_in(CRI_NAMESPACE, &pause, "localhost/pause");
    }

    /// As [`Containerd::import_layout`], into namespace `ns` (e.g. [`CRI_NAMESPACE`]).
    pub fn import_layout_in(&self, ns: &str, layout: &Path, base: &str) {
        let tar = self.dir.path().join("import.tar");
        let st = Command::new("tar")
            .arg("-C")
            .arg(layout)
            .arg("-cf")
            .arg(&tar)
            .args(["oci-layout", "index.json", "blobs"])
            .status()
            .expect("tar the layout");
        assert!(st.success(), "tar of {}", layout.display());
        let o = self
            .ctr_in(
                ns,
                &[
                    "image",
                    "import",
                    "--base-name",
                    base,
                    tar.to_str().expect("utf-8 path"),
                ],
            )
            .output()
            .expect("run ctr");
        assert!(
            o.status.success(),
            "ctr image import: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        // Tasks and containers first, so shims exit and unmount what they mounted.
        let mut namespaces = vec![self.namespace.clone()];
        if self.cri {
            namespaces.push(CRI_NAMESPACE.to_string());
        }
        for ns in &namespaces {
            let ctr = |args: &[&str]| self.ctr_in(ns, args).output();
            let Ok(list) = ctr(&["container", "ls", "-q"]) else {
                continue;
            };
            for id in String::from_utf8_lossy(&list.stdout).lines() {
                let _ = ctr(&["task", "kill", "-s", "SIGKILL", id]);
                let _ = ctr(&["task", "rm", "-f", id]);
                let _ = ctr(&["container", "rm", id]);
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let runc_root = Path::new("/run/containerd/runc").join(&self.namespace);
        let _ = fs::remove_dir_all(&runc_root);
        for ns in &namespaces {
            // k8s.io may be a host containerd's too: only removed when empty.
            let _ = fs::remove_dir(Path::new("/run/containerd/runc").join(ns));
            let _ = fs::remove_dir(Path::new("/run/containerd/tinyo").join(ns));
        }
        for d in [
            "/run/containerd/runc",
            "/run/containerd/tinyo",
            "/run/containerd/s",
            "/run/containerd/fifo",
            "/run/containerd",
        ] {
            let _ = fs::remove_dir(d); // only if empty: never another containerd's state
        }
    }
}
