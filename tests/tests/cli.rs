//! The binaries' command lines: they start, report their versions, offer only what works, and
//! fail cleanly on bad input. Run against the debug build, and by `cargo xtask test` once more
//! against the static release (`TINYO_BIN_DIR=dist/bin`).

use std::process::{Command, Output};

use tinyo_tests::bins::bin;

fn run(name: &str, args: &[&str]) -> Output {
    Command::new(bin(name))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("start {name}: {e}"))
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn every_binary_reports_its_version() {
    let version = env!("CARGO_PKG_VERSION");
    for name in ["tinyo", "tinyo-shim", "tinyo-pull", "tinyo-init"] {
        let o = run(name, &["--version"]);
        assert!(o.status.success(), "{name} --version: {o:?}");
        assert!(
            stdout(&o).contains(version),
            "{name} --version printed {:?}",
            stdout(&o)
        );
    }
}

#[test]
fn tinyo_version_names_the_runtime_spec() {
    let o = run("tinyo", &["--version"]);
    assert!(stdout(&o).contains("spec: 1.2.0"), "{}", stdout(&o));
}

#[test]
fn help_offers_only_what_is_implemented() {
    let o = run("tinyo", &["--help"]);
    assert!(o.status.success());
    let help = stdout(&o);
    for have in [
        "spec", "create", "start", "state", "kill", "delete", "run", "exec", "pause", "resume",
        "update", "events",
    ] {
        assert!(
            help.contains(&format!("  {have} ")),
            "tinyo --help lacks {have}:\n{help}"
        );
    }
    for missing in ["checkpoint", "restore"] {
        assert!(
            !help.contains(&format!("  {missing} ")),
            "tinyo --help offers {missing}:\n{help}"
        );
    }
    let o = run("tinyo", &["checkpoint", "x"]);
    assert!(!o.status.success(), "an unimplemented command must fail");
    let o = run("tinyo-shim", &["--help"]);
    assert!(o.status.success(), "tinyo-shim --help");
    let help = stdout(&o);
    for have in [
        "run", "ps", "logs", "exec", "stop", "kill", "rm", "inspect", "images", "rmi",
    ] {
        assert!(
            help.contains(&format!("  {have} ")),
            "tinyo-shim --help lacks {have}:\n{help}"
        );
    }
    assert!(
        !help.contains("supervise"),
        "the internal supervisor is hidden:\n{help}"
    );
    let o = run("tinyo-shim", &[]);
    assert!(
        !o.status.success(),
        "tinyo-shim without a command is a usage error"
    );
}

#[test]
fn tinyo_spec_writes_a_loadable_config_and_never_clobbers() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let o = run("tinyo", &["spec", "--bundle", d]);
    assert!(o.status.success(), "{o:?}");
    std::fs::create_dir(dir.path().join("rootfs")).unwrap();
    let bundle = tinyo_core::bundle::Bundle::load(dir.path()).expect("tinyo spec output loads");
    assert_eq!(bundle.rootfs(), dir.path().join("rootfs"));

    std::fs::write(dir.path().join("config.json"), "{\"mine\": true}").unwrap();
    let o = run("tinyo", &["spec", "--bundle", d]);
    assert!(!o.status.success(), "spec must refuse to overwrite");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("config.json"), "error names the file: {err}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("config.json")).unwrap(),
        "{\"mine\": true}"
    );

    let o = run("tinyo", &["spec", "--bundle", "/nonexistent/dir"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("/nonexistent/dir"));
}
