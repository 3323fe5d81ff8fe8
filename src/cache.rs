//! The blob cache (`--cache-dir`, `DOCKERSAVE_CACHE`): verified blobs stored by digest as
//! `blobs/sha256/<hex>`, reused by later pulls.
//!
//! An entry is written under a temporary name while its blob streams through the layer pipeline,
//! and renamed to its digest only after the pipeline has verified it, so a killed process or a
//! corrupt download never leaves a bad entry under a digest name. Entries are hashed again before
//! use; a corrupted one is removed with a warning and the blob is fetched again. The cache never
//! decides what to fetch: `pull` asks it first.
//!
//! With a size limit (`--cache-max`), `prune` keeps it within the limit after a run, dropping
//! the least recently used blobs first: an entry's modification time is set to the time it was
//! last used, and a run holds a shared lock (`flock`) on every entry it has open, which the
//! pruner's exclusive try-lock respects. Only digest-named regular files of this user are ever
//! counted or removed.

use crate::digest::{Digest, HashingReader};
use crate::error::Error;
use crate::outfile::{self, Dir, NewFile};
use crate::partial;
use crate::progress::Progress;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;

pub struct Cache {
    blobs: Dir,
    progress: Arc<Progress>,
}

impl Cache {
    /// Opens (creating, private) the cache at `dir`, clearing temporary files of dead
    /// processes.
    pub fn open(dir: &Path, progress: Arc<Progress>) -> Result<Cache, Error> {
        let blobs = Dir::ensure_private(dir)?.private_dirs_at(Path::new("blobs/sha256"))?;
        partial::remove_stale_partials(blobs.path());
        Ok(Cache { blobs, progress })
    }

    /// Whether a blob of `size` bytes is stored for `digest`, by its length alone (`get`
    /// verifies): enough to decide what to download ahead.
    pub fn holds(&self, digest: &Digest, size: u64) -> bool {
        self.blobs.stat(OsStr::new(digest.hex())) == Some((libc::S_IFREG, outfile::euid(), size))
    }

    /// The entry for `digest`, opened if it is a regular file of this user; anything else
    /// there (a link, a FIFO, another user's file in a shared cache) is passed over with a
    /// warning, never read or waited on.
    fn open_entry(&self, digest: &Digest) -> Option<File> {
        match self.blobs.open_owned(OsStr::new(digest.hex())) {
            Ok(file) => {
                if let Some(file) = &file {
                    // In use: a concurrent pruner passes it over. The lock goes with the file.
                    // SAFETY: flock on a descriptor this File owns.
                    unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) };
                    // Used now: the least recently used entries are pruned first.
                    let _ = file.set_modified(std::time::SystemTime::now());
                }
                file
            }
            Err(e) => {
                self.progress
                    .warn(&format!("{e}; fetching the blob from the registry instead"));
                None
            }
        }
    }

    /// The cached blob, after checking it hashes to `digest` and has `size` bytes, rewound
    /// for the pipeline, which hashes what it reads once more: what is used is verified as
    /// it is used, whatever happens to the file in between.
    pub fn get(&self, digest: &Digest, size: u64) -> Option<File> {
        let file = self.open_entry(digest)?;
        let mut hashing = HashingReader::new((&file).take(size.saturating_add(1)));
        let verified = io::copy(&mut hashing, &mut io::sink()).is_ok()
            && hashing.finish() == (digest.clone(), size);
        if !verified {
            self.corrupt(digest);
            return None;
        }
        let mut file = file;
        io::Seek::rewind(&mut file).ok()?;
        Some(file)
    }

    /// The cached blob's bytes for small blobs (configs): read once, and those very bytes
    /// checked against `digest` and `size`.
    pub fn get_bytes(&self, digest: &Digest, size: u64) -> Option<Vec<u8>> {
        let file = self.open_entry(digest)?;
        let mut bytes = Vec::new();
        let read = file.take(size.saturating_add(1)).read_to_end(&mut bytes);
        if read.is_err() || bytes.len() as u64 != size || Digest::of_bytes(&bytes) != *digest {
            self.corrupt(digest);
            return None;
        }
        Some(bytes)
    }

    fn corrupt(&self, digest: &Digest) {
        self.progress.warn(&format!(
            "the cache entry {} is corrupt; removing it and downloading the blob again",
            self.blobs.join(digest.hex()).display()
        ));
        self.blobs.remove(OsStr::new(digest.hex()));
    }

    /// Stores bytes the caller has verified against `digest`. A failure costs the cache, not
    /// the run: it is a warning.
    pub fn put_bytes(&self, digest: &Digest, bytes: &[u8]) {
        let stored = self.entry(digest).and_then(|mut entry| {
            let shown = entry.file.path();
            entry.write_all(bytes).map_err(|e| Error::io(&shown, e))?;
            entry.commit()
        });
        if let Err(e) = stored {
            self.progress.warn(&format!(
                "cannot keep {digest} in the cache ({e}); going on without"
            ));
        }
    }

    /// Starts an entry for `digest`; it appears under that name only on `commit`.
    pub fn entry(&self, digest: &Digest) -> Result<Entry, Error> {
        let dir = Dir::open(self.blobs.path())?;
        Ok(Entry {
            file: NewFile::create_in(dir, OsStr::new(digest.hex()))?,
            progress: self.progress.clone(),
        })
    }
}

