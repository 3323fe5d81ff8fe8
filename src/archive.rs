//! The `docker save` archive: its directory layout and the tar made from it.
//!
//! Layout (what `docker load` reads): `manifest.json` (`Config`, `RepoTags`, `Layers`),
//! `repositories`, the config as `<hex>.json`, and per layer a directory with `layer.tar`, `json`
//! and `VERSION`. The tar is written under a temporary name and renamed into place only when it is
//! complete, so no half-written archive ever carries the final name. This module knows nothing of
//! registries; it is handed verified bytes and finished layer files.

use crate::digest::Digest;
use crate::error::Error;
use miniserde::{json, Serialize};
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// The legacy v1 layer IDs that name the layer directories: each is the sha256 of its parent's
/// ID and its diff ID, so the chain is unique even when a layer repeats.
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

#[derive(Serialize)]
struct LayerJson<'a> {
    id: &'a str,
    parent: Option<&'a str>,
    created: &'a str,
    os: &'a str,
}

/// The per-layer `json` file (Docker's v1 image metadata, read only by very old engines).
pub fn layer_json(
    id: &str,
    parent: Option<&str>,
    created: Option<&str>,
    os: Option<&str>,
) -> String {
    json::to_string(&LayerJson {
        id,
        parent,
        created: created.unwrap_or("1970-01-01T00:00:00Z"),
        os: os.unwrap_or("linux"),
    })
}

#[derive(Serialize)]
struct ManifestEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags")]
    repo_tags: Vec<String>,
    #[serde(rename = "Layers")]
    layers: Vec<String>,
}

/// Writes `<hex>.json`, `manifest.json` and `repositories` into the image directory.
pub fn write_image_files(
    dir: &Path,
    config: &[u8],
    config_digest: &Digest,
    layer_ids: &[String],
    repo_tag: Option<&str>,
) -> Result<(), Error> {
    let config_name = format!("{}.json", config_digest.hex());
    write_file(&dir.join(&config_name), config)?;
    let manifest = vec![ManifestEntry {
        config: config_name,
        repo_tags: repo_tag.map(str::to_string).into_iter().collect(),
        layers: layer_ids
            .iter()
            .map(|id| format!("{id}/layer.tar"))
            .collect(),
    }];
    write_file(
        &dir.join("manifest.json"),
        json::to_string(&manifest).as_bytes(),
    )?;
    // `repositories` maps name → tag → top layer ID; an untagged image has none.
    let repositories = match (repo_tag.and_then(|t| t.rsplit_once(':')), layer_ids.last()) {
        (Some((name, tag)), Some(top)) => {
            format!(
                "{{{}:{{{}:{}}}}}\n",
                json::to_string(name),
                json::to_string(tag),
                json::to_string(top)
            )
        }
        _ => "{}\n".to_string(),
    };
    write_file(&dir.join("repositories"), repositories.as_bytes())
}

pub fn write_file(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    fs::write(path, bytes).map_err(|e| Error::io(path, e))
}

/// Packs the image directory into a tar at `dest`, atomically: written to a temporary name
/// beside it, synced, then renamed. Entries are sorted and carry fixed owners and times, so the
/// same image always gives the same bytes.
pub fn write_tar(dir: &Path, dest: &Path) -> Result<(), Error> {
    let temp = temp_name(dest);
    let result =
        pack(dir, &temp).and_then(|()| fs::rename(&temp, dest).map_err(|e| Error::io(dest, e)));
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}

/// The name a file is written under until it is complete: hidden, beside the final one, unique
/// to this process.
pub fn temp_name(dest: &Path) -> PathBuf {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    dest.with_file_name(format!(".{name}.partial-{}", std::process::id()))
}

/// Removes what killed runs left behind in `dir`: `.NAME.partial-PID` files and directories
/// whose process is gone. Best effort; a live process's partial files are never touched.
pub fn remove_stale_partials(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some((_, pid)) = name
            .strip_prefix('.')
            .and_then(|n| n.rsplit_once(".partial-"))
        else {
            continue;
        };
        let Ok(pid) = pid.parse::<u32>() else {
            continue;
        };
        if pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let path = entry.path();
        let _ = if path.is_dir() {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        };
    }
}

