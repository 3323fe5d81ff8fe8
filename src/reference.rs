//! Image references as Docker parses them: `[host[:port]/]path[:tag][@sha256:hex]`.
//!
//! Pure string work, no I/O: it decides which registry a name lives on (Docker Hub unless the
//! first component looks like a host), normalises Hub names (`debian` → `library/debian`) and
//! derives the names dockersave writes (archive file name, `RepoTags`).

use crate::digest::Digest;

/// The registry name Docker uses for Hub in image names.
pub const DOCKER_HUB: &str = "docker.io";
/// Where Hub's registry API actually lives.
pub const DOCKER_HUB_API: &str = "registry-1.docker.io";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reference {
    /// `docker.io` for Hub, otherwise the host (and port) as typed.
    pub registry: String,
    /// The repository path, e.g. `library/debian` or `myteam/tools/app`.
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

impl Reference {
    pub fn parse(input: &str) -> Result<Reference, String> {
        if input.is_empty() {
            return Err("the image name is empty".into());
        }
        if input.len() > 4096 {
            return Err("the reference is too long".into());
        }
        let (rest, digest) = match input.split_once('@') {
            Some((rest, digest)) => (rest, Some(Digest::parse(digest)?)),
            None => (input, None),
        };
        // A tag is a ':' after the last '/', so "host:5000/app" has none.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };
        if let Some(tag) = tag {
            check_tag(tag)?;
        }
        let (registry, path) = split_registry(name);
        if let Some(host) = &registry {
            check_host(host)?;
        }
        let registry = match registry.as_deref() {
            None | Some("docker.io") | Some("index.docker.io") => DOCKER_HUB.to_string(),
            Some(host) => host.to_string(),
        };
        if path.is_empty() {
            return Err("the repository path is empty".into());
        }
        for component in path.split('/') {
            check_component(component)?;
        }
        let repository = if registry == DOCKER_HUB && !path.contains('/') {
            format!("library/{path}")
        } else {
            path.to_string()
        };
        if repository.len() > 255 {
            return Err("the repository name is longer than 255 characters".into());
        }
        Ok(Reference {
            registry,
            repository,
            tag: tag.map(str::to_string),
            digest,
        })
    }

    pub fn is_docker_hub(&self) -> bool {
        self.registry == DOCKER_HUB
    }

    /// The host the registry API is reached at.
    pub fn api_host(&self) -> &str {
        if self.is_docker_hub() {
            DOCKER_HUB_API
        } else {
            &self.registry
        }
    }

    /// What to ask the manifests endpoint for: the digest when given, else the tag.
    pub fn manifest_ref(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(digest), _) => digest.to_string(),
            (None, Some(tag)) => tag.clone(),
            (None, None) => "latest".to_string(),
        }
    }

    /// The tag the archive carries: the given one, `latest` when neither tag nor digest was given,
    /// none for a bare digest reference (Docker cannot tag an image by digest).
    pub fn effective_tag(&self) -> Option<&str> {
        match (&self.tag, &self.digest) {
            (Some(tag), _) => Some(tag),
            (None, None) => Some("latest"),
            (None, Some(_)) => None,
        }
    }

    /// The name Docker shows for this repository: `debian`, `user/app`, `host:5000/path`.
    pub fn familiar_name(&self) -> String {
        if self.is_docker_hub() {
            self.repository
                .strip_prefix("library/")
                .unwrap_or(&self.repository)
                .to_string()
        } else {
            format!("{}/{}", self.registry, self.repository)
        }
    }

    /// The `RepoTags` entry `docker load` applies, if the reference has a tag.
    pub fn repo_tag(&self) -> Option<String> {
        self.effective_tag()
            .map(|tag| format!("{}:{tag}", self.familiar_name()))
    }

    /// The archive's base name: path components and tag joined with `-`
    /// (`library-debian-latest`), or `sha256-<12 hex>` in place of a missing tag.
    pub fn archive_base_name(&self) -> String {
        let suffix = match (self.effective_tag(), &self.digest) {
            (Some(tag), _) => tag.to_string(),
            (None, Some(digest)) => format!("sha256-{}", &digest.hex()[..12]),
            (None, None) => "latest".to_string(),
        };
        format!("{}-{suffix}", self.repository.replace('/', "-"))
    }
}

impl std::fmt::Display for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        if self.tag.is_none() && self.digest.is_none() {
            write!(f, ":latest")?;
        }
        Ok(())
    }
}

/// Splits off the registry host the way Docker does: the first component is a host when it
/// contains '.' or ':', is `localhost`, or has upper-case letters (repository paths cannot).
fn split_registry(name: &str) -> (Option<String>, &str) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.chars().any(|c| c.is_ascii_uppercase()) =>
        {
            (Some(first.to_string()), rest)
        }
        _ => (None, name),
    }
}

fn check_host(host: &str) -> Result<(), String> {
    let (name, port) = if let Some(v6) = host.strip_prefix('[') {
        let Some((addr, after)) = v6.split_once(']') else {
            return Err(format!("registry host {host:?} has an unclosed '['"));
        };
        if addr.is_empty() || !addr.chars().all(|c| c.is_ascii_hexdigit() || c == ':') {
            return Err(format!(
                "registry host {host:?} is not a valid IPv6 address"
            ));
        }
        (None, after.strip_prefix(':'))
    } else {
        match host.split_once(':') {
            Some((name, port)) => (Some(name), Some(port)),
            None => (Some(host), None),
        }
    };
    if let Some(name) = name {
        let ok = !name.is_empty()
            && name.split('.').all(|label| {
                !label.is_empty()
                    && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                    && !label.starts_with('-')
                    && !label.ends_with('-')
            });
        if !ok {
            return Err(format!("registry host {host:?} is not a valid host name"));
        }
    }
    if let Some(port) = port {
        if port.is_empty() || port.len() > 5 || !port.chars().all(|c| c.is_ascii_digit()) {
            return Err(format!("registry port in {host:?} is not a number"));
        }
    }
    Ok(())
}

