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
use crate::layer_tar::Time;
use crate::outfile::{self, NewDir};
use crate::overlap;
use crate::partial::{self, Undo};
use crate::pipeline::{CopyingReader, LayerReader};
use crate::sinks::archive;
use crate::sinks::git::Repo;
use crate::sinks::layout::{Layout, Plan};
use crate::sinks::rootfs::Rootfs;
use std::fs::{self, File};
use std::io;
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
        // The layer is inflated and hashed on the other core while its files are made.
        let applied = match &kept {
            Some(kept) => kept.layer_file(i).and_then(|(file, path)| {
                let mut copy = CopyingReader::new(&mut reader, file);
                overlap::read_ahead(&mut copy, |tar| rootfs.apply(tar, &name))?;
                copy.drain().map_err(|e| Error::io(&path, e))
            }),
            None => overlap::read_ahead(&mut reader, |tar| rootfs.apply(tar, &name)),
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
    let setid = rootfs.setid_files;
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
    // Without root the image's setuid and setgid files belong to this user: anyone who can
    // reach them would run them as this user. The tree's root stays 0700 then.
    let private = setid > 0 && outfile::euid() != 0;
    if private {
        image.progress().warn(&format!(
            "{setid} setuid/setgid files of the image belong to you (giving them to root needs root): {} stays 0700, so that no other user can run them as you; chmod it if that is what you want",
            dir.display()
        ));
    }
    target.complete(root_mode, private)?;
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
    _interrupt: Option<partial::OnInterrupt>,
}

enum TargetKind {
    /// A new DIR, built private under its partial name.
    New(NewDir),
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
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if dest.file_name().is_none() {
                    return Err(Error::Usage(format!(
                        "--rootfs {} does not name a directory",
                        dest.display()
                    )));
                }
                let parent = dest.parent().unwrap_or(Path::new(""));
                outfile::Dir::ensure(parent)?;
                partial::remove_stale_partials(match parent.as_os_str().is_empty() {
                    true => Path::new("."),
                    false => parent,
                });
                // 0700 until it is complete and renamed: no other user may reach a setuid file
                // or a device node of a half-built tree.
                let undo = if keep { Undo::Keep } else { Undo::Remove };
                TargetKind::New(NewDir::create(dest, undo)?)
            }
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
        let (work, interrupt) = match &kind {
            TargetKind::New(dir) => (dir.dir().path().to_path_buf(), None),
            TargetKind::Empty => (dest.to_path_buf(), Some(Undo::Empty)),
            TargetKind::Forced => (dest.to_path_buf(), Some(Undo::Partial)),
        };
        Ok(Target {
            _interrupt: interrupt.map(|undo| partial::on_interrupt(&work, undo)),
            dest: dest.to_path_buf(),
            work,
            kind,
            done: false,
        })
    }

    fn work(&self) -> &Path {
        &self.work
    }

    /// Puts the tree in place, then gives its root the image's mode and mtime (`root`; a new
    /// tree whose image names no root gets 0755, as `mkdir` would have made it). `private`
    /// keeps the root 0700 whatever the image says (see `save`).
    fn complete(&mut self, root: Option<(u32, Time)>, private: bool) -> Result<(), Error> {
        let is_new = matches!(self.kind, TargetKind::New(_));
        let root = match (is_new, root) {
            (_, Some((mode, mtime))) => Some((mode, Some(mtime))),
            (true, None) => Some((0o755, None)),
            _ => None,
        };
        let root = root.map(|(mode, mtime)| (if private { 0o700 } else { mode }, mtime));
        if let TargetKind::New(dir) = std::mem::replace(&mut self.kind, TargetKind::Forced) {
            dir.persist(root.map(|(mode, _)| mode))?;
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
            // The partial directory says what becomes of it.
            TargetKind::New(_) => {}
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
    work: NewDir,
    plan: Plan,
}

impl KeptLayers {
    fn create(options: &Options, image: &Image) -> Result<KeptLayers, Error> {
        let name = options
            .layers_dir
            .clone()
            .unwrap_or_else(|| options.image.archive_base_name());
        let working_dir = &options.working_dir;
        outfile::Dir::ensure(working_dir)?;
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
        Ok(KeptLayers {
            work: NewDir::create(&dest, Undo::Keep)?,
            // The classic layout: a directory per layer, as `--format legacy` writes it.
            plan: Plan::new(Layout::Legacy, false, &[image.for_layout()], Vec::new()),
        })
    }

    /// Where layer `i`'s tar is kept.
    fn layer_file(&self, i: usize) -> Result<(File, PathBuf), Error> {
        let layer = &self.plan.layers[self.plan.slots[0][i]];
        let dir = self.work.dir();
        archive::write_entries(dir, &layer.before)?;
        let file = dir.create_at(Path::new(&layer.name))?;
        Ok((file, dir.join(&layer.name)))
    }

    fn finish(self, image: &Image) -> Result<(), Error> {
        let files = self.plan.finish(&[image.for_layout()], &[]);
        archive::write_entries(self.work.dir(), &files)?;
        let dest = self.work.persist(None)?;
        image.progress().info(&format!(
            "  kept the layers in {} (--no-rm)",
            dest.display()
        ));
        Ok(())
    }
}
