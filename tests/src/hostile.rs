//! Hostile images: each attacks a puller or an unpacker in one specific way. A correct tinyo
//! refuses every one with a clear error and leaves nothing behind; none may ever touch the host.
//!
//! Escapes aim only at [`CANARY_DIR`] names, never at real host files, so even a broken
//! unpacker under test cannot harm the machine; tests check the canaries afterwards.

use std::path::Path;

use crate::image::{self, Compression, Descriptor, Entry, Layout, Platform, Style};

/// Where escape attempts aim on the host.
pub const CANARY_DIR: &str = "/tmp";
/// Host file an absolute-path entry tries to create.
pub const CANARY_ABSOLUTE: &str = "/tmp/tinyo-hostile-absolute";
/// Host files a symlink escape tries to create through `escape -> /tmp` and a relative link.
pub const CANARY_SYMLINK_ABS: &str = "/tmp/tinyo-hostile-symlink-abs";
pub const CANARY_SYMLINK_REL: &str = "/tmp/tinyo-hostile-symlink-rel";
/// Host file a hardlink escape links to and then writes through. Tests create it first with
/// [`CANARY_HARDLINK_CONTENT`] and check that it is unchanged and has one link afterwards.
pub const CANARY_HARDLINK_TARGET: &str = "/tmp/tinyo-hostile-hardlink-target";
pub const CANARY_HARDLINK_CONTENT: &[u8] = b"untouched\n";
/// Names a `..` entry tries to create next to (outside) the rootfs directory.
pub const TRAVERSAL_NAMES: [&str; 2] = ["tinyo-hostile-traversal", "tinyo-hostile-traversal2"];

/// How an image attacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attack {
    /// A layer blob whose bytes do not match its digest (same length).
    BadDigest,
    /// A layer blob longer than its descriptor's size (trailing bytes appended).
    Oversized,
    /// A gzip layer cut in half; its digest and size match the cut bytes.
    TruncatedGzip,
    /// A config whose `rootfs.diff_ids` does not match the uncompressed layer.
    WrongDiffId,
    /// A manifest naming a layer blob that is not stored anywhere.
    MissingBlob,
    /// Entries named `../x` and `a/../../x`.
    Traversal,
    /// An entry with an absolute name aimed at [`CANARY_ABSOLUTE`].
    AbsolutePath,
    /// Symlinks out of the rootfs (absolute and relative) planted by one layer, then files
    /// written through them by the next.
    SymlinkEscape,
    /// Hardlinks to a host file (absolute and relative), then a file written through them.
    HardlinkEscape,
}

/// One hostile image in the layout.
#[derive(Debug, Clone)]
pub struct Hostile {
    pub name: &'static str,
    pub attack: Attack,
    pub manifest: Descriptor,
    /// The attacking layer's descriptor as the manifest states it.
    pub layer: Descriptor,
}

