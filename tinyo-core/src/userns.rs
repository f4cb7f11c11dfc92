//! User namespaces: the uid/gid mappings of `linux.uidMappings`/`gidMappings`, written for the
//! freshly cloned container process by the runtime (which stays in the parent namespace).
//!
//! - As root, the maps are written straight to `/proc/PID/{uid,gid}_map`.
//! - As an ordinary user, a map of just the caller's own id (what `tinyo spec --rootless`
//!   writes) is written straight too, after `deny` goes to `/proc/PID/setgroups` as the kernel
//!   requires; anything wider goes through the setuid helpers `newuidmap`/`newgidmap` (package
//!   `uidmap`), which check `/etc/subuid` and `/etc/subgid`.

use std::io;
use std::path::PathBuf;
use std::process::Command;

use oci_spec::runtime::LinuxIdMapping;

/// Why the mappings could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum UsernsError {
    #[error("a user namespace needs linux.uidMappings and linux.gidMappings (got {uid} uid and {gid} gid entries)")]
    Missing { uid: usize, gid: usize },
    #[error(
        "linux.uidMappings/gidMappings are given but linux.namespaces has no new user namespace"
    )]
    NoNamespace,
    #[error("linux.{which}Mappings: entry {container}→{host} has size 0")]
    EmptyRange {
        which: &'static str,
        container: u32,
        host: u32,
    },
    #[error("linux.{which}Mappings: the kernel takes at most 340 entries, got {count}")]
    TooMany { which: &'static str, count: usize },
    #[error("writing {path}")]
    Write {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("running {helper} for pid {pid}: {why}")]
    Helper {
        helper: &'static str,
        pid: i32,
        why: String,
    },
}

/// The mappings of a new user namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdMaps {
    pub uid: Vec<(u32, u32, u32)>,
    pub gid: Vec<(u32, u32, u32)>,
}

fn triples(m: &[LinuxIdMapping]) -> Vec<(u32, u32, u32)> {
    m.iter()
        .map(|m| (m.container_id(), m.host_id(), m.size()))
        .collect()
}

impl IdMaps {
    /// Checks the config's mappings against whether it asks for a new user namespace.
    pub fn from_spec(
        new_userns: bool,
        uid: Option<&[LinuxIdMapping]>,
        gid: Option<&[LinuxIdMapping]>,
    ) -> Result<Option<Self>, UsernsError> {
        let (uid, gid) = (uid.unwrap_or_default(), gid.unwrap_or_default());
        if !new_userns {
            return if uid.is_empty() && gid.is_empty() {
                Ok(None)
            } else {
                Err(UsernsError::NoNamespace)
            };
        }
        if uid.is_empty() || gid.is_empty() {
            return Err(UsernsError::Missing {
                uid: uid.len(),
                gid: gid.len(),
            });
        }
        let maps = Self {
            uid: triples(uid),
            gid: triples(gid),
        };
        for (which, list) in [("uid", &maps.uid), ("gid", &maps.gid)] {
            if list.len() > 340 {
                return Err(UsernsError::TooMany {
                    which,
                    count: list.len(),
                });
            }
            if let Some(&(container, host, _)) = list.iter().find(|m| m.2 == 0) {
                return Err(UsernsError::EmptyRange {
                    which,
                    container,
                    host,
                });
            }
        }
        Ok(Some(maps))
    }

    /// The host id that container id `id` maps to, if any.
    pub fn host_uid(&self, id: u32) -> Option<u32> {
        lookup(&self.uid, id)
    }

    /// As [`IdMaps::host_uid`], for groups.
    pub fn host_gid(&self, id: u32) -> Option<u32> {
        lookup(&self.gid, id)
    }

    /// Writes the maps for `pid` (a child that has just been cloned into the namespace),
    /// as the calling user `euid`/`egid`.
    pub fn write(&self, pid: i32, euid: u32, egid: u32) -> Result<(), UsernsError> {
        let own = |list: &[(u32, u32, u32)], id: u32| matches!(list, [(_, h, 1)] if *h == id);
        if euid == 0 || own(&self.uid, euid) {
            write_proc(pid, "uid_map", &format_map(&self.uid))?;
        } else {
            helper("newuidmap", pid, &self.uid)?;
        }
        if euid == 0 {
            write_proc(pid, "gid_map", &format_map(&self.gid))?;
        } else if own(&self.gid, egid) {
            // An unprivileged writer may map its own gid only once setgroups is denied.
            write_proc(pid, "setgroups", "deny")?;
            write_proc(pid, "gid_map", &format_map(&self.gid))?;
        } else {
            helper("newgidmap", pid, &self.gid)?;
        }
        Ok(())
    }
}

fn lookup(list: &[(u32, u32, u32)], id: u32) -> Option<u32> {
    list.iter()
        .find(|(c, _, n)| id >= *c && id - c < *n)
        .map(|(c, h, _)| h + (id - c))
}

