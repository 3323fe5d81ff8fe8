//! OCI artifacts — firmware, Helm charts, SBOMs, anything a registry stores that is not a
//! container image: `--artifact DIR|-` writes an artifact's layers as the files they are, named
//! as `oras pull` and `helm pull` name them, and `--referrers` / `--artifact-type` find what
//! refers to an image.
//!
//! Every layer is verified against its digest as it streams, in fixed buffers. A directory layer
//! (ORAS's `io.deis.oras.content.unpack`) is unpacked by `sinks::rootfs`, the `--rootfs`
//! confinement, and its tar checked against `io.deis.oras.content.digest`. Everything is made in
//! a private staging directory inside DIR and moved to its name only when every layer is
//! complete; a name that is absolute, climbs out (`..`), is taken by two layers or has a link
//! on its way is refused before anything is downloaded. Nothing here writes outside DIR; with
//! `-` the one file goes to standard output as it streams, and a digest mismatch, found at its
//! end, fails the run.

#[cfg(feature = "artifact")]
pub(crate) mod names;
#[cfg(feature = "artifact")]
mod run;

#[cfg(feature = "artifact")]
pub use run::fetch;
#[cfg(feature = "artifact")]
pub(crate) use run::{describe, referrers};

use crate::manifest::{LayerChoice, Platform};
use crate::reference::Reference;
use crate::registry::http::Settings;
use crate::registry::mirrors::Source;
use std::path::PathBuf;

/// What `--artifact` fetches, and where to.
#[derive(Debug)]
pub struct Options {
    pub image: Reference,
    pub http: Settings,
    pub mirrors: Source,
    /// `--verify-key`: the artifact must be signed by one of these keys.
    pub verify_keys: Vec<PathBuf>,
    /// `--platform`, for an index of artifacts for several platforms.
    pub platform: Option<Platform>,
    /// The directory the files go into; `-` for standard output.
    pub dest: PathBuf,
    /// `--layer`: with `-`, which file of several.
    pub layer: Option<LayerChoice>,
    /// `--artifact-type TYPE`: not `image` itself but its newest referrer of this type.
    pub artifact_type: Option<String>,
}

/// In a build without the "artifact" feature: the error that names it (the command line
/// refuses `--artifact` and `--referrers` before this).
#[cfg(not(feature = "artifact"))]
pub fn fetch(
    _options: &Options,
    _logins: &crate::pull::Logins,
    _progress: std::sync::Arc<crate::progress::Progress>,
    _out: &mut dyn std::io::Write,
) -> Result<Vec<PathBuf>, crate::error::Error> {
    Err(crate::features::missing("artifact", "--artifact"))
}

#[cfg(not(feature = "artifact"))]
pub(crate) fn referrers(
    _registry: &crate::registry::Registry,
    _digest: &crate::digest::Digest,
) -> Result<(Vec<crate::manifest::Referrer>, usize), crate::error::Error> {
    Err(crate::features::missing("artifact", "--referrers"))
}

#[cfg(not(feature = "artifact"))]
pub(crate) fn describe(_referrer: &crate::manifest::Referrer) -> String {
    String::new()
}
