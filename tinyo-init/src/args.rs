//! Command-line parsing, tini's spelling: `[-h] [-l] [-s] [-p SIGNAL] [-v] [-w] [-g] [-e CODE]
//! [-P] [--version] [--] PROGRAM [ARGS...]`. Single-letter options may be clustered (`-sgv`) and
//! take their value attached or as the next word (`-e143`, `-e 143`). Parsing stops at the first
//! word that is not an option, or after `--`, as with getopt's `+` mode: everything from
//! PROGRAM on belongs to the program.
//!
//! Nothing here allocates, so the same code runs in the `no_std` binary and in tests.

use crate::{ExitRemap, Options};

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Supervise the program whose name is at `program` (an index into the arguments given to
    /// [`parse`], which exclude `argv[0]`); the program's arguments follow it.
    Run { opts: Options, program: usize },
    /// `-P`: no program; reap whatever is reparented here until SIGINT or SIGTERM.
    Pause { opts: Options },
    /// `--version`.
    Version,
    /// `-h` or `--help`.
    Help,
    /// `-l`.
    License,
}

/// A usage error: a fixed message and, when there is one, the offending word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsageError<'a> {
    pub message: &'static str,
    pub arg: Option<&'a [u8]>,
}

impl<'a> UsageError<'a> {
    const fn new(message: &'static str, arg: Option<&'a [u8]>) -> Self {
        Self { message, arg }
    }
}

/// The environment variables tini reads, already looked up (so tests need not touch the real
/// environment): `TINI_SUBREAPER` and `TINI_KILL_PROCESS_GROUP` count when set to anything,
/// `TINI_VERBOSITY` replaces the verbosity when it is a number.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Env<'a> {
    pub subreaper: bool,
    pub kill_process_group: bool,
    pub verbosity: Option<&'a [u8]>,
}

/// Parses the arguments after `argv[0]`.
pub fn parse<'a, I>(args: I, env: &Env<'_>) -> Result<Action, UsageError<'a>>
where
    I: IntoIterator<Item = &'a [u8]>,
{
    let mut opts = Options::default();
    let mut it = args.into_iter();
    let mut index = 0usize;
    let mut program = None;
    while let Some(arg) = it.next() {
        if arg == b"--" {
            if it.next().is_some() {
                program = Some(index + 1);
            }
            break;
        }
        if arg == b"--version" {
            return Ok(Action::Version);
        }
        if arg == b"--help" {
            return Ok(Action::Help);
        }
        if arg.starts_with(b"--") {
            return Err(UsageError::new("unknown option", Some(arg)));
        }
        let Some((b'-', letters)) = arg.split_first() else {
            program = Some(index);
            break;
        };
        if letters.is_empty() {
            // A lone "-" is a program name, as with getopt.
            program = Some(index);
            break;
        }
        let mut rest = letters;
        while let Some((&letter, tail)) = rest.split_first() {
            rest = tail;
            match letter {
                b'h' => return Ok(Action::Help),
                b'l' => return Ok(Action::License),
                b's' => opts.subreaper = true,
                b'g' => opts.kill_process_group = true,
                b'w' => opts.warn_on_reap = true,
                b'P' => opts.pause = true,
                b'v' => opts.verbosity = opts.verbosity.saturating_add(1),
                b'e' | b'p' => {
                    let value = if rest.is_empty() {
                        index += 1;
                        match it.next() {
                            Some(v) => v,
                            None => {
                                let m = if letter == b'e' {
                                    "option -e needs an exit code"
                                } else {
                                    "option -p needs a signal"
                                };
                                return Err(UsageError::new(m, None));
                            }
                        }
                    } else {
                        core::mem::take(&mut rest)
                    };
                    if letter == b'e' {
                        let Some(code) = parse_number(value).filter(|c| *c <= 255) else {
                            return Err(UsageError::new(
                                "-e needs an exit code from 0 to 255, not",
                                Some(value),
                            ));
                        };
                        opts.remap.insert(code as u8);
                    } else {
                        let Some(sig) = signal_number(value) else {
                            return Err(UsageError::new("-p: unknown signal", Some(value)));
                        };
                        opts.parent_death_signal = sig;
                    }
                }
                _ => return Err(UsageError::new("unknown option", Some(arg))),
            }
        }
        index += 1;
    }

    opts.subreaper |= env.subreaper;
    opts.kill_process_group |= env.kill_process_group;
    if let Some(v) = env.verbosity.and_then(parse_number) {
        opts.verbosity = v.min(u8::MAX as u32) as u8;
    }
    match (opts.pause, program) {
        (true, None) => Ok(Action::Pause { opts }),
        (true, Some(_)) => Err(UsageError::new("-P (pause) takes no program", None)),
        (false, Some(program)) => Ok(Action::Run { opts, program }),
        (false, None) => Err(UsageError::new("no program given", None)),
    }
}

