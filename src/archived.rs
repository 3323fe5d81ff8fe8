//! A `docker save` archive read back, for `--push` and for `--have`: either layout (from
//! dockersave, Docker or `skopeo copy docker-archive:`), plain or wholly gzip/xz-compressed, or
//! the directory `--no-tar` leaves. It finds the images (`manifest.json`, and `index.json` for
//! the registry's own manifest) and opens any entry as a stream. A thin archive's left-out
//! layers are listed as absent.
//!
//! It reads; it never writes, and it never follows a name out of the archive: entry names from
//! `manifest.json` are plain relative paths, and links inside the archive or directory must stay
//! inside it. The small JSON documents are kept in memory (bounded); layers never are.

use crate::decompress::{Decompressor, Format};
use crate::digest::Digest;
use crate::error::Error;
use crate::limits::{MAX_ARCHIVE_DOCUMENTS as MAX_DOCUMENTS, MAX_DOCUMENT};
use crate::manifest::{self, Fetched, Platform, Platforms};
use crate::tar_reader;
use miniserde::Deserialize;
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Wrap {
    Plain,
    Gzip,
    Xz,
}

enum Kind {
    Dir(PathBuf),
    Tar { path: PathBuf, wrap: Wrap },
}

/// Where an entry's bytes are in the (uncompressed) tar stream.
#[derive(Clone, Copy)]
struct At {
    offset: u64,
    size: u64,
    /// Its first bytes, to tell gzip from tar without opening it again.
    head: [u8; 4],
}

pub struct Source {
    kind: Kind,
    /// What the user named, for messages.
    shown: String,
    entries: HashMap<String, At>,
    documents: HashMap<String, Vec<u8>>,
    /// The archive's links, name → the name they point to: resolved when an entry is looked
    /// up, so a document stays one copy however many links name it.
    links: HashMap<String, String>,
}

/// One image of the archive, as `manifest.json` lists it.
pub struct ArchivedImage {
    /// `RepoTags` (may be empty: an untagged image).
    pub tags: Vec<String>,
    pub config: Vec<u8>,
    pub config_digest: Digest,
    pub layers: Vec<ArchivedLayer>,
    /// The registry's own manifest, when the archive kept it with every compressed blob it
    /// names (`dockersave --compressed`): pushed byte for byte, so its digest survives.
    pub original: Option<Original>,
}

pub struct ArchivedLayer {
    pub entry: String,
    pub diff_id: Digest,
    /// The entry's size.
    pub size: u64,
    /// Whether the archive holds the entry: a thin archive (`--have`) lists layers whose
    /// files it leaves out, for a receiver that already holds them.
    pub present: bool,
    /// Compressed in the archive, gzip or zstd (else a plain tar): it goes up as it is.
    pub compressed: bool,
    /// zstd-compressed: the manifest names it with zstd's media type.
    pub zstd: bool,
    /// The blob digest the archive claims for a compressed entry (its `blobs/sha256/` name),
    /// checked as it is uploaded.
    pub digest: Option<Digest>,
}

/// An index the archive keeps with its images (`dockersave --platform all|LIST`): `index.json`
/// names it, and it names each platform's manifest.
pub struct ArchivedBundle {
    /// The index as stored, its media type and digest (checked).
    pub index: Vec<u8>,
    pub media_type: String,
    pub digest: Digest,
    /// The name `index.json` gives it (containerd's annotation), if any.
    pub name: Option<String>,
    /// The images chosen, with the platform the index gives each.
    pub members: Vec<(ArchivedImage, Option<Platform>)>,
    /// The entries that are not images for a platform (attestations), when every platform
    /// goes: each manifest (bytes, media type) and the blobs it names, as archived.
    pub others: Vec<Unopened>,
    /// Whether the members are every entry of the index (then it can go up as it is).
    pub complete: bool,
}

/// A manifest the archive keeps unopened (an attestation): pushed as it is, with its blobs.
pub struct Unopened {
    pub manifest: Vec<u8>,
    pub media_type: String,
    pub blobs: Vec<(Digest, Vec<u8>)>,
}

