//! The layer applier against the shared fixtures: every standard image unpacks to exactly what
//! its expectations say, and every hostile layer is refused or clamped inside the rootfs —
//! with nothing outside the rootfs touched.

use std::fs;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use tinyo_pull::digest::Digest;
use tinyo_pull::unpack::{self, sys, Compression, Layer, LayerError};
use tinyo_tests::catalogue;
use tinyo_tests::expect::assert_rootfs;
use tinyo_tests::hostile::{self, Attack};
use tinyo_tests::image::{self, Descriptor};

/// An error and all its sources, as the binaries print them.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s += &format!(": {c}");
        cur = c.source();
    }
    s
}

/// The layers of the image manifest `manifest` in `layout`, with their diff_ids.
fn layers_of(layout: &Path, manifest: &Descriptor) -> Vec<Layer> {
    let m: serde_json::Value =
        serde_json::from_slice(&image::read_blob(layout, &manifest.digest)).unwrap();
    let config: serde_json::Value = serde_json::from_slice(&image::read_blob(
        layout,
        m["config"]["digest"].as_str().unwrap(),
    ))
    .unwrap();
    m["layers"]
        .as_array()
        .unwrap()
        .iter()
        .zip(config["rootfs"]["diff_ids"].as_array().unwrap())
        .map(|(l, d)| Layer {
            digest: Digest::parse(l["digest"].as_str().unwrap()).unwrap(),
            size: l["size"].as_u64().unwrap(),
            compression: Compression::from_media_type(l["mediaType"].as_str().unwrap()).unwrap(),
            diff_id: Digest::parse(d.as_str().unwrap()).unwrap(),
        })
        .collect()
}

/// Applies every layer of `manifest` to `rootfs` in order; the first error is returned.
fn unpack_image(
    layout: &Path,
    manifest: &Descriptor,
    rootfs: &Path,
) -> Result<Vec<unpack::Stats>, LayerError> {
    fs::create_dir_all(rootfs).unwrap();
    let root = sys::open_root(rootfs).unwrap();
    layers_of(layout, manifest)
        .iter()
        .map(|l| {
            let blob = fs::File::open(image::blob_path(layout, l.digest.as_str())).unwrap();
            unpack::apply_layer(root.as_fd(), l, std::io::BufReader::new(blob))
        })
        .collect()
}

#[test]
fn standard_images_unpack_to_their_expectations() {
    tinyo_tests::host::require_root();
    let work = tempfile::tempdir().unwrap();
    let cat = catalogue::build(&work.path().join("layout"));
    for f in &cat.fixtures {
        let rootfs = work.path().join(format!("rootfs-{}", f.name));
        let stats = unpack_image(&work.path().join("layout"), &f.amd64.manifest, &rootfs)
            .unwrap_or_else(|e| panic!("{}: {e}", f.name));
        assert_rootfs(&rootfs, &f.expect);
        let total: u64 = stats.iter().map(|s| s.entries).sum();
        assert!(total > 200, "{}: {total} entries", f.name);
        if f.name.starts_with("multi") && !f.name.starts_with("multiarch") {
            assert_eq!(
                stats[1].whiteouts, 2,
                "{}: one whiteout and one opaque marker",
                f.name
            );
        }
    }
}

/// Runs one hostile image with canaries in place and returns the unpack result.
fn attack(
    h: &hostile::Hostile,
    layout: &Path,
    work: &Path,
) -> Result<Vec<unpack::Stats>, LayerError> {
    let base = work.join(h.name);
    let rootfs = base.join("rootfs");
    fs::create_dir_all(&rootfs).unwrap();
    unpack_image(layout, &h.manifest, &rootfs)
}

