//! What users already configure for containers: `registries.conf` (mirrors, insecure and
//! blocked registries, unqualified-search registries) and auth files (`auth.json`,
//! `~/.docker/config.json`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::Deserialize;

use crate::client::Credentials;

/// Why a configuration file could not be used; names the file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: invalid registries.conf: {message}")]
    Toml { path: PathBuf, message: String },
    #[error("{path}: invalid auth file: {message}")]
    Auth { path: PathBuf, message: String },
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct RawConf {
    #[serde(default)]
    unqualified_search_registries: Vec<String>,
    #[serde(default)]
    registry: Vec<RawRegistry>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct RawRegistry {
    prefix: Option<String>,
    location: Option<String>,
    #[serde(default)]
    insecure: bool,
    #[serde(default)]
    blocked: bool,
    #[serde(default)]
    mirror: Vec<RawMirror>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct RawMirror {
    location: String,
    #[serde(default)]
    insecure: bool,
}

/// Parsed `registries.conf`.
#[derive(Debug, Default, Clone)]
pub struct Registries {
    pub unqualified_search: Vec<String>,
    entries: Vec<RawRegistry>,
}

/// One place to try for an image: `host[:port]/path` to fetch from, and whether it is insecure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// The registry host (`host[:port]`).
    pub host: String,
    /// The repository path on that host.
    pub repository: String,
    pub insecure: bool,
    pub mirror: bool,
}

impl Registries {
    /// Loads `path`, or the file `CONTAINERS_REGISTRIES_CONF` names, or
    /// `/etc/containers/registries.conf`; a missing default file means no configuration.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let explicit = path
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os("CONTAINERS_REGISTRIES_CONF").map(PathBuf::from));
        let file = explicit
            .clone()
            .unwrap_or_else(|| PathBuf::from("/etc/containers/registries.conf"));
        let text = match std::fs::read_to_string(&file) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && explicit.is_none() => {
                return Ok(Self::default())
            }
            Err(source) => return Err(ConfigError::Read { path: file, source }),
        };
        Self::parse(&text).map_err(|message| ConfigError::Toml {
            path: file,
            message,
        })
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let raw: RawConf = toml::from_str(text).map_err(|e| e.to_string())?;
        for r in &raw.registry {
            if r.prefix.is_none() && r.location.is_none() {
                return Err("a [[registry]] needs a prefix or a location".into());
            }
        }
        Ok(Self {
            unqualified_search: raw.unqualified_search_registries,
            entries: raw.registry,
        })
    }

    /// The sources to try for `registry/repository`, mirrors first, in order; `Err` with the
    /// matching prefix when the registry is blocked.
    pub fn sources(&self, registry: &str, repository: &str) -> Result<Vec<Source>, String> {
        let full = format!("{registry}/{repository}");
        let matching = self
            .entries
            .iter()
            .filter_map(|r| {
                let prefix = r.prefix.as_deref().or(r.location.as_deref())?;
                prefix_matches(prefix, &full).then_some((prefix, r))
            })
            .max_by_key(|(p, _)| p.len());
        let Some((prefix, r)) = matching else {
            return Ok(vec![Source {
                host: registry.into(),
                repository: repository.into(),
                insecure: false,
                mirror: false,
            }]);
        };
        if r.blocked {
            return Err(prefix.to_string());
        }
        let rest = &full[prefix.len()..];
        let split = |loc: &str, insecure, mirror| {
            let rewritten = format!("{loc}{rest}");
            let (host, repo) = rewritten.split_once('/').unwrap_or((&rewritten, ""));
            Source {
                host: host.into(),
                repository: repo.trim_start_matches('/').into(),
                insecure,
                mirror,
            }
        };
        let mut out: Vec<Source> = r
            .mirror
            .iter()
            .map(|m| split(&m.location, m.insecure, true))
            .collect();
        out.push(split(
            r.location.as_deref().unwrap_or(prefix),
            r.insecure,
            false,
        ));
        Ok(out)
    }
}

