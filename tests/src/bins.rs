//! Where the binaries under test are.
//!
//! By default the workspace's debug build (`cargo build --workspace --bins`, which
//! `cargo xtask test` runs first). `TINYO_BIN_DIR` points the tests at another build, for
//! example `dist/bin` to test the static release.

use std::path::PathBuf;

/// The path of the workspace binary `name`, panicking with a hint if it was not built.
pub fn bin(name: &str) -> PathBuf {
    let dir = match std::env::var_os("TINYO_BIN_DIR") {
        Some(d) => PathBuf::from(d),
        None => std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| crate::workspace_root().join("target"))
            .join("debug"),
    };
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} is missing: build it first with `cargo build --workspace --bins` (cargo xtask test does)",
        path.display()
    );
    path
}
