//! `tinyo features`: what this runtime implements, in the runtime-spec `features` format.

use anyhow::Result;
use serde_json::json;

#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> Result<i32> {
    let features = json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": tinyo_core::OCI_SPEC_VERSION,
        "hooks": [
            "prestart", "createRuntime", "createContainer", "startContainer", "poststart",
            "poststop"
        ],
        "mountOptions": [
            "async", "atime", "bind", "defaults", "dev", "diratime", "dirsync", "exec", "loud",
            "mand", "noatime", "nodev", "nodiratime", "noexec", "nomand", "norelatime",
            "nostrictatime", "nosuid", "private", "rbind", "relatime", "remount", "ro",
            "rprivate", "rshared", "rslave", "runbindable", "rw", "shared", "silent", "slave",
            "strictatime", "suid", "sync", "unbindable"
        ],
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "time", "uts"],
            "capabilities": tinyo_core::process::CAPS,
            "cgroup": {"v1": true, "v2": false, "systemd": false, "systemdUser": false},
            "seccomp": {"enabled": false},
            "apparmor": {"enabled": false},
            "selinux": {"enabled": false},
            "intelRdt": {"enabled": false},
            "mountExtensions": {"idmap": {"enabled": false}}
        },
        "annotations": {
            "io.github.tinyo.note": "user namespaces and seccomp are not implemented yet; terminals need --console-socket"
        }
    });
    println!("{}", serde_json::to_string_pretty(&features)?);
    Ok(0)
}