/// Whether `prefix` matches `name` on a path boundary (`a.io/x` matches `a.io/x/y`, not `a.io/xy`).
fn prefix_matches(prefix: &str, name: &str) -> bool {
    if let Some(wild) = prefix.strip_prefix("*.") {
        let host = name.split('/').next().unwrap_or_default();
        return host.ends_with(&format!(".{wild}"));
    }
    name == prefix
        || name
            .strip_prefix(prefix)
            .is_some_and(|r| r.starts_with('/') || r.starts_with(':') || r.starts_with('@'))
}

#[derive(Debug, Deserialize)]
struct AuthFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
}

#[derive(Debug, Deserialize)]
struct AuthEntry {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
}

/// The auth files searched, most specific first.
pub fn auth_files(explicit: Option<&Path>) -> Vec<PathBuf> {
    if let Some(p) = explicit {
        return vec![p.to_path_buf()];
    }
    let mut v = Vec::new();
    if let Some(p) = std::env::var_os("REGISTRY_AUTH_FILE") {
        v.push(PathBuf::from(p));
    }
    if let Some(x) = std::env::var_os("XDG_RUNTIME_DIR") {
        v.push(Path::new(&x).join("containers/auth.json"));
    }
    // SAFETY: getuid cannot fail.
    let uid = unsafe { libc::getuid() };
    v.push(PathBuf::from(format!("/run/containers/{uid}/auth.json")));
    if let Some(home) = std::env::var_os("HOME") {
        v.push(Path::new(&home).join(".config/containers/auth.json"));
        v.push(Path::new(&home).join(".docker/config.json"));
    }
    v
}

/// Finds credentials for `registry/repository` in the auth files (per-repository keys win over
/// per-registry ones; `docker.io` also matches Docker's legacy keys).
pub fn credentials(
    files: &[PathBuf],
    registry: &str,
    repository: &str,
) -> Result<Option<Credentials>, ConfigError> {
    let mut keys: Vec<String> = Vec::new();
    let parts: Vec<&str> = repository.split('/').collect();
    for i in (1..=parts.len()).rev() {
        keys.push(format!("{registry}/{}", parts[..i].join("/")));
    }
    keys.push(registry.to_string());
    if registry == "docker.io" {
        keys.extend(
            [
                "index.docker.io",
                "registry-1.docker.io",
                "https://index.docker.io/v1/",
            ]
            .map(String::from),
        );
    }
    for file in files {
        let text = match std::fs::read(file) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => {
                return Err(ConfigError::Read {
                    path: file.clone(),
                    source,
                })
            }
        };
        let parsed: AuthFile = serde_json::from_slice(&text).map_err(|e| ConfigError::Auth {
            path: file.clone(),
            message: e.to_string(),
        })?;
        let normalized: BTreeMap<String, &AuthEntry> = parsed
            .auths
            .iter()
            .map(|(k, v)| {
                let k = k
                    .trim_start_matches("https://")
                    .trim_start_matches("http://");
                let k = if k.starts_with("index.docker.io/v1") {
                    "index.docker.io"
                } else {
                    k.trim_end_matches('/')
                };
                (k.to_string(), v)
            })
            .collect();
        for key in &keys {
            let key = key.trim_start_matches("https://").trim_end_matches('/');
            let key = if key.starts_with("index.docker.io/v1") {
                "index.docker.io"
            } else {
                key
            };
            if let Some(entry) = normalized.get(key) {
                return decode(entry)
                    .map(Some)
                    .map_err(|message| ConfigError::Auth {
                        path: file.clone(),
                        message,
                    });
            }
        }
    }
    Ok(None)
}

