//! `--initramfs`: the archive written by `nobody` boots Debian's kernel under
//! `qemu-system-x86_64`, whose `/init` (from the image) prints on the serial console the owners,
//! modes, device numbers, symlinks and hard links the kernel unpacked, gzip and xz; the same
//! image with an ARM busybox boots Debian's armmp kernel under `qemu-system-arm -M virt`; standard
//! output is a plain newc cpio that `cpio -t` lists with every directory before what it holds;
//! `cpio -i` of the rich image gives the `--rootfs` tree; `--init` and the warnings. The hostile
//! images go through `--initramfs` in `tests/hostile.rs`. Run through tests/run.sh.

mod common;

use common::*;
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// The image whose `/init` prints the facts (`images.py bootable`), pushed once per process.
fn bootable() -> &'static str {
    static IMAGE: OnceLock<String> = OnceLock::new();
    IMAGE.get_or_init(|| push_built_image("bootable", "initramfs-bootable", None))
}

fn rich() -> &'static str {
    static IMAGE: OnceLock<String> = OnceLock::new();
    IMAGE.get_or_init(|| push_built_image("rich", "initramfs-rich", None))
}

/// The newest `vmlinuz-*` in `boot`: Debian's kernel, installed (linux-image-cloud-amd64) or
/// unpacked by tests/run.sh (linux-image-armmp:armhf, build/packages).
fn kernel(boot: &Path) -> String {
    let mut kernels: Vec<String> = fs::read_dir(boot)
        .map(|d| {
            d.flatten()
                .map(|e| e.path().display().to_string())
                .collect()
        })
        .unwrap_or_default();
    kernels.retain(|k| k.contains("/vmlinuz-"));
    kernels.sort();
    let kernel = kernels.pop();
    kernel.unwrap_or_else(|| panic!("no kernel in {}: see build/packages", boot.display()))
}

/// Which machine boots: x86_64 (the kernel in /boot) or 32-bit ARM (`-M virt`, the armmp
/// kernel tests/run.sh unpacked into $DS_ARM_BOOT).
#[derive(Clone, Copy, PartialEq)]
enum Machine {
    X86_64,
    Arm,
}

/// Boots `initramfs` as `nobody` and returns what `/init` printed between its markers.
fn boot(initramfs: &Path, machine: Machine) -> Vec<String> {
    let (qemu, board, kernel, console) = match machine {
        Machine::X86_64 => (
            "qemu-system-x86_64",
            "pc",
            kernel(Path::new("/boot")),
            "ttyS0",
        ),
        Machine::Arm => {
            let tree = Path::new(&env("DS_ARM_BOOT")).join("boot");
            ("qemu-system-arm", "virt", kernel(&tree), "ttyAMA0")
        }
    };
    let append = format!("console={console} panic=-1 quiet");
    let out = run_as_nobody(
        "timeout",
        &[
            "300",
            qemu,
            "-M",
            board,
            "-m",
            "256",
            "-kernel",
            &kernel,
            "-initrd",
            initramfs.to_str().unwrap(),
            "-append",
            &append,
            "-nographic",
            "-no-reboot",
        ],
        initramfs.parent().unwrap(),
        &[],
    );
    let console = out.stdout.replace('\r', "");
    let facts: Vec<String> = console
        .lines()
        .skip_while(|l| !l.ends_with("FACTS-BEGIN"))
        .skip(1)
        .take_while(|l| *l != "FACTS-END")
        .map(str::to_string)
        .collect();
    assert!(
        console.contains("FACTS-END") && console.contains("reboot: Power down"),
        "the initramfs did not boot to its /init and power off:\n{out}"
    );
    facts
}

#[test]
fn written_by_nobody_it_boots_with_the_images_owners_devices_and_links() {
    let dir = Scratch::new("initramfs-boot");
    give_to_nobody(dir.path());
    let arm = push_built_image("bootable-arm", "initramfs-bootable-arm", None);
    for (file, extra, image, machine) in [
        ("boot.cpio.gz", None, bootable(), Machine::X86_64),
        ("boot.cpio.xz", Some("--xz"), bootable(), Machine::X86_64),
        ("arm.cpio.gz", None, &arm[..], Machine::Arm),
    ] {
        let mut args = vec!["--insecure", "--initramfs", file];
        args.extend(extra);
        args.push(image);
        let out = run_as_nobody(env!("CARGO_BIN_EXE_dockersave"), &args, dir.path(), &[]);
        assert_eq!(out.code, 0, "{out}");
        assert_eq!(out.stdout.trim(), file, "{out}");
        assert!(
            !out.stderr.contains("has no /init"),
            "the image has /init: {out}"
        );
        let path = dir.path().join(file);
        let bytes = fs::read(&path).unwrap();
        if extra.is_none() {
            assert_eq!(bytes[..2], [0x1f, 0x8b], "gzip");
        } else {
            // The kernel's xz decoder refuses xz's default CRC64.
            let listed = run("xz", &["--robot", "--list", file], dir.path(), None);
            assert!(listed.stdout.contains("\tCRC32\t"), "{listed}");
        }
        let facts = boot(&path, machine);
        let hard: Vec<&String> = facts.iter().filter(|f| f.starts_with("hard ")).collect();
        let others: Vec<&String> = facts.iter().filter(|f| !f.starts_with("hard ")).collect();
        assert_eq!(
            others,
            [
                "suid 1234:99 4755",
                "device character special file 2a:7",
                "symlink /bin/busybox",
                "etc 1234:99 751",
                "written by the upper layer",
            ],
            "{file}"
        );
        // /bin/sh (a link in busybox's layer), /bin/cat (one from the layer above) and
        // /bin/busybox: one file with three names. /init runs through /bin/sh.
        assert_eq!(hard.len(), 3, "{facts:?}");
        assert!(hard[0].starts_with("hard 3 "), "{facts:?}");
        assert!(hard.iter().all(|h| h == &hard[0]), "{facts:?}");
    }
}

