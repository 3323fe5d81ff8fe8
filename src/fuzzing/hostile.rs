//! Hostile images made to order: a generator of layer sequences that attack the invariants of
//! `--rootfs`, `--flatten` and `--git` — nothing outside the directory changes, the repository
//! stays git's, memory stays flat whatever a path claims. Its choices come from fuzz input (the
//! `hostile` fuzz target) or from a seeded generator (`tests/hostile.rs`, which runs the binary on
//! what it makes).
//!
//! It composes attack primitives rather than replaying known exploits: symlinks (absolute,
//! climbing, chained, to `.git` and `.`), hard links (to links, to directories, out of the tree),
//! files a git repository would obey (filter configs, attributes, hooks, `gitdir:` files),
//! whiteouts and opaque markers anywhere, entries named `.`, empty and very long names and paths,
//! and paths re-typed across layers. It builds the tars byte by byte (the tar crate refuses such
//! names) and never touches the disk.

/// Where the generator's decisions come from.
pub struct Choices<'a> {
    bytes: &'a [u8],
    at: usize,
    state: u64,
}

impl<'a> Choices<'a> {
    /// Decisions read from fuzz input, one byte each; zeros once it runs out.
    pub fn from_bytes(bytes: &'a [u8]) -> Choices<'a> {
        Choices {
            bytes,
            at: 0,
            state: 0,
        }
    }

    /// Decisions from a seeded xorshift generator: the same seed, the same image.
    pub fn seeded(seed: u64) -> Choices<'static> {
        Choices {
            bytes: &[],
            at: 0,
            state: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
        }
    }

    fn below(&mut self, n: usize) -> usize {
        if n <= 1 {
            return 0;
        }
        if self.state == 0 {
            let byte = self.bytes.get(self.at).copied().unwrap_or(0);
            self.at += 1;
            return usize::from(byte) % n;
        }
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        (self.state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % n
    }

    fn pick<T: Clone>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())].clone()
    }
}

/// The canary's name in the directory the generator is told about.
pub const CANARY: &str = "canary";

/// A generated image: its layer tars (bottom first), what each step did (for a failure
/// message), and what every unpacking must do with it where the names alone decide.
pub struct Hostile {
    pub layers: Vec<Vec<u8>>,
    pub plan: Vec<String>,
    pub expect: Expect,
}

/// What the generator knows an unpacking must do, from the entries' names alone. Links decide
/// the rest at run time, so most hostile images are `Either`; what is `Refused` must be refused
/// by every mode, and a `Legitimate` image (real images' tricks, no attack) accepted by every
/// mode: a dockersave that refused everything, or refused too eagerly, fails on those.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expect {
    /// The outside must stay as it was; accepting or refusing are both right.
    Either,
    /// Every mode refuses: an absolute name, a `..` component, a name too long for any
    /// filesystem, or something other than a directory at the root (the reason).
    Refused(String),
    /// `--git` refuses (an entry inside `/.git`); the other modes may accept it.
    RefusedWithGit,
    /// Every mode accepts it.
    Legitimate,
}

enum Body {
    File(Vec<u8>, u32),
    Dir,
    DirMode(u32),
    Symlink(Vec<u8>),
    Hardlink(Vec<u8>),
    Fifo,
}

struct Maker<'c, 'a> {
    c: &'c mut Choices<'a>,
    expect: Expect,
    /// The directory three levels above the unpacked tree, holding the canary.
    outside: String,
    links: Vec<Vec<u8>>,
    files: Vec<Vec<u8>>,
    plan: Vec<String>,
}

/// An image of one to three layers aimed at `outside/canary`, where `outside` is the absolute
/// path of the directory three levels above the one the image is unpacked into (`DIR =
/// outside/a/b/rootfs`).
pub fn hostile_image(c: &mut Choices, outside: &str) -> Hostile {
    let mut maker = Maker {
        c,
        expect: Expect::Either,
        outside: outside.trim_end_matches('/').to_string(),
        links: Vec::new(),
        files: Vec::new(),
        plan: Vec::new(),
    };
    let layers = 1 + maker.c.below(3);
    let mut tars = Vec::new();
    for layer in 0..layers {
        maker.plan.push(format!("layer {}:", layer + 1));
        let mut tar = Vec::new();
        for _ in 0..1 + maker.c.below(4) {
            for (path, body) in maker.step() {
                maker.describe(&path, &body);
                maker.judge(&path, &body);
                append(&mut tar, &path, &body);
            }
        }
        tar.extend_from_slice(&[0; 1024]);
        tars.push(tar);
    }
    Hostile {
        layers: tars,
        plan: maker.plan,
        expect: maker.expect,
    }
}

