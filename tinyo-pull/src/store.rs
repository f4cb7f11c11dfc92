//! The image store: an OCI image layout (readable by skopeo's and umoci's `oci:` transport)
//! plus the unpacked rootfs of every pulled image.
//!
//! ```text
//! ROOT/oci-layout, ROOT/index.json     OCI layout; refs are full references (docker.io/library/alpine:latest)
//! ROOT/blobs/sha256/<hex>              verified blobs, shared by all images
//! ROOT/images/<manifest hex>/rootfs    unpacked rootfs (a lower dir for overlayfs)
//! ROOT/tmp/                            downloads and staging; never read as content
//! ROOT/lock                            flock: index.json updates, publishing, garbage collection
//! ROOT/locks/<manifest hex>            flock: one pull of an image at a time (no duplicate work)
//! ```
//!
//! Nothing becomes visible unverified: blobs are written to `tmp/` and renamed into `blobs/`
//! only after their size and digest check; a rootfs is renamed into `images/` only after every
//! layer applied cleanly; `index.json` is replaced by rename.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::digest::Digest;

/// The annotation holding a ref's name in `index.json`.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Why a store operation failed; each names the path involved.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store {path}: {what}")]
    Io {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("store {path}: index.json is corrupt")]
    Index {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

fn io_err(path: &Path, what: &'static str) -> impl FnOnce(io::Error) -> StoreError {
    let path = path.to_path_buf();
    move |source| StoreError::Io { path, what, source }
}

/// A content descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Descriptor {
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<std::collections::BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<serde_json::Value>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Index {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    #[serde(rename = "mediaType", default, skip_serializing_if = "Option::is_none")]
    media_type: Option<String>,
    manifests: Vec<Descriptor>,
}

/// An image the store holds: its ref name and manifest descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    pub name: String,
    pub manifest: Descriptor,
}

/// An open store.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

/// An exclusive lock on the store, released on drop.
#[derive(Debug)]
pub struct Lock {
    _file: File,
    /// A per-image lock file is removed when released, so the store keeps no trace of it.
    remove: Option<PathBuf>,
}

impl Drop for Lock {
    fn drop(&mut self) {
        // Unlinked while still held: a waiter then gets the lock on the old file and finds
        // the image done (or does the work itself); publishing stays under the store lock.
        if let Some(p) = self.remove.take() {
            let _ = fs::remove_file(p);
        }
    }
}