/// Keeps the cache at `dir` within `max` bytes: blobs larger than `max` go first, then the least
/// recently used, an
/// entry another run has open (its shared lock) is passed over, and `max` 0 empties it. Returns
/// the bytes kept and removed. A failure to remove one entry is a warning, not the run's.
pub fn prune(dir: &Path, max: u64, progress: &Progress) -> Result<(u64, u64), Error> {
    let blobs = dir.join("blobs/sha256");
    let listing = match std::fs::read_dir(&blobs) {
        Ok(listing) => listing,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((0, 0)),
        Err(e) => return Err(Error::io(&blobs, e)),
    };
    let mut entries = Vec::new();
    for entry in listing.flatten() {
        let name = entry.file_name();
        let is_digest = name.len() == 64
            && name
                .as_bytes()
                .iter()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        let Ok(meta) = entry.metadata() else { continue };
        if !is_digest || !meta.file_type().is_file() || meta.uid() != outfile::euid() {
            continue;
        }
        // A blob larger than the limit can never be kept: it goes first, whenever it was used.
        entries.push((
            meta.len() <= max,
            meta.mtime(),
            meta.mtime_nsec(),
            name,
            meta.len(),
        ));
    }
    entries.sort();
    let mut total: u64 = entries.iter().map(|e| e.4).sum();
    let mut removed = 0;
    let dir = Dir::open(&blobs)?;
    for (_, _, _, name, size) in entries {
        if total <= max {
            break;
        }
        let Ok(Some(file)) = dir.open_owned(&name) else {
            continue;
        };
        // SAFETY: flock on a descriptor this File owns.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            progress.info(&format!(
                "  cache: {} is in use by another run; kept",
                name.to_string_lossy()
            ));
            continue;
        }
        // Relative to the directory already opened, never through a path again.
        dir.remove(&name);
        if dir.stat(&name).is_some() {
            progress.warn(&format!(
                "cannot remove {} from the cache",
                blobs.join(&name).display()
            ));
            continue;
        }
        total -= size;
        removed += size;
    }
    Ok((total, removed))
}

/// A cache entry being written.
pub struct Entry {
    file: NewFile,
    progress: Arc<Progress>,
}

impl Entry {
    /// Makes the entry durable and visible under its digest.
    pub fn commit(self) -> Result<(), Error> {
        self.file.persist()
    }
}

