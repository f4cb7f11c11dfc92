//! OCI images built with no network: tar layers written entry by entry (hostile names
//! included), compressed, hashed, and stored in an OCI image layout.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::{digest_of, sha256_hex};

/// The fixed mtime every fixture entry carries, so digests are reproducible.
pub const MTIME: u64 = 1_700_000_000;

pub mod media {
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
    pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
    pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
    pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
    pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";
    pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
}

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// Which family of media types an image uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Oci,
    Docker,
}

impl Style {
    fn manifest(self) -> &'static str {
        match self {
            Style::Oci => media::OCI_MANIFEST,
            Style::Docker => media::DOCKER_MANIFEST,
        }
    }
    fn index(self) -> &'static str {
        match self {
            Style::Oci => media::OCI_INDEX,
            Style::Docker => media::DOCKER_LIST,
        }
    }
    fn config(self) -> &'static str {
        match self {
            Style::Oci => media::OCI_CONFIG,
            Style::Docker => media::DOCKER_CONFIG,
        }
    }
    fn layer(self, c: Compression) -> &'static str {
        match (self, c) {
            (Style::Oci, Compression::None) => media::OCI_LAYER,
            (Style::Oci, Compression::Gzip) => media::OCI_LAYER_GZIP,
            (Style::Oci, Compression::Zstd) => media::OCI_LAYER_ZSTD,
            (Style::Docker, Compression::None) => media::DOCKER_LAYER,
            (Style::Docker, Compression::Gzip) => media::DOCKER_LAYER_GZIP,
            (Style::Docker, Compression::Zstd) => {
                panic!("Docker schema2 has no zstd layer media type; use Style::Oci")
            }
        }
    }
}

/// One tar entry. Paths are raw bytes and are written as given — `../x` and `/abs` included —
/// so hostile layers can be expressed.
#[derive(Debug, Clone)]
pub enum Entry {
    Dir {
        path: String,
        mode: u32,
        uid: u64,
        gid: u64,
    },
    File {
        path: String,
        mode: u32,
        uid: u64,
        gid: u64,
        data: Vec<u8>,
        xattrs: Vec<(String, Vec<u8>)>,
    },
    Symlink {
        path: String,
        target: String,
    },
    Hardlink {
        path: String,
        target: String,
    },
}

impl Entry {
    pub fn dir(path: &str) -> Self {
        Entry::Dir {
            path: path.into(),
            mode: 0o755,
            uid: 0,
            gid: 0,
        }
    }
    pub fn file(path: &str, data: &[u8]) -> Self {
        Entry::File {
            path: path.into(),
            mode: 0o644,
            uid: 0,
            gid: 0,
            data: data.to_vec(),
            xattrs: vec![],
        }
    }
    pub fn file_mode(path: &str, data: &[u8], mode: u32, uid: u64, gid: u64) -> Self {
        Entry::File {
            path: path.into(),
            mode,
            uid,
            gid,
            data: data.to_vec(),
            xattrs: vec![],
        }
    }
    pub fn file_xattr(path: &str, data: &[u8], key: &str, value: &[u8]) -> Self {
        Entry::File {
            path: path.into(),
            mode: 0o644,
            uid: 0,
            gid: 0,
            data: data.to_vec(),
            xattrs: vec![(key.into(), value.to_vec())],
        }
    }
    pub fn symlink(path: &str, target: &str) -> Self {
        Entry::Symlink {
            path: path.into(),
            target: target.into(),
        }
    }
    pub fn hardlink(path: &str, target: &str) -> Self {
        Entry::Hardlink {
            path: path.into(),
            target: target.into(),
        }
    }
    /// An OCI whiteout hiding `path` of lower layers.
    pub fn whiteout(path: &str) -> Self {
        let (dir, name) = match path.rsplit_once('/') {
            Some((d, n)) => (format!("{d}/"), n),
            None => (String::new(), path),
        };
        Entry::file(&format!("{dir}.wh.{name}"), b"")
    }
    /// An opaque-directory marker: the lower layers' contents of `dir` are hidden.
    pub fn opaque(dir: &str) -> Self {
        Entry::file(&format!("{}/.wh..wh..opq", dir.trim_end_matches('/')), b"")
    }
}

