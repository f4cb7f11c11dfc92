//! `tinyo-shim run [flags] IMAGE [CMD...]`, and the hidden `supervise` that `run` becomes.

use std::fs;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::state::{self, Record, Roots, Status};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Run in the background and print the container id.
    #[arg(short, long)]
    pub detach: bool,
    /// Remove the container when it exits.
    #[arg(long)]
    pub rm: bool,
    /// A name for the container (default: the first 12 digits of its id).
    #[arg(long)]
    pub name: Option<String>,
    /// Give the container a terminal (raw mode, window size forwarded).
    #[arg(short, long)]
    pub tty: bool,
    /// Keep stdin open and pass it to the container.
    #[arg(short, long)]
    pub interactive: bool,
    /// Set an environment variable (K=V, or K to take this shell's value).
    #[arg(short, long = "env")]
    pub env: Vec<String>,
    /// Read environment variables from a file (K=V lines).
    #[arg(long)]
    pub env_file: Vec<PathBuf>,
    /// Bind a host path: /host/path:/container/path[:ro].
    #[arg(short, long = "volume")]
    pub volume: Vec<String>,
    /// Working directory in the container.
    #[arg(short, long)]
    pub workdir: Option<String>,
    /// User (name, uid, name:group or uid:gid) to run as.
    #[arg(short, long)]
    pub user: Option<String>,
    /// Hostname (default: the first 12 digits of the id).
    #[arg(long)]
    pub hostname: Option<String>,
    /// Override the image's entrypoint ("" for none).
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Memory limit (e.g. 64m, 1g).
    #[arg(short, long)]
    pub memory: Option<String>,
    /// Maximum number of processes.
    #[arg(long)]
    pub pids_limit: Option<i64>,
    /// CPUs the container may use (e.g. 0.5).
    #[arg(long)]
    pub cpus: Option<f64>,
    /// none, host or bridge [default: bridge when the CNI plugins are installed, else none].
    #[arg(long)]
    pub network: Option<String>,
    /// Publish a port: HOST:CONTAINER[/udp] or IP:HOST:CONTAINER (bridge network).
    #[arg(short, long = "publish")]
    pub publish: Vec<String>,
    /// Mount the container's root read-only.
    #[arg(long)]
    pub read_only: bool,
    /// Add a capability (e.g. NET_ADMIN, or ALL).
    #[arg(long)]
    pub cap_add: Vec<String>,
    /// Drop a capability (e.g. CHOWN, or ALL).
    #[arg(long)]
    pub cap_drop: Vec<String>,
    /// seccomp=unconfined, seccomp=PROFILE.json, no-new-privileges.
    #[arg(long)]
    pub security_opt: Vec<String>,
    /// As docker's: every capability, no seccomp filter, no masked paths, /sys writable and
    /// the host's devices. The container can then take over the machine.
    #[arg(long)]
    pub privileged: bool,
    /// Run the command as PID 1 instead of under tinyo-init.
    #[arg(long)]
    pub no_init: bool,
    /// Restart policy: no, on-failure[:MAX-RETRIES], always, unless-stopped (the first restart
    /// at once, then 10 s doubling to 5 min, as the kubelet; `stop` ends it).
    #[arg(long, default_value = "no")]
    pub restart: String,
    /// A health check: run with /bin/sh -c in the container every interval. Without it, the
    /// image's HEALTHCHECK (docker's `config.Healthcheck`) is used as it is, with
    /// --health-on-failure.
    #[arg(long, conflicts_with = "no_healthcheck")]
    pub health_cmd: Option<String>,
    /// Run no health check, not even the image's HEALTHCHECK.
    #[arg(long)]
    pub no_healthcheck: bool,
    /// Time between health checks.
    #[arg(long, default_value = "30s")]
    pub health_interval: String,
    /// A check running longer fails (and is killed).
    #[arg(long, default_value = "30s")]
    pub health_timeout: String,
    /// Failures in a row that make the container unhealthy.
    #[arg(long, default_value_t = 3)]
    pub health_retries: u32,
    /// Failures during this time after a start do not count until the first success.
    #[arg(long, default_value = "0s")]
    pub health_start_period: String,
    /// When unhealthy: none, kill (the restart policy decides) or restart.
    #[arg(long, default_value = "none")]
    pub health_on_failure: String,
    /// A startup check (podman's flags; a Kubernetes startupProbe): run alone until it passes,
    /// the other checks waiting; --health-startup-retries failures in a row kill the container.
    #[arg(long)]
    pub health_startup_cmd: Option<String>,
    #[arg(long, default_value = "30s")]
    pub health_startup_interval: String,
    #[arg(long, default_value = "30s")]
    pub health_startup_timeout: String,
    #[arg(long, default_value_t = 3)]
    pub health_startup_retries: u32,
    /// A readiness check (a Kubernetes readinessProbe): run like --health-cmd, its verdict
    /// only reported (`ready` / `not ready` in ps), never acted on.
    #[arg(long)]
    pub readiness_cmd: Option<String>,
    #[arg(long, default_value = "10s")]
    pub readiness_interval: String,
    #[arg(long, default_value = "1s")]
    pub readiness_timeout: String,
    /// Failures in a row that make it not ready.
    #[arg(long, default_value_t = 3)]
    pub readiness_retries: u32,
    /// Successes in a row that make it ready (a readinessProbe's successThreshold).
    #[arg(long, default_value_t = 1)]
    pub readiness_successes: u32,
    /// Join pod NAME: its network, IPC and UTS namespaces (and its published ports).
    #[arg(long)]
    pub pod: Option<String>,
    /// Rotate the log at this size (0 = never).
    #[arg(long, default_value = "10m")]
    pub log_max_size: String,
    /// Rotated log files to keep.
    #[arg(long, default_value_t = 3)]
    pub log_max_files: u32,
    /// The image (a reference, a stored name or a digest prefix).
    pub image: String,
    /// The command and its arguments (default: the image's).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct SuperviseArgs {
    /// The state directory of the `run` that started it.
    #[arg(long)]
    pub state: PathBuf,
    /// The image store of that `run`.
    #[arg(long)]
    pub store: PathBuf,
    /// Report readiness (`ok` or `error: …`) on this descriptor, then close it.
    #[arg(long)]
    pub ready_fd: Option<i32>,
    /// The container ran before (`start`): a failed first setup records the failure and
    /// keeps the container, instead of removing what `run` made.
    #[arg(long)]
    pub existing: bool,
    pub id: String,
}

