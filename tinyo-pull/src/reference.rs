//! Image references as users type them, normalised the way docker and podman do.

use std::fmt;

/// The registry that short names resolve to.
pub const DOCKER_HUB: &str = "docker.io";
/// The host that actually serves [`DOCKER_HUB`].
pub const DOCKER_HUB_HOST: &str = "registry-1.docker.io";

/// Why a reference was refused. The offending text is always included.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("image reference is empty")]
    Empty,
    #[error("image reference {0:?}: repository name {1:?} is invalid (lowercase letters, digits and . _ - separators only)")]
    Repository(String, String),
    #[error("image reference {0:?}: tag {1:?} is invalid (at most 128 of [A-Za-z0-9_.-], not starting with . or -)")]
    Tag(String, String),
    #[error("image reference {0:?}: digest {1:?} is invalid (expected sha256: and 64 lowercase hex digits)")]
    Digest(String, String),
    #[error("image reference {0:?}: registry {1:?} is invalid")]
    Registry(String, String),
}

/// A fully qualified image reference: registry, repository, and a tag and/or digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<String>,
    /// Whether the input named its registry.
    explicit: bool,
    /// The repository as typed (without registry or `library/`), for search registries.
    typed: String,
}

impl Reference {
    /// Parses and normalises `input`. A name without a registry goes to `docker.io` (with
    /// `library/` for one-component names); a name with neither tag nor digest gets `latest`.
    pub fn parse(input: &str) -> Result<Self, ReferenceError> {
        if input.is_empty() {
            return Err(ReferenceError::Empty);
        }
        let (name, digest) = match input.split_once('@') {
            Some((n, d)) => {
                check_digest(d).map_err(|()| ReferenceError::Digest(input.into(), d.into()))?;
                (n, Some(d.to_string()))
            }
            None => (input, None),
        };
        // A tag follows the last ':' that comes after the last '/' (a ':' before it is a port).
        let last_slash = name.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match name[last_slash..].rfind(':') {
            Some(i) => {
                let (n, t) = (&name[..last_slash + i], &name[last_slash + i + 1..]);
                check_tag(t).map_err(|()| ReferenceError::Tag(input.into(), t.into()))?;
                (n, Some(t.to_string()))
            }
            None => (name, None),
        };
        let (registry, repository, explicit) = match name.split_once('/') {
            Some((first, rest))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                check_registry(first)
                    .map_err(|()| ReferenceError::Registry(input.into(), first.into()))?;
                (first.to_string(), rest.to_string(), true)
            }
            _ => (DOCKER_HUB.to_string(), name.to_string(), false),
        };
        let typed = repository.clone();
        let registry = match registry.as_str() {
            "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB.to_string(),
            _ => registry,
        };
        let repository = if registry == DOCKER_HUB && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };
        check_repository(&repository)
            .map_err(|()| ReferenceError::Repository(input.into(), repository.clone()))?;
        let tag = match (tag, &digest) {
            (None, None) => Some("latest".to_string()),
            (t, _) => t,
        };
        Ok(Self {
            registry,
            repository,
            tag,
            digest,
            explicit,
            typed,
        })
    }

    /// Whether the input named a registry (`quay.io/x`) rather than relying on the default.
    pub fn explicit_registry(&self) -> bool {
        self.explicit
    }

    /// The reference as typed without a registry (`alpine:3`), to qualify with a search registry.
    pub fn short_name(&self) -> String {
        let mut s = self.typed.clone();
        if let Some(t) = &self.tag {
            s += &format!(":{t}");
        }
        if let Some(d) = &self.digest {
            s += &format!("@{d}");
        }
        s
    }

    /// The registry name as written in references (`docker.io`, `127.0.0.1:5000`, …).
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The host to contact for this registry (`docker.io` is served by `registry-1.docker.io`).
    pub fn registry_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_HOST
        } else {
            &self.registry
        }
    }

    pub fn repository(&self) -> &str {
        &self.repository
    }

    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    pub fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }

    /// What to ask the registry's manifest endpoint for: the digest when pinned, else the tag.
    pub fn manifest_ref(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or("latest")
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

fn check_digest(d: &str) -> Result<(), ()> {
    let hex = d.strip_prefix("sha256:").ok_or(())?;
    let ok = hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    ok.then_some(()).ok_or(())
}

fn check_tag(t: &str) -> Result<(), ()> {
    let ok = !t.is_empty()
        && t.len() <= 128
        && !t.starts_with(['.', '-'])
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    ok.then_some(()).ok_or(())
}

fn check_registry(r: &str) -> Result<(), ()> {
    let (host, port) = match r.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (r, None),
    };
    let host_ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-'));
    let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok());
    (host_ok && port_ok).then_some(()).ok_or(())
}

