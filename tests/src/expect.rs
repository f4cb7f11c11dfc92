//! What an unpacked rootfs must hold, checked against a directory on disk. Each fixture image
//! carries its expectations so any unpacker (umoci today, tinyo-pull later) is judged the same way.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

/// One fact about the rootfs. Paths are relative to the rootfs.
#[derive(Debug, Clone)]
pub enum Expect {
    /// A regular file with this content and permission bits (including setuid/setgid/sticky).
    File {
        path: String,
        data: Vec<u8>,
        mode: u32,
    },
    /// A file owned by uid:gid.
    Owner { path: String, uid: u32, gid: u32 },
    /// A directory, with these permission bits when given.
    Dir { path: String, mode: Option<u32> },
    /// Nothing at this path (not even a dangling symlink).
    Absent { path: String },
    /// A symlink with this target.
    Symlink { path: String, target: String },
    /// Two paths that are the same inode.
    SameInode { a: String, b: String },
    /// An extended attribute with this value.
    Xattr {
        path: String,
        key: String,
        value: Vec<u8>,
    },
    /// Modification time in seconds since the epoch (not following a symlink).
    Mtime { path: String, secs: i64 },
}

impl Expect {
    pub fn file(path: &str, data: &[u8], mode: u32) -> Self {
        Expect::File {
            path: path.into(),
            data: data.to_vec(),
            mode,
        }
    }
    pub fn absent(path: &str) -> Self {
        Expect::Absent { path: path.into() }
    }
    pub fn dir(path: &str) -> Self {
        Expect::Dir {
            path: path.into(),
            mode: None,
        }
    }
    pub fn dir_mode(path: &str, mode: u32) -> Self {
        Expect::Dir {
            path: path.into(),
            mode: Some(mode),
        }
    }
    pub fn symlink(path: &str, target: &str) -> Self {
        Expect::Symlink {
            path: path.into(),
            target: target.into(),
        }
    }

    /// Checks this fact against `root`, returning a description of the mismatch.
    pub fn check(&self, root: &Path) -> Result<(), String> {
        let at = |p: &str| root.join(p.trim_start_matches('/'));
        match self {
            Expect::File { path, data, mode } => {
                let meta = fs::symlink_metadata(at(path)).map_err(|e| format!("{path}: {e}"))?;
                if !meta.is_file() {
                    return Err(format!(
                        "{path}: not a regular file ({:?})",
                        meta.file_type()
                    ));
                }
                let got = fs::read(at(path)).map_err(|e| format!("{path}: {e}"))?;
                if &got != data {
                    return Err(format!(
                        "{path}: content {:?}, expected {:?}",
                        String::from_utf8_lossy(&got),
                        String::from_utf8_lossy(data)
                    ));
                }
                let m = meta.permissions().mode() & 0o7777;
                if m != *mode {
                    return Err(format!("{path}: mode {m:o}, expected {mode:o}"));
                }
            }
            Expect::Owner { path, uid, gid } => {
                let meta = fs::symlink_metadata(at(path)).map_err(|e| format!("{path}: {e}"))?;
                if (meta.uid(), meta.gid()) != (*uid, *gid) {
                    return Err(format!(
                        "{path}: owner {}:{}, expected {uid}:{gid}",
                        meta.uid(),
                        meta.gid()
                    ));
                }
            }
            Expect::Dir { path, mode } => {
                let meta = fs::symlink_metadata(at(path)).map_err(|e| format!("{path}: {e}"))?;
                if !meta.is_dir() {
                    return Err(format!("{path}: not a directory"));
                }
                let m = meta.permissions().mode() & 0o7777;
                if mode.is_some_and(|want| want != m) {
                    return Err(format!(
                        "{path}: mode {m:o}, expected {:o}",
                        mode.unwrap_or(0)
                    ));
                }
            }
            Expect::Absent { path } => {
                if fs::symlink_metadata(at(path)).is_ok() {
                    return Err(format!("{path}: exists but must not"));
                }
            }
            Expect::Symlink { path, target } => {
                let t =
                    fs::read_link(at(path)).map_err(|e| format!("{path}: not a symlink: {e}"))?;
                if t.as_os_str() != target.as_str() {
                    return Err(format!(
                        "{path}: links to {}, expected {target}",
                        t.display()
                    ));
                }
            }
            Expect::SameInode { a, b } => {
                let ma = fs::symlink_metadata(at(a)).map_err(|e| format!("{a}: {e}"))?;
                let mb = fs::symlink_metadata(at(b)).map_err(|e| format!("{b}: {e}"))?;
                if (ma.dev(), ma.ino()) != (mb.dev(), mb.ino()) {
                    return Err(format!("{a} and {b} are not hard links of one file"));
                }
            }
            Expect::Mtime { path, secs } => {
                let meta = fs::symlink_metadata(at(path)).map_err(|e| format!("{path}: {e}"))?;
                if meta.mtime() != *secs {
                    return Err(format!("{path}: mtime {}, expected {secs}", meta.mtime()));
                }
            }
            Expect::Xattr { path, key, value } => {
                let got =
                    get_xattr(&at(path), key).map_err(|e| format!("{path}: xattr {key}: {e}"))?;
                if &got != value {
                    return Err(format!("{path}: xattr {key} = {got:?}, expected {value:?}"));
                }
            }
        }
        Ok(())
    }
}

