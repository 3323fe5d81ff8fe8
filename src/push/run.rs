//! Running a push: which image of the archive goes where, its blobs (see `blob`), then its
//! manifest, and for an archived index its platforms and the index last. Built with the "push"
//! feature only.

use super::blob::{self, Pushed, Slot};
use super::held;
use super::known::Known;
use super::{Choose, Options};
use crate::archived::{ArchivedBundle, ArchivedImage, Source};
use crate::digest::Digest;
use crate::error::Error;
use crate::locks::lock;
use crate::manifest::{self, Platform};
use crate::progress::Progress;
use crate::reference::Reference;
use crate::registry::auth::Credentials;
use crate::registry::http::Http;
use crate::registry::Registry;
use crate::signature::Keys;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Layers uploaded at once from an archive that can be read anywhere (as pulls download).
const JOBS: usize = 3;
const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_GZIP_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const OCI_ZSTD_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

/// Pushes what `options` names; returns `REGISTRY/REPOSITORY@DIGEST` of every manifest pushed.
pub fn push(
    options: &Options,
    credentials: &dyn Fn(&Reference) -> Option<Credentials>,
    progress: Arc<Progress>,
) -> Result<Vec<String>, Error> {
    let source = &options.source;
    let keys = Keys::load(&options.verify_keys)?;
    let archive = Source::open(source)?;
    let images = archive.images()?;
    let bundles = archive.bundles(options.platforms.as_ref())?;
    let known = Known::load(options.record.clone());
    let mut pushed = Vec::new();
    // One HTTP client for the run: its connections are reused from image to image.
    let http = Http::new(&options.http, progress.clone())?;
    for (image, target) in targets(&images, &options.choose, &options.destination, source)? {
        progress.info(&format!("Pushing {} to {target}", shown_name(image)));
        let mut mount_from = mount_sources(image, &target, &known);
        for repository in held::repositories(&options.have, &target) {
            if !mount_from.contains(&repository) {
                mount_from.push(repository);
            }
        }
        let registry = Registry::for_push(http.clone(), &target, credentials(&target), &mount_from);
        let push = Push {
            http: &http,
            have: &options.have,
            credentials,
            target: &target,
            registry: &registry,
            archive: &archive,
            known: &known,
            mount_from: &mount_from,
            progress: &progress,
            keys: keys.as_ref(),
            name: format!("{}/{}", target.registry, target.repository),
        };
        let bundle = bundles.iter().find(|b| of_bundle(image, b));
        let digest = match bundle {
            Some(bundle) => push.bundle(bundle, &target, options.platforms.as_ref())?,
            None => {
                let prepared = push.image(image)?;
                push.check(&prepared.0, &[])?;
                push.store(prepared, Some(&target))?
            }
        };
        pushed.push(format!("{}@{digest}", push.name));
    }
    Ok(pushed)
}

/// What every image of one push to one repository shares.
struct Push<'a> {
    http: &'a Http,
    /// `--have`: images whose blobs a thin archive's left-out layers may be.
    have: &'a [String],
    credentials: &'a dyn Fn(&Reference) -> Option<Credentials>,
    target: &'a Reference,
    registry: &'a Registry,
    archive: &'a Source,
    known: &'a Known,
    mount_from: &'a [String],
    progress: &'a Progress,
    /// `--verify-key`: what a manifest must be signed by, in the destination, before it is
    /// stored (see `source::check_push`).
    keys: Option<&'a Keys>,
    /// `REGISTRY/REPOSITORY`, for messages.
    name: String,
}

/// A manifest ready to store: its bytes and media type (its blobs are in the registry).
type Prepared = (Vec<u8>, String);

