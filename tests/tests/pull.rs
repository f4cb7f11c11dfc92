//! `tinyo-pull` end to end against a real registry (Debian's docker-registry on loopback):
//! every fixture image, every reference form, TLS + basic auth, platforms, mirrors, hostile
//! images, the bundle, rmi + gc, concurrent pulls; and the rootfs compared with umoci's.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;
use tinyo_tests::bins::bin;
use tinyo_tests::busybox::Bundle;
use tinyo_tests::catalogue::{self, Catalogue};
use tinyo_tests::expect::{assert_rootfs, tree_diff};
use tinyo_tests::host::{require_root, require_tool, run_ok, unique};
use tinyo_tests::hostile;
use tinyo_tests::proxy::{Proxy, Quirks, Seen};
use tinyo_tests::registry::Registry;

/// A store, a HOME and a registries.conf of the test's own, so host configuration and
/// credentials never leak in.
struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("tinyo-pull-test-")
            .tempdir()
            .unwrap();
        fs::write(dir.path().join("registries.conf"), "").unwrap();
        fs::create_dir(dir.path().join("home")).unwrap();
        Self { dir }
    }

    fn store(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn pull_cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin("tinyo-pull"));
        c.arg("--root")
            .arg(self.store())
            .args(args)
            .env("HOME", self.dir.path().join("home"))
            .env(
                "CONTAINERS_REGISTRIES_CONF",
                self.dir.path().join("registries.conf"),
            )
            .env_remove("REGISTRY_AUTH_FILE")
            .env_remove("XDG_RUNTIME_DIR")
            .env_remove("TINYO_ROOT")
            .stdin(Stdio::null());
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.pull_cmd(args).output().expect("start tinyo-pull")
    }

    /// Pulls with `--format json` and returns the result, panicking with stderr on failure.
    fn pull(&self, args: &[&str]) -> Value {
        let mut a = vec!["--format", "json"];
        a.extend_from_slice(args);
        let o = self.run(&a);
        assert!(
            o.status.success(),
            "tinyo-pull {args:?} failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        serde_json::from_slice(&o.stdout)
            .unwrap_or_else(|e| panic!("json output {e}: {}", String::from_utf8_lossy(&o.stdout)))
    }

    /// Entries left in a store directory.
    fn entries(&self, sub: &str) -> Vec<String> {
        fs::read_dir(self.store().join(sub))
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Pushes every standard fixture to `reg` as `fixtures/NAME:NAME`.
fn push_catalogue(reg: &Registry, dir: &Path) -> Catalogue {
    let cat = catalogue::build(dir);
    for f in &cat.fixtures {
        reg.push(dir, &f.root, &format!("fixtures/{}", f.name), f.name);
    }
    cat
}

#[test]
fn pulls_every_fixture_by_tag_and_digest() {
    require_root();
    let reg = Registry::plain();
    let env = Env::new();
    let cat = push_catalogue(&reg, &env.path().join("layout"));
    for f in &cat.fixtures {
        let image = format!("{}/fixtures/{}:{}", reg.host(), f.name, f.name);
        let r = env.pull(&[&image]);
        assert_eq!(r["image"], image.as_str());
        assert_eq!(
            r["manifest"],
            f.amd64.manifest.digest.as_str(),
            "{}: the linux/amd64 manifest",
            f.name
        );
        assert_eq!(r["up_to_date"], false);
        assert_rootfs(Path::new(r["rootfs"].as_str().unwrap()), &f.expect);
        // Again: nothing downloaded.
        let again = env.pull(&[&image]);
        assert_eq!(
            (
                again["up_to_date"].as_bool(),
                again["downloaded_bytes"].as_u64()
            ),
            (Some(true), Some(0)),
            "{}",
            f.name
        );
    }
    // By digest: the same image, another ref.
    let single = cat.get(catalogue::SINGLE);
    let by_digest = format!("{}/fixtures/single@{}", reg.host(), single.root.digest);
    let r = env.pull(&[&by_digest]);
    assert_eq!(r["manifest"], single.root.digest.as_str());
    assert_eq!(r["downloaded_bytes"], 0, "layers already stored");
    // The store lists them all and skopeo reads it as an OCI layout.
    let o = env.run(&["images", "--format", "json"]);
    let list: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(list.as_array().unwrap().len(), cat.fixtures.len() + 1);
    let skopeo = require_tool("skopeo", "skopeo");
    let raw = run_ok(Command::new(skopeo).args(["inspect", "--raw"]).arg(format!(
        "oci:{}:{}/fixtures/multi:multi",
        env.store().display(),
        reg.host()
    )));
    assert!(
        raw.contains("application/vnd.oci.image.layer.v1.tar+zstd"),
        "{raw}"
    );
    assert!(
        env.entries("tmp").is_empty(),
        "tmp/ must be empty after pulls: {:?}",
        env.entries("tmp")
    );
}

#[test]
fn rootfs_equals_umoci_raw_unpack() {
    require_root();
    require_tool("skopeo", "skopeo");
    let umoci = require_tool("umoci", "umoci");
    let reg = Registry::plain();
    let env = Env::new();
    push_catalogue(&reg, &env.path().join("layout"));
    for name in [catalogue::MULTI, catalogue::MULTI_DOCKER, catalogue::SINGLE] {
        let image = format!("{}/fixtures/{name}:{name}", reg.host());
        let ours = env.pull(&[&image]);
        let oci = env.path().join(format!("umoci-{name}"));
        reg.skopeo_copy_to_oci(
            &format!("fixtures/{name}:{name}"),
            &oci,
            "x",
            &env.path().join("home"),
        );
        let theirs = env.path().join(format!("umoci-rootfs-{name}"));
        run_ok(
            Command::new(&umoci)
                .args(["raw", "unpack", "--image"])
                .arg(format!("{}:x", oci.display()))
                .arg(&theirs),
        );
        let diffs = tree_diff(Path::new(ours["rootfs"].as_str().unwrap()), &theirs);
        assert!(
            diffs.is_empty(),
            "{name}: tinyo-pull and umoci disagree:\n  {}",
            diffs.join("\n  ")
        );
    }
}

#[test]
fn tls_with_basic_auth() {
    require_root();
    let reg = Registry::tls_auth();
    let env = Env::new();
    push_catalogue(&reg, &env.path().join("layout"));
    let image = format!("{}/fixtures/single:single", reg.host());
    let certs = reg.cert_dir().unwrap();
    let cert_dir = format!("--cert-dir={}", certs.display());
    // No credentials: refused, and said so.
    let o = env.run(&[&cert_dir, &image]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("authentication required") && stderr(&o).contains(&image),
        "{}",
        stderr(&o)
    );
    // Wrong password.
    let o = env.run(&[&cert_dir, "--creds", "tinyo:wrong", &image]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("refused"), "{}", stderr(&o));
    // Verification on without the CA: a TLS error.
    let o = env.run(&[
        "--tls-verify=true",
        "--creds",
        &reg.creds().unwrap(),
        &image,
    ]);
    assert!(!o.status.success(), "an unknown CA must fail verification");
    assert_eq!(stderr(&o).lines().count(), 1, "one line: {}", stderr(&o));
    // --creds with the CA.
    let r = env.pull(&[&cert_dir, "--creds", &reg.creds().unwrap(), &image]);
    assert_eq!(r["layers"], 1);
    // An auth file (Docker's format) and the CA in certs.d layout via --cert-dir.
    let auth = env.path().join("auth.json");
    let b64 = tinyo_tests::registry::base64(reg.creds().unwrap().as_bytes());
    fs::write(
        &auth,
        format!(r#"{{"auths":{{"{}":{{"auth":"{b64}"}}}}}}"#, reg.host()),
    )
    .unwrap();
    let multi = format!("{}/fixtures/multi:multi", reg.host());
    let r = env.pull(&[&cert_dir, "--authfile", auth.to_str().unwrap(), &multi]);
    assert_eq!(r["layers"], 3);
    // REGISTRY_AUTH_FILE is honoured too.
    let o = env
        .pull_cmd(&[
            "--format",
            "json",
            &cert_dir,
            &format!("{}/fixtures/multi-docker:multi-docker", reg.host()),
        ])
        .env("REGISTRY_AUTH_FILE", &auth)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn platform_choice_from_an_index() {
    require_root();
    let reg = Registry::plain();
    let env = Env::new();
    push_catalogue(&reg, &env.path().join("layout"));
    for name in [catalogue::MULTIARCH, catalogue::MULTIARCH_DOCKER] {
        let image = format!("{}/fixtures/{name}:{name}", reg.host());
        let arm = env.pull(&["--platform", "linux/arm64/v8", &image]);
        let arch =
            fs::read_to_string(Path::new(arm["rootfs"].as_str().unwrap()).join("etc/tinyo-arch"))
                .unwrap();
        assert_eq!(arch, "arm64\n");
        let amd = env.pull(&[&image]);
        let arch =
            fs::read_to_string(Path::new(amd["rootfs"].as_str().unwrap()).join("etc/tinyo-arch"))
                .unwrap();
        assert_eq!(arch, "amd64\n", "default platform is this machine's");
        let o = env.run(&["--platform", "linux/s390x", &image]);
        assert!(!o.status.success());
        let e = stderr(&o);
        assert!(
            e.contains("linux/s390x")
                && e.contains("linux/amd64")
                && e.contains("linux/arm64/v8")
                && !e.contains("unknown"),
            "{e}"
        );
    }
}

#[test]
fn mirrors_and_blocked_registries_from_registries_conf() {
    require_root();
    let mirror = Registry::plain();
    let env = Env::new();
    push_catalogue(&mirror, &env.path().join("layout"));
    // The primary location does not answer; the mirror has the images under a path prefix.
    let conf = format!(
        "[[registry]]\nprefix = \"example.invalid\"\nlocation = \"127.0.0.1:1\"\n[[registry.mirror]]\nlocation = \"{}\"\ninsecure = true\n\n\
         [[registry]]\nlocation = \"blocked.invalid\"\nblocked = true\n",
        mirror.host()
    );
    fs::write(env.path().join("registries.conf"), conf).unwrap();
    let r = env.pull(&["example.invalid/fixtures/single:single"]);
    assert_eq!(r["image"], "example.invalid/fixtures/single:single");
    assert_eq!(
        r["source"],
        format!("{}/fixtures/single", mirror.host()).as_str()
    );
    let o = env.run(&["blocked.invalid/x:1"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("blocked"), "{}", stderr(&o));
    // A mirror without the image falls through to the location, and both failures are named.
    let o = env.run(&["example.invalid/fixtures/nothing:here"]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains(&mirror.host()) && e.contains("127.0.0.1:1"),
        "{e}"
    );
}

#[test]
fn hostile_images_fail_cleanly_and_touch_nothing() {
    require_root();
    let reg = Registry::plain();
    let env = Env::new();
    let layout = env.path().join("hostile");
    let all = hostile::build(&layout);
    for h in &all {
        reg.plant(&layout, &h.manifest, &format!("hostile/{}", h.name), h.name);
    }
    for a in [
        hostile::CANARY_ABSOLUTE,
        hostile::CANARY_SYMLINK_ABS,
        hostile::CANARY_SYMLINK_REL,
    ] {
        let _ = fs::remove_file(a);
    }
    fs::write(
        hostile::CANARY_HARDLINK_TARGET,
        hostile::CANARY_HARDLINK_CONTENT,
    )
    .unwrap();
    let mut outcomes = Vec::new();
    for h in &all {
        let image = format!("{}/hostile/{}:{}", reg.host(), h.name, h.name);
        let o = env.run(&["-q", &image]);
        outcomes.push((h, o.status.success(), stderr(&o)));
    }
    let canary = fs::read(hostile::CANARY_HARDLINK_TARGET).unwrap();
    let _ = fs::remove_file(hostile::CANARY_HARDLINK_TARGET);
    let escaped: Vec<&str> = [
        hostile::CANARY_ABSOLUTE,
        hostile::CANARY_SYMLINK_ABS,
        hostile::CANARY_SYMLINK_REL,
    ]
    .into_iter()
    .filter(|a| Path::new(a).exists())
    .collect();
    for a in &escaped {
        let _ = fs::remove_file(a);
    }
    assert!(escaped.is_empty(), "written on the host: {escaped:?}");
    assert_eq!(canary, hostile::CANARY_HARDLINK_CONTENT);
    for (h, ok, err) in &outcomes {
        let image = format!("{}/hostile/{}:{}", reg.host(), h.name, h.name);
        if h.attack == hostile::Attack::AbsolutePath {
            assert!(ok, "absolute names are clamped inside the rootfs: {err}");
            continue;
        }
        eprintln!("{}: {err}", h.name);
        assert!(!ok, "{} must be refused", h.name);
        assert_eq!(err.lines().count(), 1, "{}: one line: {err}", h.name);
        assert!(err.contains(&image), "{}: names the image: {err}", h.name);
        assert!(
            err.contains(h.layer.digest.as_str())
                || h.attack == hostile::Attack::MissingBlob && err.contains("404"),
            "{}: names the layer: {err}",
            h.name
        );
    }
    // Only the absolute-name image made it into the store; nothing else remains of the others.
    let refs = env.run(&["images", "--format", "json"]);
    let refs: Value = serde_json::from_slice(&refs.stdout).unwrap();
    assert_eq!(refs.as_array().unwrap().len(), 1, "{refs}");
    assert_eq!(env.entries("images").len(), 1);
    assert!(env.entries("tmp").is_empty(), "{:?}", env.entries("tmp"));
    assert!(
        env.entries("locks").is_empty(),
        "{:?}",
        env.entries("locks")
    );
    // Its blobs only: manifest, config and one layer.
    assert_eq!(
        env.entries("blobs/sha256").len(),
        3,
        "{:?}",
        env.entries("blobs/sha256")
    );
}

#[test]
fn bundle_runs_under_runc() {
    require_root();
    let runc = require_tool("runc", "runc");
    let reg = Registry::plain();
    let env = Env::new();
    push_catalogue(&reg, &env.path().join("layout"));
    let bundle = env.path().join("bundle");
    env.pull(&[
        "--bundle",
        bundle.to_str().unwrap(),
        &format!("{}/fixtures/multi:multi", reg.host()),
    ]);
    let mut config: Value =
        serde_json::from_slice(&fs::read(bundle.join("config.json")).unwrap()).unwrap();
    assert_eq!(
        config["process"]["args"],
        serde_json::json!(["/bin/sh"]),
        "Cmd of the image"
    );
    config["process"]["args"] = serde_json::json!([
        "/bin/sh",
        "-c",
        "cat /data/keep /opaque/new; ls /opaque | wc -l"
    ]);
    let id = unique("pull-bundle");
    config["linux"]["cgroupsPath"] = serde_json::json!(format!("tinyo-test-{id}"));
    fs::write(
        bundle.join("config.json"),
        serde_json::to_vec(&config).unwrap(),
    )
    .unwrap();
    let state = tempfile::tempdir().unwrap();
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private"])
        .arg(&runc)
        .arg("--root")
        .arg(state.path())
        .args(["run", "--bundle"])
        .arg(&bundle)
        .arg(&id)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let _ = Command::new(&runc)
        .arg("--root")
        .arg(state.path())
        .args(["delete", "--force", &id])
        .output();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["keep", "new", "1"]
    );
    // Never over an existing bundle.
    let o = env.run(&[
        "--bundle",
        bundle.to_str().unwrap(),
        &format!("{}/fixtures/single:single", reg.host()),
    ]);
    assert!(
        !o.status.success() && stderr(&o).contains("refusing to overwrite"),
        "{}",
        stderr(&o)
    );
    let _ = Bundle::new; // the fixture bundle type is the model for this one
}

#[test]
fn rmi_removes_what_no_image_needs() {
    require_root();
    let reg = Registry::plain();
    let env = Env::new();
    push_catalogue(&reg, &env.path().join("layout"));
    let single = format!("{}/fixtures/single:single", reg.host());
    let multiarch = format!("{}/fixtures/multiarch:multiarch", reg.host());
    env.pull(&[&single]);
    let r = env.pull(&[&multiarch]);
    assert!(
        r["downloaded_bytes"].as_u64().unwrap() < 10_000,
        "the busybox layer is shared: {r}"
    );
    let o = env.run(&["rmi", &single]);
    assert!(o.status.success(), "{}", stderr(&o));
    // The shared layer stays for multiarch.
    let again = env.pull(&[&multiarch]);
    assert_eq!(again["up_to_date"], true);
    let o = env.run(&["rmi", &multiarch]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        env.entries("blobs/sha256").is_empty(),
        "{:?}",
        env.entries("blobs/sha256")
    );
    assert!(env.entries("images").is_empty());
    let o = env.run(&["rmi", &single]);
    assert!(
        !o.status.success() && stderr(&o).contains("no such image"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn concurrent_pulls_into_one_store() {
    require_root();
    let reg = Registry::plain();
    let env = Env::new();
    push_catalogue(&reg, &env.path().join("layout"));
    let images: Vec<String> = [
        catalogue::SINGLE,
        catalogue::MULTIARCH,
        catalogue::MULTI,
        catalogue::SINGLE,
    ]
    .iter()
    .map(|n| format!("{}/fixtures/{n}:{n}", reg.host()))
    .collect();
    let children: Vec<_> = images
        .iter()
        .map(|i| {
            env.pull_cmd(&["-q", i])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let o = env.run(&["images", "--format", "json"]);
    let list: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 3);
    assert_eq!(env.entries("images").len(), 3);
    assert!(env.entries("tmp").is_empty(), "{:?}", env.entries("tmp"));
}

#[test]
fn the_same_image_pulled_twice_at_once_is_downloaded_once() {
    require_root();
    let reg = Registry::plain();
    let env = Env::new();
    push_catalogue(&reg, &env.path().join("layout"));
    let image = format!("{}/fixtures/multi:multi", reg.host());
    let children: Vec<_> = (0..3)
        .map(|_| {
            env.pull_cmd(&["--format", "json", &image])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut downloads = Vec::new();
    for c in children {
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        downloads.push(v["downloaded_bytes"].as_u64().unwrap());
    }
    downloads.sort();
    assert_eq!(
        downloads[..2],
        [0, 0],
        "only one pull downloads: {downloads:?}"
    );
    assert!(downloads[2] > 0);
}

#[test]
fn short_names_use_the_unqualified_search_registries() {
    require_root();
    let empty = Registry::plain();
    let reg = Registry::plain();
    let env = Env::new();
    push_catalogue(&reg, &env.path().join("layout"));
    // The first search registry lacks the image; the second has it.
    let conf = format!(
        "unqualified-search-registries = [\"{}\", \"{}\"]\n",
        empty.host(),
        reg.host()
    );
    fs::write(env.path().join("registries.conf"), conf).unwrap();
    let r = env.pull(&["fixtures/single:single"]);
    assert_eq!(
        r["image"],
        format!("{}/fixtures/single:single", reg.host()).as_str()
    );
    let o = env.run(&["fixtures/nothing"]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains(&empty.host()) && e.contains(&reg.host()),
        "both registries named: {e}"
    );
}

#[test]
fn resumes_downloads_cut_part_way() {
    require_root();
    let reg = Registry::plain();
    let env = Env::new();
    let cat = push_catalogue(&reg, &env.path().join("layout"));
    // The config (small) passes whole; the busybox layer (about 1 MB) is cut twice.
    let proxy = Proxy::start(
        &reg.host(),
        Quirks {
            cut_blobs: 3,
            cut_after: 200_000,
            ..Default::default()
        },
    );
    let r = env.pull(&[&format!("{}/fixtures/single:single", proxy.host())]);
    assert_rootfs(
        Path::new(r["rootfs"].as_str().unwrap()),
        &cat.get(catalogue::SINGLE).expect,
    );
    let seen = proxy.seen();
    let ranges: Vec<&str> = seen.iter().filter_map(|s| s.range.as_deref()).collect();
    assert_eq!(
        ranges,
        ["bytes=200000-", "bytes=400000-"],
        "resumed where each cut happened: {seen:?}"
    );
}

#[test]
fn retries_429_and_never_sends_credentials_to_a_redirect_target() {
    require_root();
    let reg = Registry::plain();
    let env = Env::new();
    push_catalogue(&reg, &env.path().join("layout"));
    let quirks = Quirks {
        basic_auth: Some("u:pw".into()),
        too_many_requests: 2,
        redirect_blobs: true,
        ..Default::default()
    };
    let proxy = Proxy::start(&reg.host(), quirks);
    let image = format!("{}/fixtures/multi:multi", proxy.host());
    let o = env.run(&[&image]);
    assert!(
        !o.status.success() && stderr(&o).contains("authentication required"),
        "{}",
        stderr(&o)
    );
    let r = env.pull(&["--creds", "u:pw", &image]);
    assert_eq!(r["layers"], 3);
    let seen = proxy.seen();
    assert_eq!(
        seen.iter().filter(|s| s.action == "429").count(),
        2,
        "{seen:?}"
    );
    let redirected: Vec<&Seen> = seen.iter().filter(|s| s.listener == "redirect").collect();
    assert_eq!(
        redirected.len(),
        4,
        "config and three layers fetched from the redirect target: {seen:?}"
    );
    assert!(
        redirected.iter().all(|s| s.authorization.is_none()),
        "credentials leaked to another host: {redirected:?}"
    );
    assert!(
        seen.iter()
            .any(|s| s.listener == "main" && s.action == "redirect" && s.authorization.is_some()),
        "the registry itself got them"
    );
}

#[test]
fn bearer_token_auth() {
    require_root();
    let reg = Registry::token_auth();
    let env = Env::new();
    push_catalogue(&reg, &env.path().join("layout"));
    let anon = reg.request("GET", "/v2/", None, &[], false).unwrap();
    assert_eq!(anon.status, 401);
    assert!(
        anon.header("WWW-Authenticate")
            .is_some_and(|h| h.starts_with("Bearer realm=")),
        "{:?}",
        anon.headers
    );
    let image = format!("{}/fixtures/multi:multi", reg.host());
    // The token server refuses anonymous and wrong credentials.
    let o = env.run(&[&image]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("authentication required") && stderr(&o).contains("/token"),
        "{}",
        stderr(&o)
    );
    let o = env.run(&["--creds", "tinyo:wrong", &image]);
    assert!(
        !o.status.success() && stderr(&o).contains("refused"),
        "{}",
        stderr(&o)
    );
    let before = reg.token_server().unwrap().issued();
    let r = env.pull(&["--creds", &reg.creds().unwrap(), &image]);
    assert_eq!(r["layers"], 3);
    assert!(
        reg.token_server().unwrap().issued() > before,
        "a token was obtained"
    );
}

#[test]
fn non_distributable_layers_come_from_their_urls() {
    use tinyo_tests::image::{self, media, Compression, Entry, Layout, Platform, Style};
    require_root();
    let reg = Registry::plain();
    let env = Env::new();
    let dir = env.path().join("layout");
    let layout = Layout::create(&dir);
    let amd64 = Platform::linux_amd64();
    let base = image::layer(
        &[Entry::dir("etc/"), Entry::file("etc/base", b"base\n")],
        Compression::Gzip,
        Style::Oci,
    );
    let foreign = image::layer(
        &[Entry::file("foreign", b"from elsewhere\n")],
        Compression::Gzip,
        Style::Oci,
    );
    let img = image::image(
        &layout,
        Style::Oci,
        &amd64,
        vec![base, foreign.clone()],
        |_| {},
    );
    // The foreign layer lives only in another repository, reachable by URL.
    let holder = image::image(&layout, Style::Oci, &amd64, vec![foreign.clone()], |_| {});
    reg.push(&dir, &holder.manifest, "elsewhere/holder", "v1");
    let mut m: Value =
        serde_json::from_slice(&image::read_blob(&dir, &img.manifest.digest)).unwrap();
    m["layers"][1]["mediaType"] =
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip".into();
    m["layers"][1]["urls"] = serde_json::json!([reg.url(&format!(
        "/v2/elsewhere/holder/blobs/{}",
        foreign.desc.digest
    ))]);
    let desc = layout.put(media::OCI_MANIFEST, &serde_json::to_vec(&m).unwrap());
    reg.plant(&dir, &desc, "foreign/app", "v1");
    // plant() links every layer into the repository: unlink the foreign one again.
    let link = reg
        .dir()
        .join("storage/docker/registry/v2/repositories/foreign/app/_layers/sha256")
        .join(foreign.desc.hex());
    fs::remove_dir_all(link).unwrap();
    assert_eq!(
        reg.get(&format!("/v2/foreign/app/blobs/{}", foreign.desc.digest))
            .status,
        404
    );
    let r = env.pull(&[&format!("{}/foreign/app:v1", reg.host())]);
    let rootfs = Path::new(r["rootfs"].as_str().unwrap());
    assert_eq!(
        fs::read_to_string(rootfs.join("foreign")).unwrap(),
        "from elsewhere\n"
    );
    assert_eq!(
        fs::read_to_string(rootfs.join("etc/base")).unwrap(),
        "base\n"
    );
}

#[test]
fn progress_bars_on_a_terminal_only() {
    require_root();
    let script = require_tool("script", "util-linux");
    let reg = Registry::plain();
    let env = Env::new();
    push_catalogue(&reg, &env.path().join("layout"));
    let image = format!("{}/fixtures/multi:multi", reg.host());
    // script(1) gives tinyo-pull a pseudo-terminal as stdout and stderr.
    let cmd = format!(
        "{} --root {} {image}",
        bin("tinyo-pull").display(),
        env.store().display()
    );
    let o = Command::new(script)
        .args(["-qec", &cmd, "/dev/null"])
        .env(
            "CONTAINERS_REGISTRIES_CONF",
            env.path().join("registries.conf"),
        )
        .env("HOME", env.path().join("home"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let tty = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{tty}");
    assert!(tty.contains("pulled (3 layers"), "summary line: {tty}");
    assert!(
        tty.contains('█') || tty.contains("KiB"),
        "progress bars drawn: {tty}"
    );
    // Piped: no bars, just the summary on stderr and the digest on stdout.
    let o = env.run(&[&format!("{}/fixtures/single:single", reg.host())]);
    assert!(o.status.success());
    assert!(!stderr(&o).contains('█'), "{}", stderr(&o));
    let digest = String::from_utf8_lossy(&o.stdout).trim().to_string();
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "stdout is the manifest digest: {digest}"
    );
}
