//! The standard fixture images, built into one OCI layout, each tagged and each with what its
//! rootfs must hold once unpacked for linux/amd64.

use std::path::Path;

use crate::busybox;
use crate::expect::Expect;
use crate::image::{
    self, BuiltImage, BuiltLayer, Compression, Descriptor, Entry, Layout, Platform, Style,
};

/// One tagged fixture image.
#[derive(Debug, Clone)]
pub struct Fixture {
    /// Its tag in the layout (and the repository name used when pushed).
    pub name: &'static str,
    /// What the tag points at: a manifest, or an index / manifest list.
    pub root: Descriptor,
    /// The linux/amd64 image (the root itself when it is a manifest).
    pub amd64: BuiltImage,
    /// What the unpacked linux/amd64 rootfs must hold.
    pub expect: Vec<Expect>,
}

/// All standard fixtures, in one layout.
#[derive(Debug)]
pub struct Catalogue {
    pub fixtures: Vec<Fixture>,
}

impl Catalogue {
    pub fn get(&self, name: &str) -> &Fixture {
        self.fixtures
            .iter()
            .find(|f| f.name == name)
            .unwrap_or_else(|| panic!("no fixture image named {name}"))
    }
}

/// Names of the standard fixtures.
pub const SINGLE: &str = "single";
pub const MULTI: &str = "multi";
pub const MULTI_DOCKER: &str = "multi-docker";
pub const MULTIARCH: &str = "multiarch";
pub const MULTIARCH_DOCKER: &str = "multiarch-docker";
pub const ALL: [&str; 5] = [SINGLE, MULTI, MULTI_DOCKER, MULTIARCH, MULTIARCH_DOCKER];

/// Builds every standard fixture into an OCI layout at `dir`.
pub fn build(dir: &Path) -> Catalogue {
    let mut layout = Layout::create(dir);
    let base = image::entries_from_dir(busybox::rootfs());
    let mut fixtures = Vec::new();

    // single: the busybox rootfs in one gzip layer, OCI media types.
    let img = one_layer_image(&mut layout, &base, SINGLE, |_| {});
    fixtures.push(Fixture {
        name: SINGLE,
        root: img.manifest.clone(),
        amd64: img,
        expect: busybox_expect(),
    });

    // multi / multi-docker: three layers exercising whiteouts, opaque dirs, links, modes,
    // ownership, xattrs and type changes; gzip + zstd + uncompressed (gzip + gzip + none for Docker).
    for (name, style, second) in [
        (MULTI, Style::Oci, Compression::Zstd),
        (MULTI_DOCKER, Style::Docker, Compression::Gzip),
    ] {
        let layers = multi_layers(&base, style, second);
        let img = image::image(&layout, style, &Platform::linux_amd64(), layers, |_| {});
        layout.tag(&img.manifest, name);
        let mut expect = busybox_expect();
        expect.extend(multi_expect());
        fixtures.push(Fixture {
            name,
            root: img.manifest.clone(),
            amd64: img,
            expect,
        });
    }

    // multiarch / multiarch-docker: an index with linux/amd64, linux/arm64/v8 and (OCI only) an
    // attestation manifest for unknown/unknown, as BuildKit writes them.
    for (name, style) in [(MULTIARCH, Style::Oci), (MULTIARCH_DOCKER, Style::Docker)] {
        let arch_layer = |arch: &str| {
            image::layer(
                &[
                    Entry::dir("etc/"),
                    Entry::file("etc/tinyo-arch", format!("{arch}\n").as_bytes()),
                ],
                Compression::Gzip,
                style,
            )
        };
        let base_layer = image::layer(&base, Compression::Gzip, style);
        let amd64 = image::image(
            &layout,
            style,
            &Platform::linux_amd64(),
            vec![base_layer.clone(), arch_layer("amd64")],
            |_| {},
        );
        let arm = Platform::new("linux", "arm64", Some("v8"));
        let arm64 = image::image(&layout, style, &arm, vec![arch_layer("arm64")], |_| {});
        let mut entries = vec![
            (amd64.manifest.clone(), amd64.platform.clone()),
            (arm64.manifest.clone(), arm),
        ];
        if style == Style::Oci {
            let att = image::layer(
                &[Entry::file("attestation.json", b"{}")],
                Compression::None,
                style,
            );
            let unknown = Platform::new("unknown", "unknown", None);
            let att_img = image::image(&layout, style, &unknown, vec![att], |_| {});
            entries.push((att_img.manifest, unknown));
        }
        let root = image::index(&layout, style, &entries);
        layout.tag(&root, name);
        let mut expect = busybox_expect();
        expect.push(Expect::file("etc/tinyo-arch", b"amd64\n", 0o644));
        fixtures.push(Fixture {
            name,
            root,
            amd64,
            expect,
        });
    }
    Catalogue { fixtures }
}

fn busybox_expect() -> Vec<Expect> {
    vec![
        Expect::file("etc/passwd", busybox::PASSWD.as_bytes(), 0o644),
        Expect::file("etc/group", busybox::GROUP.as_bytes(), 0o644),
        Expect::symlink("bin/sh", "/bin/busybox"),
        Expect::dir_mode("tmp", 0o1777),
        Expect::Owner {
            path: "home/tinyo".into(),
            uid: 1000,
            gid: 1000,
        },
    ]
}

