//! `--rootfs`: the image's layers applied, in order, to a directory, as Docker's overlay would
//! show them: whiteouts delete, opaque markers empty a directory of what the layers below put
//! there, later entries replace earlier ones.
//!
//! Every write goes through `confined::Root`, so no entry — whatever its path, link target or
//! the symlinks earlier entries made — creates, changes or deletes anything outside the
//! directory. As root, owners, device nodes and all extended attributes are applied; without
//! root (dockstrap's mode) owners are left to the caller, device nodes and privileged
//! attributes are skipped and counted, and directories stay writable until the end, when every
//! directory gets its mode and mtime (after its contents, which would change the mtime).
//! This module reads tar streams; it does not download, verify digests or name the directory.

use crate::confined::{self, Fault, Root, Visit};
use crate::error::Error;
use crate::layer_tar::{self, Change, Entry, Kind, Time, TreePath};
use crate::paths::{Node, PathMap, ROOT};
use std::collections::BTreeMap;
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

pub struct Rootfs {
    root: Root,
    /// The directory, for messages.
    dir: PathBuf,
    privileged: bool,
    /// With `--git`: the repository at `/.git` stays, and no entry may reach a `.git`.
    guard_git: bool,
    /// Paths the current layer added, with their ancestors: an opaque marker keeps them. A
    /// node's value says an opaque marker of this layer already emptied it.
    layer_paths: PathMap<bool>,
    /// Mode and mtime of every directory an entry made, applied by `finish`; ordered, so a
    /// whiteout or opaque marker finds what lies below it as one range.
    dirs: BTreeMap<TreePath, Made>,
    /// The layer being applied (0 before the first), recorded with each directory.
    layer: u32,
    /// The directory the last entry went into (or the directory it made): tars list a
    /// directory and then its contents, and walking to the parent again for each entry costs
    /// more than creating the entry. An entry changes only what is at its own path, so this
    /// stays valid; whiteouts and opaque markers, which remove more, forget it.
    last_parent: Option<(TreePath, OwnedFd)>,
    /// With `--git`: the paths other than directories the current layer wrote.
    written: Option<Vec<Box<[u8]>>>,
    pub skipped_devices: u64,
    pub skipped_xattrs: u64,
    /// Without root: files given a setuid or setgid bit, which then run as this user.
    pub setid_files: u64,
}

impl Rootfs {
    /// Starts applying layers to `dir`, an existing directory.
    pub fn open(dir: &Path, guard_git: bool) -> Result<Rootfs, Error> {
        let mut root = Root::open(dir).map_err(|e| Error::io(dir, e))?;
        if guard_git {
            root.protect_git();
        }
        Ok(Rootfs {
            root,
            dir: dir.to_path_buf(),
            privileged: unsafe { libc::geteuid() } == 0,
            guard_git,
            written: guard_git.then(Vec::new),
            layer_paths: PathMap::new(),
            dirs: BTreeMap::new(),
            layer: 0,
            last_parent: None,
            skipped_devices: 0,
            skipped_xattrs: 0,
            setid_files: 0,
        })
    }

    /// Applies one layer's tar stream; `layer` names it in errors.
    pub fn apply(&mut self, tar: &mut dyn Read, layer: &str) -> Result<(), Error> {
        self.layer += 1;
        self.layer_paths.clear();
        if let Some(written) = &mut self.written {
            written.clear();
        }
        layer_tar::read_layer(tar, layer, &mut |change, data| {
            let path = match &change {
                Change::Add(entry) => &entry.path,
                Change::Whiteout(path) | Change::Opaque(path) => path,
            };
            let shown = path.to_string();
            self.change(change, data).map_err(|fault| match fault {
                Fault::Escape(reason) => Error::Unsafe {
                    layer: layer.to_string(),
                    entry: shown.clone(),
                    reason,
                },
                // This machine's limits (disk, permissions, descriptors) are local errors;
                // the rest (a missing link target, a file where a directory must be) is the
                // layer's.
                Fault::Io(e) if is_local(&e) => {
                    Error::io(&self.dir.join(shown.trim_start_matches('/')), e)
                }
                Fault::Io(e) => Error::Invalid {
                    what: layer.to_string(),
                    detail: format!("cannot apply {shown} under {}: {e}", self.dir.display()),
                },
            })
        })
    }

