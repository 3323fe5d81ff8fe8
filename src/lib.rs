//! dockersave: fetch a container image from a Docker/OCI registry without Docker and write an
//! archive that `docker load` accepts, or the image's root filesystem.
//!
//! The modules follow the data: `reference` names the image, `registry` (http, proxy, auth,
//! credentials, client) fetches it, `manifest` picks what to fetch, `fetch` orders the layer
//! downloads, `pipeline` (with `decompress` and `digest`) turns each layer blob into a verified
//! tar, `cache` keeps verified blobs, `layer_tar` reads a layer as filesystem changes (`paths` keeps
//! what is known per path), the
//! `sinks` write them (`archive`: Docker's save format; `rootfs` through `confined`, which keeps
//! every write inside its directory; `flatten`; `git`), `pull` drives them; `push` reads an archive
//! back (`source`) and uploads it (`registry::upload`); `cli` reads the command line into a `Command` (pull, inspect, push, help,
//! version), each with its own options struct defined by the module that runs it; only `main`
//! imports `cli`. The binary (`main.rs`) only asks for credentials and maps errors to exit codes.
//!
//! This is a library so that the parsers can be fuzzed (`fuzz/`); it is not a stable API.

pub mod cache;
pub mod cli;
pub mod confined;
pub mod copy;
pub mod decompress;
pub mod digest;
pub mod error;
pub mod fetch;
#[doc(hidden)]
pub mod fuzzing;
pub mod gzip;
pub mod host;
pub mod interrupt;
pub mod layer_tar;
pub mod manifest;
pub mod partial;
pub mod paths;
pub mod pipeline;
pub mod pretty;
pub mod progress;
pub mod pull;
pub mod push;
pub mod reference;
pub mod registry;
pub mod signature;
pub mod sinks;

/// Locks `mutex`, even one a panicking thread left poisoned: what dockersave keeps behind its
/// locks (progress lines, slots, buffers, a header) is never left half-written by a panic.
pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}
