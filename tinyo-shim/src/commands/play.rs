//! `tinyo-shim play kube FILE.yaml` and `play kube --down FILE.yaml` (see [`crate::kube`]).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Parser;

use crate::kube::{self, Source};
use crate::state::{self, Roots, Status};

#[derive(Debug, clap::Subcommand)]
pub enum PlayCommand {
    /// Run the Pods and Deployments of a Kubernetes YAML file (ConfigMaps and Secrets too).
    Kube(KubeArgs),
}

#[derive(Debug, clap::Args)]
pub struct KubeArgs {
    /// Remove the pods the file describes (and their containers) instead.
    #[arg(long)]
    pub down: bool,
    /// The pods' network: bridge or none [default: bridge when the CNI plugins are installed].
    #[arg(long)]
    pub network: Option<String>,
    /// Run containers whose securityContext says `privileged: true` (refused otherwise: such a
    /// container can take over this machine).
    #[arg(long)]
    pub allow_privileged: bool,
    pub file: PathBuf,
}

/// `run`'s flags, parsed from the argv a container of the plan turns into.
#[derive(Debug, Parser)]
#[command(no_binary_name = true)]
struct RunLine {
    #[command(flatten)]
    args: super::run::Args,
}

pub fn run(roots: &Roots, c: PlayCommand) -> Result<i32> {
    let PlayCommand::Kube(a) = c;
    let yaml = std::fs::read_to_string(&a.file)
        .with_context(|| format!("reading {}", a.file.display()))?;
    let plan = kube::plan(&yaml).with_context(|| format!("{}", a.file.display()))?;
    for w in &plan.warnings {
        eprintln!("tinyo-shim: warning: {}: {w}", a.file.display());
    }
    if a.down {
        for p in &plan.pods {
            if crate::pod::load(roots, &p.name).is_ok() {
                remove(roots, &p.name)?;
            }
        }
        return Ok(0);
    }
    if !a.allow_privileged {
        for p in &plan.pods {
            if let Some(c) = p.init.iter().chain(&p.containers).find(|c| c.privileged) {
                bail!(
                    "{}: pod {} container {}: privileged: true is refused (a privileged container \
                     can take over this machine); pass --allow-privileged to run it",
                    a.file.display(),
                    p.name,
                    c.name
                        .strip_prefix(&format!("{}-", p.name))
                        .unwrap_or(&c.name)
                );
            }
        }
    }
    for p in &plan.pods {
        if crate::pod::load(roots, &p.name).is_ok() {
            bail!(
                "pod {} exists already (play kube --down {} first)",
                p.name,
                a.file.display()
            );
        }
    }
    let mut made = Vec::new();
    for p in &plan.pods {
        made.push(p.name.clone());
        if let Err(e) = up(roots, p, a.network.clone()) {
            // Nothing half-done: every pod of this play goes.
            for name in made.iter().rev() {
                let _ = remove(roots, name);
            }
            return Err(e);
        }
    }
    Ok(0)
}

fn remove(roots: &Roots, name: &str) -> Result<()> {
    super::pod::run(
        roots,
        super::pod::PodCommand::Rm(super::pod::RmArgs {
            force: true,
            names: vec![name.to_string()],
        }),
    )
    .map(|_| ())
}

fn up(roots: &Roots, p: &kube::Pod, network: Option<String>) -> Result<()> {
    super::pod::run(
        roots,
        super::pod::PodCommand::Create(super::pod::CreateArgs {
            network,
            publish: p.ports.clone(),
            hostname: Some(p.hostname.clone()),
            name: p.name.clone(),
        }),
    )?;
    let vol_root = crate::pod::pods_dir(roots).join(&p.name).join("volumes");
    let mut paths = std::collections::BTreeMap::new();
    for v in &p.volumes {
        let path = match &v.source {
            Source::HostPath(h) => PathBuf::from(h),
            _ => vol_root.join(&v.name),
        };
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        if let Source::Files(files) = &v.source {
            for (k, data) in files {
                if k.contains('/') || k.starts_with('.') {
                    bail!("volume {}: key {k:?} is not a file name", v.name);
                }
                std::fs::write(path.join(k), data)
                    .with_context(|| format!("writing {}", path.join(k).display()))?;
            }
        }
        paths.insert(v.name.clone(), path);
    }
    for c in &p.init {
        println!("{}", start(roots, &p.name, c, &paths)?);
        let code = wait_exit(roots, &c.name)?;
        if code != 0 {
            bail!(
                "init container {} exited with {code} (tinyo-shim logs {}/{})",
                c.name,
                p.name,
                c.name.trim_start_matches(&format!("{}-", p.name))
            );
        }
    }
    // The app containers start side by side (each waits for its own supervisor), so a pod is
    // up in about the time of its slowest container; the ids are printed in spec order.
    let ids: Vec<Result<String>> = std::thread::scope(|scope| {
        let started: Vec<_> = p
            .containers
            .iter()
            .map(|c| scope.spawn(|| start(roots, &p.name, c, &paths)))
            .collect();
        started
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("starting a container panicked")))
            })
            .collect()
    });
    let mut first_err = None;
    for id in ids {
        match id {
            Ok(id) => println!("{id}"),
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    first_err.map_or(Ok(()), Err)
}

/// Starts container `c` of `pod` detached; returns its id.
fn start(
    roots: &Roots,
    pod: &str,
    c: &kube::Container,
    paths: &std::collections::BTreeMap<String, PathBuf>,
) -> Result<String> {
    let mut argv: Vec<String> = ["-d", "--pod", pod, "--name", &c.name]
        .iter()
        .map(|s| s.to_string())
        .collect();
    argv.extend(c.flags.iter().cloned());
    for (vol, at, ro) in &c.mounts {
        let host = paths.get(vol).with_context(|| format!("volume {vol}"))?;
        let ro = if *ro { ":ro" } else { "" };
        argv.extend(["-v".to_string(), format!("{}:{at}{ro}", host.display())]);
    }
    argv.push(c.image.clone());
    argv.push("--".to_string());
    argv.extend(c.args.iter().cloned());
    let line = RunLine::try_parse_from(&argv)
        .with_context(|| format!("container {}: {argv:?}", c.name))?;
    super::run::launch(roots, line.args).with_context(|| format!("container {}", c.name))
}

/// Waits for container `name` to exit (init containers run to completion, however long).
fn wait_exit(roots: &Roots, name: &str) -> Result<i32> {
    // Found once; then only its own record is read.
    let dir = roots.container(&state::find(roots, name)?.id);
    loop {
        let r = state::load(&dir).with_context(|| format!("container {name}"))?;
        if r.live_status().0 == Status::Exited {
            return Ok(r.exit_code.unwrap_or(255));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
