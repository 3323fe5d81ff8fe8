//! One layer, end to end: blob stream → sha256 of the blob → inflate → sha256 of the tar (the
//! diff ID) → a file, through fixed buffers whatever the layer's size.
//!
//! The pipeline is where verification happens for layers: it refuses a blob whose size or digest
//! differs from the manifest's descriptor, or whose tar differs from the config's diff ID. It does
//! not know HTTP or the archive format; it reads a `Read` and writes a `Write`.

use crate::decompress::Decompressor;
use crate::digest::{Digest, Hasher, HashingReader};
use crate::error::Error;
use crate::manifest::Descriptor;
use std::io::{self, Read, Write};
use std::path::Path;

const BUFFER: usize = 64 * 1024;

/// What a layer turned into.
pub struct LayerStats {
    pub compressed: u64,
    pub uncompressed: u64,
}

/// Where a layer comes from and goes to, for error messages.
pub struct LayerLabel<'a> {
    /// e.g. "layer 2/3 (sha256:…)".
    pub name: &'a str,
    pub host: &'a str,
    pub out_path: &'a Path,
}

/// Streams `body` (the blob described by `blob`) into `out` as an uncompressed tar, verifying the
/// blob against `blob` and the tar against `diff_id`. On error `out` holds garbage: the caller
/// removes it.
pub fn unpack_layer(
    body: &mut (dyn Read + Send),
    blob: &Descriptor,
    diff_id: &Digest,
    out: &mut dyn Write,
    label: &LayerLabel,
) -> Result<LayerStats, Error> {
    let mut layer = LayerReader::new(body, blob, diff_id, label);
    let mut buf = vec![0u8; BUFFER];
    loop {
        let n = match layer.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => return Err(layer.explain(Error::io(label.out_path, e))),
        };
        out.write_all(&buf[..n])
            .map_err(|e| Error::io(label.out_path, e))?;
    }
    layer.finish()
}

/// A layer blob read as its uncompressed tar, hashed on both sides as it passes: for consumers
/// that pull (the tar reader of `--rootfs` and `--flatten`). Nothing it yields is trusted until
/// `finish` has compared both digests; a consumer that fails on the way asks `explain`, which
/// prefers a digest mismatch (the real cause when bytes were corrupted) to the symptom.
pub struct LayerReader<'a> {
    layer: Decompressor<HashingReader<io::Take<&'a mut (dyn Read + Send)>>>,
    tar: Hasher,
    blob: &'a Descriptor,
    diff_id: &'a Digest,
    label: &'a LayerLabel<'a>,
    /// The precise error behind an `io::Error` this reader returned.
    failure: Option<Error>,
}

impl<'a> LayerReader<'a> {
    pub fn new(
        body: &'a mut (dyn Read + Send),
        blob: &'a Descriptor,
        diff_id: &'a Digest,
        label: &'a LayerLabel<'a>,
    ) -> LayerReader<'a> {
        LayerReader {
            // One byte more than promised, so an over-long blob is noticed, not cut to size.
            layer: Decompressor::new(HashingReader::new(body.take(blob.size.saturating_add(1)))),
            tar: Hasher::default(),
            blob,
            diff_id,
            label,
            failure: None,
        }
    }

    /// Reads whatever the consumer left (the tar's trailing zero blocks count towards the diff
    /// ID) and checks the blob's size and digest and the tar's diff ID.
    pub fn finish(mut self) -> Result<LayerStats, Error> {
        if let Some(failure) = self.failure.take() {
            return Err(failure);
        }
        let mut buf = vec![0u8; BUFFER];
        loop {
            match self.read(&mut buf) {
                Ok(0) => break,
                Ok(_) => {}
                Err(_) => return Err(self.failure.take().unwrap_or_else(|| self.broken("?"))),
            }
        }
        let label = self.label;
        let mut hashing = self.layer.into_inner();
        // Anything the decompressor left unread (cannot happen for valid data) still counts.
        io::copy(&mut hashing, &mut io::sink()).map_err(|e| Error::Network {
            host: label.host.to_string(),
            detail: format!("download of {} broke off: {e}", label.name),
        })?;
        let compressed = check_blob(hashing.finish(), self.blob, label)?;
        let uncompressed = self.tar.bytes();
        let actual = self.tar.finish();
        if actual != *self.diff_id {
            return Err(Error::DigestMismatch {
                what: format!("the uncompressed {}", label.name),
                expected: self.diff_id.to_string(),
                actual: actual.to_string(),
            });
        }
        Ok(LayerStats {
            compressed,
            uncompressed,
        })
    }

    /// The error to report when the consumer failed with `consumer`: this reader's own failure,
    /// else a digest mismatch found by reading the rest of the layer, else `consumer`.
    pub fn explain(mut self, consumer: Error) -> Error {
        if let Some(failure) = self.failure.take() {
            return failure;
        }
        match self.finish() {
            Err(e @ Error::DigestMismatch { .. }) | Err(e @ Error::Network { .. }) => e,
            Err(e @ Error::Unsupported(_)) | Err(e @ Error::Invalid { .. }) => e,
            _ => consumer,
        }
    }

    fn broken(&self, cause: &str) -> Error {
        Error::Network {
            host: self.label.host.to_string(),
            detail: format!("download of {} broke off: {cause}", self.label.name),
        }
    }

    fn fail(&mut self, error: Error) -> io::Error {
        let e = io::Error::other(error.to_string());
        self.failure = Some(error);
        e
    }
}

