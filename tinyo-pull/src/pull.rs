//! Pulling an image: reference → registries.conf → manifest / index → this platform's
//! manifest → config → layers streamed into a staging rootfs → published into the store.
//!
//! A pull that fails for any reason leaves the store as it was: downloads live in `tmp/` until
//! every layer applied cleanly, then blobs, rootfs and ref are published under the store lock.

use std::io::Read;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use serde_json::Value;

use crate::client::{Client, ClientError, Credentials, Endpoint};
use crate::config::{self, Registries};
use crate::digest::{Digest, VerifyReader};
use crate::download::{Download, Progress, Quiet};
use crate::reference::{Reference, ReferenceError};
use crate::store::{self, Descriptor, Store, StoreError};
use crate::unpack::{self, sys, Compression, Layer, LayerError};

/// The largest image config accepted.
const MAX_CONFIG: u64 = 32 << 20;

/// A platform: `os/arch[/variant]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Platform {
    /// The platform this program runs on, with Go's architecture names as images use them.
    pub fn host() -> Self {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "powerpc64" => "ppc64le",
            "arm" => "arm",
            other => other,
        };
        Self {
            os: "linux".into(),
            architecture: arch.into(),
            variant: None,
        }
    }

    /// Parses `os/arch[/variant]`.
    pub fn parse(s: &str) -> Option<Self> {
        let mut it = s.split('/');
        let (os, arch) = (it.next()?, it.next()?);
        let variant = it.next().map(str::to_string);
        if os.is_empty() || arch.is_empty() || it.next().is_some() {
            return None;
        }
        Some(Self {
            os: os.into(),
            architecture: arch.into(),
            variant,
        })
    }

    /// Whether an index entry's `platform` object is this platform. A missing variant on
    /// arm64 means v8; when no variant is asked for, any variant matches.
    pub fn matches(&self, p: &Value) -> bool {
        let norm = |arch: &str, v: Option<&str>| -> Option<String> {
            match (arch, v) {
                ("arm64", None) => Some("v8".into()),
                (_, v) => v.map(str::to_string),
            }
        };
        p["os"] == self.os.as_str()
            && p["architecture"] == self.architecture.as_str()
            && (self.variant.is_none()
                || norm(&self.architecture, p["variant"].as_str())
                    == norm(&self.architecture, self.variant.as_deref()))
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// How to pull.
#[derive(Clone)]
pub struct Options {
    pub platform: Platform,
    /// `--creds`: used for every registry instead of the auth files.
    pub creds: Option<Credentials>,
    /// Auth files to search, most specific first.
    pub auth_files: Vec<PathBuf>,
    pub registries: Registries,
    /// `--cert-dir`: extra CA certificates for every registry (and TLS verification on).
    pub cert_dir: Option<PathBuf>,
    /// `--tls-verify`: force TLS verification on or off (default: on, except loopback and
    /// registries.conf `insecure` registries).
    pub tls_verify: Option<bool>,
    /// Concurrent layer downloads.
    pub jobs: usize,
    pub progress: Arc<dyn Progress>,
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("platform", &self.platform)
            .field("creds", &self.creds)
            .field("jobs", &self.jobs)
            .finish_non_exhaustive()
    }
}

impl Default for Options {
    fn default() -> Self {
        Self {
            platform: Platform::host(),
            creds: None,
            auth_files: config::auth_files(None),
            registries: Registries::default(),
            cert_dir: None,
            tls_verify: None,
            jobs: 3,
            progress: Arc::new(Quiet),
        }
    }
}

/// What a pull produced.
#[derive(Debug, Clone)]
pub struct Pulled {
    /// The full reference it is stored under (`docker.io/library/alpine:latest`).
    pub name: String,
    pub manifest: Digest,
    pub rootfs: PathBuf,
    /// Where it came from (`host/repository`, a mirror's when one served it).
    pub source: String,
    pub layers: usize,
    /// Compressed bytes downloaded (0 when everything was already stored).
    pub downloaded: u64,
    /// True when the store already had this exact image.
    pub up_to_date: bool,
}

/// Why a pull failed: the image, then the reason.
#[derive(Debug, thiserror::Error)]
#[error("{image}")]
pub struct PullError {
    pub image: String,
    #[source]
    pub kind: ErrorKind,
}

