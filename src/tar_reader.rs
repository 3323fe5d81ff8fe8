//! A tar stream read the way Go's `archive/tar` reads it — the reader Docker, containerd and
//! umoci unpack layers with — so that a layer means here exactly what it means to them.
//!
//! What that takes, each as Go does it: headers recognised by either checksum (unsigned, or the
//! signed one of old Unix tars) and by their magic (V7, USTAR, PAX, GNU, STAR); numbers in
//! octal or base-256; PAX records split by their length prefix, not at newlines (a binary
//! `security.capability` holds a `\n`), and honoured for `path`, `linkpath`, `size`, `uid`,
//! `gid`, `uname`, `gname`, `mtime` (signed, fractional) and `SCHILY.xattr.*`
//! (`LIBARCHIVE.xattr.*` as well, where no SCHILY record names the attribute); global PAX
//! headers skipped; GNU long names and links; no data read for header-only types whatever
//! their size field says; a NUL typeflag with a trailing `/` a directory; sparse files (GNU
//! `S`, PAX 0.0, 0.1 and 1.0) read as their content, holes as zeros, with their map given to
//! whoever wants to keep the holes. Files of any size stream.
//!
//! It never touches the disk and holds one header block, the extension records before an
//! entry (each at most `MAX_EXTENSION`) and a sparse map of at most `MAX_SPARSE_ENTRIES`
//! regions, whatever the stream claims. What an entry means to a filesystem (whiteouts, paths
//! that leave the tree, which types are allowed) is `layer_tar`'s business.

use crate::limits::{MAX_EXTENSION, MAX_SPARSE_ENTRIES};
use std::collections::BTreeMap;
use std::io::{self, Read};

const BLOCK: usize = 512;

/// One entry as Go's `tar.Reader.Next` returns it (the fields dockersave uses).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Header {
    pub name: Vec<u8>,
    pub linkname: Vec<u8>,
    /// The type flag; a NUL one is `b'0'` (or `b'5'` with a trailing `/`), as Go makes it.
    pub typeflag: u8,
    pub mode: i64,
    pub uid: i64,
    pub gid: i64,
    /// The content's size: for a sparse file, with its holes.
    pub size: i64,
    /// Seconds since the epoch (before it, negative) and nanoseconds within the second.
    pub mtime: i64,
    pub mtime_nsec: u32,
    pub devmajor: i64,
    pub devminor: i64,
    /// Extended attributes, each name once, in the order of their names.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// For a sparse file, where its data is: (offset, length) regions in order; the rest of
    /// `size` is holes.
    pub sparse: Option<Vec<(u64, u64)>>,
}

/// Why a stream is not a tar Go would read.
#[derive(Debug)]
pub enum Failure {
    /// The bytes are not a valid tar here: what is wrong.
    Malformed(String),
    /// Reading the stream failed (a broken download, a digest mismatch found below).
    Io(io::Error),
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Failure {
        Failure::Io(e)
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Malformed(why) => f.write_str(why),
            Failure::Io(e) => write!(f, "{e}"),
        }
    }
}

fn malformed<T>(why: impl Into<String>) -> Result<T, Failure> {
    Err(Failure::Malformed(why.into()))
}

pub struct Reader<R> {
    inner: Counting<R>,
    /// Bytes of the current entry's data not read yet, and the padding after them.
    remaining: u64,
    pad: u64,
    /// Set once the end (or a failure) is reached: nothing more is read.
    done: bool,
}

impl<R: Read> Reader<R> {
    pub fn new(inner: R) -> Reader<R> {
        Reader {
            inner: Counting { inner, at: 0 },
            remaining: 0,
            pad: 0,
            done: false,
        }
    }

    /// The next entry, with the extension records before it applied; `None` at the end of the
    /// archive (two zero blocks, or the stream's end between entries, as Go reads it).
    pub fn next(&mut self) -> Result<Option<Header>, Failure> {
        if self.done {
            return Ok(None);
        }
        let result = self.next_entry();
        if !matches!(result, Ok(Some(_))) {
            self.done = true;
        }
        result
    }

    /// Where in the stream the current entry's data starts (or, before any is read, where the
    /// reader is): an archive read again later seeks there.
    #[cfg(feature = "push")]
    pub fn position(&self) -> u64 {
        self.inner.at
    }

