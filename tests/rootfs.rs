//! Integration tests for root filesystems: `--rootfs` against `umoci unpack` of the same image
//! (as root, and without root against `umoci unpack --rootless`), `--flatten` piped into `tar -x`
//! against `--rootfs`, a chroot into an unpacked busybox, hostile layers aimed at a canary
//! outside the directory, and the directory rules (new, empty, non-empty, --force). The images
//! are written by `tests/harness/images.py` and pushed with skopeo. Run through tests/run.sh.

mod common;

use common::*;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// The rich image and the through-a-symlink one, pushed once per test process.
fn rich() -> &'static str {
    static IMAGE: OnceLock<String> = OnceLock::new();
    IMAGE.get_or_init(|| push_built_image("rich", "rootfs-rich", None))
}

fn through_link() -> &'static str {
    static IMAGE: OnceLock<String> = OnceLock::new();
    IMAGE.get_or_init(|| push_built_image("through-link", "rootfs-through-link", None))
}

/// `umoci unpack` of `image` (copied by skopeo into an OCI layout), as root or, with
/// `rootless`, as the user nobody with `--rootless`. Returns the scratch dir and the rootfs.
fn umoci_unpack(image: &str, rootless: bool) -> (Scratch, std::path::PathBuf) {
    let dir = Scratch::new("umoci");
    let layout = dir.path().join("oci");
    let copied = run(
        "skopeo",
        &[
            "copy",
            "--quiet",
            "--src-tls-verify=false",
            &format!("docker://{image}:latest"),
            &format!("oci:{}:img", layout.display()),
        ],
        Path::new("/"),
        None,
    );
    assert_eq!(copied.code, 0, "{copied}");
    let bundle = dir.path().join("bundle");
    let image_arg = format!("{}:img", layout.display());
    let out = if rootless {
        give_to_nobody(dir.path());
        let home = dir.path().to_str().unwrap();
        run_as_nobody(
            "umoci",
            &[
                "unpack",
                "--rootless",
                "--image",
                &image_arg,
                bundle.to_str().unwrap(),
            ],
            dir.path(),
            &[("HOME", home)],
        )
    } else {
        run(
            "umoci",
            &["unpack", "--image", &image_arg, bundle.to_str().unwrap()],
            dir.path(),
            None,
        )
    };
    assert_eq!(out.code, 0, "umoci unpack failed:\n{out}");
    (dir, bundle.join("rootfs"))
}

fn rootfs_args<'a>(image: &'a str, dir: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["--insecure", "--rootfs", dir];
    args.extend_from_slice(extra);
    args.push(image);
    args
}

/// Compare all that a root run sets: owners and hard-link groups too.
const EVERYTHING: Compare = Compare {
    owners: true,
    hard_links: true,
};

fn assert_same(ours: &Path, theirs: &Path, how: Compare, context: &str) {
    let differences = compare(&snapshot(ours), &snapshot(theirs), how);
    assert!(
        differences.is_empty(),
        "{context}: the trees differ:\n{}",
        differences.join("\n")
    );
}

#[test]
fn rootfs_matches_umoci_unpack_as_root() {
    for image in [rich(), through_link()] {
        let dir = Scratch::new("rootfs-root");
        let out = dockersave_ok(dir.path(), &rootfs_args(image, "tree", &[]));
        assert_eq!(
            out.stdout.trim(),
            "tree",
            "stdout names the directory: {out}"
        );
        assert_eq!(dir.names(), ["tree"], "nothing else is left: {out}");
        let (_umoci, reference) = umoci_unpack(image, false);
        assert_same(&dir.path().join("tree"), &reference, EVERYTHING, image);
    }
    // What the rich image holds, checked directly too (umoci could share a mistake).
    let dir = Scratch::new("rootfs-facts");
    dockersave_ok(dir.path(), &rootfs_args(rich(), "t", &[]));
    let tree = snapshot(&dir.path().join("t"));
    let node = |p: &str| {
        tree.get(p)
            .unwrap_or_else(|| panic!("{p} is missing: {:?}", tree.keys()))
            .clone()
    };
    assert_eq!(node("bin/su").mode, 0o4755);
    assert_eq!(node("tmp").mode, 0o1777);
    assert_eq!((node("ro").mode, node("ro/file").mode), (0o555, 0o444));
    assert_eq!(
        (node("dev/null").kind, node("dev/null").rdev),
        ('c', libc::makedev(1, 3))
    );
    assert_eq!(node("dev/loop0").owner, (0, 6));
    assert_eq!(node("run/fifo").kind, 'p');
    assert_eq!(node("home/user/notes").owner, (1000, 1000));
    assert_eq!(node("lib").link.as_deref(), Some("usr/lib"));
    assert!(node("bin/ping").xattrs.contains_key("security.capability"));
    assert_eq!(node("etc/tagged").xattrs["user.dockersave"], b"hello");
    // Whiteouts, the opaque directory (its own layer's entries before the marker stay), links.
    for gone in [
        "data/gone",
        "data/tree",
        "data/opq/old",
        "data/opq/olddir",
        "data/shared",
    ] {
        assert!(!tree.contains_key(gone), "{gone} should be gone");
    }
    for kept in ["data/opq/keep", "data/opq/sub/inner", "data/opq/after"] {
        assert!(tree.contains_key(kept), "{kept} should be there");
    }
    assert_eq!(
        fs::read_to_string(dir.path().join("t/data/opq/keep")).unwrap(),
        "new keep"
    );
    // A hard link keeps its content when the path it was made from is whited out above it:
    // images.py gives data/shared "shared content", links data/link to it, then whites it out.
    assert_eq!(node("data/link").kind, '-');
    assert_eq!(
        fs::read(dir.path().join("t/data/link")).unwrap(),
        b"shared content"
    );
    assert_eq!(node("data/hl2").inode, node("data/opq/after").inode);
    assert_eq!(node("data/new-hl").inode, node("data/new").inode);
    assert_eq!(node("data/replaced").kind, '-');
    assert_eq!(node("etc").mode, 0o750);
    // Files and directories carry the image's mtimes (directories fixed after their contents).
    for path in ["etc", "data", "data/opq", "bin/su", "data/opq/after"] {
        let mtime = fs::symlink_metadata(dir.path().join("t").join(path))
            .unwrap()
            .mtime();
        assert_eq!(mtime, 1_600_000_000, "{path}");
    }
}