#[derive(Debug, thiserror::Error)]
pub enum ErrorKind {
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    #[error("registry {0} is blocked by registries.conf")]
    Blocked(String),
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("{0}")]
    Manifest(String),
    #[error(transparent)]
    Layer(#[from] LayerError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("no source had the image: {0}")]
    NotFound(String),
}

impl ErrorKind {
    /// Worth trying the next source for.
    fn try_next(&self) -> bool {
        match self {
            ErrorKind::Client(e) => {
                e.is_not_found()
                    || matches!(
                        e,
                        ClientError::Transport { .. } | ClientError::Status { .. }
                    )
            }
            ErrorKind::NotFound(_) => true,
            _ => false,
        }
    }
}

/// Pulls `input` into `store`.
pub fn pull(store: &Store, input: &str, opts: &Options) -> Result<Pulled, PullError> {
    let err = |kind: ErrorKind| PullError {
        image: input.to_string(),
        kind,
    };
    let reference = Reference::parse(input).map_err(|e| err(e.into()))?;
    let candidates: Vec<Reference> =
        if !reference.explicit_registry() && !opts.registries.unqualified_search.is_empty() {
            opts.registries
                .unqualified_search
                .iter()
                .filter_map(|r| Reference::parse(&format!("{r}/{}", reference.short_name())).ok())
                .collect()
        } else {
            vec![reference]
        };
    let mut failures = Vec::new();
    for r in &candidates {
        match pull_reference(store, r, opts) {
            Ok(p) => return Ok(p),
            Err(k) if k.try_next() && candidates.len() > 1 => {
                failures.push(format!("{r}: {}", crate::error_chain(&k)))
            }
            Err(k) => {
                return Err(PullError {
                    image: r.to_string(),
                    kind: k,
                })
            }
        }
    }
    Err(err(ErrorKind::NotFound(failures.join("; "))))
}

fn pull_reference(
    store: &Store,
    reference: &Reference,
    opts: &Options,
) -> Result<Pulled, ErrorKind> {
    let sources = opts
        .registries
        .sources(reference.registry(), reference.repository())
        .map_err(ErrorKind::Blocked)?;
    let mut failures = Vec::new();
    let last = sources.len() - 1;
    for (i, src) in sources.iter().enumerate() {
        let host = if src.host == crate::reference::DOCKER_HUB {
            crate::reference::DOCKER_HUB_HOST.to_string()
        } else {
            src.host.clone()
        };
        let mut endpoint = Endpoint::new(&host);
        endpoint.insecure |= src.insecure;
        if let Some(d) = &opts.cert_dir {
            endpoint.cert_dirs.push(d.clone());
            endpoint.insecure = false;
        }
        if let Some(v) = opts.tls_verify {
            endpoint.insecure = !v;
        }
        let creds = match &opts.creds {
            Some(c) => Some(c.clone()),
            None => config::credentials(&opts.auth_files, &src.host, &src.repository)?,
        };
        let result = Client::new(&endpoint, creds)
            .map_err(ErrorKind::from)
            .and_then(|client| {
                let source = format!("{}/{}", src.host, src.repository);
                fetch_and_unpack(store, reference, &client, &src.repository, &source, opts)
            });
        match result {
            Err(e) if i < last && (src.mirror || e.try_next()) => {
                failures.push(format!("{}: {}", src.host, crate::error_chain(&e)))
            }
            Err(e) if !failures.is_empty() => {
                return Err(ErrorKind::NotFound(format!(
                    "{}; {}: {}",
                    failures.join("; "),
                    src.host,
                    crate::error_chain(&e)
                )))
            }
            other => return other,
        }
    }
    unreachable!("the last source always returns")
}

fn manifest_err(what: impl Into<String>) -> ErrorKind {
    ErrorKind::Manifest(what.into())
}

fn is_index(media_type: &str, v: &Value) -> bool {
    matches!(
        media_type,
        "application/vnd.oci.image.index.v1+json"
            | "application/vnd.docker.distribution.manifest.list.v2+json"
    ) || (v["manifests"].is_array() && !v["layers"].is_array())
}

fn descriptor(v: &Value, what: &str) -> Result<(Digest, u64, String), ErrorKind> {
    let digest = v["digest"]
        .as_str()
        .ok_or_else(|| manifest_err(format!("{what} has no digest")))?;
    let digest = Digest::parse(digest).map_err(|e| manifest_err(format!("{what}: {e}")))?;
    let size = v["size"]
        .as_u64()
        .ok_or_else(|| manifest_err(format!("{what} has no size")))?;
    Ok((
        digest,
        size,
        v["mediaType"].as_str().unwrap_or_default().to_string(),
    ))
}

