//! The command line: argv → one `Command`, which says what the run is (a pull to some output,
//! an inspection, a push, help or the version) and carries that command's own options.
//!
//! Parsing only. `flags` holds every flag as one item; this module decides what the flags given
//! mean together, with the flags that do not go together in one table (`conflicts`). Nothing
//! below `main` reads argv or the environment, and nothing here touches the network or the
//! disk; prompting for credentials happens in `main`.

mod flags;
mod help;

pub use help::help;

use crate::copy;
use crate::error::Error;
use crate::manifest::{LayerChoice, Platform, Platforms};
use crate::progress::Verbosity;
use crate::pull::inspect::{self, Inspect};
use crate::pull::{self, ArchiveForm, Init, Initramfs, Output};
use crate::push::{self, Choose};
use crate::reference::Reference;
use crate::registry::http::Settings;
use crate::registry::mirrors::{self, Mirror, Source};
use crate::registry::proxy::{self, ProxySettings};
use crate::sinks::archive::Compression;
use crate::sinks::layout::Layout;
use lexopt::prelude::*;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What a run is.
#[derive(Debug)]
pub enum Command {
    /// An image (or several, into one archive) to an archive, a root filesystem, a flattened
    /// tar or one layer.
    Pull(Session, Box<pull::Options>),
    /// `--tags`, `--sha`, `--metadata`, `--platforms`: what the registry says, on stdout.
    Inspect(Session, Box<inspect::Options>),
    /// `--push SOURCE`: an archive's images into a registry.
    Push(Session, Box<push::Options>),
    /// `--copy-to DEST`: images from their registry into another, with nothing on disk.
    Copy(Session, Box<copy::Options>),
    /// `--artifact DIR|-`: an OCI artifact's files.
    Artifact(Session, Box<crate::artifact::Options>),
    Help,
    Version,
}

/// What every command that talks to a registry shares and `main` uses: how to log in, and how
/// much to say.
#[derive(Debug)]
pub struct Session {
    pub login: Login,
    /// Where Docker's `config.json` is looked for (`$DOCKER_CONFIG`, else `~/.docker`).
    pub docker_config: Option<PathBuf>,
    /// `--quiet`, `--verbose`.
    pub verbosity: Verbosity,
}

/// The credentials asked for on the command line (without them, Docker's stored ones).
#[derive(Debug, Default)]
pub struct Login {
    pub user: Option<String>,
    pub password: Option<String>,
    pub password_stdin: bool,
    pub ilogin: bool,
}

/// What the command line gave, each flag checked on its own; `build` decides what it means.
#[derive(Debug, Default)]
pub struct Given {
    help: bool,
    version: bool,
    names: Vec<String>,
    insecure: bool,
    ca_files: Vec<PathBuf>,
    proxy: Option<String>,
    mirrors: Vec<Mirror>,
    no_mirror: bool,
    certs_dirs: Vec<PathBuf>,
    verify_keys: Vec<PathBuf>,
    retries: Option<u32>,
    timeout: Option<u32>,
    user: Option<String>,
    password: Option<String>,
    password_stdin: bool,
    ilogin: bool,
    cache_dir: Option<PathBuf>,
    cache_max: Option<u64>,
    platform: Option<Platform>,
    platforms: Option<Platforms>,
    images_from: Option<PathBuf>,
    copy_to: Option<String>,
    working_dir: Option<PathBuf>,
    layers_dir: Option<String>,
    output: Option<PathBuf>,
    tarname: Option<String>,
    layout: Option<Layout>,
    compressed: bool,
    have: Vec<String>,
    gzip: bool,
    xz: bool,
    gunzip: bool,
    no_tar: bool,
    no_rm: bool,
    rootfs: Option<PathBuf>,
    force: bool,
    git: bool,
    flatten: Option<PathBuf>,
    initramfs: Option<PathBuf>,
    init: Option<String>,
    layer: Option<LayerChoice>,
    registry_format: bool,
    push: Option<PathBuf>,
    artifact: Option<PathBuf>,
    artifact_type: Option<String>,
    with_referrers: bool,
    image: Option<String>,
    all: bool,
    inspect: Vec<Inspect>,
    pretty: bool,
    quiet: bool,
    verbose: bool,
}

