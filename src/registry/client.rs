//! The distribution API requests dockersave makes (`/v2/`, manifests, blobs) and what each
//! status means for the user.
//!
//! It hands out manifests and configs only after checking them against their digests; layer
//! blobs come back as streams for the layer pipeline to verify as they pass. It does not parse
//! manifests (that is `manifest`) and does not write files.

use super::auth::{self, Credentials};
use super::http::{Http, Response};
use crate::digest::Digest;
use crate::error::Error;
use crate::lock;
use crate::manifest::{self, Descriptor};
use crate::reference::Reference;
use miniserde::{json, Deserialize};
use std::io::{self, Read};
use std::sync::{Mutex, MutexGuard};

/// Manifests and configs larger than this are refused: real ones are a few KiB.
pub const MAX_DOCUMENT: u64 = 4 << 20;
/// How much of an error response is read to explain it.
const MAX_ERROR_BODY: u64 = 64 << 10;

pub struct Registry {
    http: Http,
    /// `https://host` or `http://host`.
    base: String,
    /// The API host, for messages.
    host: String,
    repository: String,
    /// The image as the user should see it in messages.
    image: String,
    credentials: Option<Credentials>,
    /// What a token is asked for: pulling this repository, or pushing to it (and pulling the
    /// repositories a push mounts blobs from).
    scopes: Vec<String>,
    /// The `Authorization` value in use; behind a lock because layer downloads run on
    /// several threads and any of them may have to renew a token.
    authorization: Mutex<Option<String>>,
    /// Blob downloads requested before their reader asked (see `request_ahead`).
    early: Mutex<Vec<(Digest, Response)>>,
}

/// A manifest as fetched: its verified bytes, Content-Type and digest.
#[derive(Clone)]
pub struct FetchedManifest {
    pub bytes: Vec<u8>,
    pub content_type: Option<String>,
    pub digest: Digest,
}

impl Registry {
    /// A client for pulling `reference`. Nothing is sent yet: the first request meets the
    /// registry's challenge, if any, and authenticates then (no `GET /v2/` ping: it would cost
    /// a round trip that the first real request makes anyway).
    pub fn for_pull(
        http: Http,
        reference: &Reference,
        credentials: Option<Credentials>,
    ) -> Registry {
        let scopes = vec![format!("repository:{}:pull", reference.repository)];
        Registry::new(http, reference, credentials, scopes)
    }

    /// As `for_pull`, for pushing to `reference`'s repository and mounting blobs from the
    /// repositories `mount_from` (on the same registry).
    pub fn for_push(
        http: Http,
        reference: &Reference,
        credentials: Option<Credentials>,
        mount_from: &[String],
    ) -> Registry {
        let mut scopes = vec![format!("repository:{}:pull,push", reference.repository)];
        scopes.extend(mount_from.iter().map(|r| format!("repository:{r}:pull")));
        Registry::new(http, reference, credentials, scopes)
    }

    fn new(
        http: Http,
        reference: &Reference,
        credentials: Option<Credentials>,
        scopes: Vec<String>,
    ) -> Registry {
        let host = reference.api_host().to_string();
        let scheme = http.scheme();
        Registry {
            http,
            base: format!("{scheme}://{host}"),
            host,
            repository: reference.repository.clone(),
            image: reference.to_string(),
            credentials,
            scopes,
            authorization: Mutex::new(None),
            early: Mutex::new(Vec::new()),
        }
    }