fn fetch_and_unpack(
    store: &Store,
    reference: &Reference,
    client: &Client,
    repo: &str,
    source: &str,
    opts: &Options,
) -> Result<Pulled, ErrorKind> {
    // The manifest, or the index and then this platform's manifest.
    let (body, header_type) = client.manifest(repo, reference.manifest_ref())?;
    let mut digest = Digest::of(&body);
    if let Some(pinned) = reference.digest() {
        if digest.as_str() != pinned {
            return Err(manifest_err(format!(
                "manifest has digest {digest}, but the reference pins {pinned}"
            )));
        }
    }
    let mut v: Value = serde_json::from_slice(&body)
        .map_err(|e| manifest_err(format!("manifest is not JSON: {e}")))?;
    let mut media_type = v["mediaType"]
        .as_str()
        .map(str::to_string)
        .unwrap_or(header_type);
    let mut body = body;
    let mut index = None;
    if v["schemaVersion"].as_u64() == Some(1) {
        return Err(manifest_err(
            "Docker schema 1 manifests are not supported (deprecated since 2017)",
        ));
    }
    if is_index(&media_type, &v) {
        let entries = v["manifests"].as_array().cloned().unwrap_or_default();
        let chosen = entries
            .iter()
            .find(|m| opts.platform.matches(&m["platform"]))
            .ok_or_else(|| {
                let have: Vec<String> = entries
                    .iter()
                    .filter(|m| m["platform"]["os"] != "unknown")
                    .map(|m| {
                        Platform {
                            os: m["platform"]["os"].as_str().unwrap_or("?").into(),
                            architecture: m["platform"]["architecture"]
                                .as_str()
                                .unwrap_or("?")
                                .into(),
                            variant: m["platform"]["variant"].as_str().map(Into::into),
                        }
                        .to_string()
                    })
                    .collect();
                manifest_err(format!(
                    "no manifest for platform {} in the index (it has: {})",
                    opts.platform,
                    have.join(", ")
                ))
            })?;
        let (child, size, _) = descriptor(chosen, "index entry")?;
        let (child_body, child_type) = client.manifest(repo, child.as_str())?;
        if child_body.len() as u64 != size || Digest::of(&child_body) != child {
            return Err(manifest_err(format!("manifest {child} from the index does not match its digest or size ({} bytes, descriptor says {size})", child_body.len())));
        }
        index = Some((digest, body, media_type));
        v = serde_json::from_slice(&child_body)
            .map_err(|e| manifest_err(format!("manifest {child} is not JSON: {e}")))?;
        media_type = v["mediaType"]
            .as_str()
            .map(str::to_string)
            .or(chosen["mediaType"].as_str().map(str::to_string))
            .unwrap_or(child_type);
        digest = child;
        body = child_body;
    }
    if !v["layers"].is_array() {
        return Err(manifest_err(format!(
            "{media_type:?} is not an image manifest"
        )));
    }
    let name = reference.to_string();
    let manifest_desc = Descriptor {
        media_type: media_type.clone(),
        digest: digest.to_string(),
        size: body.len() as u64,
        annotations: None,
        platform: None,
    };

    // Already stored? (Waiting first for a concurrent pull of the same image to finish.)
    let _image_lock = store.lock_image(&digest)?;
    if let Some(rootfs) = store.rootfs(&digest) {
        let _lock = store.lock()?;
        let up_to_date = store
            .refs()?
            .iter()
            .any(|r| r.name == name && r.manifest.digest == digest.as_str());
        if !up_to_date {
            store.set_ref(&name, &with_index(manifest_desc, index.as_ref()))?;
        }
        let layers = v["layers"].as_array().map_or(0, Vec::len);
        return Ok(Pulled {
            name,
            manifest: digest,
            rootfs,
            source: source.into(),
            layers,
            downloaded: 0,
            up_to_date,
        });
    }

    // The config: its diff_ids are what every layer is checked against.
    let (config_digest, config_size, _) = descriptor(&v["config"], "config")?;
    if config_size > MAX_CONFIG {
        return Err(manifest_err(format!(
            "config is {config_size} bytes, more than the {MAX_CONFIG} accepted"
        )));
    }
    let config = if store.has_blob(&config_digest, config_size) {
        store.read_blob(&config_digest)?
    } else {
        let blob = client.blob(repo, config_digest.as_str(), 0)?;
        let mut r = VerifyReader::new(blob, config_digest.clone(), config_size);
        let mut data = Vec::new();
        r.read_to_end(&mut data).map_err(|e| {
            manifest_err(format!(
                "config {config_digest}: {}",
                crate::error_chain(&e)
            ))
        })?;
        r.finish().map_err(|e| {
            manifest_err(format!(
                "config {config_digest}: {}",
                crate::error_chain(&e)
            ))
        })?;
        data
    };
    let cv: Value = serde_json::from_slice(&config)
        .map_err(|e| manifest_err(format!("config {config_digest} is not JSON: {e}")))?;
    let diff_ids: Vec<Digest> = cv["rootfs"]["diff_ids"]
        .as_array()
        .ok_or_else(|| manifest_err("config has no rootfs.diff_ids"))?
        .iter()
        .map(|d| {
            d.as_str()
                .and_then(|s| Digest::parse(s).ok())
                .ok_or_else(|| manifest_err(format!("config has an invalid diff_id {d}")))
        })
        .collect::<Result<_, _>>()?;
    let layer_values = v["layers"].as_array().cloned().unwrap_or_default();
    if layer_values.len() != diff_ids.len() {
        return Err(manifest_err(format!(
            "manifest has {} layers but the config lists {} diff_ids",
            layer_values.len(),
            diff_ids.len()
        )));
    }
    let mut layers = Vec::new();
    // Non-distributable ("foreign") layers may name where else to fetch them.
    let mut layer_urls: Vec<Vec<String>> = Vec::new();
    for (i, (l, diff_id)) in layer_values.iter().zip(diff_ids).enumerate() {
        layer_urls.push(
            l["urls"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|u| u.as_str().map(str::to_string))
                .collect(),
        );
        let (digest, size, mt) = descriptor(l, &format!("layer {i}"))?;
        let compression = Compression::from_media_type(&mt).ok_or_else(|| {
            manifest_err(format!("layer {digest}: unsupported media type {mt:?}"))
        })?;
        layers.push(Layer {
            digest,
            size,
            compression,
            diff_id,
        });
    }

    // Download (several at once) and apply (in order) into a staging rootfs.
    let staging = store.staging_dir()?;
    let rootfs = staging.path().join("rootfs");
    std::fs::create_dir(&rootfs).map_err(|e| StoreError::Io {
        path: rootfs.clone(),
        what: "creating rootfs",
        source: e,
    })?;
    std::fs::set_permissions(&rootfs, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .map_err(|e| StoreError::Io {
            path: rootfs.clone(),
            what: "chmod rootfs",
            source: e,
        })?;
    let root = sys::open_root(&rootfs).map_err(|e| StoreError::Io {
        path: rootfs.clone(),
        what: "opening rootfs",
        source: e,
    })?;
    let downloads: Vec<Download> = layers
        .iter()
        .zip(&layer_urls)
        .enumerate()
        .map(|(i, (l, urls))| Download::new(i, l.digest.clone(), l.size, urls.clone()))
        .collect();
    let abort = AtomicBool::new(false);
    let next = AtomicUsize::new(0);
    let outcomes: Vec<std::sync::Mutex<Option<Result<(), LayerError>>>> =
        layers.iter().map(|_| std::sync::Mutex::new(None)).collect();
    // Layers inflate on their own threads (two at a time, each into a bounded queue) and are
    // applied here in order, where the diff_id is also hashed: the stages use both cores.
    let mut receivers = Vec::new();
    let mut senders = Vec::new();
    for _ in &layers {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(INFLATE_QUEUE);
        senders.push(tx);
        receivers.push(rx);
    }
    // Spent chunks go back to a pool, so no chunk is allocated (and faulted in) twice.
    let pool: std::sync::Mutex<Vec<Vec<u8>>> = std::sync::Mutex::new(Vec::new());
    let senders: Vec<std::sync::Mutex<Option<std::sync::mpsc::SyncSender<Vec<u8>>>>> = senders
        .into_iter()
        .map(|t| std::sync::Mutex::new(Some(t)))
        .collect();
    let next_inflate = AtomicUsize::new(0);
    let applied: Result<(), ErrorKind> = std::thread::scope(|s| {
        for _ in 0..opts.jobs.clamp(1, 8).min(downloads.len()) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(dl) = downloads.get(i) else { break };
                if abort.load(Ordering::Relaxed) {
                    // Nobody may wait forever for a download that will not happen.
                    dl.cancel();
                    continue;
                }
                dl.run(client, repo, store, opts.progress.as_ref(), &abort);
            });
        }
        // Two inflaters: the next layer inflates (into its bounded queue) while this one does.
        for _ in 0..INFLATERS.min(layers.len()) {
            let (layers, downloads, outcomes, abort, senders, pool, next_inflate) = (
                &layers,
                &downloads,
                &outcomes,
                &abort,
                &senders,
                &pool,
                &next_inflate,
            );
            s.spawn(move || loop {
                let i = next_inflate.fetch_add(1, Ordering::Relaxed);
                let Some(layer) = layers.get(i) else { break };
                let Some(tx) = senders[i].lock().expect("sender").take() else {
                    break;
                };
                let outcome = if abort.load(Ordering::Relaxed) {
                    Err(LayerError::Stream {
                        layer: layer.digest.clone(),
                        what: "inflating",
                        source: std::io::Error::other("aborted"),
                    })
                } else {
                    inflate_into(layer, &downloads[i], &tx, pool, abort)
                };
                if outcome.is_err() {
                    abort.store(true, Ordering::Relaxed);
                }
                *outcomes[i].lock().expect("outcome") = Some(outcome);
                drop(tx);
            });
        }
        for (i, (layer, rx)) in layers.iter().zip(receivers).enumerate() {
            let mut tar = crate::digest::HashReader::new(ChannelReader::new(rx, &pool));
            let applied = unpack::apply_tar(root.as_fd(), &layer.digest, &mut tar).and_then(|_| {
                // The diff_id is hashed here, on the applier's thread, to balance the inflater's.
                let (actual, _) = tar.finish().map_err(|source| LayerError::Stream {
                    layer: layer.digest.clone(),
                    what: "reading the layer stream",
                    source,
                })?;
                if actual != layer.diff_id {
                    return Err(LayerError::DiffId {
                        layer: layer.digest.clone(),
                        expected: layer.diff_id.clone(),
                        actual,
                    });
                }
                Ok(())
            });
            // The stream ended: the inflater has recorded its outcome before hanging up.
            let inflated = outcomes[i].lock().expect("outcome").take();
            let failure = match (applied, inflated) {
                (_, Some(Err(e))) => Some(e),
                (Err(e), _) => Some(e),
                (Ok(_), Some(Ok(()))) => None,
                (Ok(_), None) => Some(LayerError::Stream {
                    layer: layer.digest.clone(),
                    what: "inflating",
                    source: std::io::Error::other("the layer stream ended early"),
                }),
            };
            if let Some(e) = failure {
                abort.store(true, Ordering::Relaxed);
                return Err(explain(e, &layers, &downloads, &outcomes));
            }
        }
        Ok(())
    });
    applied?;
    drop(root);

    // Publish: blobs, then the rootfs, then the ref — all under the lock.
    let _lock = store.lock()?;
    let mut downloaded = 0;
    for dl in &downloads {
        if let Some(temp) = dl.take_temp() {
            downloaded += dl.size;
            store.commit_blob(temp, &dl.digest)?;
        }
    }
    store.put_blob(&config_digest, &config)?;
    store.put_blob(&digest, &body)?;
    if let Some((d, b, _)) = &index {
        store.put_blob(d, b)?;
    }
    let rootfs = store.publish_image(staging, &digest)?;
    store.set_ref(&name, &with_index(manifest_desc, index.as_ref()))?;
    Ok(Pulled {
        name,
        manifest: digest,
        rootfs,
        source: source.into(),
        layers: layers.len(),
        downloaded,
        up_to_date: false,
    })
}

