//! dockersave fetches container images from any Docker/OCI registry without Docker, and
//! writes archives that `docker load` accepts — or the image's root filesystem, one flattened
//! tar, or an initramfs a Linux kernel boots ([`Output::initramfs`]). This crate is the `dockersave` command's library: the command is a thin
//! layer over [`Client`], so a Rust program (a device's updater, an init that pulls its payload
//! at boot) gets everything the command does without running it.
//!
//! Pull an image into an archive:
//!
//! ```no_run
//! use dockersave::{Client, Output};
//!
//! let client = Client::new();
//! let written = client.pull("debian:12", Output::archive("debian.tar"))?;
//! println!("{}", written.unwrap().display()); // docker load -i debian.tar
//! # Ok::<(), dockersave::Error>(())
//! ```
//!
//! Unpack one into a directory, from a private registry, with progress:
//!
//! ```no_run
//! use dockersave::{Client, Event, Output};
//!
//! let client = Client::new()
//!     .credentials("me", "secret")
//!     .platform("linux/arm64")?
//!     .on_event(|event| {
//!         if let Event::Info(line) = event {
//!             eprintln!("{line}");
//!         }
//!     });
//! client.pull("registry.example.com/team/app:1.4", Output::rootfs("/srv/app"))?;
//! # Ok::<(), dockersave::Error>(())
//! ```
//!
//! What a build can do is chosen with cargo features, all in the default set: `push`
//! ([`Client::push`], [`Client::copy`]), `verify` ([`Client::verify_key`]), `initramfs`
//! ([`Output::initramfs`]), `git` (one commit per layer under [`Output::Rootfs`]), `xz`
//! ([`Compression::Xz`]) and `zstd` (zstd layers). Without them (`default-features = false`)
//! the crate pulls to archives, root filesystems, flattened tars and single layers, with
//! gzip, TLS, credentials and mirrors; the items keep their signatures, and what needs a
//! missing feature returns a usage error naming it.
//!
//! Everything downloaded is verified against its digest, layers stream through fixed buffers
//! (memory does not grow with the image), and nothing appears under its final name until it is
//! complete. A failure is an [`Error`]: its message is the one line the command prints, and
//! [`Error::kind`] says what kind of failure it is ([`ErrorKind`], one per exit code).
//!
//! The modules below the front door follow the data: `reference` names the image, `registry`
//! (http, proxy, auth, credentials, client) fetches it, `manifest` picks what to fetch, `fetch`
//! orders the layer downloads, `pipeline` (with `decompress` and `digest`) turns each layer blob
//! into a verified tar, `cache` keeps verified blobs, `layer_tar` reads a layer as filesystem
//! changes (`paths` keeps what is known per path), the `sinks` write them (`archive`: Docker's
//! save format; `rootfs` through `confined`, which keeps every write inside its directory;
//! `flatten`, through `cpio` for an initramfs; `git`), `pull` drives them; `push` reads an archive back (`source`) and uploads it
//! (`registry::upload`); `copy` goes from registry to registry; `cli` reads the command line
//! into a `Command`. They are private to the crate; the command's parser (`cli`), the fuzz
//! entry points (`fuzzing`) and what `main` needs are public but hidden, and not an API: the
//! items below are.

#![warn(missing_docs)]

// The archive reader (--push, --have ARCHIVE): left out of the minimal build for its size.
#[cfg(feature = "push")]
mod archived;
#[doc(hidden)]
pub mod artifact;
mod cache;
#[doc(hidden)]
pub mod cli;
#[doc(hidden)]
pub mod client;
mod confined;
mod copy;
mod decompress;
mod digest;
#[doc(hidden)]
pub mod error;
#[doc(hidden)]
pub mod features;
mod fetch;
#[doc(hidden)]
pub mod fuzzing;
mod gzip;
#[doc(hidden)]
pub mod host;
#[doc(hidden)]
pub mod interrupt;
mod layer_tar;
#[doc(hidden)]
pub mod limits;
mod locks;
mod manifest;
mod outfile;
#[cfg_attr(not(feature = "overlap"), path = "overlap_off.rs")]
mod overlap;
mod partial;
mod paths;
mod pipeline;
mod pretty;
#[doc(hidden)]
pub mod progress;
mod pull;
mod push;
mod reference;
mod registry;
#[cfg(test)]
mod rules;
#[cfg_attr(not(feature = "verify"), path = "signature_off.rs")]
mod signature;
mod sinks;
mod source;
mod tar_reader;

pub use client::Client;
pub use error::{Error, ErrorKind};
pub use manifest::LayerChoice;
pub use progress::{Event, Step};
pub use pull::inspect::Inspect;
pub use pull::{ArchiveForm, Init, Initramfs, Output};
pub use sinks::archive::Compression;
pub use sinks::layout::Layout;