/// An image of one to three layers made only of what real images do and an over-eager unpacker
/// might refuse: setuid, read-only, sticky and unreadable modes; names with spaces, newlines,
/// non-ASCII bytes, leading dashes and dots, 255 bytes long; missing parent entries; symlinks
/// absolute, relative, dangling and to directories, with entries of the same layer written
/// through them; hard links within a layer and to a lower layer's file; FIFOs; paths 64
/// levels deep; whiteouts, opaque directories and files and directories replacing each other
/// across layers. Every mode must accept it.
pub fn legitimate_image(c: &mut Choices) -> Hostile {
    let mut legit = Legit {
        c,
        plan: Vec::new(),
        fresh: 0,
        lower_files: Vec::new(),
        lower_dirs: Vec::new(),
        files: Vec::new(),
        dirs: Vec::new(),
    };
    let mut tars = Vec::new();
    let layers = 1 + legit.c.below(3);
    for layer in 0..layers {
        legit.plan.push(format!("layer {}:", layer + 1));
        let mut entries = Vec::new();
        if layer == 0 {
            for dir in ["usr", "usr/bin", "usr/lib", "etc"] {
                entries.push((dir.as_bytes().to_vec(), Body::Dir));
            }
            entries.extend([
                (
                    b"usr/bin/busybox".to_vec(),
                    Body::File(b"#!/bin/sh\n".to_vec(), 0o755),
                ),
                (b"bin".to_vec(), Body::Symlink(b"usr/bin".to_vec())),
                (b"lib".to_vec(), Body::Symlink(b"/usr/lib".to_vec())),
                (
                    b"etc/mtab".to_vec(),
                    Body::Symlink(b"/proc/self/mounts".to_vec()),
                ),
            ]);
        }
        for _ in 0..1 + legit.c.below(4) {
            entries.extend(legit.step(layer > 0));
        }
        let mut tar = Vec::new();
        for (path, body) in &entries {
            legit.plan.push(format!("  {}", describe(path, body)));
            append(&mut tar, path, body);
        }
        tar.extend_from_slice(&[0; 1024]);
        tars.push(tar);
        // What this layer made, an upper layer may hide or replace.
        legit.lower_files.append(&mut legit.files);
        legit.lower_dirs.append(&mut legit.dirs);
    }
    Hostile {
        layers: tars,
        plan: legit.plan,
        expect: Expect::Legitimate,
    }
}

struct Legit<'c, 'a> {
    c: &'c mut Choices<'a>,
    plan: Vec<String>,
    fresh: usize,
    /// Files and directories of lower layers that nothing links to or into: an upper layer
    /// may white them out or re-type them.
    lower_files: Vec<(Vec<u8>, Vec<u8>)>,
    lower_dirs: Vec<Vec<u8>>,
    /// This layer's, as (parent, name) and paths.
    files: Vec<(Vec<u8>, Vec<u8>)>,
    dirs: Vec<Vec<u8>>,
}

impl Legit<'_, '_> {
    /// A directory no other step uses, with its entry (real layer tars sometimes leave a
    /// parent's entry out; unpackers make it).
    fn fresh_dir(&mut self, entries: &mut Vec<(Vec<u8>, Body)>) -> Vec<u8> {
        self.fresh += 1;
        let dir = format!("s{}", self.fresh).into_bytes();
        if self.c.below(3) > 0 {
            entries.push((dir.clone(), Body::Dir));
        }
        dir
    }

