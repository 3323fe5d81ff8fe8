//! The names an artifact's layers are written under: ORAS's titles, Helm's `NAME-VERSION.tgz`,
//! or the digest. Every name is checked here, before anything is fetched: relative, no `.`,
//! `..` or empty component, within the length caps, and no two layers on one path or one
//! inside another. Nothing here touches the disk.

use crate::digest::Digest;
use crate::limits::{MAX_ARTIFACT_FILES, MAX_TITLE};
use crate::manifest::Manifest;
use miniserde::Deserialize;

/// Helm's chart config, and its layers (`helm pull` writes `NAME-VERSION.tgz` and `.prov`).
pub const HELM_CONFIG: &str = "application/vnd.cncf.helm.config.v1+json";
const HELM_CHART: &str = "application/vnd.cncf.helm.chart.content.v1.tar+gzip";
const HELM_PROVENANCE: &str = "application/vnd.cncf.helm.chart.provenance.v1.prov";

/// A chart's name and version, from its config.
#[derive(Deserialize)]
pub struct Chart {
    name: String,
    version: String,
}

/// One layer as a file (or a directory) to write.
#[derive(Debug)]
pub struct Planned {
    /// Its index among the manifest's layers.
    pub layer: usize,
    /// The path below DIR, one component each.
    pub path: Vec<String>,
    /// A gzipped tar of the directory `path`.
    pub unpack: bool,
    pub tar_digest: Option<Digest>,
    /// Named by its digest, for want of a title.
    pub untitled: bool,
}

impl Planned {
    pub fn shown(&self) -> String {
        self.path.join("/")
    }
}

/// Reads a Helm chart's config; its name and version must be plain file names.
pub fn chart(config: &[u8]) -> Result<Chart, crate::error::Error> {
    let invalid = |detail: String| crate::error::Error::Invalid {
        what: "the chart's config".into(),
        detail,
    };
    let text = std::str::from_utf8(config).map_err(|_| invalid("it is not UTF-8 text".into()))?;
    let chart: Chart = crate::limits::json(text)
        .map_err(|e| invalid(e.or("it names no chart name and version")))?;
    for part in [&chart.name, &chart.version] {
        check_component(part).map_err(|why| invalid(format!("{part:?} {why}")))?;
    }
    Ok(chart)
}

/// The file each layer of `manifest` becomes, in layer order.
pub fn plan(manifest: &Manifest, chart: Option<&Chart>) -> Result<Vec<Planned>, String> {
    if manifest.layers.len() > MAX_ARTIFACT_FILES {
        return Err(format!(
            "it has {} layers, more than the {MAX_ARTIFACT_FILES} files dockersave writes for one artifact",
            manifest.layers.len()
        ));
    }
    let mut planned: Vec<Planned> = Vec::new();
    for (layer, blob) in manifest.layers.iter().enumerate() {
        let note = manifest.files.get(layer).cloned().unwrap_or_default();
        let helm = chart.and_then(|c| match blob.media_type.as_str() {
            HELM_CHART => Some(format!("{}-{}.tgz", c.name, c.version)),
            HELM_PROVENANCE => Some(format!("{}-{}.tgz.prov", c.name, c.version)),
            _ => None,
        });
        let (path, untitled) = match (note.title, helm) {
            (Some(title), _) => (
                title_path(&title).map_err(|why| {
                    format!("the title {:?} of layer {} {why}", shown(&title), layer + 1)
                })?,
                false,
            ),
            (None, Some(name)) => (vec![name], false),
            (None, None) => (vec![format!("sha256-{}", blob.digest.hex())], true),
        };
        let tar_digest = match (&note.tar_digest, note.unpack) {
            (Some(text), true) => Some(
                Digest::parse(text)
                    .map_err(|why| format!("the tar digest of layer {}: {why}", layer + 1))?,
            ),
            _ => None,
        };
        for other in &planned {
            let (short, long) = match other.path.len() <= path.len() {
                true => (&other.path, &path),
                false => (&path, &other.path),
            };
            if long.starts_with(short) {
                return Err(format!(
                    "layers {} and {} are both written at {}: dockersave writes each name once",
                    other.layer + 1,
                    layer + 1,
                    short.join("/")
                ));
            }
        }
        planned.push(Planned {
            layer,
            path,
            unpack: note.unpack,
            tar_digest,
            untitled,
        });
    }
    Ok(planned)
}

/// A title as the path it names below DIR.
fn title_path(title: &str) -> Result<Vec<String>, String> {
    if title.len() > MAX_TITLE {
        return Err(format!(
            "is longer than the {MAX_TITLE} bytes dockersave takes for a name"
        ));
    }
    if title.starts_with('/') {
        return Err(
            "is an absolute path: an artifact's files go inside the directory given".into(),
        );
    }
    title
        .split('/')
        .map(|part| check_component(part).map(|()| part.to_string()))
        .collect()
}

