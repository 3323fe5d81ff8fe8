//! One pull, start to finish: connect, resolve the manifest for the platform, fetch and verify
//! the config, then hand the layers to what the command line asked for — a `docker save`
//! archive (`archive`), a root filesystem (`rootfs`), a flattened tar (`flatten`) or one layer
//! (`layer`).
//!
//! These are the only modules that touch both the registry and the disk. Each owns its cleanup:
//! whatever a run created is removed on failure (kept with `--no-rm` where that applies), and
//! nothing appears under a final name until it is complete.

mod archive;
pub(crate) mod bundle;
mod flatten;
pub mod inspect;
mod layer;
mod options;
mod rootfs;
mod thin;

pub use options::{ArchiveForm, Init, Initramfs, Logins, Options, Output};

use crate::cache;
use crate::cache::Cache;
use crate::digest::Digest;
use crate::error::Error;
use crate::fetch::Blobs;
use crate::manifest::{self, Config, Manifest, Platform};
use crate::outfile;
use crate::partial;
use crate::pipeline::LayerLabel;
use crate::pipeline::{self, CopyingReader, LayerStats};
use crate::progress::Step;
use crate::progress::{size, Progress};
use crate::reference::Reference;
use crate::registry::client::FetchedManifest;
use crate::registry::Registry;
use crate::sinks::layout;
use crate::source::{Prefer, Reach};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What every kind of output starts from: the registry, the image's manifest for the platform
/// and its verified config.
pub(crate) struct Image {
    reference: Reference,
    /// Shared by the images of one bundle (`--platform all|LIST`): one token, one connection pool.
    registry: Arc<Registry>,
    cache: Option<Cache>,
    /// The platform's manifest as served (kept byte for byte by `--compressed`), and parsed.
    served: FetchedManifest,
    manifest: Manifest,
    config_bytes: Vec<u8>,
    config: Config,
    /// The platform the index lists the image under (a bundle's member), which may say more
    /// than the config (a variant).
    listed_platform: Option<Platform>,
}

impl Image {
    /// The platform the index lists the image under, else the one its config names, if any.
    fn platform(&self) -> Option<Platform> {
        if let Some(listed) = &self.listed_platform {
            return Some(listed.clone());
        }
        let config = &self.config;
        match (&config.os, &config.architecture) {
            (Some(os), Some(arch)) => Some(Platform::new(os, arch, config.variant.as_deref())),
            _ => None,
        }
    }

    /// Warns when the config names another platform than the one asked for.
    fn check_platform(&self, platform: &Platform) {
        if let Some(actual) = self.platform() {
            if actual.os != platform.os || actual.architecture != platform.architecture {
                self.progress()
                    .warn(&format!("the image is for {actual}, not {platform}"));
            }
        }
    }

    /// How a layer is named in messages: "layer 2/3 (sha256:…)".
    fn layer_name(&self, i: usize) -> String {
        format!(
            "layer {}/{} ({})",
            i + 1,
            self.manifest.layers.len(),
            self.manifest.layers[i].digest
        )
    }

    /// Where `fetch` gets this image's layers, spooling early ones in `spool`.
    fn blobs<'a>(&'a self, spool: &'a SpoolDir) -> Blobs<'a> {
        Blobs {
            registry: &self.registry,
            cache: self.cache.as_ref(),
            layers: &self.manifest.layers,
            spool_dir: spool.dir(),
        }
    }

    fn progress(&self) -> &Progress {
        self.registry.progress()
    }

    /// Shows the layers' lines (on a terminal) before they are fetched.
    fn show_layers(&self) {
        let layers: Vec<(String, u64)> = self
            .manifest
            .layers
            .iter()
            .map(|l| (l.digest.hex().to_string(), l.size))
            .collect();
        self.progress().layers(&layers);
    }

