//! `--verify-key` in a build without the "verify" feature: there are no keys to load, so
//! asking for one is the usage error that names the feature, and nothing is ever checked with
//! one. The same items as `signature.rs`, which this stands in for.

use crate::digest::Digest;
use crate::error::Error;
use crate::registry::Registry;
use std::path::PathBuf;

/// No key can be loaded in this build: no value of this type exists.
pub enum Keys {}

impl Keys {
    /// `None` without keys; asking for any is the feature's usage error.
    pub fn load(paths: &[PathBuf]) -> Result<Option<Keys>, Error> {
        match paths.is_empty() {
            true => Ok(None),
            false => Err(crate::features::missing("verify", "--verify-key")),
        }
    }
}

/// A manifest (or index) a pull resolved, as fetched; callers fill it, only `signature.rs`
/// of a full build reads it.
#[allow(dead_code)]
pub struct Subject<'a> {
    pub digest: &'a Digest,
    pub bytes: &'a [u8],
}

/// Never called: there are no keys to check with.
pub fn check(
    _registry: &Registry,
    _image: &str,
    _subjects: &[Subject],
    keys: &Keys,
    _after: &'static str,
) -> Result<(), Error> {
    match *keys {}
}
