//! `--flatten FILE` (or `-` for standard output): the merged filesystem as one tar; and
//! `--initramfs FILE`, the same merge as a (compressed) newc cpio for the kernel. Layers are
//! read from the top down (the top one streams first, lower ones download ahead into spools);
//! a file is written under a temporary name and renamed when complete.
//!
//! An initramfs reads each layer twice: its files must say they have hard links before the
//! links come (see `sinks::cpio`), so a first read verifies the blob and counts its links
//! while keeping a copy in the spool, and the merge reads that copy, verifying it again (it lay
//! on disk in between). Disk use is one compressed layer more; memory does not grow.

use super::options::{Init, Initramfs};
use super::Options;
use super::{size, Image, SpoolDir};
use crate::error::Error;
use crate::fetch;
use crate::layer_tar::{Entry, Kind, Time, TreePath};
use crate::outfile::{self, NewFile};
use crate::overlap;
use crate::pipeline::{CopyingReader, LayerLabel, LayerReader, LayerStats};
use crate::sinks::archive::Compressor;
use crate::sinks::cpio::Summary;
use crate::sinks::flatten::Flatten;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

/// The directory the spool (and the temporary file) go in: FILE's, or for stdout the working
/// directory; `pull` prepares it before anything is fetched.
pub(super) fn spool_near(options: &Options, file: &Path) -> PathBuf {
    match file.parent() {
        _ if file.as_os_str() == "-" => options.working_dir.clone(),
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Writes the tar, or with `initramfs` the initramfs, to `file`.
pub(super) fn save(
    options: &Options,
    image: &Image,
    file: &Path,
    initramfs: Option<&Initramfs>,
) -> Result<Option<PathBuf>, Error> {
    let to_stdout = file.as_os_str() == "-";
    // Beside FILE, named after it; for stdout in the working directory.
    let near = if to_stdout {
        options.working_dir.join("flatten")
    } else {
        file.to_path_buf()
    };
    let spool = SpoolDir::create(&near)?;
    if to_stdout {
        return to_stdout_as(options, image, &spool, initramfs);
    }
    // A terminal, `/dev/null` or the user's FIFO is written as it is; only a regular file gets
    // a temporary name and a rename (see `outfile::target`).
    let temp = match outfile::target(file)? {
        outfile::Target::Stdout => return to_stdout_as(options, image, &spool, initramfs),
        outfile::Target::Stream(out) => {
            let mut buffered = BufWriter::with_capacity(64 * 1024, &out);
            merge(options, image, &spool, &mut buffered, file, initramfs)?;
            buffered.flush().map_err(|e| Error::io(file, e))?;
            return Ok(Some(file.to_path_buf()));
        }
        outfile::Target::File => NewFile::create(file)?,
    };
    let mut buffered = BufWriter::with_capacity(64 * 1024, temp.file());
    merge(options, image, &spool, &mut buffered, file, initramfs)?;
    buffered.flush().map_err(|e| Error::io(&temp.path(), e))?;
    drop(buffered);
    temp.persist()?;
    Ok(Some(file.to_path_buf()))
}

fn to_stdout_as(
    options: &Options,
    image: &Image,
    spool: &SpoolDir,
    initramfs: Option<&Initramfs>,
) -> Result<Option<PathBuf>, Error> {
    let mut out = BufWriter::with_capacity(64 * 1024, io::stdout().lock());
    let shown = Path::new("standard output");
    merge(options, image, spool, &mut out, shown, initramfs)?;
    out.flush().map_err(|e| Error::io(shown, e))?;
    Ok(None)
}

/// Merges the image into `out` as a tar, or as `initramfs` asks; `shown` names where it goes,
/// for messages.
fn merge(
    options: &Options,
    image: &Image,
    spool: &SpoolDir,
    out: &mut dyn Write,
    shown: &Path,
    initramfs: Option<&Initramfs>,
) -> Result<(), Error> {
    let layers = image.manifest.layers.len();
    let Some(initramfs) = initramfs else {
        let mut flat = Flatten::tar(out);
        let compressed = merge_layers(image, spool, &mut flat, shown, false)?;
        flat.finish()?;
        image.progress().info(&format!(
            "Flattened {} ({layers} layers, {} downloaded) into {}",
            options.image,
            size(compressed),
            shown.display()
        ));
        return Ok(());
    };
    let failed = |e| Error::io(shown, e);
    // The writer type of archives (`pull::archive`), so the compressors are compiled once.
    let out: Box<dyn Write + '_> = Box::new(out);
    let mut packed = Compressor::for_kernel(out, initramfs.compression).map_err(failed)?;
    let mut flat = Flatten::cpio(&mut packed)?;
    if let Some(init) = &initramfs.init {
        flat.above(init_link(image, init)?, layers)?;
    }
    let compressed = merge_layers(image, spool, &mut flat, shown, true)?;
    let summary = flat.finish()?.unwrap_or_default();
    packed.finish().map_err(failed)?;
    image.progress().info(&format!(
        "Wrote the initramfs of {} ({layers} layers, {} downloaded) to {}",
        options.image,
        size(compressed),
        shown.display()
    ));
    tell(image, initramfs, &summary);
    Ok(())
}

/// Merges every layer, top first, into `flat`; with `count_links` (a cpio) each is read twice,
/// as the module says. Returns the bytes downloaded.
fn merge_layers(
    image: &Image,
    spool: &SpoolDir,
    flat: &mut Flatten,
    shown: &Path,
    count_links: bool,
) -> Result<u64, Error> {
    let layers = &image.manifest.layers;
    let blobs = image.blobs(spool);
    let order: Vec<usize> = (0..layers.len()).rev().collect();
    let mut compressed = 0;
    image.show_layers();
    let merged = fetch::in_order(&blobs, &order, &mut |i, body| {
        let name = image.layer_name(i);
        let label = image.label(&name, shown);
        let layer = (i, name.as_str(), &label);
        let stats = match count_links {
            false => read(image, layer, body, flat, false)?,
            true => {
                // The copy is verified again as it is merged: it lay on disk in between.
                let kept_name = format!("layer-{i}");
                let kept = spool.dir().join(&kept_name);
                let merged = spool
                    .dir()
                    .create_file(kept_name.as_ref())
                    .and_then(|file| {
                        let mut copy = BufWriter::with_capacity(64 * 1024, file);
                        let copying = &mut CopyingReader::new(body, &mut copy);
                        read(image, layer, copying, flat, true)?;
                        copy.flush().map_err(|e| Error::io(&kept, e))?;
                        drop(copy);
                        let mut file = File::open(&kept).map_err(|e| Error::io(&kept, e))?;
                        read(image, layer, &mut file, flat, false)
                    });
                spool.dir().remove(kept_name.as_ref());
                merged?
            }
        };
        compressed += stats.compressed;
        image.progress().finished(
            i,
            &format!(
                "  {name}: {} compressed, {} merged",
                size(stats.compressed),
                size(stats.uncompressed)
            ),
        );
        Ok(())
    });
    image.progress().done();
    merged?;
    Ok(compressed)
}

/// Reads layer `layer` (index, name, label) from `body` through the pipeline into `flat`:
/// merged, or with `count` only its hard links counted.
fn read(
    image: &Image,
    (i, name, label): (usize, &str, &LayerLabel),
    body: &mut (dyn Read + Send),
    flat: &mut Flatten,
    count: bool,
) -> Result<LayerStats, Error> {
    let layers = &image.manifest.layers;
    let mut reader = LayerReader::new(body, &layers[i], &image.config.diff_ids[i], label);
    // Inflated and hashed on the other core while the entries are merged.
    let read = overlap::read_ahead(&mut reader, |tar| match count {
        true => flat.count_links(tar, name),
        false => flat.layer(tar, i, name),
    });
    if let Err(e) = read {
        return Err(reader.explain(e));
    }
    reader.finish()
}

/// The symlink `/init` that `--init` adds.
fn init_link(image: &Image, init: &Init) -> Result<Entry, Error> {
    let target = match init {
        Init::Path(path) => path.clone(),
        Init::Entrypoint => {
            // Docker's rule: the command is the entrypoint's arguments, or the program.
            let config = &image.config;
            let run: Vec<&String> = config.entrypoint.iter().chain(&config.cmd).collect();
            let Some((program, arguments)) = run.split_first() else {
                return Err(Error::Usage("--init entrypoint: the image names no entrypoint or command; give --init PATH, the program's path in the image".into()));
            };
            if !program.starts_with('/') {
                return Err(Error::Usage(format!(
                    "--init entrypoint: the image's entrypoint is {program:?}, which is not an absolute path; give --init PATH, its path in the image"
                )));
            }
            if !arguments.is_empty() {
                image.progress().warn(&format!(
                    "the kernel starts /init (-> {program}) without the image's arguments {arguments:?}; put them on the kernel command line after `--`"
                ));
            }
            program.to_string()
        }
    };
    Ok(Entry {
        path: TreePath::parse(b"init").map_err(Error::Usage)?,
        kind: Kind::Symlink(target.into_bytes()),
        mode: 0o777,
        uid: 0,
        gid: 0,
        mtime: Time::default(),
        sparse: None,
        xattrs: Vec::new(),
        size: 0,
    })
}

/// Says what the initramfs lacks that a boot may need.
fn tell(image: &Image, initramfs: &Initramfs, summary: &Summary) {
    let progress = image.progress();
    if !summary.has_init && initramfs.init.is_none() {
        progress.warn("the image has no /init, the program the kernel runs from an initramfs; give --init PATH (a symlink /init -> PATH) or --init entrypoint");
    }
    if summary.dropped_xattrs > 0 {
        progress.warn(&format!(
            "{} files' extended attributes (file capabilities, SELinux labels) are not in the initramfs: the newc format has no place for them",
            summary.dropped_xattrs
        ));
    }
}