/// Writes entries to an uncompressed tar stream.
pub fn tar_bytes(entries: &[Entry]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        append(&mut b, e);
    }
    b.into_inner().expect("finish tar")
}

/// The header fields of one entry.
struct Fields<'a> {
    path: &'a str,
    kind: tar::EntryType,
    mode: u32,
    uid: u64,
    gid: u64,
    link: Option<&'a str>,
    data: &'a [u8],
    xattrs: &'a [(String, Vec<u8>)],
}

fn fields(e: &Entry) -> Fields<'_> {
    use tar::EntryType;
    let plain = |path, kind, mode, link| Fields {
        path,
        kind,
        mode,
        uid: 0,
        gid: 0,
        link,
        data: &[],
        xattrs: &[],
    };
    match e {
        Entry::Dir {
            path,
            mode,
            uid,
            gid,
        } => Fields {
            uid: *uid,
            gid: *gid,
            ..plain(path, EntryType::Directory, *mode, None)
        },
        Entry::File {
            path,
            mode,
            uid,
            gid,
            data,
            xattrs,
        } => Fields {
            path,
            kind: EntryType::Regular,
            mode: *mode,
            uid: *uid,
            gid: *gid,
            link: None,
            data,
            xattrs,
        },
        Entry::Symlink { path, target } => plain(path, EntryType::Symlink, 0o777, Some(target)),
        Entry::Hardlink { path, target } => plain(path, EntryType::Link, 0o644, Some(target)),
    }
}

fn append(b: &mut tar::Builder<Vec<u8>>, e: &Entry) {
    let Fields {
        path,
        kind,
        mode,
        uid,
        gid,
        link,
        data,
        xattrs,
    } = fields(e);
    // PAX records carry what the ustar header cannot: long names and xattrs.
    let mut pax: Vec<(String, Vec<u8>)> = xattrs
        .iter()
        .map(|(k, v)| (format!("SCHILY.xattr.{k}"), v.clone()))
        .collect();
    if path.len() > 100 {
        pax.push(("path".into(), path.as_bytes().to_vec()));
    }
    if let Some(l) = link.filter(|l| l.len() > 100) {
        pax.push(("linkpath".into(), l.as_bytes().to_vec()));
    }
    if !pax.is_empty() {
        b.append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
            .expect("append pax");
    }
    let mut h = tar::Header::new_ustar();
    // Raw name bytes, no validation: hostile fixtures need `..` and absolute names.
    let name = &path.as_bytes()[..path.len().min(100)];
    h.as_old_mut().name[..name.len()].copy_from_slice(name);
    if let Some(l) = link {
        let l = &l.as_bytes()[..l.len().min(100)];
        h.as_old_mut().linkname[..l.len()].copy_from_slice(l);
    }
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(uid);
    h.set_gid(gid);
    h.set_mtime(MTIME);
    h.set_size(data.len() as u64);
    h.set_cksum();
    b.append(&h, data).expect("append tar entry");
}

/// Compresses `tar` as asked.
pub fn compress(tar: &[u8], c: Compression) -> Vec<u8> {
    match c {
        Compression::None => tar.to_vec(),
        Compression::Gzip => {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            enc.write_all(tar).expect("gzip");
            enc.finish().expect("gzip finish")
        }
        Compression::Zstd => zstd::encode_all(tar, 3).expect("zstd"),
    }
}

/// A content descriptor as manifests and indexes carry it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
}

impl Descriptor {
    pub fn to_json(&self) -> Value {
        json!({"mediaType": self.media_type, "digest": self.digest, "size": self.size})
    }
    /// The hex part of the digest.
    pub fn hex(&self) -> &str {
        self.digest.trim_start_matches("sha256:")
    }
}

