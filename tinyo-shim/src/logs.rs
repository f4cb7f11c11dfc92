//! Container logs in the CRI log format (what kubelet, containerd and podman's `k8s-file`
//! write): one record per line,
//!
//! ```text
//! 2026-11-29T12:00:00.123456789Z stdout F hello
//! <RFC3339Nano UTC>              <stream> <tag> <content>
//! ```
//!
//! The tag is `F` for a full line (its `\n` is not repeated in the content) or `P` for a
//! partial one: a chunk of a line longer than [`PARTIAL_CAP`], or the last bytes before the
//! container exited without a newline. A reader joins `P` records with the following records
//! of the same stream up to and including the next `F`.
//!
//! [`LogWriter`] is what the supervisor feeds the container's output into; it keeps at most
//! [`PARTIAL_CAP`] bytes per stream and writes every record with one `write(2)`, so a
//! concurrent reader only ever sees whole records (or, for a moment, the prefix of the last
//! one, which it waits out). [`print`] is `tinyo-shim logs [-f] [--tail N] [--timestamps]`.
//!
//! Rotation is by renaming: `ctr.log` → `ctr.log.1` → `ctr.log.2` …, like kubelet's
//! `containerLogMaxSize` / `containerLogMaxFiles`.

// The supervisor (`run`) and the `logs` subcommand will use these; until they exist nothing
// calls them.
#![allow(dead_code)]

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, IoSlice, Read, Seek, SeekFrom, Write};
use std::mem::MaybeUninit;
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Bytes of an unfinished line kept per stream; a longer line is written as `P` records of
/// this size followed by an `F` record with the rest.
pub const PARTIAL_CAP: usize = 16 * 1024;

/// Length of the timestamps this module writes: `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`.
const TS_LEN: usize = 30;
/// `<ts> stdout F ` — everything of a record before its content.
const HEADER_LEN: usize = TS_LEN + 10;
/// Bytes of a record read to parse its header when scanning backwards.
const HEADER_PEEK: usize = 128;
/// A record longer than this (not one we wrote) is skipped as malformed by the reader.
const MAX_RECORD: usize = 4 * PARTIAL_CAP;
/// A line being re-joined from `P` records is held up to this size, then streamed out.
const JOIN_CAP: usize = 4 * PARTIAL_CAP;
/// How often `--follow` looks for new data.
const POLL: Duration = Duration::from_millis(100);

/// Which of the container's output streams a record belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    /// The name used in the log line: `stdout` or `stderr`.
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }

    fn index(self) -> usize {
        match self {
            Stream::Stdout => 0,
            Stream::Stderr => 1,
        }
    }

    fn parse(s: &[u8]) -> Option<Self> {
        match s {
            b"stdout" => Some(Stream::Stdout),
            b"stderr" => Some(Stream::Stderr),
            _ => None,
        }
    }
}

/// Adds what was being done and to which file to an I/O error (its message keeps the errno).
fn annotate(e: io::Error, what: &str, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}

/// `path` with `.k` appended: the k-th rotated file.
fn rotated(path: &Path, k: u32) -> PathBuf {
    let mut s = OsString::from(path.as_os_str());
    s.push(format!(".{k}"));
    PathBuf::from(s)
}

fn ignore_not_found(r: io::Result<()>) -> io::Result<()> {
    match r {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

// ---------------------------------------------------------------------------------------------
// Timestamps

/// Seconds and nanoseconds since the epoch from `CLOCK_REALTIME`.
fn now() -> (i64, u32) {
    let mut ts = MaybeUninit::<libc::timespec>::uninit();
    // SAFETY: `ts` is valid for writing one timespec, which clock_gettime fills on success.
    let r = unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, ts.as_mut_ptr()) };
    if r != 0 {
        // CLOCK_REALTIME always exists; keep going with the epoch rather than fail a write.
        return (0, 0);
    }
    // SAFETY: clock_gettime returned 0, so it initialised `ts`.
    let ts = unsafe { ts.assume_init() };
    // time_t and c_long are narrower than i64 on some targets.
    #[allow(clippy::unnecessary_cast)]
    (ts.tv_sec as i64, ts.tv_nsec as u32)
}

/// Days since 1970-01-01 of a civil date (the inverse of tinyo-core's `civil_from_days`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((month + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn put_digits(dst: &mut [u8], mut v: u64) {
    for b in dst.iter_mut().rev() {
        *b = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

/// `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ` (always nine fractional digits, so records line up and
/// sort as text). Years outside 0..=9999 are clamped.
fn format_timestamp(secs: i64, nanos: u32) -> [u8; TS_LEN] {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400) as u64);
    let (year, month, day) = tinyo_core::container::civil_from_days(days);
    let mut out = *b"0000-00-00T00:00:00.000000000Z";
    put_digits(&mut out[0..4], year.clamp(0, 9999) as u64);
    put_digits(&mut out[5..7], month.into());
    put_digits(&mut out[8..10], day.into());
    put_digits(&mut out[11..13], rem / 3600);
    put_digits(&mut out[14..16], rem / 60 % 60);
    put_digits(&mut out[17..19], rem % 60);
    put_digits(&mut out[20..29], nanos.min(999_999_999).into());
    out
}

