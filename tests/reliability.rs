//! Integration tests for reliability: a fault-injecting forwarder between dockersave and the real
//! registry drops, stalls and truncates blob downloads, answers 500/429, ignores Range; the blob
//! cache; and `kill -9` in the middle of a pull. Run through tests/run.sh.

mod common;

use common::*;
use std::fs;
use std::time::{Duration, Instant};

fn plain(image: &str) -> String {
    format!("{}/{image}", env("DS_REGISTRY"))
}

/// Pulls `image` through a forwarder with `faults`, insists it worked and the archive loads.
fn pull_through(faults: &Faults, image: &str, extra: &[&str]) -> (Scratch, Output) {
    let front = forwarder(&env("DS_REGISTRY"), faults.clone());
    let dir = Scratch::new("reliability");
    let reference = format!("{front}/{image}:latest");
    let mut args = vec!["--insecure", "--tarname", "out.tar"];
    args.extend_from_slice(extra);
    args.push(&reference);
    let out = dockersave_ok(dir.path(), &args);
    assert_eq!(dir.names(), ["out.tar"], "{out}");
    load(
        &dir.path().join("out.tar"),
        Some(&reference),
        &config_digest(&plain(&format!("{image}:latest")), &[]),
    );
    (dir, out)
}

fn ranged_requests(faults: &Faults) -> Vec<String> {
    faults
        .requests()
        .into_iter()
        .filter(|r| r.contains("/blobs/") && !r.ends_with("range=-"))
        .collect()
}

#[test]
fn dropped_connection_resumes_with_range() {
    let faults = Faults {
        cut_blobs_after: Some(3000),
        ..Faults::once()
    };
    let (_dir, out) = pull_through(&faults, "layers", &[]);
    assert_eq!(
        ranged_requests(&faults).len(),
        1,
        "{:?}\n{out}",
        faults.requests()
    );
    assert!(
        ranged_requests(&faults)[0].ends_with("range=bytes=3000-"),
        "{:?}",
        faults.requests()
    );
    assert!(out.stderr.contains("resuming at byte 3000"), "{out}");
}

#[test]
fn stalled_download_times_out_and_resumes() {
    let faults = Faults {
        stall_blobs_after: Some(5000),
        ..Faults::once()
    };
    let (_dir, out) = pull_through(&faults, "busybox", &["--timeout", "2"]);
    assert!(
        ranged_requests(&faults)[0].ends_with("range=bytes=5000-"),
        "{:?}\n{out}",
        faults.requests()
    );
}

#[test]
fn truncated_blob_resumes() {
    let faults = Faults {
        truncate_blobs_to: Some(4096),
        ..Faults::once()
    };
    let (_dir, out) = pull_through(&faults, "busybox-oci", &[]);
    assert!(
        ranged_requests(&faults)[0].ends_with("range=bytes=4096-"),
        "{:?}\n{out}",
        faults.requests()
    );
}

#[test]
fn server_ignoring_range_gets_a_clean_restart() {
    let faults = Faults {
        cut_blobs_after: Some(2000),
        ignore_range: true,
        ..Faults::once()
    };
    let (_dir, out) = pull_through(&faults, "busybox", &[]);
    assert_eq!(
        ranged_requests(&faults).len(),
        1,
        "{:?}\n{out}",
        faults.requests()
    );
}

#[test]
fn server_errors_are_retried() {
    let faults = Faults {
        fail_first: Some((500, None)),
        ..Faults::times(2)
    };
    let (_dir, out) = pull_through(&faults, "busybox", &[]);
    assert_eq!(out.stderr.matches("HTTP 500; retrying").count(), 2, "{out}");
}

#[test]
fn rate_limit_retry_after_is_honoured() {
    let faults = Faults {
        fail_first: Some((429, Some(1))),
        ..Faults::times(2)
    };
    let started = Instant::now();
    let (_dir, out) = pull_through(&faults, "busybox", &[]);
    assert_eq!(
        out.stderr.matches("HTTP 429; retrying in 1.0s").count(),
        2,
        "{out}"
    );
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "Retry-After was not waited out"
    );
}

#[test]
fn retries_are_bounded() {
    let faults = Faults {
        fail_first: Some((503, None)),
        ..Faults::times(100)
    };
    let front = forwarder(&env("DS_REGISTRY"), faults.clone());
    let dir = Scratch::new("bounded");
    let out = dockersave(
        dir.path(),
        &["--insecure", "--retries", "2", &format!("{front}/busybox")],
    );
    assert_eq!(out.code, 8, "{out}");
    assert_eq!(
        faults.requests().len(),
        3,
        "one try and two retries: {:?}",
        faults.requests()
    );
    assert!(dir.names().is_empty());
}

