//! The `docker save` archive as a tar, written while the layers arrive; what goes in it is
//! decided by `layout`.
//!
//! Two writers: `ArchiveWriter` fills a file in place, several layers at once, each at the
//! offset the sizes (or predicted sizes) of the layers ahead give, going back to fill in each
//! layer's header when its size is known; `TarStream` writes front to back into
//! any `Write` (standard output, a compressor), so every layer's size must be known before its
//! bytes. Either way the same images give the same bytes. A file is written under a temporary
//! name and renamed into place only when complete and synced, so no half-written archive ever
//! carries the final name. This module knows nothing of registries; it is handed verified bytes.

use super::layout::Entry;
use crate::error::Error;
use crate::limits::MAX_PLACED_AHEAD;
use crate::outfile::{Dir, NewFile, Writeback};
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// Entries written as files and directories under `dir` (the `--no-tar` directory, private
/// to this run until it is complete).
pub fn write_entries(dir: &Dir, entries: &[Entry]) -> Result<(), Error> {
    for entry in entries {
        match entry {
            Entry::Dir(name) => drop(dir.dirs_at(Path::new(name))?),
            Entry::File(name, bytes) => dir.write_at(Path::new(name), bytes)?,
        }
    }
    Ok(())
}

/// The archive being written, several layers at once. Each layer's `layer.tar` goes where the
/// sizes of the layers before it put it. A layer that starts when that place is known (every
/// layer before it finished, or its size predicted: a gzip trailer, a blob kept as served) is
/// written straight there, even while the layers before it still arrive; any other is spooled
/// into its file in the image directory until the layers before it are in, when what it has
/// so far is copied in by the kernel (`copy_file_range`) and the rest goes straight in. A
/// prediction that proves wrong (several gzip members, 4 GiB or more, a registry's lie) first
/// moves the layers placed after it into spool files, so nothing is overwritten and the same
/// images always give the same bytes. Without `direct` every layer is spooled and its file kept
/// (`--no-rm` keeps the directory).
pub struct ArchiveWriter<'d> {
    out: NewFile,
    file: File,
    temp: PathBuf,
    /// The image directory, private to this run: where layers are spooled.
    dir: &'d Dir,
    direct: bool,
    layers: Vec<LayerEntries>,
    /// Bytes of each layer's entries before its `layer.tar`, and of that header.
    lead: Vec<u64>,
    state: Mutex<State>,
    /// A slot stopped being busy.
    changed: Condvar,
    /// The archive's writeback, started as it grows.
    writeback: Writeback,
}

/// A layer's tar name, and the entries that precede it (a legacy layer directory).
pub struct LayerEntries {
    pub before: Vec<Entry>,
    pub name: String,
}

struct State {
    slots: Vec<Slot>,
    /// Layers complete in the archive, in order, and where the next one's entries go.
    committed: usize,
    end: u64,
    /// A thread is completing layers (`commit`), with the lock released while it copies.
    committing: bool,
}

#[derive(Default)]
struct Slot {
    place: Place,
    /// Bytes of the layer's tar written so far.
    len: u64,
    /// Its size as predicted, until it proves wrong.
    predicted: Option<u64>,
    /// Whether a prediction was asked for (once per layer).
    asked: bool,
    finished: bool,
    /// A thread writes or copies the layer's bytes with the lock released: wait for it.
    busy: bool,
}

#[derive(Default, Clone)]
enum Place {
    #[default]
    NotStarted,
    /// Its tar's offset in the archive.
    At(u64),
    Spool(Arc<File>),
}

