//! The supervisor: block signals, read them from a signalfd, spawn, forward, reap.

use core::ffi::{c_char, c_int, CStr};
use core::mem::{size_of, size_of_val, zeroed, MaybeUninit};
use core::ptr;

use crate::out::{errno, Line};
use crate::{Options, EXIT_FATAL, EXIT_NOT_EXECUTABLE, EXIT_NOT_FOUND, EXIT_USAGE};

/// Signals left unblocked: the synchronous ones (a fault in tinyo-init must kill it, not hang
/// it) and the terminal ones, which tinyo-init ignores so it can hand the terminal over.
const UNBLOCKED: [c_int; 9] = [
    libc::SIGFPE,
    libc::SIGILL,
    libc::SIGSEGV,
    libc::SIGBUS,
    libc::SIGABRT,
    libc::SIGTRAP,
    libc::SIGSYS,
    libc::SIGTTIN,
    libc::SIGTTOU,
];

/// Supervises `argv` (`argv[0]` is looked up in PATH) and returns the exit code to exit with:
/// the program's, 128+N if it died of signal N (then mapped by [`Options::remap`]), 126 or 127
/// if it could not be executed, 2 if `argv` is empty, 1 if the supervisor itself failed.
///
/// This takes the process over until the program exits, so call it from a program that is
/// about to be (or already is) PID 1 and has no other threads: it blocks every catchable
/// signal (they stay blocked when it returns, so that a late SIGTERM cannot kill the caller
/// before it exits with the code; exit promptly), sets SIGTTIN and SIGTTOU to be ignored and
/// SIGCHLD to its default, and reaps every child of the process, not only the program. The
/// program gets the caller's original signal mask and dispositions, except SIGPIPE, which is
/// reset to its default (a Rust program ignores it).
///
/// ```no_run
/// let code = tinyo_init::run(&tinyo_init::Options::default(), &[c"/app", c"--serve"]);
/// std::process::exit(code);
/// ```
pub fn run(opts: &Options, argv: &[&CStr]) -> c_int {
    if argv.is_empty() {
        Line::new().s(b"tinyo-init: no program given").err();
        return EXIT_USAGE;
    }
    let Some(bytes) = argv
        .len()
        .checked_add(1)
        .and_then(|n| n.checked_mul(size_of::<*const c_char>()))
    else {
        return EXIT_FATAL;
    };
    // SAFETY: malloc accepts any size; the result is checked for null below.
    let array = unsafe { libc::malloc(bytes) }.cast::<MaybeUninit<*const c_char>>();
    if array.is_null() {
        Line::new().s(b"tinyo-init: out of memory").err();
        return EXIT_FATAL;
    }
    // SAFETY: `array` is a fresh, suitably aligned allocation of argv.len() + 1 slots, used
    // through this slice only; MaybeUninit needs no initialisation.
    let slots = unsafe { core::slice::from_raw_parts_mut(array, argv.len() + 1) };
    for (slot, arg) in slots
        .iter_mut()
        .zip(argv.iter().map(|a| a.as_ptr()).chain([ptr::null()]))
    {
        slot.write(arg);
    }
    let array = array.cast::<*const c_char>();
    // SAFETY: `array` is a NULL-terminated array of pointers to the caller's C strings, which
    // outlive this call.
    let code = unsafe { run_raw(opts, array) };
    // SAFETY: `array` came from malloc and is freed once.
    unsafe { libc::free(array.cast()) };
    code
}

/// [`run`] with `argv` as C has it.
///
/// # Safety
///
/// `argv` must be null or a NULL-terminated array of pointers to NUL-terminated strings, all
/// valid for the duration of the call.
pub unsafe fn run_raw(opts: &Options, argv: *const *const c_char) -> c_int {
    // SAFETY: the caller's promise: a non-null argv has at least its terminating element.
    if argv.is_null() || unsafe { *argv }.is_null() {
        Line::new().s(b"tinyo-init: no program given").err();
        return EXIT_USAGE;
    }
    supervise(opts, argv)
}

/// Pause mode (`-P`): no program; reaps everything reparented to this process and returns 0 on
/// SIGINT or SIGTERM (other signals are ignored). Takes the process over as [`run`] does.
pub fn pause(opts: &Options) -> c_int {
    supervise(opts, ptr::null())
}

fn log(opts: &Options, level: u8) -> bool {
    opts.verbosity >= level
}

