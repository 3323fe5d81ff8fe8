//! The default output: a `docker save` archive, every layer run through the pipeline into the
//! archive as it arrives (or into the image directory, with --no-tar or --no-rm).

use super::{size, Image};
use crate::cache::{self, Cache};
use crate::cli::Options;
use crate::error::Error;
use crate::manifest::{Config, Descriptor};
use crate::partial;
use crate::pipeline::{self, LayerLabel, LayerStats};
use crate::progress::Step;
use crate::registry::Registry;
use crate::sinks::archive::{self, ArchiveWriter, LayerEntries};
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

/// Writes the archive (or its directory) and returns its path.
pub(super) fn save(options: &Options, image: &Image) -> Result<PathBuf, Error> {
    let base_name = options
        .layers_dir
        .clone()
        .unwrap_or_else(|| options.image.archive_base_name());
    let tar_path = options.working_dir.join(
        options
            .tarname
            .clone()
            .unwrap_or_else(|| format!("{}.tar", options.image.archive_base_name())),
    );
    let final_dir = options.working_dir.join(&base_name);
    let keep_dir = options.no_tar || options.no_rm;
    if keep_dir && final_dir.exists() {
        return Err(Error::io(
            &final_dir,
            std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "already exists; remove it or choose another --layers-dir",
            ),
        ));
    }
    let (manifest, config, config_bytes) = (&image.manifest, &image.config, &image.config_bytes);
    let cache = image.cache.as_ref();
    let registry = &image.registry;
    let work_dir = partial::temp_name(&final_dir);
    let mut cleanup = Cleanup {
        dir: Some(work_dir.clone()),
        keep: options.no_rm,
        _interrupt: partial::on_interrupt(
            &work_dir,
            if options.no_rm {
                partial::Undo::Keep
            } else {
                partial::Undo::Remove
            },
        ),
    };
    fs::create_dir(&work_dir).map_err(|e| Error::io(&work_dir, e))?;
    let ids = archive::layer_ids(&config.diff_ids);
    let total = manifest.layers.len();
    // With --no-rm the directory must hold every layer.tar too, so nothing streams past it.
    let archive = if options.no_tar {
        None
    } else {
        Some(ArchiveWriter::create(&tar_path, total, !options.no_rm)?)
    };
    let job = LayerJob {
        registry,
        cache,
        work_dir: &work_dir,
        ids: &ids,
        config,
        layers: &manifest.layers,
        archive: archive.as_ref(),
        tar_path: &tar_path,
        keep_dir,
    };
    image.show_layers();
    let stats = fetch_layers(&job);
    image.progress().done();
    let stats = stats?;
    let compressed: u64 = stats.iter().map(|s| s.compressed).sum();
    let uncompressed: u64 = stats.iter().map(|s| s.uncompressed).sum();
    let repo_tag = options.image.repo_tag();
    let files = archive::image_files(
        config_bytes,
        &manifest.config.digest,
        &ids,
        repo_tag.as_deref(),
    );
    if keep_dir {
        for (name, bytes) in &files {
            archive::write_file(&work_dir.join(name), bytes)?;
        }
    }
    let written = match archive {
        Some(archive) => {
            archive.finish(&files)?;
            tar_path
        }
        None => final_dir.clone(),
    };
    if keep_dir {
        fs::rename(&work_dir, &final_dir).map_err(|e| Error::io(&final_dir, e))?;
    }
    // Success: the directory was renamed into place, or is no longer wanted and goes now.
    cleanup.keep = false;
    drop(cleanup);
    image.progress().info(&format!(
        "Saved {} (image {}, {total} layers, {} downloaded, {} unpacked) to {}",
        repo_tag.as_deref().unwrap_or("untagged image"),
        manifest.config.digest,
        size(compressed),
        size(uncompressed),
        written.display()
    ));
    Ok(written)
}

/// What every layer of one pull shares.
struct LayerJob<'a> {
    registry: &'a Registry,
    cache: Option<&'a Cache>,
    work_dir: &'a Path,
    ids: &'a [String],
    config: &'a Config,
    layers: &'a [Descriptor],
    /// The archive being written, unless --no-tar.
    archive: Option<&'a ArchiveWriter>,
    tar_path: &'a Path,
    /// Whether the image directory is kept (--no-tar, --no-rm): then it gets every file.
    keep_dir: bool,
}

