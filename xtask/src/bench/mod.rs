//! `cargo xtask bench [NAME...]`: benchmarks that put tinyo beside its peers in one run.
//!
//! Each benchmark builds its contenders (tinyo and whichever peers are installed), then the
//! harness runs them round-robin — one sample of each per round, the starting contender
//! rotating every round — so load changes hit every contender alike. It prints min / median /
//! p95 per contender and the ratio of medians against the reference peer, and writes the raw
//! samples to `target/bench/<name>-<unix time>.json`. Benchmarks never assert timings.
//!
//! To add one: write `bench/<name>.rs` with `pub fn run(opts: &Opts) -> Result<Vec<Report>>`
//! (build contenders with [`Contender::new`] and measure with [`interleaved`], or fill a
//! [`Report`] by hand for one-off figures such as file sizes) and list it in [`BENCHES`].

mod containerd;
mod init;
mod kube;
mod pull;
mod shim;
mod start;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde_json::json;

/// A benchmark: name, one-line description, entry point.
pub type BenchFn = fn(&Opts) -> Result<Vec<Report>>;

pub const BENCHES: &[(&str, &str, BenchFn)] = &[
    (
        "pull",
        "pull + unpack a 4-layer image (~120 MB of this machine's /usr) from a loopback registry",
        pull::run,
    ),
    (
        "start",
        "run /bin/true in a busybox bundle: wall time and CPU per container start",
        start::run,
    ),
    (
        "init",
        "tinyo-init beside tini, catatonit, dumb-init: size, RSS as PID 1, start overhead",
        init::run,
    ),
    (
        "shim",
        "tinyo-shim run --rm vs podman; supervisor memory vs conmon; N idle containers",
        shim::run,
    ),
    (
        "containerd",
        "containerd shims: io.containerd.tinyo.v2 vs runc.v2 (+runc, +tinyo): start, shim memory",
        containerd::run,
    ),
    (
        "kube",
        "play kube of a 3-container pod: tinyo-shim vs podman, up and down",
        kube::run,
    ),
];

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Benchmarks to run (default: all). See --list.
    names: Vec<String>,
    /// Measured rounds (one sample of every contender per round).
    #[arg(long, default_value_t = 30)]
    rounds: usize,
    /// Unmeasured rounds first, to warm caches.
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    /// List the benchmarks and exit.
    #[arg(long)]
    list: bool,
}

/// Options every benchmark receives.
#[derive(Debug, Clone)]
pub struct Opts {
    pub rounds: usize,
    pub warmup: usize,
}

pub fn run(args: Args) -> Result<()> {
    if args.list {
        for (name, about, _) in BENCHES {
            println!("{name:<10} {about}");
        }
        return Ok(());
    }
    if args.rounds == 0 {
        bail!("--rounds must be at least 1");
    }
    let names: Vec<&str> = if args.names.is_empty() {
        BENCHES.iter().map(|b| b.0).collect()
    } else {
        args.names.iter().map(String::as_str).collect()
    };
    let opts = Opts {
        rounds: args.rounds,
        warmup: args.warmup,
    };
    for name in names {
        let Some((_, about, f)) = BENCHES.iter().find(|b| b.0 == name) else {
            bail!("no benchmark named {name:?}; `cargo xtask bench --list` shows them");
        };
        println!(
            "\n## {name}: {about} ({} rounds, {} warm-up)",
            opts.rounds, opts.warmup
        );
        let reports = f(&opts).with_context(|| format!("benchmark {name}"))?;
        for r in &reports {
            r.print();
        }
        let path = save(name, &reports)?;
        println!("raw samples: {}", path.display());
    }
    Ok(())
}

/// One contender: a name and a closure that takes one sample of every metric.
pub struct Contender<'a> {
    pub name: String,
    run: Box<dyn FnMut() -> Result<Vec<f64>> + 'a>,
}

impl std::fmt::Debug for Contender<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Contender")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl<'a> Contender<'a> {
    pub fn new(name: impl Into<String>, run: impl FnMut() -> Result<Vec<f64>> + 'a) -> Self {
        Self {
            name: name.into(),
            run: Box::new(run),
        }
    }
}

/// One table: a metric, the reference contender, and every contender's samples.
#[derive(Debug, Clone)]
pub struct Report {
    pub title: String,
    pub unit: String,
    pub reference: String,
    pub rows: Vec<(String, Vec<f64>)>,
    pub notes: Vec<String>,
}

impl Report {
    /// A table of one-off figures (such as file sizes): one value per contender.
    pub fn values(title: &str, unit: &str, reference: &str, rows: Vec<(String, f64)>) -> Self {
        Self {
            title: title.into(),
            unit: unit.into(),
            reference: reference.into(),
            rows: rows.into_iter().map(|(n, v)| (n, vec![v])).collect(),
            notes: vec![],
        }
    }

    fn reference_median(&self) -> Option<f64> {
        self.rows
            .iter()
            .find(|(n, _)| *n == self.reference)
            .map(|(_, s)| stats(s).1)
    }

