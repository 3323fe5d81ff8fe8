//! `--push ARCHIVE|DIR IMAGE`: the images of an archive into a registry, the other half of the
//! air gap. For each image: its layers (skipped, mounted or uploaded, see `blob`), then its
//! config, then its manifest last — the registry's own when the archive kept it
//! (`--compressed`), else a Docker schema 2 manifest of the blobs as pushed.
//!
//! It decides which image goes where and in what order; it never writes to the archive or the
//! working directory (only the record of pushed blobs, see `known`).

#[cfg(feature = "push")]
pub mod blob;
#[cfg(feature = "push")]
mod held;
#[cfg(feature = "push")]
pub mod known;
#[cfg(feature = "push")]
mod run;

#[cfg(feature = "push")]
pub use run::push;

use crate::manifest;
use crate::reference::Reference;
use crate::registry::http::Settings;
use std::path::PathBuf;

/// What to push where, as the command line put it together.
#[derive(Debug)]
pub struct Options {
    /// An archive or `--no-tar` directory.
    pub source: PathBuf,
    /// Where its image goes; with `--all`, a registry and a path prefix for the images' own
    /// names.
    pub destination: Reference,
    pub choose: Choose,
    pub http: Settings,
    /// Where the record of pushed blobs is kept (see `known`).
    pub record: Option<PathBuf>,
    /// `--verify-key`: each pushed image must be signed by one of these keys where it landed.
    pub verify_keys: Vec<PathBuf>,
    /// `--platform all|LIST`: which platforms of an archived index go up (all without it).
    pub platforms: Option<manifest::Platforms>,
    /// `--have IMAGE`: images on the destination's registry whose blobs a thin archive's
    /// left-out layers may be (mounted from their repositories when need be).
    pub have: Vec<String>,
}

/// Which images of a pushed archive go up.
#[derive(Debug, PartialEq, Eq, Clone)]
pub enum Choose {
    /// The only one (an error when there are several).
    Only,
    /// `--image NAME`: the one with this name in `RepoTags`.
    Image(String),
    /// `--all`: each under its own name, on the destination's registry.
    All,
}

/// In a build without the "push" feature: the error that names it (the command line refuses
/// `--push` before this).
#[cfg(not(feature = "push"))]
pub fn push(
    _options: &Options,
    _credentials: &dyn Fn(&Reference) -> Option<crate::registry::auth::Credentials>,
    _progress: std::sync::Arc<crate::progress::Progress>,
) -> Result<Vec<String>, crate::error::Error> {
    Err(crate::features::missing("push", "--push"))
}

/// Where the record of pushed blobs lives: the cache directory when there is one, else
/// `$XDG_CACHE_HOME/dockersave` or `~/.cache/dockersave`.
pub fn record_dir(
    cache_dir: Option<&std::path::Path>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Option<PathBuf> {
    if let Some(dir) = cache_dir {
        return Some(dir.to_path_buf());
    }
    let nonempty = |name: &str| env(name).filter(|v| !v.is_empty());
    nonempty("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| nonempty("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .map(|dir| dir.join("dockersave"))
}
