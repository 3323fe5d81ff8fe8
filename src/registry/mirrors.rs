//! Registry mirrors and pull-through caches: which hosts are asked for a registry's images before
//! the registry itself, from `--mirror`, `DOCKERSAVE_MIRRORS` or Docker's `daemon.json`.
//!
//! This module decides the list; `client` walks it, falling to the next host when one fails.
//! Mirrors serve pulls and inspection only: `push` never sees this module. Nothing here handles
//! credentials: a mirror only ever gets those stored for its own host (`main` looks them up),
//! never the registry's.

use crate::reference::DOCKER_HUB;
use miniserde::Deserialize;
use std::path::PathBuf;

/// One mirror of one registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mirror {
    /// The registry whose images it serves (`docker.io` for Hub).
    pub registry: String,
    /// `https://host[:port]` or `http://host[:port]`: the distribution API lives at its `/v2/`.
    pub base: String,
}

impl Mirror {
    /// `host[:port]`, for messages and for looking up the mirror's own credentials.
    pub fn host(&self) -> &str {
        self.base
            .split_once("://")
            .map_or(self.base.as_str(), |(_, host)| host)
    }
}

/// Where the run's mirrors come from. The first source that says anything decides alone:
/// `--no-mirror`, then `--mirror`, then `DOCKERSAVE_MIRRORS`, then `daemon.json`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// `--no-mirror`, or an empty `DOCKERSAVE_MIRRORS`.
    Off,
    /// From `--mirror` flags or `DOCKERSAVE_MIRRORS`, already checked.
    Given(Vec<Mirror>),
    /// `registry-mirrors` of this Docker daemon configuration (`DOCKERSAVE_DAEMON_JSON`, else
    /// `/etc/docker/daemon.json`), read when a pull starts.
    DaemonJson(PathBuf),
}

/// Where Docker keeps its daemon configuration, and with it `registry-mirrors`.
pub const DAEMON_JSON: &str = "/etc/docker/daemon.json";

impl Source {
    /// The run's mirrors. A `daemon.json` that is missing means none; one that cannot be read
    /// or parsed is reported through `warn` and ignored: the registry itself still serves.
    pub fn mirrors(&self, warn: &dyn Fn(&str)) -> Vec<Mirror> {
        match self {
            Source::Off => Vec::new(),
            Source::Given(mirrors) => mirrors.clone(),
            Source::DaemonJson(path) => match std::fs::read_to_string(path) {
                Ok(text) => from_daemon_json(&text).unwrap_or_else(|detail| {
                    warn(&format!(
                        "ignoring the registry-mirrors of {}: {detail}",
                        path.display()
                    ));
                    Vec::new()
                }),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
                Err(e) => {
                    warn(&format!("ignoring {}: {e}", path.display()));
                    Vec::new()
                }
            },
        }
    }
}

/// Parses one `--mirror` value: `URL` mirrors Docker Hub (as Docker's `registry-mirrors`), and
/// `REGISTRY=URL` any other registry. A URL without a scheme is HTTPS.
pub fn parse(value: &str) -> Result<Mirror, String> {
    let (registry, url) = match value.split_once('=') {
        Some((registry, url)) if !registry.contains("://") => (registry.trim(), url.trim()),
        _ => (DOCKER_HUB, value.trim()),
    };
    let registry = match registry {
        "" => return Err(format!("{value:?} names no registry before '='")),
        "docker.io" | "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB,
        other => other,
    };
    if !registry.bytes().all(is_host_byte) {
        return Err(format!("{registry:?} is not a registry host[:port]"));
    }
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme @ ("http" | "https"), rest)) => (scheme, rest),
        Some((scheme, _)) => {
            return Err(format!(
                "the mirror {url:?} is not http:// or https:// (it says {scheme}://)"
            ))
        }
        None => ("https", url),
    };
    let host = rest.strip_suffix('/').unwrap_or(rest);
    if host.is_empty() {
        return Err(format!("the mirror {url:?} names no host"));
    }
    if host.contains('/') {
        return Err(format!(
            "the mirror {url:?} has a path; a mirror serves the registry API at its root (https://HOST[:PORT])"
        ));
    }
    if host.contains('@') {
        return Err(format!(
            "the mirror {url:?} holds a user name; its credentials come from Docker's config.json, stored for its host"
        ));
    }
    if !host.bytes().all(is_host_byte) {
        return Err(format!("the mirror {url:?} is not a URL of a host[:port]"));
    }
    Ok(Mirror {
        registry: registry.to_string(),
        base: format!("{scheme}://{host}"),
    })
}

