//! Thin archives (`--have`): an archive of an image's next version that leaves out the layers the
//! receiver already holds, as `docker load` allows (a layer's file is read only when its chain
//! ID is not in the engine's layer store).
//!
//! The fixtures: `shifted:latest` is a marker layer with busybox's layer on top; `shifted:2` is
//! that and one layer more. No other image has shifted's layers, so whether an engine holds them
//! is up to these tests alone. Each engine the harness runs loads the thin archive of
//! `shifted:2` where `shifted:latest` is loaded and runs it, and refuses it, naming the missing
//! layer, where it is not. And the blob cache that carries a site's images between updates
//! stays within `--cache-max`.

mod common;

use common::*;
use std::path::Path;

/// The `Layers` that `manifest.json` lists for its first image.
fn listed_layers(archive: &Path) -> Vec<String> {
    let manifest = tar_file(archive, "manifest.json");
    let layers = manifest
        .split("\"Layers\":[")
        .nth(1)
        .and_then(|rest| rest.split(']').next())
        .unwrap_or_else(|| panic!("manifest.json lists no layers: {manifest}"));
    layers
        .split(',')
        .map(|l| l.trim_matches('"').to_string())
        .collect()
}

fn blob(digest: &str) -> String {
    format!("blobs/sha256/{}", digest.trim_start_matches("sha256:"))
}

fn forget(engine: Engine, tags: &[&str]) {
    for tag in tags {
        let _ = engine.try_docker(&["image", "rm", "--force", tag], None);
    }
}

#[test]
fn a_thin_archive_loads_and_runs_where_the_earlier_version_is_and_fails_where_it_is_not() {
    let dir = Scratch::new("thin-load");
    let (v1, v2) = (fixture("shifted:latest"), fixture("shifted:2"));
    let ids = diff_ids(&v2);
    assert_eq!(ids.len(), 3, "shifted:2 has three layers: {ids:?}");
    pull_insecure(dir.path(), &["-o", "v1.tar", &v1]);
    let by_reference = pull_insecure(dir.path(), &["--have", &v1, "-o", "v2.tar", &v2]);
    let by_archive = pull_insecure(dir.path(), &["--have", "v1.tar", "-o", "v2-a.tar", &v2]);
    for (out, archive, needs) in [
        (&by_reference, "v2.tar", v1.as_str()),
        (&by_archive, "v2-a.tar", "v1.tar"),
    ] {
        let path = dir.path().join(archive);
        assert!(
            out.stderr.contains(&format!(
                "Thin archive: 2 layers (2.0 MB) left out; load it only where {needs} is already loaded"
            )),
            "{out}"
        );
        assert!(out.stderr.contains("(1 layers, 2 left out,"), "{out}");
        let names = tar_names(&path);
        assert!(!names.contains(&blob(&ids[0])), "{names:?}");
        assert!(!names.contains(&blob(&ids[1])), "{names:?}");
        assert!(names.contains(&blob(&ids[2])), "{names:?}");
        // manifest.json still lists every layer: the engine looks each one up by chain ID.
        let listed: Vec<String> = ids.iter().map(|d| blob(d)).collect();
        assert_eq!(listed_layers(&path), listed);
        let index = tar_file(&path, "index.json");
        assert!(
            index.contains(&format!(
                "\"annotations\":{{\"dockersave.thin.needs\":\"{needs}\",\"dockersave.thin.left-out\":\"2\"}}}}"
            )),
            "{index}"
        );
    }
    // Both ways of naming what the receiver has give the same OCI manifest (the left-out
    // layers' sizes agree): only the annotation differs.
    let manifest_of = |archive: &str| {
        let index = tar_file(&dir.path().join(archive), "index.json");
        index.split("\"digest\":\"").nth(1).unwrap()[..71].to_string()
    };
    assert_eq!(manifest_of("v2.tar"), manifest_of("v2-a.tar"));

    let _engine = engine();
    for engine in Engine::ALL {
        forget(engine, &[&v1, &v2]);
        let v2_path = dir.path().join("v2.tar");
        let refused = engine.try_docker(&["load", "-i", v2_path.to_str().unwrap()], None);
        assert_ne!(refused.code, 0, "{}: {refused}", engine.name());
        let missing = ids[0].trim_start_matches("sha256:");
        assert!(
            refused.stderr.contains(missing),
            "{}: the failure names the missing layer {missing}: {refused}",
            engine.name()
        );
        engine.docker(&["load", "-i", dir.path().join("v1.tar").to_str().unwrap()]);
        for archive in ["v2.tar", "v2-a.tar"] {
            let out = engine.docker(&["load", "-i", dir.path().join(archive).to_str().unwrap()]);
            assert!(out.contains(&format!("Loaded image: {v2}")), "{out}");
            let ran = engine.run(
                &v2,
                &["cat", "/etc/version", "/etc/shifted", "/etc/fixture"],
            );
            assert_eq!(ran, "2\nshifted\ndockersave fixture\n", "{}", engine.name());
            forget(engine, &[&v2]);
        }
        forget(engine, &[&v1]);
    }
}