impl<'d> ArchiveWriter<'d> {
    /// Starts the archive for `dest` under its temporary name, with the entries of `prelude`
    /// first, for `layers` in this order; spools go into `dir`.
    pub fn create(
        dest: &Path,
        dir: &'d Dir,
        layers: Vec<LayerEntries>,
        direct: bool,
        prelude: &[Entry],
    ) -> Result<ArchiveWriter<'d>, Error> {
        let out = NewFile::create(dest)?;
        let temp = out.path();
        let file = out.file().try_clone().map_err(|e| Error::io(&temp, e))?;
        let mut at = WriteAt { file: &file, at: 0 };
        append_entries(&mut at, prelude).map_err(|e| Error::io(&temp, e))?;
        let lead = layers
            .iter()
            .map(|l| {
                let mut count = WriteCount(0);
                append_entries(&mut count, &l.before).map(|()| count.0 + 512)
            })
            .collect::<io::Result<_>>()
            .map_err(|e| Error::io(&temp, e))?;
        let state = State {
            slots: layers.iter().map(|_| Slot::default()).collect(),
            committed: 0,
            end: at.at,
            committing: false,
        };
        Ok(ArchiveWriter {
            out,
            file,
            temp,
            dir,
            direct,
            layers,
            lead,
            state: Mutex::new(state),
            changed: Condvar::new(),
            writeback: Writeback::default(),
        })
    }

    /// Where layer `index`'s `layer.tar` goes: straight to its place in the archive if that
    /// is known, else into its spool file for now. `predict` gives a layer's size before it
    /// arrives, if it can (asked once per layer, without the lock: it may cost a request).
    pub fn layer(
        &self,
        index: usize,
        predict: &mut dyn FnMut(usize) -> Option<u64>,
    ) -> Result<LayerSink<'_, 'd>, Error> {
        if self.direct {
            let mut unknown = Vec::new();
            let mut state = crate::locks::lock(&self.state);
            for j in state.committed..index {
                let slot = &mut state.slots[j];
                if !slot.finished && !std::mem::replace(&mut slot.asked, true) {
                    unknown.push(j);
                }
            }
            drop(state);
            for j in unknown {
                let size = predict(j);
                let slot = &mut crate::locks::lock(&self.state).slots[j];
                // Already longer than that: wrong before anything relied on it.
                slot.predicted = size.filter(|&size| !slot.finished && slot.len <= size);
            }
        }
        let mut state = crate::locks::lock(&self.state);
        let mut at = Some(state.end);
        for j in state.committed..index {
            let slot = &state.slots[j];
            let size = match slot.finished {
                true => Some(slot.len),
                false => slot.predicted,
            };
            let entry = size
                .and_then(padded)
                .and_then(|s| s.checked_add(self.lead[j]));
            at = at.zip(entry).and_then(|(at, entry)| at.checked_add(entry));
        }
        let at = at.and_then(|at| at.checked_add(self.lead[index]));
        state.slots[index].place = match at {
            Some(at) if self.direct && at <= MAX_PLACED_AHEAD => Place::At(at),
            _ => Place::Spool(Arc::new(self.spool(index)?)),
        };
        drop(state);
        Ok(LayerSink {
            archive: self,
            index,
        })
    }

    /// Appends the entries after the layers (see `layout`), syncs and renames the archive
    /// into place. Every layer must have been finished.
    pub fn finish(self, files: &[Entry]) -> Result<(), Error> {
        let io_err = |e| Error::io(&self.temp, e);
        let state = crate::locks::lock(&self.state);
        if state.committed != state.slots.len() {
            return Err(io_err(io::Error::other(
                "a layer is missing from the archive",
            )));
        }
        let mut out = WriteAt {
            file: &self.file,
            at: state.end,
        };
        drop(state);
        append_entries(&mut out, files).map_err(io_err)?;
        end_of_archive(&mut out).map_err(io_err)?;
        // What a layer wrote ahead at a place a wrong prediction gave may lie beyond the end.
        self.file.set_len(out.at).map_err(io_err)?;
        self.out.persist()
    }

    fn spool(&self, index: usize) -> Result<File, Error> {
        self.dir.create_at(Path::new(&self.layers[index].name))
    }

    /// The lock, once layer `index` is not busy.
    fn idle(&self, index: usize) -> MutexGuard<'_, State> {
        let mut state = crate::locks::lock(&self.state);
        while state.slots[index].busy {
            state = self.wait(state);
        }
        state
    }

    fn wait<'s>(&self, state: MutexGuard<'s, State>) -> MutexGuard<'s, State> {
        self.changed.wait(state).unwrap_or_else(|p| p.into_inner())
    }

    /// Writes `buf` as the next bytes of layer `index`, wherever the layer is now.
    fn write_layer(&self, index: usize, buf: &[u8]) -> io::Result<()> {
        let mut state = self.idle(index);
        let (len, end) = (
            state.slots[index].len,
            state.slots[index].len + buf.len() as u64,
        );
        if state.slots[index].predicted.is_some_and(|size| end > size) {
            // Longer than predicted: the layers placed after it move out of its way first.
            state.slots[index].predicted = None;
            state = self.evacuate_after(state, index)?;
        }
        let slot = &mut state.slots[index];
        let place = slot.place.clone();
        slot.busy = true;
        drop(state);
        let wrote = match &place {
            Place::At(at) => self.file.write_all_at(buf, at + len),
            Place::Spool(spool) => spool.write_all_at(buf, len),
            Place::NotStarted => Err(io::Error::other("a layer written before it started")),
        };
        let mut state = crate::locks::lock(&self.state);
        let slot = &mut state.slots[index];
        slot.busy = false;
        if wrote.is_ok() {
            slot.len = end;
        }
        self.changed.notify_all();
        drop(state);
        if wrote.is_ok() && matches!(place, Place::At(_)) {
            self.writeback.wrote(&self.file, buf.len() as u64);
        }
        wrote
    }

    /// Layer `index` is complete: checks its prediction and completes what can be.
    fn finish_layer(&self, index: usize) -> io::Result<()> {
        let mut state = self.idle(index);
        let slot = &mut state.slots[index];
        slot.finished = true;
        if slot.predicted.is_some_and(|size| size != slot.len) {
            slot.predicted = None;
            state = self.evacuate_after(state, index)?;
        }
        self.commit(state)
    }

    /// Moves every layer after `index` that was written ahead at a place `index`'s prediction
    /// gave into its spool file: that place is wrong. Rare (a wrong prediction); the lock is
    /// held while it copies.
    fn evacuate_after<'s>(
        &'s self,
        mut state: MutexGuard<'s, State>,
        index: usize,
    ) -> io::Result<MutexGuard<'s, State>> {
        let mut next = index + 1;
        while next < state.slots.len() {
            let slot = &state.slots[next];
            let Place::At(at) = slot.place else {
                next += 1;
                continue;
            };
            if slot.busy {
                state = self.wait(state);
                continue;
            }
            let spool = self.spool(next).map_err(io::Error::other)?;
            copy_range(&self.file, at, &spool, 0, slot.len)?;
            state.slots[next].place = Place::Spool(Arc::new(spool));
            next += 1;
        }
        Ok(state)
    }

    /// Completes the layers that can be, in order: writes the entries and header of each
    /// finished one at its place, and copies a spooled one in as soon as the layers before it
    /// are in (one still arriving goes on straight into the archive from there). One thread
    /// at a time; another that finishes a layer meanwhile leaves it to that one.
    fn commit<'s>(&'s self, mut state: MutexGuard<'s, State>) -> io::Result<()> {
        if state.committing {
            return Ok(());
        }
        state.committing = true;
        let done = loop {
            let index = state.committed;
            let Some(slot) = state.slots.get(index) else {
                break Ok(());
            };
            if slot.busy {
                state = self.wait(state);
                continue;
            }
            let entries_at = state.end;
            let at = entries_at + self.lead[index];
            match &slot.place {
                Place::NotStarted => break Ok(()),
                Place::At(placed) if *placed != at => {
                    break Err(io::Error::other("a layer was written at the wrong place"));
                }
                Place::At(_) if !slot.finished => break Ok(()),
                Place::At(_) => {
                    let len = slot.len;
                    let entries = &self.layers[index];
                    let mut out = WriteAt {
                        file: &self.file,
                        at: entries_at,
                    };
                    let completed = append_entries(&mut out, &entries.before)
                        .and_then(|()| out.write_all(header(&entries.name, len)?.as_bytes()))
                        .and_then(|()| {
                            out.at = at + len;
                            pad(&mut out, len)
                        });
                    if let Err(e) = completed {
                        break Err(e);
                    }
                    state.end = out.at;
                    state.committed += 1;
                }
                Place::Spool(_) if !slot.finished && !self.direct => break Ok(()),
                Place::Spool(spool) => {
                    let (spool, len) = (Arc::clone(spool), slot.len);
                    state.slots[index].busy = true;
                    drop(state);
                    let copied = copy_range(&spool, 0, &self.file, at, len);
                    drop(spool);
                    let removed = match self.direct {
                        true => copied.and_then(|()| {
                            fs::remove_file(self.dir.join(&self.layers[index].name))
                        }),
                        false => copied,
                    };
                    state = crate::locks::lock(&self.state);
                    state.slots[index].busy = false;
                    self.changed.notify_all();
                    if let Err(e) = removed {
                        break Err(e);
                    }
                    self.writeback.wrote(&self.file, len);
                    // Finished, it is completed next round; else it goes on from here.
                    if self.direct || state.slots[index].finished {
                        state.slots[index].place = Place::At(at);
                    }
                }
            }
        };
        state.committing = false;
        done
    }
}