/// How many layers are pulled at once. Downloads wait on the network and the pipeline on the
/// CPU, so a few at a time keep the link and both cores busy (Docker also pulls three at once);
/// each one costs a connection and about 300 KiB of buffers.
const CONCURRENT_LAYERS: usize = 3;

/// Runs every layer through the pipeline on a few threads. On the first failure the others
/// finish the layer they are on and take no new one; the error of the lowest layer is returned.
fn fetch_layers(job: &LayerJob) -> Result<Vec<LayerStats>, Error> {
    let total = job.layers.len();
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let results: Mutex<Vec<Option<Result<LayerStats, Error>>>> =
        Mutex::new((0..total).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..CONCURRENT_LAYERS.min(total) {
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
                    results.lock().unwrap_or_else(|p| p.into_inner())[i] = Some(result);
                }
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

/// One layer: from the cache if it holds it, else from the registry (filling the cache), into
/// the archive, or into `<id>/layer.tar` beside its `VERSION` and `json`.
fn fetch_layer(job: &LayerJob, i: usize) -> Result<LayerStats, Error> {
    let (blob, id) = (&job.layers[i], &job.ids[i]);
    let layer_dir = job.work_dir.join(id);
    fs::create_dir(&layer_dir).map_err(|e| Error::io(&layer_dir, e))?;
    let out_path = layer_dir.join("layer.tar");
    let name = format!("layer {}/{} ({})", i + 1, job.layers.len(), blob.digest);
    let parent = i.checked_sub(1).map(|p| job.ids[p].as_str());
    let files = archive::layer_files(
        id,
        parent,
        job.config.created.as_deref(),
        job.config.os.as_deref(),
    );
    if job.keep_dir {
        for (file_name, bytes) in &files {
            archive::write_file(&layer_dir.join(file_name), bytes)?;
        }
    }
    let stats = match job.archive {
        Some(archive) => {
            let entries = LayerEntries {
                id: id.clone(),
                files,
            };
            let mut sink = archive.layer(i, entries, &out_path)?;
            let stats = unpack(job, i, &name, job.tar_path, &mut sink)?;
            sink.finish()?;
            stats
        }
        None => {
            let mut out = File::create(&out_path).map_err(|e| Error::io(&out_path, e))?;
            let stats = unpack(job, i, &name, &out_path, &mut out)?;
            out.sync_all().map_err(|e| Error::io(&out_path, e))?;
            stats
        }
    };
    job.registry.progress().finished(
        i,
        &format!(
            "  {name}: {} compressed, {} unpacked",
            size(stats.compressed),
            size(stats.uncompressed)
        ),
    );
    Ok(stats)
}

/// Runs layer `i` through the pipeline into `out`, from the cache or the registry.
fn unpack(
    job: &LayerJob,
    i: usize,
    name: &str,
    out_path: &Path,
    out: &mut dyn std::io::Write,
) -> Result<LayerStats, Error> {
    let (blob, diff_id) = (&job.layers[i], &job.config.diff_ids[i]);
    let label = LayerLabel {
        name,
        host: job.registry.host(),
        out_path,
    };
    if let Some(mut cached) = job.cache.and_then(|c| c.get(&blob.digest, blob.size)) {
        job.registry.progress().step(i, Step::Cached);
        return pipeline::unpack_layer(&mut cached, blob, diff_id, out, &label);
    }
    let mut body = job
        .registry
        .blob_stream(&blob.digest, blob.size, name, Some(i))?;
    cache::filling(job.cache, &blob.digest, &mut body, |body| {
        pipeline::unpack_layer(body, blob, diff_id, out, &label)
    })
}

/// Removes the image directory this run created unless told to keep it.
struct Cleanup {
    dir: Option<PathBuf>,
    keep: bool,
    _interrupt: partial::OnInterrupt,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(dir) = self.dir.take() {
            if !dir.exists() {
                return;
            }
            if self.keep {
                eprintln!("kept the partial directory {} (--no-rm)", dir.display());
            } else {
                let _ = fs::remove_dir_all(&dir);
            }
        }
    }
}