    /// The current entry's data as stored: for a sparse file, its data regions one after the
    /// other (`Expanded` puts the holes back). Empty for every type but regular files.
    pub fn data(&mut self) -> Data<'_, R> {
        Data { reader: self }
    }

    fn next_entry(&mut self) -> Result<Option<Header>, Failure> {
        let mut pax: Option<Pax> = None;
        let (mut long_name, mut long_link) = (None, None);
        loop {
            self.skip_rest()?;
            let Some(block) = self.header_block()? else {
                return Ok(None);
            };
            let raw = parse_block(&block)?;
            self.start_data(raw.typeflag, raw.header.size)?;
            match raw.typeflag {
                b'x' | b'g' => {
                    let records = parse_pax(&self.special()?)?;
                    if raw.typeflag == b'g' {
                        // Go hands a global header to its caller as an entry, and Docker skips
                        // it: it changes nothing, and what came before it no longer applies.
                        (pax, long_name, long_link) = (None, None, None);
                    } else {
                        pax = Some(records);
                    }
                }
                b'L' => long_name = Some(until_nul(self.special()?)),
                b'K' => long_link = Some(until_nul(self.special()?)),
                _ => {
                    let mut header = raw.header;
                    if let Some(pax) = &pax {
                        pax.merge(&mut header)?;
                    }
                    if let Some(name) = long_name {
                        header.name = name;
                    }
                    if let Some(link) = long_link {
                        header.linkname = link;
                    }
                    if header.typeflag == 0 {
                        // Legacy archives mark a directory by a trailing slash.
                        header.typeflag = if header.name.ends_with(b"/") {
                            b'5'
                        } else {
                            b'0'
                        };
                    }
                    // PAX records may have changed the size.
                    self.start_data(header.typeflag, header.size)?;
                    self.sparse_map(&mut header, &block, pax.as_ref())?;
                    return Ok(Some(header));
                }
            }
        }
    }

    /// Reads and drops what is left of the current entry, and its padding.
    fn skip_rest(&mut self) -> io::Result<()> {
        let left = self.remaining + self.pad;
        (self.remaining, self.pad) = (0, 0);
        let skipped = io::copy(&mut (&mut self.inner).take(left), &mut io::sink())?;
        if skipped != left {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the tar stream ends inside an entry",
            ));
        }
        Ok(())
    }

    /// The current entry's data is `size` bytes, none for a header-only type.
    fn start_data(&mut self, typeflag: u8, size: i64) -> Result<(), Failure> {
        let Ok(size) = u64::try_from(size) else {
            return malformed(format!("an entry has a negative size ({size})"));
        };
        let size = if header_only(typeflag) { 0 } else { size };
        self.remaining = size;
        self.pad = (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64;
        Ok(())
    }

    /// The next header block; `None` at the end of the archive. As Go: a zero block then the
    /// stream's end, or two zero blocks, end it; a zero block followed by anything else is
    /// malformed; the stream's end where a header should start ends it too.
    fn header_block(&mut self) -> Result<Option<[u8; BLOCK]>, Failure> {
        let mut block = [0u8; BLOCK];
        if !read_block(&mut self.inner, &mut block)? {
            return Ok(None);
        }
        if block.iter().all(|&b| b == 0) {
            if !read_block(&mut self.inner, &mut block)? || block.iter().all(|&b| b == 0) {
                return Ok(None);
            }
            return malformed(
                "a zero block is followed by a header, not by the end of the archive",
            );
        }
        Ok(Some(block))
    }

    /// The data of an extension record (PAX, GNU long name), at most `MAX_EXTENSION` bytes:
    /// refused before it is read when it claims more.
    fn special(&mut self) -> Result<Vec<u8>, Failure> {
        if self.remaining > MAX_EXTENSION {
            return malformed(format!(
                "an extension record claims {} bytes, over the {} KiB allowed",
                self.remaining,
                MAX_EXTENSION >> 10
            ));
        }
        let mut bytes = Vec::new();
        self.physical(self.remaining)?.read_to_end(&mut bytes)?;
        if bytes.len() as u64 != self.remaining {
            return Err(Failure::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the tar stream ends inside an extension record",
            )));
        }
        self.remaining = 0;
        Ok(bytes)
    }

    /// A reader of at most `n` of the current entry's data bytes.
    fn physical(&mut self, n: u64) -> Result<io::Take<&mut Counting<R>>, Failure> {
        Ok((&mut self.inner).take(n.min(self.remaining)))
    }

    /// Reads the current entry's data into `buf`, within what is left of it.
    fn read_physical(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = (buf.len() as u64).min(self.remaining) as usize;
        if want == 0 {
            return Ok(0);
        }
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the tar stream ends inside an entry's data",
            ));
        }
        self.remaining -= n as u64;
        Ok(n)
    }

    /// Sets up a sparse entry (GNU `S`, or PAX GNU.sparse records): its map, its real name and
    /// size, and the reader that puts the holes back.
    fn sparse_map(
        &mut self,
        header: &mut Header,
        block: &[u8; BLOCK],
        pax: Option<&Pax>,
    ) -> Result<(), Failure> {
        let regions = if header.typeflag == b'S' {
            self.old_gnu_sparse(header, block)?
        } else {
            match pax.map(|p| p.gnu_sparse(header)).transpose()?.flatten() {
                Some(Map::Records(regions)) => regions,
                Some(Map::InData) => self.sparse_map_in_data()?,
                None => return Ok(()),
            }
        };
        if header_only(header.typeflag) {
            return malformed("a sparse map on an entry that holds no data");
        }
        let Ok(size) = u64::try_from(header.size) else {
            return malformed("a sparse file of negative size");
        };
        let mut end = 0u64;
        for &(offset, length) in &regions {
            let Some(stop) = offset.checked_add(length) else {
                return malformed("a sparse region past the largest file size");
            };
            if offset < end || stop > size {
                return malformed(
                    "sparse regions out of order, overlapping or past the file's size",
                );
            }
            end = stop;
        }
        let stored: u64 = regions.iter().map(|(_, length)| length).sum();
        if stored != self.remaining {
            return malformed(format!(
                "a sparse map placing {stored} bytes of data, not the {} the entry holds",
                self.remaining
            ));
        }
        header.sparse = Some(regions);
        Ok(())
    }

    /// GNU's old sparse format: up to four regions in the header, more in extension blocks
    /// after it; the real size in the header.
    fn old_gnu_sparse(
        &mut self,
        header: &mut Header,
        block: &[u8; BLOCK],
    ) -> Result<Vec<(u64, u64)>, Failure> {
        if format(block)? != Format::Gnu {
            return malformed("a GNU sparse entry in a header that is not GNU's");
        }
        header.size = numeric(&block[483..495], "real size")?;
        let mut regions = Vec::new();
        let mut entries: &[u8] = &block[386..482];
        let mut extended = block[482] != 0;
        let mut extension = [0u8; BLOCK];
        loop {
            for entry in entries.chunks(24) {
                if entry[0] == 0 {
                    break;
                }
                push_region(
                    &mut regions,
                    numeric(&entry[..12], "sparse offset")?,
                    numeric(&entry[12..24], "sparse length")?,
                )?;
            }
            if !extended {
                return Ok(regions);
            }
            if !read_block(&mut self.inner, &mut extension)? {
                return Err(Failure::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the tar stream ends inside a sparse map",
                )));
            }
            entries = &extension[..504];
            extended = extension[504] != 0;
        }
    }

    /// PAX sparse format 1.0: the map is at the start of the data, decimal numbers one a line
    /// (the count, then offset and length of each region), padded to whole blocks. Read one
    /// number at a time; the count is trusted only up to `MAX_SPARSE_ENTRIES`.
    fn sparse_map_in_data(&mut self) -> Result<Vec<(u64, u64)>, Failure> {
        let mut block = [0u8; BLOCK];
        let mut at = BLOCK;
        let mut number = || -> Result<i64, Failure> {
            let mut digits = Vec::new();
            loop {
                if at == BLOCK {
                    if self.remaining < BLOCK as u64 {
                        return malformed("a sparse map longer than the entry's data");
                    }
                    self.inner.read_exact(&mut block)?;
                    self.remaining -= BLOCK as u64;
                    at = 0;
                }
                let byte = block[at];
                at += 1;
                if byte == b'\n' {
                    break;
                }
                if digits.len() > 20 {
                    return malformed("a number of a sparse map is too long");
                }
                digits.push(byte);
            }
            decimal(&digits).ok_or_else(|| Failure::Malformed("a sparse map of no number".into()))
        };
        let count = number()?;
        if count < 0 || count as u64 > MAX_SPARSE_ENTRIES as u64 {
            return malformed(format!(
                "a sparse map of {count} regions (at most {MAX_SPARSE_ENTRIES} are read)"
            ));
        }
        let mut regions = Vec::new();
        for _ in 0..count {
            let offset = number()?;
            let length = number()?;
            push_region(&mut regions, offset, length)?;
        }
        Ok(regions)
    }
}

