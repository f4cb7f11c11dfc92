//! `tinyo-pull`: pull images into tinyo's store; list and remove them.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use tinyo_pull::config::{self, Registries};
use tinyo_pull::digest::Digest;
use tinyo_pull::download::{Progress, Quiet};
use tinyo_pull::pull::{self, Platform};
use tinyo_pull::store::Store;

#[derive(Debug, Parser)]
#[command(
    name = "tinyo-pull",
    version,
    about = "Pull OCI/Docker images into a verified OCI layout store and unpack them safely"
)]
struct Cli {
    /// Store directory (also TINYO_ROOT).
    #[arg(
        long,
        global = true,
        env = "TINYO_ROOT",
        default_value = "/var/lib/tinyo"
    )]
    root: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    pull: PullArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List the images in the store.
    Images {
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Remove images from the store, then every blob and rootfs no image needs.
    Rmi {
        #[arg(required = true)]
        images: Vec<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Text,
    Json,
}

#[derive(Debug, clap::Args)]
struct PullArgs {
    /// Image to pull: alpine, quay.io/ns/app:tag, host:5000/repo@sha256:…
    image: Option<String>,
    /// Platform to pull from an index, os/arch[/variant] (default: this machine's).
    #[arg(long)]
    platform: Option<String>,
    /// Credentials USER[:PASSWORD] for the registry (instead of the auth files).
    #[arg(long)]
    creds: Option<String>,
    /// Auth file to use instead of REGISTRY_AUTH_FILE, containers' auth.json and ~/.docker/config.json.
    #[arg(long)]
    authfile: Option<PathBuf>,
    /// Directory of extra CA certificates (*.crt); turns TLS verification on.
    #[arg(long)]
    cert_dir: Option<PathBuf>,
    /// Require (true) or skip (false) TLS verification; default: required except for loopback
    /// and registries.conf `insecure` registries.
    #[arg(long)]
    tls_verify: Option<bool>,
    /// registries.conf to use (default: CONTAINERS_REGISTRIES_CONF or /etc/containers/registries.conf).
    #[arg(long)]
    registries_conf: Option<PathBuf>,
    /// Also write a runtime bundle: DIR/rootfs and DIR/config.json.
    #[arg(long, value_name = "DIR")]
    bundle: Option<PathBuf>,
    /// Concurrent layer downloads.
    #[arg(long, default_value_t = 3)]
    jobs: usize,
    /// No progress output.
    #[arg(short, long)]
    quiet: bool,
    /// Output of the result.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        eprintln!("tinyo-pull: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    let store = Store::open(&cli.root)
        .with_context(|| format!("opening the store at {}", cli.root.display()))?;
    match cli.command {
        Some(Command::Images { format }) => images(&store, format),
        Some(Command::Rmi { images }) => rmi(&store, &images),
        None => {
            let Some(image) = cli.pull.image.clone() else {
                bail!("no image given; see --help");
            };
            pull_image(&store, &image, cli.pull)
        }
    }
}

fn pull_image(store: &Store, image: &str, a: PullArgs) -> Result<()> {
    let platform = match &a.platform {
        Some(p) => Platform::parse(p)
            .with_context(|| format!("--platform {p:?}: expected os/arch[/variant]"))?,
        None => Platform::host(),
    };
    let progress: Arc<dyn Progress> =
        if a.quiet || a.format == Format::Json || !std::io::stderr().is_terminal() {
            Arc::new(Quiet)
        } else {
            Arc::new(Bars::default())
        };
    let opts = pull::Options {
        platform,
        creds: a.creds.as_deref().map(config::parse_creds),
        auth_files: config::auth_files(a.authfile.as_deref()),
        registries: Registries::load(a.registries_conf.as_deref())?,
        cert_dir: a.cert_dir.clone(),
        tls_verify: a.tls_verify,
        jobs: a.jobs,
        progress,
    };
    let started = std::time::Instant::now();
    let pulled = pull::pull(store, image, &opts)?;
    if let Some(dir) = &a.bundle {
        tinyo_pull::bundle::write(store, &pulled.manifest, dir, &pulled.name)
            .with_context(|| format!("{}: writing the bundle", pulled.name))?;
    }
    let secs = started.elapsed().as_secs_f64();
    match a.format {
        Format::Json => println!(
            "{}",
            serde_json::json!({
                "image": pulled.name, "manifest": pulled.manifest.to_string(), "rootfs": pulled.rootfs,
                "source": pulled.source, "layers": pulled.layers, "downloaded_bytes": pulled.downloaded,
                "up_to_date": pulled.up_to_date, "bundle": a.bundle, "seconds": secs,
            })
        ),
        Format::Text if !a.quiet => {
            let what = if pulled.up_to_date {
                "up to date"
            } else {
                "pulled"
            };
            eprintln!(
                "{}: {what} ({} layers, {:.1} MB downloaded from {}, {secs:.2} s)",
                pulled.name,
                pulled.layers,
                pulled.downloaded as f64 / 1e6,
                pulled.source
            );
            println!("{}", pulled.manifest);
        }
        Format::Text => println!("{}", pulled.manifest),
    }
    Ok(())
}

fn images(store: &Store, format: Format) -> Result<()> {
    let refs = store.refs()?;
    match format {
        Format::Json => {
            let v: Vec<_> = refs
                .iter()
                .map(|r| {
                    let rootfs = Digest::parse(&r.manifest.digest).ok().and_then(|d| store.rootfs(&d));
                    serde_json::json!({"name": r.name, "manifest": r.manifest.digest, "rootfs": rootfs})
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        Format::Text => {
            println!("{:<60} MANIFEST", "IMAGE");
            for r in refs {
                let short = r
                    .manifest
                    .digest
                    .trim_start_matches("sha256:")
                    .get(..12)
                    .unwrap_or("?");
                println!("{:<60} {short}", r.name);
            }
        }
    }
    Ok(())
}

fn rmi(store: &Store, images: &[String]) -> Result<()> {
    let _lock = store.lock()?;
    let refs = store.refs()?;
    for image in images {
        let name = tinyo_pull::Reference::parse(image)
            .map(|r| r.to_string())
            .unwrap_or_else(|_| image.clone());
        let found = refs.iter().find(|r| {
            r.name == name
                || r.name == *image
                || r.manifest
                    .digest
                    .trim_start_matches("sha256:")
                    .starts_with(image.as_str())
        });
        let Some(r) = found else {
            bail!("{image}: no such image in {}", store.root().display());
        };
        store.remove_ref(&r.name)?;
        println!("removed {}", r.name);
    }
    let (blobs, rootfs) = store.gc()?;
    eprintln!("freed {blobs} blobs and {rootfs} unpacked images");
    Ok(())
}

/// One progress bar per layer (bytes, rate, ETA) on a terminal.
#[derive(Default)]
struct Bars {
    multi: indicatif::MultiProgress,
    bars: Mutex<Vec<Option<indicatif::ProgressBar>>>,
}

impl Progress for Bars {
    fn start(&self, index: usize, digest: &Digest, size: u64, cached: bool) {
        let style = indicatif::ProgressStyle::with_template(
            "{prefix} {bar:30} {bytes:>10}/{total_bytes:<10} {binary_bytes_per_sec:>12} {eta:>4}",
        )
        .expect("valid template");
        let bar = self.multi.add(
            indicatif::ProgressBar::new(size)
                .with_style(style)
                .with_prefix(digest.hex()[..12].to_string()),
        );
        if cached {
            bar.set_position(size);
            bar.finish_with_message("stored");
        }
        let mut bars = self.bars.lock().expect("bars");
        if bars.len() <= index {
            bars.resize(index + 1, None);
        }
        bars[index] = Some(bar);
    }
    fn advance(&self, index: usize, bytes: u64) {
        if let Some(Some(b)) = self.bars.lock().expect("bars").get(index) {
            b.inc(bytes);
        }
    }
    fn finish(&self, index: usize) {
        if let Some(Some(b)) = self.bars.lock().expect("bars").get(index) {
            b.finish();
        }
    }
}
