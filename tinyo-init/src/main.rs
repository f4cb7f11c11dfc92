//! `tinyo-init`: see the library crate; this is only its entry point.
//!
//! When built with `panic = "abort"` (the `dist` profile) the binary is `no_std` and `no_main`:
//! the C library's start-up code calls the `main` below, and no Rust runtime, formatting or
//! unwinding code is linked, which keeps the static binary a few tens of KiB. Other profiles
//! unwind, which a `no_std` binary cannot do on stable Rust, so there the same library code
//! runs behind an ordinary std `main`.

#![cfg_attr(panic = "abort", no_std)]
#![cfg_attr(panic = "abort", no_main)]

#[cfg(panic = "abort")]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    // SAFETY: abort has no preconditions.
    unsafe { libc::abort() }
}

#[cfg(panic = "abort")]
#[unsafe(no_mangle)]
extern "C" fn main(
    argc: core::ffi::c_int,
    argv: *const *const core::ffi::c_char,
) -> core::ffi::c_int {
    // SAFETY: the C runtime passes argc strings in argv, NULL-terminated and valid for the
    // life of the process; there are no other threads.
    unsafe { tinyo_init::cli_main(argc, argv) }
}

#[cfg(not(panic = "abort"))]
fn main() {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStringExt;

    // Arguments from the kernel contain no NUL byte; one that did would be dropped.
    let args: Vec<CString> = std::env::args_os()
        .filter_map(|a| CString::new(a.into_vec()).ok())
        .collect();
    let mut argv: Vec<*const std::ffi::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let argc = i32::try_from(args.len()).unwrap_or(i32::MAX);
    // SAFETY: `argv` holds `argc` valid strings and a null pointer, all alive until exit; the
    // program has no other threads.
    let code = unsafe { tinyo_init::cli_main(argc, argv.as_ptr()) };
    std::process::exit(code);
}
