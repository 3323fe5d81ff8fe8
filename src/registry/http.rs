//! The only place dockersave speaks HTTP: the `ureq` agents (one per route: direct or through a
//! proxy, and one per host a `certs.d` directory names), trust roots, redirects, and the
//! request/response types the rest of the registry client uses.
//!
//! Why ureq (blocking, rustls with ring): its TLS config takes extra trust anchors, its proxy
//! support honours `NO_PROXY`, and it keeps C code (aws-lc) out of the static cross builds.
//! Keeping every ureq type inside this file makes that choice a one-file decision.
//!
//! Redirects are followed here, hop by hop, not by ureq: each hop is sent with the agent of its
//! own host (its certs.d CA and client certificate, never the first host's), an
//! `Authorization` header goes only to the host it was meant for, and a hop from HTTPS to plain
//! HTTP is refused unless `--insecure`. Every response is read against a deadline besides the
//! per-read timeout (`Paced`): a server that trickles bytes cannot hold a run forever. This
//! module knows nothing of registries, tokens or digests, and never logs a header (headers
//! carry credentials).

use super::certs;
use super::proxy::ProxySettings;
use crate::error::Error;
use crate::progress::Progress;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use ureq::tls::{Certificate, ClientCert, PemItem, RootCerts, TlsConfig};

/// How to connect, decided once from the command line and environment.
#[derive(Clone, Debug)]
pub struct Settings {
    /// PEM files whose certificates are trusted besides the webpki roots (`--cacert`,
    /// `SSL_CERT_FILE`).
    pub ca_files: Vec<PathBuf>,
    /// Directories laid out as Docker's `certs.d` (`HOST[:PORT]/*.crt`, `*.cert`, `*.key`),
    /// searched in this order; the first with a directory for a host decides its certificates.
    pub certs_dirs: Vec<PathBuf>,
    pub proxy: ProxySettings,
    /// How often a failed request is tried again (`--retries`).
    pub retries: u32,
    /// Connect timeout, and the longest a transfer may stall (`--timeout`).
    pub timeout: Duration,
    /// Plain HTTP instead of HTTPS to the registry (`--insecure`).
    pub insecure: bool,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            ca_files: Vec::new(),
            certs_dirs: Vec::new(),
            proxy: ProxySettings::default(),
            retries: 5,
            timeout: Duration::from_secs(60),
            insecure: false,
        }
    }
}

/// One agent per way out (direct, through the http proxy, through the https proxy), so that
/// each request can take the route `ProxySettings` picks for its URL, and one of its own for a
/// host with a `certs.d` directory. A clone shares the agents, and with them their pools of
/// open connections.
#[derive(Clone)]
pub struct Http {
    direct: ureq::Agent,
    proxied: Vec<(String, ureq::Agent)>,
    proxy: ProxySettings,
    retries: u32,
    insecure: bool,
    timeout: Duration,
    /// The certificates every agent trusts: the webpki roots and `--cacert`'s.
    roots: Arc<Vec<Certificate<'static>>>,
    certs_dirs: Arc<Vec<PathBuf>>,
    /// The HTTPS hosts met so far, with what `certs.d` holds for them (made when first met).
    hosts: Arc<Mutex<Vec<Host>>>,
    /// Where retries and, with --verbose, requests are reported.
    progress: Arc<Progress>,
}

/// An HTTPS host and, when a `certs.d` directory names it, the agent made from that directory
/// (its CAs trusted besides the others, its client certificate presented) and that
/// certificate's file, for messages.
struct Host {
    name: String,
    agent: Option<ureq::Agent>,
    client_cert: Option<PathBuf>,
}

/// A response whose status has not been judged yet: callers decide what each status means.
pub struct Response {
    host: String,
    inner: ureq::http::Response<ureq::Body>,
    /// How long its body may take before the average pace is judged (see `Paced`).
    grace: Duration,
}

/// Why a request (with its redirects) failed: in ureq, or refused here before it was sent.
enum Failure {
    /// The host the failing hop went to, and what ureq said.
    Ureq(String, ureq::Error),
    Refused(Error),
}