#[test]
fn rootfs_without_root_matches_umoci_rootless() {
    for image in [rich(), through_link()] {
        let dir = Scratch::new("rootfs-rootless");
        give_to_nobody(dir.path());
        let args = rootfs_args(image, "tree", &[]);
        let out = run_as_nobody(
            env!("CARGO_BIN_EXE_dockersave"),
            &args,
            dir.path(),
            &[("DOCKER_CONFIG", "/nonexistent/dockersave-tests")],
        );
        assert_eq!(out.code, 0, "unprivileged --rootfs failed:\n{out}");
        let ours = dir.path().join("tree");
        let (_umoci, reference) = umoci_unpack(image, true);
        let mut theirs = snapshot(&reference);
        if image == rich() {
            assert!(
                out.stderr.contains("skipped 2 device nodes"),
                "one count of the skipped devices: {out}"
            );
            // umoci --rootless leaves empty files where the device nodes were; we skip them.
            for device in ["dev/null", "dev/loop0"] {
                let placeholder = theirs.remove(device).expect("umoci's placeholder");
                assert_eq!(placeholder.kind, '-');
            }
            // The read-only directory and file are there, with their modes.
            let tree = snapshot(&ours);
            assert_eq!((tree["ro"].mode, tree["ro/file2"].mode), (0o555, 0o444));
            assert!(tree["etc/tagged"].xattrs.contains_key("user.dockersave"));
            assert!(tree["home/user/notes"].owner == (65534, 65534));
            assert_eq!(
                tree["home/user/notes"].xattrs["user.rootlesscontainers"],
                [8, 232, 7, 16, 232, 7],
                "the owner it should have, as umoci records it"
            );
            // bin/su is setuid and belongs to nobody: no other user may reach it.
            assert_eq!(tree["bin/su"].mode, 0o4755);
            use std::os::unix::fs::PermissionsExt;
            let root_mode = fs::metadata(&ours).unwrap().permissions().mode() & 0o7777;
            assert_eq!(root_mode, 0o700, "{out}");
            assert!(
                out.stderr
                    .contains("setuid/setgid files of the image belong to you"),
                "{out}"
            );
        }
        let differences = compare(
            &snapshot(&ours),
            &theirs,
            Compare {
                owners: false,
                hard_links: true,
            },
        );
        assert!(
            differences.is_empty(),
            "{image}: the trees differ:\n{}",
            differences.join("\n")
        );
    }
}

/// Runs `dockersave --flatten - IMAGE | tar -x` into `into`, as root.
fn flatten_into(image: &str, into: &Path) -> String {
    fs::create_dir_all(into).unwrap();
    let mut flatten = Command::new(env!("CARGO_BIN_EXE_dockersave"))
        .args(["--insecure", "--flatten", "-", image])
        .env("DOCKER_CONFIG", "/nonexistent/dockersave-tests")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let tar = Command::new("tar")
        .args([
            "-x",
            "--xattrs",
            "--xattrs-include=*",
            "--numeric-owner",
            "-p",
            "-C",
        ])
        .arg(into)
        .stdin(flatten.stdout.take().unwrap())
        .output()
        .unwrap();
    let flat = flatten.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&flat.stderr).into_owned();
    assert!(flat.status.success(), "--flatten failed: {stderr}");
    assert!(
        tar.status.success(),
        "tar -x failed: {}",
        String::from_utf8_lossy(&tar.stderr)
    );
    stderr
}

