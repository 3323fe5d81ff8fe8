//! The library as a Rust program uses it: `dockersave::Client` against the harness's real
//! registries and Docker engine, with no dockersave process anywhere (the engine, skopeo for
//! reference digests and cpio to list an initramfs are the only programs run). Run through
//! tests/run.sh.

mod common;

use common::*;
use dockersave::{Client, ErrorKind, Event, Inspect, Output};
use std::fs;
use std::sync::{Arc, Mutex};

fn plain(image: &str) -> String {
    format!("{}/{image}:latest", env("DS_REGISTRY"))
}

#[test]
fn an_archive_pulled_in_code_loads_and_runs() {
    let dir = Scratch::new("library-archive");
    let image = plain("busybox");
    let client = Client::new().insecure(true).working_dir(dir.path());
    let written = client.pull(&image, Output::archive("busybox.tar")).unwrap();
    let archive = dir.path().join("busybox.tar");
    assert_eq!(written.as_deref(), Some(archive.as_path()));
    load(&archive, Some(&image), &config_digest(&image, &[]));
    assert_eq!(docker_run(&image, &["/bin/busybox", "echo", "ok"]), "ok\n");
}

#[test]
fn a_root_filesystem_in_code() {
    let dir = Scratch::new("library-rootfs");
    let root = dir.path().join("root");
    Client::new()
        .insecure(true)
        .pull(&plain("layers"), Output::rootfs(&root))
        .unwrap();
    assert!(root.join("bin/busybox").is_file());
    assert_eq!(fs::read_to_string(root.join("data/dir/z")).unwrap(), "z\n");
}

#[test]
fn an_initramfs_in_code() {
    let dir = Scratch::new("library-initramfs");
    let client = Client::new().insecure(true).working_dir(dir.path());
    let written = client.pull(&plain("busybox"), Output::initramfs("boot.cpio"));
    assert_eq!(written.unwrap(), Some(dir.path().join("boot.cpio")));
    let archive = fs::read(dir.path().join("boot.cpio")).unwrap();
    assert_eq!(
        &archive[..6],
        b"070701",
        "a plain newc cpio, as the name asks"
    );
    let listed = run(
        "cpio",
        &["-t", "--quiet", "-I", "boot.cpio"],
        dir.path(),
        None,
    );
    assert!(
        listed.stdout.lines().any(|l| l == "bin/busybox"),
        "{listed}"
    );
    client
        .pull(&plain("busybox"), Output::initramfs("boot.img"))
        .unwrap();
    let gzipped = fs::read(dir.path().join("boot.img")).unwrap();
    assert_eq!(gzipped[..2], [0x1f, 0x8b], "gzip otherwise");
}

#[test]
fn token_auth_with_credentials_given_in_code() {
    let dir = Scratch::new("library-token");
    let registry = env("DS_TOKEN_REGISTRY");
    let image = format!("{registry}/layers:latest");
    let (user, password) = (env("DS_TOKEN_USER"), env("DS_TOKEN_PASSWORD"));
    let log_before = fs::read_to_string(env("DS_TOKEN_LOG")).unwrap().len();
    let client = Client::new()
        .insecure(true)
        .working_dir(dir.path())
        .credentials(&user, &password);
    client.pull(&image, Output::archive("layers.tar")).unwrap();
    let log = fs::read_to_string(env("DS_TOKEN_LOG")).unwrap();
    let ours = &log[log_before..];
    assert!(
        ours.contains(&format!("scope=repository:layers:pull user={user}\n")),
        "{ours}"
    );

    // A wrong password: an error of the kind the command exits 4 for, the password nowhere.
    let wrong = "not-the-password-31";
    let error = Client::new()
        .insecure(true)
        .working_dir(dir.path())
        .credentials(&user, wrong)
        .pull(&image, Output::archive("wrong.tar"))
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Auth, "{error}");
    assert_eq!(error.exit_code(), 4);
    assert!(
        error
            .to_string()
            .contains("refused the user name or password"),
        "{error}"
    );
    assert!(!error.to_string().contains(wrong));
    assert!(!dir.path().join("wrong.tar").exists());
}