/// What an archive's images are made of (`Source::held`).
pub struct Held {
    /// Each image's diff IDs, bottom first.
    pub stacks: Vec<Vec<Digest>>,
    /// The size of each uncompressed layer tar known, by diff ID.
    pub sizes: HashMap<Digest, u64>,
}

pub struct Original {
    pub bytes: Vec<u8>,
    pub media_type: String,
    pub digest: Digest,
    /// The layers' media types, in order.
    pub layer_types: Vec<String>,
}

#[derive(Deserialize)]
struct SavedImage {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags")]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers")]
    layers: Vec<String>,
}

impl Source {
    /// Opens `path`: a directory, or a tar told plain, gzip or xz by its first bytes. A tar is
    /// read once here to index its entries and keep its JSON documents.
    pub fn open(path: &Path) -> Result<Source, Error> {
        let shown = path.display().to_string();
        let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
        if meta.is_dir() {
            return Ok(Source {
                kind: Kind::Dir(path.to_path_buf()),
                shown,
                entries: HashMap::new(),
                documents: HashMap::new(),
                links: HashMap::new(),
            });
        }
        let mut magic = [0u8; 6];
        let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
        let n = read_up_to(&mut file, &mut magic).map_err(|e| Error::io(path, e))?;
        let wrap = match &magic[..n] {
            [0x1f, 0x8b, ..] => Wrap::Gzip,
            [0xfd, b'7', b'z', b'X', b'Z', 0] => Wrap::Xz,
            _ => Wrap::Plain,
        };
        let mut source = Source {
            kind: Kind::Tar {
                path: path.to_path_buf(),
                wrap,
            },
            shown,
            entries: HashMap::new(),
            documents: HashMap::new(),
            links: HashMap::new(),
        };
        source.index().map_err(|e| source.unreadable(e))?;
        Ok(source)
    }

    /// Whether entries can be read concurrently and reopened cheaply (a directory or a plain
    /// tar); a compressed tar is decompressed from its start for every entry opened.
    pub fn random_access(&self) -> bool {
        matches!(
            self.kind,
            Kind::Dir(_)
                | Kind::Tar {
                    wrap: Wrap::Plain,
                    ..
                }
        )
    }

    /// The images of the archive, in `manifest.json`'s order.
    pub fn images(&self) -> Result<Vec<ArchivedImage>, Error> {
        let listing = self.document("manifest.json")?;
        let saved: Vec<SavedImage> = std::str::from_utf8(&listing)
            .ok()
            .and_then(|text| crate::limits::json(text).ok())
            .ok_or_else(|| self.malformed("its manifest.json is not a docker save image list"))?;
        if saved.is_empty() {
            return Err(self.malformed("its manifest.json lists no image"));
        }
        // Each image keeps its config: one config named many times must not cost its bytes
        // each time over (the same table as a pull's).
        let mut held = 0;
        for image in &saved {
            held += self.document_size(&image.config);
            if held > crate::limits::MAX_HELD_CONFIGS {
                break;
            }
        }
        let layers: usize = saved.iter().map(|image| image.layers.len()).sum();
        if held > crate::limits::MAX_HELD_CONFIGS || layers > crate::limits::MAX_ARCHIVED_LAYERS {
            return Err(self.malformed(&format!(
                "its manifest.json lists more than dockersave reads: {} images with {held} bytes of configs and {layers} layers (at most {} MiB of configs and {} layers)",
                saved.len(),
                crate::limits::MAX_HELD_CONFIGS >> 20,
                crate::limits::MAX_ARCHIVED_LAYERS
            )));
        }
        let originals = self.originals();
        saved
            .into_iter()
            .map(|image| self.image(image, &originals))
            .collect()
    }

