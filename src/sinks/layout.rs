//! What goes into a `docker save` archive, by layout: the names of the layer entries and the
//! small files beside them (configs, manifests, `index.json`, `manifest.json`, `repositories`).
//! It is the archive's table of contents, decided from the images' manifests and configs
//! alone, so the writer (`archive`) only places bytes.
//!
//! Two layouts:
//! - `Docker` (the default): what `docker save` writes since Docker 25 — the OCI image layout
//!   (`oci-layout`, `index.json`, `blobs/sha256/…`) with `manifest.json` and `repositories`
//!   beside it, so the one file loads in old and new Docker engines, Podman, skopeo and
//!   containerd. Layers are `blobs/sha256/<diff ID>` (or, `--compressed`, the registry's blobs
//!   under their own digests, with the registry's manifest kept byte for byte).
//! - `Legacy`: the classic layout of Docker before 25 — per layer `<v1 id>/` with `VERSION`,
//!   `json` and `layer.tar`, then `<config hex>.json`, `manifest.json`, `repositories`.
//!
//! Layers that several images (or one image twice) share are stored once. The same images
//! always give the same bytes. This module does no I/O and knows no registry.

use crate::digest::Digest;
use crate::manifest::{Config, Manifest, Platform};
use crate::reference::Reference;
use miniserde::json;
use std::collections::BTreeMap;

/// An archive's layout (`--format`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// What `docker save` writes since Docker 25: an OCI layout with `manifest.json` beside it.
    Docker,
    /// The classic layout of Docker before 25.
    Legacy,
}

/// One entry of the archive besides the layer tars.
#[derive(Debug, PartialEq, Eq)]
pub enum Entry {
    Dir(String),
    File(String, Vec<u8>),
}

/// One image going into the archive: what the registry served for it, verified.
pub struct Image<'a> {
    pub reference: &'a Reference,
    /// The platform's image manifest as served, its digest and media type.
    pub manifest_bytes: &'a [u8],
    pub manifest_digest: &'a Digest,
    pub manifest_media_type: &'a str,
    pub manifest: &'a Manifest,
    pub config_bytes: &'a [u8],
    pub config: &'a Config,
    /// The platform an index lists the image under, when it is a bundle's member: it may say
    /// more than the config (a variant the config lacks).
    pub platform: Option<Platform>,
}

/// A layer stored in the archive: the entries that precede its tar (the legacy layer
/// directory), the tar's name, and which image's layer it is (the first that has it).
#[derive(Debug)]
pub struct StoredLayer {
    pub before: Vec<Entry>,
    pub name: String,
    pub image: usize,
    pub index: usize,
}

/// The archive's table of contents.
pub struct Plan {
    pub layout: Layout,
    /// Layers stay as the registry serves them (`--compressed`).
    pub compressed: bool,
    /// Entries written before the first layer.
    pub prelude: Vec<Entry>,
    /// Every layer stored, once each, in the order the images list them.
    pub layers: Vec<StoredLayer>,
    /// Layers `manifest.json` lists whose files a thin archive leaves out (`--have`), with
    /// their size as they would be stored.
    pub left_out: Vec<(StoredLayer, u64)>,
    /// For each image, for each of its layers, the index into `layers`, or past its end into
    /// `left_out`.
    pub slots: Vec<Vec<usize>>,
    /// Images kept together with their index (`--platform all|LIST`).
    pub bundles: Vec<Bundle>,
    /// The images a thin archive's receiver must already hold (`--have`), for `index.json`.
    pub needs: Vec<String>,
}

/// What a thin archive leaves out: the layers, by chain ID, that the receiver already holds,
/// each with its size as it would be stored (what the OCI manifest lists), and the images
/// that hold them (named in `index.json`).
#[derive(Default)]
pub struct LeaveOut {
    pub chains: BTreeMap<Digest, u64>,
    pub needs: Vec<String>,
}

/// Images of one reference kept together with their index (`--platform all|LIST`): the members
/// `images[first..first + count]`, of which `main` is the one `manifest.json` names (engines
/// before Docker 25 and Podman load that one).
#[derive(Debug)]
pub struct Bundle {
    pub first: usize,
    pub count: usize,
    pub main: usize,
    /// The index as served (bytes, digest, media type), when every entry it lists is a member:
    /// with `--compressed` it is then kept byte for byte, else a new one lists the members.
    pub kept: Option<(Vec<u8>, Digest, String)>,
    /// Blobs the kept index names besides its images' (attestations: their manifests,
    /// configs and layers, unopened), stored with it.
    pub unopened: Vec<(Digest, Vec<u8>)>,
}

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
/// Docker writes the space after the colon; so do we, byte for byte.
const OCI_LAYOUT: &str = r#"{"imageLayoutVersion": "1.0.0"}"#;

impl Plan {
    pub fn new(layout: Layout, compressed: bool, images: &[Image], bundles: Vec<Bundle>) -> Plan {
        Plan::thin(layout, compressed, images, bundles, &LeaveOut::default())
    }

