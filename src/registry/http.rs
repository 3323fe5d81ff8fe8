//! The only place dockersave speaks HTTP: one `ureq` agent and the request/response types the
//! rest of the registry client uses.
//!
//! Why ureq (blocking, rustls with ring): its TLS config takes extra trust anchors, its proxy
//! support honours `NO_PROXY`, it drops `Authorization` on redirects to other hosts, and it keeps
//! C code (aws-lc) out of the static cross builds. Keeping every ureq type inside this file makes
//! that choice a one-file decision. This module knows nothing of registries, tokens or digests,
//! and never logs a header (headers carry credentials).

use crate::error::Error;
use std::io::Read;
use std::time::Duration;

/// Connection settings, decided once from the command line.
pub struct Http {
    agent: ureq::Agent,
}

/// A response whose status has not been judged yet: callers decide what each status means.
pub struct Response {
    host: String,
    inner: ureq::http::Response<ureq::Body>,
}

impl Http {
    pub fn new() -> Http {
        let config = ureq::Agent::config_builder()
            // Statuses are the registry client's business: 401 starts the auth flow.
            .http_status_as_error(false)
            .user_agent(concat!("dockersave/", env!("CARGO_PKG_VERSION")))
            .timeout_connect(Some(Duration::from_secs(30)))
            .timeout_recv_response(Some(Duration::from_secs(120)))
            // A stalled transfer must not hang the tool forever.
            .timeout_per_read(Some(Duration::from_secs(120)))
            .max_redirects(10)
            .build();
        Http {
            agent: config.new_agent(),
        }
    }

    /// GETs `url`. `host` names the server in error messages. Redirects are followed; an
    /// `Authorization` header is not sent to the redirect target.
    pub fn get(&self, url: &str, host: &str, headers: &[(&str, &str)]) -> Result<Response, Error> {
        let mut request = self.agent.get(url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let inner = request.call().map_err(|e| network_error(host, e))?;
        Ok(Response {
            host: host.to_string(),
            inner,
        })
    }
}

impl Default for Http {
    fn default() -> Self {
        Http::new()
    }
}

fn network_error(host: &str, error: ureq::Error) -> Error {
    let detail = match error {
        ureq::Error::HostNotFound => "host not found".to_string(),
        ureq::Error::ConnectionFailed => "connection failed".to_string(),
        ureq::Error::Timeout(what) => format!("timed out ({what})"),
        ureq::Error::Io(e) => e.to_string(),
        ureq::Error::Tls(e) => format!("TLS failure: {e}"),
        ureq::Error::Rustls(e) => format!("TLS failure: {e}"),
        other => other.to_string(),
    };
    Error::Network {
        host: host.to_string(),
        detail,
    }
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