    /// The indexes `index.json` names, each with the images of the platforms `platforms` picks
    /// (every one without it; entries for no platform, such as attestations, are left out).
    pub fn bundles(&self, platforms: Option<&Platforms>) -> Result<Vec<ArchivedBundle>, Error> {
        let Ok(top) = self.document("index.json") else {
            return Ok(Vec::new());
        };
        let Ok(Fetched::Index(entries)) = manifest::parse(&top, Some(manifest::OCI_INDEX)) else {
            return Ok(Vec::new());
        };
        let mut bundles = Vec::new();
        for entry in entries {
            let media_type = entry.descriptor.media_type.clone();
            if media_type != manifest::OCI_INDEX && media_type != manifest::DOCKER_MANIFEST_LIST {
                continue;
            }
            let digest = entry.descriptor.digest.clone();
            let index = self.blob_document(&digest)?;
            let Ok(Fetched::Index(listed)) = manifest::parse(&index, Some(&media_type)) else {
                return Err(self.malformed(&format!("the index {digest} is not an image index")));
            };
            let chosen: Vec<&manifest::IndexEntry> = match platforms {
                Some(Platforms::List(wanted)) => {
                    let mut chosen: Vec<&manifest::IndexEntry> = Vec::new();
                    for platform in wanted {
                        let choice = manifest::choose(&listed, platform).map_err(|available| {
                            Error::PlatformNotFound {
                                image: format!("the index {digest} in {}", self.shown),
                                wanted: platform.to_string(),
                                available,
                            }
                        })?;
                        if !chosen
                            .iter()
                            .any(|c| c.descriptor.digest == choice.entry.descriptor.digest)
                        {
                            chosen.push(choice.entry);
                        }
                    }
                    chosen
                }
                _ => listed
                    .iter()
                    .filter(|e| {
                        e.platform
                            .as_ref()
                            .is_some_and(|p| !manifest::is_unknown(p))
                    })
                    .collect(),
            };
            let mut members = Vec::new();
            for member in &chosen {
                let image = self.member(&member.descriptor)?;
                members.push((image, member.platform.clone()));
            }
            let mut others = Vec::new();
            if !matches!(platforms, Some(Platforms::List(_))) {
                let rest = listed
                    .iter()
                    .filter(|e| !chosen.iter().any(|c| std::ptr::eq(*c, *e)));
                // An attestation whose blobs are not all here is left out (a new index then).
                others = rest
                    .filter_map(|e| self.unopened(&e.descriptor).ok())
                    .collect();
            }
            bundles.push(ArchivedBundle {
                name: entry.name.clone(),
                complete: members.len() + others.len() == listed.len(),
                others,
                index,
                media_type,
                digest,
                members,
            });
        }
        Ok(bundles)
    }

    /// The image a bundle's manifest describes: its config and layers are the blobs it names,
    /// and the manifest goes up as it is when every layer is stored compressed.
    fn member(&self, descriptor: &manifest::Descriptor) -> Result<ArchivedImage, Error> {
        let bytes = self.blob_document(&descriptor.digest)?;
        let media_type = descriptor.media_type.clone();
        let Ok(Fetched::Image(image)) = manifest::parse(&bytes, Some(&media_type)) else {
            return Err(self.malformed(&format!(
                "the manifest {} is not an image manifest",
                descriptor.digest
            )));
        };
        let layer_types: Vec<String> = image.layers.iter().map(|l| l.media_type.clone()).collect();
        let kept = layer_types
            .iter()
            .all(|t| t.contains("gzip") || t.contains("zstd"));
        let saved = SavedImage {
            config: blob_name(&image.config.digest),
            repo_tags: None,
            layers: image.layers.iter().map(|l| blob_name(&l.digest)).collect(),
        };
        let originals = match kept {
            true => vec![Original {
                digest: descriptor.digest.clone(),
                bytes,
                media_type,
                layer_types,
            }],
            false => Vec::new(),
        };
        self.image(saved, &originals)
    }

