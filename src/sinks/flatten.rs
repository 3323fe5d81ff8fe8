//! `--flatten`: the image's merged filesystem as one tar stream (crane's `export`), made without
//! root and without a copy of the tree on disk.
//!
//! Layers are read from the top down. An entry is written unless a layer above it has the same
//! path, a non-directory at one of its parent paths, a whiteout of it or of a parent, or an
//! opaque marker in one of its parent directories; so every path appears once, as the top layer
//! that has it shows it, and lower file contents that are hidden are never written. Owners (as
//! numbers), modes, mtimes, device nodes and extended attributes are kept as entries.
//!
//! Memory is path metadata of the layers above the bottom one (the bottom layer, usually the
//! biggest, is never recorded): see the README for the figure per million paths.
//!
//! Hard links: a link whose target a lower layer holds is written when that target is, right
//! after it; if a layer above hides the target, the target's content is written under the
//! first such link's name and the others link to that. This module knows nothing of
//! registries; it reads layer tars and writes one.

use crate::error::Error;
use crate::layer_tar::{self, Change, Entry, Kind, TreePath};
use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

pub struct Flatten<'w> {
    out: tar::Builder<&'w mut dyn Write>,
    /// What the layers above the current one did to each path.
    paths: HashMap<Box<[u8]>, Marks>,
    /// Hard links waiting for their target to appear in a lower layer, by target.
    pending: HashMap<TreePath, Vec<Entry>>,
    /// The symlinks the current layer wrote, path → target: entries below them are written
    /// after them, so `tar -x` follows them, and must not be led outside the tree.
    layer_links: HashMap<Vec<u8>, Vec<u8>>,
}

/// What upper layers did to a path; each is the layer (its index, bottom 0) that did it first,
/// seen from the top. Kept small: there is one per path of the upper layers.
#[derive(Default, Clone, Copy)]
struct Marks {
    /// Written from that layer, and whether as a directory.
    written: At,
    written_dir: bool,
    whiteout: At,
    opaque: At,
    /// The highest layer that wrote something below this path.
    below: At,
}

/// A layer index plus one, 0 for none: two bytes where `Option<usize>` takes sixteen.
#[derive(Default, Clone, Copy)]
struct At(u16);

/// Layers an image may have here (Docker allows 127).
const MAX_LAYERS: usize = u16::MAX as usize - 1;

impl At {
    fn get(self) -> Option<usize> {
        self.0.checked_sub(1).map(usize::from)
    }

    /// Records `index` unless a higher layer (seen earlier) already did.
    fn first(&mut self, index: usize) {
        if self.0 == 0 {
            self.0 = u16::try_from(index + 1).unwrap_or(u16::MAX);
        }
    }
}