/// The most telling error once a pipeline stage failed: a download's own failure beats the
/// stream error it caused, and any real failure beats the "aborted" of the stages it stopped.
fn explain(
    e: LayerError,
    layers: &[Layer],
    downloads: &[Download],
    outcomes: &[std::sync::Mutex<Option<Result<(), LayerError>>>],
) -> ErrorKind {
    let aborted = |why: &str| why == "aborted";
    let is_abort = |e: &LayerError| matches!(e, LayerError::Stream { source, .. } if source.to_string() == "aborted" || source.to_string().ends_with("failed: aborted"));
    for (layer, dl) in layers.iter().zip(downloads) {
        if let Some(why) = dl.error().filter(|w| !aborted(w)) {
            return manifest_err(format!("layer {}: {why}", layer.digest));
        }
    }
    if !is_abort(&e) {
        return ErrorKind::Layer(e);
    }
    for o in outcomes {
        if let Some(Err(other)) = o.lock().expect("outcome").take() {
            if !is_abort(&other) {
                return ErrorKind::Layer(other);
            }
        }
    }
    ErrorKind::Layer(e)
}

/// Chunks of inflated data queued per layer between its inflater and the applier (128 KiB
/// each): how far the next layer's inflater may run ahead (8 MiB).
const INFLATE_QUEUE: usize = 64;
/// Layers inflated at once.
const INFLATERS: usize = 2;

