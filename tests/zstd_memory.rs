//! Peak memory of zstd layers, measured on the static release binary that users run, in a test
//! binary of its own: a child's peak RSS counts its parent's pages until it execs, so the
//! parent must be small (in `tests/zstd.rs` the other tests' buffers took it to 65 MiB).
//! Fixtures from `tests/harness/fixtures.sh`. Run through tests/run.sh.

mod common;

use common::*;
use std::path::Path;

fn image(name: &str) -> String {
    format!("{}/{name}:latest", env("DS_REGISTRY"))
}

/// The static x86_64 release binary: what users run, and what the memory figures are of (a
/// glibc build keeps freed windows in per-thread arenas, so its peak says little).
fn release_binary() -> String {
    let binary = format!(
        "{}/dockersave-{}-x86_64-unknown-linux-musl",
        env("DS_DIST"),
        env!("CARGO_PKG_VERSION")
    );
    assert!(
        Path::new(&binary).is_file(),
        "{binary} was not built: run build/release.sh (tests/run.sh does)"
    );
    binary
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
        assert!(
            peak_kib <= 16 * 1024,
            "{args:?}: peak RSS {peak_kib} KiB for three layers with 8 MiB windows"
        );
    }
    let text = std::fs::metadata(dir.path().join("big/data/text2")).unwrap();
    assert!(text.len() >= 9_500_000, "{}", text.len());
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