#[test]
fn hostile_layers_are_refused_or_clamped_inside_the_rootfs() {
    tinyo_tests::host::require_root();
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("layout");
    let all = hostile::build(&layout);
    // Canaries: none of these host paths may appear, and the hardlink target must not change.
    let absent = [
        hostile::CANARY_ABSOLUTE,
        hostile::CANARY_SYMLINK_ABS,
        hostile::CANARY_SYMLINK_REL,
    ];
    for a in absent {
        let _ = fs::remove_file(a);
    }
    fs::write(
        hostile::CANARY_HARDLINK_TARGET,
        hostile::CANARY_HARDLINK_CONTENT,
    )
    .unwrap();
    let result = std::panic::catch_unwind(|| {
        for h in &all {
            if h.attack == Attack::MissingBlob {
                continue; // a fetch failure, not an unpack one
            }
            let r = attack(h, &layout, work.path());
            let rootfs = work.path().join(h.name).join("rootfs");
            let msg = r.as_ref().err().map(|e| chain(e)).unwrap_or_default();
            match h.attack {
                Attack::BadDigest => assert!(
                    matches!(
                        r,
                        Err(LayerError::Blob { .. }) | Err(LayerError::Stream { .. })
                    ),
                    "{}: {msg}",
                    h.name
                ),
                Attack::Oversized => assert!(
                    msg.contains("longer than") || msg.contains("more than"),
                    "{}: {r:?}",
                    h.name
                ),
                Attack::TruncatedGzip => assert!(
                    matches!(r, Err(LayerError::Stream { .. })),
                    "{}: {r:?}",
                    h.name
                ),
                Attack::WrongDiffId => assert!(
                    matches!(r, Err(LayerError::DiffId { .. })),
                    "{}: {r:?}",
                    h.name
                ),
                Attack::MissingBlob => unreachable!(),
                Attack::Traversal => {
                    assert!(
                        matches!(r, Err(LayerError::Entry { .. })),
                        "{}: {r:?}",
                        h.name
                    );
                    assert!(
                        msg.contains("tinyo-hostile-traversal") && msg.contains(".."),
                        "{msg}"
                    );
                    for n in hostile::TRAVERSAL_NAMES {
                        assert!(
                            !work.path().join(h.name).join(n).exists(),
                            "{n} escaped the rootfs"
                        );
                    }
                }
                Attack::AbsolutePath => {
                    r.unwrap_or_else(|e| panic!("absolute names are clamped, not refused: {e}"));
                    assert_eq!(
                        fs::read(rootfs.join("tmp/tinyo-hostile-absolute")).unwrap(),
                        b"escaped\n"
                    );
                }
                Attack::SymlinkEscape => {
                    // The links resolve inside the rootfs, where /tmp does not exist: refused.
                    assert!(
                        matches!(r, Err(LayerError::Entry { .. })),
                        "{}: {r:?}",
                        h.name
                    );
                    assert!(
                        msg.contains("escape/tinyo-hostile-symlink-abs")
                            && msg.contains("dangling symlink"),
                        "{msg}"
                    );
                }
                Attack::HardlinkEscape => {
                    assert!(
                        matches!(r, Err(LayerError::Entry { .. })),
                        "{}: {r:?}",
                        h.name
                    );
                    assert!(
                        msg.contains("hl-abs") && msg.contains("does not exist in the rootfs"),
                        "{msg}"
                    );
                }
            }
        }
    });
    let canary = fs::read(hostile::CANARY_HARDLINK_TARGET);
    let links = fs::metadata(hostile::CANARY_HARDLINK_TARGET).map(|m| m.nlink());
    let _ = fs::remove_file(hostile::CANARY_HARDLINK_TARGET);
    let escaped: Vec<&str> = absent
        .into_iter()
        .filter(|a| Path::new(a).exists())
        .collect();
    for a in &escaped {
        let _ = fs::remove_file(a);
    }
    if let Err(p) = result {
        std::panic::resume_unwind(p);
    }
    assert!(
        escaped.is_empty(),
        "hostile layers wrote on the host: {escaped:?}"
    );
    assert_eq!(
        canary.unwrap(),
        hostile::CANARY_HARDLINK_CONTENT,
        "host file changed through a hardlink"
    );
    assert_eq!(links.unwrap(), 1, "host file gained a hardlink");
}

