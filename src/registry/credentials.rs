//! Credentials stored the Docker way: `config.json` (`auths` entries with `auth` or
//! `identitytoken`) and credential helpers (`credHelpers`, `credsStore`), run as
//! `docker-credential-<name> get` with the server on stdin.
//!
//! The command line's own credentials come first and never reach this module. It returns secrets
//! only inside `Credentials`, whose `Debug` hides them, and its errors name files and helpers,
//! never what they hold.

use super::auth::{base64_decode, Credentials};
use crate::error::Error;
use miniserde::Deserialize;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

/// The key Docker files Docker Hub's credentials under.
pub const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

#[derive(Deserialize, Default)]
struct DockerConfig {
    auths: Option<BTreeMap<String, AuthEntry>>,
    #[serde(rename = "credHelpers")]
    cred_helpers: Option<BTreeMap<String, String>>,
    #[serde(rename = "credsStore")]
    creds_store: Option<String>,
}

#[derive(Deserialize)]
struct AuthEntry {
    auth: Option<String>,
    identitytoken: Option<String>,
    username: Option<String>,
    password: Option<String>,
}

#[derive(Deserialize)]
struct HelperAnswer {
    #[serde(rename = "Username")]
    username: Option<String>,
    #[serde(rename = "Secret")]
    secret: Option<String>,
}

/// What `config.json` says about one registry.
#[derive(Debug, Default)]
pub struct Found {
    /// The credential helper to ask (`credHelpers` for the host, else `credsStore`).
    pub helper: Option<String>,
    /// An `auths` entry's credentials.
    pub stored: Option<Credentials>,
}

/// The server name Docker uses for `registry` (a reference's registry, `docker.io` for Hub).
pub fn server_key(registry: &str) -> &str {
    if registry == crate::reference::DOCKER_HUB {
        DOCKER_HUB_KEY
    } else {
        registry
    }
}

/// Finds `registry` in the text of a `config.json`. Keys match by host, whatever scheme or path
/// they were written with (`https://host/v1/`, `host`).
pub fn find(config_json: &str, registry: &str) -> Result<Found, String> {
    let config: DockerConfig = crate::limits::json(config_json)
        .map_err(|e| e.or("it is not valid JSON of Docker's config format"))?;
    let wanted = normalize(server_key(registry));
    let matches = |key: &str| {
        let key = normalize(key);
        key == wanted
            || (registry == crate::reference::DOCKER_HUB
                && matches!(key.as_str(), "docker.io" | "registry-1.docker.io"))
    };
    let helper = config
        .cred_helpers
        .unwrap_or_default()
        .into_iter()
        .find(|(key, _)| matches(key))
        .map(|(_, helper)| helper)
        .or(config.creds_store)
        .filter(|h| !h.is_empty());
    let stored = config
        .auths
        .unwrap_or_default()
        .into_iter()
        .find(|(key, _)| matches(key))
        .and_then(|(_, entry)| {
            if let Some(token) = entry.identitytoken.filter(|t| !t.is_empty()) {
                return Some(Credentials::IdentityToken(token));
            }
            if let Some(decoded) = entry.auth.as_deref().and_then(base64_decode) {
                let text = String::from_utf8(decoded).ok()?;
                let (user, password) = text.split_once(':')?;
                return Some(Credentials::password(user, password));
            }
            match (entry.username, entry.password) {
                (Some(user), Some(password)) => Some(Credentials::password(&user, &password)),
                _ => None,
            }
        });
    Ok(Found { helper, stored })
}

fn normalize(key: &str) -> String {
    let rest = key.split_once("://").map_or(key, |(_, rest)| rest);
    rest.split('/').next().unwrap_or(rest).to_ascii_lowercase()
}

/// Parses a helper's answer; `<token>` as the user name means the secret is an identity token.
pub fn parse_helper_answer(stdout: &[u8]) -> Option<Credentials> {
    let answer: HelperAnswer = crate::limits::json(std::str::from_utf8(stdout).ok()?).ok()?;
    let secret = answer.secret.filter(|s| !s.is_empty())?;
    match answer.username.as_deref() {
        Some("<token>") => Some(Credentials::IdentityToken(secret)),
        Some(user) if !user.is_empty() => Some(Credentials::password(user, &secret)),
        _ => None,
    }
}

