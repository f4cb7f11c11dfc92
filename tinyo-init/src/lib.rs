//! tinyo-init: a tiny PID 1 for containers, tini-compatible.
//!
//! It spawns one program in its own process group (the terminal's foreground group when stdin
//! is a terminal), forwards every catchable signal it receives to it (or to its whole process
//! group with `-g`), reaps every zombie reparented to it, and exits with the program's exit
//! code, or 128+N when the program died of signal N.
//!
//! The design is race-free and allocation-free: every catchable signal is blocked before the
//! program is spawned and read back synchronously from a `signalfd`, so a signal that arrives at
//! any moment is either delivered to the program or still pending; `SIGCHLD` triggers a
//! `waitpid(-1, WNOHANG)` loop that reaps whole bursts at once. No threads, no heap.
//!
//! The crate is `no_std` (it needs only `libc`), so the `tinyo-init` binary links no Rust
//! runtime. Another program becomes a correct PID 1 with one call to [`run`] (or [`pause`]);
//! see there for what that call takes over.

#![cfg_attr(not(test), no_std)]

pub mod args;
mod out;
mod supervise;

use core::ffi::{c_char, c_int, CStr};

pub use args::{parse, Action, Env, UsageError};
pub use supervise::{pause, run, run_raw};

use out::Line;

// The libc crate links the C library only through std; the `no_std` binary needs it named here
// (statically for static builds such as musl's). With std it is a harmless repeat.
#[cfg_attr(
    target_feature = "crt-static",
    link(name = "c", kind = "static", modifiers = "-bundle")
)]
#[cfg_attr(not(target_feature = "crt-static"), link(name = "c"))]
unsafe extern "C" {}

// A static glibc (the `cargo xtask dist` fallback without the musl target) also needs the
// unwinder and helpers of libgcc, which std would otherwise bring.
#[cfg(all(target_env = "gnu", target_feature = "crt-static"))]
#[link(name = "gcc_eh", kind = "static", modifiers = "-bundle")]
#[link(name = "gcc", kind = "static", modifiers = "-bundle")]
#[link(name = "c", kind = "static", modifiers = "-bundle")]
unsafe extern "C" {}

/// The version the binary reports.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Exit code of a usage error (unknown option, no program, bad option value).
pub const EXIT_USAGE: c_int = 2;
/// Exit code when the program exists but cannot be executed, as a shell does.
pub const EXIT_NOT_EXECUTABLE: c_int = 126;
/// Exit code when the program is not found, as a shell does.
pub const EXIT_NOT_FOUND: c_int = 127;
/// Exit code when tinyo-init itself fails (cannot fork, no signalfd...).
pub const EXIT_FATAL: c_int = 1;

/// The set of exit codes (0 to 255) that `-e` maps to 0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExitRemap([u32; 8]);

/// How the supervisor behaves; the command-line options, one field each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// `-s`: become a child subreaper, so orphans are reaped even when not PID 1.
    pub subreaper: bool,
    /// `-p SIGNAL`: the signal to receive when the parent dies (0: none).
    pub parent_death_signal: c_int,
    /// `-g`: forward signals to the program's whole process group.
    pub kill_process_group: bool,
    /// `-v`: 0 fatal errors only, 1 warnings (the default), 2 information, 3 debugging.
    pub verbosity: u8,
    /// `-w`: warn when reaping a process other than the program.
    pub warn_on_reap: bool,
    /// `-e CODE`: exit codes reported as 0.
    pub remap: ExitRemap,
    /// `-P`: pause mode, no program.
    pub pause: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            subreaper: false,
            parent_death_signal: 0,
            kill_process_group: false,
            verbosity: 1,
            warn_on_reap: false,
            remap: ExitRemap::new(),
            pause: false,
        }
    }
}

const USAGE: &str = "\
Usage: tinyo-init [OPTIONS] [--] PROGRAM [ARGS...] | -P | --version
Run PROGRAM as the child of a minimal init: reap zombies, forward signals.

Options:
  --version    Show the version and exit.
  -h, --help   Show this help and exit.
  -s           Register as a child subreaper (also: TINI_SUBREAPER set).
  -p SIGNAL    Receive SIGNAL when the parent dies, e.g. -p SIGKILL.
  -v           More verbose output; repeat up to 3 times (also: TINI_VERBOSITY=N).
  -w           Warn when reaping processes other than PROGRAM.
  -g           Forward signals to PROGRAM's process group (also: TINI_KILL_PROCESS_GROUP set).
  -e CODE      Exit with 0 when PROGRAM exits with CODE (0-255); repeatable.
  -P           Pause mode: no PROGRAM; reap orphans until SIGINT or SIGTERM.
  -l           Show the license and exit.