/// Redirects one request may go through, as browsers and Go allow.
const MAX_REDIRECTS: usize = 10;

impl Http {
    pub fn new(settings: &Settings, progress: Arc<Progress>) -> Result<Http, Error> {
        let certs = trust_roots(&settings.ca_files)?;
        let roots = RootCerts::new_with_certs(&certs);
        let mut proxied: Vec<(String, ureq::Agent)> = Vec::new();
        for url in [&settings.proxy.http, &settings.proxy.https]
            .into_iter()
            .flatten()
        {
            if !proxied.iter().any(|(known, _)| known == url) {
                let proxy = ureq::Proxy::new(url).map_err(|_| bad_proxy())?;
                let tls = TlsConfig::builder().root_certs(roots.clone()).build();
                proxied.push((url.clone(), agent(tls, Some(proxy), settings.timeout)));
            }
        }
        let tls = TlsConfig::builder().root_certs(roots).build();
        Ok(Http {
            direct: agent(tls, None, settings.timeout),
            proxied,
            proxy: settings.proxy.clone(),
            retries: settings.retries,
            insecure: settings.insecure,
            timeout: settings.timeout,
            roots: Arc::new(certs),
            certs_dirs: Arc::new(settings.certs_dirs.clone()),
            hosts: Arc::new(Mutex::new(Vec::new())),
            progress,
        })
    }

    pub fn progress(&self) -> &Arc<Progress> {
        &self.progress
    }

    /// The same client, sharing its connections, that tries each request once: for mirrors,
    /// which give way to the next host instead of being waited for.
    pub fn without_retries(&self) -> Http {
        Http {
            retries: 0,
            ..self.clone()
        }
    }

