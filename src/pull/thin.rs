//! Thin archives (`--have`): what the receiving engine already holds, and so which layers'
//! files an archive can leave out.
//!
//! `docker load` reads a layer's file only when the layer's chain ID (the layer and every layer
//! below it) is not in its layer store, so a layer is left out exactly when an image the
//! receiver holds has the same chain ID. The images held are named by reference (only their
//! manifest and config are fetched, for each platform the archive carries) or by an earlier
//! archive (its documents are read, no layer data). This module decides; it writes nothing.

use super::{Image, Options};
use crate::digest::Digest;
use crate::error::Error;
use crate::manifest::Platform;
use crate::reference::Reference;
use crate::sinks::layout::{self, LeaveOut};
use crate::source::Reach;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

/// What the receiver holds: the chain IDs of its layers, and the uncompressed size of those
/// whose size an archive told.
#[derive(Default)]
pub(super) struct Held {
    /// Each chain ID held, with the first of `names` that holds it.
    chains: BTreeMap<Digest, usize>,
    tar_sizes: HashMap<Digest, u64>,
    names: Vec<String>,
}

/// A `--have` value: an existing file or directory is an earlier archive, anything else an
/// image reference.
pub(super) fn held(
    options: &Options,
    reach: &Reach,
    have: &[String],
    images: &[Image],
) -> Result<Held, Error> {
    let mut held = Held::default();
    let mut platforms: Vec<Platform> = Vec::new();
    for image in images {
        if let Some(platform) = image.platform() {
            if !platforms.contains(&platform) {
                platforms.push(platform);
            }
        }
    }
    for value in have {
        // Relative to the working directory, as the archive written is.
        let path = options.working_dir.join(value);
        if path.exists() {
            held.read_archive(&path)?;
            held.names.push(value.clone());
            continue;
        }
        let reference = Reference::parse(value).map_err(|e| {
            Error::Usage(format!(
                "--have {value:?} is neither an archive here nor an image reference: {e}"
            ))
        })?;
        let registry = Arc::new(reach.registry(&reference));
        let mut found = false;
        for platform in &platforms {
            let (served, manifest) = match reach.held(&registry, &reference, platform) {
                Ok(chosen) => chosen,
                Err(Error::PlatformNotFound { .. }) => continue,
                Err(e) => return Err(e),
            };
            let image = super::with_config(
                registry.clone(),
                &reference,
                None,
                served,
                manifest,
                super::Ahead::None,
            )?;
            held.hold(&image.config.diff_ids);
            found = true;
        }
        if !found {
            reach.progress().warn(&format!(
                "--have {reference}: it has no image for the platforms of this archive; nothing is left out for it"
            ));
        }
        held.names.push(reference.to_string());
    }
    Ok(held)
}

impl Held {
    /// Takes in what an earlier archive's images hold.
    #[cfg(feature = "push")]
    fn read_archive(&mut self, path: &std::path::Path) -> Result<(), Error> {
        let archived = crate::archived::Source::open(path)?.held()?;
        for stack in &archived.stacks {
            self.hold(stack);
        }
        self.tar_sizes.extend(archived.sizes);
        Ok(())
    }

    /// The minimal build has no archive reader (the `push` feature's).
    #[cfg(not(feature = "push"))]
    fn read_archive(&mut self, _path: &std::path::Path) -> Result<(), Error> {
        Err(crate::features::missing("push", "--have ARCHIVE"))
    }

    /// Records the chain IDs of a stack of layers, held by the image named next.
    fn hold(&mut self, diff_ids: &[Digest]) {
        for chain in layout::chain_ids(diff_ids) {
            self.chains.entry(chain).or_insert(self.names.len());
        }
    }

    /// The layers of `images` to leave out, each with the size it would be stored with (what
    /// the OCI manifest lists; none is needed by the legacy layout, and `compressed` layers
    /// are the blobs as served). A layer whose uncompressed size is not known without reading
    /// it (a zstd layer, not in a `--have` archive) is kept, and the user told.
    pub(super) fn leave_out(
        &self,
        images: &[Image],
        form_layout: layout::Layout,
        compressed: bool,
    ) -> Result<LeaveOut, Error> {
        let mut leave_out = LeaveOut::default();
        let mut needs = BTreeSet::new();
        for image in images {
            let chains = layout::chain_ids(&image.config.diff_ids);
            for (i, chain) in chains.into_iter().enumerate() {
                let Some(&holder) = self.chains.get(&chain) else {
                    continue;
                };
                if leave_out.chains.contains_key(&chain) {
                    continue;
                }
                let diff_id = &image.config.diff_ids[i];
                let size = if form_layout == layout::Layout::Legacy {
                    Some(0)
                } else if compressed {
                    Some(image.manifest.layers[i].size)
                } else if let Some(&size) = self.tar_sizes.get(diff_id) {
                    Some(size)
                } else {
                    image.known_size(i, false, &image.layer_name(i))?
                };
                match size {
                    Some(size) => {
                        leave_out.chains.insert(chain, size);
                        needs.insert(holder);
                    }
                    None => image.progress().info(&format!(
                        "  {}: kept, though the receiver holds it: its uncompressed size is not known without reading it (give the earlier archive as --have, or use --compressed)",
                        image.layer_name(i)
                    )),
                }
            }
        }
        leave_out.needs = needs.into_iter().map(|n| self.names[n].clone()).collect();
        Ok(leave_out)
    }
}
