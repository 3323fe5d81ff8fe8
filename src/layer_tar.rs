//! A layer's tar read as changes to a filesystem: entries to add, whiteouts that delete what the
//! layers below put there, opaque markers that empty a directory of them.
//!
//! Parsing only: it reads a tar stream and hands each change, with its data, to a callback; it
//! never touches the disk. It is where untrusted paths become `TreePath`s, so it refuses what
//! could name something outside the tree (absolute paths, `..`) for entries, hard link targets
//! and whiteouts alike; where a path leads once symlinks on disk are involved is `confined`'s
//! business. Extension records (GNU long names, PAX) are read by this module, with a size limit,
//! rather than by the `tar` crate, which would read any size into memory.

use crate::error::{shown_name, Error};
use crate::limits::MAX_EXTENSION;
use std::fmt;
use std::io::{self, Read};

/// A path inside the image's tree: components joined by `/`, none empty, `.` or `..`. The root
/// is the empty path.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct TreePath(Vec<u8>);

/// Linux's limits: a path the kernel takes whole (`PATH_MAX`, its NUL included) and one name
/// (`NAME_MAX`). A layer that claims more cannot be unpacked by any runtime, and capping here
/// bounds what every later step holds per path.
pub const PATH_MAX: usize = 4096;
pub const NAME_MAX: usize = 255;

impl TreePath {
    /// Normalises a path from a tar header: `./a//b/` → `a/b`. Refuses absolute paths, `..`,
    /// and what Linux could not hold (over `PATH_MAX` bytes, a name over `NAME_MAX`).
    pub fn parse(raw: &[u8]) -> Result<TreePath, String> {
        if raw.first() == Some(&b'/') {
            return Err("it is an absolute path".into());
        }
        if raw.contains(&0) {
            return Err("it contains a NUL byte".into());
        }
        if raw.len() >= PATH_MAX {
            return Err(format!(
                "its path is {} bytes long, over Linux's limit of {}",
                raw.len(),
                PATH_MAX - 1
            ));
        }
        let mut out = Vec::with_capacity(raw.len());
        for component in raw.split(|&b| b == b'/') {
            match component {
                b"" | b"." => {}
                b".." => return Err("it has a `..` component".into()),
                name if name.len() > NAME_MAX => {
                    return Err(format!(
                        "it has a name of {} bytes, over Linux's limit of {NAME_MAX}",
                        name.len()
                    ))
                }
                name => {
                    if !out.is_empty() {
                        out.push(b'/');
                    }
                    out.extend_from_slice(name);
                }
            }
        }
        Ok(TreePath(out))
    }

    pub fn root() -> TreePath {
        TreePath(Vec::new())
    }

    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn components(&self) -> impl Iterator<Item = &[u8]> {
        self.0.split(|&b| b == b'/').filter(|c| !c.is_empty())
    }

    /// The parent directory and the last component; `None` for the root.
    pub fn split_last(&self) -> Option<(TreePath, &[u8])> {
        if self.is_root() {
            return None;
        }
        Some(match self.0.iter().rposition(|&b| b == b'/') {
            Some(i) => (TreePath(self.0[..i].to_vec()), &self.0[i + 1..]),
            None => (TreePath::root(), &self.0[..]),
        })
    }

    /// `self/name`; `name` must be one valid component.
    pub fn join(&self, name: &[u8]) -> TreePath {
        debug_assert!(is_component(name), "join takes one component");
        let mut out = self.0.clone();
        if !out.is_empty() {
            out.push(b'/');
        }
        out.extend_from_slice(name);
        TreePath(out)
    }
}

// Paths order, compare and hash as their bytes, so maps keyed by them can be searched by bytes.
impl std::borrow::Borrow<[u8]> for TreePath {
    fn borrow(&self) -> &[u8] {
        &self.0
    }
}

