//! Running `--artifact`, `--referrers` and `--with-referrers`' listing (see the module above).
//! Built with the "artifact" feature only.

use super::names::{self, Planned};
use super::Options;

use crate::digest::Digest;
use crate::error::Error;
use crate::limits::{MAX_REFERRERS, MAX_SHOWN_ANNOTATION};
use crate::manifest::{self, LayerChoice, Manifest, Referrer};
use crate::outfile::{Dir, EarlyWriteback, NewDir};
use crate::overlap;
use crate::partial::Undo;
use crate::pipeline::{self, LayerLabel, LayerReader};
use crate::progress::{size, Progress};
use crate::pull::Logins;
use crate::reference::Reference;
use crate::registry::Registry;
use crate::sinks::rootfs::Rootfs;
use crate::source::{Prefer, Reach};
use std::ffi::OsStr;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Fetches the artifact `options` names into its directory (returning the paths written) or,
/// for `-`, one file of it to `out`.
pub fn fetch(
    options: &Options,
    logins: &Logins,
    progress: Arc<Progress>,
    out: &mut dyn Write,
) -> Result<Vec<PathBuf>, Error> {
    let to_stdout = options.dest.as_os_str() == "-";
    let staging = match to_stdout {
        true => None,
        false => Some(staging(&options.dest)?),
    };
    let reach = Reach::new(
        &options.http,
        &options.mirrors,
        &options.verify_keys,
        logins,
        progress.clone(),
    )?;
    let registry = reach.registry(&options.image);
    let reference = match &options.artifact_type {
        Some(kind) => newest_referrer(&registry, &options.image, kind)?,
        None => options.image.clone(),
    };
    progress.info(&format!("Fetching {reference}"));
    let platform = options
        .platform
        .clone()
        .unwrap_or_else(crate::host::platform);
    let given = options.platform.is_some();
    let chosen = reach.image(&registry, &reference, &platform, given, Prefer::Smaller)?;
    let manifest = chosen.manifest;
    let Some(kind) = manifest.artifact().map(str::to_string) else {
        return Err(Error::Usage(format!(
            "{reference} is a container image, not an artifact: save it without --artifact (one layer as served: --layer N --registry-format)"
        )));
    };
    let chart = match kind == names::HELM_CONFIG {
        true => Some(names::chart(
            &registry.small_blob(&manifest.config, "the chart's config")?,
        )?),
        false => None,
    };
    let planned = names::plan(&manifest, chart.as_ref()).map_err(|detail| Error::Invalid {
        what: format!("the artifact {reference}"),
        detail,
    })?;
    for file in planned.iter().filter(|f| f.untitled) {
        progress.info(&format!(
            "  layer {} has no title: written as {}",
            file.layer + 1,
            file.shown()
        ));
    }
    let Some((staging, dir)) = staging else {
        let file = one_file(&manifest, &planned, options.layer.as_ref(), &reference)?;
        let blob = &manifest.layers[file.layer];
        let name = file.shown();
        let label = label(&registry, &name, Path::new("standard output"));
        let mut body = registry.blob_stream(&blob.digest, blob.size, &name, None)?;
        pipeline::copy_blob(&mut body, blob, out, &label)?;
        out.flush()
            .map_err(|e| Error::io(Path::new("standard output"), e))?;
        progress.info(&format!(
            "Wrote {name} of {reference} ({}) to standard output",
            size(blob.size)
        ));
        return Ok(Vec::new());
    };
    let listed: Vec<(String, u64)> = planned
        .iter()
        .map(|f| {
            (
                manifest.layers[f.layer].digest.hex().to_string(),
                manifest.layers[f.layer].size,
            )
        })
        .collect();
    progress.layers(&listed);
    for (n, file) in planned.iter().enumerate() {
        stage(&registry, &manifest, file, n, &staging)?;
    }
    progress.done();
    // Every name is checked before the first is taken, so a refusal leaves DIR as it was.
    for file in &planned {
        check_place(file, &dir)?;
    }
    let mut written = Vec::new();
    for (n, file) in planned.iter().enumerate() {
        written.push(place(file, n, &staging, &dir)?);
    }
    staging.discard();
    let bytes = planned.iter().map(|f| manifest.layers[f.layer].size).sum();
    progress.info(&format!(
        "Saved the artifact {reference} ({kind}): {} files, {}, in {}",
        written.len(),
        size(bytes),
        options.dest.display()
    ));
    Ok(written)
}