/// tinyo-init: `$TINYO_INIT`, else next to this binary. It must be static: it runs inside
/// containers whose root has no C library (or the wrong one).
pub fn find_init() -> Result<PathBuf> {
    let init = match std::env::var_os("TINYO_INIT") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => std::env::current_exe()
            .context("finding tinyo-shim's own path")?
            .with_file_name("tinyo-init"),
    };
    let bytes = match fs::read(&init) {
        Ok(b) => b,
        Err(e) => bail!(
            "tinyo-init not found at {} ({e}): install it beside tinyo-shim, set TINYO_INIT, or use --no-init",
            init.display()
        ),
    };
    let linking =
        tinyo_core::elf::linking(&bytes).with_context(|| format!("reading {}", init.display()))?;
    if !linking.is_static() {
        bail!(
            "{} is dynamically linked and cannot run inside a container: use a static build (cargo xtask dist), or --no-init",
            init.display()
        );
    }
    Ok(init)
}

/// Removes a half-made container directory on error.
struct Unmade(Option<PathBuf>);

impl Drop for Unmade {
    fn drop(&mut self) {
        if let Some(d) = self.0.take() {
            let _ = fs::remove_dir_all(d);
        }
    }
}

/// A pod member's spec: the pod's network, IPC and UTS namespaces by path (its hostname is
/// the pod's, so none is set), its cgroup under the pod's.
pub(crate) fn join_pod(spec: &mut serde_json::Value, p: &crate::pod::Pod, id: &str) -> Result<()> {
    let ns = spec["linux"]["namespaces"]
        .as_array_mut()
        .context("the spec has no namespaces")?;
    for (kind, file) in [("network", "net"), ("ipc", "ipc"), ("uts", "uts")] {
        ns.retain(|n| n["type"] != kind);
        ns.push(serde_json::json!({"type": kind, "path": p.ns_path(file)?}));
    }
    if let Some(o) = spec.as_object_mut() {
        o.remove("hostname");
    }
    spec["linux"]["cgroupsPath"] = serde_json::json!(format!("{}/{id}", p.cgroup_parent()));
    Ok(())
}

