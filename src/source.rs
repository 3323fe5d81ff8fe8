//! The one choke point between a registry and everything that stores, copies or pushes what it
//! serves: a reference resolved to the documents to use (the index, the platform's manifest, the
//! members of a bundle), fetched and parsed through the registry client and, with
//! `--verify-key`, verified before any caller sees them. Pulls, bundles, `--copy-to` and
//! inspection all go through `Reach`; `--push` checks what it is about to store with
//! `check_push`. The rule is one: nothing that no valid signature covers (the manifest's own,
//! or a signed index's) is handed on, and "nothing was checked" is a failure, never a pass.
//!
//! What an index lists is bounded here, whatever it claims: a hostile index cannot make a run
//! fetch or hold more than `MAX_MEMBERS` manifests. This module fetches no config or layer and
//! writes nothing to disk.

use crate::digest::Digest;
use crate::error::Error;
use crate::limits::{MAX_MEMBERS, MAX_MEMBER_BYTES, MAX_TWINS};
use crate::manifest::{self, Fetched, Manifest, Platform, Platforms};
use crate::progress::{size, Progress};
use crate::pull::Logins;
use crate::reference::Reference;
use crate::registry::client::FetchedManifest;
use crate::registry::http::{self, Http};
use crate::registry::mirrors::{self, Mirror, Source};
use crate::registry::Registry;
use crate::signature::{self, Keys};
use std::path::PathBuf;
use std::sync::Arc;

/// How a run reaches registries: one HTTP client, whose connections are reused from image to
/// image, the mirrors, and whose credentials go where.
pub(crate) struct Reach<'a> {
    http: Http,
    mirrors: Vec<Mirror>,
    logins: &'a Logins<'a>,
    /// `--verify-key`: what every image must be signed by.
    keys: Option<Keys>,
}

