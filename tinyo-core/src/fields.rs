//! Every runtime-spec field, in one list, with what tinyo does with it: applied, refused (the
//! config fails with the field's name and why) or warned about (obsolete or another platform's,
//! named on stderr). [`check`] walks a raw `config.json` against the list before anything
//! else reads it, so no field is ever dropped silently — not even one this runtime has never
//! heard of (those are warned about, as a newer spec's fields may be).
//!
//! Paths use `.` between keys, `[]` for every element of an array and `*` for every key of a
//! free-form map (annotations, sysctls, …). A path marked [`Support::Map`] stops the walk: what
//! is below it is a value, not a field.

use serde_json::Value;

/// What tinyo does with a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Support {
    /// Applied as the runtime-spec says.
    Applied,
    /// A free-form map (or list of strings) applied as a whole; its keys are not fields.
    Map,
    /// Refused when present: the config fails, naming the field and why.
    Refused(&'static str),
    /// Not applied, named in a warning (obsolete in the kernel, or another platform's).
    Warned(&'static str),
}

use Support::{Applied as A, Map as M, Refused as R, Warned as W};

const OTHER_PLATFORM: &str = "a section for another platform; ignored on Linux";

/// The list. Keep it sorted by section; `tinyo features` and the docs read it.
pub const FIELDS: &[(&str, Support)] = &[
    ("ociVersion", A),
    ("root", A),
    ("root.path", A),
    ("root.readonly", A),
    ("hostname", A),
    ("domainname", A),
    ("annotations", M),
    ("mounts", A),
    ("mounts[].destination", A),
    ("mounts[].type", A),
    ("mounts[].source", A),
    ("mounts[].options", M),
    ("mounts[].uidMappings", A),
    ("mounts[].uidMappings[].containerID", A),
    ("mounts[].uidMappings[].hostID", A),
    ("mounts[].uidMappings[].size", A),
    ("mounts[].gidMappings", A),
    ("mounts[].gidMappings[].containerID", A),
    ("mounts[].gidMappings[].hostID", A),
    ("mounts[].gidMappings[].size", A),
    ("process", A),
    ("process.terminal", A),
    ("process.consoleSize", A),
    ("process.consoleSize.height", A),
    ("process.consoleSize.width", A),
    ("process.cwd", A),
    ("process.env", M),
    ("process.args", M),
    ("process.commandLine", W(OTHER_PLATFORM)),
    ("process.rlimits", A),
    ("process.rlimits[].type", A),
    ("process.rlimits[].soft", A),
    ("process.rlimits[].hard", A),
    ("process.apparmorProfile", A),
    ("process.selinuxLabel", A),
    ("process.capabilities", A),
    ("process.capabilities.bounding", M),
    ("process.capabilities.effective", M),
    ("process.capabilities.permitted", M),
    ("process.capabilities.inheritable", M),
    ("process.capabilities.ambient", M),
    ("process.noNewPrivileges", A),
    ("process.oomScoreAdj", A),
    ("process.ioPriority", A),
    ("process.ioPriority.class", A),
    ("process.ioPriority.priority", A),
    ("process.scheduler", A),
    ("process.scheduler.policy", A),
    ("process.scheduler.nice", A),
    ("process.scheduler.priority", A),
    ("process.scheduler.flags", M),
    ("process.scheduler.runtime", A),
    ("process.scheduler.deadline", A),
    ("process.scheduler.period", A),
    (
        "process.execCPUAffinity",
        R("CPU affinity of exec'd processes is not supported by tinyo yet"),
    ),
    ("process.user", A),
    ("process.user.uid", A),
    ("process.user.gid", A),
    ("process.user.umask", A),
    ("process.user.additionalGids", M),
    ("process.user.username", W(OTHER_PLATFORM)),
    ("hooks", A),
    ("hooks.prestart", A),
    ("hooks.createRuntime", A),
    ("hooks.createContainer", A),
    ("hooks.startContainer", A),
    ("hooks.poststart", A),
    ("hooks.poststop", A),
    ("hooks.*[].path", A),
    ("hooks.*[].args", M),
    ("hooks.*[].env", M),
    ("hooks.*[].timeout", A),
    ("linux", A),
    ("linux.namespaces", A),
    ("linux.namespaces[].type", A),
    ("linux.namespaces[].path", A),
    ("linux.uidMappings", A),
    ("linux.uidMappings[].containerID", A),
    ("linux.uidMappings[].hostID", A),
    ("linux.uidMappings[].size", A),
    ("linux.gidMappings", A),
    ("linux.gidMappings[].containerID", A),
    ("linux.gidMappings[].hostID", A),
    ("linux.gidMappings[].size", A),
    (
        "linux.timeOffsets",
        R("time namespace offsets are not supported by tinyo yet (the time namespace is)"),
    ),
    ("linux.devices", A),
    ("linux.devices[].type", A),
    ("linux.devices[].path", A),
    ("linux.devices[].major", A),
    ("linux.devices[].minor", A),
    ("linux.devices[].fileMode", A),
    ("linux.devices[].uid", A),
    ("linux.devices[].gid", A),
    ("linux.cgroupsPath", A),
    ("linux.rootfsPropagation", A),
    ("linux.sysctl", M),
    ("linux.maskedPaths", M),
    ("linux.readonlyPaths", M),
    ("linux.mountLabel", A),
    ("linux.personality", A),
    ("linux.personality.domain", A),
    ("linux.personality.flags", M),
    (
        "linux.intelRdt",
        R("Intel RDT (resctrl) is not supported by tinyo"),
    ),
    (
        "linux.netDevices",
        R("moving network devices into the container is not supported by tinyo yet"),
    ),
    (
        "linux.memoryPolicy",
        R("NUMA memory policies (set_mempolicy) are not supported by tinyo yet"),
    ),
    ("linux.seccomp", A),
    ("linux.seccomp.defaultAction", A),
    ("linux.seccomp.defaultErrnoRet", A),
    ("linux.seccomp.architectures", M),
    ("linux.seccomp.flags", M),
    ("linux.seccomp.listenerPath", A),
    ("linux.seccomp.listenerMetadata", A),
    ("linux.seccomp.syscalls", A),
    ("linux.seccomp.syscalls[].names", M),
    ("linux.seccomp.syscalls[].action", A),
    ("linux.seccomp.syscalls[].errnoRet", A),
    ("linux.seccomp.syscalls[].args", A),
    ("linux.seccomp.syscalls[].args[].index", A),
    ("linux.seccomp.syscalls[].args[].value", A),
    ("linux.seccomp.syscalls[].args[].valueTwo", A),
    ("linux.seccomp.syscalls[].args[].op", A),
    ("linux.resources", A),
    ("linux.resources.devices", A),
    ("linux.resources.devices[].allow", A),
    ("linux.resources.devices[].type", A),
    ("linux.resources.devices[].major", A),
    ("linux.resources.devices[].minor", A),
    ("linux.resources.devices[].access", A),
    ("linux.resources.memory", A),
    ("linux.resources.memory.limit", A),
    ("linux.resources.memory.reservation", A),
    ("linux.resources.memory.swap", A),
    (
        "linux.resources.memory.kernel",
        W("kernel memory limits are gone from Linux 6.0 and cgroup v2"),
    ),
    ("linux.resources.memory.kernelTCP", A),
    ("linux.resources.memory.swappiness", A),
    ("linux.resources.memory.disableOOMKiller", A),
    ("linux.resources.memory.useHierarchy", A),
    ("linux.resources.memory.checkBeforeUpdate", A),
    ("linux.resources.cpu", A),
    ("linux.resources.cpu.shares", A),
    ("linux.resources.cpu.quota", A),
    ("linux.resources.cpu.burst", A),
    ("linux.resources.cpu.period", A),
    ("linux.resources.cpu.realtimeRuntime", A),
    ("linux.resources.cpu.realtimePeriod", A),
    ("linux.resources.cpu.cpus", A),
    ("linux.resources.cpu.mems", A),
    ("linux.resources.cpu.idle", A),
    ("linux.resources.pids", A),
    ("linux.resources.pids.limit", A),
    ("linux.resources.blockIO", A),
    ("linux.resources.blockIO.weight", A),
    ("linux.resources.blockIO.leafWeight", A),
    ("linux.resources.blockIO.weightDevice", A),
    ("linux.resources.blockIO.weightDevice[].major", A),
    ("linux.resources.blockIO.weightDevice[].minor", A),
    ("linux.resources.blockIO.weightDevice[].weight", A),
    ("linux.resources.blockIO.weightDevice[].leafWeight", A),
    ("linux.resources.blockIO.throttleReadBpsDevice", A),
    ("linux.resources.blockIO.throttleWriteBpsDevice", A),
    ("linux.resources.blockIO.throttleReadIOPSDevice", A),
    ("linux.resources.blockIO.throttleWriteIOPSDevice", A),
    ("linux.resources.blockIO.*[].major", A),
    ("linux.resources.blockIO.*[].minor", A),
    ("linux.resources.blockIO.*[].rate", A),
    ("linux.resources.hugepageLimits", A),
    ("linux.resources.hugepageLimits[].pageSize", A),
    ("linux.resources.hugepageLimits[].limit", A),
    ("linux.resources.network", A),
    ("linux.resources.network.classID", A),
    ("linux.resources.network.priorities", A),
    ("linux.resources.network.priorities[].name", A),
    ("linux.resources.network.priorities[].priority", A),
    ("linux.resources.rdma", M),
    ("linux.resources.unified", M),
    ("windows", W(OTHER_PLATFORM)),
    ("solaris", W(OTHER_PLATFORM)),
    ("vm", W(OTHER_PLATFORM)),
    ("zos", W(OTHER_PLATFORM)),
];

/// A field the config sets that tinyo refuses.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{field}: {why}")]
pub struct Refused {
    pub field: String,
    pub why: &'static str,
}

/// A pattern's segments: keys, `*` for any key, `[]` for any array element.
fn segments(pattern: &str) -> impl Iterator<Item = &str> {
    pattern.split('.').flat_map(|part| {
        let key = part.trim_end_matches("[]");
        let arrays = (part.len() - key.len()) / 2;
        std::iter::once(key).chain(std::iter::repeat_n("[]", arrays))
    })
}

/// The list's entry for a path (its segments; `[]` for array elements).
fn lookup(path: &[&str]) -> Option<Support> {
    FIELDS
        .iter()
        .find(|(pattern, _)| {
            let mut n = 0;
            let all = segments(pattern).zip(path.iter()).all(|(p, k)| {
                n += 1;
                p == *k || (p == "*" && *k != "[]")
            });
            all && n == path.len() && segments(pattern).count() == path.len()
        })
        .map(|(_, s)| *s)
}

/// Walks a raw config: refused fields fail it, warned and unknown ones come back as warnings.
pub fn check(config: &Value) -> Result<Vec<String>, Refused> {
    let mut warnings = Vec::new();
    walk(config, &mut Vec::new(), "", &mut warnings)?;
    Ok(warnings)
}

/// `path` holds the segments down to `v`; `shown` is the same path as messages write it.
fn walk<'a>(
    v: &'a Value,
    path: &mut Vec<&'a str>,
    shown: &str,
    warnings: &mut Vec<String>,
) -> Result<(), Refused> {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                if child.is_null() {
                    continue;
                }
                let s = if shown.is_empty() {
                    k.clone()
                } else {
                    format!("{shown}.{k}")
                };
                path.push(k);
                let r = match lookup(path) {
                    None => {
                        warnings.push(format!(
                            "config.json: unknown field {s} (not in the runtime-spec tinyo \
                             knows); ignored"
                        ));
                        Ok(())
                    }
                    Some(Support::Refused(why)) => Err(Refused { field: s, why }),
                    Some(Support::Warned(why)) => {
                        warnings.push(format!("config.json: {s} is not applied: {why}"));
                        Ok(())
                    }
                    Some(Support::Map) => Ok(()),
                    Some(Support::Applied) => walk(child, path, &s, warnings),
                };
                path.pop();
                r?;
            }
        }
        Value::Array(items) => {
            path.push("[]");
            for (i, item) in items.iter().enumerate() {
                walk(item, path, &format!("{shown}[{i}]"), warnings)?;
            }
            path.pop();
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_runc_spec_config_is_all_known() {
        let cfg: Value = serde_json::to_value(oci_spec::runtime::Spec::default()).unwrap();
        assert_eq!(check(&cfg).unwrap(), Vec::<String>::new());
    }

    #[test]
    fn every_array_and_map_is_walked_and_named() {
        let cfg = json!({
            "ociVersion": "1.2.0",
            "annotations": {"anything": "goes"},
            "hooks": {"prestart": [{"path": "/bin/true", "args": ["x"], "tiemout": 3}]},
            "linux": {
                "resources": {
                    "blockIO": {"throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1}]},
                    "memory": {"kernel": 1},
                    "unified": {"memory.high": "1"}
                },
                "sysctl": {"net.ipv4.ip_forward": "1"}
            },
            "process": {"cwd": "/", "args": ["sh"], "shiny": true}
        });
        let w = check(&cfg).unwrap();
        assert_eq!(w.len(), 3, "{w:?}");
        assert!(w[0].contains("hooks.prestart[0].tiemout"), "{w:?}");
        assert!(
            w[1].contains("linux.resources.memory.kernel is not applied"),
            "{w:?}"
        );
        assert!(w[2].contains("unknown field process.shiny"), "{w:?}");
    }

    #[test]
    fn refused_fields_fail_with_their_name() {
        for (cfg, field) in [
            (
                json!({"linux": {"timeOffsets": {"monotonic": {"secs": 1}}}}),
                "linux.timeOffsets",
            ),
            (
                json!({"linux": {"intelRdt": {"closID": "x"}}}),
                "linux.intelRdt",
            ),
            (
                json!({"process": {"execCPUAffinity": {"initial": "0"}}}),
                "process.execCPUAffinity",
            ),
        ] {
            let e = check(&cfg).unwrap_err();
            assert_eq!(e.field, field);
            assert!(e.to_string().starts_with(field), "{e}");
        }
        // Null is absent.
        assert!(check(&json!({"linux": {"intelRdt": null}})).is_ok());
    }

    #[test]
    fn patterns_in_the_list_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for (p, _) in FIELDS {
            assert!(seen.insert(*p), "{p} listed twice");
        }
    }
}
