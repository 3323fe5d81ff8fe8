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
    body: impl Read,
    blob: &Descriptor,
    diff_id: &Digest,
    out: &mut impl Write,
    label: &LayerLabel,
) -> Result<LayerStats, Error> {
    // One byte more than promised, so an over-long blob is noticed rather than cut to size.
    let mut layer = Decompressor::new(HashingReader::new(body.take(blob.size.saturating_add(1))));
    let mut tar = Hasher::default();
    let mut buf = vec![0u8; BUFFER];
    loop {
        let n = match layer.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                // Corruption usually breaks the gzip stream before the digest can be compared;
                // read the rest so the user hears "digest mismatch" when that is the cause.
                let mut hashing = layer.into_inner();
                if io::copy(&mut hashing, &mut io::sink()).is_ok() {
                    check_blob(hashing.finish(), blob, label)?;
                }
                return Err(Error::Invalid {
                    what: label.name.to_string(),
                    detail: e.to_string(),
                });
            }
            Err(e) if e.kind() == io::ErrorKind::Unsupported => {
                return Err(Error::Unsupported(format!("{}: {e}", label.name)));
            }
            Err(e) => {
                return Err(Error::Network {
                    host: label.host.to_string(),
                    detail: format!("download of {} broke off: {e}", label.name),
                })
            }
        };
        tar.update(&buf[..n]);
        out.write_all(&buf[..n])
            .map_err(|e| Error::io(label.out_path, e))?;
    }
    let mut hashing = layer.into_inner();
    // Anything the decompressor left unread (cannot happen for valid data) still counts.
    io::copy(&mut hashing, &mut io::sink()).map_err(|e| Error::Network {
        host: label.host.to_string(),
        detail: format!("download of {} broke off: {e}", label.name),
    })?;
    let compressed = check_blob(hashing.finish(), blob, label)?;
    let uncompressed = tar.bytes();
    let actual = tar.finish();
    if actual != *diff_id {
        return Err(Error::DigestMismatch {
            what: format!("the uncompressed {}", label.name),
            expected: diff_id.to_string(),
            actual: actual.to_string(),
        });
    }
    Ok(LayerStats {
        compressed,
        uncompressed,
    })
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
        unpack_layer(blob_bytes, blob, diff_id, &mut out, &label).map(|_| out)
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
