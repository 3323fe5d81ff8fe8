//! Manifests, indexes and image configs: their media types, their JSON shapes, and choosing the
//! manifest for a platform from an index.
//!
//! Parsing, and writing the one document dockersave makes of its own (an index of kept
//! platforms): bytes in, plain structs out. Nothing here fetches, and every digest taken from
//! the JSON is validated on the way in so later code can trust its shape (not its content: the
//! bytes behind it are verified when they are downloaded).

use crate::digest::Digest;
use miniserde::Deserialize;
use std::collections::BTreeMap;

pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
const DOCKER_SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";

/// Every manifest format dockersave can use, for the Accept header.
pub const ACCEPTED: [&str; 4] = [
    OCI_INDEX,
    DOCKER_MANIFEST_LIST,
    OCI_MANIFEST,
    DOCKER_MANIFEST,
];

/// A pointer to a blob or manifest.
#[derive(Clone, Debug)]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
}

/// An image manifest: one config and its layers, bottom first. An OCI artifact has the same
/// shape (see `Manifest::artifact`).
#[derive(Clone, Debug)]
pub struct Manifest {
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    /// OCI 1.1's `artifactType`, when the manifest names one.
    pub artifact_type: Option<String>,
    /// What the layers' annotations say of them as files (ORAS's), in the layers' order.
    #[cfg_attr(not(feature = "artifact"), allow(dead_code))]
    pub files: Vec<FileNote>,
}

/// The annotations of an artifact's layer that say how it is kept as a file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileNote {
    /// `org.opencontainers.image.title`: the file's name, as ORAS writes it.
    pub title: Option<String>,
    /// `io.deis.oras.content.unpack` is `true`: a gzipped tar of a directory named `title`.
    pub unpack: bool,
    /// `io.deis.oras.content.digest`: the digest of that tar, uncompressed.
    pub tar_digest: Option<String>,
}

/// The media types of image configs; a manifest whose config is anything else is an artifact.
const IMAGE_CONFIGS: [&str; 2] = [
    "application/vnd.oci.image.config.v1+json",
    "application/vnd.docker.container.image.v1+json",
];
pub const TITLE_ANNOTATION: &str = "org.opencontainers.image.title";
const UNPACK_ANNOTATION: &str = "io.deis.oras.content.unpack";
const TAR_DIGEST_ANNOTATION: &str = "io.deis.oras.content.digest";