/// The `--health-*` flags as a check when `--health-cmd` is given; else the image's
/// HEALTHCHECK, unless `--no-healthcheck`.
fn healthcheck(a: &Args, image: &Value) -> Result<Option<crate::health::Config>> {
    let on_failure = a.health_on_failure.parse().map_err(anyhow::Error::msg)?;
    let Some(cmd) = &a.health_cmd else {
        if a.no_healthcheck {
            return Ok(None);
        }
        return image_healthcheck(&image["config"]["Healthcheck"], on_failure);
    };
    check_config(
        "health",
        cmd,
        (
            &a.health_interval,
            &a.health_timeout,
            &a.health_start_period,
        ),
        a.health_retries,
        on_failure,
    )
    .map(Some)
}

/// Docker's `config.Healthcheck` (what a Dockerfile's HEALTHCHECK writes): `Test` is
/// `["NONE"]`, `["CMD", ARGS…]` or `["CMD-SHELL", CMD]`; durations are nanoseconds, 0 meaning
/// docker's defaults (30 s interval and timeout, 3 retries, no start period).
fn image_healthcheck(
    hc: &Value,
    on_failure: crate::health::OnFailure,
) -> Result<Option<crate::health::Config>> {
    let Some(test) = hc["Test"].as_array() else {
        return Ok(None);
    };
    let words: Vec<&str> = test.iter().filter_map(Value::as_str).collect();
    if words.len() != test.len() {
        bail!("the image's HEALTHCHECK Test {test:?} is not a list of strings");
    }
    let cmd = match words.split_first() {
        None | Some((&"NONE", _)) => return Ok(None),
        Some((&"CMD-SHELL", [cmd])) => cmd.to_string(),
        Some((&"CMD", args)) if !args.is_empty() => args
            .iter()
            .map(|a| format!("'{}'", a.replace('\'', r"'\''")))
            .collect::<Vec<_>>()
            .join(" "),
        _ => {
            bail!("the image's HEALTHCHECK Test {words:?} is not NONE, CMD ARGS… or CMD-SHELL CMD")
        }
    };
    if cmd.trim().is_empty() {
        bail!("the image's HEALTHCHECK command is empty");
    }
    let ms = |key: &str, default: u64| match hc[key].as_u64() {
        Some(0) | None => default,
        Some(ns) => (ns / 1_000_000).max(1),
    };
    Ok(Some(crate::health::Config {
        cmd,
        interval_ms: ms("Interval", 30_000),
        timeout_ms: ms("Timeout", 30_000),
        retries: match hc["Retries"].as_u64() {
            Some(0) | None => 3,
            Some(n) => n.min(u64::from(u32::MAX)) as u32,
        },
        start_period_ms: hc["StartPeriod"].as_u64().map_or(0, |ns| ns / 1_000_000),
        on_failure,
        successes: 1,
    }))
}