impl<'w> Flatten<'w> {
    pub fn new(out: &'w mut dyn Write) -> Flatten<'w> {
        let mut out = tar::Builder::new(out);
        out.mode(tar::HeaderMode::Complete);
        Flatten {
            out,
            paths: HashMap::new(),
            pending: HashMap::new(),
            layer_links: HashMap::new(),
        }
    }

    /// Merges layer `index` (0 = bottom), which must come after every layer above it.
    pub fn layer(&mut self, tar: &mut dyn Read, index: usize, name: &str) -> Result<(), Error> {
        if index >= MAX_LAYERS {
            return Err(Error::Unsupported(format!(
                "the image has over {MAX_LAYERS} layers; --flatten handles fewer"
            )));
        }
        let record = index > 0;
        let write_error = |e: io::Error| Error::Io {
            path: "the flattened tar".into(),
            source: e,
        };
        self.layer_links.clear();
        layer_tar::read_layer(tar, name, &mut |change, data| {
            match change {
                Change::Whiteout(path) => {
                    if record {
                        self.marks(&path).whiteout.first(index);
                    }
                }
                Change::Opaque(path) => {
                    if record {
                        self.marks(&path).opaque.first(index);
                    }
                }
                Change::Add(entry) => {
                    let visible = !self.hidden(&entry.path, index);
                    let waiting = self.pending.remove(&entry.path);
                    if visible {
                        self.check(&entry, index, name)?;
                        if record {
                            let marks = self.marks(&entry.path);
                            if marks.written.get().is_none() {
                                marks.written.first(index);
                                marks.written_dir = entry.kind == Kind::Dir;
                            }
                            for ancestor in entry.path.ancestors() {
                                let marks = self.paths.entry(ancestor.into()).or_default();
                                marks.below.first(index);
                            }
                        }
                        if let Kind::Symlink(target) = &entry.kind {
                            self.layer_links
                                .insert(entry.path.as_bytes().to_vec(), target.clone());
                        }
                        match &entry.kind {
                            Kind::Hardlink(target) if self.needs_wait(target, index) => {
                                self.pending
                                    .entry(target.clone())
                                    .or_default()
                                    .push(entry.clone());
                            }
                            _ => self.write(&entry, data).map_err(write_error)?,
                        }
                    }
                    if let Some(links) = waiting {
                        self.resolve(entry, visible, links, data, index)
                            .map_err(write_error)?;
                    }
                }
            }
            Ok(())
        })
    }

    /// Finishes the tar. Fails if a hard link's target never appeared.
    pub fn finish(mut self) -> Result<(), Error> {
        if let Some((target, links)) = self.pending.iter().next() {
            return Err(Error::Invalid {
                what: "the image".into(),
                detail: format!(
                    "the hard link {} points to {target}, which no layer holds",
                    links[0].path
                ),
            });
        }
        self.out.finish().map_err(|e| Error::Io {
            path: "the flattened tar".into(),
            source: e,
        })
    }

    fn marks(&mut self, path: &TreePath) -> &mut Marks {
        self.paths.entry(path.as_bytes().into()).or_default()
    }

    /// Whether the layers above `index` hide `path`.
    fn hidden(&self, path: &TreePath, index: usize) -> bool {
        let above = |layer: Option<usize>| layer.is_some_and(|l| l > index);
        if let Some(marks) = self.paths.get(path.as_bytes()) {
            if above(marks.written.get()) || above(marks.whiteout.get()) {
                return true;
            }
        }
        path.ancestors().any(|ancestor| {
            self.paths.get(ancestor).is_some_and(|marks| {
                above(marks.whiteout.get())
                    || above(marks.opaque.get())
                    || (above(marks.written.get()) && !marks.written_dir)
            })
        })
    }

    /// Refuses what the flattened tar cannot show as `--rootfs` would build it: an entry below
    /// a symlink of its own layer that leads outside the tree (`tar -x` would follow it), and
    /// a non-directory of a lower layer at a path upper layers wrote below (they wrote through
    /// it, if it is a symlink; a one-pass tar cannot put their entries where the link points).
    fn check(&self, entry: &Entry, index: usize, layer: &str) -> Result<(), Error> {
        let refuse = |reason: String| Error::Unsafe {
            layer: layer.to_string(),
            entry: entry.path.to_string(),
            reason,
        };
        if let Some((parent, _)) = entry.path.split_last() {
            resolve_inside(parent.as_bytes(), &self.layer_links).map_err(refuse)?;
        }
        let below = self
            .paths
            .get(entry.path.as_bytes())
            .and_then(|marks| marks.below.get())
            .filter(|&layer| layer > index);
        if let (Some(upper), false) = (below, entry.kind == Kind::Dir) {
            if let Kind::Symlink(target) = &entry.kind {
                let mut link = entry.path.as_bytes().to_vec();
                link.push(b'/');
                resolve_inside(
                    &link,
                    &HashMap::from([(entry.path.as_bytes().to_vec(), target.clone())]),
                )
                .map_err(refuse)?;
            }
            return Err(Error::Unsupported(format!(
                "{layer} makes {} a {}, but layer {} put files below it (through it, for a symlink); --flatten writes each path once and cannot reproduce that, use --rootfs DIR and tar the directory",
                entry.path,
                if matches!(entry.kind, Kind::Symlink(_)) { "symlink" } else { "non-directory" },
                upper + 1
            )));
        }
        Ok(())
    }

    /// Whether a hard link of layer `index` to `target` must wait: its target is not written
    /// yet, so it lies in a lower layer. In the bottom layer the target precedes the link.
    fn needs_wait(&self, target: &TreePath, index: usize) -> bool {
        let written = self
            .paths
            .get(target.as_bytes())
            .is_some_and(|marks| marks.written.get().is_some());
        index > 0 && !written
    }

    /// `entry` at a path some hard links wait for: links follow it if it was written, else
    /// its content goes under the first link's name and the others link to that.
    fn resolve(
        &mut self,
        entry: Entry,
        visible: bool,
        links: Vec<Entry>,
        data: &mut dyn Read,
        index: usize,
    ) -> io::Result<()> {
        if let Kind::Hardlink(next) = &entry.kind {
            // A link to a link: wait for the final target instead.
            if self.needs_wait(next, index) {
                self.pending.entry(next.clone()).or_default().extend(links);
                return Ok(());
            }
            return self.write_links(links, next);
        }
        if visible {
            return self.write_links(links, &entry.path);
        }
        let mut links = links.into_iter();
        let Some(first) = links.next() else {
            return Ok(());
        };
        let stand_in = Entry {
            path: first.path.clone(),
            ..entry
        };
        self.write(&stand_in, data)?;
        self.write_links(links.collect(), &first.path)
    }

    fn write_links(&mut self, links: Vec<Entry>, target: &TreePath) -> io::Result<()> {
        for link in links {
            let link = Entry {
                kind: Kind::Hardlink(target.clone()),
                ..link
            };
            self.write(&link, &mut io::empty())?;
        }
        Ok(())
    }

    fn write(&mut self, entry: &Entry, data: &mut dyn Read) -> io::Result<()> {
        let mut header = tar::Header::new_gnu();
        header.set_mode(entry.mode);
        header.set_uid(entry.uid);
        header.set_gid(entry.gid);
        header.set_mtime(entry.mtime);
        header.set_size(0);
        if !entry.xattrs.is_empty() {
            let records: Vec<(String, &[u8])> = entry
                .xattrs
                .iter()
                .map(|(name, value)| {
                    (
                        format!("SCHILY.xattr.{}", String::from_utf8_lossy(name)),
                        value.as_slice(),
                    )
                })
                .collect();
            self.out
                .append_pax_extensions(records.iter().map(|(k, v)| (k.as_str(), *v)))?;
        }
        let path = if entry.path.is_root() {
            Path::new("./")
        } else {
            Path::new(OsStr::from_bytes(entry.path.as_bytes()))
        };
        use tar::EntryType as T;
        let (kind, link): (T, Option<&[u8]>) = match &entry.kind {
            Kind::File => (T::Regular, None),
            Kind::Dir => (T::Directory, None),
            Kind::Symlink(target) => (T::Symlink, Some(target)),
            Kind::Hardlink(target) => (T::Link, Some(target.as_bytes())),
            Kind::CharDevice(major, minor) | Kind::BlockDevice(major, minor) => {
                header.set_device_major(*major)?;
                header.set_device_minor(*minor)?;
                let block = matches!(entry.kind, Kind::BlockDevice(..));
                (if block { T::Block } else { T::Char }, None)
            }
            Kind::Fifo => (T::Fifo, None),
        };
        header.set_entry_type(kind);
        match link {
            Some(target) => {
                self.out
                    .append_link(&mut header, path, Path::new(OsStr::from_bytes(target)))
            }
            None if kind == T::Regular => {
                header.set_size(entry.size);
                self.out
                    .append_data(&mut header, path, &mut data.take(entry.size))
            }
            None => self.out.append_data(&mut header, path, io::empty()),
        }
    }
}

/// Resolves `path` lexically through `links` (symlinks by path) and fails if that leaves the
/// tree: an absolute target, `..` above the root, or more than 40 links.
fn resolve_inside(path: &[u8], links: &HashMap<Vec<u8>, Vec<u8>>) -> Result<(), String> {
    let mut todo: std::collections::VecDeque<Vec<u8>> =
        path.split(|&b| b == b'/').map(<[u8]>::to_vec).collect();
    let mut at: Vec<Vec<u8>> = Vec::new();
    let mut followed = 0;
    while let Some(component) = todo.pop_front() {
        match component.as_slice() {
            b"" | b"." => continue,
            b".." => {
                if at.pop().is_none() {
                    return Err("a symlink on its path leads above the root".into());
                }
                continue;
            }
            _ => {}
        }
        at.push(component);
        let joined = at.join(&b'/');
        if let Some(target) = links.get(&joined) {
            followed += 1;
            if followed > 40 {
                return Err("more than 40 symlinks on its path".into());
            }
            if target.first() == Some(&b'/') {
                return Err(format!(
                    "/{} is a symlink to the absolute path {:?}, outside the tree",
                    String::from_utf8_lossy(&joined),
                    String::from_utf8_lossy(target)
                ));
            }
            at.pop();
            for part in target.split(|&b| b == b'/').rev() {
                todo.push_front(part.to_vec());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer_tar::tests::tar_of;

    /// The flattened tar of `layers` (bottom first), as "path kind [-> link] [=content]".
    fn flatten(layers: &[Vec<u8>]) -> Result<Vec<String>, Error> {
        let mut bytes = Vec::new();
        let mut flat = Flatten::new(&mut bytes);
        for (index, tar) in layers.iter().enumerate().rev() {
            flat.layer(&mut &tar[..], index, "layer")?;
        }
        flat.finish()?;
        let mut archive = tar::Archive::new(&bytes[..]);
        let mut seen = Vec::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let mut line = format!(
                "{} {:?}",
                entry.path().unwrap().display(),
                entry.header().entry_type()
            );
            if let Some(link) = entry.link_name().unwrap() {
                line += &format!(" -> {}", link.display());
            }
            let mut content = String::new();
            entry.read_to_string(&mut content).unwrap();
            if !content.is_empty() {
                line += &format!(" ={content}");
            }
            seen.push(line);
        }
        Ok(seen)
    }

    #[test]
    fn upper_layers_win_and_whiteouts_hide() {
        let lower = tar_of(&[
            (b"./", b'5', b"", b""),
            (b"a/", b'5', b"", b""),
            (b"a/gone", b'0', b"", b"1"),
            (b"a/over", b'0', b"", b"1"),
            (b"o/", b'5', b"", b""),
            (b"o/old", b'0', b"", b"1"),
            (b"f/", b'5', b"", b""),
            (b"f/x", b'0', b"", b"1"),
        ]);
        let upper = tar_of(&[
            (b"a/.wh.gone", b'0', b"", b""),
            (b"a/over", b'0', b"", b"2"),
            (b"o/new", b'0', b"", b"2"),
            (b"o/.wh..wh..opq", b'0', b"", b""),
            (b"f", b'0', b"", b"file now"),
        ]);
        assert_eq!(
            flatten(&[lower, upper]).unwrap(),
            [
                "a/over Regular =2",
                "o/new Regular =2",
                "f Regular =file now",
                "./ Directory",
                "a Directory",
                "o Directory",
            ]
        );
    }

    #[test]
    fn refuses_what_tar_would_follow_outside_and_what_it_cannot_show() {
        for entries in [
            tar_of(&[(b"root", b'2', b"/", b""), (b"root/etc/x", b'0', b"", b"")]),
            tar_of(&[
                (b"c1", b'2', b"c2", b""),
                (b"c2", b'2', b"d/../..", b""),
                (b"c1/x", b'0', b"", b""),
            ]),
        ] {
            let err = flatten(&[entries]).unwrap_err();
            assert!(matches!(err, Error::Unsafe { .. }), "{err}");
        }
        // A symlink that stays inside is fine: tar -x follows it as --rootfs does.
        let inside = tar_of(&[
            (b"usr/lib/", b'5', b"", b""),
            (b"lib", b'2', b"usr/lib", b""),
            (b"lib/x", b'0', b"", b"x"),
        ]);
        assert_eq!(flatten(&[inside]).unwrap().len(), 3);
        // An upper layer writing through a lower layer's symlink cannot be flattened in one pass.
        let lower = tar_of(&[
            (b"usr/lib/", b'5', b"", b""),
            (b"lib", b'2', b"usr/lib", b""),
        ]);
        let upper = tar_of(&[(b"lib/added", b'0', b"", b"x")]);
        let err = flatten(&[lower, upper]).unwrap_err();
        assert!(err.to_string().contains("--rootfs"), "{err}");
        let escaping = tar_of(&[(b"esc", b'2', b"../..", b"")]);
        let upper = tar_of(&[(b"esc/canary", b'0', b"", b"x")]);
        let err = flatten(&[escaping, upper]).unwrap_err();
        assert!(matches!(err, Error::Unsafe { .. }), "{err}");
    }

    #[test]
    fn hard_links_wait_for_their_target() {
        let lower = tar_of(&[
            (b"t", b'0', b"", b"target"),
            (b"hidden", b'0', b"", b"hidden content"),
        ]);
        let upper = tar_of(&[
            (b"l1", b'1', b"t", b""),
            (b"h1", b'1', b"hidden", b""),
            (b"h2", b'1', b"hidden", b""),
            (b".wh.hidden", b'0', b"", b""),
        ]);
        assert_eq!(
            flatten(&[lower, upper]).unwrap(),
            [
                "t Regular =target",
                "l1 Link -> t",
                "h1 Regular =hidden content",
                "h2 Link -> h1",
            ]
        );
        let dangling = tar_of(&[(b"l", b'1', b"nowhere", b"")]);
        let err = flatten(&[tar_of(&[]), dangling]).unwrap_err();
        assert!(err.to_string().contains("no layer holds"), "{err}");
    }
}
