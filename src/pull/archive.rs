//! The default output: a `docker save` archive of one or more images, every layer run through
//! the pipeline into the archive as it arrives (or into the image directory, with --no-tar or
//! --no-rm).
//!
//! Two ways to write it. Into a file, several layers at once, each at its place as soon as the
//! sizes of the layers ahead are known or predicted (`ArchiveWriter`; `predict` asks for a
//! gzip trailer). Front to back, one layer after the other with nothing on disk, when the
//! archive goes to standard output, a pipe or a compressor (`TarStream`): then each layer's size
//! must be known before its bytes, which for an uncompressed layer is read from its gzip
//! trailer and checked as the layer streams.

use super::{size, thin, Image};
use super::{ArchiveForm, Options};
use crate::error::Error;
use crate::outfile::{self, Dir, NewDir, NewFile};
use crate::overlap;
use crate::partial::Undo;
use crate::pipeline::LayerStats;
use crate::sinks::archive::{
    self, ArchiveWriter, Compression, Compressor, LayerEntries, TarStream,
};
use crate::sinks::layout::{self, Entry, Plan};
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

/// Where the archive goes.
enum Target {
    /// A regular file (new or replaced), written under a temporary name.
    File(PathBuf),
    /// Standard output, or a terminal, `/dev/null` or FIFO named by `-o` (see
    /// `outfile::target`): written front to back.
    Stream(Option<(File, PathBuf)>),
    /// `--no-tar`: the directory only.
    Dir,
}

/// Where the archive goes; a device or pipe is opened here, once.
fn target(options: &Options, form: &ArchiveForm) -> Result<Target, Error> {
    if form.no_tar {
        return Ok(Target::Dir);
    }
    let Some(path) = archive_path(options, form) else {
        return Ok(Target::Stream(None));
    };
    Ok(match outfile::target(&path)? {
        outfile::Target::Stdout => Target::Stream(None),
        outfile::Target::Stream(file) => Target::Stream(Some((file, path))),
        outfile::Target::File => Target::File(path),
    })
}

/// Whether the archive goes somewhere other than a file in the working directory, judged
/// without opening it (a FIFO's reader would see it closed).
fn streams(options: &Options, form: &ArchiveForm) -> bool {
    !form.no_tar
        && archive_path(options, form)
            .is_none_or(|path| fs::metadata(path).is_ok_and(|m| !m.is_file() && !m.is_dir()))
}

/// The archive's path: `-o FILE`, else `--tarname` or the image's name in the working
/// directory. `None` for standard output.
fn archive_path(options: &Options, form: &ArchiveForm) -> Option<PathBuf> {
    if let Some(output) = &form.output {
        return (output.as_os_str() != "-").then(|| output.clone());
    }
    let extension = match form.compression {
        Compression::None => "tar",
        Compression::Gzip => "tar.gz",
        Compression::Xz => "tar.xz",
    };
    Some(
        options.working_dir.join(
            form.tarname
                .clone()
                .unwrap_or_else(|| format!("{}.{extension}", base_name(options))),
        ),
    )
}

/// `library-debian-latest`; with more images `library-debian-latest-and-2-more`.
fn base_name(options: &Options) -> String {
    let first = options.image.archive_base_name();
    match options.more_images.len() {
        0 => first,
        n => format!("{first}-and-{n}-more"),
    }
}

/// Makes the directories the archive needs before anything is fetched: none for standard
/// output (nothing but the archive is written then).
pub(super) fn prepare(options: &Options, form: &ArchiveForm) -> Result<(), Error> {
    match streams(options, form) {
        true => Ok(()),
        false => super::prepare_dir(&options.working_dir),
    }
}

