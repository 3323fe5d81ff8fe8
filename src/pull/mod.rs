//! One pull, start to finish: connect, resolve the manifest for the platform, fetch and verify
//! the config, then hand the layers to what the command line asked for — a `docker save`
//! archive (`archive`), a root filesystem (`rootfs`), a flattened tar (`flatten`) or one layer
//! (`layer`).
//!
//! These are the only modules that touch both the registry and the disk. Each owns its cleanup:
//! whatever a run created is removed on failure (kept with `--no-rm` where that applies), and
//! nothing appears under a final name until it is complete.

mod archive;
mod flatten;
mod inspect;
mod layer;
mod rootfs;

use crate::cache::Cache;
use crate::cli::{Options, Output};
use crate::error::Error;
use crate::fetch::Blobs;
use crate::manifest::{self, Config, Fetched, Manifest, Platform};
use crate::partial;
use crate::pipeline::LayerLabel;
use crate::progress::{size, Progress};
use crate::registry::auth::Credentials;
use crate::registry::client::FetchedManifest;
use crate::registry::http::Http;
use crate::registry::Registry;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What every kind of output starts from: the registry, the image's manifest for the platform
/// and its verified config.
pub(crate) struct Image {
    registry: Registry,
    cache: Option<Cache>,
    manifest: Manifest,
    config_bytes: Vec<u8>,
    config: Config,
}

impl Image {
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
            spool_dir: &spool.path,
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
}

/// Pulls `options.image` into the output the options ask for and returns the path of what it
/// wrote (`None` when that went to standard output).
pub fn pull(
    options: &Options,
    credentials: Option<Credentials>,
    progress: Arc<Progress>,
) -> Result<Option<PathBuf>, Error> {
    match &options.output {
        Output::Archive => {
            prepare_dir(&options.working_dir)?;
            archive::save(options, &open(options, credentials, progress)?).map(Some)
        }
        // Each output checks what it can before the network is used.
        Output::Rootfs { dir, force, git } => {
            let target = rootfs::Target::prepare(dir, *force, *git, options.no_rm)?;
            rootfs::save(
                options,
                &open(options, credentials, progress)?,
                target,
                *git,
            )
            .map(Some)
        }
        Output::Flatten(file) => {
            prepare_dir(&flatten::spool_near(options, file))?;
            flatten::save(options, &open(options, credentials, progress)?, file)
        }
        Output::Layer {
            which,
            registry_format,
        } => {
            prepare_dir(&options.working_dir)?;
            layer::save(
                options,
                &open(options, credentials, progress)?,
                which,
                *registry_format,
            )
            .map(Some)
        }
        Output::Inspect(kind) => {
            inspect::show(options, credentials, progress, *kind).map(|()| None)
        }
    }
}

/// Makes the directory a run writes into, and removes what killed runs left there.
fn prepare_dir(dir: &Path) -> Result<(), Error> {
    fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    partial::remove_stale_partials(dir);
    Ok(())
}

/// Connects, resolves the manifest and fetches the config (from the cache when it has it).
fn open(
    options: &Options,
    credentials: Option<Credentials>,
    progress: Arc<Progress>,
) -> Result<Image, Error> {
    let cache = options
        .cache_dir
        .as_deref()
        .map(|dir| Cache::open(dir, progress.clone()))
        .transpose()?;
    progress.info(&format!("Pulling {}", options.image));
    let registry = connect(options, credentials, progress)?;
    let platform = platform(options);
    let top = fetch_document(&registry, &options.image.manifest_ref(), options)?;
    let (_, manifest) = select(&registry, top, &platform, options)?;
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
    if let (Some(os), Some(arch)) = (&config.os, &config.architecture) {
        let actual = Platform::new(os, arch, config.variant.as_deref());
        if actual.os != platform.os || actual.architecture != platform.architecture {
            registry
                .progress()
                .warn(&format!("the image is for {actual}, not {platform}"));
        }
    }
    Ok(Image {
        registry,
        cache,
        manifest,
        config_bytes,
        config,
    })
}

