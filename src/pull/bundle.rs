//! `--platform all|LIST`: which images of an index an archive or a copy keeps together with
//! the index, instead of the one image a pull picks for a platform.
//!
//! It resolves the members (each picked as a single `--platform` would pick it, or with `all`
//! and kept blobs every entry as listed) and says whether the index as served still describes
//! them, so that it can be kept byte for byte (`resolve`, which `copy` shares); for an archive
//! it opens each member as an image and chooses the one `manifest.json` names (`open`). It
//! fetches no layer. What an index lists is bounded here, whatever it claims: a hostile index
//! cannot make a run fetch or hold more than `MAX_MEMBERS` manifests.

use super::{
    fetch_document, open_cache, platform, prefer, select, with_config, Ahead, ArchiveForm,
    Document, Image, Options, Prefer, Reach,
};
use crate::digest::Digest;
use crate::error::Error;
use crate::manifest::{self, Fetched, Manifest, Platform, Platforms};
use crate::progress::Progress;
use crate::reference::Reference;
use crate::registry::client::FetchedManifest;
use crate::registry::Registry;
use crate::sinks::layout;
use std::sync::Arc;

/// The most images one bundle keeps. Real indexes list a few platforms (Debian's: 8, plus as
/// many attestations); each member costs a manifest request and up to 4 MiB held.
const MAX_MEMBERS: usize = 64;
/// The most bytes of member manifests held at once (real ones are a few KiB each).
const MAX_MEMBER_BYTES: usize = 16 << 20;

/// Which entries of an index a bundle keeps.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Keep {
    /// One image a platform, picked as a single `--platform` would pick it.
    OnePerPlatform,
    /// With `all`: every image entry as listed, compressed twins of one platform included
    /// (an archive that keeps the blobs as served).
    EveryImage,
    /// With `all`: every entry, attestations included (a copy, which needs no image).
    EveryEntry,
}

/// What a reference resolved to.
pub(crate) enum Resolved {
    /// Not an index: the one image there is.
    Image(FetchedManifest, Manifest),
    Bundle(Bundle),
}

pub(crate) struct Bundle {
    /// The index as served.
    pub index: FetchedManifest,
    /// The members' manifests as served, and parsed, in the order of the platforms asked for
    /// (with `all`, the index's).
    pub members: Vec<(FetchedManifest, Manifest)>,
    /// With `Keep::EveryImage`: the entries that are not images for a platform (BuildKit's
    /// attestations, `unknown/unknown`), as served and parsed. An archive stores their blobs
    /// as they are, unopened, so that the index as served still describes it.
    pub others: Vec<(FetchedManifest, Manifest)>,
    /// The index's entries, as parsed.
    pub entries: Vec<manifest::IndexEntry>,
    /// How many entries the index lists.
    pub listed: usize,
    /// Whether the members are every entry of the index, so the index as served describes
    /// exactly what is kept.
    pub complete: bool,
}

