//! Entry points for the fuzz targets in `fuzz/` and for the test that replays their corpora on
//! stable Rust (`tests/fuzz_corpora.rs`): each feeds arbitrary bytes to one parser, which must
//! return an error, never panic or loop.

use std::io::Read;

pub mod hostile;

/// Image references.
pub fn reference(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(reference) = crate::reference::Reference::parse(text) {
            let _ = (
                reference.archive_base_name(),
                reference.repo_tag(),
                reference.to_string(),
            );
        }
    }
}

/// `WWW-Authenticate` headers and the token URLs built from them.
pub fn www_authenticate(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    for challenge in crate::registry::auth::parse_challenges(&text) {
        let _ = crate::registry::auth::token_url(&challenge, &["repository:a/b:pull".to_string()]);
    }
}

/// What `--verify-key` reads: PEM public keys, simple-signing payloads, Sigstore bundles and the
/// in-toto statements inside them. Whatever parses must be usable: a key checks a signature
/// (the input's own bytes, which must not verify as a signature over them), a DSSE bundle's
/// pre-authentication encoding holds its payload.
#[cfg(feature = "verify")]
pub fn signature(data: &[u8]) {
    use crate::signature::{
        pae, parse_bundle, parse_payload, parse_public_key, parse_statement, verifies, Bundle,
    };
    if let Ok((kind, key)) = parse_public_key(data) {
        assert!(!key.is_empty());
        assert!(!verifies(kind, &key, data, data));
    }
    if let Ok(named) = parse_payload(data) {
        let _ = named.digest.len();
    }
    let _ = parse_statement(data);
    if let Ok(Bundle::Dsse {
        payload_type,
        payload,
        ..
    }) = parse_bundle(data)
    {
        let encoded = pae(&payload_type, &payload);
        assert!(encoded.ends_with(&payload));
        let _ = parse_statement(&payload);
    }
}

/// Manifests and indexes (with and without a Content-Type), platform choice, image configs;
/// artifacts' file names, Helm chart configs and referrers indexes.
pub fn manifest(data: &[u8]) {
    use crate::manifest::{choose, parse, parse_config, Fetched, Platform};
    for content_type in [None, Some(crate::manifest::OCI_INDEX)] {
        match parse(data, content_type) {
            Ok(Fetched::Index(entries)) => {
                let wanted = Platform::parse("linux/arm/v7").expect("valid platform");
                if let Ok(choice) = choose(&entries, &wanted) {
                    let twins = crate::manifest::twins(&entries, &choice);
                    assert!(twins.iter().any(|t| std::ptr::eq(*t, choice.entry)));
                }
            }
            Ok(Fetched::Image(manifest)) => {
                let _ = manifest.artifact();
                #[cfg(feature = "artifact")]
                if let Ok(planned) = crate::artifact::names::plan(&manifest, None) {
                    // Whatever the titles say, every name stays below the directory.
                    for file in planned {
                        assert!(file
                            .path
                            .iter()
                            .all(|c| !c.is_empty() && c != ".." && c != "." && !c.contains('/')));
                    }
                }
            }
            Err(_) => {}
        }
    }
    #[cfg(feature = "artifact")]
    {
        let _ = crate::artifact::names::chart(data);
        let _ = crate::manifest::parse_referrers(data, crate::limits::MAX_REFERRERS);
    }
    let _ = parse_config(data);
    let _ = crate::pretty::indent(data);
}

