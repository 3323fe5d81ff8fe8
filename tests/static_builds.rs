//! The static release binaries from `build/release.sh` (which `tests/run.sh` runs first): each is
//! static with no program interpreter, reports its target, and — natively for x86_64, under
//! qemu-user-static for aarch64 and the ARM builds, on the oldest CPU each is meant for — pulls
//! from the loopback registry an archive that the host's Docker engine loads and runs. The
//! minimal builds (x86_64 and ARMv5TE, `--no-default-features`) do the same, unpack a root
//! filesystem as the full build does, and refuse what they were built without.

mod common;

use common::*;
use std::path::Path;

/// `runner` is the emulator and its options (empty: run natively).
fn check_static_binary(target: &str, runner: &[&str], extra: &[&str], image: &str) {
    check_binary(&dist_binary(target), target, runner, extra, image);
}

fn check_binary(binary: &str, target: &str, runner: &[&str], extra: &[&str], image: &str) {
    let binary = binary.to_string();

    let file = run("file", &["-b", &binary], Path::new("/"), None);
    assert!(
        file.stdout.contains("statically linked") || file.stdout.contains("static-pie linked"),
        "{binary} is not static: {file}"
    );
    let headers = run("readelf", &["-l", &binary], Path::new("/"), None);
    assert_eq!(headers.code, 0, "{headers}");
    assert!(
        !headers.stdout.contains("INTERP"),
        "{binary} has a program interpreter"
    );

    let invoke = |args: &[&str], cwd: &Path| -> Output {
        match runner.split_first() {
            Some((qemu, options)) => {
                let mut all = options.to_vec();
                all.push(binary.as_str());
                all.extend_from_slice(args);
                run(qemu, &all, cwd, None)
            }
            None => run(&binary, args, cwd, None),
        }
    };
    let dir = Scratch::new(target);
    let version = invoke(&["--version"], dir.path());
    assert_eq!(version.code, 0, "{version}");
    assert!(
        version.stdout.contains(target) && version.stdout.contains("commit "),
        "{version}"
    );

    // With --cacert the pull goes to the TLS registry (same storage), else to the plain one.
    let tls = extra.contains(&"--cacert");
    let registry = env(if tls {
        "DS_TLS_REGISTRY"
    } else {
        "DS_REGISTRY"
    });
    let reference = format!("{registry}/{image}");
    let mut args = vec!["--tarname", "out.tar"];
    if !tls {
        args.push("--insecure");
    }
    args.extend_from_slice(extra);
    args.push(&reference);
    let out = invoke(&args, dir.path());
    assert_eq!(out.code, 0, "{target} binary failed to pull:\n{out}");
    let tag = format!("{reference}:latest");
    load(
        &dir.path().join("out.tar"),
        Some(&tag),
        &config_digest(&tag, &["--override-arch", "amd64"]),
    );
    assert_eq!(docker_run(&tag, &["/bin/busybox", "echo", "ok"]), "ok\n");
}

#[test]
fn x86_64_static_binary_pulls_a_loadable_archive() {
    check_static_binary("x86_64-unknown-linux-musl", &[], &[], "busybox");
}

#[test]
fn aarch64_static_binary_pulls_a_loadable_archive_under_qemu() {
    // Its own default platform is linux/arm64; ask the index for the image the host can run.
    check_static_binary(
        "aarch64-unknown-linux-musl",
        &["qemu-aarch64-static"],
        &["--platform", "linux/amd64"],
        "multi",
    );
}

#[test]
fn armv7_static_binary_pulls_a_loadable_archive_on_a_cortex_a7() {
    check_static_binary(
        "armv7-unknown-linux-musleabihf",
        &["qemu-arm-static", "-cpu", "cortex-a7"],
        &["--platform", "linux/amd64"],
        "multi-docker",
    );
}

#[test]
fn armv5te_static_binary_pulls_a_loadable_archive_on_an_armv5_cpu() {
    // ARM926EJ-S: the ARMv5TE core of Marvell Kirkwood routers and NAS boxes.
    check_static_binary(
        "armv5te-unknown-linux-musleabi",
        &["qemu-arm-static", "-cpu", "arm926"],
        &["--platform", "linux/amd64"],
        "multi",
    );
}

