//! The library's front door: a `Client` holds how registries are reached (certificates, proxy,
//! retries, credentials, cache, platform) and where progress goes, and pulls, inspects, pushes
//! and copies with the same code the `dockersave` command runs — `main` is built on it.
//!
//! It decides whose credentials go where: those given to the client serve the registry of the
//! image an operation names (and a copy's destination when it is that registry); every other
//! registry, and every mirror, gets only what Docker's `config.json` stores for its own host.
//! It never prompts and never reads the environment: the command does that, then builds a
//! client.

use crate::copy;
use crate::error::Error;
use crate::manifest::{Platform, Platforms};
use crate::progress::{Event, Progress, Verbosity};
use crate::pull::inspect::{self, Inspect};
use crate::pull::{self, Logins, Output};
use crate::push::{self, Choose};
use crate::reference::Reference;
use crate::registry::auth::Credentials;
use crate::registry::credentials;
use crate::registry::http::Settings;
use crate::registry::mirrors::{self, Source};
use crate::registry::proxy::ProxySettings;
use crate::sinks::layout::Layout;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// How to reach registries, and where progress goes; see the crate's documentation.
///
/// Built with [`Client::new`] and the methods that follow it, each taking and giving back the
/// client. Nothing is sent until an operation runs.
pub struct Client {
    http: Settings,
    mirrors: Source,
    verify_keys: Vec<PathBuf>,
    cache_dir: Option<PathBuf>,
    platform: Option<Platform>,
    platforms: Option<Platforms>,
    working_dir: PathBuf,
    credentials: Option<Credentials>,
    docker_config: Option<PathBuf>,
    progress: Arc<Progress>,
}

impl Default for Client {
    fn default() -> Client {
        Client::new()
    }
}

impl Client {
    /// HTTPS with the webpki roots (and the per-host certificates of `/etc/docker/certs.d` and
    /// `/etc/containers/certs.d`), no proxy, 5 retries, a 60 s timeout, no credentials, no
    /// cache, this machine's platform, files written in the working directory, and progress
    /// nowhere.
    pub fn new() -> Client {
        Client {
            http: Settings {
                retries: 5,
                timeout: Duration::from_secs(60),
                certs_dirs: CERTS_DIRS.iter().map(PathBuf::from).collect(),
                ..Settings::default()
            },
            mirrors: Source::Off,
            verify_keys: Vec::new(),
            cache_dir: None,
            platform: None,
            platforms: None,
            working_dir: PathBuf::from("."),
            credentials: None,
            docker_config: None,
            progress: Arc::new(Progress::with(Verbosity::Quiet, false)),
        }
    }

    /// Plain HTTP instead of HTTPS (a registry on a trusted network, or loopback).
    pub fn insecure(mut self, insecure: bool) -> Client {
        self.http.insecure = insecure;
        self
    }

    /// Also trusts the CA certificates in this PEM file.
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Client {
        self.http.ca_files.push(path.into());
        self
    }

    /// Sends every request through this proxy (`http://[user:password@]host:port`).
    pub fn proxy(mut self, url: &str) -> Client {
        self.http.proxy = ProxySettings::explicit(url.to_string(), Vec::new());
        self
    }

    /// How often a failed request or a broken download is tried again.
    pub fn retries(mut self, retries: u32) -> Client {
        self.http.retries = retries;
        self
    }

    /// The connect timeout, and the longest a transfer may stall.
    pub fn timeout(mut self, timeout: Duration) -> Client {
        self.http.timeout = timeout;
        self
    }

    /// A user and password for the registry of the image an operation names (a token
    /// registry's token service gets them, as Docker Hub's does). They never go elsewhere.
    pub fn credentials(mut self, user: &str, password: &str) -> Client {
        self.credentials = Some(Credentials::password(user, password));
        self
    }

    /// Looks up stored credentials in this Docker configuration directory (its `config.json`
    /// and the credential helpers it names), for registries the client has none for.
    pub fn docker_config(mut self, dir: impl Into<PathBuf>) -> Client {
        self.docker_config = Some(dir.into());
        self
    }

    /// Keeps verified blobs in `dir` and reuses them on later pulls.
    pub fn cache_dir(mut self, dir: impl Into<PathBuf>) -> Client {
        self.cache_dir = Some(dir.into());
        self
    }

    /// The platform to pull from a multi-platform index (`linux/arm64`, `linux/arm/v6`).
    pub fn platform(mut self, platform: &str) -> Result<Client, Error> {
        self.platform = Some(Platform::parse(platform).map_err(Error::Usage)?);
        Ok(self)
    }

    /// Keeps several platforms of a multi-platform index in an archive, with the index:
    /// `all`, or a comma-separated list (`linux/amd64,linux/arm64`, the first being the one
    /// engines before Docker 25 load). A single platform is the same as [`Client::platform`].
    pub fn platforms(mut self, platforms: &str) -> Result<Client, Error> {
        match Platforms::parse(platforms).map_err(Error::Usage)? {
            Some(Platforms::List(list)) => {
                self.platform = list.first().cloned();
                self.platforms = Some(Platforms::List(list));
            }
            Some(Platforms::All) => self.platforms = Some(Platforms::All),
            None => return self.platform(platforms),
        }
        Ok(self)
    }

