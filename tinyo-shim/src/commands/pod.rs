//! `tinyo-shim pod create|ps|inspect|start|stop|rm`: pods whose containers share network, IPC and
//! UTS namespaces (see [`crate::pod`]); containers join with `run --pod NAME`.

use std::path::Path;

use anyhow::{bail, Result};
use serde_json::json;

use crate::pod::{self, Pod};
use crate::state::{self, Record, Roots, Status};

#[derive(Debug, clap::Subcommand)]
pub enum PodCommand {
    /// Create a pod and start its infra process.
    Create(CreateArgs),
    /// List pods.
    Ps(PsArgs),
    /// Print what is known of pods and their containers, as JSON.
    Inspect(NamesArgs),
    /// Start a stopped pod: its infra process and network, then its exited containers.
    Start(StartArgs),
    /// Stop a pod's containers, then its infra process.
    Stop(NamesArgs),
    /// Remove pods (-f stops them and removes their containers first).
    Rm(RmArgs),
}

#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// none or bridge [default: bridge when the CNI plugins are installed, else none].
    #[arg(long)]
    pub network: Option<String>,
    /// Publish a port of the pod: HOST:CONTAINER[/udp] or IP:HOST:CONTAINER (bridge network).
    #[arg(short, long = "publish")]
    pub publish: Vec<String>,
    /// The pod's hostname (default: its name).
    #[arg(long)]
    pub hostname: Option<String>,
    pub name: String,
}

#[derive(Debug, clap::Args)]
pub struct PsArgs {
    /// table or json.
    #[arg(long, default_value = "table")]
    pub format: String,
}

