//! `pull`: pull and unpack a 4-layer gzip image (about 120 MB of this machine's own `/usr`
//! files, so the content compresses like real images) from a loopback docker-registry.
//!
//! Contenders, each into a fresh directory every round:
//! - tinyo-pull (the static `dist` build) into an empty store;
//! - skopeo copy to an OCI layout, then `umoci raw unpack` (the reference);
//! - podman pull (its own root, overlay storage);
//! - the floor: `curl | pigz -dc | tar -x` per layer — no verification, no whiteouts.
//!
//! Reported: wall time, CPU (all processes), and peak RSS of the largest process.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};
use tinyo_tests::image::{self, Compression, Entry, Layout, Platform, Style};
use tinyo_tests::registry::Registry;

use super::{dist_binary, interleaved, peer, run_measured, Contender, Opts, Report};

const REFERENCE: &str = "skopeo+umoci";
/// Bytes of file content per image (split over four layers).
const BUDGET: u64 = 120 << 20;

pub fn run(opts: &Opts) -> Result<Vec<Report>> {
    crate::tools::require_root("bench", "its peers unpack images as root")?;
    crate::tools::ensure(
        "bench",
        &[crate::tools::need(
            "docker-registry",
            "docker-registry",
            "the loopback registry of the pull benchmark",
        )],
    )?;
    let tinyo_pull = dist_binary("tinyo-pull")?;
    let work = tempfile::Builder::new()
        .prefix("tinyo-bench-pull-")
        .tempdir()?;
    let reg = Registry::plain();
    let layout_dir = work.path().join("layout");
    let (img, raw) = build_image(&layout_dir)?;
    reg.push(&layout_dir, &img.manifest, "bench/usr", "v1");
    let image = format!("{}/bench/usr:v1", reg.host());
    let gz: u64 = img.layers.iter().map(|l| l.desc.size).sum();
    let tar: u64 = img.layers.iter().map(|l| l.tar.len() as u64).sum();
    println!(
        "image: 4 layers, {:.1} MB gzip / {:.1} MB tar ({:.1} MB of file content)",
        gz as f64 / 1e6,
        tar as f64 / 1e6,
        raw as f64 / 1e6
    );
    let fresh = |name: &str| -> PathBuf {
        let d = work.path().join(name);
        let _ = fs::remove_dir_all(&d);
        d
    };
    let mut notes = Vec::new();
    let mut contenders = Vec::new();

    {
        let image = image.clone();
        contenders.push(Contender::new("tinyo-pull", move || {
            let store = fresh("tinyo");
            // TINYO_BENCH_WRAP="perf record -g -o /tmp/perf.data" (say) profiles our contender.
            let wrap = std::env::var("TINYO_BENCH_WRAP").unwrap_or_default();
            let mut words = wrap.split_whitespace();
            let mut cmd = match words.next() {
                Some(w) => {
                    let mut c = Command::new(w);
                    c.args(words).arg(&tinyo_pull);
                    c
                }
                None => Command::new(&tinyo_pull),
            };
            cmd.arg("--root")
                .arg(&store)
                .args(["-q", &image])
                .env("CONTAINERS_REGISTRIES_CONF", "/dev/null");
            Ok(run_measured(&mut cmd)?.to_vec())
        }));
    }

    match (peer("skopeo"), peer("umoci")) {
        (Some(skopeo), Some(umoci)) => {
            let image = image.clone();
            contenders.push(Contender::new(REFERENCE, move || {
                let d = fresh("skopeo-umoci");
                fs::create_dir_all(&d)?;
                let script = format!(
                    "set -e; {} copy -q --insecure-policy --src-tls-verify=false docker://{image} oci:{}/oci:v1 && {} raw unpack --image {}/oci:v1 {}/rootfs",
                    skopeo.display(), d.display(), umoci.display(), d.display(), d.display()
                );
                Ok(run_measured(Command::new("sh").args(["-c", &script]))?.to_vec())
            }));
        }
        _ => notes.push("skopeo or umoci is not installed: no reference".to_string()),
    }

    match peer("podman") {
        Some(podman) => {
            let image = image.clone();
            contenders.push(Contender::new("podman pull", move || {
                let d = fresh("podman");
                let mut cmd = Command::new("unshare");
                cmd.args(["--mount", "--propagation", "private"])
                    .arg(&podman);
                for (flag, sub) in [
                    ("--root", "root"),
                    ("--runroot", "run"),
                    ("--tmpdir", "tmp"),
                ] {
                    cmd.arg(flag).arg(d.join(sub));
                }
                cmd.args([
                    "--storage-driver",
                    "overlay",
                    "--cgroup-manager",
                    "cgroupfs",
                    "--events-backend",
                    "file",
                    "pull",
                    "-q",
                    "--tls-verify=false",
                    &image,
                ]);
                let m = run_measured(&mut cmd)?;
                // Overlay storage leaves no mounts after a pull, but be sure before removing it.
                let _ = Command::new(&podman)
                    .arg("--root")
                    .arg(d.join("root"))
                    .arg("--runroot")
                    .arg(d.join("run"))
                    .args(["--storage-driver", "overlay", "system", "reset", "-f"])
                    .output();
                Ok(m.to_vec())
            }));
            notes.push("podman runs in a private mount namespace (unshare adds ~2 ms)".into());
        }
        None => notes.push("podman is not installed: not measured".into()),
    }

    match (peer("curl"), peer("pigz")) {
        (Some(curl), Some(pigz)) => {
            let urls: Vec<String> = img
                .layers
                .iter()
                .map(|l| reg.url(&format!("/v2/bench/usr/blobs/{}", l.desc.digest)))
                .collect();
            contenders.push(Contender::new("curl|pigz|tar (floor)", move || {
                let d = fresh("pipe");
                fs::create_dir_all(&d)?;
                let script: Vec<String> = urls
                    .iter()
                    .map(|u| {
                        format!(
                            "{} -sf {u} | {} -dc | tar -x -C {}",
                            curl.display(),
                            pigz.display(),
                            d.display()
                        )
                    })
                    .collect();
                Ok(run_measured(Command::new("bash").args([
                    "-c",
                    &format!("set -e -o pipefail; {}", script.join(" && ")),
                ]))?
                .to_vec())
            }));
        }
        _ => {
            notes.push("curl or pigz is not installed: no floor (apt-get install curl pigz)".into())
        }
    }

    let mut reports = interleaved(
        &[
            ("pull + unpack, wall time", "ms"),
            ("CPU, all processes", "ms"),
            ("peak RSS of the largest process", "MiB"),
        ],
        REFERENCE,
        &mut contenders,
        opts,
    )?;
    drop(contenders);
    for r in &mut reports {
        r.notes.extend(notes.iter().cloned());
    }
    Ok(reports)
}

