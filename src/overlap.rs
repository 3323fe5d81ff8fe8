//! The second core: a layer's output written on a thread of its own while the pipeline inflates
//! and hashes (`write_behind`), or its tar read ahead on a thread of its own while files are
//! made from it (`read_ahead`), a few fixed buffers between them.
//!
//! Built with the "overlap" feature (default); `overlap_off.rs` stands in with the direct calls,
//! so the minimal build keeps its size. No async runtime: plain scoped threads and a bounded
//! queue. Nothing here knows layers, files or registries; it moves bytes in order and hands
//! each side's failure to the other.

use crate::error::Error;
use std::io::{self, Read, Write};
use std::path::Path;

/// Buffers in flight between a layer's pipeline and the thread on its other side, and their
/// size: the declared cost of overlapping them (256 KiB a layer; an archive has three layers
/// in flight at once).
const BEHIND: usize = 4;
const BEHIND_BUFFER: usize = 64 * 1024;

/// Runs `produce` with a writer whose bytes reach `out` on a thread of its own, at most
/// `BEHIND` buffers behind: the writes (copying into the page cache, compressing with
/// `--gzip`, waiting on a full disk queue) overlap the inflating and hashing instead of
/// following each buffer of it. The bytes reach `out` in order; a failure of either side stops
/// both, and the writer's own error (`out_path` names the file) is the one returned, not the
/// broken hand-off it caused.
pub fn write_behind<T>(
    out: &mut (dyn Write + Send),
    out_path: &Path,
    produce: impl FnOnce(&mut (dyn Write + Send)) -> Result<T, Error>,
) -> Result<T, Error> {
    write_behind_from(out, out_path, &|| 1, produce)
}

/// `write_behind` from the first write at which fewer pipelines than cores are busy (`busy`
/// counts them, this one included); until then the writes go straight into `out` on the
/// producer's own thread. For a pipeline that shares the cores with others while they last
/// (an archive's layers): a second thread only pays once a core is idle, and the switch is
/// one way, mid-layer, without a copy of what was written before.
pub fn write_behind_from<T>(
    out: &mut (dyn Write + Send),
    out_path: &Path,
    busy: &(dyn Fn() -> usize + Sync),
    produce: impl FnOnce(&mut (dyn Write + Send)) -> Result<T, Error>,
) -> Result<T, Error> {
    if !two_cores() {
        return produce(out);
    }
    let (mut produce, mut value) = (Some(produce), None);
    write_behind_once(out, out_path, busy, &mut |to| {
        if let Some(produce) = produce.take() {
            value = Some(produce(to)?);
        }
        Ok(())
    })?;
    value.ok_or_else(|| Error::io(out_path, io::Error::other("nothing was produced")))
}

/// How many cores this process may run on (its affinity, as `taskset` sets it, and cgroup
/// quotas count); 1 if that cannot be known.
fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Whether this process may run on more than one core: on one, handing buffers between threads
/// only adds their copying, and the calls go straight through.
fn two_cores() -> bool {
    cores() > 1
}

/// `write_behind_from`, compiled once whatever the caller produces.
fn write_behind_once(
    out: &mut (dyn Write + Send),
    out_path: &Path,
    busy: &(dyn Fn() -> usize + Sync),
    produce: &mut dyn FnMut(&mut (dyn Write + Send)) -> Result<(), Error>,
) -> Result<(), Error> {
    let (filled, empty) = (Queue::default(), Queue::default());
    std::thread::scope(|scope| {
        let mut handoff = Handoff {
            out: Some(out),
            busy,
            scope,
            writer: None,
            buf: Vec::new(),
            filled: &filled,
            empty: &empty,
        };
        let produced = produce(&mut handoff);
        let (sent, written) = handoff.finish();
        match (produced, sent, written) {
            (_, _, Err(e)) => Err(Error::io(out_path, e)),
            (Err(e), _, Ok(())) => Err(e),
            (Ok(()), sent, Ok(())) => sent.map_err(|e| Error::io(out_path, e)),
        }
    })
}

/// The writing thread of `write_behind`: the filled buffers into `out`, in order, each handed
/// back emptied.
fn write_out(out: &mut (dyn Write + Send), filled: &Queue, empty: &Queue) -> io::Result<()> {
    let written = (|| {
        while let Some(Ok(mut buf)) = filled.pop() {
            out.write_all(&buf)?;
            buf.clear();
            empty.offer(Ok(buf));
        }
        out.flush()
    })();
    // On failure the producer's next hand-over fails, and it stops.
    filled.close();
    written
}

/// The producing end of `write_behind`: writes straight into `out` while every core is busy,
/// then moves `out` to a writing thread and from there on fills a buffer and hands it over
/// when full, taking an emptied one back (or a new one while fewer than `BEHIND` exist).
struct Handoff<'scope, 'env> {
    /// `out` while the writes go straight into it.
    out: Option<&'env mut (dyn Write + Send)>,
    busy: &'env (dyn Fn() -> usize + Sync),
    scope: &'scope std::thread::Scope<'scope, 'env>,
    /// The writing thread, once started.
    writer: Option<std::thread::ScopedJoinHandle<'scope, io::Result<()>>>,
    buf: Vec<u8>,
    filled: &'env Queue,
    empty: &'env Queue,
}

