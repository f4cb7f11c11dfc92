//! Messages without `core::fmt`: one line is assembled in a fixed buffer and written with one
//! `write(2)`, so lines from concurrent writers never interleave. Longer lines are truncated.

use core::ffi::{c_char, c_int, CStr};

const CAP: usize = 512;

pub(crate) struct Line {
    buf: [u8; CAP],
    len: usize,
}

impl Line {
    pub(crate) const fn new() -> Self {
        Self {
            buf: [0; CAP],
            len: 0,
        }
    }

    /// Appends bytes (keeping one byte for the newline).
    pub(crate) fn s(&mut self, bytes: &[u8]) -> &mut Self {
        for &b in bytes {
            match self.buf.get_mut(self.len) {
                Some(slot) if self.len < CAP - 1 => {
                    *slot = b;
                    self.len += 1;
                }
                _ => break,
            }
        }
        self
    }

    /// Appends a decimal number.
    pub(crate) fn n(&mut self, v: i64) -> &mut Self {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        let mut u = v.unsigned_abs();
        loop {
            i -= 1;
            if let Some(d) = digits.get_mut(i) {
                *d = b'0' + (u % 10) as u8;
            }
            u /= 10;
            if u == 0 || i == 0 {
                break;
            }
        }
        if v < 0 {
            self.s(b"-");
        }
        self.s(digits.get(i..).unwrap_or_default())
    }

    /// Appends a C string (nothing for a null pointer).
    pub(crate) fn c(&mut self, p: *const c_char) -> &mut Self {
        if p.is_null() {
            return self;
        }
        // SAFETY: callers pass NUL-terminated strings (argv elements, strerror results).
        let s = unsafe { CStr::from_ptr(p) };
        self.s(s.to_bytes())
    }

    /// Appends the description of an errno value.
    pub(crate) fn errno(&mut self, e: c_int) -> &mut Self {
        // SAFETY: strerror accepts any value and returns a static string (musl and glibc).
        let p = unsafe { libc::strerror(e) };
        self.c(p)
    }

    /// Writes the line and a newline to `fd`.
    pub(crate) fn out(&mut self, fd: c_int) {
        if let Some(slot) = self.buf.get_mut(self.len) {
            *slot = b'\n';
            self.len += 1;
        }
        write_all(fd, self.buf.get(..self.len).unwrap_or_default());
        self.len = 0;
    }

    /// Writes the line and a newline to stderr.
    pub(crate) fn err(&mut self) {
        self.out(libc::STDERR_FILENO);
    }
}

/// Writes everything, retrying on EINTR and short writes; gives up on other errors.
pub(crate) fn write_all(fd: c_int, mut bytes: &[u8]) {
    while !bytes.is_empty() {
        // SAFETY: the pointer and length describe a live slice.
        let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
        if n < 0 {
            if errno() == libc::EINTR {
                continue;
            }
            return;
        }
        bytes = bytes.get(n as usize..).unwrap_or_default();
    }
}

/// The calling thread's errno.
pub(crate) fn errno() -> c_int {
    // SAFETY: __errno_location always returns a valid pointer to this thread's errno.
    let p = unsafe { libc::__errno_location() };
    // SAFETY: `p` is valid for reads (see above).
    unsafe { *p }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_truncation() {
        let mut l = Line::new();
        l.n(0).s(b" ").n(-143).s(b" ").n(i64::MIN).s(b" ").n(42);
        assert_eq!(&l.buf[..l.len], b"0 -143 -9223372036854775808 42");
        let mut l = Line::new();
        for _ in 0..100 {
            l.s(b"0123456789");
        }
        assert_eq!(l.len, CAP - 1);
        l.c(core::ptr::null()).errno(libc::ENOENT);
        assert_eq!(l.len, CAP - 1);
        let mut l = Line::new();
        l.errno(libc::ENOENT);
        assert_eq!(&l.buf[..l.len], b"No such file or directory");
    }
}
