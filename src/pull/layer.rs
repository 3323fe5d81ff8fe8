//! `--layer N` (dlgrab): one layer, verified, written in the working directory as
//! `<id>/layer.tar`, `<id>/json` and `<id>/VERSION` — the layer directory of a classic `docker
//! save` archive — or with `--registry-format` as the compressed blob the registry serves,
//! `<digest hex>.tar.gz`. Either appears under its name only when complete and verified.

use super::Options;
use super::{size, Image, Keep};
use crate::error::Error;
use crate::manifest::LayerChoice;
use crate::outfile::{NewDir, NewFile};
use crate::partial::Undo;
use crate::sinks::layout;
use std::io;
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
    let ids = layout::layer_ids(diff_ids);
    let dest = if registry_format {
        let extension = if blob.media_type.contains("zstd") {
            "tar.zst"
        } else if blob.media_type.contains("gzip") || blob.media_type.is_empty() {
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
    let stats = if registry_format {
        let mut file = NewFile::create(&dest)?;
        // The blob is kept as served; inflating it (to nowhere) verifies the diff ID too.
        let stats = image.unpack(
            i,
            &name,
            Path::new("the layer file"),
            file.file_mut(),
            Keep::Blob,
            None,
        )?;
        file.persist()?;
        stats
    } else {
        let temp = NewDir::create(&dest, Undo::Remove)?;
        let parent = i.checked_sub(1).map(|p| ids[p].as_str());
        let config = &image.config;
        for (file_name, bytes) in layout::layer_files(
            &ids[i],
            parent,
            config.created.as_deref(),
            config.os.as_deref(),
        ) {
            temp.dir().write_at(Path::new(file_name), &bytes)?;
        }
        let path = temp.dir().join("layer.tar");
        let mut file = temp.dir().create_at(Path::new("layer.tar"))?;
        let stats = image.unpack(
            i,
            &name,
            Path::new("the layer file"),
            &mut file,
            Keep::Tar,
            None,
        )?;
        file.sync_all().map_err(|e| Error::io(&path, e))?;
        temp.persist(None)?;
        stats
    };
    image.progress().info(&format!(
        "Saved {name} of {} ({} compressed, {} unpacked) as {}",
        options.image,
        size(stats.compressed),
        size(stats.uncompressed),
        dest.display()
    ));
    Ok(dest)
}
