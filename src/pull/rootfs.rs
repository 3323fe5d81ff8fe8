//! `--rootfs DIR`: the layers applied in order to DIR (with `--git`, committed one by one), each
//! streamed from the network or its spool straight into the tree.
//!
//! DIR is created if missing: then the tree is built as `.DIR.partial-PID` beside it and renamed
//! when complete, so a failed or interrupted run leaves nothing under DIR's name. An existing
//! empty DIR (a mount point, say) is filled in place and emptied again on failure; a non-empty
//! one is refused unless `--force`, which applies the image over it (what fails half-way then
//! stays half-applied, and the message says so).

use super::Options;
use super::{size, Image, SpoolDir};
use crate::confined;
use crate::error::Error;
use crate::fetch;
use crate::partial;
use crate::pipeline::{CopyingReader, LayerReader};
use crate::sinks::archive;
use crate::sinks::git::Repo;
use crate::sinks::layout::{Layout, Plan};
use crate::sinks::rootfs::Rootfs;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

pub(super) fn save(
    options: &Options,
    image: &Image,
    mut target: Target,
    git: bool,
) -> Result<PathBuf, Error> {
    let dir = target.dest.clone();
    let spool = SpoolDir::create(&dir)?;
    // --no-rm keeps the layer tars, with what makes the directory loadable by `docker load`.
    let kept = if options.no_rm {
        Some(KeptLayers::create(options, image)?)
    } else {
        None
    };
    let mut rootfs = Rootfs::open(target.work(), git)?;
    let repo = if git {
        Some(Repo::init(target.work())?)
    } else {
        None
    };
    let layers = &image.manifest.layers;
    let blobs = image.blobs(&spool);
    let order: Vec<usize> = (0..layers.len()).collect();
    let (mut compressed, mut uncompressed) = (0, 0);
    image.show_layers();
    let applied = fetch::in_order(&blobs, &order, &mut |i, body| {
        let name = image.layer_name(i);
        let label = image.label(&name, target.work());
        let (blob, diff_id) = (&layers[i], &image.config.diff_ids[i]);
        let mut reader = LayerReader::new(body, blob, diff_id, &label);
        let applied = match &kept {
            Some(kept) => kept.layer_file(i).and_then(|(file, path)| {
                let mut copy = CopyingReader::new(&mut reader, file);
                rootfs.apply(&mut copy, &name)?;
                copy.drain().map_err(|e| Error::io(&path, e))
            }),
            None => rootfs.apply(&mut reader, &name),
        };
        if let Err(e) = applied {
            return Err(reader.explain(e));
        }
        let stats = reader.finish()?;
        compressed += stats.compressed;
        uncompressed += stats.uncompressed;
        let committed = match &repo {
            Some(repo) => {
                let history = image.config.layer_history.get(i);
                let branch = repo.commit_layer(
                    i,
                    layers.len(),
                    &blob.digest,
                    diff_id,
                    history,
                    rootfs.written(),
                )?;
                format!(", committed on {branch}")
            }
            None => String::new(),
        };
        image.progress().finished(
            i,
            &format!(
                "  {name}: {} compressed, {} applied{committed}",
                size(stats.compressed),
                size(stats.uncompressed)
            ),
        );
        Ok(())
    });
    image.progress().done();
    applied?;
    let (devices, xattrs) = (rootfs.skipped_devices, rootfs.skipped_xattrs);
    let root_mode = rootfs.finish()?;
    if devices > 0 {
        image.progress().info(&format!(
            "  skipped {devices} device nodes: creating them needs root"
        ));
    }
    if xattrs > 0 {
        image.progress().info(&format!(
            "  skipped {xattrs} extended attributes: outside user.* they need root, or the filesystem refused them"
        ));
    }
    if let Some(kept) = kept {
        kept.finish(image)?;
    }
    target.complete(root_mode)?;
    image.progress().info(&format!(
        "Unpacked {} ({} layers, {} downloaded, {} unpacked) into {}",
        options.image,
        layers.len(),
        size(compressed),
        size(uncompressed),
        dir.display()
    ));
    Ok(dir)
}

/// Where the tree is built, and what happens to it at the end.
pub(super) struct Target {
    dest: PathBuf,
    /// The directory written to: a `.partial` one for a new DIR, else DIR itself.
    work: PathBuf,
    kind: TargetKind,
    done: bool,
    /// `--no-rm`: a new DIR's partial tree stays after a failure or an interrupt.
    keep: bool,
    _interrupt: partial::OnInterrupt,
}

#[derive(PartialEq, Eq)]
enum TargetKind {
    New,
    Empty,
    Forced,
}