    /// The scheme registries are reached with: `http` with `--insecure`, else `https`.
    pub fn scheme(&self) -> &'static str {
        if self.insecure {
            "http"
        } else {
            "https"
        }
    }

    /// GETs `url`. `host` names the server in error messages. Redirects are followed (see the
    /// module). Dropped connections, timeouts, 5xx and 429 answers are retried with backoff
    /// (see `backoff`).
    pub fn get(&self, url: &str, host: &str, headers: &[(&str, &str)]) -> Result<Response, Error> {
        self.request("GET", url, host, headers, &[])
    }

    /// A request whose body is `body` (empty for HEAD, POST and a final PUT), retried as `get`
    /// is: the body is in memory and can be sent again.
    pub fn request(
        &self,
        method: &'static str,
        url: &str,
        host: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Response, Error> {
        self.with_retries(method, url, host, || {
            self.follow(method, url, headers, body)
        })
    }

    /// Sends one request and follows the redirects it meets, each hop with its own host's
    /// agent; `Authorization` only to the first URL's host, HTTPS never downgraded to HTTP
    /// (unless `--insecure`), at most `MAX_REDIRECTS` hops.
    fn follow(
        &self,
        method: &'static str,
        url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<(String, ureq::http::Response<ureq::Body>), Failure> {
        let origin = host_of(url);
        let (mut method, mut url, mut body) = (method, url.to_string(), body);
        for _ in 0..=MAX_REDIRECTS {
            let host = host_of(&url);
            let agent = self.agent_for(&url).map_err(Failure::Refused)?;
            let mut request = ureq::http::Request::builder().method(method).uri(&url);
            for (name, value) in headers {
                if host != origin && name.eq_ignore_ascii_case("authorization") {
                    continue;
                }
                request = request.header(*name, *value);
            }
            let started = Instant::now();
            let sent = match body.is_empty() {
                // No body at all rather than an empty one: GET and HEAD must not announce one.
                true => request
                    .body(())
                    .map_err(ureq::Error::from)
                    .and_then(|r| agent.run(r)),
                false => request
                    .body(body)
                    .map_err(ureq::Error::from)
                    .and_then(|r| agent.run(r)),
            };
            let response = sent.map_err(|e| Failure::Ureq(host.clone(), e))?;
            let status = response.status().as_u16();
            let location = response
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .filter(|_| matches!(status, 301 | 302 | 303 | 307 | 308));
            let Some(location) = location else {
                return Ok((url, response));
            };
            self.progress
                .request(method, &url, Some(status), None, started.elapsed());
            let next = resolve_location(&url, location).ok_or_else(|| {
                Failure::Refused(Error::Invalid {
                    what: format!("the redirect from {host}"),
                    detail: "its Location is not an http(s) URL".into(),
                })
            })?;
            if url.starts_with("https://") && next.starts_with("http://") && !self.insecure {
                return Err(Failure::Refused(Error::Network {
                    host: host.clone(),
                    detail: format!(
                        "it redirects to plain HTTP ({}); dockersave does not leave TLS (--insecure allows it)",
                        host_of(&next)
                    ),
                }));
            }
            let _ = io::copy(
                &mut response.into_body().into_reader().take(MAX_DISCARD),
                &mut io::sink(),
            );
            // 303, and 301/302 after a POST, are asked again with GET, as browsers and Go do.
            if status == 303 || (matches!(status, 301 | 302) && method == "POST") {
                (method, body) = ("GET", &[]);
            }
            url = next;
        }
        Err(Failure::Refused(Error::Network {
            host: origin,
            detail: format!("more than {MAX_REDIRECTS} redirects"),
        }))
    }

    /// PATCHes a body read from `body` as it goes (chunked: its length is not known ahead), for
    /// blob uploads. Never retried here: the bytes are gone, so the upload resumes or restarts
    /// (see `registry::upload`).
    #[cfg(feature = "push")]
    pub fn patch_stream(
        &self,
        url: &str,
        host: &str,
        headers: &[(&str, &str)],
        body: &mut dyn Read,
    ) -> Result<Response, Error> {
        let started = Instant::now();
        let mut request = self.agent_for(url)?.patch(url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let result = request.send(ureq::SendBody::from_reader(body));
        let status = result.as_ref().ok().map(|r| r.status().as_u16());
        self.progress
            .request("PATCH", url, status, None, started.elapsed());
        match result {
            Ok(inner) => Ok(Response {
                host: host.to_string(),
                inner,
                grace: self.timeout.saturating_mul(2),
            }),
            Err(error) => Err(self.explain(host, error)),
        }
    }

    /// POSTs a form (`application/x-www-form-urlencoded`), for OAuth2 token requests.
    pub fn post_form(&self, url: &str, host: &str, form: &str) -> Result<Response, Error> {
        let headers = [("Content-Type", "application/x-www-form-urlencoded")];
        self.request("POST", url, host, &headers, form.as_bytes())
    }

    /// How often a failed request or broken download is tried again.
    pub fn retries(&self) -> u32 {
        self.retries
    }

    fn with_retries(
        &self,
        method: &str,
        url: &str,
        host: &str,
        call: impl Fn() -> Result<(String, ureq::http::Response<ureq::Body>), Failure>,
    ) -> Result<Response, Error> {
        let mut attempt = 0;
        loop {
            let started = Instant::now();
            let (reason, retry_after) = match call() {
                Ok((answered, inner)) => {
                    let response = Response {
                        host: host_of(&answered),
                        inner,
                        grace: self.timeout.saturating_mul(2),
                    };
                    let status = response.status();
                    let length = response
                        .header("content-length")
                        .and_then(|l| l.parse().ok());
                    self.progress.request(
                        method,
                        &answered,
                        Some(status),
                        length,
                        started.elapsed(),
                    );
                    if status != 429 && !(500..600).contains(&status) {
                        return Ok(response);
                    }
                    let retry_after = response.header("retry-after").and_then(parse_retry_after);
                    // A long wait (Hub's rate limit) is better explained than slept through.
                    if attempt >= self.retries || retry_after.is_some_and(|d| d > MAX_RETRY_AFTER) {
                        return Ok(response);
                    }
                    (format!("HTTP {status}"), retry_after)
                }
                Err(Failure::Refused(error)) => return Err(error),
                Err(Failure::Ureq(at, error)) => {
                    self.progress
                        .request(method, url, None, None, started.elapsed());
                    let shown = if at == host_of(url) {
                        host
                    } else {
                        at.as_str()
                    };
                    if attempt >= self.retries || !is_transient(&error) {
                        return Err(self.explain(shown, error));
                    }
                    (error.to_string(), None)
                }
            };
            let wait = backoff(attempt, retry_after, jitter());
            attempt += 1;
            self.progress.layer_event(
                None,
                "",
                &format!(
                    "{host}: {reason}; retrying in {:.1}s ({attempt}/{})",
                    wait.as_secs_f64(),
                    self.retries
                ),
            );
            std::thread::sleep(wait);
        }
    }

    /// The agent for `url`: its host's own when a `certs.d` directory names the host, else the
    /// one of the route `ProxySettings` picks.
    fn agent_for(&self, url: &str) -> Result<ureq::Agent, Error> {
        let host = host_of(url);
        if url.starts_with("https://") && !self.certs_dirs.is_empty() {
            if let Some(agent) = self.host_agent(&host)? {
                return Ok(agent);
            }
        }
        Ok(self.route(url, &host).clone())
    }

    fn route(&self, url: &str, host: &str) -> &ureq::Agent {
        let scheme = if url.starts_with("https://") {
            "https"
        } else {
            "http"
        };
        match self.proxy.for_target(scheme, host) {
            Some(proxy) => self
                .proxied
                .iter()
                .find(|(u, _)| u == proxy)
                .map_or(&self.direct, |(_, a)| a),
            None => &self.direct,
        }
    }

    /// The agent made from `host`'s `certs.d` directory, made the first time the host is met;
    /// `None` when no directory names it.
    fn host_agent(&self, host: &str) -> Result<Option<ureq::Agent>, Error> {
        let mut hosts = crate::locks::lock(&self.hosts);
        if let Some(known) = hosts.iter().find(|h| h.name == host) {
            return Ok(known.agent.clone());
        }
        let mut known = Host {
            name: host.to_string(),
            agent: None,
            client_cert: None,
        };
        if let Some(dir) = certs::find(&self.certs_dirs, host) {
            // A directory this user may not read (root's, in a rootless run) is passed over,
            // with a warning; a readable one that is wrong is an error.
            let files = match certs::read(&dir) {
                Err(Error::Io { path, source })
                    if source.kind() == io::ErrorKind::PermissionDenied =>
                {
                    self.progress.warn(&format!(
                        "cannot read {} ({source}); going on without its certificates",
                        path.display()
                    ));
                    hosts.push(known);
                    return Ok(None);
                }
                other => other?,
            };
            let mut roots = self.roots.as_ref().clone();
            for (path, pem) in &files.cas {
                roots.extend(certificates(path, pem)?);
            }
            let mut tls = TlsConfig::builder().root_certs(RootCerts::new_with_certs(&roots));
            if let Some(client) = &files.client {
                tls = tls
                    .client_cert(Some(client_cert(client)?))
                    .unversioned_rustls_crypto_provider(opaque_keys::provider());
                known.client_cert = Some(client.cert.clone());
            }
            let proxy = match self.proxy.for_target("https", host) {
                Some(url) => Some(ureq::Proxy::new(url).map_err(|_| bad_proxy())?),
                None => None,
            };
            self.progress.detail(&format!(
                "  {host}: certificates from {}{}",
                files.dir.display(),
                if files.client.is_some() {
                    " (with a client certificate)"
                } else {
                    ""
                }
            ));
            known.agent = Some(agent(tls.build(), proxy, self.timeout));
        }
        let agent = known.agent.clone();
        hosts.push(known);
        Ok(agent)
    }

    /// A failed request's error. A registry that wants a client certificate, or refused the
    /// one presented, is told apart from other TLS failures, with where certificates are read.
    fn explain(&self, host: &str, error: ureq::Error) -> Error {
        let Some(alert) = certificate_alert(&error) else {
            return network_error(host, error);
        };
        let presented = crate::locks::lock(&self.hosts)
            .iter()
            .find(|h| h.name == host)
            .and_then(|h| h.client_cert.clone());
        let detail = match presented {
            Some(cert) => format!(
                "the registry refused the client certificate {} (TLS alert: {alert}); check that a CA the registry trusts signed it and that it has not expired",
                cert.display()
            ),
            None => {
                let dirs: Vec<String> = self
                    .certs_dirs
                    .iter()
                    .map(|d| d.join(host).display().to_string())
                    .collect();
                format!(
                    "the registry requires a client certificate (TLS alert: {alert}) and none was found: put NAME.cert and NAME.key in one of {} (or a directory given with --certs-d)",
                    if dirs.is_empty() { "HOST directories of --certs-d".to_string() } else { dirs.join(", ") }
                )
            }
        };
        Error::Auth {
            host: host.to_string(),
            detail,
        }
    }
}

fn bad_proxy() -> Error {
    Error::Usage("the proxy URL (--proxy or *_PROXY) is not a valid http:// or socks URL".into())
}

/// The certificates of a PEM file; none at all is an error (the wrong file, most likely).
fn certificates(path: &Path, pem: &[u8]) -> Result<Vec<Certificate<'static>>, Error> {
    let certs: Vec<Certificate<'static>> = ureq::tls::parse_pem(pem)
        .filter_map(|item| match item {
            Ok(PemItem::Certificate(cert)) => Some(cert),
            _ => None,
        })
        .collect();
    if certs.is_empty() {
        return Err(Error::Usage(format!(
            "{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            path.display()
        )));
    }
    Ok(certs)
}

/// A certs.d client certificate (the chain in NAME.cert) with its key (NAME.key).
fn client_cert(files: &certs::ClientFiles) -> Result<ClientCert, Error> {
    let chain = certificates(&files.cert, &files.cert_pem)?;
    let key = ureq::tls::parse_pem(&files.key_pem).find_map(|item| match item {
        Ok(PemItem::PrivateKey(key)) => Some(key),
        _ => None,
    });
    let Some(key) = key else {
        return Err(Error::Local(format!(
            "{} holds no PEM private key for the client certificate {}",
            files.cert.with_extension("key").display(),
            files.cert.display()
        )));
    };
    Ok(ClientCert::new_with_certs(&chain, key))
}

/// A client certificate is only sent, never verified by the client: the server judges it, as
/// Docker leaves it to judge. rustls, though, parses the certificate to compare it with the key,
/// and its parser refuses X.509 v1 certificates (what `openssl x509 -req` makes without an
/// extensions file, and Docker accepts), which made ureq panic. Keys loaded through this
/// provider do not say their public half, so rustls skips that comparison; a key that does not
/// match its certificate is then refused by the server, which `Http::explain` reports.
mod opaque_keys {
    use rustls::crypto::{CryptoProvider, KeyProvider};
    use rustls::pki_types::PrivateKeyDer;
    use rustls::sign::{Signer, SigningKey};
    use rustls::{SignatureAlgorithm, SignatureScheme};
    use std::sync::Arc;

    /// ring's provider, with this module's key loader.
    pub fn provider() -> Arc<CryptoProvider> {
        Arc::new(CryptoProvider {
            key_provider: &Keys,
            ..rustls::crypto::ring::default_provider()
        })
    }

    #[derive(Debug)]
    struct Keys;

    impl KeyProvider for Keys {
        fn load_private_key(
            &self,
            key: PrivateKeyDer<'static>,
        ) -> Result<Arc<dyn SigningKey>, rustls::Error> {
            let ring = rustls::crypto::ring::default_provider();
            Ok(Arc::new(Opaque(ring.key_provider.load_private_key(key)?)))
        }
    }

    /// A key that signs as ring's does and keeps its public half to itself.
    #[derive(Debug)]
    struct Opaque(Arc<dyn SigningKey>);

    impl SigningKey for Opaque {
        fn choose_scheme(&self, offered: &[SignatureScheme]) -> Option<Box<dyn Signer>> {
            self.0.choose_scheme(offered)
        }

        fn algorithm(&self) -> SignatureAlgorithm {
            self.0.algorithm()
        }
    }
}

/// The TLS alert by which a server refused to go on without a (good) client certificate.
fn certificate_alert(error: &ureq::Error) -> Option<String> {
    use rustls::AlertDescription as A;
    let rustls_error = match error {
        ureq::Error::Rustls(e) => Some(e),
        ureq::Error::Io(e) => e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>()),
        _ => None,
    }?;
    match rustls_error {
        rustls::Error::AlertReceived(
            alert @ (A::CertificateRequired
            | A::BadCertificate
            | A::UnknownCA
            | A::CertificateUnknown
            | A::CertificateExpired
            | A::HandshakeFailure),
        ) => Some(format!("{alert:?}")),
        _ => None,
    }
}

