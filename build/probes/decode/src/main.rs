//! `decode FILE REPEAT`: decodes FILE (gzip or zstd, by the decoder this binary was built
//! with; without one, FILE as it is) REPEAT times through 64 KiB buffers, as dockersave's layer
//! pipeline does, hashes what comes out with sha256, and prints the digest. The benchmark
//! times it; nothing else is measured here.

use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{self, BufReader, Read};

const BUFFER: usize = 64 * 1024;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(path), Some(repeat)) = (args.get(1), args.get(2).and_then(|n| n.parse().ok())) else {
        eprintln!("usage: decode FILE REPEAT");
        std::process::exit(2);
    };
    let mut hex = String::new();
    for _ in 0..repeat {
        match run(path) {
            Ok(digest) => hex = digest,
            Err(e) => {
                eprintln!("decode: {path}: {e}");
                std::process::exit(1);
            }
        }
    }
    println!("{hex}");
}

fn run(path: &str) -> io::Result<String> {
    let file = BufReader::with_capacity(BUFFER, File::open(path)?);
    let mut hash = Sha256::new();
    let mut buffer = vec![0; BUFFER];
    let mut decoded = decoder(file)?;
    loop {
        let n = decoded.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        hash.update(&buffer[..n]);
    }
    Ok(hash.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(any(feature = "zlib-rs", feature = "miniz"))]
fn decoder(file: BufReader<File>) -> io::Result<Box<dyn Read>> {
    Ok(Box::new(flate2::bufread::MultiGzDecoder::new(file)))
}

#[cfg(feature = "ruzstd")]
fn decoder(file: BufReader<File>) -> io::Result<Box<dyn Read>> {
    let decoder = ruzstd::decoding::StreamingDecoder::new(file).map_err(io::Error::other)?;
    Ok(Box::new(decoder))
}

#[cfg(feature = "libzstd")]
fn decoder(file: BufReader<File>) -> io::Result<Box<dyn Read>> {
    Ok(Box::new(Zstd::new(file)))
}

#[cfg(not(any(
    feature = "zlib-rs",
    feature = "miniz",
    feature = "ruzstd",
    feature = "libzstd"
)))]
fn decoder(file: BufReader<File>) -> io::Result<Box<dyn Read>> {
    Ok(Box::new(file))
}

/// libzstd's streaming decoder, through zstd-safe's thin bindings as dockersave calls it.
#[cfg(feature = "libzstd")]
struct Zstd {
    input: BufReader<File>,
    context: zstd_safe::DCtx<'static>,
    held: Vec<u8>,
    start: usize,
    end: usize,
}

#[cfg(feature = "libzstd")]
impl Zstd {
    fn new(input: BufReader<File>) -> Zstd {
        Zstd {
            input,
            context: zstd_safe::DCtx::create(),
            held: vec![0; BUFFER],
            start: 0,
            end: 0,
        }
    }
}

#[cfg(feature = "libzstd")]
impl Read for Zstd {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.start == self.end {
                self.end = self.input.read(&mut self.held)?;
                self.start = 0;
                if self.end == 0 {
                    return Ok(0);
                }
            }
            let mut input = zstd_safe::InBuffer::around(&self.held[self.start..self.end]);
            let mut output = zstd_safe::OutBuffer::around(out);
            self.context
                .decompress_stream(&mut output, &mut input)
                .map_err(|code| io::Error::other(zstd_safe::get_error_name(code)))?;
            self.start += input.pos();
            if output.pos() > 0 {
                return Ok(output.pos());
            }
        }
    }
}
