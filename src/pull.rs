//! One pull, start to finish: resolve the manifest for the platform, fetch and verify the config,
//! run every layer through the pipeline into the archive as it arrives (or into the image
//! directory, with --no-tar or --no-rm), then finish the archive.
//!
//! This is the only module that touches both the registry and the disk. It owns cleanup: whatever
//! this run created is removed on failure (kept with `--no-rm`), and nothing appears under a final
//! name until it is complete.

use crate::archive::{self, ArchiveWriter, LayerEntries};
use crate::cache::{Cache, Tee};
use crate::cli::Options;
use crate::error::Error;
use crate::manifest::{self, Config, Descriptor, Fetched, Manifest, Platform};
use crate::pipeline::{self, LayerLabel, LayerStats};
use crate::registry::auth::Credentials;
use crate::registry::http::Http;
use crate::registry::Registry;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

/// Pulls `options.image` and returns the path of what it wrote (archive or directory).
pub fn pull(options: &Options, credentials: Option<Credentials>) -> Result<PathBuf, Error> {
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
    fs::create_dir_all(&options.working_dir).map_err(|e| Error::io(&options.working_dir, e))?;
    archive::remove_stale_partials(&options.working_dir);
    let cache = options.cache_dir.as_deref().map(Cache::open).transpose()?;

    eprintln!("Pulling {}", options.image);
    let http = Http::new(&options.http)?;
    let registry = Registry::connect(http, &options.image, options.insecure, credentials)?;
    let manifest = resolve(&registry, options)?;
    let config_bytes = match cache
        .as_ref()
        .and_then(|c| c.get_bytes(&manifest.config.digest, manifest.config.size))
    {
        Some(bytes) => bytes,
        None => {
            let bytes = registry.small_blob(&manifest.config, "the image config")?;
            if let Some(cache) = &cache {
                cache.put_bytes(&manifest.config.digest, &bytes)?;
            }
            bytes
        }
    };
    let config = manifest::parse_config(&config_bytes).map_err(|detail| Error::Invalid {
        what: "the image config".into(),
        detail,
    })?;
    if config.diff_ids.len() != manifest.layers.len() {
        return Err(Error::Invalid {
            what: "the image".into(),
            detail: format!(
                "the manifest lists {} layers but the config {} diff IDs",
                manifest.layers.len(),
                config.diff_ids.len()
            ),
        });
    }
    if let (Some(os), Some(arch)) = (&config.os, &config.architecture) {
        let actual = Platform::new(os, arch, config.variant.as_deref());
        if actual.os != options.platform.os || actual.architecture != options.platform.architecture
        {
            eprintln!(
                "warning: the image is for {actual}, not {}",
                options.platform
            );
        }
    }

    let work_dir = archive::temp_name(&final_dir);
    let mut cleanup = Cleanup {
        dir: Some(work_dir.clone()),
        keep: options.no_rm,
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
        registry: &registry,
        cache: cache.as_ref(),
        work_dir: &work_dir,
        ids: &ids,
        config: &config,
        layers: &manifest.layers,
        archive: archive.as_ref(),
        tar_path: &tar_path,
        keep_dir,
    };
    let stats = fetch_layers(&job)?;
    let compressed: u64 = stats.iter().map(|s| s.compressed).sum();
    let uncompressed: u64 = stats.iter().map(|s| s.uncompressed).sum();
    let repo_tag = options.image.repo_tag();
    let files = archive::image_files(
        &config_bytes,
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
    eprintln!(
        "Saved {} (image {}, {total} layers, {} downloaded, {} unpacked) to {}",
        repo_tag.as_deref().unwrap_or("untagged image"),
        manifest.config.digest,
        size(compressed),
        size(uncompressed),
        written.display()
    );
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
    eprintln!(
        "  {name}: {} compressed, {} unpacked",
        size(stats.compressed),
        size(stats.uncompressed)
    );
    Ok(stats)
}

/// Runs layer `i` through the pipeline into `out`, from the cache or the registry.
fn unpack(
    job: &LayerJob,
    i: usize,
    name: &str,
    out_path: &Path,
    out: &mut impl std::io::Write,
) -> Result<LayerStats, Error> {
    let (blob, diff_id) = (&job.layers[i], &job.config.diff_ids[i]);
    let label = LayerLabel {
        name,
        host: job.registry.host(),
        out_path,
    };
    match (
        job.cache,
        job.cache.and_then(|c| c.get(&blob.digest, blob.size)),
    ) {
        (_, Some(cached)) => pipeline::unpack_layer(cached, blob, diff_id, out, &label),
        (Some(cache), None) => {
            let mut entry = cache.entry(&blob.digest)?;
            let body = job.registry.blob_stream(&blob.digest, blob.size, name)?;
            let mut tee = Tee::new(body, &mut entry);
            let stats = pipeline::unpack_layer(&mut tee, blob, diff_id, out, &label)?;
            if tee.complete() {
                entry.commit()?;
            }
            Ok(stats)
        }
        (None, None) => {
            let body = job.registry.blob_stream(&blob.digest, blob.size, name)?;
            pipeline::unpack_layer(body, blob, diff_id, out, &label)
        }
    }
}

/// Fetches the manifest for the reference, stepping through an index to the platform's entry.
fn resolve(registry: &Registry, options: &Options) -> Result<Manifest, Error> {
    let image = options.image.to_string();
    let mut reference = options.image.manifest_ref();
    // An index may point to another index; two levels are plenty.
    for _ in 0..3 {
        let fetched = registry.manifest(&reference)?;
        match manifest::parse(&fetched.bytes, fetched.content_type.as_deref()) {
            Ok(Fetched::Image(manifest)) => {
                eprintln!("  manifest {}", fetched.digest);
                if let Some(layer) = manifest.layers.iter().find(|l| l.media_type.contains("zstd")) {
                    return Err(Error::Unsupported(format!(
                        "{image} has zstd-compressed layers ({}), which dockersave does not support yet",
                        layer.digest
                    )));
                }
                return Ok(manifest);
            }
            Ok(Fetched::Index(entries)) => {
                let entry = manifest::choose(&entries, &options.platform).map_err(|available| {
                    Error::PlatformNotFound { image: image.clone(), wanted: options.platform.to_string(), available }
                })?;
                eprintln!("  platform {}: {}", options.platform, entry.descriptor.digest);
                reference = entry.descriptor.digest.to_string();
            }
            Err(detail) if detail == "schema1" => {
                return Err(Error::Unsupported(format!(
                    "{image} uses the Docker schema 1 manifest format, which is deprecated and not supported; push it again with a current tool"
                )))
            }
            Err(detail) => return Err(Error::Invalid { what: format!("the manifest of {image}"), detail }),
        }
    }
    Err(Error::Invalid {
        what: format!("the manifest of {image}"),
        detail: "indexes nest too deeply".into(),
    })
}

/// Removes the image directory this run created unless told to keep it.
struct Cleanup {
    dir: Option<PathBuf>,
    keep: bool,
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

fn size(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= 1e9 {
        format!("{:.1} GB", b / 1e9)
    } else if b >= 1e6 {
        format!("{:.1} MB", b / 1e6)
    } else if b >= 1e3 {
        format!("{:.1} kB", b / 1e3)
    } else {
        format!("{bytes} B")
    }
}
