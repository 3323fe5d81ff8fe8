//! One layer into the registry: skip it when the registry has it, mount it from another
//! repository when a record says where it is, else stream it up — a plain tar gzip-compressed on
//! the way, a compressed one as it is — hashing what goes up, and close the upload with its
//! digest only after the layer's diff ID (and a claimed blob digest) checked out.
//!
//! A broken `PATCH` cannot be sent again (its bytes are gone), so the layer is read again from
//! the archive: from the byte the registry says it holds when it says so (`GET` on the
//! session), from the start of a new session otherwise. Memory stays a few fixed buffers: the
//! compressed layer is never stored anywhere but the registry.

use super::known::Known;
use crate::archived::{ArchivedLayer, Source};
use crate::decompress::Decompressor;
use crate::digest::{Digest, Hasher};
use crate::error::Error;
use crate::gzip::GzipWriter;
use crate::pipeline::CopyingReader;
use crate::progress::{Progress, Step};
use crate::registry::upload::Started;
use crate::registry::Registry;
use std::io::{self, Read, Write};
use std::sync::{Arc, Mutex};

/// gzip level for layers compressed on the way: 1, as crane does; the registry's bytes are
/// what the link carries, and level 1 keeps the CPU ahead of most links.
const LEVEL: u32 = 1;

/// A blob as the manifest names it.
#[derive(Clone)]
pub struct Pushed {
    pub digest: Digest,
    pub size: u64,
}

/// Where a layer is in the image, for messages and progress.
pub struct Slot<'a> {
    pub index: usize,
    pub count: usize,
    pub progress: &'a Progress,
}

/// Notes in the record that the registry holds `digest` for `layer`'s tar, unless it is a zstd
/// blob, which could not stand in for the gzip blob a later push's manifest names.
fn record(
    known: &Known,
    layer: &ArchivedLayer,
    digest: &Digest,
    size: u64,
    host: &str,
    here: &str,
) {
    if !layer.zstd {
        known.add(&layer.diff_id, digest, size, host, here);
    }
}

/// Makes sure the registry holds `layer` in the registry's repository and returns the blob the
/// manifest names. `mount_from` are repositories of this registry that may hold it (the
/// archive's own, when it came from here). With `exact`, the manifest that goes up names the
/// layer's own blob (the archive's original manifest): another blob of the same tar, which
/// the record may know, cannot stand in for it.
pub fn push_layer(
    registry: &Registry,
    source: &Source,
    layer: &ArchivedLayer,
    known: &Known,
    mount_from: &[String],
    exact: bool,
    slot: &Slot,
) -> Result<Pushed, Error> {
    let host = registry.host();
    let here = registry.repository();
    let mut candidates: Vec<(Digest, u64, Option<String>)> = Vec::new();
    if let Some(digest) = &layer.digest {
        candidates.push((digest.clone(), layer.size, None));
    }
    // The record names gzip blobs only (a zstd one goes up as it is and is not recorded): a
    // zstd layer can only be its own blob.
    for (digest, size, repository) in known.for_layer(&layer.diff_id, host) {
        if !layer.zstd && (!exact || layer.digest.as_ref() == Some(&digest)) {
            candidates.push((digest, size, Some(repository)));
        }
    }
    let mut checked: Vec<Digest> = Vec::new();
    for (digest, size, _) in &candidates {
        if checked.contains(digest) {
            continue;
        }
        checked.push(digest.clone());
        if let Some(found) = registry.blob_size(digest)? {
            let size = if found > 0 { found } else { *size };
            slot.progress.step(slot.index, Step::Present);
            record(known, layer, digest, size, host, here);
            return Ok(Pushed {
                digest: digest.clone(),
                size,
            });
        }
    }
    let mut session = None;
    let mut mounts = candidates.iter().flat_map(|(digest, size, recorded)| {
        let archive_repos = if layer.digest.as_ref() == Some(digest) {
            mount_from.to_vec()
        } else {
            Vec::new()
        };
        recorded
            .iter()
            .cloned()
            .chain(archive_repos)
            .filter(|r| r != here)
            .map(move |r| (digest.clone(), *size, r))
    });
    // One mount try: a refused mount opens an upload session, which the upload then uses.
    if let Some((digest, size, from)) = mounts.next() {
        match registry.start_upload(Some((&digest, &from)))? {
            Started::Mounted => {
                slot.progress.step(slot.index, Step::Present);
                slot.progress.info(&format!(
                    "layer {}/{}: mounted {} from {from}",
                    slot.index + 1,
                    slot.count,
                    short(&digest)
                ));
                record(known, layer, &digest, size, host, here);
                return Ok(Pushed { digest, size });
            }
            // Not mountable after all; the session it opened serves the upload.
            Started::Session(location) => session = Some(location),
        }
    }
    let location = match session {
        Some(location) => location,
        None => new_session(registry)?,
    };
    slot.progress.step(slot.index, Step::Uploading);
    let pushed = upload(registry, location, source, layer, slot)?;
    record(known, layer, &pushed.digest, pushed.size, host, here);
    Ok(pushed)
}