/// Layer blobs: gzip framing and deflate data, or plain tar.
pub fn layer(data: &[u8]) {
    let mut decompressor = crate::decompress::Decompressor::new(data);
    let mut buf = [0u8; 4096];
    // Bounded: a small input must not expand without end in a fuzz run.
    for _ in 0..4096 {
        match decompressor.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// zstd streams: the frame walker (`decompress::zstd`) over frame headers, skippable frames and
/// frames libzstd decodes. A header must parse to a window the format allows, and a stream
/// must decode, or fail, without a panic and without growing past the window it declared.
pub fn zstd(data: &[u8]) {
    use crate::decompress::zstd::{frame_header, Frame, MAGIC};
    if let Ok(Some(Frame::Zstd { window, .. })) = frame_header(data) {
        // Exponent 31 and mantissa 7: the largest window a descriptor can say.
        assert!(window <= (1 << 41) + 7 * (1 << 38) || data.get(4).is_some_and(|d| d & 0x20 != 0));
    }
    // The input as a stream that starts with a zstd frame, whatever its first bytes.
    let stream: Vec<u8> = if crate::decompress::zstd::starts_frame(data) {
        data.to_vec()
    } else {
        MAGIC.iter().chain(data).copied().collect()
    };
    layer(&stream);
}

/// The tar reader against a model: the input chooses entries (names long and short, with
/// newlines, types, sizes up to 64 KiB, ids and times beyond what octal holds, extended
/// attributes with any bytes), the `tar` crate writes them as GNU headers with PAX records and
/// base-256 numbers, and `tar_reader` must read back
/// exactly what was written: names, types, sizes, data, ids, times and attributes.
pub fn tar_roundtrip(data: &[u8]) {
    use crate::tar_reader::Reader;
    let mut input = data.iter().copied();
    let mut byte = || input.next().unwrap_or(0);
    let mut builder = tar::Builder::new(Vec::new());
    let mut written = Vec::new();
    let count = byte() % 8;
    for i in 0..count {
        let shape = byte();
        let name_len = usize::from(byte()) * usize::from(shape % 4 + 1);
        let mut name: Vec<u8> = (0..name_len.max(1))
            .map(|n| match (byte(), n % 37) {
                (_, 0) if n > 0 => b'/',
                (b, _) if shape & 0x10 != 0 && b % 17 == 0 => b'\n',
                (b, _) => b'a' + b % 26,
            })
            .collect();
        name.extend_from_slice(format!("-{i}").as_bytes());
        let typeflag = [b'0', b'5', b'2', b'1', b'6', b'3'][usize::from(shape >> 5) % 6];
        let size = if typeflag == b'0' {
            usize::from(byte()) * usize::from(byte()) % (64 << 10)
        } else {
            0
        };
        let content: Vec<u8> = (0..size).map(|n| (n as u8).wrapping_mul(shape)).collect();
        let uid = u64::from(byte()) << (byte() % 40);
        let mtime = u64::from(byte()) << (byte() % 40);
        let xattr_value: Vec<u8> = (0..usize::from(byte() % 40)).map(|_| byte()).collect();
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::new(typeflag));
        header.set_mode(0o640);
        header.set_size(size as u64);
        let mut records: Vec<(String, Vec<u8>)> = Vec::new();
        // Beyond what octal holds, the crate writes base-256 into a GNU header; every other
        // entry also says it in a PAX record, which wins.
        header.set_uid(uid);
        header.set_mtime(mtime);
        if shape & 1 == 1 {
            records.push(("uid".into(), uid.to_string().into_bytes()));
            records.push(("mtime".into(), mtime.to_string().into_bytes()));
        }
        if !xattr_value.is_empty() {
            records.push(("SCHILY.xattr.user.fuzz".into(), xattr_value.clone()));
        }
        let link = b"target".to_vec();
        if matches!(typeflag, b'1' | b'2') {
            header
                .set_link_name_literal(&link)
                .expect("a short link name");
        }
        records.push(("path".into(), name.clone()));
        builder
            .append_pax_extensions(records.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
            .expect("PAX records in memory");
        header.set_path("placeholder").expect("a short name");
        header.set_cksum();
        builder
            .append(&header, &content[..])
            .expect("a tar in memory");
        written.push((name, typeflag, content, uid, mtime, xattr_value));
    }
    let tar = builder.into_inner().expect("a tar in memory");
    let mut reader = Reader::new(&tar[..]);
    for (name, typeflag, content, uid, mtime, xattr) in written {
        let header = reader
            .next()
            .expect("a tar the crate wrote")
            .expect("an entry");
        assert_eq!(header.name, name);
        assert_eq!(header.typeflag, typeflag);
        assert_eq!((header.uid as u64, header.mtime as u64), (uid, mtime));
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut reader.data(), &mut data).expect("the entry's data");
        assert_eq!(data, content);
        let expected: Vec<(Vec<u8>, Vec<u8>)> = match xattr.is_empty() {
            true => Vec::new(),
            false => vec![(b"user.fuzz".to_vec(), xattr)],
        };
        assert_eq!(header.xattrs, expected);
    }
    assert!(reader.next().expect("the end").is_none());
}

/// Layer tars as `--rootfs` and `--flatten` read them: every change's paths must be valid
/// (no `..`, no absolute path, single components), and flattening the input as two layers (it
/// over itself) must end in a tar, a cpio or an error.
pub fn layer_tar(data: &[u8]) {
    use crate::layer_tar::{is_component, read_layer, Change, Kind, TreePath};
    let valid = |path: &TreePath| path.components().all(is_component);
    let _ = read_layer(&mut &data[..], "fuzz", &mut |change, body| {
        match &change {
            Change::Add(entry) => {
                assert!(valid(&entry.path), "{:?}", entry.path);
                if let Kind::Hardlink(target) = &entry.kind {
                    assert!(valid(target) && !target.is_root(), "{target:?}");
                }
            }
            Change::Whiteout(path) => assert!(valid(path) && !path.is_root(), "{path:?}"),
            Change::Opaque(path) => assert!(valid(path), "{path:?}"),
        }
        let _ = std::io::copy(&mut body.take(1 << 20), &mut std::io::sink());
        Ok(())
    });
    let layers = [data.to_vec(), data.to_vec()];
    for cpio in [false, true] {
        let _ = flattened(&layers, cpio, &mut Vec::new());
    }
}

/// Archives given to `--push`: a tar (plain, gzip or xz) whose `manifest.json` and
/// `index.json` name configs and layers. Reading it must end in images or an error, and every
/// layer the images name must open as a stream inside the archive.
#[cfg(feature = "push")]
pub fn archive(data: &[u8]) {
    // The reader takes a path, as --push does: the input goes to a file of this process's.
    let path = std::env::temp_dir().join(format!("dockersave-fuzz-{}.tar", std::process::id()));
    if std::fs::write(&path, data).is_err() {
        return;
    }
    if let Ok(source) = crate::archived::Source::open(&path) {
        for image in source.images().unwrap_or_default() {
            for layer in &image.layers {
                if let Ok(reader) = source.reader(&layer.entry) {
                    let _ = std::io::copy(&mut reader.take(1 << 20), &mut std::io::sink());
                }
            }
        }
    }
    let _ = std::fs::remove_file(&path);
}

/// Hostile layer sequences (`hostile::hostile_image`, choices from the input) applied as
/// `--rootfs` (with and without `--git`'s guard) into a directory three levels below a canary,
/// and flattened as `--flatten` does. Nothing outside the directory may change, the guarded
/// repository must stay byte for byte what it was, and the flattened tar must hold no entry
/// that a naive `tar -x` (one that follows every link it meets) would put outside the directory
/// it extracts into. That last check is a model of such an extractor, run on the tar's names:
/// extracting for real, as root, would let a broken flatten write anywhere on the machine.
pub fn hostile(data: &[u8]) {
    use std::fs;
    let base = std::env::temp_dir().join(format!("dockersave-fuzz-hostile-{}", std::process::id()));
    let image = hostile::hostile_image(
        &mut hostile::Choices::from_bytes(data),
        &base.to_string_lossy(),
    );
    crate::partial::remove(&base);
    let dir = base.join("a/b/rootfs");
    fs::create_dir_all(&dir).expect("a scratch directory");
    fs::write(base.join(hostile::CANARY), b"canary").expect("the canary");
    let canary = || fs::read(base.join(hostile::CANARY)).ok();
    for guard_git in [false, true] {
        crate::partial::remove(&dir);
        fs::create_dir_all(dir.join(".git/info")).expect("a repository");
        fs::write(dir.join(".git/config"), b"[core]\n").expect("a repository");
        let Ok(mut rootfs) = crate::sinks::rootfs::Rootfs::open(&dir, guard_git) else {
            return;
        };
        let applied = image
            .layers
            .iter()
            .enumerate()
            .try_for_each(|(i, tar)| rootfs.apply(&mut &tar[..], &format!("layer {}", i + 1)));
        if applied.is_ok() {
            let _ = rootfs.finish();
        }
        assert_eq!(
            canary().as_deref(),
            Some(&b"canary"[..]),
            "{}",
            image.plan.join("\n")
        );
        let names: Vec<_> = fs::read_dir(&base)
            .map(|d| d.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert_eq!(
            names.len(),
            2,
            "something appeared beside the canary: {names:?}\n{}",
            image.plan.join("\n")
        );
        if guard_git {
            assert_eq!(
                fs::read(dir.join(".git/config")).ok().as_deref(),
                Some(&b"[core]\n"[..]),
                "{}",
                image.plan.join("\n")
            );
            assert!(dir.join(".git/info").is_dir(), "{}", image.plan.join("\n"));
        }
    }
    crate::partial::remove(&base);
    for cpio in [false, true] {
        let mut out = Vec::new();
        if flattened(&image.layers, cpio, &mut out).is_err() {
            continue;
        }
        let (members, how) = match cpio {
            false => (tar_members(&out), "tar -x of the flattened tar"),
            true => (cpio_members(&out), "cpio -i of the initramfs"),
        };
        if let Some(escape) = naive_escape(members) {
            panic!("a naive {how} {escape}\n{}", image.plan.join("\n"));
        }
    }
}

/// `layers` (bottom first) merged into `out` as `--flatten` does, or with `cpio` as
/// `--initramfs` does (each layer's hard links counted before it is merged).
fn flattened(layers: &[Vec<u8>], cpio: bool, out: &mut Vec<u8>) -> Result<(), crate::Error> {
    use crate::sinks::flatten::Flatten;
    let mut flat = match cpio {
        true => Flatten::cpio(out)?,
        false => Flatten::tar(out),
    };
    for (index, tar) in layers.iter().enumerate().rev() {
        if cpio {
            flat.count_links(&mut &tar[..], "fuzz")?;
        }
        flat.layer(&mut &tar[..], index, "fuzz")?;
    }
    flat.finish().map(drop)
}

/// What a naive extractor of an archive of `members` would write outside the directory it
/// extracts into, if anything. It is modelled on Python's `tarfile.extractall` without a filter: each entry's
/// path is followed through the symlinks earlier entries made, as the kernel would, the last
/// component too for files and directories (it opens or chmods what is there), and a hard
/// link's target likewise but for its last component; an absolute target or a `..` above the
/// directory leaves it.
fn naive_escape(members: Vec<Member>) -> Option<String> {
    use std::collections::HashMap;
    type Links = HashMap<Vec<u8>, Vec<u8>>;
    /// The components `path` leads to, following every symlink on it; `None` once it leaves.
    fn follow(path: &[u8], links: &Links, keep_last: bool) -> Option<Vec<Vec<u8>>> {
        if path.first() == Some(&b'/') {
            return None;
        }
        let trimmed = path.strip_suffix(b"/").unwrap_or(path);
        let (parent, last) = match trimmed.iter().rposition(|&b| b == b'/') {
            Some(i) if keep_last => (&trimmed[..i], Some(&trimmed[i + 1..])),
            None if keep_last => (&b""[..], Some(trimmed)),
            _ => (trimmed, None),
        };
        let mut todo: std::collections::VecDeque<Vec<u8>> =
            parent.split(|&b| b == b'/').map(<[u8]>::to_vec).collect();
        let mut at: Vec<Vec<u8>> = Vec::new();
        let mut hops = 0;
        while let Some(c) = todo.pop_front() {
            match c.as_slice() {
                b"" | b"." => continue,
                b".." => {
                    at.pop()?;
                    continue;
                }
                _ => {}
            }
            at.push(c);
            if let Some(target) = links.get(&at.join(&b'/')) {
                hops += 1;
                if hops > 40 || target.first() == Some(&b'/') {
                    return None;
                }
                at.pop();
                for part in target.split(|&b| b == b'/').rev() {
                    todo.push_front(part.to_vec());
                }
            }
        }
        match last {
            Some(b"..") => {
                at.pop()?;
            }
            Some(b"" | b".") | None => {}
            Some(name) => at.push(name.to_vec()),
        }
        Some(at)
    }
    let mut links = Links::new();
    for member in members {
        let Some(placed) = follow(&member.path, &links, !member.opens) else {
            return Some(format!(
                "writes {:?} outside",
                String::from_utf8_lossy(&member.path)
            ));
        };
        let placed = placed.join(&b'/');
        if !member.opens {
            links.remove(&placed);
        }
        if let Some(target) = member.hard_link {
            if follow(&target, &links, true).is_none() {
                return Some(format!(
                    "links {:?} to something outside",
                    String::from_utf8_lossy(&member.path)
                ));
            }
        }
        if let Some(target) = member.symlink {
            links.insert(placed, target);
        }
    }
    None
}

/// A member of an archive as a naive extractor sees it.
struct Member {
    path: Vec<u8>,
    /// A file or a directory: what is at its path is opened (followed, if a symlink).
    opens: bool,
    symlink: Option<Vec<u8>>,
    /// A tar's hard link names its target (a cpio's repeats an inode instead).
    hard_link: Option<Vec<u8>>,
}

/// The members of a tar, up to the first it cannot read.
fn tar_members(tar: &[u8]) -> Vec<Member> {
    let mut members = Vec::new();
    let mut archive = tar::Archive::new(tar);
    let Ok(entries) = archive.entries() else {
        return members;
    };
    for entry in entries {
        let Ok(entry) = entry else {
            break;
        };
        let kind = entry.header().entry_type();
        let link = entry.link_name_bytes().map(|l| l.into_owned());
        members.push(Member {
            path: entry.path_bytes().into_owned(),
            opens: kind.is_file() || kind.is_dir(),
            symlink: link.clone().filter(|_| kind.is_symlink()),
            hard_link: link.filter(|_| kind.is_hard_link()),
        });
    }
    members
}

/// The members of a newc cpio; it must be whole. (Without the "initramfs" feature no cpio is
/// written, and there are none.)
#[cfg(not(feature = "initramfs"))]
fn cpio_members(_cpio: &[u8]) -> Vec<Member> {
    Vec::new()
}

/// The members of a newc cpio; it must be whole.
#[cfg(feature = "initramfs")]
fn cpio_members(cpio: &[u8]) -> Vec<Member> {
    const TYPE: u32 = 0o170000;
    let members = crate::sinks::cpio::read(cpio).expect("the cpio written is whole");
    // The kernel links a member to the first of its inode: that one has the data.
    let mut inodes = std::collections::HashMap::new();
    for m in members.iter().filter(|m| m.nlink > 1) {
        if let Some(first) = inodes.insert(m.ino, m.nlink) {
            let name = String::from_utf8_lossy(&m.name);
            assert!(
                m.data.is_empty() && first == m.nlink,
                "{name} repeats an inode badly"
            );
        }
    }
    members
        .into_iter()
        .map(|m| Member {
            opens: matches!(m.mode & TYPE, 0o100000 | 0o040000),
            symlink: (m.mode & TYPE == 0o120000).then_some(m.data),
            hard_link: None,
            path: m.name,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    /// The fuzz target on inputs from a fixed generator: the same property the suite checks
    /// through the binary (`tests/hostile.rs`), in process.
    #[test]
    fn hostile_inputs_keep_the_invariants() {
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        for _ in 0..300 {
            let input: Vec<u8> = (0..96)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    (state >> 24) as u8
                })
                .collect();
            super::hostile(&input);
        }
    }

    /// What real images do is never refused: every legitimate image unpacks (with and without
    /// `--git`'s guard) and flattens to a tar and a cpio. The suite runs a few through the
    /// binary; this runs many, in process.
    #[test]
    fn legitimate_images_are_accepted_by_every_sink() {
        use super::hostile::{legitimate_image, Choices};
        let base = std::env::temp_dir().join(format!("dockersave-legit-{}", std::process::id()));
        for seed in 0..400 {
            let image = legitimate_image(&mut Choices::seeded(seed));
            let plan = image.plan.join("\n");
            for guard_git in [false, true] {
                crate::partial::remove(&base);
                std::fs::create_dir_all(&base).unwrap();
                let mut rootfs = crate::sinks::rootfs::Rootfs::open(&base, guard_git).unwrap();
                for (i, tar) in image.layers.iter().enumerate() {
                    let layer = format!("layer {}", i + 1);
                    if let Err(e) = rootfs.apply(&mut &tar[..], &layer) {
                        panic!("seed {seed}, --git {guard_git}: {e}\n{plan}");
                    }
                }
                rootfs.finish().unwrap();
            }
            for cpio in [false, true] {
                if let Err(e) = super::flattened(&image.layers, cpio, &mut Vec::new()) {
                    panic!("seed {seed}, cpio {cpio}: {e}\n{plan}");
                }
            }
        }
        crate::partial::remove(&base);
    }

    #[test]
    fn the_naive_model_sees_escapes_through_links() {
        use crate::layer_tar::tests::tar_of;
        let escape = tar_of(&[(b"t", b'2', b"/tmp", b""), (b"t/x", b'0', b"", b"")]);
        assert!(super::naive_escape(super::tar_members(&escape)).is_some());
        let dir_over_link = tar_of(&[(b"t", b'2', b"../..", b""), (b"t/", b'5', b"", b"")]);
        assert!(super::naive_escape(super::tar_members(&dir_over_link)).is_some());
        let hard = tar_of(&[(b"t", b'2', b"/etc", b""), (b"h", b'1', b"t/passwd", b"")]);
        assert!(super::naive_escape(super::tar_members(&hard)).is_some());
        let inside = tar_of(&[
            (b"usr/lib/", b'5', b"", b""),
            (b"lib", b'2', b"usr/lib", b""),
            (b"lib/x", b'0', b"", b""),
            (b"h", b'1', b"lib/x", b""),
            (b"abs", b'2', b"/etc/passwd", b""),
        ]);
        assert_eq!(super::naive_escape(super::tar_members(&inside)), None);
    }
}
