//! The on-disk cache of compiled programs (see "Cache" in the module docs).

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use oci_spec::runtime::LinuxSeccomp;
use sha2::{Digest, Sha256};

use super::{compile, syscalls, Compiled, SeccompError};

/// Bumped whenever the compiler's output for a given section may change; part of the cache
/// key, so old cache files are simply never looked at again.
pub const COMPILER_VERSION: &str = "tinyo-seccomp/1";

/// No valid cache file comes close to this (4096 instructions are 32 KiB).
const MAX_FILE_LEN: u64 = 1 << 20;

/// Like [`compile`], through a cache of compiled programs in `cache_dir` (created 0700 if
/// missing; it must not be writable by group or others, nor owned by another user).
///
/// A missing, short, corrupt or foreign cache file is recompiled and replaced. Cache I/O
/// failures are errors; a caller that prefers to go on without the cache can fall back to
/// [`compile`].
pub fn compile_cached(s: &LinuxSeccomp, cache_dir: &Path) -> Result<Compiled, SeccompError> {
    let key = cache_key(s)?;
    let path = cache_dir.join(format!("{}.bpf", hex(&key)));
    check_dir(cache_dir)?;
    if let Some(c) = read(&path, &key) {
        return Ok(c);
    }
    let c = compile(s)?;
    let mut bytes = c.to_bytes();
    let seal = seal(&key, &bytes);
    bytes.extend_from_slice(&seal);
    write_atomic(cache_dir, &path, &bytes)?;
    Ok(c)
}

/// SHA-256 over the compiler version, the syscall tables' source digest and the section's
/// serde_json serialisation.
pub(crate) fn cache_key(s: &LinuxSeccomp) -> Result<[u8; 32], SeccompError> {
    let json = serde_json::to_vec(s).map_err(SeccompError::Serialize)?;
    let mut h = Sha256::new();
    h.update(COMPILER_VERSION.as_bytes());
    h.update([0]);
    h.update(syscalls::SOURCE_DIGEST.as_bytes());
    h.update([0]);
    h.update(&json);
    Ok(h.finalize().into())
}

/// The file's trailer: SHA-256 over the key and the serialised program, so a file made for
/// another section, or damaged in any byte, is never used.
pub(crate) fn seal(key: &[u8; 32], body: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(key);
    h.update(body);
    h.finalize().into()
}

fn hex(b: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    b.iter()
        .flat_map(|&x| [DIGITS[usize::from(x >> 4)], DIGITS[usize::from(x & 15)]])
        .map(char::from)
        .collect()
}

fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Creates the directory (0700) if needed and refuses one that others could write into.
fn check_dir(dir: &Path) -> Result<(), SeccompError> {
    let err = |op, source| SeccompError::Cache {
        op,
        path: dir.to_path_buf(),
        source,
    };
    let meta = match fs::symlink_metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| err("create directory", e))?;
            fs::symlink_metadata(dir).map_err(|e| err("inspect directory", e))?
        }
        Err(e) => return Err(err("inspect directory", e)),
    };
    let insecure = |why| SeccompError::CacheDirInsecure {
        path: dir.to_path_buf(),
        why,
    };
    if !meta.is_dir() {
        return Err(insecure("not a directory"));
    }
    if meta.uid() != euid() {
        return Err(insecure("owned by another user"));
    }
    if meta.permissions().mode() & 0o022 != 0 {
        return Err(insecure("writable by group or others"));
    }
    Ok(())
}

/// The cached program at `path`, if the file is ours, well-formed and made for `key`.
fn read(path: &Path, key: &[u8; 32]) -> Option<Compiled> {
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .ok()?;
    let meta = f.metadata().ok()?;
    if !meta.is_file()
        || meta.uid() != euid()
        || meta.mode() & 0o022 != 0
        || meta.len() > MAX_FILE_LEN
    {
        return None;
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    f.take(MAX_FILE_LEN).read_to_end(&mut bytes).ok()?;
    let (body, trailer) = bytes.split_at(bytes.len().checked_sub(32)?);
    if seal(key, body) != trailer {
        return None;
    }
    Compiled::from_bytes(body).ok()
}

/// Writes `bytes` to `path` through a 0600 temporary file in `dir` and a rename.
fn write_atomic(dir: &Path, path: &Path, bytes: &[u8]) -> Result<(), SeccompError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let tmp: PathBuf = dir.join(format!(
        ".{}.{}.{}.tmp",
        path.file_stem().and_then(|s| s.to_str()).unwrap_or("bpf"),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut f: File = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)
            .map_err(|e| ("create", tmp.clone(), e))?;
        f.write_all(bytes).map_err(|e| ("write", tmp.clone(), e))?;
        drop(f);
        fs::rename(&tmp, path).map_err(|e| ("rename into place", path.to_path_buf(), e))
    })();
    result.map_err(|(op, path, source)| {
        let _ = fs::remove_file(&tmp);
        SeccompError::Cache { op, path, source }
    })
}
