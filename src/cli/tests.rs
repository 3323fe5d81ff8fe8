use super::*;

fn command(args: &[&str]) -> Result<Command, Error> {
    let argv = std::iter::once("dockersave")
        .chain(args.iter().copied())
        .map(OsString::from);
    parse(
        argv,
        |name| match name {
            "HOME" => Some("/home/me".into()),
            "HTTPS_PROXY" => Some("http://proxy.example:3128".into()),
            _ => None,
        },
        read_list,
    )
}

/// The lists `--images-from` tests name: `list.txt`, `bad.txt`, `empty.txt`; others are missing.
fn read_list(path: &Path) -> std::io::Result<String> {
    match path.to_str() {
        Some("list.txt") => Ok("# site images\n\ndebian:12\n  alpine  # the small one\nr.example:5000/team/app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n".into()),
        Some("bad.txt") => Ok("debian\nNot Valid\n".into()),
        Some("empty.txt") => Ok("# nothing\n\n".into()),
        Some("one-registry.txt") => Ok("r.example:5000/a\nr.example:5000/b:2\n".into()),
        Some("huge.txt") => Ok("a\n".repeat(crate::limits::MAX_LISTED_IMAGES + 1)),
        _ => Err(std::io::Error::from(std::io::ErrorKind::NotFound)),
    }
}

fn pull(args: &[&str]) -> Result<pull::Options, Error> {
    match command(args)? {
        Command::Pull(_, options) => Ok(*options),
        other => panic!("{other:?}"),
    }
}

fn session(args: &[&str]) -> Session {
    match command(args).unwrap() {
        Command::Pull(session, _) | Command::Inspect(session, _) | Command::Push(session, _) => {
            session
        }
        other => panic!("{other:?}"),
    }
}

fn inspect(args: &[&str]) -> Inspect {
    match command(args).unwrap() {
        Command::Inspect(_, options) => options.kind,
        other => panic!("{other:?}"),
    }
}

fn form(options: pull::Options) -> ArchiveForm {
    match options.output {
        Output::Archive(form) => form,
        other => panic!("{other:?}"),
    }
}

#[test]
fn defaults() {
    let o = pull(&["debian"]).unwrap();
    assert_eq!(o.image.repository, "library/debian");
    assert!(!o.no_rm && !o.http.insecure);
    assert_eq!(
        o.platform, None,
        "the machine's platform is read when the pull needs it"
    );
    assert_eq!(o.working_dir, PathBuf::from("."));
    assert_eq!(
        session(&["debian"]).docker_config,
        Some(PathBuf::from("/home/me/.docker"))
    );
    assert_eq!(
        o.http.proxy.for_target("https", "registry.example"),
        Some("http://proxy.example:3128")
    );
    assert!(o.http.ca_files.is_empty());
}

#[test]
fn flags() {
    let o = pull(&[
        "--insecure",
        "--user",
        "u",
        "--password=p",
        "--arch",
        "arm/v7",
        "--working-dir",
        "/tmp",
        "--layers-dir",
        "d",
        "--tarname",
        "x.tar",
        "--no-tar",
        "127.0.0.1:5000/a:b",
    ])
    .unwrap();
    assert!(o.http.insecure && !o.no_rm);
    assert_eq!(o.platform.as_ref().unwrap().to_string(), "linux/arm/v7");
    assert_eq!(o.layers_dir.as_deref(), Some("d"));
    let f = form(o);
    assert!(f.no_tar);
    assert_eq!(f.tarname.as_deref(), Some("x.tar"));
    let login = session(&["--user", "u", "--password=p", "x"]).login;
    assert_eq!(
        (login.user.as_deref(), login.password.as_deref()),
        (Some("u"), Some("p"))
    );
    assert_eq!(
        pull(&["--platform", "linux/arm64", "x"])
            .unwrap()
            .platform
            .unwrap()
            .to_string(),
        "linux/arm64"
    );
    assert!(pull(&["--no-rm", "x"]).unwrap().no_rm);
    let o = pull(&[
        "--cacert",
        "/a.pem",
        "--proxy",
        "http://p:1",
        "--user",
        "u",
        "--password-stdin",
        "x",
    ])
    .unwrap();
    assert_eq!(o.http.ca_files, [PathBuf::from("/a.pem")]);
    assert!(
        session(&["--user", "u", "--password-stdin", "x"])
            .login
            .password_stdin
    );
    assert_eq!(
        o.http.proxy.for_target("http", "127.0.0.1:5000"),
        Some("http://p:1")
    );
}

