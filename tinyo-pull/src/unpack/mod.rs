//! Applying image layers to a rootfs, safely.
//!
//! A layer blob streams through one pass: size + digest check of the compressed bytes →
//! inflate (gzip, multi-member; zstd; or none) → digest of the tar stream (the diff_id) → the
//! applier, which writes each entry with fd-relative syscalls ([`sys`]).
//!
//! # Policy on hostile content
//! - Every parent path is resolved with `openat2(RESOLVE_IN_ROOT)`: symlinks (including ones an
//!   earlier layer planted) and absolute names resolve *inside* the rootfs, as they would for the
//!   container. The last component is never followed.
//! - Absolute entry names are taken relative to the rootfs (as every tar does). Names with a `..`
//!   component are refused: no legitimate image needs them.
//! - Hardlink targets are resolved inside the rootfs and must already exist there; a hardlink can
//!   never reach a host file. A file entry replaces whatever is at its name (unlink, then create
//!   with `O_EXCL`), so it never writes through an earlier link.
//! - Character and block device nodes are not created (counted in [`Stats::devices_skipped`]):
//!   the runtime provides `/dev`. FIFOs are created.
//! - Whiteouts (`.wh.NAME`) and opaque markers (`.wh..wh..opq`) hide lower layers only; what the
//!   same layer adds survives them.
//! - Ownership is applied when running as root; modes (setuid/setgid/sticky included), xattrs
//!   (`SCHILY.xattr.*`, including `security.capability`) and mtimes always.

pub mod sys;

use std::collections::HashSet;
use std::ffi::CString;
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use crate::digest::{Digest, HashReader, VerifyError, VerifyReader};

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    /// From a layer media type (OCI or Docker schema2), `None` for unknown types.
    pub fn from_media_type(mt: &str) -> Option<Self> {
        match mt {
            "application/vnd.oci.image.layer.v1.tar"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar"
            | "application/vnd.docker.image.rootfs.diff.tar" => Some(Self::None),
            "application/vnd.oci.image.layer.v1.tar+gzip"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
            | "application/vnd.docker.image.rootfs.diff.tar.gzip"
            | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => Some(Self::Gzip),
            "application/vnd.oci.image.layer.v1.tar+zstd"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd" => Some(Self::Zstd),
            _ => None,
        }
    }
}

/// What is known about a layer before it is applied.
#[derive(Debug, Clone)]
pub struct Layer {
    pub digest: Digest,
    pub size: u64,
    pub compression: Compression,
    /// The config's `rootfs.diff_ids` entry for this layer.
    pub diff_id: Digest,
}

/// Why a layer could not be applied. Every variant names the layer, and entry errors the path.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error("layer {layer}: entry {path:?}: {reason}")]
    Entry {
        layer: Digest,
        path: String,
        reason: String,
        #[source]
        source: Option<io::Error>,
    },
    #[error("layer {layer}: {what}")]
    Stream {
        layer: Digest,
        what: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("layer {layer}: the blob does not match its descriptor")]
    Blob {
        layer: Digest,
        #[source]
        source: VerifyError,
    },
    #[error("layer {layer}: uncompressed content has digest {actual}, but the image config says {expected}")]
    DiffId {
        layer: Digest,
        expected: Digest,
        actual: Digest,
    },
}

/// What applying a layer did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub entries: u64,
    pub whiteouts: u64,
    pub devices_skipped: u64,
    pub xattrs_skipped: u64,
    /// Uncompressed bytes of the tar stream.
    pub tar_bytes: u64,
}

/// Streams one layer blob into the rootfs `root`: verifies size and digest of the blob and the
/// diff_id of its content, applying entries as they arrive. On error the rootfs is left
/// partially modified: callers apply into a staging directory and discard it on failure.
pub fn apply_layer(
    root: BorrowedFd<'_>,
    layer: &Layer,
    blob: impl Read,
) -> Result<Stats, LayerError> {
    let mut verify = VerifyReader::new(blob, layer.digest.clone(), layer.size);
    let (stats, diff_id) = apply_stream(root, layer, &mut verify)?;
    verify.finish().map_err(|source| LayerError::Blob {
        layer: layer.digest.clone(),
        source,
    })?;
    check_diff_id(layer, diff_id)?;
    Ok(stats)
}