/// One component: not empty, `.` or `..`, no `/` or NUL.
pub fn is_component(name: &[u8]) -> bool {
    !matches!(name, b"" | b"." | b"..") && !name.contains(&b'/') && !name.contains(&0)
}

impl fmt::Display for TreePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "/{}", String::from_utf8_lossy(&self.0))
    }
}

impl fmt::Debug for TreePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    /// The target, verbatim: a symlink's text is not a path this tool follows blindly.
    Symlink(Vec<u8>),
    /// Another entry of this layer or a file of the layers below.
    Hardlink(TreePath),
    CharDevice(u32, u32),
    BlockDevice(u32, u32),
    Fifo,
}

/// An entry to add to the tree.
#[derive(Clone, Debug)]
pub struct Entry {
    pub path: TreePath,
    pub kind: Kind,
    /// Permission bits with setuid, setgid and sticky (`0o7777`).
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    /// Seconds since the epoch.
    pub mtime: u64,
    /// Extended attributes from PAX `SCHILY.xattr.` records: name, value.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// Bytes of data (regular files only).
    pub size: u64,
}

pub enum Change {
    Add(Entry),
    /// `.wh.NAME`: NAME is deleted from the layers below.
    Whiteout(TreePath),
    /// `.wh..wh..opq` in a directory: what the layers below put there is gone; what this layer
    /// adds stays, whether it comes before or after the marker.
    Opaque(TreePath),
}

const WHITEOUT: &[u8] = b".wh.";
const OPAQUE: &[u8] = b".wh..wh..opq";

/// Reads the tar stream `tar` of the layer called `layer` (for messages) and calls `each` with
/// every change, in order, and a reader of the entry's data (empty but for regular files).
pub fn read_layer(
    tar: &mut dyn Read,
    layer: &str,
    each: &mut dyn FnMut(Change, &mut dyn Read) -> Result<(), Error>,
) -> Result<(), Error> {
    let malformed = |detail: String| Error::Invalid {
        what: format!("the tar of {layer}"),
        detail,
    };
    let mut archive = tar::Archive::new(tar);
    let entries = archive
        .entries()
        .map_err(|e| malformed(e.to_string()))?
        .raw(true);
    let mut extensions = Extensions::default();
    for entry in entries {
        let mut entry = entry.map_err(|e| malformed(e.to_string()))?;
        if extensions.read(&mut entry).map_err(&malformed)? {
            continue;
        }
        let fields = extensions.take();
        let change = classify(&entry, fields).map_err(|reason| match reason {
            Refusal::Unsafe { path, reason } => Error::Unsafe {
                layer: layer.to_string(),
                entry: path,
                reason,
            },
            Refusal::Malformed(detail) => malformed(detail),
            Refusal::Unsupported(detail) => Error::Unsupported(format!(
                "{layer} holds {detail}, which dockersave does not support"
            )),
        })?;
        if let Some(change) = change {
            each(change, &mut entry)?;
        }
    }
    Ok(())
}

/// The extension records (GNU long name and link, PAX) that apply to the next entry of a tar
/// read raw: each is refused before it is read when it claims more than `MAX_EXTENSION`, so
/// no header can make a reader hold more. `push::source` reads archives with it too.
#[derive(Default)]
pub(crate) struct Extensions {
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
    pax: Option<Vec<u8>>,
}

impl Extensions {
    /// Whether `entry` is an extension record; if so, it is read and kept for the next entry.
    pub(crate) fn read<R: Read>(&mut self, entry: &mut tar::Entry<R>) -> Result<bool, String> {
        let kind = entry.header().entry_type();
        let slot = if kind.is_gnu_longname() {
            &mut self.long_name
        } else if kind.is_gnu_longlink() {
            &mut self.long_link
        } else if kind.is_pax_local_extensions() {
            &mut self.pax
        } else {
            // Global PAX records change nothing dockersave reads; their data is skipped.
            return Ok(kind.is_pax_global_extensions());
        };
        if entry.size() > MAX_EXTENSION {
            return Err(format!(
                "an extension record claims {} bytes, over the {} KiB allowed",
                entry.size(),
                MAX_EXTENSION >> 10
            ));
        }
        let mut bytes = Vec::new();
        entry
            .take(MAX_EXTENSION)
            .read_to_end(&mut bytes)
            .map_err(|e| e.to_string())?;
        if !kind.is_pax_local_extensions() {
            // GNU long names end in NUL.
            while bytes.last() == Some(&0) {
                bytes.pop();
            }
        }
        *slot = Some(bytes);
        Ok(true)
    }