/// Parses `args` (with the program name first). `env` is the process environment and
/// `read_list` reads the file `--images-from` names (`-`: standard input), passed in so that
/// nothing else reads them.
pub fn parse(
    args: impl IntoIterator<Item = OsString>,
    env: impl Fn(&str) -> Option<String>,
    read_list: impl Fn(&Path) -> std::io::Result<String>,
) -> Result<Command, Error> {
    let mut parser = lexopt::Parser::from_iter(args);
    let mut given = Given::default();
    while let Some(arg) = parser.next().map_err(usage)? {
        let flag = match &arg {
            Long(name) => flags::find(Some(name), None),
            Short(letter) => flags::find(None, Some(*letter)),
            Value(_) => None,
        };
        let Some(flag) = flag else {
            match arg {
                Value(value) => given.names.push(
                    value
                        .into_string()
                        .map_err(|_| Error::Usage("the image name is not valid UTF-8".into()))?,
                ),
                _ => return Err(usage(arg.unexpected())),
            }
            continue;
        };
        let raw = match flag.value {
            Some(_) => parser.value().map_err(usage)?,
            None => OsString::new(),
        };
        (flag.set)(
            &mut given,
            flags::Value {
                flag: flag.long,
                raw,
            },
        )?;
        if given.help {
            return Ok(Command::Help);
        }
        if given.version {
            return Ok(Command::Version);
        }
    }
    build(given, &env, &read_list)
}

/// What kind of run the flags ask for, before its options are put together.
enum Kind {
    Archive,
    Rootfs(PathBuf),
    Flatten(PathBuf),
    Initramfs(PathBuf),
    Layer(LayerChoice),
    Inspect(Inspect),
    Push(PathBuf),
    Copy(String),
    Artifact(PathBuf),
}

