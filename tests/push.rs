//! Integration tests for `--push`: archives written by dockersave (every form), by the Docker
//! engine's `docker save` and by skopeo go into the real registry — one with relative
//! `Location` headers and a request log (`DS_PUSH_REGISTRY`), the plain one (absolute
//! `Location`) and the token-auth one — and come back out through `docker pull` and skopeo.
//! Run through tests/run.sh.

mod common;

use common::*;
use std::path::Path;

fn source(image: &str) -> String {
    format!("{}/{image}:latest", env("DS_REGISTRY"))
}

/// Pulls `image` from the plain registry into `dir/name` with `extra` flags.
fn pull_into(dir: &Path, image: &str, name: &str, extra: &[&str]) {
    let mut args = vec!["--insecure", "-q", "-o", name];
    args.extend_from_slice(extra);
    let reference = source(image);
    args.push(&reference);
    dockersave_ok(dir, &args);
}

/// `dockersave --push` with a record of pushed blobs of its own (under `record`).
fn push(dir: &Path, record: &Path, args: &[&str]) -> Output {
    let mut all = vec!["--insecure", "--push"];
    all.extend_from_slice(args);
    dockersave_env(
        dir,
        &all,
        &[("XDG_CACHE_HOME", record.to_str().unwrap())],
        None,
    )
}

fn push_ok(dir: &Path, record: &Path, args: &[&str]) -> String {
    let out = push(dir, record, args);
    assert_eq!(out.code, 0, "{out}");
    let line = out.stdout.trim().to_string();
    assert!(line.contains("@sha256:"), "{out}");
    line
}

/// Requests of `method` for `repository` in the push registry's log.
fn logged(method: &str, repository: &str) -> Vec<String> {
    let log = std::fs::read_to_string(env("DS_PUSH_LOG")).unwrap();
    log.lines()
        .filter(|l| l.contains("response completed"))
        .filter(|l| l.contains(&format!("http.request.method={method} ")))
        .filter(|l| l.contains(&format!("http.request.uri=\"/v2/{repository}/")))
        .map(str::to_string)
        .collect()
}

fn unique(name: &str) -> String {
    format!("{name}-{}", std::process::id())
}

#[test]
fn round_trip_every_archive_form_runs_in_docker() {
    let dir = Scratch::new("push-forms");
    let record = dir.path().join("record");
    let expected = config_digest(&source("layers"), &[]);
    for (name, extra) in [
        ("docker.tar", &[][..]),
        ("legacy.tar", &["--format", "legacy"][..]),
        ("whole.tar.gz", &["--gzip"][..]),
        ("whole.tar.xz", &["--xz"][..]),
    ] {
        pull_into(dir.path(), "layers", name, extra);
        // A fresh record each time: every layer is compressed and uploaded, not mounted.
        let record = record.join(name);
        for registry in [env("DS_PUSH_REGISTRY"), env("DS_TOKEN_REGISTRY")] {
            let target = format!(
                "{registry}/{}:1",
                unique(&format!("forms-{}", name.replace('.', "-")))
            );
            let line = push_ok(dir.path(), &record, &[name, &target]);
            assert!(line.starts_with(&target.replace(":1", "@")), "{line}");
            assert_eq!(config_digest(&target, &[]), expected, "{name} to {target}");
        }
        let target = format!(
            "{}/{}:1",
            env("DS_PUSH_REGISTRY"),
            unique(&format!("forms-{}", name.replace('.', "-")))
        );
        docker(&["pull", "-q", &target]);
        assert!(
            docker_run(&target, &["echo", "ran"]).contains("ran"),
            "{name}"
        );
    }
    // The same layer becomes the same blob whatever archive it came in.
    let digests: Vec<String> = ["docker.tar", "legacy.tar", "whole.tar.gz", "whole.tar.xz"]
        .iter()
        .map(|name| {
            manifest_digest(&format!(
                "{}/{}:1",
                env("DS_PUSH_REGISTRY"),
                unique(&format!("forms-{}", name.replace('.', "-")))
            ))
        })
        .collect();
    assert!(digests.windows(2).all(|w| w[0] == w[1]), "{digests:?}");
}