    /// Fetches a manifest or index by tag or digest, verifying the bytes against the digest asked
    /// for and against `Docker-Content-Digest` when the registry sends one.
    pub fn manifest(&self, reference: &str) -> Result<FetchedManifest, Error> {
        let path = format!("/v2/{}/manifests/{reference}", self.repository);
        let what = format!("the manifest of {}", self.image);
        let accept = manifest::ACCEPTED.join(", ");
        let response = self.get_authorized(&path, Some(&accept), &what)?;
        let content_type = response.header("content-type").map(str::to_string);
        let header_digest = response.header("docker-content-digest").map(str::to_string);
        let bytes = response.read_limited(MAX_DOCUMENT, &what)?;
        let digest = Digest::of_bytes(&bytes);
        let expected = match Digest::parse(reference) {
            Ok(asked) => Some(asked),
            // A tag: trust the header's claim only enough to check it.
            Err(_) => header_digest.as_deref().and_then(|d| Digest::parse(d).ok()),
        };
        if let Some(expected) = expected {
            if expected != digest {
                return Err(Error::DigestMismatch {
                    what,
                    expected: expected.to_string(),
                    actual: digest.to_string(),
                });
            }
        }
        Ok(FetchedManifest {
            bytes,
            content_type,
            digest,
        })
    }

    /// Fetches a small blob (the image config) whole and verifies size and digest.
    pub fn small_blob(&self, blob: &Descriptor, what: &str) -> Result<Vec<u8>, Error> {
        if blob.size > MAX_DOCUMENT {
            return Err(Error::Invalid {
                what: what.to_string(),
                detail: format!(
                    "its size {} exceeds the {} MiB dockersave accepts",
                    blob.size,
                    MAX_DOCUMENT >> 20
                ),
            });
        }
        let bytes = self
            .blob(&blob.digest, what)?
            .read_limited(MAX_DOCUMENT, what)?;
        let actual = Digest::of_bytes(&bytes);
        if actual != blob.digest || bytes.len() as u64 != blob.size {
            return Err(Error::DigestMismatch {
                what: what.to_string(),
                expected: format!("{} ({} bytes)", blob.digest, blob.size),
                actual: format!("{actual} ({} bytes)", bytes.len()),
            });
        }
        Ok(bytes)
    }