/// `dockersave --initramfs - IMAGE`, its standard output as bytes.
fn to_stdout(image: &str, extra: &[&str]) -> Vec<u8> {
    let out = Command::new(env!("CARGO_BIN_EXE_dockersave"))
        .args(["--insecure", "--initramfs", "-"])
        .args(extra)
        .arg(image)
        .env("DOCKER_CONFIG", "/nonexistent/dockersave-tests")
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "--initramfs - failed: {stderr}");
    out.stdout
}

/// `cpio` (GNU) run on `archive` with `args`, in `cwd`.
fn cpio(archive: &[u8], args: &[&str], cwd: &Path) -> Output {
    let mut child = Command::new("cpio")
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cpio (build/packages)");
    let mut stdin = child.stdin.take().unwrap();
    let archive = archive.to_vec();
    let feed = std::thread::spawn(move || std::io::Write::write_all(&mut stdin, &archive));
    let out = child.wait_with_output().unwrap();
    feed.join().unwrap().unwrap();
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn standard_output_is_a_plain_cpio_with_directories_before_their_contents() {
    let dir = Scratch::new("initramfs-stdout");
    let plain = to_stdout(rich(), &[]);
    let listed = cpio(&plain, &["-t", "--quiet"], dir.path());
    assert_eq!(listed.code, 0, "{listed}");
    let names: Vec<&str> = listed.stdout.lines().collect();
    assert!(
        names.contains(&"etc/passwd") && names.contains(&"dev/null"),
        "{names:?}"
    );
    for (at, name) in names.iter().enumerate() {
        assert!(
            !name.starts_with('/') && !name.split('/').any(|c| c == ".."),
            "{name}"
        );
        if let Some((parent, _)) = name.rsplit_once('/') {
            assert!(
                names[..at].contains(&parent),
                "{name} comes before its directory:\n{}",
                listed.stdout
            );
        }
    }
    // Owners and devices as the image has them, whoever ran dockersave.
    let verbose = cpio(
        &plain,
        &["-t", "-v", "--quiet", "--numeric-uid-gid"],
        dir.path(),
    );
    let line = |name: &str| {
        let found = verbose
            .stdout
            .lines()
            .find(|l| l.ends_with(&format!(" {name}")));
        found
            .unwrap_or_else(|| panic!("{name}:\n{verbose}"))
            .to_string()
    };
    assert!(
        line("home/user/notes").starts_with("-rw-------   1 1000     1000"),
        "{verbose}"
    );
    assert!(line("bin/su").starts_with("-rwsr-xr-x"), "{verbose}");
    assert!(line("dev/loop0").contains(" 7,   0 "), "{verbose}");
    // The file form with `.cpio` is the same plain archive; `--gzip` to stdout compresses.
    dockersave_ok(
        dir.path(),
        &["--insecure", "--initramfs", "rich.cpio", rich()],
    );
    assert!(
        fs::read(dir.path().join("rich.cpio")).unwrap() == plain,
        "the same bytes"
    );
    let gzipped = to_stdout(rich(), &["--gzip"]);
    assert_eq!(gzipped[..2], [0x1f, 0x8b]);
}

#[test]
fn cpio_unpacks_it_into_the_rootfs_tree() {
    let dir = Scratch::new("initramfs-tree");
    dockersave_ok(dir.path(), &["--insecure", "--rootfs", "rootfs", rich()]);
    let out = dockersave_ok(
        dir.path(),
        &["--insecure", "--initramfs", "rich.cpio", rich()],
    );
    // The rich image has a file capability and a user xattr: newc cannot carry them.
    assert!(out.stderr.contains("2 files' extended attributes"), "{out}");
    let unpacked = dir.path().join("unpacked");
    fs::create_dir(&unpacked).unwrap();
    let archive = fs::read(dir.path().join("rich.cpio")).unwrap();
    let extracted = cpio(&archive, &["-i", "-d", "-m", "--quiet"], &unpacked);
    assert_eq!(extracted.code, 0, "{extracted}");
    let without_xattrs = |dir: &Path| {
        let mut tree = snapshot(dir);
        tree.values_mut().for_each(|node| node.xattrs.clear());
        tree
    };
    let everything = Compare {
        owners: true,
        hard_links: true,
    };
    let rootfs = without_xattrs(&dir.path().join("rootfs"));
    let differences = compare(&without_xattrs(&unpacked), &rootfs, everything);
    assert!(differences.is_empty(), "{}", differences.join("\n"));
}

#[test]
fn init_is_added_on_request_and_missed_aloud() {
    let dir = Scratch::new("initramfs-init");
    let busybox = format!("{}/busybox", env("DS_REGISTRY"));
    let out = dockersave_ok(
        dir.path(),
        &["--insecure", "--initramfs", "a.cpio", &busybox],
    );
    let warned: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.contains("no /init"))
        .collect();
    assert_eq!(warned.len(), 1, "{out}");
    assert!(
        warned[0].starts_with("warning: ") && warned[0].contains("--init PATH"),
        "{out}"
    );
    let inits = |file: &str| {
        let archive = fs::read(dir.path().join(file)).unwrap();
        let listed = cpio(&archive, &["-t", "-v", "--quiet"], dir.path());
        let lines = listed.stdout.lines();
        lines
            .filter(|l| l.contains(" init"))
            .map(|l| l.split_once(" init").unwrap().1.to_string())
            .collect::<Vec<_>>()
    };
    // busybox's command is /bin/sh; the bootable image's own /init gives way to --init's.
    let out = dockersave_ok(
        dir.path(),
        &[
            "--insecure",
            "--initramfs",
            "b.cpio",
            "--init",
            "entrypoint",
            &busybox,
        ],
    );
    assert!(!out.stderr.contains("no /init"), "{out}");
    assert_eq!(inits("b.cpio"), [" -> /bin/sh"]);
    let args = [
        "--insecure",
        "--initramfs",
        "c.cpio",
        "--init",
        "/bin/busybox",
    ];
    dockersave_ok(dir.path(), &[&args[..], &[bootable()]].concat());
    assert_eq!(inits("c.cpio"), [" -> /bin/busybox"]);
    for (args, needle) in [
        (
            &["--initramfs", "x.cpio", "--init", "sbin/init"][..],
            "absolute path",
        ),
        (&["--init", "/sbin/init"], "--init goes with --initramfs"),
        (&["--initramfs", "x.cpio", "--xz"], "ends in .cpio"),
        (&["--initramfs", "x", "--rootfs", "r"], "choose one of"),
    ] {
        let out = dockersave(dir.path(), &[args, &[&busybox[..]]].concat());
        assert_eq!(out.code, 2, "{args:?}: {out}");
        assert!(out.stderr.contains(needle), "{args:?}: {out}");
    }
}

