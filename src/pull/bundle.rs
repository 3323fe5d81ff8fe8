//! `--platform all|LIST` for an archive: the images of an index kept together with the index,
//! instead of the one image a pull picks for a platform.
//!
//! The members come resolved and verified from `source::Reach::bundle` (which `copy` shares);
//! here each is opened as an image, the attestations the index lists are fetched unopened, and
//! the image `manifest.json` names is chosen (`open`). It fetches no layer.

use super::{open_cache, platform, prefer, with_config, Ahead, ArchiveForm, Image, Options};
use crate::digest::Digest;
use crate::error::Error;
use crate::limits::MAX_UNOPENED;
use crate::manifest::{self, Manifest, Platform};
use crate::progress::Progress;
use crate::reference::Reference;
use crate::registry::client::FetchedManifest;
use crate::registry::Registry;
use crate::sinks::layout;
use crate::source::{Keep, Reach, Resolved};
use std::sync::Arc;

/// Opens the images of `reference` that `platforms` keeps (`--platform all|LIST`), appending
/// them to `images` and, when `reference` is an index, their bundle to `bundles`.
pub(super) fn open(
    options: &Options,
    form: &ArchiveForm,
    reference: &Reference,
    reach: &Reach,
    platforms: &manifest::Platforms,
    (images, bundles): (&mut Vec<Image>, &mut Vec<layout::Bundle>),
) -> Result<(), Error> {
    let progress = reach.progress();
    progress.info(&format!("Pulling {reference} ({})", shown(platforms)));
    let registry = Arc::new(reach.registry(reference));
    let compressed = form.compressed_layers;
    let keep = match compressed {
        true => Keep::EveryImage,
        false => Keep::OnePerPlatform,
    };
    let resolved = reach.bundle(&registry, reference, platforms, prefer(options), keep)?;
    let bundle = match resolved {
        Resolved::Image(served, manifest) => {
            let cache = open_cache(options, reach)?;
            images.push(with_config(
                registry,
                reference,
                cache,
                served,
                manifest,
                Ahead::None,
            )?);
            return Ok(());
        }
        Resolved::Bundle(bundle) => bundle,
    };
    if bundle.members.is_empty() {
        return Err(Error::Invalid {
            what: format!("the index of {reference}"),
            detail: format!(
                "it lists no image for a platform (its {} entries are attestations or name no platform); an archive needs at least one",
                bundle.listed
            ),
        });
    }
    let first = images.len();
    let count = bundle.members.len();
    for (served, manifest) in bundle.members {
        let cache = open_cache(options, reach)?;
        let listed = bundle
            .entries
            .iter()
            .find(|e| e.descriptor.digest == served.digest);
        let listed_platform = listed.and_then(|e| e.platform.clone());
        let mut image = with_config(
            registry.clone(),
            reference,
            cache,
            served,
            manifest,
            Ahead::None,
        )?;
        image.listed_platform = listed_platform;
        images.push(image);
        super::held_configs(images, reference)?;
    }
    let main = first + main_member(&images[first..], options.platform.as_ref(), progress);
    let index = &bundle.index;
    let mut complete = bundle.complete;
    let unopened = match unopened(&registry, &bundle.others) {
        Ok(blobs) => blobs,
        Err(reason) => {
            progress.info(&format!(
                "  the index's attestations are left out: {reason}"
            ));
            complete = false;
            Vec::new()
        }
    };
    if !compressed {
        progress.info("  layers are stored uncompressed: each platform's manifest and the index are written anew, with digests of their own (--compressed keeps the registry's)");
    } else if !complete {
        progress.info(&format!(
            "  the archive keeps {count} of the index's {} entries: a new index lists them, and its digest differs from the registry's ({})",
            bundle.listed, index.digest
        ));
    }
    let media_type = index
        .content_type
        .clone()
        .unwrap_or_else(|| manifest::OCI_INDEX.to_string());
    bundles.push(layout::Bundle {
        first,
        count,
        main,
        kept: complete.then(|| (index.bytes.clone(), index.digest.clone(), media_type)),
        unopened,
    });
    Ok(())
}

/// Every blob of `others` (the index's attestations), fetched whole and checked against its
/// digest: (digest, bytes), the manifests included. Why not, when they cannot all be kept.
fn unopened(
    registry: &Registry,
    others: &[(FetchedManifest, Manifest)],
) -> Result<Vec<(Digest, Vec<u8>)>, String> {
    let mut blobs: Vec<(Digest, Vec<u8>)> = Vec::new();
    let mut held = 0u64;
    for (served, manifest) in others {
        blobs.push((served.digest.clone(), served.bytes.clone()));
        for blob in std::iter::once(&manifest.config).chain(&manifest.layers) {
            held = held.saturating_add(blob.size);
            if held > MAX_UNOPENED {
                return Err(format!(
                    "they hold more than the {} MiB an archive keeps of them, and a new index lists the images",
                    MAX_UNOPENED >> 20
                ));
            }
            if blobs.iter().any(|(d, _)| *d == blob.digest) {
                continue;
            }
            let bytes = registry
                .small_blob(blob, "an attestation's blob")
                .map_err(|e| e.to_string())?;
            blobs.push((blob.digest.clone(), bytes));
        }
    }
    Ok(blobs)
}

/// `all platforms`, `linux/amd64, linux/arm64`.
fn shown(platforms: &manifest::Platforms) -> String {
    match platforms {
        manifest::Platforms::All => "all platforms".into(),
        manifest::Platforms::List(list) => list
            .iter()
            .map(Platform::to_string)
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// Which member of a bundle `manifest.json` names, so that engines that load that one image
/// (Docker before 25, Podman) get one that runs here: the one a pull for `asked` (else this
/// machine's platform) would take, else the first. Says which, and why.
fn main_member(members: &[Image], asked: Option<&Platform>, progress: &Progress) -> usize {
    let wanted = platform(asked);
    let entries: Vec<manifest::IndexEntry> = members
        .iter()
        .map(|m| manifest::IndexEntry {
            descriptor: manifest::Descriptor {
                media_type: String::new(),
                digest: m.served.digest.clone(),
                size: m.served.bytes.len() as u64,
            },
            platform: m.platform(),
            zstd: false,
            name: None,
        })
        .collect();
    let chosen = manifest::choose(&entries, &wanted).ok().and_then(|choice| {
        let digest = &choice.entry.descriptor.digest;
        members.iter().position(|m| m.served.digest == *digest)
    });
    let whose = if asked.is_some() {
        "the first --platform"
    } else {
        "this machine's platform"
    };
    let main = chosen.unwrap_or(0);
    let named = members[main]
        .platform()
        .map_or_else(|| "the first image".to_string(), |p| p.to_string());
    match chosen {
        Some(_) => progress.info(&format!(
            "  manifest.json names {named}, for {whose} ({wanted}): the image Docker before 25 and Podman load; the index keeps {}",
            members.len()
        )),
        None => progress.info(&format!(
            "  no image here runs on {whose} ({wanted}); manifest.json names {named}, the first: the image Docker before 25 and Podman load"
        )),
    }
    main
}
