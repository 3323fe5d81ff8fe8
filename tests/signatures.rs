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
    // Each with the key that would accept it were it right (bundles included: a check that
    // ignored the bundle's signature, its key, its statement or its digest would pass one).
    let cases = [
        ("unsigned", "ours", "no signature;"),
        ("signed-other", "ours", "no signature by these keys;"),
        ("signed-truncated", "ours", "no signature by these keys;"),
        ("signed-copied", "ours", "the signature names another image"),
        ("signed-notjson", "ours", "the signature names no image"),
        ("signed-ed25519", "ours", "no signature by these keys;"),
        ("signed-rsa", "ed25519", "no signature by these keys;"),
        ("signed", "rsa", "no signature by these keys;"),
        ("bundle-other", "ours", "no signature by these keys;"),
        ("bundle-raw", "ours", "no signature by these keys;"),
        (
            "bundle-elsewhere",
            "ours",
            "the signature names another image",
        ),
        (
            "bundle-digest",
            "ours",
            "its message digest is not that of the manifest",
        ),
        ("bundle-keyless", "ours", "no signature by these keys;"),
    ];
    for (repo, signer, reason) in cases {
        for output in ["archive", "rootfs"] {
            let faults = Faults::default();
            let front = forwarder(&env("DS_REGISTRY"), faults.clone());
            let dir = Scratch::new("unsigned");
            let reference = format!("{front}/{repo}:latest");
            let ours = key(signer);
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
fn push_stores_nothing_under_the_tag_until_the_destination_holds_a_signature() {
    let dir = Scratch::new("push-verify");
    // --compressed keeps the manifest byte for byte, so its signed digest survives the trip.
    dockersave_ok(
        dir.path(),
        &[
            "--insecure",
            "--compressed",
            "--tarname",
            "a.tar",
            &image("signed"),
        ],
    );
    let repository = format!(
        "{}/pushed-signed-{}",
        env("DS_PUSH_REGISTRY"),
        std::process::id()
    );
    let destination = format!("{repository}:latest");
    let push = |dir: &Scratch| {
        dockersave(
            dir.path(),
            &[
                "--insecure",
                "--push",
                "a.tar",
                "--verify-key",
                &key("ours"),
                &destination,
            ],
        )
    };
    let out = push(&dir);
    assert_eq!(out.code, 6, "no signature was copied along: {out}");
    assert!(
        out.stderr
            .contains("no signature; nothing was pushed under the tag"),
        "{out}"
    );
    let tag = format!("docker://{destination}");
    let inspect = run(
        "skopeo",
        &["inspect", "--raw", "--tls-verify=false", &tag],
        dir.path(),
        None,
    );
    assert_ne!(inspect.code, 0, "the tag was stored: {inspect}");
    // The signature copied to the destination (as `cosign copy` would): now it goes up.
    let digest = manifest_digest(&image("signed"));
    let sig_tag = format!("{}.sig", digest.replace(':', "-"));
    let copied = run(
        "skopeo",
        &[
            "copy",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            "--preserve-digests",
            &format!("docker://{}/signed:{sig_tag}", env("DS_REGISTRY")),
            &format!("docker://{repository}:{sig_tag}"),
        ],
        dir.path(),
        None,
    );
    assert_eq!(copied.code, 0, "{copied}");
    let out = push(&dir);
    assert_eq!(out.code, 0, "{out}");
    assert!(out.stdout.contains(&digest), "{out}");
    assert_eq!(manifest_digest(&destination), digest);
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

/// The raw document a tag names in a registry, as skopeo (not dockersave) reads it.
fn raw(reference: &str) -> Output {
    run(
        "skopeo",
        &[
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{reference}"),
        ],
        std::path::Path::new("/"),
        None,
    )
}

#[test]
fn an_unsigned_image_cannot_hide_behind_an_entry_without_a_platform() {
    let dir = Scratch::new("trick-copy");
    for trick in ["trick-twice", "trick-platformless"] {
        let target = format!(
            "{}/copied-{trick}-{}:latest",
            env("DS_PUSH_REGISTRY"),
            std::process::id()
        );
        let args = ["--insecure", "--copy-to", &target, &image(trick)];
        let refused = dockersave(
            dir.path(),
            &[&args[..], &["--verify-key", &key("ours")]].concat(),
        );
        assert_eq!(refused.code, 6, "{trick}: {refused}");
        assert!(
            refused.stderr.contains("nothing was written"),
            "{trick}: {refused}"
        );
        assert_ne!(raw(&target).code, 0, "{trick}: the tag was copied");
        // The same copy without a key goes through: the refusal was the signature's.
        dockersave_ok(dir.path(), &args);
        assert_eq!(raw(&target).code, 0, "{trick}");
    }
}

#[test]
fn what_no_signature_covers_is_left_out_of_bundles_and_copies() {
    let dir = Scratch::new("trick-bundle");
    let mixed = image("trick-mixed");
    // The index's entries: the signed image, its attestation, and the subject the latter names.
    let listed: Vec<String> = {
        let index = raw(&mixed);
        assert_eq!(index.code, 0, "{index}");
        let text = index.stdout;
        text.match_indices("sha256:")
            .map(|(at, _)| text[at..at + 71].to_string())
            .collect()
    };
    assert_eq!(listed.len(), 3, "{listed:?}");
    let (signed, attestation) = (&listed[0], &listed[1]);
    let out = dockersave_ok(
        dir.path(),
        &[
            "--insecure",
            "--platform",
            "all",
            "--compressed",
            "--verify-key",
            &key("ours"),
            "-o",
            "mixed.tar",
            &mixed,
        ],
    );
    assert!(out.stderr.contains("are left out"), "{out}");
    // The archive's index lists the signed image alone, and holds no attestation.
    let listing = run("tar", &["-tf", "mixed.tar"], dir.path(), None);
    let index = run(
        "skopeo",
        &["inspect", "--raw", "oci-archive:mixed.tar"],
        dir.path(),
        None,
    );
    assert_eq!(index.code, 0, "{index}");
    assert_eq!(
        index.stdout.matches("sha256:").count(),
        1,
        "{}",
        index.stdout
    );
    assert!(index.stdout.contains(signed.as_str()), "{}", index.stdout);
    assert!(!index.stdout.contains("unknown"), "{}", index.stdout);
    assert!(listing.stdout.contains(&signed[7..]), "{listing}");
    assert!(!listing.stdout.contains(&attestation[7..]), "{listing}");
    // A copy: the same.
    let target = format!(
        "{}/copied-mixed-{}:latest",
        env("DS_PUSH_REGISTRY"),
        std::process::id()
    );
    dockersave_ok(
        dir.path(),
        &[
            "--insecure",
            "--copy-to",
            &target,
            "--verify-key",
            &key("ours"),
            &mixed,
        ],
    );
    let copied = raw(&target);
    assert_eq!(copied.code, 0, "{copied}");
    assert_eq!(
        copied.stdout.matches("sha256:").count(),
        1,
        "{}",
        copied.stdout
    );
    // An index of nothing but an attestation: refused on one line, with or without a key.
    for with_key in [false, true] {
        let mut args = vec![
            "--insecure",
            "--platform",
            "all",
            "--compressed",
            "-o",
            "only.tar",
        ];
        let key = key("ours");
        if with_key {
            args.extend(["--verify-key", &key]);
        }
        let reference = image("trick-attest-only");
        args.push(&reference);
        let out = dockersave(dir.path(), &args);
        assert_eq!(out.code, 6, "with key {with_key}: {out}");
        assert_eq!(out.stderr.matches("error").count(), 1, "{out}");
        assert!(!dir.path().join("only.tar").exists());
    }
}
