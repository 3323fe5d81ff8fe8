//! OCI artifacts (`--artifact`, `--referrers`, `--artifact-type`, `--copy-to --with-referrers`)
//! against the real registry, with artifacts written as ORAS and Helm publish them
//! (tests/harness/artifact_images.py, which keeps each file's bytes in `DS_ARTIFACTS`).

mod common;

use common::*;
use std::path::{Path, PathBuf};

/// What the fixture script published as `repo`'s file `name`.
fn published(repo: &str, name: &str) -> Vec<u8> {
    let path = Path::new(&env("DS_ARTIFACTS")).join(repo).join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every path below `dir`, relative, sorted (links not followed).
fn tree(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut todo = vec![PathBuf::new()];
    while let Some(rel) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(dir.join(&rel)) else {
            continue;
        };
        for entry in entries {
            let entry = entry.unwrap();
            let path = rel.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                todo.push(path.clone());
            }
            found.push(path.to_string_lossy().into_owned());
        }
    }
    found.sort();
    found
}

#[test]
fn titled_files_land_under_their_titles_byte_for_byte_and_again_over_themselves() {
    let dir = Scratch::new("artifact-firmware");
    let image = fixture("artifacts/firmware:1.0");
    for round in 0..2 {
        let out = pull_insecure(dir.path(), &["--artifact", "out", &image]);
        let out_dir = dir.path().join("out");
        assert_eq!(
            out.stdout.lines().collect::<Vec<_>>(),
            ["out/firmware.bin", "out/etc/settings.json"],
            "round {round}: {out}"
        );
        assert!(out.stderr.contains("Saved the artifact"), "{out}");
        assert_eq!(tree(&out_dir), ["etc", "etc/settings.json", "firmware.bin"]);
        for name in ["firmware.bin", "etc/settings.json"] {
            assert_eq!(
                read(&out_dir.join(name)),
                published("artifacts/firmware", name),
                "{name}"
            );
        }
    }
}

#[test]
fn a_helm_chart_is_written_as_helm_pull_names_it_and_tar_reads_it() {
    let dir = Scratch::new("artifact-chart");
    pull_insecure(
        dir.path(),
        &["--artifact", ".", &fixture("charts/demo:0.1.0")],
    );
    let chart = dir.path().join("demo-0.1.0.tgz");
    assert_eq!(read(&chart), published("charts/demo", "demo-0.1.0.tgz"));
    assert_eq!(dir.names(), ["demo-0.1.0.tgz"], "nothing else is left");
    let listed = run("tar", &["-tzf", "demo-0.1.0.tgz"], dir.path(), None);
    assert_eq!(listed.code, 0, "{listed}");
    assert!(
        listed.stdout.lines().any(|l| l == "demo/Chart.yaml"),
        "{listed}"
    );
}

#[test]
fn an_untitled_layer_is_written_under_its_digest_and_said_so() {
    let dir = Scratch::new("artifact-untitled");
    let out = pull_insecure(
        dir.path(),
        &["--artifact", "out", &fixture("artifacts/untitled:1")],
    );
    let untitled = tree(&dir.path().join("out"))
        .into_iter()
        .find(|n| n.starts_with("sha256-"))
        .unwrap_or_else(|| panic!("no file named by digest: {out}"));
    assert!(
        out.stderr
            .contains(&format!("layer 2 has no title: written as {untitled}")),
        "{out}"
    );
    assert_eq!(
        read(&dir.path().join("out").join(&untitled)),
        published("artifacts/untitled", &untitled)
    );
    assert_eq!(
        read(&dir.path().join("out/notes.txt")),
        published("artifacts/untitled", "notes.txt")
    );
}