/// The stream, counting what is read from it.
struct Counting<R> {
    inner: R,
    at: u64,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.at += n as u64;
        Ok(n)
    }
}

/// An entry's data as stored (see `Reader::data`).
pub struct Data<'a, R> {
    reader: &'a mut Reader<R>,
}

impl<R: Read> Read for Data<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.reader.read_physical(buf)
    }
}

/// A sparse file's content from its stored data regions (`data`) and its map: the regions at
/// their offsets, holes read as zeros, `size` bytes in all.
pub struct Expanded<'a> {
    data: &'a mut dyn Read,
    regions: &'a [(u64, u64)],
    size: u64,
    pos: u64,
    next: usize,
}

impl<'a> Expanded<'a> {
    pub fn new(data: &'a mut dyn Read, regions: &'a [(u64, u64)], size: u64) -> Expanded<'a> {
        Expanded {
            data,
            regions,
            size,
            pos: 0,
            next: 0,
        }
    }
}

impl Read for Expanded<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.size || buf.is_empty() {
            return Ok(0);
        }
        while self
            .regions
            .get(self.next)
            .is_some_and(|&(offset, length)| offset + length <= self.pos)
        {
            self.next += 1;
        }
        match self.regions.get(self.next).copied() {
            Some((offset, length)) if offset <= self.pos => {
                let want = (buf.len() as u64).min(offset + length - self.pos) as usize;
                let n = self.data.read(&mut buf[..want])?;
                if n == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "a sparse file's data ends before its map does",
                    ));
                }
                self.pos += n as u64;
                Ok(n)
            }
            next => {
                let hole_end = next.map_or(self.size, |(offset, _)| offset);
                let n = (buf.len() as u64).min(hole_end - self.pos) as usize;
                buf[..n].fill(0);
                self.pos += n as u64;
                Ok(n)
            }
        }
    }
}