    /// Starts downloading a blob of `size` bytes; the caller verifies what it reads. A broken
    /// connection is resumed where it stopped (see `BlobReader`). The bytes and the resumes of
    /// the image's layer `layer` (0-based) are reported to the progress display.
    pub fn blob_stream(
        &self,
        digest: &Digest,
        size: u64,
        what: &str,
        layer: Option<usize>,
    ) -> Result<BlobReader<'_>, Error> {
        let response = match self.take_early(digest) {
            Some(response) => response,
            None => self.blob(digest, what)?,
        };
        let body = Box::new(response.into_reader());
        Ok(BlobReader {
            layer,
            path: format!("/v2/{}/blobs/{digest}", self.repository),
            size,
            received: 0,
            resumes_left: self.http.retries(),
            resumed: 0,
            what: what.to_string(),
            registry: self,
            body,
        })
    }

    /// Requests the blobs `digests` now, each on a thread of its own, so that their bytes are
    /// on the way while the caller fetches the image config; `blob_stream` takes the answers
    /// up. Returns once every answer has begun. An answer other than 200 is dropped: the
    /// stream asks again and reports it.
    pub fn request_ahead(&self, digests: &[Digest]) {
        std::thread::scope(|scope| {
            for digest in digests {
                scope.spawn(move || {
                    let path = format!("/v2/{}/blobs/{digest}", self.repository);
                    match self.authorized("GET", &path, &[], &[]) {
                        Ok(response) if response.status() == 200 => {
                            lock(&self.early).push((digest.clone(), response))
                        }
                        Ok(response) => response.discard(),
                        Err(_) => {}
                    }
                });
            }
        });
    }

    fn take_early(&self, digest: &Digest) -> Option<Response> {
        let mut early = lock(&self.early);
        let at = early.iter().position(|(d, _)| d == digest)?;
        Some(early.swap_remove(at).1)
    }

    /// The last `n` bytes of a blob of `size` bytes, by a range request (a gzip trailer, which
    /// holds the uncompressed size). `None` when the registry answers with the whole blob
    /// instead: it is not read.
    pub fn blob_tail(
        &self,
        digest: &Digest,
        size: u64,
        n: u64,
        what: &str,
    ) -> Result<Option<Vec<u8>>, Error> {
        let path = format!("/v2/{}/blobs/{digest}", self.repository);
        let range = format!(
            "bytes={}-{}",
            size.saturating_sub(n),
            size.saturating_sub(1)
        );
        let response = self.authorized("GET", &path, &[("Range", &range)], &[])?;
        match response.status() {
            206 => {
                let bytes = response.read_limited(n, what)?;
                if bytes.len() as u64 != n.min(size) {
                    return Err(Error::Invalid {
                        what: what.to_string(),
                        detail: format!(
                            "the registry sent {} bytes for a range of {n}",
                            bytes.len()
                        ),
                    });
                }
                Ok(Some(bytes))
            }
            200 => Ok(None),
            status => Err(self.status_error(response, status, what)),
        }
    }

    /// Every tag of the repository, following the `Link: <…>; rel="next"` pages to the end.
    pub fn tags(&self) -> Result<Vec<String>, Error> {
        let what = format!("the tag list of {}", self.repository);
        let mut path = format!("/v2/{}/tags/list", self.repository);
        let mut tags = Vec::new();
        // Bounded: a registry that links pages in a circle must not keep us forever.
        for _ in 0..100_000 {
            let response = self.get_authorized(&path, None, &what)?;
            let next = response
                .headers_all("link")
                .iter()
                .find_map(|l| next_page(l));
            let body = response.read_limited(MAX_DOCUMENT, &what)?;
            let page: TagList = std::str::from_utf8(&body)
                .ok()
                .and_then(|text| json::from_str(text).ok())
                .ok_or_else(|| Error::Invalid {
                    what: what.clone(),
                    detail: "it is not a JSON tag list".into(),
                })?;
            tags.extend(page.tags.unwrap_or_default());
            match next {
                None => return Ok(tags),
                Some(next) => {
                    path = same_origin_path(&next, &self.base).ok_or_else(|| Error::Invalid {
                        what: what.clone(),
                        detail: format!("its next page is on another host ({next})"),
                    })?
                }
            }
        }
        Err(Error::Invalid {
            what,
            detail: "its pages do not end".into(),
        })
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    /// How often a failed request or broken transfer is tried again.
    pub fn retries(&self) -> u32 {
        self.http.retries()
    }

    pub fn repository(&self) -> &str {
        &self.repository
    }

    pub fn progress(&self) -> &std::sync::Arc<crate::progress::Progress> {
        self.http.progress()
    }

    fn blob(&self, digest: &Digest, what: &str) -> Result<Response, Error> {
        let path = format!("/v2/{}/blobs/{digest}", self.repository);
        self.get_authorized(&path, None, what)
    }

    /// GETs an API path, re-authenticating once when a 401 shows the token expired or was
    /// scoped too narrowly, and turns every non-200 status into an error the user can act on.
    fn get_authorized(
        &self,
        path: &str,
        accept: Option<&str>,
        what: &str,
    ) -> Result<Response, Error> {
        let headers: Vec<(&str, &str)> = accept.map(|a| ("Accept", a)).into_iter().collect();
        let response = self.authorized("GET", path, &headers, &[])?;
        match response.status() {
            200 => Ok(response),
            status => Err(self.status_error(response, status, what)),
        }
    }

    /// Sends a request, answering a 401 (a token that expired, or was scoped too narrowly) by
    /// authenticating and sending it once more; the caller judges the final status.
    pub(super) fn authorized(
        &self,
        method: &'static str,
        path_or_url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Response, Error> {
        let response = self.send_method(method, path_or_url, headers, body)?;
        if response.status() != 401 {
            return Ok(response);
        }
        self.authenticate(&response)?;
        // Read to its end, so that its connection is reused for the request sent again.
        response.discard();
        let again = self.send_method(method, path_or_url, headers, body)?;
        let basic = self
            .current_authorization()
            .is_some_and(|a| a.starts_with("Basic "));
        if again.status() == 401 && basic {
            again.discard();
            return Err(self.credentials_refused());
        }
        Ok(again)
    }

    fn current_authorization(&self) -> Option<String> {
        self.lock_authorization().clone()
    }

    fn lock_authorization(&self) -> MutexGuard<'_, Option<String>> {
        lock(&self.authorization)
    }

    /// Sends a request to an API path or to a URL the registry gave (an upload's `Location`),
    /// with the `Authorization` in use; never to another host, which gets no credentials.
    pub(super) fn send_method(
        &self,
        method: &'static str,
        path_or_url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Response, Error> {
        let url = self.url(path_or_url);
        let authorization = self.authorization_for(&url);
        let mut headers = headers.to_vec();
        if let Some(authorization) = &authorization {
            headers.push(("Authorization", authorization.as_str()));
        }
        self.http
            .request(method, &url, &super::http::host_of(&url), &headers, body)
    }

    /// A full URL for an API path, or the URL itself when the registry gave an absolute one.
    pub(super) fn url(&self, path_or_url: &str) -> String {
        if path_or_url.starts_with("https://") || path_or_url.starts_with("http://") {
            path_or_url.to_string()
        } else {
            format!("{}{path_or_url}", self.base)
        }
    }

    /// The `Authorization` value for `url`: the one in use when the URL is on this registry,
    /// none for any other host.
    pub(super) fn authorization_for(&self, url: &str) -> Option<String> {
        same_origin_path(url, &self.base)?;
        self.current_authorization()
    }

    pub(super) fn http(&self) -> &Http {
        &self.http
    }

    /// Answers a 401: a Bearer challenge is exchanged for a token with this registry's scopes;
    /// a Basic challenge is met with the user's credentials.
    pub(super) fn authenticate(&self, response: &Response) -> Result<(), Error> {
        let challenges: Vec<auth::Challenge> = response
            .headers_all("www-authenticate")
            .iter()
            .flat_map(|h| auth::parse_challenges(h))
            .collect();
        if let Some(bearer) = challenges.iter().find(|c| c.scheme == "bearer") {
            let header = auth::bearer_authorization(
                &self.http,
                bearer,
                &self.scopes,
                self.credentials.as_ref(),
            )?;
            *self.lock_authorization() = Some(header);
            return Ok(());
        }
        if challenges.iter().any(|c| c.scheme == "basic") {
            let Some(credentials) = &self.credentials else {
                return Err(Error::Auth {
                    host: self.host.clone(),
                    detail:
                        "the registry requires a login; pass --user (and --password) or --ilogin"
                            .into(),
                });
            };
            if self.current_authorization().is_some() {
                return Err(self.credentials_refused());
            }
            let Some(basic) = credentials.basic_header() else {
                return Err(Error::Auth {
                    host: self.host.clone(),
                    detail: "the registry wants a user name and password, but the stored credentials are an identity token; pass --user".into(),
                });
            };
            *self.lock_authorization() = Some(basic);
            return Ok(());
        }
        let schemes: Vec<&str> = challenges.iter().map(|c| c.scheme.as_str()).collect();
        Err(Error::Auth {
            host: self.host.clone(),
            detail: if schemes.is_empty() {
                "the registry answered 401 without a WWW-Authenticate challenge".into()
            } else {
                format!(
                    "the registry asks for unsupported authentication ({})",
                    schemes.join(", ")
                )
            },
        })
    }

    /// Whether `GET /v2/` is anything but "not found": asked only to explain a 404, since no
    /// request checks the API ahead.
    fn serves_the_api(&self) -> bool {
        self.send_method("GET", "/v2/", &[], &[])
            .map_or(true, |response| response.status() != 404)
    }

    pub(super) fn credentials_refused(&self) -> Error {
        Error::Auth {
            host: self.host.clone(),
            detail: if self.credentials.is_some() {
                "the registry refused the user name or password; check --user/--password".into()
            } else {
                "the registry requires a login; pass --user (and --password) or --ilogin".into()
            },
        }
    }

    pub(super) fn status_error(&self, response: Response, status: u16, what: &str) -> Error {
        let body = response
            .read_limited(MAX_ERROR_BODY, "the error response")
            .unwrap_or_default();
        let detail = registry_error_detail(&body);
        let host = self.host.clone();
        match status {
            401 | 403 => Error::Auth {
                host,
                detail: format!(
                    "access to {} denied{}: {}",
                    self.image,
                    detail.map(|d| format!(" ({d})")).unwrap_or_default(),
                    if self.credentials.is_some() && self.scopes.iter().any(|s| s.ends_with(",push")) {
                        "check the user name and password, and that this user may push to it"
                    } else if self.credentials.is_some() {
                        "check the user name and password, and that this user may pull it"
                    } else {
                        "the repository may not exist, or it needs a login (--user or --ilogin)"
                    }
                ),
            },
            404 if !self.serves_the_api() => Error::Http {
                host,
                status: 404,
                detail: "this host does not serve the registry API (GET /v2/ not found)".into(),
            },
            404 => Error::NotFound {
                what: format!(
                    "{what} not found on {host}{}; check the repository name and tag",
                    detail.map(|d| format!(" ({d})")).unwrap_or_default()
                ),
            },
            429 => Error::Http {
                host,
                status,
                detail: "too many requests: the registry's pull rate limit was reached; wait and retry, or log in (--user/--ilogin) for a higher limit".into(),
            },
            _ => Error::Http {
                host,
                status,
                detail: format!("{what}: {}", detail.unwrap_or_else(|| "unexpected answer".into())),
            },
        }
    }
}

/// A blob download that survives broken connections: when the connection drops, stalls past
/// the timeout or ends before `size` bytes, it asks again with `Range: bytes=<received>-` and
/// carries on, so the hashes computed downstream continue over one unbroken byte stream. A
/// server that ignores the range (200 instead of 206) is read from the start again, discarding
/// the bytes already received. At most `--retries` resumptions per blob.
pub struct BlobReader<'a> {
    registry: &'a Registry,
    layer: Option<usize>,
    path: String,
    size: u64,
    received: u64,
    resumes_left: u32,
    resumed: u32,
    what: String,
    body: Box<dyn Read + Send>,
}

