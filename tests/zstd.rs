//! zstd images against the real registry: made by skopeo (`--dest-compress-format zstd`) and by
//! the `zstd` program in the shapes skopeo does not make (zstd:chunked's many frames with
//! skippable frames between them, 8 MiB windows, a window over the cap, an index listing an
//! image twice), see `tests/harness/fixtures.sh`. Each is pulled into every output, loaded by
//! the Docker engine of this suite (20.10, which cannot read zstd itself), compared with its
//! gzip twin, read back by skopeo and umoci, and pushed. Run through tests/run.sh.

mod common;

use common::*;
use std::path::{Path, PathBuf};

fn image(name: &str) -> String {
    format!("{}/{name}:latest", env("DS_REGISTRY"))
}

fn pull(dir: &Path, args: &[&str]) -> Output {
    let mut all = vec!["--insecure"];
    all.extend_from_slice(args);
    dockersave(dir, &all)
}

fn pull_ok(dir: &Path, args: &[&str]) -> Output {
    let out = pull(dir, args);
    assert_eq!(out.code, 0, "dockersave {args:?}:\n{out}");
    out
}

/// The media types of the layers of what `reference` resolves to, from skopeo.
fn layer_media_types(reference: &str) -> Vec<String> {
    let out = run(
        "skopeo",
        &["inspect", "--raw", "--tls-verify=false", reference],
        Path::new("/"),
        None,
    );
    assert_eq!(out.code, 0, "{out}");
    // Whatever wrote the manifest, with or without spaces: `"mediaType": "…"`.
    out.stdout
        .split("\"mediaType\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').nth(1))
        .filter(|t| t.contains("layer"))
        .map(str::to_string)
        .collect()
}

#[test]
fn the_fixtures_are_zstd() {
    for name in ["zstd", "zstd-chunked", "zstd-big"] {
        let types = layer_media_types(&format!("docker://{}", image(name)));
        assert!(
            !types.is_empty() && types.iter().all(|t| t.ends_with("+zstd")),
            "{name}: {types:?}"
        );
    }
}

#[test]
fn zstd_images_load_and_run_in_an_engine_that_cannot_read_zstd() {
    let dir = Scratch::new("zstd-load");
    for name in ["zstd", "zstd-chunked"] {
        let reference = image(name);
        let archive = format!("{name}.tar");
        pull_ok(dir.path(), &["-q", "-o", &archive, &reference]);
        load(
            &dir.path().join(&archive),
            Some(&reference),
            &config_digest(&reference, &[]),
        );
        let listing = docker_run(&reference, &["ls", "/data"]);
        assert_eq!(listing.trim(), "b\ndir", "{name}: the whiteout applied");
        assert!(docker_run(&reference, &["cat", "/etc/fixture"]).contains("dockersave fixture"));
    }
    // Streamed front to back: a zstd layer has no size trailer, so it is counted first.
    let out = run_env(
        "sh",
        &[
            "-c",
            &format!(
                "{} --insecure -o - {} > streamed.tar",
                env!("CARGO_BIN_EXE_dockersave"),
                image("zstd-chunked")
            ),
        ],
        dir.path(),
        None,
        &[],
    );
    assert_eq!(out.code, 0, "{out}");
    assert!(out.stderr.contains("reading it once to count"), "{out}");
    let reference = image("zstd-chunked");
    load(
        &dir.path().join("streamed.tar"),
        Some(&reference),
        &config_digest(&reference, &[]),
    );
}

#[test]
fn zstd_rootfs_and_flatten_equal_the_gzip_twins() {
    let dir = Scratch::new("zstd-rootfs");
    pull_ok(dir.path(), &["-q", "--rootfs", "gzip", &image("layers")]);
    pull_ok(
        dir.path(),
        &["-q", "--flatten", "gzip.tar", &image("layers")],
    );
    let reference = snapshot(&dir.path().join("gzip"));
    assert!(
        reference.contains_key("bin/busybox"),
        "{:?}",
        reference.keys()
    );
    for name in ["zstd", "zstd-chunked"] {
        pull_ok(dir.path(), &["-q", "--rootfs", name, &image(name)]);
        let differences = compare(
            &snapshot(&dir.path().join(name)),
            &reference,
            Compare {
                owners: true,
                hard_links: true,
            },
        );
        assert!(differences.is_empty(), "{name}: {differences:#?}");
        let flat = format!("{name}.tar");
        pull_ok(dir.path(), &["-q", "--flatten", &flat, &image(name)]);
        assert!(
            std::fs::read(dir.path().join(&flat)).unwrap()
                == std::fs::read(dir.path().join("gzip.tar")).unwrap(),
            "{name}: --flatten differs from the gzip twin's"
        );
    }
    // --git commits the same tree.
    pull_ok(
        dir.path(),
        &["-q", "--rootfs", "git", "--git", &image("zstd-chunked")],
    );
    let log = run(
        "git",
        &["-C", "git", "log", "--all", "--oneline"],
        dir.path(),
        None,
    );
    assert_eq!(log.stdout.lines().count(), 3, "{log}");
}

#[test]
fn compressed_keeps_zstd_blobs_for_oci_readers_and_legacy_gets_tars() {
    let dir = Scratch::new("zstd-compressed");
    let reference = image("zstd");
    pull_ok(
        dir.path(),
        &["-q", "--compressed", "-o", "kept.tar", &reference],
    );
    let oci = format!("oci-archive:{}", dir.path().join("kept.tar").display());
    let types = layer_media_types(&oci);
    assert!(
        types.len() == 3 && types.iter().all(|t| t.ends_with("+zstd")),
        "{types:?}"
    );
    // skopeo reads it and copies it out, blobs verified (umoci 0.4 reads no zstd layer).
    let copied = format!("oci:{}:z", dir.path().join("oci").display());
    let out = run(
        "skopeo",
        &["copy", "--quiet", &oci, &copied],
        dir.path(),
        None,
    );
    assert_eq!(out.code, 0, "{out}");
    // The manifest digest survives, as with gzip.
    let out = run(
        "skopeo",
        &["inspect", "--format", "{{.Digest}}", &oci],
        dir.path(),
        None,
    );
    assert_eq!(out.stdout.trim(), manifest_digest(&reference), "{out}");

    // The legacy layout has no zstd media type: the layers are stored as tars, and the engine
    // of this suite loads them.
    let out = pull_ok(
        dir.path(),
        &[
            "--compressed",
            "--format",
            "legacy",
            "-o",
            "legacy.tar",
            &reference,
        ],
    );
    assert!(out.stderr.contains("no zstd media type"), "{out}");
    load(
        &dir.path().join("legacy.tar"),
        Some(&reference),
        &config_digest(&reference, &[]),
    );
    assert!(docker_run(&reference, &["cat", "/data/dir/z"]).contains('z'));
}

#[test]
fn one_layer_as_served_is_a_tar_zst() {
    let dir = Scratch::new("zstd-layer");
    let out = pull_ok(
        dir.path(),
        &[
            "-q",
            "--layer",
            "1",
            "--registry-format",
            &image("zstd-chunked"),
        ],
    );
    let written = PathBuf::from(out.stdout.trim());
    assert!(written.to_string_lossy().ends_with(".tar.zst"), "{out}");
    let out = run(
        "zstd",
        &["-q", "-t", written.to_str().unwrap()],
        dir.path(),
        None,
    );
    assert_eq!(out.code, 0, "the zstd program reads it: {out}");
    pull_ok(dir.path(), &["-q", "--layer", "-1", &image("zstd")]);
}

#[test]
fn an_index_with_gzip_and_zstd_twins_is_chosen_deliberately() {
    let dir = Scratch::new("zstd-twins");
    let reference = image("twins");
    let out = pull_ok(dir.path(), &["--platforms", &reference]);
    assert_eq!(out.stdout, "linux/amd64\nlinux/amd64 (zstd)\n", "{out}");
    // By default the smaller twin: the zstd one (level 19), decompressed into the archive.
    let sha = pull_ok(dir.path(), &["--sha", &reference]);
    let chosen = sha.stdout.lines().nth(1).unwrap_or_default().to_string();
    let repository = reference.trim_end_matches(":latest");
    let types = layer_media_types(&format!("docker://{repository}@{chosen}"));
    assert!(
        !types.is_empty() && types.iter().all(|t| t.ends_with("+zstd")),
        "{sha}: {types:?}"
    );
    let out = pull_ok(dir.path(), &["-o", "default.tar", &reference]);
    assert!(
        out.stderr.contains("listed 2 times") && out.stderr.contains("taking the smaller"),
        "{out}"
    );
    load(
        &dir.path().join("default.tar"),
        Some(&reference),
        &config_digest(&image("busybox"), &[]),
    );
    assert!(docker_run(&reference, &["echo", "ran"]).contains("ran"));
    // Kept as served for an engine that may not read zstd: the gzip twin.
    let out = pull_ok(
        dir.path(),
        &[
            "--compressed",
            "--format",
            "legacy",
            "--no-tar",
            "--layers-dir",
            "legacy",
            &reference,
        ],
    );
    assert!(out.stderr.contains("taking the gzip one"), "{out}");
    let layers: Vec<PathBuf> = std::fs::read_dir(dir.path().join("legacy"))
        .unwrap()
        .map(|e| e.unwrap().path().join("layer.tar"))
        .filter(|p| p.is_file())
        .collect();
    assert_eq!(layers.len(), 1);
    let head = std::fs::read(&layers[0]).unwrap();
    assert_eq!(head[..2], [0x1f, 0x8b], "the gzip blob, as served");
}

#[test]
fn archives_holding_zstd_blobs_push_as_they_are() {
    let dir = Scratch::new("zstd-push");
    let reference = image("zstd");
    pull_ok(
        dir.path(),
        &["-q", "--compressed", "-o", "kept.tar", &reference],
    );
    let target = format!(
        "{}/zstd-kept-{}:1",
        env("DS_PUSH_REGISTRY"),
        std::process::id()
    );
    let record = dir.path().join("record");
    let out = dockersave_env(
        dir.path(),
        &["--insecure", "-q", "--push", "kept.tar", &target],
        &[("XDG_CACHE_HOME", record.to_str().unwrap())],
        None,
    );
    assert_eq!(out.code, 0, "{out}");
    // The registry's own manifest went up byte for byte: same digest, zstd layers.
    assert_eq!(manifest_digest(&target), manifest_digest(&reference));
    let types = layer_media_types(&format!("docker://{target}"));
    assert!(types.iter().all(|t| t.ends_with("+zstd")), "{types:?}");
    // The same blobs without the registry's manifest (removed from a --no-tar directory, as
    // an archive of another tool would lack it): the manifest is rebuilt, OCI since schema 2
    // has no zstd media type.
    pull_ok(
        dir.path(),
        &[
            "-q",
            "--compressed",
            "--no-tar",
            "--layers-dir",
            "kept-dir",
            &image("zstd-chunked"),
        ],
    );
    let served = manifest_digest(&image("zstd-chunked"));
    let served = served.trim_start_matches("sha256:");
    std::fs::remove_file(dir.path().join("kept-dir/blobs/sha256").join(served)).unwrap();
    let target = format!(
        "{}/zstd-dir-{}:1",
        env("DS_PUSH_REGISTRY"),
        std::process::id()
    );
    let out = dockersave_env(
        dir.path(),
        &["--insecure", "-q", "--push", "kept-dir", &target],
        &[("XDG_CACHE_HOME", record.to_str().unwrap())],
        None,
    );
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(
        config_digest(&target, &[]),
        config_digest(&image("zstd-chunked"), &[])
    );
    // This suite's engine (20.10) cannot pull zstd layers itself ("invalid tar header"): it
    // loads what dockersave pulls back out, decompressed.
    pull_ok(dir.path(), &["-q", "-o", "back.tar", &target]);
    load(
        &dir.path().join("back.tar"),
        Some(&target),
        &config_digest(&image("zstd-chunked"), &[]),
    );
    assert!(docker_run(&target, &["cat", "/data/dir/z"]).contains('z'));
}

/// umoci's unpack of `reference` (copied out of the registry by skopeo): the reference tree.
fn umoci_unpack(dir: &Path, reference: &str) -> PathBuf {
    let layout = dir.join("oci");
    let out = run(
        "skopeo",
        &[
            "copy",
            "--quiet",
            "--src-tls-verify=false",
            &format!("docker://{reference}"),
            &format!("oci:{}:img", layout.display()),
        ],
        dir,
        None,
    );
    assert_eq!(out.code, 0, "{out}");
    let image = format!("{}:img", layout.display());
    let out = run("umoci", &["unpack", "--image", &image, "bundle"], dir, None);
    assert_eq!(out.code, 0, "{out}");
    dir.join("bundle/rootfs")
}

#[test]
fn estargz_unpacks_to_the_tree_umoci_unpacks() {
    let dir = Scratch::new("estargz");
    let reference = image("estargz");
    pull_ok(dir.path(), &["-q", "--rootfs", "tree", &reference]);
    let theirs = umoci_unpack(dir.path(), &reference);
    let differences = compare(
        &snapshot(&dir.path().join("tree")),
        &snapshot(&theirs),
        Compare {
            owners: true,
            hard_links: true,
        },
    );
    assert!(differences.is_empty(), "{differences:#?}");
    // The layers' own files are there, and so is the index entry, as any unpacker leaves it.
    let tree = dir.path().join("tree");
    assert!(tree.join("bin/busybox").is_file() && tree.join("stargz.index.json").is_file());
    assert!(!tree.join("data/a").exists(), "the whiteout applied");
    pull_ok(dir.path(), &["-q", "-o", "estargz.tar", &reference]);
    load(
        &dir.path().join("estargz.tar"),
        Some(&reference),
        &config_digest(&reference, &[]),
    );
}
