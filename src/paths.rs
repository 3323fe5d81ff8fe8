//! `PathMap`: a value for every path of a tree that was inserted and for each of its ancestors,
//! kept as a trie of components, so a path and all its ancestors cost what the path's own
//! components cost.
//!
//! It exists because the obvious map from whole paths to values stores every ancestor of a
//! path as its own copy: a 4 KiB path of 2,000 directories would cost 4 MB, and layers hold
//! many. Here each component is one node (its parent's number and its name), every lookup
//! and insert walks the path once, and memory and time grow with the bytes of the paths, never
//! with length times depth. It knows nothing of disks, layers or what the values mean.

use crate::layer_tar::TreePath;
use std::collections::HashMap;

/// A node of the trie: the root is `ROOT`.
pub type Node = u32;
pub const ROOT: Node = 0;

pub struct PathMap<T> {
    /// `parent number (4 bytes, little-endian) ++ name` → node.
    ids: HashMap<Box<[u8]>, Node>,
    values: Vec<T>,
}

impl<T: Default> Default for PathMap<T> {
    fn default() -> Self {
        PathMap::new()
    }
}

impl<T: Default> PathMap<T> {
    pub fn new() -> PathMap<T> {
        PathMap {
            ids: HashMap::new(),
            values: vec![T::default()],
        }
    }

    /// Forgets every path; the root's value is reset.
    pub fn clear(&mut self) {
        self.ids.clear();
        self.values.clear();
        self.values.push(T::default());
    }

    /// The child `name` of `parent`, if it was inserted.
    pub fn child(&self, parent: Node, name: &[u8]) -> Option<Node> {
        with_key(parent, name, |key| self.ids.get(key).copied())
    }

    /// The child `name` of `parent`, made if missing.
    pub fn child_or_insert(&mut self, parent: Node, name: &[u8]) -> Node {
        if let Some(node) = self.child(parent, name) {
            return node;
        }
        // Over 4 billion nodes would need hundreds of GB first; saturate rather than wrap.
        let node = Node::try_from(self.values.len()).unwrap_or(Node::MAX);
        let mut key = parent.to_le_bytes().to_vec();
        key.extend_from_slice(name);
        self.ids.insert(key.into_boxed_slice(), node);
        self.values.push(T::default());
        node
    }

    /// The node of `path`, if it (or a path below it) was inserted.
    pub fn find(&self, path: &TreePath) -> Option<Node> {
        let mut node = ROOT;
        for name in path.components() {
            node = self.child(node, name)?;
        }
        Some(node)
    }

    /// The node of `path`, made with its ancestors if missing.
    pub fn insert(&mut self, path: &TreePath) -> Node {
        let mut node = ROOT;
        for name in path.components() {
            node = self.child_or_insert(node, name);
        }
        node
    }

    pub fn get(&self, node: Node) -> &T {
        &self.values[node as usize]
    }

    pub fn get_mut(&mut self, node: Node) -> &mut T {
        &mut self.values[node as usize]
    }

    /// How many nodes, the root included (what the memory figures count).
    #[cfg_attr(not(feature = "initramfs"), allow(dead_code))]
    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.len() == 1
    }
}

/// Calls `f` with the key of `parent`'s child `name`, built on the stack when it fits (names
/// on Linux are at most 255 bytes).
fn with_key<R>(parent: Node, name: &[u8], f: impl FnOnce(&[u8]) -> R) -> R {
    let mut buf = [0u8; 4 + 255];
    if name.len() <= 255 {
        buf[..4].copy_from_slice(&parent.to_le_bytes());
        buf[4..4 + name.len()].copy_from_slice(name);
        return f(&buf[..4 + name.len()]);
    }
    let mut key = parent.to_le_bytes().to_vec();
    key.extend_from_slice(name);
    f(&key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(text: &str) -> TreePath {
        TreePath::parse(text.as_bytes()).unwrap()
    }

    #[test]
    fn paths_share_their_ancestors() {
        let mut map: PathMap<u8> = PathMap::new();
        let c = map.insert(&path("a/b/c"));
        *map.get_mut(c) = 3;
        let d = map.insert(&path("a/b/d"));
        assert_eq!(map.len(), 5, "root, a, b, c, d");
        assert_ne!(c, d);
        assert_eq!(map.find(&path("a/b/c")), Some(c));
        assert_eq!(*map.get(c), 3);
        let b = map.find(&path("a/b")).unwrap();
        assert_eq!(map.child(b, b"d"), Some(d));
        assert_eq!(map.find(&path("a/x")), None);
        assert_eq!(map.find(&TreePath::root()), Some(ROOT));
        map.clear();
        assert!(map.is_empty());
        assert_eq!(map.find(&path("a")), None);
    }

    #[test]
    fn a_deep_path_costs_its_length() {
        // 2,000 levels: the old map of whole paths held 4 MB of ancestors for this one path.
        let deep = "a/".repeat(2000) + "f";
        let mut map: PathMap<()> = PathMap::new();
        map.insert(&path(&deep));
        let key_bytes: usize = map.ids.keys().map(|k| k.len()).sum();
        assert_eq!(map.len(), 2002);
        assert!(key_bytes < 5 * 2002, "{key_bytes}");
    }
}