impl Manifest {
    /// The artifact type when this is an OCI artifact rather than an image: its
    /// `artifactType`, else its config's media type when that is no image config (the empty
    /// descriptor `application/vnd.oci.empty.v1+json`, Helm's chart config, ...).
    pub fn artifact(&self) -> Option<&str> {
        let config = self.config.media_type.as_str();
        match &self.artifact_type {
            Some(kind) if !kind.is_empty() => Some(kind),
            _ if config.is_empty() || IMAGE_CONFIGS.contains(&config) => None,
            _ => Some(config),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

#[derive(Clone, Debug)]
pub struct IndexEntry {
    pub descriptor: Descriptor,
    pub platform: Option<Platform>,
    /// Marked as the zstd twin of a gzip entry for the same platform (containers' annotation
    /// `io.github.containers.compression.zstd`, which podman and buildah write).
    pub zstd: bool,
    /// The image name containerd's annotation gives the entry (an archive's `index.json`,
    /// which `--push` reads).
    #[cfg_attr(not(feature = "push"), allow(dead_code))]
    pub name: Option<String>,
}

/// The annotation containers' tools put on the zstd entry of an index that also lists the
/// image gzip-compressed.
pub const ZSTD_ANNOTATION: &str = "io.github.containers.compression.zstd";
/// The annotation that names an image in an archive's `index.json` (containerd's).
pub const NAME_ANNOTATION: &str = "io.containerd.image.name";

/// What a manifest request returned.
#[derive(Clone, Debug)]
pub enum Fetched {
    Image(Manifest),
    Index(Vec<IndexEntry>),
}

/// The parts of an image config dockersave needs; the config's bytes are kept verbatim elsewhere.
#[derive(Debug)]
pub struct Config {
    pub diff_ids: Vec<Digest>,
    pub os: Option<String>,
    pub architecture: Option<String>,
    pub variant: Option<String>,
    pub created: Option<String>,
    /// What built each layer, bottom first (`history` entries of empty layers left out).
    pub layer_history: Vec<LayerHistory>,
    /// `config.Entrypoint` and `config.Cmd`: what a container runs.
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
}

#[derive(Clone, Debug, Default)]
#[cfg_attr(not(feature = "git"), allow(dead_code))] // commit messages of --git
pub struct LayerHistory {
    pub created: Option<String>,
    pub created_by: Option<String>,
}

#[derive(Deserialize)]
struct RawHistory {
    created: Option<String>,
    created_by: Option<String>,
    empty_layer: Option<bool>,
}

#[derive(Deserialize)]
struct RawDescriptor {
    #[serde(rename = "mediaType")]
    media_type: Option<String>,
    digest: String,
    size: u64,
    platform: Option<RawPlatform>,
    urls: Option<Vec<String>>,
    annotations: Option<BTreeMap<String, String>>,
    #[serde(rename = "artifactType")]
    #[cfg_attr(not(feature = "artifact"), allow(dead_code))]
    artifact_type: Option<String>,
}

#[derive(Deserialize)]
struct RawPlatform {
    os: String,
    architecture: String,
    variant: Option<String>,
}

#[derive(Deserialize)]
struct RawManifest {
    #[serde(rename = "schemaVersion")]
    schema_version: Option<u64>,
    #[serde(rename = "mediaType")]
    media_type: Option<String>,
    config: Option<RawDescriptor>,
    layers: Option<Vec<RawDescriptor>>,
    manifests: Option<Vec<RawDescriptor>>,
    #[serde(rename = "artifactType")]
    artifact_type: Option<String>,
}

#[derive(Deserialize)]
struct RawRootfs {
    diff_ids: Vec<String>,
}

#[derive(Deserialize)]
struct RawConfig {
    os: Option<String>,
    architecture: Option<String>,
    variant: Option<String>,
    created: Option<String>,
    rootfs: Option<RawRootfs>,
    history: Option<Vec<RawHistory>>,
    config: Option<RawRun>,
}

#[derive(Deserialize)]
struct RawRun {
    #[serde(rename = "Entrypoint")]
    entrypoint: Option<Vec<String>>,
    #[serde(rename = "Cmd")]
    cmd: Option<Vec<String>>,
}

/// Parses a manifest or index. `content_type` is the response's Content-Type, used when the
/// document does not name its own media type (OCI allows that).
pub fn parse(bytes: &[u8], content_type: Option<&str>) -> Result<Fetched, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "it is not UTF-8 text".to_string())?;
    let raw: RawManifest = crate::limits::json(text)
        .map_err(|e| e.or("it is not a JSON manifest of a known shape"))?;
    let content_type = content_type.map(|c| c.split(';').next().unwrap_or(c).trim());
    let media_type = raw.media_type.as_deref().or(content_type).unwrap_or("");
    if raw.schema_version == Some(1)
        || media_type == DOCKER_SCHEMA1
        || media_type == DOCKER_SCHEMA1_SIGNED
    {
        return Err("schema1".into());
    }
    let is_index = media_type == OCI_INDEX || media_type == DOCKER_MANIFEST_LIST;
    if let Some(entries) = raw.manifests.filter(|_| is_index || raw.config.is_none()) {
        let entries = entries
            .into_iter()
            .map(|raw| {
                let platform = raw.platform.as_ref().map(|p| Platform {
                    os: p.os.clone(),
                    architecture: p.architecture.clone(),
                    variant: p.variant.clone().filter(|v| !v.is_empty()),
                });
                let zstd = raw
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(ZSTD_ANNOTATION))
                    .is_some_and(|v| v == "true");
                let name = raw
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(NAME_ANNOTATION))
                    .cloned();
                Ok(IndexEntry {
                    descriptor: descriptor(raw)?,
                    platform,
                    zstd,
                    name,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        return Ok(Fetched::Index(entries));
    }
    let (Some(config), Some(layers)) = (raw.config, raw.layers) else {
        return Err(format!("it has neither \"manifests\" nor \"config\" and \"layers\" (media type {media_type:?})"));
    };
    let files = layers
        .iter()
        .map(|layer| {
            let note = |key: &str| layer.annotations.as_ref().and_then(|a| a.get(key)).cloned();
            FileNote {
                title: note(TITLE_ANNOTATION),
                unpack: note(UNPACK_ANNOTATION).is_some_and(|v| v == "true"),
                tar_digest: note(TAR_DIGEST_ANNOTATION),
            }
        })
        .collect();
    let layers = layers
        .into_iter()
        .map(descriptor)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Fetched::Image(Manifest {
        config: descriptor(config)?,
        layers,
        artifact_type: raw.artifact_type,
        files,
    }))
}

/// One entry of an image's referrers (the referrers API's index, or its fallback tag's): a
/// manifest whose `subject` is the image, as the index describes it.
#[derive(Clone, Debug)]
#[cfg_attr(not(feature = "artifact"), allow(dead_code))]
pub struct Referrer {
    pub descriptor: Descriptor,
    /// The entry's `artifactType` (the registry fills it in from the manifest's, or its config's
    /// media type); empty when the index gives none.
    pub artifact_type: String,
    pub annotations: BTreeMap<String, String>,
}

/// The annotation a referrer's time of creation is in, which "newest" goes by.
#[cfg_attr(not(feature = "artifact"), allow(dead_code))]
pub const CREATED_ANNOTATION: &str = "org.opencontainers.image.created";

/// Parses a referrers index: at most `limit` entries are taken, the rest said to exist by the
/// count returned beside them.
#[cfg_attr(not(feature = "artifact"), allow(dead_code))]
pub fn parse_referrers(bytes: &[u8], limit: usize) -> Result<(Vec<Referrer>, usize), String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "it is not UTF-8 text".to_string())?;
    let raw: RawManifest =
        crate::limits::json(text).map_err(|e| e.or("it is not a JSON index of referrers"))?;
    let entries = raw.manifests.unwrap_or_default();
    let listed = entries.len();
    let referrers = entries
        .into_iter()
        .take(limit)
        .map(|mut raw| {
            let artifact_type = raw.artifact_type.take().unwrap_or_default();
            let annotations = raw.annotations.take().unwrap_or_default();
            Ok(Referrer {
                descriptor: descriptor(raw)?,
                artifact_type,
                annotations,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok((referrers, listed))
}

/// An OCI index of `referrers`, as a registry without the referrers API keeps them under the
/// fallback tag (what `oras attach` writes there).
#[cfg(feature = "push")]
pub fn referrers_json(referrers: &[Referrer]) -> Vec<u8> {
    let text = |t: &str| miniserde::json::to_string(t);
    let entries: Vec<String> = referrers
        .iter()
        .map(|r| {
            let kind = match r.artifact_type.is_empty() {
                true => String::new(),
                false => format!(r#","artifactType":{}"#, text(&r.artifact_type)),
            };
            let annotations = match r.annotations.is_empty() {
                true => String::new(),
                false => format!(
                    r#","annotations":{}"#,
                    miniserde::json::to_string(&r.annotations)
                ),
            };
            format!(
                r#"{{"mediaType":{},"digest":"{}","size":{}{kind}{annotations}}}"#,
                text(&r.descriptor.media_type),
                r.descriptor.digest,
                r.descriptor.size
            )
        })
        .collect();
    format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{}]}}"#,
        entries.join(",")
    )
    .into_bytes()
}

/// No real blob comes near this; a larger size is an error in, or an attack through, the manifest.
const MAX_BLOB_SIZE: u64 = 1 << 40;

fn descriptor(raw: RawDescriptor) -> Result<Descriptor, String> {
    if raw.size > MAX_BLOB_SIZE {
        return Err(format!(
            "blob {} claims {} bytes, more than the 1 TiB dockersave accepts",
            raw.digest, raw.size
        ));
    }
    if raw.urls.is_some_and(|urls| !urls.is_empty()) {
        return Err(format!(
            "blob {} is a foreign layer served from other URLs, which dockersave does not fetch",
            raw.digest
        ));
    }
    Ok(Descriptor {
        media_type: raw.media_type.unwrap_or_default(),
        digest: Digest::parse(&raw.digest)?,
        size: raw.size,
    })
}

pub fn parse_config(bytes: &[u8]) -> Result<Config, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "it is not UTF-8 text".to_string())?;
    let raw: RawConfig =
        crate::limits::json(text).map_err(|e| e.or("it is not a JSON image config"))?;
    let Some(rootfs) = raw.rootfs else {
        return Err("it has no rootfs.diff_ids".into());
    };
    let diff_ids = rootfs
        .diff_ids
        .iter()
        .map(|d| Digest::parse(d))
        .collect::<Result<Vec<_>, _>>()?;
    let (entrypoint, cmd) = match raw.config {
        Some(run) => (run.entrypoint, run.cmd),
        None => (None, None),
    };
    Ok(Config {
        entrypoint: entrypoint.unwrap_or_default(),
        cmd: cmd.unwrap_or_default(),
        diff_ids,
        os: raw.os,
        architecture: raw.architecture,
        variant: raw.variant.filter(|v| !v.is_empty()),
        created: raw.created,
        layer_history: raw
            .history
            .unwrap_or_default()
            .into_iter()
            .filter(|h| h.empty_layer != Some(true))
            .map(|h| LayerHistory {
                created: h.created,
                created_by: h.created_by,
            })
            .collect(),
    })
}

