//! Content digests, and readers that verify a stream against its descriptor while it flows.

use std::fmt;
use std::io::{self, Read};

use sha2::{Digest as _, Sha256};

/// A validated `sha256:<64 hex>` digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(String);

/// Why a digest string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid digest {0:?}: only sha256 with 64 lowercase hex digits is supported")]
pub struct BadDigest(pub String);

impl Digest {
    pub fn parse(s: &str) -> Result<Self, BadDigest> {
        let ok = s.strip_prefix("sha256:").is_some_and(|h| {
            h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        });
        if ok {
            Ok(Self(s.to_string()))
        } else {
            Err(BadDigest(s.to_string()))
        }
    }

    /// The digest of `data`.
    pub fn of(data: &[u8]) -> Self {
        Self::from_hasher(Sha256::new_with_prefix(data))
    }

    fn from_hasher(h: Sha256) -> Self {
        let mut s = String::with_capacity(71);
        s.push_str("sha256:");
        for b in h.finalize() {
            s.push(char::from(HEX[usize::from(b >> 4)]));
            s.push(char::from(HEX[usize::from(b & 15)]));
        }
        Self(s)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The 64 hex digits (safe as a file name: validated on construction).
    pub fn hex(&self) -> &str {
        &self.0[7..]
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Hashes everything read through it.
#[derive(Debug)]
pub struct HashReader<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
}

impl<R: Read> HashReader<R> {
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    /// Bytes read so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Reads the rest of the stream (hashing it) and returns the digest and total length.
    pub fn finish(mut self) -> io::Result<(Digest, u64)> {
        io::copy(&mut self, &mut io::sink())?;
        Ok((Digest::from_hasher(self.hasher), self.count))
    }

    pub fn inner_mut(&mut self) -> &mut R {
        &mut self.inner
    }
}

impl<R: Read> Read for HashReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

/// Why a stream did not match its descriptor.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("digest mismatch: expected {expected}, got {actual}")]
    Digest { expected: Digest, actual: Digest },
    #[error("size mismatch: descriptor says {expected} bytes, got {actual}")]
    Short { expected: u64, actual: u64 },
    #[error("size mismatch: more than the {expected} bytes the descriptor declares")]
    TooLong { expected: u64 },
    #[error("reading the blob")]
    Io(#[from] io::Error),
}

/// Reads exactly the `size` bytes a descriptor declares, hashing them; refuses a longer body
/// as soon as it shows up and checks the digest at the end ([`VerifyReader::finish`]).
#[derive(Debug)]
pub struct VerifyReader<R> {
    inner: HashReader<io::Take<R>>,
    expected: Digest,
    size: u64,
}

impl<R: Read> VerifyReader<R> {
    pub fn new(inner: R, expected: Digest, size: u64) -> Self {
        // One byte more than declared, so an overlong body is seen rather than silently cut.
        Self {
            inner: HashReader::new(inner.take(size.saturating_add(1))),
            expected,
            size,
        }
    }

    /// Drains the rest of the stream and checks size and digest.
    pub fn finish(self) -> Result<(), VerifyError> {
        let (size, expected) = (self.size, self.expected.clone());
        let (actual, count) = self.inner.finish()?;
        if count > size {
            return Err(VerifyError::TooLong { expected: size });
        }
        if count < size {
            return Err(VerifyError::Short {
                expected: size,
                actual: count,
            });
        }
        if actual != expected {
            return Err(VerifyError::Digest { expected, actual });
        }
        Ok(())
    }
}

impl<R: Read> Read for VerifyReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if self.inner.count() > self.size {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "body is longer than the {} bytes its descriptor declares",
                    self.size
                ),
            ));
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn parse_and_hash() {
        assert_eq!(Digest::of(b"").as_str(), EMPTY);
        assert_eq!(Digest::parse(EMPTY).unwrap().hex().len(), 64);
        for bad in [
            "",
            "sha256:",
            "sha512:00",
            "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
            "sha256:../../etc",
        ] {
            assert!(Digest::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn verify_reader_accepts_exact_and_refuses_everything_else() {
        let data = b"hello world";
        let d = Digest::of(data);
        let ok = |body: &[u8], size| {
            let mut r = VerifyReader::new(body, d.clone(), size);
            let mut sink = Vec::new();
            r.read_to_end(&mut sink)
                .map_err(VerifyError::Io)
                .and_then(|_| r.finish())
        };
        ok(data, 11).unwrap();
        assert!(matches!(
            ok(b"hello worle", 11),
            Err(VerifyError::Digest { .. })
        ));
        assert!(matches!(ok(b"hello", 11), Err(VerifyError::Short { .. })));
        assert!(
            ok(b"hello world!!", 11).is_err(),
            "an overlong body is refused"
        );
        // finish() alone (without reading) still drains and judges.
        let r = VerifyReader::new(&b"hello world and more"[..], d.clone(), 11);
        assert!(matches!(r.finish(), Err(VerifyError::TooLong { .. })));
    }
}
