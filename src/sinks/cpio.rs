//! `--initramfs`: entries of the merged filesystem written as a `newc` cpio archive, the format
//! the kernel unpacks into its first root filesystem (`init/initramfs.c`), which GNU cpio and
//! libarchive read too.
//!
//! It writes what `flatten` hands it in the order it comes, and adds only what the kernel's
//! one-pass unpacker needs: a directory is created before anything in it (a stand-in, owned by
//! root, mode 0755, when the image's own entry for it comes later: the kernel then applies that
//! entry's owner and mode to the existing directory), and a file with hard links carries
//! `nlink` ≥ 2 and an inode number its links repeat, because that is how the kernel matches
//! them: it remembers a name for an inode only when its first member says it has links, and
//! links each later member to it (data on the first member, none on the others). So the caller
//! must say, when it writes a file, how many links to it will follow.
//!
//! It must never write a name that is absolute, holds `..` or passes through a symlink written
//! before it: the paths `flatten` hands it are landed so, and the only names it adds are the
//! stand-ins of their parents. It never buffers file data: memory is one node per directory
//! and one record per file whose links are still to come (at most `MAX_LINKED`).

pub use crate::limits::{MAX_DIRS, MAX_LINKED};

use crate::error::Error;
use crate::layer_tar::{Entry, Kind, TreePath};
use crate::paths::{PathMap, ROOT};
use std::collections::HashMap;
use std::io::{self, Read, Write};

const MAGIC: &[u8; 6] = b"070701";
const TRAILER: &[u8] = b"TRAILER!!!";
const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;
const S_IFCHR: u32 = 0o020000;
const S_IFBLK: u32 = 0o060000;
const S_IFIFO: u32 = 0o010000;

pub struct Newc<W: Write> {
    out: W,
    /// Bytes written, for the four-byte alignment of names and data.
    offset: u64,
    next_ino: u32,
    /// The directories written so far (`true`), by path.
    dirs: PathMap<bool>,
    /// Files written with links to come, by the path written: what their links repeat. An
    /// entry goes when its last link is written.
    linked: HashMap<TreePath, Inode>,
    summary: Summary,
}

/// What a finished archive holds that its writer should tell.
#[derive(Default, Debug)]
pub struct Summary {
    /// Whether `/init` was written.
    pub has_init: bool,
    /// Entries whose extended attributes were left out (newc has no place for them).
    pub dropped_xattrs: u64,
}

/// The error for an image over `MAX_LINKED`.
pub fn too_many_linked(layer: &str) -> Error {
    Error::Unsupported(format!(
        "{layer} has more than {MAX_LINKED} hard-linked files, more than an initramfs should make the kernel track; use --flatten or --rootfs"
    ))
}

/// What every name of one hard-linked file carries.
#[derive(Clone, Copy)]
struct Inode {
    /// Links still to come (an upper bound: links that upper layers hide were counted).
    left: u32,
    ino: u32,
    nlink: u32,
    mode: u32,
    uid: u32,
    gid: u32,
    rdev: (u32, u32),
}

/// One header's fields, in newc's order after the inode number.
struct Header<'a> {
    ino: u32,
    mode: u32,
    uid: u32,
    gid: u32,
    nlink: u32,
    mtime: u32,
    size: u32,
    rdev: (u32, u32),
    name: &'a [u8],
}

impl<W: Write> Newc<W> {
    pub fn new(out: W) -> Newc<W> {
        Newc {
            out,
            offset: 0,
            next_ino: 1,
            dirs: PathMap::new(),
            linked: HashMap::new(),
            summary: Summary::default(),
        }
    }