    /// The records for the entry just read, leaving none for the next.
    pub(crate) fn take(&mut self) -> Fields {
        Fields {
            long_name: self.long_name.take(),
            long_link: self.long_link.take(),
            pax: self.pax.take(),
        }
    }
}

pub(crate) struct Fields {
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
    pax: Option<Vec<u8>>,
}

impl Fields {
    /// The entry's path and link name as its header and the records before it give them
    /// (PAX over GNU over the header).
    pub(crate) fn names<R: Read>(&self, entry: &tar::Entry<R>) -> (Vec<u8>, Option<Vec<u8>>) {
        let mut path = self
            .long_name
            .clone()
            .unwrap_or_else(|| entry.path_bytes().into_owned());
        let mut link = self
            .long_link
            .clone()
            .or_else(|| entry.link_name_bytes().map(|l| l.into_owned()));
        for record in self.pax_records().flatten() {
            match record.key_bytes() {
                b"path" => path = record.value_bytes().to_vec(),
                b"linkpath" => link = Some(record.value_bytes().to_vec()),
                _ => {}
            }
        }
        (path, link)
    }

    fn pax_records(&self) -> tar::PaxExtensions<'_> {
        tar::PaxExtensions::new(self.pax.as_deref().unwrap_or_default())
    }

    /// The size a PAX record gives, where it differs from the header's (a file over 8 GiB).
    pub(crate) fn pax_size(&self) -> Option<Vec<u8>> {
        self.pax_records()
            .flatten()
            .find(|r| r.key_bytes() == b"size")
            .map(|r| r.value_bytes().to_vec())
    }
}

enum Refusal {
    Unsafe { path: String, reason: String },
    Malformed(String),
    Unsupported(String),
}

