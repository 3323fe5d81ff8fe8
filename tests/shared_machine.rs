//! dockersave run as root on a machine other users share: what they plant in a directory it
//! writes (links at its partial names, FIFOs and links at its output, links and FIFOs in a
//! shared cache) is refused or passed over, never written through or waited on; and a tree
//! unpacked without root keeps its setuid files to its owner. Run through tests/run.sh, as root.

mod common;

use common::*;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::time::Duration;

/// The release binary, what users run (and the one a test of an older build swaps in).
fn dockersave(dir: &Path, args: &[&str]) -> Output {
    run(&release_binary(), args, dir, None)
}

fn dockersave_ok(dir: &Path, args: &[&str]) -> Output {
    let out = dockersave(dir, args);
    assert_eq!(out.code, 0, "{args:?}: {out}");
    out
}

fn busybox() -> String {
    format!("{}/busybox:latest", env("DS_REGISTRY"))
}

/// A file `nobody` owns, that root's run must not touch.
fn victim(dir: &Path) -> std::path::PathBuf {
    let victim = dir.join("victim");
    fs::write(&victim, b"nobody's file\n").unwrap();
    std::os::unix::fs::chown(&victim, Some(65534), Some(65534)).unwrap();
    victim
}

/// Runs the release binary as the first process of a new PID namespace, so its process number,
/// and with it every partial name it makes (`.NAME.partial-1`), is known ahead.
fn as_pid_one(dir: &Path, args: &[&str]) -> Output {
    let binary = release_binary();
    let mut all = vec!["--pid", "--fork", binary.as_str()];
    all.extend_from_slice(args);
    run("unshare", &all, dir, None)
}

#[test]
fn links_planted_at_partial_names_are_refused_not_written_through() {
    let dir = Scratch::new("planted-partial");
    give_to_nobody(dir.path());
    let victim = victim(dir.path());
    // Another user, who may write the directory, plants the link.
    let planted = run_as_nobody(
        "ln",
        &["-s", "victim", ".out.tar.partial-1"],
        dir.path(),
        &[],
    );
    assert_eq!(planted.code, 0, "{planted}");
    // The control: the process is number 1, so the name is the one it would use.
    let probe = run(
        "unshare",
        &["--pid", "--fork", "sh", "-c", "echo $$"],
        dir.path(),
        None,
    );
    assert_eq!(probe.stdout.trim(), "1", "{probe}");
    let out = as_pid_one(dir.path(), &["--insecure", "-o", "out.tar", &busybox()]);
    assert_eq!(out.code, 7, "{out}");
    assert!(
        out.stderr
            .contains(".out.tar.partial-1 already exists as a symbolic link of uid 65534"),
        "{out}"
    );
    assert_eq!(fs::read(&victim).unwrap(), b"nobody's file\n");
    assert!(!dir.path().join("out.tar").exists());
    // The same in a shared cache, at a blob's partial name.
    let cache = dir.path().join("cache");
    let blobs = cache.join("blobs/sha256");
    fs::create_dir_all(&blobs).unwrap();
    let config = config_digest(&busybox(), &[]);
    let name = format!(".{}.partial-1", config.trim_start_matches("sha256:"));
    std::os::unix::fs::symlink(&victim, blobs.join(name)).unwrap();
    let args = [
        "--insecure",
        "--cache-dir",
        "cache",
        "-o",
        "cached.tar",
        &busybox(),
    ];
    let out = as_pid_one(dir.path(), &args);
    // The cache is a help, not the run: the entry is not kept, with a warning.
    assert_eq!(out.code, 0, "{out}");
    assert!(out.stderr.contains("cannot keep"), "{out}");
    assert_eq!(fs::read(&victim).unwrap(), b"nobody's file\n");
}