impl Store {
    /// Opens the store at `root`, creating an empty layout if there is none.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let root = root.into();
        for d in ["blobs/sha256", "images", "tmp", "locks"] {
            let p = root.join(d);
            fs::create_dir_all(&p).map_err(io_err(&p, "creating directory"))?;
        }
        let store = Self { root };
        let layout = store.root.join("oci-layout");
        if !layout.exists() {
            write_atomic(&layout, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        }
        if !store.root.join("index.json").exists() {
            let _lock = store.lock()?;
            if !store.root.join("index.json").exists() {
                store.write_index(&[])?;
            }
        }
        Ok(store)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Takes the store lock (blocking until it is free).
    pub fn lock(&self) -> Result<Lock, StoreError> {
        self.lock_file(self.root.join("lock"), false)
    }

    /// Takes the lock of one image, held while it is downloaded and unpacked, so a concurrent
    /// pull of the same image waits and then finds it done instead of doing the work again.
    pub fn lock_image(&self, manifest: &Digest) -> Result<Lock, StoreError> {
        self.lock_file(self.root.join("locks").join(manifest.hex()), true)
    }

    fn lock_file(&self, path: PathBuf, remove: bool) -> Result<Lock, StoreError> {
        let file = File::options()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_err(&path, "opening lock file"))?;
        // SAFETY: flock on a valid fd; the lock lives as long as the file.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(io_err(&path, "locking")(io::Error::last_os_error()));
        }
        Ok(Lock {
            _file: file,
            remove: remove.then_some(path),
        })
    }

    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(d.hex())
    }

    /// Whether a blob is present with the expected size (its digest was checked when stored).
    pub fn has_blob(&self, d: &Digest, size: u64) -> bool {
        fs::metadata(self.blob_path(d)).is_ok_and(|m| m.len() == size)
    }

    /// Reads a blob and checks its digest again (for small JSON blobs: manifests, configs).
    pub fn read_blob(&self, d: &Digest) -> Result<Vec<u8>, StoreError> {
        let path = self.blob_path(d);
        let data = fs::read(&path).map_err(io_err(&path, "reading blob"))?;
        if Digest::of(&data) != *d {
            return Err(io_err(&path, "blob does not match its digest")(
                io::Error::from(io::ErrorKind::InvalidData),
            ));
        }
        Ok(data)
    }

    /// Stores `data`, which must have digest `d` (checked), atomically.
    pub fn put_blob(&self, d: &Digest, data: &[u8]) -> Result<(), StoreError> {
        let path = self.blob_path(d);
        if Digest::of(data) != *d {
            return Err(io_err(
                &path,
                "refusing to store a blob under a digest it does not have",
            )(io::Error::from(io::ErrorKind::InvalidData)));
        }
        write_atomic(&path, data)
    }

    /// A new temporary file in `tmp/` (for a download), removed on drop unless persisted.
    pub fn temp_file(&self) -> Result<tempfile::NamedTempFile, StoreError> {
        let dir = self.root.join("tmp");
        tempfile::Builder::new()
            .prefix("blob-")
            .tempfile_in(&dir)
            .map_err(io_err(&dir, "creating temporary file"))
    }

    /// Moves a verified download into `blobs/`.
    pub fn commit_blob(&self, file: tempfile::NamedTempFile, d: &Digest) -> Result<(), StoreError> {
        let path = self.blob_path(d);
        file.as_file()
            .sync_all()
            .map_err(io_err(&path, "syncing blob"))?;
        file.persist(&path)
            .map_err(|e| io_err(&path, "moving blob into place")(e.error))?;
        Ok(())
    }

    /// A new staging directory in `tmp/`, removed on drop unless renamed away.
    pub fn staging_dir(&self) -> Result<tempfile::TempDir, StoreError> {
        let dir = self.root.join("tmp");
        tempfile::Builder::new()
            .prefix("unpack-")
            .tempdir_in(&dir)
            .map_err(io_err(&dir, "creating staging directory"))
    }

    /// The directory of an unpacked image (its `rootfs/` is inside).
    pub fn image_dir(&self, manifest: &Digest) -> PathBuf {
        self.root.join("images").join(manifest.hex())
    }

    /// The unpacked rootfs of an image, if present.
    pub fn rootfs(&self, manifest: &Digest) -> Option<PathBuf> {
        let p = self.image_dir(manifest).join("rootfs");
        p.is_dir().then_some(p)
    }

    /// Publishes a fully applied staging directory (containing `rootfs/`) as the image's.
    /// Call with the lock held.
    pub fn publish_image(
        &self,
        staging: tempfile::TempDir,
        manifest: &Digest,
    ) -> Result<PathBuf, StoreError> {
        let dest = self.image_dir(manifest);
        if dest.join("rootfs").is_dir() {
            return Ok(dest.join("rootfs")); // someone else finished first; ours is dropped
        }
        let src = staging.keep();
        fs::rename(&src, &dest).map_err(|e| {
            let _ = fs::remove_dir_all(&src);
            io_err(&dest, "publishing unpacked image")(e)
        })?;
        Ok(dest.join("rootfs"))
    }

    /// Every ref in `index.json`.
    pub fn refs(&self) -> Result<Vec<ImageRef>, StoreError> {
        Ok(self
            .read_index()?
            .manifests
            .into_iter()
            .filter_map(|d| {
                let name = d.annotations.as_ref()?.get(REF_NAME)?.clone();
                Some(ImageRef { name, manifest: d })
            })
            .collect())
    }

    /// Points `name` at `manifest` (replacing an older entry). Call with the lock held.
    pub fn set_ref(&self, name: &str, manifest: &Descriptor) -> Result<(), StoreError> {
        let mut index = self.read_index()?;
        index.manifests.retain(|d| {
            d.annotations
                .as_ref()
                .and_then(|a| a.get(REF_NAME))
                .map(String::as_str)
                != Some(name)
        });
        let mut d = manifest.clone();
        d.annotations
            .get_or_insert_with(Default::default)
            .insert(REF_NAME.into(), name.into());
        index.manifests.push(d);
        self.write_index(&index.manifests)
    }

    /// Removes the ref `name`; false if there was none. Call with the lock held.
    pub fn remove_ref(&self, name: &str) -> Result<bool, StoreError> {
        let mut index = self.read_index()?;
        let before = index.manifests.len();
        index.manifests.retain(|d| {
            d.annotations
                .as_ref()
                .and_then(|a| a.get(REF_NAME))
                .map(String::as_str)
                != Some(name)
        });
        let removed = index.manifests.len() != before;
        if removed {
            self.write_index(&index.manifests)?;
        }
        Ok(removed)
    }

    /// Removes blobs and unpacked images no ref reaches, and stale temporary files. Call with
    /// the lock held. Returns how many blobs and images were removed.
    pub fn gc(&self) -> Result<(usize, usize), StoreError> {
        let mut keep_blobs: HashSet<String> = HashSet::new();
        let mut keep_images: HashSet<String> = HashSet::new();
        for r in self.refs()? {
            let Ok(d) = Digest::parse(&r.manifest.digest) else {
                continue;
            };
            keep_images.insert(d.hex().to_string());
            keep_blobs.insert(d.hex().to_string());
            let Ok(bytes) = self.read_blob(&d) else {
                continue;
            };
            let Ok(m) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
                continue;
            };
            for b in
                std::iter::once(&m["config"]).chain(m["layers"].as_array().into_iter().flatten())
            {
                if let Some(h) = b["digest"].as_str().and_then(|s| s.strip_prefix("sha256:")) {
                    keep_blobs.insert(h.to_string());
                }
            }
            // The index a ref was chosen from is kept too, when recorded.
            if let Some(idx) = r
                .manifest
                .annotations
                .as_ref()
                .and_then(|a| a.get(INDEX_DIGEST))
            {
                if let Some(h) = idx.strip_prefix("sha256:") {
                    keep_blobs.insert(h.to_string());
                }
            }
        }
        let remove_unkept =
            |dir: PathBuf, keep: &HashSet<String>, dirs: bool| -> Result<usize, StoreError> {
                let mut n = 0;
                for e in fs::read_dir(&dir).map_err(io_err(&dir, "listing"))? {
                    let e = e.map_err(io_err(&dir, "listing"))?;
                    if keep.contains(&*e.file_name().to_string_lossy()) {
                        continue;
                    }
                    let p = e.path();
                    if dirs {
                        fs::remove_dir_all(&p)
                    } else {
                        fs::remove_file(&p)
                    }
                    .map_err(io_err(&p, "removing"))?;
                    n += 1;
                }
                Ok(n)
            };
        let blobs = remove_unkept(self.root.join("blobs/sha256"), &keep_blobs, false)?;
        let images = remove_unkept(self.root.join("images"), &keep_images, true)?;
        Ok((blobs, images))
    }

    fn read_index(&self) -> Result<Index, StoreError> {
        let path = self.root.join("index.json");
        let data = fs::read(&path).map_err(io_err(&path, "reading"))?;
        serde_json::from_slice(&data).map_err(|source| StoreError::Index { path, source })
    }

    fn write_index(&self, manifests: &[Descriptor]) -> Result<(), StoreError> {
        let index = Index {
            schema_version: 2,
            media_type: Some("application/vnd.oci.image.index.v1+json".into()),
            manifests: manifests.to_vec(),
        };
        let data = serde_json::to_vec_pretty(&index).expect("index serialises");
        write_atomic(&self.root.join("index.json"), &data)
    }
}

