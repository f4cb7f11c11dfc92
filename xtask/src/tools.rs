//! What xtask commands need from the host, and installing it.
//!
//! A missing tool is never a panic: [`ensure`] installs what is missing with apt-get (saying in
//! one line what and why) when it runs as root on a machine with apt-get, and otherwise returns
//! one sentence naming the tools, their Debian packages and the command that installs them.
//! [`require`] only checks, for tools too big to install on the side (benchmark peers).
//! Tools are looked up as the fixtures look them up ([`tinyo_tests::host::which`]), so a tool
//! found here is the one they run.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

/// One tool a command needs: the binary (a name looked up on PATH, or an absolute path), the
/// Debian package that provides it, and what the command uses it for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Need {
    pub bin: &'static str,
    pub package: &'static str,
    pub why: &'static str,
}

pub const fn need(bin: &'static str, package: &'static str, why: &'static str) -> Need {
    Need { bin, package, why }
}

/// Whether xtask runs as root.
pub fn is_root() -> bool {
    tinyo_tests::host::is_root()
}

/// Fails unless running as root; `why` says what needs root ("it runs a container").
pub fn require_root(task: &str, why: &str) -> Result<()> {
    if !is_root() {
        bail!(
            "must run as root ({why}): run it as root, for example with `sudo cargo xtask {task}`"
        );
    }
    Ok(())
}

/// Makes sure every tool in `needs` is installed: what is missing is installed with apt-get
/// when running as root, announced first in one line naming the packages and why. Otherwise
/// (not root, no apt-get) fails with one sentence saying what to install. `task` names the
/// xtask command in that line ("demo", "bench pull").
pub fn ensure(task: &str, needs: &[Need]) -> Result<()> {
    let lookup = |bin: &str| tinyo_tests::host::which(bin).is_some();
    let absent = missing(needs, lookup);
    if absent.is_empty() {
        return Ok(());
    }
    if !is_root() {
        bail!(not_root(&absent));
    }
    let Some(apt) = tinyo_tests::host::which("apt-get") else {
        bail!(
            "needs {}, and there is no apt-get to install {} with: install {} with this system's package manager",
            describe(&absent),
            them(&absent),
            them(&absent)
        );
    };
    eprintln!("{}", install_line(task, &absent));
    apt_install(task, &apt, &packages(&absent))?;
    let still = missing(needs, lookup);
    if !still.is_empty() {
        bail!(
            "apt-get installed {} but {} {} still not found on PATH",
            packages(&absent).join(" "),
            join_and(&still.iter().map(|n| n.bin).collect::<Vec<_>>()),
            if still.len() == 1 { "is" } else { "are" }
        );
    }
    Ok(())
}

/// Fails unless every tool in `needs` is installed, with one sentence saying what to install;
/// never installs anything.
pub fn require(needs: &[Need]) -> Result<()> {
    let absent = missing(needs, |bin| tinyo_tests::host::which(bin).is_some());
    if absent.is_empty() {
        return Ok(());
    }
    bail!(
        "needs {} ({}): install {} with: apt-get install {}",
        describe(&absent),
        whys(&absent),
        them(&absent),
        packages(&absent).join(" ")
    )
}

/// The needs whose binary `found` does not find, in order.
fn missing(needs: &[Need], found: impl Fn(&str) -> bool) -> Vec<&Need> {
    needs.iter().filter(|n| !found(n.bin)).collect()
}

/// The distinct packages of `needs`, in order of first mention.
fn packages(needs: &[&Need]) -> Vec<&'static str> {
    let mut v: Vec<&'static str> = Vec::new();
    for n in needs {
        if !v.contains(&n.package) {
            v.push(n.package);
        }
    }
    v
}

/// The distinct reasons of `needs`, joined into one phrase.
fn whys(needs: &[&Need]) -> String {
    let mut v: Vec<&'static str> = Vec::new();
    for n in needs {
        if !v.contains(&n.why) {
            v.push(n.why);
        }
    }
    join_and(&v)
}

/// "docker-registry (Debian package docker-registry) and busybox (Debian package
/// busybox-static)": the binaries grouped by package.
fn describe(needs: &[&Need]) -> String {
    let groups: Vec<String> = packages(needs)
        .into_iter()
        .map(|p| {
            let bins: Vec<&str> = needs
                .iter()
                .filter(|n| n.package == p)
                .map(|n| n.bin)
                .collect();
            format!("{} (Debian package {p})", bins.join(", "))
        })
        .collect();
    join_and(&groups)
}

fn them(needs: &[&Need]) -> &'static str {
    if needs.len() == 1 {
        "it"
    } else {
        "them"
    }
}

/// "a", "a and b", "a, b and c".
fn join_and<S: AsRef<str>>(items: &[S]) -> String {
    match items {
        [] => String::new(),
        [one] => one.as_ref().to_string(),
        [init @ .., last] => format!(
            "{} and {}",
            init.iter()
                .map(AsRef::as_ref)
                .collect::<Vec<_>>()
                .join(", "),
            last.as_ref()
        ),
    }
}

/// Why an ordinary user gets nothing installed, and what to do.
fn not_root(absent: &[&Need]) -> String {
    format!(
        "needs {}: run it as root to have {} installed, or install {} with: apt-get install {}",
        describe(absent),
        them(absent),
        them(absent),
        packages(absent).join(" ")
    )
}

/// The one line printed before installing.
fn install_line(task: &str, needs: &[&Need]) -> String {
    format!(
        "xtask {task}: installing {} ({}) with apt-get",
        packages(needs).join(" "),
        whys(needs)
    )
}