    fn label<'a>(&'a self, name: &'a str, out_path: &'a Path) -> LayerLabel<'a> {
        LayerLabel {
            name,
            host: self.registry.host(),
            out_path,
        }
    }

    /// The image as the archive layout sees it.
    fn for_layout(&self) -> layout::Image<'_> {
        layout::Image {
            reference: &self.reference,
            manifest_bytes: &self.served.bytes,
            manifest_digest: &self.served.digest,
            manifest_media_type: self
                .served
                .content_type
                .as_deref()
                .unwrap_or(layout::OCI_MANIFEST),
            manifest: &self.manifest,
            config_bytes: &self.config_bytes,
            config: &self.config,
            platform: self.listed_platform.clone(),
        }
    }

    /// Runs layer `i` through the pipeline into `out` (`out_path` names it in messages), from
    /// the cache if it holds the blob, else from the registry, filling the cache. `line` is the
    /// layer's line on the progress display.
    fn unpack(
        &self,
        i: usize,
        name: &str,
        out_path: &Path,
        out: &mut (dyn Write + Send),
        keep: Keep,
        line: Option<usize>,
    ) -> Result<LayerStats, Error> {
        let (blob, diff_id) = (&self.manifest.layers[i], &self.config.diff_ids[i]);
        let label = self.label(name, out_path);
        let mut run = |body: &mut (dyn Read + Send)| match keep {
            Keep::Tar => pipeline::unpack_layer(body, blob, diff_id, out, &label),
            Keep::Blob => {
                let mut copy = CopyingReader::new(body, &mut *out);
                pipeline::unpack_layer(&mut copy, blob, diff_id, &mut io::sink(), &label)
            }
        };
        let cache = self.cache.as_ref();
        if let Some(mut cached) = cache.and_then(|c| c.get(&blob.digest, blob.size)) {
            if let Some(line) = line {
                self.progress().step(line, Step::Cached);
            }
            return run(&mut cached);
        }
        let mut body = self
            .registry
            .blob_stream(&blob.digest, blob.size, name, line)?;
        cache::filling(cache, &blob.digest, &mut body, run)
    }

    /// The size layer `i` will have in an archive, before it is fetched: the blob's (kept as
    /// served, or not compressed at all), else the uncompressed size its gzip trailer gives
    /// (from the cache, or a 4-byte range request). A registry that ignores ranges gets the
    /// layer read once to count it (and cached, with --cache-dir). The stream checks the size.
    fn stored_size(&self, i: usize, compressed: bool, name: &str) -> Result<u64, Error> {
        match self.known_size(i, compressed, name)? {
            Some(size) => Ok(size),
            None => self.count(i, name),
        }
    }

    /// The size `stored_size` finds without reading the layer; `None` when only reading it
    /// would tell.
    fn known_size(&self, i: usize, compressed: bool, name: &str) -> Result<Option<u64>, Error> {
        let blob = &self.manifest.layers[i];
        let zstd = blob.media_type.contains("zstd");
        if compressed || !zstd && !blob.media_type.is_empty() && !blob.media_type.contains("gzip") {
            return Ok(Some(blob.size));
        }
        if zstd {
            // zstd keeps no total of what it decodes (a frame's content size is optional and
            // per frame).
            return Ok(None);
        }
        let mut trailer = [0u8; 4];
        let cached = self
            .cache
            .as_ref()
            .and_then(|c| c.get(&blob.digest, blob.size));
        let tail = match cached {
            Some(file) if blob.size >= 4 => {
                use std::os::unix::fs::FileExt;
                file.read_exact_at(&mut trailer, blob.size - 4)
                    .ok()
                    .map(|()| trailer.to_vec())
            }
            _ => self.registry.blob_tail(&blob.digest, blob.size, 4, name)?,
        };
        Ok(tail
            .as_deref()
            .and_then(|t| size_from_trailer(t, blob.size)))
    }

    /// The uncompressed size of layer `i`, read once to count it (and cached, with a cache).
    fn count(&self, i: usize, name: &str) -> Result<u64, Error> {
        self.progress().info(&format!(
            "  {name}: its uncompressed size is not known ahead; reading it once to count"
        ));
        let stats = self.unpack(
            i,
            name,
            Path::new("nowhere"),
            &mut io::sink(),
            Keep::Tar,
            None,
        )?;
        Ok(stats.uncompressed)
    }
}

