//! Integration tests: dockersave against the real registry (plain, token auth, basic auth), with
//! images built by umoci/skopeo/buildah, and every archive proven by a real `docker load`.
//! Run through `tests/run.sh`, which starts those servers.

mod common;

use common::*;
use std::fs;

fn registry() -> String {
    env("DS_REGISTRY")
}

/// Pulls `image` from the plain registry into a scratch directory, checks the archive name,
/// loads it and checks name and ID. Returns the scratch directory and the loaded tag.
fn pull_and_load(image: &str, archive: &str, extra: &[&str]) -> (Scratch, String) {
    let dir = Scratch::new(archive);
    let reference = format!("{}/{image}", registry());
    let mut args = vec!["--insecure"];
    args.extend_from_slice(extra);
    args.push(&reference);
    let out = dockersave_ok(dir.path(), &args);
    let mut expected = vec![archive.to_string()];
    if extra.contains(&"--no-rm") {
        expected.insert(0, archive.trim_end_matches(".tar").to_string());
    }
    assert_eq!(
        dir.names(),
        expected,
        "only what was asked for must be left:\n{out}"
    );
    assert!(
        out.stdout.trim().ends_with(archive),
        "stdout names the archive: {out}"
    );
    let tag = if image.contains(':') {
        reference.clone()
    } else {
        format!("{reference}:latest")
    };
    let platform: Vec<&str> = extra
        .windows(2)
        .filter(|w| w[0] == "--platform")
        .flat_map(|w| ["--override-arch", arch_of(w[1])])
        .collect();
    let mut skopeo_platform = platform.clone();
    if let Some(variant) = extra
        .windows(2)
        .find(|w| w[0] == "--platform")
        .and_then(|w| w[1].split('/').nth(2))
    {
        skopeo_platform.extend(["--override-variant", variant]);
    }
    load(
        &dir.path().join(archive),
        Some(&tag),
        &config_digest(&tag, &skopeo_platform),
    );
    (dir, tag)
}

fn arch_of(platform: &str) -> &str {
    platform.split('/').nth(1).unwrap()
}

#[test]
fn docker_schema2_busybox_loads_and_runs() {
    let _engine = engine();
    let (_dir, tag) = pull_and_load("busybox", "busybox-latest.tar", &[]);
    assert_eq!(docker_run(&tag, &["/bin/busybox", "echo", "ok"]), "ok\n");
    assert_eq!(
        docker_run(&tag, &["/bin/cat", "/etc/fixture"]),
        "dockersave fixture\n"
    );
}

#[test]
fn oci_manifest_image_loads_and_runs() {
    let _engine = engine();
    let (_dir, tag) = pull_and_load("busybox-oci:latest", "busybox-oci-latest.tar", &[]);
    assert_eq!(docker_run(&tag, &["/bin/busybox", "echo", "ok"]), "ok\n");
}

#[test]
fn three_layers_with_whiteout_and_opaque_directory() {
    let _engine = engine();
    let mut tag = String::new();
    for (format, layer_paths) in [("docker", "\"blobs/sha256/"), ("legacy", "/layer.tar\"")] {
        // Streamed: layers go straight into the archive as their turn comes.
        let (streamed, loaded) =
            pull_and_load("layers", "layers-latest.tar", &["--format", format]);
        // Spooled: --no-rm keeps every layer in the directory and copies them in.
        let (spooled, _) = pull_and_load(
            "layers",
            "layers-latest.tar",
            &["--format", format, "--no-rm"],
        );
        let manifest =
            fs::read_to_string(spooled.path().join("layers-latest/manifest.json")).unwrap();
        let layers = manifest.split("\"Layers\"").nth(1).unwrap();
        assert_eq!(layers.matches(layer_paths).count(), 3, "{manifest}");
        assert!(
            fs::read(streamed.path().join("layers-latest.tar")).unwrap()
                == fs::read(spooled.path().join("layers-latest.tar")).unwrap(),
            "{format}: streamed and spooled archives of one image must be the same bytes"
        );
        tag = loaded;
    }
    // /data/a was deleted by a whiteout; /data/dir was made opaque, hiding x and y.
    assert_eq!(docker_run(&tag, &["/bin/ls", "/data"]), "b\ndir\n");
    assert_eq!(docker_run(&tag, &["/bin/ls", "/data/dir"]), "z\n");
}