impl Read for LayerReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.failure.is_some() {
            return Err(io::Error::other("the layer already failed"));
        }
        if crate::interrupt::requested() {
            return Err(io::Error::other("interrupted"));
        }
        loop {
            return match self.layer.read(buf) {
                Ok(n) => {
                    self.tar.update(&buf[..n]);
                    Ok(n)
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                    // Corruption usually breaks the gzip stream before the digest can be
                    // compared; read the rest so the user hears "digest mismatch" when that
                    // is the cause.
                    let hashing = self.layer.get_mut();
                    let error = match io::copy(hashing, &mut io::sink()) {
                        Ok(_) => check_blob(hashing.so_far(), self.blob, self.label).err(),
                        Err(_) => None,
                    };
                    Err(self.fail(error.unwrap_or_else(|| Error::Invalid {
                        what: self.label.name.to_string(),
                        detail: e.to_string(),
                    })))
                }
                Err(e) if e.kind() == io::ErrorKind::Unsupported => {
                    let error = Error::Unsupported(format!("{}: {e}", self.label.name));
                    Err(self.fail(error))
                }
                Err(e) => {
                    let error = self.broken(&e.to_string());
                    Err(self.fail(error))
                }
            };
        }
    }
}

/// Writes every byte read through it to `copy` as well; a failed write fails the read.
pub struct CopyingReader<R, W> {
    inner: R,
    copy: W,
}

impl<R: Read, W: Write> CopyingReader<R, W> {
    pub fn new(inner: R, copy: W) -> CopyingReader<R, W> {
        CopyingReader { inner, copy }
    }

    /// Reads (and copies) what is left, e.g. the end-of-archive blocks a tar reader stops
    /// before, so the copy is whole.
    pub fn drain(&mut self) -> io::Result<()> {
        io::copy(self, &mut io::sink()).map(|_| ())
    }
}

impl<R: Read, W: Write> Read for CopyingReader<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.copy.write_all(&buf[..n])?;
        Ok(n)
    }
}

/// Streams `body` (the blob described by `blob`) into `out` as it is, verifying its size and
/// digest: an artifact's file. On error `out` holds garbage: the caller removes it (or, for
/// standard output, says that what went out is not to be used).
#[cfg(feature = "artifact")]
pub fn copy_blob(
    body: &mut dyn Read,
    blob: &Descriptor,
    out: &mut dyn Write,
    label: &LayerLabel,
) -> Result<u64, Error> {
    let mut hashing = HashingReader::new(body.take(blob.size.saturating_add(1)));
    let mut buf = vec![0u8; BUFFER];
    loop {
        let n = match hashing.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                return Err(Error::Network {
                    host: label.host.to_string(),
                    detail: format!("download of {} broke off: {e}", label.name),
                })
            }
        };
        out.write_all(&buf[..n])
            .map_err(|e| Error::io(label.out_path, e))?;
    }
    check_blob(hashing.finish(), blob, label)
}

fn check_blob(
    (digest, len): (Digest, u64),
    blob: &Descriptor,
    label: &LayerLabel,
) -> Result<u64, Error> {
    if len != blob.size {
        return Err(Error::DigestMismatch {
            what: label.name.to_string(),
            expected: format!("{} bytes", blob.size),
            actual: format!(
                "{len}{} bytes",
                if len > blob.size { " or more" } else { "" }
            ),
        });
    }
    if digest != blob.digest {
        return Err(Error::DigestMismatch {
            what: label.name.to_string(),
            expected: blob.digest.to_string(),
            actual: digest.to_string(),
        });
    }
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3];
        out.extend(miniz_oxide::deflate::compress_to_vec(data, 6));
        out.extend_from_slice(&[0, 0, 0, 0]);
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out
    }

    fn run(blob_bytes: &[u8], blob: &Descriptor, diff_id: &Digest) -> Result<Vec<u8>, Error> {
        let path = PathBuf::from("layer.tar");
        let label = LayerLabel {
            name: "layer 1/1",
            host: "test",
            out_path: &path,
        };
        let mut out = Vec::new();
        unpack_layer(&mut &blob_bytes[..], blob, diff_id, &mut out, &label).map(|_| out)
    }

    fn descriptor(bytes: &[u8]) -> Descriptor {
        Descriptor {
            media_type: String::new(),
            digest: Digest::of_bytes(bytes),
            size: bytes.len() as u64,
        }
    }

    #[test]
    fn verifies_blob_and_diff_id() {
        let tar = vec![7u8; 200_000];
        let gz = gzip(&tar);
        assert_eq!(
            run(&gz, &descriptor(&gz), &Digest::of_bytes(&tar)).unwrap(),
            tar
        );
        // An uncompressed layer: blob digest and diff ID are the same.
        assert_eq!(
            run(&tar, &descriptor(&tar), &Digest::of_bytes(&tar)).unwrap(),
            tar
        );
    }

    #[test]
    fn names_the_mismatch() {
        let tar = vec![7u8; 200_000];
        let gz = gzip(&tar);
        let wrong_diff = Digest::of_bytes(b"other");
        let err = run(&gz, &descriptor(&gz), &wrong_diff)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("uncompressed layer 1/1") && err.contains(&wrong_diff.to_string()),
            "{err}"
        );

        let mut flipped = gz.clone();
        let mid = flipped.len() / 2;
        flipped[mid] ^= 0x55;
        let err = run(&flipped, &descriptor(&gz), &Digest::of_bytes(&tar)).unwrap_err();
        assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");

        let err = run(
            &gz[..gz.len() - 10],
            &descriptor(&gz),
            &Digest::of_bytes(&tar),
        )
        .unwrap_err();
        assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");

        let mut longer = gz.clone();
        longer.extend_from_slice(b"extra");
        let err = run(&longer, &descriptor(&gz), &Digest::of_bytes(&tar)).unwrap_err();
        assert!(err.to_string().contains("or more bytes"), "{err}");
    }
}
