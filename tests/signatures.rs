//! Integration tests for `--verify-key`: images signed as cosign signs them, by
//! `tests/harness/cosign_images.py` with Python's `cryptography` (an implementation independent
//! of ours), in the classic `.sig` form and as cosign 3's Sigstore bundles; each failing case
//! must write nothing and fetch no layer. Run through tests/run.sh.

mod common;

use common::*;

fn image(repo: &str) -> String {
    format!("{}/{repo}:latest", env("DS_REGISTRY"))
}

fn key(name: &str) -> String {
    format!("{}/{name}.pub", env("DS_SIGN_KEYS"))
}

#[test]
fn signed_images_are_saved_and_load() {
    for (repo, keys) in [
        ("signed", vec!["ours"]),
        ("signed-two", vec!["ours"]),
        ("signed-bundle", vec!["ours"]),
        ("signed-message", vec!["ours"]),
        ("signed-ed25519", vec!["other", "ed25519"]),
        ("signed-rsa", vec!["rsa"]),
    ] {
        let dir = Scratch::new("signed");
        let reference = image(repo);
        let mut args = vec!["--insecure", "-v", "--tarname", "out.tar"];
        let keys: Vec<String> = keys.iter().map(|k| key(k)).collect();
        for key in &keys {
            args.extend(["--verify-key", key]);
        }
        args.push(&reference);
        let out = dockersave_ok(dir.path(), &args);
        let digest = manifest_digest(&reference);
        let signer = keys.last().unwrap();
        assert!(
            out.stderr
                .contains(&format!("signature by {signer} over {digest}")),
            "{repo}: {out}"
        );
        load(
            &dir.path().join("out.tar"),
            Some(&reference),
            &config_digest(&reference, &[]),
        );
    }
}

#[test]
fn a_signed_index_vouches_for_its_platforms() {
    let dir = Scratch::new("signed-index");
    let reference = image("signed-index");
    for arch in ["amd64", "arm64"] {
        let out = dockersave_ok(
            dir.path(),
            &[
                "--insecure",
                "--arch",
                arch,
                "--verify-key",
                &key("ours"),
                "-o",
                &format!("{arch}.tar"),
                &reference,
            ],
        );
        assert!(
            out.stderr
                .contains(&format!("over {}", manifest_digest(&reference))),
            "the index's digest is what was signed: {out}"
        );
    }
    // --sha prints the digests only when they verify.
    let sha = dockersave_ok(
        dir.path(),
        &[
            "--insecure",
            "--sha",
            "--verify-key",
            &key("ours"),
            &reference,
        ],
    );
    assert_eq!(
        sha.stdout.lines().next(),
        Some(manifest_digest(&reference).as_str())
    );
    let refused = dockersave(
        dir.path(),
        &[
            "--insecure",
            "--sha",
            "--verify-key",
            &key("other"),
            &reference,
        ],
    );
    assert_eq!(refused.code, 6, "{refused}");
    assert_eq!(refused.stdout, "", "{refused}");
}

#[test]
fn failing_images_write_nothing_and_fetch_no_layer() {
    let cases = [
        ("unsigned", "no signature;"),
        ("signed-other", "no signature by these keys;"),
        ("signed-truncated", "no signature by these keys;"),
        ("signed-copied", "the signature names another image"),
        ("signed-notjson", "the signature names no image"),
    ];
    for (repo, reason) in cases {
        for output in ["archive", "rootfs"] {
            let faults = Faults::default();
            let front = forwarder(&env("DS_REGISTRY"), faults.clone());
            let dir = Scratch::new("unsigned");
            let reference = format!("{front}/{repo}:latest");
            let ours = key("ours");
            let mut args = vec!["--insecure", "--verify-key", &ours];
            if output == "rootfs" {
                args.extend(["--rootfs", "tree"]);
            }
            args.push(&reference);
            let out = dockersave(dir.path(), &args);
            assert_eq!(out.code, 6, "{repo} ({output}): {out}");
            let last = out.stderr.lines().last().unwrap();
            let digest = manifest_digest(&image(repo));
            assert!(
                last.contains(&reference)
                    && last.contains(&digest)
                    && last.contains(reason)
                    && last.contains("nothing was written"),
                "{repo} ({output}): {out}"
            );
            assert_eq!(dir.names(), Vec::<String>::new(), "{repo} ({output})");
            let layers = layer_digests(&image(repo));
            let requests = faults.requests();
            assert!(
                requests
                    .iter()
                    .all(|r| layers.iter().all(|layer| !r.contains(layer.as_str()))),
                "{repo} ({output}): a layer was fetched: {requests:?}"
            );
        }
    }
}