/// Four gzip layers from this machine's `/usr` files, about [`BUDGET`] bytes of content.
fn build_image(dir: &Path) -> Result<(image::BuiltImage, u64)> {
    let mut files = Vec::new();
    let mut total = 0u64;
    for top in ["/usr/lib/x86_64-linux-gnu", "/usr/bin", "/usr/share"] {
        collect(Path::new(top), &mut files, &mut total)?;
        if total >= BUDGET {
            break;
        }
    }
    let layout = Layout::create(dir);
    let per = files.len().div_ceil(4);
    let layers: Vec<_> = files
        .chunks(per)
        .map(|chunk| {
            let mut entries = Vec::new();
            let mut dirs = std::collections::BTreeSet::new();
            for (path, data, mode) in chunk {
                let rel = path.trim_start_matches('/');
                let mut p = Path::new(rel).parent();
                while let Some(d) = p.filter(|d| !d.as_os_str().is_empty()) {
                    dirs.insert(format!("{}/", d.display()));
                    p = d.parent();
                }
                entries.push(Entry::file_mode(rel, data, *mode, 0, 0));
            }
            let mut all: Vec<Entry> = dirs.into_iter().map(|d| Entry::dir(&d)).collect();
            all.extend(entries);
            image::layer(&all, Compression::Gzip, Style::Oci)
        })
        .collect();
    Ok((
        image::image(
            &layout,
            Style::Oci,
            &Platform::linux_amd64(),
            layers,
            |_| {},
        ),
        total,
    ))
}

/// Regular files under `dir` (sorted, so the image is stable on one machine) until the budget.
fn collect(dir: &Path, out: &mut Vec<(String, Vec<u8>, u32)>, total: &mut u64) -> Result<()> {
    let mut names: Vec<_> = fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .collect();
    names.sort();
    for p in names {
        if *total >= BUDGET {
            return Ok(());
        }
        let Ok(meta) = fs::symlink_metadata(&p) else {
            continue;
        };
        if meta.is_dir() {
            collect(&p, out, total)?;
        } else if meta.is_file() && meta.len() < 64 << 20 {
            let Ok(data) = fs::read(&p) else { continue };
            *total += data.len() as u64;
            out.push((p.display().to_string(), data, meta.mode() & 0o7777));
        }
    }
    Ok(())
}