/// Like [`apply_layer`] for a blob stream whose size and digest the caller verifies (a
/// [`crate::download::TailReader`] fails instead of ending when they do not match); the
/// diff_id is still checked here.
pub fn apply_verified_layer(
    root: BorrowedFd<'_>,
    layer: &Layer,
    blob: impl Read,
) -> Result<Stats, LayerError> {
    let (stats, diff_id) = apply_stream(root, layer, blob)?;
    check_diff_id(layer, diff_id)?;
    Ok(stats)
}

fn check_diff_id(layer: &Layer, actual: Digest) -> Result<(), LayerError> {
    if actual != layer.diff_id {
        return Err(LayerError::DiffId {
            layer: layer.digest.clone(),
            expected: layer.diff_id.clone(),
            actual,
        });
    }
    Ok(())
}

/// Compressed bytes read at a time.
const INPUT_BUFFER: usize = 256 * 1024;

/// A reader that inflates a layer blob (gzip: every member, refusing trailing garbage).
pub fn inflater<'a>(
    compression: Compression,
    blob: impl Read + 'a,
) -> io::Result<Box<dyn Read + 'a>> {
    Ok(match compression {
        Compression::None => Box::new(blob),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(
            io::BufReader::with_capacity(INPUT_BUFFER, blob),
        )),
        Compression::Zstd => Box::new(zstd::Decoder::with_buffer(io::BufReader::with_capacity(
            INPUT_BUFFER,
            blob,
        ))?),
    })
}

/// Applies an inflated tar stream to the rootfs and reads it to its end. The caller checks
/// the stream's digest (the diff_id): this is the applier alone, for pipelines that inflate
/// and hash on another thread.
pub fn apply_tar(
    root: BorrowedFd<'_>,
    layer: &Digest,
    mut tar: impl Read,
) -> Result<Stats, LayerError> {
    let stats = Applier::new(root, layer).apply_tar(&mut tar)?;
    io::copy(&mut tar, &mut io::sink()).map_err(|source| LayerError::Stream {
        layer: layer.clone(),
        what: "reading the rest of the layer stream",
        source,
    })?;
    Ok(stats)
}

/// Inflates and applies; returns the stats and the digest of the whole tar stream.
fn apply_stream(
    root: BorrowedFd<'_>,
    layer: &Layer,
    blob: impl Read,
) -> Result<(Stats, Digest), LayerError> {
    let stream_err = |what| {
        let layer = layer.digest.clone();
        move |source| LayerError::Stream {
            layer,
            what,
            source,
        }
    };
    let inflated = inflater(layer.compression, blob).map_err(stream_err("starting to inflate"))?;
    let mut tar = HashReader::new(inflated);
    let mut stats = Applier::new(root, &layer.digest).apply_tar(&mut tar)?;
    // The diff_id covers the whole stream, including anything after the end-of-archive; reading
    // to the end also makes the decompressor refuse trailing garbage.
    let (diff_id, n) = tar
        .finish()
        .map_err(stream_err("reading the layer stream"))?;
    stats.tar_bytes = n;
    Ok((stats, diff_id))
}

/// Splits a tar name into components: leading `/`, `.` and empty parts dropped; `..` refused.
pub fn clean_path(raw: &[u8]) -> Option<Vec<&[u8]>> {
    let mut out = Vec::new();
    for c in raw.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return None,
            c => out.push(c),
        }
    }
    Some(out)
}

fn join(comps: &[&[u8]]) -> Vec<u8> {
    comps.join(&b'/')
}

const WHITEOUT: &[u8] = b".wh.";
const OPAQUE: &[u8] = b".wh..wh..opq";

struct Applier<'a> {
    root: BorrowedFd<'a>,
    layer: &'a Digest,
    as_root: bool,
    /// Paths this layer wrote, and their ancestors: whiteouts and opaque markers spare them.
    created: HashSet<Vec<u8>>,
    ancestors: HashSet<Vec<u8>>,
    /// Directory mtimes, set once the layer is done (adding children changes them).
    dir_times: Vec<(Vec<u8>, i64)>,
    stats: Stats,
    buf: Vec<u8>,
}

impl<'a> Applier<'a> {
    fn new(root: BorrowedFd<'a>, layer: &'a Digest) -> Self {
        Self {
            root,
            layer,
            as_root: sys::is_root(),
            created: HashSet::new(),
            ancestors: HashSet::new(),
            dir_times: Vec::new(),
            stats: Stats::default(),
            buf: Vec::new(),
        }
    }