#[test]
fn the_legacy_layout_and_compressed_layers_leave_out_the_same_layers() {
    let dir = Scratch::new("thin-forms");
    let (v1, v2) = (fixture("shifted:latest"), fixture("shifted:2"));
    pull_insecure(dir.path(), &["-o", "v1.tar", &v1]);
    pull_insecure(
        dir.path(),
        &["--have", &v1, "--format", "legacy", "-o", "legacy.tar", &v2],
    );
    let layer_tars: Vec<String> = tar_names(&dir.path().join("legacy.tar"))
        .into_iter()
        .filter(|n| n.ends_with("/layer.tar"))
        .collect();
    assert_eq!(layer_tars.len(), 1, "{layer_tars:?}");
    assert_eq!(
        listed_layers(&dir.path().join("legacy.tar")).len(),
        3,
        "manifest.json lists all three"
    );
    let out = pull_insecure(
        dir.path(),
        &["--have", &v1, "--compressed", "-o", "compressed.tar", &v2],
    );
    assert!(
        out.stderr
            .contains("Thin archive: 2 layers (1.1 MB) left out"),
        "{out}"
    );
    let blobs = layer_digests(&v2);
    let names = tar_names(&dir.path().join("compressed.tar"));
    assert!(!names.contains(&blob(&blobs[0])), "{names:?}");
    assert!(!names.contains(&blob(&blobs[1])), "{names:?}");
    assert!(names.contains(&blob(&blobs[2])), "{names:?}");

    let _engine = engine();
    for engine in Engine::ALL {
        forget(engine, &[&v1, &v2]);
        engine.docker(&["load", "-i", dir.path().join("v1.tar").to_str().unwrap()]);
        for archive in ["legacy.tar", "compressed.tar"] {
            let path = dir.path().join(archive);
            if archive == "legacy.tar" && engine.containerd_store() {
                // containerd turns a legacy archive into an image of its own before it looks
                // at what it holds, and needs every layer's file for that.
                let out = engine.try_docker(&["load", "-i", path.to_str().unwrap()], None);
                assert_ne!(out.code, 0, "{out}");
                assert!(
                    out.stderr.contains("failed to resolve layers: layer")
                        && out.stderr.contains("/layer.tar\" not found"),
                    "{out}"
                );
                continue;
            }
            engine.docker(&["load", "-i", path.to_str().unwrap()]);
            assert_eq!(engine.run(&v2, &["cat", "/etc/version"]), "2\n");
            forget(engine, &[&v2]);
        }
        forget(engine, &[&v1]);
    }
}

#[test]
fn a_layer_held_on_other_layers_below_is_kept() {
    let dir = Scratch::new("thin-shifted");
    // busybox's layer is shifted's second: the same diff ID, another chain ID.
    let busybox = fixture("busybox:latest");
    let shifted = fixture("shifted:latest");
    let ids = diff_ids(&shifted);
    assert_eq!(
        diff_ids(&busybox),
        ids[1..],
        "the fixture is what it claims"
    );
    let out = pull_insecure(dir.path(), &["--have", &busybox, "-o", "s.tar", &shifted]);
    assert!(
        out.stderr.contains("--have: no layer can be left out"),
        "{out}"
    );
    let names = tar_names(&dir.path().join("s.tar"));
    assert!(names.contains(&blob(&ids[0])) && names.contains(&blob(&ids[1])));
    assert!(!tar_file(&dir.path().join("s.tar"), "index.json").contains("dockersave.thin"));

    // In one archive with `layers` (busybox's layer at the bottom, which the receiver holds),
    // the blob both share is stored once, for shifted, which needs it.
    let list = format!("{}\n{shifted}\n", fixture("layers:latest"));
    std::fs::write(dir.path().join("list"), list).unwrap();
    let out = pull_insecure(
        dir.path(),
        &[
            "--have",
            &busybox,
            "--images-from",
            "list",
            "-o",
            "both.tar",
        ],
    );
    assert!(
        out.stderr.contains("--have: no layer can be left out"),
        "{out}"
    );
    let names = tar_names(&dir.path().join("both.tar"));
    assert!(names.contains(&blob(&ids[1])), "{names:?}");
}