/// Writes the archive (or its directory) and returns its path (`None` for standard output).
pub(super) fn save(
    options: &Options,
    form: &ArchiveForm,
    images: &[Image],
    bundles: Vec<layout::Bundle>,
    held: Option<&thin::Held>,
) -> Result<Option<PathBuf>, Error> {
    let layout_images: Vec<layout::Image> = images.iter().map(Image::for_layout).collect();
    let compressed = form.compressed_layers && !decompress_zstd(form, images);
    let leave_out = match held {
        Some(held) => held.leave_out(images, form.layout, compressed)?,
        None => layout::LeaveOut::default(),
    };
    let plan = Plan::thin(form.layout, compressed, &layout_images, bundles, &leave_out);
    if held.is_some() {
        say_thin(images, &plan);
    }
    let layers: Vec<(String, u64)> = plan
        .layers
        .iter()
        .map(|l| {
            let blob = &images[l.image].manifest.layers[l.index];
            (blob.digest.hex().to_string(), blob.size)
        })
        .collect();
    images[0].progress().layers(&layers);
    let target = target(options, form)?;
    let to_stream = matches!(target, Target::Stream(_));
    let streamed = to_stream || (form.compression != Compression::None && !form.no_tar);
    let result = if streamed {
        stream(form, images, &layout_images, &plan, target)
    } else {
        in_place(options, form, images, &layout_images, &plan, &target)
    };
    images[0].progress().done();
    let (written, stats) = match result {
        Ok(done) => done,
        Err(e) => {
            if to_stream {
                images[0].progress().warn(
                    "the archive written so far is incomplete: discard it (a loader reading it fails)",
                );
            }
            return Err(e);
        }
    };
    let compressed: u64 = stats.iter().map(|s| s.compressed).sum();
    let uncompressed: u64 = stats.iter().map(|s| s.uncompressed).sum();
    let mut names: Vec<String> = Vec::new();
    for image in images {
        let reference = &image.reference;
        let name = reference
            .repo_tag()
            .unwrap_or_else(|| reference.to_string());
        if !names.contains(&name) {
            names.push(name);
        }
    }
    let left_out = match plan.left_out.len() {
        0 => String::new(),
        n => format!(", {n} left out"),
    };
    images[0].progress().info(&format!(
        "Saved {} ({} layers{left_out}, {} downloaded, {} unpacked) to {}",
        names.join(", "),
        plan.layers.len(),
        size(compressed),
        size(uncompressed),
        written
            .as_deref()
            .map_or("standard output".into(), |p| p.display().to_string())
    ));
    Ok(written)
}

/// Tells what a thin archive leaves out, and what its receiver must hold.
fn say_thin(images: &[Image], plan: &Plan) {
    let progress = images[0].progress();
    if plan.left_out.is_empty() {
        progress.info("--have: no layer can be left out (the images named hold none of these layers on the same layers below, or another image of the archive needs it); the archive is complete");
        return;
    }
    let n = plan.left_out.len();
    progress.info(&format!(
        "Thin archive: {n} layer{} ({}) left out; load it only where {} {} already loaded (else the load fails naming a missing layer)",
        if n == 1 { "" } else { "s" },
        size(plan.left_out_bytes()),
        plan.needs.join(" and "),
        if plan.needs.len() == 1 { "is" } else { "are" },
    ));
}

/// Whether `--compressed` must decompress zstd layers after all. The legacy layout has no media
/// type for zstd, and the engines that need it cannot read zstd: there its zstd layers are
/// decompressed (all layers then, so that the archive has one form), and the user is told why.
/// Kept in the default layout, they load into Docker 26 but not 20.10 (measured: its loader
/// fails in ApplyLayer, "invalid tar header" or "unexpected EOF"), which the user is told.
fn decompress_zstd(form: &ArchiveForm, images: &[Image]) -> bool {
    // Each blob once: images of one archive may share layers.
    let zstd = images
        .iter()
        .flat_map(|image| &image.manifest.layers)
        .filter(|layer| layer.media_type.contains("zstd"))
        .map(|layer| layer.digest.to_string())
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    if zstd > 0 && form.for_old_engines() {
        images[0].progress().info(
            "--compressed --format legacy: the legacy layout has no zstd media type, and the engines that read it cannot decompress zstd; the layers are stored decompressed",
        );
        return true;
    }
    if zstd > 0 {
        images[0].progress().info(&format!(
            "--compressed keeps {zstd} zstd layer{} as served: Docker 26 loads them, Docker 20.10 cannot (its load fails in ApplyLayer); leave out --compressed for an archive every engine loads",
            if zstd == 1 { "" } else { "s" }
        ));
    }
    false
}

/// What a stored layer keeps: the blob as served (`--compressed`) or its tar.
fn keep(plan: &Plan) -> super::Keep {
    if plan.compressed {
        super::Keep::Blob
    } else {
        super::Keep::Tar
    }
}