/// Inflates one downloaded layer into `tx` in chunks (reusing the chunks the applier returns).
fn inflate_into(
    layer: &Layer,
    dl: &Download,
    tx: &std::sync::mpsc::SyncSender<Vec<u8>>,
    pool: &std::sync::Mutex<Vec<Vec<u8>>>,
    abort: &AtomicBool,
) -> Result<(), LayerError> {
    const CHUNK: usize = 128 * 1024;
    let stream = |what| {
        let layer = layer.digest.clone();
        move |source| LayerError::Stream {
            layer,
            what,
            source,
        }
    };
    let mut r =
        unpack::inflater(layer.compression, dl.reader()).map_err(stream("starting to inflate"))?;
    loop {
        if abort.load(Ordering::Relaxed) {
            return Err(stream("inflating")(std::io::Error::other("aborted")));
        }
        let mut chunk = pool.lock().expect("pool").pop().unwrap_or_default();
        chunk.resize(CHUNK, 0);
        let n = match r.read(&mut chunk) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(stream("inflating")(e)),
        };
        chunk.truncate(n);
        if tx.send(chunk).is_err() {
            return Err(stream("inflating")(std::io::Error::other(
                "the applier stopped",
            )));
        }
    }
}

/// Reads the chunks an inflater sends; ends when it hangs up.
struct ChannelReader<'a> {
    rx: std::sync::mpsc::Receiver<Vec<u8>>,
    pool: &'a std::sync::Mutex<Vec<Vec<u8>>>,
    chunk: Vec<u8>,
    pos: usize,
}