impl<'a> Reach<'a> {
    pub(crate) fn new(
        settings: &http::Settings,
        mirrors: &Source,
        verify_keys: &[PathBuf],
        logins: &'a Logins<'a>,
        progress: Arc<Progress>,
    ) -> Result<Reach<'a>, Error> {
        let keys = Keys::load(verify_keys)?;
        let mirrors = mirrors.mirrors(&|text| progress.warn(text));
        Ok(Reach {
            http: Http::new(settings, progress)?,
            mirrors,
            logins,
            keys,
        })
    }

    #[cfg(feature = "push")]
    pub(crate) fn http(&self) -> &Http {
        &self.http
    }

    pub(crate) fn progress(&self) -> &Arc<Progress> {
        self.http.progress()
    }

    /// The image manifest `reference` names for `platform` (stepping through an index), with
    /// what the reference itself resolved to. With `--verify-key` a signature by one of the
    /// keys must name the index or the manifest; asked before the config or any layer is
    /// fetched.
    pub(crate) fn image(
        &self,
        registry: &Registry,
        reference: &Reference,
        platform: &Platform,
        platform_given: bool,
        prefer: Prefer,
    ) -> Result<Chosen, Error> {
        let top = fetch_document(registry, &reference.manifest_ref(), reference)?;
        let is_index = matches!(top.parsed, Fetched::Index(_));
        let top_fetched = top.fetched.clone();
        let (served, manifest) =
            select(registry, top, platform, reference, platform_given, prefer)?;
        if let Some(keys) = &self.keys {
            let mut subjects = vec![subject(&top_fetched)];
            if served.digest != top_fetched.digest {
                subjects.push(subject(&served));
            }
            signature::check(
                registry,
                &reference.to_string(),
                &subjects,
                keys,
                NOTHING_WRITTEN,
            )?;
        }
        Ok(Chosen {
            top: top_fetched,
            is_index,
            served,
            manifest,
        })
    }

    /// The image manifest `reference` names for `platform`, unverified even with
    /// `--verify-key`: for `--have`, whose images only decide which layers a thin archive
    /// leaves out. The receiving engine looks those up by chain ID, which its content fixes,
    /// so a lying image cannot put foreign bytes into what is loaded: at worst the load fails
    /// naming the layer it lacks.
    pub(crate) fn held(
        &self,
        registry: &Registry,
        reference: &Reference,
        platform: &Platform,
    ) -> Result<(FetchedManifest, Manifest), Error> {
        let top = fetch_document(registry, &reference.manifest_ref(), reference)?;
        select(registry, top, platform, reference, true, Prefer::Smaller)
    }

    /// What `reference` names (an index or a manifest) as served; with `--verify-key` its own
    /// signature must name it: what an index offers is vouched for by the index's signature.
    pub(crate) fn top(
        &self,
        registry: &Registry,
        reference: &Reference,
    ) -> Result<Document, Error> {
        let top = fetch_document(registry, &reference.manifest_ref(), reference)?;
        if let Some(keys) = &self.keys {
            let subjects = [subject(&top.fetched)];
            signature::check(
                registry,
                &reference.to_string(),
                &subjects,
                keys,
                NOTHING_WRITTEN,
            )?;
        }
        Ok(top)
    }

    /// The images of `reference` that `platforms` keeps (see `resolve`), covered by signatures
    /// with `--verify-key`: a signed index covers everything it lists; without one, every image
    /// for a platform must carry its own signature, and what is no image for a platform
    /// (attestations, entries without a platform) is left out, since nothing vouches for it.
    /// An index that leaves nothing a signature could cover is refused.
    pub(crate) fn bundle(
        &self,
        registry: &Registry,
        reference: &Reference,
        platforms: &Platforms,
        prefer: Prefer,
        keep: Keep,
    ) -> Result<Resolved, Error> {
        let top = fetch_document(registry, &reference.manifest_ref(), reference)?;
        let mut resolved = resolve(registry, top, platforms, reference, prefer, keep)?;
        let Some(keys) = &self.keys else {
            return Ok(resolved);
        };
        let name = reference.to_string();
        let bundle = match &mut resolved {
            Resolved::Image(served, _) => {
                signature::check(registry, &name, &[subject(served)], keys, NOTHING_WRITTEN)?;
                return Ok(resolved);
            }
            Resolved::Bundle(bundle) => bundle,
        };
        let progress = registry.progress();
        match cover(
            registry,
            &name,
            keys,
            &bundle.index,
            &bundle.members,
            &bundle.entries,
        )? {
            Covered::ByIndex => {}
            Covered::Each(kept) => {
                let dropped = bundle.members.len() - kept.len() + bundle.others.len();
                if dropped > 0 {
                    progress.info(&format!(
                        "  {dropped} entries of the index that are no image for a platform (attestations) are left out: the index is not signed, and only its signature could cover them"
                    ));
                    bundle.complete = false;
                }
                bundle.members.retain(|(m, _)| kept.contains(&m.digest));
                bundle.others.clear();
            }
        }
        Ok(resolved)
    }

    /// A client for pulling `reference`: its registry, behind that registry's mirrors (each
    /// with the credentials stored for its own host).
    pub(crate) fn registry(&self, reference: &Reference) -> Registry {
        let mirrors = mirrors::of(&self.mirrors, &reference.registry)
            .map(|m| (m.base.clone(), (self.logins.mirror)(m.host())))
            .collect();
        let credentials = (self.logins.registry)(reference);
        Registry::for_pull(self.http.clone(), reference, credentials).through(mirrors)
    }
}

/// A manifest or index as served, and parsed.
pub(crate) struct Document {
    pub(crate) fetched: FetchedManifest,
    pub(crate) parsed: Fetched,
}

