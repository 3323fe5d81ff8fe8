//! The distribution API requests dockersave makes (`/v2/`, manifests, blobs) and what each
//! status means for the user.
//!
//! It hands out manifests and configs only after checking them against their digests; layer
//! blobs come back as streams for the layer pipeline to verify as they pass. It does not parse
//! manifests (that is `manifest`) and does not write files.

use super::auth::{self, Credentials};
use super::http::{Http, Response};
pub use crate::limits::{MAX_DOCUMENT, MAX_ERROR_BODY};

use crate::digest::Digest;
use crate::error::Error;
use crate::locks::lock;
use crate::manifest::{self, Descriptor};
use crate::reference::Reference;
use miniserde::Deserialize;
use std::io::{self, Read};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

pub struct Registry {
    /// Where requests go, tried in this order: the mirrors, then the registry itself, always
    /// last and the only one for a push.
    endpoints: Vec<Endpoint>,
    /// The endpoint in use. A mirror that failed is not asked again by this client.
    current: AtomicUsize,
    repository: String,
    /// The image as the user should see it in messages.
    image: String,
    /// What a token is asked for: pulling this repository, or pushing to it (and pulling the
    /// repositories a push mounts blobs from).
    scopes: Vec<String>,
    /// Blob downloads requested before their reader asked (see `request_ahead`).
    early: Mutex<Vec<(Digest, Response)>>,
}

/// One host that serves the repository, with what it alone is sent: its own credentials, and
/// the token it gave. Nothing of one endpoint ever goes to another.
struct Endpoint {
    http: Http,
    /// `https://host` or `http://host`.
    base: String,
    /// The API host, for messages.
    host: String,
    credentials: Option<Credentials>,
    /// The `Authorization` value in use; behind a lock because layer downloads run on
    /// several threads and any of them may have to renew a token.
    authorization: Mutex<Option<String>>,
    mirror: bool,
}

impl Endpoint {
    fn new(http: Http, base: String, credentials: Option<Credentials>, mirror: bool) -> Endpoint {
        Endpoint {
            host: super::http::host_of(&base),
            http,
            base,
            credentials,
            authorization: Mutex::new(None),
            mirror,
        }
    }

    /// Sends a request to an API path, or to a URL the host gave, with this endpoint's
    /// `Authorization` when the URL is on this host.
    fn send(
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

    /// A full URL for an API path, or the URL itself when the host gave an absolute one.
    fn url(&self, path_or_url: &str) -> String {
        if path_or_url.starts_with("https://") || path_or_url.starts_with("http://") {
            path_or_url.to_string()
        } else {
            format!("{}{path_or_url}", self.base)
        }
    }

    /// The `Authorization` value for `url`: the one in use when the URL is on this host, none
    /// for any other.
    fn authorization_for(&self, url: &str) -> Option<String> {
        same_origin_path(url, &self.base)?;
        lock(&self.authorization).clone()
    }
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
    #[cfg(feature = "push")]
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
        let base = format!("{}://{}", http.scheme(), reference.api_host());
        Registry {
            endpoints: vec![Endpoint::new(http, base, credentials, false)],
            current: AtomicUsize::new(0),
            repository: reference.repository.clone(),
            image: reference.to_string(),
            scopes,
            early: Mutex::new(Vec::new()),
        }
    }

    /// Asks `mirrors` (each a base URL and the credentials stored for its host) for the
    /// repository before the registry, in their order. A mirror is asked without retries: one
    /// that fails gives way to the next at once.
    pub fn through(mut self, mirrors: Vec<(String, Option<Credentials>)>) -> Registry {
        let http = self.http().without_retries();
        let registry = self.endpoints.pop();
        self.endpoints = mirrors
            .into_iter()
            .map(|(base, credentials)| Endpoint::new(http.clone(), base, credentials, true))
            .chain(registry)
            .collect();
        self
    }