fn build(
    mut given: Given,
    env: &dyn Fn(&str) -> Option<String>,
    read_list: &dyn Fn(&Path) -> std::io::Result<String>,
) -> Result<Command, Error> {
    let destination = given.push.is_some() && given.all;
    let listed = match &given.images_from {
        Some(file) => Some(listed_images(file, &given.names, read_list)?),
        None => None,
    };
    let (image, more_images, listed_at) = match listed {
        Some((mut images, at)) => {
            if given.user.is_some() || given.ilogin {
                one_registry(&images, &at)?;
            }
            let first = images.remove(0);
            (first, images, at)
        }
        None => {
            let (image, more) = references(&given.names, destination)?;
            (image, more, Vec::new())
        }
    };
    if let Some((feature, flag)) = lacking(&given) {
        return Err(crate::features::missing(feature, flag));
    }
    let kind = kind(&mut given)?;
    let several = !more_images.is_empty() || given.images_from.is_some();
    if let Some(problem) = conflicts(&given, &kind, several)
        .into_iter()
        .find_map(|(given, problem)| given.then_some(problem))
    {
        return Err(Error::Usage(problem.into()));
    }
    let session = session(&mut given, env);
    let http = settings(&mut given, env);
    let mirrors = mirror_source(&mut given, env)?;
    let cache_dir = given.cache_dir.take().or_else(|| {
        env("DOCKERSAVE_CACHE")
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
    });
    let cache_max = match given.cache_max {
        Some(max) => Some(max),
        None => match env("DOCKERSAVE_CACHE_MAX").filter(|v| !v.is_empty()) {
            Some(text) => Some(flags::parse_size(&text).ok_or_else(|| {
                Error::Usage(format!(
                    "DOCKERSAVE_CACHE_MAX takes a size such as 500M, 2G or 1048576, not {text:?}"
                ))
            })?),
            None => None,
        },
    };
    if given.cache_max.is_some() && cache_dir.is_none() {
        return Err(Error::Usage(
            "--cache-max limits the blob cache: give --cache-dir DIR (or DOCKERSAVE_CACHE) too"
                .into(),
        ));
    }
    let output = match kind {
        Kind::Inspect(kind) => {
            let options = inspect::Options {
                image,
                http,
                mirrors,
                verify_keys: given.verify_keys,
                platform: given.platform,
                kind,
            };
            return Ok(Command::Inspect(session, Box::new(options)));
        }
        Kind::Push(source) => {
            let options = push::Options {
                destination: image,
                http,
                source,
                choose: match (given.image, given.all) {
                    (Some(name), _) => Choose::Image(name),
                    (None, true) => Choose::All,
                    (None, false) => Choose::Only,
                },
                record: push::record_dir(cache_dir.as_deref(), env),
                verify_keys: given.verify_keys,
                platforms: given
                    .platforms
                    .or_else(|| given.platform.map(|p| Platforms::List(vec![p]))),
                have: std::mem::take(&mut given.have),
            };
            return Ok(Command::Push(session, Box::new(options)));
        }
        Kind::Copy(destination) => {
            let destination = if given.images_from.is_some() {
                registry_prefix(&destination)?
            } else {
                parse_reference(&destination)?
            };
            let mut images = vec![image];
            images.extend(more_images);
            let options = copy::Options {
                images,
                listed_at,
                destination,
                http,
                mirrors,
                verify_keys: given.verify_keys,
                platform: given.platform,
                platforms: given.platforms,
                with_referrers: given.with_referrers,
            };
            return Ok(Command::Copy(session, Box::new(options)));
        }
        Kind::Artifact(dest) => {
            let options = crate::artifact::Options {
                image,
                http,
                mirrors,
                verify_keys: given.verify_keys,
                platform: given.platform,
                dest,
                layer: given.layer.take(),
                artifact_type: given.artifact_type.take(),
            };
            return Ok(Command::Artifact(session, Box::new(options)));
        }
        Kind::Archive => Output::Archive(archive_form(&mut given)),
        Kind::Rootfs(dir) => Output::Rootfs {
            dir,
            force: given.force,
            git: given.git,
        },
        Kind::Flatten(file) => Output::Flatten(file),
        Kind::Initramfs(file) => Output::Initramfs(initramfs(file, &mut given)?),
        Kind::Layer(which) => Output::Layer {
            which,
            registry_format: given.registry_format,
        },
    };
    let options = pull::Options {
        image,
        more_images,
        output,
        http,
        mirrors,
        verify_keys: given.verify_keys,
        cache_dir,
        cache_max,
        platform: given.platform,
        platforms: given.platforms,
        listed_at,
        working_dir: given.working_dir.unwrap_or_else(|| PathBuf::from(".")),
        layers_dir: given.layers_dir,
        no_rm: given.no_rm,
    };
    Ok(Command::Pull(session, Box::new(options)))
}