fn agent(tls: TlsConfig, proxy: Option<ureq::Proxy>, timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        // Statuses are the registry client's business: 401 starts the auth flow.
        .http_status_as_error(false)
        .user_agent(concat!("dockersave/", env!("CARGO_PKG_VERSION")))
        .tls_config(tls)
        // Never ureq's own reading of the environment: ProxySettings decides, per URL.
        .proxy(proxy)
        .timeout_connect(Some(timeout))
        .timeout_recv_response(Some(timeout))
        // A stalled transfer must not hang the tool forever.
        .timeout_per_read(Some(timeout))
        // Followed by `Http::follow`, hop by hop, each with its own host's TLS settings.
        .max_redirects(0)
        // Every connection holds one of each (128 KiB by default); smaller ones only mean more
        // system calls, and keep memory low with several transfers at once.
        .input_buffer_size(64 * 1024)
        .output_buffer_size(32 * 1024)
        .build()
        .new_agent()
}

/// The webpki roots (Mozilla's, as full certificates), plus the certificates of `ca_files`. One
/// root store in the binary: ureq's own (`RootCerts::WebPki`, trust anchors) is left out, as
/// the certificates are needed anyway to add a private CA beside them.
fn trust_roots(ca_files: &[PathBuf]) -> Result<Vec<Certificate<'static>>, Error> {
    let mut certs: Vec<Certificate<'static>> = webpki_root_certs::TLS_SERVER_ROOT_CERTS
        .iter()
        .map(|der| Certificate::from_der(der))
        .collect();
    for path in ca_files {
        let pem = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        certs.extend(certificates(path, &pem)?);
    }
    Ok(certs)
}