/// Checks every expectation and panics listing all mismatches.
pub fn assert_rootfs(root: &Path, expects: &[Expect]) {
    let failures: Vec<String> = expects.iter().filter_map(|e| e.check(root).err()).collect();
    assert!(
        failures.is_empty(),
        "rootfs {} does not match its image:\n  {}",
        root.display(),
        failures.join("\n  ")
    );
}

fn get_xattr(path: &Path, key: &str) -> std::io::Result<Vec<u8>> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let p = CString::new(path.as_os_str().as_bytes())?;
    let k = CString::new(key)?;
    let mut buf = vec![0u8; 4096];
    // SAFETY: both strings are NUL-terminated and live across the call; buf is valid for
    // buf.len() bytes of writes.
    let n = unsafe { libc::lgetxattr(p.as_ptr(), k.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    buf.truncate(n as usize);
    Ok(buf)
}

/// Every difference between two trees: paths, types, permission bits, owners, symlink
/// targets, xattrs and file contents (mtimes are not compared). Empty when they are equal.
pub fn tree_diff(a: &Path, b: &Path) -> Vec<String> {
    let ta = tree(a);
    let tb = tree(b);
    let mut diffs = Vec::new();
    for (p, ea) in &ta {
        match tb.get(p) {
            None => diffs.push(format!("{p}: only in {}", a.display())),
            Some(eb) if eb != ea => diffs.push(format!("{p}: {ea:?} vs {eb:?}")),
            Some(_) => {}
        }
    }
    for p in tb.keys().filter(|p| !ta.contains_key(*p)) {
        diffs.push(format!("{p}: only in {}", b.display()));
    }
    diffs
}

/// What [`tree_diff`] compares about one entry.
#[derive(Debug, PartialEq, Eq)]
struct Node {
    kind: &'static str,
    mode: u32,
    uid: u32,
    gid: u32,
    link: Option<String>,
    xattrs: Vec<(String, Vec<u8>)>,
    content: Option<String>,
}

fn tree(root: &Path) -> std::collections::BTreeMap<String, Node> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display())) {
            let e = e.expect("dir entry");
            let p = e.path();
            let meta = fs::symlink_metadata(&p).expect("lstat");
            let ft = meta.file_type();
            let kind = if ft.is_dir() {
                stack.push(p.clone());
                "dir"
            } else if ft.is_symlink() {
                "symlink"
            } else if ft.is_file() {
                "file"
            } else {
                "other"
            };
            let rel = p
                .strip_prefix(root)
                .expect("under root")
                .display()
                .to_string();
            let node = Node {
                kind,
                mode: if ft.is_symlink() {
                    0
                } else {
                    meta.permissions().mode() & 0o7777
                },
                uid: meta.uid(),
                gid: meta.gid(),
                link: ft
                    .is_symlink()
                    .then(|| fs::read_link(&p).expect("readlink").display().to_string()),
                xattrs: if ft.is_symlink() {
                    vec![]
                } else {
                    list_xattrs(&p)
                },
                content: ft
                    .is_file()
                    .then(|| crate::sha256_hex(&fs::read(&p).expect("read"))),
            };
            out.insert(rel, node);
        }
    }
    out
}

fn list_xattrs(path: &Path) -> Vec<(String, Vec<u8>)> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let p = CString::new(path.as_os_str().as_bytes()).expect("path");
    let mut buf = vec![0u8; 16 * 1024];
    // SAFETY: `p` is NUL-terminated; `buf` is writable for its length.
    let n = unsafe { libc::llistxattr(p.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if n <= 0 {
        return vec![];
    }
    buf.truncate(n as usize);
    let mut v: Vec<(String, Vec<u8>)> = buf
        .split(|b| *b == 0)
        .filter(|k| !k.is_empty())
        .map(|k| {
            let key = String::from_utf8_lossy(k).into_owned();
            let value = get_xattr(path, &key).unwrap_or_default();
            (key, value)
        })
        .collect();
    v.sort();
    v
}