#[test]
fn not_found_is_not_retried() {
    let faults = Faults::default();
    let front = forwarder(&env("DS_REGISTRY"), faults.clone());
    let dir = Scratch::new("404");
    let out = dockersave(
        dir.path(),
        &["--insecure", &format!("{front}/busybox:missing")],
    );
    assert_eq!(out.code, 5, "{out}");
    assert_eq!(
        faults
            .requests()
            .iter()
            .filter(|r| r.contains("/manifests/"))
            .count(),
        1,
        "{:?}",
        faults.requests()
    );
}

/// The sha256 of a file, so that comparisons print a short value on failure.
fn file_digest(path: &std::path::Path) -> String {
    use sha2::Digest as _;
    let sum = sha2::Sha256::digest(fs::read(path).unwrap());
    sum.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn cache_serves_a_second_pull_without_blob_requests_and_heals_corruption() {
    let cache = Scratch::new("cache");
    let cache_dir = cache.path().to_str().unwrap().to_string();
    let faults = Faults::default();
    let front = forwarder(&env("DS_REGISTRY"), faults.clone());
    let reference = format!("{front}/layers:latest");
    let pull = |dir: &Scratch, envs: &[(&str, &str)], extra: &[&str]| {
        let before = faults.blob_requests();
        let mut args = vec!["--insecure"];
        args.extend_from_slice(extra);
        args.push(&reference);
        let out = dockersave_env(dir.path(), &args, envs, None);
        assert_eq!(out.code, 0, "{out}");
        (faults.blob_requests() - before, out)
    };

    let (dir1, dir2, dir3) = (
        Scratch::new("cache1"),
        Scratch::new("cache2"),
        Scratch::new("cache3"),
    );
    let (fetched, _) = pull(&dir1, &[], &["--cache-dir", &cache_dir]);
    assert_eq!(
        fetched,
        4,
        "config and three layers: {:?}",
        faults.requests()
    );
    let (fetched, _) = pull(&dir2, &[], &["--cache-dir", &cache_dir]);
    assert_eq!(
        fetched,
        0,
        "the cached pull made blob requests: {:?}",
        faults.requests()
    );
    let archive = |dir: &Scratch| dir.path().join("layers-latest.tar");
    assert_eq!(file_digest(&archive(&dir1)), file_digest(&archive(&dir2)));
    load(
        &archive(&dir2),
        Some(&reference),
        &config_digest(&plain("layers:latest"), &[]),
    );

    // Corrupt the largest entry: it is dropped with a warning and that blob alone is fetched
    // again, this time with the cache named by DOCKERSAVE_CACHE.
    let blobs = cache.path().join("blobs/sha256");
    let mut entries: Vec<_> = fs::read_dir(&blobs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort_by_key(|p| fs::metadata(p).unwrap().len());
    let victim = entries.last().unwrap();
    let mut bytes = fs::read(victim).unwrap();
    bytes[100] ^= 1;
    fs::write(victim, bytes).unwrap();
    let (fetched, out) = pull(&dir3, &[("DOCKERSAVE_CACHE", &cache_dir)], &[]);
    assert!(out.stderr.contains("is corrupt"), "{out}");
    assert_eq!(fetched, 1, "{:?}", faults.requests());
    assert_eq!(file_digest(&archive(&dir3)), file_digest(&archive(&dir1)));
}

/// Starts dockersave in `dir` with `args` against a forwarder whose first big blob stalls, and
/// returns once the transfer is stuck in it (with the reference it pulls).
fn start_stalled(dir: &Scratch, args: &[&str]) -> (std::process::Child, String) {
    let faults = Faults {
        stall_blobs_after: Some(1500),
        ..Faults::once()
    };
    let front = forwarder(&env("DS_REGISTRY"), faults.clone());
    let reference = format!("{front}/layers:latest");
    let mut all = vec!["--insecure"];
    all.extend_from_slice(args);
    all.push(&reference);
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_dockersave"))
        .args(&all)
        .current_dir(dir.path())
        .env("DOCKER_CONFIG", "/nonexistent/dockersave-tests")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while faults.times.load(std::sync::atomic::Ordering::SeqCst) > 0 {
        assert!(
            Instant::now() < deadline,
            "the pull never reached a layer: {:?}",
            faults.requests()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    (child, reference)
}

#[test]
fn kill_9_mid_pull_then_rerun_completes() {
    let cache = Scratch::new("killcache");
    let dir = Scratch::new("kill");
    let cache_arg = cache.path().to_str().unwrap();
    let (mut child, reference) = start_stalled(&dir, &["--cache-dir", cache_arg]);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(
        dir.names().iter().any(|n| n.contains(".partial-")),
        "the killed run left its partial directory: {:?}",
        dir.names()
    );

    let out = dockersave_ok(
        dir.path(),
        &["--insecure", "--cache-dir", cache_arg, &reference],
    );
    assert_eq!(
        dir.names(),
        ["layers-latest.tar"],
        "stale partial files were cleared: {out}"
    );
    let leftovers: Vec<String> = fs::read_dir(cache.path().join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "cache temp files left: {leftovers:?}");
    load(
        &dir.path().join("layers-latest.tar"),
        Some(&reference),
        &config_digest(&plain("layers:latest"), &[]),
    );
}

/// Interrupts a stalled run with `signal` and returns its outcome and how long it took to end.
fn interrupted_run(dir: &Scratch, args: &[&str], signal: i32) -> (Output, Duration) {
    let (child, _) = start_stalled(dir, args);
    let sent = Instant::now();
    assert_eq!(unsafe { libc::kill(child.id() as i32, signal) }, 0);
    let out = child.wait_with_output().unwrap();
    let took = sent.elapsed();
    (
        Output {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        },
        took,
    )
}

#[test]
fn ctrl_c_and_sigterm_remove_what_the_run_wrote() {
    for (signal, name, code) in [
        (libc::SIGINT, "SIGINT", 130),
        (libc::SIGTERM, "SIGTERM", 143),
    ] {
        for extra in [
            &[][..],
            &["--rootfs", "tree"][..],
            &["--flatten", "flat.tar"][..],
        ] {
            let dir = Scratch::new("interrupt");
            let (out, took) = interrupted_run(&dir, extra, signal);
            assert_eq!(out.code, code, "{name} {extra:?}: {out}");
            assert!(
                out.stderr.contains(&format!("interrupted by {name}")),
                "{name} {extra:?}: {out}"
            );
            assert_eq!(
                out.stderr
                    .trim_end()
                    .lines()
                    .last()
                    .unwrap()
                    .matches("interrupted")
                    .count(),
                1
            );
            // The transfer was stalled; the run did not wait for its 60 s timeout.
            assert!(took < Duration::from_secs(5), "{name} took {took:?}");
            assert!(
                dir.names().is_empty(),
                "{name} {extra:?} left {:?}: {out}",
                dir.names()
            );
            // And the next run works.
            let mut again = vec!["--insecure"];
            again.extend_from_slice(extra);
            let reference = plain("layers:latest");
            again.push(&reference);
            dockersave_ok(dir.path(), &again);
        }
    }
    // --no-rm keeps the partial directory.
    let dir = Scratch::new("interrupt-keep");
    let (out, _) = interrupted_run(&dir, &["--no-rm"], libc::SIGHUP);
    assert_eq!(out.code, 129, "{out}");
    assert!(out.stderr.contains("(--no-rm)"), "{out}");
    let names = dir.names();
    assert!(
        names.len() == 1 && names[0].starts_with(".layers-latest.partial-"),
        "{names:?}"
    );
}

#[test]
fn a_partial_tree_is_private_and_only_the_users_own_partials_are_cleared() {
    use std::os::unix::fs::PermissionsExt;
    let dir = Scratch::new("partial-private");
    let (mut child, reference) = start_stalled(&dir, &["--rootfs", "tree"]);
    let partial = dir
        .names()
        .into_iter()
        .find(|n| n.starts_with(".tree.partial-"))
        .expect("the run builds its tree under a partial name");
    let mode = fs::metadata(dir.path().join(&partial))
        .unwrap()
        .permissions()
        .mode();
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(
        mode & 0o7777,
        0o700,
        "no other user may enter a half-built tree"
    );
    // Another user's partial, of a process that is gone: not ours to remove. Ours is.
    let theirs = ".other.partial-2147483646";
    fs::create_dir(dir.path().join(theirs)).unwrap();
    give_to_nobody(&dir.path().join(theirs));
    dockersave_ok(dir.path(), &["--insecure", "--rootfs", "tree", &reference]);
    assert_eq!(dir.names(), [theirs, "tree"]);
    let mode = fs::metadata(dir.path().join("tree"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o7777,
        0o755,
        "the finished tree has the image's mode"
    );
}
