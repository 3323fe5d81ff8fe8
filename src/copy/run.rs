//! Running a copy, registry to registry (see the module above). Built with the "push" feature
//! only: it shares the upload half of `--push`.

use crate::digest::{Digest, HashingReader};
use crate::error::Error;
use crate::locks::lock;
use crate::manifest::{self, Descriptor, IndexEntry, Manifest, Platforms};
use crate::progress::{size, Progress, Step};
use crate::pull::Logins;
use crate::push::blob::is_transient;
use crate::reference::Reference;
use crate::registry::auth::Credentials;
use crate::registry::client::FetchedManifest;
use crate::registry::upload::Started;
use crate::registry::Registry;
use crate::source::{Keep, Prefer, Reach, Resolved};
use std::io::Read;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::Options;

/// Blobs copied at once, as a pull downloads them.
const JOBS: usize = 3;

/// Copies what `options` names; returns `REGISTRY/REPOSITORY@DIGEST` of each image copied.
/// `destination` gives the credentials for a destination registry (the command line's only
/// when it is the source's registry too).
pub fn copy(
    options: &Options,
    logins: &Logins,
    destination: &dyn Fn(&Reference) -> Option<Credentials>,
    progress: Arc<Progress>,
) -> Result<Vec<String>, Error> {
    let reach = Reach::new(
        &options.http,
        &options.mirrors,
        &options.verify_keys,
        logins,
        progress.clone(),
    )?;
    let mut copied = Vec::new();
    for (n, source) in options.images.iter().enumerate() {
        let target = target(options, source);
        let at = options.listed_at.get(n);
        let digest = copy_image(options, &reach, source, &target, destination)
            .map_err(|e| e.listed_at(at))?;
        copied.push(format!(
            "{}/{}@{digest}",
            target.registry, target.repository
        ));
    }
    Ok(copied)
}

/// Where `source` goes: the destination itself, or below it (a list of images).
fn target(options: &Options, source: &Reference) -> Reference {
    if options.listed_at.is_empty() {
        return options.destination.clone();
    }
    let prefix = &options.destination.repository;
    Reference {
        registry: options.destination.registry.clone(),
        repository: if prefix.is_empty() {
            source.repository.clone()
        } else {
            format!("{prefix}/{}", source.repository)
        },
        tag: source.effective_tag().map(str::to_string),
        digest: source.digest.clone(),
    }
}

/// What goes up for one image: the manifests to store by digest, then the top document stored
/// under the tag. Everything in it came verified from `source::Reach`.
struct Plan {
    /// The digest of what the source reference names (its referrers name it).
    source_top: Digest,
    members: Vec<(FetchedManifest, Manifest)>,
    /// The index to store under the tag (bytes, media type); `None` when the top document is
    /// the one member's manifest.
    index: Option<(Vec<u8>, String)>,
}

fn copy_image(
    options: &Options,
    reach: &Reach,
    source: &Reference,
    target: &Reference,
    destination: &dyn Fn(&Reference) -> Option<Credentials>,
) -> Result<Digest, Error> {
    let progress = reach.progress();
    progress.info(&format!("Copying {source} to {target}"));
    let from = reach.registry(source);
    let plan = match (&options.platforms, &options.platform) {
        (None, Some(platform)) => {
            let chosen = reach.image(&from, source, platform, true, Prefer::Smaller)?;
            progress.info(&format!(
                "  only {platform} is copied: the tag names that platform's manifest ({}), not an index",
                chosen.served.digest
            ));
            Plan {
                source_top: chosen.top.digest,
                members: vec![(chosen.served, chosen.manifest)],
                index: None,
            }
        }
        (platforms, _) => {
            let platforms = platforms.clone().unwrap_or(Platforms::All);
            let keep = match platforms {
                Platforms::All => Keep::EveryEntry,
                Platforms::List(_) => Keep::OnePerPlatform,
            };
            match reach.bundle(&from, source, &platforms, Prefer::Smaller, keep)? {
                Resolved::Image(served, manifest) => Plan {
                    source_top: served.digest.clone(),
                    members: vec![(served, manifest)],
                    index: None,
                },
                Resolved::Bundle(bundle) => {
                    let index = if bundle.complete {
                        let media_type = media_type(&bundle.index, manifest::OCI_INDEX);
                        (bundle.index.bytes.clone(), media_type)
                    } else {
                        let index = trimmed_index(&bundle.entries, &bundle.members);
                        progress.info(&format!(
                            "  {} of the index's {} entries are copied: a new index lists them, and its digest differs from the source's ({})",
                            bundle.members.len(),
                            bundle.listed,
                            bundle.index.digest
                        ));
                        (index, manifest::OCI_INDEX.to_string())
                    };
                    Plan {
                        source_top: bundle.index.digest.clone(),
                        members: bundle.members,
                        index: Some(index),
                    }
                }
            }
        }
    };
    // Blobs of the source's repository on the same registry are mounted, not copied.
    let same_registry = source.registry == target.registry;
    let mount_from: Vec<String> = if same_registry && source.repository != target.repository {
        vec![source.repository.clone()]
    } else {
        Vec::new()
    };
    let to = Registry::for_push(
        reach.http().clone(),
        target,
        destination(target),
        &mount_from,
    );
    let blobs = blobs_of(&plan.members);
    copy_blobs(
        &from,
        &to,
        &blobs,
        mount_from.first().map(String::as_str),
        progress,
    )?;
    let mut digest = None;
    for (served, _) in &plan.members {
        let media_type = media_type(served, manifest::OCI_MANIFEST);
        let by = match plan.index {
            Some(_) => served.digest.to_string(),
            None => target.manifest_ref(),
        };
        digest = Some(to.put_manifest(&by, &served.bytes, &media_type)?);
    }
    let digest = match &plan.index {
        Some((bytes, media_type)) => to.put_manifest(&target.manifest_ref(), bytes, media_type)?,
        None => digest.ok_or_else(|| Error::Invalid {
            what: format!("the manifest of {source}"),
            detail: "it names no image".into(),
        })?,
    };
    if let Some(wanted) = &target.digest {
        if *wanted != digest {
            return Err(Error::DigestMismatch {
                what: format!("the manifest copied to {target}"),
                expected: wanted.to_string(),
                actual: digest.to_string(),
            });
        }
    }
    if options.with_referrers {
        let source_digest = plan.source_top.clone();
        if source_digest != digest {
            progress.warn(&format!(
                "--with-referrers: the copy's digest ({digest}) is not the source's ({source_digest}), which its referrers name: none is copied (copy every platform to keep the digest)"
            ));
        } else {
            copy_referrers(
                &from,
                &to,
                source,
                &digest,
                mount_from.first().map(String::as_str),
                progress,
            )?;
        }
    }
    Ok(digest)
}