/// A check from its `--KIND-*` flags: (interval, timeout, start period).
fn check_config(
    kind: &str,
    cmd: &str,
    (interval, timeout, start): (&str, &str, &str),
    retries: u32,
    on_failure: crate::health::OnFailure,
) -> Result<crate::health::Config> {
    if cmd.trim().is_empty() {
        bail!("--{kind}-cmd is empty");
    }
    let ms = |flag: &str, v: &str| -> Result<u64> {
        let d = crate::health::parse_duration(v)
            .map_err(|e| anyhow::anyhow!("--{kind}-{flag}: {e}"))?;
        Ok(d.as_millis() as u64)
    };
    let interval_ms = ms("interval", interval)?;
    let timeout_ms = ms("timeout", timeout)?;
    if interval_ms == 0 || timeout_ms == 0 {
        bail!("--{kind}-interval and --{kind}-timeout must be longer than 0");
    }
    Ok(crate::health::Config {
        cmd: cmd.to_string(),
        interval_ms,
        timeout_ms,
        retries: retries.max(1),
        start_period_ms: ms("start-period", start)?,
        on_failure,
        successes: 1,
    })
}

pub fn run(roots: &Roots, a: Args) -> Result<i32> {
    let id = launch(roots, a)?;
    println!("{id}");
    Ok(0)
}