/// The text of a `uid_map`/`gid_map` file: one `container host size` line per entry.
pub fn format_map(list: &[(u32, u32, u32)]) -> String {
    list.iter()
        .map(|(c, h, n)| format!("{c} {h} {n}\n"))
        .collect()
}

fn write_proc(pid: i32, file: &str, text: &str) -> Result<(), UsernsError> {
    let path = format!("/proc/{pid}/{file}");
    // One write: the kernel takes a map file in a single write(2) only.
    std::fs::write(&path, text).map_err(|source| UsernsError::Write { path, source })
}

fn helper(name: &'static str, pid: i32, list: &[(u32, u32, u32)]) -> Result<(), UsernsError> {
    let fail = |why: String| UsernsError::Helper {
        helper: name,
        pid,
        why,
    };
    let path = ["/usr/bin", "/bin", "/usr/sbin", "/sbin"]
        .iter()
        .map(|d| PathBuf::from(d).join(name))
        .find(|p| p.exists())
        .ok_or_else(|| {
            fail(format!(
                "{name} is not installed (package uidmap); it is needed to map more than your own id"
            ))
        })?;
    let mut cmd = Command::new(&path);
    cmd.arg(pid.to_string());
    for (c, h, n) in list {
        cmd.args([c.to_string(), h.to_string(), n.to_string()]);
    }
    let out = cmd.output().map_err(|e| fail(e.to_string()))?;
    if !out.status.success() {
        return Err(fail(format!(
            "{} ({})",
            String::from_utf8_lossy(&out.stderr).trim(),
            out.status
        )));
    }
    Ok(())
}

/// A user namespace with these mappings, for idmapped mounts: a child is cloned into a new
/// user namespace, mapped, and its namespace kept open by descriptor once it has exited.
///
/// # Safety
/// The caller must be single-threaded (the child runs on a copy of this process).
pub unsafe fn namespace_with(maps: &IdMaps) -> Result<std::os::fd::OwnedFd, UsernsError> {
    use std::io::Read;
    let fail = |what: &str, source: io::Error| UsernsError::Write {
        path: what.into(),
        source,
    };
    let (rd, wr) = crate::sys::pipe().map_err(|e| fail("a pipe for the mapping helper", e))?;
    // SAFETY: the caller is single-threaded; the child only reads a pipe and exits.
    let pid = unsafe { crate::sys::clone3(libc::CLONE_NEWUSER as u64) }
        .map_err(|e| fail("clone3(CLONE_NEWUSER) for an idmapped mount", e))?;
    let Some(pid) = pid else {
        drop(wr);
        let mut b = [0u8; 1];
        let _ = std::fs::File::from(rd).read(&mut b);
        crate::sys::exit_now(0);
    };
    drop(rd);
    let result = maps
        .write(pid, crate::sys::geteuid(), crate::sys::getegid())
        .and_then(|()| {
            let path = format!("/proc/{pid}/ns/user");
            std::fs::File::open(&path)
                .map(std::os::fd::OwnedFd::from)
                .map_err(|source| UsernsError::Write { path, source })
        });
    drop(wr);
    let _ = crate::sys::waitpid(pid, 0);
    result
}

/// Whether this process may not call setgroups(2) (an unprivileged user namespace).
pub fn setgroups_denied() -> bool {
    std::fs::read_to_string("/proc/self/setgroups").is_ok_and(|s| s.trim() == "deny")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(c: u32, h: u32, n: u32) -> LinuxIdMapping {
        oci_spec::runtime::LinuxIdMappingBuilder::default()
            .container_id(c)
            .host_id(h)
            .size(n)
            .build()
            .unwrap()
    }

    #[test]
    fn mappings_need_a_namespace_and_a_namespace_needs_mappings() {
        let m = [map(0, 1000, 1)];
        assert!(matches!(
            IdMaps::from_spec(false, Some(&m), None),
            Err(UsernsError::NoNamespace)
        ));
        assert!(matches!(
            IdMaps::from_spec(true, Some(&m), None),
            Err(UsernsError::Missing { uid: 1, gid: 0 })
        ));
        assert_eq!(IdMaps::from_spec(false, None, Some(&[])).unwrap(), None);
        let bad = [map(0, 1000, 0)];
        let err = IdMaps::from_spec(true, Some(&m), Some(&bad)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "linux.gidMappings: entry 0→1000 has size 0"
        );
    }

    #[test]
    fn ids_are_looked_up_through_the_ranges() {
        let m = IdMaps::from_spec(
            true,
            Some(&[map(0, 100000, 1000), map(1000, 5000, 10)]),
            Some(&[map(0, 200000, 65536)]),
        )
        .unwrap()
        .unwrap();
        assert_eq!(m.host_uid(0), Some(100000));
        assert_eq!(m.host_uid(999), Some(100999));
        assert_eq!(m.host_uid(1005), Some(5005));
        assert_eq!(m.host_uid(1010), None);
        assert_eq!(m.host_gid(65535), Some(265535));
        assert_eq!(m.host_gid(65536), None);
        assert_eq!(format_map(&m.uid), "0 100000 1000\n1000 5000 10\n");
    }
}
