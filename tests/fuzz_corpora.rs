//! Replays the committed fuzz corpora (`fuzz/corpus/<target>/`) through the same entry points
//! the cargo-fuzz targets use, on stable Rust: CI checks that no input found by a fuzz run (or
//! seeded by hand) makes a parser panic. The long fuzz runs themselves happen in a session with
//! `cargo +nightly fuzz run <target>` (see the README).

use std::path::Path;

fn replay(target: &str, entry: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let inputs: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    assert!(
        inputs.len() >= 5,
        "the {target} corpus is (nearly) empty: {}",
        dir.display()
    );
    for input in inputs {
        let data = std::fs::read(&input).unwrap();
        let outcome = std::panic::catch_unwind(|| entry(&data));
        assert!(outcome.is_ok(), "{target} panicked on {}", input.display());
    }
}

#[test]
fn reference_corpus() {
    replay("reference", dockersave::fuzzing::reference);
}

#[test]
fn www_authenticate_corpus() {
    replay("www_authenticate", dockersave::fuzzing::www_authenticate);
}

#[test]
fn manifest_corpus() {
    replay("manifest", dockersave::fuzzing::manifest);
}

#[test]
fn layer_corpus() {
    replay("layer", dockersave::fuzzing::layer);
}

#[test]
fn layer_tar_corpus() {
    replay("layer_tar", dockersave::fuzzing::layer_tar);
}

#[cfg(feature = "push")]
#[test]
fn archive_corpus() {
    replay("archive", dockersave::fuzzing::archive);
}

#[test]
fn zstd_corpus() {
    replay("zstd", dockersave::fuzzing::zstd);
}

#[test]
fn hostile_corpus() {
    replay("hostile", dockersave::fuzzing::hostile);
}

#[cfg(feature = "verify")]
#[test]
fn signature_corpus() {
    replay("signature", dockersave::fuzzing::signature);
}

#[test]
fn tar_roundtrip_corpus() {
    replay("tar_roundtrip", dockersave::fuzzing::tar_roundtrip);
}
