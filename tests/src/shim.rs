//! tinyo-shim with everything under a temporary `--root`: a loopback registry holding a busybox
//! image (pulled into the store by tinyo-pull), and a network namespace of the test's own in
//! which every command runs, so bridges, veths and iptables rules never touch the host's
//! network. Each command also runs in a private mount namespace. On drop every container is
//! removed (`rm -f`), and the network namespace's holder is killed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::bins::bin;
use crate::host::{require_root, require_tool, NetNs};
use crate::image::Layout;
use crate::registry::Registry;

/// A static tinyo-init for the debug binaries under test: the debug build links glibc
/// dynamically and cannot run in a busybox container, so the musl target is built once (the
/// release binaries of `TINYO_BIN_DIR` are static already, and tinyo-shim finds its own).
pub fn static_init() -> Option<PathBuf> {
    static INIT: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    INIT.get_or_init(|| {
        if std::env::var_os("TINYO_BIN_DIR").is_some() {
            return None;
        }
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| crate::workspace_root().join("target"));
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-q", "--target", "x86_64-unknown-linux-musl", "-p", "tinyo-init"])
            .current_dir(crate::workspace_root())
            .status()
            .expect("run cargo to build a static tinyo-init");
        assert!(
            status.success(),
            "building tinyo-init for x86_64-unknown-linux-musl (rustup target add x86_64-unknown-linux-musl)"
        );
        Some(target.join("x86_64-unknown-linux-musl/debug/tinyo-init"))
    })
    .clone()
}

/// A tinyo-shim sandbox.
#[derive(Debug)]
pub struct Shim {
    root: tempfile::TempDir,
    /// The busybox image as tinyo-pull stored it (`127.0.0.1:PORT/test/busybox:latest`).
    pub image: String,
    /// The test's network namespace.
    netns: NetNs,
    _registry: Registry,
    /// Every container id this sandbox has seen (for checking what is left behind).
    seen: std::cell::RefCell<std::collections::BTreeSet<String>>,
}

impl Shim {
    /// A sandbox whose store holds the busybox image with `config` tweaks (Entrypoint, Env…).
    pub fn with_image(config: impl FnOnce(&mut serde_json::Value)) -> Self {
        require_root();
        require_tool("nsenter", "util-linux");
        let root = tempfile::Builder::new()
            .prefix("tinyo-shim-root-")
            .tempdir()
            .expect("shim root");
        let layout_dir = root.path().join("layout");
        let img =
            crate::catalogue::busybox_image(&mut Layout::create(&layout_dir), "latest", config);
        let registry = Registry::plain();
        registry.push(&layout_dir, &img.manifest, "test/busybox", "latest");
        let _ = std::fs::remove_dir_all(&layout_dir);
        let image = format!("{}/test/busybox:latest", registry.host());
        let o = Command::new(bin("tinyo-pull"))
            .arg("--root")
            .arg(root.path())
            .arg("--quiet")
            .arg(&image)
            .env("CONTAINERS_REGISTRIES_CONF", "/dev/null")
            .output()
            .expect("run tinyo-pull");
        assert!(o.status.success(), "tinyo-pull {image}: {o:?}");
        let netns = NetNs::new();
        Self {
            root,
            image,
            netns,
            _registry: registry,
            seen: Default::default(),
        }
    }

    /// A sandbox with the plain busybox image.
    pub fn new() -> Self {
        Self::with_image(|_| {})
    }

    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// The directory of the containers' state.
    pub fn containers(&self) -> PathBuf {
        self.root.path().join("shim/containers")
    }

    /// The network namespace the commands run in.
    pub fn netns(&self) -> PathBuf {
        self.netns.path()
    }