/// Where one layer's uncompressed tar is written (see `ArchiveWriter`).
pub struct LayerSink<'a, 'd> {
    archive: &'a ArchiveWriter<'d>,
    index: usize,
}

impl LayerSink<'_, '_> {
    /// Completes the layer: in the archive at once if the layers before it are, else when
    /// they are.
    pub fn finish(self) -> Result<(), Error> {
        self.archive
            .finish_layer(self.index)
            .map_err(|e| Error::io(&self.archive.temp, e))
    }
}

impl Write for LayerSink<'_, '_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.archive.write_layer(self.index, buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Writes at an offset of a file, without its position (which threads would share).
struct WriteAt<'a> {
    file: &'a File,
    at: u64,
}

impl Write for WriteAt<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write_at(buf, self.at)?;
        self.at += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Counts what would be written.
struct WriteCount(u64);

impl Write for WriteCount {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// `len` bytes of an entry and the zeros up to the next 512-byte block.
fn padded(len: u64) -> Option<u64> {
    len.checked_add((512 - len % 512) % 512)
}

/// A tar written front to back into `out` (standard output, a compressor): every entry's
/// size is given before its bytes.
pub struct TarStream<W: Write> {
    out: W,
}

impl<W: Write> TarStream<W> {
    pub fn new(mut out: W, prelude: &[Entry]) -> io::Result<TarStream<W>> {
        append_entries(&mut out, prelude)?;
        Ok(TarStream { out })
    }