/// What of a layer goes to the output: its uncompressed tar, or the blob as served (the tar
/// then only hashed, to verify the diff ID).
#[derive(Clone, Copy)]
enum Keep {
    Tar,
    Blob,
}

/// The uncompressed size a gzip trailer (its last 4 bytes, the size modulo 2^32) gives for a
/// blob of `compressed` bytes: the smallest candidate that deflate could have produced the blob
/// from, and a whole number of tar blocks. `None` when the trailer cannot be a tar's.
///
/// Deflate grows incompressible data by at most an eighth (9-bit fixed codes for every
/// literal); real encoders add far less, but Go's, which built most images, writes a stored
/// block per 16 KiB, more than zlib's 5 bytes per 64 KiB, so only the true bound is safe.
fn size_from_trailer(trailer: &[u8], compressed: u64) -> Option<u64> {
    let low = u64::from(u32::from_le_bytes(trailer.try_into().ok()?));
    if low % 512 != 0 {
        return None;
    }
    let floor = compressed.saturating_sub(compressed / 8 + 1024);
    let wraps = floor.saturating_sub(low).div_ceil(1 << 32);
    Some(low + (wraps << 32))
}

/// Pulls `options.image` into the output the options ask for and returns the path of what it
/// wrote (`None` when that went to standard output).
pub fn pull(
    options: &Options,
    logins: &Logins,
    progress: Arc<Progress>,
) -> Result<Option<PathBuf>, Error> {
    let result = pull_into(options, logins, progress.clone());
    // After the run, failed or not: what it fetched counts as used.
    if let (Some(dir), Some(max)) = (&options.cache_dir, options.cache_max) {
        match cache::prune(dir, max, &progress) {
            Ok((kept, 0)) => progress.info(&format!("Cache: {} kept", size(kept))),
            Ok((kept, removed)) => progress.info(&format!(
                "Cache: {} kept, {} of least recently used blobs removed (--cache-max {})",
                size(kept),
                size(removed),
                size(max)
            )),
            Err(e) => progress.warn(&format!("cannot keep the cache within --cache-max: {e}")),
        }
    }
    result
}

fn pull_into(
    options: &Options,
    logins: &Logins,
    progress: Arc<Progress>,
) -> Result<Option<PathBuf>, Error> {
    let reach = Reach::new(
        &options.http,
        &options.mirrors,
        &options.verify_keys,
        logins,
        progress.clone(),
    )?;
    let first = |ahead| open(options, &options.image, &reach, ahead);
    match &options.output {
        Output::Archive(form) => {
            if form.gunzip {
                progress.info(
                    "--gunzip: layers are decompressed unless --compressed is given; nothing to do",
                );
            }
            archive::prepare(options, form)?;
            let mut images = Vec::new();
            let mut bundles = Vec::new();
            let references = std::iter::once(&options.image).chain(&options.more_images);
            for (n, reference) in references.enumerate() {
                let at = options.listed_at.get(n);
                let opened = match &options.platforms {
                    // The later images' layers may be the first one's: none is asked for ahead.
                    None => open(
                        options,
                        reference,
                        &reach,
                        [Ahead::Bottom, Ahead::None][n.min(1)],
                    )
                    .map(|image| images.push(image)),
                    Some(platforms) => {
                        let into = (&mut images, &mut bundles);
                        bundle::open(options, form, reference, &reach, platforms, into)
                    }
                };
                opened.map_err(|e| e.listed_at(at))?;
                held_configs(&images, reference)?;
            }
            let held = match form.have.is_empty() {
                true => None,
                false => Some(thin::held(options, &reach, &form.have, &images)?),
            };
            archive::save(options, form, &images, bundles, held.as_ref())
        }
        // Each output checks what it can before the network is used.
        Output::Rootfs { dir, force, git } => {
            let target = rootfs::Target::prepare(dir, *force, *git, options.no_rm)?;
            rootfs::save(options, &first(Ahead::Bottom)?, target, *git).map(Some)
        }
        Output::Flatten(file) => {
            prepare_dir(&flatten::spool_near(options, file))?;
            // Flattening reads the top layer first.
            flatten::save(options, &first(Ahead::Top)?, file, None)
        }
        Output::Initramfs(initramfs) => {
            let file = &initramfs.file;
            prepare_dir(&flatten::spool_near(options, file))?;
            flatten::save(options, &first(Ahead::Top)?, file, Some(initramfs))
        }
        Output::Layer {
            which,
            registry_format,
        } => {
            prepare_dir(&options.working_dir)?;
            layer::save(options, &first(Ahead::None)?, which, *registry_format).map(Some)
        }
    }
}

