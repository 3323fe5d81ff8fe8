//! Entry points for the fuzz targets in `fuzz/` and for the test that replays their corpora on
//! stable Rust (`tests/fuzz_corpora.rs`): each feeds arbitrary bytes to one parser, which must
//! return an error, never panic or loop.

use std::io::Read;

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

/// Manifests and indexes (with and without a Content-Type), platform choice, image configs.
pub fn manifest(data: &[u8]) {
    use crate::manifest::{choose, parse, parse_config, Fetched, Platform};
    for content_type in [None, Some(crate::manifest::OCI_INDEX)] {
        if let Ok(Fetched::Index(entries)) = parse(data, content_type) {
            let _ = choose(
                &entries,
                &Platform::parse("linux/arm/v7").expect("valid platform"),
            );
        }
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

/// Layer tars as `--rootfs` and `--flatten` read them: every change's paths must be valid
/// (no `..`, no absolute path, single components), and flattening the input as two layers (it
/// over itself) must end in a tar or an error.
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
    let mut out = Vec::new();
    let mut flat = crate::sinks::flatten::Flatten::new(&mut out);
    for index in [1, 0] {
        if flat.layer(&mut &data[..], index, "fuzz").is_err() {
            return;
        }
    }
    let _ = flat.finish();
}

/// Archives given to `--push`: a tar (plain, gzip or xz) whose `manifest.json` and
/// `index.json` name configs and layers. Reading it must end in images or an error, and every
/// layer the images name must open as a stream inside the archive.
pub fn archive(data: &[u8]) {
    // The reader takes a path, as --push does: the input goes to a file of this process's.
    let path = std::env::temp_dir().join(format!("dockersave-fuzz-{}.tar", std::process::id()));
    if std::fs::write(&path, data).is_err() {
        return;
    }
    if let Ok(source) = crate::push::source::Source::open(&path) {
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
