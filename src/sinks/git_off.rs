//! `--git` in a build without the "git" feature: no repository can be made, and asking for
//! one is the usage error that names the feature. The same items as `git.rs`.

use crate::digest::Digest;
use crate::error::Error;
use crate::manifest::LayerHistory;
use std::path::Path;

/// No repository is made in this build: no value of this type exists.
pub enum Repo {}

impl Repo {
    pub fn check_git() -> Result<(), Error> {
        Err(crate::features::missing("git", "--git"))
    }

    pub fn init(_dir: &Path) -> Result<Repo, Error> {
        Err(crate::features::missing("git", "--git"))
    }

    pub fn commit_layer(
        &self,
        _index: usize,
        _layers: usize,
        _blob: &Digest,
        _diff_id: &Digest,
        _history: Option<&LayerHistory>,
        _written: &[Box<[u8]>],
    ) -> Result<String, Error> {
        match *self {}
    }
}