/// Uploads a small blob held in memory (the config) unless the registry has it.
pub fn push_bytes(registry: &Registry, bytes: &[u8], digest: &Digest) -> Result<(), Error> {
    if registry.blob_size(digest)?.is_some() {
        return Ok(());
    }
    let location = new_session(registry)?;
    registry.finish_upload(&location, digest, bytes)
}

fn new_session(registry: &Registry) -> Result<String, Error> {
    match registry.start_upload(None)? {
        Started::Session(location) => Ok(location),
        Started::Mounted => Err(Error::Invalid {
            what: format!("the answer of {}", registry.host()),
            detail: "it reported a mount that was not asked for".into(),
        }),
    }
}

/// The upload loop: PATCH the whole body; when it breaks, continue where the registry says it
/// is, or start a new session; then check and PUT.
fn upload(
    registry: &Registry,
    mut location: String,
    source: &Source,
    layer: &ArchivedLayer,
    slot: &Slot,
) -> Result<Pushed, Error> {
    let retries = registry.retries();
    let mut offset = 0;
    let mut attempt = 0;
    loop {
        let mut body = Body::open(source, layer, slot)?;
        body.skip(offset)?;
        let outcome = registry.patch(&location, &mut body);
        if let Some(local) = body.failed.take() {
            registry.cancel_upload(&location);
            return Err(local);
        }
        match outcome {
            Ok(next) => {
                let pushed = body.finish(layer, slot);
                return match pushed {
                    Ok(pushed) => {
                        registry.finish_upload(&next, &pushed.digest, &[])?;
                        slot.progress.finished(
                            slot.index,
                            &format!(
                                "layer {}/{}: uploaded {} ({} bytes)",
                                slot.index + 1,
                                slot.count,
                                short(&pushed.digest),
                                pushed.size
                            ),
                        );
                        Ok(pushed)
                    }
                    Err(e) => {
                        registry.cancel_upload(&next);
                        Err(e)
                    }
                };
            }
            Err(e) if attempt < retries && is_transient(&e) => {
                let wait = crate::registry::http::backoff(attempt, None, 0.5);
                attempt += 1;
                std::thread::sleep(wait);
                match registry.upload_status(&location) {
                    Ok(Some((received, next))) => {
                        offset = received;
                        location = next;
                    }
                    _ => {
                        offset = 0;
                        location = new_session(registry)?;
                    }
                }
                let (note, text) = if offset > 0 {
                    (
                        format!("resumed at byte {offset}"),
                        format!("resuming the upload at byte {offset} ({attempt}/{retries})"),
                    )
                } else {
                    (
                        "restarted".to_string(),
                        format!("the registry kept nothing; restarting the upload ({attempt}/{retries})"),
                    )
                };
                slot.progress.layer_event(
                    Some(slot.index),
                    &note,
                    &format!("layer {}/{}: {e}; {text}", slot.index + 1, slot.count),
                );
            }
            Err(e) => return Err(e),
        }
    }
}

/// Failures a new try may mend: the connection, and the registry's 5xx/429.
pub(crate) fn is_transient(error: &Error) -> bool {
    match error {
        Error::Network { .. } => true,
        Error::Http { status, .. } => *status == 429 || *status >= 500,
        _ => false,
    }
}

fn short(digest: &Digest) -> String {
    digest.hex().chars().take(12).collect()
}

/// The PATCH body: the layer read from the archive, as it goes up. A plain tar is hashed (its
/// diff ID) and gzip-compressed; a compressed one passes as it is, inflated on the side to
/// check its diff ID. Both hash what goes up (the blob digest).
struct Body<'a> {
    stream: Stream,
    /// What the compressor wrote or the copying reader passed, not yet handed out.
    staged: Staging,
    staged_at: usize,
    scratch: Box<[u8]>,
    /// sha256 of the bytes handed to the registry.
    blob: Hasher,
    /// sha256 of the layer's tar.
    diff: Hasher,
    /// A failure reading the archive, kept to tell it from a broken connection.
    failed: Option<Error>,
    slot: &'a Slot<'a>,
}

/// Both ways stage their output through a `Write` (one type for the compressor that whole-
/// archive `--gzip` already uses, and for the copying reader), so the binary carries no
/// second copy of them.
enum Stream {
    /// The tar into the gzip encoder; `None` once finished.
    Compress {
        tar: Box<dyn Read + Send>,
        gzip: Option<GzipWriter<Box<dyn Write + Send>>>,
    },
    /// The blob, copied to the staging buffer as the decompressor reads it; `ended` once the
    /// decompressor is through (what follows the last member still goes up).
    AsIs {
        inflate: Decompressor<Box<dyn Read + Send>>,
        ended: bool,
    },
}

/// A shared buffer: written by the compressor or the copying reader, emptied by `Body::read`.
#[derive(Clone, Default)]
struct Staging(Arc<Mutex<Vec<u8>>>);

