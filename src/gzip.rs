//! The gzip streams dockersave writes: layers compressed on their way into a registry, and
//! `--gzip` archives. zlib's deflate at the level asked for, except that a chunk that looks
//! incompressible (an already-compressed file, random data) is stored rather than searched:
//! deflate would spend most of its time finding nothing there and, at level 1, make the chunk
//! bigger. Input is cut into fixed chunks whatever the callers' writes, so the same bytes always
//! give the same stream (a layer pushed from any archive form becomes the same blob).
//!
//! It holds one chunk of input and one of output, never more, and knows nothing of what it
//! compresses.

use flate2::{Compress, Compression, Crc, FlushCompress, Status};
use std::io::{self, Write};

/// What the store-or-deflate choice is made on.
const CHUNK: usize = 32 * 1024;
/// deflate's output is passed on in pieces of at most this.
const OUTPUT: usize = 16 * 1024;

/// The gzip header: no name, no time, "unknown" system, so the same input gives the same bytes.
const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

pub struct GzipWriter<W: Write> {
    out: W,
    level: u32,
    /// Made for the first chunk that deflates, dropped when a stored stretch starts (deflate
    /// starts afresh after it, and its few hundred KiB are not held meanwhile).
    deflate: Option<Compress>,
    crc: Crc,
    input: Vec<u8>,
    output: Vec<u8>,
    header_written: bool,
}

impl<W: Write> GzipWriter<W> {
    pub fn new(out: W, level: u32) -> GzipWriter<W> {
        GzipWriter {
            out,
            level,
            deflate: None,
            crc: Crc::new(),
            input: Vec::with_capacity(CHUNK),
            output: Vec::with_capacity(OUTPUT),
            header_written: false,
        }
    }

    /// Compresses what is left, writes the trailer and returns the writer underneath.
    pub fn finish(mut self) -> io::Result<W> {
        self.compress_input(FlushCompress::Finish)?;
        let mut trailer = [0u8; 8];
        trailer[..4].copy_from_slice(&self.crc.sum().to_le_bytes());
        trailer[4..].copy_from_slice(&self.crc.amount().to_le_bytes());
        self.out.write_all(&trailer)?;
        Ok(self.out)
    }

    /// Deflates or stores the buffered input; with `Finish`, ends the deflate stream.
    fn compress_input(&mut self, flush: FlushCompress) -> io::Result<()> {
        if !self.header_written {
            self.out.write_all(&HEADER)?;
            self.header_written = true;
        }
        let input = std::mem::take(&mut self.input);
        self.crc.update(&input);
        let result = self.deflate_or_store(&input, flush);
        self.input = input;
        self.input.clear();
        result
    }

    fn deflate_or_store(&mut self, input: &[u8], flush: FlushCompress) -> io::Result<()> {
        let finish = matches!(flush, FlushCompress::Finish);
        if looks_incompressible(input) || (finish && input.is_empty() && self.deflate.is_none()) {
            if let Some(mut deflate) = self.deflate.take() {
                // Stored blocks go between deflate's own, so its output must end on a byte
                // boundary (a sync flush), and it must start afresh after them: its matches
                // may not reach back past bytes it never saw.
                self.run(&mut deflate, &[], FlushCompress::Sync)?;
            }
            for block in input.chunks(usize::from(u16::MAX)) {
                let len = block.len() as u16;
                let mut header = [0u8; 5];
                header[1..3].copy_from_slice(&len.to_le_bytes());
                header[3..].copy_from_slice(&(!len).to_le_bytes());
                self.out.write_all(&header)?;
                self.out.write_all(block)?;
            }
            if finish {
                // The last block, empty, marked final.
                self.out.write_all(&[1, 0, 0, 0xff, 0xff])?;
            }
            return Ok(());
        }
        let level = self.level;
        let mut deflate = self
            .deflate
            .take()
            .unwrap_or_else(|| Compress::new(Compression::new(level), false));
        let result = self.run(&mut deflate, input, flush);
        self.deflate = Some(deflate);
        result
    }