/// `host[:port]` of an http(s) URL, for messages and proxy choice; never the `user:pass@` part.
pub fn host_of(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    authority
        .rsplit('@')
        .next()
        .unwrap_or(authority)
        .to_string()
}

/// Where a redirect's `Location` leads from `base`: an absolute URL, a scheme-relative one
/// (`//host/path`), an absolute path or a relative one. `None` for anything but http(s).
fn resolve_location(base: &str, location: &str) -> Option<String> {
    let location = location.trim();
    if let Some((scheme, rest)) = location.split_once("://") {
        let scheme = scheme.to_ascii_lowercase();
        return matches!(scheme.as_str(), "http" | "https").then(|| format!("{scheme}://{rest}"));
    }
    let (scheme, rest) = base.split_once("://")?;
    if let Some(authority) = location.strip_prefix("//") {
        return Some(format!("{scheme}://{authority}"));
    }
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let origin = &base[..scheme.len() + 3 + authority_end];
    if location.starts_with('/') {
        return Some(format!("{origin}{location}"));
    }
    let path = &rest[authority_end..];
    let path = path.split(['?', '#']).next().unwrap_or("");
    let dir = path.rfind('/').map_or("/", |at| &path[..=at]);
    Some(format!("{origin}{dir}{location}"))
}

