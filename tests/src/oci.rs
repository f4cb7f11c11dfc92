//! A runtime CLI (tinyo, runc or crun) driven the way an engine drives it: each with its own
//! `--root`, every command in a private mount namespace, every container deleted on drop.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::bins::bin;
use crate::busybox::Bundle;
use crate::host::{require_root, require_tool};

/// A runtime binary with its own `--root`; deletes every container it made on drop.
#[derive(Debug)]
pub struct Runtime {
    pub name: &'static str,
    pub bin: PathBuf,
    /// crun refuses hybrid cgroup hosts: it runs with the cgroup2 mount hidden.
    pub hide_cgroup2: bool,
    pub root: tempfile::TempDir,
    pub ids: std::cell::RefCell<Vec<String>>,
}

impl Runtime {
    /// The `--root` state directory.
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    pub fn tinyo() -> Self {
        require_root();
        require_tool("unshare", "util-linux");
        Self::new("tinyo", bin("tinyo"))
    }

    pub fn runc() -> Self {
        require_root();
        Self::new("runc", require_tool("runc", "runc"))
    }

    /// crun, the second oracle, in a mount namespace without /sys/fs/cgroup/unified.
    pub fn crun() -> Self {
        require_root();
        let mut rt = Self::new("crun", require_tool("crun", "crun"));
        rt.hide_cgroup2 = true;
        rt
    }

    pub fn new(name: &'static str, bin: PathBuf) -> Self {
        let root = tempfile::Builder::new()
            .prefix(&format!("{name}-root-"))
            .tempdir()
            .unwrap();
        Self {
            name,
            bin,
            hide_cgroup2: false,
            root,
            ids: Default::default(),
        }
    }

    /// `unshare --mount --propagation private BIN --root ROOT ARGS…`, stdin from /dev/null.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("unshare");
        c.args(["--mount", "--propagation", "private"]);
        if self.hide_cgroup2 {
            c.args([
                "sh",
                "-c",
                "umount -l /sys/fs/cgroup/unified 2>/dev/null; exec \"$0\" \"$@\"",
            ]);
        }
        c.arg(&self.bin)
            .arg("--root")
            .arg(self.root.path())
            .args(args)
            .stdin(Stdio::null());
        c
    }

    pub fn track(&self, id: &str) {
        self.ids.borrow_mut().push(id.to_string());
    }

    /// Runs to completion with stdout and stderr in files, not pipes: a created container
    /// inherits them and would keep a pipe open long after the runtime exits.
    pub fn out(&self, args: &[&str]) -> Output {
        self.out_of(self.cmd(args), args)
    }

    /// As [`Runtime::out`], for a command built by the caller.
    pub fn out_of(&self, mut cmd: Command, args: &[&str]) -> Output {
        let stdout = tempfile::tempfile().unwrap();
        let stderr = tempfile::tempfile().unwrap();
        let status = cmd
            .stdout(stdout.try_clone().unwrap())
            .stderr(stderr.try_clone().unwrap())
            .status()
            .unwrap_or_else(|e| panic!("start {} {args:?}: {e}", self.name));
        let read = |mut f: std::fs::File| {
            use std::io::{Read, Seek};
            let mut v = Vec::new();
            f.seek(std::io::SeekFrom::Start(0)).unwrap();
            f.read_to_end(&mut v).unwrap();
            v
        };
        Output {
            status,
            stdout: read(stdout),
            stderr: read(stderr),
        }
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.out(args);
        assert!(
            o.status.success(),
            "{} {args:?} failed with {}: stdout {} stderr {}",
            self.name,
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// `run` in the foreground: (exit code, stdout, stderr).
    pub fn run(&self, bundle: &Bundle, id: &str) -> (Option<i32>, String, String) {
        self.track(id);
        let b = bundle.path().to_str().unwrap();
        let o = self.out(&["run", "--bundle", b, id]);
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    }

    pub fn state(&self, id: &str) -> Value {
        serde_json::from_str(&self.ok(&["state", id])).expect("state is JSON")
    }

    /// Polls `state` until `status` (generous bound; not a timing assertion).
    pub fn wait_status(&self, id: &str, status: &str) -> Value {
        for _ in 0..1000 {
            let o = self.out(&["state", id]);
            if o.status.success() {
                let v: Value = serde_json::from_slice(&o.stdout).unwrap();
                if v["status"] == status {
                    return v;
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("{} container {id} never became {status}", self.name);
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        for id in self.ids.borrow().iter() {
            let _ = self.cmd(&["delete", "--force", id]).output();
        }
    }
}