#[test]
fn a_compressed_archive_keeps_the_manifest_digest() {
    let dir = Scratch::new("push-compressed");
    pull_into(dir.path(), "busybox-oci", "c.tar", &["--compressed"]);
    let reference = source("busybox-oci");
    dockersave_ok(
        dir.path(),
        &[
            "--insecure",
            "-q",
            "--compressed",
            "--no-tar",
            "--layers-dir",
            "d",
            &reference,
        ],
    );
    let record = dir.path().join("record");
    let original = manifest_digest(&source("busybox-oci"));
    for (from, repo) in [("c.tar", "compressed"), ("d", "compressed-dir")] {
        let target = format!("{}/{}:1", env("DS_TOKEN_REGISTRY"), unique(repo));
        let line = push_ok(dir.path(), &record, &[from, &target]);
        assert!(line.ends_with(&original), "{line} {original}");
        assert_eq!(manifest_digest(&target), original);
    }
    // Once a plain archive of the image went up, the repository and the record hold the same
    // layers under other blobs; those must not stand in for the ones the original manifest
    // names.
    pull_into(dir.path(), "busybox-oci", "plain.tar", &[]);
    let repository = format!("{}/{}", env("DS_PUSH_REGISTRY"), unique("plain-first"));
    push_ok(
        dir.path(),
        &record,
        &["plain.tar", &format!("{repository}:plain")],
    );
    let target = format!("{repository}:compressed");
    let line = push_ok(dir.path(), &record, &["c.tar", &target]);
    assert!(line.ends_with(&original), "{line} {original}");
    assert_eq!(manifest_digest(&target), original);
}

#[test]
fn pushes_what_docker_save_and_skopeo_wrote() {
    let dir = Scratch::new("push-foreign");
    let record = dir.path().join("record");
    let image = source("busybox");
    docker(&["pull", "-q", &image]);
    docker(&[
        "save",
        "-o",
        dir.path().join("saved.tar").to_str().unwrap(),
        &image,
    ]);
    let skopeo_out = dir.path().join("skopeo.tar");
    run(
        "skopeo",
        &[
            "copy",
            "-q",
            "--src-tls-verify=false",
            &format!("docker://{image}"),
            &format!("docker-archive:{}:x/y:1", skopeo_out.display()),
        ],
        dir.path(),
        None,
    );
    let expected = config_digest(&image, &[]);
    for archive in ["saved.tar", "skopeo.tar"] {
        let target = format!(
            "{}/{}:1",
            env("DS_PUSH_REGISTRY"),
            unique(&format!("foreign-{}", archive.replace('.', "-")))
        );
        push_ok(dir.path(), &record, &[archive, &target]);
        assert_eq!(config_digest(&target, &[]), expected, "{archive}");
        docker(&["pull", "-q", &target]);
        assert!(docker_run(&target, &["echo", "pushed-and-pulled"]).contains("pushed-and-pulled"));
    }
}

#[test]
fn a_second_push_uploads_nothing_and_another_repository_mounts() {
    let dir = Scratch::new("push-again");
    let record = dir.path().join("record");
    pull_into(dir.path(), "layers", "l.tar", &[]);
    let first = unique("again-a");
    let target = format!("{}/{first}:1", env("DS_PUSH_REGISTRY"));
    push_ok(dir.path(), &record, &["l.tar", &target]);
    let patches = logged("PATCH", &first).len();
    assert_eq!(patches, 3, "three layers uploaded");
    let posts = logged("POST", &first).len();
    push_ok(dir.path(), &record, &["l.tar", &target]);
    assert_eq!(
        logged("PATCH", &first).len(),
        patches,
        "no blob uploaded twice"
    );
    assert_eq!(
        logged("POST", &first).len(),
        posts,
        "no upload started twice"
    );
    let second = unique("again-b");
    let other = format!("{}/{second}:1", env("DS_PUSH_REGISTRY"));
    let out = push(dir.path(), &record, &["l.tar", &other]);
    assert_eq!(out.code, 0, "{out}");
    // No layer uploaded: no PATCH, and no PUT that closes an upload (a monolithic upload is a
    // POST then a PUT with the digest, without a PATCH) but the config's: a few KiB, sent
    // whole rather than mounted.
    let config = config_digest(&source("layers"), &[]);
    assert!(logged("PATCH", &second).is_empty(), "mounted, not uploaded");
    let closed: Vec<String> = logged("PUT", &second)
        .into_iter()
        .filter(|r| r.contains("/blobs/uploads/"))
        .collect();
    assert!(
        closed.len() == 1 && closed[0].contains(&format!("digest={config}")),
        "no layer upload closed, the config's alone: {closed:?}"
    );
    let mounts: Vec<String> = logged("POST", &second)
        .into_iter()
        .filter(|l| l.contains("mount=") && l.contains("http.response.status=201"))
        .collect();
    assert_eq!(mounts.len(), 3, "{out}");
    assert_eq!(
        config_digest(&other, &[]),
        config_digest(&source("layers"), &[])
    );
}