impl Target {
    /// Checks DIR (and, for `--git`, that git is there) before anything is fetched, and
    /// creates the `.partial` directory for a new DIR.
    pub(super) fn prepare(
        dest: &Path,
        force: bool,
        git: bool,
        keep: bool,
    ) -> Result<Target, Error> {
        if git {
            Repo::check_git()?;
        }
        let exists = |kind| Error::io(dest, io::Error::new(kind, "exists and is not a directory"));
        let kind = match fs::symlink_metadata(dest) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => TargetKind::New,
            Err(e) => return Err(Error::io(dest, e)),
            Ok(meta) if !meta.is_dir() => return Err(exists(io::ErrorKind::AlreadyExists)),
            Ok(_) => {
                let empty = fs::read_dir(dest)
                    .map_err(|e| Error::io(dest, e))?
                    .next()
                    .is_none();
                match (empty, force) {
                    (true, _) => TargetKind::Empty,
                    (false, true) => TargetKind::Forced,
                    (false, false) => {
                        return Err(Error::Local(format!(
                            "{} is not empty; pass --force to apply the image over what is there, or choose another directory",
                            dest.display()
                        )))
                    }
                }
            }
        };
        let work = if kind == TargetKind::New {
            if dest.file_name().is_none() {
                return Err(Error::Usage(format!(
                    "--rootfs {} does not name a directory",
                    dest.display()
                )));
            }
            if let Some(parent) = dest.parent().filter(|p| !p.as_os_str().is_empty()) {
                fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
                partial::remove_stale_partials(parent);
            } else {
                partial::remove_stale_partials(Path::new("."));
            }
            let work = partial::temp_name(dest);
            // 0700 until it is complete and renamed: no other user may reach a setuid file
            // or a device node of a half-built tree.
            fs::DirBuilder::new()
                .mode(0o700)
                .create(&work)
                .map_err(|e| Error::io(&work, e))?;
            work
        } else {
            dest.to_path_buf()
        };
        let undo = match (&kind, keep) {
            (TargetKind::New, false) => partial::Undo::Remove,
            (TargetKind::New, true) => partial::Undo::Keep,
            (TargetKind::Empty, _) => partial::Undo::Empty,
            (TargetKind::Forced, _) => partial::Undo::Partial,
        };
        Ok(Target {
            _interrupt: partial::on_interrupt(&work, undo),
            dest: dest.to_path_buf(),
            work,
            kind,
            done: false,
            keep,
        })
    }

    fn work(&self) -> &Path {
        &self.work
    }

    /// Puts the tree in place, then gives its root the image's mode and mtime (`root`; a new
    /// tree whose image names no root gets 0755, as `mkdir` would have made it).
    fn complete(&mut self, root: Option<(u32, u64)>) -> Result<(), Error> {
        let root = match (&self.kind, root) {
            (_, Some((mode, mtime))) => Some((mode, Some(mtime))),
            (TargetKind::New, None) => Some((0o755, None)),
            _ => None,
        };
        if self.kind == TargetKind::New {
            fs::rename(&self.work, &self.dest).map_err(|e| Error::io(&self.dest, e))?;
        }
        self.done = true;
        if let Some((mode, mtime)) = root {
            let dir = confined::Root::open(&self.dest).map_err(|e| Error::io(&self.dest, e))?;
            let applied = confined::set_mode(dir.fd(), mode).and_then(|()| match mtime {
                Some(mtime) => confined::set_mtime(dir.fd(), mtime),
                None => Ok(()),
            });
            applied.map_err(|e| Error::io(&self.dest, e))?;
        }
        Ok(())
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        match self.kind {
            TargetKind::New if self.keep => eprintln!(
                "kept the partial directory {} (--no-rm)",
                self.work.display()
            ),
            TargetKind::New => partial::remove(&self.work),
            TargetKind::Empty => partial::empty(&self.work),
            TargetKind::Forced => eprintln!(
                "warning: {} was partly updated before the failure; run again to finish",
                self.dest.display()
            ),
        }
    }
}

/// The layer tars `--rootfs --no-rm` keeps, as the image directory `--no-tar` writes (so
/// `tar -C DIR -c . | docker load` loads it). Built under its `.partial` name and renamed when
/// complete; after a failure the partial directory stays, as `--no-rm` keeps an archive's.
struct KeptLayers {
    dest: PathBuf,
    work: PathBuf,
    plan: Plan,
    done: bool,
    _interrupt: partial::OnInterrupt,
}

impl KeptLayers {
    fn create(options: &Options, image: &Image) -> Result<KeptLayers, Error> {
        let name = options
            .layers_dir
            .clone()
            .unwrap_or_else(|| options.image.archive_base_name());
        let working_dir = &options.working_dir;
        fs::create_dir_all(working_dir).map_err(|e| Error::io(working_dir, e))?;
        partial::remove_stale_partials(working_dir);
        let dest = working_dir.join(name);
        if dest.exists() {
            return Err(Error::io(
                &dest,
                io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    "already exists; remove it or choose another --layers-dir",
                ),
            ));
        }
        let work = partial::temp_name(&dest);
        fs::create_dir(&work).map_err(|e| Error::io(&work, e))?;
        Ok(KeptLayers {
            _interrupt: partial::on_interrupt(&work, partial::Undo::Keep),
            dest,
            work,
            // The classic layout: a directory per layer, as `--format legacy` writes it.
            plan: Plan::new(Layout::Legacy, false, &[image.for_layout()], Vec::new()),
            done: false,
        })
    }

    /// Where layer `i`'s tar is kept.
    fn layer_file(&self, i: usize) -> Result<(File, PathBuf), Error> {
        let layer = &self.plan.layers[self.plan.slots[0][i]];
        archive::write_entries(&self.work, &layer.before)?;
        let path = self.work.join(&layer.name);
        let file = File::create(&path).map_err(|e| Error::io(&path, e))?;
        Ok((file, path))
    }

    fn finish(mut self, image: &Image) -> Result<(), Error> {
        let files = self.plan.finish(&[image.for_layout()], &[]);
        archive::write_entries(&self.work, &files)?;
        fs::rename(&self.work, &self.dest).map_err(|e| Error::io(&self.dest, e))?;
        self.done = true;
        image.progress().info(&format!(
            "  kept the layers in {} (--no-rm)",
            self.dest.display()
        ));
        Ok(())
    }
}

impl Drop for KeptLayers {
    fn drop(&mut self) {
        if !self.done {
            eprintln!(
                "kept the partial directory {} (--no-rm)",
                self.work.display()
            );
        }
    }
}