/// A built layer: its blob descriptor and its uncompressed digest.
#[derive(Debug, Clone)]
pub struct BuiltLayer {
    pub desc: Descriptor,
    pub diff_id: String,
    pub tar: Vec<u8>,
    pub blob: Vec<u8>,
}

/// Builds a layer blob from entries.
pub fn layer(entries: &[Entry], c: Compression, style: Style) -> BuiltLayer {
    let tar = tar_bytes(entries);
    let blob = compress(&tar, c);
    BuiltLayer {
        desc: Descriptor {
            media_type: style.layer(c).into(),
            digest: digest_of(&blob),
            size: blob.len() as u64,
        },
        diff_id: digest_of(&tar),
        tar,
        blob,
    }
}

/// An OCI image layout directory being written (`oci-layout`, `blobs/sha256/`, `index.json`).
#[derive(Debug)]
pub struct Layout {
    dir: PathBuf,
    refs: Vec<Value>,
}

impl Layout {
    /// Creates (or reuses) a layout at `dir`.
    pub fn create(dir: &Path) -> Self {
        fs::create_dir_all(dir.join("blobs/sha256")).expect("create layout");
        fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#)
            .expect("write oci-layout");
        Self {
            dir: dir.to_path_buf(),
            refs: vec![],
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file of a blob.
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        blob_path(&self.dir, digest)
    }

    /// Stores `data` under its digest and returns its descriptor.
    pub fn put(&self, media_type: &str, data: &[u8]) -> Descriptor {
        let desc = Descriptor {
            media_type: media_type.into(),
            digest: digest_of(data),
            size: data.len() as u64,
        };
        fs::write(self.blob_path(&desc.digest), data).expect("write blob");
        desc
    }

    /// Stores `data` under a digest it does not have (for hostile fixtures).
    pub fn put_as(&self, desc: &Descriptor, data: &[u8]) {
        fs::write(self.blob_path(&desc.digest), data).expect("write blob");
    }

    /// Adds `desc` to `index.json` under the tag `name`.
    pub fn tag(&mut self, desc: &Descriptor, name: &str) {
        let mut d = desc.to_json();
        d["annotations"] = json!({"org.opencontainers.image.ref.name": name});
        self.refs.push(d);
        self.write_index();
    }

    fn write_index(&self) {
        let index =
            json!({"schemaVersion": 2, "mediaType": media::OCI_INDEX, "manifests": self.refs});
        fs::write(
            self.dir.join("index.json"),
            serde_json::to_vec_pretty(&index).unwrap(),
        )
        .expect("write index.json");
    }
}

/// The file of a blob in the layout at `dir`.
pub fn blob_path(dir: &Path, digest: &str) -> PathBuf {
    dir.join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
}

/// A platform as image indexes name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Platform {
    pub fn new(os: &str, arch: &str, variant: Option<&str>) -> Self {
        Self {
            os: os.into(),
            architecture: arch.into(),
            variant: variant.map(Into::into),
        }
    }
    pub fn linux_amd64() -> Self {
        Self::new("linux", "amd64", None)
    }
    pub fn to_json(&self) -> Value {
        let mut v = json!({"os": self.os, "architecture": self.architecture});
        if let Some(var) = &self.variant {
            v["variant"] = json!(var);
        }
        v
    }
}

/// An image manifest built into a layout.
#[derive(Debug, Clone)]
pub struct BuiltImage {
    pub manifest: Descriptor,
    pub config: Descriptor,
    pub layers: Vec<BuiltLayer>,
    pub platform: Platform,
}