    /// A plan whose archive leaves out the files of the layers `leave_out` names by chain ID,
    /// as `docker load` reads them: a layer is loaded from its file only when its chain ID is
    /// not in the engine's layer store. A layer stored once for several images (or positions)
    /// is left out only if every one of them is.
    pub fn thin(
        layout: Layout,
        compressed: bool,
        images: &[Image],
        bundles: Vec<Bundle>,
        leave_out: &LeaveOut,
    ) -> Plan {
        let name_of = |image: &Image, i: usize, id: &str| match layout {
            Layout::Docker => blob_path(stored_digest(image, i, compressed)),
            Layout::Legacy => format!("{id}/layer.tar"),
        };
        let mut needed = std::collections::BTreeSet::new();
        let mut sizes: BTreeMap<String, u64> = BTreeMap::new();
        for image in images {
            let ids = layer_ids(&image.config.diff_ids);
            for (i, chain) in chain_ids(&image.config.diff_ids).iter().enumerate() {
                let name = name_of(image, i, &ids[i]);
                match leave_out.chains.get(chain) {
                    Some(&size) => drop(sizes.insert(name, size)),
                    None => drop(needed.insert(name)),
                }
            }
        }
        let mut layers: Vec<StoredLayer> = Vec::new();
        let mut left_out: Vec<(StoredLayer, u64)> = Vec::new();
        // Slots into `left_out` are offset by this, and fixed up once `layers` is complete.
        const LEFT_OUT: usize = usize::MAX / 2;
        let mut by_name: BTreeMap<String, usize> = BTreeMap::new();
        let mut slots = Vec::with_capacity(images.len());
        for (image_index, image) in images.iter().enumerate() {
            let ids = layer_ids(&image.config.diff_ids);
            let mut image_slots = Vec::with_capacity(ids.len());
            for (i, id) in ids.iter().enumerate() {
                let name = name_of(image, i, id);
                if !needed.contains(&name) {
                    let size = sizes.get(&name).copied().unwrap_or(0);
                    let slot = *by_name.entry(name.clone()).or_insert_with(|| {
                        left_out.push((
                            StoredLayer {
                                before: Vec::new(),
                                name,
                                image: image_index,
                                index: i,
                            },
                            size,
                        ));
                        LEFT_OUT + left_out.len() - 1
                    });
                    image_slots.push(slot);
                    continue;
                }
                let slot = *by_name.entry(name.clone()).or_insert_with(|| {
                    let before = match layout {
                        Layout::Docker => Vec::new(),
                        Layout::Legacy => {
                            let parent = i.checked_sub(1).map(|p| ids[p].as_str());
                            let [(_, version), (_, json)] = layer_files(
                                id,
                                parent,
                                image.config.created.as_deref(),
                                image.config.os.as_deref(),
                            );
                            vec![
                                Entry::Dir(format!("{id}/")),
                                Entry::File(format!("{id}/VERSION"), version),
                                Entry::File(format!("{id}/json"), json),
                            ]
                        }
                    };
                    layers.push(StoredLayer {
                        before,
                        name,
                        image: image_index,
                        index: i,
                    });
                    layers.len() - 1
                });
                image_slots.push(slot);
            }
            slots.push(image_slots);
        }
        for slot in slots.iter_mut().flatten() {
            if *slot >= LEFT_OUT {
                *slot = *slot - LEFT_OUT + layers.len();
            }
        }
        let prelude = match layout {
            Layout::Docker => vec![
                Entry::Dir("blobs/".into()),
                Entry::Dir("blobs/sha256/".into()),
            ],
            Layout::Legacy => Vec::new(),
        };
        Plan {
            layout,
            compressed,
            prelude,
            layers,
            left_out,
            slots,
            bundles,
            needs: match leave_out.chains.is_empty() {
                true => Vec::new(),
                false => leave_out.needs.clone(),
            },
        }
    }

    /// The name of the layer in `slot` (see `slots`).
    fn slot_name(&self, slot: usize) -> &str {
        match slot.checked_sub(self.layers.len()) {
            None => &self.layers[slot].name,
            Some(n) => &self.left_out[n].0.name,
        }
    }

    /// The stored size of the layer in `slot`, given the sizes of the layers stored.
    fn slot_size(&self, slot: usize, sizes: &[u64]) -> u64 {
        match slot.checked_sub(self.layers.len()) {
            None => sizes[slot],
            Some(n) => self.left_out[n].1,
        }
    }

    /// How many bytes the left-out layers would have taken.
    pub fn left_out_bytes(&self) -> u64 {
        self.left_out.iter().map(|(_, size)| size).sum()
    }

    /// The entries after the layers, once every stored layer's size (`sizes`, in bytes as
    /// stored) is known: the OCI manifest Docker writes lists each layer tar's size.
    pub fn finish(&self, images: &[Image], sizes: &[u64]) -> Vec<Entry> {
        match self.layout {
            Layout::Docker => self.docker_files(images, sizes),
            Layout::Legacy => self.legacy_files(images),
        }
    }