/// Fetches and parses the manifest or index `reference` (a tag or digest) names.
pub(crate) fn fetch_document(
    registry: &Registry,
    reference: &str,
    image: &Reference,
) -> Result<Document, Error> {
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
pub(crate) fn select(
    registry: &Registry,
    mut document: Document,
    platform: &Platform,
    reference: &Reference,
    platform_given: bool,
    prefer: Prefer,
) -> Result<(FetchedManifest, Manifest), Error> {
    let image = reference.to_string();
    for _ in 0..3 {
        match document.parsed {
            Fetched::Image(manifest) => {
                registry
                    .progress()
                    .info(&format!("  manifest {}", document.fetched.digest));
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
                let twins = manifest::twins(&entries, &choice);
                if twins.len() > 1 {
                    document = between_twins(registry, &twins, &choice, reference, prefer)?;
                    continue;
                }
                let whose = if platform_given {
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
                document = fetch_document(registry, &digest, reference)?;
            }
        }
    }
    Err(Error::Invalid {
        what: format!("the manifest of {image}"),
        detail: "indexes nest too deeply".into(),
    })
}

/// Which of an index's compressed twins a pull takes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Prefer {
    /// The one with fewer bytes of layers to download (the first, if they weigh the same).
    Smaller,
    /// The gzip one: the layers are kept as served for engines that may not read zstd
    /// (`--compressed --format legacy`).
    Gzip,
}

/// Chooses between the entries of an index that list the same platform compressed two ways:
/// fetches each one's manifest (a small document; only such indexes pay the requests) and
/// returns the one `prefer` asks for, saying which and why. Only the best so far is kept.
fn between_twins(
    registry: &Registry,
    twins: &[&manifest::IndexEntry],
    choice: &manifest::Choice,
    reference: &Reference,
    prefer: Prefer,
) -> Result<Document, Error> {
    let mut best: Option<(Document, bool, u64)> = None;
    let mut weighed = Vec::new();
    for twin in twins.iter().take(MAX_TWINS) {
        let document = fetch_document(registry, &twin.descriptor.digest.to_string(), reference)?;
        let (zstd, bytes) = match &document.parsed {
            Fetched::Image(m) => (
                twin.zstd || m.layers.iter().any(|l| l.media_type.contains("zstd")),
                m.layers
                    .iter()
                    .fold(0u64, |sum, l| sum.saturating_add(l.size)),
            ),
            Fetched::Index(_) => (twin.zstd, u64::MAX),
        };
        weighed.push(format!(
            "{} {}",
            if zstd { "zstd" } else { "gzip" },
            size(bytes)
        ));
        let better = match &best {
            None => true,
            // For --compressed --format legacy the first gzip twin wins, whatever it weighs.
            Some((_, best_zstd, _)) if prefer == Prefer::Gzip && *best_zstd != zstd => !zstd,
            Some((_, _, best_bytes)) => bytes < *best_bytes,
        };
        if better {
            best = Some((document, zstd, bytes));
        }
    }
    let Some((document, zstd, _)) = best else {
        return Err(Error::Invalid {
            what: format!("the index of {reference}"),
            detail: "it lists no entry for the platform".into(),
        });
    };
    let why = match prefer {
        Prefer::Gzip if !zstd => "the gzip one, for --compressed --format legacy",
        _ => "the smaller",
    };
    registry.progress().info(&format!(
        "  platform {} is listed {} times ({}); taking {why}: {}",
        choice.platform,
        twins.len(),
        weighed.join(", "),
        document.fetched.digest
    ));
    Ok(document)
}

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

/// Refuses an OCI artifact (a Helm chart, firmware, an SBOM) where an image is needed: one
/// line naming its type and the flag that fetches it, before its config is asked for.
pub(crate) fn image_only(reference: &Reference, manifest: &Manifest) -> Result<(), Error> {
    match manifest.artifact() {
        None => Ok(()),
        Some(kind) => Err(Error::Usage(format!(
            "{reference} is an OCI artifact of type {kind:?}, not a container image: fetch its files with --artifact DIR (one file to standard output: --artifact -), list it with --metadata, or copy it with --copy-to"
        ))),
    }
}

/// What a refusal says became of the image.
const NOTHING_WRITTEN: &str = "nothing was written";

fn subject(document: &FetchedManifest) -> signature::Subject<'_> {
    signature::Subject {
        digest: &document.digest,
        bytes: &document.bytes,
    }
}

/// What `Reach::image` resolved: the document the reference names (an index or the manifest
/// itself), and the platform's manifest as served and parsed.
pub(crate) struct Chosen {
    pub top: FetchedManifest,
    pub is_index: bool,
    pub served: FetchedManifest,
    pub manifest: Manifest,
}