    /// Writes `entry` of `layer` (named in errors), with `data` for a regular file. `links` is
    /// how many hard links to it will follow (an upper bound is fine; the kernel only asks
    /// whether there are any). A hard link names a path written before it, by its path as
    /// written.
    pub fn add(
        &mut self,
        entry: &Entry,
        links: u32,
        data: &mut dyn Read,
        layer: &str,
    ) -> Result<(), Error> {
        let too_big = |what: &str| {
            Error::Unsupported(format!(
                "{layer}: {} has {what} over what a newc cpio (the initramfs format) can hold; use --flatten or --rootfs",
                entry.path
            ))
        };
        let uid = u32::try_from(entry.uid).map_err(|_| too_big("an owner number"))?;
        let gid = u32::try_from(entry.gid).map_err(|_| too_big("a group number"))?;
        self.parents(&entry.path)?;
        if self.dirs.len() > MAX_DIRS {
            return Err(Error::Unsupported(format!(
                "{layer}: the image has more than {MAX_DIRS} directories, more than --initramfs keeps track of; use --flatten or --rootfs"
            )));
        }
        if !entry.xattrs.is_empty() {
            self.summary.dropped_xattrs += 1;
        }
        if entry.path.as_bytes() == b"init" {
            self.summary.has_init = true;
        }
        let mut header = Header {
            ino: self.ino(),
            mode: entry.mode & 0o7777,
            uid,
            gid,
            nlink: 1,
            // newc's field is unsigned: a time before 1970 is 1970.
            mtime: u32::try_from(entry.mtime.seconds.max(0)).unwrap_or(u32::MAX),
            size: 0,
            rdev: (0, 0),
            name: name_of(&entry.path),
        };
        let mut body: &[u8] = &[];
        match &entry.kind {
            Kind::File => {
                header.mode |= S_IFREG;
                header.size = u32::try_from(entry.size).map_err(|_| too_big("a size (4 GiB)"))?;
            }
            Kind::Hardlink(target) => {
                // A link to a link is refused: tar writers link every name to the first.
                let Some(inode) = self.linked.get_mut(target) else {
                    return Err(Error::Invalid {
                        what: format!("the tar of {layer}"),
                        detail: format!(
                            "the hard link {} points to {target}, which is not a file written before it",
                            entry.path
                        ),
                    });
                };
                inode.left = inode.left.saturating_sub(1);
                let inode = *inode;
                if inode.left == 0 {
                    self.linked.remove(target);
                }
                // The kernel applies each member's owner and mode to the one file: the first's.
                header = Header {
                    ino: inode.ino,
                    mode: inode.mode,
                    uid: inode.uid,
                    gid: inode.gid,
                    nlink: inode.nlink,
                    rdev: inode.rdev,
                    ..header
                };
                return self.header(&header);
            }
            Kind::Dir => {
                header.mode |= S_IFDIR;
                header.nlink = 2;
                let node = self.dirs.insert(&entry.path);
                *self.dirs.get_mut(node) = true;
                return self.header(&header);
            }
            Kind::Symlink(target) => {
                header.mode = S_IFLNK | 0o777;
                header.size = target.len() as u32;
                body = target;
            }
            Kind::CharDevice(major, minor) | Kind::BlockDevice(major, minor) => {
                let block = matches!(entry.kind, Kind::BlockDevice(..));
                header.mode |= if block { S_IFBLK } else { S_IFCHR };
                header.rdev = (*major, *minor);
            }
            Kind::Fifo => header.mode |= S_IFIFO,
        }
        // A hard link to a symlink was written as a symlink (`flatten`): symlinks take none.
        if links > 0 && !matches!(entry.kind, Kind::Symlink(_)) {
            header.nlink = links.saturating_add(1);
            if self.linked.len() >= MAX_LINKED {
                return Err(too_many_linked(layer));
            }
            let inode = Inode {
                left: links,
                ino: header.ino,
                nlink: header.nlink,
                mode: header.mode,
                uid,
                gid,
                rdev: header.rdev,
            };
            self.linked.insert(entry.path.clone(), inode);
        }
        self.header(&header)?;
        if let Kind::Symlink(_) = entry.kind {
            self.out.write_all(body).map_err(io)?;
            self.offset += body.len() as u64;
            return self.pad();
        }
        if entry.kind != Kind::File {
            return Ok(());
        }
        let copied = io::copy(&mut data.take(entry.size), &mut self.out).map_err(io)?;
        if copied != entry.size {
            return Err(Error::Invalid {
                what: format!("the tar of {layer}"),
                detail: format!("the data of {} ends early", entry.path),
            });
        }
        self.offset += copied;
        self.pad()
    }

    /// Writes the trailer, padded to a 512-byte block as cpio(1) does; returns the writer.
    pub fn finish(mut self) -> Result<(W, Summary), Error> {
        let trailer = Header {
            ino: 0,
            mode: 0,
            uid: 0,
            gid: 0,
            nlink: 1,
            mtime: 0,
            size: 0,
            rdev: (0, 0),
            name: TRAILER,
        };
        self.header(&trailer)?;
        let pad = (512 - self.offset % 512) % 512;
        self.out.write_all(&[0; 512][..pad as usize]).map_err(io)?;
        Ok((self.out, self.summary))
    }

    /// Writes a stand-in for each directory above `path` not written yet.
    fn parents(&mut self, path: &TreePath) -> Result<(), Error> {
        let Some((parent, _)) = path.split_last() else {
            return Ok(());
        };
        let mut node = ROOT;
        let mut at = Vec::new();
        for name in parent.components() {
            node = self.dirs.child_or_insert(node, name);
            if !at.is_empty() {
                at.push(b'/');
            }
            at.extend_from_slice(name);
            if *self.dirs.get(node) {
                continue;
            }
            *self.dirs.get_mut(node) = true;
            let stand_in = Header {
                ino: self.ino(),
                mode: S_IFDIR | 0o755,
                uid: 0,
                gid: 0,
                nlink: 2,
                mtime: 0,
                size: 0,
                rdev: (0, 0),
                name: &at,
            };
            self.header(&stand_in)?;
        }
        Ok(())
    }

