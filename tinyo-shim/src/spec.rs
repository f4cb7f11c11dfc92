//! The runtime spec of a `run`: the image's Entrypoint/Cmd/Env/WorkingDir/User, then the
//! flags, on top of the defaults a Docker user expects (tinyo-init as PID 1, Docker's default
//! capabilities, a default seccomp profile, masked and read-only kernel paths, a private /dev).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use tinyo_core::process::DOCKER_DEFAULT_CAPS;

use crate::image::Image;

/// Where tinyo-init is bound in the container.
pub const INIT_PATH: &str = "/.tinyo-init";

/// The flags of `run` that shape the spec.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub command: Vec<String>,
    pub entrypoint: Option<String>,
    pub env: Vec<String>,
    pub env_files: Vec<PathBuf>,
    pub volumes: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub hostname: Option<String>,
    pub memory: Option<i64>,
    pub pids_limit: Option<i64>,
    pub cpus: Option<f64>,
    pub network: String,
    pub read_only: bool,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub security_opts: Vec<String>,
    /// docker's `--privileged`: every capability, no seccomp filter, nothing masked, /sys and
    /// the cgroups writable, the host's devices.
    pub privileged: bool,
    pub init: Option<PathBuf>,
    pub tty: bool,
    /// (rows, columns) of the caller's terminal, for `-t`.
    pub console_size: Option<(u16, u16)>,
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_string))
        .collect()
}

/// `NAME` → `CAP_NAME`, upper case; `ALL` stays.
fn cap_name(c: &str) -> String {
    let u = c.to_ascii_uppercase();
    if u == "ALL" || u.starts_with("CAP_") {
        u
    } else {
        format!("CAP_{u}")
    }
}

/// The capability set after `--cap-add`/`--cap-drop` (either may be `ALL`).
pub fn capabilities(add: &[String], drop: &[String]) -> Result<Vec<String>> {
    let known = tinyo_core::process::CAPS;
    let check = |c: &String| {
        if c != "ALL" && !known.contains(&c.as_str()) {
            bail!("unknown capability {c:?}");
        }
        Ok(())
    };
    let add: Vec<String> = add.iter().map(|c| cap_name(c)).collect();
    let drop: Vec<String> = drop.iter().map(|c| cap_name(c)).collect();
    add.iter().chain(&drop).try_for_each(check)?;
    let mut caps: Vec<String> = if add.iter().any(|c| c == "ALL") {
        // As podman: ALL is what this process may hand on (its bounding set), so a host
        // without, say, CAP_SYS_RESOURCE still runs `--privileged` containers.
        let bounding = bounding_set();
        known
            .iter()
            .enumerate()
            .filter(|(bit, _)| bounding.is_none_or(|b| b & (1u64 << bit) != 0))
            .map(|(_, c)| c.to_string())
            .collect()
    } else {
        DOCKER_DEFAULT_CAPS.iter().map(|c| c.to_string()).collect()
    };
    for c in &add {
        if c != "ALL" && !caps.contains(c) {
            caps.push(c.clone());
        }
    }
    if drop.iter().any(|c| c == "ALL") {
        caps.retain(|c| add.contains(c));
    } else {
        caps.retain(|c| !drop.contains(c));
    }
    Ok(caps)
}

/// This process's capability bounding set (`CapBnd` of /proc/self/status), bit N being
/// capability number N; None when it cannot be read.
fn bounding_set() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let hex = status.lines().find_map(|l| l.strip_prefix("CapBnd:"))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}

/// `-v SRC:DST[:ro|rw]` as a bind mount. Only host paths: named volumes do not exist here.
pub fn volume(spec: &str) -> Result<Value> {
    let parts: Vec<&str> = spec.split(':').collect();
    let (src, dst, mode) = match parts.as_slice() {
        [s, d] => (*s, *d, "rw"),
        [s, d, m] => (*s, *d, *m),
        _ => bail!("bad volume {spec:?}: use /host/path:/container/path[:ro]"),
    };
    if !src.starts_with('/') {
        bail!("bad volume {spec:?}: {src:?} is not an absolute host path (named volumes are not supported)");
    }
    if !dst.starts_with('/') || dst.split('/').any(|c| c == "..") {
        bail!("bad volume {spec:?}: {dst:?} must be an absolute path inside the container");
    }
    let ro = match mode {
        "ro" => true,
        "rw" => false,
        other => bail!("bad volume {spec:?}: mode {other:?} is not ro or rw"),
    };
    if !Path::new(src).exists() {
        bail!("bad volume {spec:?}: {src} does not exist on the host");
    }
    let mut options = vec!["rbind", "rprivate"];
    if ro {
        options.push("ro");
    }
    Ok(json!({"destination": dst, "type": "bind", "source": src, "options": options}))
}

