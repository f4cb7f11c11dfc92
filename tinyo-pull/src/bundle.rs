//! A runtime bundle from a pulled image, as `umoci unpack` makes: `DIR/rootfs` and a
//! `DIR/config.json` whose process follows the image config (Entrypoint + Cmd, Env, WorkingDir,
//! User resolved through the image's own `/etc/passwd` and `/etc/group`).

use std::io::Read;
use std::os::fd::AsFd;
use std::path::Path;

use serde_json::Value;

use crate::digest::Digest;
use crate::store::Store;
use crate::unpack::{self, sys, Compression, Layer};

/// Why a bundle could not be written.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("bundle {dir}: {what}")]
    Invalid { dir: String, what: String },
    #[error("bundle {dir}: {what}")]
    Io {
        dir: String,
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Layer(#[from] unpack::LayerError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// Writes `dir/rootfs` (layers applied again from the store's verified blobs) and
/// `dir/config.json` for the image whose manifest is `manifest`. Refuses to overwrite; on
/// failure nothing is left in `dir`.
pub fn write(store: &Store, manifest: &Digest, dir: &Path, name: &str) -> Result<(), BundleError> {
    let d = dir.display().to_string();
    let io = |what: &str| {
        let d = d.clone();
        let what = what.to_string();
        move |source| BundleError::Io {
            dir: d,
            what,
            source,
        }
    };
    if dir.join("rootfs").exists() || dir.join("config.json").exists() {
        return Err(BundleError::Invalid {
            dir: d,
            what: "rootfs or config.json already exists; refusing to overwrite".into(),
        });
    }
    std::fs::create_dir_all(dir).map_err(io("creating directory"))?;
    let m: Value =
        serde_json::from_slice(&store.read_blob(manifest)?).map_err(|e| BundleError::Invalid {
            dir: d.clone(),
            what: format!("stored manifest: {e}"),
        })?;
    let config_digest = m["config"]["digest"]
        .as_str()
        .and_then(|s| Digest::parse(s).ok())
        .ok_or_else(|| BundleError::Invalid {
            dir: d.clone(),
            what: "stored manifest has no config".into(),
        })?;
    let config: Value = serde_json::from_slice(&store.read_blob(&config_digest)?).map_err(|e| {
        BundleError::Invalid {
            dir: d.clone(),
            what: format!("image config: {e}"),
        }
    })?;

    let staging = tempfile::Builder::new()
        .prefix(".rootfs-")
        .tempdir_in(dir)
        .map_err(io("creating staging directory"))?;
    std::fs::set_permissions(
        staging.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .map_err(io("chmod rootfs"))?;
    let root = sys::open_root(staging.path()).map_err(io("opening rootfs"))?;
    let diff_ids = config["rootfs"]["diff_ids"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for (l, diff) in m["layers"].as_array().into_iter().flatten().zip(diff_ids) {
        let bad = || BundleError::Invalid {
            dir: d.clone(),
            what: format!("stored manifest has a bad layer: {l}"),
        };
        let layer = Layer {
            digest: l["digest"]
                .as_str()
                .and_then(|s| Digest::parse(s).ok())
                .ok_or_else(bad)?,
            size: l["size"].as_u64().ok_or_else(bad)?,
            compression: l["mediaType"]
                .as_str()
                .and_then(Compression::from_media_type)
                .ok_or_else(bad)?,
            diff_id: diff
                .as_str()
                .and_then(|s| Digest::parse(s).ok())
                .ok_or_else(bad)?,
        };
        let blob = std::fs::File::open(store.blob_path(&layer.digest))
            .map_err(io("opening layer blob"))?;
        unpack::apply_layer(
            root.as_fd(),
            &layer,
            std::io::BufReader::with_capacity(256 * 1024, blob),
        )?;
    }
    let spec = runtime_spec(&config, root.as_fd(), name);
    drop(root);
    let json = serde_json::to_vec_pretty(&spec).expect("spec serialises");
    crate::store::write_atomic(&dir.join("config.json"), &json).map_err(|e| {
        BundleError::Invalid {
            dir: d.clone(),
            what: e.to_string(),
        }
    })?;
    let staged = staging.keep();
    std::fs::rename(&staged, dir.join("rootfs")).map_err(|e| {
        let _ = std::fs::remove_dir_all(&staged);
        let _ = std::fs::remove_file(dir.join("config.json"));
        io("moving rootfs into place")(e)
    })?;
    Ok(())
}

/// The runtime spec for an image config: the default spec with the image's process.
pub fn runtime_spec(config: &Value, rootfs: std::os::fd::BorrowedFd<'_>, name: &str) -> Value {
    let mut spec =
        serde_json::to_value(oci_spec::runtime::Spec::default()).expect("default spec serialises");
    let c = &config["config"];
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().map(str::to_string))
            .collect()
    };
    let mut args = strings(&c["Entrypoint"]);
    args.extend(strings(&c["Cmd"]));
    if args.is_empty() {
        args.push("sh".into());
    }
    let mut env = strings(&c["Env"]);
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(
            0,
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
        );
    }
    let cwd = c["WorkingDir"]
        .as_str()
        .filter(|w| w.starts_with('/'))
        .unwrap_or("/")
        .to_string();
    let (uid, gid, groups) = resolve_user(c["User"].as_str().unwrap_or(""), rootfs);
    spec["process"]["args"] = serde_json::json!(args);
    spec["process"]["env"] = serde_json::json!(env);
    spec["process"]["cwd"] = serde_json::json!(cwd);
    spec["process"]["terminal"] = serde_json::json!(false);
    spec["process"]["user"] = serde_json::json!({"uid": uid, "gid": gid});
    if !groups.is_empty() {
        spec["process"]["user"]["additionalGids"] = serde_json::json!(groups);
    }
    spec["root"] = serde_json::json!({"path": "rootfs", "readonly": false});
    spec["annotations"] = serde_json::json!({"org.opencontainers.image.ref.name": name});
    spec
}

/// Reads a file of the rootfs, resolved inside it (the image's own symlinks cannot lead out).
fn read_in_root(root: std::os::fd::BorrowedFd<'_>, path: &str) -> String {
    let Ok(fd) = sys::open_in_root(root, path.as_bytes(), libc::O_RDONLY) else {
        return String::new();
    };
    let mut s = String::new();
    let _ = std::fs::File::from(fd).take(4 << 20).read_to_string(&mut s);
    s
}

/// `USER` as images write it (`name`, `uid`, `name:group`, `uid:gid`), through the image's
/// `/etc/passwd` and `/etc/group`. Unknown names fall back to 0, as runc's does for an empty
/// user; additional groups are those listing the user in `/etc/group`.
pub fn resolve_user(user: &str, root: std::os::fd::BorrowedFd<'_>) -> (u32, u32, Vec<u32>) {
    if user.is_empty() {
        return (0, 0, vec![]);
    }
    let passwd = read_in_root(root, "etc/passwd");
    let group = read_in_root(root, "etc/group");
    let (u, g) = user
        .split_once(':')
        .map_or((user, None), |(u, g)| (u, Some(g)));
    let entry = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() >= 4 && (f[0] == u || f[2] == u));
    let uid = u
        .parse()
        .ok()
        .or_else(|| entry.as_ref().and_then(|f| f[2].parse().ok()))
        .unwrap_or(0);
    let name = entry.as_ref().map(|f| f[0]).unwrap_or(u);
    let gid = match g {
        Some(g) => g
            .parse()
            .ok()
            .or_else(|| {
                group
                    .lines()
                    .map(|l| l.split(':').collect::<Vec<_>>())
                    .find(|f| f.len() >= 3 && f[0] == g)
                    .and_then(|f| f[2].parse().ok())
            })
            .unwrap_or(0),
        None => entry.as_ref().and_then(|f| f[3].parse().ok()).unwrap_or(0),
    };
    let groups = group
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= 4 && f[3].split(',').any(|m| m == name))
        .filter_map(|f| f[2].parse().ok())
        .filter(|g| *g != gid)
        .collect();
    (uid, gid, groups)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_resolve_through_the_images_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("etc/group"),
            "root:x:0:\napp:x:1001:\nwheel:x:10:app,other\nstaff:x:50:app\n",
        )
        .unwrap();
        let root = sys::open_root(dir.path()).unwrap();
        let r = |u| resolve_user(u, root.as_fd());
        assert_eq!(r(""), (0, 0, vec![]));
        assert_eq!(r("app"), (1000, 1001, vec![10, 50]));
        assert_eq!(r("1000"), (1000, 1001, vec![10, 50]));
        assert_eq!(r("app:wheel"), (1000, 10, vec![50]));
        assert_eq!(r("4242:4343"), (4242, 4343, vec![]));
        // A symlinked /etc/passwd pointing at the host's is resolved inside the rootfs.
        std::fs::remove_file(dir.path().join("etc/passwd")).unwrap();
        std::os::unix::fs::symlink("/../../../../etc/shadow", dir.path().join("etc/passwd"))
            .unwrap();
        assert_eq!(r("app").0, 0, "no host file is read");
    }

    #[test]
    fn process_follows_the_image_config() {
        let dir = tempfile::tempdir().unwrap();
        let root = sys::open_root(dir.path()).unwrap();
        let config = serde_json::json!({"config": {"Entrypoint": ["/bin/tini", "--"], "Cmd": ["app", "-v"], "Env": ["A=1"], "WorkingDir": "/srv", "User": "7:8"}});
        let s = runtime_spec(&config, root.as_fd(), "r");
        assert_eq!(
            s["process"]["args"],
            serde_json::json!(["/bin/tini", "--", "app", "-v"])
        );
        assert_eq!(
            s["process"]["env"][0].as_str().unwrap().split('=').next(),
            Some("PATH")
        );
        assert_eq!(s["process"]["cwd"], "/srv");
        assert_eq!(
            s["process"]["user"],
            serde_json::json!({"uid": 7, "gid": 8})
        );
        assert_eq!(s["root"]["path"], "rootfs");
    }
}
