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
//! biggest, is never recorded): see docs/design.md for the figure per million paths.
//!
//! Links: an entry below a symlink of its own layer is written where `--rootfs` would put it
//! (the link followed with the tree's root as `/`), and a hard link to a symlink as that
//! symlink, so no written path passes through a link that `tar -x` would follow; what one pass
//! cannot resolve (an upper layer writing through a lower layer's link) is refused, naming
//! `--rootfs`. A hard link whose target a lower layer holds is written when that target is,
//! right after it; if a layer above hides the target, the target's content is written under
//! the first such link's name and the others link to that. This module knows nothing of
//! registries; it reads layer tars and writes one.

use super::cpio::{self, Newc, Summary, MAX_LINKED};
use crate::error::Error;
use crate::layer_tar::{self, Change, Entry, Kind, Time, TreePath, PATH_MAX};
use crate::limits::MAX_HELD_LINKS;
use crate::paths::{Node, PathMap, ROOT};
use crate::tar_reader::Expanded;
use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

pub struct Flatten<'w> {
    out: Out<'w>,
    /// What the layers above the current one did to each path.
    paths: PathMap<Marks>,
    /// Hard links waiting for their target to appear in a lower layer, by target.
    pending: HashMap<TreePath, Vec<Entry>>,
    /// The symlinks the current layer wrote, by path: the entries after them are written where
    /// `--rootfs` would put them, following these links with the root as `/`, so the tar holds
    /// no path through a symlink for `tar -x` to follow.
    layer_links: PathMap<Option<Vec<u8>>>,
    /// For a cpio, whose files must say they have links before the links come: how many links
    /// of the current layer name each path (see `count_links`).
    link_counts: HashMap<TreePath, u32>,
    /// The layer being merged, for messages.
    layer_name: String,
    /// Bytes held for `layer_links` and `pending` (see `hold`).
    link_bytes: usize,
    pending_bytes: usize,
}