/// `K=V` lines of an env file (`#` comments and blank lines skipped; a bare `K` takes the
/// caller's value, as Docker does).
pub fn env_file(path: &Path) -> Result<Vec<String>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("--env-file {}", path.display()))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| match l.split_once('=') {
            Some(_) => Some(l.to_string()),
            None => std::env::var(l).ok().map(|v| format!("{l}={v}")),
        })
        .collect())
}

/// Sets or replaces `K=…` in an env list.
fn set_env(env: &mut Vec<String>, kv: &str) {
    let key = kv.split_once('=').map_or(kv, |(k, _)| k);
    env.retain(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) != key);
    env.push(kv.to_string());
}

/// The spec for container `id` from `img` and `o`.
pub fn build(img: &Image, o: &Options, id: &str) -> Result<Value> {
    let mut spec = serde_json::to_value(oci_spec::runtime::Spec::default())?;
    let c = &img.config["config"];
    // Command: --entrypoint replaces the image's and drops its Cmd (as Docker does).
    let mut args = match &o.entrypoint {
        Some(e) if e.is_empty() => vec![],
        Some(e) => vec![e.clone()],
        None => strings(&c["Entrypoint"]),
    };
    if !o.command.is_empty() {
        args.extend(o.command.iter().cloned());
    } else if o.entrypoint.is_none() {
        args.extend(strings(&c["Cmd"]));
    }
    if args.is_empty() {
        bail!(
            "{}: the image has no command (no Entrypoint or Cmd): give one after the image",
            img.name
        );
    }
    if let Some(init) = &o.init {
        let mut with_init = vec![INIT_PATH.to_string(), "--".to_string()];
        with_init.extend(args);
        args = with_init;
        spec["mounts"]
            .as_array_mut()
            .unwrap_or(&mut vec![])
            .push(json!({
                "destination": INIT_PATH, "type": "bind", "source": init,
                "options": ["bind", "ro", "nosuid", "nodev"]
            }));
    }
    let mut env = strings(&c["Env"]);
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(
            0,
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
        );
    }
    let hostname = o.hostname.clone().unwrap_or_else(|| id[..12].to_string());
    set_env(&mut env, &format!("HOSTNAME={hostname}"));
    if o.tty {
        set_env(&mut env, "TERM=xterm");
    }
    for f in &o.env_files {
        for kv in env_file(f)? {
            set_env(&mut env, &kv);
        }
    }
    for kv in &o.env {
        if kv.contains('=') {
            set_env(&mut env, kv);
        } else if let Ok(v) = std::env::var(kv) {
            set_env(&mut env, &format!("{kv}={v}"));
        }
    }
    let cwd = o
        .workdir
        .clone()
        .or_else(|| c["WorkingDir"].as_str().map(str::to_string))
        .filter(|w| !w.is_empty())
        .unwrap_or_else(|| "/".into());
    if !cwd.starts_with('/') {
        bail!("-w {cwd:?}: the working directory must be absolute");
    }
    let user = o
        .user
        .clone()
        .or_else(|| c["User"].as_str().map(str::to_string))
        .unwrap_or_default();
    let root = tinyo_core::sys::open_dir(&img.rootfs)
        .with_context(|| format!("opening {}", img.rootfs.display()))?;
    let (uid, gid, groups) =
        tinyo_pull::bundle::resolve_user(&user, std::os::fd::AsFd::as_fd(&root));
    let p = &mut spec["process"];
    p["args"] = json!(args);
    p["env"] = json!(env);
    p["cwd"] = json!(cwd);
    p["terminal"] = json!(o.tty);
    if let (true, Some((rows, cols))) = (o.tty, o.console_size) {
        p["consoleSize"] = json!({"height": rows, "width": cols});
    }
    p["user"] = json!({"uid": uid, "gid": gid});
    if !groups.is_empty() {
        p["user"]["additionalGids"] = json!(groups);
    }
    let mut add = o.cap_add.clone();
    if o.privileged {
        add.push("ALL".into());
    }
    let caps = capabilities(&add, &o.cap_drop)?;
    p["capabilities"] = json!({
        "bounding": caps, "effective": caps, "permitted": caps,
    });
    // Docker runs without no_new_privs unless asked (setuid binaries work in the container).
    p["noNewPrivileges"] = json!(false);
    p["rlimits"] = json!([]);
    spec["hostname"] = json!(hostname);
    spec["root"] = json!({"path": "rootfs", "readonly": o.read_only});
    spec["annotations"] = json!({"org.opencontainers.image.ref.name": img.name});
    let linux = &mut spec["linux"];
    linux["cgroupsPath"] = json!(format!("tinyo-shim/{id}"));
    let mut resources = json!({});
    if let Some(m) = o.memory {
        resources["memory"] = json!({"limit": m});
    }
    if let Some(n) = o.pids_limit {
        resources["pids"] = json!({"limit": n});
    }
    if let Some(c) = o.cpus {
        if c.is_nan() || c <= 0.0 || c > 1024.0 {
            bail!("--cpus {c}: give a positive number of CPUs");
        }
        resources["cpu"] = json!({"quota": (c * 100_000.0) as i64, "period": 100_000});
    }
    linux["resources"] = resources;
    let mut seccomp = Some(serde_json::to_value(tinyo_core::seccomp::default_profile())?);
    for opt in &o.security_opts {
        match opt.split_once('=') {
            Some(("seccomp", "unconfined")) => seccomp = None,
            Some(("seccomp", file)) => {
                let text = std::fs::read(file)
                    .with_context(|| format!("--security-opt seccomp={file}"))?;
                let v: Value = serde_json::from_slice(&text)
                    .with_context(|| format!("--security-opt seccomp={file}: not JSON"))?;
                seccomp = Some(v);
            }
            Some(("no-new-privileges", v)) | Some(("no-new-privileges:", v)) => {
                spec["process"]["noNewPrivileges"] = json!(v != "false");
            }
            _ if opt == "no-new-privileges" => {
                spec["process"]["noNewPrivileges"] = json!(true);
            }
            _ => bail!(
                "--security-opt {opt:?} is not supported (seccomp=unconfined, seccomp=FILE, no-new-privileges)"
            ),
        }
    }
    if o.privileged {
        seccomp = None;
    }
    if let Some(s) = seccomp {
        spec["linux"]["seccomp"] = s;
    }
    let ns = spec["linux"]["namespaces"].as_array_mut();
    if let Some(ns) = ns {
        match o.network.as_str() {
            "host" => ns.retain(|n| n["type"] != "network"),
            _ => {
                if !ns.iter().any(|n| n["type"] == "network") {
                    ns.push(json!({"type": "network"}));
                }
            }
        }
    }
    let mounts = spec["mounts"].as_array_mut();
    if let Some(mounts) = mounts {
        if o.network != "none" && Path::new("/etc/resolv.conf").exists() {
            mounts.push(json!({
                "destination": "/etc/resolv.conf", "type": "bind",
                "source": "/etc/resolv.conf", "options": ["rbind", "ro", "rprivate"]
            }));
        }
        for v in &o.volumes {
            mounts.push(volume(v)?);
        }
    }
    if o.privileged {
        unconfine(&mut spec, Path::new("/dev"))?;
    }
    Ok(spec)
}