    /// A manifest kept unopened (an attestation) and every blob it names, from the archive.
    fn unopened(&self, descriptor: &manifest::Descriptor) -> Result<Unopened, Error> {
        let manifest = self.blob_document(&descriptor.digest)?;
        let media_type = descriptor.media_type.clone();
        let Ok(Fetched::Image(image)) = manifest::parse(&manifest, Some(&media_type)) else {
            return Err(self.malformed("an index entry is neither an image nor an attestation"));
        };
        let mut blobs = Vec::new();
        for blob in std::iter::once(&image.config).chain(&image.layers) {
            blobs.push((blob.digest.clone(), self.blob_document(&blob.digest)?));
        }
        Ok(Unopened {
            manifest,
            media_type,
            blobs,
        })
    }

    /// A JSON blob of the archive, checked against its digest.
    fn blob_document(&self, digest: &Digest) -> Result<Vec<u8>, Error> {
        let name = blob_name(digest);
        let bytes = self.document(&name)?;
        let actual = Digest::of_bytes(&bytes);
        if actual != *digest {
            return Err(Error::DigestMismatch {
                what: format!("{name} in {}", self.shown),
                expected: digest.to_string(),
                actual: actual.to_string(),
            });
        }
        Ok(bytes)
    }

    /// A stream of the entry's bytes.
    pub fn reader(&self, name: &str) -> Result<Box<dyn Read + Send>, Error> {
        match &self.kind {
            Kind::Dir(dir) => {
                let path = self.inside(dir, name)?;
                Ok(Box::new(crate::outfile::open_regular(&path)?))
            }
            Kind::Tar { path, wrap } => {
                let at = self.at(name)?;
                let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
                let mut stream: Box<dyn Read + Send> = match wrap {
                    Wrap::Plain => {
                        file.seek(SeekFrom::Start(at.offset))
                            .map_err(|e| Error::io(path, e))?;
                        return Ok(Box::new(file.take(at.size)));
                    }
                    Wrap::Gzip => Box::new(Decompressor::new(
                        Box::new(io::BufReader::new(file)) as Box<dyn Read + Send>
                    )),
                    Wrap::Xz => xz(io::BufReader::new(file)).map_err(|e| self.unreadable(e))?,
                };
                let skipped = io::copy(&mut (&mut stream).take(at.offset), &mut io::sink())
                    .map_err(|e| self.unreadable(e))?;
                if skipped != at.offset {
                    return Err(self.malformed("it ends early"));
                }
                Ok(Box::new(stream.take(at.size)))
            }
        }
    }

    fn image(&self, saved: SavedImage, originals: &[Original]) -> Result<ArchivedImage, Error> {
        let config = self.document(&saved.config)?;
        let config_digest = Digest::of_bytes(&config);
        if let Some(claimed) = claimed_digest(&saved.config) {
            if claimed != config_digest {
                return Err(Error::DigestMismatch {
                    what: format!("the image config {} in {}", saved.config, self.shown),
                    expected: claimed.to_string(),
                    actual: config_digest.to_string(),
                });
            }
        }
        let parsed = manifest::parse_config(&config).map_err(|detail| Error::Invalid {
            what: format!("the image config {} in {}", saved.config, self.shown),
            detail,
        })?;
        if parsed.diff_ids.len() != saved.layers.len() {
            return Err(self.malformed(&format!(
                "manifest.json lists {} layers for {}, whose config has {} diff IDs",
                saved.layers.len(),
                saved.config,
                parsed.diff_ids.len()
            )));
        }
        let mut layers = Vec::new();
        for (entry, diff_id) in saved.layers.iter().zip(parsed.diff_ids) {
            let Some((size, head)) = self.size_and_head(entry)? else {
                // Left out of a thin archive: a blob name still says which blob it was.
                let digest = claimed_digest(entry).filter(|d| *d != diff_id);
                layers.push(ArchivedLayer {
                    compressed: digest.is_some(),
                    digest,
                    entry: entry.clone(),
                    diff_id,
                    size: 0,
                    present: false,
                    zstd: false,
                });
                continue;
            };
            let format = Format::of(&head);
            let compressed = format != Format::Plain;
            layers.push(ArchivedLayer {
                digest: if compressed {
                    claimed_digest(entry)
                } else {
                    None
                },
                entry: entry.clone(),
                diff_id,
                size,
                present: true,
                compressed,
                zstd: format == Format::Zstd,
            });
        }
        let original = originals
            .iter()
            .find(|o| {
                manifest::parse(&o.bytes, Some(&o.media_type)).is_ok_and(|m| match m {
                    Fetched::Image(m) => {
                        m.config.digest == config_digest
                            && m.layers.len() == layers.len()
                            && m.layers.iter().zip(&layers).all(|(d, l)| {
                                l.digest.as_ref() == Some(&d.digest)
                                    && (l.size == d.size || !l.present)
                            })
                    }
                    Fetched::Index(_) => false,
                })
            })
            .map(|o| Original {
                bytes: o.bytes.clone(),
                media_type: o.media_type.clone(),
                digest: o.digest.clone(),
                layer_types: o.layer_types.clone(),
            });
        Ok(ArchivedImage {
            tags: saved.repo_tags.unwrap_or_default(),
            config,
            config_digest,
            layers,
            original,
        })
    }