/// Refuses to hold more image configs than the table allows: every image of an archive keeps
/// its config until the archive is written, and a config may weigh 4 MiB.
pub(super) fn held_configs(images: &[Image], reference: &Reference) -> Result<(), Error> {
    let held: usize = images.iter().map(|i| i.config_bytes.len()).sum();
    if held > crate::limits::MAX_HELD_CONFIGS {
        return Err(Error::Invalid {
            what: format!("the images up to {reference}"),
            detail: format!(
                "their configs weigh more than the {} MiB dockersave holds for one archive; save fewer images at a time",
                crate::limits::MAX_HELD_CONFIGS >> 20
            ),
        });
    }
    Ok(())
}

/// Makes the directory a run writes into, and removes what killed runs left there.
fn prepare_dir(dir: &Path) -> Result<(), Error> {
    outfile::Dir::ensure(dir)?;
    partial::remove_stale_partials(dir);
    Ok(())
}

/// Which layers an output reads first, to be asked for beside the config: on a slow link their
/// bytes are then under way a round trip sooner.
#[derive(Clone, Copy)]
enum Ahead {
    /// The bottom layers (archives, --rootfs).
    Bottom,
    /// The top layers (--flatten).
    Top,
    /// None (one layer, or layers another image may already have asked for).
    None,
}

/// Connects, resolves the manifest of `reference` and fetches the config (from the cache when
/// it has it), with the layers `ahead` names requested beside it.
fn open(
    options: &Options,
    reference: &Reference,
    reach: &Reach,
    ahead: Ahead,
) -> Result<Image, Error> {
    let cache = open_cache(options, reach)?;
    reach.progress().info(&format!("Pulling {reference}"));
    let registry = Arc::new(reach.registry(reference));
    let platform = platform(options.platform.as_ref());
    let given = options.platform.is_some();
    let chosen = reach.image(&registry, reference, &platform, given, prefer(options))?;
    let image = with_config(
        registry,
        reference,
        cache,
        chosen.served,
        chosen.manifest,
        ahead,
    )?;
    image.check_platform(&platform);
    Ok(image)
}

fn open_cache(options: &Options, reach: &Reach) -> Result<Option<Cache>, Error> {
    let progress = reach.progress();
    options
        .cache_dir
        .as_deref()
        .map(|dir| Cache::open(dir, progress.clone()))
        .transpose()
}

/// Which twin a pull takes: see `Prefer`.
fn prefer(options: &Options) -> Prefer {
    match &options.output {
        Output::Archive(form) if form.for_old_engines() => Prefer::Gzip,
        _ => Prefer::Smaller,
    }
}