/// Builds config + manifest for `layers` (already built) and stores everything in `layout`.
/// `config_override` lets hostile fixtures tamper with the config (for example the diff_ids).
pub fn image(
    layout: &Layout,
    style: Style,
    platform: &Platform,
    layers: Vec<BuiltLayer>,
    config_override: impl FnOnce(&mut Value),
) -> BuiltImage {
    for l in &layers {
        layout.put(&l.desc.media_type, &l.blob);
    }
    let mut config = json!({
        "architecture": platform.architecture,
        "os": platform.os,
        "created": "2023-11-14T22:13:20Z",
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["/bin/sh"],
            "WorkingDir": "/"
        },
        "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>()},
        "history": layers.iter().enumerate().map(|(i, _)| json!({"created_by": format!("tinyo fixture layer {i}")})).collect::<Vec<_>>()
    });
    if let Some(v) = &platform.variant {
        config["variant"] = json!(v);
    }
    config_override(&mut config);
    let config_bytes = serde_json::to_vec(&config).unwrap();
    let config_desc = layout.put(style.config(), &config_bytes);
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": style.manifest(),
        "config": config_desc.to_json(),
        "layers": layers.iter().map(|l| l.desc.to_json()).collect::<Vec<_>>()
    });
    let manifest_desc = layout.put(style.manifest(), &serde_json::to_vec(&manifest).unwrap());
    BuiltImage {
        manifest: manifest_desc,
        config: config_desc,
        layers,
        platform: platform.clone(),
    }
}

/// Stores an index (OCI) or manifest list (Docker) over `entries` and returns its descriptor.
/// Each entry is a manifest descriptor with its platform.
pub fn index(layout: &Layout, style: Style, entries: &[(Descriptor, Platform)]) -> Descriptor {
    let manifests: Vec<Value> = entries
        .iter()
        .map(|(d, p)| {
            let mut v = d.to_json();
            v["platform"] = p.to_json();
            v
        })
        .collect();
    let index = json!({"schemaVersion": 2, "mediaType": style.index(), "manifests": manifests});
    layout.put(style.index(), &serde_json::to_vec(&index).unwrap())
}

/// Reads a blob of the layout at `dir`.
pub fn read_blob(dir: &Path, digest: &str) -> Vec<u8> {
    fs::read(blob_path(dir, digest))
        .unwrap_or_else(|e| panic!("read blob {digest} in {}: {e}", dir.display()))
}

/// The descriptor tagged `name` in the layout's `index.json`.
pub fn lookup_tag(dir: &Path, name: &str) -> Option<Descriptor> {
    let index: Value = serde_json::from_slice(&fs::read(dir.join("index.json")).ok()?).ok()?;
    index["manifests"].as_array()?.iter().find_map(|m| {
        (m["annotations"]["org.opencontainers.image.ref.name"] == name).then(|| Descriptor {
            media_type: m["mediaType"].as_str().unwrap_or_default().into(),
            digest: m["digest"].as_str().unwrap_or_default().into(),
            size: m["size"].as_u64().unwrap_or_default(),
        })
    })
}

/// The tar entries of the busybox rootfs at `root`, in a stable order (for a base layer).
pub fn entries_from_dir(root: &Path) -> Vec<Entry> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let mut names: Vec<_> = fs::read_dir(root.join(&rel))
            .expect("read_dir")
            .map(|e| e.expect("dir entry").file_name())
            .collect();
        names.sort();
        let mut subdirs = Vec::new();
        for name in names {
            let r = rel.join(&name);
            let p = root.join(&r);
            let meta = fs::symlink_metadata(&p).expect("lstat");
            let path = r.to_str().expect("utf-8 fixture path").to_string();
            let mode = meta.permissions().mode() & 0o7777;
            if meta.file_type().is_symlink() {
                let t = fs::read_link(&p).expect("readlink");
                out.push(Entry::symlink(&path, t.to_str().expect("utf-8 link")));
            } else if meta.is_dir() {
                out.push(Entry::Dir {
                    path: format!("{path}/"),
                    mode,
                    uid: meta.uid().into(),
                    gid: meta.gid().into(),
                });
                subdirs.push(r);
            } else {
                let data = fs::read(&p).expect("read file");
                out.push(Entry::file_mode(
                    &path,
                    &data,
                    mode,
                    meta.uid().into(),
                    meta.gid().into(),
                ));
            }
        }
        stack.extend(subdirs.into_iter().rev());
    }
    out
}

/// Hex digest helper re-exported for callers that deal in hex.
pub fn hex(data: &[u8]) -> String {
    sha256_hex(data)
}