impl Staging {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<u8>> {
        crate::locks::lock(&self.0)
    }
}

impl Write for Staging {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.lock().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> Body<'a> {
    fn open(source: &Source, layer: &ArchivedLayer, slot: &'a Slot<'a>) -> Result<Body<'a>, Error> {
        let reader = source.reader(&layer.entry)?;
        let staged = Staging::default();
        let stream = if layer.compressed {
            let copying: Box<dyn Read + Send> =
                Box::new(CopyingReader::new(reader, staged.clone()));
            Stream::AsIs {
                inflate: Decompressor::new(copying),
                ended: false,
            }
        } else {
            let out: Box<dyn Write + Send> = Box::new(staged.clone());
            Stream::Compress {
                tar: reader,
                gzip: Some(GzipWriter::new(out, LEVEL)),
            }
        };
        Ok(Body {
            stream,
            staged,
            staged_at: 0,
            // Small: every upload in flight holds one (the compressor gathers its own chunks).
            scratch: vec![0; 16 * 1024].into_boxed_slice(),
            blob: Hasher::default(),
            diff: Hasher::default(),
            failed: None,
            slot,
        })
    }

    /// Reads past the first `n` bytes (hashing them): the registry has them already.
    fn skip(&mut self, n: u64) -> Result<(), Error> {
        let skipped = io::copy(&mut self.take(n), &mut io::sink());
        if let Some(failed) = self.failed.take() {
            return Err(failed);
        }
        match skipped {
            Ok(k) if k == n => Ok(()),
            _ => Err(Error::Local(format!(
                "the registry holds {n} bytes of a layer that, compressed again, is shorter; its archive changed during the push"
            ))),
        }
    }

    /// The blob that went up, after checking the layer's diff ID and claimed digest.
    fn finish(self, layer: &ArchivedLayer, slot: &Slot) -> Result<Pushed, Error> {
        let size = self.blob.bytes();
        let digest = self.blob.finish();
        let tar_size = self.diff.bytes();
        let diff_id = self.diff.finish();
        let what = format!("layer {}/{} ({})", slot.index + 1, slot.count, layer.entry);
        if diff_id != layer.diff_id {
            return Err(Error::DigestMismatch {
                what: format!("{what}: its tar against the config's diff ID"),
                expected: layer.diff_id.to_string(),
                actual: format!("{diff_id} ({tar_size} bytes)"),
            });
        }
        if let Some(claimed) = &layer.digest {
            if *claimed != digest {
                return Err(Error::DigestMismatch {
                    what,
                    expected: claimed.to_string(),
                    actual: digest.to_string(),
                });
            }
        }
        Ok(Pushed { digest, size })
    }

    /// Moves the stream on by one chunk: compresses one more piece of the tar, or inflates
    /// one more piece of the blob. Returns the archive bytes read, `None` at the end.
    fn advance(&mut self) -> io::Result<Option<u64>> {
        match &mut self.stream {
            Stream::Compress { tar, gzip } => {
                let Some(encoder) = gzip else { return Ok(None) };
                let n = tar.read(&mut self.scratch)?;
                if n == 0 {
                    // The trailer is staged; the next call ends the stream.
                    if let Some(encoder) = gzip.take() {
                        encoder.finish()?;
                    }
                    return Ok(Some(0));
                }
                self.diff.update(&self.scratch[..n]);
                encoder.write_all(&self.scratch[..n])?;
                Ok(Some(n as u64))
            }
            Stream::AsIs { inflate, ended } => {
                let before = self.staged.lock().len();
                let n = if *ended {
                    // Whatever follows the last gzip member goes up too, as it is.
                    inflate.get_mut().read(&mut self.scratch)?
                } else {
                    match inflate.read(&mut self.scratch)? {
                        0 => {
                            *ended = true;
                            inflate.get_mut().read(&mut self.scratch)?
                        }
                        n => {
                            self.diff.update(&self.scratch[..n]);
                            n
                        }
                    }
                };
                let read = (self.staged.lock().len() - before) as u64;
                Ok((n > 0 || read > 0).then_some(read))
            }
        }
    }
}

impl Read for Body<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            {
                let mut staged = self.staged.lock();
                if self.staged_at < staged.len() {
                    let n = buf.len().min(staged.len() - self.staged_at);
                    buf[..n].copy_from_slice(&staged[self.staged_at..self.staged_at + n]);
                    self.staged_at += n;
                    self.blob.update(&buf[..n]);
                    return Ok(n);
                }
                staged.clear();
                self.staged_at = 0;
            }
            match self.advance() {
                Ok(None) => return Ok(0),
                Ok(Some(read)) => self.slot.progress.bytes(self.slot.index, read),
                Err(e) => {
                    self.failed = Some(Error::Local(format!(
                        "reading layer {}/{} from the archive: {e}",
                        self.slot.index + 1,
                        self.slot.count
                    )));
                    return Err(e);
                }
            }
        }
    }
}