    fn err(&self, path: &[u8], reason: impl Into<String>, source: Option<io::Error>) -> LayerError {
        LayerError::Entry {
            layer: self.layer.clone(),
            path: String::from_utf8_lossy(path).into_owned(),
            reason: reason.into(),
            source,
        }
    }

    fn io_err(&self, path: &[u8], op: &str) -> impl Fn(io::Error) -> LayerError + '_ {
        let path = path.to_vec();
        let op = op.to_string();
        move |e| self.err(&path, op.clone(), Some(e))
    }

    fn apply_tar<R: Read>(mut self, reader: R) -> Result<Stats, LayerError> {
        let mut archive = tar::Archive::new(reader);
        let stream = |source| LayerError::Stream {
            layer: self.layer.clone(),
            what: "reading the tar stream",
            source,
        };
        let entries = archive.entries().map_err(stream)?;
        for entry in entries {
            let mut entry = entry.map_err(|source| LayerError::Stream {
                layer: self.layer.clone(),
                what: "reading the tar stream",
                source,
            })?;
            self.apply_entry(&mut entry)?;
            self.stats.entries += 1;
        }
        for (path, mtime) in std::mem::take(&mut self.dir_times).into_iter().rev() {
            let comps = clean_path(&path).unwrap_or_default();
            if let Some((name, parent)) = comps.split_last() {
                let dir = self
                    .open_dir(parent, false)
                    .map_err(self.io_err(&path, "opening parent"))?;
                if let Some(dir) = dir {
                    let name =
                        CString::new(*name).map_err(|_| self.err(&path, "NUL in name", None))?;
                    sys::set_mtime_at(dir.as_fd(), &name, mtime)
                        .map_err(self.io_err(&path, "setting mtime"))?;
                }
            }
        }
        Ok(self.stats)
    }

    fn apply_entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), LayerError> {
        use tar::EntryType as T;
        let raw = entry.path_bytes().into_owned();
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            T::XGlobalHeader | T::XHeader | T::GNULongName | T::GNULongLink
        ) {
            return Ok(());
        }
        let comps = clean_path(&raw).ok_or_else(|| {
            self.err(
                &raw,
                "name has a `..` component; refusing to write outside the rootfs",
                None,
            )
        })?;
        let Some((&name, parent)) = comps.split_last() else {
            return Ok(()); // the rootfs itself ("./"): nothing to create
        };
        let rel = join(&comps);
        if name == OPAQUE {
            self.stats.whiteouts += 1;
            return self.opaque(parent, &raw);
        }
        if let Some(hidden) = name.strip_prefix(WHITEOUT) {
            self.stats.whiteouts += 1;
            return self.whiteout(parent, hidden, &raw);
        }
        let cname = CString::new(name).map_err(|_| self.err(&raw, "NUL in name", None))?;
        let dir = self
            .open_dir(parent, true)
            .map_err(self.io_err(&raw, "resolving the parent directory inside the rootfs"))?
            .ok_or_else(|| self.err(&raw, "parent directory missing", None))?;
        let dir = dir.as_fd();
        let header = entry.header();
        let mode = header
            .mode()
            .map_err(|e| self.err(&raw, "bad mode field", Some(e)))?
            & 0o7777;
        let uid = header
            .uid()
            .map_err(|e| self.err(&raw, "bad uid field", Some(e)))?;
        let gid = header
            .gid()
            .map_err(|e| self.err(&raw, "bad gid field", Some(e)))?;
        let (uid, gid) = (
            u32::try_from(uid).map_err(|_| self.err(&raw, "uid out of range", None))?,
            u32::try_from(gid).map_err(|_| self.err(&raw, "gid out of range", None))?,
        );
        let mtime = header
            .mtime()
            .map_or(0, |m| i64::try_from(m).unwrap_or(i64::MAX));
        let xattrs = self.xattrs(entry, &raw)?;

        match kind {
            T::Directory => {
                let existing = sys::stat_at(dir, &cname).map_err(self.io_err(&raw, "lstat"))?;
                match existing {
                    Some(st) if sys::is_dir(&st) => {}
                    Some(_) => {
                        sys::remove_all_at(dir, &cname)
                            .map_err(self.io_err(&raw, "removing what the directory replaces"))?;
                        sys::mkdir_at(dir, &cname, 0o700).map_err(self.io_err(&raw, "mkdir"))?;
                    }
                    None => {
                        sys::mkdir_at(dir, &cname, 0o700).map_err(self.io_err(&raw, "mkdir"))?
                    }
                }
                let fd = sys::open_at(dir, &cname, libc::O_RDONLY | libc::O_DIRECTORY)
                    .map_err(self.io_err(&raw, "opening directory"))?;
                self.set_attrs(fd.as_fd(), uid, gid, mode, &xattrs, &raw)?;
                self.dir_times.push((rel.clone(), mtime));
            }
            T::Regular | T::Continuous => {
                self.replace(dir, &cname, &raw)?;
                let mut file =
                    sys::create_file(dir, &cname).map_err(self.io_err(&raw, "creating file"))?;
                self.copy(entry, &mut file)
                    .map_err(self.io_err(&raw, "writing file content"))?;
                self.set_attrs(file.as_fd(), uid, gid, mode, &xattrs, &raw)?;
                sys::set_mtime_fd(file.as_fd(), mtime)
                    .map_err(self.io_err(&raw, "setting mtime"))?;
            }
            T::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| self.err(&raw, "symlink without a target", None))?;
                let target = CString::new(target.into_owned())
                    .map_err(|_| self.err(&raw, "NUL in symlink target", None))?;
                self.replace(dir, &cname, &raw)?;
                sys::symlink_at(&target, dir, &cname).map_err(self.io_err(&raw, "symlink"))?;
                if self.as_root {
                    sys::chown_at(dir, &cname, uid, gid).map_err(self.io_err(&raw, "lchown"))?;
                }
                sys::set_mtime_at(dir, &cname, mtime)
                    .map_err(self.io_err(&raw, "setting mtime"))?;
            }
            T::Link => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| self.err(&raw, "hardlink without a target", None))?
                    .into_owned();
                self.hardlink(dir, &cname, &target, &raw)?;
            }
            T::Fifo => {
                self.replace(dir, &cname, &raw)?;
                sys::mkfifo_at(dir, &cname, 0o600).map_err(self.io_err(&raw, "mkfifo"))?;
                if self.as_root {
                    sys::chown_at(dir, &cname, uid, gid).map_err(self.io_err(&raw, "lchown"))?;
                }
                sys::chmod_at(dir, &cname, mode).map_err(self.io_err(&raw, "chmod"))?;
            }
            T::Char | T::Block => {
                self.stats.devices_skipped += 1;
                return Ok(());
            }
            other => {
                return Err(self.err(
                    &raw,
                    format!("unsupported tar entry type {:?}", other.as_byte() as char),
                    None,
                ));
            }
        }
        self.mark_created(&comps);
        Ok(())
    }

    /// Copies file content with a large buffer (few write syscalls for big files).
    fn copy(&mut self, from: &mut impl Read, to: &mut std::fs::File) -> io::Result<()> {
        use std::io::Write;
        if self.buf.is_empty() {
            self.buf = vec![0; 256 * 1024];
        }
        loop {
            let n = match from.read(&mut self.buf) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            to.write_all(&self.buf[..n])?;
        }
    }

    fn mark_created(&mut self, comps: &[&[u8]]) {
        for i in 1..comps.len() {
            self.ancestors.insert(join(&comps[..i]));
        }
        self.created.insert(join(comps));
    }

    /// Removes whatever is at `dir/name` so a new entry can take its place.
    fn replace(&self, dir: BorrowedFd<'_>, name: &CString, raw: &[u8]) -> Result<(), LayerError> {
        sys::remove_all_at(dir, name).map_err(self.io_err(raw, "removing the entry it replaces"))
    }

    fn set_attrs(
        &mut self,
        fd: BorrowedFd<'_>,
        uid: u32,
        gid: u32,
        mode: u32,
        xattrs: &[(CString, Vec<u8>)],
        raw: &[u8],
    ) -> Result<(), LayerError> {
        if self.as_root {
            sys::fchown(fd, uid, gid).map_err(self.io_err(raw, "chown"))?;
        }
        // After chown, which clears setuid/setgid.
        sys::fchmod(fd, mode).map_err(self.io_err(raw, "chmod"))?;
        for (k, v) in xattrs {
            match sys::fsetxattr(fd, k, v) {
                Ok(()) => {}
                Err(e)
                    if matches!(e.raw_os_error(), Some(libc::ENOTSUP) | Some(libc::EPERM))
                        && !self.as_root =>
                {
                    self.stats.xattrs_skipped += 1;
                }
                Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => self.stats.xattrs_skipped += 1,
                Err(e) => {
                    return Err(self.err(
                        raw,
                        format!("setting xattr {}", k.to_string_lossy()),
                        Some(e),
                    ))
                }
            }
        }
        Ok(())
    }

    fn xattrs<R: Read>(
        &self,
        entry: &mut tar::Entry<'_, R>,
        raw: &[u8],
    ) -> Result<Vec<(CString, Vec<u8>)>, LayerError> {
        let mut out = Vec::new();
        let Some(exts) = entry
            .pax_extensions()
            .map_err(|e| self.err(raw, "bad PAX header", Some(e)))?
        else {
            return Ok(out);
        };
        for ext in exts {
            let ext = ext.map_err(|e| self.err(raw, "bad PAX record", Some(e)))?;
            if let Some(key) = ext.key_bytes().strip_prefix(b"SCHILY.xattr.") {
                let key =
                    CString::new(key).map_err(|_| self.err(raw, "NUL in xattr name", None))?;
                out.push((key, ext.value_bytes().to_vec()));
            }
        }
        Ok(out)
    }

    fn hardlink(
        &self,
        dir: BorrowedFd<'_>,
        name: &CString,
        target: &[u8],
        raw: &[u8],
    ) -> Result<(), LayerError> {
        let tcomps = clean_path(target).ok_or_else(|| {
            self.err(
                raw,
                "hardlink target has a `..` component; refusing to link outside the rootfs",
                None,
            )
        })?;
        let Some((tname, tparent)) = tcomps.split_last() else {
            return Err(self.err(raw, "hardlink to the rootfs itself", None));
        };
        let shown = String::from_utf8_lossy(target);
        let tdir = self
            .open_dir(tparent, false)
            .map_err(self.io_err(raw, "resolving the hardlink target inside the rootfs"))?
            .ok_or_else(|| {
                self.err(
                    raw,
                    format!("hardlink target {shown} does not exist in the rootfs"),
                    None,
                )
            })?;
        let tname =
            CString::new(*tname).map_err(|_| self.err(raw, "NUL in hardlink target", None))?;
        match sys::stat_at(tdir.as_fd(), &tname)
            .map_err(self.io_err(raw, "lstat of hardlink target"))?
        {
            None => {
                return Err(self.err(
                    raw,
                    format!("hardlink target {shown} does not exist in the rootfs"),
                    None,
                ))
            }
            Some(st) if sys::is_dir(&st) => {
                return Err(self.err(raw, format!("hardlink target {shown} is a directory"), None))
            }
            Some(_) => {}
        }
        if let (Some(a), Some(b)) = (
            sys::stat_at(tdir.as_fd(), &tname).ok().flatten(),
            sys::stat_at(dir, name).ok().flatten(),
        ) {
            if (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino) {
                return Ok(()); // already this very link
            }
        }
        self.replace(dir, name, raw)?;
        sys::link_at(tdir.as_fd(), &tname, dir, name).map_err(self.io_err(raw, "link"))
    }

    /// `.wh.NAME` in `parent`: remove NAME of lower layers.
    fn whiteout(&self, parent: &[&[u8]], hidden: &[u8], raw: &[u8]) -> Result<(), LayerError> {
        if hidden.is_empty() || hidden == b"." || hidden == b".." {
            return Err(self.err(raw, "whiteout of an invalid name", None));
        }
        let Some(dir) = self
            .open_dir(parent, false)
            .map_err(self.io_err(raw, "resolving whiteout parent"))?
        else {
            return Ok(()); // nothing below to hide
        };
        let mut comps = parent.to_vec();
        comps.push(hidden);
        self.hide(dir.as_fd(), &comps, raw)
    }

    /// `.wh..wh..opq` in `parent`: remove everything lower layers put in it.
    fn opaque(&self, parent: &[&[u8]], raw: &[u8]) -> Result<(), LayerError> {
        let Some(dir) = self
            .open_dir(parent, false)
            .map_err(self.io_err(raw, "resolving opaque directory"))?
        else {
            return Ok(());
        };
        let dir = sys::open_at(dir.as_fd(), c".", libc::O_RDONLY | libc::O_DIRECTORY)
            .map_err(self.io_err(raw, "opening opaque directory"))?;
        self.clear_lower(dir.as_fd(), parent, raw)
    }

    /// Removes `comps` (whose parent is `dir`) unless this layer wrote it or something under it.
    fn hide(&self, dir: BorrowedFd<'_>, comps: &[&[u8]], raw: &[u8]) -> Result<(), LayerError> {
        let path = join(comps);
        let name =
            CString::new(comps[comps.len() - 1]).map_err(|_| self.err(raw, "NUL in name", None))?;
        if !self.created.contains(&path) && !self.ancestors.contains(&path) {
            return sys::remove_all_at(dir, &name)
                .map_err(self.io_err(raw, "removing whited-out entry"));
        }
        match sys::stat_at(dir, &name).map_err(self.io_err(raw, "lstat"))? {
            Some(st) if sys::is_dir(&st) => {
                let sub = sys::open_at(dir, &name, libc::O_RDONLY | libc::O_DIRECTORY)
                    .map_err(self.io_err(raw, "opening directory"))?;
                self.clear_lower(sub.as_fd(), comps, raw)
            }
            _ => Ok(()),
        }
    }

    /// Removes every child of `dir` (at `comps`) that this layer did not write.
    fn clear_lower(
        &self,
        dir: BorrowedFd<'_>,
        comps: &[&[u8]],
        raw: &[u8],
    ) -> Result<(), LayerError> {
        for child in sys::list_dir(dir).map_err(self.io_err(raw, "listing directory"))? {
            let mut c = comps.to_vec();
            c.push(child.as_bytes());
            self.hide(dir, &c, raw)?;
        }
        Ok(())
    }

    /// Opens the directory at `comps` inside the rootfs, creating missing ones (mode 0755,
    /// owned by root) when `create`. `None` when it is missing and not created.
    fn open_dir(&self, comps: &[&[u8]], create: bool) -> io::Result<Option<OwnedFd>> {
        const DIR: libc::c_int = libc::O_PATH | libc::O_DIRECTORY;
        match sys::open_in_root(self.root, &join(comps), DIR) {
            Ok(fd) => return Ok(Some(fd)),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) && !create => return Ok(None),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => return Err(e),
        }
        let mut fd = sys::open_in_root(self.root, b"", DIR)?;
        for i in 0..comps.len() {
            let path = join(&comps[..=i]);
            fd = match sys::open_in_root(self.root, &path, DIR) {
                Ok(next) => next,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                    let name = CString::new(comps[i])
                        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
                    match sys::mkdir_at(fd.as_fd(), &name, 0o755) {
                        Ok(()) => {}
                        // A dangling symlink is in the way: do not create through it.
                        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                            return Err(io::Error::new(
                                io::ErrorKind::InvalidData,
                                format!(
                                    "{} is a dangling symlink or not a directory",
                                    String::from_utf8_lossy(&path)
                                ),
                            ));
                        }
                        Err(e) => return Err(e),
                    }
                    sys::open_in_root(self.root, &path, DIR)?
                }
                Err(e) => return Err(e),
            };
        }
        Ok(Some(fd))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_path_drops_roots_and_dots_and_refuses_dotdot() {
        let c = |s: &str| {
            clean_path(s.as_bytes()).map(|v| {
                v.iter()
                    .map(|c| String::from_utf8_lossy(c).into_owned())
                    .collect::<Vec<_>>()
            })
        };
        assert_eq!(c("./a/b/"), Some(vec!["a".into(), "b".into()]));
        assert_eq!(c("/tmp//x"), Some(vec!["tmp".into(), "x".into()]));
        assert_eq!(c("./"), Some(vec![]));
        assert_eq!(c("../x"), None);
        assert_eq!(c("a/../../x"), None);
        assert_eq!(c("a/.../x").unwrap().len(), 3, "... is an ordinary name");
    }

    #[test]
    fn media_types() {
        assert_eq!(
            Compression::from_media_type("application/vnd.oci.image.layer.v1.tar+zstd"),
            Some(Compression::Zstd)
        );
        assert_eq!(
            Compression::from_media_type("application/vnd.docker.image.rootfs.diff.tar.gzip"),
            Some(Compression::Gzip)
        );
        assert_eq!(
            Compression::from_media_type("application/vnd.docker.image.rootfs.diff.tar"),
            Some(Compression::None)
        );
        assert_eq!(Compression::from_media_type("text/plain"), None);
    }
}