#[test]
fn outputs() {
    assert!(matches!(pull(&["x"]).unwrap().output, Output::Archive(_)));
    assert_eq!(
        pull(&["--rootfs", "/srv/r", "--git", "--force", "--no-rm", "x"])
            .unwrap()
            .output,
        Output::Rootfs {
            dir: PathBuf::from("/srv/r"),
            force: true,
            git: true
        }
    );
    assert_eq!(
        pull(&["--flatten", "-", "x"]).unwrap().output,
        Output::Flatten(PathBuf::from("-"))
    );
    assert_eq!(
        pull(&["--layer", "-1", "--registry-format", "x"])
            .unwrap()
            .output,
        Output::Layer {
            which: LayerChoice::Position(-1),
            registry_format: true
        }
    );
}

#[test]
fn archive_forms() {
    assert_eq!(
        form(pull(&["x"]).unwrap()),
        ArchiveForm {
            layout: Layout::Docker,
            compressed_layers: false,
            compression: Compression::None,
            output: None,
            tarname: None,
            no_tar: false,
            gunzip: false,
            have: Vec::new(),
        }
    );
    let o = pull(&[
        "-o",
        "-",
        "--format",
        "legacy",
        "--compressed",
        "--xz",
        "--gunzip",
        "a",
        "b:1",
    ])
    .unwrap();
    assert_eq!(o.more_images.len(), 1);
    assert_eq!(o.more_images[0].tag.as_deref(), Some("1"));
    let f = form(o);
    assert_eq!(f.output, Some(PathBuf::from("-")));
    assert_eq!(f.layout, Layout::Legacy);
    assert!(f.compressed_layers && f.gunzip);
    assert_eq!(f.compression, Compression::Xz);
    assert_eq!(
        form(pull(&["--output", "f.tar.gz", "--gzip", "a"]).unwrap()).compression,
        Compression::Gzip
    );
}

#[test]
fn inspection() {
    for (flag, kind) in [
        ("--tags", Inspect::Tags),
        ("--sha", Inspect::Sha),
        ("--platforms", Inspect::Platforms),
        ("--metadata", Inspect::Metadata { pretty: false }),
    ] {
        assert_eq!(inspect(&[flag, "x"]), kind);
    }
    assert_eq!(
        inspect(&["--pretty", "--metadata", "x"]),
        Inspect::Metadata { pretty: true }
    );
}