/// What the merged entries are written as.
enum Out<'w> {
    Tar(tar::Builder<&'w mut dyn Write>),
    #[cfg_attr(not(feature = "initramfs"), allow(dead_code))]
    Cpio(Newc<&'w mut dyn Write>),
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

/// What a kept name costs besides its bytes: the map's entry, the allocation's header.
const HELD_OVERHEAD: usize = 96;

/// What a hard link waiting for its target holds: the entry, its names and attributes.
fn cost(entry: &Entry) -> usize {
    let target = match &entry.kind {
        Kind::Hardlink(t) => t.as_bytes().len(),
        Kind::Symlink(t) => t.len(),
        _ => 0,
    };
    let xattrs: usize = entry
        .xattrs
        .iter()
        .map(|(n, v)| n.len() + v.len() + 48)
        .sum();
    entry.path.as_bytes().len() + target + xattrs + HELD_OVERHEAD + std::mem::size_of::<Entry>()
}

/// A layer index plus one, 0 for none: two bytes where `Option<usize>` takes sixteen.
#[derive(Default, Clone, Copy)]
struct At(u16);

/// Layers an image may have here (Docker allows 127).
const MAX_LAYERS: usize = u16::MAX as usize - 1;

/// How many symlinks one path may pass through, as the kernel allows.
const MAX_LINKS: usize = 40;

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
    /// Writes a tar (`--flatten`).
    pub fn tar(out: &'w mut dyn Write) -> Flatten<'w> {
        let mut out = tar::Builder::new(out);
        out.mode(tar::HeaderMode::Complete);
        Flatten::to(Out::Tar(out))
    }

    /// Writes a newc cpio (`--initramfs`). Each layer must be read by `count_links` before
    /// `layer` merges it.
    pub fn cpio(out: &'w mut dyn Write) -> Result<Flatten<'w>, Error> {
        #[cfg(feature = "initramfs")]
        return Ok(Flatten::to(Out::Cpio(Newc::new(out))));
        #[cfg(not(feature = "initramfs"))]
        {
            let _ = out;
            Err(crate::features::missing("initramfs", "--initramfs"))
        }
    }

    fn to(out: Out<'w>) -> Flatten<'w> {
        Flatten {
            out,
            paths: PathMap::new(),
            pending: HashMap::new(),
            layer_links: PathMap::new(),
            link_counts: HashMap::new(),
            layer_name: String::new(),
            link_bytes: 0,
            pending_bytes: 0,
        }
    }

    /// Writes `entry` as a layer above the image's `layers` would (`--init`): it hides what
    /// the image has at its path.
    pub fn above(&mut self, entry: Entry, layers: usize) -> Result<(), Error> {
        "--init".clone_into(&mut self.layer_name);
        self.add(entry, &mut io::empty(), layers, "--init")
    }

    /// Reads layer `index` ahead of `layer` and counts the hard links of that layer to each
    /// path, and the links of upper layers waiting for them, as paths land when merged: a
    /// cpio's file must say it has links before they come, and in a tar a link follows its
    /// target. Memory is one count per file that has links, at most `cpio::MAX_LINKED`,
    /// whatever the number of links.
    pub fn count_links(&mut self, tar: &mut dyn Read, name: &str) -> Result<(), Error> {
        self.forget_layer_links();
        self.link_counts.clear();
        layer_tar::read_layer(tar, name, &mut |change, _| {
            let Change::Add(entry) = change else {
                return Ok(());
            };
            let refuse = |reason: String| Error::Unsafe {
                layer: name.to_string(),
                entry: entry.path.to_string(),
                reason,
            };
            let path = match self.layer_links.is_empty() {
                true => entry.path.clone(),
                false => self.land(&entry.path).map_err(refuse)?,
            };
            match &entry.kind {
                Kind::Symlink(target) => {
                    self.keep_layer_link(&path, target, name)?;
                }
                Kind::Hardlink(target) => {
                    let target = match self.layer_links.is_empty() {
                        true => target.clone(),
                        false => self.land(target).map_err(refuse)?,
                    };
                    if self.link_counts.len() >= MAX_LINKED
                        && !self.link_counts.contains_key(&target)
                    {
                        return Err(cpio::too_many_linked(name));
                    }
                    let waiting = self.pending.get(&path).map_or(0, Vec::len) as u32;
                    let count = self.link_counts.entry(target).or_default();
                    *count = count.saturating_add(1 + waiting);
                }
                _ => {}
            }
            Ok(())
        })?;
        self.forget_layer_links();
        Ok(())
    }

    /// Merges layer `index` (0 = bottom), which must come after every layer above it.
    pub fn layer(&mut self, tar: &mut dyn Read, index: usize, name: &str) -> Result<(), Error> {
        if index >= MAX_LAYERS {
            return Err(Error::Unsupported(format!(
                "the image has over {MAX_LAYERS} layers; --flatten handles fewer"
            )));
        }
        self.forget_layer_links();
        name.clone_into(&mut self.layer_name);
        layer_tar::read_layer(tar, name, &mut |change, data| {
            let (path, whiteout) = match change {
                Change::Add(entry) => return self.add(entry, data, index, name),
                Change::Whiteout(path) => (path, true),
                Change::Opaque(path) => (path, false),
            };
            if index == 0 {
                return Ok(());
            }
            // Through this layer's symlinks, as `--rootfs` finds what to delete or empty.
            let landed = if whiteout {
                self.land(&path)
            } else {
                self.land(&path.join(b"x"))
                    .map(|p| p.split_last().map(|(dir, _)| dir).unwrap_or_default())
            };
            let path = landed.map_err(|reason| Error::Unsafe {
                layer: name.to_string(),
                entry: path.to_string(),
                reason,
            })?;
            let node = self.paths.insert(&path);
            let marks = self.paths.get_mut(node);
            if whiteout {
                marks.whiteout.first(index);
            } else {
                marks.opaque.first(index);
            }
            Ok(())
        })
    }

    fn add(
        &mut self,
        mut entry: Entry,
        data: &mut dyn Read,
        index: usize,
        layer: &str,
    ) -> Result<(), Error> {
        // A sparse file goes out whole, its holes as zeros: neither a tar nor a cpio of ours
        // marks holes.
        if let Some(regions) = entry.sparse.take() {
            let size = entry.size;
            return self.add(
                entry,
                &mut Expanded::new(data, &regions, size),
                index,
                layer,
            );
        }
        let refuse = |entry: &Entry, reason: String| Error::Unsafe {
            layer: layer.to_string(),
            entry: entry.path.to_string(),
            reason,
        };
        if !self.layer_links.is_empty() {
            entry.path = self.land(&entry.path).map_err(|r| refuse(&entry, r))?;
            if let Kind::Hardlink(target) = &entry.kind {
                let target = self.land(target).map_err(|r| refuse(&entry, r))?;
                // A hard link to a symlink is that symlink (link(2) does not follow it).
                entry.kind = match self.layer_link(&target) {
                    Some(link) => Kind::Symlink(link.to_vec()),
                    None => Kind::Hardlink(target),
                };
            }
            if self.layer_link(&entry.path).is_some() {
                return Err(Error::Unsupported(format!(
                    "{layer} writes {} twice, first as a symlink; --flatten writes each path once, and tar -x would follow the link: use --rootfs DIR and tar the directory",
                    entry.path
                )));
            }
        }
        let visible = !self.hidden(&entry.path, index);
        let waiting = self.pending.remove(&entry.path);
        if let Some(links) = &waiting {
            self.pending_bytes -= links.iter().map(cost).sum::<usize>();
        }
        if visible {
            self.check(&entry, index, layer)?;
            if index > 0 {
                self.record(&entry, index);
            }
            if let Kind::Symlink(target) = &entry.kind {
                self.keep_layer_link(&entry.path, target, layer)?;
            }
            match &entry.kind {
                Kind::Hardlink(target) if self.needs_wait(target, index) => {
                    self.pending_bytes += cost(&entry);
                    self.hold(layer)?;
                    self.pending
                        .entry(target.clone())
                        .or_default()
                        .push(entry.clone());
                }
                Kind::Hardlink(target) if self.hidden(target, index) => {
                    // Its target came earlier in this layer and an upper layer hides it: its
                    // content has gone by, and the name would lead where upper layers put
                    // something else.
                    return Err(Error::Unsupported(format!(
                        "{layer} hard-links {} to {target}, which an upper layer hides or replaces; --flatten cannot write that in one pass: use --rootfs DIR and tar the directory",
                        entry.path
                    )));
                }
                _ => {
                    let links = waiting.as_ref().map_or(0, Vec::len) as u32;
                    let links = links.saturating_add(self.counted(&entry.path));
                    self.write(&entry, links, data)?
                }
            }
        }
        if let Some(links) = waiting {
            self.resolve(entry, visible, links, data, index, layer)?;
        }
        Ok(())
    }

    /// Records a symlink of the current layer, within what may be held.
    fn keep_layer_link(
        &mut self,
        path: &TreePath,
        target: &[u8],
        layer: &str,
    ) -> Result<(), Error> {
        self.link_bytes += path.as_bytes().len() + target.len() + HELD_OVERHEAD;
        self.hold(layer)?;
        let node = self.layer_links.insert(path);
        *self.layer_links.get_mut(node) = Some(target.to_vec());
        Ok(())
    }

    fn forget_layer_links(&mut self) {
        self.layer_links.clear();
        self.link_bytes = 0;
    }

    /// Refuses a layer whose links would hold more than the table allows: memory follows the
    /// bytes of the names kept, never what a layer claims (`limits::MAX_HELD_LINKS`).
    fn hold(&self, layer: &str) -> Result<(), Error> {
        if self.link_bytes + self.pending_bytes <= MAX_HELD_LINKS {
            return Ok(());
        }
        Err(Error::Unsupported(format!(
            "{layer}: its symlinks and the hard links waiting for their targets hold more than the {} MiB of names --flatten and --initramfs keep in memory; use --rootfs DIR",
            MAX_HELD_LINKS >> 20
        )))
    }

    /// Finishes the tar or cpio (for a cpio, says what it holds). Fails if a hard link's
    /// target never appeared.
    pub fn finish(self) -> Result<Option<Summary>, Error> {
        if let Some((target, links)) = self.pending.iter().next() {
            return Err(Error::Invalid {
                what: "the image".into(),
                detail: format!(
                    "the hard link {} points to {target}, which no layer holds",
                    links[0].path
                ),
            });
        }
        match self.out {
            Out::Tar(mut tar) => tar.finish().map_err(write_error).map(|_| None),
            Out::Cpio(newc) => newc.finish().map(|(_, summary)| Some(summary)),
        }
    }

    /// What the entry at `path` (of a layer above the bottom one) did, for the layers below.
    fn record(&mut self, entry: &Entry, index: usize) {
        let mut node = ROOT;
        for name in entry.path.components() {
            self.paths.get_mut(node).below.first(index);
            node = self.paths.child_or_insert(node, name);
        }
        let marks = self.paths.get_mut(node);
        if marks.written.get().is_none() {
            marks.written.first(index);
            marks.written_dir = entry.kind == Kind::Dir;
        }
    }

    /// Whether the layers above `index` hide `path`.
    fn hidden(&self, path: &TreePath, index: usize) -> bool {
        let above = |at: At| at.get().is_some_and(|l| l > index);
        let mut node = ROOT;
        let mut names = path.components();
        loop {
            let marks = self.paths.get(node);
            let Some(name) = names.next() else {
                return above(marks.written) || above(marks.whiteout);
            };
            if above(marks.whiteout)
                || above(marks.opaque)
                || (above(marks.written) && !marks.written_dir)
            {
                return true;
            }
            match self.paths.child(node, name) {
                Some(child) => node = child,
                None => return false,
            }
        }
    }

    /// The current layer's symlink at `path`, if it wrote one there.
    fn layer_link(&self, path: &TreePath) -> Option<&[u8]> {
        let node = self.layer_links.find(path)?;
        self.layer_links.get(node).as_deref()
    }

    /// `path` with its parent resolved through the current layer's symlinks as `--rootfs`
    /// resolves it (the root as `/`: an absolute target starts again at the root, `..` stops
    /// there); the last component is kept, as it is what gets written.
    fn land(&self, path: &TreePath) -> Result<TreePath, String> {
        let Some((parent, name)) = path.split_last() else {
            return Ok(path.clone());
        };
        let mut todo: std::collections::VecDeque<&[u8]> = parent.components().collect();
        // The resolved path, where each component starts in it, and its node in the links.
        let mut at: Vec<u8> = Vec::new();
        let mut starts: Vec<(usize, Option<Node>)> = Vec::new();
        let mut followed = 0;
        while let Some(component) = todo.pop_front() {
            match component {
                b"" | b"." => continue,
                b".." => {
                    if let Some((start, _)) = starts.pop() {
                        at.truncate(start);
                    }
                    continue;
                }
                _ => {}
            }
            let node = match starts.last() {
                None => Some(ROOT),
                Some((_, node)) => *node,
            }
            .and_then(|node| self.layer_links.child(node, component));
            if let Some(target) = node.and_then(|node| self.layer_links.get(node).as_deref()) {
                followed += 1;
                if followed > MAX_LINKS {
                    return Err(format!(
                        "more than {MAX_LINKS} symlinks on its path (a loop?)"
                    ));
                }
                if target.first() == Some(&b'/') {
                    at.clear();
                    starts.clear();
                }
                for part in target.split(|&b| b == b'/').rev() {
                    todo.push_front(part);
                }
                continue;
            }
            starts.push((at.len(), node));
            if !at.is_empty() {
                at.push(b'/');
            }
            at.extend_from_slice(component);
            if at.len() >= PATH_MAX {
                return Err(
                    "its path, with the symlinks on it followed, is over Linux's limit".into(),
                );
            }
        }
        if !at.is_empty() {
            at.push(b'/');
        }
        at.extend_from_slice(name);
        TreePath::parse(&at)
    }

    /// Refuses a non-directory of a lower layer at a path upper layers wrote below: they wrote
    /// through it, if it is a symlink, and a one-pass tar cannot put their entries where the
    /// link points.
    fn check(&self, entry: &Entry, index: usize, layer: &str) -> Result<(), Error> {
        let below = self
            .paths
            .find(&entry.path)
            .and_then(|node| self.paths.get(node).below.get())
            .filter(|&layer| layer > index);
        if let (Some(upper), false) = (below, entry.kind == Kind::Dir) {
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
            .find(target)
            .is_some_and(|node| self.paths.get(node).written.get().is_some());
        index > 0 && !written
    }

    /// `entry` at a path some hard links wait for: links follow it if it was written, else
    /// its content goes under the first link's name and the others link to that. Links to a
    /// symlink are that symlink.
    fn resolve(
        &mut self,
        entry: Entry,
        visible: bool,
        links: Vec<Entry>,
        data: &mut dyn Read,
        index: usize,
        layer: &str,
    ) -> Result<(), Error> {
        match &entry.kind {
            Kind::Hardlink(next) => {
                // A link to a link: wait for the final target instead.
                if self.needs_wait(next, index) {
                    self.pending_bytes += links.iter().map(cost).sum::<usize>();
                    self.hold(layer)?;
                    self.pending.entry(next.clone()).or_default().extend(links);
                    return Ok(());
                }
                let next = next.clone();
                return self.write_links(links, &next);
            }
            Kind::Symlink(target) => {
                for link in links {
                    let wrote_below = self
                        .paths
                        .find(&link.path)
                        .is_some_and(|node| self.paths.get(node).below.get().is_some());
                    if wrote_below {
                        return Err(Error::Unsupported(format!(
                            "{} is a hard link to the symlink {} of {layer}, and an upper layer wrote below it; --flatten cannot reproduce that in one pass, use --rootfs DIR and tar the directory",
                            link.path, entry.path
                        )));
                    }
                    let link = Entry {
                        kind: Kind::Symlink(target.clone()),
                        ..link
                    };
                    self.write(&link, 0, &mut io::empty())?;
                }
                return Ok(());
            }
            _ => {}
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
        let others = links.len() as u32;
        self.write(&stand_in, others, data)?;
        self.write_links(links.collect(), &first.path)
    }

    /// How many links of the current layer `count_links` found to `path`.
    fn counted(&self, path: &TreePath) -> u32 {
        self.link_counts.get(path).copied().unwrap_or(0)
    }

    fn write_links(&mut self, links: Vec<Entry>, target: &TreePath) -> Result<(), Error> {
        for link in links {
            let link = Entry {
                kind: Kind::Hardlink(target.clone()),
                ..link
            };
            self.write(&link, 0, &mut io::empty())?;
        }
        Ok(())
    }

    /// Writes `entry`; `links` is how many hard links to it will follow (a cpio needs it).
    fn write(&mut self, entry: &Entry, links: u32, data: &mut dyn Read) -> Result<(), Error> {
        let out = match &mut self.out {
            Out::Tar(out) => out,
            Out::Cpio(newc) => return newc.add(entry, links, data, &self.layer_name),
        };
        tar_entry(out, entry, data).map_err(write_error)
    }
}

fn tar_entry(
    out: &mut tar::Builder<&mut dyn Write>,
    entry: &Entry,
    data: &mut dyn Read,
) -> io::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_mode(entry.mode);
    header.set_uid(entry.uid);
    header.set_gid(entry.gid);
    header.set_mtime(u64::try_from(entry.mtime.seconds).unwrap_or(0));
    header.set_size(0);
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
    let mut records: Vec<(String, &[u8])> = entry
        .xattrs
        .iter()
        .map(|(name, value)| {
            (
                format!("SCHILY.xattr.{}", String::from_utf8_lossy(name)),
                value.as_slice(),
            )
        })
        .collect();
    // A time before 1970, or with a fraction, goes in a PAX record, as Go and GNU tar write it.
    let time = pax_time(entry.mtime);
    if let Some(time) = &time {
        records.push(("mtime".into(), time.as_bytes()));
    }
    if let Some(target) = link {
        // Verbatim: the tar crate's set_link_name would rewrite `/` as `//` and refuse an
        // empty target. A long one goes in a PAX record, as the path does.
        const FIELD: usize = 100;
        header.set_link_name_literal(&target[..target.len().min(FIELD)])?;
        if target.len() > FIELD {
            records.push(("linkpath".into(), target));
        }
    }
    if !records.is_empty() {
        out.append_pax_extensions(records.iter().map(|(k, v)| (k.as_str(), *v)))?;
    }
    let path = if entry.path.is_root() {
        Path::new("./")
    } else {
        Path::new(OsStr::from_bytes(entry.path.as_bytes()))
    };
    if kind == T::Regular {
        header.set_size(entry.size);
        return out.append_data(&mut header, path, &mut data.take(entry.size));
    }
    out.append_data(&mut header, path, io::empty())
}

/// A PAX `mtime` value for a time a header cannot hold: negative, or with nanoseconds.
fn pax_time(time: Time) -> Option<String> {
    if time.seconds >= 0 && time.nanos == 0 {
        return None;
    }
    if time.nanos == 0 {
        return Some(time.seconds.to_string());
    }
    // -2 s and 0.25 s is -1.75 s.
    let (seconds, nanos) = match time.seconds < 0 {
        true => (time.seconds + 1, 1_000_000_000 - time.nanos),
        false => (time.seconds, time.nanos),
    };
    let sign = if time.seconds < 0 && seconds == 0 {
        "-"
    } else {
        ""
    };
    let fraction = format!("{nanos:09}");
    Some(format!(
        "{sign}{seconds}.{}",
        fraction.trim_end_matches('0')
    ))
}

fn write_error(e: io::Error) -> Error {
    Error::Io {
        path: "the flattened tar".into(),
        source: e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer_tar::tests::tar_of;

    /// The flattened tar of `layers` (bottom first), as "path kind [-> link] [=content]".
    fn flatten(layers: &[Vec<u8>]) -> Result<Vec<String>, Error> {
        let mut bytes = Vec::new();
        let mut flat = Flatten::tar(&mut bytes);
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
    fn entries_land_where_rootfs_puts_them_and_nothing_goes_through_a_link() {
        // The root as `/`: an absolute target and `..` above the root stay inside.
        let absolute = tar_of(&[(b"root", b'2', b"/", b""), (b"root/etc/x", b'0', b"", b"x")]);
        let out = flatten(&[absolute]).unwrap();
        assert_eq!(out[1], "etc/x Regular =x");
        let chain = tar_of(&[
            (b"c1", b'2', b"c2", b""),
            (b"c2", b'2', b"d/../..", b""),
            (b"c1/x", b'0', b"", b""),
        ]);
        assert_eq!(flatten(&[chain]).unwrap()[2], "x Regular");
        let inside = tar_of(&[
            (b"usr/lib/", b'5', b"", b""),
            (b"lib", b'2', b"usr/lib", b""),
            (b"lib/x", b'0', b"", b"x"),
        ]);
        assert_eq!(flatten(&[inside]).unwrap()[2], "usr/lib/x Regular =x");
        // A hard link to a symlink is a symlink, and what goes below it lands where it points.
        let hard_to_symlink = tar_of(&[
            (b"t", b'2', b"/tmp/canary", b""),
            (b"s", b'1', b"t", b""),
            (b"s/pwned", b'0', b"", b"x"),
        ]);
        assert_eq!(
            flatten(&[hard_to_symlink]).unwrap(),
            [
                "t Symlink -> /tmp/canary",
                "s Symlink -> /tmp/canary",
                "tmp/canary/pwned Regular =x"
            ]
        );
        // A path written as a symlink and then as something else: tar -x would follow it.
        let retyped = tar_of(&[(b"d", b'2', b"/tmp", b""), (b"d/", b'5', b"", b"")]);
        let err = flatten(&[retyped]).unwrap_err();
        assert!(err.to_string().contains("--rootfs"), "{err}");
        // An upper layer writing through a lower layer's symlink cannot be flattened in one pass.
        let lower = tar_of(&[
            (b"usr/lib/", b'5', b"", b""),
            (b"lib", b'2', b"usr/lib", b""),
        ]);
        let upper = tar_of(&[(b"lib/added", b'0', b"", b"x")]);
        let err = flatten(&[lower, upper]).unwrap_err();
        assert!(err.to_string().contains("--rootfs"), "{err}");
        // A lower layer's hard link to a path an upper layer made a symlink's.
        let lower = tar_of(&[
            (b"x/", b'5', b"", b""),
            (b"x/f", b'0', b"", b"f"),
            (b"h", b'1', b"x/f", b""),
        ]);
        let upper = tar_of(&[(b"x", b'2', b"/tmp/canary", b"")]);
        let err = flatten(&[lower, upper]).unwrap_err();
        assert!(err.to_string().contains("--rootfs"), "{err}");
        // An upper layer's hard link to a lower layer's symlink, with something written below.
        let lower = tar_of(&[(b"t", b'2', b"/tmp/canary", b"")]);
        let upper = tar_of(&[(b"s", b'1', b"t", b""), (b"s/pwned", b'0', b"", b"x")]);
        let err = flatten(&[lower, upper]).unwrap_err();
        assert!(err.to_string().contains("--rootfs"), "{err}");
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