fn parse_digits(s: &[u8]) -> Option<u32> {
    if s.is_empty() || s.len() > 9 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(s.iter().fold(0, |n, &b| n * 10 + u32::from(b - b'0')))
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Parses an RFC 3339 timestamp as found in CRI logs (`Z` or a `±HH:MM` offset, zero to nine
/// fractional digits) into seconds and nanoseconds since the epoch.
pub fn parse_timestamp(s: &[u8]) -> Option<(i64, u32)> {
    if s.len() < 20
        || s[4] != b'-'
        || s[7] != b'-'
        || !matches!(s[10], b'T' | b't')
        || s[13] != b':'
        || s[16] != b':'
    {
        return None;
    }
    let year = i64::from(parse_digits(&s[0..4])?);
    let month = parse_digits(&s[5..7])?;
    let day = parse_digits(&s[8..10])?;
    let hour = i64::from(parse_digits(&s[11..13])?);
    let min = i64::from(parse_digits(&s[14..16])?);
    let sec = i64::from(parse_digits(&s[17..19])?);
    if !(1..=12).contains(&month)
        || day == 0
        || day > days_in_month(year, month)
        || hour > 23
        || min > 59
        || sec > 59
    {
        return None;
    }
    let mut rest = &s[19..];
    let mut nanos = 0;
    if let [b'.', frac @ ..] = rest {
        let n = frac.iter().take_while(|b| b.is_ascii_digit()).count();
        if n == 0 || n > 9 {
            return None;
        }
        nanos = parse_digits(&frac[..n])? * 10u32.pow(9 - n as u32);
        rest = &frac[n..];
    }
    let offset = match rest {
        b"Z" | b"z" => 0,
        [sign @ (b'+' | b'-'), h @ .., b':', m1, m2] if h.len() == 2 => {
            let (h, m) = (parse_digits(h)?, parse_digits(&[*m1, *m2])?);
            if h > 23 || m > 59 {
                return None;
            }
            let o = i64::from(h * 3600 + m * 60);
            if *sign == b'+' {
                o
            } else {
                -o
            }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    Some((days * 86_400 + hour * 3600 + min * 60 + sec - offset, nanos))
}

/// One parsed log line (without its `\n`).
#[derive(Debug, PartialEq, Eq)]
struct Record<'a> {
    ts: &'a [u8],
    stream: Stream,
    partial: bool,
    content: &'a [u8],
}

/// Splits a log line into its fields; `None` for anything malformed. Tags may be a
/// `:`-separated list as the CRI format allows; the record is partial if one of them is `P`.
fn parse_record(line: &[u8]) -> Option<Record<'_>> {
    let mut fields = line.splitn(4, |&b| b == b' ');
    let ts = fields.next()?;
    let stream = Stream::parse(fields.next()?)?;
    let tag = fields.next()?;
    let content = fields.next().unwrap_or_default();
    if tag.is_empty() || tag.split(|&b| b == b':').any(<[u8]>::is_empty) {
        return None;
    }
    parse_timestamp(ts)?;
    let partial = tag.split(|&b| b == b':').any(|t| t == b"P");
    Some(Record {
        ts,
        stream,
        partial,
        content,
    })
}

// ---------------------------------------------------------------------------------------------
// Writing

/// Appends the container's output to a CRI log file, rotating it by size.
///
/// Memory: at most [`PARTIAL_CAP`] bytes held per stream (allocated on first use) plus a
/// 40-byte header on the stack per record; content is written straight from the caller's
/// buffer with `writev`.
#[derive(Debug)]
pub struct LogWriter {
    file: LogFileOut,
    /// Unfinished line per stream (index [`Stream::index`]), at most [`PARTIAL_CAP`] bytes.
    pending: [Vec<u8>; 2],
}

/// The file half of [`LogWriter`], apart so records can be written from `pending`.
#[derive(Debug)]
struct LogFileOut {
    path: PathBuf,
    file: File,
    /// Bytes in the current file (what we found on open plus what we wrote).
    size: u64,
    max_size: u64,
    max_files: u32,
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .open(path)
        .map_err(|e| annotate(e, "opening log file", path))
}

impl LogWriter {
    /// Opens (appending to) or creates `path` with mode 0640, creating its directory (0750)
    /// if needed. `max_size` is the size at which the file is rotated (0: never);
    /// `max_files` the number of files kept counting the current one (0 is taken as 1:
    /// rotating then just starts the file afresh). A single record bigger than `max_size`
    /// still goes whole into a file of its own.
    pub fn open(path: &Path, max_size: u64, max_files: u32) -> io::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o750)
                .create(dir)
                .map_err(|e| annotate(e, "creating log directory", dir))?;
        }
        let file = open_append(path)?;
        let size = file
            .metadata()
            .map_err(|e| annotate(e, "reading the size of", path))?
            .len();
        Ok(Self {
            file: LogFileOut {
                path: path.to_path_buf(),
                file,
                size,
                max_size,
                max_files: max_files.max(1),
            },
            pending: [Vec::new(), Vec::new()],
        })
    }

    /// Logs `data`, read from the container's `stream`: every complete line becomes an `F`
    /// record (preceded by `P` records if it is longer than [`PARTIAL_CAP`]); bytes after the
    /// last newline are kept until the line completes, overflows the cap, or [`Self::flush`].
    /// On an error the bytes of the failed record are dropped and the rest of `data` is not
    /// written; the writer stays usable.
    pub fn write(&mut self, stream: Stream, mut data: &[u8]) -> io::Result<()> {
        while let Some(i) = data.iter().position(|&b| b == b'\n') {
            self.emit(stream, &data[..i], true)?;
            data = &data[i + 1..];
        }
        if !data.is_empty() {
            self.emit(stream, data, false)?;
        }
        Ok(())
    }

    /// Writes the unfinished line of each stream as a `P` record (at container exit).
    pub fn flush(&mut self) -> io::Result<()> {
        for stream in [Stream::Stdout, Stream::Stderr] {
            let i = stream.index();
            if !self.pending[i].is_empty() {
                let r = self.file.record(stream, b'P', &self.pending[i], &[]);
                // The container is done with this line; give the memory back too.
                self.pending[i] = Vec::new();
                r?;
            }
        }
        Ok(())
    }

    /// The pending bytes of `stream` followed by `tail` are one line (`full`: ended by a
    /// newline) or the start of one.
    fn emit(&mut self, stream: Stream, mut tail: &[u8], full: bool) -> io::Result<()> {
        let i = stream.index();
        let held = self.pending[i].len();
        if held + tail.len() <= PARTIAL_CAP {
            if full {
                let r = self.file.record(stream, b'F', &self.pending[i], tail);
                self.pending[i].clear();
                return r;
            }
            hold(&mut self.pending[i], tail);
            return Ok(());
        }
        // Too long to keep: out it goes in chunks of PARTIAL_CAP, the first one topping up
        // what is held.
        if held > 0 {
            let room = PARTIAL_CAP - held;
            let r = self
                .file
                .record(stream, b'P', &self.pending[i], &tail[..room]);
            self.pending[i].clear();
            r?;
            tail = &tail[room..];
        }
        while tail.len() > PARTIAL_CAP {
            self.file.record(stream, b'P', &tail[..PARTIAL_CAP], &[])?;
            tail = &tail[PARTIAL_CAP..];
        }
        if full {
            self.file.record(stream, b'F', tail, &[])
        } else {
            hold(&mut self.pending[i], tail);
            Ok(())
        }
    }
}