    /// Fetches a manifest or index by tag or digest, verifying the bytes against the digest asked
    /// for and against `Docker-Content-Digest` when the registry sends one.
    pub fn manifest(&self, reference: &str) -> Result<FetchedManifest, Error> {
        let path = format!("/v2/{}/manifests/{reference}", self.repository);
        let what = format!("the manifest of {}", self.image);
        let accept = manifest::ACCEPTED.join(", ");
        let response = self.get_authorized(&path, Some(&accept), &what)?;
        self.note_answer(&response, &what);
        verified_manifest(response, reference, what)
    }

    /// As `manifest`, for one that may not exist (a signature's tag): `None` on 404.
    #[cfg(any(feature = "verify", feature = "artifact", feature = "push"))]
    pub fn lookup_manifest(&self, reference: &str) -> Result<Option<FetchedManifest>, Error> {
        let path = format!("/v2/{}/manifests/{reference}", self.repository);
        let what = format!("{reference} of {}", self.repository);
        let accept = manifest::ACCEPTED.join(", ");
        let headers = [("Accept", accept.as_str())];
        // A mirror's 404 is an answer here, not a failure to move on from.
        let response = self.pulled(&path, &headers, |s| s == 200 || s == 404)?;
        match response.status() {
            200 => verified_manifest(response, reference, what).map(Some),
            404 => {
                response.discard();
                Ok(None)
            }
            status => Err(self.status_error(response, status, &what)),
        }
    }

    /// The OCI 1.1 referrers of `digest` (an image index): the referrers API's answer, else,
    /// from a registry without the API (a 404, or another 4xx from registries that do not know
    /// the path), the index its fallback tag `sha256-<hex>` names; `None` when neither exists.
    #[cfg(any(feature = "verify", feature = "artifact"))]
    pub fn referrers(&self, digest: &Digest) -> Result<Option<Vec<u8>>, Error> {
        match self.referrers_api(digest)? {
            Some(index) => Ok(Some(index)),
            None => Ok(self
                .lookup_manifest(&fallback_tag(digest))?
                .map(|f| f.bytes)),
        }
    }

    /// The referrers API's answer for `digest`; `None` when the registry has no such API.
    #[cfg(any(feature = "verify", feature = "artifact", feature = "push"))]
    pub fn referrers_api(&self, digest: &Digest) -> Result<Option<Vec<u8>>, Error> {
        let path = format!("/v2/{}/referrers/{digest}", self.repository);
        let what = format!("the referrers of {digest}");
        let response = self.pulled(&path, &[], |s| s == 200 || (400..500).contains(&s))?;
        match response.status() {
            200 => response.read_limited(MAX_DOCUMENT, &what).map(Some),
            400..=499 => {
                response.discard();
                Ok(None)
            }
            status => Err(self.status_error(response, status, &what)),
        }
    }