impl Platform {
    /// Parses `os/arch[/variant]`.
    pub fn parse(text: &str) -> Result<Platform, String> {
        let parts: Vec<&str> = text.split('/').collect();
        let valid = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
        };
        match parts.as_slice() {
            [os, arch] if valid(os) && valid(arch) => Ok(Platform::new(os, arch, None)),
            [os, arch, variant] if valid(os) && valid(arch) && valid(variant) => {
                Ok(Platform::new(os, arch, Some(variant)))
            }
            _ => Err(format!("platform {text:?} is not of the form os/arch[/variant], e.g. linux/arm64 or linux/arm/v7")),
        }
    }

    /// Builds a platform, normalising the aliases Docker accepts (`x86_64`, `aarch64`, ...).
    pub fn new(os: &str, architecture: &str, variant: Option<&str>) -> Platform {
        let os = os.to_ascii_lowercase();
        let (architecture, variant) = match (
            architecture.to_ascii_lowercase().as_str(),
            variant.map(str::to_ascii_lowercase),
        ) {
            ("x86_64" | "x86-64" | "amd64", v) => ("amd64".to_string(), v),
            ("aarch64" | "arm64", Some(v)) if v == "v8" => ("arm64".to_string(), None),
            ("aarch64" | "arm64", v) => ("arm64".to_string(), v),
            ("armhf", _) => ("arm".to_string(), Some("v7".to_string())),
            ("armel", _) => ("arm".to_string(), Some("v6".to_string())),
            ("i386" | "i686" | "x86", v) => ("386".to_string(), v),
            (arch, v) => (arch.to_string(), v),
        };
        Platform {
            os,
            architecture,
            variant,
        }
    }
}