Exit status: PROGRAM's, or 128+N if it died of signal N; 126 if PROGRAM cannot be executed,
127 if it is not found, 2 on a usage error, 1 if tinyo-init itself fails.
";

/// The arguments of a C `main`, as an iterator of byte strings.
#[derive(Debug)]
struct CArgs<'a> {
    argv: *const *const c_char,
    at: usize,
    end: usize,
    _life: core::marker::PhantomData<&'a CStr>,
}

impl<'a> Iterator for CArgs<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.at >= self.end {
            return None;
        }
        // SAFETY: `at < end <= argc`, so the element is inside the argv array (see `cli_main`).
        let slot = unsafe { self.argv.add(self.at) };
        // SAFETY: as above: `slot` points to an initialised element of argv.
        let p = unsafe { *slot };
        if p.is_null() {
            return None;
        }
        self.at += 1;
        // SAFETY: argv elements are NUL-terminated strings that outlive 'a (see `cli_main`).
        Some(unsafe { CStr::from_ptr(p) }.to_bytes())
    }
}

/// Looks up an environment variable.
fn getenv(name: &CStr) -> Option<&'static [u8]> {
    // SAFETY: `name` is NUL-terminated. The result points into the environment, which this
    // crate never modifies; callers promise (see `cli_main`) not to modify it either.
    let p = unsafe { libc::getenv(name.as_ptr()) };
    if p.is_null() {
        return None;
    }
    // SAFETY: non-null getenv results are NUL-terminated strings.
    Some(unsafe { CStr::from_ptr(p) }.to_bytes())
}

/// The whole command-line program: parses `argv` (and tini's environment variables), prints
/// help, version or a one-line usage error, or supervises the program; returns the exit code.
///
/// # Safety
///
/// `argv` must point to `argc` valid NUL-terminated strings followed by a null pointer, as
/// C's `main` receives, all living until the process exits; no other thread may run or modify
/// the environment.
pub unsafe fn cli_main(argc: c_int, argv: *const *const c_char) -> c_int {
    let argc = usize::try_from(argc).unwrap_or(0);
    if argv.is_null() || argc == 0 {
        Line::new().s(b"tinyo-init: no arguments at all").err();
        return EXIT_USAGE;
    }
    let args = CArgs {
        argv,
        at: 1,
        end: argc,
        _life: core::marker::PhantomData,
    };
    let env = Env {
        subreaper: getenv(c"TINI_SUBREAPER").is_some(),
        kill_process_group: getenv(c"TINI_KILL_PROCESS_GROUP").is_some(),
        verbosity: getenv(c"TINI_VERBOSITY"),
    };
    match parse(args, &env) {
        Ok(Action::Version) => {
            Line::new()
                .s(b"tinyo-init ")
                .s(VERSION.as_bytes())
                .out(libc::STDOUT_FILENO);
            0
        }
        Ok(Action::Help) => {
            out::write_all(libc::STDOUT_FILENO, USAGE.as_bytes());
            0
        }
        Ok(Action::License) => {
            Line::new()
                .s(b"tinyo-init is licensed under the Apache License, Version 2.0.")
                .out(libc::STDOUT_FILENO);
            0
        }
        Ok(Action::Pause { opts }) => pause(&opts),
        Ok(Action::Run { opts, program }) => {
            // `program` counts from argv[1]; it is < argc - 1 since the parser saw it.
            // SAFETY: `program + 1 < argc`, so the pointer stays inside argv, whose tail is
            // NULL-terminated.
            let tail = unsafe { argv.add(program + 1) };
            // SAFETY: `tail` is a NULL-terminated array of valid strings (the caller's promise).
            unsafe { run_raw(&opts, tail) }
        }
        Err(e) => {
            let mut l = Line::new();
            l.s(b"tinyo-init: ").s(e.message.as_bytes());
            if let Some(arg) = e.arg {
                l.s(b" '").s(arg).s(b"'");
            }
            l.s(b" (see tinyo-init -h)").err();
            EXIT_USAGE
        }
    }
}