#[test]
fn usage_errors() {
    for (args, needle) in [
        (&[][..], "missing IMAGE"),
        (&["--rootfs", "d", "a", "b"], "one IMAGE"),
        (&["--format", "oci", "a"], "docker or legacy"),
        (&["--gzip", "--xz", "a"], "one of --gzip"),
        (&["-o", "x.tar", "--tarname", "y.tar", "a"], "give one"),
        (&["--no-tar", "--gzip", "a"], "--no-tar"),
        (&["-o", "-", "--no-rm", "a"], "--no-rm"),
        (&["--flatten", "-", "--compressed", "a"], "--compressed"),
        (&["--layer", "1", "-o", "f", "a"], "--output"),
        (&["--bogus", "a"], "bogus"),
        (&["--password", "p", "a"], "need --user"),
        (&["--password-stdin", "a"], "need --user"),
        (
            &["--user", "u", "--password", "p", "--password-stdin", "a"],
            "once",
        ),
        (&["--ilogin", "--user", "u", "a"], "--ilogin"),
        (
            &["--copy-to", "r/b", "--with-referrers", "--verify-key", "k.pub", "a"],
            "nothing checks its referrers",
        ),
        (&["--with-referrers", "a"], "goes with --copy-to"),
        (&["--artifact-type", "t", "a"], "goes with --artifact"),
        (&["--artifact", "d", "--layer", "1", "a"], "--artifact - writes"),
        (&["--platform", "linux", "a"], "os/arch"),
        (&["--retries", "many", "a"], "whole number"),
        (&["--timeout", "0", "a"], "whole number"),
        (&["--tarname", "../x.tar", "a"], "plain file name"),
        (&["--user"], "missing argument"),
        (&["--rootfs", "d", "--flatten", "-", "a"], "choose one"),
        (&["--force", "a"], "--rootfs"),
        (&["--git", "--flatten", "f", "a"], "--rootfs"),
        (&["--registry-format", "a"], "--layer"),
        (&["--layer", "0", "a"], "layer number"),
        (&["--layer", "x", "a"], "layer number"),
        (&["--rootfs", "d", "--tarname", "x.tar", "a"], "--tarname"),
        (&["--flatten", "-", "--no-rm", "a"], "--no-rm"),
        (&["--rootfs", "", "a"], "needs a path"),
        (&["--tags", "--sha", "a"], "one of"),
        (&["--pretty", "a"], "--metadata"),
        (&["--tags", "--rootfs", "d", "a"], "choose one"),
        (&["--sha", "--tarname", "x.tar", "a"], "--tarname"),
        (&["-q", "-v", "a"], "contradict"),
        (&["--images-from", "list.txt", "a"], "no IMAGE besides"),
        (&["--images-from", "empty.txt"], "names no image"),
        (&["--images-from", "huge.txt"], "names more than 10000 images"),
        (
            &["--images-from", "list.txt", "--user", "me", "--password", "pw"],
            "--user goes to one registry, and the image list names two: docker.io (its first image) and r.example:5000 (list.txt line 5)",
        ),
        (
            &["--images-from", "missing.txt"],
            "cannot read the image list missing.txt",
        ),
        (
            &["--images-from", "bad.txt"],
            "bad.txt line 2: invalid image reference",
        ),
        (
            &["--images-from", "list.txt", "--rootfs", "d"],
            "--images-from puts several",
        ),
        (
            &["--images-from", "list.txt", "--push", "a.tar"],
            "--images-from names images",
        ),
        (
            &["--platform", "all", "--rootfs", "d", "a"],
            "keeps several platforms",
        ),
        (
            &[
                "--platform",
                "linux/amd64,linux/arm64",
                "--flatten",
                "-",
                "a",
            ],
            "keeps several platforms",
        ),
        (
            &["--platform", "all", "--format", "legacy", "a"],
            "has no index",
        ),
        (
            &["--platform", "linux/amd64,linux/amd64", "a"],
            "listed twice",
        ),
        (&["--platform", "linux/amd64,linux", "a"], "os/arch"),
        (
            &["--copy-to", "r.example/b", "a", "b"],
            "list them in --images-from",
        ),
        (
            &["--copy-to", "r.example/b", "--push", "x.tar", "a"],
            "give one of them",
        ),
        (
            &["--copy-to", "r.example/b", "--rootfs", "d", "a"],
            "write to a registry",
        ),
        (
            &["--copy-to", "r.example/b", "--compressed", "a"],
            "--compressed",
        ),
        (
            &["--copy-to", "debian", "--images-from", "list.txt"],
            "HOST[:PORT][/PREFIX]",
        ),
    ] {
        let err = command(args).unwrap_err();
        assert!(matches!(err, Error::Usage(_)), "{args:?}: {err:?}");
        assert!(err.to_string().contains(needle), "{args:?}: {err}");
    }
    assert!(matches!(
        command(&["Bad"]).unwrap_err(),
        Error::Reference { .. }
    ));
}

#[test]
fn images_from_a_list() {
    let o = pull(&["--images-from", "list.txt"]).unwrap();
    assert_eq!(o.image.repository, "library/debian");
    let more: Vec<String> = o.more_images.iter().map(|r| r.repository.clone()).collect();
    assert_eq!(more, ["library/alpine", "team/app"]);
    assert_eq!(
        o.listed_at,
        ["list.txt line 3", "list.txt line 4", "list.txt line 5"]
    );
    // --user with a list of one registry's images.
    let args = [
        "--images-from",
        "one-registry.txt",
        "--user",
        "me",
        "--password",
        "pw",
    ];
    let o = pull(&args).unwrap();
    assert_eq!(o.more_images[0].registry, "r.example:5000");
}

