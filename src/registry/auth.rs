//! Registry authentication: parsing `WWW-Authenticate` challenges, the Bearer token exchange
//! (Docker Hub's flow) and HTTP Basic credentials.
//!
//! The parsing functions are pure and fuzzable. Secrets (passwords, tokens, the headers built from
//! them) never reach `Display`, `Debug` or an error message: errors name the host and the status.

use super::http::{host_of, Http};
use crate::error::Error;
use crate::limits::MAX_TOKEN_RESPONSE;
use miniserde::Deserialize;

/// What the user gave to log in with. `Debug` shows no secret.
#[derive(Clone)]
pub enum Credentials {
    Password {
        user: String,
        password: String,
    },
    /// An OAuth2 refresh token (Docker's `identitytoken`), exchanged at the token service.
    IdentityToken(String),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Password { user, .. } => write!(f, "Password({user:?}, <hidden>)"),
            Credentials::IdentityToken(_) => write!(f, "IdentityToken(<hidden>)"),
        }
    }
}

impl Credentials {
    pub fn password(user: &str, password: &str) -> Credentials {
        Credentials::Password {
            user: user.to_string(),
            password: password.to_string(),
        }
    }

    /// The value of an `Authorization: Basic …` header; identity tokens have none.
    pub fn basic_header(&self) -> Option<String> {
        match self {
            Credentials::Password { user, password } => Some(format!(
                "Basic {}",
                base64(format!("{user}:{password}").as_bytes())
            )),
            Credentials::IdentityToken(_) => None,
        }
    }
}

/// One challenge of a `WWW-Authenticate` header: a scheme and its parameters.
#[derive(Debug, PartialEq, Eq)]
pub struct Challenge {
    /// Lower-cased, e.g. `bearer` or `basic`.
    pub scheme: String,
    /// Names lower-cased, values unquoted.
    pub params: Vec<(String, String)>,
}

impl Challenge {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses every challenge in a `WWW-Authenticate` value (RFC 7235): quoted values may hold commas
/// and escaped quotes, parameters come in any order, several challenges may share one header.
pub fn parse_challenges(header: &str) -> Vec<Challenge> {
    let mut cursor = Cursor {
        bytes: header.as_bytes(),
        pos: 0,
    };
    let mut challenges = Vec::new();
    loop {
        cursor.skip_while(|b| b == b' ' || b == b'\t' || b == b',');
        let Some(scheme) = cursor.token() else { break };
        let mut challenge = Challenge {
            scheme: scheme.to_ascii_lowercase(),
            params: Vec::new(),
        };
        loop {
            cursor.skip_while(|b| b == b' ' || b == b'\t');
            let start = cursor.pos;
            let Some(name) = cursor.token() else { break };
            cursor.skip_while(|b| b == b' ' || b == b'\t');
            if cursor.peek() != Some(b'=') {
                // Not a parameter: the next challenge's scheme (or a token68 we do not use).
                cursor.pos = start;
                break;
            }
            cursor.pos += 1;
            cursor.skip_while(|b| b == b' ' || b == b'\t');
            let value = if cursor.peek() == Some(b'"') {
                cursor.quoted()
            } else {
                cursor.token().unwrap_or_default()
            };
            challenge.params.push((name.to_ascii_lowercase(), value));
            cursor.skip_while(|b| b == b' ' || b == b'\t');
            if cursor.peek() == Some(b',') {
                cursor.pos += 1;
            } else {
                break;
            }
        }
        let start = cursor.pos;
        challenges.push(challenge);
        if cursor.pos == start && cursor.peek().is_some_and(|b| !is_tchar(b) && b != b',') {
            // Skip a byte we cannot parse so a malformed header cannot loop forever.
            cursor.pos += 1;
        }
    }
    challenges
}

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn skip_while(&mut self, f: impl Fn(u8) -> bool) {
        while self.peek().is_some_and(&f) {
            self.pos += 1;
        }
    }

    fn token(&mut self) -> Option<String> {
        let start = self.pos;
        self.skip_while(is_tchar);
        (self.pos > start)
            .then(|| String::from_utf8_lossy(&self.bytes[start..self.pos]).into_owned())
    }

    /// A quoted string starting at the opening quote; an unterminated one runs to the end.
    fn quoted(&mut self) -> String {
        self.pos += 1;
        let mut value = Vec::new();
        while let Some(b) = self.peek() {
            self.pos += 1;
            match b {
                b'"' => break,
                b'\\' => {
                    if let Some(escaped) = self.peek() {
                        value.push(escaped);
                        self.pos += 1;
                    }
                }
                _ => value.push(b),
            }
        }
        String::from_utf8_lossy(&value).into_owned()
    }
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~/".contains(&b)
}