impl Read for BlobReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.body.read(buf) {
                Ok(0) if self.received < self.size && self.resumes_left > 0 => {
                    self.resume(&format!(
                        "the connection closed after {} of {} bytes",
                        self.received, self.size
                    ))?
                }
                Ok(n) => {
                    self.received += n as u64;
                    if let Some(layer) = self.layer {
                        self.registry.progress().bytes(layer, n as u64);
                    }
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if self.resumes_left > 0 => self.resume(&e.to_string())?,
                Err(e) => return Err(e),
            }
        }
    }
}

impl BlobReader<'_> {
    fn resume(&mut self, cause: &str) -> io::Result<()> {
        self.resumes_left -= 1;
        let wait = super::http::backoff(self.resumed, None, 0.5);
        self.resumed += 1;
        self.registry.progress().layer_event(
            self.layer,
            &format!("resumed at byte {}", self.received),
            &format!(
                "{}: {cause}; resuming at byte {} in {:.1}s",
                self.what,
                self.received,
                wait.as_secs_f64()
            ),
        );
        std::thread::sleep(wait);
        let range = format!("bytes={}-", self.received);
        let response = self
            .registry
            .authorized("GET", &self.path, &[("Range", &range)], &[])
            .map_err(|e| io::Error::other(e.to_string()))?;
        match response.status() {
            206 => {
                let content_range = response.header("content-range").unwrap_or_default();
                let start = format!("bytes {}-", self.received);
                if !content_range.starts_with(&start) {
                    return Err(io::Error::other(format!(
                        "the registry resumed at {content_range:?}, not at byte {}",
                        self.received
                    )));
                }
                self.body = Box::new(response.into_reader());
            }
            200 => {
                let mut body = response.into_reader();
                let skipped = io::copy(&mut (&mut body).take(self.received), &mut io::sink())?;
                if skipped != self.received {
                    return Err(io::Error::other("the blob ended early on the second try"));
                }
                self.body = Box::new(body);
            }
            status => {
                return Err(io::Error::other(format!(
                    "resuming the download got HTTP {status}"
                )))
            }
        }
        Ok(())
    }
}

