//! Integration tests for air-gap bundles: `--platform all|LIST` archives (checked by Docker
//! 20.10, Podman and skopeo, which read them independently), `--images-from` lists, `--push`
//! of an archive holding an index, and `--copy-to` between the harness's registries. Digests
//! are compared with what skopeo, not dockersave, reads from the registries. Run through
//! tests/run.sh.

mod common;

use common::*;
use sha2::Digest as _;
use std::path::Path;

fn plain(image: &str) -> String {
    format!("{}/{image}:latest", env("DS_REGISTRY"))
}

fn unique(name: &str) -> String {
    format!("{name}-{}", std::process::id())
}

fn sha256(bytes: &[u8]) -> String {
    let sum = sha2::Sha256::digest(bytes);
    let hex: String = sum.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// A manifest or index as the registry serves it, and its digest, read by skopeo.
fn raw(reference: &str) -> (String, String) {
    let out = run(
        "skopeo",
        &[
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{reference}"),
        ],
        Path::new("/"),
        None,
    );
    assert_eq!(out.code, 0, "{out}");
    let digest = sha256(out.stdout.as_bytes());
    (out.stdout, digest)
}

/// The digests an index lists, in order, with their platforms (`linux/arm/v7`).
fn listed(index: &str) -> Vec<(String, String)> {
    use miniserde::json::{self, Value};
    let value: Value = json::from_str(index).expect("an index");
    let text = |v: Option<&Value>| match v {
        Some(Value::String(s)) => Some(s.clone()),
        _ => None,
    };
    let Value::Object(top) = value else {
        panic!("{index}")
    };
    let Some(Value::Array(manifests)) = top.get("manifests") else {
        panic!("{index}")
    };
    manifests
        .iter()
        .map(|m| {
            let Value::Object(m) = m else {
                panic!("{index}")
            };
            let platform = match m.get("platform") {
                Some(Value::Object(p)) => {
                    let mut name = format!(
                        "{}/{}",
                        text(p.get("os")).unwrap_or_default(),
                        text(p.get("architecture")).unwrap_or_default()
                    );
                    if let Some(variant) = text(p.get("variant")) {
                        name = format!("{name}/{variant}");
                    }
                    name
                }
                _ => String::new(),
            };
            (text(m.get("digest")).expect("a digest"), platform)
        })
        .collect()
}

/// The blob an archive's `index.json` names for its one bundle: (digest, bytes).
fn bundle_index(archive: &Path) -> (String, String) {
    let top = tar_file(archive, "index.json");
    let entries = listed(&top);
    assert_eq!(entries.len(), 1, "one entry, the index: {top}");
    assert!(top.contains("image.index.v1+json"), "{top}");
    let digest = entries[0].0.clone();
    let bytes = tar_file(archive, &format!("blobs/sha256/{}", &digest[7..]));
    assert_eq!(sha256(bytes.as_bytes()), digest);
    (digest, bytes)
}

/// `skopeo copy --all` of `source` into the OCI layout `layout`: every platform, and every
/// blob each one names, must be there.
fn copy_all(source: &str, layout: &Path) {
    let dest = format!("oci:{}", layout.display());
    let args = [
        "copy",
        "--quiet",
        "--all",
        "--src-tls-verify=false",
        source,
        &dest,
    ];
    let out = run("skopeo", &args, Path::new("/"), None);
    assert_eq!(out.code, 0, "skopeo {args:?}: {out}");
}

#[test]
fn every_platform_kept_as_served_keeps_the_index_digest_and_loads_everywhere() {
    let dir = Scratch::new("bundle-all");
    let source = plain("multi");
    let (served, served_digest) = raw(&source);
    let out = dockersave_ok(
        dir.path(),
        &[
            "--insecure",
            "--compressed",
            "--platform",
            "all",
            "-o",
            "all.tar",
            &source,
        ],
    );
    assert!(
        out.stderr.contains("manifest.json names linux/amd64"),
        "{out}"
    );
    let archive = dir.path().join("all.tar");
    let (digest, bytes) = bundle_index(&archive);
    assert_eq!(digest, served_digest, "the index is kept byte for byte");
    assert_eq!(bytes, served);
    let platforms = listed(&served);
    assert_eq!(platforms.len(), 3);
    // The platforms share busybox's layer: the index, 3 manifests, 3 configs and 3 layers.
    let names = tar_names(&archive).join("\n");
    assert_eq!(names.matches("blobs/sha256/").count() - 1, 10, "{names}");
    for (manifest, platform) in &platforms {
        let (expected, _) = raw(&format!("{}/multi@{manifest}", env("DS_REGISTRY")));
        let kept = tar_file(&archive, &format!("blobs/sha256/{}", &manifest[7..]));
        assert_eq!(kept, expected, "{platform}'s manifest, byte for byte");
    }

    // Docker 20.10 reads manifest.json: the image for this machine, runnable.
    let _engine = engine();
    let tag = source.clone();
    let amd64 = config_digest(&source, &[]);
    load(&archive, Some(&tag), &amd64);
    assert_eq!(docker_run(&tag, &["/bin/busybox", "echo", "ok"]), "ok\n");
    docker(&["rmi", &tag]);

    let store = Scratch::new("bundle-podman");
    let loaded = podman(store.path(), &["load", "-i", archive.to_str().unwrap()]);
    assert!(loaded.contains(&tag), "{loaded}");
    let id = podman(
        store.path(),
        &["image", "inspect", "--format", "{{.Id}}", &tag],
    );
    assert_eq!(format!("sha256:{}", id.trim()), amd64, "podman's image");

    // skopeo reads index.json: every platform, and every blob each one names, must be there.
    let layout = dir.path().join("layout");
    copy_all(&format!("oci-archive:{}", archive.display()), &layout);
    let copied = std::fs::read_to_string(layout.join("index.json")).unwrap();
    assert!(copied.contains(&served_digest), "{copied}");
}

#[test]
fn a_list_of_platforms_trims_the_index_and_names_the_first_in_manifest_json() {
    let dir = Scratch::new("bundle-list");
    let source = plain("multi");
    let (served, served_digest) = raw(&source);
    let out = dockersave_ok(
        dir.path(),
        &[
            "--insecure",
            "--compressed",
            "--platform",
            "linux/arm64,linux/amd64",
            "-o",
            "two.tar",
            &source,
        ],
    );
    assert!(out.stderr.contains("digest differs"), "{out}");
    let archive = dir.path().join("two.tar");
    let (digest, bytes) = bundle_index(&archive);
    assert_ne!(digest, served_digest);
    let by_platform = |platform: &str| {
        listed(&served)
            .into_iter()
            .find(|(_, p)| p == platform)
            .unwrap()
            .0
    };
    let kept = listed(&bytes);
    assert_eq!(
        kept,
        [
            (by_platform("linux/arm64"), "linux/arm64".to_string()),
            (by_platform("linux/amd64"), "linux/amd64".to_string())
        ],
        "the source's manifests, in the order asked for"
    );
    let manifest_json = tar_file(&archive, "manifest.json");
    let arm64 = config_digest(&source, &["--override-arch", "arm64"]);
    assert!(manifest_json.contains(&arm64[7..]), "{manifest_json}");
    assert_eq!(manifest_json.matches("\"Config\"").count(), 1);
}

#[test]
fn every_platform_decompressed_gets_a_new_index_that_keeps_variants() {
    let dir = Scratch::new("bundle-plain");
    let source = plain("multi");
    let out = dockersave_ok(
        dir.path(),
        &[
            "--insecure",
            "--platform",
            "all",
            "-o",
            "plain.tar",
            &source,
        ],
    );
    assert!(out.stderr.contains("written anew"), "{out}");
    let archive = dir.path().join("plain.tar");
    let (_, bytes) = bundle_index(&archive);
    let platforms: Vec<String> = listed(&bytes).into_iter().map(|(_, p)| p).collect();
    assert_eq!(platforms, ["linux/amd64", "linux/arm64", "linux/arm/v7"]);
    let tag = format!("{}/multi:latest", env("DS_REGISTRY"));
    let _engine = engine();
    load(&archive, Some(&tag), &config_digest(&source, &[]));
    assert_eq!(docker_run(&tag, &["/bin/busybox", "echo", "ok"]), "ok\n");
    docker(&["rmi", &tag]);
}

#[test]
fn a_list_of_images_goes_into_one_archive_with_shared_layers_once() {
    let dir = Scratch::new("images-from");
    let list = format!(
        "# the site's images\n\n{}\n  {}   # an index\n{}\n",
        plain("busybox"),
        plain("multi"),
        plain("layers")
    );
    std::fs::write(dir.path().join("images.txt"), &list).unwrap();
    let out = dockersave_ok(
        dir.path(),
        &[
            "--insecure",
            "-q",
            "--images-from",
            "images.txt",
            "-o",
            "site.tar",
        ],
    );
    assert_eq!(out.stdout.trim(), "site.tar", "{out}");
    let archive = dir.path().join("site.tar");
    let manifest_json = tar_file(&archive, "manifest.json");
    // multi's amd64 image is busybox: one item with both names.
    assert_eq!(
        manifest_json.matches("\"Config\"").count(),
        2,
        "{manifest_json}"
    );
    let both = format!(r#"["{}","{}"]"#, plain("busybox"), plain("multi"));
    assert!(manifest_json.contains(&both), "{manifest_json}");
    // busybox, multi's amd64 image and layers' bottom layer are one layer: stored once.
    let names = tar_names(&archive).join("\n");
    let busybox_layer = &layer_digests(&plain("busybox"))[0];
    let _engine = engine();
    let out = docker(&["load", "-i", archive.to_str().unwrap()]);
    for image in ["busybox", "multi", "layers"] {
        assert!(
            out.contains(&format!("Loaded image: {}", plain(image))),
            "{out}"
        );
    }
    let diff_ids = docker(&[
        "image",
        "inspect",
        "--format",
        "{{index .RootFS.Layers 0}}",
        &plain("busybox"),
    ]);
    let stored = names.matches(&diff_ids.trim()[7..]).count();
    assert_eq!(
        stored, 1,
        "the shared layer {busybox_layer} is stored once:\n{names}"
    );
    for image in ["busybox", "multi", "layers"] {
        docker(&["rmi", &plain(image)]);
    }

    // The same list on standard input.
    let out = dockersave_env(
        dir.path(),
        &["--insecure", "-q", "--images-from", "-", "-o", "stdin.tar"],
        &[],
        Some(&list),
    );
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(
        tar_file(&dir.path().join("stdin.tar"), "manifest.json"),
        manifest_json
    );
}

#[test]
fn an_image_of_the_list_that_fails_names_its_line_and_leaves_no_archive() {
    let dir = Scratch::new("images-from-missing");
    let list = format!(
        "{}\n# a comment\n{}/busybox:no-such-tag\n",
        plain("busybox"),
        env("DS_REGISTRY")
    );
    std::fs::write(dir.path().join("images.txt"), list).unwrap();
    let out = dockersave(
        dir.path(),
        &[
            "--insecure",
            "--images-from",
            "images.txt",
            "-o",
            "site.tar",
        ],
    );
    assert_eq!(out.code, 5, "{out}");
    let last = out.stderr.lines().last().unwrap();
    assert!(last.contains("images.txt line 3:"), "{out}");
    assert!(last.contains("no-such-tag"), "{out}");
    assert_eq!(dir.names(), ["images.txt"], "nothing is left behind");
}

/// `dockersave --push` into the push registry; the one line it prints.
fn push(dir: &Path, args: &[&str]) -> String {
    let mut all = vec!["--insecure", "-q", "--push"];
    all.extend_from_slice(args);
    let out = dockersave_ok(dir, &all);
    out.stdout.trim().to_string()
}

#[test]
fn an_archived_index_is_pushed_with_every_platform() {
    let dir = Scratch::new("bundle-push");
    let source = plain("multi");
    let (served, served_digest) = raw(&source);
    let kept = [
        "--insecure",
        "-q",
        "--platform",
        "all",
        "--compressed",
        "-o",
        "kept.tar",
    ];
    dockersave_ok(dir.path(), &[&kept[..], &[&source]].concat());
    let decompressed = ["--insecure", "-q", "--platform", "all", "-o", "plain.tar"];
    dockersave_ok(dir.path(), &[&decompressed[..], &[&source]].concat());
    let registry = env("DS_PUSH_REGISTRY");
    let repository = unique("bundle-push");

    // Kept as served: the same index digest as the source's, the same bytes.
    let target = format!("{registry}/{repository}:kept");
    let line = push(dir.path(), &["kept.tar", &target]);
    assert_eq!(line, format!("{registry}/{repository}@{served_digest}"));
    assert_eq!(raw(&target).0, served);

    // One platform: that platform's manifest, under the tag.
    let target = format!("{registry}/{repository}:arm64");
    let line = push(
        dir.path(),
        &["kept.tar", "--platform", "linux/arm64", &target],
    );
    let arm64 = listed(&served)
        .into_iter()
        .find(|(_, p)| p == "linux/arm64")
        .unwrap()
        .0;
    assert_eq!(line, format!("{registry}/{repository}@{arm64}"));

    // Decompressed in the archive: each platform gzipped again, a new index of all three.
    let target = format!("{registry}/{repository}:plain");
    push(dir.path(), &["plain.tar", &target]);
    let (index, _) = raw(&target);
    let platforms: Vec<String> = listed(&index).into_iter().map(|(_, p)| p).collect();
    assert_eq!(platforms, ["linux/amd64", "linux/arm64", "linux/arm/v7"]);
    // Every blob is there (skopeo fetches them all), and each platform is its own image.
    let layout = dir.path().join("layout");
    copy_all(&format!("docker://{target}"), &layout);
    let flat = dockersave_ok(
        dir.path(),
        &[
            "--insecure",
            "-q",
            "--platform",
            "linux/arm/v7",
            "--flatten",
            "arm.tar",
            &target,
        ],
    );
    assert_eq!(flat.code, 0);
    assert_eq!(
        tar_file(&dir.path().join("arm.tar"), "etc/platform"),
        "arm/v7\n"
    );
}

#[test]
fn copy_to_keeps_digests_and_mounts_on_one_registry() {
    let dir = Scratch::new("copy");
    let source = plain("multi");
    let (served, served_digest) = raw(&source);
    let registry = env("DS_PUSH_REGISTRY");
    let first = format!("{registry}/{}:1", unique("copy-a"));
    let out = dockersave_ok(dir.path(), &["--insecure", "--copy-to", &first, &source]);
    assert_eq!(
        out.stdout.trim(),
        format!("{}@{served_digest}", first.trim_end_matches(":1"))
    );
    assert_eq!(raw(&first).0, served, "the index, byte for byte");
    let layout = dir.path().join("layout");
    copy_all(&format!("docker://{first}"), &layout);

    // Within one registry every blob is mounted: nothing is uploaded.
    let repository = unique("copy-b");
    let second = format!("{registry}/{repository}:1");
    let out = dockersave_ok(dir.path(), &["--insecure", "--copy-to", &second, &first]);
    assert!(out.stderr.contains("mounted"), "{out}");
    let log = std::fs::read_to_string(env("DS_PUSH_LOG")).unwrap();
    let patched = log
        .lines()
        .filter(|l| l.contains("response completed") && l.contains("method=PATCH"))
        .any(|l| l.contains(&format!("/v2/{repository}/")));
    assert!(!patched, "a blob of {repository} was uploaded, not mounted");
    assert_eq!(raw(&second).1, served_digest);

    // Again: the destination has every blob, and says so.
    let out = dockersave_ok(dir.path(), &["--insecure", "--copy-to", &second, &first]);
    assert!(out.stderr.contains("already there"), "{out}");

    // Platforms: a list gives a trimmed index, one platform its manifest alone.
    let listed_target = format!("{registry}/{}:two", unique("copy-c"));
    let platforms = "linux/arm64,linux/amd64";
    let out = dockersave_ok(
        dir.path(),
        &[
            "--insecure",
            "--platform",
            platforms,
            "--copy-to",
            &listed_target,
            &source,
        ],
    );
    assert!(out.stderr.contains("digest differs"), "{out}");
    let kept: Vec<String> = listed(&raw(&listed_target).0)
        .into_iter()
        .map(|(_, p)| p)
        .collect();
    assert_eq!(kept, ["linux/arm64", "linux/amd64"]);
    let one = format!("{registry}/{}:arm64", unique("copy-d"));
    dockersave_ok(
        dir.path(),
        &[
            "--insecure",
            "--platform",
            "linux/arm64",
            "--copy-to",
            &one,
            &source,
        ],
    );
    let arm64 = listed(&served)
        .into_iter()
        .find(|(_, p)| p == "linux/arm64")
        .unwrap()
        .0;
    assert_eq!(raw(&one).1, arm64);
}

#[test]
fn copy_to_of_a_list_goes_below_a_prefix() {
    let dir = Scratch::new("copy-list");
    let list = format!("{}\n{}\n", plain("busybox"), plain("multi"));
    std::fs::write(dir.path().join("images.txt"), list).unwrap();
    let prefix = format!("{}/{}", env("DS_PUSH_REGISTRY"), unique("site"));
    let out = dockersave_ok(
        dir.path(),
        &[
            "--insecure",
            "-q",
            "--images-from",
            "images.txt",
            "--copy-to",
            &prefix,
        ],
    );
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    for (line, image) in lines.iter().zip(["busybox", "multi"]) {
        let digest = raw(&plain(image)).1;
        assert_eq!(*line, format!("{prefix}/{image}@{digest}"));
        assert_eq!(raw(&format!("{prefix}/{image}:latest")).1, digest);
    }
}

#[test]
fn copy_to_gives_each_registry_its_own_credentials() {
    let dir = Scratch::new("copy-credentials");
    // The destination's credentials are stored; the source's come on the command line.
    let basic = env("DS_BASIC_REGISTRY");
    let (user, password) = (env("DS_BASIC_USER"), env("DS_BASIC_PASSWORD"));
    let auth = run(
        "base64",
        &["-w0"],
        Path::new("/"),
        Some(&format!("{user}:{password}")),
    )
    .stdout;
    let config = Scratch::new("copy-docker-config");
    std::fs::write(
        config.path().join("config.json"),
        format!(r#"{{"auths":{{"{basic}":{{"auth":"{auth}"}}}}}}"#),
    )
    .unwrap();
    let source = format!("{}/busybox:latest", env("DS_TOKEN_REGISTRY"));
    let target = format!("{basic}/{}:1", unique("copied"));
    let token_password = env("DS_TOKEN_PASSWORD");
    let out = dockersave_env(
        dir.path(),
        &[
            "--insecure",
            "--user",
            &env("DS_TOKEN_USER"),
            "--password-stdin",
            "--copy-to",
            &target,
            &source,
        ],
        &[("DOCKER_CONFIG", config.path().to_str().unwrap())],
        Some(&format!("{token_password}\n")),
    );
    assert_eq!(out.code, 0, "{out}");
    assert!(!out.all().contains(&token_password) && !out.all().contains(&password));
    assert!(out.stdout.contains(&raw(&plain("busybox")).1), "{out}");

    // Without stored credentials the destination refuses: the source's were not sent there.
    let out = dockersave_env(
        dir.path(),
        &[
            "--insecure",
            "--user",
            &env("DS_TOKEN_USER"),
            "--password-stdin",
            "--copy-to",
            &target,
            &source,
        ],
        &[],
        Some(&format!("{token_password}\n")),
    );
    assert_eq!(out.code, 4, "{out}");
    assert!(out.stderr.contains(&basic), "{out}");
}

#[test]
fn copy_memory_stays_flat_whatever_the_image_weighs() {
    let dir = Scratch::new("copy-memory");
    let binary = release_binary();
    let target = format!("{}/{}:1", env("DS_PUSH_REGISTRY"), unique("copy-big"));
    let source = plain("zstd-big");
    let args = ["--insecure", "-q", "--copy-to", &target, &source];
    let (out, peak_kib, _) = run_measured(&binary, &args, dir.path(), false);
    assert_eq!(out.code, 0, "{out}");
    assert!(
        peak_kib <= 4 * 1024,
        "peak RSS {peak_kib} KiB copying 29 MB of layers"
    );
    assert_eq!(raw(&target).1, raw(&source).1);
}

#[test]
fn copy_to_refuses_a_blob_that_is_not_what_the_manifest_names() {
    let dir = Scratch::new("copy-corrupt");
    let faults = Faults {
        flip_blobs: true,
        ..Faults::default()
    };
    let front = forwarder(&env("DS_REGISTRY"), faults);
    let target = format!("{}/{}:1", env("DS_PUSH_REGISTRY"), unique("copy-corrupt"));
    let out = dockersave(
        dir.path(),
        &[
            "--insecure",
            "--copy-to",
            &target,
            &format!("{front}/busybox:latest"),
        ],
    );
    assert_eq!(out.code, 6, "{out}");
    let last = out.stderr.lines().last().unwrap();
    assert!(last.contains("failed verification"), "{out}");
    let inspect = run(
        "skopeo",
        &[
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{target}"),
        ],
        Path::new("/"),
        None,
    );
    assert_ne!(
        inspect.code, 0,
        "no tag names a copy that failed: {inspect}"
    );
}

#[test]
fn attestations_are_kept_unopened_so_the_index_digest_survives_the_gap() {
    let dir = Scratch::new("attested");
    let source = plain("attested");
    let (served, served_digest) = raw(&source);
    let entries = listed(&served);
    let attestations = entries
        .iter()
        .filter(|(_, p)| p == "unknown/unknown")
        .count();
    assert_eq!((entries.len(), attestations), (6, 3), "{served}");
    dockersave_ok(
        dir.path(),
        &[
            "--insecure",
            "-q",
            "--platform",
            "all",
            "--compressed",
            "-o",
            "kept.tar",
            &source,
        ],
    );
    let archive = dir.path().join("kept.tar");
    let (digest, bytes) = bundle_index(&archive);
    assert_eq!((digest, bytes), (served_digest.clone(), served.clone()));
    let layout = dir.path().join("layout");
    copy_all(&format!("oci-archive:{}", archive.display()), &layout);

    // Across the gap and back: the same digest, attestations and all.
    let registry = env("DS_PUSH_REGISTRY");
    let target = format!("{registry}/{}:1", unique("attested-push"));
    assert_eq!(
        push(dir.path(), &["kept.tar", &target]),
        format!("{}@{served_digest}", target.trim_end_matches(":1"))
    );
    assert_eq!(raw(&target).0, served);
    let copied = format!("{registry}/{}:1", unique("attested-copy"));
    dockersave_ok(
        dir.path(),
        &["--insecure", "-q", "--copy-to", &copied, &source],
    );
    assert_eq!(raw(&copied).0, served);

    // Decompressed, the images only: a new index of the three platforms.
    dockersave_ok(
        dir.path(),
        &[
            "--insecure",
            "-q",
            "--platform",
            "all",
            "-o",
            "plain.tar",
            &source,
        ],
    );
    let (_, bytes) = bundle_index(&dir.path().join("plain.tar"));
    let platforms: Vec<String> = listed(&bytes).into_iter().map(|(_, p)| p).collect();
    assert_eq!(platforms, ["linux/amd64", "linux/arm64", "linux/arm/v7"]);
}

#[test]
fn copy_to_with_verify_key_copies_signed_images_only() {
    let dir = Scratch::new("copy-verified");
    let key = format!("{}/ours.pub", env("DS_SIGN_KEYS"));
    let registry = env("DS_PUSH_REGISTRY");
    let signed = format!("{registry}/{}:1", unique("copy-signed"));
    let out = dockersave_ok(
        dir.path(),
        &[
            "--insecure",
            "-q",
            "--verify-key",
            &key,
            "--copy-to",
            &signed,
            &plain("signed-index"),
        ],
    );
    assert!(out.stdout.contains(&raw(&plain("signed-index")).1), "{out}");
    let unsigned = format!("{registry}/{}:1", unique("copy-unsigned"));
    let out = dockersave(
        dir.path(),
        &[
            "--insecure",
            "--verify-key",
            &key,
            "--copy-to",
            &unsigned,
            &plain("unsigned"),
        ],
    );
    assert_eq!(out.code, 6, "{out}");
    assert!(out.stderr.contains("no signature"), "{out}");
    let inspect = run(
        "skopeo",
        &[
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{unsigned}"),
        ],
        Path::new("/"),
        None,
    );
    assert_ne!(inspect.code, 0, "nothing was copied: {inspect}");
}
