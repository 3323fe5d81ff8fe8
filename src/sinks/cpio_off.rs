//! `--initramfs` in a build without the "initramfs" feature: there is no newc writer, and
//! `Flatten::cpio` refuses with the usage error that names the feature. The same items as
//! `cpio.rs` that the merge names.

use crate::error::Error;
use crate::layer_tar::Entry;
use std::convert::Infallible;
use std::io::{Read, Write};
use std::marker::PhantomData;

pub use crate::limits::MAX_LINKED;

/// What a finished archive holds that its writer should tell.
#[derive(Default, Debug)]
pub struct Summary {
    pub has_init: bool,
    pub dropped_xattrs: u64,
}

/// No newc writer exists in this build: no value of this type can be made.
#[allow(dead_code)] // the variant only carries the types; it is never made
pub enum Newc<W: Write> {
    Never(Infallible, PhantomData<W>),
}

impl<W: Write> Newc<W> {
    pub fn add(
        &mut self,
        _entry: &Entry,
        _links: u32,
        _data: &mut dyn Read,
        _layer: &str,
    ) -> Result<(), Error> {
        let Newc::Never(never, _) = self;
        match *never {}
    }

    pub fn finish(self) -> Result<(W, Summary), Error> {
        let Newc::Never(never, _) = self;
        match never {}
    }
}

/// The error for an image over `MAX_LINKED` (never reached in this build).
pub fn too_many_linked(layer: &str) -> Error {
    Error::Unsupported(format!(
        "{layer} has more than {MAX_LINKED} hard-linked files"
    ))
}