#[test]
fn an_every_platform_bundle_leaves_out_what_the_receiver_holds_for_each_platform() {
    let dir = Scratch::new("thin-bundle");
    // Each platform's image in `multi` is busybox's layer and a marker layer above it.
    let busybox = fixture("busybox:latest");
    let base = diff_ids(&busybox)[0].clone();
    let out = pull_insecure(
        dir.path(),
        &[
            "--have",
            &busybox,
            "--platform",
            "all",
            "-o",
            "all.tar",
            &fixture("multi:latest"),
        ],
    );
    assert!(out.stderr.contains("Thin archive: 1 layer"), "{out}");
    let names = tar_names(&dir.path().join("all.tar"));
    assert!(!names.contains(&blob(&base)), "{names:?}");
    let markers = names
        .iter()
        .filter(|n| n.starts_with("blobs/sha256/"))
        .count();
    assert!(
        markers >= 3 + 3 + 3,
        "three markers, configs and manifests: {names:?}"
    );
}

#[test]
fn have_is_refused_where_it_means_nothing_and_when_it_names_nothing() {
    let dir = Scratch::new("thin-usage");
    let out = dockersave(dir.path(), &["--have", "x", "--rootfs", "r", "busybox"]);
    assert_eq!(out.code, 2, "{out}");
    assert!(
        out.stderr.contains("--have names what the receiver"),
        "{out}"
    );
    let out = dockersave(
        dir.path(),
        &[
            "--insecure",
            "--have",
            "no such:image",
            "-o",
            "x.tar",
            &fixture("busybox:latest"),
        ],
    );
    assert_eq!(out.code, 2, "{out}");
    assert!(
        out.stderr
            .contains("--have \"no such:image\" is neither an archive here nor an image reference"),
        "{out}"
    );
    assert!(!dir.path().join("x.tar").exists());
}

#[test]
fn a_thin_archive_pushes_where_its_base_is_and_fails_before_tagging_where_it_is_not() {
    let dir = Scratch::new("thin-push");
    let (v1, v2) = (fixture("shifted:latest"), fixture("shifted:2"));
    let push_registry = env("DS_PUSH_REGISTRY");
    // Repositories of this run's own, and a record of pushed blobs of its own (the machine's
    // could know where another run put these layers, and mount them).
    let run_id = std::process::id();
    let dest = |name: &str| format!("{push_registry}/thin-push-{run_id}-{name}");
    let cache = dir.path().join("cache");
    let cache = cache.to_str().unwrap();
    let push = |args: &[&str]| {
        let mut all = vec!["--insecure"];
        all.extend_from_slice(args);
        dockersave_env(dir.path(), &all, &[("XDG_CACHE_HOME", cache)], None)
    };
    pull_insecure(dir.path(), &["-o", "v1.tar", &v1]);
    pull_insecure(dir.path(), &["--have", &v1, "-o", "v2.tar", &v2]);
    pull_insecure(
        dir.path(),
        &["--have", &v1, "--compressed", "-o", "v2c.tar", &v2],
    );

    // Nothing of the base on the destination: refused, naming both left-out layers, and no
    // tag written.
    let out = push(&["--push", "v2.tar", &dest("nobase:2")]);
    assert_ne!(out.code, 0, "{out}");
    let ids = diff_ids(&v2);
    assert!(
        out.stderr.contains(&format!(
            "the thin archive leaves out layer 1/3 ({}), layer 2/3 ({}), which",
            ids[0], ids[1]
        )),
        "{out}"
    );
    let tags = run(
        "skopeo",
        &[
            "list-tags",
            "--tls-verify=false",
            &format!("docker://{}", dest("nobase")),
        ],
        Path::new("/"),
        None,
    );
    assert_ne!(tags.code, 0, "the repository must not exist: {tags}");

    // The base pushed to another repository, named with --have: the left-out layers are
    // mounted from there, and what is pulled back runs.
    pull_insecure(dir.path(), &["--push", "v1.tar", &dest("base:1")]);
    let out = pull_insecure(
        dir.path(),
        &[
            "--have",
            &dest("base:1"),
            "--push",
            "v2.tar",
            &dest("app:2"),
        ],
    );
    assert_eq!(
        out.stderr
            .matches("left out of the archive, found as")
            .count(),
        2,
        "{out}"
    );
    pull_insecure(dir.path(), &["-o", "back.tar", &dest("app:2")]);
    {
        let _engine = engine();
        let engine = Engine::Docker20;
        forget(engine, &[&dest("app:2")]);
        engine.docker(&["load", "-i", dir.path().join("back.tar").to_str().unwrap()]);
        assert_eq!(
            engine.run(&dest("app:2"), &["cat", "/etc/version", "/etc/shifted"]),
            "2\nshifted\n"
        );
        forget(engine, &[&dest("app:2")]);
    }

    // A compressed thin archive keeps the registry's manifest: pushed where the original
    // base blobs are (copied byte for byte), its digest survives.
    pull_insecure(dir.path(), &["--copy-to", &dest("orig:1"), &v1]);
    pull_insecure(
        dir.path(),
        &[
            "--have",
            &dest("orig:1"),
            "--push",
            "v2c.tar",
            &dest("orig:2"),
        ],
    );
    assert_eq!(manifest_digest(&dest("orig:2")), manifest_digest(&v2));

    // --have on another registry than the destination cannot lend blobs: said so.
    let out = dockersave(
        dir.path(),
        &[
            "--insecure",
            "--have",
            &v1,
            "--push",
            "v2.tar",
            &dest("elsewhere:2"),
        ],
    );
    assert_eq!(out.code, 2, "{out}");
    assert!(
        out.stderr
            .contains("is on another registry than the destination"),
        "{out}"
    );
}