    /// The manifests `index.json` points to whose layers are all compressed: candidates for
    /// being the registry's own, matched to an image by its config and layer digests.
    fn originals(&self) -> Vec<Original> {
        let Ok(index) = self.document("index.json") else {
            return Vec::new();
        };
        let Ok(Fetched::Index(entries)) = manifest::parse(&index, Some(manifest::OCI_INDEX)) else {
            return Vec::new();
        };
        let mut found = Vec::new();
        for entry in entries {
            let name = format!("blobs/sha256/{}", entry.descriptor.digest.hex());
            let Ok(bytes) = self.document(&name) else {
                continue;
            };
            if Digest::of_bytes(&bytes) != entry.descriptor.digest {
                continue;
            }
            let media_type = entry.descriptor.media_type.clone();
            let Ok(Fetched::Image(image)) = manifest::parse(&bytes, Some(&media_type)) else {
                continue;
            };
            let layer_types: Vec<String> =
                image.layers.iter().map(|l| l.media_type.clone()).collect();
            // A manifest of compressed blobs only (gzip or zstd): the ones kept as served.
            if layer_types
                .iter()
                .all(|t| t.contains("gzip") || t.contains("zstd"))
            {
                found.push(Original {
                    digest: entry.descriptor.digest.clone(),
                    bytes,
                    media_type,
                    layer_types,
                });
            }
        }
        found
    }

    /// The size of a document `document` would read (0 when there is none), without reading it.
    fn document_size(&self, name: &str) -> usize {
        match &self.kind {
            Kind::Dir(dir) => clean(name)
                .and_then(|name| std::fs::metadata(dir.join(name)).ok())
                .map_or(0, |m| m.len() as usize),
            Kind::Tar { .. } => self
                .resolve(name)
                .ok()
                .and_then(|target| self.documents.get(&target))
                .map_or(0, Vec::len),
        }
    }

    /// A small JSON document of the archive, whole.
    fn document(&self, name: &str) -> Result<Vec<u8>, Error> {
        let name = clean(name).ok_or_else(|| self.outside(name))?;
        match &self.kind {
            Kind::Dir(dir) => {
                let path = self.inside(dir, &name)?;
                let mut bytes = Vec::new();
                crate::outfile::open_regular(&path)?
                    .take(MAX_DOCUMENT + 1)
                    .read_to_end(&mut bytes)
                    .map_err(|e| Error::io(&path, e))?;
                if bytes.len() as u64 > MAX_DOCUMENT {
                    return Err(self.malformed(&format!("{name} is too large for a JSON document")));
                }
                Ok(bytes)
            }
            Kind::Tar { .. } => {
                let target = self.resolve(&name)?;
                self.documents
                    .get(&target)
                    .cloned()
                    .ok_or_else(|| Error::NotFound {
                        what: format!(
                            "{name} not found in {}; is it a docker save archive?",
                            self.shown
                        ),
                    })
            }
        }
    }

