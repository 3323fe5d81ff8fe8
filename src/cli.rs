//! The command line: argv → one `Options` struct, and the `--help` text.
//!
//! Parsing only. Nothing below this module reads argv, and nothing here touches the network or
//! the disk; prompting for credentials happens in `main`.

use crate::error::Error;
use crate::manifest::{LayerChoice, Platform};
use crate::progress::Verbosity;
use crate::reference::Reference;
use crate::registry::http::Settings;
use crate::registry::proxy::{self, ProxySettings};
use crate::sinks::layout::Layout;
use lexopt::prelude::*;
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

pub const HELP: &str = "\
dockersave - fetch a container image from a Docker/OCI registry, without Docker,
and write an archive that `docker load` accepts.

Usage: dockersave [OPTIONS] IMAGE [IMAGE...]
       dockersave --rootfs DIR [--force] [--git] [OPTIONS] IMAGE
       dockersave --flatten FILE|- [OPTIONS] IMAGE
       dockersave --layer N|sha256:HEX [--registry-format] [OPTIONS] IMAGE
       dockersave --tags | --sha | --metadata [--pretty] | --platforms [OPTIONS] IMAGE
       dockersave --push ARCHIVE|DIR [--image NAME | --all] [OPTIONS] IMAGE

IMAGE is a reference as Docker spells it: [HOST[:PORT]/]PATH[:TAG][@sha256:DIGEST]
(`debian`, `debian:12`, `myregistry.example:5000/team/app:1.2`). The archive is
written as PATH-TAG.tar (`library-debian-latest.tar`) in the working directory; several
images go into one archive (shared layers stored once), named after the first image
plus `-and-N-more`.