/// One entry of an index being written: a manifest (media type, digest, size) and its platform.
#[cfg(feature = "push")]
pub struct Listed<'a> {
    pub media_type: &'a str,
    pub digest: &'a Digest,
    pub size: u64,
    pub platform: Option<&'a Platform>,
}

/// An OCI index of `entries`, in Go's field order: what a bundle gets when the index as served
/// no longer describes what was kept (some platforms only, or manifests written anew).
#[cfg(feature = "push")]
pub fn index_json(entries: &[Listed]) -> Vec<u8> {
    let text = |t: &str| miniserde::json::to_string(t);
    let entries: Vec<String> = entries
        .iter()
        .map(|e| {
            let platform = e.platform.map_or(String::new(), |p| {
                let variant = p
                    .variant
                    .as_ref()
                    .map_or(String::new(), |v| format!(r#","variant":{}"#, text(v)));
                format!(
                    r#","platform":{{"architecture":{},"os":{}{variant}}}"#,
                    text(&p.architecture),
                    text(&p.os)
                )
            });
            format!(
                r#"{{"mediaType":{},"digest":"{}","size":{}{platform}}}"#,
                text(e.media_type),
                e.digest,
                e.size
            )
        })
        .collect();
    format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{}]}}"#,
        entries.join(",")
    )
    .into_bytes()
}

/// `--platform all` or a comma-separated list: the platforms an archive or a copy keeps of an
/// index (a bundle), instead of the one image a pull picks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Platforms {
    /// Every image the index lists for a platform (attestations, listed as `unknown/unknown`,
    /// are not images and are left out).
    All,
    /// These, in this order; each picked from the index as a single `--platform` would be.
    List(Vec<Platform>),
}

impl Platforms {
    /// Parses `all` or `os/arch[/variant],...`; `None` for a single platform (the usual case,
    /// which `Platform::parse` handles).
    pub fn parse(text: &str) -> Result<Option<Platforms>, String> {
        if text == "all" {
            return Ok(Some(Platforms::All));
        }
        if !text.contains(',') {
            return Ok(None);
        }
        let mut list: Vec<Platform> = Vec::new();
        for part in text.split(',').map(str::trim) {
            let platform = Platform::parse(part)?;
            if list.contains(&platform) {
                return Err(format!("platform {platform} is listed twice"));
            }
            list.push(platform);
        }
        Ok(Some(Platforms::List(list)))
    }
}

/// Whether an index entry's platform is the one attestations and other non-images carry.
pub fn is_unknown(platform: &Platform) -> bool {
    platform.os == "unknown" || platform.architecture == "unknown"
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(variant) = &self.variant {
            write!(f, "/{variant}")?;
        }
        Ok(())
    }
}

/// An index entry chosen for a platform.
#[derive(Debug)]
pub struct Choice<'a> {
    pub entry: &'a IndexEntry,
    /// The entry's platform, normalised.
    pub platform: Platform,
    /// Whether it is an older ARM variant than the one asked for (the index lacked that one).
    pub older: bool,
}