#[test]
fn index_gives_the_requested_platform() {
    let _engine = engine();
    for (platform, arch) in [
        ("linux/arm64", "arm64"),
        ("linux/arm/v7", "arm"),
        ("linux/amd64", "amd64"),
    ] {
        for image in ["multi", "multi-docker"] {
            let archive = format!("{image}-latest.tar");
            let (_dir, tag) = pull_and_load(image, &archive, &["--platform", platform]);
            let inspected = docker(&[
                "image",
                "inspect",
                "--format",
                "{{.Os}}/{{.Architecture}}",
                &tag,
            ]);
            assert_eq!(
                inspected.trim(),
                format!("linux/{arch}"),
                "{image} {platform}"
            );
            // The fixture's per-platform images carry a marker file naming their platform.
            let marker = if arch == "amd64" {
                "ok\n".to_string()
            } else {
                format!("{}\n", &platform["linux/".len()..])
            };
            let shown = if arch == "amd64" {
                docker_run(&tag, &["/bin/busybox", "echo", "ok"])
            } else {
                docker_run(&tag, &["/bin/cat", "/etc/platform"])
            };
            assert_eq!(shown, marker, "{image} {platform}");
        }
    }
}

#[test]
fn index_defaults_to_host_platform_and_arch_shorthand() {
    let _engine = engine();
    let (_dir, tag) = pull_and_load("multi", "multi-latest.tar", &[]);
    assert_eq!(
        docker(&["image", "inspect", "--format", "{{.Architecture}}", &tag]).trim(),
        "amd64"
    );
    let dir = Scratch::new("arch");
    let reference = format!("{}/multi", registry());
    dockersave_ok(
        dir.path(),
        &[
            "--insecure",
            "--arch",
            "arm64",
            "--tarname",
            "m.tar",
            &reference,
        ],
    );
    let expected = config_digest(&reference, &["--override-arch", "arm64"]);
    load(
        &dir.path().join("m.tar"),
        Some(&format!("{reference}:latest")),
        &expected,
    );
}

#[test]
fn missing_platform_lists_available_ones_and_leaves_nothing() {
    let dir = Scratch::new("noplatform");
    let out = dockersave(
        dir.path(),
        &[
            "--insecure",
            "--platform",
            "linux/s390x",
            &format!("{}/multi", registry()),
        ],
    );
    assert_eq!(out.code, 5, "{out}");
    for p in ["linux/s390x", "linux/amd64", "linux/arm64", "linux/arm/v7"] {
        assert!(out.stderr.contains(p), "{p} missing from: {out}");
    }
    assert_eq!(
        out.stderr.lines().count(),
        2,
        "progress line + one error line: {out}"
    );
    assert!(dir.names().is_empty(), "left behind: {:?}", dir.names());
}

#[test]
fn pull_by_digest_verifies_and_names_archive_after_digest() {
    let _engine = engine();
    let tagged = format!("{}/busybox:latest", registry());
    let digest = manifest_digest(&tagged);
    let by_digest = format!("{}/busybox@{digest}", registry());
    let dir = Scratch::new("digest");
    dockersave_ok(dir.path(), &["--insecure", &by_digest]);
    let archive = format!("busybox-sha256-{}.tar", &digest["sha256:".len()..][..12]);
    assert_eq!(dir.names(), std::slice::from_ref(&archive));
    load(
        &dir.path().join(&archive),
        None,
        &config_digest(&tagged, &[]),
    );

    // A well-formed digest the registry does not have.
    let missing = format!("{}/busybox@sha256:{}", registry(), "0".repeat(64));
    let out = dockersave(dir.path(), &["--insecure", &missing]);
    assert_eq!(out.code, 5, "{out}");
    assert!(out.stderr.contains("not found"), "{out}");
}

#[test]
fn unknown_tag_and_repository_are_not_found() {
    let dir = Scratch::new("unknown");
    for image in ["busybox:nope", "no-such-repo"] {
        let out = dockersave(
            dir.path(),
            &["--insecure", &format!("{}/{image}", registry())],
        );
        assert_eq!(out.code, 5, "{out}");
        let last = out.stderr.lines().last().unwrap();
        assert!(
            last.starts_with("dockersave: error: the manifest of") && last.contains("not found"),
            "{out}"
        );
        assert!(dir.names().is_empty(), "left behind: {:?}", dir.names());
    }
}

