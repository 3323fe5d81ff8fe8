//! The `docker save` archive: its layout, and the tar written while the layers arrive.
//!
//! Layout (what `docker load` reads): per layer a directory `<id>/` with `VERSION`, `json` and
//! `layer.tar`, in manifest order; then the config as `<hex>.json`, `manifest.json` (`Config`,
//! `RepoTags`, `Layers`) and `repositories`. The same image always gives the same bytes, whether
//! its layers were streamed or spooled. The tar is written under a temporary name and renamed
//! into place only when complete and synced, so no half-written archive ever carries the final
//! name. This module knows nothing of registries; it is handed verified bytes.

use crate::digest::Digest;
use crate::error::Error;
use crate::partial::{on_interrupt, temp_name, OnInterrupt, Undo};
use miniserde::{json, Serialize};
use std::fs::{self, File};
use std::io::{self, Seek, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// The legacy v1 layer IDs that name the layer directories: each is the sha256 of its parent's
/// ID and its diff ID, so the chain is unique even when a layer repeats.
pub fn layer_ids(diff_ids: &[Digest]) -> Vec<String> {
    let mut parent = String::new();
    diff_ids
        .iter()
        .map(|diff_id| {
            let id = Digest::of_bytes(format!("{parent}\n{diff_id}").as_bytes())
                .hex()
                .to_string();
            parent.clone_from(&id);
            id
        })
        .collect()
}

#[derive(Serialize)]
struct LayerJson<'a> {
    id: &'a str,
    parent: Option<&'a str>,
    created: &'a str,
    os: &'a str,
}

/// The per-layer `json` file (Docker's v1 image metadata, read only by very old engines).
pub fn layer_json(
    id: &str,
    parent: Option<&str>,
    created: Option<&str>,
    os: Option<&str>,
) -> String {
    json::to_string(&LayerJson {
        id,
        parent,
        created: created.unwrap_or("1970-01-01T00:00:00Z"),
        os: os.unwrap_or("linux"),
    })
}

#[derive(Serialize)]
struct ManifestEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags")]
    repo_tags: Vec<String>,
    #[serde(rename = "Layers")]
    layers: Vec<String>,
}

/// The files of the image besides its layers, in archive order: the config, `manifest.json` and
/// `repositories`.
pub fn image_files(
    config: &[u8],
    config_digest: &Digest,
    layer_ids: &[String],
    repo_tag: Option<&str>,
) -> Vec<(String, Vec<u8>)> {
    let config_name = format!("{}.json", config_digest.hex());
    let manifest = vec![ManifestEntry {
        config: config_name.clone(),
        repo_tags: repo_tag.map(str::to_string).into_iter().collect(),
        layers: layer_ids
            .iter()
            .map(|id| format!("{id}/layer.tar"))
            .collect(),
    }];
    // `repositories` maps name → tag → top layer ID; an untagged image has none.
    let repositories = match (repo_tag.and_then(|t| t.rsplit_once(':')), layer_ids.last()) {
        (Some((name, tag)), Some(top)) => {
            format!(
                "{{{}:{{{}:{}}}}}\n",
                json::to_string(name),
                json::to_string(tag),
                json::to_string(top)
            )
        }
        _ => "{}\n".to_string(),
    };
    vec![
        (config_name, config.to_vec()),
        (
            "manifest.json".into(),
            json::to_string(&manifest).into_bytes(),
        ),
        ("repositories".into(), repositories.into_bytes()),
    ]
}