fn connect(
    options: &Options,
    credentials: Option<Credentials>,
    progress: Arc<Progress>,
) -> Result<Registry, Error> {
    let http = Http::new(&options.http, progress)?;
    Registry::connect(http, &options.image, options.insecure, credentials)
}

/// The platform asked for, or this machine's (read at run time: see `host`).
fn platform(options: &Options) -> Platform {
    options
        .platform
        .clone()
        .unwrap_or_else(crate::host::platform)
}

fn parse_config(bytes: &[u8]) -> Result<Config, Error> {
    manifest::parse_config(bytes).map_err(|detail| Error::Invalid {
        what: "the image config".into(),
        detail,
    })
}

/// A manifest or index as served, and parsed.
struct Document {
    fetched: FetchedManifest,
    parsed: Fetched,
}

/// Fetches and parses the manifest or index `reference` (a tag or digest) names.
fn fetch_document(
    registry: &Registry,
    reference: &str,
    options: &Options,
) -> Result<Document, Error> {
    let image = &options.image;
    let fetched = registry.manifest(reference)?;
    let parsed = match manifest::parse(&fetched.bytes, fetched.content_type.as_deref()) {
        Ok(parsed) => parsed,
        Err(detail) if detail == "schema1" => {
            return Err(Error::Unsupported(format!(
                "{image} uses the Docker schema 1 manifest format, which is deprecated and not supported; push it again with a current tool"
            )))
        }
        Err(detail) => {
            return Err(Error::Invalid {
                what: format!("the manifest of {image}"),
                detail,
            })
        }
    };
    Ok(Document { fetched, parsed })
}

/// From what the reference names to the image manifest for `platform`, stepping through an
/// index (an index may point to another; two levels are plenty). Returns the manifest as
/// served and parsed.
fn select(
    registry: &Registry,
    mut document: Document,
    platform: &Platform,
    options: &Options,
) -> Result<(FetchedManifest, Manifest), Error> {
    let image = options.image.to_string();
    for _ in 0..3 {
        match document.parsed {
            Fetched::Image(manifest) => {
                registry
                    .progress()
                    .info(&format!("  manifest {}", document.fetched.digest));
                if let Some(layer) = manifest
                    .layers
                    .iter()
                    .find(|l| l.media_type.contains("zstd"))
                {
                    return Err(Error::Unsupported(format!(
                        "{image} has zstd-compressed layers ({}), which dockersave does not support yet",
                        layer.digest
                    )));
                }
                return Ok((document.fetched, manifest));
            }
            Fetched::Index(entries) => {
                let choice = manifest::choose(&entries, platform).map_err(|available| {
                    Error::PlatformNotFound {
                        image: image.clone(),
                        wanted: platform.to_string(),
                        available,
                    }
                })?;
                let whose = if options.platform.is_some() {
                    ""
                } else {
                    " (this machine)"
                };
                let digest = choice.entry.descriptor.digest.to_string();
                if choice.older {
                    registry.progress().info(&format!(
                        "  platform {platform}{whose} is not in the index; {} runs there: {digest}",
                        choice.platform
                    ));
                } else {
                    registry
                        .progress()
                        .info(&format!("  platform {}{whose}: {digest}", choice.platform));
                }
                document = fetch_document(registry, &digest, options)?;
            }
        }
    }
    Err(Error::Invalid {
        what: format!("the manifest of {image}"),
        detail: "indexes nest too deeply".into(),
    })
}

/// A directory of this run's for blobs that arrive before their turn (`fetch`), beside
/// `near`; removed with everything in it when dropped.
struct SpoolDir {
    path: PathBuf,
    _interrupt: partial::OnInterrupt,
}

impl SpoolDir {
    fn create(near: &Path) -> Result<SpoolDir, Error> {
        let name = near
            .file_name()
            .map(|n| format!("{}.spool", n.to_string_lossy()))
            .unwrap_or_else(|| "dockersave.spool".into());
        let path = partial::temp_name(&near.with_file_name(name));
        let interrupt = partial::on_interrupt(&path, partial::Undo::Remove);
        fs::create_dir(&path).map_err(|e| Error::io(&path, e))?;
        Ok(SpoolDir {
            path,
            _interrupt: interrupt,
        })
    }
}

impl Drop for SpoolDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}
