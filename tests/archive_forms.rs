//! One archive for every engine (issue 12): the Docker 25 layout by default, `--format legacy`,
//! `-o -`, `--compressed`, `--gzip`/`--xz` and several images in one archive, each checked by
//! the real consumers: the Docker engine (load and run), Podman (rootful, vfs), skopeo with
//! umoci, and the engine's own containerd through `ctr`. Every consumer's idea of the image is
//! compared with the config digest an independent client (skopeo) computes from the registry.

mod common;

use common::*;
use std::fs;
use std::path::Path;

fn registry() -> String {
    env("DS_REGISTRY")
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A program's output, insisting it succeeded.
fn ok(out: Output) -> String {
    assert_eq!(out.code, 0, "{out}");
    out.stdout
}

/// Runs a program from the root directory.
fn at_root(program: &str, args: &[&str]) -> Output {
    match program {
        "podman" => run("podman", args, Path::new("/"), None),
        "ctr" => run("ctr", args, Path::new("/"), None),
        "skopeo" => run("skopeo", args, Path::new("/"), None),
        "umoci" => run("umoci", args, Path::new("/"), None),
        "tar" => run("tar", args, Path::new("/"), None),
        other => panic!("{other} is not a program these tests declare"),
    }
}

/// `ctr` against the Docker engine's own containerd, in a namespace of this test.
fn ctr(namespace: &str, args: &[&str]) -> String {
    let socket = format!("{}/docker-exec/containerd/containerd.sock", env("DS_STATE"));
    let mut all = vec!["-a", socket.as_str(), "-n", namespace];
    all.extend_from_slice(args);
    ok(at_root("ctr", &all))
}

/// Which consumers a form of archive is meant for.
#[derive(Clone, Copy)]
struct Consumers {
    /// skopeo's docker-archive: and oci-archive: transports (uncompressed archives only).
    skopeo: bool,
    ctr: bool,
}

/// Loads `archive` into every consumer and checks that each one's image has `config` (the
/// registry's config digest) under `tag`; runs busybox from it in Docker.
fn every_consumer_accepts(archive: &Path, tag: &str, config: &str, consumers: Consumers) {
    let scratch = Scratch::new("consumers");
    let path = archive.to_str().unwrap();

    load(archive, Some(tag), config);
    assert_eq!(docker_run(tag, &["/bin/busybox", "echo", "ok"]), "ok\n");

    let loaded = podman(scratch.path(), &["load", "-i", path]);
    assert!(loaded.contains(tag), "podman load said: {loaded}");
    let id = podman(
        scratch.path(),
        &["image", "inspect", "--format", "{{.Id}}", tag],
    );
    assert_eq!(format!("sha256:{}", id.trim()), config, "podman's image ID");

    if consumers.skopeo {
        let archived = format!("docker-archive:{path}");
        let raw = ok(at_root(
            "skopeo",
            &["inspect", "--config", "--raw", &archived],
        ));
        assert_eq!(format!("sha256:{}", sha256_hex(raw.as_bytes())), config);
        let layout = scratch.path().join("oci");
        let destination = format!("oci:{}:copied", layout.display());
        ok(at_root(
            "skopeo",
            &[
                "copy",
                "--quiet",
                &format!("oci-archive:{path}"),
                &destination,
            ],
        ));
        let bundle = scratch.path().join("bundle");
        let image = format!("{}:copied", layout.display());
        ok(at_root(
            "umoci",
            &["unpack", "--image", &image, bundle.to_str().unwrap()],
        ));
        assert_eq!(
            fs::read_to_string(bundle.join("rootfs/etc/fixture")).unwrap(),
            "dockersave fixture\n"
        );
    }

    if consumers.ctr {
        let namespace = format!("dockersave-test-{}", std::process::id());
        ctr(
            &namespace,
            &["images", "import", "--snapshotter", "native", path],
        );
        let listed = ctr(&namespace, &["images", "ls"]);
        let line = listed
            .lines()
            .find(|l| l.starts_with(&format!("{tag} ")))
            .unwrap_or_else(|| panic!("ctr lists no {tag}: {listed}"));
        let manifest = line.split_whitespace().nth(2).unwrap();
        let content = ctr(&namespace, &["content", "get", manifest]);
        assert!(
            content.contains(config),
            "containerd's manifest {manifest} has another config: {content}"
        );
        ctr(&namespace, &["images", "rm", tag]);
    }
}

const ALL: Consumers = Consumers {
    skopeo: true,
    ctr: true,
};

#[test]
fn the_default_archive_has_the_docker_25_layout_and_every_consumer_loads_it() {
    let tag = format!("{}/busybox:latest", registry());
    let config = config_digest(&tag, &[]);
    let dir = Scratch::new("default");
    dockersave_ok(dir.path(), &["--insecure", &tag]);
    let archive = dir.path().join("busybox-latest.tar");
    let names = tar_names(&archive);
    for name in [
        "blobs/",
        "blobs/sha256/",
        "index.json",
        "manifest.json",
        "oci-layout",
        "repositories",
    ] {
        assert!(names.iter().any(|n| n == name), "{name} missing: {names:?}");
    }
    assert!(
        names.iter().all(|n| n.starts_with("blobs/")
            || ["index.json", "manifest.json", "oci-layout", "repositories"].contains(&n.as_str())),
        "only the Docker 25 entries: {names:?}"
    );
    assert_eq!(
        tar_file(&archive, "oci-layout"),
        r#"{"imageLayoutVersion": "1.0.0"}"#
    );
    let index = tar_file(&archive, "index.json");
    assert!(
        index.contains(&format!(r#""io.containerd.image.name":"{tag}""#))
            && index.contains(r#""org.opencontainers.image.ref.name":"latest""#)
            && index.contains(
                r#""manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json""#
            ),
        "{index}"
    );
    let manifest_json = tar_file(&archive, "manifest.json");
    let config_hex = config.strip_prefix("sha256:").unwrap();
    assert!(
        manifest_json.starts_with(&format!(
            r#"[{{"Config":"blobs/sha256/{config_hex}","RepoTags":["{tag}"],"Layers":["blobs/sha256/"#
        )),
        "{manifest_json}"
    );
    every_consumer_accepts(&archive, &tag, &config, ALL);

    // --gunzip is the original's flag: accepted, noted, and nothing changes.
    let again = Scratch::new("gunzip");
    let out = dockersave_ok(again.path(), &["--insecure", "--gunzip", &tag]);
    assert!(out.stderr.contains("--gunzip"), "{out}");
    assert!(
        fs::read(again.path().join("busybox-latest.tar")).unwrap() == fs::read(&archive).unwrap(),
        "--gunzip changed the archive"
    );
}

#[test]
fn legacy_format_matches_the_engines_own_docker_save() {
    let tag = format!("{}/layers:latest", registry());
    let config = config_digest(&tag, &[]);
    let dir = Scratch::new("legacy");
    dockersave_ok(
        dir.path(),
        &["--insecure", "--format", "legacy", "-o", "old.tar", &tag],
    );
    let ours = dir.path().join("old.tar");
    assert!(tar_names(&ours).iter().any(|n| n.ends_with("/VERSION")));
    load(&ours, Some(&tag), &config);
    // The engine of the suite (Docker 20.10) writes this layout itself: the same config and
    // the same layer tars, byte for byte.
    let theirs = dir.path().join("theirs.tar");
    docker(&["save", "-o", theirs.to_str().unwrap(), &tag]);
    let layers_of = |archive: &Path| -> Vec<String> {
        let manifest = tar_file(archive, "manifest.json");
        let layers = manifest.split("\"Layers\":[").nth(1).unwrap();
        let layers = layers.split(']').next().unwrap();
        layers
            .split(',')
            .map(|l| sha256_hex(tar_file(archive, l.trim_matches('"')).as_bytes()))
            .collect()
    };
    assert_eq!(layers_of(&ours), layers_of(&theirs));
    let config_of = |archive: &Path| {
        let manifest = tar_file(archive, "manifest.json");
        let name = manifest.split("\"Config\":\"").nth(1).unwrap();
        tar_file(archive, name.split('"').next().unwrap())
    };
    assert_eq!(config_of(&ours), config_of(&theirs));
}

#[test]
fn compressed_layers_keep_the_manifest_digest() {
    let tag = format!("{}/busybox-oci:latest", registry());
    let config = config_digest(&tag, &[]);
    let dir = Scratch::new("compressed");
    dockersave_ok(dir.path(), &["--insecure", "--compressed", &tag]);
    let archive = dir.path().join("busybox-oci-latest.tar");
    let digest = ok(at_root(
        "skopeo",
        &[
            "inspect",
            "--format",
            "{{.Digest}}",
            &format!("oci-archive:{}", archive.display()),
        ],
    ));
    assert_eq!(
        digest.trim(),
        manifest_digest(&tag),
        "the manifest digest survives"
    );
    let plain = Scratch::new("uncompressed");
    dockersave_ok(plain.path(), &["--insecure", &tag]);
    let (small, big) = (
        fs::metadata(&archive).unwrap().len(),
        fs::metadata(plain.path().join("busybox-oci-latest.tar"))
            .unwrap()
            .len(),
    );
    assert!(small * 10 < big * 7, "compressed {small} vs {big} bytes");
    every_consumer_accepts(&archive, &tag, &config, ALL);
}

#[test]
fn standard_output_streams_and_writes_nothing_else() {
    let tag = format!("{}/layers:latest", registry());
    let config = config_digest(&tag, &[]);
    // Read-only for `nobody`, who runs dockersave; only the cache directory is writable.
    let dir = Scratch::new("stdout");
    let cache = dir.path().join("cache");
    fs::create_dir(&cache).unwrap();
    give_to_nobody(&cache);
    let work = dir.path().join("work");
    fs::create_dir(&work).unwrap();
    let script = format!(
        "setpriv --reuid=65534 --regid=65534 --clear-groups -- {} --insecure --cache-dir {} -o - {tag} | docker load",
        nobody_dockersave(),
        cache.display()
    );
    let out = run("bash", &["-o", "pipefail", "-c", &script], &work, None);
    assert_eq!(out.code, 0, "{out}");
    assert!(
        out.stdout.contains(&format!("Loaded image: {tag}")),
        "{out}"
    );
    assert_eq!(
        fs::read_dir(&work).unwrap().count(),
        0,
        "the working directory stays empty"
    );
    assert!(
        fs::read_dir(&cache).unwrap().count() > 0,
        "the cache was filled"
    );
    let id = docker(&["image", "inspect", "--format", "{{.Id}}", &tag]);
    assert_eq!(id.trim(), config);
    assert_eq!(docker_run(&tag, &["/bin/ls", "/data"]), "b\ndir\n");

    // Streamed front to back or written in place: the same bytes.
    let file = Scratch::new("stdout-file");
    let script = format!(
        "{} -q --insecure -o - {tag} > streamed.tar",
        env!("CARGO_BIN_EXE_dockersave")
    );
    let out = run("bash", &["-c", &script], file.path(), None);
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(out.stderr, "", "-q prints nothing");
    dockersave_ok(file.path(), &["--insecure", &tag]);
    assert!(
        fs::read(file.path().join("streamed.tar")).unwrap()
            == fs::read(file.path().join("layers-latest.tar")).unwrap(),
        "-o - and the archive file differ"
    );
}

#[test]
fn a_registry_without_ranges_still_streams() {
    let proxy = forwarder(
        &registry(),
        Faults {
            ignore_range: true,
            ..Faults::default()
        },
    );
    let tag = format!("{proxy}/busybox:latest");
    let dir = Scratch::new("norange");
    let out = dockersave_ok(
        dir.path(),
        &["--insecure", "-o", "streamed.tar.gz", "--gzip", &tag],
    );
    assert!(out.stderr.contains("reading it once to count"), "{out}");
    load(
        &dir.path().join("streamed.tar.gz"),
        Some(&tag),
        &config_digest(&format!("{}/busybox:latest", registry()), &[]),
    );
}

#[test]
fn a_broken_stream_fails_and_says_so() {
    let proxy = forwarder(
        &registry(),
        Faults {
            flip_blobs: true,
            ..Faults::default()
        },
    );
    let dir = Scratch::new("broken");
    let out = dockersave(
        dir.path(),
        &["--insecure", "-o", "-", &format!("{proxy}/layers")],
    );
    assert_eq!(out.code, 6, "{out}");
    assert!(out.stderr.contains("incomplete"), "{out}");
    assert!(dir.names().is_empty(), "{:?}", dir.names());
    // Into a file with --xz: nothing is left under any name.
    let out = dockersave(
        dir.path(),
        &["--insecure", "--xz", &format!("{proxy}/layers")],
    );
    assert_eq!(out.code, 6, "{out}");
    assert!(dir.names().is_empty(), "{:?}", dir.names());
}

#[test]
fn gzip_and_xz_archives_load_and_run() {
    let tag = format!("{}/busybox:latest", registry());
    let config = config_digest(&tag, &[]);
    let dir = Scratch::new("whole");
    for (flag, name, magic) in [
        ("--gzip", "busybox-latest.tar.gz", &[0x1f, 0x8b][..]),
        (
            "--xz",
            "busybox-latest.tar.xz",
            &[0xfd, b'7', b'z', b'X', b'Z', 0][..],
        ),
    ] {
        let out = dockersave_ok(dir.path(), &["--insecure", flag, &tag]);
        assert!(out.stdout.contains(name), "{out}");
        let archive = dir.path().join(name);
        assert!(fs::read(&archive).unwrap().starts_with(magic), "{name}");
        every_consumer_accepts(
            &archive,
            &tag,
            &config,
            Consumers {
                skopeo: false,
                ctr: false,
            },
        );
    }
}

#[test]
fn several_images_in_one_archive_share_their_layers() {
    let busybox = format!("{}/busybox:latest", registry());
    let layers = format!("{}/layers:latest", registry());
    let dir = Scratch::new("several");
    dockersave_ok(dir.path(), &["--insecure", &busybox, &layers]);
    let archive = dir.path().join("busybox-latest-and-1-more.tar");
    let names = tar_names(&archive);
    let mut unique = names.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(
        unique.len(),
        names.len(),
        "an entry is stored twice: {names:?}"
    );
    // busybox's one layer is the bottom layer of `layers`: 1 + 3 layers, 3 stored.
    let manifest = tar_file(&archive, "manifest.json");
    let mut layers_listed: Vec<&str> = manifest
        .split("\"Layers\":[")
        .skip(1)
        .flat_map(|l| l.split(']').next().unwrap().split(','))
        .collect();
    assert_eq!(layers_listed.len(), 4, "{manifest}");
    layers_listed.sort();
    layers_listed.dedup();
    assert_eq!(layers_listed.len(), 3, "{manifest}");
    let out = docker(&["load", "-i", archive.to_str().unwrap()]);
    for tag in [&busybox, &layers] {
        assert!(out.contains(&format!("Loaded image: {tag}")), "{out}");
        let id = docker(&["image", "inspect", "--format", "{{.Id}}", tag]);
        assert_eq!(id.trim(), config_digest(tag, &[]), "{tag}");
    }
    let scratch = Scratch::new("several-podman");
    let loaded = podman(scratch.path(), &["load", "-i", archive.to_str().unwrap()]);
    assert!(
        loaded.contains(&busybox) && loaded.contains(&layers),
        "{loaded}"
    );
    let namespace = format!("dockersave-several-{}", std::process::id());
    ctr(
        &namespace,
        &[
            "images",
            "import",
            "--snapshotter",
            "native",
            archive.to_str().unwrap(),
        ],
    );
    let listed = ctr(&namespace, &["images", "ls", "-q"]);
    assert!(
        listed.contains(&busybox) && listed.contains(&layers),
        "{listed}"
    );
    for tag in [&busybox, &layers] {
        ctr(&namespace, &["images", "rm", tag]);
    }
}
