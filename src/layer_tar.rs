//! A layer's tar read as changes to a filesystem: entries to add, whiteouts that delete what the
//! layers below put there, opaque markers that empty a directory of them.
//!
//! Parsing only: it reads a tar stream and hands each change, with its data, to a callback; it
//! never touches the disk. It is where untrusted paths become `TreePath`s, so it refuses what
//! could name something outside the tree (absolute paths, `..`) for entries, hard link targets
//! and whiteouts alike, and what Docker would not unpack (a type it does not know); where a path
//! leads once symlinks on disk are involved is `confined`'s business. The bytes are read by
//! `tar_reader`, as Go's `archive/tar` reads them.

use crate::error::{shown_name, Error};
use crate::tar_reader;
use std::fmt;
use std::io::Read;

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
        let last = raw
            .split(|&b| b == b'/')
            .enumerate()
            .filter(|(_, c)| !c.is_empty() && *c != b".")
            .last()
            .map(|(at, _)| at);
        for (at, component) in raw.split(|&b| b == b'/').enumerate() {
            // The whiteout of a name of NAME_MAX bytes is 4 bytes longer, and is never created.
            let limit = match Some(at) == last && component.starts_with(b".wh.") {
                true => NAME_MAX + 4,
                false => NAME_MAX,
            };
            match component {
                b"" | b"." => {}
                b".." => return Err("it has a `..` component".into()),
                name if name.len() > limit => {
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
    pub mtime: Time,
    /// Extended attributes from PAX `SCHILY.xattr.` records: name, value.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// Bytes of content (regular files only), holes included.
    pub size: u64,
    /// For a sparse file, where its data is: (offset, length) regions; the rest is holes.
    pub sparse: Option<Vec<(u64, u64)>>,
}

/// A modification time: seconds since the epoch (before it, negative) and nanoseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Time {
    pub seconds: i64,
    pub nanos: u32,
}

impl Time {
    #[cfg(test)]
    pub fn at(seconds: i64) -> Time {
        Time { seconds, nanos: 0 }
    }
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
/// every change, in order, and a reader of the entry's data (empty but for regular files; for
/// a sparse file its data regions one after the other, which `Entry::sparse` places and
/// `tar_reader::Expanded` turns into the content). The tar is
/// read as Go's `archive/tar` reads it (`tar_reader`), and what Docker would not unpack is
/// refused here, once, for every output.
pub fn read_layer(
    tar: &mut dyn Read,
    layer: &str,
    each: &mut dyn FnMut(Change, &mut dyn Read) -> Result<(), Error>,
) -> Result<(), Error> {
    let malformed = |detail: String| Error::Invalid {
        what: format!("the tar of {layer}"),
        detail,
    };
    let mut reader = tar_reader::Reader::new(tar);
    while let Some(header) = reader.next().map_err(|e| malformed(e.to_string()))? {
        let change = classify(header).map_err(|reason| match reason {
            Refusal::Unsafe { path, reason } => Error::Unsafe {
                layer: layer.to_string(),
                entry: path,
                reason,
            },
            Refusal::Malformed(detail) => malformed(detail),
            Refusal::Unsupported(detail) => Error::Unsupported(format!(
                "{layer} holds {detail}, which dockersave does not unpack (nor does Docker)"
            )),
        })?;
        if let Some(change) = change {
            each(change, &mut reader.data())?;
        }
    }
    Ok(())
}

enum Refusal {
    Unsafe { path: String, reason: String },
    Malformed(String),
    Unsupported(String),
}

/// Turns one entry into a change; `None` for entries that change nothing (aufs bookkeeping).
/// What Docker's unpacker would refuse (a type it does not know, a contiguous file) is refused.
fn classify(header: tar_reader::Header) -> Result<Option<Change>, Refusal> {
    let raw_path = header.name;
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
    let id = |value: i64, what: &str| {
        u32::try_from(value).map(u64::from).map_err(|_| {
            Refusal::Malformed(format!(
                "{}: its {what} {value} is not a 32-bit id",
                shown()
            ))
        })
    };
    let (uid, gid) = (id(header.uid, "uid")?, id(header.gid, "gid")?);
    let device = || -> Result<(u32, u32), Refusal> {
        match (
            u32::try_from(header.devmajor),
            u32::try_from(header.devminor),
        ) {
            (Ok(major), Ok(minor)) => Ok((major, minor)),
            _ => Err(Refusal::Malformed(format!(
                "{}: its device number {}:{} is out of range",
                shown(),
                header.devmajor,
                header.devminor
            ))),
        }
    };
    let kind = match header.typeflag {
        // GNU's old sparse form: Docker refuses it, GNU tar and bsdtar extract it; its content
        // is unambiguous, so it is unpacked as they do.
        b'0' | b'S' => Kind::File,
        b'5' => Kind::Dir,
        b'2' => {
            let target = header.linkname;
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
        b'1' => {
            let raw = header.linkname;
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
        b'3' => {
            let (major, minor) = device()?;
            Kind::CharDevice(major, minor)
        }
        b'4' => {
            let (major, minor) = device()?;
            Kind::BlockDevice(major, minor)
        }
        b'6' => Kind::Fifo,
        b'7' => {
            return Err(Refusal::Unsupported(format!(
                "{} of type '7' (a contiguous file)",
                shown()
            )))
        }
        other => {
            return Err(Refusal::Unsupported(format!(
                "{} of type {}",
                shown(),
                match other {
                    b'D' => "'D' (a GNU directory dump)".to_string(),
                    b'V' => "'V' (a GNU volume label)".to_string(),
                    b'M' => "'M' (a GNU multi-volume continuation)".to_string(),
                    b' '..=b'~' => format!("'{}'", other as char),
                    _ => format!("{other}"),
                }
            )))
        }
    };
    for (name, _) in &header.xattrs {
        if name.is_empty() || name.contains(&0) {
            return Err(Refusal::Malformed(format!(
                "{}: an extended attribute of no valid name",
                shown()
            )));
        }
    }
    if path.is_root() && kind != Kind::Dir {
        // `tar -x` of a flattened tar would replace the directory it extracts into.
        return Err(Refusal::Unsafe {
            path: shown(),
            reason: "it names the root of the tree, which can only be a directory".into(),
        });
    }
    let file = kind == Kind::File;
    Ok(Some(Change::Add(Entry {
        size: if file { header.size as u64 } else { 0 },
        sparse: if file { header.sparse } else { None },
        path,
        kind,
        mode: (header.mode & 0o7777) as u32,
        uid,
        gid,
        mtime: Time {
            seconds: header.mtime,
            nanos: header.mtime_nsec,
        },
        xattrs: header.xattrs,
    })))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::limits::MAX_EXTENSION;

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
    fn a_whiteout_of_the_longest_name_is_four_bytes_longer() {
        let long = "l".repeat(NAME_MAX);
        assert!(TreePath::parse(format!("d/.wh.{long}/").as_bytes()).is_ok());
        for raw in [
            format!(".wh.{long}/x"),
            format!("d/.wh.{long}x"),
            format!("d/x{long}"),
        ] {
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
        // The fraction is kept, as Go keeps it.
        let half = Time {
            seconds: 1_700_000_000,
            nanos: 500_000_000,
        };
        assert_eq!(entries[1].mtime, half);
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