/// The URL to ask a Bearer challenge's token service for a token with `scopes` (one `scope`
/// parameter each, as Docker's token protocol has it).
pub fn token_url(challenge: &Challenge, scopes: &[String]) -> Result<String, String> {
    let realm = challenge
        .param("realm")
        .ok_or("the Bearer challenge names no realm")?;
    if !(realm.starts_with("https://") || realm.starts_with("http://")) {
        return Err(format!("the token realm {realm:?} is not an http(s) URL"));
    }
    let mut url = realm.to_string();
    let mut sep = if realm.contains('?') { '&' } else { '?' };
    if let Some(service) = challenge.param("service") {
        url.push(sep);
        url.push_str("service=");
        url.push_str(&percent_encode(service));
        sep = '&';
    }
    for scope in scopes {
        url.push(sep);
        url.push_str("scope=");
        url.push_str(&percent_encode(scope));
        sep = '&';
    }
    Ok(url)
}

#[derive(Deserialize)]
struct TokenResponse {
    token: Option<String>,
    access_token: Option<String>,
}

/// Extracts the token from a token service's JSON answer (`token` or `access_token`).
pub fn parse_token_response(body: &[u8]) -> Result<String, String> {
    let text = std::str::from_utf8(body).map_err(|_| "the token response is not text")?;
    let parsed: TokenResponse = crate::limits::json(text)
        .map_err(|e| e.or("the token response is not the expected JSON"))?;
    parsed
        .token
        .or(parsed.access_token)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| "the token response holds no token".to_string())
}

/// Exchanges a Bearer challenge for an `Authorization` header value, presenting `credentials`
/// to the token service when there are some (anonymous otherwise, as Docker Hub allows). An
/// identity token is exchanged with an OAuth2 `refresh_token` POST, as Docker does. A registry
/// reached over HTTPS (`secure`) may not send the credentials to a plain-HTTP token service.
pub fn bearer_authorization(
    http: &Http,
    challenge: &Challenge,
    scopes: &[String],
    credentials: Option<&Credentials>,
    secure: bool,
) -> Result<String, Error> {
    let url = token_url(challenge, scopes).map_err(|detail| Error::Invalid {
        what: "the registry's auth challenge".into(),
        detail,
    })?;
    let token_host = host_of(&url);
    if secure
        && url
            .get(..7)
            .is_some_and(|s| s.eq_ignore_ascii_case("http://"))
    {
        return Err(Error::Auth {
            host: token_host,
            detail: "the registry, reached over HTTPS, names this token service at plain http://: a login or token would cross the network in clear text, so dockersave does not ask it (only a registry reached with --insecure may)".into(),
        });
    }
    let response = match credentials {
        Some(Credentials::IdentityToken(refresh)) => {
            let realm = challenge.param("realm").unwrap_or_default();
            let form = format!(
                "grant_type=refresh_token&client_id=dockersave&service={}&scope={}&refresh_token={}",
                percent_encode(challenge.param("service").unwrap_or_default()),
                // OAuth2 takes several scopes in one parameter, space-separated.
                percent_encode(&scopes.join(" ")),
                percent_encode(refresh)
            );
            http.post_form(realm, &token_host, &form)?
        }
        _ => {
            let basic = credentials.and_then(Credentials::basic_header);
            let mut headers = vec![("Accept", "application/json")];
            if let Some(basic) = &basic {
                headers.push(("Authorization", basic));
            }
            http.get(&url, &token_host, &headers)?
        }
    };
    match response.status() {
        200 => {}
        401 | 403 if credentials.is_some() => {
            return Err(Error::Auth {
                host: token_host,
                detail:
                    "the token service refused the user name or password; check --user/--password"
                        .into(),
            })
        }
        401 | 403 => {
            return Err(Error::Auth {
                host: token_host,
                detail: format!(
                "the token service refused anonymous access to {}; log in with --user or --ilogin",
                scopes.join(" ")
            ),
            })
        }
        status => {
            return Err(Error::Http {
                host: token_host,
                status,
                detail: "the token service did not issue a token".into(),
            })
        }
    }
    let body = response.read_limited(MAX_TOKEN_RESPONSE, "the token response")?;
    let token = parse_token_response(&body).map_err(|detail| Error::Invalid {
        what: format!("the token from {token_host}"),
        detail,
    })?;
    Ok(format!("Bearer {token}"))
}

fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~:/".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes standard base64 (padding optional); `None` if it is not base64.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let (mut acc, mut bits) = (0u32, 0);
    for c in text.trim_end_matches('=').bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

fn base64(bytes: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(TABLE[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_docker_hub_challenge() {
        let c = parse_challenges(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/debian:pull""#,
        );
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].scheme, "bearer");
        assert_eq!(c[0].param("realm"), Some("https://auth.docker.io/token"));
        assert_eq!(c[0].param("service"), Some("registry.docker.io"));
        assert_eq!(c[0].param("scope"), Some("repository:library/debian:pull"));
    }

    #[test]
    fn handles_commas_in_quotes_escapes_order_and_case() {
        let c = parse_challenges(
            r#"BEARER Scope="repository:a/b:pull,push" , service = reg , realm="http://h/t?x=\"1\"""#,
        );
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].param("scope"), Some("repository:a/b:pull,push"));
        assert_eq!(c[0].param("service"), Some("reg"));
        assert_eq!(c[0].param("realm"), Some(r#"http://h/t?x="1""#));
    }

    #[test]
    fn splits_several_challenges() {
        let c = parse_challenges(
            r#"Basic realm="Registry Realm", Bearer realm="https://t/x",service="s""#,
        );
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].scheme, "basic");
        assert_eq!(c[0].param("realm"), Some("Registry Realm"));
        assert_eq!(c[1].scheme, "bearer");
        assert_eq!(c[1].param("service"), Some("s"));
    }

    #[test]
    fn survives_garbage() {
        for junk in [
            "",
            ",,,",
            "=",
            "\"",
            "Bearer realm=\"unterminated",
            "Bearer =x",
            "(){}",
            "Basic =",
        ] {
            let _ = parse_challenges(junk);
        }
        assert_eq!(parse_challenges("Basic")[0].scheme, "basic");
    }

    #[test]
    fn builds_token_url() {
        let c =
            parse_challenges(r#"Bearer realm="https://auth.example/token",service="reg istry""#);
        let one = |s: &str| vec![s.to_string()];
        assert_eq!(
            token_url(&c[0], &one("repository:library/debian:pull")).unwrap(),
            "https://auth.example/token?service=reg%20istry&scope=repository:library/debian:pull"
        );
        let c = parse_challenges(r#"Bearer realm="https://a/t?x=1""#);
        assert_eq!(
            token_url(&c[0], &one("s")).unwrap(),
            "https://a/t?x=1&scope=s"
        );
        // A push that mounts asks for both repositories in one token.
        assert_eq!(
            token_url(
                &c[0],
                &[one("repository:a:pull,push"), one("repository:b:pull")].concat()
            )
            .unwrap(),
            "https://a/t?x=1&scope=repository:a:pull%2Cpush&scope=repository:b:pull"
        );
        assert!(token_url(&parse_challenges("Bearer service=x")[0], &one("s")).is_err());
        assert!(token_url(
            &parse_challenges(r#"Bearer realm="file:///etc""#)[0],
            &one("s")
        )
        .is_err());
    }

    #[test]
    fn token_from_either_field() {
        assert_eq!(
            parse_token_response(br#"{"token":"abc","expires_in":300}"#).unwrap(),
            "abc"
        );
        assert_eq!(
            parse_token_response(br#"{"access_token":"xyz"}"#).unwrap(),
            "xyz"
        );
        assert!(parse_token_response(br#"{"token":""}"#).is_err());
        assert!(parse_token_response(b"nope").is_err());
    }

    #[test]
    fn basic_header_and_hidden_password() {
        let c = Credentials::password("Aladdin", "open sesame");
        assert_eq!(
            c.basic_header().unwrap(),
            "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
        assert!(!format!("{c:?}").contains("sesame"));
        assert!(
            !format!("{:?}", Credentials::IdentityToken("tok-secret".into())).contains("secret")
        );
        for text in ["", "a", "ab", "abc", "Aladdin:open sesame"] {
            assert_eq!(
                base64_decode(&base64(text.as_bytes())).unwrap(),
                text.as_bytes()
            );
        }
        assert_eq!(base64_decode("dTpw").unwrap(), b"u:p");
        assert!(base64_decode("no spaces!").is_none());
        assert_eq!(base64(b"a"), "YQ==");
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(base64(b""), "");
    }
}
