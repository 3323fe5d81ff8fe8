//! Layer blobs handed to a consumer one at a time, in the order it applies them, while the next
//! ones download ahead: the consumer's current blob streams straight from the network (or the
//! cache); helper threads fetch up to two blobs ahead into spool files, which the consumer
//! reads while they are still growing. So the link stays busy while a layer is unpacked, and
//! disk use is bounded by the blobs in flight, not the image.
//!
//! Nothing here inflates or verifies: the consumer runs each blob through the layer pipeline,
//! which checks digests as it reads. It serves the sinks that must apply layers in order
//! (`--rootfs`, `--flatten`); the archive writer has its own arrangement, which inflates
//! several layers at once on both cores and places each in the archive when its turn comes
//! (`sinks::archive`), and measured faster for a CPU-bound pull. A blob read from the network or a spool is copied into the
//! cache (when there is one) and kept there only if the consumer accepted it.

use crate::cache::{self, Cache};
use crate::error::Error;
use crate::locks::lock;
use crate::manifest::Descriptor;
use crate::progress::Step;
use crate::registry::Registry;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};

/// Where the blobs come from.
pub struct Blobs<'a> {
    pub registry: &'a Registry,
    pub cache: Option<&'a Cache>,
    pub layers: &'a [Descriptor],
    /// A directory of this run's for blobs that arrive before their turn.
    pub spool_dir: &'a crate::outfile::Dir,
}

/// Blobs in flight at once, the consumer's own included (Docker also pulls three at a time).
pub const IN_FLIGHT: usize = 3;
const CHUNK: usize = 64 * 1024;

/// Calls `consume(layer, blob)` for each layer index of `order`, in that order, with a reader
/// of the layer's blob. Stops at the first error, which is returned.
pub fn in_order(
    blobs: &Blobs,
    order: &[usize],
    consume: &mut dyn FnMut(usize, &mut (dyn Read + Send)) -> Result<(), Error>,
) -> Result<(), Error> {
    let cached: Vec<Option<File>> = match blobs.cache {
        Some(cache) => order
            .iter()
            .map(|&i| cache.get(&blobs.layers[i].digest, blobs.layers[i].size))
            .collect(),
        None => order.iter().map(|_| None).collect(),
    };
    let shared = Shared {
        slots: order.iter().map(|_| Slot::default()).collect(),
        window: Mutex::new(Window {
            current: 0,
            over: false,
        }),
        moved: Condvar::new(),
        stop: AtomicBool::new(false),
    };
    // Cached blobs need no download.
    for (slot, cached) in shared.slots.iter().zip(&cached) {
        if cached.is_some() {
            slot.claimed.store(true, Ordering::SeqCst);
        }
    }
    std::thread::scope(|scope| {
        for _ in 1..IN_FLIGHT.min(order.len()) {
            scope.spawn(|| helper(blobs, order, &shared));
        }
        let result = consume_all(blobs, order, cached, &shared, consume);
        shared.stop.store(true, Ordering::SeqCst);
        lock(&shared.window).over = true;
        shared.moved.notify_all();
        result
    })
}

struct Shared {
    slots: Vec<Slot>,
    window: Mutex<Window>,
    /// Signalled when the consumer moves on or stops.
    moved: Condvar,
    stop: AtomicBool,
}

struct Window {
    /// The position in `order` the consumer is on.
    current: usize,
    over: bool,
}

#[derive(Default)]
struct Slot {
    /// Taken by whoever fetches the blob: the consumer (streaming) or a helper (spooling).
    claimed: AtomicBool,
    progress: Mutex<Progress>,
    grew: Condvar,
}

#[derive(Default)]
struct Progress {
    spool: Option<PathBuf>,
    written: u64,
    done: bool,
    error: Option<Error>,
}