/// `--with-referrers`: the manifests that refer to `subject` (the API's list, else the
/// fallback tag's), each verified against its digest, with their blobs; then, where the
/// destination has no referrers API, its fallback tag lists them beside what it listed.
fn copy_referrers(
    from: &Registry,
    to: &Registry,
    source: &Reference,
    subject: &Digest,
    mount_from: Option<&str>,
    progress: &Progress,
) -> Result<(), Error> {
    let (referrers, listed) = crate::artifact::referrers(from, subject)?;
    if listed > referrers.len() {
        return Err(Error::Invalid {
            what: format!("the referrers of {source}"),
            detail: format!(
                "{listed} are listed, more than the {} dockersave copies",
                referrers.len()
            ),
        });
    }
    for referrer in &referrers {
        let digest = referrer.descriptor.digest.to_string();
        let document = crate::source::fetch_document(from, &digest, source)?;
        let manifest::Fetched::Image(parsed) = document.parsed else {
            return Err(Error::Unsupported(format!(
                "a referrer of {source} ({digest}) is an index; dockersave copies referrers that are manifests"
            )));
        };
        let member = [(document.fetched, parsed)];
        copy_blobs(from, to, &blobs_of(&member), mount_from, progress)?;
        let media_type = media_type(&member[0].0, manifest::OCI_MANIFEST);
        to.put_manifest(&digest, &member[0].0.bytes, &media_type)?;
    }
    if to.referrers_api(subject)?.is_none() && !referrers.is_empty() {
        let tag = crate::registry::client::fallback_tag(subject);
        let mut kept = match to.lookup_manifest(&tag)? {
            Some(existing) => {
                manifest::parse_referrers(&existing.bytes, crate::limits::MAX_REFERRERS)
                    .map(|(kept, _)| kept)
                    .unwrap_or_default()
            }
            None => Vec::new(),
        };
        kept.retain(|k| {
            !referrers
                .iter()
                .any(|r| r.descriptor.digest == k.descriptor.digest)
        });
        kept.extend(referrers.iter().cloned());
        to.put_manifest(&tag, &manifest::referrers_json(&kept), manifest::OCI_INDEX)?;
    }
    progress.info(&format!(
        "  {} referrers of {source} copied",
        referrers.len()
    ));
    Ok(())
}

/// A document's media type: as served, else what its JSON says, else `fallback`.
fn media_type(fetched: &FetchedManifest, fallback: &str) -> String {
    fetched
        .content_type
        .clone()
        .filter(|t| t.contains('/') && !t.starts_with("application/json"))
        .unwrap_or_else(|| fallback.to_string())
}