/// Creates the container and starts its supervisor: detached, returns the id once the
/// container runs; in the foreground, this process becomes the supervisor (no return).
pub(crate) fn launch(roots: &Roots, a: Args) -> Result<String> {
    if let Some(n) = &a.name {
        state::check_name(n)?;
    }
    let restart: crate::restart::Policy = a.restart.parse()?;
    if a.rm && restart != crate::restart::Policy::No {
        bail!("--rm and --restart {restart} conflict: a container removed when it exits cannot be restarted");
    }
    // Parsed before anything is made; the image's HEALTHCHECK is read once it is resolved.
    a.health_on_failure
        .parse::<crate::health::OnFailure>()
        .map_err(anyhow::Error::msg)?;
    let flag_healthcheck = healthcheck(&a, &Value::Null)?;
    let startup = match &a.health_startup_cmd {
        Some(cmd) => Some(check_config(
            "health-startup",
            cmd,
            (&a.health_startup_interval, &a.health_startup_timeout, "0s"),
            a.health_startup_retries,
            crate::health::OnFailure::Kill,
        )?),
        None => None,
    };
    let readiness = match &a.readiness_cmd {
        Some(cmd) => Some(
            check_config(
                "readiness",
                cmd,
                (&a.readiness_interval, &a.readiness_timeout, "0s"),
                a.readiness_retries,
                crate::health::OnFailure::None,
            )
            .map(|c| crate::health::Config {
                successes: a.readiness_successes.max(1),
                ..c
            })?,
        ),
        None => None,
    };
    if a.rm && a.health_on_failure == "restart" {
        bail!("--rm and --health-on-failure restart conflict: a container removed when it exits cannot be restarted");
    }
    let pod = match &a.pod {
        Some(name) => {
            if a.network.is_some() || !a.publish.is_empty() || a.hostname.is_some() {
                bail!("--pod {name}: the pod's network, ports and hostname are its containers' (set them with pod create)");
            }
            let p = crate::pod::load(roots, name)?;
            p.ns_path("net")?;
            Some(p)
        }
        None => None,
    };
    let network_name = match &pod {
        Some(_) => "pod",
        None => {
            let network = match &a.network {
                Some(n) => n.parse::<crate::net::Mode>()?,
                None => crate::network::default_mode(),
            };
            crate::network::mode_name(&network)
        }
    };
    if !a.publish.is_empty() && network_name != "bridge" {
        bail!("-p needs the bridge network (--network bridge)");
    }
    for p in &a.publish {
        crate::net::parse_port(p)?;
    }
    let memory = a.memory.as_deref().map(super::parse_bytes).transpose()?;
    let log_max_size = if a.log_max_size == "0" {
        0
    } else {
        super::parse_bytes(&a.log_max_size)? as u64
    };
    let init = if a.no_init { None } else { Some(find_init()?) };
    for v in &a.volume {
        crate::spec::volume(v)?;
    }
    let img = crate::image::resolve(&roots.store, &a.image, true)?;
    let healthcheck = match flag_healthcheck {
        Some(h) => Some(h),
        None => healthcheck(&a, &img.config)
            .with_context(|| format!("{}: the image's HEALTHCHECK", img.name))?,
    };
    let console_size = if a.tty {
        crate::term::window_size(std::io::stdin().as_fd()).ok()
    } else {
        None
    };
    let id = state::new_id();
    let name = a.name.clone().unwrap_or_else(|| id[..12].to_string());
    let opts = crate::spec::Options {
        command: a.command.clone(),
        entrypoint: a.entrypoint.clone(),
        env: a.env.clone(),
        env_files: a.env_file.clone(),
        volumes: a.volume.clone(),
        workdir: a.workdir.clone(),
        user: a.user.clone(),
        hostname: pod
            .as_ref()
            .map(|p| p.hostname.clone())
            .or(a.hostname.clone()),
        memory,
        pids_limit: a.pids_limit,
        cpus: a.cpus,
        network: network_name.to_string(),
        read_only: a.read_only,
        cap_add: a.cap_add.clone(),
        cap_drop: a.cap_drop.clone(),
        security_opts: a.security_opt.clone(),
        privileged: a.privileged,
        init,
        tty: a.tty,
        console_size,
    };
    let mut spec = crate::spec::build(&img, &opts, &id)?;
    if let Some(p) = &pod {
        join_pod(&mut spec, p, &id)?;
    }
    let command = spec["process"]["args"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_string))
        .filter(|s| !(opts.init.is_some() && (s == crate::spec::INIT_PATH || s == "--")))
        .collect();
    // One container per name: checked and claimed under the state root's lock.
    fs::create_dir_all(roots.containers())
        .with_context(|| format!("creating {}", roots.containers().display()))?;
    let guard = state::lock(&roots.state)?;
    if state::list(roots)?.iter().any(|r| r.name == name) {
        bail!("the container name {name:?} is already in use (tinyo-shim rm {name} first)");
    }
    let dir = roots.container(&id);
    let mut unmade = Unmade(Some(dir.clone()));
    for d in ["upper", "work", "rootfs"] {
        fs::create_dir_all(dir.join(d))
            .with_context(|| format!("creating {}", dir.join(d).display()))?;
    }
    fs::write(dir.join("lower.json"), serde_json::to_vec(&[&img.rootfs])?)?;
    state::write_atomic(&dir.join("config.json"), &serde_json::to_vec_pretty(&spec)?)?;
    let rec = Record {
        id: id.clone(),
        name: name.clone(),
        image: img.name.clone(),
        image_digest: img.digest.clone(),
        command,
        created: tinyo_core::container::now_rfc3339(),
        status: Status::Created,
        pid: None,
        supervisor: None,
        started: None,
        exit_code: None,
        exited: None,
        oom_killed: false,
        tty: a.tty,
        interactive: a.interactive,
        detached: a.detach,
        auto_remove: a.rm,
        network: network_name.to_string(),
        ports: a.publish.clone(),
        net: None,
        log_max_size,
        log_max_files: a.log_max_files.max(1),
        restart,
        restarts: 0,
        next_restart: None,
        stop_requested: false,
        healthcheck,
        health: None,
        pod: pod.as_ref().map(|p| p.name.clone()),
        readiness,
        ready: None,
        startup,
        startup_state: None,
    };
    state::save(&dir, &rec)?;
    drop(guard);
    if !a.detach {
        // The foreground supervisor is this very process: same pid, terminal and signals.
        let mut cmd = supervisor_command(roots)?;
        let err = cmd.arg(&id).exec();
        bail!("starting the supervisor {:?}: {err}", cmd.get_program());
    }
    spawn_detached_supervisor(roots, &id, false)?;
    unmade.0 = None;
    Ok(id)
}

/// `tinyo-shim supervise --state … --store …` (the id still to add).
fn supervisor_command(roots: &Roots) -> Result<Command> {
    let exe = std::env::current_exe().context("finding tinyo-shim's own path")?;
    let mut cmd = Command::new(exe);
    cmd.arg("supervise")
        .arg("--state")
        .arg(&roots.state)
        .arg("--store")
        .arg(&roots.store);
    Ok(cmd)
}

