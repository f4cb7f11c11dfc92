//! containerd for tests: started by the test with its own config, root, state and sockets under
//! a temporary directory (CRI disabled), in a private mount namespace, killed on drop and when
//! the thread that started it exits. Driven with `ctr` in a namespace of the test's own.
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
}

impl Containerd {
    pub fn start() -> Self {
        Self::start_with_path(None)
    }

    /// As [`Containerd::start`], with `dir` first on containerd's PATH: where it finds
    /// `containerd-shim-<name>-v2` for `--runtime io.containerd.<name>.v2`.
    pub fn start_with_path(path_dir: Option<&Path>) -> Self {
        let bin = require_tool("containerd", "containerd");
        let ctr = require_tool("ctr", "containerd");
        require_tool("containerd-shim-runc-v2", "containerd");
        let dir = tempfile::Builder::new()
            .prefix("tinyo-containerd-")
            .tempdir()
            .expect("containerd dir");
        let d = dir.path();
        let config = format!(
            "version = 2\nroot = \"{}\"\nstate = \"{}\"\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [grpc]\n  address = \"{}\"\n[ttrpc]\n  address = \"{}\"\n",
            d.join("root").display(),
            d.join("state").display(),
            d.join("containerd.sock").display(),
            d.join("containerd.sock.ttrpc").display()
        );
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

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
    }

    /// A `ctr` command against this containerd, in the test's namespace.
    pub fn ctr_cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.ctr);
        c.arg("-a")
            .arg(self.socket())
            .args(["-n", &self.namespace])
            .args(args)
            .stdin(Stdio::null());
        c
    }

    pub fn ctr(&self, args: &[&str]) -> Output {
        self.ctr_cmd(args).output().expect("run ctr")
    }

    /// Imports the OCI layout at `layout` (all its tagged images) as `base:TAG`.
    pub fn import_layout(&self, layout: &Path, base: &str) {
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
        let o = self.ctr(&[
            "image",
            "import",
            "--base-name",
            base,
            tar.to_str().expect("utf-8 path"),
        ]);
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
        let list = self.ctr(&["container", "ls", "-q"]);
        for id in String::from_utf8_lossy(&list.stdout).lines() {
            let _ = self.ctr(&["task", "kill", "-s", "SIGKILL", id]);
            let _ = self.ctr(&["task", "rm", "-f", id]);
            let _ = self.ctr(&["container", "rm", id]);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let runc_root = Path::new("/run/containerd/runc").join(&self.namespace);
        let _ = fs::remove_dir_all(&runc_root);
        let _ = fs::remove_dir(Path::new("/run/containerd/tinyo").join(&self.namespace));
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