impl Push<'_> {
    /// Pushes every platform of `bundle`, each manifest by its digest, then the index under
    /// the target's tag: the archive's own, byte for byte, when every platform went up with the
    /// manifests it kept; else one listing the manifests pushed. One platform (`--platform
    /// os/arch`) goes up as that image alone, without an index.
    fn bundle(
        &self,
        bundle: &ArchivedBundle,
        target: &Reference,
        asked: Option<&manifest::Platforms>,
    ) -> Result<Digest, Error> {
        let one = matches!(asked, Some(manifest::Platforms::List(l)) if l.len() == 1);
        if let ([(image, _)], true) = (bundle.members.as_slice(), one) {
            let prepared = self.image(image)?;
            self.check(&prepared.0, &[])?;
            return self.store(prepared, Some(target));
        }
        let mut prepared = Vec::new();
        let mut kept = bundle.complete;
        for (image, platform) in &bundle.members {
            let shown = platform.as_ref().map_or("?".into(), |p| p.to_string());
            self.progress.info(&format!("  platform {shown}"));
            kept &= image.original.is_some();
            prepared.push(self.image(image)?);
        }
        let (bytes, media_type) = if kept {
            (bundle.index.clone(), bundle.media_type.clone())
        } else {
            self.progress.info(&format!(
                "  a new index lists the {} manifests pushed; its digest differs from the archive's {}",
                prepared.len(),
                bundle.digest
            ));
            let digests: Vec<Digest> = prepared.iter().map(|(b, _)| Digest::of_bytes(b)).collect();
            let listed: Vec<manifest::Listed> = prepared
                .iter()
                .zip(&digests)
                .zip(&bundle.members)
                .map(
                    |(((bytes, media_type), digest), (_, platform))| manifest::Listed {
                        media_type,
                        digest,
                        size: bytes.len() as u64,
                        platform: platform.as_ref(),
                    },
                )
                .collect();
            (
                manifest::index_json(&listed),
                manifest::OCI_INDEX.to_string(),
            )
        };
        // Nothing is stored before the signatures are checked: members, attestations, index.
        let members: Vec<(Vec<u8>, Option<manifest::Platform>)> = prepared
            .iter()
            .zip(&bundle.members)
            .map(|((bytes, _), (_, platform))| (bytes.clone(), platform.clone()))
            .chain(
                kept.then(|| bundle.others.iter().map(|o| (o.manifest.clone(), None)))
                    .into_iter()
                    .flatten(),
            )
            .collect();
        self.check(&bytes, &members)?;
        for member in prepared {
            self.store(member, None)?;
        }
        if kept {
            // Attestations go up as archived, each before the index that names it.
            for other in &bundle.others {
                for (digest, bytes) in &other.blobs {
                    blob::push_bytes(self.registry, bytes, digest)?;
                }
                let digest = Digest::of_bytes(&other.manifest).to_string();
                self.registry
                    .put_manifest(&digest, &other.manifest, &other.media_type)?;
            }
        }
        self.put(target, &bytes, &media_type)
    }

    /// With `--verify-key`: refuses to store `top` (and the `members` an index lists) unless a
    /// signature in the destination covers them.
    fn check(
        &self,
        top: &[u8],
        members: &[(Vec<u8>, Option<manifest::Platform>)],
    ) -> Result<(), Error> {
        match self.keys {
            Some(keys) => crate::source::check_push(self.registry, &self.name, keys, top, members),
            None => Ok(()),
        }
    }

    /// Stores a prepared manifest under `target`'s tag, or by its digest alone.
    fn store(
        &self,
        (bytes, media_type): Prepared,
        target: Option<&Reference>,
    ) -> Result<Digest, Error> {
        match target {
            Some(target) => self.put(target, &bytes, &media_type),
            None => self.registry.put_manifest(
                &Digest::of_bytes(&bytes).to_string(),
                &bytes,
                &media_type,
            ),
        }
    }

    /// Stores a manifest under the target's tag (or digest), checking a digest it names.
    fn put(&self, target: &Reference, bytes: &[u8], media_type: &str) -> Result<Digest, Error> {
        let digest = Digest::of_bytes(bytes);
        if let Some(wanted) = &target.digest {
            if *wanted != digest {
                return Err(Error::DigestMismatch {
                    what: format!("the manifest for {target}"),
                    expected: wanted.to_string(),
                    actual: digest.to_string(),
                });
            }
        }
        self.registry
            .put_manifest(&target.manifest_ref(), bytes, media_type)
    }

    /// Uploads one image's blobs and returns its manifest, not yet stored (see `store`).
    fn image(&self, image: &ArchivedImage) -> Result<Prepared, Error> {
        let (registry, archive, known, mount_from, progress) = (
            self.registry,
            self.archive,
            self.known,
            self.mount_from,
            self.progress,
        );
        // A thin archive's left-out layers are found first: if one is nowhere, nothing goes up.
        let left_out = match image.layers.iter().any(|l| !l.present) {
            true => {
                let platform = manifest::parse_config(&image.config)
                    .ok()
                    .and_then(|c| {
                        Some(Platform::new(
                            c.os.as_deref()?,
                            c.architecture.as_deref()?,
                            c.variant.as_deref(),
                        ))
                    })
                    .unwrap_or_else(crate::host::platform);
                let host = self.target.api_host();
                let held =
                    held::held_blobs(self.http, self.have, host, &platform, self.credentials)?;
                held::find_left_out(registry, image, &held, known)?
            }
            false => vec![None; image.layers.len()],
        };
        // The config first, alone: its first request meets the registry's challenge, so the
        // layer uploads that follow on several threads start with a token (one token request).
        blob::push_bytes(registry, &image.config, &image.config_digest)?;
        let listed: Vec<(String, u64)> = image
            .layers
            .iter()
            .map(|l| (l.diff_id.hex().to_string(), l.size))
            .collect();
        progress.layers(&listed);
        let count = image.layers.len();
        let results: Mutex<Vec<Option<Pushed>>> = Mutex::new(vec![None; count]);
        let failure: Mutex<Option<Error>> = Mutex::new(None);
        let next = AtomicUsize::new(0);
        let exact = image.original.is_some();
        let jobs = if archive.random_access() { JOBS } else { 1 };
        std::thread::scope(|scope| {
            for _ in 0..jobs.min(count) {
                scope.spawn(|| loop {
                    let index = next.fetch_add(1, Ordering::SeqCst);
                    if index >= count || lock(&failure).is_some() {
                        return;
                    }
                    let slot = Slot {
                        index,
                        count,
                        progress,
                    };
                    let layer = &image.layers[index];
                    if let Some(found) = &left_out[index] {
                        progress.step(index, crate::progress::Step::Present);
                        lock(&results)[index] = Some(Pushed {
                            digest: found.digest.clone(),
                            size: found.size,
                        });
                        continue;
                    }
                    match blob::push_layer(
                        registry, archive, layer, known, mount_from, exact, &slot,
                    ) {
                        Ok(done) => lock(&results)[index] = Some(done),
                        Err(e) => {
                            lock(&failure).get_or_insert(e);
                            return;
                        }
                    }
                });
            }
        });
        progress.done();
        if let Some(error) = lock(&failure).take() {
            return Err(error);
        }
        let layers: Vec<Pushed> = lock(&results).iter().flatten().cloned().collect();
        Ok(match &image.original {
            Some(original) => (original.bytes.clone(), original.media_type.clone()),
            None => {
                let zstd: Vec<bool> = image
                    .layers
                    .iter()
                    .zip(&left_out)
                    .map(|(l, found)| found.as_ref().map_or(l.zstd, |f| f.zstd))
                    .collect();
                rebuilt(&image.config_digest, image.config.len(), &layers, &zstd)
            }
        })
    }
}