/// Builds every hostile image into an OCI layout at `dir`, one tag each.
pub fn build(dir: &Path) -> Vec<Hostile> {
    let mut layout = Layout::create(dir);
    let amd64 = Platform::linux_amd64();
    let benign = || {
        vec![
            Entry::dir("etc/"),
            Entry::file("etc/hostile", b"hostile fixture\n"),
        ]
    };
    let mut out = Vec::new();
    let mut add = |layout: &mut Layout,
                   name: &'static str,
                   attack: Attack,
                   img: image::BuiltImage,
                   layer: Descriptor| {
        layout.tag(&img.manifest, name);
        out.push(Hostile {
            name,
            attack,
            manifest: img.manifest,
            layer,
        });
    };

    // bad-digest: flip one byte of the stored blob.
    let l = image::layer(&benign(), Compression::Gzip, Style::Oci);
    let img = image::image(&layout, Style::Oci, &amd64, vec![l.clone()], |_| {});
    let mut tampered = l.blob.clone();
    let mid = tampered.len() / 2;
    tampered[mid] ^= 0xff;
    layout.put_as(&l.desc, &tampered);
    add(&mut layout, "bad-digest", Attack::BadDigest, img, l.desc);

    // oversized: the stored blob has trailing bytes beyond the declared size.
    let l = image::layer(
        &[Entry::file("oversized", b"oversized\n")],
        Compression::Gzip,
        Style::Oci,
    );
    let img = image::image(&layout, Style::Oci, &amd64, vec![l.clone()], |_| {});
    let mut longer = l.blob.clone();
    longer.extend_from_slice(&[0u8; 4096]);
    layout.put_as(&l.desc, &longer);
    add(&mut layout, "oversized", Attack::Oversized, img, l.desc);

    // truncated-gzip: a valid blob (digest of the cut bytes) that does not inflate.
    let mut big = benign();
    big.push(Entry::file("etc/filler", &vec![b'x'; 64 * 1024]));
    let full = image::layer(&big, Compression::Gzip, Style::Oci);
    let cut = full.blob[..full.blob.len() / 2].to_vec();
    let l = image::BuiltLayer {
        desc: Descriptor {
            media_type: full.desc.media_type.clone(),
            digest: crate::digest_of(&cut),
            size: cut.len() as u64,
        },
        diff_id: full.diff_id.clone(),
        tar: full.tar.clone(),
        blob: cut,
    };
    let img = image::image(&layout, Style::Oci, &amd64, vec![l.clone()], |_| {});
    add(
        &mut layout,
        "truncated-gzip",
        Attack::TruncatedGzip,
        img,
        l.desc,
    );

    // wrong-diffid: the config lies about the uncompressed digest.
    let l = image::layer(
        &[Entry::file("diffid", b"diffid\n")],
        Compression::Gzip,
        Style::Oci,
    );
    let wrong = crate::digest_of(b"not this layer");
    let img = image::image(&layout, Style::Oci, &amd64, vec![l.clone()], |c| {
        c["rootfs"]["diff_ids"] = serde_json::json!([wrong]);
    });
    add(
        &mut layout,
        "wrong-diffid",
        Attack::WrongDiffId,
        img,
        l.desc,
    );

    // missing-blob: build normally, then delete the layer blob.
    let l = image::layer(
        &[Entry::file("missing", b"never stored\n")],
        Compression::Gzip,
        Style::Oci,
    );
    let img = image::image(&layout, Style::Oci, &amd64, vec![l.clone()], |_| {});
    std::fs::remove_file(layout.blob_path(&l.desc.digest)).expect("remove blob");
    add(
        &mut layout,
        "missing-blob",
        Attack::MissingBlob,
        img,
        l.desc,
    );

    // traversal
    let l = image::layer(
        &[
            Entry::file(&format!("../{}", TRAVERSAL_NAMES[0]), b"escaped\n"),
            Entry::dir("a/"),
            Entry::file(&format!("a/../../{}", TRAVERSAL_NAMES[1]), b"escaped\n"),
        ],
        Compression::Gzip,
        Style::Oci,
    );
    let img = image::image(&layout, Style::Oci, &amd64, vec![l.clone()], |_| {});
    add(&mut layout, "traversal", Attack::Traversal, img, l.desc);

    // absolute
    let l = image::layer(
        &[Entry::file(CANARY_ABSOLUTE, b"escaped\n")],
        Compression::Gzip,
        Style::Oci,
    );
    let img = image::image(&layout, Style::Oci, &amd64, vec![l.clone()], |_| {});
    add(&mut layout, "absolute", Attack::AbsolutePath, img, l.desc);

    // symlink-escape: links in layer 1, writes through them in layer 2.
    let dots = "../../../../../../../../../../../..";
    let links = image::layer(
        &[
            Entry::symlink("escape", CANARY_DIR),
            Entry::symlink("rel", &format!("{dots}{CANARY_DIR}")),
        ],
        Compression::Gzip,
        Style::Oci,
    );
    let name_of = |p: &str| p.rsplit('/').next().unwrap_or(p).to_string();
    let writes = image::layer(
        &[
            Entry::file(
                &format!("escape/{}", name_of(CANARY_SYMLINK_ABS)),
                b"escaped\n",
            ),
            Entry::file(
                &format!("rel/{}", name_of(CANARY_SYMLINK_REL)),
                b"escaped\n",
            ),
        ],
        Compression::Gzip,
        Style::Oci,
    );
    let img = image::image(
        &layout,
        Style::Oci,
        &amd64,
        vec![links, writes.clone()],
        |_| {},
    );
    add(
        &mut layout,
        "symlink-escape",
        Attack::SymlinkEscape,
        img,
        writes.desc,
    );

    // hardlink-escape: links to a host file, then content written to the link's name.
    let l = image::layer(
        &[
            Entry::hardlink("hl-abs", CANARY_HARDLINK_TARGET),
            Entry::hardlink("hl-rel", &format!("{dots}{CANARY_HARDLINK_TARGET}")),
            Entry::file("hl-abs", b"pwned\n"),
            Entry::file("hl-rel", b"pwned\n"),
        ],
        Compression::Gzip,
        Style::Oci,
    );
    let img = image::image(&layout, Style::Oci, &amd64, vec![l.clone()], |_| {});
    add(
        &mut layout,
        "hardlink-escape",
        Attack::HardlinkEscape,
        img,
        l.desc,
    );

    out
}