/// A decimal number that fits in a u32; nothing else.
pub fn parse_number(s: &[u8]) -> Option<u32> {
    if s.is_empty() || s.len() > 9 {
        return None;
    }
    let mut n = 0u32;
    for &c in s {
        if !c.is_ascii_digit() {
            return None;
        }
        n = n * 10 + u32::from(c - b'0');
    }
    Some(n)
}

/// Signal names as `kill -l` spells them, without the `SIG` prefix.
const SIGNALS: &[(&[u8], i32)] = &[
    (b"HUP", libc::SIGHUP),
    (b"INT", libc::SIGINT),
    (b"QUIT", libc::SIGQUIT),
    (b"ILL", libc::SIGILL),
    (b"TRAP", libc::SIGTRAP),
    (b"ABRT", libc::SIGABRT),
    (b"IOT", libc::SIGIOT),
    (b"BUS", libc::SIGBUS),
    (b"FPE", libc::SIGFPE),
    (b"KILL", libc::SIGKILL),
    (b"USR1", libc::SIGUSR1),
    (b"SEGV", libc::SIGSEGV),
    (b"USR2", libc::SIGUSR2),
    (b"PIPE", libc::SIGPIPE),
    (b"ALRM", libc::SIGALRM),
    (b"TERM", libc::SIGTERM),
    (b"STKFLT", libc::SIGSTKFLT),
    (b"CHLD", libc::SIGCHLD),
    (b"CONT", libc::SIGCONT),
    (b"STOP", libc::SIGSTOP),
    (b"TSTP", libc::SIGTSTP),
    (b"TTIN", libc::SIGTTIN),
    (b"TTOU", libc::SIGTTOU),
    (b"URG", libc::SIGURG),
    (b"XCPU", libc::SIGXCPU),
    (b"XFSZ", libc::SIGXFSZ),
    (b"VTALRM", libc::SIGVTALRM),
    (b"PROF", libc::SIGPROF),
    (b"WINCH", libc::SIGWINCH),
    (b"IO", libc::SIGIO),
    (b"POLL", libc::SIGPOLL),
    (b"PWR", libc::SIGPWR),
    (b"SYS", libc::SIGSYS),
];

/// `SIGTERM`, `TERM` (any case) or a number from 1 to 64.
pub fn signal_number(s: &[u8]) -> Option<i32> {
    if let Some(n) = parse_number(s) {
        return (1..=64).contains(&n).then_some(n as i32);
    }
    let name = match s.get(..3) {
        Some(p) if p.eq_ignore_ascii_case(b"SIG") => s.get(3..).unwrap_or_default(),
        _ => s,
    };
    SIGNALS
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, sig)| *sig)
}

impl ExitRemap {
    /// No code remapped.
    pub const fn new() -> Self {
        Self([0; 8])
    }

    /// Maps `code` to 0.
    pub fn insert(&mut self, code: u8) {
        if let Some(w) = self.0.get_mut(usize::from(code / 32)) {
            *w |= 1 << (code % 32);
        }
    }