/// The one output the flags choose: an archive unless one of the others is named.
fn kind(given: &mut Given) -> Result<Kind, Error> {
    if given.inspect.len() > 1 {
        return Err(Error::Usage(
            "ask for one of --tags, --sha, --metadata and --platforms at a time".into(),
        ));
    }
    let inspect = given.inspect.pop().map(|kind| match kind {
        Inspect::Metadata { .. } => Inspect::Metadata {
            pretty: given.pretty,
        },
        other => other,
    });
    // With --artifact, --layer picks the file for `-`.
    let layer = match given.artifact {
        Some(_) => None,
        None => given.layer.take().map(Kind::Layer),
    };
    let named = [
        given.artifact.clone().map(Kind::Artifact),
        given.rootfs.take().map(Kind::Rootfs),
        given.flatten.take().map(Kind::Flatten),
        given.initramfs.take().map(Kind::Initramfs),
        layer,
        inspect.map(Kind::Inspect),
    ];
    let mut named = named.into_iter().flatten();
    let (first, second) = (named.next(), named.next());
    match (given.push.take(), given.copy_to.take(), first, second) {
        (Some(_), Some(_), _, _) => Err(Error::Usage(
            "--push uploads an archive, --copy-to copies from a registry: give one of them".into(),
        )),
        (Some(source), None, None, _) => Ok(Kind::Push(source)),
        (None, Some(destination), None, _) => Ok(Kind::Copy(destination)),
        (Some(_), None, Some(_), _) | (None, Some(_), Some(_), _) => Err(Error::Usage(
            "--push and --copy-to write to a registry; they do not go with --artifact, --rootfs, --flatten, --initramfs, --layer or the inspection flags".into(),
        )),
        (None, None, Some(_), Some(_)) => Err(Error::Usage(
            "choose one of --artifact, --rootfs, --flatten, --initramfs, --layer and the inspection flags (--tags, --sha, --metadata, --platforms, --referrers)".into(),
        )),
        (None, None, Some(kind), None) => Ok(kind),
        (None, None, None, _) => Ok(Kind::Archive),
    }
}

/// `--initramfs FILE` as the flags ask: gzip unless `--xz`, or plain for a `.cpio` file and,
/// unless `--gzip` or `--xz`, for standard output.
fn initramfs(file: PathBuf, given: &mut Given) -> Result<Initramfs, Error> {
    let plain = file.as_os_str() == "-" || file.extension().is_some_and(|e| e == "cpio");
    let compression = match (given.gzip, given.xz) {
        (false, false) if plain => Compression::None,
        (false, false) | (true, false) => Compression::Gzip,
        _ => Compression::Xz,
    };
    if file.extension().is_some_and(|e| e == "cpio") && compression != Compression::None {
        return Err(Error::Usage(format!(
            "{} ends in .cpio, an uncompressed initramfs; name it .cpio.gz or .cpio.xz for --gzip or --xz",
            file.display()
        )));
    }
    let init = given.init.take().map(|init| match init.as_str() {
        "entrypoint" => Init::Entrypoint,
        _ => Init::Path(init),
    });
    Ok(Initramfs {
        file,
        compression,
        init,
    })
}

/// `FLAG goes with WANTS`.
macro_rules! goes_with {
    ($flag:literal, $wants:literal) => {
        concat!($flag, " goes with ", $wants)
    };
}

/// A flag of the archive given to another output.
macro_rules! not_archive {
    ($flag:literal) => {
        concat!(
            $flag,
            " is about the docker-save archive; it does not go with --rootfs, --flatten, --initramfs, --layer, --push, --copy-to or inspection"
        )
    };
}