    fn step(&mut self, upper: bool) -> Vec<(Vec<u8>, Body)> {
        let join = |a: &[u8], b: &[u8]| [a, b"/", b].concat();
        let mut entries = Vec::new();
        let kind = self.c.below(9);
        let kind = match kind {
            6 if !upper || self.lower_files.is_empty() => 0,
            8 if !upper || (self.lower_dirs.is_empty() && self.lower_files.is_empty()) => 7,
            k => k,
        };
        match kind {
            0 => {
                let dir = self.fresh_dir(&mut entries);
                let long = "l".repeat(255);
                let names = [
                    "plain",
                    "sp ace",
                    "\u{e9}t\u{e9}",
                    "new\nline",
                    "-dash",
                    "..dots",
                    ".hidden",
                    &long,
                ];
                let name = self.c.pick(&names).as_bytes().to_vec();
                let mode = self
                    .c
                    .pick(&[0o644, 0o755, 0o4755, 0o2755, 0o600, 0o444, 0o000]);
                entries.push((join(&dir, &name), Body::File(b"data".to_vec(), mode)));
                self.files.push((dir, name));
            }
            1 => {
                let dir = self.fresh_dir(&mut Vec::new());
                let mode = self.c.pick(&[0o700, 0o1777, 0o555, 0o2775]);
                entries.push((dir.clone(), Body::DirMode(mode)));
                entries.push((join(&dir, b"inside"), Body::File(b"in".to_vec(), 0o644)));
            }
            2 => {
                let dir = self.fresh_dir(&mut entries);
                let targets: [&[u8]; 4] = [
                    b"../usr/bin/busybox",
                    b"/usr/bin/busybox",
                    b"/nonexistent/x",
                    b"../etc",
                ];
                let target = self.c.pick(&targets).to_vec();
                entries.push((join(&dir, b"link"), Body::Symlink(target)));
                if self.c.below(2) == 0 {
                    // Written through a link of its own layer: it lands under /usr/lib.
                    entries.push((join(&dir, b"dirlink"), Body::Symlink(b"/usr/lib".to_vec())));
                    let name = format!("dirlink/through-{}", self.fresh).into_bytes();
                    entries.push((join(&dir, &name), Body::File(b"through".to_vec(), 0o644)));
                }
            }
            3 => {
                let dir = self.fresh_dir(&mut entries);
                entries.push((join(&dir, b"orig"), Body::File(b"linked".to_vec(), 0o644)));
                entries.push((join(&dir, b"hard"), Body::Hardlink(join(&dir, b"orig"))));
                if upper {
                    // A lower layer's file that no layer hides.
                    entries.push((
                        join(&dir, b"lower"),
                        Body::Hardlink(b"usr/bin/busybox".to_vec()),
                    ));
                }
            }
            4 => {
                let dir = self.fresh_dir(&mut entries);
                entries.push((join(&dir, b"pipe"), Body::Fifo));
            }
            5 => {
                let dir = self.fresh_dir(&mut entries);
                let deep = "d/".repeat(64) + "f";
                entries.push((
                    join(&dir, deep.as_bytes()),
                    Body::File(b"deep".to_vec(), 0o644),
                ));
            }
            6 => {
                let (dir, name) = self
                    .lower_files
                    .swap_remove(self.c.below(self.lower_files.len()));
                entries.push((
                    join(&dir, &[b".wh.", &name[..]].concat()),
                    Body::File(Vec::new(), 0o644),
                ));
            }
            7 => {
                let dir = self.fresh_dir(&mut Vec::new());
                entries.push((dir.clone(), Body::Dir));
                entries.push((join(&dir, b"child"), Body::File(b"child".to_vec(), 0o644)));
                self.dirs.push(dir);
            }
            _ => {
                let pick_dir = !self.lower_dirs.is_empty()
                    && (self.lower_files.is_empty() || self.c.below(2) == 0);
                if pick_dir {
                    let dir = self
                        .lower_dirs
                        .swap_remove(self.c.below(self.lower_dirs.len()));
                    if self.c.below(2) == 0 {
                        entries.push((join(&dir, b".wh..wh..opq"), Body::File(Vec::new(), 0o644)));
                        entries.push((join(&dir, b"fresh"), Body::File(b"fresh".to_vec(), 0o644)));
                        self.dirs.push(dir);
                    } else {
                        entries.push((dir, Body::File(b"was a directory".to_vec(), 0o644)));
                    }
                } else {
                    let (dir, name) = self
                        .lower_files
                        .swap_remove(self.c.below(self.lower_files.len()));
                    let path = join(&dir, &name);
                    entries.push((path.clone(), Body::Dir));
                    entries.push((
                        join(&path, b"child"),
                        Body::File(b"was a file".to_vec(), 0o644),
                    ));
                }
            }
        }
        entries
    }
}

const NAMES: [&str; 8] = ["x", "y", ".git", "info", CANARY, "a", "hooks", "config"];

