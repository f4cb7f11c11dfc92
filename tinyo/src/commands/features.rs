//! `tinyo features`: what this runtime implements, in the runtime-spec `features` format.

use anyhow::Result;
use serde_json::json;

#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> Result<i32> {
    use tinyo_core::fields::{Support, FIELDS};
    // Fields of the runtime-spec a config may set but tinyo does not apply (one list:
    // tinyo_core::fields); everything else this reports is applied.
    let of = |want: fn(&Support) -> bool| -> Vec<&str> {
        FIELDS
            .iter()
            .filter(|(_, s)| want(s))
            .map(|(p, _)| *p)
            .collect()
    };
    let refused = of(|s| matches!(s, Support::Refused(_)));
    let warned = of(|s| matches!(s, Support::Warned(_)));
    let features = json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": tinyo_core::OCI_SPEC_VERSION,
        "hooks": [
            "prestart", "createRuntime", "createContainer", "startContainer", "poststart",
            "poststop"
        ],
        "mountOptions": tinyo_core::mounts::MOUNT_OPTIONS,
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "time", "user", "uts"],
            "capabilities": tinyo_core::process::CAPS,
            "cgroup": {"v1": true, "v2": true, "systemd": false, "systemdUser": false, "rdma": true},
            "seccomp": {
                "enabled": true,
                "actions": [
                    "SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS",
                    "SCMP_ACT_KILL_THREAD", "SCMP_ACT_LOG", "SCMP_ACT_NOTIFY", "SCMP_ACT_TRACE",
                    "SCMP_ACT_TRAP"
                ],
                "operators": [
                    "SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_LE", "SCMP_CMP_LT",
                    "SCMP_CMP_MASKED_EQ", "SCMP_CMP_NE"
                ],
                "archs": ["SCMP_ARCH_X86", "SCMP_ARCH_X32", "SCMP_ARCH_X86_64"],
                "supportedFlags": [
                    "SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
                    "SECCOMP_FILTER_FLAG_TSYNC"
                ]
            },
            "apparmor": {"enabled": false},
            "selinux": {"enabled": false},
            "intelRdt": {"enabled": false},
            "mountExtensions": {"idmap": {"enabled": true}}
        },
        "annotations": {
            "io.github.tinyo.note": "terminals need --console-socket; seccomp is compiled in Rust (no libseccomp)",
            "io.github.tinyo.refusedFields": refused.join(","),
            "io.github.tinyo.warnedFields": warned.join(",")
        }
    });
    println!("{}", serde_json::to_string_pretty(&features)?);
    Ok(0)
}
