//! Peak memory of zstd layers, measured on the static release binary that users run, in a test
//! binary of its own: a child's peak RSS counts its parent's pages until it execs, so the
//! parent must be small (in `tests/zstd.rs` the other tests' buffers took it to 65 MiB).
//! Fixtures from `tests/harness/fixtures.sh`. Run through tests/run.sh.

mod common;

use common::*;

fn image(name: &str) -> String {
    format!("{}/{name}:latest", env("DS_REGISTRY"))
}

#[test]
fn eight_mib_windows_stay_within_sixteen_mib() {
    let dir = Scratch::new("zstd-memory");
    let binary = release_binary();
    for args in [
        &["--insecure", "-q", "-o", "big.tar"][..],
        &["--insecure", "-q", "--rootfs", "big"][..],
        &["--insecure", "-q", "--flatten", "big-flat.tar"][..],
    ] {
        let mut all = args.to_vec();
        let reference = image("zstd-big");
        all.push(&reference);
        let (out, peak_kib, _) = run_measured(&binary, &all, dir.path(), false);
        assert_eq!(out.code, 0, "{args:?}: {out}");
        println!("{args:?}: peak RSS {peak_kib} KiB");
        // docs/performance.md gives 11.3 MiB; a tenth more is the margin.
        assert!(
            peak_kib <= 12 * 1024 + 512,
            "{args:?}: peak RSS {peak_kib} KiB for three layers with 8 MiB windows"
        );
    }
    let text = std::fs::metadata(dir.path().join("big/data/text2")).unwrap();
    assert!(text.len() >= 9_500_000, "{}", text.len());
}

/// The fixture is what the memory test needs: every layer a zstd frame with an 8 MiB window,
/// as the zstd program reads the blobs the registry serves.
#[test]
fn the_big_fixture_has_eight_mib_windows() {
    let dir = Scratch::new("zstd-windows");
    let layout = dir.path().join("oci");
    let out = run(
        "skopeo",
        &[
            "copy",
            "--quiet",
            "--src-tls-verify=false",
            &format!("docker://{}", image("zstd-big")),
            &format!("oci:{}:big", layout.display()),
        ],
        dir.path(),
        None,
    );
    assert_eq!(out.code, 0, "{out}");
    let mut windows = Vec::new();
    for blob in std::fs::read_dir(layout.join("blobs/sha256")).unwrap() {
        let path = blob.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        if !bytes.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            continue;
        }
        let listed = run("zstd", &["-lv", path.to_str().unwrap()], dir.path(), None);
        assert_eq!(listed.code, 0, "{listed}");
        windows.push(
            listed
                .stdout
                .lines()
                .find(|l| l.starts_with("Window Size:"))
                .unwrap_or_default()
                .to_string(),
        );
    }
    assert_eq!(windows.len(), 3, "three zstd layers: {windows:?}");
    assert!(
        windows.iter().all(|w| w.contains("(8388608 B)")),
        "{windows:?}"
    );
}

#[test]
fn a_window_over_the_cap_is_refused_in_one_line() {
    let dir = Scratch::new("zstd-long");
    let reference = image("zstd-long");
    for args in [&["-o", "long.tar"][..], &["--rootfs", "long"][..]] {
        let mut all = args.to_vec();
        all.push(&reference);
        let (out, peak_kib, _) = {
            let mut full = vec!["--insecure"];
            full.extend_from_slice(&all);
            run_measured(&release_binary(), &full, dir.path(), false)
        };
        assert_eq!(out.code, 6, "{out}");
        let line = out.stderr.lines().last().unwrap_or_default();
        assert!(
            line.contains("layer 1/1")
                && line.contains("256 MiB window")
                && line.contains("128 MiB"),
            "{out}"
        );
        assert!(peak_kib < 16 * 1024, "refused after {peak_kib} KiB");
        assert!(dir.names().is_empty(), "left behind: {:?}", dir.names());
    }
}
