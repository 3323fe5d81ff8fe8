//! A thin archive's left-out layers, found on the destination (`--push ARCHIVE --have IMAGE`).
//! The archive lists them but holds no bytes for them, so each must already be a blob of the
//! destination's repository (`HEAD`), or be mounted there from another repository of the same
//! registry: one that `--have` names, or that the record of earlier pushes knows. Every left-out
//! layer is found before anything is uploaded; one that is nowhere fails the push, by name,
//! before a manifest or tag is written.
//!
//! It only asks and mounts; it never uploads a byte.

use super::known::Known;
use crate::archived::ArchivedImage;
use crate::digest::Digest;
use crate::error::Error;
use crate::manifest::{self, Platform};
use crate::reference::Reference;
use crate::registry::auth::Credentials;
use crate::registry::http::Http;
use crate::registry::upload::Started;
use crate::registry::Registry;
use crate::source::{self, Prefer};
use std::collections::HashMap;

/// A blob that holds a layer's tar, somewhere on the destination's registry.
#[derive(Clone)]
pub struct HeldBlob {
    pub digest: Digest,
    pub size: u64,
    pub zstd: bool,
    /// The repository it is in, on the destination's registry.
    pub repository: String,
}

/// The blobs of the `--have` images, by the diff ID of the tar they hold: each image's
/// manifest for `platform` and its config are fetched, nothing more. Only images on the
/// destination's registry (`host`) can lend their blobs.
pub fn held_blobs(
    http: &Http,
    have: &[String],
    host: &str,
    platform: &Platform,
    credentials: &dyn Fn(&Reference) -> Option<Credentials>,
) -> Result<HashMap<Digest, Vec<HeldBlob>>, Error> {
    let mut blobs: HashMap<Digest, Vec<HeldBlob>> = HashMap::new();
    for value in have {
        let reference = Reference::parse(value).map_err(|reason| Error::Reference {
            input: value.clone(),
            reason,
        })?;
        if reference.api_host() != host {
            return Err(Error::Usage(format!(
                "--have {reference} is on another registry than the destination ({host}): a push can only find or mount blobs there"
            )));
        }
        let registry = Registry::for_pull(http.clone(), &reference, credentials(&reference));
        let top = source::fetch_document(&registry, &reference.manifest_ref(), &reference)?;
        let (_, manifest) =
            source::select(&registry, top, platform, &reference, true, Prefer::Smaller)?;
        let config = registry.small_blob(&manifest.config, "the image config")?;
        let config = manifest::parse_config(&config).map_err(|detail| Error::Invalid {
            what: format!("the image config of {reference}"),
            detail,
        })?;
        for (diff_id, layer) in config.diff_ids.iter().zip(&manifest.layers) {
            blobs.entry(diff_id.clone()).or_default().push(HeldBlob {
                digest: layer.digest.clone(),
                size: layer.size,
                zstd: layer.media_type.contains("zstd"),
                repository: reference.repository.clone(),
            });
        }
    }
    Ok(blobs)
}

/// The repositories on `target`'s registry that the `--have` images are in, for the push's
/// token scope (a mount needs pull access to where the blob is).
pub fn repositories(have: &[String], target: &Reference) -> Vec<String> {
    have.iter()
        .filter_map(|value| Reference::parse(value).ok())
        .filter(|reference| {
            reference.api_host() == target.api_host() && reference.repository != target.repository
        })
        .map(|reference| reference.repository)
        .collect()
}

/// Makes sure the destination holds every layer `image` lists but does not carry, and returns
/// for each layer the blob found (`None` for the layers the archive carries). Fails naming
/// every layer that is nowhere to be found, before anything is uploaded.
pub fn find_left_out(
    registry: &Registry,
    image: &ArchivedImage,
    held: &HashMap<Digest, Vec<HeldBlob>>,
    known: &Known,
) -> Result<Vec<Option<HeldBlob>>, Error> {
    let mut found = Vec::with_capacity(image.layers.len());
    let mut missing = Vec::new();
    let count = image.layers.len();
    for (i, layer) in image.layers.iter().enumerate() {
        if layer.present {
            found.push(None);
            continue;
        }
        let mut candidates: Vec<HeldBlob> = Vec::new();
        if let Some(digest) = &layer.digest {
            // A compressed thin archive names the blob itself; where it is, `--have` says.
            for blob in held.get(&layer.diff_id).into_iter().flatten() {
                if blob.digest == *digest {
                    candidates.push(blob.clone());
                }
            }
            candidates.push(HeldBlob {
                digest: digest.clone(),
                size: 0,
                zstd: false,
                repository: registry.repository().to_string(),
            });
        } else {
            candidates.extend(held.get(&layer.diff_id).into_iter().flatten().cloned());
            for (digest, size, repository) in known.for_layer(&layer.diff_id, registry.host()) {
                candidates.push(HeldBlob {
                    digest,
                    size,
                    zstd: false,
                    repository,
                });
            }
        }
        match place(registry, &candidates)? {
            Some(blob) => {
                registry.progress().info(&format!(
                    "layer {}/{count}: left out of the archive, found as {} in {}",
                    i + 1,
                    blob.digest,
                    blob.repository
                ));
                found.push(Some(blob));
            }
            None => {
                missing.push(format!("layer {}/{count} ({})", i + 1, layer.diff_id));
                found.push(None);
            }
        }
    }
    if missing.is_empty() {
        return Ok(found);
    }
    Err(Error::NotFound {
        what: format!(
            "the thin archive leaves out {}, which {}/{} does not hold and no --have image on that registry has; push the image it was made against first, or name it with --have",
            missing.join(", "),
            registry.host(),
            registry.repository()
        ),
    })
}

/// The first candidate the destination repository holds, or can mount from where it is.
fn place(registry: &Registry, candidates: &[HeldBlob]) -> Result<Option<HeldBlob>, Error> {
    for blob in candidates {
        if let Some(size) = registry.blob_size(&blob.digest)? {
            let size = if size > 0 { size } else { blob.size };
            return Ok(Some(HeldBlob {
                size,
                repository: registry.repository().to_string(),
                ..blob.clone()
            }));
        }
    }
    for blob in candidates {
        if blob.repository == registry.repository() {
            continue;
        }
        match registry.start_upload(Some((&blob.digest, &blob.repository)))? {
            Started::Mounted => {
                let size = registry.blob_size(&blob.digest)?.unwrap_or(blob.size);
                return Ok(Some(HeldBlob {
                    size,
                    ..blob.clone()
                }));
            }
            // Not mountable: the session the registry opened instead is not wanted.
            Started::Session(location) => registry.cancel_upload(&location),
        }
    }
    Ok(None)
}