/// The image of the manifest `served`: its config fetched (from the cache when it has it) and
/// checked against the manifest, with the layers `ahead` names requested beside it.
fn with_config(
    registry: Arc<Registry>,
    reference: &Reference,
    cache: Option<Cache>,
    served: FetchedManifest,
    manifest: Manifest,
    ahead: Ahead,
) -> Result<Image, Error> {
    crate::source::image_only(reference, &manifest)?;
    let order: Vec<&manifest::Descriptor> = match ahead {
        Ahead::Bottom => manifest.layers.iter().collect(),
        Ahead::Top => manifest.layers.iter().rev().collect(),
        Ahead::None => Vec::new(),
    };
    let mut ahead: Vec<Digest> = Vec::new();
    for layer in order {
        let cached = cache
            .as_ref()
            .is_some_and(|c| c.holds(&layer.digest, layer.size));
        if ahead.len() < crate::fetch::IN_FLIGHT && !cached && !ahead.contains(&layer.digest) {
            ahead.push(layer.digest.clone());
        }
    }
    let config_bytes = std::thread::scope(|scope| {
        scope.spawn(|| registry.request_ahead(&ahead));
        if !ahead.is_empty() {
            // The layers have the most bytes to move: let one of them take the connection the
            // manifest came on (the config opens another). A real link's round trip is far
            // longer than this head start.
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        match cache
            .as_ref()
            .and_then(|c| c.get_bytes(&manifest.config.digest, manifest.config.size))
        {
            Some(bytes) => Ok(bytes),
            None => {
                let bytes = registry.small_blob(&manifest.config, "the image config")?;
                if let Some(cache) = &cache {
                    cache.put_bytes(&manifest.config.digest, &bytes);
                }
                Ok::<_, Error>(bytes)
            }
        }
    })?;
    let config = parse_config(&config_bytes)?;
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
    Ok(Image {
        reference: reference.clone(),
        registry,
        cache,
        served,
        manifest,
        config_bytes,
        config,
        listed_platform: None,
    })
}

/// The platform asked for, or this machine's (read at run time: see `host`).
fn platform(asked: Option<&Platform>) -> Platform {
    asked.cloned().unwrap_or_else(crate::host::platform)
}

fn parse_config(bytes: &[u8]) -> Result<Config, Error> {
    manifest::parse_config(bytes).map_err(|detail| Error::Invalid {
        what: "the image config".into(),
        detail,
    })
}

/// A directory of this run's for blobs that arrive before their turn (`fetch`), beside
/// `near`: private, and removed with everything in it when dropped.
struct SpoolDir(outfile::PrivateDir);

impl SpoolDir {
    fn create(near: &Path) -> Result<SpoolDir, Error> {
        let name = near
            .file_name()
            .map(|n| format!("{}.spool", n.to_string_lossy()))
            .unwrap_or_else(|| "dockersave.spool".into());
        outfile::PrivateDir::create(&near.with_file_name(name)).map(SpoolDir)
    }

    fn dir(&self) -> &outfile::Dir {
        self.0.dir()
    }
}

#[cfg(test)]
mod tests {
    use super::size_from_trailer;

    #[test]
    fn size_from_a_gzip_trailer() {
        let trailer = |n: u32| n.to_le_bytes();
        assert_eq!(size_from_trailer(&trailer(10_240), 300), Some(10_240));
        // Incompressible: about as big as the blob.
        assert_eq!(
            size_from_trailer(&trailer(1 << 20), (1 << 20) + 100),
            Some(1 << 20)
        );
        // 5 GiB of tar in a 2 GiB blob: the trailer holds 1 GiB.
        assert_eq!(
            size_from_trailer(&trailer(1 << 30), 2 << 30),
            Some((1 << 30) + (1 << 32))
        );
        assert_eq!(
            size_from_trailer(&trailer(1000), 300),
            None,
            "not whole tar blocks"
        );
        assert_eq!(size_from_trailer(&[1, 2], 300), None);
    }
}