/// The small files of one layer directory, in archive order: `VERSION` and `json`.
pub fn layer_files(
    id: &str,
    parent: Option<&str>,
    created: Option<&str>,
    os: Option<&str>,
) -> [(&'static str, Vec<u8>); 2] {
    [
        ("VERSION", b"1.0".to_vec()),
        ("json", layer_json(id, parent, created, os).into_bytes()),
    ]
}

pub fn write_file(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    fs::write(path, bytes).map_err(|e| Error::io(path, e))
}

/// The archive being written. Layers enter it in manifest order: the layer whose turn it is
/// streams straight into the archive (`direct`), the others into spool files until their turn
/// comes, when what they have so far is copied in by the kernel (`copy_file_range`) and the rest
/// streams. Most bytes are thus written once, and the first layer, usually the biggest, always.
/// Without `direct` every layer is spooled and its file kept (`--no-rm` keeps the directory).
pub struct ArchiveWriter {
    file: File,
    temp: PathBuf,
    dest: PathBuf,
    direct: bool,
    /// The index of the layer that owns the end of the archive; only its thread writes there.
    turn: AtomicUsize,
    /// Layers spooled completely before their turn, appended by whoever hands the turn on.
    waiting: Mutex<Vec<Option<Spooled>>>,
    finished: bool,
    _interrupt: OnInterrupt,
}

/// A layer's entries besides `layer.tar`, and its directory name.
pub struct LayerEntries {
    pub id: String,
    pub files: [(&'static str, Vec<u8>); 2],
}

struct Spooled {
    entries: LayerEntries,
    path: PathBuf,
}

impl ArchiveWriter {
    /// Starts the archive for `dest` under its temporary name, for `layers` layers.
    pub fn create(dest: &Path, layers: usize, direct: bool) -> Result<ArchiveWriter, Error> {
        let temp = temp_name(dest);
        let file = File::create(&temp).map_err(|e| Error::io(&temp, e))?;
        Ok(ArchiveWriter {
            _interrupt: on_interrupt(&temp, Undo::Remove),
            file,
            temp,
            dest: dest.to_path_buf(),
            direct,
            turn: AtomicUsize::new(0),
            waiting: Mutex::new((0..layers).map(|_| None).collect()),
            finished: false,
        })
    }

    /// Where layer `index`'s `layer.tar` goes: straight into the archive if it is its turn,
    /// else into `spool` (its file in the image directory) for now.
    pub fn layer(
        &self,
        index: usize,
        entries: LayerEntries,
        spool: &Path,
    ) -> Result<LayerSink<'_>, Error> {
        let mut sink = LayerSink {
            archive: self,
            index,
            entries,
            spool_path: spool.to_path_buf(),
            spool: None,
            header_at: None,
            len: 0,
        };
        if self.direct && self.turn.load(Ordering::Acquire) == index {
            sink.take_turn().map_err(|e| Error::io(&self.temp, e))?;
        } else {
            // Read back when its turn comes mid-layer.
            let file = fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(spool);
            sink.spool = Some(file.map_err(|e| Error::io(spool, e))?);
        }
        Ok(sink)
    }

    /// Appends the image's other files (see `image_files`), syncs and renames the archive
    /// into place. Every layer must have been finished.
    pub fn finish(mut self, files: &[(String, Vec<u8>)]) -> Result<(), Error> {
        let io_err = |e| Error::io(&self.temp, e);
        let layers = self.waiting.lock().map_or(0, |w| w.len());
        if self.turn.load(Ordering::Acquire) != layers {
            return Err(io_err(io::Error::other(
                "a layer is missing from the archive",
            )));
        }
        let mut out = &self.file;
        for (name, bytes) in files {
            append_bytes(&mut out, name, bytes).map_err(io_err)?;
        }
        // The end of a tar archive: two zero blocks.
        out.write_all(&[0; 1024]).map_err(io_err)?;
        out.sync_all().map_err(io_err)?;
        fs::rename(&self.temp, &self.dest).map_err(|e| Error::io(&self.dest, e))?;
        self.finished = true;
        Ok(())
    }

    /// Hands the end of the archive to layer `next`, first appending it and its successors
    /// if they are already spooled completely. Called by the layer that had the turn.
    fn pass_turn(&self, mut next: usize) -> io::Result<()> {
        let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(spooled) = waiting.get_mut(next).and_then(Option::take) {
            self.append_spooled(&spooled)?;
            next += 1;
        }
        self.turn.store(next, Ordering::Release);
        Ok(())
    }

    fn append_spooled(&self, spooled: &Spooled) -> io::Result<()> {
        let mut out = &self.file;
        append_layer_dir(&mut out, &spooled.entries)?;
        let mut spool = File::open(&spooled.path)?;
        let len = spool.metadata()?.len();
        out.write_all(header(&layer_tar_name(&spooled.entries), len)?.as_bytes())?;
        copy_spool(&mut spool, &mut out, len)?;
        pad(&mut out, len)?;
        self.discard_spool(&spooled.path)
    }

    fn discard_spool(&self, path: &Path) -> io::Result<()> {
        if self.direct {
            fs::remove_file(path)?;
        }
        Ok(())
    }
}

impl Drop for ArchiveWriter {
    fn drop(&mut self) {
        if !self.finished {
            let _ = fs::remove_file(&self.temp);
        }
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
            let mut waiting = archive.waiting.lock().unwrap_or_else(|p| p.into_inner());
            if archive.turn.load(Ordering::Acquire) != index {
                // The layer that has the turn appends this one when it hands the turn on.
                waiting[index] = Some(spooled);
                return Ok(());
            }
            drop(waiting);
            archive.append_spooled(&spooled).map_err(io_err)?;
        } else if let Some(at) = header_at {
            let header = header(&layer_tar_name(&entries), len).map_err(io_err)?;
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
        append_layer_dir(&mut out, &self.entries)?;
        self.header_at = Some(out.stream_position()?);
        out.write_all(&[0; 512])?;
        if let Some(mut spool) = self.spool.take() {
            spool.rewind()?;
            copy_spool(&mut spool, &mut out, self.len)?;
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
            None => (&self.archive.file).write(buf)?,
        };
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
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

fn layer_tar_name(entries: &LayerEntries) -> String {
    format!("{}/layer.tar", entries.id)
}

/// `<id>/`, `<id>/VERSION`, `<id>/json`.
fn append_layer_dir(out: &mut impl Write, entries: &LayerEntries) -> io::Result<()> {
    let mut dir = header(&format!("{}/", entries.id), 0)?;
    dir.set_entry_type(tar::EntryType::Directory);
    dir.set_mode(0o755);
    dir.set_cksum();
    out.write_all(dir.as_bytes())?;
    for (name, bytes) in &entries.files {
        append_bytes(out, &format!("{}/{name}", entries.id), bytes)?;
    }
    Ok(())
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

    #[test]
    fn layer_ids_chain_and_differ_for_repeated_layers() {
        let a = Digest::of_bytes(b"a");
        let ids = layer_ids(&[a.clone(), a.clone()]);
        assert_eq!(ids.len(), 2);
        assert_ne!(ids[0], ids[1]);
        assert_eq!(layer_ids(&[a])[0], ids[0]);
    }

    #[test]
    fn image_files_name_config_layers_and_tag() {
        let config = br#"{"rootfs":{}}"#;
        let digest = Digest::of_bytes(config);
        let files = image_files(
            config,
            &digest,
            &["aa".into(), "bb".into()],
            Some("host:5000/app:v1"),
        );
        let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
        let config_name = format!("{}.json", digest.hex());
        assert_eq!(
            names,
            [config_name.as_str(), "manifest.json", "repositories"]
        );
        assert_eq!(files[0].1, config);
        assert_eq!(
            String::from_utf8_lossy(&files[1].1),
            format!(
                r#"[{{"Config":"{config_name}","RepoTags":["host:5000/app:v1"],"Layers":["aa/layer.tar","bb/layer.tar"]}}]"#
            )
        );
        assert_eq!(files[2].1, b"{\"host:5000/app\":{\"v1\":\"bb\"}}\n");
        let untagged = image_files(config, &digest, &["aa".into()], None);
        assert!(String::from_utf8_lossy(&untagged[1].1).contains(r#""RepoTags":[]"#));
        assert_eq!(untagged[2].1, b"{}\n");
    }

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("dockersave-archive-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn entries(id: &str) -> LayerEntries {
        LayerEntries {
            id: id.into(),
            files: layer_files(id, None, None, None),
        }
    }

    /// Three layers finishing out of order: layer 1 starts spooled and takes the turn midway,
    /// layer 2 is spooled completely and waits, layer 0 streams. Returns the archive's bytes.
    fn write_out_of_order(dir: &Path, direct: bool) -> Vec<u8> {
        let dest = dir.join(format!("image-{direct}.tar"));
        let data: Vec<Vec<u8>> = (0..3u8)
            .map(|i| vec![b'a' + i; 700 * (i as usize + 1)])
            .collect();
        let archive = ArchiveWriter::create(&dest, 3, direct).unwrap();
        let mut one = archive
            .layer(1, entries("one"), &dir.join("one.tar"))
            .unwrap();
        one.write_all(&data[1][..100]).unwrap();
        let mut zero = archive
            .layer(0, entries("zero"), &dir.join("zero.tar"))
            .unwrap();
        zero.write_all(&data[0]).unwrap();
        let mut two = archive
            .layer(2, entries("two"), &dir.join("two.tar"))
            .unwrap();
        two.write_all(&data[2]).unwrap();
        zero.finish().unwrap();
        two.finish().unwrap();
        one.write_all(&data[1][100..]).unwrap();
        one.finish().unwrap();
        archive
            .finish(&[("manifest.json".into(), b"[]".to_vec())])
            .unwrap();
        assert!(!temp_name(&dest).exists());
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
        let archive = ArchiveWriter::create(&dest, 2, true).unwrap();
        let mut zero = archive
            .layer(0, entries("zero"), &dir.join("zero.tar"))
            .unwrap();
        zero.write_all(b"partial").unwrap();
        drop(zero);
        assert!(archive.finish(&[]).is_err());
        assert!(!dest.exists() && !temp_name(&dest).exists());
        fs::remove_dir_all(&dir).unwrap();
    }
}