fn multi_layers(base: &[Entry], style: Style, second: Compression) -> Vec<BuiltLayer> {
    let mut l1 = base.to_vec();
    l1.extend([
        Entry::dir("data/"),
        Entry::file("data/keep", b"keep\n"),
        Entry::file("data/removed", b"removed\n"),
        Entry::file("data/was-file", b"was a file\n"),
        Entry::file("data/file-to-dir", b"was a file\n"),
        Entry::dir("data/dir-to-file/"),
        Entry::file("data/dir-to-file/child", b"child\n"),
        Entry::file_mode("data/owned", b"owned\n", 0o640, 1000, 1000),
        Entry::dir("opaque/"),
        Entry::file("opaque/old1", b"old1\n"),
        Entry::file("opaque/old2", b"old2\n"),
        Entry::dir("opaque/sub/"),
        Entry::file("opaque/sub/deep", b"deep\n"),
    ]);
    let l2 = vec![
        Entry::dir("data/"),
        Entry::whiteout("data/removed"),
        Entry::dir("opaque/"),
        Entry::opaque("opaque"),
        Entry::file("opaque/new", b"new\n"),
        Entry::file("data/linked", b"linked\n"),
        Entry::hardlink("data/hardlink", "data/linked"),
        Entry::symlink("data/symlink", "keep"),
        Entry::Dir {
            path: "data/sticky/".into(),
            mode: 0o1777,
            uid: 0,
            gid: 0,
        },
        // Parents deliberately missing: usr/local/bin/ must be created by the unpacker.
        Entry::file_mode(
            "usr/local/bin/suid",
            b"#!/bin/sh\necho suid\n",
            0o4755,
            0,
            0,
        ),
        Entry::file_xattr("data/xattr", b"xattr\n", "user.tinyo", b"hello"),
        // A name longer than the 100 bytes a ustar header holds: carried in a PAX record.
        Entry::dir("data/long/"),
        Entry::file(&long_name(), b"long\n"),
    ];
    let l3 = vec![
        Entry::file("data/dir-to-file", b"now a file\n"),
        Entry::dir("data/file-to-dir/"),
        Entry::file("data/file-to-dir/inside", b"inside\n"),
        Entry::symlink("data/was-file", "keep"),
    ];
    vec![
        image::layer(&l1, Compression::Gzip, style),
        image::layer(&l2, second, style),
        image::layer(&l3, Compression::None, style),
    ]
}

/// A path of more than 100 bytes.
pub fn long_name() -> String {
    format!("data/long/{}", "n".repeat(150))
}

fn multi_expect() -> Vec<Expect> {
    vec![
        Expect::file(&long_name(), b"long\n", 0o644),
        Expect::Mtime {
            path: "data/keep".into(),
            secs: image::MTIME as i64,
        },
        Expect::Mtime {
            path: "usr/local/bin/suid".into(),
            secs: image::MTIME as i64,
        },
        Expect::file("data/keep", b"keep\n", 0o644),
        Expect::absent("data/removed"),
        Expect::absent("data/.wh.removed"),
        Expect::absent("opaque/old1"),
        Expect::absent("opaque/old2"),
        Expect::absent("opaque/sub"),
        Expect::absent("opaque/.wh..wh..opq"),
        Expect::file("opaque/new", b"new\n", 0o644),
        Expect::file("data/linked", b"linked\n", 0o644),
        Expect::SameInode {
            a: "data/hardlink".into(),
            b: "data/linked".into(),
        },
        Expect::symlink("data/symlink", "keep"),
        Expect::dir_mode("data/sticky", 0o1777),
        Expect::file("usr/local/bin/suid", b"#!/bin/sh\necho suid\n", 0o4755),
        Expect::Xattr {
            path: "data/xattr".into(),
            key: "user.tinyo".into(),
            value: b"hello".to_vec(),
        },
        Expect::file("data/dir-to-file", b"now a file\n", 0o644),
        Expect::file("data/file-to-dir/inside", b"inside\n", 0o644),
        Expect::symlink("data/was-file", "keep"),
        Expect::file("data/owned", b"owned\n", 0o640),
        Expect::Owner {
            path: "data/owned".into(),
            uid: 1000,
            gid: 1000,
        },
    ]
}

/// The tag [`pause`] gives its image.
pub const PAUSE: &str = "pause";

/// A pause image for CRI sandboxes at `dir` (tagged [`PAUSE`]): the busybox rootfs whose
/// command sleeps for 68 years. It never exits on its own; containerd stops sandboxes with
/// SIGKILL.
pub fn pause(dir: &Path) {
    busybox_image(&mut Layout::create(dir), PAUSE, |c| {
        c["config"]["Cmd"] = serde_json::json!(["sleep", "2147483647"])
    });
}

/// The busybox rootfs as one gzip layer, OCI media types, linux/amd64, its config shaped by
/// `config`, put in `layout` and tagged `tag`.
pub fn busybox_image(
    layout: &mut Layout,
    tag: &str,
    config: impl FnOnce(&mut serde_json::Value),
) -> BuiltImage {
    let base = image::entries_from_dir(busybox::rootfs());
    one_layer_image(layout, &base, tag, config)
}

/// `entries` as one gzip layer, OCI media types, linux/amd64, the config shaped by `config`,
/// put in `layout` and tagged `tag`.
fn one_layer_image(
    layout: &mut Layout,
    entries: &[Entry],
    tag: &str,
    config: impl FnOnce(&mut serde_json::Value),
) -> BuiltImage {
    let l = image::layer(entries, Compression::Gzip, Style::Oci);
    let img = image::image(
        layout,
        Style::Oci,
        &Platform::linux_amd64(),
        vec![l],
        config,
    );
    layout.tag(&img.manifest, tag);
    img
}
