//! The shared fixtures work, and are what they claim to be — checked with real peers: runc runs
//! the busybox bundle, docker-registry serves the images, skopeo reads them back and umoci
//! unpacks them to exactly the rootfs each image's expectations describe. Hostile images are
//! checked to be hostile in the way they say.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};

use tinyo_tests::busybox::Bundle;
use tinyo_tests::catalogue::{self, Catalogue};
use tinyo_tests::expect::assert_rootfs;
use tinyo_tests::host::{leftover_cgroups, require_root, require_tool, run_ok, unique};
use tinyo_tests::hostile::{self, Attack};
use tinyo_tests::image;
use tinyo_tests::registry::{self, Registry};

/// Deletes a runc container whatever happened to the test.
struct RuncGuard<'a> {
    root: &'a Path,
    id: String,
}

impl Drop for RuncGuard<'_> {
    fn drop(&mut self) {
        let _ = Command::new("runc")
            .arg("--root")
            .arg(self.root)
            .args(["delete", "--force", &self.id])
            .output();
    }
}

#[test]
fn busybox_bundle_runs_under_runc() {
    require_root();
    let runc = require_tool("runc", "runc");
    let id = unique("fixture-runc");
    let bundle = Bundle::new(
        &id,
        &[
            "/bin/sh",
            "-c",
            "echo hello from $(hostname) as $(id -u); grep -c . /etc/passwd; exit 3",
        ],
    );
    let state = tempfile::tempdir().unwrap();
    let _guard = RuncGuard {
        root: state.path(),
        id: id.clone(),
    };
    // A private mount namespace: whatever runc mounts can never reach the host's.
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private"])
        .arg(&runc)
        .arg("--root")
        .arg(state.path())
        .args(["run", "--bundle"])
        .arg(bundle.path())
        .arg(&id)
        .stdin(Stdio::null())
        .output()
        .expect("start runc");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(3),
        "exit code of the container; stdout {stdout}, stderr {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout, "hello from tinyo as 0\n3\n");
    assert!(
        leftover_cgroups(&format!("tinyo-test-{id}")).is_empty(),
        "runc left cgroups behind"
    );
}

fn catalogue_in(dir: &Path) -> Catalogue {
    catalogue::build(dir)
}

/// Pushes every standard image, reads each manifest back over HTTP and with skopeo, and
/// checks the digests the registry reports.
fn roundtrip(reg: &Registry) {
    let layout = tempfile::tempdir().unwrap();
    let cat = catalogue_in(layout.path());
    let skopeo = require_tool("skopeo", "skopeo");
    for f in &cat.fixtures {
        let repo = format!("fixtures/{}", f.name);
        reg.push(layout.path(), &f.root, &repo, f.name);
        let r = reg.get(&format!("/v2/{repo}/manifests/{}", f.name));
        assert_eq!(
            r.status,
            200,
            "{repo}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert_eq!(
            r.header("Docker-Content-Digest"),
            Some(f.root.digest.as_str()),
            "{repo}"
        );
        assert_eq!(
            r.header("Content-Type"),
            Some(f.root.media_type.as_str()),
            "{repo}"
        );
        assert_eq!(r.body, image::read_blob(layout.path(), &f.root.digest));
        // Every layer of the amd64 image is served with the right digest.
        for l in &f.amd64.layers {
            let b = reg.get(&format!("/v2/{repo}/blobs/{}", l.desc.digest));
            assert_eq!(b.status, 200);
            assert_eq!(tinyo_tests::digest_of(&b.body), l.desc.digest);
        }
        // A peer reads the same bytes.
        let raw = run_ok(
            Command::new(&skopeo)
                .args(["inspect", "--raw"])
                .args(reg.skopeo_args(""))
                .arg(format!("docker://{}/{repo}:{}", reg.host(), f.name))
                .env("HOME", layout.path()),
        );
        assert_eq!(
            raw.trim().as_bytes(),
            image::read_blob(layout.path(), &f.root.digest).as_slice(),
            "skopeo sees {repo}"
        );
    }
}

#[test]
fn registry_roundtrip_plain_http() {
    let reg = Registry::plain();
    roundtrip(&reg);
    let r = reg.request("GET", "/v2/", None, &[], false).unwrap();
    assert_eq!(r.status, 200, "plain registry is anonymous");
}

