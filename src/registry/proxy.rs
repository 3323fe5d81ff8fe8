//! Which proxy, if any, a request goes through: `HTTPS_PROXY` for https URLs, `HTTP_PROXY` for
//! http ones (either spelling case, `ALL_PROXY` as the fallback), `--proxy` for both, minus the
//! hosts `NO_PROXY` names.
//!
//! Pure rules over values the command line read from the environment; it connects nowhere. Like
//! Docker and Go's HTTP client, it never sends loopback hosts to a proxy taken from the
//! environment; a proxy given with `--proxy` is used for them too, unless `NO_PROXY` names them.
//! Proxy URLs may carry credentials, so they never appear in messages.

#[derive(Clone, Debug, Default)]
pub struct ProxySettings {
    pub http: Option<String>,
    pub https: Option<String>,
    pub no_proxy: Vec<String>,
    /// Set by `--proxy`: the user asked for this proxy, loopback included.
    pub explicit: bool,
}

impl ProxySettings {
    /// Reads the conventional variables through `var` (the caller's view of the environment).
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> ProxySettings {
        let get = |upper: &str| {
            var(upper)
                .or_else(|| var(&upper.to_ascii_lowercase()))
                .filter(|v| !v.trim().is_empty())
        };
        let all = get("ALL_PROXY");
        ProxySettings {
            http: get("HTTP_PROXY").or_else(|| all.clone()),
            https: get("HTTPS_PROXY").or(all),
            no_proxy: parse_no_proxy(&get("NO_PROXY").unwrap_or_default()),
            explicit: false,
        }
    }

    /// `--proxy URL`: one proxy for both schemes, loopback included; `NO_PROXY` still applies.
    pub fn explicit(url: String, no_proxy: Vec<String>) -> ProxySettings {
        ProxySettings {
            http: Some(url.clone()),
            https: Some(url),
            no_proxy,
            explicit: true,
        }
    }

    /// The proxy URL for a request to `host` (as in a URL: `name`, `name:port`, `[v6]:port`)
    /// over `scheme`, or `None` to connect directly.
    pub fn for_target(&self, scheme: &str, host: &str) -> Option<&str> {
        let proxy = if scheme == "https" {
            self.https.as_deref()
        } else {
            self.http.as_deref()
        }?;
        let (name, port) = split_host_port(host);
        let name = name.to_ascii_lowercase();
        if !self.explicit && is_loopback(&name) {
            return None;
        }
        if self
            .no_proxy
            .iter()
            .any(|entry| no_proxy_matches(entry, &name, port))
        {
            return None;
        }
        Some(proxy)
    }
}

pub fn parse_no_proxy(value: &str) -> Vec<String> {
    value
        .split([',', ' '])
        .map(|e| e.trim().to_ascii_lowercase())
        .filter(|e| !e.is_empty())
        .collect()
}

fn split_host_port(host: &str) -> (&str, Option<&str>) {
    if let Some(rest) = host.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((name, after)) => (name, after.strip_prefix(':')),
            None => (host, None),
        };
    }
    match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') => (name, Some(port)),
        _ => (host, None),
    }
}

fn is_loopback(name: &str) -> bool {
    name == "localhost"
        || name.ends_with(".localhost")
        || name == "::1"
        || name
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// One `NO_PROXY` entry: `*`; a domain (`example.com`, `.example.com`, `*.example.com`) that
/// covers itself and its subdomains; an IP; any of those with `:port` for that port only.
fn no_proxy_matches(entry: &str, name: &str, port: Option<&str>) -> bool {
    if entry == "*" {
        return true;
    }
    let (entry_name, entry_port) = split_host_port(entry);
    if entry_port.is_some() && entry_port != port {
        return false;
    }
    let domain = entry_name.trim_start_matches('*').trim_start_matches('.');
    !domain.is_empty() && (name == domain || name.ends_with(&format!(".{domain}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> ProxySettings {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        ProxySettings::from_env(|k| {
            pairs
                .iter()
                .find(|(name, _)| name == k)
                .map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn picks_proxy_by_scheme_and_case() {
        let s = env(&[("https_proxy", "http://s:1"), ("HTTP_PROXY", "http://p:2")]);
        assert_eq!(
            s.for_target("https", "registry.example"),
            Some("http://s:1")
        );
        assert_eq!(
            s.for_target("http", "registry.example:5000"),
            Some("http://p:2")
        );
        let s = env(&[("ALL_PROXY", "http://a:3")]);
        assert_eq!(s.for_target("https", "x.example"), Some("http://a:3"));
        assert_eq!(env(&[]).for_target("https", "x.example"), None);
    }

    #[test]
    fn no_proxy_domains_ports_and_star() {
        let s = env(&[
            ("HTTPS_PROXY", "http://p:1"),
            (
                "NO_PROXY",
                "corp.example, .internal,10.1.2.3,reg.example:5000",
            ),
        ]);
        for direct in [
            "corp.example",
            "a.corp.example",
            "x.internal",
            "10.1.2.3",
            "reg.example:5000",
            "CORP.EXAMPLE",
        ] {
            assert_eq!(s.for_target("https", direct), None, "{direct}");
        }
        for proxied in [
            "notcorp.example",
            "reg.example:5001",
            "reg.example",
            "10.1.2.4",
        ] {
            assert!(s.for_target("https", proxied).is_some(), "{proxied}");
        }
        let s = env(&[("HTTPS_PROXY", "http://p:1"), ("no_proxy", "*")]);
        assert_eq!(s.for_target("https", "anything"), None);
    }

    #[test]
    fn loopback_is_direct_unless_the_proxy_was_asked_for() {
        let s = env(&[("HTTP_PROXY", "http://p:1")]);
        for host in [
            "localhost:5000",
            "127.0.0.1:5000",
            "127.9.9.9",
            "[::1]:5000",
        ] {
            assert_eq!(s.for_target("http", host), None, "{host}");
        }
        let s = ProxySettings::explicit("http://p:1".into(), vec![]);
        assert_eq!(s.for_target("http", "127.0.0.1:5000"), Some("http://p:1"));
        let s = ProxySettings::explicit("http://p:1".into(), parse_no_proxy("127.0.0.1"));
        assert_eq!(s.for_target("http", "127.0.0.1:5000"), None);
    }
}
