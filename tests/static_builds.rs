//! The static release binaries from `build/release.sh` (which `tests/run.sh` runs first): each is
//! static with no program interpreter, reports its target, and — natively for x86_64, under
//! qemu-user-static for aarch64 and armv7 — pulls from the loopback registry an archive that the
//! host's Docker engine loads and runs.

mod common;

use common::*;
use std::path::Path;

fn check_static_binary(target: &str, runner: Option<&str>, extra: &[&str], image: &str) {
    let binary = format!(
        "{}/dockersave-{}-{target}",
        env("DS_DIST"),
        env!("CARGO_PKG_VERSION")
    );
    assert!(
        Path::new(&binary).is_file(),
        "{binary} was not built: run build/release.sh (tests/run.sh does)"
    );

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
        match runner {
            Some(qemu) => {
                let mut all = vec![binary.as_str()];
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

    let reference = format!("{}/{image}", env("DS_REGISTRY"));
    let mut args = vec!["--insecure", "--tarname", "out.tar"];
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
    check_static_binary("x86_64-unknown-linux-musl", None, &[], "busybox");
}

#[test]
fn aarch64_static_binary_pulls_a_loadable_archive_under_qemu() {
    // Its own default platform is linux/arm64; ask the index for the image the host can run.
    check_static_binary(
        "aarch64-unknown-linux-musl",
        Some("qemu-aarch64-static"),
        &["--platform", "linux/amd64"],
        "multi",
    );
}

#[test]
fn armv7_static_binary_pulls_a_loadable_archive_under_qemu() {
    check_static_binary(
        "armv7-unknown-linux-musleabihf",
        Some("qemu-arm-static"),
        &["--platform", "linux/amd64"],
        "multi-docker",
    );
}