/// Reads a whole block; `false` when the stream ends before its first byte.
fn read_block(inner: &mut impl Read, block: &mut [u8; BLOCK]) -> io::Result<bool> {
    let mut filled = 0;
    while filled < BLOCK {
        match inner.read(&mut block[filled..]) {
            Ok(0) if filled == 0 => return Ok(false),
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the tar stream ends inside a header",
                ))
            }
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// Types whose entries carry no data, whatever their size field says (Go's isHeaderOnlyType).
fn header_only(typeflag: u8) -> bool {
    matches!(typeflag, b'1' | b'2' | b'3' | b'4' | b'5' | b'6')
}

fn push_region(regions: &mut Vec<(u64, u64)>, offset: i64, length: i64) -> Result<(), Failure> {
    if regions.len() >= MAX_SPARSE_ENTRIES {
        return malformed(format!(
            "a sparse map of more than {MAX_SPARSE_ENTRIES} regions"
        ));
    }
    match (u64::try_from(offset), u64::try_from(length)) {
        (Ok(offset), Ok(length)) => {
            regions.push((offset, length));
            Ok(())
        }
        _ => malformed("a sparse region of negative offset or length"),
    }
}

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum Format {
    V7,
    Ustar,
    Gnu,
    Star,
}

/// The header's format, after checking its checksum both ways (Go's getFormat).
fn format(block: &[u8; BLOCK]) -> Result<Format, Failure> {
    let stored = octal(&block[148..156]).ok_or_else(|| {
        Failure::Malformed("a header whose checksum field is not a number".into())
    })?;
    let (mut unsigned, mut signed) = (0i64, 0i64);
    for (i, &byte) in block.iter().enumerate() {
        let byte = if (148..156).contains(&i) { b' ' } else { byte };
        unsigned += i64::from(byte);
        signed += i64::from(byte as i8);
    }
    if stored != unsigned && stored != signed {
        return malformed("a header whose checksum does not match (not a tar header)");
    }
    let (magic, version, trailer) = (&block[257..263], &block[263..265], &block[508..512]);
    Ok(match magic {
        b"ustar\0" if trailer == b"tar\0" => Format::Star,
        b"ustar\0" => Format::Ustar,
        b"ustar " if version == b" \0" => Format::Gnu,
        _ => Format::V7,
    })
}

/// A header block's fields, before extension records apply.
struct Raw {
    typeflag: u8,
    header: Header,
}

fn parse_block(block: &[u8; BLOCK]) -> Result<Raw, Failure> {
    let format = format(block)?;
    let typeflag = block[156];
    let mut header = Header {
        typeflag,
        name: until_nul(block[0..100].to_vec()),
        linkname: until_nul(block[157..257].to_vec()),
        size: numeric(&block[124..136], "size")?,
        mode: numeric(&block[100..108], "mode")?,
        uid: numeric(&block[108..116], "uid")?,
        gid: numeric(&block[116..124], "gid")?,
        mtime: numeric(&block[136..148], "mtime")?,
        ..Header::default()
    };
    if format != Format::V7 {
        header.devmajor = numeric(&block[329..337], "device major")?;
        header.devminor = numeric(&block[337..345], "device minor")?;
        let prefix = match format {
            Format::Ustar => until_nul(block[345..500].to_vec()),
            Format::Star => until_nul(block[345..476].to_vec()),
            Format::Gnu => gnu_prefix(block),
            Format::V7 => Vec::new(),
        };
        if !prefix.is_empty() {
            let mut name = prefix;
            name.push(b'/');
            name.extend_from_slice(&header.name);
            header.name = name;
        }
    }
    Ok(Raw { typeflag, header })
}

/// GNU headers have no prefix, but Go before 1.8 wrote one there, over the access and change
/// times: when those do not read as numbers and the field reads as ASCII, Go takes it as the
/// prefix (golang.org/issue/12594, 21005), and so does this reader.
fn gnu_prefix(block: &[u8; BLOCK]) -> Vec<u8> {
    let time = |field: &[u8]| field[0] == 0 || numeric(field, "time").is_ok();
    if time(&block[345..357]) && time(&block[357..369]) {
        return Vec::new();
    }
    let prefix = until_nul(block[345..500].to_vec());
    match prefix.is_ascii() {
        true => prefix,
        false => Vec::new(),
    }
}

/// A string field, up to its first NUL.
fn until_nul(mut bytes: Vec<u8>) -> Vec<u8> {
    if let Some(end) = bytes.iter().position(|&b| b == 0) {
        bytes.truncate(end);
    }
    bytes
}

