//! The blob cache (`--cache-dir`, `DOCKERSAVE_CACHE`): verified blobs stored by digest as
//! `blobs/sha256/<hex>`, reused by later pulls.
//!
//! An entry is written under a temporary name while its blob streams through the layer pipeline,
//! and renamed to its digest only after the pipeline has verified it, so a killed process or a
//! corrupt download never leaves a bad entry under a digest name. Entries are hashed again before
//! use; a corrupted one is removed with a warning and the blob is fetched again. The cache never
//! decides what to fetch: `pull` asks it first.

use crate::digest::{Digest, HashingReader};
use crate::error::Error;
use crate::partial;
use crate::progress::Progress;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub struct Cache {
    blobs: PathBuf,
    progress: Arc<Progress>,
}

impl Cache {
    /// Opens (creating) the cache at `dir`, clearing temporary files of dead processes.
    pub fn open(dir: &Path, progress: Arc<Progress>) -> Result<Cache, Error> {
        let blobs = dir.join("blobs").join("sha256");
        fs::create_dir_all(&blobs).map_err(|e| Error::io(&blobs, e))?;
        partial::remove_stale_partials(&blobs);
        Ok(Cache { blobs, progress })
    }

    fn path(&self, digest: &Digest) -> PathBuf {
        self.blobs.join(digest.hex())
    }

    /// Whether a blob of `size` bytes is stored for `digest`, by its length alone (`get`
    /// verifies): enough to decide what to download ahead.
    pub fn holds(&self, digest: &Digest, size: u64) -> bool {
        fs::metadata(self.path(digest)).is_ok_and(|m| m.len() == size)
    }

    /// The cached blob, after checking it still hashes to `digest` and has `size` bytes.
    pub fn get(&self, digest: &Digest, size: u64) -> Option<File> {
        let path = self.path(digest);
        let file = File::open(&path).ok()?;
        let mut hashing = HashingReader::new(&file);
        let verified = io::copy(&mut hashing, &mut io::sink()).is_ok()
            && hashing.finish() == (digest.clone(), size);
        if !verified {
            self.progress.warn(&format!(
                "the cache entry {} is corrupt; removing it and downloading the blob again",
                path.display()
            ));
            let _ = fs::remove_file(&path);
            return None;
        }
        let mut file = file;
        io::Seek::rewind(&mut file).ok()?;
        Some(file)
    }

    /// The cached blob's bytes, verified, for small blobs (configs).
    pub fn get_bytes(&self, digest: &Digest, size: u64) -> Option<Vec<u8>> {
        let mut bytes = Vec::new();
        self.get(digest, size)?.read_to_end(&mut bytes).ok()?;
        Some(bytes)
    }

    /// Stores bytes the caller has verified against `digest`.
    pub fn put_bytes(&self, digest: &Digest, bytes: &[u8]) -> Result<(), Error> {
        let mut entry = self.entry(digest)?;
        entry
            .write_all(bytes)
            .map_err(|e| Error::io(&entry.temp, e))?;
        entry.commit()
    }

    /// Starts an entry for `digest`; it appears under that name only on `commit`.
    pub fn entry(&self, digest: &Digest) -> Result<Entry, Error> {
        let dest = self.path(digest);
        let temp = partial::temp_name(&dest);
        let file = File::create(&temp).map_err(|e| Error::io(&temp, e))?;
        Ok(Entry {
            _interrupt: partial::on_interrupt(&temp, partial::Undo::Remove),
            file: Some(file),
            temp,
            dest,
            progress: self.progress.clone(),
        })
    }
}

/// A cache entry being written.
pub struct Entry {
    file: Option<File>,
    temp: PathBuf,
    dest: PathBuf,
    _interrupt: partial::OnInterrupt,
    progress: Arc<Progress>,
}

impl Entry {
    /// Makes the entry durable and visible under its digest.
    pub fn commit(mut self) -> Result<(), Error> {
        if let Some(file) = self.file.take() {
            file.sync_all().map_err(|e| Error::io(&self.temp, e))?;
        }
        fs::rename(&self.temp, &self.dest).map_err(|e| Error::io(&self.dest, e))
    }
}

impl Write for Entry {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.file {
            Some(file) => file.write(buf),
            None => Err(io::Error::other("cache entry already committed")),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for Entry {
    fn drop(&mut self) {
        if self.file.is_some() {
            let _ = fs::remove_file(&self.temp);
        }
    }
}

/// Runs `use_blob` over a blob read from `body` while copying it into `cache` (when there is
/// one); the copy is kept under `digest` only if `use_blob` succeeded — it is what verifies
/// the bytes — and every byte reached the entry. The one way blobs enter the cache as they
/// stream.
pub fn filling<T>(
    cache: Option<&Cache>,
    digest: &Digest,
    body: &mut dyn Read,
    use_blob: impl FnOnce(&mut dyn Read) -> Result<T, Error>,
) -> Result<T, Error> {
    let Some(cache) = cache else {
        return use_blob(body);
    };
    let mut entry = cache.entry(digest)?;
    let mut tee = Tee::new(body, &mut entry);
    let result = use_blob(&mut tee)?;
    if tee.complete() {
        entry.commit()?;
    }
    Ok(result)
}

/// Copies every byte read through it into a cache entry. If the cache cannot be written (disk
/// full), the pull goes on without it, with a warning.
struct Tee<'a, R> {
    inner: R,
    entry: &'a mut Entry,
    failed: bool,
}

impl<'a, R: Read> Tee<'a, R> {
    fn new(inner: R, entry: &'a mut Entry) -> Tee<'a, R> {
        Tee {
            inner,
            entry,
            failed: false,
        }
    }

    /// Whether every byte reached the entry.
    fn complete(&self) -> bool {
        !self.failed
    }
}

impl<R: Read> Read for Tee<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if !self.failed {
            if let Err(e) = self.entry.write_all(&buf[..n]) {
                self.entry.progress.warn(&format!(
                    "cannot write the cache entry {} ({e}); going on without caching it",
                    self.entry.temp.display()
                ));
                self.failed = true;
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::Verbosity;

    fn quiet() -> Arc<Progress> {
        Arc::new(Progress::with(Verbosity::Quiet, false))
    }

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("dockersave-cache-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn stores_verifies_and_discards_corrupt_entries() {
        let dir = scratch("roundtrip");
        let cache = Cache::open(&dir, quiet()).unwrap();
        let data = b"blob bytes";
        let digest = Digest::of_bytes(data);
        assert!(cache.get(&digest, 10).is_none());
        cache.put_bytes(&digest, data).unwrap();
        assert_eq!(cache.get_bytes(&digest, 10).unwrap(), data);
        assert!(
            cache.get(&digest, 11).is_none(),
            "a size mismatch is a corrupt entry"
        );
        cache.put_bytes(&digest, b"not the blob").unwrap();
        assert!(cache.get(&digest, 10).is_none());
        assert!(
            !cache.path(&digest).exists(),
            "the corrupt entry was removed"
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn uncommitted_entries_leave_nothing() {
        let dir = scratch("uncommitted");
        let cache = Cache::open(&dir, quiet()).unwrap();
        let digest = Digest::of_bytes(b"x");
        {
            let mut entry = cache.entry(&digest).unwrap();
            let mut tee = Tee::new(&b"x"[..], &mut entry);
            io::copy(&mut tee, &mut io::sink()).unwrap();
            assert!(tee.complete());
        }
        assert_eq!(fs::read_dir(&cache.blobs).unwrap().count(), 0);
        fs::remove_dir_all(&dir).unwrap();
    }
}