/// One component of a name: not empty, `.` or `..`, no NUL or control character, at most 255
/// bytes (what a Linux filesystem holds).
fn check_component(part: &str) -> Result<(), String> {
    match part {
        "" => Err("has an empty component".into()),
        "." | ".." => Err(format!(
            "has a {part:?} component: it would leave its place"
        )),
        _ if part.contains('/') => Err("is not one plain name".into()),
        _ if part.len() > 255 => Err("has a component longer than 255 bytes".into()),
        _ if part.chars().any(char::is_control) => Err("has a control character".into()),
        _ => Ok(()),
    }
}

/// A hostile title, shortened for a one-line message.
fn shown(title: &str) -> String {
    title.chars().take(80).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{self, Fetched};

    fn manifest(layers: &[(&str, &str)]) -> Manifest {
        let hex = |n: usize| format!("{n:064x}");
        let layers: Vec<String> = layers
            .iter()
            .enumerate()
            .map(|(n, (media_type, annotations))| {
                format!(
                    r#"{{"mediaType":"{media_type}","digest":"sha256:{}","size":3{annotations}}}"#,
                    hex(n + 1)
                )
            })
            .collect();
        let text = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"application/x.firmware","config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"sha256:{}","size":2}},"layers":[{}]}}"#,
            hex(0),
            layers.join(",")
        );
        match manifest::parse(text.as_bytes(), None).unwrap() {
            Fetched::Image(m) => m,
            Fetched::Index(_) => panic!("an index"),
        }
    }

    fn titled(title: &str) -> (&'static str, String) {
        (
            "application/octet-stream",
            format!(
                r#","annotations":{{"org.opencontainers.image.title":{}}}"#,
                miniserde::json::to_string(title)
            ),
        )
    }

    fn plan_of(titles: &[&str]) -> Result<Vec<String>, String> {
        let layers: Vec<(&str, String)> = titles.iter().map(|t| titled(t)).collect();
        let refs: Vec<(&str, &str)> = layers.iter().map(|(m, a)| (*m, a.as_str())).collect();
        plan(&manifest(&refs), None).map(|p| p.iter().map(Planned::shown).collect())
    }

    #[test]
    fn titles_name_files_below_the_directory_and_nothing_else() {
        assert_eq!(
            plan_of(&["a.bin", "docs/b.txt"]).unwrap(),
            ["a.bin", "docs/b.txt"]
        );
        for bad in [
            "../x",
            "/etc/x",
            "a/../../x",
            "a//b",
            "./a",
            "",
            "a/\u{1b}[2J",
            &"x".repeat(300),
        ] {
            assert!(plan_of(&[bad]).is_err(), "{bad:?} was taken");
        }
        assert!(plan_of(&["a", "a"])
            .unwrap_err()
            .contains("both written at a"));
        assert!(
            plan_of(&["a", "a/b"]).is_err(),
            "a file and a file inside it"
        );
        assert!(plan_of(&[&"a/".repeat(3000)])
            .unwrap_err()
            .contains("longer than"));
    }

    #[test]
    fn untitled_layers_go_under_their_digest_and_charts_under_name_and_version() {
        let m = manifest(&[("application/octet-stream", "")]);
        let planned = plan(&m, None).unwrap();
        assert!(planned[0].untitled);
        assert_eq!(planned[0].shown(), format!("sha256-{:064x}", 1));
        let m = manifest(&[(HELM_CHART, ""), (HELM_PROVENANCE, "")]);
        let chart = chart(br#"{"name":"nginx","version":"1.2.3","apiVersion":"v2"}"#).unwrap();
        let planned: Vec<String> = plan(&m, Some(&chart))
            .unwrap()
            .iter()
            .map(Planned::shown)
            .collect();
        assert_eq!(planned, ["nginx-1.2.3.tgz", "nginx-1.2.3.tgz.prov"]);
        assert!(super::chart(br#"{"name":"../x","version":"1"}"#).is_err());
    }

    #[test]
    fn a_directory_layer_carries_its_tar_digest() {
        let digest = format!("sha256:{:064x}", 9);
        let annotations = format!(
            r#","annotations":{{"org.opencontainers.image.title":"dir","io.deis.oras.content.unpack":"true","io.deis.oras.content.digest":"{digest}"}}"#
        );
        let planned = plan(
            &manifest(&[("application/vnd.oci.image.layer.v1.tar+gzip", &annotations)]),
            None,
        )
        .unwrap();
        assert!(planned[0].unpack);
        assert_eq!(
            planned[0].tar_digest.as_ref().map(|d| d.to_string()),
            Some(digest)
        );
    }
}
