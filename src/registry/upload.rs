//! The push half of the distribution API: does the registry have a blob (`HEAD`), mount one from
//! another repository, upload sessions (`POST` → streamed `PATCH` → `PUT ?digest=`), and the
//! manifest by `PUT` with its exact media type.
//!
//! These are single requests and what their statuses mean; the upload loop that resumes or
//! restarts a broken `PATCH` is `push`'s, because only it can produce the bytes again. Nothing
//! here reads archives or decides what to upload, and no header is ever logged.

use super::client::Registry;
use super::http::Response;
use crate::digest::Digest;
use crate::error::Error;
use std::io::Read;

/// What `POST …/blobs/uploads/` gave.
pub enum Started {
    /// The blob was mounted from the other repository: nothing to upload.
    Mounted,
    /// An upload session; its URL (the `Location`, made absolute).
    Session(String),
}

impl Registry {
    /// The size of the blob when the repository holds it (`HEAD`: 200 yes, 404 no).
    pub fn blob_size(&self, digest: &Digest) -> Result<Option<u64>, Error> {
        let path = format!("/v2/{}/blobs/{digest}", self.repository());
        let response = self.authorized("HEAD", &path, &[], &[])?;
        match response.status() {
            200 => Ok(Some(
                response
                    .header("content-length")
                    .and_then(|l| l.parse().ok())
                    .unwrap_or(0),
            )),
            404 => Ok(None),
            status => Err(self.status_error(response, status, &format!("checking blob {digest}"))),
        }
    }

    /// Opens an upload session, or with `mount` = (digest, repository) asks to mount that blob
    /// from the repository instead; a registry that cannot mount opens a session (202).
    pub fn start_upload(&self, mount: Option<(&Digest, &str)>) -> Result<Started, Error> {
        let mut path = format!("/v2/{}/blobs/uploads/", self.repository());
        if let Some((digest, from)) = mount {
            path.push_str(&format!("?mount={digest}&from={from}"));
        }
        let response = self.authorized("POST", &path, &[], &[])?;
        match response.status() {
            201 if mount.is_some() => Ok(Started::Mounted),
            202 => Ok(Started::Session(self.location(&response, &path)?)),
            status => Err(self.status_error(response, status, "starting an upload")),
        }
    }

    /// Streams `body` into the session at `location` with one chunked `PATCH`; the next
    /// location on success. A 401 (a token that expired mid-push) is answered, and reported as
    /// a broken upload: the bytes are gone, so the caller resumes.
    pub fn patch(&self, location: &str, body: &mut dyn Read) -> Result<String, Error> {
        let url = self.url(location);
        let mut headers = vec![("Content-Type", "application/octet-stream")];
        let authorization = self.authorization_for(&url);
        if let Some(authorization) = &authorization {
            headers.push(("Authorization", authorization.as_str()));
        }
        let host = super::http::host_of(&url);
        let response = self.http().patch_stream(&url, &host, &headers, body)?;
        match response.status() {
            202 | 204 => self.location(&response, &url),
            401 => {
                self.authenticate(&response)?;
                Err(Error::Network {
                    host,
                    detail: "the registry asked to authenticate again during the upload".into(),
                })
            }
            status => Err(self.status_error(response, status, "uploading a blob")),
        }
    }

    /// How much of the session at `location` the registry holds, and where to go on: the
    /// `Range: 0-<last byte>` of `GET <location>` (204). `None` when the session is gone or the
    /// registry does not say (the upload must then start over).
    pub fn upload_status(&self, location: &str) -> Result<Option<(u64, String)>, Error> {
        let response = self.authorized("GET", location, &[], &[])?;
        if response.status() != 204 {
            return Ok(None);
        }
        let received = response.header("range").and_then(parse_upload_range);
        let next = self.location(&response, location).ok();
        Ok(received.zip(next))
    }