    /// Asks this mirror first: `https://mirror:5000` for Docker Hub, `REGISTRY=URL` for another.
    pub fn mirror(mut self, mirror: &str) -> Result<Client, Error> {
        let mirror = mirrors::parse(mirror).map_err(Error::Usage)?;
        match &mut self.mirrors {
            Source::Given(list) => list.push(mirror),
            _ => self.mirrors = Source::Given(vec![mirror]),
        }
        Ok(self)
    }

    /// Accepts an image only if a cosign signature by this public key (PEM) names it.
    ///
    /// Needs the `verify` cargo feature (in the default set); a build without it returns a usage
    /// error ([`ErrorKind::Usage`](crate::ErrorKind::Usage)) naming the feature.
    pub fn verify_key(mut self, path: impl Into<PathBuf>) -> Client {
        self.verify_keys.push(path.into());
        self
    }

    /// Where archives and exports are written when their path is relative.
    pub fn working_dir(mut self, dir: impl Into<PathBuf>) -> Client {
        self.working_dir = dir.into();
        self
    }

    /// Gives every progress event to `callback`, in order, as it happens; without it nothing
    /// is reported.
    pub fn on_event(mut self, callback: impl Fn(&Event) + Send + Sync + 'static) -> Client {
        self.progress = Arc::new(Progress::to(callback));
        self
    }

    /// Where the command's progress goes (stderr, at its verbosity).
    #[doc(hidden)]
    pub fn progress(mut self, progress: Arc<Progress>) -> Client {
        self.progress = progress;
        self
    }

    /// Pulls `image` (`debian`, `registry.example:5000/team/app:1.2`) into `output`, and returns
    /// the path written (`None` when it went to standard output).
    pub fn pull(&self, image: &str, output: Output) -> Result<Option<PathBuf>, Error> {
        self.pull_all(&[image], output)
    }

    /// Pulls several images into one archive (a layer they share stored once), as
    /// `docker save a b` writes it; the other outputs take one image.
    pub fn pull_all(&self, images: &[&str], output: Output) -> Result<Option<PathBuf>, Error> {
        let mut images = images.iter().map(|i| reference(i));
        let Some(image) = images.next() else {
            return Err(Error::Usage("no image to pull".into()));
        };
        let more_images = images.collect::<Result<Vec<_>, _>>()?;
        if !more_images.is_empty() && !matches!(output, Output::Archive(_)) {
            return Err(Error::Usage(
                "several images go into one archive only; a root filesystem, a flattened tar or a layer takes one".into(),
            ));
        }
        let docker_layout = matches!(&output, Output::Archive(f) if f.layout == Layout::Docker);
        if self.platforms.is_some() && !docker_layout {
            return Err(Error::Usage(
                "several platforms go into an archive of the Docker layout only (the legacy layout has no index); a root filesystem, a flattened tar or a layer takes one".into(),
            ));
        }
        let options = pull::Options {
            image: image?,
            more_images,
            output: output.within(&self.working_dir),
            http: self.http.clone(),
            mirrors: self.mirrors.clone(),
            verify_keys: self.verify_keys.clone(),
            cache_dir: self.cache_dir.clone(),
            cache_max: None,
            platform: self.platform.clone(),
            platforms: self.platforms.clone(),
            listed_at: Vec::new(),
            working_dir: self.working_dir.clone(),
            layers_dir: None,
            no_rm: false,
        };
        self.run_pull(&options)
    }

    /// What the registry says about `image` (its tags, digests, documents or platforms), as
    /// the command prints it: lines, or JSON documents each followed by a newline.
    pub fn inspect(&self, image: &str, what: Inspect) -> Result<Vec<u8>, Error> {
        let options = inspect::Options {
            image: reference(image)?,
            http: self.http.clone(),
            mirrors: self.mirrors.clone(),
            verify_keys: self.verify_keys.clone(),
            platform: self.platform.clone(),
            kind: what,
        };
        let mut answer = Vec::new();
        self.run_inspect(&options, &mut answer)?;
        Ok(answer)
    }

    /// Pushes the one image of a `docker save` archive (or `--no-tar` directory) to `image`
    /// (every platform of an archived index, or those [`Client::platforms`] names); returns
    /// `REGISTRY/REPOSITORY@sha256:…` of what was stored.
    ///
    /// Needs the `push` cargo feature (in the default set); a build without it returns a usage
    /// error ([`ErrorKind::Usage`](crate::ErrorKind::Usage)) naming the feature.
    pub fn push(&self, archive: &Path, image: &str) -> Result<Vec<String>, Error> {
        let options = push::Options {
            source: archive.to_path_buf(),
            destination: reference(image)?,
            choose: Choose::Only,
            http: self.http.clone(),
            record: push::record_dir(self.cache_dir.as_deref(), &|_| None),
            verify_keys: self.verify_keys.clone(),
            platforms: self.platforms.clone().or_else(|| {
                let one = self.platform.clone()?;
                Some(Platforms::List(vec![one]))
            }),
            have: Vec::new(),
        };
        self.run_push(&options)
    }