    fn change(&mut self, change: Change, data: &mut dyn Read) -> Result<(), Fault> {
        if !matches!(&change, Change::Add(_)) {
            self.last_parent = None;
        }
        match change {
            Change::Add(entry) => {
                self.remember(&entry.path);
                if let (Some(written), false) = (&mut self.written, entry.kind == Kind::Dir) {
                    written.push(entry.path.as_bytes().into());
                }
                self.add(entry, data)
            }
            Change::Whiteout(path) => {
                if self.layer_paths.find(&path).is_some() {
                    // This layer's own entry of that name stays.
                    return Ok(());
                }
                if let Some(parent) = self.open_parent_if_there(&path)? {
                    let (_, name) = path.split_last().expect("a whiteout is never the root");
                    self.root.check_name(name)?;
                    confined::remove_all_at(parent.as_fd(), name)?;
                }
                remove_below(&mut self.dirs, &path, |_, _| true);
                Ok(())
            }
            Change::Opaque(dir) => {
                let node = self.layer_paths.find(&dir);
                let mut emptied = node.is_some_and(|node| *self.layer_paths.get(node));
                // Below a directory this layer already emptied, only this layer's entries are
                // left: nothing to do again (so markers cost time linear in the entries).
                let mut ancestor = ROOT;
                for name in dir.components() {
                    emptied |= *self.layer_paths.get(ancestor);
                    match self.layer_paths.child(ancestor, name) {
                        Some(next) => ancestor = next,
                        None => break,
                    }
                }
                if emptied {
                    return Ok(());
                }
                if let Some(fd) = match self.root.open_dir(&dir, false) {
                    Ok(fd) => Some(fd),
                    Err(Fault::Io(e)) if confined::is_gone(&e) => None,
                    Err(e) => return Err(e),
                } {
                    self.clear_below(fd, node)?;
                }
                // Directories recorded by lower layers are gone (or, if this layer's entries
                // sit below them, made again as plain parents, as Docker makes them).
                let layer = self.layer;
                remove_below(&mut self.dirs, &dir, |d, made| {
                    d != &dir && made.layer < layer
                });
                let node = self.layer_paths.insert(&dir);
                *self.layer_paths.get_mut(node) = true;
                Ok(())
            }
        }
    }

    /// Removes from the directory `fd` (whose node of this layer's paths is `node`) everything
    /// the current layer did not add, going down into the directories it did add: they may
    /// still hold what lower layers put in them. With `--git`, the root's `.git` stays, however
    /// the marker's path led to the root.
    fn clear_below(&self, fd: OwnedFd, node: Option<Node>) -> Result<(), Fault> {
        let paths = &self.layer_paths;
        let at_root = self.root.is_root(fd.as_fd())?;
        // A token per directory: its node in this layer's paths, and whether it is the root.
        let mut decide = |&(node, root): &(Option<Node>, bool), name: &[u8], is_dir: bool| {
            if root && self.guard_git && name == b".git" {
                return Visit::Keep;
            }
            match node.and_then(|node| paths.child(node, name)) {
                // A directory an earlier marker of this layer emptied holds only this
                // layer's entries: nothing to do below it (markers nested deepest first would
                // otherwise walk the same tree once each).
                Some(child) if is_dir && *paths.get(child) => Visit::Keep,
                Some(child) if is_dir => Visit::Enter((Some(child), false)),
                Some(_) => Visit::Keep,
                None => Visit::Remove,
            }
        };
        confined::prune(fd, Some((node, at_root)), &mut decide)?;
        Ok(())
    }

    /// With `--git`, the paths other than directories the last layer wrote (empty otherwise).
    pub fn written(&self) -> &[Box<[u8]>] {
        self.written.as_deref().unwrap_or(&[])
    }

    fn made(&self, entry: &Entry) -> Made {
        Made {
            mode: entry.mode,
            mtime: entry.mtime,
            layer: self.layer,
        }
    }

    fn remember(&mut self, path: &TreePath) {
        self.layer_paths.insert(path);
    }