    /// For `--verbose`: which host answered for `what` (a mirror's tag can be stale) and the
    /// pull rate limit it reports, if any.
    fn note_answer(&self, response: &Response, what: &str) {
        let endpoint = self.endpoint();
        let from = if endpoint.mirror { "mirror " } else { "" };
        let limit = rate_limit(response)
            .map(|limit| format!("; rate limit: {limit}"))
            .unwrap_or_default();
        self.progress().detail(&format!(
            "  {what} came from {from}{}{limit}",
            endpoint.host
        ));
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
            resumes_left: self.retries(),
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
                    match self.pulled(&path, &[], |status| status == 200) {
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
        let response = self.pulled(&path, &[("Range", &range)], |s| s == 200 || s == 206)?;
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
    pub fn tags(&self, each: &mut dyn FnMut(&str) -> Result<(), Error>) -> Result<(), Error> {
        use crate::limits::{MAX_TAGS, MAX_TAG_PAGES, TAGS_PAGE};
        let what = format!("the tag list of {}", self.repository);
        // Pages of a bounded size, each handed on before the next is asked for: memory is
        // one page, however many tags there are.
        let mut path = format!("/v2/{}/tags/list?n={TAGS_PAGE}", self.repository);
        let mut count = 0;
        // Bounded: a registry that links pages in a circle, or without end, must stop.
        for _ in 0..MAX_TAG_PAGES {
            let response = self.get_authorized(&path, None, &what)?;
            let next = response
                .headers_all("link")
                .iter()
                .find_map(|l| next_page(l));
            let body = response.read_limited(MAX_DOCUMENT, &what)?;
            let text = std::str::from_utf8(&body).map_err(|_| Error::Invalid {
                what: what.clone(),
                detail: "it is not UTF-8 text".into(),
            })?;
            let too_many = || Error::Invalid {
                what: what.clone(),
                detail: format!("it lists more than the {MAX_TAGS} tags dockersave prints"),
            };
            // One tag at a time: a registry that ignores `n` sends every tag in one page.
            let page = crate::limits::each_string(text, "tags", &mut |tag| {
                count += 1;
                if count > MAX_TAGS {
                    return Err(too_many());
                }
                each(&tag)
            });
            page.map_err(|e| Error::Invalid {
                what: what.clone(),
                detail: e.or("it is not a JSON tag list"),
            })??;
            match next {
                None => return Ok(()),
                Some(_) if count >= MAX_TAGS => return Err(too_many()),
                Some(next) => {
                    path = same_origin_path(&next, &self.endpoint().base).ok_or_else(|| {
                        Error::Invalid {
                            what: what.clone(),
                            detail: format!("its next page is on another host ({next})"),
                        }
                    })?
                }
            }
        }
        Err(Error::Invalid {
            what,
            detail: format!("its pages do not end (more than {MAX_TAG_PAGES})"),
        })
    }

    /// The host answering now: a mirror, or the registry itself.
    pub fn host(&self) -> &str {
        &self.endpoint().host
    }

    /// How often a failed request or broken transfer is tried again.
    pub fn retries(&self) -> u32 {
        self.http().retries()
    }

    #[cfg(feature = "push")]
    pub fn repository(&self) -> &str {
        &self.repository
    }

    pub fn progress(&self) -> &std::sync::Arc<crate::progress::Progress> {
        self.http().progress()
    }

    /// The endpoint in use.
    fn endpoint(&self) -> &Endpoint {
        &self.endpoints[self.current.load(Ordering::Acquire)]
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
        let response = self.pulled(path, &headers, |status| status == 200)?;
        match response.status() {
            200 => Ok(response),
            status => Err(self.status_error(response, status, what)),
        }
    }

    /// GETs an API path for a pull on the endpoint in use. When that is a mirror and it fails
    /// (no connection, or a status `ok` refuses: 404, 5xx, 429, a login it wants), the failure
    /// is reported on one line and the next endpoint is asked, down to the registry, whose
    /// answer the caller judges whatever it is.
    fn pulled(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        ok: fn(u16) -> bool,
    ) -> Result<Response, Error> {
        loop {
            let at = self.current.load(Ordering::Acquire);
            let endpoint = &self.endpoints[at];
            let result = self.authorized_on(endpoint, "GET", path, headers, &[]);
            if !endpoint.mirror {
                return result;
            }
            let failure = match result {
                Ok(response) if ok(response.status()) => return Ok(response),
                Ok(response) => {
                    let status = response.status();
                    response.discard();
                    format!("HTTP {status}")
                }
                // The cause only: the advice of a registry's error does not fit a mirror.
                Err(Error::Network { detail, .. } | Error::Auth { detail, .. }) => {
                    detail.split("; ").next().unwrap_or_default().to_string()
                }
                Err(error) => error.to_string(),
            };
            // Threads that saw the same mirror fail move on once, and say so once.
            if self
                .current
                .compare_exchange(at, at + 1, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                let next = &self.endpoints[at + 1];
                let which = if next.mirror {
                    "the next mirror"
                } else {
                    "the registry"
                };
                self.progress().warn(&format!(
                    "mirror {}: {failure}; trying {which}, {}",
                    endpoint.host, next.host
                ));
            }
        }
    }

    /// Sends a request on the endpoint in use (a push has only the registry), answering a
    /// 401 by authenticating and sending it once more; the caller judges the final status.
    #[cfg(feature = "push")]
    pub(super) fn authorized(
        &self,
        method: &'static str,
        path_or_url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Response, Error> {
        self.authorized_on(self.endpoint(), method, path_or_url, headers, body)
    }

    /// Sends a request to `endpoint`, answering a 401 (a token that expired, or was scoped too
    /// narrowly) by authenticating there and sending it once more.
    fn authorized_on(
        &self,
        endpoint: &Endpoint,
        method: &'static str,
        path_or_url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Response, Error> {
        let response = endpoint.send(method, path_or_url, headers, body)?;
        if response.status() != 401 {
            return Ok(response);
        }
        self.authenticate_on(endpoint, &response)?;
        // Read to its end, so that its connection is reused for the request sent again.
        response.discard();
        let again = endpoint.send(method, path_or_url, headers, body)?;
        let basic = lock(&endpoint.authorization)
            .as_deref()
            .is_some_and(|a| a.starts_with("Basic "));
        if again.status() == 401 && basic {
            again.discard();
            return Err(self.credentials_refused_on(endpoint));
        }
        Ok(again)
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
        self.endpoint().send(method, path_or_url, headers, body)
    }

    /// A full URL for an API path, or the URL itself when the registry gave an absolute one.
    #[cfg(feature = "push")]
    pub(super) fn url(&self, path_or_url: &str) -> String {
        self.endpoint().url(path_or_url)
    }

    /// The `Authorization` value for `url`: the one in use when the URL is on this registry,
    /// none for any other host.
    #[cfg(feature = "push")]
    pub(super) fn authorization_for(&self, url: &str) -> Option<String> {
        self.endpoint().authorization_for(url)
    }

    /// The registry's own HTTP client (mirrors are asked without retries).
    pub(super) fn http(&self) -> &Http {
        &self.endpoints[self.endpoints.len() - 1].http
    }

    /// Answers a 401 of the endpoint in use.
    #[cfg(feature = "push")]
    pub(super) fn authenticate(&self, response: &Response) -> Result<(), Error> {
        self.authenticate_on(self.endpoint(), response)
    }

    /// Answers a 401: a Bearer challenge is exchanged for a token with this registry's scopes,
    /// with `endpoint`'s own credentials; a Basic challenge is met with those credentials.
    fn authenticate_on(&self, endpoint: &Endpoint, response: &Response) -> Result<(), Error> {
        let challenges: Vec<auth::Challenge> = response
            .headers_all("www-authenticate")
            .iter()
            .flat_map(|h| auth::parse_challenges(h))
            .collect();
        if let Some(bearer) = challenges.iter().find(|c| c.scheme == "bearer") {
            let header = auth::bearer_authorization(
                &endpoint.http,
                bearer,
                &self.scopes,
                endpoint.credentials.as_ref(),
                endpoint.base.starts_with("https://"),
            )?;
            *lock(&endpoint.authorization) = Some(header);
            return Ok(());
        }
        let login = |detail: &str| Error::Auth {
            host: endpoint.host.clone(),
            detail: detail.to_string(),
        };
        if challenges.iter().any(|c| c.scheme == "basic") {
            let Some(credentials) = &endpoint.credentials else {
                return Err(login(if endpoint.mirror {
                    "the mirror requires a login; store one for its host (docker login HOST)"
                } else {
                    "the registry requires a login; pass --user (and --password) or --ilogin"
                }));
            };
            if lock(&endpoint.authorization).is_some() {
                return Err(self.credentials_refused_on(endpoint));
            }
            let Some(basic) = credentials.basic_header() else {
                return Err(login("the registry wants a user name and password, but the stored credentials are an identity token; pass --user"));
            };
            *lock(&endpoint.authorization) = Some(basic);
            return Ok(());
        }
        let schemes: Vec<&str> = challenges.iter().map(|c| c.scheme.as_str()).collect();
        Err(login(&if schemes.is_empty() {
            "the registry answered 401 without a WWW-Authenticate challenge".to_string()
        } else {
            format!(
                "the registry asks for unsupported authentication ({})",
                schemes.join(", ")
            )
        }))
    }

    /// Whether `GET /v2/` is anything but "not found": asked only to explain a 404, since no
    /// request checks the API ahead.
    fn serves_the_api(&self) -> bool {
        self.send_method("GET", "/v2/", &[], &[])
            .map_or(true, |response| response.status() != 404)
    }

    fn credentials_refused_on(&self, endpoint: &Endpoint) -> Error {
        Error::Auth {
            host: endpoint.host.clone(),
            detail: if endpoint.credentials.is_some() {
                "the registry refused the user name or password; check --user/--password".into()
            } else {
                "the registry requires a login; pass --user (and --password) or --ilogin".into()
            },
        }
    }

    pub(super) fn status_error(&self, response: Response, status: u16, what: &str) -> Error {
        if status == 429 {
            let limit = rate_limit(&response);
            let reset = response
                .header("retry-after")
                .and_then(super::http::parse_retry_after);
            response.discard();
            return Error::Http {
                host: self.endpoint().host.clone(),
                status,
                detail: too_many_requests(limit.as_deref(), reset),
            };
        }
        let body = response
            .read_limited(MAX_ERROR_BODY, "the error response")
            .unwrap_or_default();
        let detail = registry_error_detail(&body);
        let endpoint = self.endpoint();
        let host = endpoint.host.clone();
        match status {
            // Go's and nginx's answers to plain HTTP on a TLS port (--insecure against an
            // HTTPS registry): the connection is wrong, not the request.
            400 if speaks_https(&body) => Error::Network {
                host,
                detail: "it speaks HTTPS, and --insecure asked for plain HTTP; leave out --insecure (with --cacert FILE for a private CA)".into(),
            },
            401 | 403 => Error::Auth {
                host,
                detail: format!(
                    "access to {} denied{}: {}",
                    self.image,
                    detail.map(|d| format!(" ({d})")).unwrap_or_default(),
                    if endpoint.credentials.is_some()
                        && self.scopes.iter().any(|s| s.ends_with(",push"))
                    {
                        "check the user name and password, and that this user may push to it"
                    } else if endpoint.credentials.is_some() {
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
            _ => Error::Http {
                host,
                status,
                detail: format!(
                    "{what}: {}",
                    detail.unwrap_or_else(|| "unexpected answer".into())
                ),
            },
        }
    }
}

/// A manifest's bytes, read and checked against the digest asked for (`reference`, when it is
/// one) and against `Docker-Content-Digest` when the registry sends one.
fn verified_manifest(
    response: Response,
    reference: &str,
    what: String,
) -> Result<FetchedManifest, Error> {
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
            .pulled(&self.path, &[("Range", &range)], |s| s == 200 || s == 206)
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

/// The target of a `Link` header's `rel="next"` entry (`</v2/x/tags/list?last=b&n=2>;
/// rel="next"`).
/// The tag OCI 1.1 lists the referrers of `digest` under where the registry has no referrers
/// API: `sha256-<hex>`.
#[cfg(any(feature = "verify", feature = "artifact", feature = "push"))]
pub fn fallback_tag(digest: &Digest) -> String {
    format!("sha256-{}", digest.hex())
}

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

/// Docker Hub's account of the pull rate limit (`ratelimit-limit: 100;w=21600`,
/// `ratelimit-remaining: 76;w=21600`, `docker-ratelimit-source: <address or account>`), read
/// from an answer that came anyway: no request is made to learn it.
fn rate_limit(response: &Response) -> Option<String> {
    describe_rate_limit(
        response.header("ratelimit-limit")?,
        response.header("ratelimit-remaining"),
        response.header("docker-ratelimit-source"),
    )
}

/// `"100;w=21600"`, `"76;w=21600"`, `"1.2.3.4"` → `"100 pulls per 6 h, 76 left, counted
/// for 1.2.3.4"`.
pub fn describe_rate_limit(
    limit: &str,
    remaining: Option<&str>,
    source: Option<&str>,
) -> Option<String> {
    let number = |text: &str| text.split(';').next()?.trim().parse::<u64>().ok();
    let pulls = number(limit)?;
    let window = limit
        .split(';')
        .find_map(|part| part.trim().strip_prefix("w="))
        .and_then(|w| w.parse::<u64>().ok());
    let mut text = format!("{pulls} pulls");
    if let Some(seconds) = window {
        text.push_str(&format!(" per {}", span(seconds)));
    }
    if let Some(left) = remaining.and_then(number) {
        text.push_str(&format!(", {left} left"));
    }
    if let Some(source) = source {
        let source: String = source
            .chars()
            .filter(|c| !c.is_control())
            .take(64)
            .collect();
        text.push_str(&format!(", counted for {source}"));
    }
    Some(text)
}

/// `21600` → `"6 h"`, `90` → `"2 min"`, `30` → `"30 s"`.
fn span(seconds: u64) -> String {
    match seconds {
        0..=59 => format!("{seconds} s"),
        60..=3599 => format!("{} min", seconds.div_ceil(60)),
        _ => format!("{} h", seconds.saturating_add(1800) / 3600),
    }
}

/// The one line a 429 ends a pull with: what the limit is and when it resets, when the
/// registry said, and the two ways to a higher one.
fn too_many_requests(limit: Option<&str>, reset: Option<std::time::Duration>) -> String {
    let mut text = String::from("too many requests: the pull rate limit");
    if let Some(limit) = limit {
        text.push_str(&format!(" ({limit})"));
    }
    text.push_str(" is used up");
    if let Some(reset) = reset {
        text.push_str(&format!("; it resets in about {}", span(reset.as_secs())));
    }
    text.push_str(
        "; a mirror or pull-through cache (--mirror) or a login (--user, --ilogin) raises it",
    );
    text
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

/// Whether a 400's body is a TLS server's answer to plain HTTP (Go's net/http, nginx).
fn speaks_https(body: &[u8]) -> bool {
    let body = String::from_utf8_lossy(body);
    body.contains("HTTP request to an HTTPS server")
        || body.contains("plain HTTP request was sent to HTTPS port")
}

/// The registry's own explanation from an error body (`{"errors":[{"code","message"}]}`),
/// made safe to print on one line.
fn registry_error_detail(body: &[u8]) -> Option<String> {
    let parsed: ErrorBody = crate::limits::json(std::str::from_utf8(body).ok()?).ok()?;
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
    fn describes_rate_limits() {
        assert_eq!(
            describe_rate_limit("100;w=21600", Some("76;w=21600"), Some("1.2.3.4")).as_deref(),
            Some("100 pulls per 6 h, 76 left, counted for 1.2.3.4")
        );
        assert_eq!(
            describe_rate_limit("200", None, None).as_deref(),
            Some("200 pulls")
        );
        assert_eq!(describe_rate_limit("lots", Some("1"), None), None);
        assert_eq!(
            [span(30), span(90), span(3600), span(21600)],
            ["30 s", "2 min", "1 h", "6 h"]
        );
        // A hostile Retry-After must not overflow.
        assert_eq!(span(u64::MAX), format!("{} h", u64::MAX / 3600));
        let text = too_many_requests(
            Some("100 pulls per 6 h"),
            Some(std::time::Duration::from_secs(600)),
        );
        assert!(
            text.contains("(100 pulls per 6 h) is used up; it resets in about 10 min; a mirror")
        );
        assert!(!too_many_requests(None, None).contains("()"));
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
