//! Layer downloads that the applier reads while they are still arriving.
//!
//! A worker thread streams a blob into a temporary file in the store, hashing it and enforcing
//! its declared size, resuming with a `Range` request when the connection drops. The applier
//! reads the same file through a [`TailReader`], which waits for bytes still to come and ends
//! only when the download is complete *and verified* — so a layer is inflated and applied while
//! it downloads, memory stays bounded, and nothing unverified ever counts as finished.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};

use sha2::{Digest as _, Sha256};

use crate::client::Client;
use crate::digest::Digest;
use crate::store::Store;

/// Reports download progress (per layer index).
pub trait Progress: Send + Sync {
    fn start(&self, index: usize, digest: &Digest, size: u64, cached: bool);
    fn advance(&self, index: usize, bytes: u64);
    fn finish(&self, index: usize);
}

/// A progress sink that reports nothing.
#[derive(Debug)]
pub struct Quiet;

impl Progress for Quiet {
    fn start(&self, _: usize, _: &Digest, _: u64, _: bool) {}
    fn advance(&self, _: usize, _: u64) {}
    fn finish(&self, _: usize) {}
}

#[derive(Debug, Default)]
struct State {
    /// The file being written (a second handle for reading), once the download started.
    file: Option<File>,
    written: u64,
    /// `Some(Ok)` when complete and verified; `Some(Err)` with the reason otherwise.
    done: Option<Result<(), String>>,
    /// The verified temporary file, kept for committing into the store.
    temp: Option<tempfile::NamedTempFile>,
}

/// One blob being fetched (or already in the store).
#[derive(Debug)]
pub struct Download {
    pub index: usize,
    pub digest: Digest,
    pub size: u64,
    /// Where a non-distributable layer may also be fetched from, when the registry lacks it.
    pub urls: Vec<String>,
    state: Mutex<State>,
    cond: Condvar,
}

/// How many times a dropped connection is resumed before the download fails.
const RESUMES: u32 = 5;

impl Download {
    pub fn new(index: usize, digest: Digest, size: u64, urls: Vec<String>) -> Self {
        Self {
            index,
            digest,
            size,
            urls,
            state: Mutex::new(State::default()),
            cond: Condvar::new(),
        }
    }

    /// The blob from the registry, or else from the layer's `urls`, in order.
    fn open(
        &self,
        client: &Client,
        repo: &str,
        offset: u64,
    ) -> Result<crate::client::Body, String> {
        match client.blob(repo, self.digest.as_str(), offset) {
            Err(e) if e.is_not_found() && !self.urls.is_empty() => {
                let mut failures = vec![crate::error_chain(&e)];
                for url in &self.urls {
                    match client.foreign_blob(url, offset) {
                        Ok(b) => return Ok(b),
                        Err(e) => failures.push(crate::error_chain(&e)),
                    }
                }
                Err(failures.join("; "))
            }
            other => other.map_err(|e| crate::error_chain(&e)),
        }
    }

    fn set(&self, f: impl FnOnce(&mut State)) {
        let mut s = self.state.lock().expect("download state");
        f(&mut s);
        self.cond.notify_all();
    }

    /// Fetches the blob (or opens the store's copy) and records the outcome; never panics on
    /// network or disk errors. `abort` stops it early (the pull failed elsewhere).
    pub fn run(
        &self,
        client: &Client,
        repo: &str,
        store: &Store,
        progress: &dyn Progress,
        abort: &AtomicBool,
    ) {
        if store.has_blob(&self.digest, self.size) {
            progress.start(self.index, &self.digest, self.size, true);
            let r = File::open(store.blob_path(&self.digest))
                .map_err(|e| format!("opening stored blob: {e}"));
            self.set(|s| match r {
                Ok(f) => {
                    s.file = Some(f);
                    s.written = self.size;
                    s.done = Some(Ok(()));
                }
                Err(e) => s.done = Some(Err(e)),
            });
            progress.finish(self.index);
            return;
        }
        progress.start(self.index, &self.digest, self.size, false);
        let result = self.fetch(client, repo, store, progress, abort);
        self.set(|s| s.done = Some(result.map(|temp| s.temp = Some(temp))));
        progress.finish(self.index);
    }

