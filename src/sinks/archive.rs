//! The `docker save` archive as a tar, written while the layers arrive; what goes in it is
//! decided by `layout`.
//!
//! Two writers: `ArchiveWriter` fills a file in place, several layers at once, seeking back to
//! fill in each layer's header when its size is known; `TarStream` writes front to back into
//! any `Write` (standard output, a compressor), so every layer's size must be known before its
//! bytes. Either way the same images give the same bytes. A file is written under a temporary
//! name and renamed into place only when complete and synced, so no half-written archive ever
//! carries the final name. This module knows nothing of registries; it is handed verified bytes.

use super::layout::Entry;
use crate::error::Error;
use crate::outfile::{Dir, NewFile, Writeback};
use std::fs::{self, File};
use std::io::{self, Seek, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

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

/// The archive being written. Layers enter it in manifest order: the layer whose turn it is
/// streams straight into the archive (`direct`), the others into spool files until their turn
/// comes, when what they have so far is copied in by the kernel (`copy_file_range`) and the rest
/// streams. Most bytes are thus written once, and the first layer, usually the biggest, always.
/// Without `direct` every layer is spooled and its file kept (`--no-rm` keeps the directory).
pub struct ArchiveWriter {
    out: NewFile,
    file: File,
    temp: PathBuf,
    direct: bool,
    /// The index of the layer that owns the end of the archive; only its thread writes there.
    turn: AtomicUsize,
    /// Layers spooled completely before their turn, appended by whoever hands the turn on.
    waiting: Mutex<Vec<Option<Spooled>>>,
    /// The archive's writeback, started as it grows.
    writeback: Writeback,
}

/// A layer's tar name, and the entries that precede it (a legacy layer directory).
pub struct LayerEntries {
    pub before: Vec<Entry>,
    pub name: String,
}

struct Spooled {
    entries: LayerEntries,
    path: PathBuf,
}

impl ArchiveWriter {
    /// Starts the archive for `dest` under its temporary name, for `layers` layers, with the
    /// entries of `prelude` first.
    pub fn create(
        dest: &Path,
        layers: usize,
        direct: bool,
        prelude: &[Entry],
    ) -> Result<ArchiveWriter, Error> {
        let out = NewFile::create(dest)?;
        let temp = out.path();
        let mut file = out.file().try_clone().map_err(|e| Error::io(&temp, e))?;
        append_entries(&mut file, prelude).map_err(|e| Error::io(&temp, e))?;
        Ok(ArchiveWriter {
            out,
            file,
            temp,
            direct,
            turn: AtomicUsize::new(0),
            waiting: Mutex::new((0..layers).map(|_| None).collect()),
            writeback: Writeback::default(),
        })
    }

    /// Counts `n` more bytes in the archive (see `Writeback`).
    fn wrote(&self, n: u64) {
        self.writeback.wrote(&self.file, n);
    }

    /// Where layer `index`'s `layer.tar` goes: straight into the archive if it is its turn,
    /// else into `spool` (its file in the image directory `dir`) for now.
    pub fn layer(
        &self,
        index: usize,
        entries: LayerEntries,
        dir: &Dir,
        spool: &Path,
    ) -> Result<LayerSink<'_>, Error> {
        let mut sink = LayerSink {
            archive: self,
            index,
            entries,
            spool_path: dir.join(spool),
            spool: None,
            header_at: None,
            len: 0,
        };
        if self.direct && self.turn.load(Ordering::Acquire) == index {
            sink.take_turn().map_err(|e| Error::io(&self.temp, e))?;
        } else {
            // Read back when its turn comes mid-layer.
            sink.spool = Some(dir.create_at(spool)?);
        }
        Ok(sink)
    }

    /// Appends the entries after the layers (see `layout`), syncs and renames the archive
    /// into place. Every layer must have been finished.
    pub fn finish(self, files: &[Entry]) -> Result<(), Error> {
        let io_err = |e| Error::io(&self.temp, e);
        let layers = self.waiting.lock().map_or(0, |w| w.len());
        if self.turn.load(Ordering::Acquire) != layers {
            return Err(io_err(io::Error::other(
                "a layer is missing from the archive",
            )));
        }
        let mut out = &self.file;
        append_entries(&mut out, files).map_err(io_err)?;
        end_of_archive(&mut out).map_err(io_err)?;
        self.out.persist()
    }

    /// Hands the end of the archive to layer `next`, first appending it and its successors
    /// if they are already spooled completely. Called by the layer that had the turn.
    fn pass_turn(&self, mut next: usize) -> io::Result<()> {
        let mut waiting = crate::locks::lock(&self.waiting);
        while let Some(spooled) = waiting.get_mut(next).and_then(Option::take) {
            self.append_spooled(&spooled)?;
            next += 1;
        }
        self.turn.store(next, Ordering::Release);
        Ok(())
    }

    fn append_spooled(&self, spooled: &Spooled) -> io::Result<()> {
        let mut out = &self.file;
        append_entries(&mut out, &spooled.entries.before)?;
        let mut spool = File::open(&spooled.path)?;
        let len = spool.metadata()?.len();
        out.write_all(header(&spooled.entries.name, len)?.as_bytes())?;
        copy_spool(&mut spool, &mut out, len)?;
        pad(&mut out, len)?;
        self.wrote(len);
        self.discard_spool(&spooled.path)
    }

    fn discard_spool(&self, path: &Path) -> io::Result<()> {
        if self.direct {
            fs::remove_file(path)?;
        }
        Ok(())
    }
}