#[derive(Debug, clap::Args)]
pub struct NamesArgs {
    #[arg(required = true)]
    pub names: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct StartArgs {
    /// Every pod that is not running (at boot, before `start --all`).
    #[arg(short, long, conflicts_with = "names")]
    pub all: bool,
    #[arg(required_unless_present = "all")]
    pub names: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct RmArgs {
    #[arg(short, long)]
    pub force: bool,
    #[arg(required = true)]
    pub names: Vec<String>,
}

pub fn run(roots: &Roots, c: PodCommand) -> Result<i32> {
    match c {
        PodCommand::Create(a) => create(roots, a),
        PodCommand::Ps(a) => ps(roots, a),
        PodCommand::Inspect(a) => inspect(roots, a),
        PodCommand::Start(a) if a.all => {
            let mut failed = 0;
            for p in pod::list(roots)?.into_iter().filter(|p| !p.running()) {
                match start(roots, &p.name) {
                    Ok(()) => println!("{}", p.name),
                    Err(e) => {
                        eprintln!("tinyo-shim: pod {}: {e:#}", p.name);
                        failed += 1;
                    }
                }
            }
            Ok(if failed > 0 { 125 } else { 0 })
        }
        PodCommand::Start(a) => {
            for name in &a.names {
                start(roots, name)?;
                println!("{name}");
            }
            Ok(0)
        }
        PodCommand::Stop(a) => {
            for name in &a.names {
                stop(roots, &pod::load(roots, name)?)?;
                println!("{name}");
            }
            Ok(0)
        }
        PodCommand::Rm(a) => rm(roots, a),
    }
}

/// The containers of pod `name`.
pub fn members(roots: &Roots, name: &str) -> Result<Vec<Record>> {
    Ok(state::list(roots)?
        .into_iter()
        .filter(|r| r.pod.as_deref() == Some(name))
        .collect())
}

fn create(roots: &Roots, a: CreateArgs) -> Result<i32> {
    state::check_name(&a.name)?;
    let network = match &a.network {
        Some(n) => n.parse::<crate::net::Mode>()?,
        None => crate::network::default_mode(),
    };
    let network = crate::network::mode_name(&network);
    if network == "host" {
        bail!("--network host: a pod has a network namespace of its own (use none or bridge)");
    }
    if !a.publish.is_empty() && network != "bridge" {
        bail!("-p needs the bridge network (--network bridge)");
    }
    let ports = a
        .publish
        .iter()
        .map(|p| crate::net::parse_port(p))
        .collect::<Result<Vec<_>, _>>()?;
    let hostname = a.hostname.clone().unwrap_or_else(|| a.name.clone());
    let init = super::run::find_init()?;
    std::fs::create_dir_all(pod::pods_dir(roots))?;
    let guard = state::lock(&roots.state)?;
    if pod::load(roots, &a.name).is_ok() {
        bail!(
            "the pod name {:?} is already in use (tinyo-shim pod rm {} first)",
            a.name,
            a.name
        );
    }
    let mut p = Pod {
        id: state::new_id(),
        name: a.name.clone(),
        created: tinyo_core::container::now_rfc3339(),
        hostname,
        network: network.to_string(),
        ports: a.publish.clone(),
        infra: None,
        net: None,
        cgroups: Vec::new(),
    };
    bring_up(roots, &mut p, &init, &ports)?;
    if let Err(e) = pod::save(roots, &p) {
        teardown(roots, &p);
        pod::remove_cgroups(&p);
        return Err(e);
    }
    drop(guard);
    println!("{}", p.id);
    Ok(0)
}

/// Starts the pod's infra process in its cgroups (made when missing) and attaches its network;
/// on failure undoes what it did (the cgroups only when it made them).
fn bring_up(roots: &Roots, p: &mut Pod, init: &Path, ports: &[crate::net::PortMap]) -> Result<()> {
    let made = p.cgroups.is_empty() || p.cgroups.iter().any(|d| !Path::new(&d.path).is_dir());
    if made {
        p.cgroups = pod::infra_cgroups(&p.cgroup_parent(), &p.id)?;
    }
    let undo_cgroups = |p: &Pod| {
        if made {
            pod::remove_cgroups(p);
        }
    };
    let infra = match pod::start_infra(init, &p.hostname, &p.cgroups) {
        Ok(i) => i,
        Err(e) => {
            undo_cgroups(p);
            return Err(e);
        }
    };
    p.infra = Some(infra);
    let netns = format!("/proc/{}/ns/net", infra.pid);
    let attached = match p.network.as_str() {
        "bridge" => crate::net::Network::new(&roots.state)
            .and_then(|n| n.attach(&p.id, Path::new(&netns), ports))
            .map(|at| serde_json::to_value(at).ok())
            .map_err(|e| anyhow::anyhow!("attaching pod {} to the bridge network: {e}", p.name)),
        _ => crate::network::loopback_up(Path::new(&netns))
            .map(|()| None)
            .map_err(|e| anyhow::anyhow!("bringing up lo in pod {}: {e}", p.name)),
    };
    match attached {
        Ok(net) => {
            p.net = net;
            Ok(())
        }
        Err(e) => {
            pod::stop_infra(infra);
            p.infra = None;
            undo_cgroups(p);
            Err(e)
        }
    }
}

/// `pod start`: a stopped pod's infra process and network again, then its containers.
fn start(roots: &Roots, name: &str) -> Result<()> {
    let init = super::run::find_init()?;
    let members = {
        let _guard = state::lock(&roots.state)?;
        let mut p = pod::load(roots, name)?;
        if p.running() {
            bail!("pod {name} is already running");
        }
        let ports = p
            .ports
            .iter()
            .map(|s| crate::net::parse_port(s))
            .collect::<Result<Vec<_>, _>>()?;
        // What a stop left (an infra process killed from outside leaves its attachment).
        teardown(roots, &p);
        p.infra = None;
        p.net = None;
        bring_up(roots, &mut p, &init, &ports)?;
        if let Err(e) = pod::save(roots, &p) {
            teardown(roots, &p);
            return Err(e);
        }
        members(roots, name)?
    };
    for r in members {
        if r.live_status().0 == Status::Exited {
            super::start::start(roots, &r.id)
                .map_err(|e| anyhow::anyhow!("pod {name}: starting {}: {e:#}", r.name))?;
        }
    }
    Ok(())
}

/// The infra process and the network of a pod (idempotent).
fn teardown(roots: &Roots, p: &Pod) {
    if let Some(v) = &p.net {
        if let (Ok(n), Ok(at)) = (
            crate::net::Network::new(&roots.state),
            serde_json::from_value::<crate::net::Attached>(v.clone()),
        ) {
            let netns = p
                .infra
                .filter(|i| i.alive())
                .map(|i| format!("/proc/{}/ns/net", i.pid));
            if let Err(e) = n.detach(&p.id, netns.as_deref().map(Path::new), &at) {
                eprintln!("tinyo-shim: detaching pod {}: {e}", p.name);
            }
        }
    }
    if let Some(i) = p.infra {
        pod::stop_infra(i);
    }
}

fn stop(roots: &Roots, p: &Pod) -> Result<()> {
    let running: Vec<String> = members(roots, &p.name)?
        .into_iter()
        .filter(|r| r.live_status().0 != Status::Exited)
        .map(|r| r.id)
        .collect();
    if !running.is_empty() {
        super::stop::stop(
            roots,
            super::stop::StopArgs {
                time: 10,
                ids: running,
            },
        )?;
    }
    teardown(roots, p);
    let mut p = p.clone();
    p.infra = None;
    p.net = None;
    pod::save(roots, &p)
}

fn rm(roots: &Roots, a: RmArgs) -> Result<i32> {
    for name in &a.names {
        let p = pod::load(roots, name)?;
        let members = members(roots, name)?;
        let live = members.iter().any(|r| r.live_status().0 != Status::Exited);
        if (live || p.running()) && !a.force {
            bail!("pod {name} is running: stop it first, or use pod rm -f");
        }
        if !members.is_empty() {
            super::stop::rm(
                roots,
                super::stop::RmArgs {
                    force: true,
                    ids: members.iter().map(|r| r.id.clone()).collect(),
                },
            )?;
        }
        teardown(roots, &p);
        pod::remove_cgroups(&p);
        pod::remove(roots, name)?;
        println!("{name}");
    }
    Ok(0)
}

/// A pod as `pod ps`/`pod inspect` show it; `all` is every container record (read once for
/// all the pods listed).
fn summary(all: &[Record], p: &Pod) -> serde_json::Value {
    let members: Vec<&Record> = all
        .iter()
        .filter(|r| r.pod.as_deref() == Some(p.name.as_str()))
        .collect();
    let running = members
        .iter()
        .filter(|r| r.live_status().0 == Status::Running)
        .count();
    json!({
        "id": p.id, "name": p.name, "created": p.created,
        "status": if p.running() { "running" } else { "exited" },
        "hostname": p.hostname, "network": p.network, "ports": p.ports,
        "infra_pid": p.infra.filter(|i| i.alive()).map(|i| i.pid),
        "containers": members.iter().map(|r| json!({
            "id": r.id, "name": r.name, "status": super::ps::status_text(r),
        })).collect::<Vec<_>>(),
        "running_containers": running,
    })
}

fn ps(roots: &Roots, a: PsArgs) -> Result<i32> {
    let pods = pod::list(roots)?;
    let all = state::list(roots)?;
    match a.format.as_str() {
        "json" => {
            let v: Vec<_> = pods.iter().map(|p| summary(&all, p)).collect();
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        "table" => {
            println!(
                "{:<12}  {:<20}  {:<8}  {:<10}  PORTS",
                "ID", "NAME", "STATUS", "CONTAINERS"
            );
            for p in &pods {
                let s = summary(&all, p);
                println!(
                    "{:<12}  {:<20}  {:<8}  {:<10}  {}",
                    &p.id[..12],
                    p.name,
                    s["status"].as_str().unwrap_or(""),
                    format!(
                        "{}/{}",
                        s["running_containers"],
                        s["containers"].as_array().map_or(0, |c| c.len())
                    ),
                    p.ports.join(",")
                );
            }
        }
        other => bail!("--format {other:?}: use table or json"),
    }
    Ok(0)
}

fn inspect(roots: &Roots, a: NamesArgs) -> Result<i32> {
    let mut out = Vec::new();
    let all = state::list(roots)?;
    for name in &a.names {
        let p = pod::load(roots, name)?;
        let mut v = summary(&all, &p);
        v["net"] = p.net.clone().unwrap_or(serde_json::Value::Null);
        out.push(v);
    }
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(0)
}