#[test]
fn several_platforms() {
    let o = pull(&["--platform", "all", "a"]).unwrap();
    assert_eq!(o.platforms, Some(Platforms::All));
    assert_eq!(o.platform, None, "manifest.json names this machine's");
    let o = pull(&["--platform", "linux/arm64, linux/arm/v7", "a"]).unwrap();
    assert_eq!(o.platform.unwrap().to_string(), "linux/arm64");
    assert!(matches!(o.platforms, Some(Platforms::List(l)) if l.len() == 2));
    // The last --platform decides.
    let o = pull(&["--platform", "all", "--platform", "linux/arm64", "a"]).unwrap();
    assert_eq!(o.platforms, None);
}

#[test]
fn copies() {
    let Command::Copy(_, o) = command(&["--copy-to", "r.example:5000/x:1", "a"]).unwrap() else {
        panic!()
    };
    assert_eq!(o.destination.to_string(), "r.example:5000/x:1");
    assert_eq!(o.images.len(), 1);
    assert!(o.listed_at.is_empty());
    let Command::Copy(_, o) = command(&[
        "--copy-to",
        "r.example:5000/mirror",
        "--images-from",
        "list.txt",
    ])
    .unwrap() else {
        panic!()
    };
    assert_eq!(o.destination.repository, "mirror");
    assert_eq!(o.images.len(), 3);
}

#[test]
fn help_lists_every_flag() {
    for flag in [
        "--password-stdin",
        "--cache-dir",
        "--retries",
        "--timeout",
        "--cacert",
        "--proxy",
        "--insecure",
        "--user",
        "--password",
        "--ilogin",
        "--no-tar",
        "--no-rm",
        "--working-dir",
        "--layers-dir",
        "--tarname",
        "--platform",
        "--arch",
        "--help",
        "--version",
        "--rootfs",
        "--force",
        "--git",
        "--flatten",
        "--layer",
        "--registry-format",
        "--tags",
        "--sha",
        "--metadata",
        "--pretty",
        "--platforms",
        "--quiet",
        "--verbose",
        "--output",
        "--format",
        "--compressed",
        "--gzip",
        "--xz",
        "--gunzip",
    ] {
        assert!(help().contains(flag), "{flag}");
    }
}

#[test]
fn push_is_its_own_command() {
    let Command::Push(session, options) =
        command(&["--push", "a.tar", "-q", "127.0.0.1:5000/x:1"]).unwrap()
    else {
        panic!("not a push")
    };
    assert_eq!(session.verbosity, Verbosity::Quiet);
    assert_eq!(options.source, PathBuf::from("a.tar"));
    assert_eq!(options.choose, Choose::Only);
    assert_eq!(options.destination.repository, "x");
    assert_eq!(
        options.record,
        Some(PathBuf::from("/home/me/.cache/dockersave"))
    );
    let Command::Push(_, options) =
        command(&["--push", "d", "--all", "reg.example:5000/team"]).unwrap()
    else {
        panic!("not a push")
    };
    assert_eq!(options.choose, Choose::All);
    assert_eq!(options.destination.registry, "reg.example:5000");
    assert_eq!(options.destination.repository, "team");
    let Command::Push(_, options) =
        command(&["--push", "d", "--image", "a:1", "reg.example/b"]).unwrap()
    else {
        panic!("not a push")
    };
    assert_eq!(options.choose, Choose::Image("a:1".into()));
}

#[test]
fn help_and_version_win_over_what_follows() {
    assert!(matches!(command(&["-h", "--bogus"]), Ok(Command::Help)));
    assert!(matches!(command(&["a", "--version"]), Ok(Command::Version)));
}

/// `docs/dockersave.1` and `docs/dockersave.bash` are made from the flag items; a flag added
/// without them fails here. `DOCKERSAVE_WRITE_DOCS=1 cargo test --lib docs_are_current`
/// writes them.
#[test]
fn docs_are_current() {
    let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
    for (file, made) in [
        ("dockersave.1", help::man_page(env!("CARGO_PKG_VERSION"))),
        ("dockersave.bash", help::bash_completion()),
    ] {
        let path = docs.join(file);
        if std::env::var_os("DOCKERSAVE_WRITE_DOCS").is_some() {
            std::fs::write(&path, &made).unwrap();
        }
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            on_disk == made,
            "docs/{file} is not what the flag items make; run DOCKERSAVE_WRITE_DOCS=1 cargo test --lib docs_are_current"
        );
    }
}

