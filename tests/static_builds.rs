//! The static release binaries from `build/release.sh` (which `tests/run.sh` runs first): each is
//! static with no program interpreter, reports its target, and — natively for x86_64, under
//! qemu-user-static for aarch64 and the ARM builds, on the oldest CPU each is meant for — pulls
//! from the loopback registry an archive that the host's Docker engine loads and runs.

mod common;

use common::*;
use std::path::Path;

/// `runner` is the emulator and its options (empty: run natively).
fn check_static_binary(target: &str, runner: &[&str], extra: &[&str], image: &str) {
    let binary = dist_binary(target);

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
    let binary = format!(
        "{}/dockersave-{}-{target}",
        env("DS_DIST"),
        env!("CARGO_PKG_VERSION")
    );
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