/// Flags that do not go together, with what to tell the user; the first that applies is the
/// error. `several` is whether more than one IMAGE was given.
fn conflicts(g: &Given, kind: &Kind, several: bool) -> [(bool, &'static str); 41] {
    let archive = matches!(kind, Kind::Archive);
    let rootfs = matches!(kind, Kind::Rootfs(_));
    let layer = matches!(kind, Kind::Layer(_));
    let metadata = matches!(kind, Kind::Inspect(Inspect::Metadata { .. }));
    let pushing = matches!(kind, Kind::Push(_));
    let copying = matches!(kind, Kind::Copy(_));
    let one_image = !(archive || copying);
    let artifact = matches!(kind, Kind::Artifact(_));
    let tags = matches!(kind, Kind::Inspect(Inspect::Tags));
    let initramfs = matches!(kind, Kind::Initramfs(_));
    let other = !archive;
    let to_stdout = g.output.as_deref() == Some(std::path::Path::new("-"));
    let layers_dir = g.layers_dir.is_some() && !(rootfs && g.no_rm);
    [
        (g.quiet && g.verbose, "--quiet and --verbose contradict each other"),
        (g.pretty && !metadata, goes_with!("--pretty", "--metadata")),
        ((g.image.is_some() || g.all) && !pushing, "--image and --all go with --push ARCHIVE"),
        (g.image.is_some() && g.all, "--image pushes one image, --all every one: give one of them"),
        (g.force && !rootfs, goes_with!("--force", "--rootfs DIR")),
        (g.git && !rootfs, goes_with!("--git", "--rootfs DIR")),
        (g.registry_format && !layer, goes_with!("--registry-format", "--layer N")),
        (g.artifact_type.is_some() && !artifact, goes_with!("--artifact-type", "--artifact DIR|-")),
        (g.with_referrers && !copying, goes_with!("--with-referrers", "--copy-to DEST")),
        (g.with_referrers && !g.verify_keys.is_empty(), "--verify-key checks the image, and nothing checks its referrers (signatures and SBOMs are not signed themselves): copy them without --verify-key, or leave out --with-referrers"),
        (g.cache_dir.is_some() && artifact, "--cache-dir keeps the layers of images; --artifact does not use it"),
        (g.layer.is_some() && artifact && g.artifact.as_deref() != Some(Path::new("-")), "with --artifact, --layer chooses the one file --artifact - writes; a directory gets every file"),
        (g.images_from.is_some() && pushing, "--images-from names images to pull or copy; --push takes the images an archive holds (choose with --image or --all)"),
        (g.images_from.is_some() && one_image, "--images-from puts several images into one archive, or copies them with --copy-to; it does not go with --rootfs, --flatten, --layer or inspection"),
        (several && one_image, "several images go into one archive only (or are copied by --copy-to with --images-from); --rootfs, --flatten, --layer, --push and inspection take one IMAGE"),
        (copying && several && g.images_from.is_none(), "--copy-to DEST copies one IMAGE; to copy several, list them in --images-from FILE and give DEST as HOST[:PORT][/PREFIX]"),
        (g.platforms.is_some() && !(archive || copying || pushing), "--platform all or a list keeps several platforms: it goes with an archive, --push or --copy-to, not with --rootfs, --flatten, --layer or inspection"),
        (g.platforms.is_some() && g.layout == Some(Layout::Legacy), "--format legacy has no index: it holds one platform of each image, so --platform takes one platform there"),
        (other && g.output.is_some(), not_archive!("--output")),
        (other && g.layout.is_some_and(|l| l != Layout::Docker), not_archive!("--format")),
        (other && g.compressed, not_archive!("--compressed")),
        (other && !initramfs && g.gzip, not_archive!("--gzip")),
        (other && !initramfs && g.xz, not_archive!("--xz")),
        (g.init.is_some() && !initramfs, goes_with!("--init", "--initramfs FILE")),
        (other && g.gunzip, not_archive!("--gunzip")),
        (!(g.have.is_empty() || archive || pushing), "--have names what the receiver of an archive already holds: it goes with an archive or --push ARCHIVE"),
        (other && g.no_tar, not_archive!("--no-tar")),
        (other && g.tarname.is_some(), not_archive!("--tarname")),
        (other && g.no_rm && !rootfs, not_archive!("--no-rm")),
        (other && layers_dir, not_archive!("--layers-dir")),
        (g.gzip && g.xz, "choose one of --gzip and --xz"),
        (g.output.is_some() && g.tarname.is_some(), "--output and --tarname both name the archive; give one"),
        (g.no_tar && (g.output.is_some() || g.gzip || g.xz), "--no-tar writes a directory, not an archive: it does not go with --output, --gzip or --xz"),
        (to_stdout && g.no_rm, "-o - writes nothing but the archive; --no-rm does not go with it"),
        ((g.gzip || g.xz) && g.no_rm, "--no-rm does not go with --gzip or --xz (their layers are never on disk)"),
        ((g.password.is_some() || g.password_stdin) && g.user.is_none(), "--password and --password-stdin need --user"),
        (g.password.is_some() && g.password_stdin, "give the password once: --password or --password-stdin"),
        (g.ilogin && g.user.is_some(), "--ilogin asks for the credentials; do not combine it with --user"),
        (g.no_mirror && !g.mirrors.is_empty(), "--no-mirror and --mirror contradict each other"),
        (pushing && (g.no_mirror || !g.mirrors.is_empty()), "mirrors serve pulls and inspection; --push always goes to the registry itself, so --mirror and --no-mirror do not go with it"),
        (tags && !g.verify_keys.is_empty(), "--verify-key checks an image's signature; --tags lists a repository and names no image"),
    ]
}

fn session(given: &mut Given, env: &dyn Fn(&str) -> Option<String>) -> Session {
    let docker_config = env("DOCKER_CONFIG")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            env("HOME")
                .filter(|h| !h.is_empty())
                .map(|home| PathBuf::from(home).join(".docker"))
        });
    Session {
        login: Login {
            user: given.user.take(),
            password: given.password.take(),
            password_stdin: given.password_stdin,
            ilogin: given.ilogin,
        },
        docker_config,
        verbosity: match (given.quiet, given.verbose) {
            (true, _) => Verbosity::Quiet,
            (false, true) => Verbosity::Verbose,
            (false, false) => Verbosity::Normal,
        },
    }
}