#[test]
fn a_directory_layer_is_unpacked_and_checked_against_its_tar_digest() {
    let dir = Scratch::new("artifact-site");
    pull_insecure(
        dir.path(),
        &["--artifact", "out", &fixture("artifacts/site:1")],
    );
    let site = dir.path().join("out/site");
    for name in ["index.html", "css/site.css"] {
        assert_eq!(
            read(&site.join(name)),
            published("artifacts/site", &format!("site/{name}"))
        );
    }
    assert_eq!(
        std::fs::read_link(site.join("home.html")).unwrap(),
        Path::new("index.html")
    );
    // A tar that is not the one its annotation names: refused, and nothing is left.
    let out = dockersave(
        dir.path(),
        &[
            "--insecure",
            "--artifact",
            "bad",
            &fixture("artifacts/hostile:tardigest"),
        ],
    );
    assert_eq!(out.code, 6, "{out}");
    assert!(
        out.stderr.contains("does not match") || out.stderr.contains("digest"),
        "{out}"
    );
    assert_eq!(tree(&dir.path().join("bad")), Vec::<String>::new(), "{out}");
}

#[test]
fn hostile_titles_and_trees_write_nothing_outside_the_directory() {
    let dir = Scratch::new("artifact-hostile");
    let canary = dir.path().join("canary");
    std::fs::create_dir(&canary).unwrap();
    std::fs::write(canary.join("keep"), "canary").unwrap();
    for (reference, refusal) in [
        ("dotdot", "has a \"..\" component"),
        ("absolute", "is an absolute path"),
        ("deep", "longer than the 4096 bytes"),
        ("twice", "layers 1 and 2 are both written at same.txt"),
    ] {
        let out = dockersave(
            dir.path(),
            &[
                "--insecure",
                "--artifact",
                "out",
                &fixture(&format!("artifacts/hostile:{reference}")),
            ],
        );
        assert_eq!(out.code, 6, "{reference}: {out}");
        assert!(out.stderr.contains(refusal), "{reference}: {out}");
        assert_eq!(
            out.stderr.matches("dockersave: error:").count(),
            1,
            "one line: {out}"
        );
        assert_eq!(
            tree(&dir.path().join("out")),
            Vec::<String>::new(),
            "{reference}"
        );
    }
    // A file written through a link to `/` stays inside; entries that climb out are refused.
    let out = pull_insecure(
        dir.path(),
        &["--artifact", "tree", &fixture("artifacts/hostile:tree")],
    );
    assert_eq!(
        read(&dir.path().join("tree/tree/ok.txt")),
        b"fine\n",
        "{out}"
    );
    let out = dockersave(
        dir.path(),
        &[
            "--insecure",
            "--artifact",
            "out",
            &fixture("artifacts/hostile:climb"),
        ],
    );
    assert_eq!(out.code, 6, "{out}");
    assert!(
        out.stderr
            .contains("refusing the entry \"../../escaped.txt\""),
        "{out}"
    );
    assert_eq!(tree(&dir.path().join("out")), Vec::<String>::new());
    // Links planted in DIR are not written through: a directory on the way, and the name.
    let planted = dir.path().join("planted");
    std::fs::create_dir(&planted).unwrap();
    std::os::unix::fs::symlink(&canary, planted.join("etc")).unwrap();
    let out = dockersave(
        dir.path(),
        &[
            "--insecure",
            "--artifact",
            "planted",
            &fixture("artifacts/firmware:1.0"),
        ],
    );
    assert_eq!(out.code, 7, "{out}");
    assert!(out.stderr.contains("symbolic link"), "{out}");
    assert!(
        !planted.join("firmware.bin").exists(),
        "a refusal leaves DIR as it was: {out}"
    );
    std::fs::remove_file(planted.join("etc")).unwrap();
    std::os::unix::fs::symlink(canary.join("keep"), planted.join("firmware.bin")).unwrap();
    let out = dockersave(
        dir.path(),
        &[
            "--insecure",
            "--artifact",
            "planted",
            &fixture("artifacts/firmware:1.0"),
        ],
    );
    assert_eq!(out.code, 7, "{out}");
    assert!(out.stderr.contains("symbolic link"), "{out}");
    assert_eq!(tree(&canary), ["keep"]);
    assert_eq!(read(&canary.join("keep")), b"canary");
    let mut outside = dir.names();
    outside.retain(|n| !["canary", "out", "tree", "planted"].contains(&n.as_str()));
    assert_eq!(outside, Vec::<String>::new(), "written beside DIR");
    for escaped in ["absolute-escape.txt", "through-link.txt"] {
        assert!(
            !Path::new(&env("DS_ARTIFACTS")).join(escaped).exists(),
            "{escaped}"
        );
    }
}