fn pack(dir: &Path, temp: &Path) -> Result<(), Error> {
    let mut out = File::create(temp).map_err(|e| Error::io(temp, e))?;
    for (name, path) in sorted_entries(dir, "")? {
        if path.is_dir() {
            append(&mut out, temp, &format!("{name}/"), None)?;
            for (child_name, child_path) in sorted_entries(&path, &name)? {
                append(&mut out, temp, &child_name, Some(&child_path))?;
            }
        } else {
            append(&mut out, temp, &name, Some(&path))?;
        }
    }
    // The end of a tar archive: two zero blocks.
    out.write_all(&[0; 1024]).map_err(|e| Error::io(temp, e))?;
    out.sync_all().map_err(|e| Error::io(temp, e))
}

/// Appends one entry: a directory (`source` None) or a file's contents. The contents go
/// File-to-File through `io::copy`, which Linux turns into `copy_file_range`: the kernel copies
/// (or shares) the layer's pages, and the bytes never pass through this process.
fn append(out: &mut File, out_path: &Path, name: &str, source: Option<&Path>) -> Result<(), Error> {
    let io_err = |e: io::Error| Error::io(out_path, e);
    let mut header = tar::Header::new_gnu();
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_path(name).map_err(io_err)?;
    let Some(source) = source else {
        header.set_entry_type(tar::EntryType::Directory);
        header.set_mode(0o755);
        header.set_size(0);
        header.set_cksum();
        return out.write_all(header.as_bytes()).map_err(io_err);
    };
    let mut file = File::open(source).map_err(|e| Error::io(source, e))?;
    let len = file.metadata().map_err(|e| Error::io(source, e))?.len();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_mode(0o644);
    header.set_size(len);
    header.set_cksum();
    out.write_all(header.as_bytes()).map_err(io_err)?;
    let copied = io::copy(&mut file, out).map_err(io_err)?;
    if copied != len {
        return Err(Error::io(
            source,
            io::Error::new(io::ErrorKind::UnexpectedEof, "changed while being archived"),
        ));
    }
    let padding = (512 - (len % 512) as usize) % 512;
    out.write_all(&[0; 512][..padding]).map_err(io_err)
}

fn sorted_entries(dir: &Path, prefix: &str) -> Result<Vec<(String, PathBuf)>, Error> {
    let mut entries = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let name = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        entries.push((name, entry.path()));
    }
    entries.sort();
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_ids_chain_and_differ_for_repeated_layers() {
        let a = Digest::of_bytes(b"a");
        let ids = layer_ids(&[a.clone(), a.clone()]);
        assert_eq!(ids.len(), 2);
        assert_ne!(ids[0], ids[1]);
        assert_eq!(layer_ids(&[a])[0], ids[0]);
    }

    #[test]
    fn writes_manifest_and_repositories() {
        let dir =
            std::env::temp_dir().join(format!("dockersave-archive-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let config = br#"{"rootfs":{}}"#;
        let digest = Digest::of_bytes(config);
        write_image_files(
            &dir,
            config,
            &digest,
            &["aa".into(), "bb".into()],
            Some("host:5000/app:v1"),
        )
        .unwrap();
        let manifest = fs::read_to_string(dir.join("manifest.json")).unwrap();
        assert_eq!(
            manifest,
            format!(
                r#"[{{"Config":"{}.json","RepoTags":["host:5000/app:v1"],"Layers":["aa/layer.tar","bb/layer.tar"]}}]"#,
                digest.hex()
            )
        );
        assert_eq!(
            fs::read_to_string(dir.join("repositories")).unwrap(),
            "{\"host:5000/app\":{\"v1\":\"bb\"}}\n"
        );
        assert_eq!(
            fs::read(dir.join(format!("{}.json", digest.hex()))).unwrap(),
            config
        );

        let dest = std::env::temp_dir().join(format!(
            "dockersave-archive-test-{}.tar",
            std::process::id()
        ));
        write_tar(&dir, &dest).unwrap();
        let mut names: Vec<String> = tar::Archive::new(File::open(&dest).unwrap())
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                format!("{}.json", digest.hex()),
                "manifest.json".into(),
                "repositories".into()
            ]
        );
        assert!(!temp_name(&dest).exists());
        fs::remove_dir_all(&dir).unwrap();
        fs::remove_file(&dest).unwrap();
    }
}