#[test]
fn every_image_of_an_archive_is_checked() {
    let dir = Scratch::new("several-signed");
    let ours = key("ours");
    let out = dockersave(
        dir.path(),
        &[
            "--insecure",
            "--verify-key",
            &ours,
            "-o",
            "both.tar",
            &image("signed"),
            &image("unsigned"),
        ],
    );
    assert_eq!(out.code, 6, "{out}");
    let last = out.stderr.lines().last().unwrap();
    assert!(
        last.contains(&image("unsigned")) && last.contains("no signature;"),
        "{out}"
    );
    assert_eq!(dir.names(), Vec::<String>::new(), "{out}");
    dockersave_ok(
        dir.path(),
        &[
            "--insecure",
            "--verify-key",
            &ours,
            "-o",
            "both.tar",
            &image("signed"),
            &image("signed-bundle"),
        ],
    );
    assert_eq!(dir.names(), ["both.tar"]);
}

#[test]
fn the_classic_form_costs_two_requests() {
    let faults = Faults::default();
    let front = forwarder(&env("DS_REGISTRY"), faults.clone());
    let dir = Scratch::new("signed-requests");
    let reference = format!("{front}/signed:latest");
    dockersave_ok(
        dir.path(),
        &[
            "--insecure",
            "-o",
            "-",
            "--verify-key",
            &key("ours"),
            &reference,
        ],
    );
    let digest = manifest_digest(&image("signed"));
    let image_blobs: Vec<String> = layer_digests(&image("signed"))
        .into_iter()
        .chain([config_digest(&image("signed"), &[])])
        .collect();
    let requests = faults.requests();
    let sig_tag = format!("/manifests/{}.sig", digest.replace(':', "-"));
    let for_signature = requests
        .iter()
        .filter(|r| {
            r.contains(&sig_tag)
                || (r.contains("/blobs/") && !image_blobs.iter().any(|b| r.contains(b.as_str())))
        })
        .count();
    assert_eq!(
        for_signature, 2,
        "the .sig manifest and its payload: {requests:?}"
    );
}

#[test]
fn push_verifies_the_image_where_it_landed() {
    let dir = Scratch::new("push-verify");
    dockersave_ok(
        dir.path(),
        &["--insecure", "--tarname", "a.tar", &image("signed")],
    );
    let destination = format!("{}/pushed-signed:latest", env("DS_PUSH_REGISTRY"));
    let out = dockersave(
        dir.path(),
        &[
            "--insecure",
            "--push",
            "a.tar",
            "--verify-key",
            &key("ours"),
            &destination,
        ],
    );
    assert_eq!(out.code, 6, "no signature was copied along: {out}");
    assert!(
        out.stderr
            .contains("no signature; it was pushed all the same"),
        "{out}"
    );
}

#[test]
fn bad_keys_are_usage_errors() {
    let dir = Scratch::new("bad-key");
    std::fs::write(dir.path().join("bad.pub"), "not a key").unwrap();
    let out = dockersave(
        dir.path(),
        &["--insecure", "--verify-key", "bad.pub", &image("signed")],
    );
    assert_eq!(out.code, 2, "{out}");
    assert!(
        out.stderr
            .contains("--verify-key bad.pub: it holds no -----BEGIN PUBLIC KEY-----"),
        "{out}"
    );
    let tags = dockersave(
        dir.path(),
        &["--tags", "--verify-key", &key("ours"), &image("signed")],
    );
    assert_eq!(tags.code, 2, "{tags}");
}