    /// Starts a layer's tar of `len` bytes, after the entries it needs before it.
    pub fn layer(&mut self, entries: &LayerEntries, len: u64) -> io::Result<SizedEntry<'_, W>> {
        append_entries(&mut self.out, &entries.before)?;
        self.out.write_all(header(&entries.name, len)?.as_bytes())?;
        Ok(SizedEntry {
            out: &mut self.out,
            len,
            left: len,
            overflowed: false,
        })
    }

    /// Appends the entries after the layers and the end of the archive; returns `out`.
    pub fn finish(mut self, files: &[Entry]) -> io::Result<W> {
        append_entries(&mut self.out, files)?;
        end_of_archive(&mut self.out)?;
        Ok(self.out)
    }
}

/// An entry whose size was announced in its header: more bytes are refused, fewer are an
/// error at `finish`.
pub struct SizedEntry<'a, W: Write> {
    out: &'a mut W,
    len: u64,
    left: u64,
    overflowed: bool,
}

impl<W: Write> SizedEntry<'_, W> {
    /// Whether more bytes came than announced.
    pub fn overflowed(&self) -> bool {
        self.overflowed
    }

    /// Checks that every announced byte came and pads the entry. `Err(written)` when fewer did.
    pub fn finish(self) -> io::Result<Result<(), u64>> {
        if self.left > 0 {
            return Ok(Err(self.len - self.left));
        }
        pad(self.out, self.len)?;
        Ok(Ok(()))
    }
}

impl<W: Write> Write for SizedEntry<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.len() as u64 > self.left {
            self.overflowed = true;
            return Err(io::Error::other(
                "more bytes than the entry's announced size",
            ));
        }
        let n = self.out.write(buf)?;
        self.left -= n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// Compression of the whole archive (`--gzip`, `--xz`).
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum Compression {
    /// A plain tar.
    None,
    /// `.tar.gz`.
    Gzip,
    /// `.tar.xz`. Needs the `xz` cargo feature (default).
    Xz,
}