/// DIR (made if missing) and the private directory inside it where files are made.
fn staging(dest: &Path) -> Result<(NewDir, Dir), Error> {
    let dir = Dir::ensure(dest)?;
    let staging = NewDir::create(&dest.join(".dockersave-artifact"), Undo::Remove)?;
    Ok((staging, dir))
}

fn label<'a>(registry: &'a Registry, name: &'a str, out_path: &'a Path) -> LayerLabel<'a> {
    LayerLabel {
        name,
        host: registry.host(),
        out_path,
    }
}

/// Downloads file `file` into the staging directory as `n` (a file, or for a directory layer a
/// directory holding the unpacked tree), verified.
fn stage(
    registry: &Registry,
    manifest: &Manifest,
    file: &Planned,
    n: usize,
    staging: &NewDir,
) -> Result<(), Error> {
    let blob = &manifest.layers[file.layer];
    let name = file.shown();
    let temp = OsStr::new(&n.to_string()).to_os_string();
    let path = staging.dir().join(&temp);
    let label = label(registry, &name, &path);
    let mut body = registry.blob_stream(&blob.digest, blob.size, &name, Some(n))?;
    let progress = registry.progress();
    if !file.unpack {
        let out = staging.dir().create_file(&temp)?;
        // Hashing here, writing (its writeback started as it goes) on the other core.
        overlap::write_behind(&mut EarlyWriteback::new(&out), &path, |to| {
            pipeline::copy_blob(&mut body, blob, to, &label)
        })?;
        use std::os::unix::fs::PermissionsExt;
        out.set_permissions(std::fs::Permissions::from_mode(0o644))
            .and_then(|()| out.sync_all())
            .map_err(|e| Error::io(&path, e))?;
        progress.finished(n, &format!("  {name}: {}", size(blob.size)));
        return Ok(());
    }
    let Some(tar_digest) = &file.tar_digest else {
        return Err(Error::Unsupported(format!(
            "{name} is a directory layer without io.deis.oras.content.digest: dockersave unpacks only a directory whose tar it can verify"
        )));
    };
    staging.dir().dirs_at(Path::new(&temp))?;
    let mut tree = Rootfs::open(&path, false)?;
    let mut tar = LayerReader::new(&mut body, blob, tar_digest, &label);
    if let Err(e) = tree.apply(&mut tar, &name) {
        return Err(tar.explain(e));
    }
    let stats = tar.finish()?;
    tree.finish()?;
    progress.finished(
        n,
        &format!(
            "  {name}/: {} ({} unpacked)",
            size(stats.compressed),
            size(stats.uncompressed)
        ),
    );
    Ok(())
}

/// Moves staged file `n` to its name in DIR: a file replaces only a regular file there, a
/// directory nothing at all; no link on the way is followed.
fn place(file: &Planned, n: usize, staging: &NewDir, dir: &Dir) -> Result<PathBuf, Error> {
    let (parents, last) = file.path.split_at(file.path.len() - 1);
    let target = dir.dirs_at(&parents.iter().collect::<PathBuf>())?;
    let last = OsStr::new(&last[0]);
    let temp = n.to_string();
    if !file.unpack {
        staging
            .dir()
            .rename_to(OsStr::new(&temp), &target, last, false)?;
        return Ok(target.join(last));
    }
    // The unpacked tree is at `n/<title>`: each level must be a directory the tar made.
    let mut from = staging.dir().open_dir(OsStr::new(&temp))?;
    for component in parents {
        from = from.open_dir(OsStr::new(component))?;
    }
    match from.stat(last) {
        Some((kind, _, _)) if kind == libc::S_IFDIR => {}
        _ => {
            return Err(Error::Invalid {
                what: format!("the directory layer {}", file.shown()),
                detail: "its tar holds no directory of that name".into(),
            })
        }
    }
    from.rename_to(last, &target, last, true)?;
    Ok(target.join(last))
}

/// Refuses what `place` would refuse, without changing anything: a link or a file where a
/// directory on the way should be, and at the name itself anything but a regular file a file
/// may replace (a directory takes a free name only).
fn check_place(file: &Planned, dir: &Dir) -> Result<(), Error> {
    let (parents, last) = file.path.split_at(file.path.len() - 1);
    // The directory already open, not its path again.
    let mut at = dir.dirs_at(Path::new(""))?;
    for component in parents {
        let name = OsStr::new(component);
        match at.stat(name) {
            None => return Ok(()),
            Some(_) => at = at.open_dir(name)?,
        }
    }
    let name = OsStr::new(&last[0]);
    match at.stat(name) {
        None => Ok(()),
        Some((kind, _, _)) if kind == libc::S_IFREG && !file.unpack => Ok(()),
        Some((kind, _, _)) => Err(Error::Local(format!(
            "{} already exists as {}; dockersave replaces only a regular file with a file: remove it or choose another --artifact DIR",
            at.join(name).display(),
            kind_name(kind)
        ))),
    }
}