#[test]
fn token_auth_asks_for_a_pull_scope_and_loads() {
    let _engine = engine();
    let registry = env("DS_TOKEN_REGISTRY");
    let reference = format!("{registry}/busybox:latest");
    let log_before = fs::read_to_string(env("DS_TOKEN_LOG")).unwrap().len();
    let dir = Scratch::new("token");
    dockersave_ok(dir.path(), &["--insecure", &reference]);
    let log = fs::read_to_string(env("DS_TOKEN_LOG")).unwrap();
    let ours: Vec<&str> = log[log_before..]
        .lines()
        .filter(|l| l.contains("repository:busybox:"))
        .collect();
    assert!(
        !ours.is_empty(),
        "no token request for busybox in the token log:\n{log}"
    );
    assert!(
        ours.iter()
            .all(|l| *l == "service=dockersave-test scope=repository:busybox:pull user=-"),
        "{ours:?}"
    );
    load(
        &dir.path().join("busybox-latest.tar"),
        Some(&reference),
        &config_digest(&format!("{}/busybox:latest", self::registry()), &[]),
    );
}

/// A wrong password: exit code 4, the refusal named, and the password nowhere in the output.
fn assert_wrong_password_refused(dir: &Scratch, reference: &str, user: &str, wrong: &str) {
    let args = ["--insecure", "--user", user, "--password", wrong, reference];
    let out = dockersave(dir.path(), &args);
    assert_eq!(out.code, 4, "{out}");
    assert!(
        out.stderr.contains("refused the user name or password"),
        "{out}"
    );
    assert!(!out.all().contains(wrong), "the password leaked: {out}");
}

#[test]
fn token_auth_sends_credentials_to_the_token_service() {
    let registry = env("DS_TOKEN_REGISTRY");
    let (user, password) = (env("DS_TOKEN_USER"), env("DS_TOKEN_PASSWORD"));
    let reference = format!("{registry}/layers:latest");
    let dir = Scratch::new("token-creds");
    let out = dockersave_ok(
        dir.path(),
        &[
            "--insecure",
            "--user",
            &user,
            "--password",
            &password,
            &reference,
        ],
    );
    assert!(
        out.stderr.contains("shell history"),
        "a password on the command line deserves a warning: {out}"
    );
    assert!(!out.all().contains(&password), "the password leaked: {out}");
    let log = fs::read_to_string(env("DS_TOKEN_LOG")).unwrap();
    assert!(
        log.contains(&format!("scope=repository:layers:pull user={user}\n")),
        "{log}"
    );

    assert_wrong_password_refused(&dir, &reference, &user, "wrong-pass-9");
    assert_eq!(
        dir.names(),
        ["layers-latest.tar"],
        "the failed run must leave nothing"
    );
}

#[test]
fn basic_auth_registry() {
    let _engine = engine();
    let registry = env("DS_BASIC_REGISTRY");
    let (user, password) = (env("DS_BASIC_USER"), env("DS_BASIC_PASSWORD"));
    let reference = format!("{registry}/busybox-oci:latest");
    let dir = Scratch::new("basic");

    let out = dockersave(dir.path(), &["--insecure", &reference]);
    assert_eq!(out.code, 4, "{out}");
    assert!(out.stderr.contains("requires a login"), "{out}");

    assert_wrong_password_refused(&dir, &reference, &user, "not-it-3");
    assert!(dir.names().is_empty(), "left behind: {:?}", dir.names());

    let out = dockersave_ok(
        dir.path(),
        &[
            "--insecure",
            "--user",
            &user,
            "--password",
            &password,
            &reference,
        ],
    );
    assert!(!out.all().contains(&password), "the password leaked: {out}");
    let plain = format!("{}/busybox-oci:latest", self::registry());
    load(
        &dir.path().join("busybox-oci-latest.tar"),
        Some(&reference),
        &config_digest(&plain, &[]),
    );
}

#[test]
fn corrupted_layer_is_a_digest_mismatch_and_leaves_nothing() {
    let proxy = forwarder(
        &registry(),
        Faults {
            flip_blobs: true,
            ..Faults::default()
        },
    );
    let dir = Scratch::new("corrupt");
    let out = dockersave(dir.path(), &["--insecure", &format!("{proxy}/layers")]);
    assert_eq!(out.code, 6, "{out}");
    let last = out.stderr.lines().last().unwrap();
    assert!(
        last.contains("layer 1/3") && last.contains("failed verification"),
        "{out}"
    );
    assert!(dir.names().is_empty(), "left behind: {:?}", dir.names());
}

