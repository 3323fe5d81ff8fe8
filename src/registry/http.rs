//! The only place dockersave speaks HTTP: the `ureq` agents (one per route: direct or through a
//! proxy), trust roots, and the request/response types the
//! rest of the registry client uses.
//!
//! Why ureq (blocking, rustls with ring): its TLS config takes extra trust anchors, its proxy
//! support honours `NO_PROXY`, it drops `Authorization` on redirects to other hosts, and it keeps
//! C code (aws-lc) out of the static cross builds. Keeping every ureq type inside this file makes
//! that choice a one-file decision. This module knows nothing of registries, tokens or digests,
//! and never logs a header (headers carry credentials).

use super::proxy::ProxySettings;
use crate::error::Error;
use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;
use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};

/// How to connect, decided once from the command line and environment.
#[derive(Clone, Debug, Default)]
pub struct Settings {
    /// PEM files whose certificates are trusted besides the webpki roots (`--cacert`,
    /// `SSL_CERT_FILE`).
    pub ca_files: Vec<PathBuf>,
    pub proxy: ProxySettings,
}

/// One agent per way out (direct, through the http proxy, through the https proxy), so that
/// each request can take the route `ProxySettings` picks for its URL.
pub struct Http {
    direct: ureq::Agent,
    proxied: Vec<(String, ureq::Agent)>,
    proxy: ProxySettings,
}

/// A response whose status has not been judged yet: callers decide what each status means.
pub struct Response {
    host: String,
    inner: ureq::http::Response<ureq::Body>,
}

impl Http {
    pub fn new(settings: &Settings) -> Result<Http, Error> {
        let roots = trust_roots(&settings.ca_files)?;
        let mut proxied: Vec<(String, ureq::Agent)> = Vec::new();
        for url in [&settings.proxy.http, &settings.proxy.https]
            .into_iter()
            .flatten()
        {
            if !proxied.iter().any(|(known, _)| known == url) {
                let proxy = ureq::Proxy::new(url).map_err(|_| {
                    Error::Usage(
                        "the proxy URL (--proxy or *_PROXY) is not a valid http:// or socks URL"
                            .into(),
                    )
                })?;
                proxied.push((url.clone(), agent(&roots, Some(proxy))));
            }
        }
        Ok(Http {
            direct: agent(&roots, None),
            proxied,
            proxy: settings.proxy.clone(),
        })
    }

    /// GETs `url`. `host` names the server in error messages. Redirects are followed; an
    /// `Authorization` header is never sent to the redirect target.
    pub fn get(&self, url: &str, host: &str, headers: &[(&str, &str)]) -> Result<Response, Error> {
        let mut request = self.agent_for(url).get(url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let inner = request.call().map_err(|e| network_error(host, e))?;
        Ok(Response {
            host: host.to_string(),
            inner,
        })
    }

    /// POSTs a form (`application/x-www-form-urlencoded`), for OAuth2 token requests.
    pub fn post_form(&self, url: &str, host: &str, form: &str) -> Result<Response, Error> {
        let inner = self
            .agent_for(url)
            .post(url)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .send(form)
            .map_err(|e| network_error(host, e))?;
        Ok(Response {
            host: host.to_string(),
            inner,
        })
    }

    fn agent_for(&self, url: &str) -> &ureq::Agent {
        let scheme = if url.starts_with("https://") {
            "https"
        } else {
            "http"
        };
        match self.proxy.for_target(scheme, &host_of(url)) {
            Some(proxy) => self
                .proxied
                .iter()
                .find(|(u, _)| u == proxy)
                .map_or(&self.direct, |(_, a)| a),
            None => &self.direct,
        }
    }
}

fn agent(roots: &RootCerts, proxy: Option<ureq::Proxy>) -> ureq::Agent {
    ureq::Agent::config_builder()
        // Statuses are the registry client's business: 401 starts the auth flow.
        .http_status_as_error(false)
        .user_agent(concat!("dockersave/", env!("CARGO_PKG_VERSION")))
        .tls_config(TlsConfig::builder().root_certs(roots.clone()).build())
        // Never ureq's own reading of the environment: ProxySettings decides, per URL.
        .proxy(proxy)
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_response(Some(Duration::from_secs(120)))
        // A stalled transfer must not hang the tool forever.
        .timeout_per_read(Some(Duration::from_secs(120)))
        .max_redirects(10)
        .build()
        .new_agent()
}

/// The webpki roots, plus the certificates of `ca_files` when there are any.
fn trust_roots(ca_files: &[PathBuf]) -> Result<RootCerts, Error> {
    if ca_files.is_empty() {
        return Ok(RootCerts::WebPki);
    }
    let mut certs: Vec<Certificate<'static>> = webpki_root_certs::TLS_SERVER_ROOT_CERTS
        .iter()
        .map(|der| Certificate::from_der(der).to_owned())
        .collect();
    for path in ca_files {
        let pem = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let before = certs.len();
        for item in ureq::tls::parse_pem(&pem) {
            if let Ok(PemItem::Certificate(cert)) = item {
                certs.push(cert);
            }
        }
        if certs.len() == before {
            return Err(Error::Usage(format!(
                "{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
                path.display()
            )));
        }
    }
    Ok(RootCerts::new_with_certs(&certs))
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

fn network_error(host: &str, error: ureq::Error) -> Error {
    const CHECK: &str =
        "check the host name, the port and the network; a plain-HTTP registry needs --insecure";
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

    /// The body as a stream, for blobs.
    pub fn into_reader(self) -> impl Read + Send {
        self.inner.into_body().into_reader()
    }
}