    pub fn print(&self) {
        println!("\n{} [{}]", self.title, self.unit);
        println!(
            "  {:<28} {:>10} {:>10} {:>10} {:>9}",
            "contender", "min", "median", "p95", "ratio"
        );
        let refm = self.reference_median();
        for (name, samples) in &self.rows {
            let (min, med, p95) = stats(samples);
            let ratio = refm
                .filter(|r| *r > 0.0)
                .map_or("-".to_string(), |r| format!("{:.2}x", med / r));
            println!("  {name:<28} {min:>10.2} {med:>10.2} {p95:>10.2} {ratio:>9}");
        }
        match refm {
            Some(_) => println!("  ratio = median / median of {}", self.reference),
            None => println!("  reference {} is not installed: no ratios", self.reference),
        }
        for n in &self.notes {
            println!("  note: {n}");
        }
    }
}

/// Runs the contenders round-robin and returns one report per metric.
/// `metrics` is `(title, unit)`; each contender's closure returns one value per metric.
pub fn interleaved(
    metrics: &[(&str, &str)],
    reference: &str,
    contenders: &mut [Contender<'_>],
    opts: &Opts,
) -> Result<Vec<Report>> {
    let n = contenders.len();
    let mut samples: Vec<Vec<Vec<f64>>> =
        vec![vec![Vec::with_capacity(opts.rounds); metrics.len()]; n];
    for round in 0..opts.warmup + opts.rounds {
        for k in 0..n {
            let i = (round + k) % n;
            let c = &mut contenders[i];
            let vals = (c.run)().with_context(|| format!("contender {}", c.name))?;
            if vals.len() != metrics.len() {
                bail!(
                    "contender {} returned {} values for {} metrics",
                    c.name,
                    vals.len(),
                    metrics.len()
                );
            }
            if round >= opts.warmup {
                for (m, v) in vals.into_iter().enumerate() {
                    samples[i][m].push(v);
                }
            }
        }
    }
    Ok(metrics
        .iter()
        .enumerate()
        .map(|(m, (title, unit))| Report {
            title: (*title).into(),
            unit: (*unit).into(),
            reference: reference.into(),
            rows: contenders
                .iter()
                .zip(&samples)
                .map(|(c, s)| (c.name.clone(), s[m].clone()))
                .collect(),
            notes: vec![],
        })
        .collect())
}

/// A process's memory from /proc/PID/smaps_rollup, in KiB.
#[derive(Debug, Clone, Copy)]
pub struct Rollup {
    pub rss: f64,
    /// Private_Clean + Private_Dirty.
    pub private: f64,
    pub pss: f64,
    pub anonymous: f64,
}

pub fn smaps_rollup(pid: i32) -> Option<Rollup> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    let field = |name: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    Some(Rollup {
        rss: field("Rss:"),
        private: field("Private_Clean:") + field("Private_Dirty:"),
        pss: field("Pss:"),
        anonymous: field("Anonymous:"),
    })
}

/// (min, median, p95) of the samples, by nearest rank.
pub fn stats(samples: &[f64]) -> (f64, f64, f64) {
    if samples.is_empty() {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    let rank = |q: f64| s[((q * s.len() as f64).ceil() as usize).clamp(1, s.len()) - 1];
    let median = if s.len() % 2 == 1 {
        s[s.len() / 2]
    } else {
        (s[s.len() / 2 - 1] + s[s.len() / 2]) / 2.0
    };
    (s[0], median, rank(0.95))
}

fn save(name: &str, reports: &[Report]) -> Result<PathBuf> {
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::root().join("target"))
        .join("bench");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let path = dir.join(format!("{name}-{now}.json"));
    let tables: Vec<_> = reports
        .iter()
        .map(|r| {
            let refm = r.reference_median();
            json!({
                "title": r.title, "unit": r.unit, "reference": r.reference, "notes": r.notes,
                "contenders": r.rows.iter().map(|(n, s)| {
                    let (min, median, p95) = stats(s);
                    json!({"name": n, "min": min, "median": median, "p95": p95,
                           "ratio": refm.map(|x| median / x), "samples": s})
                }).collect::<Vec<_>>()
            })
        })
        .collect();
    let doc = json!({"benchmark": name, "unix_time": now, "tables": tables});
    std::fs::write(&path, serde_json::to_vec_pretty(&doc)?)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// Wall time (ms) and CPU time of reaped children (ms) of one run of `cmd`, which must succeed.
/// Output is discarded.
pub fn time_command(cmd: &mut Command) -> Result<(f64, f64)> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let cpu0 = children_cpu_ms();
    let t = Instant::now();
    let out = cmd.output().with_context(|| format!("starting {cmd:?}"))?;
    let wall = t.elapsed().as_secs_f64() * 1e3;
    let cpu = children_cpu_ms() - cpu0;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok((wall, cpu))
}

/// User + system CPU of all reaped descendants so far, in ms.
pub fn children_cpu_ms() -> f64 {
    // SAFETY: rusage is plain data; getrusage only writes into it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_CHILDREN is valid and `ru` is a valid, writable rusage.
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) };
    let ms = |tv: libc::timeval| tv.tv_sec as f64 * 1e3 + tv.tv_usec as f64 / 1e3;
    ms(ru.ru_utime) + ms(ru.ru_stime)
}