    fn open_parent_if_there(&self, path: &TreePath) -> Result<Option<std::os::fd::OwnedFd>, Fault> {
        let Some((parent, _)) = path.split_last() else {
            return Ok(None);
        };
        match self.root.open_dir(&parent, false) {
            Ok(fd) => Ok(Some(fd)),
            Err(Fault::Io(e)) if confined::is_gone(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn add(&mut self, entry: Entry, data: &mut dyn Read) -> Result<(), Fault> {
        let (uid, gid) = ids(&entry)?;
        let Some((parent_path, name)) = entry.path.split_last() else {
            // The root itself: its owner now, its mode and mtime at the end.
            if self.privileged {
                confined::set_owner(self.root.fd(), uid, gid)?;
            }
            let made = self.made(&entry);
            self.dirs.insert(entry.path, made);
            return Ok(());
        };
        self.root.check_name(name)?;
        if entry.kind != Kind::Dir {
            // What replaces a directory takes its subdirectories out of `finish`'s list: their
            // paths now end at a file, or lead through a symlink somewhere else.
            remove_below(&mut self.dirs, &entry.path, |_, _| true);
        }
        let parent = match self.last_parent.take() {
            Some((path, fd)) if path == parent_path => fd,
            _ => self.root.open_dir(&parent_path, true)?,
        };
        let made = self.add_in(parent.as_fd(), name, &entry, uid, gid, data);
        let (made, result) = match made {
            Ok(dir) => (dir, Ok(())),
            Err(e) => (None, Err(e)),
        };
        self.last_parent = match made {
            Some(dir) => Some((entry.path, dir)),
            None => Some((parent_path, parent)),
        };
        result
    }

    fn add_in(
        &mut self,
        parent: BorrowedFd,
        name: &[u8],
        entry: &Entry,
        uid: u32,
        gid: u32,
        data: &mut dyn Read,
    ) -> Result<Option<OwnedFd>, Fault> {
        if !self.privileged {
            confined::make_writable(parent)?;
        }
        match &entry.kind {
            Kind::File => {
                let mut file = confined::create_file(parent, name)?;
                match &entry.sparse {
                    None => drop(io::copy(&mut data.take(entry.size), &mut file)?),
                    Some(regions) => write_sparse(&mut file, data, regions, entry.size)?,
                }
                self.finish_fd(file.as_fd(), entry, uid, gid)?;
                confined::set_mtime(file.as_fd(), entry.mtime)?;
            }
            Kind::Dir => {
                let dir = confined::make_dir(parent, name)?;
                if self.privileged {
                    confined::set_owner(dir.as_fd(), uid, gid)?;
                } else {
                    confined::make_writable(dir.as_fd())?;
                }
                self.set_xattrs(dir.as_fd(), entry, uid, gid)?;
                let made = self.made(entry);
                self.dirs.insert(entry.path.clone(), made);
                return Ok(Some(dir));
            }
            Kind::Symlink(target) => {
                confined::symlink_at(target, parent, name)?;
                self.owner_and_time_at(parent, name, entry, uid, gid)?;
            }
            Kind::Hardlink(target) => {
                let (target_parent, target_name) = target
                    .split_last()
                    .expect("layer_tar refuses hard links to the root");
                self.root.check_name(target_name)?;
                let from = self.root.open_dir(&target_parent, false)?;
                confined::link_at(from.as_fd(), target_name, parent, name).map_err(|e| {
                    Fault::Io(io::Error::new(
                        e.kind(),
                        format!("the hard link to {target} failed: {e}"),
                    ))
                })?;
            }
            Kind::CharDevice(major, minor) | Kind::BlockDevice(major, minor) => {
                if !self.privileged {
                    self.skipped_devices += 1;
                    return Ok(None);
                }
                let block = matches!(entry.kind, Kind::BlockDevice(..));
                confined::make_device(parent, name, block, entry.mode, *major, *minor)?;
                self.owner_and_time_at(parent, name, entry, uid, gid)?;
            }
            Kind::Fifo => {
                let fifo = confined::make_fifo(parent, name, entry.mode)?;
                self.finish_fd(fifo.as_fd(), entry, uid, gid)?;
                confined::set_mtime(fifo.as_fd(), entry.mtime)?;
            }
        }
        Ok(None)
    }

    /// Owner, then mode (a change of owner clears setuid), then extended attributes (a change
    /// of owner clears `security.capability`).
    fn finish_fd(
        &mut self,
        fd: BorrowedFd,
        entry: &Entry,
        uid: u32,
        gid: u32,
    ) -> Result<(), Fault> {
        if self.privileged {
            confined::set_owner(fd, uid, gid)?;
        } else if entry.mode & 0o6000 != 0 {
            self.setid_files += 1;
        }
        confined::set_mode(fd, entry.mode)?;
        self.set_xattrs(fd, entry, uid, gid)
    }

    fn owner_and_time_at(
        &self,
        parent: BorrowedFd,
        name: &[u8],
        entry: &Entry,
        uid: u32,
        gid: u32,
    ) -> Result<(), Fault> {
        if self.privileged {
            confined::set_owner_at(parent, name, uid, gid)?;
        }
        confined::set_mtime_at(parent, name, entry.mtime)?;
        Ok(())
    }

    /// The entry's extended attributes; without root, also the owner it should have as
    /// `user.rootlesscontainers` (the convention of umoci and rootless runtimes).
    fn set_xattrs(
        &mut self,
        fd: BorrowedFd,
        entry: &Entry,
        uid: u32,
        gid: u32,
    ) -> Result<(), Fault> {
        if !self.privileged && (uid, gid) != (0, 0) {
            match confined::set_xattr(fd, ROOTLESS_OWNER, &rootless_owner(uid, gid)) {
                Ok(()) => {}
                Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTSUP) | Some(libc::EPERM)) => {
                    self.skipped_xattrs += 1
                }
                Err(e) => return Err(e.into()),
            }
        }
        for (name, value) in &entry.xattrs {
            if !self.privileged && !name.starts_with(b"user.") {
                self.skipped_xattrs += 1;
                continue;
            }
            match confined::set_xattr(fd, name, value) {
                Ok(()) => {}
                // The filesystem has no room for them (tmpfs and user.*, some FUSE mounts).
                Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTSUP) | Some(libc::EPERM)) => {
                    self.skipped_xattrs += 1
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Gives every directory an entry made its mode and mtime, now that nothing more is
    /// written into them; the root's, which the caller applies once the tree is in place (a
    /// new tree stays 0700 until then), is returned.
    pub fn finish(mut self) -> Result<Option<(u32, Time)>, Error> {
        let root = self
            .dirs
            .remove(&TreePath::root())
            .map(|made| (made.mode, made.mtime));
        // Deepest first; the order only matters for reading the code, not the result.
        let mut dirs: Vec<(TreePath, Made)> = std::mem::take(&mut self.dirs).into_iter().collect();
        dirs.sort_by_key(|(path, _)| std::cmp::Reverse(path.components().count()));
        for (path, Made { mode, mtime, .. }) in dirs {
            let fd = match self.root.open_dir_exact(&path) {
                Ok(Some(fd)) => fd,
                Ok(None) => continue,
                Err(Fault::Escape(_)) => continue,
                Err(Fault::Io(e)) => return Err(Error::io(&self.dir, e)),
            };
            let io_err = |e| Error::io(&self.dir.join(path.to_string().trim_start_matches('/')), e);
            confined::set_mode(fd.as_fd(), mode).map_err(io_err)?;
            confined::set_mtime(fd.as_fd(), mtime).map_err(io_err)?;
        }
        Ok(root)
    }
}

/// Removes from `dirs` those at `path` or below it for which `remove` holds: `path` itself,
/// and the keys that start with `path/`, which in byte order are the range from `path/` up to
/// `path0` (`0` follows `/`). Only the keys removed are copied.
fn remove_below(
    dirs: &mut BTreeMap<TreePath, Made>,
    path: &TreePath,
    remove: impl Fn(&TreePath, &Made) -> bool,
) {
    use std::ops::Bound::{Excluded, Included, Unbounded};
    let (start, end) = if path.is_root() {
        (Vec::new(), None)
    } else {
        let mut start = path.as_bytes().to_vec();
        start.push(b'/');
        let mut end = path.as_bytes().to_vec();
        end.push(b'/' + 1);
        (start, Some(end))
    };
    let range: (std::ops::Bound<&[u8]>, std::ops::Bound<&[u8]>) = match &end {
        Some(end) => (Included(&start[..]), Excluded(&end[..])),
        None => (Unbounded, Unbounded),
    };
    let gone: Vec<TreePath> = dirs
        .get_key_value(path)
        .into_iter()
        .chain(dirs.range::<[u8], _>(range))
        .filter(|(dir, made)| remove(dir, made))
        .map(|(dir, _)| dir.clone())
        .collect();
    for dir in gone {
        dirs.remove(&dir);
    }
}

/// Writes a sparse file as the image has it, holes as holes: each stored data region (`data`
/// holds them one after the other) at its offset, the size set last. Nothing is written, nor
/// read, for a hole, whatever its size.
fn write_sparse(
    file: &mut std::fs::File,
    data: &mut dyn Read,
    regions: &[(u64, u64)],
    size: u64,
) -> io::Result<()> {
    use std::io::{Seek, SeekFrom};
    for &(offset, length) in regions {
        file.seek(SeekFrom::Start(offset))?;
        let copied = io::copy(&mut data.take(length), file)?;
        if copied != length {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "a sparse file's data ends before its map does",
            ));
        }
    }
    file.set_len(size)
}

/// A directory an entry made: what `finish` gives it, and which layer made it.
struct Made {
    mode: u32,
    mtime: Time,
    layer: u32,
}

/// Whether an error is about this machine rather than the layer: exit 7, not 6.
fn is_local(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(
            libc::ENOSPC
                | libc::EDQUOT
                | libc::EACCES
                | libc::EPERM
                | libc::EROFS
                | libc::EMFILE
                | libc::ENFILE
                | libc::EIO
        )
    ) || e.kind() == io::ErrorKind::StorageFull
}