impl Handoff<'_, '_> {
    fn send(&mut self) -> io::Result<()> {
        let next = match self.empty.take() {
            Some(Ok(buf)) => buf,
            _ => Vec::with_capacity(BEHIND_BUFFER),
        };
        let buf = std::mem::replace(&mut self.buf, next);
        self.filled
            .push(Ok(buf))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the writing thread stopped"))
    }

    /// Hands over what is left and waits for the writing thread: the hand-over's result and
    /// the writer's.
    fn finish(mut self) -> (io::Result<()>, io::Result<()>) {
        if let Some(out) = self.out.take() {
            return (Ok(()), out.flush());
        }
        let sent = match self.buf.is_empty() {
            true => Ok(()),
            false => self.send(),
        };
        self.filled.close();
        let written = match self.writer.take() {
            Some(writer) => writer
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("the writing thread stopped"))),
            None => Ok(()),
        };
        (sent, written)
    }
}

impl Write for Handoff<'_, '_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if let Some(out) = self.out.take() {
            if (self.busy)() >= cores() {
                let wrote = out.write(data);
                self.out = Some(out);
                return wrote;
            }
            let (filled, empty) = (self.filled, self.empty);
            self.writer = Some(self.scope.spawn(move || write_out(out, filled, empty)));
            self.buf = Vec::with_capacity(BEHIND_BUFFER);
        }
        let n = data.len().min(BEHIND_BUFFER - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == BEHIND_BUFFER {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Runs `consume` over what `reader` yields, read on a thread of its own at most `BEHIND`
/// buffers ahead: a layer's inflating and hashing overlap what is done with its tar (files
/// made for `--rootfs`, entries merged for `--flatten`). `consume` may stop before the end: the
/// reading thread then stops at its next hand-over, and what it had read is gone from this
/// side but was read through `reader` (a `LayerReader` has hashed it; its `finish` reads the
/// rest). A read error reaches `consume` as its reader's error.
pub fn read_ahead<T>(
    reader: &mut (dyn Read + Send),
    consume: impl FnOnce(&mut dyn Read) -> T,
) -> T {
    if !two_cores() {
        return consume(reader);
    }
    let (mut consume, mut value) = (Some(consume), None);
    read_ahead_once(reader, &mut |from| {
        if let Some(consume) = consume.take() {
            value = Some(consume(from));
        }
    });
    match value {
        Some(value) => value,
        None => unreachable!("read_ahead_once calls its consumer once"),
    }
}

/// `read_ahead`, compiled once whatever the caller consumes.
fn read_ahead_once(reader: &mut (dyn Read + Send), consume: &mut dyn FnMut(&mut dyn Read)) {
    let (filled, empty) = (Queue::default(), Queue::default());
    std::thread::scope(|scope| {
        scope.spawn(|| {
            loop {
                let mut buf = match empty.take() {
                    Some(Ok(buf)) => buf,
                    _ => Vec::new(),
                };
                buf.resize(BEHIND_BUFFER, 0);
                let mut got = 0;
                // Whole buffers where the reader gives little at a time (an inflater's output).
                let failed = loop {
                    match reader.read(&mut buf[got..]) {
                        Ok(0) => break None,
                        Ok(n) => got += n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => break Some(e),
                    }
                    if got == BEHIND_BUFFER {
                        break None;
                    }
                };
                buf.truncate(got);
                let more = got == BEHIND_BUFFER && failed.is_none();
                if got > 0 && filled.push(Ok(buf)).is_err() {
                    break;
                }
                if let Some(e) = failed {
                    let _ = filled.push(Err(e));
                }
                if !more {
                    break;
                }
            }
            filled.close();
        });
        let mut ahead = Ahead {
            filled: &filled,
            empty: &empty,
            current: Vec::new(),
            at: 0,
        };
        consume(&mut ahead);
        // The reading thread stops at its next hand-over.
        filled.close();
    })
}

/// The consuming end of `read_ahead`.
struct Ahead<'a> {
    filled: &'a Queue,
    empty: &'a Queue,
    current: Vec<u8>,
    at: usize,
}

impl Read for Ahead<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.at == self.current.len() {
            let used = std::mem::take(&mut self.current);
            if used.capacity() >= BEHIND_BUFFER {
                self.empty.offer(Ok(used));
            }
            match self.filled.pop() {
                Some(Ok(buf)) => (self.current, self.at) = (buf, 0),
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.current.len() - self.at);
        out[..n].copy_from_slice(&self.current[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// A bounded queue of buffers between two threads: `BEHIND` at most, `push` waiting for room
/// and `pop` for an item until the queue is closed. (One small type for both directions: std's
/// channels cost the minimal build more than its margin.)
#[derive(Default)]
struct Queue {
    state: std::sync::Mutex<QueueState>,
    changed: std::sync::Condvar,
}

#[derive(Default)]
struct QueueState {
    /// At most `BEHIND`, oldest first (a `Vec`: fewer bytes of code than a `VecDeque`).
    items: Vec<io::Result<Vec<u8>>>,
    closed: bool,
}

impl Queue {
    /// Waits for room; gives the item back once the queue is closed.
    fn push(&self, item: io::Result<Vec<u8>>) -> Result<(), io::Result<Vec<u8>>> {
        let mut state = crate::locks::lock(&self.state);
        while state.items.len() >= BEHIND && !state.closed {
            state = self.changed.wait(state).unwrap_or_else(|p| p.into_inner());
        }
        if state.closed {
            return Err(item);
        }
        state.items.push(item);
        self.changed.notify_all();
        Ok(())
    }

    /// Adds the item if there is room, else drops it (a buffer to reuse).
    fn offer(&self, item: io::Result<Vec<u8>>) {
        let mut state = crate::locks::lock(&self.state);
        if state.items.len() < BEHIND && !state.closed {
            state.items.push(item);
        }
    }

    /// Waits for an item; `None` once the queue is closed and empty.
    fn pop(&self) -> Option<io::Result<Vec<u8>>> {
        let mut state = crate::locks::lock(&self.state);
        loop {
            if !state.items.is_empty() {
                self.changed.notify_all();
                return Some(state.items.remove(0));
            }
            if state.closed {
                return None;
            }
            state = self.changed.wait(state).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// An item if one is there, without waiting.
    fn take(&self) -> Option<io::Result<Vec<u8>>> {
        let mut state = crate::locks::lock(&self.state);
        (!state.items.is_empty()).then(|| state.items.remove(0))
    }

    fn close(&self) {
        crate::locks::lock(&self.state).closed = true;
        self.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that fails once it would hold more than `limit` bytes (a disk that fills).
    struct Limited {
        kept: Vec<u8>,
        limit: usize,
    }

    impl Write for Limited {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.kept.len() + buf.len() > self.limit {
                return Err(io::Error::other("disk full"));
            }
            self.kept.extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn writing_behind_keeps_order_and_reports_the_writers_error() {
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let path = Path::new("out");
        let mut out = Limited {
            kept: Vec::new(),
            limit: usize::MAX,
        };
        let n = write_behind(&mut out, path, |w| {
            for chunk in data.chunks(65_536 + 7) {
                w.write_all(chunk).map_err(|e| Error::io(path, e))?;
            }
            Ok(42)
        });
        assert_eq!(n.unwrap(), 42);
        assert!(out.kept == data, "the bytes arrive whole and in order");
        // The disk fills: its error, not the broken hand-off the producer then meets.
        let mut full = Limited {
            kept: Vec::new(),
            limit: 1_000_000,
        };
        let failed = write_behind(&mut full, path, |w| {
            for chunk in data.chunks(65_536) {
                w.write_all(chunk).map_err(|e| Error::io(path, e))?;
            }
            Ok(())
        });
        assert!(failed.unwrap_err().to_string().contains("disk full"));
        // The producer fails: its error, and the writer stops with it.
        let mut out = Limited {
            kept: Vec::new(),
            limit: usize::MAX,
        };
        let failed: Result<(), Error> = write_behind(&mut out, path, |w| {
            w.write_all(&data[..300_000])
                .map_err(|e| Error::io(path, e))?;
            Err(Error::Invalid {
                what: "the layer".into(),
                detail: "bad".into(),
            })
        });
        assert!(failed.unwrap_err().to_string().contains("bad"));
    }

    #[test]
    fn reading_ahead_keeps_order_lets_the_consumer_stop_and_passes_errors_on() {
        let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 253) as u8).collect();
        let mut all = Vec::new();
        read_ahead(&mut &data[..], |r| r.read_to_end(&mut all)).unwrap();
        assert!(all == data);
        // The consumer stops after 100,000 bytes: the reader was read no further than the
        // buffers in flight, and the rest is left for the caller.
        let mut source = &data[..];
        let mut first = vec![0u8; 100_000];
        // (The threads themselves, whatever this machine's cores.)
        let mut done = None;
        read_ahead_once(&mut source, &mut |r| done = Some(r.read_exact(&mut first)));
        done.unwrap().unwrap();
        assert!(first[..] == data[..100_000]);
        assert!(source.len() + 100_000 + (BEHIND + 2) * BEHIND_BUFFER >= data.len());
        assert!(source.len() < data.len() - 100_000);
        // A read error reaches the consumer.
        struct Broken;
        impl Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::other("connection reset"))
            }
        }
        let err = read_ahead(&mut Broken, |r| r.read(&mut [0u8; 10])).unwrap_err();
        assert_eq!(err.to_string(), "connection reset");
    }
}
