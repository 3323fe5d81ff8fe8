//! `--layer N` (dlgrab): one layer, verified, written in the working directory as
//! `<id>/layer.tar`, `<id>/json` and `<id>/VERSION` — the layer directory of a classic `docker
//! save` archive — or with `--registry-format` as the compressed blob the registry serves,
//! `<digest hex>.tar.gz`. Either appears under its name only when complete and verified.

use super::{size, Image};
use crate::cache;
use crate::cli::Options;
use crate::error::Error;
use crate::manifest::LayerChoice;
use crate::partial::Temp;
use crate::pipeline::{self, CopyingReader, LayerStats};
use crate::sinks::archive;
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

pub(super) fn save(
    options: &Options,
    image: &Image,
    which: &LayerChoice,
    registry_format: bool,
) -> Result<PathBuf, Error> {
    let layers = &image.manifest.layers;
    let diff_ids = &image.config.diff_ids;
    let i = which
        .pick(layers, diff_ids)
        .map_err(|detail| Error::NotFound {
            what: format!("{}: {detail}", options.image),
        })?;
    let blob = &layers[i];
    let ids = archive::layer_ids(diff_ids);
    let dest = if registry_format {
        let extension = if blob.media_type.contains("gzip") || blob.media_type.is_empty() {
            "tar.gz"
        } else {
            "tar"
        };
        options
            .working_dir
            .join(format!("{}.{extension}", blob.digest.hex()))
    } else {
        options.working_dir.join(&ids[i])
    };
    if dest.exists() {
        return Err(Error::io(
            &dest,
            io::Error::new(
                io::ErrorKind::AlreadyExists,
                "already exists; remove it or use another --working-dir",
            ),
        ));
    }
    let name = image.layer_name(i);
    let temp = Temp::new(&dest);
    let stats = if registry_format {
        let mut file = File::create(temp.path()).map_err(|e| Error::io(temp.path(), e))?;
        // The blob is kept as served; inflating it (to nowhere) verifies the diff ID too.
        let stats = unpack(image, i, &name, &mut file, Keep::Blob)?;
        file.sync_all().map_err(|e| Error::io(temp.path(), e))?;
        stats
    } else {
        fs::create_dir(temp.path()).map_err(|e| Error::io(temp.path(), e))?;
        let parent = i.checked_sub(1).map(|p| ids[p].as_str());
        let config = &image.config;
        for (file_name, bytes) in archive::layer_files(
            &ids[i],
            parent,
            config.created.as_deref(),
            config.os.as_deref(),
        ) {
            archive::write_file(&temp.path().join(file_name), &bytes)?;
        }
        let path = temp.path().join("layer.tar");
        let mut file = File::create(&path).map_err(|e| Error::io(&path, e))?;
        let stats = unpack(image, i, &name, &mut file, Keep::Tar)?;
        file.sync_all().map_err(|e| Error::io(&path, e))?;
        stats
    };
    temp.persist().map_err(|e| Error::io(&dest, e))?;
    image.progress().info(&format!(
        "Saved {name} of {} ({} compressed, {} unpacked) as {}",
        options.image,
        size(stats.compressed),
        size(stats.uncompressed),
        dest.display()
    ));
    Ok(dest)
}

enum Keep {
    /// The uncompressed tar goes to the file.
    Tar,
    /// The blob as served goes to the file; the tar is only hashed.
    Blob,
}

fn unpack(
    image: &Image,
    i: usize,
    name: &str,
    file: &mut File,
    keep: Keep,
) -> Result<LayerStats, Error> {
    let (blob, diff_id) = (&image.manifest.layers[i], &image.config.diff_ids[i]);
    let label = image.label(name, Path::new("the layer file"));
    let mut run = |body: &mut dyn Read| match keep {
        Keep::Tar => pipeline::unpack_layer(body, blob, diff_id, file, &label),
        Keep::Blob => {
            let mut copy = CopyingReader::new(body, &mut *file);
            pipeline::unpack_layer(&mut copy, blob, diff_id, &mut io::sink(), &label)
        }
    };
    let cache = image.cache.as_ref();
    if let Some(mut cached) = cache.and_then(|c| c.get(&blob.digest, blob.size)) {
        return run(&mut cached);
    }
    let mut body = image
        .registry
        .blob_stream(&blob.digest, blob.size, name, None)?;
    cache::filling(cache, &blob.digest, &mut body, run)
}
