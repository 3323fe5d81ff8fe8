//! What dockersave writes, loaded by every Docker engine the harness runs: Debian 12's Docker
//! 20.10, and Debian 13's Docker 26 with each image store — the graph driver store, and the
//! containerd image store (Docker's default from version 29), which keeps what an archive's
//! OCI half says (manifests and indexes by digest) where the graph driver store reads Docker's
//! `manifest.json`. Each engine loads the default archive, the legacy one, a stream, several
//! images at once, an every-platform bundle and zstd layers kept as served, and runs busybox
//! from what it loaded; and an archive Docker 26's own `docker save` wrote goes back up with
//! `--push`, digests kept.

mod common;

use common::*;
use std::path::Path;

/// The digest `index.json` gives the image tagged `tag` (its `org.opencontainers.image.ref.name`
/// or `io.containerd.image.name` annotation), or its only image.
fn indexed_digest(archive: &Path, tag: &str) -> String {
    let index = tar_file(archive, "index.json");
    let manifests = index
        .split("\"manifests\"")
        .nth(1)
        .unwrap_or_else(|| panic!("index.json lists no manifests: {index}"));
    let descriptors: Vec<&str> = manifests.split("\"digest\":\"").skip(1).collect();
    let named = descriptors
        .iter()
        .find(|d| d.contains(&format!("\"{tag}\"")))
        .or(match descriptors.len() {
            1 => descriptors.first(),
            _ => None,
        })
        .unwrap_or_else(|| panic!("index.json names no image {tag}: {index}"));
    named[..named.find('"').unwrap()].to_string()
}

/// Loads `archive` into `engine` (from standard input with `stdin`) and checks the tag and ID:
/// the graph driver stores give the config's digest, the containerd store the digest
/// `index.json` names (or, for a legacy archive, that of the manifest it makes).
fn load(engine: Engine, archive: &Path, tag: &str, config: &str) {
    let out = match engine.try_docker(&["load", "-i", archive.to_str().unwrap()], None) {
        out if out.code == 0 => out,
        out => panic!("{}: docker load failed:\n{out}", engine.name()),
    };
    assert!(
        out.stdout.contains(&format!("Loaded image: {tag}")),
        "{}: docker load said: {out}",
        engine.name()
    );
    let id = engine.image_id(tag);
    if engine.containerd_store() {
        if tar_names(archive).iter().any(|l| l == "index.json") {
            assert_eq!(id, indexed_digest(archive, tag), "{}", engine.name());
        }
    } else {
        assert_eq!(
            id,
            config,
            "{}: the image ID is the config digest",
            engine.name()
        );
    }
}

fn forget(engine: Engine, tags: &[&str]) {
    for tag in tags {
        let _ = engine.try_docker(&["image", "rm", "--force", tag], None);
    }
}

#[test]
fn the_default_and_the_legacy_archive_load_and_run_everywhere() {
    let _engine = engine();
    let dir = Scratch::new("engines-default");
    for name in ["busybox", "busybox-oci"] {
        let reference = fixture(name);
        let tag = format!("{reference}:latest");
        let config = config_digest(&tag, &[]);
        pull_insecure(dir.path(), &["-o", "default.tar", &reference]);
        pull_insecure(
            dir.path(),
            &["--format", "legacy", "-o", "legacy.tar", &reference],
        );
        for engine in Engine::ALL {
            for archive in ["default.tar", "legacy.tar"] {
                forget(engine, &[&tag]);
                load(engine, &dir.path().join(archive), &tag, &config);
                assert_eq!(
                    engine.run(&tag, &["/bin/cat", "/etc/fixture"]),
                    "dockersave fixture\n",
                    "{}: {name} from {archive}",
                    engine.name()
                );
            }
        }
    }
}

#[test]
fn a_stream_loads_everywhere() {
    let _engine = engine();
    let dir = Scratch::new("engines-stream");
    let reference = fixture("busybox");
    let tag = format!("{reference}:latest");
    for engine in Engine::ALL {
        forget(engine, &[&tag]);
        // dockersave -o - | docker load, through a shell pipe.
        let (client, host) = engine.client_and_host();
        let script = format!(
            "set -o pipefail; '{}' --insecure -q -o - '{reference}' | '{client}' -H '{host}' load",
            env!("CARGO_BIN_EXE_dockersave")
        );
        let out = run("bash", &["-c", &script], dir.path(), None);
        assert_eq!(out.code, 0, "{}: {out}", engine.name());
        assert!(
            out.stdout.contains(&format!("Loaded image: {tag}")),
            "{out}"
        );
        assert!(engine
            .run(&tag, &["/bin/cat", "/etc/fixture"])
            .contains("fixture"));
    }
}

#[test]
fn several_images_in_one_archive_load_everywhere() {
    let _engine = engine();
    let dir = Scratch::new("engines-several");
    let names = ["busybox", "busybox-oci", "layers"];
    let references: Vec<String> = names.iter().map(|n| fixture(n)).collect();
    let mut args = vec!["-o", "several.tar"];
    args.extend(references.iter().map(String::as_str));
    pull_insecure(dir.path(), &args);
    let tags: Vec<String> = references.iter().map(|r| format!("{r}:latest")).collect();
    let tags: Vec<&str> = tags.iter().map(String::as_str).collect();
    for engine in Engine::ALL {
        forget(engine, &tags);
        let out = engine.docker(&[
            "load",
            "-i",
            dir.path().join("several.tar").to_str().unwrap(),
        ]);
        for tag in &tags {
            assert!(
                out.contains(&format!("Loaded image: {tag}")),
                "{}: {out}",
                engine.name()
            );
            if !engine.containerd_store() {
                assert_eq!(
                    engine.image_id(tag),
                    config_digest(tag, &[]),
                    "{}",
                    engine.name()
                );
            } else {
                let archive = dir.path().join("several.tar");
                assert_eq!(
                    engine.image_id(tag),
                    indexed_digest(&archive, tag),
                    "{}",
                    engine.name()
                );
            }
        }
        // The third image's top layer deleted a file and emptied a directory.
        assert_eq!(
            engine.run(
                tags[2],
                &[
                    "/bin/sh",
                    "-c",
                    "ls /data/dir; test ! -e /data/a && echo gone"
                ]
            ),
            "z\ngone\n",
            "{}",
            engine.name()
        );
    }
}