fn is_host_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.:[]_".contains(&b)
}

/// Parses `DOCKERSAVE_MIRRORS`: `--mirror` values separated by commas or white space.
pub fn parse_list(text: &str) -> Result<Vec<Mirror>, String> {
    text.split([',', ' ', '\t', '\n'])
        .filter(|item| !item.is_empty())
        .map(parse)
        .collect()
}

#[derive(Deserialize)]
struct DaemonConfig {
    #[serde(rename = "registry-mirrors")]
    registry_mirrors: Option<Vec<String>>,
}

/// The Docker Hub mirrors of a `daemon.json` (`"registry-mirrors": ["https://…"]`); every other
/// setting in it is left alone.
pub fn from_daemon_json(text: &str) -> Result<Vec<Mirror>, String> {
    let config: DaemonConfig =
        crate::limits::json(text).map_err(|e| e.or("it is not valid JSON"))?;
    config
        .registry_mirrors
        .unwrap_or_default()
        .iter()
        .map(|url| parse(url))
        .collect()
}

/// The mirrors of `registry`, in the order they are tried.
pub fn of<'a>(mirrors: &'a [Mirror], registry: &'a str) -> impl Iterator<Item = &'a Mirror> + 'a {
    mirrors.iter().filter(move |m| m.registry == registry)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mirror(registry: &str, base: &str) -> Mirror {
        Mirror {
            registry: registry.into(),
            base: base.into(),
        }
    }

    #[test]
    fn parses_mirror_values() {
        assert_eq!(
            parse("https://mirror.example").unwrap(),
            mirror("docker.io", "https://mirror.example")
        );
        assert_eq!(
            parse("mirror.example:5000/").unwrap(),
            mirror("docker.io", "https://mirror.example:5000")
        );
        assert_eq!(
            parse("ghcr.io=http://127.0.0.1:5000").unwrap(),
            mirror("ghcr.io", "http://127.0.0.1:5000")
        );
        assert_eq!(
            parse("index.docker.io=https://m").unwrap(),
            mirror("docker.io", "https://m")
        );
        assert_eq!(parse("https://m").unwrap().host(), "m");
        for bad in [
            "",
            "=https://m",
            "ftp://m",
            "https://m/v2/prefix",
            "https://user:pw@m",
            "https://m?x=1",
            "a b=https://m",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn lists_and_daemon_json() {
        assert_eq!(
            parse_list(" https://a, b.example=http://b\nhttps://c ").unwrap(),
            vec![
                mirror("docker.io", "https://a"),
                mirror("b.example", "http://b"),
                mirror("docker.io", "https://c")
            ]
        );
        assert_eq!(parse_list("").unwrap(), vec![]);
        let daemon = r#"{"log-driver":"json-file","registry-mirrors":["https://m1/","http://m2:5000"],
            "default-address-pools":[{"base":"10.0.0.0/8","size":24}],"debug":true}"#;
        assert_eq!(
            from_daemon_json(daemon).unwrap(),
            vec![
                mirror("docker.io", "https://m1"),
                mirror("docker.io", "http://m2:5000")
            ]
        );
        assert_eq!(from_daemon_json("{}").unwrap(), vec![]);
        assert!(from_daemon_json("{").is_err());
        assert!(from_daemon_json(r#"{"registry-mirrors":["ftp://x"]}"#).is_err());
        let all = parse_list("https://a q.example=https://q https://b").unwrap();
        let hub: Vec<&str> = of(&all, "docker.io").map(|m| m.host()).collect();
        assert_eq!(hub, ["a", "b"]);
        assert_eq!(of(&all, "other.example").count(), 0);
    }
}