fn kind_name(kind: libc::mode_t) -> &'static str {
    match kind {
        libc::S_IFDIR => "a directory",
        libc::S_IFLNK => "a symbolic link",
        libc::S_IFREG => "a file",
        _ => "a special file",
    }
}

/// The one file `-` writes: the `--layer` chosen, or the artifact's only one.
fn one_file<'a>(
    manifest: &Manifest,
    planned: &'a [Planned],
    choice: Option<&LayerChoice>,
    reference: &Reference,
) -> Result<&'a Planned, Error> {
    let index = match choice {
        Some(choice) => choice
            .pick(&manifest.layers, &[])
            .map_err(|detail| Error::NotFound {
                what: format!("{reference}: {detail}"),
            })?,
        None if planned.len() == 1 => planned[0].layer,
        None => {
            let names: Vec<String> = planned.iter().map(|f| f.shown()).collect();
            return Err(Error::Usage(format!(
                "{reference} holds {} files ({}): --artifact - writes one; choose it with --layer N, or give a directory",
                planned.len(),
                names.join(", ")
            )));
        }
    };
    planned
        .iter()
        .find(|f| f.layer == index)
        .ok_or_else(|| Error::NotFound {
            what: format!("{reference}: layer {} is no file", index + 1),
        })
}

/// The referrers of `digest` as its registry lists them (the API, else the fallback tag),
/// at most `MAX_REFERRERS`; with the number listed in all.
pub(crate) fn referrers(
    registry: &Registry,
    digest: &Digest,
) -> Result<(Vec<Referrer>, usize), Error> {
    let Some(index) = registry.referrers(digest)? else {
        return Ok((Vec::new(), 0));
    };
    manifest::parse_referrers(&index, MAX_REFERRERS).map_err(|detail| Error::Invalid {
        what: format!("the referrers of {digest}"),
        detail,
    })
}

/// `IMAGE@DIGEST` of the newest referrer of `image` whose type is `kind`: the latest
/// `org.opencontainers.image.created`, the one listed last among equals.
fn newest_referrer(registry: &Registry, image: &Reference, kind: &str) -> Result<Reference, Error> {
    let top = registry.manifest(&image.manifest_ref())?;
    let (referrers, _) = referrers(registry, &top.digest)?;
    let created = |r: &Referrer| r.annotations.get(manifest::CREATED_ANNOTATION).cloned();
    let newest = referrers
        .iter()
        .filter(|r| r.artifact_type == kind)
        .max_by(|a, b| created(a).cmp(&created(b)))
        .ok_or_else(|| Error::NotFound {
            what: format!(
                "no referrer of {image} ({}) has the type {kind:?}{}",
                top.digest,
                match referrers.is_empty() {
                    true => String::new(),
                    false => format!("; its referrers' types: {}", types(&referrers)),
                }
            ),
        })?;
    registry.progress().info(&format!(
        "  the newest {kind} referring to {image}: {}",
        newest.descriptor.digest
    ));
    Ok(Reference {
        tag: None,
        digest: Some(newest.descriptor.digest.clone()),
        ..image.clone()
    })
}

fn types(referrers: &[Referrer]) -> String {
    let mut types: Vec<&str> = referrers.iter().map(|r| r.artifact_type.as_str()).collect();
    types.sort_unstable();
    types.dedup();
    types.join(", ")
}

/// One line of `--referrers`: type, digest, size and the annotations as one JSON object
/// (control characters escaped, each value cut at `MAX_SHOWN_ANNOTATION` bytes).
pub(crate) fn describe(referrer: &Referrer) -> String {
    let annotations: std::collections::BTreeMap<&str, String> = referrer
        .annotations
        .iter()
        .map(|(key, value)| (key.as_str(), shorten(value)))
        .collect();
    let kind = match referrer.artifact_type.is_empty() {
        true => "-".to_string(),
        false => shorten(&referrer.artifact_type),
    };
    format!(
        "{}\t{}\t{}\t{}",
        miniserde::json::to_string(&kind).trim_matches('"'),
        referrer.descriptor.digest,
        referrer.descriptor.size,
        miniserde::json::to_string(&annotations)
    )
}

fn shorten(text: &str) -> String {
    if text.len() <= MAX_SHOWN_ANNOTATION {
        return text.to_string();
    }
    let mut end = MAX_SHOWN_ANNOTATION;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}