#[test]
fn hardlink_to_a_file_of_an_earlier_layer_and_a_relative_escape() {
    use tinyo_tests::image::{Compression as C, Entry, Layout, Platform, Style};
    tinyo_tests::host::require_root();
    let work = tempfile::tempdir().unwrap();
    let layout = Layout::create(&work.path().join("layout"));
    let l1 = image::layer(&[Entry::file("data", b"lower\n")], C::Gzip, Style::Oci);
    let l2 = image::layer(&[Entry::hardlink("again", "/data")], C::Zstd, Style::Oci);
    let img = image::image(
        &layout,
        Style::Oci,
        &Platform::linux_amd64(),
        vec![l1, l2],
        |_| {},
    );
    let rootfs = work.path().join("rootfs");
    unpack_image(layout.dir(), &img.manifest, &rootfs).unwrap();
    assert_eq!(
        fs::metadata(rootfs.join("again")).unwrap().ino(),
        fs::metadata(rootfs.join("data")).unwrap().ino()
    );

    let l = image::layer(
        &[Entry::hardlink("x", "../../etc/passwd")],
        C::None,
        Style::Oci,
    );
    let img = image::image(
        &layout,
        Style::Oci,
        &Platform::linux_amd64(),
        vec![l],
        |_| {},
    );
    let err = unpack_image(layout.dir(), &img.manifest, &work.path().join("rootfs2"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("..") && err.contains("\"x\""), "{err}");
}

#[test]
fn symlinks_planted_by_a_lower_layer_resolve_inside_the_rootfs() {
    use tinyo_tests::image::{Compression as C, Entry, Layout, Platform, Style};
    tinyo_tests::host::require_root();
    let work = tempfile::tempdir().unwrap();
    let layout = Layout::create(&work.path().join("layout"));
    let name = "tinyo-unpack-clamp-test";
    let _ = fs::remove_file(format!("/tmp/{name}"));
    let l1 = image::layer(
        &[
            Entry::dir("tmp/"),
            Entry::symlink("abs", "/tmp"),
            Entry::symlink("rel", "../../../../../../tmp"),
        ],
        C::Gzip,
        Style::Oci,
    );
    let l2 = image::layer(
        &[
            Entry::file(&format!("abs/{name}"), b"abs\n"),
            Entry::file(&format!("rel/{name}.rel"), b"rel\n"),
            Entry::file(&format!("/abs/{name}.2"), b"2\n"),
        ],
        C::Gzip,
        Style::Oci,
    );
    let img = image::image(
        &layout,
        Style::Oci,
        &Platform::linux_amd64(),
        vec![l1, l2],
        |_| {},
    );
    let rootfs = work.path().join("rootfs");
    let r = unpack_image(layout.dir(), &img.manifest, &rootfs);
    let leaked: Vec<String> = [name.to_string(), format!("{name}.rel"), format!("{name}.2")]
        .into_iter()
        .filter(|n| Path::new("/tmp").join(n).exists())
        .collect();
    for n in &leaked {
        let _ = fs::remove_file(Path::new("/tmp").join(n));
    }
    assert!(
        leaked.is_empty(),
        "wrote through a symlink onto the host: {leaked:?}"
    );
    r.unwrap();
    assert_eq!(fs::read(rootfs.join("tmp").join(name)).unwrap(), b"abs\n");
    assert_eq!(
        fs::read(rootfs.join("tmp").join(format!("{name}.rel"))).unwrap(),
        b"rel\n"
    );
    assert_eq!(
        fs::read(rootfs.join("tmp").join(format!("{name}.2"))).unwrap(),
        b"2\n"
    );
    assert!(fs::symlink_metadata(rootfs.join("abs"))
        .unwrap()
        .file_type()
        .is_symlink());
}

/// Applies one hand-made gzip blob over a tar of a single file; returns the result.
fn apply_gzip_blob(blob: &[u8], tar: &[u8]) -> Result<unpack::Stats, LayerError> {
    let work = tempfile::tempdir().unwrap();
    let root = sys::open_root(work.path()).unwrap();
    let layer = Layer {
        digest: Digest::of(blob),
        size: blob.len() as u64,
        compression: Compression::Gzip,
        diff_id: Digest::of(tar),
    };
    unpack::apply_layer(root.as_fd(), &layer, blob)
}

#[test]
fn gzip_members_are_joined_and_trailing_garbage_is_refused() {
    use tinyo_tests::image::{compress, tar_bytes, Compression as C, Entry};
    let tar = tar_bytes(&[Entry::file("a", &[b'a'; 10_000]), Entry::file("b", b"b\n")]);
    let one = compress(&tar, C::Gzip);
    apply_gzip_blob(&one, &tar).expect("a single member");
    // pigz and some builders write several members; they form one stream.
    let (x, y) = tar.split_at(tar.len() / 3);
    let mut multi = compress(x, C::Gzip);
    multi.extend(compress(y, C::Gzip));
    apply_gzip_blob(&multi, &tar).expect("two members");
    // Bytes after the last member are not a gzip stream: refused, even though the blob's own
    // digest and size match (the attacker controls both).
    let mut garbage = one.clone();
    garbage.extend_from_slice(b"this is not gzip");
    let err = apply_gzip_blob(&garbage, &tar).unwrap_err();
    assert!(matches!(err, LayerError::Stream { .. }), "{err:?}");
}

#[test]
fn file_capabilities_survive_ownership_and_mode() {
    use tinyo_tests::expect::{assert_rootfs, Expect};
    use tinyo_tests::image::{Compression as C, Entry, Layout, Platform, Style};
    tinyo_tests::host::require_root();
    // vfs_cap_data revision 2, effective, permitted = CAP_NET_BIND_SERVICE (bit 10).
    let cap: Vec<u8> = [0x0200_0001u32, 1 << 10, 0, 0, 0]
        .iter()
        .flat_map(|w| w.to_le_bytes())
        .collect();
    let work = tempfile::tempdir().unwrap();
    let layout = Layout::create(&work.path().join("layout"));
    let mut file = Entry::file_mode("bin/ping", b"\x7fELF", 0o755, 1000, 1000);
    if let Entry::File { xattrs, .. } = &mut file {
        xattrs.push(("security.capability".into(), cap.clone()));
    }
    let l = image::layer(&[Entry::dir("bin/"), file], C::Gzip, Style::Oci);
    let img = image::image(
        &layout,
        Style::Oci,
        &Platform::linux_amd64(),
        vec![l],
        |_| {},
    );
    let rootfs = work.path().join("rootfs");
    unpack_image(layout.dir(), &img.manifest, &rootfs).unwrap();
    // chown clears capabilities, so they must be set after it — and the mode after both.
    assert_rootfs(
        &rootfs,
        &[
            Expect::Xattr {
                path: "bin/ping".into(),
                key: "security.capability".into(),
                value: cap,
            },
            Expect::Owner {
                path: "bin/ping".into(),
                uid: 1000,
                gid: 1000,
            },
            Expect::file("bin/ping", b"\x7fELF", 0o755),
        ],
    );
}