impl Write for Entry {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.file_mut().write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Runs `use_blob` over a blob read from `body` while copying it into `cache` (when there is
/// one); the copy is kept under `digest` only if `use_blob` succeeded — it is what verifies
/// the bytes — and every byte reached the entry. The one way blobs enter the cache as they
/// stream.
pub fn filling<T>(
    cache: Option<&Cache>,
    digest: &Digest,
    body: &mut (dyn Read + Send),
    use_blob: impl FnOnce(&mut (dyn Read + Send)) -> Result<T, Error>,
) -> Result<T, Error> {
    let Some(cache) = cache else {
        return use_blob(body);
    };
    let mut entry = match cache.entry(digest) {
        Ok(entry) => entry,
        Err(e) => {
            cache.progress.warn(&format!(
                "cannot keep {digest} in the cache ({e}); going on without"
            ));
            return use_blob(body);
        }
    };
    let mut tee = Tee::new(body, &mut entry);
    let result = use_blob(&mut tee)?;
    if tee.complete() {
        if let Err(e) = entry.commit() {
            cache.progress.warn(&format!(
                "cannot keep {digest} in the cache ({e}); going on without"
            ));
        }
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
                    self.entry.file.path().display()
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
    use std::fs;
    use std::path::PathBuf;

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
        cache.put_bytes(&digest, data);
        assert_eq!(cache.get_bytes(&digest, 10).unwrap(), data);
        assert!(
            cache.get(&digest, 11).is_none(),
            "a size mismatch is a corrupt entry"
        );
        // An entry rewritten behind the cache's back.
        cache.put_bytes(&digest, data);
        let entry = cache.blobs.join(digest.hex());
        fs::remove_file(&entry).unwrap();
        fs::write(&entry, b"not the blob").unwrap();
        assert!(cache.get(&digest, 10).is_none());
        assert!(!entry.exists(), "the corrupt entry was removed");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn prune_drops_the_least_recently_used_and_spares_entries_in_use() {
        let dir = scratch("prune");
        let cache = Cache::open(&dir, quiet()).unwrap();
        let blobs: Vec<(Digest, Vec<u8>)> = (0..4u8)
            .map(|n| {
                let bytes = vec![n; 1000];
                (Digest::of_bytes(&bytes), bytes)
            })
            .collect();
        for (i, (digest, bytes)) in blobs.iter().enumerate() {
            cache.put_bytes(digest, bytes);
            let path = dir.join("blobs/sha256").join(digest.hex());
            let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1000 + i as u64);
            fs::File::options()
                .write(true)
                .open(&path)
                .unwrap()
                .set_modified(when)
                .unwrap();
        }
        // Using the oldest makes it the newest.
        assert!(cache.get_bytes(&blobs[0].0, 1000).is_some());
        // The second oldest is open in another run (here: held open and locked).
        let in_use = cache.get(&blobs[1].0, 1000).unwrap();
        let left = |d: &Digest| dir.join("blobs/sha256").join(d.hex()).exists();
        assert_eq!(prune(&dir, 2500, &quiet()).unwrap(), (2000, 2000));
        assert!(
            left(&blobs[0].0) && left(&blobs[1].0),
            "the two used last are kept"
        );
        assert!(!left(&blobs[2].0) && !left(&blobs[3].0));
        assert_eq!(prune(&dir, 500, &quiet()).unwrap(), (1000, 1000));
        assert!(
            !left(&blobs[0].0) && left(&blobs[1].0),
            "one in use is never removed"
        );
        drop(in_use);
        assert_eq!(prune(&dir, 0, &quiet()).unwrap(), (0, 1000));
        assert!(!left(&blobs[1].0));
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
        assert_eq!(fs::read_dir(cache.blobs.path()).unwrap().count(), 0);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn entries_that_are_not_this_users_regular_files_are_passed_over() {
        let dir = scratch("planted");
        let cache = Cache::open(&dir, quiet()).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(dir.join("blobs/sha256"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700, "the cache's directories are private");
        // A link to a device and a FIFO under digest names: neither is read nor waited on.
        let zero = Digest::of_bytes(b"zero");
        std::os::unix::fs::symlink("/dev/zero", cache.blobs.join(zero.hex())).unwrap();
        assert!(!cache.holds(&zero, 4));
        assert!(cache.get(&zero, 4).is_none());
        assert!(cache.get_bytes(&zero, 4).is_none());
        let fifo = Digest::of_bytes(b"fifo");
        let path = std::ffi::CString::new(
            cache
                .blobs
                .join(fifo.hex())
                .into_os_string()
                .into_encoded_bytes(),
        )
        .unwrap();
        assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0);
        assert!(cache.get(&fifo, 4).is_none());
        // Storing over the link fails with a warning, and the link is left as it is.
        cache.put_bytes(&zero, b"zero");
        assert!(fs::symlink_metadata(cache.blobs.join(zero.hex()))
            .unwrap()
            .file_type()
            .is_symlink());
        fs::remove_dir_all(&dir).unwrap();
    }
}