/// Path components: lowercase alphanumerics separated by one `.`, one or two `_`, or any
/// number of `-`, as the distribution spec's grammar says.
fn check_repository(repo: &str) -> Result<(), ()> {
    let component_ok = |c: &str| {
        let b = c.as_bytes();
        if b.is_empty() || !b[0].is_ascii_alphanumeric() || !b[b.len() - 1].is_ascii_alphanumeric()
        {
            return false;
        }
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'a'..=b'z' | b'0'..=b'9' => i += 1,
                b'.' => {
                    if !b[i + 1].is_ascii_alphanumeric() {
                        return false;
                    }
                    i += 1;
                }
                b'_' => {
                    let n = if b[i + 1] == b'_' { 2 } else { 1 };
                    if !b[i + n].is_ascii_alphanumeric() {
                        return false;
                    }
                    i += n;
                }
                b'-' => {
                    while b[i] == b'-' {
                        i += 1;
                    }
                }
                _ => return false,
            }
        }
        true
    };
    let ok = repo.len() <= 255 && repo.split('/').all(component_ok);
    ok.then_some(()).ok_or(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Reference {
        Reference::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn short_names_go_to_docker_hub_library() {
        let r = p("alpine");
        assert_eq!(r.to_string(), "docker.io/library/alpine:latest");
        assert_eq!(r.registry_host(), "registry-1.docker.io");
        assert_eq!(p("user/app:1.2").to_string(), "docker.io/user/app:1.2");
        assert_eq!(
            p("index.docker.io/alpine").to_string(),
            "docker.io/library/alpine:latest"
        );
        assert!(!p("alpine").explicit_registry());
        assert_eq!(p("alpine").short_name(), "alpine:latest");
        assert!(p("docker.io/alpine").explicit_registry());
    }

    #[test]
    fn registries_ports_and_digests() {
        let r = p("127.0.0.1:5000/ns/img:v1");
        assert_eq!(
            (r.registry(), r.repository(), r.tag()),
            ("127.0.0.1:5000", "ns/img", Some("v1"))
        );
        let r = p("localhost/img");
        assert_eq!((r.registry(), r.tag()), ("localhost", Some("latest")));
        let d = format!("sha256:{}", "a".repeat(64));
        let r = p(&format!("quay.io/a/b@{d}"));
        assert_eq!((r.tag(), r.digest()), (None, Some(d.as_str())));
        assert_eq!(r.manifest_ref(), d);
        let r = p(&format!("a:t@{d}"));
        assert_eq!((r.tag(), r.digest()), (Some("t"), Some(d.as_str())));
        assert_eq!(r.manifest_ref(), d);
        // A colon before the last slash is a port, not a tag.
        assert_eq!(p("host:5000/img").tag(), Some("latest"));
    }

    #[test]
    fn refuses_bad_references_with_the_offending_part() {
        assert_eq!(Reference::parse(""), Err(ReferenceError::Empty));
        for bad in ["Alpine", "a//b", "a/-b", "a..b", "a___b", "a/b_", "a b"] {
            assert!(
                matches!(Reference::parse(bad), Err(ReferenceError::Repository(..))),
                "{bad}"
            );
        }
        assert!(matches!(
            Reference::parse("a:.bad"),
            Err(ReferenceError::Tag(..))
        ));
        assert!(matches!(
            Reference::parse("a@sha256:abc"),
            Err(ReferenceError::Digest(..))
        ));
        assert!(matches!(
            Reference::parse("a@md5:00"),
            Err(ReferenceError::Digest(..))
        ));
        assert!(matches!(
            Reference::parse("bad_host.io:99999/x"),
            Err(ReferenceError::Registry(..))
        ));
        let msg = Reference::parse("a:.bad").unwrap_err().to_string();
        assert!(msg.contains(".bad"), "{msg}");
    }

    #[test]
    fn separators_follow_the_distribution_grammar() {
        for good in ["a.b", "a_b", "a__b", "a-b", "a---b", "x/y.z/w-1"] {
            p(good);
        }
    }
}