const ROOTLESS_OWNER: &[u8] = b"user.rootlesscontainers";

/// The protobuf message `Resource { uint32 uid = 1; uint32 gid = 2; }` of rootlesscontainers
/// (zero fields left out, as protobuf does).
fn rootless_owner(uid: u32, gid: u32) -> Vec<u8> {
    let mut out = Vec::new();
    for (tag, value) in [(0x08u8, uid), (0x10, gid)] {
        if value == 0 {
            continue;
        }
        out.push(tag);
        let mut v = value;
        while v >= 0x80 {
            out.push((v as u8 & 0x7f) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    out
}

fn ids(entry: &Entry) -> Result<(u32, u32), Fault> {
    match (u32::try_from(entry.uid), u32::try_from(entry.gid)) {
        (Ok(uid), Ok(gid)) => Ok((uid, gid)),
        _ => Err(Fault::Io(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("owner {}:{} is out of range", entry.uid, entry.gid),
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::confined::tests::scratch;
    use crate::layer_tar::tests::{tar_of, RawEntry};
    use std::fs;

    fn listing(dir: &Path) -> Vec<String> {
        let mut out = Vec::new();
        fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
            let mut entries: Vec<_> = fs::read_dir(dir)
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            entries.sort();
            for path in entries {
                let rel = path.strip_prefix(base).unwrap().display().to_string();
                let meta = fs::symlink_metadata(&path).unwrap();
                if meta.is_dir() {
                    out.push(format!("{rel}/"));
                    walk(base, &path, out);
                } else if meta.is_symlink() {
                    out.push(format!(
                        "{rel} -> {}",
                        fs::read_link(&path).unwrap().display()
                    ));
                } else {
                    out.push(format!("{rel}={}", fs::read_to_string(&path).unwrap()));
                }
            }
        }
        walk(dir, dir, &mut out);
        out
    }

    #[test]
    fn whiteouts_and_opaque_directories_follow_the_overlay_rules() {
        let dir = scratch("rootfs-overlay");
        let root = dir.join("root");
        let mut rootfs = Rootfs::open(&root, false).unwrap();
        let lower = tar_of(&[
            (b"a/", b'5', b"", b""),
            (b"a/gone", b'0', b"", b"1"),
            (b"a/kept", b'0', b"", b"1"),
            (b"o/", b'5', b"", b""),
            (b"o/old", b'0', b"", b"1"),
            (b"o/sub/", b'5', b"", b""),
            (b"o/sub/old", b'0', b"", b"1"),
            (b"o/sub/readded", b'0', b"", b"1"),
        ]);
        rootfs.apply(&mut &lower[..], "layer 1/2").unwrap();
        // The opaque marker comes after entries of its own layer: they stay.
        let upper = tar_of(&[
            (b"a/.wh.gone", b'0', b"", b""),
            (b"o/new", b'0', b"", b"2"),
            (b"o/sub/readded", b'0', b"", b"2"),
            (b"o/.wh..wh..opq", b'0', b"", b""),
            (b"o/after", b'0', b"", b"2"),
        ]);
        rootfs.apply(&mut &upper[..], "layer 2/2").unwrap();
        rootfs.finish().unwrap();
        assert_eq!(
            listing(&root),
            [
                "a/",
                "a/kept=1",
                "o/",
                "o/after=2",
                "o/new=2",
                "o/sub/",
                "o/sub/readded=2"
            ]
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn links_that_leave_the_tree_are_followed_inside_it() {
        let dir = scratch("rootfs-hostile");
        let root = dir.join("root");
        fs::write(dir.join("canary"), b"canary").unwrap();
        let cases: [(&[RawEntry], Option<&str>); 4] = [
            (
                &[
                    (b"up", b'2', b"..", b""),
                    (b"up/canary", b'0', b"", b"inside"),
                ],
                Some("canary"),
            ),
            (
                &[
                    (b"slash", b'2', b"/", b""),
                    (b"slash/tmp/x", b'0', b"", b"inside"),
                ],
                Some("tmp/x"),
            ),
            (
                &[
                    (b"a", b'2', b"b/c", b""),
                    (b"b/", b'5', b"", b""),
                    (b"b/c", b'2', b"../..", b""),
                    (b"a/canary", b'0', b"", b"inside"),
                ],
                Some("canary"),
            ),
            (
                &[
                    (b"x/", b'5', b"", b""),
                    (b"x/.wh..wh..opq", b'0', b"", b""),
                    (b"up2", b'2', b"../", b""),
                    (b"up2/.wh.canary", b'0', b"", b""),
                ],
                None,
            ),
        ];
        for (i, (entries, lands)) in cases.iter().enumerate() {
            let _ = fs::remove_dir_all(&root);
            fs::create_dir(&root).unwrap();
            let mut rootfs = Rootfs::open(&root, false).unwrap();
            rootfs
                .apply(&mut &tar_of(entries)[..], "layer 1/1")
                .unwrap();
            rootfs.finish().unwrap();
            if let Some(lands) = lands {
                assert_eq!(fs::read(root.join(lands)).unwrap(), b"inside", "case {i}");
            }
            assert_eq!(fs::read(dir.join("canary")).unwrap(), b"canary", "case {i}");
        }
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn rootless_owner_is_the_protobuf_umoci_writes() {
        assert_eq!(rootless_owner(1000, 1000), [8, 232, 7, 16, 232, 7]);
        assert_eq!(rootless_owner(0, 6), [16, 6]);
        assert_eq!(rootless_owner(65534, 0), [8, 254, 255, 3]);
    }

    #[test]
    fn links_across_layers_and_through_inside_symlinks() {
        let dir = scratch("rootfs-links");
        let root = dir.join("root");
        let mut rootfs = Rootfs::open(&root, false).unwrap();
        let lower = tar_of(&[
            (b"usr/lib/", b'5', b"", b""),
            (b"lib", b'2', b"usr/lib", b""),
            (b"usr/lib/f", b'0', b"", b"data"),
        ]);
        rootfs.apply(&mut &lower[..], "layer 1/2").unwrap();
        let upper = tar_of(&[
            (b"lib/g", b'0', b"", b"via link"),
            (b"hl", b'1', b"usr/lib/f", b""),
        ]);
        rootfs.apply(&mut &upper[..], "layer 2/2").unwrap();
        rootfs.finish().unwrap();
        assert_eq!(fs::read(root.join("usr/lib/g")).unwrap(), b"via link");
        use std::os::unix::fs::MetadataExt;
        assert_eq!(
            fs::metadata(root.join("hl")).unwrap().ino(),
            fs::metadata(root.join("usr/lib/f")).unwrap().ino()
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