/// Looks up the credentials for `registry` in `<config_dir>/config.json`: a credential helper's
/// answer first, then the `auths` entry. No file, no entry: `Ok(None)`.
pub fn lookup(config_dir: &Path, registry: &str) -> Result<Option<Credentials>, Error> {
    let path = config_dir.join("config.json");
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(&path, e)),
    };
    let found = find(&text, registry).map_err(|detail| Error::Invalid {
        what: path.display().to_string(),
        detail,
    })?;
    if let Some(helper) = &found.helper {
        if let Some(credentials) = run_helper(helper, server_key(registry))? {
            return Ok(Some(credentials));
        }
    }
    Ok(found.stored)
}

/// Runs `docker-credential-<helper> get`. A helper that knows nothing of the server answers
/// with an error ("credentials not found"): that is `Ok(None)`.
fn run_helper(helper: &str, server: &str) -> Result<Option<Credentials>, Error> {
    let program = format!("docker-credential-{helper}");
    let unusable = |detail: String| Error::Auth {
        host: server.to_string(),
        detail,
    };
    let mut child = Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| unusable(format!("cannot run the credential helper {program} named in the Docker config ({e}); install it or pass --user")))?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(server.as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|e| unusable(format!("the credential helper {program} failed ({e})")))?;
    if !out.status.success() {
        return Ok(None);
    }
    parse_helper_answer(&out.stdout).map(Some).ok_or_else(|| {
        unusable(format!(
            "the credential helper {program} gave an answer that is not Docker's JSON"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user_of(c: &Credentials) -> String {
        match c {
            Credentials::Password { user, password } => format!("{user}:{password}"),
            Credentials::IdentityToken(t) => format!("token:{t}"),
        }
    }

    #[test]
    fn finds_auths_by_host_whatever_the_key_spelling() {
        let config = r#"{"auths":{"https://reg.example:5000/v1/":{"auth":"dTpwOmFzcw=="},
            "https://index.docker.io/v1/":{"identitytoken":"refresh-me"},
            "other.example":{"username":"a","password":"b"}},"HttpHeaders":{"X":"y"}}"#;
        assert_eq!(
            user_of(&find(config, "reg.example:5000").unwrap().stored.unwrap()),
            "u:p:ass"
        );
        assert_eq!(
            user_of(&find(config, "docker.io").unwrap().stored.unwrap()),
            "token:refresh-me"
        );
        assert_eq!(
            user_of(&find(config, "other.example").unwrap().stored.unwrap()),
            "a:b"
        );
        assert!(
            find(config, "reg.example").unwrap().stored.is_none(),
            "the port is part of the host"
        );
        assert!(find(config, "nowhere.example").unwrap().stored.is_none());
    }

    #[test]
    fn helpers_per_host_then_store() {
        let config = r#"{"credHelpers":{"reg.example":"pass"},"credsStore":"desktop","auths":{}}"#;
        assert_eq!(
            find(config, "reg.example").unwrap().helper.as_deref(),
            Some("pass")
        );
        assert_eq!(
            find(config, "docker.io").unwrap().helper.as_deref(),
            Some("desktop")
        );
        assert_eq!(find("{}", "docker.io").unwrap().helper, None);
        assert!(find("not json", "x").is_err());
    }

    #[test]
    fn helper_answers() {
        let c = parse_helper_answer(br#"{"ServerURL":"x","Username":"me","Secret":"s3"}"#).unwrap();
        assert_eq!(user_of(&c), "me:s3");
        let c = parse_helper_answer(br#"{"Username":"<token>","Secret":"rt"}"#).unwrap();
        assert_eq!(user_of(&c), "token:rt");
        assert!(parse_helper_answer(b"credentials not found").is_none());
        assert!(parse_helper_answer(br#"{"Username":"me","Secret":""}"#).is_none());
    }
}