#[test]
fn outputs_that_are_another_users_fifo_or_a_link_are_refused() {
    let dir = Scratch::new("output-fifo");
    give_to_nobody(dir.path());
    let fifo = dir.path().join("out.tar");
    let made = run_as_nobody("mkfifo", &[fifo.to_str().unwrap()], dir.path(), &[]);
    assert_eq!(made.code, 0, "{made}");
    // nobody reads the pipe: root's archive of a private image must not reach it.
    let got = dir.path().join("got");
    let mut reader = std::process::Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--",
            "cat",
        ])
        .arg(&fifo)
        .stdout(fs::File::create(&got).unwrap())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let out = dockersave(dir.path(), &["--insecure", "-o", "out.tar", &busybox()]);
    assert_eq!(out.code, 7, "{out}");
    assert!(out.stderr.contains("is a FIFO of uid 65534"), "{out}");
    // Let the reader go: open the pipe for writing (without waiting, in case the reader has
    // already gone) and close it.
    use std::os::unix::fs::OpenOptionsExt;
    let _ = fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo);
    reader.wait().unwrap();
    let read = fs::metadata(&got).unwrap().len();
    assert_eq!(read, 0, "the reader got {read} bytes");

    assert!(fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());
    // A FIFO of one's own with no reader: an error at once, not a run that hangs.
    let own = dir.path().join("own.fifo");
    assert_eq!(
        run("mkfifo", &[own.to_str().unwrap()], dir.path(), None).code,
        0
    );
    let out = run(
        "timeout",
        &[
            "20",
            &release_binary(),
            "--insecure",
            "--flatten",
            "own.fifo",
            &busybox(),
        ],
        dir.path(),
        None,
    );
    assert_eq!(out.code, 7, "it waited for a reader: {out}");
    assert!(out.stderr.contains("no process reads"), "{out}");
    // A symlink at the output name (to a file of nobody's) is refused, not followed.
    let victim = victim(dir.path());
    std::os::unix::fs::symlink(&victim, dir.path().join("linked.tar")).unwrap();
    let out = dockersave(dir.path(), &["--insecure", "-o", "linked.tar", &busybox()]);
    assert_eq!(out.code, 7, "{out}");
    assert!(out.stderr.contains("is a symbolic link"), "{out}");
    assert_eq!(fs::read(&victim).unwrap(), b"nobody's file\n");
    // /dev/null and standard output by another name are written into, as before.
    dockersave_ok(dir.path(), &["--insecure", "-o", "/dev/null", &busybox()]);
    let out = dockersave_ok(
        dir.path(),
        &["--insecure", "-q", "-o", "/dev/stdout", &busybox()],
    );
    assert!(
        out.stdout.len() > 1000,
        "the archive went to standard output"
    );
}

#[test]
fn cache_entries_that_are_links_or_fifos_are_passed_over() {
    let dir = Scratch::new("cache-planted");
    let blobs = dir.path().join("cache/blobs/sha256");
    fs::create_dir_all(&blobs).unwrap();
    let config = config_digest(&busybox(), &[]);
    let layers = layer_digests(&busybox());
    assert!(!layers.is_empty());
    let hex = |d: &str| d.trim_start_matches("sha256:").to_string();
    // The config's entry a FIFO, the layer's a link to /dev/zero: either would hang a read.
    let fifo = blobs.join(hex(&config));
    assert_eq!(
        run("mkfifo", &[fifo.to_str().unwrap()], dir.path(), None).code,
        0
    );
    std::os::unix::fs::symlink("/dev/zero", blobs.join(hex(&layers[0]))).unwrap();
    let out = run(
        "timeout",
        &[
            "60",
            &release_binary(),
            "--insecure",
            "--cache-dir",
            "cache",
            "-o",
            "out.tar",
            &busybox(),
        ],
        dir.path(),
        None,
    );
    assert_eq!(out.code, 0, "{out}");
    assert!(
        out.stderr.contains("not a regular file of this user"),
        "said why the entries were passed over: {out}"
    );
    load(&dir.path().join("out.tar"), Some(&busybox()), &config);
    // A cache dockersave makes is private.
    let args = [
        "--insecure",
        "--cache-dir",
        "fresh/cache",
        "-o",
        "-",
        &busybox(),
    ];
    assert_eq!(dockersave(dir.path(), &args).code, 0);
    for private in [
        "fresh",
        "fresh/cache",
        "fresh/cache/blobs",
        "fresh/cache/blobs/sha256",
    ] {
        let mode = fs::metadata(dir.path().join(private)).unwrap().mode();
        assert_eq!(mode & 0o777, 0o700, "{private}");
    }
}
