//! `tinyo-shim images` and `tinyo-shim rmi IMAGE...`: tinyo-pull's store, as the shim sees it.

use anyhow::{bail, Context, Result};
use tinyo_pull::store::Store;

use crate::state::{self, Roots, Status};

#[derive(Debug, clap::Args)]
pub struct ImagesArgs {
    /// table or json.
    #[arg(long, default_value = "table")]
    pub format: String,
}

#[derive(Debug, clap::Args)]
pub struct RmiArgs {
    /// Also remove images that containers (stopped ones) were made from.
    #[arg(short, long)]
    pub force: bool,
    #[arg(required = true)]
    pub images: Vec<String>,
}

fn open(roots: &Roots) -> Result<Store> {
    Store::open(&roots.store)
        .with_context(|| format!("opening the image store at {}", roots.store.display()))
}

pub fn images(roots: &Roots, a: ImagesArgs) -> Result<i32> {
    let store = open(roots)?;
    let refs = store.refs()?;
    match a.format.as_str() {
        "json" => {
            let v: Vec<_> = refs
                .iter()
                .map(|r| serde_json::json!({"name": r.name, "digest": r.manifest.digest}))
                .collect();
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        "table" => {
            println!("{:<60}  DIGEST", "IMAGE");
            for r in &refs {
                let short = r.manifest.digest.trim_start_matches("sha256:");
                println!("{:<60}  {}", r.name, &short[..short.len().min(12)]);
            }
        }
        other => bail!("--format {other:?}: use table or json"),
    }
    Ok(0)
}

pub fn rmi(roots: &Roots, a: RmiArgs) -> Result<i32> {
    let store = open(roots)?;
    let containers = state::list(roots)?;
    {
        let _lock = store.lock()?;
        let refs = store.refs()?;
        for input in &a.images {
            let Some(r) = crate::image::find(&refs, input) else {
                bail!("no such image: {input}");
            };
            let users: Vec<&str> = containers
                .iter()
                .filter(|c| c.image_digest == r.manifest.digest)
                .filter(|c| !a.force || c.live_status().0 != Status::Exited)
                .map(|c| c.name.as_str())
                .collect();
            if !users.is_empty() {
                bail!(
                    "image {} is used by container(s) {} (remove them first{})",
                    r.name,
                    users.join(", "),
                    if a.force {
                        ""
                    } else {
                        ", or rmi -f for stopped ones"
                    }
                );
            }
            store.remove_ref(&r.name)?;
            println!("removed {}", r.name);
        }
    }
    store.gc()?;
    Ok(0)
}