/// Runs `argv` (or nothing, in pause mode when it is null) and supervises until done.
fn supervise(opts: &Options, argv: *const *const c_char) -> c_int {
    let sfd = match setup(opts) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let mut child: libc::pid_t = 0;
    if !argv.is_null() {
        child = spawn(opts, argv);
        if child < 0 {
            close(sfd);
            return EXIT_FATAL;
        }
    }
    let code = signal_loop(opts, sfd, child);
    close(sfd);
    code
}

fn close(fd: c_int) {
    // SAFETY: closing a descriptor this module opened and owns.
    unsafe { libc::close(fd) };
}

/// Parent-death signal, subreaper, the not-PID-1 warning, then the signal mask and signalfd.
fn setup(opts: &Options) -> Result<c_int, c_int> {
    if opts.parent_death_signal != 0 {
        let sig = opts.parent_death_signal as libc::c_ulong;
        // SAFETY: PR_SET_PDEATHSIG takes a signal number.
        if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, sig) } != 0 && log(opts, 1) {
            let e = errno();
            Line::new()
                .s(b"tinyo-init: warning: cannot set the parent-death signal: ")
                .errno(e)
                .err();
        }
    }
    if opts.subreaper {
        // SAFETY: PR_SET_CHILD_SUBREAPER takes a flag.
        if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong) } != 0 {
            let e = errno();
            Line::new()
                .s(b"tinyo-init: cannot become a child subreaper: ")
                .errno(e)
                .err();
            return Err(EXIT_FATAL);
        }
    }
    // SAFETY: getpid cannot fail.
    if log(opts, 1) && unsafe { libc::getpid() } != 1 {
        let mut flag: c_int = 0;
        // SAFETY: PR_GET_CHILD_SUBREAPER writes an int through the pointer, which is valid.
        let r = unsafe { libc::prctl(libc::PR_GET_CHILD_SUBREAPER, &mut flag as *mut c_int) };
        if r != 0 || flag == 0 {
            Line::new()
                .s(b"tinyo-init: warning: not running as PID 1 and not a child subreaper: ")
                .s(b"orphans are not re-parented here, so zombie reaping won't work ")
                .s(b"(use -s or set TINI_SUBREAPER, or run as PID 1)")
                .err();
        }
    }

    // SAFETY: sigset_t is plain data; all-zero is a valid value.
    let mut set: libc::sigset_t = unsafe { zeroed() };
    // SAFETY: `set` is a valid sigset_t.
    unsafe { libc::sigfillset(&mut set) };
    for sig in UNBLOCKED {
        // SAFETY: `set` is a valid sigset_t and `sig` a valid signal.
        unsafe { libc::sigdelset(&mut set, sig) };
    }
    // SIGCHLD must not be ignored, or children would be reaped by the kernel before we can
    // read the program's status.
    disposition(libc::SIGCHLD, libc::SIG_DFL);
    disposition(libc::SIGTTIN, libc::SIG_IGN);
    disposition(libc::SIGTTOU, libc::SIG_IGN);
    // SAFETY: `set` is a valid sigset_t; the old mask is not asked for (the program gets
    // an empty one).
    if unsafe { libc::sigprocmask(libc::SIG_SETMASK, &set, ptr::null_mut()) } != 0 {
        let e = errno();
        Line::new()
            .s(b"tinyo-init: cannot block signals: ")
            .errno(e)
            .err();
        return Err(EXIT_FATAL);
    }
    // SAFETY: `set` is a valid sigset_t; -1 asks for a new descriptor.
    let sfd = unsafe { libc::signalfd(-1, &set, libc::SFD_CLOEXEC) };
    if sfd < 0 {
        let e = errno();
        Line::new()
            .s(b"tinyo-init: cannot create a signalfd: ")
            .errno(e)
            .err();
        return Err(EXIT_FATAL);
    }
    Ok(sfd)
}

/// Sets the disposition of `sig` to `handler`.
fn disposition(sig: c_int, handler: libc::sighandler_t) {
    // SAFETY: sigaction is plain data; all-zero is valid (empty mask, no flags).
    let mut new: libc::sigaction = unsafe { zeroed() };
    new.sa_sigaction = handler;
    // SAFETY: `new` is a valid sigaction; the old one is not asked for.
    unsafe { libc::sigaction(sig, &new, ptr::null_mut()) };
}