    /// The size and first bytes of the entry `name`; `None` when the archive does not hold it.
    fn size_and_head(&self, name: &str) -> Result<Option<(u64, [u8; 4])>, Error> {
        match &self.kind {
            Kind::Dir(dir) => {
                let cleaned = clean(name).ok_or_else(|| self.outside(name))?;
                if std::fs::symlink_metadata(dir.join(cleaned)).is_err() {
                    return Ok(None);
                }
                let path = self.inside(dir, name)?;
                let mut file = crate::outfile::open_regular(&path)?;
                let size = file.metadata().map_err(|e| Error::io(&path, e))?.len();
                let mut head = [0u8; 4];
                read_up_to(&mut file, &mut head).map_err(|e| Error::io(&path, e))?;
                Ok(Some((size, head)))
            }
            Kind::Tar { .. } => {
                let target = self.resolve(name)?;
                Ok(self.entries.get(&target).map(|at| (at.size, at.head)))
            }
        }
    }

    /// What the archive's images are made of, for a thin archive's `--have`: each image's diff
    /// IDs (those `manifest.json` lists, and the members of the indexes `index.json` names),
    /// and the size of each uncompressed layer tar it stores or its OCI manifests list, by
    /// diff ID. No layer data is read.
    pub fn held(&self) -> Result<Held, Error> {
        let mut stacks = Vec::new();
        let mut sizes = HashMap::new();
        // One stack per config: manifest.json may name one config many times, and each
        // naming must not cost its diff IDs again.
        let mut configs = std::collections::HashSet::new();
        for image in self.images()? {
            if !configs.insert(image.config_digest.clone()) {
                continue;
            }
            let diff_ids: Vec<Digest> = image.layers.iter().map(|l| l.diff_id.clone()).collect();
            for layer in image.layers.iter().filter(|l| l.present && !l.compressed) {
                sizes.insert(layer.diff_id.clone(), layer.size);
            }
            stacks.push(diff_ids);
        }
        let mut manifests = Vec::new();
        if let Ok(top) = self.document("index.json") {
            if let Ok(Fetched::Index(entries)) = manifest::parse(&top, Some(manifest::OCI_INDEX)) {
                for entry in entries.iter().take(crate::limits::MAX_MEMBERS) {
                    let Ok(bytes) = self.blob_document(&entry.descriptor.digest) else {
                        continue;
                    };
                    match manifest::parse(&bytes, Some(&entry.descriptor.media_type)) {
                        Ok(Fetched::Image(image)) => manifests.push(image),
                        Ok(Fetched::Index(members)) => {
                            for member in members.iter().take(crate::limits::MAX_MEMBERS) {
                                let Ok(bytes) = self.blob_document(&member.descriptor.digest)
                                else {
                                    continue;
                                };
                                let media_type = Some(member.descriptor.media_type.as_str());
                                if let Ok(Fetched::Image(image)) =
                                    manifest::parse(&bytes, media_type)
                                {
                                    manifests.push(image);
                                }
                            }
                        }
                        Err(_) => {}
                    }
                }
            }
        }
        for image in manifests {
            if !configs.insert(image.config.digest.clone()) {
                continue;
            }
            let Ok(config) = self.blob_document(&image.config.digest) else {
                continue;
            };
            let Ok(parsed) = manifest::parse_config(&config) else {
                continue;
            };
            for layer in &image.layers {
                if layer.media_type.ends_with(".tar") || layer.media_type.ends_with(".tar.v1") {
                    sizes.insert(layer.digest.clone(), layer.size);
                }
            }
            stacks.push(parsed.diff_ids);
        }
        Ok(Held { stacks, sizes })
    }

    fn at(&self, name: &str) -> Result<At, Error> {
        let target = self.resolve(name)?;
        self.entries
            .get(&target)
            .copied()
            .ok_or_else(|| Error::NotFound {
                what: format!(
                    "{name}, which manifest.json names, is not in {}",
                    self.shown
                ),
            })
    }

    /// The entry a name stands for in a tar, following the archive's own links (a legacy
    /// `docker save` links a layer shared by two images), a few deep.
    fn resolve(&self, name: &str) -> Result<String, Error> {
        let mut name = clean(name).ok_or_else(|| self.outside(name))?;
        for _ in 0..8 {
            match self.links.get(&name) {
                Some(target) => name = target.clone(),
                None => break,
            }
        }
        Ok(name)
    }