/// The most of an unwanted body read to keep its connection.
const MAX_DISCARD: u64 = 64 << 10;

/// The longest `Retry-After` dockersave waits out; longer ones end the pull with the message.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// How long to wait before try `attempt + 2`: the server's `Retry-After` when it gave one, else
/// exponential backoff from 250 ms (capped at 10 s) with jitter, so that many clients failing
/// together do not come back together. `jitter` is in [0, 1).
pub fn backoff(attempt: u32, retry_after: Option<Duration>, jitter: f64) -> Duration {
    if let Some(after) = retry_after {
        return after;
    }
    let exponential = FIRST_BACKOFF
        .saturating_mul(1 << attempt.min(16))
        .min(MAX_BACKOFF);
    exponential.mul_f64(0.5 + jitter / 2.0)
}

/// `Retry-After` as delay-seconds (the HTTP-date form is rare for registries and ignored).
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// A number in [0, 1) that differs between runs and calls, without a random-number crate.
fn jitter() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// Failures worth another try: the connection broke or timed out. Refused connections, unknown
/// hosts and certificate errors will not mend by themselves.
fn is_transient(error: &ureq::Error) -> bool {
    match error {
        ureq::Error::Timeout(_) => true,
        ureq::Error::Io(e) => {
            !e.get_ref().is_some_and(|inner| inner.is::<rustls::Error>())
                && e.kind() != std::io::ErrorKind::ConnectionRefused
                && !is_unknown_host(e)
        }
        ureq::Error::Protocol(_) => true,
        _ => false,
    }
}