/// How an index entry's platform reads: aliases normalised, and a 32-bit ARM entry without a
/// variant taken as v7, as containerd and Docker take it.
fn offered(platform: &Platform) -> Platform {
    let mut offered = Platform::new(
        &platform.os,
        &platform.architecture,
        platform.variant.as_deref(),
    );
    if offered.architecture == "arm" && offered.variant.is_none() {
        offered.variant = Some("v7".into());
    }
    offered
}

/// The variants that run where `variant` does, best first: for 32-bit ARM the same and then
/// each older one down to v5 (v8 → v7 → v6 → v5), never a newer one; otherwise only itself.
fn runnable_variants(wanted: &Platform) -> Vec<Option<String>> {
    let arm = wanted
        .variant
        .as_deref()
        .filter(|_| wanted.architecture == "arm")
        .and_then(|v| v.strip_prefix('v'))
        .and_then(|n| n.parse::<u8>().ok());
    match arm {
        Some(n) => (5..=n.max(5))
            .rev()
            .map(|v| Some(format!("v{v}")))
            .collect(),
        None => vec![wanted.variant.clone()],
    }
}

/// Picks the index entry for `wanted`: the exact platform, else (32-bit ARM) the newest older
/// variant that runs there; a request without a variant takes the first entry of its os and
/// architecture. On failure returns the platforms the index offers (attestation entries,
/// `unknown/unknown`, left out).
pub fn choose<'a>(entries: &'a [IndexEntry], wanted: &Platform) -> Result<Choice<'a>, Vec<String>> {
    let with_platform = || {
        entries
            .iter()
            .filter_map(|e| e.platform.as_ref().map(|p| (e, offered(p))))
    };
    let same_arch = |p: &Platform| p.os == wanted.os && p.architecture == wanted.architecture;
    if wanted.variant.is_none() {
        if let Some((entry, platform)) = with_platform().find(|(_, p)| same_arch(p)) {
            return Ok(Choice {
                entry,
                platform,
                older: false,
            });
        }
    } else {
        for (rank, variant) in runnable_variants(wanted).into_iter().enumerate() {
            let found = with_platform().find(|(_, p)| same_arch(p) && p.variant == variant);
            if let Some((entry, platform)) = found {
                return Ok(Choice {
                    entry,
                    platform,
                    older: rank > 0,
                });
            }
        }
    }
    let mut available: Vec<String> = entries
        .iter()
        .filter_map(|e| e.platform.as_ref())
        .filter(|p| p.os != "unknown")
        .map(|p| p.to_string())
        .collect();
    available.dedup();
    Err(available)
}

/// The entries of an index for exactly the platform `chosen` is for, `chosen` among them: more
/// than one when the index lists the image twice, compressed two ways (gzip and zstd).
pub fn twins<'a>(entries: &'a [IndexEntry], chosen: &Choice<'a>) -> Vec<&'a IndexEntry> {
    entries
        .iter()
        .filter(|e| e.platform.as_ref().map(offered).as_ref() == Some(&chosen.platform))
        .collect()
}

/// Which layer `--layer` asks for: a 1-based position (negative: counted from the top, `-1`
/// being the top layer, as dlgrab exports it), or a digest prefix of at least 12 hex digits that
/// names one layer's blob digest or diff ID.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LayerChoice {
    /// 1 the bottom layer, -1 the top.
    Position(i64),
    /// At least 12 hex digits of a layer's blob digest or diff ID.
    Digest(String),
}