#[test]
fn mirrors_and_certs_dirs() {
    let o = pull(&["debian"]).unwrap();
    assert_eq!(
        o.mirrors,
        Source::DaemonJson(PathBuf::from("/etc/docker/daemon.json"))
    );
    assert_eq!(
        o.http.certs_dirs,
        [
            "/home/me/.config/containers/certs.d",
            "/etc/docker/certs.d",
            "/etc/containers/certs.d"
        ]
        .map(PathBuf::from)
    );
    let o = pull(&[
        "--mirror",
        "https://a",
        "--mirror",
        "q.example=http://b:5000",
        "--certs-d",
        "/mine",
        "debian",
    ])
    .unwrap();
    let Source::Given(mirrors) = o.mirrors else {
        panic!("{:?}", o.mirrors)
    };
    let bases: Vec<(&str, &str)> = mirrors
        .iter()
        .map(|m| (m.registry.as_str(), m.base.as_str()))
        .collect();
    assert_eq!(
        bases,
        [("docker.io", "https://a"), ("q.example", "http://b:5000")]
    );
    assert_eq!(o.http.certs_dirs[0], PathBuf::from("/mine"));
    assert_eq!(
        pull(&["--no-mirror", "debian"]).unwrap().mirrors,
        Source::Off
    );
    for (args, problem) in [
        (
            &["--mirror", "ftp://m", "debian"][..],
            "--mirror: the mirror",
        ),
        (
            &["--mirror", "https://m", "--no-mirror", "debian"],
            "contradict",
        ),
        (
            &["--push", "a.tar", "--mirror", "https://m", "r.example/x"],
            "--push always goes",
        ),
        (
            &["--push", "a.tar", "--no-mirror", "r.example/x"],
            "--push always goes",
        ),
    ] {
        let error = command(args).unwrap_err().to_string();
        assert!(error.contains(problem), "{args:?}: {error}");
    }
    let with = |name: &'static str, value: &'static str| {
        let argv = ["dockersave", "debian"].map(OsString::from);
        parse(
            argv,
            move |n| (n == name).then(|| value.to_string()),
            read_list,
        )
    };
    let Ok(Command::Pull(_, o)) = with("DOCKERSAVE_MIRRORS", "https://a, https://b") else {
        panic!()
    };
    assert!(matches!(&o.mirrors, Source::Given(m) if m.len() == 2));
    let Ok(Command::Pull(_, o)) = with("DOCKERSAVE_MIRRORS", "") else {
        panic!()
    };
    assert_eq!(o.mirrors, Source::Off);
    let Ok(Command::Pull(_, o)) = with("DOCKERSAVE_DAEMON_JSON", "/srv/daemon.json") else {
        panic!()
    };
    assert_eq!(
        o.mirrors,
        Source::DaemonJson(PathBuf::from("/srv/daemon.json"))
    );
    let Ok(Command::Pull(_, o)) = with("DOCKERSAVE_CERTS_D", "/var/certs.d") else {
        panic!()
    };
    assert_eq!(o.http.certs_dirs[0], PathBuf::from("/var/certs.d"));
    let bad = with("DOCKERSAVE_MIRRORS", "https://m/path").unwrap_err();
    assert!(bad.to_string().starts_with("DOCKERSAVE_MIRRORS: "), "{bad}");
}

#[test]
fn sizes_take_binary_suffixes() {
    use super::flags::parse_size;
    assert_eq!(parse_size("0"), Some(0));
    assert_eq!(parse_size("1048576"), Some(1 << 20));
    assert_eq!(parse_size("500M"), Some(500 << 20));
    assert_eq!(parse_size("2G"), Some(2 << 30));
    assert_eq!(parse_size("2GiB"), Some(2 << 30));
    assert_eq!(parse_size("3KB"), Some(3 << 10));
    for bad in ["", "M", "1.5G", "-1", "2X", "99999999T"] {
        assert_eq!(parse_size(bad), None, "{bad:?}");
    }
}