#[test]
fn several_images_need_a_choice() {
    let dir = Scratch::new("push-several");
    let record = dir.path().join("record");
    let (a, b) = (source("busybox"), source("layers"));
    dockersave_ok(dir.path(), &["--insecure", "-q", "-o", "two.tar", &a, &b]);
    let target = format!("{}/{}:1", env("DS_PUSH_REGISTRY"), unique("several"));
    let out = push(dir.path(), &record, &["two.tar", &target]);
    assert_eq!(out.code, 2, "{out}");
    assert!(
        out.stderr.contains("--image") && out.stderr.contains("--all"),
        "{out}"
    );
    push_ok(dir.path(), &record, &["two.tar", "--image", &b, &target]);
    assert_eq!(config_digest(&target, &[]), config_digest(&b, &[]));
    let prefix = format!("{}/{}", env("DS_PUSH_REGISTRY"), unique("mirror"));
    let out = push(dir.path(), &record, &["two.tar", "--all", &prefix]);
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(out.stdout.lines().count(), 2, "{out}");
    assert_eq!(
        config_digest(&format!("{prefix}/busybox:latest"), &[]),
        config_digest(&a, &[])
    );
    assert_eq!(
        config_digest(&format!("{prefix}/layers:latest"), &[]),
        config_digest(&b, &[])
    );
}

#[test]
fn a_broken_upload_is_taken_up_again() {
    let dir = Scratch::new("push-broken");
    let record = dir.path().join("record");
    pull_into(dir.path(), "busybox", "b.tar", &[]);
    let faults = Faults {
        cut_uploads_after: Some(100_000),
        ..Faults::once()
    };
    let front = forwarder(&env("DS_PUSH_REGISTRY"), faults.clone());
    let repository = unique("broken");
    let target = format!("{front}/{repository}:1");
    let out = push(dir.path(), &record, &["b.tar", &target]);
    assert_eq!(out.code, 0, "{out}\n{:?}", faults.requests());
    let patches = faults
        .requests()
        .iter()
        .filter(|r| r.starts_with("PATCH "))
        .count();
    assert_eq!(patches, 2, "{:?}", faults.requests());
    assert!(
        out.stderr.contains("restarting the upload") || out.stderr.contains("resuming the upload"),
        "{out}"
    );
    let direct = format!("{}/{repository}:1", env("DS_PUSH_REGISTRY"));
    assert_eq!(
        config_digest(&direct, &[]),
        config_digest(&source("busybox"), &[])
    );
}

#[test]
fn a_wrong_password_exits_4_and_prints_no_secret() {
    let dir = Scratch::new("push-auth");
    let record = dir.path().join("record");
    pull_into(dir.path(), "busybox", "b.tar", &[]);
    let secret = "wrong-secret-93";
    for registry in [env("DS_BASIC_REGISTRY"), env("DS_TOKEN_REGISTRY")] {
        let target = format!("{registry}/{}:1", unique("auth"));
        let out = push(
            dir.path(),
            &record,
            &[
                "b.tar",
                "--user",
                "basicuser",
                "--password",
                secret,
                &target,
            ],
        );
        assert_eq!(out.code, 4, "{out}");
        assert!(!out.all().contains(secret), "{out}");
    }
}

#[test]
fn hostile_archive_names_stay_inside() {
    let dir = Scratch::new("push-hostile");
    let record = dir.path().join("record");
    let archive = dir.path().join("evil");
    std::fs::create_dir_all(&archive).unwrap();
    std::fs::write(
        archive.join("manifest.json"),
        r#"[{"Config":"../../../../etc/passwd","RepoTags":["x:1"],"Layers":[]}]"#,
    )
    .unwrap();
    let target = format!("{}/{}:1", env("DS_PUSH_REGISTRY"), unique("hostile"));
    let out = push(dir.path(), &record, &["evil", &target]);
    assert_eq!(out.code, 6, "{out}");
    assert!(out.stderr.contains("leads out of the archive"), "{out}");
}