    fn ino(&mut self) -> u32 {
        let ino = self.next_ino;
        self.next_ino = self.next_ino.wrapping_add(1).max(1);
        ino
    }

    #[inline(never)]
    fn header(&mut self, h: &Header) -> Result<(), Error> {
        let mut bytes = Vec::with_capacity(110 + h.name.len() + 4);
        bytes.extend_from_slice(MAGIC);
        let fields = [
            h.ino,
            h.mode,
            h.uid,
            h.gid,
            h.nlink,
            h.mtime,
            h.size,
            0, // the device the file was on
            0,
            h.rdev.0,
            h.rdev.1,
            h.name.len() as u32 + 1,
            0, // no checksum (newc, not crc)
        ];
        for field in fields {
            // Eight hex digits, most significant first.
            bytes.extend(
                (0..8)
                    .rev()
                    .map(|i| b"0123456789abcdef"[(field >> (4 * i)) as usize & 15]),
            );
        }
        bytes.extend_from_slice(h.name);
        bytes.push(0);
        self.out.write_all(&bytes).map_err(io)?;
        self.offset += bytes.len() as u64;
        self.pad()
    }

    fn pad(&mut self) -> Result<(), Error> {
        let pad = (4 - self.offset % 4) % 4;
        self.out.write_all(&[0; 3][..pad as usize]).map_err(io)?;
        self.offset += pad;
        Ok(())
    }
}

/// The name an entry is written under: relative, the root as `.`.
fn name_of(path: &TreePath) -> &[u8] {
    match path.is_root() {
        true => b".",
        false => path.as_bytes(),
    }
}

fn io(e: io::Error) -> Error {
    Error::Io {
        path: "the initramfs".into(),
        source: e,
    }
}

/// One member of a newc archive, as `read` finds it.
#[derive(Debug)]
pub struct Member {
    pub name: Vec<u8>,
    pub mode: u32,
    pub ino: u32,
    pub nlink: u32,
    pub data: Vec<u8>,
}