#[test]
fn flatten_piped_into_tar_gives_the_rootfs_tree() {
    let dir = Scratch::new("flatten");
    dockersave_ok(dir.path(), &rootfs_args(rich(), "rootfs", &[]));
    flatten_into(rich(), &dir.path().join("flat"));
    assert_same(
        &dir.path().join("flat"),
        &dir.path().join("rootfs"),
        EVERYTHING,
        "--flatten | tar -x against --rootfs",
    );
    // To a file: the same bytes as on stdout, and nothing else left behind.
    let out = dockersave_ok(dir.path(), &["--insecure", "--flatten", "rich.tar", rich()]);
    assert_eq!(out.stdout.trim(), "rich.tar", "{out}");
    let again = dockersave_ok(
        dir.path(),
        &["--insecure", "--flatten", "again.tar", rich()],
    );
    assert_eq!(again.code, 0);
    assert_eq!(
        fs::read(dir.path().join("rich.tar")).unwrap(),
        fs::read(dir.path().join("again.tar")).unwrap(),
        "the same image flattens to the same bytes"
    );
    assert_eq!(dir.names(), ["again.tar", "flat", "rich.tar", "rootfs"]);
    // A FIFO (or a device such as /dev/null) is written into as it is, not replaced.
    let fifo = dir.path().join("pipe");
    let made = run("mkfifo", &[fifo.to_str().unwrap()], Path::new("/"), None);
    assert_eq!(made.code, 0, "{made}");
    let reader = Command::new("sha256sum")
        .arg(&fifo)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    dockersave_ok(
        dir.path(),
        &["--insecure", "--flatten", fifo.to_str().unwrap(), rich()],
    );
    let read = reader.wait_with_output().unwrap();
    assert_eq!(
        format!(
            "sha256:{}",
            String::from_utf8_lossy(&read.stdout)
                .split(' ')
                .next()
                .unwrap()
        ),
        sha256_file(&dir.path().join("rich.tar"))
    );
    use std::os::unix::fs::FileTypeExt;
    assert!(fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());
    fs::remove_file(&fifo).unwrap();
    // Lower file contents that upper layers hide are never written.
    let listing = run("tar", &["-tvf", "rich.tar"], dir.path(), None);
    assert!(
        !listing.stdout.contains("data/opq/old"),
        "{}",
        listing.stdout
    );
    assert_eq!(
        listing.stdout.matches(" data/opq/keep\n").count(),
        1,
        "each path once"
    );
}

#[test]
fn flatten_refuses_an_upper_layer_writing_through_a_lower_symlink() {
    let dir = Scratch::new("flatten-through");
    let out = dockersave(
        dir.path(),
        &["--insecure", "--flatten", "x.tar", through_link()],
    );
    assert_eq!(out.code, 6, "{out}");
    assert!(out.stderr.contains("use --rootfs"), "{out}");
    assert!(
        dir.names().is_empty(),
        "no partial file is left: {:?}",
        dir.names()
    );
}

#[test]
fn chroot_runs_busybox_in_an_unpacked_image() {
    let dir = Scratch::new("chroot");
    let image = format!("{}/busybox", env("DS_REGISTRY"));
    dockersave_ok(dir.path(), &rootfs_args(&image, "bb", &[]));
    let root = dir.path().join("bb");
    let out = run(
        "chroot",
        &[
            root.to_str().unwrap(),
            "/bin/busybox",
            "sh",
            "-c",
            "cat /etc/fixture; echo ok",
        ],
        Path::new("/"),
        None,
    );
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(out.stdout, "dockersave fixture\nok\n");
}

/// A file outside the directory that hostile layers aim at; it must keep its content and
/// mtime.
struct Canary {
    path: std::path::PathBuf,
}

impl Canary {
    fn new(dir: &Path) -> Canary {
        let path = dir.join("canary");
        fs::write(&path, b"canary").unwrap();
        set_times(&path, 1_000_000_000);
        Canary { path }
    }

    fn assert_untouched(&self, context: &str) {
        let meta = fs::symlink_metadata(&self.path)
            .unwrap_or_else(|e| panic!("{context}: the canary is gone: {e}"));
        assert!(meta.is_file(), "{context}: the canary is no longer a file");
        assert_eq!(
            fs::read(&self.path).unwrap(),
            b"canary",
            "{context}: content"
        );
        assert_eq!(meta.mtime(), 1_000_000_000, "{context}: mtime");
        assert_eq!(meta.nlink(), 1, "{context}: the canary got a hard link");
    }
}

fn passwd_state() -> (Vec<u8>, i64, u64) {
    let meta = fs::metadata("/etc/passwd").unwrap();
    (fs::read("/etc/passwd").unwrap(), meta.mtime(), meta.nlink())
}

/// Entries that name something outside the tree themselves: refused, as Docker refuses them.
const REFUSED: [&str; 4] = ["dotdot", "absolute", "hardlink-passwd", "hardlink-dotdot"];