/// A name the resolver says does not exist (EAI_NONAME), as opposed to a resolver that could not
/// answer this time (EAI_AGAIN, which is worth a retry). The C library only tells them apart
/// in its message.
fn is_unknown_host(error: &std::io::Error) -> bool {
    let text = error.to_string();
    text.contains("Name or service not known") || text.contains("No address associated")
}

fn network_error(host: &str, error: ureq::Error) -> Error {
    // A plain-HTTP registry reached over HTTPS fails in TLS, whose advice names --insecure.
    const CHECK: &str = "check the host name, the port and the network";
    let detail = match error {
        ureq::Error::HostNotFound => "host not found; check the name (and any proxy settings)".to_string(),
        ureq::Error::ConnectionFailed => format!("connection failed; {CHECK}"),
        ureq::Error::Timeout(what) => format!("timed out ({what}); {CHECK}"),
        ureq::Error::Tls(e) => tls_advice(e),
        ureq::Error::Rustls(e) => tls_advice(&e.to_string()),
        // rustls reports certificate failures through the I/O layer.
        ureq::Error::Io(e) if e.get_ref().is_some_and(|inner| inner.is::<rustls::Error>()) => {
            tls_advice(&e.to_string())
        }
        ureq::Error::Io(e) if is_unknown_host(&e) => {
            "host not found; check the name (and any proxy settings)".to_string()
        }
        ureq::Error::Io(e) => format!("{e}; {CHECK}"),
        ureq::Error::ConnectProxyFailed(_) | ureq::Error::InvalidProxyUrl => {
            "the proxy refused or failed the connection (check HTTPS_PROXY/HTTP_PROXY/--proxy and NO_PROXY)".to_string()
        }
        other => format!("{other}; {CHECK}"),
    };
    Error::Network {
        host: host.to_string(),
        detail,
    }
}

fn tls_advice(detail: &str) -> String {
    format!("TLS failed ({detail}); if the registry's certificate comes from a private CA, pass --cacert FILE; if it speaks plain HTTP, --insecure")
}

impl Response {
    pub fn status(&self) -> u16 {
        self.inner.status().as_u16()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.inner.headers().get(name).and_then(|v| v.to_str().ok())
    }