/// The rest of `--privileged` (capabilities and seccomp are done by [`build`]): no masked or
/// read-only paths, /sys and the cgroup mount writable, every device of `dev` (the host's
/// /dev, but not its pty, shm or mqueue instances, nor the nodes a container gets its own of)
/// created in the container and allowed by the device cgroup.
fn unconfine(spec: &mut Value, dev: &Path) -> Result<()> {
    let linux = &mut spec["linux"];
    linux["maskedPaths"] = json!([]);
    linux["readonlyPaths"] = json!([]);
    linux["devices"] = json!(host_devices(dev)?);
    linux["resources"]["devices"] = json!([{"allow": true, "access": "rwm"}]);
    for m in spec["mounts"].as_array_mut().into_iter().flatten() {
        if m["type"] == "sysfs" || m["type"] == "cgroup" {
            if let Some(opts) = m["options"].as_array_mut() {
                opts.retain(|o| o != "ro");
            }
        }
    }
    Ok(())
}

/// Character and block devices under `dev`, as runtime-spec `linux.devices` entries (paths as
/// in the container, under /dev).
fn host_devices(dev: &Path) -> Result<Vec<Value>> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    const SKIP_DIRS: [&str; 4] = ["pts", "shm", "mqueue", "hugepages"];
    const OWN: [&str; 3] = ["console", "ptmx", "tty"];
    let mut out = Vec::new();
    let mut stack = vec![(dev.to_path_buf(), 0)];
    while let Some((dir, depth)) = stack.pop() {
        let rd = std::fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))?;
        for e in rd.flatten() {
            let path = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            // symlink_metadata: links (/dev/fd, /dev/stdin…) are neither followed nor copied.
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            let ft = meta.file_type();
            if ft.is_dir() {
                if depth < 3 && !(depth == 0 && SKIP_DIRS.contains(&name.as_str())) {
                    stack.push((path, depth + 1));
                }
                continue;
            }
            let typ = if ft.is_char_device() {
                "c"
            } else if ft.is_block_device() {
                "b"
            } else {
                continue;
            };
            if depth == 0 && OWN.contains(&name.as_str()) {
                continue;
            }
            let rel = path.strip_prefix(dev).unwrap_or(&path);
            let rdev = meta.rdev();
            out.push(json!({
                "path": Path::new("/dev").join(rel),
                "type": typ,
                "major": libc::major(rdev),
                "minor": libc::minor(rdev),
                "fileMode": meta.mode() & 0o7777,
                "uid": meta.uid(),
                "gid": meta.gid(),
            }));
        }
    }
    out.sort_by(|a, b| a["path"].as_str().cmp(&b["path"].as_str()));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_add_and_drop_over_dockers_defaults() {
        let c = capabilities(&["net_admin".into()], &["CAP_CHOWN".into()]).unwrap();
        assert!(c.contains(&"CAP_NET_ADMIN".to_string()));
        assert!(!c.contains(&"CAP_CHOWN".to_string()));
        assert_eq!(c.len(), DOCKER_DEFAULT_CAPS.len());
        let c = capabilities(&["KILL".into()], &["ALL".into()]).unwrap();
        assert_eq!(c, vec!["CAP_KILL"]);
        assert!(capabilities(&["FLY".into()], &[]).is_err());
    }

    #[test]
    fn privileged_unmasks_and_lists_the_devices_of_dev() {
        // A stand-in /dev: devices cannot be made without root, so only the walk's filters on
        // what is not a device are checked here, and /dev/null from the host.
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("pts")).unwrap();
        std::fs::write(dir.path().join("file"), "").unwrap();
        std::os::unix::fs::symlink("/proc/self/fd", dir.path().join("fd")).unwrap();
        assert_eq!(host_devices(dir.path()).unwrap(), Vec::<Value>::new());
        let host = host_devices(Path::new("/dev")).unwrap();
        let null = host.iter().find(|d| d["path"] == "/dev/null").unwrap();
        assert_eq!(
            (
                null["type"].as_str(),
                null["major"].as_u64(),
                null["minor"].as_u64()
            ),
            (Some("c"), Some(1), Some(3))
        );
        assert!(!host.iter().any(|d| {
            let p = d["path"].as_str().unwrap();
            p.starts_with("/dev/pts/") || p == "/dev/console" || p == "/dev/ptmx" || p == "/dev/tty"
        }));
        let mut spec = serde_json::to_value(oci_spec::runtime::Spec::default()).unwrap();
        unconfine(&mut spec, dir.path()).unwrap();
        assert_eq!(spec["linux"]["maskedPaths"], json!([]));
        assert_eq!(spec["linux"]["readonlyPaths"], json!([]));
        assert_eq!(
            spec["linux"]["resources"]["devices"],
            json!([{"allow": true, "access": "rwm"}])
        );
        let sys = spec["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["type"] == "sysfs")
            .unwrap();
        assert!(
            !sys["options"].as_array().unwrap().contains(&json!("ro")),
            "{sys}"
        );
    }

    #[test]
    fn volumes_are_host_binds() {
        let v = volume("/tmp:/data:ro").unwrap();
        assert_eq!(v["options"], json!(["rbind", "rprivate", "ro"]));
        assert!(volume("data:/data")
            .unwrap_err()
            .to_string()
            .contains("named volumes"));
        assert!(volume("/tmp:data").is_err());
        assert!(volume("/tmp:/d:rx").is_err());
        assert!(volume("/nonexistent-tinyo:/d").is_err());
        assert!(volume("/tmp").is_err());
    }

    #[test]
    fn env_files_skip_comments_and_take_bare_names_from_the_caller() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("env");
        std::fs::write(&f, "# c\nA=1\n\nPATH\nNOT_SET_TINYO_X\n").unwrap();
        let e = env_file(&f).unwrap();
        assert_eq!(e[0], "A=1");
        assert!(e[1].starts_with("PATH="));
        assert_eq!(e.len(), 2);
    }
}