impl Drop for LogWriter {
    /// Best effort: what the container printed last without a newline is not lost if the
    /// supervisor forgets [`LogWriter::flush`].
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

/// Appends to a pending buffer without letting its capacity grow past [`PARTIAL_CAP`].
fn hold(buf: &mut Vec<u8>, data: &[u8]) {
    let need = buf.len() + data.len();
    if need > buf.capacity() {
        let want = (buf.capacity() * 2).clamp(need.max(256), PARTIAL_CAP.max(need));
        buf.reserve_exact(want - buf.len());
    }
    buf.extend_from_slice(data);
}

/// `write_all` for a list of buffers: one `writev` unless the kernel writes short.
fn write_all_vectored(file: &mut File, mut bufs: &mut [IoSlice<'_>]) -> io::Result<()> {
    IoSlice::advance_slices(&mut bufs, 0);
    while !bufs.is_empty() {
        match file.write_vectored(bufs) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut bufs, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

impl LogFileOut {
    /// Writes one record whose content is `a` followed by `b`, rotating first if it would
    /// not fit.
    fn record(&mut self, stream: Stream, tag: u8, a: &[u8], b: &[u8]) -> io::Result<()> {
        let (secs, nanos) = now();
        let mut header = [b' '; HEADER_LEN];
        header[..TS_LEN].copy_from_slice(&format_timestamp(secs, nanos));
        header[TS_LEN + 1..TS_LEN + 7].copy_from_slice(stream.as_str().as_bytes());
        header[TS_LEN + 8] = tag;
        let len = (HEADER_LEN + a.len() + b.len() + 1) as u64;
        if self.max_size > 0 && self.size > 0 && self.size + len > self.max_size {
            self.rotate()?;
        }
        let mut bufs = [
            IoSlice::new(&header),
            IoSlice::new(a),
            IoSlice::new(b),
            IoSlice::new(b"\n"),
        ];
        let r = write_all_vectored(&mut self.file, &mut bufs);
        // Even a failed write may have appended part of the record.
        self.size += len;
        r.map_err(|e| annotate(e, "writing log file", &self.path))
    }

    /// `path.(n-1)` is dropped, `path.k` becomes `path.(k+1)`, `path` becomes `path.1`, and a
    /// new `path` is started.
    fn rotate(&mut self) -> io::Result<()> {
        let keep = self.max_files - 1;
        if keep == 0 {
            ignore_not_found(fs::remove_file(&self.path))
                .map_err(|e| annotate(e, "removing full log file", &self.path))?;
        } else {
            // The rotated files are contiguous: find the last one rather than try all `keep`.
            let mut top = 0;
            while top < keep && fs::symlink_metadata(rotated(&self.path, top + 1)).is_ok() {
                top += 1;
            }
            if top == keep {
                let oldest = rotated(&self.path, keep);
                ignore_not_found(fs::remove_file(&oldest))
                    .map_err(|e| annotate(e, "removing oldest log file", &oldest))?;
                top -= 1;
            }
            for k in (1..=top).rev() {
                let from = rotated(&self.path, k);
                ignore_not_found(fs::rename(&from, rotated(&self.path, k + 1)))
                    .map_err(|e| annotate(e, "rotating log file", &from))?;
            }
            ignore_not_found(fs::rename(&self.path, rotated(&self.path, 1)))
                .map_err(|e| annotate(e, "rotating log file", &self.path))?;
        }
        self.file = open_append(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Reading

/// What `tinyo-shim logs` was asked for.
#[derive(Debug, Clone, Default)]
pub struct ReadOptions {
    /// Keep printing new output until the container has exited (`-f`).
    pub follow: bool,
    /// Only the last N lines (`--tail N`); an unfinished line at the end comes on top.
    pub tail: Option<usize>,
    /// Prefix each line with its timestamp (`--timestamps`), that of its first chunk.
    pub timestamps: bool,
}

/// Where a record starts: (index of its file, oldest first; byte offset in it).
type Pos = (usize, u64);

/// One log file opened for reading.
#[derive(Debug)]
struct LogFileIn {
    file: File,
    /// (device, inode), to notice rotation.
    id: (u64, u64),
    path: PathBuf,
}

impl LogFileIn {
    fn open(path: &Path) -> io::Result<Self> {
        let file = File::open(path)?;
        let m = file
            .metadata()
            .map_err(|e| annotate(e, "reading metadata of", path))?;
        Ok(Self {
            file,
            id: (m.dev(), m.ino()),
            path: path.to_path_buf(),
        })
    }
}

/// Opens `path` and its rotated files, oldest first. Newest first, so that a rotation
/// happening meanwhile shows up as the same inode twice (skipped) rather than a hole in the
/// middle; only the oldest file can then be missed.
fn open_all(path: &Path) -> io::Result<Vec<LogFileIn>> {
    let mut files: Vec<LogFileIn> = Vec::new();
    for k in 0u32.. {
        let p = if k == 0 {
            path.to_path_buf()
        } else {
            rotated(path, k)
        };
        match LogFileIn::open(&p) {
            Ok(f) => {
                if !files.iter().any(|g| g.id == f.id) {
                    files.push(f);
                }
            }
            // The current file is briefly missing while the writer rotates.
            Err(e) if e.kind() == io::ErrorKind::NotFound && k == 0 => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => break,
            Err(e) => return Err(annotate(e, "opening log file", &p)),
        }
    }
    files.reverse();
    Ok(files)
}

/// Calls `f(offset, header)` for every complete record of `file` before `end`, last first,
/// until it returns false (then returns true). `header` is the record's first bytes (up to
/// [`HEADER_PEEK`], without the `\n`). Bytes after the last newline are not a record yet.
fn scan_back(
    file: &LogFileIn,
    end: u64,
    f: &mut dyn FnMut(u64, &[u8]) -> bool,
) -> io::Result<bool> {
    let mut buf = [0u8; 8192];
    let mut header = [0u8; HEADER_PEEK];
    let read_err = |e| annotate(e, "reading log file", &file.path);
    // The end (just past its newline) of the record whose start we are looking for.
    let mut line_end: Option<u64> = None;
    let mut emit = |start: u64, line_end: u64| -> io::Result<bool> {
        let n = ((line_end - 1 - start) as usize).min(HEADER_PEEK);
        file.file
            .read_exact_at(&mut header[..n], start)
            .map_err(read_err)?;
        Ok(f(start, &header[..n]))
    };
    let mut pos = end;
    while pos > 0 {
        let n = (pos.min(buf.len() as u64)) as usize;
        pos -= n as u64;
        file.file
            .read_exact_at(&mut buf[..n], pos)
            .map_err(read_err)?;
        for i in (0..n).rev() {
            if buf[i] == b'\n' {
                let nl = pos + i as u64;
                if let Some(le) = line_end {
                    if !emit(nl + 1, le)? {
                        return Ok(true);
                    }
                }
                line_end = Some(nl + 1);
            }
        }
    }
    match line_end {
        Some(le) => Ok(!emit(0, le)?),
        None => Ok(false),
    }
}

/// Where to start for `--tail n`, and per stream the last record to leave out (a line's `P`
/// chunks may come before the other stream's later lines, so each stream starts right after
/// its own last `F` record that precedes the `n`-th last line).
fn tail_start(files: &[LogFileIn], n: usize) -> io::Result<(Pos, [Option<Pos>; 2])> {
    let mut need = n;
    let mut skip: [Option<Pos>; 2] = [None, None];
    for (idx, file) in files.iter().enumerate().rev() {
        let end = file
            .file
            .metadata()
            .map_err(|e| annotate(e, "reading metadata of", &file.path))?
            .len();
        let done = scan_back(file, end, &mut |off, header| {
            let Some(rec) = parse_record(header) else {
                return true;
            };
            if rec.partial {
                return true;
            }
            if need > 0 {
                // One of the last n lines.
                need -= 1;
                return true;
            }
            let i = rec.stream.index();
            if skip[i].is_none() {
                skip[i] = Some((idx, off));
            }
            skip.iter().any(Option::is_none)
        })?;
        if done {
            break;
        }
    }
    if need > 0 {
        // Fewer than n lines: everything.
        return Ok(((0, 0), [None, None]));
    }
    let start = match skip {
        [Some(a), Some(b)] => a.min(b),
        _ => (0, 0),
    };
    Ok((start, skip))
}

/// The line being re-joined from `P` records of one stream.
#[derive(Debug, Default)]
struct Joining {
    buf: Vec<u8>,
    /// Timestamp of its first chunk.
    ts: Vec<u8>,
    /// Part of the line is already written out (it outgrew [`JOIN_CAP`]).
    started: bool,
}

/// Turns records into output lines.
struct Replay<'a> {
    sinks: [&'a mut dyn Write; 2],
    timestamps: bool,
    /// Per stream, records at or before this position are left out (`--tail`).
    skip: [Option<Pos>; 2],
    joining: [Joining; 2],
}

impl Replay<'_> {
    fn record(&mut self, pos: Pos, line: &[u8]) -> io::Result<()> {
        let Some(rec) = parse_record(line) else {
            return Ok(());
        };
        let i = rec.stream.index();
        if self.skip[i].is_some_and(|s| pos <= s) {
            return Ok(());
        }
        let j = &mut self.joining[i];
        let sink = &mut *self.sinks[i];
        if j.buf.is_empty() && !j.started && self.timestamps {
            j.ts.clear();
            j.ts.extend_from_slice(rec.ts);
        }
        if rec.partial && !j.started && j.buf.len() + rec.content.len() <= JOIN_CAP {
            j.buf.extend_from_slice(rec.content);
            return Ok(());
        }
        if !j.started && self.timestamps {
            sink.write_all(&j.ts)?;
            sink.write_all(b" ")?;
        }
        sink.write_all(&j.buf)?;
        sink.write_all(rec.content)?;
        j.buf.clear();
        if rec.partial {
            j.started = true;
        } else {
            sink.write_all(b"\n")?;
            j.started = false;
        }
        Ok(())
    }

    /// Writes out unfinished lines as they are (no newline) and flushes the sinks.
    fn finish(&mut self) -> io::Result<()> {
        for (j, sink) in self.joining.iter_mut().zip(self.sinks.iter_mut()) {
            if !j.buf.is_empty() || j.started {
                if !j.started && self.timestamps {
                    sink.write_all(&j.ts)?;
                    sink.write_all(b" ")?;
                }
                sink.write_all(&j.buf)?;
                *j = Joining::default();
            }
        }
        self.flush()
    }

    fn flush(&mut self) -> io::Result<()> {
        self.sinks[0].flush()?;
        self.sinks[1].flush()
    }
}

/// Splits one file's bytes into records, carrying an incomplete last line over to the next
/// call (a concurrent writer's record not yet fully visible).
#[derive(Debug, Default)]
struct LineReader {
    /// Offset in the file of the next byte to read.
    pos: u64,
    /// Offset of the start of the line in `line`.
    line_start: u64,
    line: Vec<u8>,
    /// The current line outgrew [`MAX_RECORD`]: drop it up to its newline.
    overlong: bool,
}

impl LineReader {
    fn reset(&mut self, pos: u64) {
        *self = LineReader {
            pos,
            line_start: pos,
            line: std::mem::take(&mut self.line),
            overlong: false,
        };
        self.line.clear();
    }

    /// Reads `file` (file number `idx`) to its end, handing complete records to `replay`.
    /// Returns whether anything was read.
    fn pump(
        &mut self,
        file: &mut LogFileIn,
        idx: usize,
        replay: &mut Replay<'_>,
    ) -> io::Result<bool> {
        let mut buf = [0u8; 8192];
        let mut any = false;
        loop {
            let n = match file.file.read(&mut buf) {
                Ok(0) => return Ok(any),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(annotate(e, "reading log file", &file.path)),
            };
            any = true;
            let mut chunk = &buf[..n];
            while let Some(i) = chunk.iter().position(|&b| b == b'\n') {
                if !self.overlong {
                    if self.line.is_empty() {
                        replay.record((idx, self.line_start), &chunk[..i])?;
                    } else if self.line.len() + i <= MAX_RECORD {
                        self.line.extend_from_slice(&chunk[..i]);
                        replay.record((idx, self.line_start), &self.line)?;
                    }
                }
                self.line.clear();
                self.overlong = false;
                self.pos += i as u64 + 1;
                self.line_start = self.pos;
                chunk = &chunk[i + 1..];
            }
            if !self.overlong {
                if self.line.len() + chunk.len() > MAX_RECORD {
                    self.overlong = true;
                    self.line = Vec::new();
                } else {
                    self.line.extend_from_slice(chunk);
                }
            }
            self.pos += chunk.len() as u64;
        }
    }
}

/// `tinyo-shim logs`: replays the log at `path` (and its rotated files, oldest first),
/// writing stdout lines to `out` and stderr lines to `err` as `docker logs` does. `P` records
/// are joined with the rest of their line; malformed lines are skipped; an unfinished line
/// at the very end is written without a newline. A missing log file is an empty log.
///
/// With `follow`, keeps polling every 100 ms for new records, following the file across
/// rotations (reopened by path when its inode changes) and truncation, until
/// `still_running()` has returned false and everything written before that has been printed.
/// Two rotations within one poll interval lose the file in between.
pub fn print(
    path: &Path,
    opts: &ReadOptions,
    out: &mut dyn Write,
    err: &mut dyn Write,
    still_running: &mut dyn FnMut() -> bool,
) -> io::Result<()> {
    let mut files = open_all(path)?;
    let (start, skip) = match opts.tail {
        Some(n) => tail_start(&files, n)?,
        None => ((0, 0), [None, None]),
    };
    let mut replay = Replay {
        sinks: [out, err],
        timestamps: opts.timestamps,
        skip,
        joining: Default::default(),
    };
    let mut reader = LineReader::default();
    let next_idx = files.len();
    let mut current: Option<(usize, LogFileIn)> = None;
    for (idx, mut file) in files.drain(..).enumerate().skip(start.0) {
        let off = if idx == start.0 { start.1 } else { 0 };
        file.file
            .seek(SeekFrom::Start(off))
            .map_err(|e| annotate(e, "seeking in log file", &file.path))?;
        reader.reset(off);
        reader.pump(&mut file, idx, &mut replay)?;
        current = Some((idx, file));
    }
    if opts.follow {
        follow(
            path,
            &mut replay,
            &mut reader,
            current,
            next_idx,
            still_running,
        )?;
    }
    replay.finish()
}

fn follow(
    path: &Path,
    replay: &mut Replay<'_>,
    reader: &mut LineReader,
    mut current: Option<(usize, LogFileIn)>,
    mut next_idx: usize,
    still_running: &mut dyn FnMut() -> bool,
) -> io::Result<()> {
    loop {
        // Asked before reading: whatever was written before the container exited is read
        // below, and the loop only ends after a round that found nothing new.
        let running = still_running();
        let mut progressed = match &mut current {
            Some((idx, file)) => reader.pump(file, *idx, replay)?,
            None => false,
        };
        match fs::metadata(path) {
            Ok(m)
                if current
                    .as_ref()
                    .is_some_and(|(_, f)| f.id == (m.dev(), m.ino())) =>
            {
                if let Some((_, file)) = &mut current {
                    let len = file
                        .file
                        .metadata()
                        .map_err(|e| annotate(e, "reading metadata of", &file.path))?
                        .len();
                    if len < reader.pos {
                        // Truncated under us: start over.
                        file.file
                            .seek(SeekFrom::Start(0))
                            .map_err(|e| annotate(e, "seeking in log file", &file.path))?;
                        reader.reset(0);
                        progressed = true;
                    }
                }
            }
            Ok(_) => {
                // Rotated: finish the old file (the writer is done with it), go on with the
                // new one.
                if let Some((idx, file)) = &mut current {
                    reader.pump(file, *idx, replay)?;
                }
                match LogFileIn::open(path) {
                    Ok(file) => {
                        current = Some((next_idx, file));
                        next_idx += 1;
                        reader.reset(0);
                        progressed = true;
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(annotate(e, "opening log file", path)),
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(annotate(e, "looking at log file", path)),
        }
        if !progressed {
            if !running {
                return Ok(());
            }
            replay.flush()?;
            std::thread::sleep(POLL);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{mpsc, Arc, Mutex};
    use std::time::{Instant, SystemTime, UNIX_EPOCH};

    fn records(path: &Path) -> Vec<(Stream, bool, Vec<u8>)> {
        let data = fs::read(path).unwrap();
        assert!(
            data.is_empty() || data.ends_with(b"\n"),
            "{path:?} ends mid-record"
        );
        data.split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| {
                let r = parse_record(l)
                    .unwrap_or_else(|| panic!("malformed record {:?}", String::from_utf8_lossy(l)));
                assert_eq!(r.ts.len(), TS_LEN);
                (r.stream, r.partial, r.content.to_vec())
            })
            .collect()
    }

    fn f(s: Stream, c: &str) -> (Stream, bool, Vec<u8>) {
        (s, false, c.as_bytes().to_vec())
    }

    fn read(path: &Path, opts: &ReadOptions) -> (String, String) {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        print(path, opts, &mut out, &mut err, &mut || false).unwrap();
        (
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    }

    fn tail(n: usize) -> ReadOptions {
        ReadOptions {
            tail: Some(n),
            ..Default::default()
        }
    }

    const OUT: Stream = Stream::Stdout;
    const ERR: Stream = Stream::Stderr;

    #[test]
    fn timestamps_format_and_parse_back() {
        let cases: [(i64, u32, &str); 6] = [
            (0, 0, "1970-01-01T00:00:00.000000000Z"),
            (1_795_953_600, 123_456_789, "2026-11-29T12:00:00.123456789Z"),
            (951_782_400, 1, "2000-02-29T00:00:00.000000001Z"),
            (1_709_251_199, 999_999_999, "2024-02-29T23:59:59.999999999Z"),
            (253_402_300_799, 5, "9999-12-31T23:59:59.000000005Z"),
            (-1, 500_000_000, "1969-12-31T23:59:59.500000000Z"),
        ];
        for (secs, nanos, text) in cases {
            assert_eq!(
                std::str::from_utf8(&format_timestamp(secs, nanos)).unwrap(),
                text
            );
            assert_eq!(
                parse_timestamp(text.as_bytes()),
                Some((secs, nanos)),
                "{text}"
            );
        }
        // Other writers: fewer digits, offsets.
        assert_eq!(
            parse_timestamp(b"2026-11-29T13:00:00.5+01:00"),
            Some((1_795_953_600, 500_000_000))
        );
        assert_eq!(
            parse_timestamp(b"2026-11-29T12:00:00Z"),
            Some((1_795_953_600, 0))
        );
        for bad in [
            &b"2026-11-29 12:00:00Z"[..],
            b"2026-13-01T00:00:00Z",
            b"2023-02-29T00:00:00Z",
            b"2026-11-29T24:00:00Z",
            b"2026-11-29T12:00:00.Z",
            b"2026-11-29T12:00:00.1234567890Z",
            b"2026-11-29T12:00:00",
            b"2026-11-29T12:00:00+0100",
            b"hello",
        ] {
            assert_eq!(
                parse_timestamp(bad),
                None,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        // Every day of 1900..2100 round-trips.
        for days in -25_567..47_482 {
            let ts = format_timestamp(days * 86_400 + 3_723, 42);
            assert_eq!(parse_timestamp(&ts), Some((days * 86_400 + 3_723, 42)));
        }
    }

    #[test]
    fn writes_f_lines_with_current_timestamps() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/dir/ctr.log");
        let before = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        let mut w = LogWriter::open(&path, 0, 1).unwrap();
        w.write(OUT, b"hello\nwor").unwrap();
        assert_eq!(records(&path), [f(OUT, "hello")]);
        w.write(OUT, b"ld\n\n").unwrap();
        w.write(ERR, b"oops\n").unwrap();
        let after = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();

        let text = fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4);
        let tails = [
            "stdout F hello",
            "stdout F world",
            "stdout F ",
            "stderr F oops",
        ];
        for (line, tail) in lines.iter().zip(tails) {
            let (ts, rest) = line.split_at(TS_LEN);
            assert_eq!(rest, format!(" {tail}"));
            let (secs, nanos) = parse_timestamp(ts.as_bytes()).unwrap();
            let t = Duration::new(secs as u64, nanos);
            // Same clock (CLOCK_REALTIME) as SystemTime; a second of slack for its jumps.
            assert!(t + Duration::from_secs(1) >= before && t <= after + Duration::from_secs(1));
        }
        let mode = fs::metadata(&path).unwrap().mode() & 0o777;
        assert_eq!(mode & !0o640, 0, "mode {mode:o}");
    }

    #[test]
    fn long_lines_become_p_records_then_f() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ctr.log");
        let line: Vec<u8> = (0..2 * PARTIAL_CAP + 10)
            .map(|i| b'a' + (i % 26) as u8)
            .collect();
        let expect = vec![
            (OUT, true, line[..PARTIAL_CAP].to_vec()),
            (OUT, true, line[PARTIAL_CAP..2 * PARTIAL_CAP].to_vec()),
            (OUT, false, line[2 * PARTIAL_CAP..].to_vec()),
        ];
        {
            let mut w = LogWriter::open(&path, 0, 1).unwrap();
            let mut data = line.clone();
            data.push(b'\n');
            w.write(OUT, &data).unwrap();
        }
        assert_eq!(records(&path), expect);

        // The same line in small pieces, with the other stream in between.
        fs::remove_file(&path).unwrap();
        let mut w = LogWriter::open(&path, 0, 1).unwrap();
        for piece in line.chunks(1000) {
            w.write(OUT, piece).unwrap();
            w.write(ERR, b"e").unwrap();
        }
        w.write(OUT, b"\n").unwrap();
        let got: Vec<_> = records(&path).into_iter().filter(|r| r.0 == OUT).collect();
        assert_eq!(got, expect);

        // Exactly PARTIAL_CAP bytes are held; one more byte sends them out.
        fs::remove_file(&path).unwrap();
        let mut w = LogWriter::open(&path, 0, 1).unwrap();
        w.write(OUT, &line[..PARTIAL_CAP]).unwrap();
        assert_eq!(records(&path), []);
        w.write(OUT, b"!").unwrap();
        assert_eq!(records(&path), [(OUT, true, line[..PARTIAL_CAP].to_vec())]);
        w.write(OUT, b"\n").unwrap();
        assert_eq!(records(&path)[1], f(OUT, "!"));
        assert_eq!(w.pending[0].capacity(), PARTIAL_CAP);
    }

    #[test]
    fn flush_writes_pending_partials() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ctr.log");
        let mut w = LogWriter::open(&path, 0, 1).unwrap();
        w.write(OUT, b"line\nprompt> ").unwrap();
        w.write(ERR, b"half").unwrap();
        assert_eq!(records(&path), [f(OUT, "line")]);
        w.flush().unwrap();
        let expect = [
            f(OUT, "line"),
            (OUT, true, b"prompt> ".to_vec()),
            (ERR, true, b"half".to_vec()),
        ];
        assert_eq!(records(&path), expect);
        w.flush().unwrap();
        assert_eq!(records(&path), expect);
        // Dropping the writer flushes too.
        w.write(OUT, b"bye").unwrap();
        drop(w);
        assert_eq!(
            records(&path).last().unwrap(),
            &(OUT, true, b"bye".to_vec())
        );
        assert_eq!(
            read(&path, &ReadOptions::default()),
            ("line\nprompt> bye".into(), "half".into())
        );
    }

    /// Record size of a 3-byte line.
    const REC3: u64 = HEADER_LEN as u64 + 4;

    fn write_lines(w: &mut LogWriter, range: std::ops::Range<usize>) {
        for i in range {
            w.write(OUT, format!("l{i:02}\n").as_bytes()).unwrap();
        }
    }

    fn lines(range: std::ops::Range<usize>) -> Vec<(Stream, bool, Vec<u8>)> {
        range.map(|i| f(OUT, &format!("l{i:02}"))).collect()
    }

    #[test]
    fn rotation_shifts_and_drops_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ctr.log");
        let mut w = LogWriter::open(&path, 4 * REC3, 3).unwrap();
        write_lines(&mut w, 0..10);
        assert_eq!(records(&path), lines(8..10));
        assert_eq!(records(&rotated(&path, 1)), lines(4..8));
        assert_eq!(records(&rotated(&path, 2)), lines(0..4));
        write_lines(&mut w, 10..20);
        assert_eq!(records(&path), lines(16..20));
        assert_eq!(records(&rotated(&path, 1)), lines(12..16));
        assert_eq!(records(&rotated(&path, 2)), lines(8..12));
        assert!(!rotated(&path, 3).exists());
        for p in [path.clone(), rotated(&path, 1), rotated(&path, 2)] {
            assert!(fs::metadata(&p).unwrap().len() <= 4 * REC3);
        }
        // Reopening counts what is already there.
        drop(w);
        let mut w = LogWriter::open(&path, 4 * REC3, 3).unwrap();
        write_lines(&mut w, 20..21);
        assert_eq!(records(&path), lines(20..21));
        assert_eq!(records(&rotated(&path, 1)), lines(16..20));
        assert_eq!(read(&path, &ReadOptions::default()).0.lines().count(), 9);

        // One file: rotating starts afresh.
        let one = dir.path().join("one.log");
        let mut w = LogWriter::open(&one, 4 * REC3, 1).unwrap();
        write_lines(&mut w, 0..10);
        assert_eq!(records(&one), lines(8..10));
        assert!(!rotated(&one, 1).exists());

        // No cap.
        let big = dir.path().join("big.log");
        let mut w = LogWriter::open(&big, 0, 3).unwrap();
        write_lines(&mut w, 0..50);
        assert_eq!(records(&big), lines(0..50));
        assert!(!rotated(&big, 1).exists());
    }

    #[test]
    fn errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plain");
        fs::write(&file, "x").unwrap();
        let e = LogWriter::open(&file.join("ctr.log"), 0, 1).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains(&*file.to_string_lossy()), "{msg}");
        assert!(msg.contains("os error 17"), "{msg}"); // EEXIST from mkdir
    }

    fn write_raw(path: &Path, lines: &[&str]) {
        let mut text = String::new();
        for l in lines {
            text.push_str(l);
            text.push('\n');
        }
        fs::write(path, text).unwrap();
    }

    const T1: &str = "2026-11-29T12:00:01.000000000Z";
    const T2: &str = "2026-11-29T12:00:02.000000000Z";
    const T3: &str = "2026-11-29T12:00:03.000000000Z";

    #[test]
    fn reader_joins_partials_per_stream() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ctr.log");
        write_raw(
            &path,
            &[
                &format!("{T1} stdout P hel"),
                &format!("{T1} stderr P warn"),
                &format!("{T2} stderr F ing: x"),
                &format!("{T2} stdout P lo "),
                "garbage",
                &format!("{T2} stdin F bad stream"),
                "2026-11-29T25:00:00.000000000Z stdout F bad time",
                &format!("{T2} stdout"),
                &format!("{T2} stdout  F empty tag"),
                &format!("{T3} stdout F world"),
                &format!("{T3} stderr F"),
                &format!("{T3} stdout P:X more"),
                &format!("{T3} stdout F !"),
                &format!("{T3} stdout P unfinished"),
            ],
        );
        let (out, err) = read(&path, &ReadOptions::default());
        assert_eq!(out, "hello world\nmore!\nunfinished");
        assert_eq!(err, "warning: x\n\n");

        let opts = ReadOptions {
            timestamps: true,
            ..Default::default()
        };
        let (out, err) = read(&path, &opts);
        assert_eq!(
            out,
            format!("{T1} hello world\n{T3} more!\n{T3} unfinished")
        );
        assert_eq!(err, format!("{T1} warning: x\n{T3} \n"));

        // A missing log is an empty one.
        assert_eq!(
            read(&dir.path().join("none.log"), &opts),
            (String::new(), String::new())
        );
    }

    #[test]
    fn reader_goes_through_rotated_files_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ctr.log");
        let mut w = LogWriter::open(&path, 4 * REC3, 6).unwrap();
        write_lines(&mut w, 0..14);
        // A line split across a rotation.
        w.write(ERR, &[b'e'; PARTIAL_CAP + 1]).unwrap();
        w.write(ERR, b"\n").unwrap();
        write_lines(&mut w, 14..15);
        // [l00..l03] [l04..l07] [l08..l11] [l12 l13] [P eee…] [F e, l14]
        assert!(rotated(&path, 5).exists());
        assert_eq!(records(&rotated(&path, 1)).len(), 1);
        let (out, err) = read(&path, &ReadOptions::default());
        let want: String = (0..15).map(|i| format!("l{i:02}\n")).collect();
        assert_eq!(out, want);
        assert_eq!(err, format!("{}\n", "e".repeat(PARTIAL_CAP + 1)));
    }

    #[test]
    fn tail_counts_lines_across_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ctr.log");
        let mut w = LogWriter::open(&path, 4 * REC3, 5).unwrap();
        write_lines(&mut w, 0..10);
        // Current: l08 l09; .1: l04..l07; .2: l00..l03.
        assert_eq!(records(&path), lines(8..10));
        let want =
            |r: std::ops::Range<usize>| -> String { r.map(|i| format!("l{i:02}\n")).collect() };
        assert_eq!(read(&path, &tail(0)).0, "");
        assert_eq!(read(&path, &tail(1)).0, want(9..10));
        assert_eq!(read(&path, &tail(3)).0, want(7..10));
        assert_eq!(read(&path, &tail(6)).0, want(4..10));
        assert_eq!(read(&path, &tail(7)).0, want(3..10));
        assert_eq!(read(&path, &tail(10)).0, want(0..10));
        assert_eq!(read(&path, &tail(1000)).0, want(0..10));

        // P chunks of a line sit before the other stream's lines and in an older file.
        let path = dir.path().join("mixed.log");
        write_raw(
            &rotated(&path, 1),
            &[
                &format!("{T1} stdout F o1"),
                &format!("{T1} stdout P x-"),
                &format!("{T1} stderr F e1"),
            ],
        );
        write_raw(
            &path,
            &[
                &format!("{T2} stdout P y-"),
                &format!("{T2} stderr F e2"),
                &format!("{T3} stdout F z"),
                &format!("{T3} stdout P tail"),
            ],
        );
        let both = |n| {
            let (o, e) = read(&path, &tail(n));
            format!("{o}|{e}")
        };
        assert_eq!(both(0), "tail|");
        assert_eq!(both(1), "x-y-z\ntail|");
        assert_eq!(both(2), "x-y-z\ntail|e2\n");
        assert_eq!(both(3), "x-y-z\ntail|e1\ne2\n");
        assert_eq!(both(4), "o1\nx-y-z\ntail|e1\ne2\n");
        assert_eq!(both(5), both(4));
    }

    /// A `Write` shared between the following reader and the test.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Shared {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }

        /// Waits (at most 20 s) until the reader has printed `s`.
        fn wait_for(&self, s: &str) {
            let deadline = Instant::now() + Duration::from_secs(20);
            while !self.text().contains(s) {
                assert!(
                    Instant::now() < deadline,
                    "reader never printed {s:?}; got {:?}",
                    self.text()
                );
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }

    #[test]
    fn follow_picks_up_appends_and_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ctr.log");
        // 8 records of a 3-byte line per file.
        let mut w = LogWriter::open(&path, 8 * REC3, 3).unwrap();
        write_lines(&mut w, 0..2);

        let (out, err) = (Shared::default(), Shared::default());
        let running = Arc::new(AtomicBool::new(true));
        let (done_tx, done_rx) = mpsc::channel();
        {
            let (mut out, mut err, running, path) =
                (out.clone(), err.clone(), running.clone(), path.clone());
            std::thread::spawn(move || {
                let opts = ReadOptions {
                    follow: true,
                    tail: Some(1),
                    ..Default::default()
                };
                let r = print(&path, &opts, &mut out, &mut err, &mut || {
                    running.load(Ordering::SeqCst)
                });
                let _ = done_tx.send(r);
            });
        }
        out.wait_for("l01\n");
        write_lines(&mut w, 2..5);
        w.write(ERR, b"e0\n").unwrap();
        out.wait_for("l04\n");
        // 6 records so far: this rotates once, after l06.
        write_lines(&mut w, 5..12);
        assert!(rotated(&path, 1).exists() && !rotated(&path, 2).exists());
        out.wait_for("l11\n");
        // Rotate again, between the two records of a line (P written by a flush, then F).
        write_lines(&mut w, 12..14);
        w.write(OUT, b"spl").unwrap();
        w.flush().unwrap();
        assert!(!rotated(&path, 2).exists());
        w.write(OUT, b"it\n").unwrap();
        assert!(rotated(&path, 2).exists());
        assert_eq!(records(&path), [f(OUT, "it")]);
        write_lines(&mut w, 14..15);
        out.wait_for("l14\n");
        w.write(OUT, b"bye").unwrap();
        w.flush().unwrap();
        running.store(false, Ordering::SeqCst);

        let r = done_rx
            .recv_timeout(Duration::from_secs(20))
            .expect("reader did not stop after the container exited");
        r.unwrap();
        let mut want: String = (1..14).map(|i| format!("l{i:02}\n")).collect();
        want.push_str("split\nl14\nbye");
        assert_eq!(out.text(), want);
        assert_eq!(err.text(), "e0\n");
    }

    #[test]
    fn follow_stops_when_the_container_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ctr.log");
        let mut w = LogWriter::open(&path, 0, 1).unwrap();
        w.write(OUT, b"a\nbcdefghijklmnop\n").unwrap();
        // A truncated file is read again from the start.
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let mut calls = 0;
        let opts = ReadOptions {
            follow: true,
            ..Default::default()
        };
        let truncate_path = path.clone();
        print(&path, &opts, &mut out, &mut err, &mut || {
            calls += 1;
            if calls == 2 {
                fs::write(&truncate_path, format!("{T1} stdout F again\n")).unwrap();
            }
            calls < 3
        })
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "a\nbcdefghijklmnop\nagain\n"
        );
    }
}