    /// Every value of a header that may repeat (e.g. `WWW-Authenticate`).
    pub fn headers_all(&self, name: &str) -> Vec<String> {
        self.inner
            .headers()
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_string))
            .collect()
    }

    /// Reads the whole body, refusing more than `limit` bytes: manifests, configs and tokens are
    /// small, and an endless body must not exhaust memory.
    pub fn read_limited(self, limit: u64, what: &str) -> Result<Vec<u8>, Error> {
        let host = self.host.clone();
        let mut body = Vec::new();
        let mut reader = self.into_reader().take(limit + 1);
        reader.read_to_end(&mut body).map_err(|e| Error::Network {
            host: host.clone(),
            detail: format!("reading {what}: {e}"),
        })?;
        if body.len() as u64 > limit {
            return Err(Error::Invalid {
                what: format!("{what} from {host}"),
                detail: format!(
                    "it is larger than the {} KiB dockersave accepts",
                    limit / 1024
                ),
            });
        }
        Ok(body)
    }

    /// Reads a small body (an error's) to its end and drops it, so that the connection goes
    /// back to the pool instead of being closed; a large one is left unread.
    pub fn discard(self) {
        let _ = io::copy(&mut self.into_reader().take(MAX_DISCARD), &mut io::sink());
    }

    /// The body as a stream, read against the deadline `Paced` keeps.
    pub fn into_reader(self) -> impl Read + Send + 'static {
        Paced {
            inner: self.inner.into_body().into_reader(),
            started: None,
            received: 0,
            grace: self.grace,
        }
    }
}

/// A body that must keep an average pace: after a grace of twice `--timeout`, a transfer that
/// has averaged less than `limits::MIN_BLOB_RATE` since its first read is given up (as a
/// timeout, so a blob download resumes it a bounded number of times). The per-read timeout
/// catches a server that stops; this catches one that trickles a byte at a time, whatever
/// the body's size. The clock starts at the first read: a response asked for ahead waits for
/// its reader without counting.
struct Paced<R> {
    inner: R,
    started: Option<Instant>,
    received: u64,
    grace: Duration,
}

impl<R: Read> Read for Paced<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let started = *self.started.get_or_insert_with(Instant::now);
        let n = self.inner.read(buf)?;
        self.received += n as u64;
        let allowed =
            self.grace + Duration::from_secs(self.received / crate::limits::MIN_BLOB_RATE);
        if started.elapsed() > allowed {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "the transfer averaged less than {} KiB/s ({} bytes in {} s)",
                    crate::limits::MIN_BLOB_RATE >> 10,
                    self.received,
                    started.elapsed().as_secs()
                ),
            ));
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_capped_and_honours_retry_after() {
        assert_eq!(backoff(0, None, 0.0), Duration::from_millis(125));
        assert_eq!(backoff(0, None, 0.999_999).as_millis(), 249);
        assert_eq!(backoff(2, None, 0.0), Duration::from_millis(500));
        assert_eq!(backoff(30, None, 0.0), Duration::from_secs(5));
        assert_eq!(
            backoff(3, Some(Duration::from_secs(7)), 0.5),
            Duration::from_secs(7)
        );
        let j = jitter();
        assert!((0.0..1.0).contains(&j));
    }

    #[test]
    fn retry_after_seconds() {
        assert_eq!(parse_retry_after(" 3 "), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(parse_retry_after("-1"), None);
    }

    #[test]
    fn redirects_resolve_as_browsers_resolve_them() {
        let base = "https://r.example:5000/v2/a/blobs/sha256:1?x=1";
        for (location, expected) in [
            ("https://cdn.example/b?sig=2", "https://cdn.example/b?sig=2"),
            ("//cdn.example/b", "https://cdn.example/b"),
            ("/v2/other", "https://r.example:5000/v2/other"),
            ("next?y", "https://r.example:5000/v2/a/blobs/next?y"),
            ("HTTP://plain.example/", "http://plain.example/"),
        ] {
            assert_eq!(resolve_location(base, location).as_deref(), Some(expected));
        }
        assert_eq!(resolve_location(base, "file:///etc/passwd"), None);
        assert_eq!(
            resolve_location("http://h", "x").as_deref(),
            Some("http://h/x")
        );
    }

    #[test]
    fn host_of_hides_userinfo() {
        assert_eq!(
            host_of("https://u:p@auth.example:8443/token?x"),
            "auth.example:8443"
        );
        assert_eq!(host_of("http://127.0.0.1:5000"), "127.0.0.1:5000");
    }
}