impl LayerChoice {
    /// Parses what `--layer` takes: `N`, `-N` or `sha256:HEX`.
    pub fn parse(text: &str) -> Result<LayerChoice, String> {
        if let Ok(n) = text.parse::<i64>() {
            if n != 0 {
                return Ok(LayerChoice::Position(n));
            }
        }
        let hex = text.strip_prefix("sha256:").unwrap_or(text);
        if (12..=64).contains(&hex.len()) && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(LayerChoice::Digest(hex.to_ascii_lowercase()));
        }
        Err(format!(
            "--layer takes a layer number (1 is the bottom layer, -1 the top) or sha256: and at least 12 hex digits of a layer digest or diff ID, not {text:?}"
        ))
    }

    /// The index of the chosen layer among `blobs` (their diff IDs alongside).
    pub fn pick(&self, blobs: &[Descriptor], diff_ids: &[Digest]) -> Result<usize, String> {
        let count = blobs.len();
        match self {
            LayerChoice::Position(n) => {
                let index = if *n > 0 { n - 1 } else { count as i64 + n };
                usize::try_from(index)
                    .ok()
                    .filter(|&i| i < count)
                    .ok_or_else(|| format!("the image has {count} layers; there is no layer {n}"))
            }
            LayerChoice::Digest(prefix) => {
                let matches: Vec<usize> = (0..count)
                    .filter(|&i| {
                        blobs[i].digest.hex().starts_with(prefix.as_str())
                            || diff_ids
                                .get(i)
                                .is_some_and(|d| d.hex().starts_with(prefix.as_str()))
                    })
                    .collect();
                match matches.as_slice() {
                    [one] => Ok(*one),
                    [] => Err(format!(
                        "no layer's digest or diff ID starts with {prefix}; the layers are {}",
                        blobs
                            .iter()
                            .enumerate()
                            .map(|(i, b)| format!("{} {}", i + 1, b.digest))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )),
                    several => Err(format!(
                        "{prefix} names several layers ({}); give more digits",
                        several
                            .iter()
                            .map(|i| (i + 1).to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest_with(artifact_type: &str, config_type: &str) -> Manifest {
        let hex = "a".repeat(64);
        let text = format!(
            r#"{{"schemaVersion":2{artifact_type},"config":{{"mediaType":"{config_type}","digest":"sha256:{hex}","size":2}},"layers":[]}}"#
        );
        match parse(text.as_bytes(), Some(OCI_MANIFEST)).unwrap() {
            Fetched::Image(m) => m,
            Fetched::Index(_) => panic!("an index"),
        }
    }

    #[test]
    fn artifacts_are_told_from_images_by_artifact_type_or_config() {
        let image = manifest_with("", "application/vnd.oci.image.config.v1+json");
        assert_eq!(image.artifact(), None);
        let docker = manifest_with("", "application/vnd.docker.container.image.v1+json");
        assert_eq!(docker.artifact(), None);
        let oras = manifest_with(
            r#","artifactType":"application/x.fw""#,
            "application/vnd.oci.empty.v1+json",
        );
        assert_eq!(oras.artifact(), Some("application/x.fw"));
        let helm = manifest_with("", "application/vnd.cncf.helm.config.v1+json");
        assert_eq!(
            helm.artifact(),
            Some("application/vnd.cncf.helm.config.v1+json")
        );
        let empty = manifest_with("", "application/vnd.oci.empty.v1+json");
        assert_eq!(empty.artifact(), Some("application/vnd.oci.empty.v1+json"));
    }

    #[cfg(feature = "push")]
    #[test]
    fn a_referrers_index_round_trips_and_is_capped() {
        let index = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"sha256:{}","size":5,"artifactType":"application/spdx+json","annotations":{{"k":"v\u001b"}}}},{{"mediaType":"{OCI_MANIFEST}","digest":"sha256:{}","size":6}}]}}"#,
            "b".repeat(64),
            "c".repeat(64)
        );
        let (referrers, listed) = parse_referrers(index.as_bytes(), 10).unwrap();
        assert_eq!(listed, 2);
        assert_eq!(referrers[0].artifact_type, "application/spdx+json");
        assert_eq!(referrers[0].annotations["k"], "v\u{1b}");
        let again = parse_referrers(&referrers_json(&referrers), 10).unwrap().0;
        assert_eq!(again.len(), 2);
        assert_eq!(again[0].annotations, referrers[0].annotations);
        assert_eq!(again[1].artifact_type, "");
        let (capped, listed) = parse_referrers(index.as_bytes(), 1).unwrap();
        assert_eq!((capped.len(), listed), (1, 2));
    }

    fn hex(c: char) -> String {
        std::iter::repeat_n(c, 64).collect()
    }

    fn index_json() -> String {
        let entry = |c: char, arch: &str, variant: &str| {
            format!(
                r#"{{"mediaType":"{OCI_MANIFEST}","digest":"sha256:{}","size":10,"platform":{{"os":"linux","architecture":"{arch}"{variant}}},"annotations":{{"a":"b"}}}}"#,
                hex(c)
            )
        };
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{},{},{},{}]}}"#,
            entry('a', "amd64", ""),
            entry('b', "arm64", r#","variant":"v8""#),
            entry('c', "arm", r#","variant":"v7""#),
            entry('d', "arm", r#","variant":"v6""#)
        )
    }

    fn choose_digest(wanted: &str) -> Result<char, Vec<String>> {
        let Fetched::Index(entries) = parse(index_json().as_bytes(), None).unwrap() else {
            panic!("not an index")
        };
        let platform = Platform::parse(wanted).unwrap();
        choose(&entries, &platform).map(|e| e.entry.descriptor.digest.hex().chars().next().unwrap())
    }

    #[test]
    fn picks_platform_from_index() {
        assert_eq!(choose_digest("linux/amd64"), Ok('a'));
        assert_eq!(choose_digest("linux/x86_64"), Ok('a'));
        assert_eq!(choose_digest("linux/arm64"), Ok('b'));
        assert_eq!(choose_digest("linux/arm64/v8"), Ok('b'));
        assert_eq!(choose_digest("linux/arm/v7"), Ok('c'));
        assert_eq!(choose_digest("linux/arm/v6"), Ok('d'));
        assert_eq!(choose_digest("linux/arm"), Ok('c'));
    }

    /// An index offering `variants` of linux/arm ("" for an entry without a variant).
    fn arm_index(variants: &[&str]) -> Vec<IndexEntry> {
        variants
            .iter()
            .enumerate()
            .map(|(i, v)| IndexEntry {
                descriptor: Descriptor {
                    media_type: OCI_MANIFEST.into(),
                    digest: Digest::parse(&format!("sha256:{}", hex(char::from(b'a' + i as u8))))
                        .unwrap(),
                    size: 1,
                },
                platform: Some(Platform::new(
                    "linux",
                    "arm",
                    Some(*v).filter(|v| !v.is_empty()),
                )),
                zstd: false,
                name: None,
            })
            .collect()
    }

    #[test]
    fn an_index_listing_an_image_twice_gives_both_twins() {
        let index = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[
            {{"mediaType":"{OCI_MANIFEST}","digest":"sha256:{}","size":1,"platform":{{"os":"linux","architecture":"amd64"}},"annotations":{{"{ZSTD_ANNOTATION}":"true"}}}},
            {{"mediaType":"{OCI_MANIFEST}","digest":"sha256:{}","size":1,"platform":{{"os":"linux","architecture":"arm64"}}}},
            {{"mediaType":"{OCI_MANIFEST}","digest":"sha256:{}","size":1,"platform":{{"os":"linux","architecture":"x86_64"}}}}]}}"#,
            hex('a'),
            hex('b'),
            hex('c')
        );
        let Ok(Fetched::Index(entries)) = parse(index.as_bytes(), None) else {
            panic!("an index")
        };
        assert_eq!(
            entries.iter().map(|e| e.zstd).collect::<Vec<_>>(),
            [true, false, false]
        );
        let wanted = Platform::new("linux", "amd64", None);
        let choice = choose(&entries, &wanted).unwrap();
        let twins = twins(&entries, &choice);
        assert_eq!(twins.len(), 2, "x86_64 is amd64");
        assert!(twins[0].zstd && !twins[1].zstd);
        let arm = choose(&entries, &Platform::new("linux", "arm64", None)).unwrap();
        assert_eq!(super::twins(&entries, &arm).len(), 1);
    }

    #[test]
    fn arm_devices_get_their_variant_or_an_older_one_never_a_newer() {
        // (the device's variant, what the index offers, what is chosen and whether it is older)
        type Case<'a> = (&'a str, &'a [&'a str], Option<(&'a str, bool)>);
        let table: &[Case] = &[
            ("v6", &["v5", "v6", "v7"], Some(("v6", false))),
            ("v7", &["v5", "v6", "v7"], Some(("v7", false))),
            ("v5", &["v5", "v6", "v7"], Some(("v5", false))),
            ("v8", &["v5", "v6", "v7"], Some(("v7", true))),
            ("v6", &["v5", "v7"], Some(("v5", true))),
            ("v7", &["v6"], Some(("v6", true))),
            ("v6", &["v7"], None),
            ("v5", &["v6", "v7"], None),
            // An ARM entry without a variant is v7, as Docker and containerd read it.
            ("v6", &[""], None),
            ("v7", &[""], Some(("v7", false))),
            ("v8", &["", "v6"], Some(("v7", true))),
        ];
        for (device, offered, expected) in table {
            let index = arm_index(offered);
            let wanted = Platform::new("linux", "arm", Some(device));
            let got = choose(&index, &wanted)
                .ok()
                .map(|c| (c.platform.variant.clone().unwrap_or_default(), c.older));
            assert_eq!(
                got,
                expected.map(|(v, older)| (v.to_string(), older)),
                "device {device}, index {offered:?}"
            );
        }
    }

    #[test]
    fn missing_platform_lists_what_exists() {
        let available = choose_digest("linux/s390x").unwrap_err();
        assert_eq!(
            available,
            [
                "linux/amd64",
                "linux/arm64/v8",
                "linux/arm/v7",
                "linux/arm/v6"
            ]
        );
        assert!(choose_digest("windows/amd64").is_err());
        assert!(choose_digest("linux/arm/v5").is_err());
    }

    #[test]
    fn parses_image_manifest_and_uses_content_type() {
        let json = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"x","digest":"sha256:{}","size":5}},"layers":[{{"mediaType":"y","digest":"sha256:{}","size":7}}]}}"#,
            hex('1'),
            hex('2')
        );
        let Ok(Fetched::Image(m)) = parse(json.as_bytes(), Some(OCI_MANIFEST)) else {
            panic!("not a manifest")
        };
        assert_eq!(m.config.size, 5);
        assert_eq!(m.layers.len(), 1);
        assert_eq!(m.layers[0].digest.hex(), hex('2'));
    }

    #[test]
    fn rejects_schema1_bad_digests_and_garbage() {
        assert_eq!(
            parse(br#"{"schemaVersion":1,"fsLayers":[]}"#, None).unwrap_err(),
            "schema1"
        );
        let bad =
            r#"{"schemaVersion":2,"config":{"digest":"sha256:../../etc","size":1},"layers":[]}"#;
        assert!(parse(bad.as_bytes(), None).unwrap_err().contains("sha256"));
        assert!(parse(b"not json", None).is_err());
        let huge = format!(
            r#"{{"config":{{"digest":"sha256:{}","size":99999999999999999}},"layers":[]}}"#,
            hex('1')
        );
        assert!(parse(huge.as_bytes(), None).unwrap_err().contains("1 TiB"));
        assert!(parse(b"{}", None).is_err());
        assert!(parse(&[0xff, 0xfe], None).is_err());
    }

    #[test]
    fn parses_config_diff_ids() {
        let json = format!(
            r#"{{"architecture":"amd64","os":"linux","config":{{"Cmd":["sh"]}},"rootfs":{{"type":"layers","diff_ids":["sha256:{}"]}}}}"#,
            hex('3')
        );
        let config = parse_config(json.as_bytes()).unwrap();
        assert_eq!(config.diff_ids[0].hex(), hex('3'));
        assert!(config.layer_history.is_empty());
        let with_history = r#"{"rootfs":{"diff_ids":[]},"history":[{"created_by":"ADD x /"},{"created_by":"CMD sh","empty_layer":true},{"created_by":"RUN y"}]}"#;
        let history = parse_config(with_history.as_bytes()).unwrap().layer_history;
        let by: Vec<_> = history
            .iter()
            .map(|h| h.created_by.as_deref().unwrap())
            .collect();
        assert_eq!(by, ["ADD x /", "RUN y"]);
        assert_eq!(config.architecture.as_deref(), Some("amd64"));
        assert!(parse_config(br#"{"os":"linux"}"#).is_err());
    }

    #[test]
    fn platform_syntax() {
        assert_eq!(
            Platform::parse("linux/arm/v7").unwrap().to_string(),
            "linux/arm/v7"
        );
        assert_eq!(
            Platform::parse("linux/aarch64").unwrap().to_string(),
            "linux/arm64"
        );
        assert!(Platform::parse("linux").is_err());
        assert!(Platform::parse("linux/arm/v7/x").is_err());
        assert!(Platform::parse("linux//v7").is_err());
    }
    #[test]
    fn picks_layers_by_position_and_digest() {
        let blob = |c: char| Descriptor {
            media_type: String::new(),
            digest: Digest::parse(&format!("sha256:{}", hex(c))).unwrap(),
            size: 1,
        };
        let blobs = [blob('a'), blob('b'), blob('c')];
        let diff_ids: Vec<Digest> = ['d', 'e', 'f']
            .iter()
            .map(|&c| Digest::parse(&format!("sha256:{}", hex(c))).unwrap())
            .collect();
        let pick = |text: &str| LayerChoice::parse(text)?.pick(&blobs, &diff_ids);
        assert_eq!(pick("1"), Ok(0));
        assert_eq!(pick("3"), Ok(2));
        assert_eq!(pick("-1"), Ok(2));
        assert_eq!(pick("-3"), Ok(0));
        assert_eq!(pick(&format!("sha256:{}", &hex('b')[..12])), Ok(1));
        assert_eq!(pick(&hex('f')[..20]), Ok(2));
        assert!(pick("4").unwrap_err().contains("3 layers"));
        assert!(pick("-4").is_err());
        assert!(LayerChoice::parse("0").is_err());
        assert!(LayerChoice::parse("sha256:abc").is_err());
        assert!(pick(&"1".repeat(12)).unwrap_err().contains("no layer"));
        let same = [blob('a'), blob('a')];
        let err = LayerChoice::parse(&hex('a')[..12])
            .unwrap()
            .pick(&same, &diff_ids[..2])
            .unwrap_err();
        assert!(err.contains("several"), "{err}");
    }
}