    /// Feeds `input` to deflate, writing out what it produces, until all of it is taken (and,
    /// with a flush, flushed).
    fn run(
        &mut self,
        deflate: &mut Compress,
        mut input: &[u8],
        flush: FlushCompress,
    ) -> io::Result<()> {
        loop {
            self.output.clear();
            let before = deflate.total_in();
            let status = deflate
                .compress_vec(input, &mut self.output, flush)
                .map_err(io::Error::other)?;
            let taken = (deflate.total_in() - before) as usize;
            input = &input[taken..];
            self.out.write_all(&self.output)?;
            let room_left = self.output.len() < self.output.capacity();
            match status {
                Status::StreamEnd => return Ok(()),
                // Done once all input is taken and deflate had room to spare for what it holds.
                _ if input.is_empty() && room_left && !matches!(flush, FlushCompress::Finish) => {
                    return Ok(())
                }
                Status::BufError if taken == 0 && self.output.is_empty() => {
                    return Err(io::Error::other("deflate made no progress"))
                }
                Status::Ok | Status::BufError => {}
            }
        }
    }
}

impl<W: Write> Write for GzipWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(CHUNK - self.input.len());
        self.input.extend_from_slice(&buf[..n]);
        if self.input.len() == CHUNK {
            self.compress_input(FlushCompress::None)?;
        }
        Ok(n)
    }

    /// Flushes what is already compressed; a partial chunk waits for the rest of its chunk (or
    /// `finish`), so that flushes cannot change the stream's bytes.
    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// Whether deflate would gain next to nothing on `chunk`: the entropy of its bytes (every
/// second one, which is plenty to tell) is close to 8 bits. Compressed and random data measure
/// about 7.99; text 4–5, machine code about 6. Short chunks (the end of a stream) are
/// compressed.
fn looks_incompressible(chunk: &[u8]) -> bool {
    if chunk.len() < CHUNK / 4 {
        return false;
    }
    let mut counts = [0u32; 256];
    for &byte in chunk.iter().step_by(2) {
        counts[usize::from(byte)] += 1;
    }
    let n = f64::from(chunk.len().div_ceil(2) as u32);
    let sum: f64 = counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| f64::from(c) * f64::from(c).log2())
        .sum();
    n.log2() - sum / n >= 7.9
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn gzip(data: &[u8], level: u32, piece: usize) -> Vec<u8> {
        let mut writer = GzipWriter::new(Vec::new(), level);
        for part in data.chunks(piece) {
            writer.write_all(part).unwrap();
        }
        writer.finish().unwrap()
    }

    fn gunzip(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(data)
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    /// Bytes that look random (a xorshift generator), then text, then random again.
    fn mixed() -> Vec<u8> {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut data = Vec::new();
        for _ in 0..40_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            data.extend_from_slice(&x.to_le_bytes());
        }
        for i in 0..5_000 {
            data.extend_from_slice(format!("line {i} of some text\n").as_bytes());
        }
        let random = data[..100_000].to_vec();
        data.extend_from_slice(&random);
        data
    }

    #[test]
    fn round_trips_and_stores_what_does_not_compress() {
        let data = mixed();
        for level in [1, 6] {
            let packed = gzip(&data, level, 10_000);
            assert_eq!(gunzip(&packed), data);
            // The random parts (420,000 bytes) cost at most stored-block overhead; the text
            // shrinks.
            assert!(packed.len() < 420_000 + 40_000, "{}", packed.len());
        }
        // Random bytes alone: stored, a few bytes of framing per 64 KiB (level 1 deflate would
        // add 5%).
        let random = &data[..5 * CHUNK];
        let packed = gzip(random, 1, 4096);
        assert_eq!(gunzip(&packed), random);
        assert!(packed.len() <= random.len() + 100, "{}", packed.len());
        assert_eq!(gunzip(&gzip(b"", 1, 1)), b"");
        assert_eq!(gunzip(&gzip(b"short", 1, 1)), b"short");
    }

    #[test]
    fn the_same_bytes_give_the_same_stream_whatever_the_writes() {
        let data = mixed();
        let whole = gzip(&data, 1, data.len());
        assert_eq!(gzip(&data, 1, 1000), whole);
        assert_eq!(gzip(&data, 1, 65_537), whole);
    }

    #[test]
    fn entropy_tells_random_from_text() {
        let data = mixed();
        assert!(looks_incompressible(&data[..CHUNK]));
        assert!(!looks_incompressible(&data[320_000..320_000 + CHUNK]));
        assert!(!looks_incompressible(&[0u8; CHUNK]));
    }
}