#[test]
fn armv5te_static_binary_pulls_a_loadable_archive_on_an_armv6_cpu() {
    // ARM1176JZF-S: the ARMv6 core of the Raspberry Pi 1 and Zero.
    check_static_binary(
        "armv5te-unknown-linux-musleabi",
        &["qemu-arm-static", "-cpu", "arm1176"],
        &["--platform", "linux/amd64"],
        "multi-docker",
    );
}

#[test]
fn armv5te_static_binary_speaks_tls_on_an_armv5_cpu() {
    // ring's ARM code picks its routines by the CPU's features at run time; on a v5 core that
    // must be the plain ones. A TLS pull proves the handshake and the ciphers run there.
    check_static_binary(
        "armv5te-unknown-linux-musleabi",
        &["qemu-arm-static", "-cpu", "arm926"],
        &["--cacert", &env("DS_TEST_CA")],
        "busybox",
    );
}

/// The ARMv5TE binary on a given CPU, with no --platform, pulls from an index of linux/arm v5,
/// v6 and v7 images: it must pick the CPU's own variant (read at run time), never a newer one.
fn picks_the_cpu_variant(cpu: &str, variant: &str) {
    let target = "armv5te-unknown-linux-musleabi";
    let binary = dist_binary(target);
    let dir = Scratch::new(&format!("arm-{cpu}"));
    let version = run(
        "qemu-arm-static",
        &["-cpu", cpu, &binary, "--version"],
        dir.path(),
        None,
    );
    assert!(
        version
            .stdout
            .contains(&format!("this machine: linux/arm/{variant}")),
        "{cpu}: {version}"
    );
    let reference = format!("{}/multi-arm", env("DS_REGISTRY"));
    let out = run(
        "qemu-arm-static",
        &[
            "-cpu",
            cpu,
            &binary,
            "--insecure",
            "--tarname",
            "out.tar",
            &reference,
        ],
        dir.path(),
        None,
    );
    assert_eq!(out.code, 0, "{cpu}: {out}");
    assert!(
        out.stderr
            .contains(&format!("platform linux/arm/{variant} (this machine)")),
        "{cpu}: {out}"
    );
    // Which image it saved: the archive names its config, which must be the one skopeo (an
    // independent client) picks for that variant. (Not through `docker load`: the three tests
    // run at once and would load three images under one tag.)
    let tag = format!("{reference}:latest");
    let expected = config_digest(
        &tag,
        &["--override-arch", "arm", "--override-variant", variant],
    );
    let manifest = run(
        "tar",
        &["-xOf", "out.tar", "manifest.json"],
        dir.path(),
        None,
    );
    assert_eq!(manifest.code, 0, "{manifest}");
    assert!(
        manifest
            .stdout
            .contains(&format!("\"Config\":\"blobs/sha256/{}\"", &expected[7..])),
        "{cpu} saved another image than the {variant} one ({expected}): {}",
        manifest.stdout
    );
}

#[test]
fn an_armv6_cpu_gets_the_v6_image() {
    picks_the_cpu_variant("arm1176", "v6");
}

#[test]
fn an_armv7_cpu_gets_the_v7_image() {
    picks_the_cpu_variant("cortex-a7", "v7");
}

#[test]
fn an_armv5_cpu_gets_the_v5_image() {
    picks_the_cpu_variant("arm926", "v5");
}

#[test]
fn x86_64_minimal_binary_pulls_a_loadable_archive() {
    let target = "x86_64-unknown-linux-musl";
    check_binary(&minimal_binary(target), target, &[], &[], "busybox");
}

#[test]
fn armv5te_minimal_binary_speaks_tls_on_an_armv5_cpu() {
    // The router build: TLS with a private CA (--cacert) is part of it, as are credentials
    // and mirrors; on the ARMv5 core the routers have.
    let target = "armv5te-unknown-linux-musleabi";
    check_binary(
        &minimal_binary(target),
        target,
        &["qemu-arm-static", "-cpu", "arm926"],
        &["--cacert", &env("DS_TEST_CA")],
        "busybox",
    );
}