/// The whole archive compressed as it is written (`--gzip`, `--xz`), or not.
pub enum Compressor<W: Write> {
    Plain(W),
    Gzip(Box<crate::gzip::GzipWriter<W>>),
    #[cfg(feature = "xz")]
    Xz(Box<lzma_rust2::XzWriter<W>>),
}

/// The integrity check an xz stream carries: CRC64 (xz's default), or CRC32 (the kernel's).
#[derive(Clone, Copy)]
enum Check {
    Crc64,
    Crc32,
}

/// xz preset 1: 1 MiB dictionary, hash-chain match finder, about 10 MiB of encoder state. The
/// higher presets' binary-tree finders need 100 MiB and more, too much for a router; and
/// layers are mostly compressed already by what built them, so their gain is small.
#[cfg(feature = "xz")]
const XZ_PRESET: u32 = 1;

impl<W: Write> Compressor<W> {
    pub fn new(out: W, compression: Compression) -> io::Result<Compressor<W>> {
        Compressor::checked(out, compression, Check::Crc64)
    }

    /// For the kernel (`--initramfs`): its xz decoder takes CRC32 checks only, and refuses
    /// xz's default CRC64.
    pub fn for_kernel(out: W, compression: Compression) -> io::Result<Compressor<W>> {
        Compressor::checked(out, compression, Check::Crc32)
    }

    fn checked(out: W, compression: Compression, check: Check) -> io::Result<Compressor<W>> {
        Ok(match compression {
            Compression::None => Compressor::Plain(out),
            // Level 6, as gzip's default (incompressible stretches stored: see `gzip`); the
            // header carries no name and no time, so the same images give the same bytes.
            Compression::Gzip => Compressor::Gzip(Box::new(crate::gzip::GzipWriter::new(out, 6))),
            #[cfg(feature = "xz")]
            Compression::Xz => {
                let mut options = lzma_rust2::XzOptions::with_preset(XZ_PRESET);
                options.set_check_sum_type(match check {
                    Check::Crc64 => lzma_rust2::CheckType::Crc64,
                    Check::Crc32 => lzma_rust2::CheckType::Crc32,
                });
                Compressor::Xz(Box::new(lzma_rust2::XzWriter::new(out, options)?))
            }
            #[cfg(not(feature = "xz"))]
            Compression::Xz => {
                let _ = check;
                return Err(io::Error::other(
                    crate::features::missing("xz", "--xz").to_string(),
                ));
            }
        })
    }

    /// Ends the compressed stream; returns `out`.
    pub fn finish(self) -> io::Result<W> {
        match self {
            Compressor::Plain(out) => Ok(out),
            Compressor::Gzip(gz) => gz.finish(),
            #[cfg(feature = "xz")]
            Compressor::Xz(xz) => xz.finish(),
        }
    }
}

impl<W: Write> Write for Compressor<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Compressor::Plain(out) => out.write(buf),
            Compressor::Gzip(gz) => gz.write(buf),
            #[cfg(feature = "xz")]
            Compressor::Xz(xz) => xz.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Compressor::Plain(out) => out.flush(),
            Compressor::Gzip(gz) => gz.flush(),
            #[cfg(feature = "xz")]
            Compressor::Xz(xz) => xz.flush(),
        }
    }
}

/// Copies `len` bytes at `from_at` in `from` to `to_at` in `to`, by offset (the files'
/// positions, shared between threads, are not used): by `copy_file_range`, so the bytes stay
/// in the kernel, else through a buffer.
fn copy_range(from: &File, from_at: u64, to: &File, to_at: u64, len: u64) -> io::Result<()> {
    let (mut from_at, mut to_at, mut left) = (from_at, to_at, len);
    let fallback = loop {
        if left == 0 {
            return Ok(());
        }
        let (mut off_in, mut off_out) = (from_at as libc::loff_t, to_at as libc::loff_t);
        let chunk = usize::try_from(left.min(1 << 30)).unwrap_or(1 << 30);
        // SAFETY: two open descriptors and offsets that live through the call.
        let n = unsafe {
            libc::copy_file_range(
                from.as_raw_fd(),
                &mut off_in,
                to.as_raw_fd(),
                &mut off_out,
                chunk,
                0,
            )
        };
        match n {
            0 => return Err(shrank()),
            n if n > 0 => {
                let n = n as u64;
                (from_at, to_at, left) = (from_at + n, to_at + n, left - n);
            }
            _ => {
                let e = io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EINTR) => continue,
                    Some(libc::EXDEV | libc::ENOSYS | libc::EINVAL | libc::EOPNOTSUPP) => {
                        break true
                    }
                    _ => return Err(e),
                }
            }
        }
    };
    debug_assert!(fallback);
    let mut buf = vec![0u8; 64 * 1024];
    while left > 0 {
        let chunk = usize::try_from(left).map_or(buf.len(), |l| l.min(buf.len()));
        let n = from.read_at(&mut buf[..chunk], from_at)?;
        if n == 0 {
            return Err(shrank());
        }
        to.write_all_at(&buf[..n], to_at)?;
        let n = n as u64;
        (from_at, to_at, left) = (from_at + n, to_at + n, left - n);
    }
    Ok(())
}

