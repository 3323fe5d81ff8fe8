//! `--flatten FILE` (or `-` for standard output): the merged filesystem as one tar. Layers are
//! read from the top down (the top one streams first, lower ones download ahead into spools);
//! a file is written under a temporary name and renamed when complete.

use super::Options;
use super::{size, Image, SpoolDir};
use crate::error::Error;
use crate::fetch;
use crate::partial::Temp;
use crate::pipeline::LayerReader;
use crate::sinks::flatten::Flatten;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

/// The directory the spool (and the temporary file) go in: FILE's, or for stdout the working
/// directory; `pull` prepares it before anything is fetched.
pub(super) fn spool_near(options: &Options, file: &Path) -> PathBuf {
    match file.parent() {
        _ if file.as_os_str() == "-" => options.working_dir.clone(),
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

pub(super) fn save(
    options: &Options,
    image: &Image,
    file: &Path,
) -> Result<Option<PathBuf>, Error> {
    let to_stdout = file.as_os_str() == "-";
    // Beside FILE, named after it; for stdout in the working directory.
    let near = if to_stdout {
        options.working_dir.join("flatten")
    } else {
        file.to_path_buf()
    };
    let spool = SpoolDir::create(&near)?;
    if to_stdout {
        let mut out = BufWriter::with_capacity(64 * 1024, io::stdout().lock());
        merge(
            options,
            image,
            &spool,
            &mut out,
            Path::new("standard output"),
        )?;
        out.flush()
            .map_err(|e| Error::io(Path::new("standard output"), e))?;
        return Ok(None);
    }
    // A device or pipe (`/dev/null`, `/dev/stdout`, a FIFO) is written as it is; only a
    // regular file gets a temporary name and a rename.
    if fs::metadata(file).is_ok_and(|m| !m.is_file() && !m.is_dir()) {
        let out = OpenOptions::new()
            .write(true)
            .open(file)
            .map_err(|e| Error::io(file, e))?;
        let mut buffered = BufWriter::with_capacity(64 * 1024, &out);
        merge(options, image, &spool, &mut buffered, file)?;
        buffered.flush().map_err(|e| Error::io(file, e))?;
        return Ok(Some(file.to_path_buf()));
    }
    let temp = Temp::new(file);
    let out = File::create(temp.path()).map_err(|e| Error::io(temp.path(), e))?;
    let mut buffered = BufWriter::with_capacity(64 * 1024, &out);
    merge(options, image, &spool, &mut buffered, file)?;
    buffered.flush().map_err(|e| Error::io(temp.path(), e))?;
    drop(buffered);
    out.sync_all().map_err(|e| Error::io(temp.path(), e))?;
    temp.persist().map_err(|e| Error::io(file, e))?;
    Ok(Some(file.to_path_buf()))
}

/// Merges the image into `out`; `shown` names where it goes, for messages.
fn merge(
    options: &Options,
    image: &Image,
    spool: &SpoolDir,
    out: &mut dyn Write,
    shown: &Path,
) -> Result<(), Error> {
    let layers = &image.manifest.layers;
    let blobs = image.blobs(spool);
    let order: Vec<usize> = (0..layers.len()).rev().collect();
    let mut flat = Flatten::new(out);
    let mut compressed = 0;
    image.show_layers();
    let merged = fetch::in_order(&blobs, &order, &mut |i, body| {
        let name = image.layer_name(i);
        let label = image.label(&name, shown);
        let mut reader = LayerReader::new(body, &layers[i], &image.config.diff_ids[i], &label);
        if let Err(e) = flat.layer(&mut reader, i, &name) {
            return Err(reader.explain(e));
        }
        let stats = reader.finish()?;
        compressed += stats.compressed;
        image.progress().finished(
            i,
            &format!(
                "  {name}: {} compressed, {} merged",
                size(stats.compressed),
                size(stats.uncompressed)
            ),
        );
        Ok(())
    });
    image.progress().done();
    merged?;
    flat.finish()?;
    image.progress().info(&format!(
        "Flattened {} ({} layers, {} downloaded) into {}",
        options.image,
        layers.len(),
        size(compressed),
        shown.display()
    ));
    Ok(())
}