/// A numeric field: base-256 (two's complement, big-endian) when its first bit is set, else
/// octal, padded with spaces and NULs (an empty field is 0), as Go's parseNumeric.
fn numeric(field: &[u8], what: &str) -> Result<i64, Failure> {
    let bad = || Failure::Malformed(format!("a header's {what} field is not a number"));
    if field.first().is_some_and(|b| b & 0x80 != 0) {
        let inverse = if field[0] & 0x40 != 0 { 0xff } else { 0 };
        let mut x: u64 = 0;
        for (i, &byte) in field.iter().enumerate() {
            let mut byte = byte ^ inverse;
            if i == 0 {
                byte &= 0x7f;
            }
            if x >> 56 != 0 {
                return Err(bad());
            }
            x = x << 8 | u64::from(byte);
        }
        if x >> 63 != 0 {
            return Err(bad());
        }
        return Ok(if inverse == 0xff {
            !(x as i64)
        } else {
            x as i64
        });
    }
    octal(field).ok_or_else(bad)
}

/// An octal field, trimmed of spaces and NULs at both ends and read up to a NUL inside.
fn octal(field: &[u8]) -> Option<i64> {
    let trim = |b: &u8| *b == b' ' || *b == 0;
    let start = field.iter().position(|b| !trim(b)).unwrap_or(field.len());
    let end = field
        .iter()
        .rposition(|b| !trim(b))
        .map_or(start, |e| e + 1);
    let field = &field[start..end];
    let field = &field[..field.iter().position(|&b| b == 0).unwrap_or(field.len())];
    if field.is_empty() {
        return Some(0);
    }
    let text = std::str::from_utf8(field).ok()?;
    u64::from_str_radix(text, 8)
        .ok()
        .and_then(|v| i64::try_from(v).ok())
}

/// A decimal integer as Go's strconv.ParseInt(s, 10, 64) reads it: an optional sign, digits.
fn decimal(text: &[u8]) -> Option<i64> {
    std::str::from_utf8(text).ok()?.parse::<i64>().ok()
}

/// The records of a PAX extended header, each key once (a later one wins, as in Go's map).
#[derive(Default, Debug)]
struct Pax {
    records: BTreeMap<Vec<u8>, Vec<u8>>,
}

/// Where a PAX sparse file's map is.
enum Map {
    Records(Vec<(u64, u64)>),
    /// Format 1.0: at the start of the data.
    InData,
}

/// Splits a PAX extended header into records by their length prefix (`LEN key=value\n`), as
/// Go's parsePAX: a value may hold newlines and any byte but NUL in the string fields. GNU
/// sparse 0.0's repeated offset/numbytes records become one `GNU.sparse.map`.
fn parse_pax(data: &[u8]) -> Result<Pax, Failure> {
    let bad = || Failure::Malformed("a PAX record is not `LENGTH key=value` of its length".into());
    let mut pax = Pax::default();
    let mut sparse_map: Vec<u8> = Vec::new();
    let mut sparse_fields = 0usize;
    let mut rest = data;
    while !rest.is_empty() {
        let space = rest.iter().position(|&b| b == b' ').ok_or_else(bad)?;
        let length = decimal(&rest[..space]).ok_or_else(bad)?;
        if length < 5 || length as u64 > rest.len() as u64 {
            return Err(bad());
        }
        let length = length as usize;
        if length <= space + 1 {
            return Err(bad());
        }
        let record = &rest[space + 1..length];
        let (body, newline) = record.split_at(record.len() - 1);
        if newline != b"\n" {
            return Err(bad());
        }
        rest = &rest[length..];
        let equals = body.iter().position(|&b| b == b'=').ok_or_else(bad)?;
        let (key, value) = (&body[..equals], &body[equals + 1..]);
        let strings = [&b"path"[..], b"linkpath", b"uname", b"gname"];
        let nul_in = if strings.contains(&key) { value } else { key };
        if key.is_empty() || nul_in.contains(&0) {
            return malformed("a PAX record with an empty key or a NUL byte");
        }
        match key {
            b"GNU.sparse.offset" | b"GNU.sparse.numbytes" => {
                let expected: &[u8] = if sparse_fields % 2 == 0 {
                    b"GNU.sparse.offset"
                } else {
                    b"GNU.sparse.numbytes"
                };
                if key != expected || value.contains(&b',') {
                    return malformed("GNU sparse 0.0 records out of order");
                }
                if sparse_fields > 0 {
                    sparse_map.push(b',');
                }
                if sparse_map.len() + value.len() > MAX_EXTENSION as usize {
                    return Err(bad());
                }
                sparse_map.extend_from_slice(value);
                sparse_fields += 1;
            }
            _ => pax.set(key, value),
        }
    }
    if sparse_fields > 0 {
        pax.set(b"GNU.sparse.map", &sparse_map);
    }
    Ok(pax)
}

impl Pax {
    fn set(&mut self, key: &[u8], value: &[u8]) {
        self.records.insert(key.to_vec(), value.to_vec());
    }

    fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.records.get(key).map(Vec::as_slice)
    }

    /// Applies the records to `header` as Go's mergePAX: an empty value keeps the header's.
    fn merge(&self, header: &mut Header) -> Result<(), Failure> {
        let number = |key: &[u8], value: &[u8]| {
            decimal(value).ok_or_else(|| {
                Failure::Malformed(format!(
                    "the PAX record {} is not a number",
                    String::from_utf8_lossy(key)
                ))
            })
        };
        let mut libarchive: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let mut xattrs: BTreeMap<Vec<u8>, Vec<u8>> = header.xattrs.drain(..).collect();
        for (key, value) in &self.records {
            if value.is_empty() {
                continue;
            }
            match key.as_slice() {
                b"path" => header.name = value.clone(),
                b"linkpath" => header.linkname = value.clone(),
                b"uid" => header.uid = number(key, value)?,
                b"gid" => header.gid = number(key, value)?,
                b"size" => header.size = number(key, value)?,
                b"mtime" => (header.mtime, header.mtime_nsec) = pax_time(value)?,
                b"atime" | b"ctime" => drop(pax_time(value)?),
                _ => {
                    if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                        xattrs.insert(name.to_vec(), value.clone());
                    } else if let Some(name) = key.strip_prefix(b"LIBARCHIVE.xattr.") {
                        libarchive.push((name.to_vec(), value.clone()));
                    }
                }
            }
        }
        // libarchive's form: the name percent-encoded, the value in base64. Used where no
        // SCHILY record gave the attribute (bsdtar writes both when it can).
        for (name, value) in libarchive {
            let (Some(name), Some(value)) = (percent_decode(&name), base64(&value)) else {
                return malformed("a LIBARCHIVE.xattr record that does not decode");
            };
            if name.is_empty() || name.contains(&0) {
                return malformed("a LIBARCHIVE.xattr record of no name");
            }
            xattrs.entry(name).or_insert(value);
        }
        header.xattrs = xattrs.into_iter().collect();
        Ok(())
    }

    /// What the GNU sparse records say, as Go's readGNUSparsePAXHeaders: `None` when they do
    /// not make the entry sparse (or name a version Go does not know).
    fn gnu_sparse(&self, header: &mut Header) -> Result<Option<Map>, Failure> {
        let (major, minor) = (self.get(b"GNU.sparse.major"), self.get(b"GNU.sparse.minor"));
        let in_data = match (major, minor) {
            (Some(b"0"), Some(b"0" | b"1")) => false,
            (Some(b"1"), Some(b"0")) => true,
            (None, None) if self.get(b"GNU.sparse.map").is_some_and(|m| !m.is_empty()) => false,
            _ => return Ok(None),
        };
        if let Some(name) = self.get(b"GNU.sparse.name").filter(|n| !n.is_empty()) {
            header.name = name.to_vec();
        }
        let size = self
            .get(b"GNU.sparse.size")
            .filter(|s| !s.is_empty())
            .or_else(|| self.get(b"GNU.sparse.realsize"));
        if let Some(size) = size.filter(|s| !s.is_empty()) {
            header.size = decimal(size).ok_or_else(|| {
                Failure::Malformed("a GNU sparse size that is not a number".into())
            })?;
        }
        if in_data {
            return Ok(Some(Map::InData));
        }
        let count = self
            .get(b"GNU.sparse.numblocks")
            .and_then(decimal)
            .filter(|&n| n >= 0)
            .ok_or_else(|| Failure::Malformed("a GNU sparse map without its count".into()))?;
        let map = self.get(b"GNU.sparse.map").unwrap_or_default();
        let numbers: Vec<&[u8]> = match map.is_empty() {
            true => Vec::new(),
            false => map.split(|&b| b == b',').collect(),
        };
        if numbers.len() as u64 != 2 * count as u64 {
            return malformed("a GNU sparse map whose count does not match its numbers");
        }
        let mut regions = Vec::new();
        for pair in numbers.chunks(2) {
            let (Some(offset), Some(length)) = (decimal(pair[0]), decimal(pair[1])) else {
                return malformed("a GNU sparse map of no numbers");
            };
            push_region(&mut regions, offset, length)?;
        }
        Ok(Some(Map::Records(regions)))
    }
}

/// A PAX time: seconds, signed, with an optional fraction (right-padded or cut to
/// nanoseconds), as Go's parsePAXTime. A negative time's fraction counts back from it.
fn pax_time(value: &[u8]) -> Result<(i64, u32), Failure> {
    let bad = || {
        Failure::Malformed(format!(
            "the PAX time {:?} is not a time",
            String::from_utf8_lossy(value)
        ))
    };
    let (seconds, fraction) = match value.iter().position(|&b| b == b'.') {
        Some(dot) => (&value[..dot], &value[dot + 1..]),
        None => (value, &b""[..]),
    };
    let seconds = decimal(seconds).ok_or_else(bad)?;
    if fraction.is_empty() {
        return Ok((seconds, 0));
    }
    if !fraction.iter().all(u8::is_ascii_digit) {
        return Err(bad());
    }
    let mut nanos = 0u32;
    for i in 0..9 {
        nanos = nanos * 10 + u32::from(fraction.get(i).map_or(0, |d| d - b'0'));
    }
    if value.first() == Some(&b'-') && nanos > 0 {
        // -1.5 is 1.5 s before the epoch: -2 s and 0.5 s.
        return Ok((seconds - 1, 1_000_000_000 - nanos));
    }
    Ok((seconds, nanos))
}

