//! `--copy-to DEST IMAGE`: an image from its registry into another with nothing on disk, the
//! way `crane copy` and `regctl image copy` do it, with `docker pull`'s digests kept.
//!
//! For each image: every blob (configs, layers) the destination lacks streams from the source
//! straight into an upload, or is mounted when both repositories are on one registry; then the
//! platforms' manifests, byte for byte, and last the index (byte for byte when every platform
//! goes, trimmed to the platforms asked for otherwise) under the tag. Every blob is hashed on
//! the way through and refused before the upload is closed if it is not the one the manifest
//! names. Memory stays a few fixed buffers, whatever the image weighs.
//!
//! It never writes to the disk, and the credentials of one registry never go to the other
//! (each `Registry` sends only its own).

#[cfg(feature = "push")]
mod run;

#[cfg(feature = "push")]
pub use run::copy;

use crate::manifest::{Platform, Platforms};
use crate::reference::Reference;
use crate::registry::http::Settings;
use crate::registry::mirrors::Source;
use std::path::PathBuf;

/// What to copy where, as the command line put it together.
#[derive(Debug)]
pub struct Options {
    /// The images, in order.
    pub images: Vec<Reference>,
    /// Where each image was listed (`--images-from`), in the order of `images`. When the images
    /// come from a list, `destination` is a registry and path prefix: each image keeps its own
    /// repository path and tag below it.
    pub listed_at: Vec<String>,
    pub destination: Reference,
    pub http: Settings,
    /// Mirrors serve the source side only.
    pub mirrors: Source,
    /// `--verify-key`: what every source image must be signed by before anything is copied.
    pub verify_keys: Vec<PathBuf>,
    /// `--platform os/arch`: only that platform's image (its manifest under the tag).
    pub platform: Option<Platform>,
    /// `--platform all|LIST`; without it and without `platform`, everything the reference
    /// names is copied (every entry of an index).
    pub platforms: Option<Platforms>,
    /// `--with-referrers`: what refers to each image (signatures, SBOMs) goes along.
    pub with_referrers: bool,
}

/// In a build without the "push" feature: the error that names it (the command line refuses
/// `--copy-to` before this).
#[cfg(not(feature = "push"))]
pub fn copy(
    _options: &Options,
    _logins: &crate::pull::Logins,
    _destination: &dyn Fn(&Reference) -> Option<crate::registry::auth::Credentials>,
    _progress: std::sync::Arc<crate::progress::Progress>,
) -> Result<Vec<String>, crate::error::Error> {
    Err(crate::features::missing("push", "--copy-to"))
}