/// How registries are reached: certificates, proxy, retries, timeout, plain HTTP.
fn settings(given: &mut Given, env: &dyn Fn(&str) -> Option<String>) -> Settings {
    let mut ca_files = std::mem::take(&mut given.ca_files);
    if let Some(file) = env("SSL_CERT_FILE").filter(|f| !f.is_empty()) {
        ca_files.push(PathBuf::from(file));
    }
    let proxy = match given.proxy.take() {
        Some(url) => {
            let no_proxy = env("NO_PROXY")
                .or_else(|| env("no_proxy"))
                .unwrap_or_default();
            ProxySettings::explicit(url, proxy::parse_no_proxy(&no_proxy))
        }
        None => ProxySettings::from_env(env),
    };
    let mut certs_dirs = std::mem::take(&mut given.certs_dirs);
    certs_dirs.extend(
        env("DOCKERSAVE_CERTS_D")
            .filter(|d| !d.is_empty())
            .map(PathBuf::from),
    );
    if let Some(home) = env("HOME").filter(|h| !h.is_empty()) {
        certs_dirs.push(PathBuf::from(home).join(".config/containers/certs.d"));
    }
    certs_dirs.extend(crate::client::CERTS_DIRS.iter().map(PathBuf::from));
    Settings {
        ca_files,
        certs_dirs,
        proxy,
        retries: given.retries.unwrap_or(5),
        timeout: Duration::from_secs(given.timeout.unwrap_or(60).into()),
        insecure: given.insecure,
    }
}

/// Where the mirrors come from: `--no-mirror`, else `--mirror`, else `DOCKERSAVE_MIRRORS` (empty:
/// none), else Docker's `daemon.json`; the first that says anything decides alone.
fn mirror_source(given: &mut Given, env: &dyn Fn(&str) -> Option<String>) -> Result<Source, Error> {
    if given.no_mirror {
        return Ok(Source::Off);
    }
    if !given.mirrors.is_empty() {
        return Ok(Source::Given(std::mem::take(&mut given.mirrors)));
    }
    if let Some(list) = env("DOCKERSAVE_MIRRORS") {
        let mirrors = mirrors::parse_list(&list)
            .map_err(|problem| Error::Usage(format!("DOCKERSAVE_MIRRORS: {problem}")))?;
        return Ok(if mirrors.is_empty() {
            Source::Off
        } else {
            Source::Given(mirrors)
        });
    }
    let daemon_json = env("DOCKERSAVE_DAEMON_JSON").filter(|p| !p.is_empty());
    Ok(Source::DaemonJson(PathBuf::from(
        daemon_json.as_deref().unwrap_or(mirrors::DAEMON_JSON),
    )))
}