/// Resolves `top` (what `reference` names) to the images `platforms` keeps, `keep` saying
/// which entries with `all`.
pub(crate) fn resolve(
    registry: &Registry,
    top: Document,
    platforms: &Platforms,
    reference: &Reference,
    prefer: Prefer,
    keep: Keep,
) -> Result<Resolved, Error> {
    let entries = match top.parsed {
        Fetched::Image(manifest) => {
            registry.progress().info(&format!(
                "  {reference} is one image, not a multi-platform index: it is kept as it is"
            ));
            return Ok(Resolved::Image(top.fetched, manifest));
        }
        Fetched::Index(entries) => entries,
    };
    let index = top.fetched;
    let image = |e: &&manifest::IndexEntry| {
        e.platform
            .as_ref()
            .is_some_and(|p| !manifest::is_unknown(p))
    };
    let images: Vec<&manifest::IndexEntry> = entries.iter().filter(image).collect();
    let mut members: Vec<(FetchedManifest, Manifest)> = Vec::new();
    let mut others: Vec<(FetchedManifest, Manifest)> = Vec::new();
    let mut held = 0;
    let mut add = |document: Document, other: bool| -> Result<(), Error> {
        let digest = &document.fetched.digest;
        if members
            .iter()
            .chain(&others)
            .any(|(m, _)| m.digest == *digest)
        {
            return Ok(());
        }
        let Fetched::Image(manifest) = document.parsed else {
            if keep == Keep::EveryEntry {
                // A copy stores what is listed as it is; an index within one is not copied.
                return Err(Error::Unsupported(format!(
                    "the index of {reference} lists another index ({digest}); copy that one by its digest"
                )));
            }
            return Err(Error::Unsupported(format!(
                "the index of {reference} lists another index ({digest}); --platform all or a list keeps one level of index"
            )));
        };
        held += document.fetched.bytes.len();
        if members.len() + others.len() == MAX_MEMBERS || held > MAX_MEMBER_BYTES {
            return Err(Error::Invalid {
                what: format!("the index of {reference}"),
                detail: format!(
                    "it lists more images than dockersave keeps in one bundle ({MAX_MEMBERS}, {} MiB of manifests); name the platforms with --platform os/arch,os/arch",
                    MAX_MEMBER_BYTES >> 20
                ),
            });
        }
        match other {
            true => others.push((document.fetched, manifest)),
            false => members.push((document.fetched, manifest)),
        }
        Ok(())
    };
    let every = match keep {
        _ if *platforms != Platforms::All => None,
        Keep::OnePerPlatform => None,
        Keep::EveryImage => Some(images.clone()),
        Keep::EveryEntry => Some(entries.iter().collect()),
    };
    if let Some(every) = every {
        for entry in every.iter().take(MAX_MEMBERS + 1) {
            let digest = entry.descriptor.digest.to_string();
            add(fetch_document(registry, &digest, reference)?, false)?;
        }
        if keep == Keep::EveryImage && *platforms == Platforms::All {
            // The rest (attestations): kept unopened, unless one is an index.
            for entry in entries.iter().filter(|e| !image(e)).take(MAX_MEMBERS + 1) {
                let digest = entry.descriptor.digest.to_string();
                let document = fetch_document(registry, &digest, reference)?;
                if matches!(document.parsed, Fetched::Image(_)) {
                    add(document, true)?;
                }
            }
        }
    } else {
        let wanted: Vec<Platform> = match platforms {
            Platforms::List(list) => list.clone(),
            Platforms::All => {
                let mut distinct: Vec<Platform> = Vec::new();
                for platform in images.iter().filter_map(|e| e.platform.clone()) {
                    if !distinct.contains(&platform) {
                        distinct.push(platform);
                    }
                }
                distinct
            }
        };
        for platform in wanted.iter().take(MAX_MEMBERS + 1) {
            let document = Document {
                fetched: index.clone(),
                parsed: Fetched::Index(entries.clone()),
            };
            let (fetched, manifest) =
                select(registry, document, platform, reference, true, prefer)?;
            let document = Document {
                fetched,
                parsed: Fetched::Image(manifest),
            };
            add(document, false)?;
        }
    }
    let kept = || members.iter().chain(&others);
    let complete = members.len() + others.len() == entries.len()
        && entries
            .iter()
            .all(|e| kept().any(|(m, _)| m.digest == e.descriptor.digest));
    Ok(Resolved::Bundle(Bundle {
        index,
        members,
        others,
        listed: entries.len(),
        entries,
        complete,
    }))
}

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
    let progress = reach.http.progress();
    progress.info(&format!("Pulling {reference} ({})", shown(platforms)));
    let registry = Arc::new(reach.registry(reference));
    let top = fetch_document(&registry, &reference.manifest_ref(), reference)?;
    let top_fetched = top.fetched.clone();
    let compressed = form.compressed_layers;
    let keep = match compressed {
        true => Keep::EveryImage,
        false => Keep::OnePerPlatform,
    };
    let resolved = resolve(&registry, top, platforms, reference, prefer(options), keep)?;
    let bundle = match resolved {
        Resolved::Image(served, manifest) => {
            reach.verify(&registry, reference, &top_fetched, &served)?;
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
    let members = bundle.members.iter().map(|(served, _)| served);
    reach.verify_each(&registry, reference, &top_fetched, members)?;
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

/// The most bytes of attestations (manifests, configs and layers) an archive keeps in memory
/// until it is written: provenance is a few KiB, an SBOM up to a few MiB.
const MAX_UNOPENED: u64 = 8 << 20;

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