    /// `name` under `dir`, refusing anything that leaves it (`..`, absolute paths, links out).
    fn inside(&self, dir: &Path, name: &str) -> Result<PathBuf, Error> {
        let name = clean(name).ok_or_else(|| self.outside(name))?;
        let path = dir.join(&name);
        let real = path.canonicalize().map_err(|e| Error::io(&path, e))?;
        let root = dir.canonicalize().map_err(|e| Error::io(dir, e))?;
        if !real.starts_with(&root) {
            return Err(self.outside(&name));
        }
        Ok(real)
    }

    /// Reads the whole tar once, as `tar_reader` (Go's rules) reads it: where each file is, its
    /// links, JSON documents kept. Extension records are bounded by the reader.
    fn index(&mut self) -> io::Result<()> {
        let Kind::Tar { path, wrap } = &self.kind else {
            return Ok(());
        };
        let file = io::BufReader::new(File::open(path)?);
        let mut kept = 0u64;
        // One reader type for every form keeps one copy of the tar code in the binary; a
        // plain tar is read through, not seeked (the page cache makes that cheap).
        let stream: Box<dyn Read + Send> = match wrap {
            Wrap::Plain => Box::new(file),
            Wrap::Gzip => Box::new(Decompressor::new(Box::new(file) as Box<dyn Read + Send>)),
            Wrap::Xz => xz(file)?,
        };
        let mut reader = tar_reader::Reader::new(stream);
        let failed = |e: tar_reader::Failure| match e {
            tar_reader::Failure::Io(e) => e,
            tar_reader::Failure::Malformed(why) => io::Error::other(why),
        };
        while let Some(header) = reader.next().map_err(failed)? {
            let offset = reader.position();
            self.note(header, &mut reader.data(), offset, &mut kept)?;
        }
        Ok(())
    }

    fn note(
        &mut self,
        header: tar_reader::Header,
        data: &mut dyn Read,
        offset: u64,
        kept: &mut u64,
    ) -> io::Result<()> {
        let Some(name) = std::str::from_utf8(&header.name).ok().and_then(clean) else {
            return Ok(());
        };
        let (symlink, hard_link) = (header.typeflag == b'2', header.typeflag == b'1');
        if symlink || hard_link {
            let target = String::from_utf8_lossy(&header.linkname).into_owned();
            // A symlink is relative to its directory; a hard link names the entry itself.
            let joined = match (symlink, name.rsplit_once('/')) {
                (true, Some((dir, _))) => format!("{dir}/{target}"),
                _ => target,
            };
            if let Some(joined) = clean(&joined) {
                self.links.insert(name, joined);
            }
            return Ok(());
        }
        // A sparse file is no part of an image archive.
        if header.typeflag != b'0' || header.sparse.is_some() {
            return Ok(());
        }
        let size = header.size as u64;
        let mut head = [0u8; 4];
        let n = read_up_to(data, &mut head)?;
        let is_json_name = name.ends_with(".json") || name.starts_with("blobs/");
        if is_json_name && size <= MAX_DOCUMENT && n > 0 && matches!(head[0], b'{' | b'[') {
            *kept += size;
            if *kept > MAX_DOCUMENTS {
                return Err(io::Error::other(
                    "it holds more JSON than an image archive does",
                ));
            }
            let mut bytes = head[..n].to_vec();
            data.read_to_end(&mut bytes)?;
            self.documents.insert(name.clone(), bytes);
        }
        self.entries.insert(name, At { offset, size, head });
        Ok(())
    }

    fn malformed(&self, detail: &str) -> Error {
        Error::Invalid {
            what: format!("the archive {}", self.shown),
            detail: detail.to_string(),
        }
    }

    fn unreadable(&self, e: io::Error) -> Error {
        self.malformed(&format!("it cannot be read as a tar ({e})"))
    }