#[derive(Deserialize)]
struct TagList {
    tags: Option<Vec<String>>,
}

/// The target of a `Link` header's `rel="next"` entry (`</v2/x/tags/list?last=b&n=2>;
/// rel="next"`).
fn next_page(header: &str) -> Option<String> {
    header.split(',').find_map(|link| {
        let (target, params) = link.trim().split_once(';')?;
        let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        params
            .split(';')
            .any(|p| {
                p.trim()
                    .strip_prefix("rel=")
                    .is_some_and(|r| r.trim_matches('"').split(' ').any(|r| r == "next"))
            })
            .then(|| target.to_string())
    })
}

/// The path (with its query) of `url` when it is relative or on `base` (`https://host`): the
/// next page must come from the registry the credentials are for.
fn same_origin_path(url: &str, base: &str) -> Option<String> {
    let path = if url.starts_with('/') {
        url
    } else {
        url.strip_prefix(base)
            .filter(|rest| rest.starts_with('/'))?
    };
    (!path.starts_with("//")).then(|| path.to_string())
}

#[derive(Deserialize)]
struct ErrorBody {
    errors: Vec<ErrorEntry>,
}

#[derive(Deserialize)]
struct ErrorEntry {
    code: Option<String>,
    message: Option<String>,
}

/// The registry's own explanation from an error body (`{"errors":[{"code","message"}]}`),
/// made safe to print on one line.
fn registry_error_detail(body: &[u8]) -> Option<String> {
    let parsed: ErrorBody = json::from_str(std::str::from_utf8(body).ok()?).ok()?;
    let first = parsed.errors.into_iter().next()?;
    let text = match (first.code, first.message) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(text), None) | (None, Some(text)) => text,
        (None, None) => return None,
    };
    Some(text.chars().filter(|c| !c.is_control()).take(200).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_next_links_on_the_same_registry_only() {
        let link = r#"</v2/a/tags/list?last=b&n=2>; rel="next""#;
        assert_eq!(
            next_page(link).as_deref(),
            Some("/v2/a/tags/list?last=b&n=2")
        );
        assert_eq!(
            next_page(r#"<https://r.example/v2/a/tags/list?n=1>; rel="prev", </x?n=2>; rel=next"#)
                .as_deref(),
            Some("/x?n=2")
        );
        assert_eq!(next_page(r#"</x>; rel="last""#), None);
        assert_eq!(next_page("garbage"), None);
        let base = "https://r.example";
        assert_eq!(
            same_origin_path("https://r.example/v2/a/tags/list?n=2", base).as_deref(),
            Some("/v2/a/tags/list?n=2")
        );
        assert_eq!(same_origin_path("/v2/x", base).as_deref(), Some("/v2/x"));
        assert_eq!(same_origin_path("https://evil.example/v2/x", base), None);
        assert_eq!(same_origin_path("https://r.example.evil/v2/x", base), None);
        assert_eq!(same_origin_path("//evil.example/v2/x", base), None);
    }

    #[test]
    fn explains_registry_errors_on_one_line() {
        let body = br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest\nunknown","detail":{"Tag":"x"}}]}"#;
        assert_eq!(
            registry_error_detail(body).unwrap(),
            "MANIFEST_UNKNOWN: manifestunknown"
        );
        assert_eq!(registry_error_detail(b"<html>"), None);
        assert_eq!(registry_error_detail(br#"{"errors":[]}"#), None);
    }
}