/// Where one layer's uncompressed tar is written (see `ArchiveWriter`).
pub struct LayerSink<'a> {
    archive: &'a ArchiveWriter,
    index: usize,
    entries: LayerEntries,
    spool_path: PathBuf,
    spool: Option<File>,
    /// Where this layer's `layer.tar` header goes, once it streams into the archive: the
    /// header is written last, when the size is known.
    header_at: Option<u64>,
    len: u64,
}

impl LayerSink<'_> {
    /// Completes the layer: fills in its header, or leaves it spooled for its turn.
    pub fn finish(self) -> Result<(), Error> {
        let LayerSink {
            archive,
            index,
            entries,
            spool_path,
            spool,
            header_at,
            len,
        } = self;
        let io_err = |e| Error::io(&archive.temp, e);
        if let Some(spool) = spool {
            drop(spool);
            let spooled = Spooled {
                entries,
                path: spool_path,
            };
            let mut waiting = crate::locks::lock(&archive.waiting);
            if archive.turn.load(Ordering::Acquire) != index {
                // The layer that has the turn appends this one when it hands the turn on.
                waiting[index] = Some(spooled);
                return Ok(());
            }
            drop(waiting);
            archive.append_spooled(&spooled).map_err(io_err)?;
        } else if let Some(at) = header_at {
            let header = header(&entries.name, len).map_err(io_err)?;
            archive
                .file
                .write_all_at(header.as_bytes(), at)
                .map_err(io_err)?;
            pad(&mut &archive.file, len).map_err(io_err)?;
        }
        archive.pass_turn(index + 1).map_err(io_err)
    }

    /// Takes over the end of the archive: writes this layer's directory entries and room for
    /// its `layer.tar` header, copies in what was spooled, and streams from here on.
    fn take_turn(&mut self) -> io::Result<()> {
        let mut out = &self.archive.file;
        append_entries(&mut out, &self.entries.before)?;
        self.header_at = Some(out.stream_position()?);
        out.write_all(&[0; 512])?;
        if let Some(mut spool) = self.spool.take() {
            spool.rewind()?;
            copy_spool(&mut spool, &mut out, self.len)?;
            self.archive.wrote(self.len);
            drop(spool);
            self.archive.discard_spool(&self.spool_path)?;
        }
        Ok(())
    }
}

impl Write for LayerSink<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.header_at.is_none()
            && self.archive.direct
            && self.archive.turn.load(Ordering::Acquire) == self.index
        {
            self.take_turn()?;
        }
        let n = match &mut self.spool {
            Some(spool) => spool.write(buf)?,
            None => {
                let n = (&self.archive.file).write(buf)?;
                self.archive.wrote(n as u64);
                n
            }
        };
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
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