/// The members of the newc archive `bytes` up to its trailer: for the tests and the fuzz
/// target, which check what the writer wrote.
pub fn read(bytes: &[u8]) -> Result<Vec<Member>, String> {
    let mut at = 0;
    let mut members = Vec::new();
    loop {
        let header = bytes.get(at..at + 110).ok_or("the archive ends early")?;
        if &header[..6] != MAGIC {
            return Err(format!("no newc header at {at}"));
        }
        let field = |i: usize| {
            std::str::from_utf8(&header[6 + 8 * i..14 + 8 * i])
                .ok()
                .and_then(|hex| u32::from_str_radix(hex, 16).ok())
                .ok_or(format!("a bad field at {at}"))
        };
        let (namesize, size) = (field(11)? as usize, field(6)? as usize);
        let name = bytes
            .get(at + 110..at + 110 + namesize)
            .and_then(|n| n.strip_suffix(b"\0"))
            .ok_or("a name without its NUL")?;
        let data_at = (at + 110 + namesize).next_multiple_of(4);
        if name == TRAILER {
            return Ok(members);
        }
        let data = bytes
            .get(data_at..data_at + size)
            .ok_or("data ends early")?;
        members.push(Member {
            name: name.to_vec(),
            mode: field(1)?,
            ino: field(0)?,
            nlink: field(4)?,
            data: data.to_vec(),
        });
        at = (data_at + size).next_multiple_of(4);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer_tar::Time;

    fn entry(path: &str, kind: Kind, size: u64) -> Entry {
        Entry {
            path: TreePath::parse(path.as_bytes()).unwrap(),
            kind,
            mode: 0o4755,
            uid: 1234,
            gid: 5,
            mtime: Time::at(7),
            sparse: None,
            xattrs: Vec::new(),
            size,
        }
    }

    /// The archive's members as (name, mode, ino, nlink, data).
    fn members(bytes: &[u8]) -> Vec<(String, u32, u32, u32, Vec<u8>)> {
        assert_eq!(bytes.len() % 512, 0, "padded to a block");
        let members = read(bytes).unwrap().into_iter();
        let text = |name: Vec<u8>| String::from_utf8(name).unwrap();
        members
            .map(|m| (text(m.name), m.mode, m.ino, m.nlink, m.data))
            .collect()
    }

    fn add<W: Write>(
        newc: &mut Newc<W>,
        entry: Entry,
        links: u32,
        data: &[u8],
    ) -> Result<(), Error> {
        newc.add(&entry, links, &mut &data[..], "layer 1/1")
    }

    #[test]
    fn directories_come_first_and_links_share_an_inode() {
        let mut out = Vec::new();
        let mut newc = Newc::new(&mut out);
        let to = |path: &str| TreePath::parse(path.as_bytes()).unwrap();
        add(&mut newc, entry("a/b/f", Kind::File, 3), 1, b"abc").unwrap();
        add(
            &mut newc,
            entry("l", Kind::Hardlink(to("a/b/f")), 0),
            0,
            b"",
        )
        .unwrap();
        add(&mut newc, entry("a", Kind::Dir, 0), 0, b"").unwrap();
        add(
            &mut newc,
            entry("s", Kind::Symlink(b"/x".to_vec()), 0),
            0,
            b"",
        )
        .unwrap();
        add(&mut newc, entry("d", Kind::CharDevice(4, 64), 0), 1, b"").unwrap();
        add(&mut newc, entry("e", Kind::Hardlink(to("d")), 0), 0, b"").unwrap();
        newc.finish().unwrap();
        let seen = members(&out);
        let names: Vec<&str> = seen.iter().map(|m| m.0.as_str()).collect();
        assert_eq!(names, ["a", "a/b", "a/b/f", "l", "a", "s", "d", "e"]);
        // Stand-ins are root's 0755; the image's entry for `a` follows with its own mode.
        assert_eq!(seen[0].1, S_IFDIR | 0o755);
        assert_eq!(seen[4].1, S_IFDIR | 0o4755);
        // The file carries the data and nlink 2; the link repeats its inode, without data.
        let (file, link) = (&seen[2], &seen[3]);
        assert_eq!(
            (file.1, file.3, &file.4[..]),
            (S_IFREG | 0o4755, 2, &b"abc"[..])
        );
        assert_eq!(
            (link.1, link.2, link.3, link.4.len()),
            (file.1, file.2, 2, 0)
        );
        assert_eq!((seen[5].1, &seen[5].4[..]), (S_IFLNK | 0o777, &b"/x"[..]));
        // A device's hard link is the device again.
        assert_eq!(
            (seen[7].1, seen[7].2, seen[7].3),
            (S_IFCHR | 0o4755, seen[6].2, 2)
        );
        let inos: std::collections::HashSet<u32> = seen.iter().map(|m| m.2).collect();
        assert_eq!(inos.len(), seen.len() - 2, "links share, all others differ");
    }

    #[test]
    fn directories_are_capped() {
        let mut newc = Newc::new(io::sink());
        for i in 0..MAX_DIRS {
            add(&mut newc, entry(&format!("d{i}"), Kind::Dir, 0), 0, b"").unwrap();
        }
        let err = add(&mut newc, entry("x/y", Kind::File, 0), 0, b"").unwrap_err();
        assert!(
            err.to_string().contains("more than 100000 directories"),
            "{err}"
        );
    }

    #[test]
    fn what_newc_cannot_hold_is_refused() {
        let mut newc = Newc::new(Vec::new());
        let link = Kind::Hardlink(TreePath::parse(b"unlinked").unwrap());
        let err = add(&mut newc, entry("l", link, 0), 0, b"").unwrap_err();
        assert!(
            err.to_string().contains("not a file written before it"),
            "{err}"
        );
        assert!(err.to_string().contains("layer 1/1"), "{err}");
        // A link to a link (tar writers link every name to the first), and the record of a
        // file gone once its links are written.
        let to = |path: &str| Kind::Hardlink(TreePath::parse(path.as_bytes()).unwrap());
        add(&mut newc, entry("f", Kind::File, 1), 1, b"f").unwrap();
        add(&mut newc, entry("g", to("f"), 0), 0, b"").unwrap();
        assert!(
            newc.linked.is_empty(),
            "nothing is kept for a file whose links came"
        );
        let err = add(&mut newc, entry("h", to("g"), 0), 0, b"").unwrap_err();
        assert!(
            err.to_string().contains("not a file written before it"),
            "{err}"
        );
        let err = add(&mut newc, entry("big", Kind::File, 1 << 32), 0, b"").unwrap_err();
        assert!(err.to_string().contains("4 GiB"), "{err}");
        let mut owner = entry("o", Kind::Dir, 0);
        owner.uid = 1 << 40;
        assert!(add(&mut newc, owner, 0, b"").is_err());
        let err = add(&mut newc, entry("short", Kind::File, 9), 0, b"abc").unwrap_err();
        assert!(err.to_string().contains("ends early"), "{err}");
    }
}