/// Starts the supervisor of container `id` detached, in its own session, and waits for its
/// report: Ok once the container runs, else the setup error it sent. `existing`: the
/// container ran before (`start`), see [`SuperviseArgs::existing`].
pub(crate) fn spawn_detached_supervisor(roots: &Roots, id: &str, existing: bool) -> Result<()> {
    let mut cmd = supervisor_command(roots)?;
    if existing {
        cmd.arg("--existing");
    }
    cmd.args(["--ready-fd", "3"]).arg(id);
    let (mut rd, wr) = {
        let (r, w) = tinyo_core::sys::pipe().context("creating the readiness pipe")?;
        (fs::File::from(r), w)
    };
    let wr_raw = wr.as_raw_fd();
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let hook = move || {
        // SAFETY: setsid and dup2 are async-signal-safe and take integers.
        if unsafe { libc::setsid() } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: as above; fd 3 becomes the readiness pipe (dup2 clears close-on-exec).
        if unsafe { libc::dup2(wr_raw, 3) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    };
    // SAFETY: the hook makes only async-signal-safe calls between fork and exec.
    unsafe { cmd.pre_exec(hook) };
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting the supervisor {:?}", cmd.get_program()))?;
    drop(wr);
    let mut report = String::new();
    let _ = rd.read_to_string(&mut report);
    // The supervisor lives on in its own session; its exit status is none of our business
    // unless it died during setup.
    if report.trim() == "ok" {
        drop(child);
        return Ok(());
    }
    let _ = child.wait();
    match report.trim().strip_prefix("error: ") {
        Some(msg) => bail!("{msg}"),
        None => bail!("the container's supervisor exited during setup"),
    }
}

pub fn supervise(a: SuperviseArgs) -> i32 {
    let roots = Roots {
        state: a.state.clone(),
        store: a.store.clone(),
    };
    let ready = a.ready_fd.map(|fd| {
        // SAFETY: `run` hands the supervisor this descriptor (the readiness pipe) and nothing
        // else in this process owns it.
        unsafe { OwnedFd::from_raw_fd(fd) }
    });
    crate::supervise::run(&roots, &a.id, ready, a.existing)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::OnFailure;
    use serde_json::json;

    #[test]
    fn the_images_healthcheck_in_dockers_forms() {
        let hc = |v: Value| image_healthcheck(&v, OnFailure::Kill);
        let shell = hc(
            json!({"Test": ["CMD-SHELL", "wget -q -O- localhost || exit 1"],
            "Interval": 5_000_000_000u64, "Timeout": 2_000_000_000u64, "Retries": 4,
            "StartPeriod": 1_500_000_000u64}),
        )
        .unwrap()
        .unwrap();
        assert_eq!(shell.cmd, "wget -q -O- localhost || exit 1");
        assert_eq!(
            (
                shell.interval_ms,
                shell.timeout_ms,
                shell.retries,
                shell.start_period_ms
            ),
            (5000, 2000, 4, 1500)
        );
        assert_eq!(shell.on_failure, OnFailure::Kill);
        let exec = hc(json!({"Test": ["CMD", "cat", "/tmp/it's"]}))
            .unwrap()
            .unwrap();
        assert_eq!(exec.cmd, r"'cat' '/tmp/it'\''s'");
        // Docker's defaults for zero or missing durations.
        assert_eq!(
            (
                exec.interval_ms,
                exec.timeout_ms,
                exec.retries,
                exec.start_period_ms
            ),
            (30_000, 30_000, 3, 0)
        );
        assert!(hc(json!({"Test": ["NONE"]})).unwrap().is_none());
        assert!(hc(Value::Null).unwrap().is_none());
        for bad in [
            json!({"Test": ["CMD"]}),
            json!({"Test": ["SHELL", "x"]}),
            json!({"Test": [1]}),
        ] {
            assert!(hc(bad.clone()).is_err(), "{bad}");
        }
    }
}