fn percent_decode(text: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len());
    let mut bytes = text.iter();
    while let Some(&b) = bytes.next() {
        if b == b'%' {
            let hi = (*bytes.next()? as char).to_digit(16)?;
            let lo = (*bytes.next()? as char).to_digit(16)?;
            out.push((hi * 16 + lo) as u8);
        } else {
            out.push(b);
        }
    }
    Some(out)
}

fn base64(text: &[u8]) -> Option<Vec<u8>> {
    crate::registry::auth::base64_decode(std::str::from_utf8(text).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A header block with the fields given, its checksum computed (unsigned unless `signed`).
    fn block(name: &[u8], typeflag: u8, size: u64, magic: &[u8; 8], signed: bool) -> [u8; BLOCK] {
        let mut b = [0u8; BLOCK];
        b[..name.len()].copy_from_slice(name);
        b[100..107].copy_from_slice(b"0000644");
        b[108..115].copy_from_slice(b"0001750");
        b[116..123].copy_from_slice(b"0001750");
        b[124..135].copy_from_slice(format!("{size:011o}").as_bytes());
        b[136..147].copy_from_slice(b"14370724332");
        b[156] = typeflag;
        b[257..265].copy_from_slice(magic);
        b[148..156].copy_from_slice(b"        ");
        let sum: i64 = match signed {
            true => b.iter().map(|&x| i64::from(x as i8)).sum(),
            false => b.iter().map(|&x| i64::from(x)).sum(),
        };
        b[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
        b
    }

    const USTAR: &[u8; 8] = b"ustar\x0000";

    fn archive(parts: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for part in parts {
            out.extend_from_slice(part);
            out.resize(out.len().div_ceil(BLOCK) * BLOCK, 0);
        }
        out.extend_from_slice(&[0; 2 * BLOCK]);
        out
    }

    fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
        let body_len = key.len() + value.len() + 3;
        let mut length = body_len + 1;
        while length.to_string().len() + body_len != length {
            length = length.to_string().len() + body_len;
        }
        let mut out = format!("{length} {key}=").into_bytes();
        out.extend_from_slice(value);
        out.push(b'\n');
        out
    }

    fn entries(bytes: &[u8]) -> Result<Vec<(Header, Vec<u8>)>, Failure> {
        let mut reader = Reader::new(bytes);
        let mut out = Vec::new();
        while let Some(header) = reader.next()? {
            let mut data = Vec::new();
            match &header.sparse {
                None => reader.data().read_to_end(&mut data)?,
                Some(regions) => {
                    let mut stored = reader.data();
                    Expanded::new(&mut stored, regions, header.size as u64)
                        .read_to_end(&mut data)?
                }
            };
            out.push((header, data));
        }
        Ok(out)
    }

    #[test]
    fn pax_records_are_split_by_their_length_not_at_newlines() {
        // cap_dac_override,cap_fowner+ep: the mask's low byte is 0x0a.
        let cap = [
            1u8, 0, 0, 2, 0x0a, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
        let mut records = pax_record("SCHILY.xattr.security.capability", &cap);
        records.extend(pax_record("path", b"a\nnew\nline"));
        records.extend(pax_record("mtime", b"-86400.25"));
        records.extend(pax_record("uid", b"2000000000"));
        let x = block(b"PaxHeaders/f", b'x', records.len() as u64, USTAR, false);
        let f = block(b"f", b'0', 4, USTAR, false);
        let bytes = archive(&[&x, &records, &f, b"data"]);
        let got = entries(&bytes).unwrap();
        assert_eq!(got.len(), 1);
        let (h, data) = &got[0];
        assert_eq!(h.name, b"a\nnew\nline");
        assert_eq!(
            h.xattrs,
            vec![(b"security.capability".to_vec(), cap.to_vec())]
        );
        assert_eq!((h.mtime, h.mtime_nsec), (-86401, 750_000_000));
        assert_eq!(h.uid, 2_000_000_000);
        assert_eq!(data, b"data");
    }

    #[test]
    fn a_pax_size_is_the_size() {
        // As Go writes a file of 8 GiB or more: 0 in the header, the size in a record.
        let records = pax_record("size", b"4");
        let x = block(b"PaxHeaders/f", b'x', records.len() as u64, USTAR, false);
        let f = block(b"f", b'0', 0, USTAR, false);
        let got = entries(&archive(&[&x, &records, &f, b"data"])).unwrap();
        assert_eq!((got[0].0.size, got[0].1.as_slice()), (4, &b"data"[..]));
    }

    #[test]
    fn header_only_types_read_no_data_whatever_their_size_says() {
        let dir = block(b"d/", b'5', 512, USTAR, false);
        let file = block(b"d/f", b'0', 1, USTAR, false);
        let got = entries(&archive(&[&dir, &file, b"x"])).unwrap();
        let names: Vec<&[u8]> = got.iter().map(|(h, _)| h.name.as_slice()).collect();
        assert_eq!(names, [&b"d/"[..], b"d/f"]);
        assert!(got[0].1.is_empty());
    }

    #[test]
    fn old_directories_checksums_and_numbers_as_go_reads_them() {
        // A NUL typeflag with a trailing slash (V7), a signed checksum.
        let v7 = block(b"old/", 0, 0, &[0; 8], true);
        let reg = block(b"old/f", 0, 0, &[0; 8], false);
        let got = entries(&archive(&[&v7, &reg])).unwrap();
        assert_eq!((got[0].0.typeflag, got[1].0.typeflag), (b'5', b'0'));
        let mut bad = block(b"f", b'0', 0, USTAR, false);
        bad[0] = b'g';
        assert!(matches!(
            entries(&archive(&[&bad])),
            Err(Failure::Malformed(_))
        ));
        assert_eq!(numeric(b"0000644\0", "mode").unwrap(), 0o644);
        assert_eq!(numeric(b"  \0\0  ", "mode").unwrap(), 0);
        assert_eq!(
            numeric(&[0x80, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0], "size").unwrap(),
            1 << 33
        );
        assert_eq!(numeric(&[0xff; 8], "mtime").unwrap(), -1);
        assert!(numeric(b"0009", "mode").is_err());
    }

    #[test]
    fn global_headers_change_nothing_and_the_end_is_found_as_go_finds_it() {
        let records = pax_record("path", b"global");
        let g = block(
            b"pax_global_header",
            b'g',
            records.len() as u64,
            USTAR,
            false,
        );
        let f = block(b"f", b'0', 0, USTAR, false);
        let got = entries(&archive(&[&g, &records, &f])).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0.name, b"f");
        // No end blocks at all: the stream's end between entries ends it.
        let mut bytes = f.to_vec();
        assert_eq!(entries(&bytes).unwrap().len(), 1);
        // A zero block, then a header: malformed.
        bytes.extend_from_slice(&[0; BLOCK]);
        bytes.extend_from_slice(&f);
        assert!(entries(&bytes).is_err());
    }

    #[test]
    fn sparse_files_come_back_with_their_holes() {
        // PAX 0.1: data "AB" at 0 and "CD" at 10 of a 14-byte file.
        let mut records = pax_record("GNU.sparse.major", b"0");
        records.extend(pax_record("GNU.sparse.minor", b"1"));
        records.extend(pax_record("GNU.sparse.name", b"real"));
        records.extend(pax_record("GNU.sparse.size", b"14"));
        records.extend(pax_record("GNU.sparse.numblocks", b"2"));
        records.extend(pax_record("GNU.sparse.map", b"0,2,10,2"));
        let x = block(b"PaxHeaders/s", b'x', records.len() as u64, USTAR, false);
        let s = block(b"GNUSparseFile.0/real", b'0', 4, USTAR, false);
        let got = entries(&archive(&[&x, &records, &s, b"ABCD"])).unwrap();
        let (h, data) = &got[0];
        assert_eq!(h.name, b"real");
        assert_eq!(h.size, 14);
        assert_eq!(h.sparse, Some(vec![(0, 2), (10, 2)]));
        assert_eq!(data, b"AB\0\0\0\0\0\0\0\0CD\0\0");
        // PAX 1.0: the map at the start of the data.
        let mut records = pax_record("GNU.sparse.major", b"1");
        records.extend(pax_record("GNU.sparse.minor", b"0"));
        records.extend(pax_record("GNU.sparse.name", b"one"));
        records.extend(pax_record("GNU.sparse.realsize", b"6"));
        let mut map = b"1\n4\n2\n".to_vec();
        map.resize(BLOCK, 0);
        map.extend_from_slice(b"XY");
        let x = block(b"PaxHeaders/s", b'x', records.len() as u64, USTAR, false);
        let s = block(b"GNUSparseFile.0/one", b'0', map.len() as u64, USTAR, false);
        let got = entries(&archive(&[&x, &records, &s, &map])).unwrap();
        assert_eq!(got[0].1, b"\0\0\0\0XY");
        // Data the map does not place, or a region past the size: refused.
        let mut records = pax_record("GNU.sparse.major", b"0");
        records.extend(pax_record("GNU.sparse.minor", b"1"));
        records.extend(pax_record("GNU.sparse.size", b"4"));
        records.extend(pax_record("GNU.sparse.numblocks", b"1"));
        records.extend(pax_record("GNU.sparse.map", b"2,4"));
        let x = block(b"PaxHeaders/s", b'x', records.len() as u64, USTAR, false);
        let s = block(b"s", b'0', 4, USTAR, false);
        assert!(entries(&archive(&[&x, &records, &s, b"ABCD"])).is_err());
    }

    #[test]
    fn extension_records_are_bounded() {
        let x = block(b"PaxHeaders/f", b'x', MAX_EXTENSION + 1, USTAR, false);
        match entries(&archive(&[&x])) {
            Err(Failure::Malformed(why)) => assert!(why.contains("extension record"), "{why}"),
            other => panic!("{other:?}"),
        }
        assert!(parse_pax(b"9 a=b\n").is_err(), "a length that overruns");
        assert!(parse_pax(b"6 a=b\n").is_ok());
        assert!(parse_pax(b"6 =bc\n").is_err(), "an empty key");
    }
}