/// Its size in the archive, once written.
fn stored_size(plan: &Plan, stats: &LayerStats) -> u64 {
    if plan.compressed {
        stats.compressed
    } else {
        stats.uncompressed
    }
}

fn layer_entries(plan: &Plan, slot: usize) -> LayerEntries {
    let layer = &plan.layers[slot];
    LayerEntries {
        before: layer
            .before
            .iter()
            .map(|e| match e {
                Entry::Dir(name) => Entry::Dir(name.clone()),
                Entry::File(name, bytes) => Entry::File(name.clone(), bytes.clone()),
            })
            .collect(),
        name: layer.name.clone(),
    }
}

/// "layer 2/3 (sha256:…)", counting the archive's stored layers.
fn layer_name(plan: &Plan, images: &[Image], slot: usize) -> String {
    let layer = &plan.layers[slot];
    format!(
        "layer {}/{} ({})",
        slot + 1,
        plan.layers.len(),
        images[layer.image].manifest.layers[layer.index].digest
    )
}

/// Front to back into standard output, a device, or a compressor over a file.
fn stream(
    form: &ArchiveForm,
    images: &[Image],
    layout_images: &[layout::Image],
    plan: &Plan,
    target: Target,
) -> Result<(Option<PathBuf>, Vec<LayerStats>), Error> {
    let compression = form.compression;
    // One writer type for every destination: the stream code is compiled once, not once per
    // destination and compressor (about 60 KiB of binary).
    match target {
        Target::Stream(None) => {
            let shown = Path::new("standard output");
            // Unlocked (a lock cannot go to the thread that writes behind); one writer here.
            let behind = !outfile::discards(io::stdout().as_fd());
            let out = Box::new(BufWriter::with_capacity(64 * 1024, io::stdout()));
            let stats = write_stream(images, layout_images, plan, out, compression, behind, shown)?;
            Ok((None, stats))
        }
        Target::Stream(Some((file, path))) => {
            let behind = !outfile::discards(file.as_fd());
            let out = Box::new(BufWriter::with_capacity(64 * 1024, file));
            let stats = write_stream(images, layout_images, plan, out, compression, behind, &path)?;
            Ok((Some(path), stats))
        }
        Target::File(path) => {
            let temp = NewFile::create(&path)?;
            let shown = temp.path();
            let file = temp.file().try_clone().map_err(|e| Error::io(&shown, e))?;
            let out = Box::new(BufWriter::with_capacity(64 * 1024, file));
            let stats = write_stream(images, layout_images, plan, out, compression, true, &shown)?;
            temp.persist()?;
            Ok((Some(path), stats))
        }
        Target::Dir => unreachable!("a directory is written in place"),
    }
}

/// Writes the archive front to back into `out` and flushes it; `behind`: on the second core
/// (not worth a hand-off when `out` is the null device and nothing compresses).
fn write_stream(
    images: &[Image],
    layout_images: &[layout::Image],
    plan: &Plan,
    out: Box<dyn Write + Send + '_>,
    compression: Compression,
    behind: bool,
    shown: &Path,
) -> Result<Vec<LayerStats>, Error> {
    let io_err = |e| Error::io(shown, e);
    // Every size first, so a layer whose size cannot be known fails the run before a byte
    // is written.
    let sizes = plan
        .layers
        .iter()
        .enumerate()
        .map(|(slot, l)| {
            let name = layer_name(plan, images, slot);
            images[l.image].stored_size(l.index, plan.compressed, &name)
        })
        .collect::<Result<Vec<u64>, Error>>()?;
    let out = Compressor::new(out, compression).map_err(io_err)?;
    let mut tar = TarStream::new(out, &plan.prelude).map_err(io_err)?;
    let mut stats = Vec::with_capacity(plan.layers.len());
    for (slot, layer) in plan.layers.iter().enumerate() {
        let image = &images[layer.image];
        let name = layer_name(plan, images, slot);
        let entries = layer_entries(plan, slot);
        let mut entry = tar.layer(&entries, sizes[slot]).map_err(io_err)?;
        // The compressor (--gzip, --xz) and the output work on the other core.
        let unpack = |out: &mut (dyn Write + Send)| {
            image.unpack(layer.index, &name, shown, out, keep(plan), Some(slot))
        };
        let result = if behind || !matches!(compression, Compression::None) {
            overlap::write_behind(&mut entry, shown, unpack)
        } else {
            unpack(&mut entry)
        };
        let wrong_size = |actual: String| {
            Error::Invalid {
            what: name.clone(),
            detail: format!(
                "it is {actual} bytes, not the {} its gzip trailer gives (a layer of 4 GiB or more, or several gzip members); use --compressed, or an archive file without --gzip/--xz",
                sizes[slot]
            ),
        }
        };
        if entry.overflowed() {
            return Err(wrong_size("more than that".into()));
        }
        let layer_stats = result?;
        if let Err(written) = entry.finish().map_err(io_err)? {
            return Err(wrong_size(written.to_string()));
        }
        report(image, slot, &name, &layer_stats);
        stats.push(layer_stats);
    }
    let files = plan.finish(layout_images, &sizes);
    let out = tar.finish(&files).map_err(io_err)?;
    let mut out = out.finish().map_err(io_err)?;
    out.flush().map_err(io_err)?;
    Ok(stats)
}