#[test]
fn registry_roundtrip_tls_with_basic_auth() {
    let reg = Registry::tls_auth();
    assert!(reg.url("/").starts_with("https://"));
    let anon = reg.request("GET", "/v2/", None, &[], false).unwrap();
    assert_eq!(anon.status, 401, "anonymous access must be refused");
    assert!(
        anon.header("WWW-Authenticate")
            .is_some_and(|h| h.starts_with("Basic")),
        "{:?}",
        anon.headers
    );
    roundtrip(&reg);
    // Wrong credentials are refused by the registry, as seen by a peer.
    let skopeo = require_tool("skopeo", "skopeo");
    let home = tempfile::tempdir().unwrap();
    let out = Command::new(skopeo)
        .args(["inspect", "--raw", "--creds", "tinyo:wrong"])
        .arg(format!("--cert-dir={}", reg.cert_dir().unwrap().display()))
        .arg(format!("docker://{}/fixtures/single:single", reg.host()))
        .env("HOME", home.path())
        .output()
        .unwrap();
    assert!(!out.status.success(), "wrong password must fail");
}

#[test]
fn registry_is_gone_after_drop() {
    let reg = Registry::plain();
    let (pid, dir) = (reg.pid(), reg.dir().to_path_buf());
    drop(reg);
    // SAFETY: kill with signal 0 only checks for existence.
    let alive = unsafe { libc::kill(pid as i32, 0) } == 0;
    assert!(!alive, "registry process {pid} still running");
    assert!(
        !dir.exists(),
        "registry directory {} left behind",
        dir.display()
    );
}

/// umoci, an independent unpacker, turns the multi-layer images into exactly the rootfs their
/// expectations describe: the whiteouts, opaque dirs, links, modes, owners, xattrs and type
/// changes in the fixtures are well-formed. skopeo copies them out of the registry first.
#[test]
fn peers_unpack_multi_layer_images_as_expected() {
    require_root();
    require_tool("skopeo", "skopeo");
    let umoci = require_tool("umoci", "umoci");
    let reg = Registry::plain();
    let work = tempfile::tempdir().unwrap();
    let cat = catalogue_in(&work.path().join("src"));
    for name in [
        catalogue::MULTI_DOCKER,
        catalogue::MULTI,
        catalogue::MULTIARCH,
    ] {
        let f = cat.get(name);
        reg.push(
            &work.path().join("src"),
            &f.root,
            &format!("fixtures/{name}"),
            name,
        );
        let oci = work.path().join(format!("copy-{name}"));
        reg.skopeo_copy_to_oci(&format!("fixtures/{name}:{name}"), &oci, name, work.path());
        let bundle = work.path().join(format!("bundle-{name}"));
        run_ok(
            Command::new(&umoci)
                .args(["unpack", "--image"])
                .arg(format!("{}:{name}", oci.display()))
                .arg(&bundle),
        );
        assert_rootfs(&bundle.join("rootfs"), &f.expect);
    }
}