    /// Closes the session at `location` with `PUT ?digest=`: the registry checks the digest of
    /// what it received and stores the blob under it.
    pub fn finish_upload(&self, location: &str, digest: &Digest, body: &[u8]) -> Result<(), Error> {
        let url = with_query(location, &format!("digest={digest}"));
        let length = body.len().to_string();
        let headers = [
            ("Content-Type", "application/octet-stream"),
            ("Content-Length", length.as_str()),
        ];
        let response = self.authorized("PUT", &url, &headers, body)?;
        match response.status() {
            201 | 204 => Ok(()),
            status => Err(self.status_error(response, status, &format!("storing blob {digest}"))),
        }
    }

    /// Abandons a session (best effort: the registry also expires it).
    pub fn cancel_upload(&self, location: &str) {
        let _ = self.authorized("DELETE", location, &[], &[]);
    }

    /// Stores a manifest under `reference` (a tag or its digest) with its exact media type, and
    /// returns its digest.
    pub fn put_manifest(
        &self,
        reference: &str,
        bytes: &[u8],
        media_type: &str,
    ) -> Result<Digest, Error> {
        let path = format!("/v2/{}/manifests/{reference}", self.repository());
        let response = self.authorized("PUT", &path, &[("Content-Type", media_type)], bytes)?;
        let digest = Digest::of_bytes(bytes);
        match response.status() {
            201 | 202 | 204 => {}
            status => {
                return Err(self.status_error(response, status, "storing the manifest"));
            }
        }
        // A registry that stored something else than what was sent must not go unnoticed.
        if let Some(stored) = response.header("docker-content-digest") {
            if stored != digest.to_string() {
                return Err(Error::DigestMismatch {
                    what: "the manifest the registry stored".into(),
                    expected: digest.to_string(),
                    actual: stored.to_string(),
                });
            }
        }
        Ok(digest)
    }

    /// The response's `Location`, absolute: the spec allows a path on this registry or a full
    /// URL (possibly another host, which then gets no credentials).
    fn location(&self, response: &Response, request: &str) -> Result<String, Error> {
        let location = response.header("location").ok_or_else(|| Error::Invalid {
            what: format!("the registry's answer to {request}"),
            detail: "it has no Location header".into(),
        })?;
        if location.starts_with("https://") || location.starts_with("http://") {
            Ok(location.to_string())
        } else if location.starts_with('/') && !location.starts_with("//") {
            Ok(self.url(location))
        } else {
            Err(Error::Invalid {
                what: format!("the registry's answer to {request}"),
                detail: format!("its Location {location:?} is neither a path nor a URL"),
            })
        }
    }
}

/// `url` with `param` added to its query.
fn with_query(url: &str, param: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{param}")
}

/// The number of bytes an upload session holds, from its `Range: 0-<last>` header. `0-0` is
/// ambiguous (nothing, or one byte); it is read as nothing, so at worst one byte is sent
/// twice and the final digest check refuses the blob rather than storing a wrong one.
fn parse_upload_range(range: &str) -> Option<u64> {
    let range = range.trim();
    let range = range.strip_prefix("bytes=").unwrap_or(range);
    let (start, end) = range.split_once('-')?;
    if start.trim() != "0" {
        return None;
    }
    let end: u64 = end.trim().parse().ok()?;
    Some(if end == 0 { 0 } else { end + 1 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_upload_range() {
        assert_eq!(parse_upload_range("0-1023"), Some(1024));
        assert_eq!(parse_upload_range("bytes=0-99"), Some(100));
        assert_eq!(parse_upload_range("0-0"), Some(0));
        assert_eq!(parse_upload_range("5-9"), None);
        assert_eq!(parse_upload_range("junk"), None);
    }

    #[test]
    fn adds_the_digest_to_the_location() {
        assert_eq!(
            with_query("http://r/v2/a/blobs/uploads/u?_state=x", "digest=sha256:00"),
            "http://r/v2/a/blobs/uploads/u?_state=x&digest=sha256:00"
        );
        assert_eq!(with_query("/v2/a/u", "digest=d"), "/v2/a/u?digest=d");
    }
}
