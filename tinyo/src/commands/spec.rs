//! `tinyo spec`: write the default runtime-spec `config.json`, as `runc spec` does.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use oci_spec::runtime::{LinuxIdMappingBuilder, LinuxNamespace, LinuxNamespaceType, Spec};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Bundle directory to write config.json into.
    #[arg(short, long, default_value = ".")]
    bundle: PathBuf,
    /// A config for an ordinary user: a user namespace mapping the caller's uid and gid to
    /// root, no network namespace, /sys bound from the host, no cgroup limits.
    #[arg(long)]
    rootless: bool,
}

/// The default spec made rootless (as `runc spec --rootless`): it keeps the default's masked
/// and read-only paths, unlike oci-spec's own `Spec::rootless`.
fn rootless(mut spec: Spec, uid: u32, gid: u32) -> Spec {
    let reference = Spec::rootless(uid, gid);
    spec.set_mounts(reference.mounts().clone());
    if let Some(linux) = spec.linux_mut() {
        let mut namespaces: Vec<LinuxNamespace> = linux
            .namespaces()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .filter(|n| {
                !matches!(
                    n.typ(),
                    LinuxNamespaceType::Network | LinuxNamespaceType::User
                )
            })
            .collect();
        let mut user = LinuxNamespace::default();
        user.set_typ(LinuxNamespaceType::User);
        namespaces.push(user);
        linux.set_namespaces(Some(namespaces));
        let map = |host: u32| {
            LinuxIdMappingBuilder::default()
                .container_id(0u32)
                .host_id(host)
                .size(1u32)
                .build()
                .ok()
                .into_iter()
                .collect::<Vec<_>>()
        };
        linux.set_uid_mappings(Some(map(uid)));
        linux.set_gid_mappings(Some(map(gid)));
        linux.set_resources(None);
    }
    spec
}

pub fn run(args: Args) -> Result<()> {
    let path = args.bundle.join("config.json");
    let mut spec = Spec::default();
    if args.rootless {
        spec = rootless(spec, nix_ids().0, nix_ids().1);
    }
    let json = serde_json::to_vec_pretty(&spec).context("serialising the default spec")?;
    // create_new: never clobber a config someone wrote by hand (runc refuses too).
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(&json)
        .and_then(|()| file.write_all(b"\n"))
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// The caller's effective uid and gid.
fn nix_ids() -> (u32, u32) {
    (tinyo_core::sys::geteuid(), tinyo_core::sys::getegid())
}