impl Maker<'_, '_> {
    fn protected(&self) -> Vec<Vec<u8>> {
        let outside = &self.outside;
        [
            ".git",
            ".",
            "..",
            "../../..",
            "/",
            outside,
            &format!("{outside}/{CANARY}"),
        ]
        .iter()
        .map(|t| t.as_bytes().to_vec())
        .collect()
    }

    /// Link targets: the protected places first (their order is part of the generator's
    /// choices), then ordinary and broken ones.
    fn targets(&self) -> Vec<Vec<u8>> {
        let mut targets = self.protected();
        targets.extend(
            [
                "/.git",
                "x",
                "../../../canary",
                ".git/info",
                "y/../..",
                "a/b",
                "",
            ]
            .iter()
            .map(|t| t.as_bytes().to_vec()),
        );
        targets
    }

    /// A directory path to put something under: half the time, when there are any, a link an
    /// earlier step made (attacks go through links), sometimes into its `.git`; else the root,
    /// `.git`, or a path of one or two names. Now and then absolute or climbing, which must be
    /// refused.
    fn prefix(&mut self) -> Vec<u8> {
        let mut prefix = if !self.links.is_empty() && self.c.below(2) == 0 {
            let mut p = self.c.pick(&self.links);
            if self.c.below(4) == 0 {
                p.extend_from_slice(b"/.git");
            }
            p
        } else {
            match self.c.below(4) {
                0 => Vec::new(),
                1 => b".git".to_vec(),
                _ => {
                    let mut p = self.c.pick(&NAMES).as_bytes().to_vec();
                    if self.c.below(2) == 0 {
                        p.push(b'/');
                        p.extend_from_slice(self.c.pick(&NAMES).as_bytes());
                    }
                    p
                }
            }
        };
        match self.c.below(24) {
            0 => prefix.insert(0, b'/'),
            1 => prefix.splice(0..0, b"../".iter().copied()).for_each(drop),
            2 => prefix.splice(0..0, b"./".iter().copied()).for_each(drop),
            _ => {}
        }
        prefix
    }

    fn under(&mut self, leaf: &[u8]) -> Vec<u8> {
        let mut path = self.prefix();
        if !path.is_empty() && path.last() != Some(&b'/') {
            path.push(b'/');
        }
        path.extend_from_slice(leaf);
        path
    }

    fn contents(&mut self) -> Vec<u8> {
        let outside = &self.outside;
        let choices = [
            "pwned".to_string(),
            format!("[filter \"p\"]\n\tclean = sh -c 'echo pwned >{outside}/{CANARY}; cat'\n\tsmudge = cat\n\trequired\n[core]\n\tfsmonitor = echo pwned >{outside}/{CANARY}\n\thooksPath = hooks\n"),
            "* filter=p\n".to_string(),
            format!("#!/bin/sh\necho pwned >{outside}/{CANARY}\n"),
            format!("gitdir: {outside}\n"),
        ];
        self.c.pick(&choices).into_bytes()
    }

