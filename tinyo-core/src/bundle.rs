//! Loading an OCI bundle: a directory holding `config.json` and (usually) the root filesystem.

use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;

/// Why a bundle could not be loaded. Every variant names the file it is about.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("bundle {path}: cannot read config.json")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("bundle {path}: config.json is not a valid runtime spec")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("bundle {path}: ociVersion {version:?} is not supported (this runtime reads 1.x)")]
    Version { path: PathBuf, version: String },
    #[error("bundle {path}: {what}")]
    Invalid { path: PathBuf, what: String },
    #[error("bundle {path}: {source}")]
    Refused {
        path: PathBuf,
        #[source]
        source: crate::fields::Refused,
    },
}

/// A parsed and checked bundle.
#[derive(Debug, Clone)]
pub struct Bundle {
    dir: PathBuf,
    spec: Spec,
    /// Fields the config sets that are not applied (see [`crate::fields`]).
    warnings: Vec<String>,
}

impl Bundle {
    /// Reads `DIR/config.json` and checks what every later step relies on: a 1.x `ociVersion`,
    /// a `root.path`, and non-empty `process.args` when a process is given.
    pub fn load(dir: impl AsRef<Path>) -> Result<Self, BundleError> {
        let dir = dir.as_ref().to_path_buf();
        let path = dir.join("config.json");
        let text = std::fs::read(&path).map_err(|source| BundleError::Read {
            path: path.clone(),
            source,
        })?;
        let parse = |source| BundleError::Parse {
            path: path.clone(),
            source,
        };
        let raw: serde_json::Value = serde_json::from_slice(&text).map_err(parse)?;
        let warnings = crate::fields::check(&raw).map_err(|source| BundleError::Refused {
            path: path.clone(),
            source,
        })?;
        let spec: Spec = serde_json::from_value(raw).map_err(parse)?;
        validate(&path, &spec)?;
        Ok(Self {
            dir,
            spec,
            warnings,
        })
    }

    /// What the config sets that tinyo does not apply, one sentence each.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The bundle directory as given.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The parsed runtime spec.
    pub fn spec(&self) -> &Spec {
        &self.spec
    }

    /// The root filesystem path: `root.path` taken relative to the bundle when it is relative.
    pub fn rootfs(&self) -> PathBuf {
        // `validate` guarantees `root` is present.
        let root = self.spec.root().as_ref().map(|r| r.path().clone());
        self.dir.join(root.unwrap_or_default())
    }
}

fn validate(path: &Path, spec: &Spec) -> Result<(), BundleError> {
    let version = spec.version();
    if version.split('.').next() != Some("1") {
        return Err(BundleError::Version {
            path: path.to_path_buf(),
            version: version.clone(),
        });
    }
    let invalid = |what: &str| BundleError::Invalid {
        path: path.to_path_buf(),
        what: what.to_string(),
    };
    match spec.root() {
        None => return Err(invalid("root is missing")),
        Some(root) if root.path().as_os_str().is_empty() => {
            return Err(invalid("root.path is empty"))
        }
        Some(_) => {}
    }
    if let Some(process) = spec.process() {
        if process.args().as_ref().is_none_or(|a| a.is_empty()) {
            return Err(invalid("process.args is empty: nothing to run"));
        }
        if !process.cwd().is_absolute() {
            return Err(invalid("process.cwd must be an absolute path"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, json: &str) {
        std::fs::write(dir.join("config.json"), json).unwrap();
    }

    const GOOD: &str = r#"{"ociVersion":"1.0.2","root":{"path":"rootfs"},
        "process":{"cwd":"/","args":["sh"],"user":{"uid":0,"gid":0}}}"#;

    #[test]
    fn loads_a_minimal_bundle() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), GOOD);
        let b = Bundle::load(dir.path()).unwrap();
        assert_eq!(b.rootfs(), dir.path().join("rootfs"));
        assert_eq!(
            b.spec()
                .process()
                .as_ref()
                .unwrap()
                .args()
                .as_ref()
                .unwrap(),
            &["sh".to_string()]
        );
    }

    #[test]
    fn missing_config_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let err = Bundle::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("config.json"), "{err}");
        assert!(err.contains(&dir.path().display().to_string()), "{err}");
    }

    #[test]
    fn rejects_broken_json_wrong_version_and_empty_args() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "{ not json");
        assert!(matches!(
            Bundle::load(dir.path()),
            Err(BundleError::Parse { .. })
        ));
        write(dir.path(), &GOOD.replace("1.0.2", "2.0.0"));
        assert!(matches!(
            Bundle::load(dir.path()),
            Err(BundleError::Version { .. })
        ));
        write(dir.path(), &GOOD.replace(r#"["sh"]"#, "[]"));
        let err = Bundle::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("process.args"), "{err}");
        write(dir.path(), &GOOD.replace(r#""cwd":"/""#, r#""cwd":"tmp""#));
        let err = Bundle::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("cwd"), "{err}");
    }
}