impl<'a> ChannelReader<'a> {
    fn new(
        rx: std::sync::mpsc::Receiver<Vec<u8>>,
        pool: &'a std::sync::Mutex<Vec<Vec<u8>>>,
    ) -> Self {
        Self {
            rx,
            pool,
            chunk: Vec::new(),
            pos: 0,
        }
    }
}

impl Read for ChannelReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.chunk.len() {
            match self.rx.recv() {
                Ok(c) => {
                    let spent = std::mem::replace(&mut self.chunk, c);
                    if spent.capacity() > 0 {
                        self.pool.lock().expect("pool").push(spent);
                    }
                    self.pos = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len() - self.pos);
        buf[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

fn with_index(mut d: Descriptor, index: Option<&(Digest, Vec<u8>, String)>) -> Descriptor {
    if let Some((idx, _, _)) = index {
        d.annotations
            .get_or_insert_with(Default::default)
            .insert(store::INDEX_DIGEST.into(), idx.to_string());
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn platforms_parse_and_match_variants() {
        let p = Platform::parse("linux/arm64/v8").unwrap();
        assert!(
            p.matches(&json!({"os": "linux", "architecture": "arm64"})),
            "arm64 defaults to v8"
        );
        assert!(p.matches(&json!({"os": "linux", "architecture": "arm64", "variant": "v8"})));
        assert!(!p.matches(&json!({"os": "linux", "architecture": "arm", "variant": "v7"})));
        let any = Platform::parse("linux/arm64").unwrap();
        assert!(any.matches(&json!({"os": "linux", "architecture": "arm64", "variant": "v8"})));
        assert!(!Platform::host().matches(&json!({"os": "unknown", "architecture": "unknown"})));
        assert!(Platform::parse("linux").is_none());
        assert!(Platform::parse("linux/amd64/v2/x").is_none());
        assert_eq!(
            Platform::parse("linux/arm/v7").unwrap().to_string(),
            "linux/arm/v7"
        );
    }
}