/// Into a file in place (several layers at once), and/or the image directory.
fn in_place(
    options: &Options,
    form: &ArchiveForm,
    images: &[Image],
    layout_images: &[layout::Image],
    plan: &Plan,
    target: &Target,
) -> Result<(Option<PathBuf>, Vec<LayerStats>), Error> {
    let base_name = options
        .layers_dir
        .clone()
        .unwrap_or_else(|| base_name(options));
    let final_dir = options.working_dir.join(&base_name);
    let keep_dir = form.no_tar || options.no_rm;
    if keep_dir && final_dir.exists() {
        return Err(Error::io(
            &final_dir,
            io::Error::new(
                io::ErrorKind::AlreadyExists,
                "already exists; remove it or choose another --layers-dir",
            ),
        ));
    }
    let undo = if options.no_rm {
        Undo::Keep
    } else {
        Undo::Remove
    };
    // Private until complete: no other user can plant anything in it.
    let work = NewDir::create(&final_dir, undo)?;
    let work_dir = work.dir().path().to_path_buf();
    let tar_path = match target {
        Target::File(path) => Some(path.clone()),
        _ => None,
    };
    // With --no-rm the directory must hold every layer too, so nothing streams past it.
    let archive = tar_path
        .as_deref()
        .map(|path| {
            let layers = (0..plan.layers.len())
                .map(|slot| layer_entries(plan, slot))
                .collect();
            ArchiveWriter::create(path, work.dir(), layers, !options.no_rm, &plan.prelude)
        })
        .transpose()?;
    if keep_dir {
        archive::write_entries(work.dir(), &plan.prelude)?;
    }
    let job = LayerJob {
        images,
        plan,
        work_dir: work.dir(),
        archive: archive.as_ref(),
        tar_path: tar_path.as_deref().unwrap_or(&work_dir),
        keep_dir,
        busy: AtomicUsize::new(0),
    };
    let stats = fetch_layers(&job)?;
    let sizes: Vec<u64> = stats.iter().map(|s| stored_size(plan, s)).collect();
    let files = plan.finish(layout_images, &sizes);
    if keep_dir {
        archive::write_entries(work.dir(), &files)?;
    }
    let written = match archive {
        Some(archive) => {
            archive.finish(&files)?;
            tar_path
        }
        None => Some(final_dir.clone()),
    };
    if keep_dir {
        work.persist(None)?;
    } else {
        // Success: the directory is no longer wanted and goes now.
        work.discard();
    }
    Ok((written, stats))
}

/// What every layer of one archive shares.
struct LayerJob<'a> {
    images: &'a [Image],
    plan: &'a Plan,
    work_dir: &'a Dir,
    /// The archive being written, unless --no-tar.
    archive: Option<&'a ArchiveWriter<'a>>,
    tar_path: &'a Path,
    /// Whether the image directory is kept (--no-tar, --no-rm): then it gets every file.
    keep_dir: bool,
    /// The threads still pulling layers: once they are fewer than the cores, the ones left
    /// write behind (`overlap::write_behind_from`).
    busy: AtomicUsize,
}

/// How many layers are pulled at once. Downloads wait on the network and the pipeline on the
/// CPU, so a few at a time keep the link and both cores busy (Docker also pulls three at once);
/// each one costs a connection and about 300 KiB of buffers.
const CONCURRENT_LAYERS: usize = 3;