/// A path component: lower-case alphanumerics separated by '.', '_', '__' or runs of '-'.
fn check_component(component: &str) -> Result<(), String> {
    if component.is_empty() {
        return Err("the repository path has an empty component (double or trailing '/')".into());
    }
    if component.chars().any(|c| c.is_ascii_uppercase()) {
        return Err(format!("repository name {component:?} must be lower-case"));
    }
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return Err(format!(
            "repository component {component:?} must start and end with a letter or digit"
        ));
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &component[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|b| b == b'-');
        if !ok {
            return Err(format!(
                "repository component {component:?} has an invalid separator {sep:?}"
            ));
        }
    }
    Ok(())
}

fn check_tag(tag: &str) -> Result<(), String> {
    let valid = !tag.is_empty()
        && tag.len() <= 128
        && tag
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        && tag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "tag {tag:?} is invalid (letters, digits, '_', '.', '-', at most 128, not starting with '.' or '-')"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Reference {
        Reference::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn hub_short_names_get_library_and_latest() {
        let r = parse("debian");
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str()),
            ("docker.io", "library/debian")
        );
        assert_eq!(r.api_host(), "registry-1.docker.io");
        assert_eq!(r.manifest_ref(), "latest");
        assert_eq!(r.archive_base_name(), "library-debian-latest");
        assert_eq!(r.repo_tag().as_deref(), Some("debian:latest"));
    }

    #[test]
    fn docker_io_prefixes_mean_hub() {
        for s in [
            "docker.io/debian:12",
            "index.docker.io/library/debian:12",
            "library/debian:12",
        ] {
            let r = parse(s);
            assert_eq!(r.repository, "library/debian", "{s}");
            assert!(r.is_docker_hub());
            assert_eq!(r.repo_tag().as_deref(), Some("debian:12"));
        }
        let r = parse("user/app:v1");
        assert_eq!(r.repo_tag().as_deref(), Some("user/app:v1"));
        assert_eq!(r.archive_base_name(), "user-app-v1");
    }

    #[test]
    fn first_component_is_a_host_when_it_looks_like_one() {
        let r = parse("registry.example.com/myteam/tools/app:1.2");
        assert_eq!(r.registry, "registry.example.com");
        assert_eq!(r.repository, "myteam/tools/app");
        assert_eq!(r.archive_base_name(), "myteam-tools-app-1.2");
        assert_eq!(
            r.repo_tag().as_deref(),
            Some("registry.example.com/myteam/tools/app:1.2")
        );

        let r = parse("127.0.0.1:5000/busybox");
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str()),
            ("127.0.0.1:5000", "busybox")
        );
        assert_eq!(r.tag, None);
        assert_eq!(
            r.repo_tag().as_deref(),
            Some("127.0.0.1:5000/busybox:latest")
        );

        assert_eq!(parse("localhost/app").registry, "localhost");
        assert_eq!(parse("[::1]:5000/app:x").registry, "[::1]:5000");
        // Without '.', ':' or "localhost" the first component is a Hub namespace.
        assert_eq!(parse("myhost/app").registry, "docker.io");
        assert_eq!(parse("myhost/app").repository, "myhost/app");
    }

    #[test]
    fn digests_name_the_archive_when_no_tag_is_given() {
        let hex = "0123456789abcdef".repeat(4);
        let r = parse(&format!("host:5000/app@sha256:{hex}"));
        assert_eq!(r.manifest_ref(), format!("sha256:{hex}"));
        assert_eq!(r.archive_base_name(), "app-sha256-0123456789ab");
        assert_eq!(r.repo_tag(), None);

        let r = parse(&format!("app:v2@sha256:{hex}"));
        assert_eq!(r.manifest_ref(), format!("sha256:{hex}"));
        assert_eq!(r.archive_base_name(), "library-app-v2");
        assert_eq!(r.repo_tag().as_deref(), Some("app:v2"));
    }

    #[test]
    fn rejects_bad_references_with_a_reason() {
        for (input, needle) in [
            ("", "empty"),
            ("Debian", "lower-case"),
            ("host:5000/App", "lower-case"),
            ("debian:", "tag"),
            ("debian:-x", "tag"),
            ("a//b", "empty component"),
            ("a/b/", "empty component"),
            ("-a", "start and end"),
            ("a..b", "separator"),
            ("debian@sha256:123", "valid sha256"),
            ("debian@md5:abc", "not supported"),
            ("host:port/app", "port"),
            ("ho_st.com/app", "host name"),
            ("host:5000/", "empty"),
        ] {
            let err = Reference::parse(input).expect_err(input);
            assert!(err.contains(needle), "{input:?}: {err}");
        }
        assert!(Reference::parse(&format!("a:{}", "t".repeat(129))).is_err());
    }

    #[test]
    fn accepts_docker_separators() {
        for s in ["a_b", "a__b", "a.b", "a---b", "a-b/c.d_e", "x/y:TAG_1.0-rc"] {
            parse(s);
        }
    }
}