/// How the members of an index are covered by signatures.
enum Covered {
    /// The index is signed: its signature covers every digest it lists.
    ByIndex,
    /// The index is not, and each of these (the images for a platform) is signed on its own.
    Each(Vec<Digest>),
}

/// Whether `digest` is listed as an image for a platform: some entry with it names a real
/// platform. A digest listed both with a platform and without one is an image, and is
/// checked as one.
fn is_image(entries: &[manifest::IndexEntry], digest: &Digest) -> bool {
    entries.iter().any(|e| {
        e.descriptor.digest == *digest
            && e.platform
                .as_ref()
                .is_some_and(|p| !manifest::is_unknown(p))
    })
}

/// The one rule, for an index `index` whose `members` are about to be stored, copied or
/// pushed: a signature of the index covers them all (asked once); without one every member
/// that is an image for a platform must be signed itself, and the others are not covered. An
/// index with no image to check is refused: "nothing was checked" is not a pass.
fn cover(
    registry: &Registry,
    name: &str,
    keys: &Keys,
    index: &FetchedManifest,
    members: &[(FetchedManifest, Manifest)],
    entries: &[manifest::IndexEntry],
) -> Result<Covered, Error> {
    let by_index = signature::check(registry, name, &[subject(index)], keys, NOTHING_WRITTEN);
    let refusal = match by_index {
        Ok(()) => return Ok(Covered::ByIndex),
        Err(e @ Error::Unverified { .. }) => e,
        Err(other) => return Err(other),
    };
    let images: Vec<&FetchedManifest> = members
        .iter()
        .map(|(m, _)| m)
        .filter(|m| is_image(entries, &m.digest))
        .collect();
    if images.is_empty() {
        return Err(Error::Unverified {
            image: name.to_string(),
            digest: index.digest.to_string(),
            reason: format!(
                "the index is not signed ({}) and lists no image for a platform whose own signature could be checked",
                unverified_reason(&refusal)
            ),
            after: NOTHING_WRITTEN,
        });
    }
    for image in &images {
        signature::check(registry, name, &[subject(image)], keys, NOTHING_WRITTEN)?;
    }
    Ok(Covered::Each(
        images.iter().map(|m| m.digest.clone()).collect(),
    ))
}

fn unverified_reason(error: &Error) -> String {
    match error {
        Error::Unverified { reason, .. } => reason.clone(),
        other => other.to_string(),
    }
}

/// `--push --verify-key`: checks, before `top` is stored under the tag (and the `members` it
/// lists by digest), that a signature in the destination `registry` covers them, by the same
/// rule as a pull: the top document's own signature, or, for an index, each member's.
#[cfg(feature = "push")]
pub(crate) fn check_push(
    registry: &Registry,
    name: &str,
    keys: &Keys,
    top: &[u8],
    members: &[(Vec<u8>, Option<Platform>)],
) -> Result<(), Error> {
    const AFTER: &str = "nothing was pushed under the tag";
    let top_digest = Digest::of_bytes(top);
    let top_subject = signature::Subject {
        digest: &top_digest,
        bytes: top,
    };
    let by_top = signature::check(registry, name, &[top_subject], keys, AFTER);
    let refusal = match by_top {
        Ok(()) => return Ok(()),
        Err(e @ Error::Unverified { .. }) if !members.is_empty() => e,
        Err(other) => return Err(other),
    };
    let images: Vec<&Vec<u8>> = members
        .iter()
        .filter(|(_, p)| p.as_ref().is_some_and(|p| !manifest::is_unknown(p)))
        .map(|(bytes, _)| bytes)
        .collect();
    if images.len() != members.len() || images.is_empty() {
        return Err(Error::Unverified {
            image: name.to_string(),
            digest: top_digest.to_string(),
            reason: format!(
                "the index is not signed ({}), and it lists entries that are no image for a platform, which only its signature could cover",
                unverified_reason(&refusal)
            ),
            after: AFTER,
        });
    }
    for bytes in images {
        let digest = Digest::of_bytes(bytes);
        let subject = signature::Subject {
            digest: &digest,
            bytes,
        };
        signature::check(registry, name, &[subject], keys, AFTER)?;
    }
    Ok(())
}