    /// Copies `image` from its registry to `destination` with nothing on disk, every platform
    /// and digest kept; returns `REGISTRY/REPOSITORY@sha256:…`.
    ///
    /// Needs the `push` cargo feature (in the default set); a build without it returns a usage
    /// error ([`ErrorKind::Usage`](crate::ErrorKind::Usage)) naming the feature.
    pub fn copy(&self, image: &str, destination: &str) -> Result<Vec<String>, Error> {
        let options = copy::Options {
            images: vec![reference(image)?],
            listed_at: Vec::new(),
            destination: reference(destination)?,
            http: self.http.clone(),
            mirrors: self.mirrors.clone(),
            verify_keys: self.verify_keys.clone(),
            platform: self.platform.clone(),
            platforms: self.platforms.clone(),
            with_referrers: false,
        };
        self.run_copy(&options)
    }

    /// Runs a pull the command line put together.
    #[doc(hidden)]
    pub fn run_pull(&self, options: &pull::Options) -> Result<Option<PathBuf>, Error> {
        let registry = |r: &Reference| self.for_image(r, &options.image);
        let mirror = |host: &str| self.stored(host);
        let logins = Logins {
            registry: &registry,
            mirror: &mirror,
        };
        pull::pull(options, &logins, self.progress.clone())
    }

    /// Runs an inspection the command line put together, writing the answer to `out`.
    #[doc(hidden)]
    pub fn run_inspect(
        &self,
        options: &inspect::Options,
        out: &mut dyn std::io::Write,
    ) -> Result<(), Error> {
        let registry = |r: &Reference| self.for_image(r, &options.image);
        let mirror = |host: &str| self.stored(host);
        let logins = Logins {
            registry: &registry,
            mirror: &mirror,
        };
        inspect::inspect(options, &logins, self.progress.clone(), out)
    }

    /// Runs a push the command line put together.
    #[doc(hidden)]
    pub fn run_push(&self, options: &push::Options) -> Result<Vec<String>, Error> {
        let credentials = |r: &Reference| self.for_image(r, &options.destination);
        push::push(options, &credentials, self.progress.clone())
    }

    /// Runs an `--artifact` fetch the command line put together (`-`: the file to `out`).
    #[doc(hidden)]
    pub fn run_artifact(
        &self,
        options: &crate::artifact::Options,
        out: &mut dyn std::io::Write,
    ) -> Result<Vec<PathBuf>, Error> {
        let registry = |r: &Reference| self.for_image(r, &options.image);
        let mirror = |host: &str| self.stored(host);
        let logins = Logins {
            registry: &registry,
            mirror: &mirror,
        };
        crate::artifact::fetch(options, &logins, self.progress.clone(), out)
    }

    /// Runs a copy the command line put together.
    #[doc(hidden)]
    pub fn run_copy(&self, options: &copy::Options) -> Result<Vec<String>, Error> {
        let source = &options.images[0];
        let registry = |r: &Reference| self.for_image(r, source);
        let mirror = |host: &str| self.stored(host);
        let logins = Logins {
            registry: &registry,
            mirror: &mirror,
        };
        // The destination gets the client's credentials only when it is the source's registry.
        let destination = |r: &Reference| self.for_image(r, source);
        copy::copy(options, &logins, &destination, self.progress.clone())
    }

    /// The credentials for `reference`: the client's own when it is on the registry of `own`
    /// (the image the operation names), else those stored for its registry.
    fn for_image(&self, reference: &Reference, own: &Reference) -> Option<Credentials> {
        match &self.credentials {
            Some(given) if reference.registry == own.registry => Some(given.clone()),
            _ => self.stored(&reference.registry),
        }
    }

    /// Docker's stored credentials for a registry (`docker.io` for Hub) or a mirror's host. A
    /// broken config or a missing helper is a warning, not an error: public images still pull
    /// anonymously.
    fn stored(&self, registry: &str) -> Option<Credentials> {
        let dir = self.docker_config.as_ref()?;
        match credentials::lookup(dir, registry) {
            Ok(found) => found,
            Err(e) => {
                self.progress
                    .warn(&format!("ignoring stored Docker credentials: {e}"));
                None
            }
        }
    }
}

/// Docker's and podman's directories of per-host certificates.
pub(crate) const CERTS_DIRS: [&str; 2] = ["/etc/docker/certs.d", "/etc/containers/certs.d"];

fn reference(text: &str) -> Result<Reference, Error> {
    Reference::parse(text).map_err(|reason| Error::Reference {
        input: text.to_string(),
        reason,
    })
}
