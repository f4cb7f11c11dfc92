//! Signal names as runtimes and engines write them (`TERM`, `SIGTERM`, `sigterm`, `15`,
//! `RTMIN+3`).

const SIGNALS: &[(&str, i32)] = &[
    ("HUP", libc::SIGHUP),
    ("INT", libc::SIGINT),
    ("QUIT", libc::SIGQUIT),
    ("ILL", libc::SIGILL),
    ("TRAP", libc::SIGTRAP),
    ("ABRT", libc::SIGABRT),
    ("IOT", libc::SIGIOT),
    ("BUS", libc::SIGBUS),
    ("FPE", libc::SIGFPE),
    ("KILL", libc::SIGKILL),
    ("USR1", libc::SIGUSR1),
    ("SEGV", libc::SIGSEGV),
    ("USR2", libc::SIGUSR2),
    ("PIPE", libc::SIGPIPE),
    ("ALRM", libc::SIGALRM),
    ("TERM", libc::SIGTERM),
    ("STKFLT", libc::SIGSTKFLT),
    ("CHLD", libc::SIGCHLD),
    ("CONT", libc::SIGCONT),
    ("STOP", libc::SIGSTOP),
    ("TSTP", libc::SIGTSTP),
    ("TTIN", libc::SIGTTIN),
    ("TTOU", libc::SIGTTOU),
    ("URG", libc::SIGURG),
    ("XCPU", libc::SIGXCPU),
    ("XFSZ", libc::SIGXFSZ),
    ("VTALRM", libc::SIGVTALRM),
    ("PROF", libc::SIGPROF),
    ("WINCH", libc::SIGWINCH),
    ("IO", libc::SIGIO),
    ("POLL", libc::SIGPOLL),
    ("PWR", libc::SIGPWR),
    ("SYS", libc::SIGSYS),
];

/// Parses `TERM`, `SIGTERM`, `sigterm`, `15`, `RTMIN+3`.
pub fn parse(s: &str) -> Result<i32, String> {
    if let Ok(n) = s.parse::<i32>() {
        if (1..=libc::SIGRTMAX()).contains(&n) {
            return Ok(n);
        }
        return Err(format!("signal {s} is out of range"));
    }
    let upper = s.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    if let Some((_, n)) = SIGNALS.iter().find(|(n, _)| *n == name) {
        return Ok(*n);
    }
    if let Some(rest) = name.strip_prefix("RTMIN") {
        let off: i32 = if rest.is_empty() {
            0
        } else {
            rest.trim_start_matches('+').parse().unwrap_or(-1)
        };
        let n = libc::SIGRTMIN() + off;
        if off >= 0 && n <= libc::SIGRTMAX() {
            return Ok(n);
        }
    }
    Err(format!("unknown signal {s:?}"))
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn names_and_numbers() {
        assert_eq!(parse("TERM").unwrap(), libc::SIGTERM);
        assert_eq!(parse("SIGKILL").unwrap(), libc::SIGKILL);
        assert_eq!(parse("sigusr1").unwrap(), libc::SIGUSR1);
        assert_eq!(parse("15").unwrap(), 15);
        assert_eq!(parse("RTMIN+1").unwrap(), libc::SIGRTMIN() + 1);
        assert!(parse("NOPE").is_err());
        assert!(parse("0").is_err());
        assert!(parse("999").is_err());
    }
}
