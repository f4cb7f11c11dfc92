//! OCI hooks: prestart (deprecated), createRuntime, createContainer, startContainer,
//! poststart and poststop. Each hook is run with the container's state JSON on its stdin, its
//! `args` (args[0] as argv[0]) and only its `env`, and is killed after `timeout` seconds.
//!
//! Where they run follows runc: prestart and createRuntime in the runtime's namespaces once the
//! container's mounts are made (before pivot_root); createContainer in the container's
//! namespaces right after them, still before pivot_root (so its path resolves in the runtime's
//! filesystem, as the spec asks); startContainer in the container after `start`, right before
//! the exec; poststart in `start` and poststop in `delete`, in the runtime's namespaces.

use std::io::{Read, Seek, Write};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::sys;

/// One hook of the config.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hook {
    pub path: PathBuf,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<i64>,
}

/// The config's `hooks` section (kept in the container's state for `start` and `delete`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Hooks {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prestart: Vec<Hook>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub create_runtime: Vec<Hook>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub create_container: Vec<Hook>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub start_container: Vec<Hook>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub poststart: Vec<Hook>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub poststop: Vec<Hook>,
}

impl Hooks {
    /// The hooks of a spec, checked: absolute paths, positive timeouts.
    pub fn from_spec(spec: &oci_spec::runtime::Spec) -> Result<Self, String> {
        let Some(h) = spec.hooks() else {
            return Ok(Self::default());
        };
        let v = serde_json::to_value(h).map_err(|e| format!("hooks: {e}"))?;
        let hooks: Hooks = serde_json::from_value(v).map_err(|e| format!("hooks: {e}"))?;
        for (kind, list) in hooks.kinds() {
            for (i, hook) in list.iter().enumerate() {
                if !hook.path.is_absolute() {
                    return Err(format!(
                        "hooks.{kind}[{i}].path {} is not absolute",
                        hook.path.display()
                    ));
                }
                if hook.timeout.is_some_and(|t| t <= 0) {
                    return Err(format!(
                        "hooks.{kind}[{i}].timeout must be greater than zero"
                    ));
                }
            }
        }
        Ok(hooks)
    }

    fn kinds(&self) -> [(&'static str, &Vec<Hook>); 6] {
        [
            ("prestart", &self.prestart),
            ("createRuntime", &self.create_runtime),
            ("createContainer", &self.create_container),
            ("startContainer", &self.start_container),
            ("poststart", &self.poststart),
            ("poststop", &self.poststop),
        ]
    }

    /// Whether the create-time runtime-namespace hooks (prestart, createRuntime) exist.
    pub fn has_runtime_create(&self) -> bool {
        !self.prestart.is_empty() || !self.create_runtime.is_empty()
    }

    /// Whether there is nothing at all to run.
    pub fn is_empty(&self) -> bool {
        self.kinds().iter().all(|(_, l)| l.is_empty())
    }
}

/// The state a hook reads on stdin (runtime-spec `state`).
pub fn state_json(
    id: &str,
    status: &str,
    pid: i32,
    bundle: &std::path::Path,
    annotations: &std::collections::BTreeMap<String, String>,
) -> Vec<u8> {
    let mut v = serde_json::json!({
        "ociVersion": crate::OCI_SPEC_VERSION,
        "id": id,
        "status": status,
        "pid": pid,
        "bundle": bundle,
    });
    if !annotations.is_empty() {
        v["annotations"] = serde_json::json!(annotations);
    }
    serde_json::to_vec(&v).unwrap_or_default()
}

/// Runs the hooks of one kind in order; the first failure stops and is returned, naming the
/// hook kind, index and path, with what it wrote to stdout and stderr.
pub fn run(kind: &str, hooks: &[Hook], state: &[u8]) -> Result<(), String> {
    for (i, hook) in hooks.iter().enumerate() {
        run_one(hook, state)
            .map_err(|e| format!("{kind} hook #{i} ({}) failed: {e}", hook.path.display()))?;
    }
    Ok(())
}

fn run_one(hook: &Hook, state: &[u8]) -> Result<(), String> {
    let out = sys::memfd(c"tinyo-hook").map_err(|e| format!("capturing output: {e}"))?;
    let out = std::fs::File::from(out);
    let err_copy = out.try_clone().map_err(|e| e.to_string())?;
    let mut cmd = Command::new(&hook.path);
    let args = hook.args.clone().unwrap_or_default();
    if let Some((arg0, rest)) = args.split_first() {
        cmd.arg0(arg0).args(rest);
    }
    cmd.env_clear();
    for e in hook.env.iter().flatten() {
        match e.split_once('=') {
            Some((k, v)) => cmd.env(k, v),
            None => cmd.env(e, ""),
        };
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::from(out.try_clone().map_err(|e| e.to_string())?))
        .stderr(Stdio::from(err_copy));
    let mut child = cmd.spawn().map_err(|e| e.to_string())?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read its stdin is fine (EPIPE is ignored).
        let _ = stdin.write_all(state);
    }
    let deadline = hook
        .timeout
        .map(|t| Instant::now() + Duration::from_secs(t as u64));
    let mut pause = Duration::from_micros(200);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) => {}
            Err(e) => return Err(format!("waiting: {e}")),
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "timed out after {}s",
                hook.timeout.unwrap_or_default()
            ));
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    };
    if status.success() {
        return Ok(());
    }
    let mut text = String::new();
    let mut out = out;
    let _ = out.rewind();
    let _ = out.take(4096).read_to_string(&mut text);
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    Err(if text.is_empty() {
        status.to_string()
    } else {
        format!("{status}, output: {text}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hooks_get_state_args_env_and_time_out() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let state = state_json("c1", "creating", 42, dir.path(), &Default::default());
        let hook = Hook {
            path: "/bin/sh".into(),
            args: Some(vec![
                "sh".into(),
                "-c".into(),
                format!("echo \"$0 $X\" > {0}; cat >> {0}", out.display()),
            ]),
            env: Some(vec!["X=y".into()]),
            timeout: None,
        };
        run("createRuntime", &[hook], &state).unwrap();
        let got = std::fs::read_to_string(&out).unwrap();
        assert!(got.starts_with("sh y\n{"), "{got}");
        assert!(
            got.contains("\"status\":\"creating\"") && got.contains("\"pid\":42"),
            "{got}"
        );

        let fail = Hook {
            path: "/bin/sh".into(),
            args: Some(vec![
                "sh".into(),
                "-c".into(),
                "echo nope >&2; exit 3".into(),
            ]),
            ..Default::default()
        };
        let err = run("poststop", &[fail], &state).unwrap_err();
        assert!(
            err.contains("poststop hook #0") && err.contains("nope"),
            "{err}"
        );

        let slow = Hook {
            path: "/bin/sleep".into(),
            args: Some(vec!["sleep".into(), "30".into()]),
            timeout: Some(1),
            ..Default::default()
        };
        let err = run("poststart", &[slow], &state).unwrap_err();
        assert!(err.contains("timed out"), "{err}");
    }
}