/// Annotation recording the digest of the index a platform manifest was chosen from.
pub const INDEX_DIGEST: &str = "io.tinyo.image.index.digest";

/// Writes `data` to `path` by temp file + fsync + rename.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<(), StoreError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .map_err(io_err(dir, "creating temporary file"))?;
    tmp.write_all(data).map_err(io_err(path, "writing"))?;
    tmp.as_file().sync_all().map_err(io_err(path, "syncing"))?;
    tmp.persist(path)
        .map_err(|e| io_err(path, "renaming into place")(e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desc(data: &[u8]) -> (Digest, Descriptor) {
        let d = Digest::of(data);
        let desc = Descriptor {
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            digest: d.to_string(),
            size: data.len() as u64,
            annotations: None,
            platform: None,
        };
        (d, desc)
    }

    #[test]
    fn refs_are_set_replaced_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        assert!(s.refs().unwrap().is_empty());
        let (da, a) = desc(br#"{"a":1}"#);
        let (_, b) = desc(br#"{"b":1}"#);
        s.put_blob(&da, br#"{"a":1}"#).unwrap();
        s.set_ref("docker.io/library/x:1", &a).unwrap();
        s.set_ref("docker.io/library/x:1", &b).unwrap();
        s.set_ref("docker.io/library/y:1", &a).unwrap();
        let refs = s.refs().unwrap();
        assert_eq!(refs.len(), 2);
        assert_eq!(refs[0].manifest.digest, b.digest);
        assert!(s.remove_ref("docker.io/library/x:1").unwrap());
        assert!(!s.remove_ref("docker.io/library/x:1").unwrap());
        // Reopening keeps the index.
        assert_eq!(Store::open(dir.path()).unwrap().refs().unwrap().len(), 1);
    }

    #[test]
    fn put_blob_refuses_a_wrong_digest_and_read_blob_rechecks() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let d = Digest::of(b"right");
        assert!(s.put_blob(&d, b"wrong").is_err());
        assert!(!s.blob_path(&d).exists());
        s.put_blob(&d, b"right").unwrap();
        assert!(s.has_blob(&d, 5));
        fs::write(s.blob_path(&d), b"tampr").unwrap();
        assert!(s.read_blob(&d).is_err());
    }

    #[test]
    fn gc_keeps_what_refs_reach() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let layer = b"layer bytes";
        let dl = Digest::of(layer);
        s.put_blob(&dl, layer).unwrap();
        let manifest =
            format!(r#"{{"config":{{"digest":"{dl}"}},"layers":[{{"digest":"{dl}"}}]}}"#);
        let (dm, m) = desc(manifest.as_bytes());
        s.put_blob(&dm, manifest.as_bytes()).unwrap();
        let stray = Digest::of(b"stray");
        s.put_blob(&stray, b"stray").unwrap();
        fs::create_dir_all(s.image_dir(&dm).join("rootfs")).unwrap();
        fs::create_dir_all(s.image_dir(&stray).join("rootfs")).unwrap();
        s.set_ref("r", &m).unwrap();
        assert_eq!(s.gc().unwrap(), (1, 1));
        assert!(s.has_blob(&dl, layer.len() as u64) && s.rootfs(&dm).is_some());
        assert!(!s.blob_path(&stray).exists() && s.rootfs(&stray).is_none());
        s.remove_ref("r").unwrap();
        assert_eq!(s.gc().unwrap(), (2, 1));
    }
}