    fn fetch(
        &self,
        client: &Client,
        repo: &str,
        store: &Store,
        progress: &dyn Progress,
        abort: &AtomicBool,
    ) -> Result<tempfile::NamedTempFile, String> {
        let mut temp = store.temp_file().map_err(|e| crate::error_chain(&e))?;
        let reader = temp
            .reopen()
            .map_err(|e| format!("reopening download: {e}"))?;
        self.set(|s| s.file = Some(reader));
        let mut hasher = Sha256::new();
        let mut written = 0u64;
        let mut resumes = 0;
        let mut buf = vec![0u8; 256 * 1024];
        'connect: loop {
            let mut body = self.open(client, repo, written)?;
            if written > 0 && !body.partial {
                // The server ignored the range: skip what we already have.
                io::copy(&mut (&mut body).take(written), &mut io::sink())
                    .map_err(|e| format!("skipping to offset {written}: {e}"))?;
            }
            loop {
                if abort.load(Ordering::Relaxed) {
                    return Err("aborted".into());
                }
                let n = match body.read(&mut buf) {
                    Ok(0) => break 'connect,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        resumes += 1;
                        if resumes > RESUMES {
                            return Err(format!(
                                "connection failed after {written} bytes ({RESUMES} resumes): {e}"
                            ));
                        }
                        continue 'connect;
                    }
                };
                if written + n as u64 > self.size {
                    return Err(format!(
                        "blob is longer than the {} bytes its descriptor declares",
                        self.size
                    ));
                }
                temp.as_file_mut()
                    .write_all(&buf[..n])
                    .map_err(|e| format!("writing download: {e}"))?;
                hasher.update(&buf[..n]);
                written += n as u64;
                self.set(|s| s.written = written);
                progress.advance(self.index, n as u64);
            }
        }
        if written != self.size {
            return Err(format!(
                "blob is {written} bytes, its descriptor declares {}",
                self.size
            ));
        }
        let actual =
            Digest::parse(&format!("sha256:{}", hex(&hasher.finalize()))).expect("hex digest");
        if actual != self.digest {
            return Err(format!(
                "blob has digest {actual}, expected {}",
                self.digest
            ));
        }
        Ok(temp)
    }

    /// Marks a download that will not run as failed, waking its readers.
    pub fn cancel(&self) {
        self.set(|s| {
            if s.done.is_none() {
                s.done = Some(Err("aborted".into()));
            }
        });
    }

    /// A reader over the blob's bytes as they arrive.
    pub fn reader(&self) -> TailReader<'_> {
        TailReader {
            dl: self,
            file: None,
            pos: 0,
        }
    }

    /// The verified temporary file, to be moved into the store (none if the blob was stored).
    pub fn take_temp(&self) -> Option<tempfile::NamedTempFile> {
        self.state.lock().expect("download state").temp.take()
    }

    /// The failure, if the download failed.
    pub fn error(&self) -> Option<String> {
        match &self.state.lock().expect("download state").done {
            Some(Err(e)) => Some(e.clone()),
            _ => None,
        }
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Reads a [`Download`] from the start, waiting for bytes not yet written. The lock is held
/// only to learn how far the writer is, never during the read itself.
#[derive(Debug)]
pub struct TailReader<'a> {
    dl: &'a Download,
    file: Option<File>,
    pos: u64,
}

impl Read for TailReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let available = {
            let mut s = self.dl.state.lock().expect("download state");
            loop {
                if let Some(Err(e)) = &s.done {
                    return Err(io::Error::other(format!(
                        "download of {} failed: {e}",
                        self.dl.digest
                    )));
                }
                if self.file.is_none() {
                    if let Some(f) = &s.file {
                        self.file = Some(f.try_clone()?);
                    }
                }
                if self.file.is_some() && self.pos < s.written {
                    break s.written - self.pos;
                }
                if self.file.is_some() && s.done.is_some() {
                    return Ok(0); // complete and verified
                }
                s = self.dl.cond.wait(s).expect("download state");
            }
        };
        let want = buf
            .len()
            .min(usize::try_from(available).unwrap_or(usize::MAX));
        let file = self
            .file
            .as_ref()
            .expect("file is set once bytes are available");
        let n = file.read_at(&mut buf[..want], self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}