#[test]
fn an_every_platform_bundle_keeps_the_index_in_the_containerd_store() {
    let _engine = engine();
    let dir = Scratch::new("engines-bundle");
    let reference = fixture("multi");
    let tag = format!("{reference}:latest");
    pull_insecure(
        dir.path(),
        &[
            "--platform",
            "all",
            "--compressed",
            "-o",
            "all.tar",
            &reference,
        ],
    );
    for engine in Engine::ALL {
        forget(engine, &[&tag]);
        let out = engine.docker(&["load", "-i", dir.path().join("all.tar").to_str().unwrap()]);
        assert!(
            out.contains(&format!("Loaded image: {tag}")),
            "{}: {out}",
            engine.name()
        );
        if engine.containerd_store() {
            // The index itself, as the registry serves it.
            assert_eq!(
                engine.image_id(&tag),
                manifest_digest(&tag),
                "{}",
                engine.name()
            );
        } else {
            // manifest.json names this machine's platform.
            let config = config_digest(&tag, &["--override-arch", "amd64"]);
            assert_eq!(engine.image_id(&tag), config, "{}", engine.name());
        }
        let shown = engine.docker(&[
            "image",
            "inspect",
            "--format",
            "{{.Os}}/{{.Architecture}}",
            &tag,
        ]);
        assert_eq!(shown.trim(), "linux/amd64", "{}", engine.name());
        assert_eq!(engine.run(&tag, &["/bin/busybox", "echo", "ok"]), "ok\n");
    }
}

/// Removes every image of `engine` whose layers include `diff_id`: an engine that holds a layer
/// already skips it when loading, and would load what it cannot read.
fn forget_layer(engine: Engine, diff_id: &str) {
    for id in engine
        .docker(&["images", "--all", "--quiet", "--no-trunc"])
        .lines()
    {
        // Removing one image may remove others listed (its untagged parents): those are gone.
        let layers = engine.try_docker(
            &["image", "inspect", "--format", "{{.RootFS.Layers}}", id],
            None,
        );
        if layers.code == 0 && layers.stdout.contains(diff_id) {
            engine.docker(&["image", "rm", "--force", id]);
        }
    }
}

#[test]
fn zstd_layers_kept_as_served_load_into_docker_26_and_not_20() {
    let _engine = engine();
    let dir = Scratch::new("engines-zstd");
    let reference = fixture("zstd");
    let tag = format!("{reference}:latest");
    let out = pull_insecure(dir.path(), &["--compressed", "-o", "kept.tar", &reference]);
    assert!(
        out.stderr
            .contains("keeps 3 zstd layers as served: Docker 26 loads them, Docker 20.10 cannot"),
        "{out}"
    );
    let config = run(
        "skopeo",
        &[
            "inspect",
            "--config",
            "--tls-verify=false",
            &format!("docker://{tag}"),
        ],
        Path::new("/"),
        None,
    );
    let top = config.stdout.rsplit("sha256:").next().unwrap();
    let top = format!("sha256:{}", &top[..64]);
    for engine in Engine::ALL {
        forget_layer(engine, &top);
        let archive = dir.path().join("kept.tar");
        let loaded = engine.try_docker(&["load", "-i", archive.to_str().unwrap()], None);
        if engine == Engine::Docker20 {
            assert_ne!(loaded.code, 0, "{}: {loaded}", engine.name());
            assert!(loaded.stderr.contains("ApplyLayer"), "{loaded}");
            continue;
        }
        assert_eq!(loaded.code, 0, "{}: {loaded}", engine.name());
        assert!(engine.run(&tag, &["cat", "/data/dir/z"]).contains('z'));
    }
}

#[test]
fn an_archive_docker_26_saved_is_pushed_with_its_digests() {
    let _engine = engine();
    let dir = Scratch::new("engines-push");
    let reference = fixture("busybox-oci");
    let tag = format!("{reference}:latest");
    pull_insecure(dir.path(), &["-o", "in.tar", &reference]);
    for engine in [Engine::Docker26, Engine::Docker26Containerd] {
        forget(engine, &[&tag]);
        engine.docker(&["load", "-i", dir.path().join("in.tar").to_str().unwrap()]);
        let saved = dir.path().join("saved.tar");
        engine.docker(&["save", "-o", saved.to_str().unwrap(), &tag]);
        let target = format!(
            "{}/engines-push-{}:{}",
            env("DS_REGISTRY"),
            std::process::id(),
            if engine.containerd_store() {
                "containerd"
            } else {
                "graph"
            }
        );
        let out = dockersave_ok(
            dir.path(),
            &["--insecure", "--push", saved.to_str().unwrap(), &target],
        );
        assert_eq!(
            config_digest(&target, &[]),
            config_digest(&tag, &[]),
            "{}: {out}",
            engine.name()
        );
        assert_eq!(layer_digests(&target).len(), layer_digests(&tag).len());
        let back = dockersave_ok(dir.path(), &["--insecure", "-o", "back.tar", &target]);
        load(
            Engine::Docker20,
            &dir.path().join("back.tar"),
            &target,
            &config_digest(&tag, &[]),
        );
        let _ = back;
    }
}