/// Runs every stored layer through the pipeline on a few threads. On the first failure the
/// others finish the layer they are on and take no new one; the error of the lowest layer is
/// returned.
fn fetch_layers(job: &LayerJob) -> Result<Vec<LayerStats>, Error> {
    let total = job.plan.layers.len();
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let results: Mutex<Vec<Option<Result<LayerStats, Error>>>> =
        Mutex::new((0..total).map(|_| None).collect());
    let threads = CONCURRENT_LAYERS.min(total);
    job.busy.store(threads, Ordering::SeqCst);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                while !failed.load(Ordering::SeqCst) {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= total {
                        break;
                    }
                    let result = fetch_layer(job, i);
                    if result.is_err() {
                        failed.store(true, Ordering::SeqCst);
                    }
                    crate::locks::lock(&results)[i] = Some(result);
                }
                job.busy.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    let results = results.into_inner().unwrap_or_else(|p| p.into_inner());
    let mut stats = Vec::with_capacity(total);
    let mut first_error = None;
    for result in results.into_iter().flatten() {
        match result {
            Ok(s) => stats.push(s),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None if stats.len() == total => Ok(stats),
        None => Err(Error::Invalid {
            what: "the pull".into(),
            detail: "a layer was skipped".into(),
        }),
    }
}

/// One stored layer: from the cache if it holds it, else from the registry (filling the
/// cache), into the archive, or into its file in the image directory.
fn fetch_layer(job: &LayerJob, slot: usize) -> Result<LayerStats, Error> {
    let layer = &job.plan.layers[slot];
    let image = &job.images[layer.image];
    let name = layer_name(job.plan, job.images, slot);
    let out_path = job.work_dir.join(&layer.name);
    if job.keep_dir {
        archive::write_entries(job.work_dir, &layer.before)?;
    }
    // Written behind only once a core is idle: while the layers in flight outnumber the
    // cores, a writing thread for each only adds its hand-offs (measured: it slowed big2x).
    let busy = || job.busy.load(Ordering::SeqCst);
    let unpack = |path: &Path, out: &mut (dyn Write + Send)| {
        overlap::write_behind_from(out, path, &busy, |out| {
            image.unpack(layer.index, &name, path, out, keep(job.plan), Some(slot))
        })
    };
    let stats = match job.archive {
        Some(archive) => {
            let mut sink = archive.layer(slot, &mut |before| predict(job, slot, before))?;
            let stats = unpack(job.tar_path, &mut sink)?;
            sink.finish()?;
            stats
        }
        None => {
            let out = job.work_dir.create_at(Path::new(&layer.name))?;
            let stats = unpack(&out_path, &mut outfile::EarlyWriteback::new(&out))?;
            out.sync_all().map_err(|e| Error::io(&out_path, e))?;
            stats
        }
    };
    report(image, slot, &name, &stats);
    Ok(stats)
}

/// Layers of less than this (compressed) are spooled rather than placed ahead in the archive
/// by a prediction of the layers before them: copying a small layer costs less than asking.
/// (Text inflates a thousandfold: 900 KB of gzip can be 200 MB of tar.)
const PLACED_AHEAD_FROM: u64 = 64 << 10;

/// The size layer `before` will have in the archive, predicted for layer `slot` to be written
/// after it before it arrives (a gzip trailer's 4-byte range request, or a blob kept as
/// served); `None` when it cannot be known or is not worth asking.
fn predict(job: &LayerJob, slot: usize, before: usize) -> Option<u64> {
    let (layer, earlier) = (&job.plan.layers[slot], &job.plan.layers[before]);
    if job.images[layer.image].manifest.layers[layer.index].size < PLACED_AHEAD_FROM {
        return None;
    }
    let name = layer_name(job.plan, job.images, before);
    // A failed request only costs the prediction; the layer's own download tells the error.
    job.images[earlier.image]
        .known_size(earlier.index, job.plan.compressed, &name)
        .ok()
        .flatten()
}

/// A stored layer's line on the progress display, once it is in the archive.
fn report(image: &Image, slot: usize, name: &str, stats: &LayerStats) {
    image.progress().finished(
        slot,
        &format!(
            "  {name}: {} compressed, {} unpacked",
            size(stats.compressed),
            size(stats.uncompressed)
        ),
    );
}
