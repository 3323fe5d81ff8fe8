//! Content digests (`sha256:<hex>`) and the hashing adapters that verify data as it streams.
//!
//! Parsing is strict: only sha256 with 64 lower-case hex digits is accepted, so a digest from the
//! network can be used in a file name or URL without further checks. Nothing here does I/O of its
//! own; `HashingReader` only observes the bytes its caller pulls through it.

use sha2::{Digest as _, Sha256};
use std::fmt;
use std::io::{self, Read};

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest {
    hex: String,
}

impl Digest {
    /// Parses `sha256:<64 hex>`. The error says what is wrong with the text.
    pub fn parse(text: &str) -> Result<Digest, String> {
        let Some((algo, hex)) = text.split_once(':') else {
            return Err(format!("{text:?} is not a digest (expected sha256:<hex>)"));
        };
        if algo != "sha256" {
            return Err(format!(
                "digest algorithm {algo:?} is not supported (only sha256)"
            ));
        }
        if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(format!(
                "{text:?} is not a valid sha256 digest (expected 64 lower-case hex digits)"
            ));
        }
        Ok(Digest {
            hex: hex.to_string(),
        })
    }

    pub fn of_bytes(bytes: &[u8]) -> Digest {
        Digest::from_hasher(Sha256::new_with_prefix(bytes))
    }

    fn from_hasher(hasher: Sha256) -> Digest {
        let sum = hasher.finalize();
        let mut hex = String::with_capacity(64);
        for byte in sum {
            hex.push(char::from(b"0123456789abcdef"[usize::from(byte >> 4)]));
            hex.push(char::from(b"0123456789abcdef"[usize::from(byte & 0xf)]));
        }
        Digest { hex }
    }

    /// The 64 hex digits, without the algorithm.
    pub fn hex(&self) -> &str {
        &self.hex
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

/// A running sha256 over bytes handed to it piecewise.
#[derive(Default, Clone)]
pub struct Hasher {
    inner: Sha256,
    len: u64,
}

impl Hasher {
    pub fn update(&mut self, bytes: &[u8]) {
        self.inner.update(bytes);
        self.len += bytes.len() as u64;
    }

    pub fn bytes(&self) -> u64 {
        self.len
    }

    pub fn finish(self) -> Digest {
        Digest::from_hasher(self.inner)
    }
}

/// Hashes every byte read through it.
pub struct HashingReader<R> {
    inner: R,
    hasher: Hasher,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> HashingReader<R> {
        HashingReader {
            inner,
            hasher: Hasher::default(),
        }
    }

    /// The digest and length of what was read so far, reading on possible.
    pub fn so_far(&self) -> (Digest, u64) {
        let len = self.hasher.bytes();
        (self.hasher.clone().finish(), len)
    }

    /// The digest and length of what was read so far.
    pub fn finish(self) -> (Digest, u64) {
        let len = self.hasher.bytes();
        (self.hasher.finish(), len)
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_valid_sha256() {
        let text = format!("sha256:{}", "ab".repeat(32));
        assert_eq!(Digest::parse(&text).unwrap().to_string(), text);
    }

    #[test]
    fn rejects_other_algorithms_and_bad_hex() {
        assert!(Digest::parse(&format!("sha512:{}", "a".repeat(128)))
            .unwrap_err()
            .contains("not supported"));
        assert!(Digest::parse(&format!("sha256:{}", "A".repeat(64))).is_err());
        assert!(Digest::parse("sha256:abc").is_err());
        assert!(Digest::parse("sha256").is_err());
        assert!(Digest::parse(&format!("sha256:{}/..", "a".repeat(62))).is_err());
    }

    #[test]
    fn hashing_reader_matches_of_bytes() {
        let data = b"hello layer".repeat(1000);
        let mut reader = HashingReader::new(&data[..]);
        io::copy(&mut reader, &mut io::sink()).unwrap();
        let (digest, len) = reader.finish();
        assert_eq!(len, data.len() as u64);
        assert_eq!(digest, Digest::of_bytes(&data));
        assert_eq!(
            Digest::of_bytes(b"").hex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