    /// `tinyo-shim --root ROOT ARGS…` in the test's network namespace and a private mount
    /// namespace, with no stdin.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net={}", self.netns().display()))
            .args(["unshare", "--mount", "--propagation", "private"])
            .arg(bin("tinyo-shim"))
            .arg("--root")
            .arg(self.root.path())
            .args(args)
            .env("CONTAINERS_REGISTRIES_CONF", "/dev/null")
            .stdin(Stdio::null());
        if let Some(init) = static_init() {
            c.env("TINYO_INIT", init);
        }
        c
    }

    /// [`Shim::cmd`] as one shell command line (for `script -c`).
    pub fn command_line(&self, args: &[&str]) -> String {
        let c = self.cmd(args);
        let quote =
            |s: &std::ffi::OsStr| format!("'{}'", s.to_string_lossy().replace('\'', r"'\''"));
        let mut words: Vec<String> = vec!["env".into()];
        for (k, v) in c.get_envs() {
            if let Some(v) = v {
                words.push(quote(std::ffi::OsStr::new(&format!(
                    "{}={}",
                    k.to_string_lossy(),
                    v.to_string_lossy()
                ))));
            }
        }
        words.push(quote(c.get_program()));
        words.extend(c.get_args().map(quote));
        words.join(" ")
    }

    /// Any command in the test's network namespace.
    pub fn in_netns(&self, program: &str, args: &[&str]) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net={}", self.netns().display()))
            .arg(program)
            .args(args)
            .stdin(Stdio::null());
        c
    }

    /// Runs to completion; stdout and stderr go to files (a detached supervisor inherits
    /// nothing of ours, but a failing one might).
    pub fn out(&self, args: &[&str]) -> Output {
        let stdout = tempfile::tempfile().unwrap();
        let stderr = tempfile::tempfile().unwrap();
        let status = self
            .cmd(args)
            .stdout(stdout.try_clone().unwrap())
            .stderr(stderr.try_clone().unwrap())
            .status()
            .expect("run tinyo-shim");
        self.note_ids();
        let read = |mut f: std::fs::File| {
            use std::io::{Read, Seek};
            let mut v = Vec::new();
            f.seek(std::io::SeekFrom::Start(0)).unwrap();
            f.read_to_end(&mut v).unwrap();
            String::from_utf8_lossy(&v).into_owned()
        };
        Output {
            status,
            stdout: read(stdout).into_bytes(),
            stderr: read(stderr).into_bytes(),
        }
    }

    fn note_ids(&self) {
        if let Ok(rd) = std::fs::read_dir(self.containers()) {
            let mut seen = self.seen.borrow_mut();
            for e in rd.flatten() {
                seen.insert(e.file_name().to_string_lossy().into_owned());
            }
        }
    }

    /// The ids of every container this sandbox has seen.
    pub fn seen_ids(&self) -> Vec<String> {
        self.note_ids();
        self.seen.borrow().iter().cloned().collect()
    }

    /// Runs and requires success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.out(args);
        assert!(
            o.status.success(),
            "tinyo-shim {args:?} failed ({}): stdout {} stderr {}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Asserts nothing of any container is left: records, runtime state, the cgroups of
    /// every container this fixture ran.
    pub fn assert_nothing_left(&self) {
        let left: Vec<_> = std::fs::read_dir(self.containers())
            .map(|rd| rd.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "container state left: {left:?}");
        let rt = self.root().join("shim/runtime");
        let left: Vec<_> = std::fs::read_dir(&rt)
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.path())
                    .filter(|p| !p.ends_with(".seccomp-cache"))
                    .collect()
            })
            .unwrap_or_default();
        assert!(left.is_empty(), "runtime state left: {left:?}");
        for id in self.seen_ids() {
            let left = crate::host::leftover_cgroups(&id);
            assert!(left.is_empty(), "cgroups of {id} left: {left:?}");
        }
    }

    /// `ps -a --format json`.
    pub fn ps(&self) -> Vec<serde_json::Value> {
        serde_json::from_str(&self.ok(&["ps", "-a", "--format", "json"])).expect("ps json")
    }

    /// The `ps` status of container `name`.
    pub fn status(&self, name: &str) -> Option<String> {
        self.ps()
            .into_iter()
            .find(|c| c["name"] == name)
            .and_then(|c| c["status"].as_str().map(str::to_string))
    }

    /// Polls until `name`'s status starts with `prefix` (generous bound, not a timing test).
    pub fn wait_status(&self, name: &str, prefix: &str) -> String {
        for _ in 0..1000 {
            if let Some(s) = self.status(name) {
                if s.starts_with(prefix) {
                    return s;
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!(
            "container {name} never became {prefix}: {:?}",
            self.status(name)
        );
    }
}

impl Default for Shim {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Shim {
    fn drop(&mut self) {
        if let Ok(o) = self.cmd(&["ps", "-aq"]).output() {
            for id in String::from_utf8_lossy(&o.stdout).split_whitespace() {
                let _ = self.cmd(&["rm", "-f", id]).output();
            }
        }
        // Pods too: their infra processes would outlive the test.
        if let Ok(o) = self.cmd(&["pod", "ps", "--format", "json"]).output() {
            let pods: Vec<serde_json::Value> =
                serde_json::from_slice(&o.stdout).unwrap_or_default();
            for p in pods {
                if let Some(name) = p["name"].as_str() {
                    let _ = self.cmd(&["pod", "rm", "-f", name]).output();
                }
            }
        }
    }
}