fn decode(e: &AuthEntry) -> Result<Credentials, String> {
    if let (Some(u), Some(p)) = (&e.username, &e.password) {
        return Ok(Credentials {
            username: u.clone(),
            password: p.clone(),
        });
    }
    let auth = e
        .auth
        .as_deref()
        .ok_or("entry has neither auth nor username/password")?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(auth.trim())
        .map_err(|e| format!("auth is not base64: {e}"))?;
    let text = String::from_utf8(raw).map_err(|_| "auth is not UTF-8")?;
    let (u, p) = text.split_once(':').ok_or("auth is not user:password")?;
    Ok(Credentials {
        username: u.into(),
        password: p.into(),
    })
}

/// Parses `--creds USER[:PASSWORD]`.
pub fn parse_creds(s: &str) -> Credentials {
    let (u, p) = s.split_once(':').unwrap_or((s, ""));
    Credentials {
        username: u.into(),
        password: p.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONF: &str = r#"
unqualified-search-registries = ["quay.io", "docker.io"]

[[registry]]
prefix = "docker.io"
location = "docker.io"
[[registry.mirror]]
location = "127.0.0.1:5000/hub"
insecure = true

[[registry]]
prefix = "example.com/team"
location = "internal.example:5000/mirror/team"

[[registry]]
location = "evil.example"
blocked = true
"#;

    #[test]
    fn mirrors_come_first_and_prefixes_rewrite() {
        let r = Registries::parse(CONF).unwrap();
        assert_eq!(r.unqualified_search, ["quay.io", "docker.io"]);
        let s = r.sources("docker.io", "library/alpine").unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(
            (
                s[0].host.as_str(),
                s[0].repository.as_str(),
                s[0].insecure,
                s[0].mirror
            ),
            ("127.0.0.1:5000", "hub/library/alpine", true, true)
        );
        assert_eq!(
            (s[1].host.as_str(), s[1].repository.as_str(), s[1].mirror),
            ("docker.io", "library/alpine", false)
        );
        let s = r.sources("example.com", "team/app").unwrap();
        assert_eq!(
            (s[0].host.as_str(), s[0].repository.as_str()),
            ("internal.example:5000", "mirror/team/app")
        );
        // Path boundary: example.com/teamx is not under the prefix.
        assert_eq!(
            r.sources("example.com", "teamx/app").unwrap()[0].host,
            "example.com"
        );
        assert_eq!(r.sources("evil.example", "x").unwrap_err(), "evil.example");
    }

    #[test]
    fn bad_conf_is_refused() {
        assert!(Registries::parse("[[registry]]\ninsecure = true\n").is_err());
        assert!(Registries::parse("unqualified-search-registries = 3").is_err());
    }

    #[test]
    fn credentials_from_auth_files() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("auth.json");
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        std::fs::write(
            &f,
            format!(
                r#"{{"auths":{{"127.0.0.1:5000":{{"auth":"{}"}},"127.0.0.1:5000/special":{{"auth":"{}"}},"https://index.docker.io/v1/":{{"auth":"{}"}}}}}}"#,
                b64("u:p:with:colons"),
                b64("s:q"),
                b64("hub:pw")
            ),
        )
        .unwrap();
        let files = vec![dir.path().join("missing.json"), f.clone()];
        let c = credentials(&files, "127.0.0.1:5000", "a/b")
            .unwrap()
            .unwrap();
        assert_eq!(
            (c.username.as_str(), c.password.as_str()),
            ("u", "p:with:colons")
        );
        let c = credentials(&files, "127.0.0.1:5000", "special/x")
            .unwrap()
            .unwrap();
        assert_eq!(c.username, "s");
        let c = credentials(&files, "docker.io", "library/alpine")
            .unwrap()
            .unwrap();
        assert_eq!(c.username, "hub");
        assert!(credentials(&files, "other.io", "x").unwrap().is_none());
        std::fs::write(&f, "not json").unwrap();
        let e = credentials(&files, "other.io", "x")
            .unwrap_err()
            .to_string();
        assert!(e.contains("auth.json"), "{e}");
    }
}