    /// The entries of one generated step.
    fn step(&mut self) -> Vec<(Vec<u8>, Body)> {
        match self.c.below(12) {
            0 | 1 => {
                // Half the links at the top, as images put them (bin -> usr/bin), where a
                // relative target is taken from the root.
                let name = self.c.pick(&NAMES).as_bytes().to_vec();
                let path = if self.c.below(2) == 0 {
                    name
                } else {
                    self.under(&name)
                };
                // Half the targets reach a protected place (the repository, the root, above
                // it, the canary); the rest are names, odd paths and earlier links.
                let target = if self.c.below(2) == 0 {
                    self.c.pick(&self.protected())
                } else {
                    let mut targets = self.targets();
                    targets.extend(self.links.iter().cloned());
                    self.c.pick(&targets)
                };
                self.links.push(path.clone());
                vec![(path, Body::Symlink(target))]
            }
            2 => {
                let name = self.c.pick(&NAMES).as_bytes().to_vec();
                let path = self.under(&name);
                let mut targets: Vec<Vec<u8>> = vec![
                    b"../../../canary".to_vec(),
                    format!("{}/{CANARY}", self.outside).into_bytes(),
                    b".git/config".to_vec(),
                    b"x/config".to_vec(),
                    b"x".to_vec(),
                ];
                targets.extend(self.files.iter().cloned());
                let target = if !self.links.is_empty() && self.c.below(2) == 0 {
                    self.c.pick(&self.links)
                } else {
                    self.c.pick(&targets)
                };
                // A hard link to a symlink is a symlink: later steps may go through it.
                if self.links.contains(&target) {
                    self.links.push(path.clone());
                }
                vec![(path, Body::Hardlink(target))]
            }
            3 | 4 => {
                let leaf = self.c.pick(&[CANARY, "config", "f", ".git", "pre-commit"]);
                let path = self.under(leaf.as_bytes());
                let data = self.contents();
                self.files.push(path.clone());
                vec![(path, Body::File(data, 0o755))]
            }
            5 => {
                // What a repository obeys, under one prefix (most often where a link leads),
                // and a file for git to add.
                let prefix = if !self.links.is_empty() && self.c.below(2) == 0 {
                    self.c.pick(&self.links)
                } else {
                    self.prefix()
                };
                let at = |leaf: &str| {
                    let mut p = prefix.clone();
                    if !p.is_empty() {
                        p.push(b'/');
                    }
                    p.extend_from_slice(leaf.as_bytes());
                    p
                };
                let outside = &self.outside;
                vec![
                    (
                        at("config"),
                        Body::File(
                            format!("[filter \"p\"]\n\tclean = sh -c 'echo pwned >{outside}/{CANARY}; cat'\n\tsmudge = cat\n\trequired\n").into_bytes(),
                            0o644,
                        ),
                    ),
                    (at("info/attributes"), Body::File(b"* filter=p\n".to_vec(), 0o644)),
                    (
                        at("hooks/pre-commit"),
                        Body::File(format!("#!/bin/sh\necho pwned >{outside}/{CANARY}\n").into_bytes(), 0o755),
                    ),
                    (b"z".to_vec(), Body::File(b"z".to_vec(), 0o644)),
                ]
            }
            6 => vec![(self.under(b"d"), Body::Dir)],
            7 => {
                let name = self.c.pick(&[CANARY, ".git", "x", "config", "a"]);
                let leaf = format!(".wh.{name}");
                vec![(self.under(leaf.as_bytes()), Body::File(Vec::new(), 0o644))]
            }
            8 => vec![(self.under(b".wh..wh..opq"), Body::File(Vec::new(), 0o644))],
            9 => {
                // Deep: up to Linux's PATH_MAX, just over it, and far over it (64 KiB).
                let depth = self.c.pick(&[2usize, 300, 2047, 2100, 32767]);
                let leaf = "a/".repeat(depth) + "f";
                vec![(
                    self.under(leaf.as_bytes()),
                    Body::File(b"deep".to_vec(), 0o644),
                )]
            }
            10 => {
                let path = self.c.pick(&[".", "./", ""]).as_bytes().to_vec();
                let body = match self.c.below(4) {
                    0 => Body::Symlink(self.c.pick(&self.targets())),
                    1 => Body::File(b"dot".to_vec(), 0o644),
                    2 => Body::Fifo,
                    _ => Body::Dir,
                };
                vec![(path, body)]
            }
            _ => {
                // An earlier path as something else, or a name no filesystem takes.
                let mut earlier: Vec<Vec<u8>> = self.links.clone();
                earlier.extend(self.files.iter().cloned());
                earlier.push(vec![b'n'; 300]);
                let path = self.c.pick(&earlier);
                let body = match self.c.below(3) {
                    0 => Body::Dir,
                    1 => Body::Fifo,
                    _ => Body::File(b"retyped".to_vec(), 0o644),
                };
                vec![(path, body)]
            }
        }
    }

    /// What the entry's name alone decides (see `Expect`); the first reason wins.
    fn judge(&mut self, path: &[u8], body: &Body) {
        if matches!(self.expect, Expect::Refused(_)) {
            return;
        }
        let parts: Vec<&[u8]> = path
            .split(|&b| b == b'/')
            .filter(|p| !p.is_empty() && *p != b".")
            .collect();
        let refused = if path.first() == Some(&b'/') {
            Some("an absolute name")
        } else if parts.iter().any(|p| *p == b"..") {
            Some("a `..` component")
        } else if parts.iter().any(|p| p.len() > 255) {
            Some("a name longer than 255 bytes")
        } else if parts.is_empty() && !matches!(body, Body::Dir) {
            Some("a root that is not a directory")
        } else {
            None
        };
        if let Some(reason) = refused {
            self.expect = Expect::Refused(reason.to_string());
        } else if parts.first() == Some(&&b".git"[..]) {
            self.expect = Expect::RefusedWithGit;
        }
    }