/// Builds `package`'s binary as `cargo xtask dist` does (static musl, `dist` profile) and
/// returns its path: benchmarks measure what ships.
pub fn dist_binary(package: &str) -> Result<PathBuf> {
    dist_binaries(&[package]).map(|mut v| v.remove(0))
}

/// Like [`dist_binary`] for several packages in one cargo run (for benchmarks that run
/// binaries which find each other in one directory: tinyo-shim runs tinyo-pull and
/// tinyo-init beside it).
pub fn dist_binaries(packages: &[&str]) -> Result<Vec<PathBuf>> {
    const MUSL: &str = "x86_64-unknown-linux-musl";
    let mut build = crate::cargo();
    build.args(["build", "--profile", "dist", "--target", MUSL]);
    for p in packages {
        build.args(["-p", p]);
    }
    crate::dist::set_rustflags(&mut build, MUSL, crate::dist::RELEASE_RUSTFLAGS);
    crate::step(&format!("static {}", packages.join(", ")), &mut build)?;
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::root().join("target"))
        .join(MUSL)
        .join("dist");
    packages
        .iter()
        .map(|p| {
            let path = dir.join(p);
            if !path.is_file() {
                bail!("{} was not built", path.display());
            }
            Ok(path)
        })
        .collect()
}

/// One run of a command: wall time (ms), CPU of it and its waited-for descendants (ms), and
/// the peak resident set of the largest of them (MiB).
///
/// The peak comes from GNU time run in between (`apt-get install time`): a child forked from
/// this large process would inherit its resident set as its own high-water mark, while one
/// forked from `time` starts from about 1 MiB. Without GNU time the peak is reported as NaN.
pub fn run_measured(cmd: &mut Command) -> Result<[f64; 3]> {
    use std::os::unix::process::ExitStatusExt;
    let gnu_time = Path::new("/usr/bin/time");
    let rss_file = tempfile::NamedTempFile::new()?;
    let mut wrapped = if gnu_time.is_file() {
        let mut w = Command::new(gnu_time);
        w.args(["-f", "%M", "-o"])
            .arg(rss_file.path())
            .arg(cmd.get_program())
            .args(cmd.get_args());
        for (k, v) in cmd.get_envs() {
            match v {
                Some(v) => w.env(k, v),
                None => w.env_remove(k),
            };
        }
        if let Some(d) = cmd.get_current_dir() {
            w.current_dir(d);
        }
        w
    } else {
        std::mem::replace(cmd, Command::new("true"))
    };
    wrapped
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let t = Instant::now();
    let mut child = wrapped
        .spawn()
        .with_context(|| format!("starting {wrapped:?}"))?;
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut err);
    }
    let pid = i32::try_from(child.id())?;
    let mut status = 0;
    // SAFETY: rusage is plain data that wait4 fills in.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our unreaped child; `status` and `ru` are valid for writes.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    let wall = t.elapsed().as_secs_f64() * 1e3;
    if r != pid {
        bail!("wait4 {pid}: {}", std::io::Error::last_os_error());
    }
    let st = std::process::ExitStatus::from_raw(status);
    if !st.success() {
        bail!("{wrapped:?} failed with {st}: {}", err.trim());
    }
    let ms = |tv: libc::timeval| tv.tv_sec as f64 * 1e3 + tv.tv_usec as f64 / 1e3;
    let peak_kib: f64 = std::fs::read_to_string(rss_file.path())
        .ok()
        .and_then(|s| s.lines().last().and_then(|l| l.trim().parse().ok()))
        .unwrap_or(f64::NAN);
    Ok([wall, ms(ru.ru_utime) + ms(ru.ru_stime), peak_kib / 1024.0])
}

/// The path of `tool` if installed.
pub fn peer(tool: &str) -> Option<PathBuf> {
    tinyo_tests::host::which(tool)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_by_nearest_rank() {
        let s: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(stats(&s), (1.0, 10.5, 19.0));
        assert_eq!(stats(&[3.0, 1.0, 2.0]), (1.0, 2.0, 3.0));
        assert!(stats(&[]).1.is_nan());
    }

    #[test]
    fn interleaving_rotates_and_keeps_only_measured_rounds() {
        let order = std::cell::RefCell::new(Vec::new());
        let mut cs = vec![
            Contender::new("a", || {
                order.borrow_mut().push('a');
                Ok(vec![1.0])
            }),
            Contender::new("b", || {
                order.borrow_mut().push('b');
                Ok(vec![2.0])
            }),
        ];
        let opts = Opts {
            rounds: 3,
            warmup: 1,
        };
        let r = interleaved(&[("t", "ms")], "a", &mut cs, &opts).unwrap();
        drop(cs);
        assert_eq!(order.into_inner().iter().collect::<String>(), "abbaabba");
        assert_eq!(
            r[0].rows,
            vec![
                ("a".to_string(), vec![1.0; 3]),
                ("b".to_string(), vec![2.0; 3])
            ]
        );
        assert_eq!(r[0].reference_median(), Some(1.0));
    }
}
