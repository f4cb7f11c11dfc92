//! A busybox root filesystem from Debian's `busybox-static`, and OCI bundles around it.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::host::{require_tool, run_ok};

/// Where Debian's `busybox-static` puts its binary.
pub const BUSYBOX: &str = "/bin/busybox";

/// `/etc/passwd` of the fixture rootfs: root, an ordinary user (1000) and nobody.
pub const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
tinyo:x:1000:1000:tinyo test user:/home/tinyo:/bin/sh\n\
nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";

/// `/etc/group` of the fixture rootfs.
pub const GROUP: &str = "root:x:0:\ntinyo:x:1000:\nnogroup:x:65534:\n";

/// The cached pristine rootfs. Built once per machine (per busybox binary) under
/// [`crate::cache_dir`]; treat it as read-only and copy it with [`copy_rootfs`] to modify it.
pub fn rootfs() -> &'static Path {
    static ROOTFS: OnceLock<PathBuf> = OnceLock::new();
    ROOTFS.get_or_init(|| {
        let busybox = require_tool("busybox", "busybox-static");
        let meta = fs::metadata(&busybox).expect("stat busybox");
        let key = format!("busybox-rootfs-{:x}", meta.len());
        let dest = crate::cache_dir().join(key);
        if dest.join("bin/busybox").is_file() {
            return dest;
        }
        fs::create_dir_all(crate::cache_dir()).expect("create fixture cache dir");
        let tmp = tempfile::Builder::new()
            .prefix(".busybox-rootfs-")
            .tempdir_in(crate::cache_dir())
            .expect("temp dir for rootfs");
        build_rootfs(&busybox, tmp.path());
        // Publish by rename: a concurrent builder that won the race leaves its copy in place.
        let tmp = tmp.keep();
        if fs::rename(&tmp, &dest).is_err() {
            let _ = fs::remove_dir_all(&tmp);
            assert!(
                dest.join("bin/busybox").is_file(),
                "rootfs cache broken at {}",
                dest.display()
            );
        }
        dest
    })
}

/// Builds the rootfs into the empty directory `root`.
pub fn build_rootfs(busybox: &Path, root: &Path) {
    for dir in [
        "bin",
        "sbin",
        "usr/bin",
        "usr/sbin",
        "etc",
        "dev",
        "proc",
        "sys",
        "run",
        "var",
        "root",
        "home/tinyo",
    ] {
        fs::create_dir_all(root.join(dir)).expect("create rootfs dir");
    }
    fs::create_dir_all(root.join("tmp")).expect("create tmp");
    fs::set_permissions(root.join("tmp"), fs::Permissions::from_mode(0o1777)).expect("chmod tmp");
    fs::set_permissions(root.join("root"), fs::Permissions::from_mode(0o700)).expect("chmod root");
    fs::copy(busybox, root.join("bin/busybox")).expect("copy busybox");
    fs::set_permissions(root.join("bin/busybox"), fs::Permissions::from_mode(0o755))
        .expect("chmod busybox");
    let list = run_ok(Command::new(busybox).arg("--list-full"));
    for applet in list.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if applet == "bin/busybox" || applet.contains("..") || applet.starts_with('/') {
            continue;
        }
        let link = root.join(applet);
        if link.symlink_metadata().is_ok() {
            continue;
        }
        if let Some(parent) = link.parent() {
            fs::create_dir_all(parent).expect("create applet dir");
        }
        symlink("/bin/busybox", &link)
            .unwrap_or_else(|e| panic!("symlink {}: {e}", link.display()));
    }
    fs::write(root.join("etc/passwd"), PASSWD).expect("write passwd");
    fs::write(root.join("etc/group"), GROUP).expect("write group");
    fs::write(root.join("etc/hostname"), "tinyo\n").expect("write hostname");
    fs::write(
        root.join("etc/hosts"),
        "127.0.0.1 localhost\n::1 localhost\n",
    )
    .expect("write hosts");
    std::os::unix::fs::chown(root.join("home/tinyo"), Some(1000), Some(1000)).expect("chown home");
}

/// Copies the cached rootfs to `dest` (which must not exist), keeping modes, owners and links.
pub fn copy_rootfs(dest: &Path) {
    let src = rootfs();
    run_ok(Command::new("cp").arg("-a").arg(src).arg(dest));
}

/// An OCI bundle in a temporary directory: `rootfs/` (a private copy of the busybox rootfs) and
/// `config.json`. Removed on drop.
#[derive(Debug)]
pub struct Bundle {
    dir: tempfile::TempDir,
}

impl Bundle {
    /// A bundle whose process runs `args`, with the default runtime-spec settings (the same
    /// defaults `runc spec` writes), no terminal, and a cgroup named after `id` nested under the
    /// caller's own cgroup so tests never touch the host's top-level cgroups.
    pub fn new(id: &str, args: &[&str]) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("tinyo-bundle-")
            .tempdir()
            .expect("bundle temp dir");
        copy_rootfs(&dir.path().join("rootfs"));
        let bundle = Self { dir };
        bundle.write_config(&default_spec(id, args));
        bundle
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn rootfs(&self) -> PathBuf {
        self.dir.path().join("rootfs")
    }

    /// Replaces `config.json`.
    pub fn write_config(&self, spec: &serde_json::Value) {
        let json = serde_json::to_vec_pretty(spec).expect("serialise config");
        fs::write(self.dir.path().join("config.json"), json).expect("write config.json");
    }

    /// Reads `config.json` back.
    pub fn config(&self) -> serde_json::Value {
        let text = fs::read(self.dir.path().join("config.json")).expect("read config.json");
        serde_json::from_slice(&text).expect("parse config.json")
    }
}

/// The default runtime spec with `args`, no terminal, and a relative cgroups path.
pub fn default_spec(id: &str, args: &[&str]) -> serde_json::Value {
    let spec = oci_spec::runtime::Spec::default();
    let mut v = serde_json::to_value(&spec).expect("serialise default spec");
    v["process"]["args"] = serde_json::json!(args);
    v["process"]["terminal"] = serde_json::json!(false);
    v["root"]["readonly"] = serde_json::json!(false);
    v["hostname"] = serde_json::json!("tinyo");
    v["linux"]["cgroupsPath"] = serde_json::json!(format!("tinyo-test-{id}"));
    v
}