/// Forks and execs the program; returns its pid, or -1 if fork failed.
fn spawn(opts: &Options, argv: *const *const c_char) -> libc::pid_t {
    // Hand the terminal over only if we hold it: stdin is a terminal and our process group is
    // its foreground group.
    // SAFETY: isatty, tcgetpgrp and getpgrp only take descriptors and cannot corrupt memory.
    let foreground = unsafe { libc::isatty(libc::STDIN_FILENO) } == 1
        // SAFETY: as above.
        && unsafe { libc::tcgetpgrp(libc::STDIN_FILENO) } == unsafe { libc::getpgrp() };
    // SAFETY: fork has no preconditions; the child only makes async-signal-safe calls.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        let e = errno();
        Line::new().s(b"tinyo-init: cannot fork: ").errno(e).err();
        return -1;
    }
    if pid == 0 {
        exec_child(argv, foreground);
    }
    // Also from the parent, so that `-g` reaches the group even before the child runs.
    // Failure means the child already did it (or exec'd after doing it).
    // SAFETY: setpgid takes only ids.
    unsafe { libc::setpgid(pid, pid) };
    if log(opts, 2) {
        // SAFETY: argv[0] is a valid string (checked non-null by run_raw).
        let name = unsafe { *argv };
        Line::new()
            .s(b"tinyo-init: spawned '")
            .c(name)
            .s(b"' as pid ")
            .n(i64::from(pid))
            .err();
    }
    pid
}

/// In the forked child: own process group, the terminal, the caller's signal state, exec.
fn exec_child(argv: *const *const c_char, foreground: bool) -> ! {
    // SAFETY: setpgid takes only ids.
    unsafe { libc::setpgid(0, 0) };
    if foreground {
        // SIGTTOU is still ignored here, so a background group may take the terminal.
        // SAFETY: getpgrp cannot fail.
        let pgrp = unsafe { libc::getpgrp() };
        // SAFETY: tcsetpgrp only takes a descriptor and an id.
        if unsafe { libc::tcsetpgrp(libc::STDIN_FILENO, pgrp) } != 0 {
            let e = errno();
            Line::new()
                .s(b"tinyo-init: warning: cannot make the program the foreground process group: ")
                .errno(e)
                .err();
        }
    }
    // Every signal to its default action and none blocked, whatever the caller had: the
    // program must be able to trap each one (a shell cannot trap a signal ignored on entry).
    // The kernel's sigaction, not the C library's, which refuses the signals it reserves.
    #[repr(C)]
    struct KernelSigaction {
        handler: libc::sighandler_t,
        flags: libc::c_ulong,
        restorer: usize,
        mask: u64,
    }
    let dfl = KernelSigaction {
        handler: libc::SIG_DFL,
        flags: 0,
        restorer: 0,
        mask: 0,
    };
    for sig in 1..=64 {
        if sig != libc::SIGKILL && sig != libc::SIGSTOP {
            // SAFETY: `dfl` is a valid kernel sigaction for the call; SIG_DFL needs no
            // restorer; the old action is not asked for.
            unsafe {
                libc::syscall(
                    libc::SYS_rt_sigaction,
                    sig,
                    &dfl as *const KernelSigaction,
                    ptr::null_mut::<KernelSigaction>(),
                    8usize,
                )
            };
        }
    }
    // SAFETY: sigset_t is plain data; all-zero is the empty set.
    let empty: libc::sigset_t = unsafe { zeroed() };
    // SAFETY: `empty` is a valid sigset_t; the old mask is not asked for.
    unsafe { libc::sigprocmask(libc::SIG_SETMASK, &empty, ptr::null_mut()) };
    // SAFETY: argv is a NULL-terminated array of valid strings with a non-null first element.
    let name = unsafe { *argv };
    // SAFETY: as above.
    unsafe { libc::execvp(name, argv) };
    let e = errno();
    Line::new()
        .s(b"tinyo-init: cannot run '")
        .c(name)
        .s(b"': ")
        .errno(e)
        .err();
    let code = if e == libc::ENOENT || e == libc::ENOTDIR {
        EXIT_NOT_FOUND
    } else {
        EXIT_NOT_EXECUTABLE
    };
    // SAFETY: _exit ends the child without running the parent's atexit handlers.
    unsafe { libc::_exit(code) }
}