#[test]
fn hostile_layers_are_refused_and_the_canary_is_untouched() {
    let passwd = passwd_state();
    for (n, case) in REFUSED.iter().enumerate() {
        let dir = Scratch::new("hostile");
        let canary = Canary::new(dir.path());
        let image = push_built_image(
            case,
            &format!("hostile-{case}-{}-{n}", std::process::id()),
            Some(&canary.path),
        );
        let target = dir.path().join("a/b");
        fs::create_dir_all(&target).unwrap();
        // A new directory.
        let out = dockersave(&target, &rootfs_args(&image, "rootfs", &[]));
        assert_eq!(out.code, 6, "{case}: {out}");
        assert!(
            out.stderr.contains("refusing the entry") && out.stderr.contains("layer "),
            "{case}: the message names the layer and the entry: {out}"
        );
        assert!(
            fs::read_dir(&target).unwrap().next().is_none(),
            "{case}: nothing is left under the directory's name or as a partial: {:?}",
            fs::read_dir(&target).unwrap().collect::<Vec<_>>()
        );
        canary.assert_untouched(case);
        // Over an existing tree with --force.
        fs::create_dir_all(target.join("rootfs")).unwrap();
        fs::write(target.join("rootfs/existing"), b"x").unwrap();
        let out = dockersave(&target, &rootfs_args(&image, "rootfs", &["--force"]));
        assert_eq!(out.code, 6, "{case} --force: {out}");
        canary.assert_untouched(&format!("{case} --force"));
        // Without root.
        fs::remove_dir_all(target.join("rootfs")).unwrap();
        give_to_nobody(&target);
        let args = rootfs_args(&image, "rootfs", &[]);
        let out = run_as_nobody(env!("CARGO_BIN_EXE_dockersave"), &args, &target, &[]);
        assert_eq!(out.code, 6, "{case} unprivileged: {out}");
        canary.assert_untouched(&format!("{case} unprivileged"));
        let out = dockersave(&target, &["--insecure", "--flatten", "flat.tar", &image]);
        assert_eq!(out.code, 6, "{case} --flatten: {out}");
        canary.assert_untouched(&format!("{case} --flatten"));
    }
    assert_eq!(passwd_state(), passwd, "/etc/passwd was touched");
}