fn consume_all(
    blobs: &Blobs,
    order: &[usize],
    mut cached: Vec<Option<File>>,
    shared: &Shared,
    consume: &mut dyn FnMut(usize, &mut (dyn Read + Send)) -> Result<(), Error>,
) -> Result<(), Error> {
    for (position, &layer) in order.iter().enumerate() {
        lock(&shared.window).current = position;
        shared.moved.notify_all();
        let slot = &shared.slots[position];
        let blob = &blobs.layers[layer];
        let what = format!(
            "layer {}/{} ({})",
            layer + 1,
            blobs.layers.len(),
            blob.digest
        );
        if let Some(file) = cached[position].take() {
            blobs.registry.progress().step(layer, Step::Cached);
            consume(layer, &mut io::BufReader::with_capacity(CHUNK, file))?;
            continue;
        }
        let mut stream: Box<dyn Read + Send + '_> = if !slot.claimed.swap(true, Ordering::SeqCst) {
            Box::new(
                blobs
                    .registry
                    .blob_stream(&blob.digest, blob.size, &what, Some(layer))?,
            )
        } else {
            Box::new(Growing {
                slot,
                file: None,
                at: 0,
            })
        };
        let result = cache::filling(blobs.cache, &blob.digest, &mut stream, |body| {
            consume(layer, body)
        });
        drop(stream);
        let mut progress = lock(&slot.progress);
        if let Some(spool) = progress.spool.take() {
            let _ = fs::remove_file(spool);
        }
        if let Err(e) = result {
            // A helper's download error is the cause; the consumer only saw it fail.
            return Err(progress.error.take().unwrap_or(e));
        }
    }
    Ok(())
}

/// A helper thread: fetches unclaimed blobs up to `IN_FLIGHT - 1` positions ahead of the
/// consumer into spool files, until there are none left or the consumer stops.
fn helper(blobs: &Blobs, order: &[usize], shared: &Shared) {
    loop {
        let position = {
            let mut window = lock(&shared.window);
            loop {
                if window.over {
                    return;
                }
                let end = (window.current + IN_FLIGHT).min(order.len());
                let free = (window.current + 1..end)
                    .find(|&p| !shared.slots[p].claimed.swap(true, Ordering::SeqCst));
                if let Some(position) = free {
                    break position;
                }
                if end == order.len()
                    && shared.slots[window.current..]
                        .iter()
                        .all(|s| s.claimed.load(Ordering::SeqCst))
                {
                    return;
                }
                window = shared.moved.wait(window).unwrap_or_else(|p| p.into_inner());
            }
        };
        let slot = &shared.slots[position];
        let result = spool(blobs, order[position], slot, &shared.stop);
        let mut progress = lock(&slot.progress);
        progress.done = true;
        if let Err(e) = result {
            progress.error = Some(e);
        }
        drop(progress);
        slot.grew.notify_all();
    }
}

/// Downloads one blob into a spool file, telling the slot how far it got after every chunk.
fn spool(blobs: &Blobs, layer: usize, slot: &Slot, stop: &AtomicBool) -> Result<(), Error> {
    let blob = &blobs.layers[layer];
    // By position: an image may hold the same blob twice.
    let name = layer.to_string();
    let path = blobs.spool_dir.join(&name);
    let mut file = blobs.spool_dir.create_file(name.as_ref())?;
    lock(&slot.progress).spool = Some(path.clone());
    let what = format!(
        "layer {}/{} ({})",
        layer + 1,
        blobs.layers.len(),
        blob.digest
    );
    let body = blobs
        .registry
        .blob_stream(&blob.digest, blob.size, &what, Some(layer))?;
    // No more than the manifest promises (and one byte to notice more): a registry that
    // streams without end must not fill the disk with a spool.
    let mut body = body.take(blob.size.saturating_add(1));
    let mut buf = vec![0u8; CHUNK];
    loop {
        if stop.load(Ordering::SeqCst) || crate::interrupt::requested() {
            return Err(Error::Invalid {
                what,
                detail: "the download was abandoned".into(),
            });
        }
        let n = match body.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(Error::Network {
                    host: blobs.registry.host().to_string(),
                    detail: format!("download of {what} broke off: {e}"),
                })
            }
        };
        file.write_all(&buf[..n]).map_err(|e| Error::io(&path, e))?;
        lock(&slot.progress).written += n as u64;
        slot.grew.notify_all();
    }
}

/// Reads a spool file while a helper is still writing it.
struct Growing<'s> {
    slot: &'s Slot,
    file: Option<File>,
    at: u64,
}

impl Read for Growing<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut progress = lock(&self.slot.progress);
        loop {
            if progress.error.is_some() {
                return Err(io::Error::other("the download failed"));
            }
            if self.file.is_none() {
                if let Some(path) = &progress.spool {
                    self.file = Some(File::open(path)?);
                }
            }
            let available = progress.written - self.at;
            if available > 0 {
                if let Some(file) = &self.file {
                    let want = buf
                        .len()
                        .min(usize::try_from(available).unwrap_or(usize::MAX));
                    drop(progress);
                    let n = file.read_at(&mut buf[..want], self.at)?;
                    self.at += n as u64;
                    return Ok(n);
                }
            }
            if progress.done {
                return Ok(0);
            }
            progress = self
                .slot
                .grew
                .wait(progress)
                .unwrap_or_else(|p| p.into_inner());
        }
    }
}