/// An OCI index of the entries of the source's index that are among the members, in the
/// members' order.
fn trimmed_index(entries: &[IndexEntry], members: &[(FetchedManifest, Manifest)]) -> Vec<u8> {
    let listed: Vec<manifest::Listed> = members
        .iter()
        .filter_map(|(m, _)| entries.iter().find(|e| e.descriptor.digest == m.digest))
        .map(|entry| manifest::Listed {
            media_type: &entry.descriptor.media_type,
            digest: &entry.descriptor.digest,
            size: entry.descriptor.size,
            platform: entry.platform.as_ref(),
        })
        .collect();
    manifest::index_json(&listed)
}

/// Every blob the members name, once each: configs first (small; the first request meets the
/// destination's challenge), then layers.
fn blobs_of(members: &[(FetchedManifest, Manifest)]) -> Vec<Descriptor> {
    let mut blobs: Vec<Descriptor> = Vec::new();
    let configs = members.iter().map(|(_, m)| &m.config);
    let layers = members.iter().flat_map(|(_, m)| &m.layers);
    for blob in configs.chain(layers) {
        if !blobs.iter().any(|b| b.digest == blob.digest) {
            blobs.push(blob.clone());
        }
    }
    blobs
}

/// Copies `blobs` the destination lacks, a few at once; the first failure stops the others
/// taking new ones and is returned.
fn copy_blobs(
    from: &Registry,
    to: &Registry,
    blobs: &[Descriptor],
    mount_from: Option<&str>,
    progress: &Progress,
) -> Result<(), Error> {
    let Some((first, _)) = blobs.split_first() else {
        return Ok(());
    };
    let listed: Vec<(String, u64)> = blobs
        .iter()
        .map(|b| (b.digest.hex().to_string(), b.size))
        .collect();
    progress.layers(&listed);
    // The first blob alone: its requests meet both registries' challenges, so the threads
    // that follow start with tokens.
    let result = copy_blob(from, to, first, 0, mount_from, progress);
    let failure: Mutex<Option<Error>> = Mutex::new(result.err());
    let next = AtomicUsize::new(1);
    std::thread::scope(|scope| {
        for _ in 0..JOBS.min(blobs.len() - 1) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= blobs.len() || lock(&failure).is_some() {
                    return;
                }
                if let Err(e) = copy_blob(from, to, &blobs[i], i, mount_from, progress) {
                    lock(&failure).get_or_insert(e);
                    return;
                }
            });
        }
    });
    progress.done();
    let failure = lock(&failure).take();
    match failure {
        Some(error) => Err(error),
        None => Ok(()),
    }
}

/// One blob: skipped when the destination has it, mounted when it can be, else streamed from
/// the source into an upload that is closed only once the bytes hashed to the digest.
fn copy_blob(
    from: &Registry,
    to: &Registry,
    blob: &Descriptor,
    line: usize,
    mount_from: Option<&str>,
    progress: &Progress,
) -> Result<(), Error> {
    let short = &blob.digest.hex()[..12];
    if to.blob_size(&blob.digest)?.is_some() {
        progress.step(line, Step::Present);
        progress.finished(line, &format!("  {short}: already there"));
        return Ok(());
    }
    let location = match to.start_upload(mount_from.map(|repo| (&blob.digest, repo)))? {
        Started::Mounted => {
            progress.step(line, Step::Present);
            progress.finished(line, &format!("  {short}: mounted"));
            return Ok(());
        }
        Started::Session(location) => location,
    };
    progress.step(line, Step::Uploading);
    let what = format!("blob {}", blob.digest);
    let mut attempt = 0;
    let mut location = location;
    loop {
        let stream = from.blob_stream(&blob.digest, blob.size, &what, Some(line))?;
        let mut body = HashingReader::new(stream.take(blob.size));
        let outcome = to.patch(&location, &mut body);
        let (digest, length) = body.finish();
        match outcome {
            Ok(next) => {
                if digest != blob.digest || length != blob.size {
                    to.cancel_upload(&next);
                    return Err(Error::DigestMismatch {
                        what: format!("{what} from {}", from.host()),
                        expected: format!("{} ({} bytes)", blob.digest, blob.size),
                        actual: format!("{digest} ({length} bytes)"),
                    });
                }
                to.finish_upload(&next, &blob.digest, &[])?;
                progress.finished(line, &format!("  {short}: copied {}", size(blob.size)));
                return Ok(());
            }
            // The bytes that went are gone: a broken upload starts again from the source.
            Err(e) if attempt < to.retries() && is_transient(&e) => {
                attempt += 1;
                to.cancel_upload(&location);
                std::thread::sleep(crate::registry::http::backoff(attempt - 1, None, 0.5));
                progress.layer_event(
                    Some(line),
                    "restarted",
                    &format!("{what}: {e}; copying it again ({attempt}/{})", to.retries()),
                );
                location = match to.start_upload(None)? {
                    Started::Session(location) => location,
                    Started::Mounted => return Ok(()),
                };
            }
            Err(e) => {
                to.cancel_upload(&location);
                return Err(e);
            }
        }
    }
}