/// The cache's entries: (name, size).
fn cached(dir: &Path) -> Vec<(String, u64)> {
    let mut entries: Vec<(String, u64)> = std::fs::read_dir(dir.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                e.metadata().unwrap().len(),
            )
        })
        .collect();
    entries.sort();
    entries
}

#[test]
fn the_cache_stays_within_its_limit_after_every_run() {
    let dir = Scratch::new("cache-max");
    let cache = dir.path().join("cache");
    let c = cache.to_str().unwrap();
    let v2 = fixture("shifted:2");
    let busybox_blob = layer_digests(&fixture("busybox:latest"))[0].clone();
    let busybox_blob = busybox_blob.trim_start_matches("sha256:");

    pull_insecure(
        dir.path(),
        &["--cache-dir", c, "--cache-max", "10M", "-o", "a.tar", &v2],
    );
    let all = cached(&cache);
    assert_eq!(all.len(), 4, "three layers and the config: {all:?}");
    assert!(all.iter().map(|e| e.1).sum::<u64>() <= 10 << 20);
    // shifted's second layer is busybox's blob, byte for byte (umoci compressed the same tar).
    let big = all.iter().max_by_key(|e| e.1).unwrap().clone();
    assert_eq!(big.0, busybox_blob, "{all:?}");

    // A limit below the biggest blob: that one is used for the run and not kept; the rest fit.
    let limit = (big.1 - 1).to_string();
    let out = pull_insecure(
        dir.path(),
        &[
            "--cache-dir",
            c,
            "--cache-max",
            &limit,
            "-o",
            "b.tar",
            &fixture("busybox:latest"),
        ],
    );
    assert!(
        out.stderr.contains("of least recently used blobs removed"),
        "{out}"
    );
    let left = cached(&cache);
    assert!(left.iter().map(|e| e.1).sum::<u64>() < big.1, "{left:?}");
    assert!(!left.iter().any(|e| e.0 == big.0), "{left:?}");
    assert_eq!(
        left.len(),
        4,
        "the small blobs stay (busybox's config joined): {left:?}"
    );
    assert!(tar_names(&dir.path().join("b.tar")).len() > 3);

    // The least recently used go first: shifted:2, then busybox, then a limit that holds
    // busybox's blob and config exactly keeps those and drops shifted's other blobs.
    pull_insecure(dir.path(), &["--cache-dir", c, "-o", "c.tar", &v2]);
    std::thread::sleep(std::time::Duration::from_millis(20));
    let busybox_config = config_digest(&fixture("busybox:latest"), &[]);
    let busybox_config = busybox_config.trim_start_matches("sha256:").to_string();
    let config_size = cached(&cache)
        .into_iter()
        .find(|e| e.0 == busybox_config)
        .expect("busybox's config is cached")
        .1;
    let limit = (big.1 + config_size).to_string();
    let out = dockersave_env(
        dir.path(),
        &[
            "--insecure",
            "--cache-dir",
            c,
            "-o",
            "e.tar",
            &fixture("busybox:latest"),
        ],
        &[("DOCKERSAVE_CACHE_MAX", &limit)],
        None,
    );
    assert_eq!(out.code, 0, "{out}");
    let left: Vec<String> = cached(&cache).into_iter().map(|e| e.0).collect();
    let mut both = vec![busybox_blob.to_string(), busybox_config];
    both.sort();
    assert_eq!(left, both, "only busybox's blob and config fit");

    // 0 empties it.
    pull_insecure(
        dir.path(),
        &[
            "--cache-dir",
            c,
            "--cache-max",
            "0",
            "-o",
            "f.tar",
            &fixture("busybox:latest"),
        ],
    );
    assert!(cached(&cache).is_empty());

    let out = dockersave(dir.path(), &["--cache-max", "1G", "busybox"]);
    assert_eq!(out.code, 2, "{out}");
    assert!(
        out.stderr
            .contains("--cache-max limits the blob cache: give --cache-dir"),
        "{out}"
    );
    let out = dockersave(
        dir.path(),
        &["--cache-dir", c, "--cache-max", "lots", "busybox"],
    );
    assert_eq!(out.code, 2, "{out}");
}