    fn docker_files(&self, images: &[Image], sizes: &[u64]) -> Vec<Entry> {
        let mut files = Vec::new();
        let mut stored = std::collections::BTreeSet::new();
        let mut store = |files: &mut Vec<Entry>, digest: &Digest, bytes: Vec<u8>| {
            if stored.insert(digest.to_string()) {
                files.push(Entry::File(blob_path(digest), bytes));
            }
        };
        let mut index_entries = Vec::new();
        let mut bundle_entries: Vec<Vec<String>> = vec![Vec::new(); self.bundles.len()];
        let mut manifest_json: Vec<ManifestJsonItem> = Vec::new();
        let mut repositories = BTreeMap::new();
        for (n, image) in images.iter().enumerate() {
            let config_digest = &image.manifest.config.digest;
            store(&mut files, config_digest, image.config_bytes.to_vec());
            let platform = platform_json(image.config, image.platform.as_ref());
            let (manifest_digest, manifest_media_type, manifest_bytes) = if self.compressed {
                (
                    image.manifest_digest.clone(),
                    image.manifest_media_type.to_string(),
                    image.manifest_bytes.to_vec(),
                )
            } else {
                let layers: Vec<String> = image
                    .config
                    .diff_ids
                    .iter()
                    .zip(&self.slots[n])
                    .map(|(diff_id, &slot)| {
                        descriptor(OCI_LAYER_TAR, diff_id, self.slot_size(slot, sizes), &[])
                    })
                    .collect();
                let config = descriptor(
                    OCI_CONFIG,
                    config_digest,
                    image.config_bytes.len() as u64,
                    &[("platform", platform.clone())],
                );
                let bytes = format!(
                    r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{config},"layers":[{}]}}"#,
                    layers.join(",")
                )
                .into_bytes();
                (Digest::of_bytes(&bytes), OCI_MANIFEST.to_string(), bytes)
            };
            let size = manifest_bytes.len() as u64;
            store(&mut files, &manifest_digest, manifest_bytes);
            let reference = image.reference;
            let bundle = self
                .bundles
                .iter()
                .position(|b| (b.first..b.first + b.count).contains(&n));
            match bundle {
                // A member of a bundle: an entry of its index; the index, named, once the
                // last member is listed; and the manifest.json item for the main member only
                // (what engines before Docker 25 and Podman load).
                Some(b) => {
                    bundle_entries[b].push(descriptor(
                        &manifest_media_type,
                        &manifest_digest,
                        size,
                        &[("platform", platform)],
                    ));
                    let bundle = &self.bundles[b];
                    if n == bundle.first + bundle.count - 1 {
                        let (bytes, digest, media_type) = match &bundle.kept {
                            Some(kept) if self.compressed => {
                                for (digest, bytes) in &bundle.unopened {
                                    store(&mut files, digest, bytes.clone());
                                }
                                kept.clone()
                            }
                            _ => {
                                let bytes = format!(
                                    r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{}]}}"#,
                                    bundle_entries[b].join(",")
                                )
                                .into_bytes();
                                let digest = Digest::of_bytes(&bytes);
                                (bytes, digest, OCI_INDEX.to_string())
                            }
                        };
                        let size = bytes.len() as u64;
                        store(&mut files, &digest, bytes);
                        let names = name_annotations(reference);
                        index_entries.push(descriptor(&media_type, &digest, size, &names));
                    }
                    if n != bundle.main {
                        continue;
                    }
                }
                None => {
                    let mut extra = name_annotations(reference);
                    extra.push(("platform", platform));
                    index_entries.push(descriptor(
                        &manifest_media_type,
                        &manifest_digest,
                        size,
                        &extra,
                    ));
                }
            }
            let layers: Vec<String> = self.slots[n]
                .iter()
                .map(|&slot| self.slot_name(slot).to_string())
                .collect();
            add_manifest_item(
                &mut manifest_json,
                blob_path(config_digest),
                reference,
                layers,
            );
            if let (Some(tag), Some(top)) =
                (reference.effective_tag(), image.config.diff_ids.last())
            {
                repositories
                    .entry(reference.familiar_name())
                    .or_insert_with(BTreeMap::new)
                    .insert(tag.to_string(), top.hex().to_string());
            }
        }
        let thin = match self.needs.is_empty() {
            true => String::new(),
            false => format!(",{}", thin_annotations(&self.needs, self.left_out.len())),
        };
        let index = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{}]{thin}}}"#,
            index_entries.join(",")
        );
        files.push(Entry::File("index.json".into(), index.into_bytes()));
        files.push(Entry::File(
            "manifest.json".into(),
            format!("{}\n", manifest_json_text(&manifest_json, true)).into_bytes(),
        ));
        files.push(Entry::File("oci-layout".into(), OCI_LAYOUT.into()));
        if !repositories.is_empty() {
            files.push(Entry::File(
                "repositories".into(),
                format!("{}\n", repositories_text(&repositories)).into_bytes(),
            ));
        }
        files
    }

    fn legacy_files(&self, images: &[Image]) -> Vec<Entry> {
        let mut files = Vec::new();
        let mut configs = std::collections::BTreeSet::new();
        let mut manifest_json: Vec<ManifestJsonItem> = Vec::new();
        let mut repositories = BTreeMap::new();
        for (n, image) in images.iter().enumerate() {
            let config_name = format!("{}.json", image.manifest.config.digest.hex());
            if configs.insert(config_name.clone()) {
                files.push(Entry::File(
                    config_name.clone(),
                    image.config_bytes.to_vec(),
                ));
            }
            let layers: Vec<String> = self.slots[n]
                .iter()
                .map(|&slot| self.slot_name(slot).to_string())
                .collect();
            let top = layers
                .last()
                .and_then(|l| l.strip_suffix("/layer.tar"))
                .map(str::to_string);
            add_manifest_item(&mut manifest_json, config_name, image.reference, layers);
            // `repositories` maps name → tag → top layer ID; an untagged image has none.
            if let (Some(tag), Some(top)) = (image.reference.effective_tag(), top) {
                repositories
                    .entry(image.reference.familiar_name())
                    .or_insert_with(BTreeMap::new)
                    .insert(tag.to_string(), top);
            }
        }
        files.push(Entry::File(
            "manifest.json".into(),
            manifest_json_text(&manifest_json, false).into_bytes(),
        ));
        files.push(Entry::File(
            "repositories".into(),
            format!("{}\n", repositories_text(&repositories)).into_bytes(),
        ));
        files
    }
}