/// Symlinks that lead outside on the host, written through: followed with the root as `/`, as
/// Docker and umoci follow them, so what they write lands inside (where, relative to the tree).
fn followed_inside(canary: &Path) -> [(&'static str, Option<String>); 4] {
    let inside = canary.to_str().unwrap().trim_start_matches('/').to_string();
    [
        ("root-symlink", Some(inside)),
        ("parent-symlink", Some("canary".into())),
        ("chain", Some("canary".into())),
        ("whiteout-escape", None),
    ]
}

#[test]
fn links_out_of_the_tree_are_followed_inside_it_and_the_canary_is_untouched() {
    let passwd = passwd_state();
    for n in 0..4 {
        let dir = Scratch::new("hostile-inside");
        let canary = Canary::new(dir.path());
        let (case, lands) = followed_inside(&canary.path)[n].clone();
        let image = push_built_image(
            case,
            &format!("inside-{case}-{}-{n}", std::process::id()),
            Some(&canary.path),
        );
        let target = dir.path().join("a/b");
        fs::create_dir_all(&target).unwrap();
        dockersave_ok(&target, &rootfs_args(&image, "rootfs", &[]));
        canary.assert_untouched(case);
        if let Some(lands) = &lands {
            assert_eq!(
                fs::read(target.join("rootfs").join(lands)).unwrap(),
                b"pwned",
                "{case}: written inside, where the link leads with the tree's root as /"
            );
        }
        let (_umoci, reference) = umoci_unpack(&image, false);
        assert_same(&target.join("rootfs"), &reference, EVERYTHING, case);
        // Without root, and with --flatten: inside, or refused naming --rootfs.
        give_to_nobody(&target);
        let args = rootfs_args(&image, "nobody", &[]);
        let out = run_as_nobody(env!("CARGO_BIN_EXE_dockersave"), &args, &target, &[]);
        assert_eq!(out.code, 0, "{case} unprivileged: {out}");
        canary.assert_untouched(&format!("{case} unprivileged"));
        let out = dockersave(&target, &["--insecure", "--flatten", "flat.tar", &image]);
        if out.code == 0 {
            let into = target.join("x");
            fs::create_dir_all(&into).unwrap();
            let tar = run("tar", &["-xpf", "flat.tar", "-C", "x"], &target, None);
            assert_eq!(tar.code, 0, "{case}: {tar}");
            // Against umoci's tree: `rootfs` went to nobody for the unprivileged run.
            assert_same(&into, &reference, EVERYTHING, case);
        } else {
            assert_eq!(out.code, 6, "{case} --flatten: {out}");
            assert!(out.stderr.contains("--rootfs"), "{case}: {out}");
        }
        canary.assert_untouched(&format!("{case} --flatten"));
    }
    assert_eq!(passwd_state(), passwd, "/etc/passwd was touched");
}

/// Debian's `var/run -> /run` written through by a later layer (and declared again first), and
/// `opt/conf -> ../../../../etc`: the trees umoci unpacks, the file where Docker reads it.
#[test]
fn absolute_and_climbing_links_resolve_inside_as_umoci_and_docker_do() {
    let lands = [
        ("var-run", "run/app.pid", "42\n"),
        ("var-run-again", "run/app.pid", "42\n"),
        ("opt-conf", "etc/app.conf", "conf\n"),
    ];
    for (builder, path, content) in lands {
        let image = push_built_image(
            builder,
            &format!("chroot-{builder}-{}", std::process::id()),
            None,
        );
        let dir = Scratch::new("chroot-links");
        dockersave_ok(dir.path(), &rootfs_args(&image, "tree", &[]));
        let tree = dir.path().join("tree");
        assert_eq!(
            fs::read_to_string(tree.join(path)).unwrap(),
            content,
            "{builder}"
        );
        let (_umoci, reference) = umoci_unpack(&image, false);
        assert_same(&tree, &reference, EVERYTHING, builder);
        // --flatten: one pass cannot know that a lower layer's link turns an upper layer's
        // path, unless the layer declares the link itself.
        let out = dockersave(dir.path(), &["--insecure", "--flatten", "flat.tar", &image]);
        if builder == "var-run-again" {
            assert_eq!(out.code, 0, "{out}");
            let into = dir.path().join("flat");
            fs::create_dir_all(&into).unwrap();
            let tar = run("tar", &["-xpf", "flat.tar", "-C", "flat"], dir.path(), None);
            assert_eq!(tar.code, 0, "{tar}");
            assert_same(&into, &tree, EVERYTHING, "var-run-again flattened");
        } else {
            assert_eq!(out.code, 6, "{builder}: {out}");
            assert!(out.stderr.contains("use --rootfs"), "{builder}: {out}");
        }
        // --git commits what --rootfs wrote.
        dockersave_ok(dir.path(), &rootfs_args(&image, "repo", &["--git"]));
        let files = git(
            &dir.path().join("repo"),
            &["ls-tree", "-r", "--name-only", "HEAD"],
        );
        assert!(files.lines().any(|f| f == path), "{builder}: {files}");
    }
    // Docker reads the file through the link too.
    let image = format!(
        "{}/chroot-var-run-{}",
        env("DS_REGISTRY"),
        std::process::id()
    );
    let dir = Scratch::new("chroot-docker");
    dockersave_ok(dir.path(), &["--insecure", "-o", "var-run.tar", &image]);
    let tag = format!("{image}:latest");
    load(
        &dir.path().join("var-run.tar"),
        Some(&tag),
        &config_digest(&tag, &[]),
    );
    assert_eq!(
        docker_run(
            &tag,
            &["/bin/busybox", "cat", "/var/run/app.pid", "/run/app.pid"]
        ),
        "42\n42\n"
    );
}

#[test]
fn directory_rules_new_empty_non_empty_and_force() {
    let dir = Scratch::new("rootfs-dirs");
    let image = format!("{}/layers", env("DS_REGISTRY"));
    // Non-empty: refused without --force, applied over with it.
    fs::create_dir_all(dir.path().join("full")).unwrap();
    fs::write(dir.path().join("full/mine"), b"keep me").unwrap();
    let out = dockersave(dir.path(), &rootfs_args(&image, "full", &[]));
    assert_eq!(out.code, 7, "{out}");
    assert!(out.stderr.contains("--force"), "{out}");
    dockersave_ok(dir.path(), &rootfs_args(&image, "full", &["--force"]));
    assert_eq!(fs::read(dir.path().join("full/mine")).unwrap(), b"keep me");
    assert!(dir.path().join("full/bin/busybox").is_file());
    // Empty (a mount point, say): filled in place, and emptied again when the run fails.
    fs::create_dir(dir.path().join("empty")).unwrap();
    let inode = fs::metadata(dir.path().join("empty")).unwrap().ino();
    dockersave_ok(dir.path(), &rootfs_args(&image, "empty", &[]));
    assert_eq!(fs::metadata(dir.path().join("empty")).unwrap().ino(), inode);
    assert!(dir.path().join("empty/data/b").is_file());
    let corrupt = forwarder(
        &env("DS_REGISTRY"),
        Faults {
            flip_blobs: true,
            ..Faults::default()
        },
    );
    fs::create_dir(dir.path().join("empty2")).unwrap();
    let out = dockersave(
        dir.path(),
        &rootfs_args(&format!("{corrupt}/layers"), "empty2", &[]),
    );
    assert_eq!(out.code, 6, "a corrupted layer fails verification: {out}");
    assert!(out.stderr.contains("failed verification"), "{out}");
    assert!(fs::read_dir(dir.path().join("empty2"))
        .unwrap()
        .next()
        .is_none());
    // New: nothing under the name after a failure.
    let out = dockersave(
        dir.path(),
        &rootfs_args(&format!("{corrupt}/layers"), "new", &[]),
    );
    assert_eq!(out.code, 6, "{out}");
    assert_eq!(dir.names(), ["empty", "empty2", "full"], "{out}");
    // With --no-rm a failed run keeps its partial directories, never under a final name.
    let kept = Scratch::new("rootfs-kept");
    let out = dockersave(
        kept.path(),
        &rootfs_args(&format!("{corrupt}/layers"), "new", &["--no-rm"]),
    );
    assert_eq!(out.code, 6, "{out}");
    let names = kept.names();
    assert!(
        !names.is_empty()
            && names
                .iter()
                .all(|n| n.starts_with('.') && n.contains(".partial-")),
        "{names:?}: {out}"
    );
    // A file in the way.
    fs::write(dir.path().join("afile"), b"").unwrap();
    let out = dockersave(dir.path(), &rootfs_args(&image, "afile", &[]));
    assert_eq!(out.code, 7, "{out}");
}

#[test]
fn rootfs_with_cache_token_auth_resume_and_no_rm() {
    let dir = Scratch::new("rootfs-options");
    // Token auth (Docker Hub's flow) and the cache: the second run takes every blob from it.
    let image = format!("{}/layers", env("DS_TOKEN_REGISTRY"));
    let cache = dir.path().join("cache");
    let cache_arg = cache.to_str().unwrap();
    let mut args = rootfs_args(&image, "one", &["--cache-dir", cache_arg]);
    args.splice(0..0, ["--user", "tokenuser", "--password-stdin"]);
    let out = dockersave_env(dir.path(), &args, &[], Some("token-secret-42"));
    assert_eq!(out.code, 0, "{out}");
    let faults = Faults::default();
    let front = forwarder(&env("DS_REGISTRY"), faults.clone());
    let cached = format!("{front}/layers");
    dockersave_ok(
        dir.path(),
        &rootfs_args(&cached, "two", &["--cache-dir", cache_arg]),
    );
    assert_eq!(
        faults.blob_requests(),
        0,
        "every blob comes from the cache: {:?}",
        faults.requests()
    );
    assert_same(
        &dir.path().join("one"),
        &dir.path().join("two"),
        EVERYTHING,
        "cached",
    );
    // A dropped connection resumes.
    let cut = Faults {
        cut_blobs_after: Some(3000),
        ..Faults::once()
    };
    let front = forwarder(&env("DS_REGISTRY"), cut.clone());
    let out = dockersave_ok(
        dir.path(),
        &rootfs_args(&format!("{front}/layers"), "three", &["--no-rm"]),
    );
    assert!(out.stderr.contains("resuming at byte 3000"), "{out}");
    // --no-rm keeps the layer tars as a loadable image directory.
    let kept = dir.path().join("layers-latest");
    assert!(kept.join("manifest.json").is_file(), "{:?}", dir.names());
    let tar = run(
        "tar",
        &["-cf", "kept.tar", "-C", kept.to_str().unwrap(), "."],
        dir.path(),
        None,
    );
    assert_eq!(tar.code, 0, "{tar}");
    let tag = format!("{front}/layers:latest");
    load(
        &dir.path().join("kept.tar"),
        Some(&tag),
        &config_digest(&format!("{}/layers:latest", env("DS_REGISTRY")), &[]),
    );
}

/// Digests of an image's layers as skopeo, an independent client, reads them: with
/// `--config` the diff IDs, else the blob digests; `extra` picks a platform.
fn skopeo_digests(image: &str, config: bool, extra: &[&str]) -> Vec<String> {
    let mut args = vec!["inspect", "--tls-verify=false"];
    if config {
        args.extend([
            "--config",
            "--format",
            "{{range .RootFS.DiffIDs}}{{.}} {{end}}",
        ]);
    } else {
        args.extend(["--format", "{{range .Layers}}{{.}} {{end}}"]);
    }
    args.extend_from_slice(extra);
    let reference = format!("docker://{image}:latest");
    args.push(&reference);
    let out = run("skopeo", &args, Path::new("/"), None);
    assert_eq!(out.code, 0, "{out}");
    out.stdout.split_whitespace().map(str::to_string).collect()
}

fn diff_ids(image: &str) -> Vec<String> {
    skopeo_digests(image, true, &[])
}

fn sha256_file(path: &Path) -> String {
    use sha2::Digest as _;
    format!("sha256:{:x}", sha2::Sha256::digest(fs::read(path).unwrap()))
}

#[test]
fn layer_exports_hash_to_their_digests() {
    let image = format!("{}/layers", env("DS_REGISTRY"));
    let (diffs, blobs) = (diff_ids(&image), skopeo_digests(&image, false, &[]));
    assert_eq!(diffs.len(), 3);
    let dir = Scratch::new("layer");
    for n in 1..=3 {
        let out = dockersave_ok(
            dir.path(),
            &["--insecure", "--layer", &n.to_string(), &image],
        );
        let id = out.stdout.trim().trim_start_matches("./").to_string();
        let layer_dir = dir.path().join(&id);
        assert_eq!(
            sha256_file(&layer_dir.join("layer.tar")),
            diffs[n - 1],
            "layer {n}"
        );
        assert_eq!(
            fs::read_to_string(layer_dir.join("VERSION")).unwrap(),
            "1.0"
        );
        assert!(fs::read_to_string(layer_dir.join("json"))
            .unwrap()
            .contains(&id));
    }
    // -1 is the top layer, a digest prefix (blob or diff ID) names one.
    let top = Scratch::new("layer-top");
    let out = dockersave_ok(top.path(), &["--insecure", "--layer", "-1", &image]);
    assert_eq!(
        sha256_file(&top.path().join(out.stdout.trim()).join("layer.tar")),
        diffs[2]
    );
    let by_digest = Scratch::new("layer-digest");
    let prefix = &blobs[1][..7 + 12];
    let out = dockersave_ok(by_digest.path(), &["--insecure", "--layer", prefix, &image]);
    assert_eq!(
        sha256_file(&by_digest.path().join(out.stdout.trim()).join("layer.tar")),
        diffs[1]
    );
    // --registry-format: the blob as served.
    let raw = Scratch::new("layer-raw");
    let out = dockersave_ok(
        raw.path(),
        &["--insecure", "--layer", "1", "--registry-format", &image],
    );
    let file = raw.path().join(out.stdout.trim());
    assert_eq!(
        file.file_name().unwrap().to_str().unwrap(),
        format!("{}.tar.gz", &blobs[0][7..])
    );
    assert_eq!(sha256_file(&file), blobs[0]);
    // Errors name what exists.
    let out = dockersave(raw.path(), &["--insecure", "--layer", "7", &image]);
    assert_eq!(out.code, 5, "{out}");
    assert!(out.stderr.contains("3 layers"), "{out}");
}

#[test]
fn dlgrab_flow_with_this_docker_engine() {
    let image = format!("{}/layers", env("DS_REGISTRY"));
    let dir = Scratch::new("dlgrab");
    let exports = dir.path().join("exports");
    fs::create_dir(&exports).unwrap();
    let mut ids = Vec::new();
    for n in 1..=3 {
        let out = dockersave_ok(&exports, &["--insecure", "--layer", &n.to_string(), &image]);
        ids.push(out.stdout.trim().trim_start_matches("./").to_string());
    }
    // The layer directories alone, tarred as dlgrab's README shows: this engine's legacy
    // loader wants a `repositories` file (Docker 28 and later have no legacy loader at all).
    let tar = run("tar", &["-cf", "../alone.tar", "."], &exports, None);
    assert_eq!(tar.code, 0, "{tar}");
    let out = run(
        "docker",
        &["load", "-i", dir.path().join("alone.tar").to_str().unwrap()],
        Path::new("/"),
        None,
    );
    assert_ne!(out.code, 0, "the layer directories alone loaded: {out}");
    assert!(out.all().contains("repositories"), "{out}");
    // With a `repositories` file naming the top layer it loads, as a filesystem without the
    // image's config, and runs.
    let tag = format!("dlgrab-{}", std::process::id());
    fs::write(
        exports.join("repositories"),
        format!("{{\"{tag}\":{{\"latest\":\"{}\"}}}}\n", ids[2]),
    )
    .unwrap();
    let tar = run(
        "tar",
        &["-cf", "../with-repositories.tar", "."],
        &exports,
        None,
    );
    assert_eq!(tar.code, 0, "{tar}");
    docker(&[
        "load",
        "-i",
        dir.path().join("with-repositories.tar").to_str().unwrap(),
    ]);
    assert_eq!(
        docker_run(&format!("{tag}:latest"), &["/bin/ls", "/data"]),
        "b\ndir\n"
    );
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = run("git", args, dir, None);
    assert_eq!(out.code, 0, "git {args:?}: {out}");
    out.stdout
}

#[test]
fn git_layering_commits_each_layer_on_its_own_branch() {
    let dir = Scratch::new("git");
    let out = dockersave_ok(dir.path(), &rootfs_args(rich(), "repo", &["--git"]));
    let repo = dir.path().join("repo");
    let diffs = diff_ids(rich());
    let branches: Vec<String> = (0..3)
        .map(|i| format!("layer{}_{}", i + 1, &diffs[i][7..19]))
        .collect();
    assert!(
        out.stderr
            .contains(&format!("committed on {}", branches[2])),
        "{out}"
    );
    let listed = git(&repo, &["branch", "--format=%(refname:short)"]);
    assert_eq!(listed.lines().collect::<Vec<_>>(), branches);
    // One commit per layer, each on its branch, each the parent of the next.
    let log = git(&repo, &["log", "--all", "--format=%s|%D"]);
    assert_eq!(log.lines().count(), 3, "{log}");
    for (i, branch) in branches.iter().enumerate() {
        let subject = git(&repo, &["log", "-1", "--format=%s", branch]);
        assert!(
            subject.starts_with(&format!("layer {}/3 sha256:", i + 1)),
            "{subject}"
        );
        let body = git(&repo, &["log", "-1", "--format=%b", branch]);
        assert!(
            body.contains(&format!("created by: layer {} of rich", i + 1)),
            "{body}"
        );
    }
    let parent = git(&repo, &["rev-parse", &format!("{}^", branches[2])]);
    assert_eq!(parent, git(&repo, &["rev-parse", &branches[1]]));
    // The diff between two layer branches is that layer's changes (see images.py).
    let changes = |from: &str, to: &str| -> Vec<String> {
        git(&repo, &["diff", "--name-status", from, to])
            .lines()
            .map(|l| l.replace('\t', " "))
            .collect()
    };
    assert_eq!(
        changes(&branches[0], &branches[1]),
        [
            "D data/gone",
            "A data/link",
            "A data/opq/after",
            "M data/opq/keep",
            "D data/opq/old",
            "D data/opq/olddir/x",
            "A data/opq/sub/inner",
            "A data/replaced",
            "D data/replaced/x",
            "D data/tree/a",
            "D data/tree/sub/b",
            "M etc/passwd",
            "A ro/file2",
            "A usr/lib/added",
        ]
    );
    assert_eq!(
        changes(&branches[1], &branches[2]),
        ["A data/hl2", "A data/new", "A data/new-hl", "D data/shared"]
    );
    assert_eq!(
        git(&repo, &["status", "--porcelain"]),
        "",
        "everything is committed"
    );
    // The work tree is the --rootfs tree.
    dockersave_ok(dir.path(), &rootfs_args(rich(), "plain", &[]));
    let mut tree = snapshot(&repo);
    tree.retain(|path, _| path != ".git" && !path.starts_with(".git/"));
    let differences = compare(&tree, &snapshot(&dir.path().join("plain")), EVERYTHING);
    assert!(differences.is_empty(), "{}", differences.join("\n"));
}

#[test]
fn git_layering_keeps_the_image_out_of_the_repository() {
    let dir = Scratch::new("git-hostile");
    let canary = dir.path().join("canary");
    let image = push_built_image(
        "git-hook",
        &format!("hostile-git-{}", std::process::id()),
        Some(&canary),
    );
    let out = dockersave(dir.path(), &rootfs_args(&image, "repo", &["--git"]));
    assert_eq!(out.code, 6, "{out}");
    assert!(out.stderr.contains("/.git"), "{out}");
    assert!(!canary.exists(), "a hook from the image ran");
    assert!(!dir.path().join("repo").exists());
    // Without --git the same files are just files.
    dockersave_ok(dir.path(), &rootfs_args(&image, "plain", &[]));
    assert!(dir.path().join("plain/.git/hooks/pre-commit").is_file());
    // No git program: a clear error before anything is fetched.
    let out = dockersave_env(
        dir.path(),
        &rootfs_args(rich(), "nogit", &["--git"]),
        &[("PATH", "/nonexistent")],
        None,
    );
    assert_eq!(out.code, 7, "{out}");
    assert!(out.stderr.contains("needs the git program"), "{out}");
    assert!(!out.stderr.contains("Pulling"), "{out}");
}

#[test]
fn flatten_and_layer_with_tls_platform_resume_and_corruption() {
    let dir = Scratch::new("flatten-options");
    // TLS with the test CA, and the lower layers (fetched ahead into spools, as --flatten reads
    // from the top) resuming after a dropped connection.
    let tls = format!("{}/layers", env("DS_TLS_REGISTRY"));
    dockersave_ok(
        dir.path(),
        &["--cacert", &env("DS_TEST_CA"), "--flatten", "tls.tar", &tls],
    );
    let cut = Faults {
        cut_blobs_after: Some(3000),
        ..Faults::once()
    };
    let front = forwarder(&env("DS_REGISTRY"), cut.clone());
    let out = dockersave_ok(
        dir.path(),
        &[
            "--insecure",
            "--flatten",
            "cut.tar",
            &format!("{front}/layers"),
        ],
    );
    assert!(out.stderr.contains("resuming at byte 3000"), "{out}");
    assert_eq!(
        fs::read(dir.path().join("tls.tar")).unwrap(),
        fs::read(dir.path().join("cut.tar")).unwrap()
    );
    // A corrupted spooled layer fails verification and leaves nothing.
    let flip = forwarder(
        &env("DS_REGISTRY"),
        Faults {
            flip_blobs: true,
            ..Faults::default()
        },
    );
    let out = dockersave(
        dir.path(),
        &[
            "--insecure",
            "--flatten",
            "bad.tar",
            &format!("{flip}/layers"),
        ],
    );
    assert_eq!(out.code, 6, "{out}");
    assert!(out.stderr.contains("failed verification"), "{out}");
    assert_eq!(dir.names(), ["cut.tar", "tls.tar"]);
    // --layer picks from the index's platform.
    let multi = format!("{}/multi", env("DS_REGISTRY"));
    let out = dockersave_ok(
        dir.path(),
        &[
            "--insecure",
            "--platform",
            "linux/arm64",
            "--layer",
            "-1",
            &multi,
        ],
    );
    let arm64 = skopeo_digests(&multi, true, &["--override-arch", "arm64"]);
    let top = arm64.last().unwrap().clone();
    assert_eq!(
        sha256_file(&dir.path().join(out.stdout.trim()).join("layer.tar")),
        top
    );
}

#[test]
fn an_image_holding_the_same_layer_twice() {
    let image = push_built_image("repeated", "rootfs-repeated", None);
    let dir = Scratch::new("repeated");
    dockersave_ok(dir.path(), &rootfs_args(&image, "tree", &[]));
    assert_eq!(
        fs::read_to_string(dir.path().join("tree/a")).unwrap(),
        "second"
    );
    assert_eq!(fs::read_to_string(dir.path().join("tree/b")).unwrap(), "b");
    flatten_into(&image, &dir.path().join("flat"));
    assert_same(
        &dir.path().join("flat"),
        &dir.path().join("tree"),
        EVERYTHING,
        "repeated layers",
    );
    let out = dockersave_ok(dir.path(), &["--insecure", "--tarname", "r.tar", &image]);
    assert!(out.stdout.trim().ends_with("r.tar"), "{out}");
    let tag = format!("{image}:latest");
    load(
        &dir.path().join("r.tar"),
        Some(&tag),
        &config_digest(&tag, &[]),
    );
}