/// Copies a spool file into the archive File-to-File, which Linux turns into `copy_file_range`:
/// the bytes stay in the kernel.
fn copy_spool(spool: &mut File, out: &mut &File, len: u64) -> io::Result<()> {
    if io::copy(spool, out)? != len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "a spooled layer changed while being archived",
        ));
    }
    Ok(())
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

    /// Three layers finishing out of order: layer 1 starts spooled and takes the turn midway,
    /// layer 2 is spooled completely and waits, layer 0 streams. Returns the archive's bytes.
    fn write_out_of_order(dir: &Path, direct: bool) -> Vec<u8> {
        let dest = dir.join(format!("image-{direct}.tar"));
        let data: Vec<Vec<u8>> = (0..3u8)
            .map(|i| vec![b'a' + i; 700 * (i as usize + 1)])
            .collect();
        let archive = ArchiveWriter::create(&dest, 3, direct, &[]).unwrap();
        let mut one = archive
            .layer(
                1,
                entries("one"),
                &Dir::open(dir).unwrap(),
                Path::new("one.tar"),
            )
            .unwrap();
        one.write_all(&data[1][..100]).unwrap();
        let mut zero = archive
            .layer(
                0,
                entries("zero"),
                &Dir::open(dir).unwrap(),
                Path::new("zero.tar"),
            )
            .unwrap();
        zero.write_all(&data[0]).unwrap();
        let mut two = archive
            .layer(
                2,
                entries("two"),
                &Dir::open(dir).unwrap(),
                Path::new("two.tar"),
            )
            .unwrap();
        two.write_all(&data[2]).unwrap();
        zero.finish().unwrap();
        two.finish().unwrap();
        one.write_all(&data[1][100..]).unwrap();
        one.finish().unwrap();
        archive
            .finish(&[Entry::File("manifest.json".into(), b"[]".to_vec())])
            .unwrap();
        assert!(!crate::partial::temp_name(&dest).exists());
        // Streamed or spooled, nothing is left behind unless the directory is kept.
        for spool in ["zero.tar", "one.tar", "two.tar"] {
            assert_eq!(dir.join(spool).exists(), !direct, "{spool}");
        }

        let bytes = fs::read(&dest).unwrap();
        let mut archive = tar::Archive::new(bytes.as_slice());
        let mut seen = Vec::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let name = entry.path().unwrap().to_string_lossy().into_owned();
            let mut contents = Vec::new();
            io::Read::read_to_end(&mut entry, &mut contents).unwrap();
            if let Some(i) = ["zero/layer.tar", "one/layer.tar", "two/layer.tar"]
                .iter()
                .position(|n| *n == name)
            {
                assert_eq!(contents, data[i], "{name}");
            }
            seen.push(name);
        }
        let expected: Vec<String> = ["zero", "one", "two"]
            .iter()
            .flat_map(|id| ["/", "/VERSION", "/json", "/layer.tar"].map(|f| format!("{id}{f}")))
            .chain(["manifest.json".to_string()])
            .collect();
        assert_eq!(seen, expected);
        bytes
    }

    #[test]
    fn layers_enter_the_archive_in_order_whatever_order_they_finish() {
        let dir = scratch("order");
        let streamed = write_out_of_order(&dir, true);
        let spooled = write_out_of_order(&dir, false);
        assert_eq!(streamed, spooled, "same image, same bytes");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_unfinished_archive_leaves_nothing() {
        let dir = scratch("unfinished");
        let dest = dir.join("image.tar");
        let archive = ArchiveWriter::create(&dest, 2, true, &[]).unwrap();
        let mut zero = archive
            .layer(
                0,
                entries("zero"),
                &Dir::open(&dir).unwrap(),
                Path::new("zero.tar"),
            )
            .unwrap();
        zero.write_all(b"partial").unwrap();
        drop(zero);
        assert!(archive.finish(&[]).is_err());
        assert!(!dest.exists() && !crate::partial::temp_name(&dest).exists());
        fs::remove_dir_all(&dir).unwrap();
    }
}