    /// Whether `code` is mapped to 0.
    pub fn contains(&self, code: u8) -> bool {
        self.0
            .get(usize::from(code / 32))
            .is_some_and(|w| w & (1 << (code % 32)) != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Action, UsageError<'static>> {
        p_env(args, &Env::default())
    }

    fn p_env(args: &[&str], env: &Env<'_>) -> Result<Action, UsageError<'static>> {
        let owned: Vec<&'static [u8]> = args
            .iter()
            .map(|a| &*Box::leak(a.as_bytes().to_vec().into_boxed_slice()))
            .collect();
        parse(owned, env)
    }

    fn run(args: &[&str]) -> (Options, usize) {
        match p(args) {
            Ok(Action::Run { opts, program }) => (opts, program),
            other => panic!("{args:?} parsed as {other:?}"),
        }
    }

    #[test]
    fn docker_and_podman_spelling() {
        let (o, i) = run(&["--", "sh", "-c", "exit 3"]);
        assert_eq!(i, 1);
        assert_eq!(o, Options::default());
        let (_, i) = run(&["sh", "-e", "x"]);
        assert_eq!(i, 0, "options after the program belong to it");
        let (_, i) = run(&["-s", "--", "--version"]);
        assert_eq!(i, 2, "after -- even option-like words are the program");
    }

    #[test]
    fn clusters_and_values() {
        let (o, i) = run(&["-sgvvw", "-e143", "-e", "3", "-p", "SIGKILL", "-pTERM", "x"]);
        assert_eq!(i, 7);
        assert!(o.subreaper && o.kill_process_group && o.warn_on_reap && !o.pause);
        assert_eq!(o.verbosity, 3);
        assert!(o.remap.contains(143) && o.remap.contains(3) && !o.remap.contains(0));
        assert_eq!(o.parent_death_signal, libc::SIGTERM);
    }

    #[test]
    fn value_swallows_the_rest_of_a_cluster() {
        // getopt: "-ep" means -e with the value "p".
        assert!(matches!(
            p(&["-ep", "x"]),
            Err(UsageError {
                arg: Some(b"p"),
                ..
            })
        ));
        let (o, i) = run(&["-se0", "x"]);
        assert_eq!(i, 1);
        assert!(o.subreaper && o.remap.contains(0));
    }

    #[test]
    fn informational() {
        assert_eq!(p(&["--version"]), Ok(Action::Version));
        assert_eq!(p(&["-h", "--bogus"]), Ok(Action::Help));
        assert_eq!(p(&["--help"]), Ok(Action::Help));
        assert_eq!(p(&["-vl"]), Ok(Action::License));
        // After the program, --version is the program's.
        assert!(matches!(p(&["x", "--version"]), Ok(Action::Run { .. })));
    }

    #[test]
    fn pause_mode() {
        assert!(matches!(p(&["-P"]), Ok(Action::Pause { .. })));
        assert!(matches!(p(&["-sP", "--"]), Ok(Action::Pause { opts }) if opts.subreaper));
        assert!(p(&["-P", "sleep"]).is_err());
    }

    #[test]
    fn usage_errors() {
        for (args, message) in [
            (&[][..], "no program given"),
            (&["--"][..], "no program given"),
            (&["-s"][..], "no program given"),
            (&["-x", "sh"][..], "unknown option"),
            (&["--init", "sh"][..], "unknown option"),
            (&["-e"][..], "option -e needs an exit code"),
            (&["-p"][..], "option -p needs a signal"),
            (
                &["-e", "256", "x"][..],
                "-e needs an exit code from 0 to 255, not",
            ),
            (
                &["-e", "-1", "x"][..],
                "-e needs an exit code from 0 to 255, not",
            ),
            (&["-p", "SIGNOPE", "x"][..], "-p: unknown signal"),
        ] {
            match p(args) {
                Err(e) => assert_eq!(e.message, message, "{args:?}"),
                Ok(a) => panic!("{args:?} parsed as {a:?}"),
            }
        }
    }

    #[test]
    fn environment() {
        let env = Env {
            subreaper: true,
            kill_process_group: true,
            verbosity: Some(b"3"),
        };
        let Ok(Action::Run { opts, .. }) = p_env(&["x"], &env) else {
            panic!()
        };
        assert!(opts.subreaper && opts.kill_process_group);
        assert_eq!(opts.verbosity, 3);
        let env = Env {
            verbosity: Some(b"loud"),
            ..Env::default()
        };
        let Ok(Action::Run { opts, .. }) = p_env(&["x"], &env) else {
            panic!()
        };
        assert_eq!(opts.verbosity, 1, "a bad TINI_VERBOSITY is ignored");
    }

    #[test]
    fn signals() {
        assert_eq!(signal_number(b"SIGKILL"), Some(libc::SIGKILL));
        assert_eq!(signal_number(b"term"), Some(libc::SIGTERM));
        assert_eq!(signal_number(b"SigUsr1"), Some(libc::SIGUSR1));
        assert_eq!(signal_number(b"15"), Some(15));
        assert_eq!(signal_number(b"0"), None);
        assert_eq!(signal_number(b"65"), None);
        assert_eq!(signal_number(b"SIG"), None);
        assert_eq!(signal_number(b""), None);
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_number(b"0"), Some(0));
        assert_eq!(parse_number(b"255"), Some(255));
        assert_eq!(parse_number(b"999999999"), Some(999_999_999));
        assert_eq!(parse_number(b"9999999999"), None);
        assert_eq!(parse_number(b"+1"), None);
        assert_eq!(parse_number(b""), None);
    }

    #[test]
    fn remap_covers_every_code() {
        let mut r = ExitRemap::new();
        for c in [0u8, 31, 32, 143, 255] {
            r.insert(c);
        }
        for c in 0..=255u8 {
            assert_eq!(r.contains(c), [0, 31, 32, 143, 255].contains(&c), "{c}");
        }
    }
}