#[test]
fn progress_events_arrive_in_order() {
    let dir = Scratch::new("library-events");
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let record = seen.clone();
    let client = Client::new()
        .insecure(true)
        .working_dir(dir.path())
        .on_event(move |event| {
            let line = match event {
                Event::Info(text) => format!("info {text}"),
                Event::Layers { count, .. } => format!("layers {count}"),
                Event::Bytes { layer, .. } => format!("bytes {layer}"),
                Event::Finished { layer, .. } => format!("finished {layer}"),
                other => format!("{other:?}"),
            };
            record.lock().unwrap().push(line);
        });
    client
        .pull(&plain("layers"), Output::archive("layers.tar"))
        .unwrap();
    let seen = seen.lock().unwrap().clone();
    let at = |wanted: &dyn Fn(&String) -> bool| seen.iter().position(wanted);
    let pulling = at(&|l| l.starts_with("info Pulling")).expect("a Pulling line");
    let layers = at(&|l| l == "layers 3").expect("the layers announced");
    let first_bytes = at(&|l| l.starts_with("bytes ")).expect("bytes");
    let saved = at(&|l| l.starts_with("info Saved")).expect("a Saved line");
    assert!(pulling < layers && layers < first_bytes, "{seen:#?}");
    assert_eq!(saved, seen.len() - 1, "Saved comes last: {seen:#?}");
    for layer in 0..3 {
        let finished = at(&|l| *l == format!("finished {layer}")).expect("finished");
        let last_bytes = seen
            .iter()
            .rposition(|l| *l == format!("bytes {layer}"))
            .expect("bytes of every layer");
        assert!(last_bytes < finished && finished < saved, "{seen:#?}");
    }
    let finished = seen.iter().filter(|l| l.starts_with("finished ")).count();
    assert_eq!(finished, 3, "each layer finishes once: {seen:#?}");
}

#[test]
fn inspection_and_errors_in_code() {
    let image = plain("multi");
    let client = Client::new().insecure(true);
    let sha = client.inspect(&image, Inspect::Sha).unwrap();
    let first = String::from_utf8(sha).unwrap();
    assert_eq!(first.lines().next(), Some(manifest_digest(&image).as_str()));
    let platforms = client.inspect(&image, Inspect::Platforms).unwrap();
    assert_eq!(
        String::from_utf8(platforms).unwrap(),
        "linux/amd64\nlinux/arm64\nlinux/arm/v7\n"
    );
    let missing = client
        .inspect(
            &format!("{}/busybox:no-such-tag", env("DS_REGISTRY")),
            Inspect::Sha,
        )
        .unwrap_err();
    assert_eq!(missing.kind(), ErrorKind::NotFound, "{missing}");
    let bad = client
        .pull("Not A Reference", Output::archive("x.tar"))
        .unwrap_err();
    assert_eq!(bad.kind(), ErrorKind::Usage, "{bad}");
}

#[test]
fn bundles_and_copies_in_code() {
    let dir = Scratch::new("library-bundles");
    let client = Client::new()
        .insecure(true)
        .working_dir(dir.path())
        .platforms("all")
        .unwrap();
    client
        .pull_all(
            &[&plain("multi"), &plain("layers")],
            Output::archive("site.tar"),
        )
        .unwrap();
    let index = tar_file(&dir.path().join("site.tar"), "index.json");
    assert!(index.contains("image.index.v1+json"), "{index}");
    assert_eq!(
        index.matches("\"digest\"").count(),
        2,
        "an index and an image: {index}"
    );
    let rootfs = client.pull(&plain("multi"), Output::rootfs("root"));
    assert_eq!(rootfs.unwrap_err().kind(), ErrorKind::Usage);

    let target = format!(
        "{}/library-copy-{}:1",
        env("DS_PUSH_REGISTRY"),
        std::process::id()
    );
    let copied = Client::new()
        .insecure(true)
        .copy(&plain("multi"), &target)
        .unwrap();
    let digest = manifest_digest(&plain("multi"));
    assert_eq!(
        copied,
        [format!("{}@{digest}", target.trim_end_matches(":1"))]
    );
}