#[test]
fn hard_link_counts_cost_no_memory_and_are_capped() {
    let dir = Scratch::new("initramfs-links");
    let binary = release_binary();
    // 100,000 links to one file: one record, whatever the number of links.
    let one = push_built_image("links-to-one", "initramfs-links-to-one", None);
    let args = ["--insecure", "-q", "--initramfs", "one.cpio", &one];
    let (out, peak_kib, _) = run_measured(&binary, &args, dir.path(), false);
    assert_eq!(out.code, 0, "{out}");
    println!("100,000 links: peak RSS {peak_kib} KiB");
    // docs/design.md gives 3.6 MiB (for 300,000 links); the margin is 0.9 MiB.
    assert!(
        peak_kib < 4 * 1024 + 512,
        "peak RSS {peak_kib} KiB for 100,000 links"
    );
    let archive = fs::read(dir.path().join("one.cpio")).unwrap();
    let listed = cpio(&archive, &["-t", "--quiet"], dir.path());
    assert_eq!(
        listed.stdout.lines().count(),
        100_002,
        "the root, the file, its links"
    );
    // 70,000 files with a link each: over the cap, refused on one line, nothing left.
    let many = push_built_image("linked-files", "initramfs-linked-files", None);
    let args = ["--insecure", "-q", "--initramfs", "many.cpio", &many];
    let (out, peak_kib, _) = run_measured(&binary, &args, dir.path(), false);
    assert_eq!(out.code, 6, "{out}");
    assert!(
        out.stderr.contains("more than 65536 hard-linked files"),
        "{out}"
    );
    assert_eq!(out.stderr.lines().count(), 1, "{out}");
    assert!(peak_kib < 16 * 1024, "peak RSS {peak_kib} KiB at the cap");
    assert!(!dir.path().join("many.cpio").exists());
}