    fn outside(&self, name: &str) -> Error {
        Error::Unsafe {
            layer: self.shown.clone(),
            entry: name.to_string(),
            reason: "the name leads out of the archive".into(),
        }
    }
}

fn blob_name(digest: &Digest) -> String {
    format!("blobs/sha256/{}", digest.hex())
}

/// A relative entry name made canonical (`./a//b` → `a/b`, `a/../b` → `b`); `None` when it is
/// absolute or climbs out.
fn clean(name: &str) -> Option<String> {
    if name.starts_with('/') {
        return None;
    }
    let mut parts: Vec<&str> = Vec::new();
    for part in name.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            part => parts.push(part),
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

/// The digest an entry's name claims: `blobs/sha256/<hex>` or `<hex>.json` (a legacy config).
fn claimed_digest(name: &str) -> Option<Digest> {
    let base = name.rsplit('/').next()?;
    let hex = base.strip_suffix(".json").unwrap_or(base);
    let algorithm_dir = name.strip_suffix(base)?.trim_end_matches('/');
    if !(algorithm_dir.ends_with("sha256") || base.ends_with(".json") && algorithm_dir.is_empty()) {
        return None;
    }
    Digest::parse(&format!("sha256:{hex}")).ok()
}

/// An xz archive's tar; in a build without the "xz" feature, the error that names it.
fn xz(file: impl Read + Send + 'static) -> io::Result<Box<dyn Read + Send>> {
    #[cfg(feature = "xz")]
    return Ok(Box::new(lzma_rust2::XzReader::new(file, true)));
    #[cfg(not(feature = "xz"))]
    {
        drop(file);
        Err(io::Error::other(
            crate::features::missing("xz", "an xz-compressed archive").to_string(),
        ))
    }
}

fn read_up_to(reader: &mut (impl Read + ?Sized), buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_config_named_many_times_is_refused_before_it_is_copied() {
        // Measured before this cap: 1000 namings of a 3 MiB config took 3 GB and 31 s.
        let config = format!(
            r#"{{"rootfs":{{"type":"layers","diff_ids":["sha256:{}"]}},"pad":"{}"}}"#,
            "a".repeat(64),
            "x".repeat(3 << 20)
        );
        let name = format!("blobs/sha256/{}", Digest::of_bytes(config.as_bytes()).hex());
        let item = format!(r#"{{"Config":"{name}","RepoTags":null,"Layers":["l"]}}"#);
        let listing = format!("[{item},{item}]");
        let path = std::env::temp_dir().join(format!("archived-cap-{}.tar", std::process::id()));
        let mut builder = tar::Builder::new(File::create(&path).unwrap());
        for (entry, bytes) in [
            (name.as_str(), config.as_bytes()),
            ("manifest.json", listing.as_bytes()),
        ] {
            let mut header = tar::Header::new_gnu();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o644);
            builder.append_data(&mut header, entry, bytes).unwrap();
        }
        builder.into_inner().unwrap();
        let error = Source::open(&path)
            .unwrap()
            .images()
            .err()
            .expect("refused");
        std::fs::remove_file(&path).unwrap();
        assert!(
            error
                .to_string()
                .contains("lists more than dockersave reads: 2 images"),
            "{error}"
        );
    }

    #[test]
    fn entry_names_stay_inside() {
        assert_eq!(
            clean("./blobs//sha256/ab").as_deref(),
            Some("blobs/sha256/ab")
        );
        assert_eq!(clean("a/../b").as_deref(), Some("b"));
        assert_eq!(clean("../etc/passwd"), None);
        assert_eq!(clean("/etc/passwd"), None);
        assert_eq!(clean("a/../../b"), None);
        assert_eq!(clean("."), None);
    }

    #[test]
    fn names_claim_digests() {
        let hex = "a".repeat(64);
        assert!(claimed_digest(&format!("blobs/sha256/{hex}")).is_some());
        assert!(claimed_digest(&format!("{hex}.json")).is_some());
        assert!(claimed_digest(&format!("{hex}/layer.tar")).is_none());
        assert!(claimed_digest(&format!("x/{hex}.json")).is_none());
    }
}