#[test]
fn one_file_goes_to_standard_output() {
    let dir = Scratch::new("artifact-stdout");
    let image = fixture("artifacts/firmware:1.0");
    let out = dockersave(dir.path(), &["--insecure", "--artifact", "-", &image]);
    assert_eq!(out.code, 2, "{out}");
    assert!(
        out.stderr
            .contains("holds 2 files (firmware.bin, etc/settings.json)"),
        "{out}"
    );
    let bytes = std::process::Command::new(env!("CARGO_BIN_EXE_dockersave"))
        .args(["--insecure", "--artifact", "-", "--layer", "2", &image])
        .output()
        .unwrap();
    assert!(
        bytes.status.success(),
        "{}",
        String::from_utf8_lossy(&bytes.stderr)
    );
    assert_eq!(
        bytes.stdout,
        published("artifacts/firmware", "etc/settings.json")
    );
    assert_eq!(dir.names(), Vec::<String>::new());
}

#[test]
fn modes_that_need_an_image_point_to_artifact_and_metadata_shows_one() {
    let dir = Scratch::new("artifact-pointer");
    let chart = fixture("charts/demo:0.1.0");
    for args in [vec![], vec!["--rootfs", "root"], vec!["--platforms"]] {
        let mut all = vec!["--insecure"];
        all.extend(args.iter().copied());
        all.push(&chart);
        let out = dockersave(dir.path(), &all);
        assert_eq!(out.code, 2, "{args:?}: {out}");
        assert!(
            out.stderr.contains("is an OCI artifact of type \"application/vnd.cncf.helm.config.v1+json\", not a container image: fetch its files with --artifact DIR"),
            "{args:?}: {out}"
        );
        let last = out.stderr.trim().lines().last().unwrap_or("");
        assert!(
            last.starts_with("dockersave: error:") && out.stderr.matches("error").count() == 1,
            "one line: {out}"
        );
    }
    assert_eq!(dir.names(), Vec::<String>::new(), "nothing was written");
    let out = pull_insecure(
        dir.path(),
        &["--metadata", &fixture("artifacts/firmware:1.0")],
    );
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "the manifest and the empty config: {out}");
    assert!(lines[0].contains("\"artifactType\":\"application/vnd.acme.router.firmware.v1\""));
    assert!(lines[0].contains("\"org.opencontainers.image.title\":\"etc/settings.json\""));
    assert_eq!(lines[1], "{}");
}

