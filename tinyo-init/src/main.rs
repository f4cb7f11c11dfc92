//! `tinyo-init`: see the library crate. Argument handling is by hand: no parser crate, to stay
//! small.

use std::io::Write;

fn main() {
    let arg = std::env::args_os().nth(1);
    let mut out = std::io::stdout();
    match arg.as_ref().and_then(|a| a.to_str()) {
        Some("--version") => {
            let _ = writeln!(out, "tinyo-init {}", tinyo_init::VERSION);
        }
        Some("-h") | Some("--help") => {
            let _ = writeln!(
                out,
                "tinyo-init {}: a PID 1 for containers (early: running a program is not \
                 implemented yet)\n\nUsage: tinyo-init [-h|--help] [--version]",
                tinyo_init::VERSION
            );
        }
        _ => {
            eprintln!("tinyo-init: running a program is not implemented yet; see -h");
            std::process::exit(127);
        }
    }
}