fn archive_form(given: &mut Given) -> ArchiveForm {
    ArchiveForm {
        layout: given.layout.unwrap_or(Layout::Docker),
        compressed_layers: given.compressed,
        compression: match (given.gzip, given.xz) {
            (true, _) => Compression::Gzip,
            (false, true) => Compression::Xz,
            (false, false) => Compression::None,
        },
        output: given.output.take(),
        tarname: given.tarname.take(),
        no_tar: given.no_tar,
        gunzip: given.gunzip,
        have: std::mem::take(&mut given.have),
    }
}

/// The IMAGE arguments as references. With `--push --all` the one argument is a destination
/// `HOST[/PREFIX]` instead: a registry, and a path prefix for the images' own names.
fn references(names: &[String], destination: bool) -> Result<(Reference, Vec<Reference>), Error> {
    let Some(first) = names.first() else {
        return Err(Error::Usage("missing IMAGE, e.g. dockersave debian".into()));
    };
    let parse = |text: &str| {
        Reference::parse(text).map_err(|reason| Error::Reference {
            input: text.to_string(),
            reason,
        })
    };
    if !destination {
        let image = parse(first)?;
        let more = names[1..].iter().map(|n| parse(n));
        return Ok((image, more.collect::<Result<_, _>>()?));
    }
    if names.len() > 1 {
        return Err(Error::Usage(format!(
            "with --all, IMAGE is a registry and an optional path prefix (HOST[:PORT][/PREFIX]), not {first:?}"
        )));
    }
    Ok((registry_prefix(first)?, Vec::new()))
}

fn parse_reference(text: &str) -> Result<Reference, Error> {
    Reference::parse(text).map_err(|reason| Error::Reference {
        input: text.to_string(),
        reason,
    })
}

/// A destination for several images (`--push --all`, `--copy-to` with `--images-from`):
/// `HOST[:PORT][/PREFIX]`, a registry and a path prefix for the images' own names.
fn registry_prefix(first: &str) -> Result<Reference, Error> {
    let parse = parse_reference;
    let (host, prefix) = first.split_once('/').unwrap_or((first, ""));
    let not_registry = || {
        Error::Usage(format!(
            "for several images the destination is a registry and an optional path prefix (HOST[:PORT][/PREFIX]), not {first:?}"
        ))
    };
    if !(host.contains('.') || host.contains(':') || host == "localhost")
        || first.contains('@')
        || prefix
            .rsplit('/')
            .next()
            .is_some_and(|last| last.contains(':'))
    {
        return Err(not_registry());
    }
    let registry = parse(&format!("{host}/x"))?.registry;
    let repository = if prefix.is_empty() {
        String::new()
    } else {
        parse(&format!("{host}/{prefix}"))?.repository
    };
    Ok(Reference {
        registry,
        repository,
        tag: None,
        digest: None,
    })
}

/// The images `--images-from` lists: one reference a line, blank lines and `#` comments
/// skipped. Each comes with where it was listed ("FILE line N"), for the messages of a run
/// that fails on it.
fn listed_images(
    file: &Path,
    names: &[String],
    read_list: &dyn Fn(&Path) -> std::io::Result<String>,
) -> Result<(Vec<Reference>, Vec<String>), Error> {
    if !names.is_empty() {
        return Err(Error::Usage(format!(
            "--images-from names the images; give no IMAGE besides it (got {:?})",
            names[0]
        )));
    }
    let shown = if file.as_os_str() == "-" {
        "standard input".to_string()
    } else {
        file.display().to_string()
    };
    let text = read_list(file)
        .map_err(|e| Error::Usage(format!("cannot read the image list {shown}: {e}")))?;
    let (mut images, mut at) = (Vec::new(), Vec::new());
    for (n, line) in text.lines().enumerate() {
        let line = line
            .split_once('#')
            .map_or(line, |(before, _)| before)
            .trim();
        if line.is_empty() {
            continue;
        }
        if images.len() == crate::limits::MAX_LISTED_IMAGES {
            return Err(Error::Usage(format!(
                "the image list {shown} names more than {} images; split it",
                crate::limits::MAX_LISTED_IMAGES
            )));
        }
        let here = format!("{shown} line {}", n + 1);
        let reference = Reference::parse(line).map_err(|reason| {
            Error::Usage(format!(
                "{here}: invalid image reference {line:?}: {reason}"
            ))
        })?;
        images.push(reference);
        at.push(here);
    }
    if images.is_empty() {
        return Err(Error::Usage(format!(
            "the image list {shown} names no image"
        )));
    }
    Ok((images, at))
}