/// The digest a layer is stored under: its diff ID (the tar), or with `--compressed` the blob's.
fn stored_digest<'a>(image: &'a Image, i: usize, compressed: bool) -> &'a Digest {
    if compressed {
        &image.manifest.layers[i].digest
    } else {
        &image.config.diff_ids[i]
    }
}

/// The annotations of a thin archive's `index.json`: what its receiver must already hold.
fn thin_annotations(needs: &[String], left_out: usize) -> String {
    let members = [
        (THIN_NEEDS, json::to_string(&needs.join(", "))),
        (THIN_LEFT_OUT, json::to_string(&left_out.to_string())),
    ];
    format!("\"annotations\":{}", object(&members))
}

/// The `index.json` annotations of a thin archive (`--have`): the images its receiver must
/// already hold, and how many layers it leaves out.
pub const THIN_NEEDS: &str = "dockersave.thin.needs";
pub const THIN_LEFT_OUT: &str = "dockersave.thin.left-out";

/// The chain IDs of a stack of layers (the OCI image spec's): the first layer's diff ID, then
/// each the sha256 of the one below, a space, and its own diff ID. An engine's layer store is
/// keyed by them, so a layer is the same only on the same layers below.
pub fn chain_ids(diff_ids: &[Digest]) -> Vec<Digest> {
    let mut chain: Option<Digest> = None;
    diff_ids
        .iter()
        .map(|diff_id| {
            let id = match &chain {
                None => diff_id.clone(),
                Some(below) => Digest::of_bytes(format!("{below} {diff_id}").as_bytes()),
            };
            chain = Some(id.clone());
            id
        })
        .collect()
}

fn blob_path(digest: &Digest) -> String {
    format!("blobs/sha256/{}", digest.hex())
}

/// The `annotations` member of an image's `index.json` entry: the names containerd and the OCI
/// layout give it (none when it has none).
fn name_annotations(reference: &Reference) -> Vec<(&'static str, String)> {
    let names = match (reference.effective_tag(), &reference.digest) {
        (Some(tag), _) => vec![
            ("io.containerd.image.name", full_name(reference, tag)),
            ("org.opencontainers.image.ref.name", tag.to_string()),
        ],
        // Docker leaves an image saved by digest unnamed; containerd needs a name to import
        // it, and a digest reference is one.
        (None, Some(digest)) => vec![(
            "io.containerd.image.name",
            format!("{}/{}@{digest}", reference.registry, reference.repository),
        )],
        (None, None) => return Vec::new(),
    };
    let names: Vec<(&str, String)> = names
        .iter()
        .map(|(k, v)| (*k, json::to_string(v)))
        .collect();
    vec![("annotations", object(&names))]
}

/// `docker.io/library/debian:12`, `127.0.0.1:5000/team/app:v1`: the name containerd records.
fn full_name(reference: &Reference, tag: &str) -> String {
    format!("{}/{}:{tag}", reference.registry, reference.repository)
}

struct ManifestJsonItem {
    config: String,
    repo_tags: Vec<String>,
    layers: Vec<String>,
}