Options:
  --insecure            talk plain HTTP to the registry (default: HTTPS, certificates verified)
  --cacert FILE         also trust the CA certificates in this PEM file (repeatable;
                        SSL_CERT_FILE is honoured too)
  --user USER           user name for the registry (the password is asked for if not given)
  --password PASSWORD   password for the registry (lands in shell history: prefer --ilogin)
  --password-stdin      read the password for --user from standard input (for scripts)
  --ilogin              ask for user name and password on the terminal
                        (without any of these: Docker's config.json and credential helpers)
  --proxy URL           send requests through this proxy, loopback included (default: HTTPS_PROXY,
                        HTTP_PROXY, ALL_PROXY; NO_PROXY names hosts to reach directly)
  --platform OS/ARCH[/VARIANT]
                        which image of a multi-platform index to save (default: this
                        machine's, read at run time, e.g. linux/amd64, linux/arm/v6; an
                        ARM index without that variant gives an older one, never newer)
  --arch ARCH           shorthand for --platform linux/ARCH (e.g. arm64, arm/v7)
  --cache-dir DIR       keep verified blobs here and reuse them on later pulls
                        (default: $DOCKERSAVE_CACHE if set, else no cache)
  --retries N           retries of a failed request or broken download (default: 5)
  --timeout SECS        connect timeout and longest stall of a transfer (default: 60)
  --working-dir DIR     where the directory and the archive go (default: .)
  --layers-dir NAME     name of the assembled directory (default: the archive's base name)
  -o, --output FILE     write the archive to FILE (`-`: standard output, nothing else is
                        written but the --cache-dir), e.g. `dockersave -o - alpine | docker load`
  --tarname NAME        file name of the archive in the working directory (default:
                        PATH-TAG.tar)
  --format docker|legacy
                        docker (default): the layout of `docker save` since Docker 25, an
                        OCI image layout with manifest.json beside it, for Docker (any
                        version), Podman, skopeo and containerd; legacy: the classic
                        layout of older Docker (per-layer VERSION, json, layer.tar)
  --compressed          keep the layers gzip-compressed as the registry serves them (about
                        half the size; still verified, and the manifest digest survives)
  --gzip, --xz          compress the whole archive (PATH-TAG.tar.gz / .tar.xz); docker
                        load and podman load read both
  --gunzip              accepted for the original dockersave; layers are decompressed
                        unless --compressed, so it changes nothing
  --no-tar              leave the assembled directory; do not make the archive
  --no-rm               keep the assembled directory after making the archive (with
                        --rootfs: keep the layer tars in it too)

Instead of an archive:
  --rootfs DIR          apply the layers to DIR: the image's root filesystem, for chroot,
                        LXC, systemd-nspawn (DIR is created; an existing non-empty DIR
                        needs --force). As root with owners and device nodes.
  --force               with --rootfs: apply the image over a non-empty DIR
  --git                 with --rootfs: make DIR a git repository, one commit per layer,
                        on branches layer<N>_<diff ID>
  --flatten FILE        write the merged filesystem as one tar (FILE `-`: stdout),
                        e.g. `dockersave --flatten - alpine | tar -x -C /mnt`
  --layer N             fetch only layer N (1 is the bottom, -1 the top) or the layer whose
                        digest or diff ID starts with sha256:HEX (12+ digits), written as
                        <id>/layer.tar, <id>/json and <id>/VERSION
  --registry-format     with --layer: the compressed blob as the registry serves it,
                        written as <digest>.tar.gz

Instead of pulling:
  --push ARCHIVE|DIR    upload the image of a docker save archive (any layout, plain,
                        .tar.gz or .tar.xz) or --no-tar directory to IMAGE; prints
                        REGISTRY/REPOSITORY@sha256:... Plain layers are gzipped on the way
  --image NAME          with --push: the image of a several-image archive to upload
  --all                 with --push: every image, under its own name, below IMAGE =
                        HOST[:PORT][/PREFIX]

Instead of saving (nothing is written; the answer goes to stdout):
  --tags                every tag of the repository, one a line
  --sha                 the digest `docker pull` prints for IMAGE (an index's), then, for an
                        index, the digest of the platform's manifest
  --metadata            the manifest as served (for an index: the index, then the platform's
                        manifest), then the image config: JSON documents, each followed by
                        a newline (a stream `jq .` reads)
  --pretty              with --metadata: indented
  --platforms           the platforms the index offers, os/arch[/variant] one a line

Output:
  -q, --quiet           print errors only (on stderr)
  -v, --verbose         also print every HTTP request: method, URL (without its query),
                        status, size, time; never a header or credential
  -h, --help            show this help
  -V, --version         show the version

Exit codes: 0 success, 2 bad usage or image name, 3 network failure, 4 authentication
refused, 5 image/tag/platform not found, 6 verification failed, unsupported image or an
entry refused by --rootfs, 7 local file error (e.g. disk full), 8 unexpected registry
answer, 129/130/143 interrupted (SIGHUP, Ctrl-C, SIGTERM).
";

/// What a run writes.
#[derive(Debug, PartialEq, Eq)]
pub enum Output {
    /// A `docker save` archive (or with --no-tar its directory).
    Archive,
    Rootfs {
        dir: PathBuf,
        force: bool,
        git: bool,
    },
    /// The merged filesystem as a tar; `-` is stdout.
    Flatten(PathBuf),
    Layer {
        which: LayerChoice,
        registry_format: bool,
    },
    /// Nothing written: what the registry says about the image, on stdout.
    Inspect(Inspect),
    /// `--push SOURCE`: the image(s) of an archive or `--no-tar` directory into the registry;
    /// `Options::image` is the destination (with `--all`, its registry and a path prefix).
    Push {
        source: PathBuf,
        choose: Choose,
        /// Where the record of pushed blobs is kept (see `push::known`).
        record: Option<PathBuf>,
    },
}

/// Which images of a pushed archive go up.
#[derive(Debug, PartialEq, Eq, Clone)]
pub enum Choose {
    /// The only one (an error when there are several).
    Only,
    /// `--image NAME`: the one with this name in `RepoTags`.
    Image(String),
    /// `--all`: each under its own name, on the destination's registry.
    All,
}

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum Inspect {
    /// `--tags`: every tag of the repository.
    Tags,
    /// `--sha`: the reference's digest (an index's), then the platform manifest's.
    Sha,
    /// `--metadata [--pretty]`: the manifest(s) as served and the config.
    Metadata { pretty: bool },
    /// `--platforms`: the platforms an index offers.
    Platforms,
}

/// Compression of the whole archive (`--gzip`, `--xz`).
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum Compression {
    None,
    Gzip,
    Xz,
}

/// How the archive is written (with `Output::Archive`).
#[derive(Debug, PartialEq, Eq)]
pub struct ArchiveForm {
    pub layout: Layout,
    /// Layers as served, gzip-compressed (`--compressed`).
    pub compressed_layers: bool,
    pub compression: Compression,
    /// `-o FILE`; `-` is standard output.
    pub output: Option<PathBuf>,
}

#[derive(Debug)]
pub struct Options {
    pub image: Reference,
    /// Further images for the same archive.
    pub more_images: Vec<Reference>,
    pub archive: ArchiveForm,
    pub output: Output,
    pub insecure: bool,
    pub user: Option<String>,
    pub password: Option<String>,
    pub password_stdin: bool,
    pub ilogin: bool,
    /// Where Docker's `config.json` is looked for (`$DOCKER_CONFIG`, else `~/.docker`).
    pub docker_config: Option<PathBuf>,
    pub http: Settings,
    /// Where verified blobs are kept between pulls (`--cache-dir`, `DOCKERSAVE_CACHE`).
    pub cache_dir: Option<PathBuf>,
    /// `--platform` / `--arch`; without them the machine's own, read when a pull needs it.
    pub platform: Option<Platform>,
    pub working_dir: PathBuf,
    pub layers_dir: Option<String>,
    pub tarname: Option<String>,
    /// Leave the assembled directory instead of making the archive.
    pub no_tar: bool,
    /// Keep the assembled directory (also a failed run's partial one).
    pub no_rm: bool,
    /// `--quiet`, `--verbose`.
    pub verbosity: Verbosity,
    /// `--gunzip` was given (a no-op, noted).
    pub gunzip: bool,
}

#[derive(Debug)]
pub enum Command {
    Pull(Box<Options>),
    Help,
    Version,
}

/// Parses `args` (with the program name first). `env` is the process environment, passed in so
/// that nothing else reads it.
pub fn parse(
    args: impl IntoIterator<Item = OsString>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Command, Error> {
    let mut parser = lexopt::Parser::from_iter(args);
    let mut password_stdin = false;
    let mut ca_files = Vec::new();
    let mut proxy_url = None;
    let mut retries = 5;
    let mut timeout = 60;
    let mut cache_dir = env("DOCKERSAVE_CACHE")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from);
    let mut insecure = false;
    let mut user = None;
    let mut password = None;
    let mut ilogin = false;
    let mut platform = None;
    let mut working_dir = PathBuf::from(".");
    let mut layers_dir = None;
    let mut tarname = None;
    let mut no_tar = false;
    let mut no_rm = false;
    let mut rootfs = None;
    let mut flatten = None;
    let mut layer = None;
    let (mut force, mut git, mut registry_format) = (false, false, false);
    let mut inspect: Vec<Inspect> = Vec::new();
    let (mut quiet, mut verbose) = (false, false);
    let mut pretty = false;
    let mut names: Vec<String> = Vec::new();
    let mut push_source = None;
    let mut push_image = None;
    let mut push_all = false;
    let mut output_file: Option<PathBuf> = None;
    let mut layout = Layout::Docker;
    let (mut compressed_layers, mut gzip, mut xz, mut gunzip) = (false, false, false, false);
    while let Some(arg) = parser.next().map_err(usage)? {
        match arg {
            Short('h') | Long("help") => return Ok(Command::Help),
            Short('V') | Long("version") => return Ok(Command::Version),
            Long("insecure") => insecure = true,
            Long("user") => user = Some(string(&mut parser, "--user")?),
            Long("password") => password = Some(string(&mut parser, "--password")?),
            Long("ilogin") => ilogin = true,
            Long("retries") => retries = number(&mut parser, "--retries", 0, 100)?,
            Long("timeout") => timeout = number(&mut parser, "--timeout", 1, 3600)?.into(),
            Long("cache-dir") => cache_dir = Some(PathBuf::from(parser.value().map_err(usage)?)),
            Long("password-stdin") => password_stdin = true,
            Long("cacert") => ca_files.push(PathBuf::from(parser.value().map_err(usage)?)),
            Long("proxy") => proxy_url = Some(string(&mut parser, "--proxy")?),
            Long("platform") => {
                let text = string(&mut parser, "--platform")?;
                platform = Some(Platform::parse(&text).map_err(Error::Usage)?);
            }
            Long("arch") => {
                let text = string(&mut parser, "--arch")?;
                platform = Some(Platform::parse(&format!("linux/{text}")).map_err(|_| {
                    Error::Usage(format!(
                        "--arch {text:?} is not an architecture such as amd64, arm64 or arm/v7"
                    ))
                })?);
            }
            Long("working-dir") => working_dir = PathBuf::from(parser.value().map_err(usage)?),
            Long("layers-dir") => layers_dir = Some(file_name(&mut parser, "--layers-dir")?),
            Long("tarname") => tarname = Some(file_name(&mut parser, "--tarname")?),
            Long("no-tar") => no_tar = true,
            Long("no-rm") => no_rm = true,
            Long("rootfs") => rootfs = Some(path(&mut parser, "--rootfs")?),
            Long("force") => force = true,
            Long("git") => git = true,
            Long("flatten") => flatten = Some(path(&mut parser, "--flatten")?),
            Long("layer") => {
                let text = string(&mut parser, "--layer")?;
                layer = Some(LayerChoice::parse(&text).map_err(Error::Usage)?);
            }
            Long("registry-format") => registry_format = true,
            Long("tags") => inspect.push(Inspect::Tags),
            Long("sha") => inspect.push(Inspect::Sha),
            Long("metadata") => inspect.push(Inspect::Metadata { pretty: false }),
            Long("platforms") => inspect.push(Inspect::Platforms),
            Long("pretty") => pretty = true,
            Short('q') | Long("quiet") => quiet = true,
            Short('v') | Long("verbose") => verbose = true,
            Short('o') | Long("output") => output_file = Some(path(&mut parser, "--output")?),
            Long("format") => {
                layout = match string(&mut parser, "--format")?.as_str() {
                    "docker" => Layout::Docker,
                    "legacy" => Layout::Legacy,
                    other => {
                        return Err(Error::Usage(format!(
                            "--format takes docker or legacy, not {other:?}"
                        )))
                    }
                }
            }
            Long("compressed") => compressed_layers = true,
            Long("gzip") => gzip = true,
            Long("xz") => xz = true,
            Long("gunzip") => gunzip = true,
            Long("push") => push_source = Some(path(&mut parser, "--push")?),
            Long("image") => push_image = Some(string(&mut parser, "--image")?),
            Long("all") => push_all = true,
            Value(value) => names.push(
                value
                    .into_string()
                    .map_err(|_| Error::Usage("the image name is not valid UTF-8".into()))?,
            ),
            _ => return Err(usage(arg.unexpected())),
        }
    }
    let (image, more_images) = references(&names, push_source.is_some() && push_all)?;
    if quiet && verbose {
        return Err(Error::Usage(
            "--quiet and --verbose contradict each other".into(),
        ));
    }
    if inspect.len() > 1 {
        return Err(Error::Usage(
            "ask for one of --tags, --sha, --metadata and --platforms at a time".into(),
        ));
    }
    let inspect = inspect.pop().map(|kind| match kind {
        Inspect::Metadata { .. } => Inspect::Metadata { pretty },
        other => other,
    });
    if pretty && !matches!(inspect, Some(Inspect::Metadata { .. })) {
        return Err(Error::Usage("--pretty goes with --metadata".into()));
    }
    if (push_image.is_some() || push_all) && push_source.is_none() {
        return Err(Error::Usage(
            "--image and --all go with --push ARCHIVE".into(),
        ));
    }
    if push_image.is_some() && push_all {
        return Err(Error::Usage(
            "--image pushes one image, --all every one: give one of them".into(),
        ));
    }
    let push = push_source.map(|source| Output::Push {
        source,
        choose: match (push_image, push_all) {
            (Some(name), _) => Choose::Image(name),
            (None, true) => Choose::All,
            (None, false) => Choose::Only,
        },
        record: crate::push::record_dir(cache_dir.as_deref(), &env),
    });
    let output = match (rootfs, flatten, layer, inspect) {
        (None, None, None, None) if push.is_some() => push.unwrap_or(Output::Archive),
        _ if push.is_some() => {
            return Err(Error::Usage(
                "--push uploads an archive; it does not go with --rootfs, --flatten, --layer or the inspection flags".into(),
            ))
        }
        (None, None, None, None) => Output::Archive,
        (Some(dir), None, None, None) => Output::Rootfs { dir, force, git },
        (None, Some(file), None, None) => Output::Flatten(file),
        (None, None, Some(which), None) => Output::Layer {
            which,
            registry_format,
        },
        (None, None, None, Some(kind)) => Output::Inspect(kind),
        _ => {
            return Err(Error::Usage(
                "choose one of --rootfs, --flatten, --layer and the inspection flags (--tags, --sha, --metadata, --platforms)".into(),
            ))
        }
    };
    let is_rootfs = matches!(output, Output::Rootfs { .. });
    let is_layer = matches!(output, Output::Layer { .. });
    for (given, flag, wants) in [
        (force && !is_rootfs, "--force", "--rootfs DIR"),
        (git && !is_rootfs, "--git", "--rootfs DIR"),
        (
            registry_format && !is_layer,
            "--registry-format",
            "--layer N",
        ),
    ] {
        if given {
            return Err(Error::Usage(format!("{flag} goes with {wants}")));
        }
    }
    if output != Output::Archive {
        if !more_images.is_empty() {
            return Err(Error::Usage(
                "several images go into one archive only; --rootfs, --flatten, --layer, --push and inspection take one IMAGE".into(),
            ));
        }
        for (given, flag) in [
            (output_file.is_some(), "--output"),
            (layout != Layout::Docker, "--format"),
            (compressed_layers, "--compressed"),
            (gzip, "--gzip"),
            (xz, "--xz"),
            (gunzip, "--gunzip"),
            (no_tar, "--no-tar"),
            (tarname.is_some(), "--tarname"),
            (no_rm && !is_rootfs, "--no-rm"),
            (
                layers_dir.is_some() && !(is_rootfs && no_rm),
                "--layers-dir",
            ),
        ] {
            if given {
                return Err(Error::Usage(format!(
                    "{flag} is about the docker-save archive; it does not go with --rootfs, --flatten, --layer, --push or inspection"
                )));
            }
        }
    }
    if gzip && xz {
        return Err(Error::Usage("choose one of --gzip and --xz".into()));
    }
    let to_stdout = output_file.as_deref() == Some(std::path::Path::new("-"));
    for (given, problem) in [
        (
            output_file.is_some() && tarname.is_some(),
            "--output and --tarname both name the archive; give one",
        ),
        (
            no_tar && (output_file.is_some() || gzip || xz),
            "--no-tar writes a directory, not an archive: it does not go with --output, --gzip or --xz",
        ),
        (
            to_stdout && no_rm,
            "-o - writes nothing but the archive; --no-rm does not go with it",
        ),
        (
            (gzip || xz) && no_rm,
            "--no-rm does not go with --gzip or --xz (their layers are never on disk)",
        ),
    ] {
        if given {
            return Err(Error::Usage(problem.into()));
        }
    }
    if (password.is_some() || password_stdin) && user.is_none() {
        return Err(Error::Usage(
            "--password and --password-stdin need --user".into(),
        ));
    }
    if password.is_some() && password_stdin {
        return Err(Error::Usage(
            "give the password once: --password or --password-stdin".into(),
        ));
    }
    if ilogin && user.is_some() {
        return Err(Error::Usage(
            "--ilogin asks for the credentials; do not combine it with --user".into(),
        ));
    }
    if let Some(file) = env("SSL_CERT_FILE").filter(|f| !f.is_empty()) {
        ca_files.push(PathBuf::from(file));
    }
    let proxy = match proxy_url {
        Some(url) => {
            let no_proxy = env("NO_PROXY")
                .or_else(|| env("no_proxy"))
                .unwrap_or_default();
            ProxySettings::explicit(url, proxy::parse_no_proxy(&no_proxy))
        }
        None => ProxySettings::from_env(&env),
    };
    let docker_config = env("DOCKER_CONFIG")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            env("HOME")
                .filter(|h| !h.is_empty())
                .map(|home| PathBuf::from(home).join(".docker"))
        });
    Ok(Command::Pull(Box::new(Options {
        image,
        more_images,
        archive: ArchiveForm {
            layout,
            compressed_layers,
            compression: if gzip {
                Compression::Gzip
            } else if xz {
                Compression::Xz
            } else {
                Compression::None
            },
            output: output_file,
        },
        gunzip,
        output,
        insecure,
        user,
        password,
        password_stdin,
        ilogin,
        docker_config,
        cache_dir,
        http: Settings {
            ca_files,
            proxy,
            retries,
            timeout: Duration::from_secs(timeout),
        },
        platform,
        working_dir,
        layers_dir,
        tarname,
        no_tar,
        no_rm,
        verbosity: if quiet {
            Verbosity::Quiet
        } else if verbose {
            Verbosity::Verbose
        } else {
            Verbosity::Normal
        },
    })))
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
        let mut all = names.iter().map(|n| parse(n));
        let image = all.next().unwrap_or_else(|| parse(first))?;
        return Ok((image, all.collect::<Result<_, _>>()?));
    }
    let (host, prefix) = first.split_once('/').unwrap_or((first, ""));
    let not_registry = || {
        Error::Usage(format!(
        "with --all, IMAGE is a registry and an optional path prefix (HOST[:PORT][/PREFIX]), not {first:?}"
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
    if names.len() > 1 {
        return Err(not_registry());
    }
    Ok((
        Reference {
            registry,
            repository,
            tag: None,
            digest: None,
        },
        Vec::new(),
    ))
}

fn number(parser: &mut lexopt::Parser, flag: &str, min: u32, max: u32) -> Result<u32, Error> {
    let text = string(parser, flag)?;
    text.parse::<u32>()
        .ok()
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| {
            Error::Usage(format!(
                "{flag} takes a whole number from {min} to {max}, not {text:?}"
            ))
        })
}

fn usage(error: lexopt::Error) -> Error {
    Error::Usage(error.to_string())
}

fn string(parser: &mut lexopt::Parser, flag: &str) -> Result<String, Error> {
    parser
        .value()
        .map_err(usage)?
        .into_string()
        .map_err(|_| Error::Usage(format!("the value of {flag} is not valid UTF-8")))
}

fn path(parser: &mut lexopt::Parser, flag: &str) -> Result<PathBuf, Error> {
    let value = parser.value().map_err(usage)?;
    if value.is_empty() {
        return Err(Error::Usage(format!("{flag} needs a path")));
    }
    Ok(PathBuf::from(value))
}

/// A name for something inside the working directory: no separators, not `.` or `..`.
fn file_name(parser: &mut lexopt::Parser, flag: &str) -> Result<String, Error> {
    let name = string(parser, flag)?;
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        return Err(Error::Usage(format!(
            "{flag} takes a plain file name, not {name:?}; use --working-dir for the directory"
        )));
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pull(args: &[&str]) -> Result<Options, Error> {
        let argv = std::iter::once("dockersave")
            .chain(args.iter().copied())
            .map(OsString::from);
        match parse(argv, |name| match name {
            "HOME" => Some("/home/me".into()),
            "HTTPS_PROXY" => Some("http://proxy.example:3128".into()),
            _ => None,
        })? {
            Command::Pull(options) => Ok(*options),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn defaults() {
        let o = pull(&["debian"]).unwrap();
        assert_eq!(o.image.repository, "library/debian");
        assert!(!o.no_tar && !o.no_rm && !o.insecure);
        assert_eq!(
            o.platform, None,
            "the machine's platform is read when the pull needs it"
        );
        assert_eq!(o.working_dir, PathBuf::from("."));
        assert_eq!(o.docker_config, Some(PathBuf::from("/home/me/.docker")));
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
        assert!(o.insecure && o.no_tar && !o.no_rm);
        assert_eq!(o.platform.unwrap().to_string(), "linux/arm/v7");
        assert_eq!(
            (o.user.as_deref(), o.password.as_deref()),
            (Some("u"), Some("p"))
        );
        assert_eq!(
            (o.layers_dir.as_deref(), o.tarname.as_deref()),
            (Some("d"), Some("x.tar"))
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
        assert!(o.password_stdin);
        assert_eq!(
            o.http.proxy.for_target("http", "127.0.0.1:5000"),
            Some("http://p:1")
        );
    }

    #[test]
    fn outputs() {
        assert_eq!(pull(&["x"]).unwrap().output, Output::Archive);
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
        let o = pull(&["x"]).unwrap();
        assert_eq!(
            o.archive,
            ArchiveForm {
                layout: Layout::Docker,
                compressed_layers: false,
                compression: Compression::None,
                output: None
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
        assert_eq!(o.archive.output, Some(PathBuf::from("-")));
        assert_eq!(o.archive.layout, Layout::Legacy);
        assert!(o.archive.compressed_layers && o.gunzip);
        assert_eq!(o.archive.compression, Compression::Xz);
        assert_eq!(o.more_images.len(), 1);
        assert_eq!(o.more_images[0].tag.as_deref(), Some("1"));
        assert_eq!(
            pull(&["--output", "f.tar.gz", "--gzip", "a"])
                .unwrap()
                .archive
                .compression,
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
            assert_eq!(pull(&[flag, "x"]).unwrap().output, Output::Inspect(kind));
        }
        assert_eq!(
            pull(&["--pretty", "--metadata", "x"]).unwrap().output,
            Output::Inspect(Inspect::Metadata { pretty: true })
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
        ] {
            let err = pull(args).unwrap_err();
            assert!(matches!(err, Error::Usage(_)), "{args:?}: {err:?}");
            assert!(err.to_string().contains(needle), "{args:?}: {err}");
        }
        assert!(matches!(
            pull(&["Bad"]).unwrap_err(),
            Error::Reference { .. }
        ));
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
            assert!(HELP.contains(flag), "{flag}");
        }
    }
}