fn shrank() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "a spooled layer changed while being archived",
    )
}

/// Directories and small files, in order.
fn append_entries(out: &mut impl Write, entries: &[Entry]) -> io::Result<()> {
    for entry in entries {
        match entry {
            Entry::Dir(name) => {
                let mut dir = header(name, 0)?;
                dir.set_entry_type(tar::EntryType::Directory);
                dir.set_mode(0o755);
                dir.set_cksum();
                out.write_all(dir.as_bytes())?;
            }
            Entry::File(name, bytes) => append_bytes(out, name, bytes)?,
        }
    }
    Ok(())
}

/// The end of a tar archive: two zero blocks.
fn end_of_archive(out: &mut impl Write) -> io::Result<()> {
    out.write_all(&[0; 1024])
}

fn append_bytes(out: &mut impl Write, name: &str, bytes: &[u8]) -> io::Result<()> {
    out.write_all(header(name, bytes.len() as u64)?.as_bytes())?;
    out.write_all(bytes)?;
    pad(out, bytes.len() as u64)
}

/// A regular file's header with fixed owner, mode and time, so the same image always gives
/// the same bytes.
fn header(name: &str, len: u64) -> io::Result<tar::Header> {
    let mut header = tar::Header::new_gnu();
    header.set_path(name)?;
    header.set_entry_type(tar::EntryType::Regular);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_size(len);
    header.set_cksum();
    Ok(header)
}