#[test]
fn referrers_are_listed_and_the_newest_of_a_type_is_fetched() {
    let dir = Scratch::new("artifact-referrers");
    let image = fixture("artifacts/withsbom:latest");
    let out = pull_insecure(dir.path(), &["--referrers", &image]);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    let types: Vec<&str> = lines
        .iter()
        .map(|l| l.split('\t').next().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "application/spdx+json",
            "application/spdx+json",
            "application/vnd.acme.scan.v1"
        ]
    );
    for line in &lines {
        let fields: Vec<&str> = line.split('\t').collect();
        assert_eq!(fields.len(), 4, "{line}");
        assert!(
            fields[1].starts_with("sha256:") && fields[2].parse::<u64>().is_ok(),
            "{line}"
        );
    }
    assert!(
        lines[2].contains("evil\\u001b[2Jterminal"),
        "escaped: {}",
        lines[2]
    );
    assert!(
        !out.stdout.contains('\u{1b}'),
        "a control character reached the terminal"
    );
    let out = pull_insecure(
        dir.path(),
        &[
            "--artifact",
            "sbom",
            "--artifact-type",
            "application/spdx+json",
            &image,
        ],
    );
    assert_eq!(
        read(&dir.path().join("sbom/sbom.spdx.json")),
        published("artifacts/withsbom", "2026/sbom.spdx.json"),
        "{out}"
    );
    let out = dockersave(
        dir.path(),
        &[
            "--insecure",
            "--artifact",
            "x",
            "--artifact-type",
            "application/x.none",
            &image,
        ],
    );
    assert_eq!(out.code, 5, "{out}");
    assert!(
        out.stderr
            .contains("its referrers' types: application/spdx+json, application/vnd.acme.scan.v1"),
        "{out}"
    );
    // An image without referrers lists none.
    let out = pull_insecure(dir.path(), &["--referrers", &fixture("busybox:latest")]);
    assert_eq!(out.stdout, "", "{out}");
}

#[test]
fn copies_carry_artifacts_byte_for_byte_and_referrers_along() {
    let dir = Scratch::new("artifact-copy");
    let push = env("DS_PUSH_REGISTRY");
    let source = fixture("artifacts/firmware:1.0");
    let dest = format!("{push}/copied/firmware:1.0");
    let out = pull_insecure(dir.path(), &["--copy-to", &dest, &source]);
    let sha = |image: &str| pull_insecure(dir.path(), &["--sha", image]).stdout;
    assert_eq!(sha(&dest), sha(&source), "{out}");
    pull_insecure(dir.path(), &["--artifact", "out", &dest]);
    assert_eq!(
        read(&dir.path().join("out/firmware.bin")),
        published("artifacts/firmware", "firmware.bin")
    );

    let source = fixture("artifacts/withsbom:latest");
    let dest = format!("{push}/copied/withsbom:latest");
    let out = pull_insecure(
        dir.path(),
        &["--copy-to", &dest, "--with-referrers", &source],
    );
    assert!(out.stderr.contains("3 referrers of"), "{out}");
    let listed = |image: &str| pull_insecure(dir.path(), &["--referrers", image]).stdout;
    assert_eq!(listed(&dest), listed(&source));
    pull_insecure(
        dir.path(),
        &[
            "--artifact",
            "sbom",
            "--artifact-type",
            "application/spdx+json",
            &dest,
        ],
    );
    assert_eq!(
        read(&dir.path().join("sbom/sbom.spdx.json")),
        published("artifacts/withsbom", "2026/sbom.spdx.json")
    );
    // Without the flag, no referrer goes.
    let bare = format!("{push}/copied/bare:latest");
    pull_insecure(dir.path(), &["--copy-to", &bare, &source]);
    assert_eq!(listed(&bare), "");
}

#[test]
fn verify_key_applies_to_artifacts_as_to_images() {
    let dir = Scratch::new("artifact-verify");
    let key = format!("{}/ours.pub", env("DS_SIGN_KEYS"));
    let out = pull_insecure(
        dir.path(),
        &[
            "--verify-key",
            &key,
            "--artifact",
            "out",
            &fixture("signed-artifact:latest"),
        ],
    );
    assert_eq!(
        read(&dir.path().join("out/firmware.bin")),
        published("signed-artifact", "firmware.bin"),
        "{out}"
    );
    let out = dockersave(
        dir.path(),
        &[
            "--insecure",
            "--verify-key",
            &key,
            "--artifact",
            "bad",
            &fixture("unsigned-artifact:latest"),
        ],
    );
    assert_eq!(out.code, 6, "{out}");
    assert!(out.stderr.contains("nothing was written"), "{out}");
    assert_eq!(tree(&dir.path().join("bad")), Vec::<String>::new());
}