/// One `manifest.json` item per image; the same image asked for under two names is one item
/// with both tags, as `docker save a b` writes it.
fn add_manifest_item(
    items: &mut Vec<ManifestJsonItem>,
    config: String,
    reference: &Reference,
    layers: Vec<String>,
) {
    let tag = reference.repo_tag();
    if let Some(item) = items.iter_mut().find(|i| i.config == config) {
        if let Some(tag) = tag {
            if !item.repo_tags.contains(&tag) {
                item.repo_tags.push(tag);
            }
        }
        return;
    }
    items.push(ManifestJsonItem {
        config,
        repo_tags: tag.into_iter().collect(),
        layers,
    });
}

fn manifest_json_text(items: &[ManifestJsonItem], null_when_untagged: bool) -> String {
    let strings = |list: &[String]| {
        format!(
            "[{}]",
            list.iter()
                .map(json::to_string)
                .collect::<Vec<_>>()
                .join(",")
        )
    };
    let items: Vec<String> = items
        .iter()
        .map(|item| {
            // Docker writes `null` for an untagged image (a Go nil slice).
            let tags = if item.repo_tags.is_empty() && null_when_untagged {
                "null".to_string()
            } else {
                strings(&item.repo_tags)
            };
            format!(
                r#"{{"Config":{},"RepoTags":{tags},"Layers":{}}}"#,
                json::to_string(&item.config),
                strings(&item.layers)
            )
        })
        .collect();
    format!("[{}]", items.join(","))
}

fn repositories_text(repositories: &BTreeMap<String, BTreeMap<String, String>>) -> String {
    let names: Vec<(&str, String)> = repositories
        .iter()
        .map(|(name, tags)| {
            let tags: Vec<(&str, String)> = tags
                .iter()
                .map(|(tag, id)| (tag.as_str(), json::to_string(id)))
                .collect();
            (name.as_str(), object(&tags))
        })
        .collect();
    object(&names)
}

/// A JSON object of already-encoded values, keys in the order given.
fn object(members: &[(&str, String)]) -> String {
    let members: Vec<String> = members
        .iter()
        .map(|(k, v)| format!("{}:{v}", json::to_string(k)))
        .collect();
    format!("{{{}}}", members.join(","))
}

/// An OCI descriptor in the field order Go's encoder gives: mediaType, digest, size, then
/// `extra` (annotations, platform), already encoded.
fn descriptor(media_type: &str, digest: &Digest, size: u64, extra: &[(&str, String)]) -> String {
    let mut members = vec![
        ("mediaType", json::to_string(media_type)),
        ("digest", json::to_string(&digest.to_string())),
        ("size", size.to_string()),
    ];
    members.extend(extra.iter().map(|(k, v)| (*k, v.clone())));
    object(&members)
}

fn platform_json(config: &Config, listed: Option<&Platform>) -> String {
    let (architecture, os, variant) = match listed {
        Some(p) => (p.architecture.as_str(), p.os.as_str(), p.variant.as_deref()),
        None => (
            config.architecture.as_deref().unwrap_or("amd64"),
            config.os.as_deref().unwrap_or("linux"),
            config.variant.as_deref(),
        ),
    };
    let mut members = vec![
        ("architecture", json::to_string(architecture)),
        ("os", json::to_string(os)),
    ];
    if let Some(variant) = variant {
        members.push(("variant", json::to_string(variant)));
    }
    object(&members)
}

/// The legacy v1 layer IDs that name the layer directories: each is the sha256 of its parent's
/// ID and its diff ID, so the chain is unique even when a layer repeats, and images that share
/// their lower layers share these IDs.
pub fn layer_ids(diff_ids: &[Digest]) -> Vec<String> {
    let mut parent = String::new();
    diff_ids
        .iter()
        .map(|diff_id| {
            let id = Digest::of_bytes(format!("{parent}\n{diff_id}").as_bytes())
                .hex()
                .to_string();
            parent.clone_from(&id);
            id
        })
        .collect()
}

#[derive(miniserde::Serialize)]
struct LayerJson<'a> {
    id: &'a str,
    parent: Option<&'a str>,
    created: &'a str,
    os: &'a str,
}