/// Zeros up to the next 512-byte block after an entry of `len` bytes.
fn pad(out: &mut impl Write, len: u64) -> io::Result<()> {
    let padding = (512 - (len % 512) as usize) % 512;
    out.write_all(&[0; 512][..padding])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("dockersave-archive-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn entries(id: &str) -> LayerEntries {
        LayerEntries {
            before: vec![
                Entry::Dir(format!("{id}/")),
                Entry::File(format!("{id}/VERSION"), b"1.0".to_vec()),
                Entry::File(format!("{id}/json"), b"{}".to_vec()),
            ],
            name: format!("{id}/layer.tar"),
        }
    }

    const IDS: [&str; 3] = ["zero", "one", "two"];

    /// Three layers finishing out of order, each layer's size predicted as `predicted` says
    /// (asked at most once, and only as a layer after it starts): layer 1 starts first and
    /// takes its place midway, layer 2 is complete before layer 1, layer 0 arrives in one go.
    /// Returns the archive's bytes, and which layers were in spool files once all were written
    /// but none finished.
    fn write_out_of_order(
        dir: &Path,
        direct: bool,
        predicted: [Option<u64>; 3],
    ) -> (Vec<u8>, [bool; 3]) {
        let dest = dir.join("image.tar");
        let _ = fs::remove_file(&dest);
        for id in IDS {
            let _ = fs::remove_dir_all(dir.join(id));
        }
        let data: Vec<Vec<u8>> = (0..3u8)
            .map(|i| vec![b'a' + i; 700 * (i as usize + 1)])
            .collect();
        let work = Dir::open(dir).unwrap();
        let layers = IDS.iter().map(|id| entries(id)).collect();
        let archive = ArchiveWriter::create(&dest, &work, layers, direct, &[]).unwrap();
        let asked = std::cell::RefCell::new(Vec::new());
        let mut predict = |j: usize| {
            asked.borrow_mut().push(j);
            predicted[j]
        };
        let mut one = archive.layer(1, &mut predict).unwrap();
        one.write_all(&data[1][..100]).unwrap();
        let mut zero = archive.layer(0, &mut predict).unwrap();
        zero.write_all(&data[0]).unwrap();
        let mut two = archive.layer(2, &mut predict).unwrap();
        two.write_all(&data[2]).unwrap();
        let spooled = IDS.map(|id| dir.join(id).join("layer.tar").exists());
        zero.finish().unwrap();
        two.finish().unwrap();
        one.write_all(&data[1][100..]).unwrap();
        one.finish().unwrap();
        archive
            .finish(&[Entry::File("manifest.json".into(), b"[]".to_vec())])
            .unwrap();
        assert!(!crate::partial::temp_name(&dest).exists());
        let mut asked = asked.into_inner();
        asked.sort();
        match direct {
            true => assert_eq!(asked, [0, 1], "each layer before another asked once"),
            false => assert!(
                asked.is_empty(),
                "nothing is placed ahead when every layer is kept"
            ),
        }
        // Placed, streamed or spooled, nothing is left behind unless the directory is kept.
        for id in IDS {
            let spool = dir.join(id).join("layer.tar");
            assert_eq!(spool.exists(), !direct, "{}", spool.display());
        }

        let bytes = fs::read(&dest).unwrap();
        let mut archive = tar::Archive::new(bytes.as_slice());
        let mut seen = Vec::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let name = entry.path().unwrap().to_string_lossy().into_owned();
            let mut contents = Vec::new();
            io::Read::read_to_end(&mut entry, &mut contents).unwrap();
            if let Some(i) = IDS.iter().position(|id| format!("{id}/layer.tar") == name) {
                assert_eq!(contents, data[i], "{name}");
            }
            seen.push(name);
        }
        let expected: Vec<String> = IDS
            .iter()
            .flat_map(|id| ["/", "/VERSION", "/json", "/layer.tar"].map(|f| format!("{id}{f}")))
            .chain(["manifest.json".to_string()])
            .collect();
        assert_eq!(seen, expected);
        (bytes, spooled)
    }

    #[test]
    fn layers_enter_the_archive_in_order_whatever_order_they_finish_and_whatever_was_predicted() {
        let dir = scratch("order");
        let (kept, _) = write_out_of_order(&dir, false, [None; 3]);
        for (predicted, spooled) in [
            // Nothing known ahead: spooled until their turn.
            ([None; 3], [false, true, true]),
            // Right: every layer goes straight to its place.
            ([Some(700), Some(1400), None], [false; 3]),
            // Layer 0 outgrows its prediction while layer 1 is being written after it (which
            // moves to a spool file); then overshoots it, with layers 1 and 2 placed after it.
            ([Some(300), Some(1400), None], [false, true, true]),
            ([Some(5000), Some(1400), None], [false; 3]),
            // Layer 1 wrong both ways, found once layer 2 was complete behind it.
            ([Some(700), Some(1000), None], [false; 3]),
            ([Some(700), Some(4096), None], [false; 3]),
            // Beyond belief.
            ([Some(1 << 50), Some(1400), None], [false, true, true]),
            (
                [Some(u64::MAX - 100), Some(u64::MAX - 100), None],
                [false, true, true],
            ),
        ] {
            let placed = write_out_of_order(&dir, true, predicted);
            assert!(placed.0 == kept, "same image, same bytes: {predicted:?}");
            assert_eq!(placed.1, spooled, "spooled for {predicted:?}");
        }
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_unfinished_archive_leaves_nothing() {
        let dir = scratch("unfinished");
        let dest = dir.join("image.tar");
        let work = Dir::open(&dir).unwrap();
        let layers = vec![entries("zero"), entries("one")];
        let archive = ArchiveWriter::create(&dest, &work, layers, true, &[]).unwrap();
        let mut zero = archive.layer(0, &mut |_| None).unwrap();
        // Never finished.
        zero.write_all(b"partial").unwrap();
        assert!(archive.finish(&[]).is_err());
        assert!(!dest.exists() && !crate::partial::temp_name(&dest).exists());
        fs::remove_dir_all(&dir).unwrap();
    }
}