/// Reads signals until the program exits (or, in pause mode with `child == 0`, until SIGINT or
/// SIGTERM); returns the exit code.
fn signal_loop(opts: &Options, sfd: c_int, child: libc::pid_t) -> c_int {
    // SAFETY: signalfd_siginfo is plain data; all-zero is valid.
    let mut infos: [libc::signalfd_siginfo; 8] = unsafe { zeroed() };
    loop {
        // SAFETY: the buffer is valid for writes of its whole size.
        let n = unsafe { libc::read(sfd, infos.as_mut_ptr().cast(), size_of_val(&infos)) };
        if n < 0 {
            let e = errno();
            if e == libc::EINTR {
                continue;
            }
            Line::new()
                .s(b"tinyo-init: cannot read signals: ")
                .errno(e)
                .err();
            return EXIT_FATAL;
        }
        let count = n as usize / size_of::<libc::signalfd_siginfo>();
        for info in infos.iter().take(count) {
            let sig = info.ssi_signo as c_int;
            if sig == libc::SIGCHLD {
                if let Some(code) = reap(opts, child) {
                    return code;
                }
            } else if child == 0 {
                if sig == libc::SIGINT || sig == libc::SIGTERM {
                    if log(opts, 2) {
                        Line::new()
                            .s(b"tinyo-init: pause mode ends on signal ")
                            .n(i64::from(sig))
                            .err();
                    }
                    return 0;
                }
            } else {
                forward(opts, child, sig);
            }
        }
    }
}

fn forward(opts: &Options, child: libc::pid_t, sig: c_int) {
    let target = if opts.kill_process_group {
        -child
    } else {
        child
    };
    // SAFETY: kill takes only ids and a signal number.
    if unsafe { libc::kill(target, sig) } != 0 {
        let e = errno();
        // ESRCH: the program (or the whole group) is already gone; its SIGCHLD is on the way.
        if e != libc::ESRCH && log(opts, 1) {
            Line::new()
                .s(b"tinyo-init: warning: cannot forward signal ")
                .n(i64::from(sig))
                .s(b": ")
                .errno(e)
                .err();
        }
    } else if log(opts, 3) {
        Line::new()
            .s(b"tinyo-init: forwarded signal ")
            .n(i64::from(sig))
            .s(b" to ")
            .n(i64::from(target))
            .err();
    }
}

/// Reaps every zombie; returns the exit code once the program is among them.
fn reap(opts: &Options, child: libc::pid_t) -> Option<c_int> {
    let mut code = None;
    loop {
        let mut status: c_int = 0;
        // SAFETY: `status` is a valid int to write to.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid > 0 {
            if pid == child {
                let c = exit_code(opts, status);
                if log(opts, 2) {
                    Line::new()
                        .s(b"tinyo-init: program exited; exit code ")
                        .n(i64::from(c))
                        .err();
                }
                code = Some(c);
            } else if opts.warn_on_reap || log(opts, 3) {
                Line::new()
                    // tini's words, which its test suite and users' tooling look for.
                    .s(b"tinyo-init: Reaped zombie process with pid=")
                    .n(i64::from(pid))
                    .err();
            }
            continue;
        }
        if pid < 0 && errno() == libc::EINTR {
            continue;
        }
        // 0: children remain but none has exited; ECHILD: no children at all.
        return code;
    }
}

/// The exit code for the program's wait status: its exit code or 128+N, then `-e` mapping.
pub(crate) fn exit_code(opts: &Options, status: c_int) -> c_int {
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        return EXIT_FATAL;
    };
    let code = (code & 0xff) as u8;
    if opts.remap.contains(code) {
        0
    } else {
        c_int::from(code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes() {
        let mut opts = Options::default();
        assert_eq!(exit_code(&opts, 0), 0);
        assert_eq!(exit_code(&opts, 3 << 8), 3);
        assert_eq!(exit_code(&opts, libc::SIGKILL), 137);
        assert_eq!(
            exit_code(&opts, libc::SIGTERM | 0x80),
            143,
            "core dump flag"
        );
        opts.remap.insert(3);
        opts.remap.insert(143);
        assert_eq!(exit_code(&opts, 3 << 8), 0);
        assert_eq!(exit_code(&opts, libc::SIGTERM), 0);
        assert_eq!(exit_code(&opts, 4 << 8), 4);
    }
}