#[test]
fn minimal_rootfs_and_flatten_equal_the_full_builds() {
    // rootfs.rs checks the full build's tree against umoci's; the minimal one must give the
    // same tree, owners, modes, links, xattrs and all.
    let target = "x86_64-unknown-linux-musl";
    let reference = push_built_image("rich", "rootfs-rich", None);
    let dir = Scratch::new("minimal-rootfs");
    for (binary, tree, flat) in [
        (dist_binary(target), "full", "full.tar"),
        (minimal_binary(target), "minimal", "minimal.tar"),
    ] {
        for args in [
            vec!["--insecure", "-q", "--rootfs", tree, &reference],
            vec!["--insecure", "-q", "--flatten", flat, &reference],
        ] {
            let out = run(&binary, &args, dir.path(), None);
            assert_eq!(out.code, 0, "{binary} {args:?}: {out}");
        }
    }
    let differences = compare(
        &snapshot(&dir.path().join("minimal")),
        &snapshot(&dir.path().join("full")),
        Compare {
            owners: true,
            hard_links: true,
        },
    );
    assert!(
        differences.is_empty(),
        "the minimal build's --rootfs differs:\n{}",
        differences.join("\n")
    );
    assert_eq!(
        std::fs::read(dir.path().join("minimal.tar")).unwrap(),
        std::fs::read(dir.path().join("full.tar")).unwrap(),
        "the minimal build's --flatten differs"
    );
}

#[test]
fn minimal_binary_refuses_what_it_was_built_without() {
    let target = "x86_64-unknown-linux-musl";
    let binary = minimal_binary(target);
    let dir = Scratch::new("minimal-refuses");
    let version = run(&binary, &["--version"], dir.path(), None);
    assert!(
        version.stdout.contains("features: none"),
        "--version lists the features built in: {version}"
    );
    let full = run(&dist_binary(target), &["--version"], dir.path(), None);
    assert!(
        full.stdout
            .contains("features: push, zstd, xz, verify, initramfs, git"),
        "{full}"
    );
    let registry = env("DS_REGISTRY");
    let image = format!("{registry}/busybox");
    let destination = format!("{registry}/minimal-copy");
    let key = format!("{}/ours.pub", env("DS_SIGN_KEYS"));
    for (feature, args) in [
        (
            "push",
            vec!["--insecure", "--push", "busybox.tar", &destination],
        ),
        (
            "push",
            vec!["--insecure", "--copy-to", &destination, &image],
        ),
        // `/` exists: an archive to read, which needs the push feature's reader.
        (
            "push",
            vec!["--insecure", "-q", "--have", "/", "-o", "x.tar", &image],
        ),
        ("verify", vec!["--insecure", "--verify-key", &key, &image]),
        (
            "initramfs",
            vec!["--insecure", "--initramfs", "i.cpio.gz", &image],
        ),
        ("git", vec!["--insecure", "--rootfs", "t", "--git", &image]),
        ("xz", vec!["--insecure", "--xz", &image]),
    ] {
        let out = run(&binary, &args, dir.path(), None);
        assert_eq!(out.code, 2, "{args:?} is a usage error: {out}");
        assert!(
            out.stderr.contains(&format!(
                "this dockersave was built without the \"{feature}\" feature"
            )),
            "{args:?} names the feature: {out}"
        );
        assert_eq!(out.stderr.lines().count(), 1, "one line: {out}");
        assert!(dir.names().is_empty(), "{args:?} wrote something: {out}");
    }
    // A zstd image is found out at its first layer: an error naming the feature, no archive.
    let zstd = format!("{registry}/zstd");
    let out = run(
        &binary,
        &["--insecure", "-o", "z.tar", &zstd],
        dir.path(),
        None,
    );
    assert_ne!(out.code, 0, "{out}");
    assert!(
        out.stderr.contains("built without the \"zstd\" feature"),
        "{out}"
    );
    assert!(dir.names().is_empty(), "a zstd pull left something: {out}");
}