/// Turns one tar entry (and the extension records before it) into a change; `None` for entries
/// that change nothing (aufs bookkeeping, volume labels).
fn classify(entry: &tar::Entry<&mut dyn Read>, fields: Fields) -> Result<Option<Change>, Refusal> {
    let header = entry.header();
    let old = header.as_old();
    // An empty numeric field reads as 0, as Go's archive/tar (Docker's reader) takes it.
    let number = |r: io::Result<u64>, raw: &[u8], what: &str| match r {
        Ok(n) => Ok(n),
        Err(_) if raw.iter().all(|&b| b == 0 || b == b' ') => Ok(0),
        Err(e) => Err(Refusal::Malformed(format!("bad {what} field: {e}"))),
    };
    let (raw_path, raw_link) = fields.names(entry);
    let mut uid = number(header.uid(), &old.uid, "uid")?;
    let mut gid = number(header.gid(), &old.gid, "gid")?;
    let mut mtime = number(header.mtime(), &old.mtime, "mtime")?;
    let mut xattrs = Vec::new();
    let size = number(header.size(), &old.size, "size")?;
    if fields.pax.is_some() {
        for record in fields.pax_records() {
            let record = record.map_err(|e| Refusal::Malformed(format!("bad PAX record: {e}")))?;
            let (key, value) = (record.key_bytes(), record.value_bytes());
            let decimal = || {
                std::str::from_utf8(value)
                    .ok()
                    .and_then(|v| v.split('.').next())
                    .and_then(|v| v.parse::<u64>().ok())
                    .ok_or_else(|| {
                        Refusal::Malformed(format!(
                            "bad PAX {} value {:?}",
                            String::from_utf8_lossy(key),
                            String::from_utf8_lossy(value)
                        ))
                    })
            };
            match key {
                b"path" | b"linkpath" => {}
                b"uid" => uid = decimal()?,
                b"gid" => gid = decimal()?,
                b"mtime" => mtime = decimal()?,
                b"size" if decimal()? != size => {
                    return Err(Refusal::Unsupported(
                        "a file over 8 GiB (PAX size record)".into(),
                    ))
                }
                _ => {
                    if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                        xattrs.push((name.to_vec(), value.to_vec()));
                    }
                }
            }
        }
    }
    let shown = || shown_name(&raw_path);
    let path = TreePath::parse(&raw_path).map_err(|reason| Refusal::Unsafe {
        path: shown(),
        reason,
    })?;
    if let Some((parent, name)) = path.split_last() {
        if name == OPAQUE {
            return Ok(Some(Change::Opaque(parent)));
        }
        if name.starts_with(b".wh..wh.") {
            // aufs bookkeeping (.wh..wh.plnk, .wh..wh.aufs): not part of the image.
            return Ok(None);
        }
        if let Some(target) = name.strip_prefix(WHITEOUT) {
            if !is_component(target) {
                return Err(Refusal::Unsafe {
                    path: shown(),
                    reason: "it is a whiteout of no valid name".into(),
                });
            }
            return Ok(Some(Change::Whiteout(parent.join(target))));
        }
    }
    let device = || -> Result<(u32, u32), Refusal> {
        let major = header
            .device_major()
            .map_err(|e| Refusal::Malformed(e.to_string()))?;
        let minor = header
            .device_minor()
            .map_err(|e| Refusal::Malformed(e.to_string()))?;
        Ok((major.unwrap_or(0), minor.unwrap_or(0)))
    };
    use tar::EntryType as T;
    let kind = match header.entry_type() {
        T::Regular | T::Continuous => Kind::File,
        T::Directory => Kind::Dir,
        T::Symlink => {
            let target = raw_link.unwrap_or_default();
            if target.len() >= PATH_MAX {
                return Err(Refusal::Unsafe {
                    path: shown(),
                    reason: format!(
                        "it is a symlink to a target of {} bytes, over Linux's limit of {}",
                        target.len(),
                        PATH_MAX - 1
                    ),
                });
            }
            Kind::Symlink(target)
        }
        T::Link => {
            let raw = raw_link.unwrap_or_default();
            let target = TreePath::parse(&raw).map_err(|reason| Refusal::Unsafe {
                path: shown(),
                reason: format!(
                    "it is a hard link to {:?}, which is outside the image: {reason}",
                    shown_name(&raw)
                ),
            })?;
            if target.is_root() {
                return Err(Refusal::Unsafe {
                    path: shown(),
                    reason: "it is a hard link to the root directory".into(),
                });
            }
            Kind::Hardlink(target)
        }
        T::Char => {
            let (major, minor) = device()?;
            Kind::CharDevice(major, minor)
        }
        T::Block => {
            let (major, minor) = device()?;
            Kind::BlockDevice(major, minor)
        }
        T::Fifo => Kind::Fifo,
        T::GNUSparse => return Err(Refusal::Unsupported("a sparse file".into())),
        // Volume labels and other records that are not files.
        _ => return Ok(None),
    };
    if path.is_root() && kind != Kind::Dir {
        // `tar -x` of a flattened tar would replace the directory it extracts into.
        return Err(Refusal::Unsafe {
            path: shown(),
            reason: "it names the root of the tree, which can only be a directory".into(),
        });
    }
    let mode = number(header.mode().map(u64::from), &old.mode, "mode")? as u32 & 0o7777;
    Ok(Some(Change::Add(Entry {
        size: if kind == Kind::File { size } else { 0 },
        path,
        kind,
        mode,
        uid,
        gid,
        mtime,
        xattrs,
    })))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn normalises_and_refuses_paths() {
        for (raw, normal) in [
            ("./a//b/", "a/b"),
            ("a/./b", "a/b"),
            ("./", ""),
            (".", ""),
            ("etc/passwd", "etc/passwd"),
            ("...", "..."),
            ("a/..b", "a/..b"),
        ] {
            assert_eq!(
                TreePath::parse(raw.as_bytes()).unwrap().as_bytes(),
                normal.as_bytes(),
                "{raw}"
            );
        }
        for raw in ["/etc/passwd", "../x", "a/../../x", "a/..", "//x"] {
            assert!(TreePath::parse(raw.as_bytes()).is_err(), "{raw}");
        }
    }

    #[test]
    fn paths_split_and_join() {
        let p = TreePath::parse(b"a/b/c").unwrap();
        let (parent, name) = p.split_last().unwrap();
        assert_eq!((parent.as_bytes(), name), (&b"a/b"[..], &b"c"[..]));
        assert_eq!(parent.join(b"c"), p);
        assert!(TreePath::root().split_last().is_none());
    }

    /// A tar built by hand (the tar crate's builder refuses the hostile names these tests need).
    /// An entry of `tar_of`: name, type flag, link name, data.
    pub(crate) type RawEntry<'a> = (&'a [u8], u8, &'a [u8], &'a [u8]);

    pub(crate) fn tar_of(entries: &[RawEntry]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, kind, link, data) in entries {
            let mut header = tar::Header::new_ustar();
            header.as_old_mut().name[..name.len()].copy_from_slice(name);
            header.as_old_mut().linkname[..link.len()].copy_from_slice(link);
            header.set_entry_type(tar::EntryType::new(*kind));
            header.set_mode(0o644);
            header.set_size(data.len() as u64);
            header.set_cksum();
            out.extend_from_slice(header.as_bytes());
            out.extend_from_slice(data);
            out.resize(out.len().div_ceil(512) * 512, 0);
        }
        out.extend_from_slice(&[0; 1024]);
        out
    }

    fn changes(tar: &[u8]) -> Result<Vec<String>, Error> {
        let mut seen = Vec::new();
        read_layer(&mut &tar[..], "layer 1/1", &mut |change, data| {
            let mut content = String::new();
            data.read_to_string(&mut content).unwrap();
            seen.push(match change {
                Change::Add(e) => format!("add {} {:?} {content}", e.path, e.kind),
                Change::Whiteout(p) => format!("whiteout {p}"),
                Change::Opaque(p) => format!("opaque {p}"),
            });
            Ok(())
        })?;
        Ok(seen)
    }

    #[test]
    fn recognises_whiteouts_and_opaque_markers() {
        let tar = tar_of(&[
            (b"./etc/", b'5', b"", b""),
            (b"./etc/.wh.passwd", b'0', b"", b""),
            (b"dir/.wh..wh..opq", b'0', b"", b""),
            (b".wh..wh.plnk", b'0', b"", b""),
            (b"etc/hosts", b'0', b"", b"127.0.0.1"),
            (b"etc/hl", b'1', b"./etc/hosts", b""),
            (b"etc/sl", b'2', b"/etc/hosts", b""),
        ]);
        assert_eq!(
            changes(&tar).unwrap(),
            [
                "add /etc Dir ",
                "whiteout /etc/passwd",
                "opaque /dir",
                "add /etc/hosts File 127.0.0.1",
                "add /etc/hl Hardlink(/etc/hosts) ",
                "add /etc/sl Symlink([47, 101, 116, 99, 47, 104, 111, 115, 116, 115]) ",
            ]
        );
    }

    #[test]
    fn refuses_entries_that_name_outside_the_tree() {
        for (name, kind, link) in [
            (&b"../../x"[..], b'0', &b""[..]),
            (b"/abs", b'0', b""),
            (b"a/../../b", b'5', b""),
            (b"hl", b'1', b"/etc/passwd"),
            (b"hl", b'1', b"../outside"),
            (b"dir/.wh...", b'0', b""),
            (b"dir/.wh..", b'0', b""),
            (b".", b'2', b"/tmp"),
            (b"./", b'0', b""),
            (b"", b'6', b""),
        ] {
            let err = changes(&tar_of(&[(name, kind, link, b"")])).unwrap_err();
            assert!(
                matches!(err, Error::Unsafe { .. }),
                "{:?}: {err}",
                String::from_utf8_lossy(name)
            );
            assert_eq!(err.exit_code(), crate::error::EXIT_VERIFY);
        }
    }

    #[test]
    fn reads_long_names_and_pax_records() {
        let long = "d/".repeat(80) + "file";
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(3);
        header.set_mode(0o4755);
        header.set_entry_type(tar::EntryType::Regular);
        builder
            .append_data(&mut header, &long, &b"abc"[..])
            .unwrap();
        builder
            .append_pax_extensions([
                ("SCHILY.xattr.security.capability", &b"\x01\x00"[..]),
                ("uid", b"1000"),
                ("mtime", b"1700000000.5"),
            ])
            .unwrap();
        let mut header = tar::Header::new_ustar();
        header.set_path("x").unwrap();
        header.set_size(0);
        header.set_entry_type(tar::EntryType::Regular);
        header.set_cksum();
        builder.append(&header, &b""[..]).unwrap();
        let tar = builder.into_inner().unwrap();
        let mut entries = Vec::new();
        read_layer(&mut &tar[..], "l", &mut |change, _| {
            if let Change::Add(e) = change {
                entries.push(e);
            }
            Ok(())
        })
        .unwrap();
        assert_eq!(entries[0].path.as_bytes(), long.as_bytes());
        assert_eq!((entries[0].mode, entries[0].size), (0o4755, 3));
        assert_eq!(entries[1].uid, 1000);
        assert_eq!(entries[1].mtime, 1_700_000_000);
        assert_eq!(
            entries[1].xattrs,
            [(b"security.capability".to_vec(), b"\x01\x00".to_vec())]
        );
    }

    #[test]
    fn refuses_what_linux_could_not_hold() {
        let one = |path: &str, link: Option<&str>| {
            let mut builder = tar::Builder::new(Vec::new());
            let mut header = tar::Header::new_gnu();
            header.set_size(0);
            match link {
                Some(target) => {
                    header.set_entry_type(tar::EntryType::Symlink);
                    builder.append_link(&mut header, path, target).unwrap();
                }
                None => {
                    header.set_entry_type(tar::EntryType::Regular);
                    builder.append_data(&mut header, path, &b""[..]).unwrap();
                }
            }
            changes(&builder.into_inner().unwrap())
        };
        // 4,095 bytes and 2,048 levels: the longest path Linux takes.
        assert!(one(&("a/".repeat(2047) + "f"), None).is_ok());
        let too_long = "a/".repeat(2048) + "f";
        let long_name = "n".repeat(256);
        let long_target = "t/".repeat(2048);
        for (path, link) in [
            (too_long.as_str(), None),
            (long_name.as_str(), None),
            ("link", Some(long_target.as_str())),
        ] {
            let err = one(path, link).unwrap_err();
            assert!(err.to_string().contains("over Linux's limit"), "{err}");
            assert_eq!(err.exit_code(), crate::error::EXIT_VERIFY);
        }
    }

    #[test]
    fn refuses_huge_extension_records() {
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(tar::EntryType::GNULongName);
        header.set_size(MAX_EXTENSION + 10);
        header.set_cksum();
        let mut tar = header.as_bytes().to_vec();
        tar.resize(tar.len() + (MAX_EXTENSION as usize + 512), b'a');
        let err = changes(&tar).unwrap_err();
        assert!(err.to_string().contains("extension record"), "{err}");
    }
}