/// A layer that starts while the layers before it still arrive is written straight to its
/// place in the archive, where their gzip trailers put it. These trailers mislead, one short
/// and one 4 GiB long: whatever the timing, the layers placed after a wrong one move out of
/// the way before anything is overwritten, and the archive is the one that spooling every
/// layer (`--no-rm`) writes.
#[test]
fn layers_placed_by_misleading_gzip_trailers_make_the_same_archive() {
    let dir = Scratch::new("members");
    let reference = format!("{}/members:latest", registry());
    let args = |extra: &[&'static str], name: &'static str| {
        let mut args = vec!["--insecure", "-q"];
        args.extend_from_slice(extra);
        args.extend(["-o", name]);
        args
    };
    let mut spooled = args(&["--no-rm"], "spooled.tar");
    spooled.push(&reference);
    dockersave_ok(dir.path(), &spooled);
    let spooled = fs::read(dir.path().join("spooled.tar")).unwrap();
    for name in ["placed-1.tar", "placed-2.tar", "placed-3.tar"] {
        let mut placed = args(&[], name);
        placed.push(&reference);
        dockersave_ok(dir.path(), &placed);
        let placed = fs::read(dir.path().join(name)).unwrap();
        assert!(
            placed == spooled,
            "{name}: {} bytes, not the {} bytes of the archive spooling every layer writes",
            placed.len(),
            spooled.len()
        );
    }
    load(
        &dir.path().join("placed-1.tar"),
        Some(&reference),
        &config_digest(&reference, &[]),
    );
}

#[test]
fn no_tar_leaves_the_directory_and_no_rm_keeps_both() {
    let _engine = engine();
    let reference = format!("{}/busybox", registry());
    let dir = Scratch::new("notar");
    dockersave_ok(
        dir.path(),
        &["--insecure", "--no-tar", "--layers-dir", "bb", &reference],
    );
    assert_eq!(dir.names(), ["bb"]);
    let mut files: Vec<String> = fs::read_dir(dir.path().join("bb"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            "blobs",
            "index.json",
            "manifest.json",
            "oci-layout",
            "repositories"
        ],
        "the Docker 25 layout, unpacked"
    );
    dockersave_ok(
        dir.path(),
        &[
            "--insecure",
            "--no-tar",
            "--format",
            "legacy",
            "--layers-dir",
            "old",
            &reference,
        ],
    );
    let files = fs::read_dir(dir.path().join("old")).unwrap().count();
    assert_eq!(
        files, 4,
        "config, manifest.json, repositories and one layer directory"
    );

    let out = dockersave(
        dir.path(),
        &["--insecure", "--no-tar", "--layers-dir", "bb", &reference],
    );
    assert_eq!(
        out.code, 7,
        "an existing directory is not overwritten: {out}"
    );

    let work = dir.path().join("out");
    dockersave_ok(
        dir.path(),
        &[
            "--insecure",
            "--no-rm",
            "--working-dir",
            work.to_str().unwrap(),
            "--tarname",
            "x.tar",
            &reference,
        ],
    );
    let mut names: Vec<String> = fs::read_dir(&work)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["busybox-latest", "x.tar"]);
    load(
        &work.join("x.tar"),
        Some(&format!("{reference}:latest")),
        &config_digest(&format!("{reference}:latest"), &[]),
    );
}

#[test]
fn bad_input_gets_one_line_and_an_exit_code() {
    let dir = Scratch::new("bad");
    for (args, code, needle) in [
        (&["Bad/Name"][..], 2, "invalid image reference"),
        (&["--frobnicate", "x"], 2, "--frobnicate"),
        (&[], 2, "missing IMAGE"),
        (
            &["--insecure", "127.0.0.1:1/busybox"],
            3,
            "cannot talk to 127.0.0.1:1",
        ),
    ] {
        let out = dockersave(dir.path(), args);
        assert_eq!(out.code, code, "{args:?}: {out}");
        let errors: Vec<&str> = out
            .stderr
            .lines()
            .filter(|l| l.starts_with("dockersave: error:"))
            .collect();
        assert_eq!(errors.len(), 1, "{out}");
        assert!(errors[0].contains(needle), "{args:?}: {out}");
        assert!(!out.stderr.contains("panicked"), "{out}");
    }
    assert!(dir.names().is_empty());
}

#[test]
fn help_and_version() {
    let dir = Scratch::new("help");
    let out = dockersave_ok(dir.path(), &["--help"]);
    assert!(
        out.stdout.contains("Usage: dockersave [OPTIONS] IMAGE"),
        "{out}"
    );
    let out = dockersave_ok(dir.path(), &["--version"]);
    assert!(
        out.stdout
            .starts_with(&format!("dockersave {}", env!("CARGO_PKG_VERSION"))),
        "{out}"
    );
}