/// A manifest of the config and the layers as pushed, and its media type: Docker schema 2
/// (what `docker push` and `skopeo copy docker-archive:` write), or OCI when a layer is zstd,
/// for which schema 2 has no media type (`zstd[i]` says which are).
fn rebuilt(
    config: &Digest,
    config_size: usize,
    layers: &[Pushed],
    zstd: &[bool],
) -> (Vec<u8>, String) {
    let oci = zstd.contains(&true);
    let (manifest_type, config_type) = if oci {
        (OCI_MANIFEST, OCI_CONFIG)
    } else {
        (manifest::DOCKER_MANIFEST, DOCKER_CONFIG)
    };
    let layers: Vec<String> = layers
        .iter()
        .zip(zstd.iter().chain(std::iter::repeat(&false)))
        .map(|(l, &zstd)| {
            let media_type = match (oci, zstd) {
                (false, _) => DOCKER_LAYER,
                (true, false) => OCI_GZIP_LAYER,
                (true, true) => OCI_ZSTD_LAYER,
            };
            format!(
                r#"{{"mediaType":"{media_type}","size":{},"digest":"{}"}}"#,
                l.size, l.digest
            )
        })
        .collect();
    let text = format!(
        r#"{{"schemaVersion":2,"mediaType":"{manifest_type}","config":{{"mediaType":"{config_type}","size":{config_size},"digest":"{config}"}},"layers":[{}]}}"#,
        layers.join(",")
    );
    (text.into_bytes(), manifest_type.to_string())
}

/// Which image goes to which reference.
fn targets<'a>(
    images: &'a [ArchivedImage],
    choose: &Choose,
    destination: &Reference,
    source: &std::path::Path,
) -> Result<Vec<(&'a ArchivedImage, Reference)>, Error> {
    let names = || images.iter().map(shown_name).collect::<Vec<_>>().join(", ");
    match choose {
        Choose::Only if images.len() == 1 => Ok(vec![(&images[0], destination.clone())]),
        Choose::Only => Err(Error::Usage(format!(
            "{} holds {} images ({}); choose one with --image NAME, or push each under its own name with --all",
            source.display(),
            images.len(),
            names()
        ))),
        Choose::Image(name) => {
            let wanted = Reference::parse(name).ok();
            images
                .iter()
                .find(|image| {
                    image.tags.iter().any(|tag| {
                        tag == name
                            || Reference::parse(tag)
                                .ok()
                                .zip(wanted.as_ref())
                                .is_some_and(|(t, w)| same_name(&t, w))
                    })
                })
                .map(|image| vec![(image, destination.clone())])
                .ok_or_else(|| Error::NotFound {
                    what: format!(
                        "no image named {name} in {} (it holds {})",
                        source.display(),
                        names()
                    ),
                })
        }
        Choose::All => {
            let mut out = Vec::new();
            for image in images {
                if image.tags.is_empty() {
                    return Err(Error::Usage(format!(
                        "{} holds an untagged image ({}); --all pushes images under their own tags, so push it with --image or alone",
                        source.display(),
                        &image.config_digest.hex()[..12]
                    )));
                }
                for tag in &image.tags {
                    let own = Reference::parse(tag).map_err(|reason| Error::Reference {
                        input: tag.clone(),
                        reason,
                    })?;
                    let repository = if destination.repository.is_empty() {
                        own.repository.clone()
                    } else {
                        format!("{}/{}", destination.repository, own.repository)
                    };
                    out.push((
                        image,
                        Reference {
                            registry: destination.registry.clone(),
                            repository,
                            tag: Some(own.effective_tag().unwrap_or("latest").to_string()),
                            digest: None,
                        },
                    ));
                }
            }
            Ok(out)
        }
    }
}

