//! The default seccomp profiles of the engines that drive a runtime, in the OCI form they hand
//! it: podman's (containers-common, `/usr/share/containers/seccomp.json`) and docker's (moby's
//! `profiles/seccomp/default.json`, from Debian's golang-github-docker-docker-dev, fetched with
//! `apt-get download` and unpacked into the fixture cache — never installed).

use std::path::PathBuf;
use std::process::Command;

use serde_json::{json, Value};

use crate::host::require_tool;

/// podman's source profile.
pub fn podman_source() -> Value {
    let path = "/usr/share/containers/seccomp.json";
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| {
        panic!("{path}: {e} (apt-get install golang-github-containers-common)")
    });
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// docker's source profile (moby 20.10 as Debian 12 ships it).
pub fn docker_source() -> Value {
    let dir = crate::cache_dir().join("docker-seccomp");
    let path =
        dir.join("usr/share/gocode/src/github.com/docker/docker/profiles/seccomp/default.json");
    if !path.is_file() {
        require_tool("apt-get", "apt");
        require_tool("dpkg-deb", "dpkg");
        let dl = tempfile::tempdir().unwrap();
        let o = Command::new("apt-get")
            .args(["download", "-q", "golang-github-docker-docker-dev"])
            .current_dir(dl.path())
            .output()
            .expect("apt-get download");
        assert!(
            o.status.success(),
            "apt-get download golang-github-docker-docker-dev (docker's seccomp profile): {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let deb: PathBuf = std::fs::read_dir(dl.path())
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "deb"))
            .expect("the downloaded .deb");
        let tmp = tempfile::Builder::new()
            .prefix("docker-seccomp-")
            .tempdir_in(crate::cache_dir())
            .unwrap();
        let st = Command::new("dpkg-deb")
            .arg("-x")
            .arg(&deb)
            .arg(tmp.path())
            .status()
            .unwrap();
        assert!(st.success(), "dpkg-deb -x {}", deb.display());
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::rename(tmp.keep(), &dir).unwrap();
    }
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// An engine's source profile (archMap, includes/excludes by caps and arch) as the OCI
/// `linux.seccomp` it generates for an amd64 container whose bounding set is `caps`, the way
/// podman and docker do (minKernel taken as met: this host runs 6.x).
pub fn to_oci(src: &Value, caps: &[&str]) -> Value {
    const GOARCH: &str = "amd64";
    let mut out = json!({ "defaultAction": src["defaultAction"] });
    if src["defaultErrnoRet"].is_u64() {
        out["defaultErrnoRet"] = src["defaultErrnoRet"].clone();
    }
    if let Some(m) = src["archMap"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["architecture"] == "SCMP_ARCH_X86_64")
    {
        let mut arches = vec![m["architecture"].clone()];
        arches.extend(strings(&m["subArchitectures"]).into_iter().map(Value::from));
        out["architectures"] = arches.into();
    }
    let mut syscalls = Vec::new();
    for call in src["syscalls"].as_array().into_iter().flatten() {
        let (inc, exc) = (&call["includes"], &call["excludes"]);
        let inc_arches = strings(&inc["arches"]);
        if !inc_arches.is_empty() && !inc_arches.contains(&GOARCH) {
            continue;
        }
        if strings(&inc["caps"]).iter().any(|c| !caps.contains(c)) {
            continue;
        }
        if strings(&exc["arches"]).contains(&GOARCH) {
            continue;
        }
        if strings(&exc["caps"]).iter().any(|c| caps.contains(c)) {
            continue;
        }
        let names = if call["names"].is_array() {
            call["names"].clone()
        } else {
            json!([call["name"]])
        };
        let mut entry = json!({ "names": names, "action": call["action"] });
        if call["errnoRet"].is_u64() {
            entry["errnoRet"] = call["errnoRet"].clone();
        }
        if call["args"].as_array().is_some_and(|a| !a.is_empty()) {
            entry["args"] = call["args"].clone();
        }
        syscalls.push(entry);
    }
    out["syscalls"] = syscalls.into();
    out
}