#[test]
fn hostile_images_are_served_as_hostile() {
    let reg = Registry::plain();
    let layout = tempfile::tempdir().unwrap();
    let all = hostile::build(layout.path());
    assert_eq!(all.len(), 9);
    for h in &all {
        let repo = format!("hostile/{}", h.name);
        reg.plant(layout.path(), &h.manifest, &repo, h.name);
        let m = reg.get(&format!("/v2/{repo}/manifests/{}", h.name));
        assert_eq!(
            m.status,
            200,
            "{repo} manifest: {}\n{}",
            String::from_utf8_lossy(&m.body),
            reg.log()
        );
        assert_eq!(
            tinyo_tests::digest_of(&m.body),
            h.manifest.digest,
            "{repo}: the manifest itself is honest"
        );
        let blob = reg.get(&format!("/v2/{repo}/blobs/{}", h.layer.digest));
        let manifest: serde_json::Value = serde_json::from_slice(&m.body).unwrap();
        let config_digest = manifest["config"]["digest"].as_str().unwrap();
        let config: serde_json::Value =
            serde_json::from_slice(&reg.get(&format!("/v2/{repo}/blobs/{config_digest}")).body)
                .unwrap();
        match h.attack {
            Attack::BadDigest => {
                assert_eq!(blob.status, 200);
                assert_eq!(blob.body.len() as u64, h.layer.size, "same size");
                assert_ne!(
                    tinyo_tests::digest_of(&blob.body),
                    h.layer.digest,
                    "content must not match its digest"
                );
            }
            Attack::Oversized => {
                assert!(
                    blob.body.len() as u64 > h.layer.size,
                    "served body longer than declared"
                );
                assert_eq!(
                    tinyo_tests::digest_of(&blob.body[..h.layer.size as usize]),
                    h.layer.digest
                );
            }
            Attack::TruncatedGzip => {
                assert_eq!(
                    tinyo_tests::digest_of(&blob.body),
                    h.layer.digest,
                    "the blob itself verifies"
                );
                let mut out = Vec::new();
                let r = flate2::read::GzDecoder::new(blob.body.as_slice()).read_to_end(&mut out);
                assert!(
                    r.is_err(),
                    "a truncated gzip stream must not inflate cleanly"
                );
            }
            Attack::WrongDiffId => {
                let tar = gunzip(&blob.body);
                assert_ne!(
                    config["rootfs"]["diff_ids"][0].as_str().unwrap(),
                    tinyo_tests::digest_of(&tar)
                );
            }
            Attack::MissingBlob => assert_eq!(blob.status, 404, "the layer must be missing"),
            Attack::Traversal => {
                let names = tar_names(&gunzip(&blob.body));
                assert!(names.iter().any(|(n, _)| n.starts_with("../")), "{names:?}");
                assert!(
                    names.iter().any(|(n, _)| n.contains("/../../")),
                    "{names:?}"
                );
            }
            Attack::AbsolutePath => {
                let names = tar_names(&gunzip(&blob.body));
                assert_eq!(names[0].0, hostile::CANARY_ABSOLUTE);
            }
            Attack::SymlinkEscape => {
                // Layer 1 plants the links, layer 2 (the attacking layer) writes through them.
                let l1 = manifest["layers"][0]["digest"].as_str().unwrap();
                let links = tar_names(&gunzip(&reg.get(&format!("/v2/{repo}/blobs/{l1}")).body));
                assert!(
                    links
                        .iter()
                        .any(|(n, t)| n == "escape" && t.as_deref() == Some(hostile::CANARY_DIR)),
                    "{links:?}"
                );
                assert!(
                    links
                        .iter()
                        .any(|(n, t)| n == "rel"
                            && t.as_deref().is_some_and(|t| t.starts_with("../"))),
                    "{links:?}"
                );
                let writes = tar_names(&gunzip(&blob.body));
                assert!(
                    writes
                        .iter()
                        .all(|(n, _)| n.starts_with("escape/") || n.starts_with("rel/")),
                    "{writes:?}"
                );
            }
            Attack::HardlinkEscape => {
                let names = tar_names(&gunzip(&blob.body));
                assert!(
                    names.iter().any(|(n, t)| n == "hl-abs"
                        && t.as_deref() == Some(hostile::CANARY_HARDLINK_TARGET)),
                    "{names:?}"
                );
                assert!(
                    names.iter().any(|(n, t)| n == "hl-rel"
                        && t.as_deref().is_some_and(|t| t.starts_with("../"))),
                    "{names:?}"
                );
            }
        }
    }
    // A strict peer refuses the blob whose digest does not match.
    let skopeo = require_tool("skopeo", "skopeo");
    let out = Command::new(skopeo)
        .args(["copy", "--insecure-policy", "--src-tls-verify=false"])
        .arg(format!(
            "docker://{}/hostile/bad-digest:bad-digest",
            reg.host()
        ))
        .arg(format!("oci:{}:x", layout.path().join("copy").display()))
        .env("HOME", layout.path())
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "skopeo must refuse a blob with the wrong digest"
    );
    let err = String::from_utf8_lossy(&out.stderr).to_lowercase();
    assert!(err.contains("digest did not match"), "{err}");
}

fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data)
        .read_to_end(&mut out)
        .expect("gunzip");
    out
}

/// (name, link target) of every entry, as raw as the archive has them.
fn tar_names(tar: &[u8]) -> Vec<(String, Option<String>)> {
    let mut a = tar::Archive::new(tar);
    a.entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let name = String::from_utf8_lossy(&e.path_bytes()).into_owned();
            let link = e
                .link_name_bytes()
                .map(|l| String::from_utf8_lossy(&l).into_owned());
            (name, link)
        })
        .collect()
}

#[test]
fn fixture_images_are_reproducible() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let ca = catalogue_in(a.path());
    let cb = catalogue_in(b.path());
    for (x, y) in ca.fixtures.iter().zip(&cb.fixtures) {
        assert_eq!(
            x.root, y.root,
            "{} must build to the same digest every time",
            x.name
        );
    }
    assert_eq!(ca.fixtures.len(), catalogue::ALL.len());
    // The index carries both platforms, and the OCI one an attestation entry.
    let idx: serde_json::Value = serde_json::from_slice(&image::read_blob(
        a.path(),
        &ca.get(catalogue::MULTIARCH).root.digest,
    ))
    .unwrap();
    let platforms: Vec<String> = idx["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            format!(
                "{}/{}",
                m["platform"]["os"].as_str().unwrap(),
                m["platform"]["architecture"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(platforms, ["linux/amd64", "linux/arm64", "unknown/unknown"]);
    let _ = registry::ACCEPT;
}