    fn describe(&mut self, path: &[u8], body: &Body) {
        self.plan.push(format!("  {}", describe(path, body)));
    }
}

/// One line of a plan: the path and what is there.
fn describe(path: &[u8], body: &Body) -> String {
    let shown = |b: &[u8]| {
        let text = String::from_utf8_lossy(b);
        if text.chars().count() > 60 {
            format!(
                "{}…({} bytes)",
                text.chars().take(40).collect::<String>(),
                text.len()
            )
        } else {
            format!("{text:?}")
        }
    };
    let what = match body {
        Body::File(data, mode) => format!("file {mode:o} {}", shown(data)),
        Body::Dir => "dir".into(),
        Body::DirMode(mode) => format!("dir {mode:o}"),
        Body::Symlink(t) => format!("symlink -> {}", shown(t)),
        Body::Hardlink(t) => format!("hard link -> {}", shown(t)),
        Body::Fifo => "fifo".into(),
    };
    format!("{} {what}", shown(path))
}

/// Appends one entry; a path or link over 100 bytes goes into a PAX record before it.
fn append(tar: &mut Vec<u8>, path: &[u8], body: &Body) {
    let (kind, link, data, mode): (u8, &[u8], &[u8], u32) = match body {
        Body::File(data, mode) => (b'0', b"", data, *mode),
        Body::Dir => (b'5', b"", b"", 0o755),
        Body::DirMode(mode) => (b'5', b"", b"", *mode),
        Body::Symlink(target) => (b'2', target, b"", 0o777),
        Body::Hardlink(target) => (b'1', target, b"", 0o644),
        Body::Fifo => (b'6', b"", b"", 0o644),
    };
    let mut pax = Vec::new();
    for (key, value) in [(&b"path"[..], path), (b"linkpath", link)] {
        if value.len() > 100 {
            pax.extend_from_slice(&pax_record(key, value));
        }
    }
    if !pax.is_empty() {
        header(tar, b"PaxHeader", b'x', b"", pax.len() as u64, 0o644);
        tar.extend_from_slice(&pax);
        pad(tar);
    }
    let short = |b: &[u8]| b[..b.len().min(100)].to_vec();
    header(
        tar,
        &short(path),
        kind,
        &short(link),
        data.len() as u64,
        mode,
    );
    tar.extend_from_slice(data);
    pad(tar);
}

fn header(tar: &mut Vec<u8>, name: &[u8], kind: u8, link: &[u8], size: u64, mode: u32) {
    let mut header = tar::Header::new_ustar();
    header.as_old_mut().name[..name.len()].copy_from_slice(name);
    header.as_old_mut().linkname[..link.len()].copy_from_slice(link);
    header.set_entry_type(tar::EntryType::new(kind));
    header.set_mode(mode);
    header.set_size(size);
    header.set_mtime(1_600_000_000);
    header.set_cksum();
    tar.extend_from_slice(header.as_bytes());
}

fn pad(tar: &mut Vec<u8>) {
    tar.resize(tar.len().div_ceil(512) * 512, 0);
}

/// `"<length> <key>=<value>\n"`, where the length counts itself.
fn pax_record(key: &[u8], value: &[u8]) -> Vec<u8> {
    let rest = key.len() + value.len() + 3;
    let mut length = rest + 1;
    while length.to_string().len() + rest != length {
        length += 1;
    }
    let mut record = length.to_string().into_bytes();
    record.push(b' ');
    record.extend_from_slice(key);
    record.push(b'=');
    record.extend_from_slice(value);
    record.push(b'\n');
    record
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_lengths_count_themselves() {
        let record = pax_record(b"path", &[b'a'; 95]);
        let text = String::from_utf8(record.clone()).unwrap();
        let (length, _) = text.split_once(' ').unwrap();
        assert_eq!(length.parse::<usize>().unwrap(), record.len());
    }

    #[test]
    fn the_same_seed_makes_the_same_image_and_tars_parse() {
        for seed in 0..50 {
            let a = hostile_image(&mut Choices::seeded(seed), "/tmp/o");
            let b = hostile_image(&mut Choices::seeded(seed), "/tmp/o");
            assert_eq!(a.layers, b.layers);
            for layer in &a.layers {
                let mut archive = tar::Archive::new(&layer[..]);
                for entry in archive.entries().unwrap().raw(true) {
                    entry.unwrap();
                }
            }
        }
    }
}