/// The first flag given that needs a feature this build lacks: (feature, flag).
fn lacking(g: &Given) -> Option<(&'static str, &'static str)> {
    let needs = [
        (g.push.is_some(), "push", "--push"),
        (g.copy_to.is_some(), "push", "--copy-to"),
        (!g.verify_keys.is_empty(), "verify", "--verify-key"),
        (g.initramfs.is_some(), "initramfs", "--initramfs"),
        (g.git, "git", "--git"),
        (g.xz, "xz", "--xz"),
        (g.artifact.is_some(), "artifact", "--artifact"),
        (
            g.inspect.contains(&Inspect::Referrers),
            "artifact",
            "--referrers",
        ),
        (g.with_referrers, "artifact", "--with-referrers"),
    ];
    needs
        .into_iter()
        .find(|(given, feature, _)| *given && !crate::features::BUILT.contains(feature))
        .map(|(_, feature, flag)| (feature, flag))
}

/// `--user` and `--ilogin` with `--images-from`: the credentials go to one registry, and a list
/// is often someone else's file, so every line must name that registry; a list that spans
/// several would send them wherever its first line points.
fn one_registry(images: &[Reference], at: &[String]) -> Result<(), Error> {
    let first = &images[0].registry;
    match images.iter().zip(at).find(|(image, _)| image.registry != *first) {
        None => Ok(()),
        Some((other, here)) => Err(Error::Usage(format!(
            "--user goes to one registry, and the image list names two: {first} (its first image) and {} ({here}); list one registry's images, or store the credentials of each with docker login (config.json) and leave out --user",
            other.registry
        ))),
    }
}

fn usage(error: lexopt::Error) -> Error {
    Error::Usage(error.to_string())
}

// The command line's tests name every flag: they run on a build with every feature.
#[cfg(all(
    test,
    feature = "push",
    feature = "xz",
    feature = "verify",
    feature = "initramfs",
    feature = "git"
))]
mod tests;

#[cfg(test)]
mod feature_tests {
    use super::*;

    /// A flag whose feature this build lacks is a usage error naming the feature; with the
    /// feature it parses. Runs on every build (`cargo test --no-default-features` too).
    #[test]
    fn a_flag_needing_a_missing_feature_is_a_usage_error() {
        for (args, feature) in [
            (&["--push", "a.tar", "r/x"][..], "push"),
            (&["--copy-to", "r/y", "x"][..], "push"),
            (&["--verify-key", "k.pub", "x"][..], "verify"),
            (&["--initramfs", "i.cpio", "x"][..], "initramfs"),
            (&["--rootfs", "d", "--git", "x"][..], "git"),
            (&["--xz", "x"][..], "xz"),
            (&["--artifact", "d", "x"][..], "artifact"),
            (&["--referrers", "x"][..], "artifact"),
        ] {
            let argv = std::iter::once("dockersave")
                .chain(args.iter().copied())
                .map(std::ffi::OsString::from);
            let parsed = parse(argv, |_| None, |_| Ok(String::new()));
            let built = crate::features::BUILT.contains(&feature);
            match parsed {
                Err(Error::Usage(message)) if !built => assert!(
                    message.contains(&format!("built without the \"{feature}\" feature")),
                    "{args:?}: {message}"
                ),
                Ok(_) if built => {}
                other => panic!("{args:?} (built: {built}): {other:?}"),
            }
        }
    }
}