/// The small files of one legacy layer directory: `VERSION` and `json` (Docker's v1 image
/// metadata, read only by very old engines).
pub fn layer_files(
    id: &str,
    parent: Option<&str>,
    created: Option<&str>,
    os: Option<&str>,
) -> [(&'static str, Vec<u8>); 2] {
    let json = json::to_string(&LayerJson {
        id,
        parent,
        created: created.unwrap_or("1970-01-01T00:00:00Z"),
        os: os.unwrap_or("linux"),
    });
    [("VERSION", b"1.0".to_vec()), ("json", json.into_bytes())]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{self, Descriptor};

    struct Owned {
        reference: Reference,
        manifest_bytes: Vec<u8>,
        manifest_digest: Digest,
        manifest: Manifest,
        config_bytes: Vec<u8>,
        config: Config,
    }

    impl Owned {
        fn new(name: &str, diff_ids: &[&[u8]]) -> Owned {
            let diff_ids: Vec<String> = diff_ids
                .iter()
                .map(|d| format!("\"{}\"", Digest::of_bytes(d)))
                .collect();
            let config_bytes = format!(
                r#"{{"architecture":"arm","os":"linux","variant":"v7","rootfs":{{"type":"layers","diff_ids":[{}]}}}}"#,
                diff_ids.join(",")
            )
            .into_bytes();
            let config = manifest::parse_config(&config_bytes).unwrap();
            let layers = config
                .diff_ids
                .iter()
                .map(|d| Descriptor {
                    media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
                    digest: Digest::of_bytes(d.to_string().as_bytes()),
                    size: 10,
                })
                .collect();
            let manifest = Manifest {
                config: Descriptor {
                    media_type: OCI_CONFIG.into(),
                    digest: Digest::of_bytes(&config_bytes),
                    size: config_bytes.len() as u64,
                },
                layers,
                artifact_type: None,
                files: Vec::new(),
            };
            let manifest_bytes = b"{\"served\":true}".to_vec();
            Owned {
                reference: Reference::parse(name).unwrap(),
                manifest_digest: Digest::of_bytes(&manifest_bytes),
                manifest_bytes,
                manifest,
                config_bytes,
                config,
            }
        }

        fn image(&self) -> Image<'_> {
            Image {
                reference: &self.reference,
                manifest_bytes: &self.manifest_bytes,
                manifest_digest: &self.manifest_digest,
                manifest_media_type: OCI_MANIFEST,
                manifest: &self.manifest,
                config_bytes: &self.config_bytes,
                config: &self.config,
                platform: None,
            }
        }
    }

    fn file<'a>(files: &'a [Entry], name: &str) -> &'a str {
        files
            .iter()
            .find_map(|e| match e {
                Entry::File(n, bytes) if n == name => std::str::from_utf8(bytes).ok(),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no {name}"))
    }

    #[test]
    fn layer_ids_chain_and_differ_for_repeated_layers() {
        let a = Digest::of_bytes(b"a");
        let ids = layer_ids(&[a.clone(), a.clone()]);
        assert_eq!(ids.len(), 2);
        assert_ne!(ids[0], ids[1]);
        assert_eq!(layer_ids(&[a])[0], ids[0]);
    }

    #[test]
    fn chain_ids_follow_the_image_spec() {
        let (a, b, c) = (
            Digest::of_bytes(b"a"),
            Digest::of_bytes(b"b"),
            Digest::of_bytes(b"c"),
        );
        let chains = chain_ids(&[a.clone(), b.clone(), c.clone()]);
        assert_eq!(chains[0], a);
        let ab = Digest::of_bytes(format!("{a} {b}").as_bytes());
        assert_eq!(chains[1], ab);
        assert_eq!(chains[2], Digest::of_bytes(format!("{ab} {c}").as_bytes()));
        // The same layer on other layers below is another chain.
        assert_ne!(chain_ids(std::slice::from_ref(&b))[0], chains[1]);
    }

    #[test]
    fn a_thin_plan_lists_every_layer_and_stores_only_what_is_not_held() {
        let old = Owned::new("app:1", &[b"base", b"mid"]);
        let new = Owned::new("app:2", &[b"base", b"mid", b"top"]);
        let other = Owned::new("other:1", &[b"x", b"base"]);
        let mut leave_out = LeaveOut::default();
        for chain in chain_ids(&old.config.diff_ids) {
            leave_out.chains.insert(chain, 4096);
        }
        leave_out.needs = vec!["app:1".into()];
        let images = [new.image()];
        let plan = Plan::thin(Layout::Docker, false, &images, Vec::new(), &leave_out);
        assert_eq!(plan.layers.len(), 1);
        assert_eq!(plan.left_out.len(), 2);
        assert_eq!(plan.left_out_bytes(), 8192);
        let files = plan.finish(&images, &[512]);
        let manifest = file(&files, "manifest.json");
        assert_eq!(manifest.matches("blobs/sha256/").count(), 4, "{manifest}");
        let index = file(&files, "index.json");
        assert!(
            index.ends_with(
                r#""annotations":{"dockersave.thin.needs":"app:1","dockersave.thin.left-out":"2"}}"#
            ),
            "{index}"
        );
        let oci = files
            .iter()
            .find_map(|e| match e {
                Entry::File(_, b)
                    if b.starts_with(
                        b"{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest",
                    ) =>
                {
                    Some(std::str::from_utf8(b).unwrap())
                }
                _ => None,
            })
            .unwrap();
        assert_eq!(oci.matches("\"size\":4096").count(), 2, "{oci}");
        assert_eq!(oci.matches("\"size\":512").count(), 1, "{oci}");

        // `base` is held at the bottom but `other` needs it second: its one file is kept.
        let images = [new.image(), other.image()];
        let plan = Plan::thin(Layout::Docker, false, &images, Vec::new(), &leave_out);
        let stored: Vec<&str> = plan.layers.iter().map(|l| l.name.as_str()).collect();
        assert!(
            stored.contains(&format!("blobs/sha256/{}", Digest::of_bytes(b"base").hex()).as_str())
        );
        assert_eq!(plan.left_out.len(), 1, "only mid");

        // Nothing held: no annotation.
        let plan = Plan::thin(
            Layout::Docker,
            false,
            &[other.image()],
            Vec::new(),
            &LeaveOut::default(),
        );
        assert!(plan.left_out.is_empty() && plan.needs.is_empty());
    }

    #[test]
    fn docker_layout_matches_what_docker_25_writes() {
        let one = Owned::new("127.0.0.1:5000/team/app:v1", &[b"base", b"top"]);
        let images = [one.image()];
        let plan = Plan::new(Layout::Docker, false, &images, Vec::new());
        let base = Digest::of_bytes(b"base");
        let top = Digest::of_bytes(b"top");
        let names: Vec<&str> = plan.layers.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(
            names,
            [
                format!("blobs/sha256/{}", base.hex()),
                format!("blobs/sha256/{}", top.hex())
            ]
        );
        let files = plan.finish(&images, &[1024, 2048]);
        let config_digest = &one.manifest.config.digest;
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_digest}","size":{},"platform":{{"architecture":"arm","os":"linux","variant":"v7"}}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{base}","size":1024}},{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{top}","size":2048}}]}}"#,
            one.config_bytes.len()
        );
        let manifest_digest = Digest::of_bytes(manifest.as_bytes());
        assert_eq!(
            file(&files, &format!("blobs/sha256/{}", manifest_digest.hex())),
            manifest
        );
        assert_eq!(
            file(&files, "index.json"),
            format!(
                r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{manifest_digest}","size":{},"annotations":{{"io.containerd.image.name":"127.0.0.1:5000/team/app:v1","org.opencontainers.image.ref.name":"v1"}},"platform":{{"architecture":"arm","os":"linux","variant":"v7"}}}}]}}"#,
                manifest.len()
            )
        );
        assert_eq!(
            file(&files, "manifest.json"),
            format!(
                "[{{\"Config\":\"blobs/sha256/{}\",\"RepoTags\":[\"127.0.0.1:5000/team/app:v1\"],\"Layers\":[\"blobs/sha256/{}\",\"blobs/sha256/{}\"]}}]\n",
                config_digest.hex(),
                base.hex(),
                top.hex()
            )
        );
        assert_eq!(
            file(&files, "oci-layout"),
            r#"{"imageLayoutVersion": "1.0.0"}"#
        );
        assert_eq!(
            file(&files, "repositories"),
            format!(
                "{{\"127.0.0.1:5000/team/app\":{{\"v1\":\"{}\"}}}}\n",
                top.hex()
            )
        );
        assert_eq!(
            file(&files, &format!("blobs/sha256/{}", config_digest.hex())).as_bytes(),
            one.config_bytes
        );
    }

    #[test]
    fn compressed_keeps_the_registry_manifest_and_blob_digests() {
        let one = Owned::new(
            "app@sha256:0123456789012345678901234567890123456789012345678901234567890123",
            &[b"x"],
        );
        let images = [one.image()];
        let plan = Plan::new(Layout::Docker, true, &images, Vec::new());
        let blob = &one.manifest.layers[0].digest;
        assert_eq!(plan.layers[0].name, format!("blobs/sha256/{}", blob.hex()));
        let files = plan.finish(&images, &[10]);
        assert_eq!(
            file(
                &files,
                &format!("blobs/sha256/{}", one.manifest_digest.hex())
            ),
            "{\"served\":true}"
        );
        let index = file(&files, "index.json");
        assert!(
            index.contains(&format!("\"digest\":\"{}\"", one.manifest_digest)),
            "{index}"
        );
        assert!(
            index.contains("\"io.containerd.image.name\":\"docker.io/library/app@sha256:0123"),
            "{index}"
        );
        assert!(file(&files, "manifest.json").contains("\"RepoTags\":null"));
        assert!(!files
            .iter()
            .any(|e| matches!(e, Entry::File(n, _) if n == "repositories")));
    }

    #[test]
    fn a_bundle_is_one_index_entry_and_one_manifest_json_item() {
        let mut arm = Owned::new("app:1", &[b"base", b"arm"]);
        let mut amd = Owned::new("app:1", &[b"base", b"amd"]);
        amd.config_bytes = String::from_utf8(amd.config_bytes)
            .unwrap()
            .replace(
                r#""arm","os":"linux","variant":"v7""#,
                r#""amd64","os":"linux""#,
            )
            .into_bytes();
        amd.config = manifest::parse_config(&amd.config_bytes).unwrap();
        amd.manifest.config.digest = Digest::of_bytes(&amd.config_bytes);
        for (owned, text) in [(&mut arm, "arm"), (&mut amd, "amd")] {
            owned.manifest_bytes = format!("{{\"served\":\"{text}\"}}").into_bytes();
            owned.manifest_digest = Digest::of_bytes(&owned.manifest_bytes);
        }
        let images = [arm.image(), amd.image()];
        let served = b"{\"the index\":\"as served\"}".to_vec();
        let served_digest = Digest::of_bytes(&served);
        for compressed in [true, false] {
            let bundle = Bundle {
                first: 0,
                count: 2,
                main: 1,
                kept: Some((served.clone(), served_digest.clone(), OCI_INDEX.into())),
                unopened: vec![(Digest::of_bytes(b"attestation"), b"attestation".to_vec())],
            };
            let plan = Plan::new(Layout::Docker, compressed, &images, vec![bundle]);
            assert_eq!(plan.layers.len(), 3, "the shared base is stored once");
            let files = plan.finish(&images, &[1, 2, 3]);
            let index = file(&files, "index.json");
            assert_eq!(index.matches("\"digest\"").count(), 1, "{index}");
            assert!(
                index.contains("\"org.opencontainers.image.ref.name\":\"1\""),
                "{index}"
            );
            assert!(!index.contains("platform"), "{index}");
            let manifest_json = file(&files, "manifest.json");
            assert_eq!(manifest_json.matches("\"Config\"").count(), 1);
            assert!(
                manifest_json.contains(amd.manifest.config.digest.hex()),
                "{manifest_json}"
            );
            if compressed {
                assert!(index.contains(&served_digest.to_string()), "{index}");
                let kept = file(&files, &format!("blobs/sha256/{}", served_digest.hex()));
                assert_eq!(kept.as_bytes(), served);
                let other = Digest::of_bytes(b"attestation");
                assert_eq!(
                    file(&files, &format!("blobs/sha256/{}", other.hex())),
                    "attestation"
                );
            } else {
                assert!(!index.contains(&served_digest.to_string()), "{index}");
                let other = format!("blobs/sha256/{}", Digest::of_bytes(b"attestation").hex());
                assert!(
                    !files
                        .iter()
                        .any(|e| matches!(e, Entry::File(n, _) if *n == other)),
                    "a new index does not list the attestations: they are not stored"
                );
                let written = files
                    .iter()
                    .find_map(|e| match e {
                        Entry::File(_, b) if b.starts_with(b"{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.index") => Some(b),
                        _ => None,
                    })
                    .expect("a new index");
                let text = std::str::from_utf8(written).unwrap();
                assert!(index.contains(&Digest::of_bytes(written).to_string()));
                assert_eq!(text.matches("\"platform\"").count(), 2, "{text}");
                assert!(text.contains("\"variant\":\"v7\""), "{text}");
            }
        }
    }

    #[test]
    fn shared_layers_are_stored_once_in_both_layouts() {
        let a = Owned::new("a:1", &[b"base", b"a"]);
        let b = Owned::new("b:1", &[b"base", b"b"]);
        let same_again = Owned::new("a:other", &[b"base", b"a"]);
        let images = [a.image(), b.image(), same_again.image()];
        for layout in [Layout::Docker, Layout::Legacy] {
            let plan = Plan::new(layout, false, &images, Vec::new());
            assert_eq!(plan.layers.len(), 3, "{layout:?}");
            assert_eq!(
                plan.slots,
                [vec![0, 1], vec![0, 2], vec![0, 1]],
                "{layout:?}"
            );
            let files = plan.finish(&images, &[1, 2, 3]);
            let manifest = file(&files, "manifest.json");
            assert_eq!(manifest.matches("\"Config\"").count(), 2, "{manifest}");
            assert!(manifest.contains(r#"["a:1","a:other"]"#), "{manifest}");
            let repositories = file(&files, "repositories");
            assert!(repositories.starts_with(r#"{"a":{"1":"#), "{repositories}");
            assert!(repositories.contains(r#""other":"#), "{repositories}");
        }
    }

    #[test]
    fn legacy_layout_is_unchanged() {
        let one = Owned::new("host:5000/app:v1", &[b"aa", b"bb"]);
        let images = [one.image()];
        let plan = Plan::new(Layout::Legacy, false, &images, Vec::new());
        let ids = layer_ids(&one.config.diff_ids);
        assert_eq!(plan.layers[1].name, format!("{}/layer.tar", ids[1]));
        assert_eq!(plan.layers[1].before[0], Entry::Dir(format!("{}/", ids[1])));
        assert!(plan.prelude.is_empty());
        let files = plan.finish(&images, &[0, 0]);
        let config_name = format!("{}.json", one.manifest.config.digest.hex());
        assert_eq!(
            file(&files, "manifest.json"),
            format!(
                r#"[{{"Config":"{config_name}","RepoTags":["host:5000/app:v1"],"Layers":["{}/layer.tar","{}/layer.tar"]}}]"#,
                ids[0], ids[1]
            )
        );
        assert_eq!(
            file(&files, "repositories"),
            format!("{{\"host:5000/app\":{{\"v1\":\"{}\"}}}}\n", ids[1])
        );
    }
}