/// Whether apt-get's errors say its package lists are missing or out of date, which
/// `apt-get update` fixes (a fresh machine or container image has no lists at all).
fn lists_look_stale(apt_stderr: &str) -> bool {
    [
        "Unable to locate package",
        "has no installation candidate",
        "Failed to fetch",
    ]
    .iter()
    .any(|m| apt_stderr.contains(m))
}

fn apt(apt: &Path) -> Command {
    let mut c = Command::new(apt);
    c.env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        // apt's progress goes where our messages go, keeping stdout for results.
        .stdout(Stdio::from(std::io::stderr()));
    c
}

/// `apt-get install -y -q --no-install-recommends PKGS`; when that fails because the package
/// lists are missing or stale, `apt-get update -q` and one more try.
fn apt_install(task: &str, apt_get: &Path, pkgs: &[&str]) -> Result<()> {
    let install = || -> Result<(bool, String)> {
        let mut cmd = apt(apt_get);
        cmd.args(["install", "-y", "-q", "--no-install-recommends"])
            .args(pkgs)
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {}", apt_get.display()))?;
        // Shown as it comes, and kept to see why it failed.
        let mut errors = String::new();
        if let Some(err) = child.stderr.take() {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                eprintln!("{line}");
                errors.push_str(&line);
                errors.push('\n');
            }
        }
        let status = child.wait().context("waiting for apt-get")?;
        Ok((status.success(), errors))
    };
    let command = format!(
        "apt-get install -y -q --no-install-recommends {}",
        pkgs.join(" ")
    );
    let (ok, errors) = install()?;
    if ok {
        return Ok(());
    }
    if lists_look_stale(&errors) {
        eprintln!(
            "xtask {task}: apt-get's package lists are missing or out of date; \
             refreshing them with apt-get update -q and trying again"
        );
        let status = apt(apt_get)
            .args(["update", "-q"])
            .status()
            .context("starting apt-get update")?;
        if !status.success() {
            bail!("`apt-get update -q` failed ({status}), so `{command}` could not run");
        }
        if install()?.0 {
            return Ok(());
        }
    }
    bail!("`{command}` failed (apt-get's messages are above)")
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEMO: [Need; 2] = [
        need("docker-registry", "docker-registry", "a local registry"),
        need("busybox", "busybox-static", "a rootfs source for the demo"),
    ];

    #[test]
    fn only_what_the_lookup_misses_is_missing() {
        let absent = missing(&DEMO, |b| b == "busybox");
        assert_eq!(absent, vec![&DEMO[0]]);
        assert!(missing(&DEMO, |_| true).is_empty());
        assert_eq!(missing(&DEMO, |_| false).len(), 2);
    }

    #[test]
    fn the_install_line_names_packages_and_reasons() {
        let absent = missing(&DEMO, |_| false);
        assert_eq!(
            install_line("demo", &absent),
            "xtask demo: installing docker-registry busybox-static \
             (a local registry and a rootfs source for the demo) with apt-get"
        );
    }

    #[test]
    fn an_ordinary_user_is_told_the_packages_to_install() {
        assert_eq!(
            not_root(&missing(&DEMO, |b| b == "busybox")),
            "needs docker-registry (Debian package docker-registry): run it as root to have it \
             installed, or install it with: apt-get install docker-registry"
        );
        assert_eq!(
            not_root(&missing(&DEMO, |_| false)),
            "needs docker-registry (Debian package docker-registry) and busybox (Debian package \
             busybox-static): run it as root to have them installed, or install them with: \
             apt-get install docker-registry busybox-static"
        );
    }

    #[test]
    fn binaries_of_one_package_are_named_once_with_it() {
        let needs = [
            need("containerd", "containerd", "tests"),
            need("skopeo", "skopeo", "tests"),
            need("ctr", "containerd", "tests"),
            need(
                "/usr/lib/cni/bridge",
                "containernetworking-plugins",
                "tests",
            ),
        ];
        let absent = missing(&needs, |_| false);
        assert_eq!(
            packages(&absent),
            ["containerd", "skopeo", "containernetworking-plugins"]
        );
        assert_eq!(
            describe(&absent),
            "containerd, ctr (Debian package containerd), skopeo (Debian package skopeo) and \
             /usr/lib/cni/bridge (Debian package containernetworking-plugins)"
        );
        assert_eq!(whys(&absent), "tests");
    }

    #[test]
    fn one_missing_tool_is_it_and_more_are_them() {
        let one = missing(&DEMO, |b| b == "busybox");
        assert_eq!(
            describe(&one),
            "docker-registry (Debian package docker-registry)"
        );
        assert_eq!(them(&one), "it");
        assert_eq!(them(&missing(&DEMO, |_| false)), "them");
        assert_eq!(join_and::<&str>(&[]), "");
    }

    #[test]
    fn stale_lists_are_recognised_from_apt_errors() {
        assert!(lists_look_stale(
            "E: Unable to locate package docker-registry\n"
        ));
        assert!(lists_look_stale(
            "E: Package 'umoci' has no installation candidate\n"
        ));
        assert!(!lists_look_stale(
            "E: Could not get lock /var/lib/dpkg/lock-frontend\n"
        ));
    }

    #[test]
    fn present_tools_need_nothing() {
        // `sh` is on every machine this runs on: nothing to install, no root needed.
        ensure("test", &[need("sh", "dash", "a shell")]).unwrap();
        require(&[need("sh", "dash", "a shell")]).unwrap();
    }

    #[test]
    fn require_names_the_tool_the_package_and_the_reason() {
        let e = require(&[need(
            "/nonexistent/tinyo-no-such-tool",
            "tinyo-nothing",
            "nothing at all",
        )])
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "needs /nonexistent/tinyo-no-such-tool (Debian package tinyo-nothing) (nothing at all): \
             install it with: apt-get install tinyo-nothing"
        );
    }
}