/// Whether `image` (as `manifest.json` lists it) is the one a bundle shows engines that read
/// only `manifest.json`: named as the bundle is, or one of the members chosen.
fn of_bundle(image: &ArchivedImage, bundle: &ArchivedBundle) -> bool {
    let named = bundle
        .name
        .as_deref()
        .and_then(|name| Reference::parse(name).ok())
        .is_some_and(|name| {
            image
                .tags
                .iter()
                .filter_map(|tag| Reference::parse(tag).ok())
                .any(|tag| same_name(&tag, &name))
        });
    named
        || bundle
            .members
            .iter()
            .any(|(m, _)| m.config_digest == image.config_digest)
}

fn same_name(a: &Reference, b: &Reference) -> bool {
    a.registry == b.registry
        && a.repository == b.repository
        && a.effective_tag() == b.effective_tag()
}

fn shown_name(image: &ArchivedImage) -> String {
    image
        .tags
        .first()
        .cloned()
        .unwrap_or_else(|| format!("image {}", &image.config_digest.hex()[..12]))
}

/// Repositories of the target's registry that may hold the image's blobs: where the record
/// saw them, and where the archive's image came from. At most a few: each is a token scope.
fn mount_sources(image: &ArchivedImage, target: &Reference, known: &Known) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    for layer in &image.layers {
        for (_, _, repository) in known.for_layer(&layer.diff_id, target.api_host()) {
            found.push(repository);
        }
    }
    for tag in &image.tags {
        if let Ok(own) = Reference::parse(tag) {
            if own.api_host() == target.api_host() {
                found.push(own.repository);
            }
        }
    }
    let mut unique = Vec::new();
    for repository in found {
        if repository != target.repository && !unique.contains(&repository) {
            unique.push(repository);
        }
    }
    unique.truncate(4);
    unique
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::push::record_dir;
    use std::path::PathBuf;

    #[test]
    fn writes_schema2_or_oci_for_zstd_layers() {
        let config = Digest::of_bytes(b"{}");
        let layer = |bytes: &[u8]| Pushed {
            digest: Digest::of_bytes(bytes),
            size: bytes.len() as u64,
        };
        let (bytes, media_type) = rebuilt(&config, 2, &[layer(b"gz")], &[false]);
        assert_eq!(media_type, manifest::DOCKER_MANIFEST);
        match manifest::parse(&bytes, Some(&media_type)).unwrap() {
            manifest::Fetched::Image(m) => {
                assert_eq!(m.config.digest, config);
                assert_eq!(m.config.media_type, DOCKER_CONFIG);
                assert_eq!(m.layers[0].size, 2);
                assert_eq!(m.layers[0].media_type, DOCKER_LAYER);
            }
            manifest::Fetched::Index(_) => panic!("an image manifest"),
        }
        let (bytes, media_type) =
            rebuilt(&config, 2, &[layer(b"gz"), layer(b"zst")], &[false, true]);
        assert_eq!(media_type, OCI_MANIFEST);
        match manifest::parse(&bytes, Some(&media_type)).unwrap() {
            manifest::Fetched::Image(m) => {
                assert_eq!(m.config.media_type, OCI_CONFIG);
                assert_eq!(m.layers[0].media_type, OCI_GZIP_LAYER);
                assert_eq!(m.layers[1].media_type, OCI_ZSTD_LAYER);
                assert_eq!(m.layers[1].size, 3);
            }
            manifest::Fetched::Index(_) => panic!("an image manifest"),
        }
    }

    #[test]
    fn the_record_goes_with_the_cache() {
        let env = |name: &str| match name {
            "HOME" => Some("/home/me".to_string()),
            _ => None,
        };
        assert_eq!(
            record_dir(None, &env),
            Some(PathBuf::from("/home/me/.cache/dockersave"))
        );
        assert_eq!(
            record_dir(Some(std::path::Path::new("/c")), &env),
            Some(PathBuf::from("/c"))
        );
        assert_eq!(record_dir(None, &|_| None), None);
    }
}
