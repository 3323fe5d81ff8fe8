//! Integration tests for transport and credentials: TLS with a private CA, credentials from
//! stdin, Docker's config.json and a credential helper, proxies, blob redirects to another host,
//! and the rate-limit message. Real registry, real servers on loopback; run through tests/run.sh.

mod common;

use common::*;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::Ordering;

fn plain(image: &str) -> String {
    format!("{}/{image}", env("DS_REGISTRY"))
}

#[test]
fn tls_with_a_private_ca_needs_cacert_or_ssl_cert_file() {
    let registry = env("DS_TLS_REGISTRY");
    let reference = format!("{registry}/busybox:latest");
    let dir = Scratch::new("tls");

    let out = dockersave(dir.path(), &[&reference]);
    assert_eq!(out.code, 3, "{out}");
    let last = out.stderr.lines().last().unwrap();
    assert!(
        last.contains(&registry) && last.contains("--cacert"),
        "{out}"
    );
    assert!(dir.names().is_empty());

    let ca = env("DS_TEST_CA");
    dockersave_ok(
        dir.path(),
        &["--cacert", &ca, "--tarname", "a.tar", &reference],
    );
    load(
        &dir.path().join("a.tar"),
        Some(&reference),
        &config_digest(&plain("busybox:latest"), &[]),
    );

    let out = dockersave_env(
        dir.path(),
        &["--tarname", "b.tar", &reference],
        &[("SSL_CERT_FILE", &ca)],
        None,
    );
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(
        fs::read(dir.path().join("a.tar")).unwrap(),
        fs::read(dir.path().join("b.tar")).unwrap()
    );

    // Plain HTTP to a TLS port is a clear failure, never a silent downgrade or success: a
    // network failure (exit 3) on one line naming the host and what to change (the registry
    // answers 400 in plain HTTP, which says it speaks HTTPS).
    let out = dockersave(
        dir.path(),
        &["--insecure", "--tarname", "c.tar", &reference],
    );
    assert_eq!(out.code, 3, "{out}");
    let errors: Vec<&str> = out.stderr.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(errors.len(), 1, "{out}");
    assert!(errors[0].contains(&registry_host(&reference)), "{out}");
    assert!(errors[0].contains("leave out --insecure"), "{out}");
    assert!(!dir.path().join("c.tar").exists());
}

/// `host:port` of a reference.
fn registry_host(reference: &str) -> String {
    reference.split('/').next().unwrap_or_default().to_string()
}

#[test]
fn password_from_stdin() {
    let registry = env("DS_BASIC_REGISTRY");
    let (user, password) = (env("DS_BASIC_USER"), env("DS_BASIC_PASSWORD"));
    let reference = format!("{registry}/busybox:latest");
    let dir = Scratch::new("stdin");
    let out = dockersave_env(
        dir.path(),
        &[
            "--insecure",
            "--user",
            &user,
            "--password-stdin",
            &reference,
        ],
        &[],
        Some(&format!("{password}\n")),
    );
    assert_eq!(out.code, 0, "{out}");
    assert!(!out.all().contains(&password), "the password leaked: {out}");
    load(
        &dir.path().join("busybox-latest.tar"),
        Some(&reference),
        &config_digest(&plain("busybox:latest"), &[]),
    );

    let out = dockersave_env(
        dir.path(),
        &[
            "--insecure",
            "--user",
            &user,
            "--password-stdin",
            &reference,
        ],
        &[],
        Some("wrong-stdin-5\n"),
    );
    assert_eq!(out.code, 4, "{out}");
    assert!(!out.all().contains("wrong-stdin-5"), "{out}");
}

/// A Docker config directory whose config.json is `json`.
fn docker_config(json: &str) -> Scratch {
    let dir = Scratch::new("docker-config");
    fs::write(dir.path().join("config.json"), json).unwrap();
    dir
}

fn base64(text: &str) -> String {
    run("base64", &["-w0"], std::path::Path::new("/"), Some(text)).stdout
}

#[test]
fn credentials_from_docker_config_json() {
    let registry = env("DS_BASIC_REGISTRY");
    let (user, password) = (env("DS_BASIC_USER"), env("DS_BASIC_PASSWORD"));
    let reference = format!("{registry}/busybox-oci:latest");
    let dir = Scratch::new("config-json");

    let good = docker_config(&format!(
        r#"{{"auths":{{"http://{registry}/v2/":{{"auth":"{}"}}}}}}"#,
        base64(&format!("{user}:{password}"))
    ));
    let out = dockersave_env(
        dir.path(),
        &["--insecure", &reference],
        &[("DOCKER_CONFIG", good.path().to_str().unwrap())],
        None,
    );
    assert_eq!(out.code, 0, "{out}");
    assert!(!out.all().contains(&password), "{out}");
    load(
        &dir.path().join("busybox-oci-latest.tar"),
        Some(&reference),
        &config_digest(&plain("busybox-oci:latest"), &[]),
    );

    let bad = docker_config(&format!(
        r#"{{"auths":{{"{registry}":{{"auth":"{}"}}}}}}"#,
        base64(&format!("{user}:stored-wrong-1"))
    ));
    let out = dockersave_env(
        dir.path(),
        &["--insecure", "--tarname", "x.tar", &reference],
        &[("DOCKER_CONFIG", bad.path().to_str().unwrap())],
        None,
    );
    assert_eq!(out.code, 4, "{out}");
    assert!(
        out.stderr.contains("refused the user name or password"),
        "{out}"
    );
    assert!(!out.all().contains("stored-wrong-1"), "{out}");

    // The command line wins over the config file.
    let out = dockersave_env(
        dir.path(),
        &[
            "--insecure",
            "--user",
            &user,
            "--password",
            &password,
            "--tarname",
            "y.tar",
            &reference,
        ],
        &[("DOCKER_CONFIG", bad.path().to_str().unwrap())],
        None,
    );
    assert_eq!(out.code, 0, "{out}");
}

#[test]
fn an_identity_token_is_exchanged_with_a_refresh_token_post() {
    // Docker's `identitytoken` (what `docker login` stores for an OAuth registry) goes to the
    // token service as an OAuth2 refresh_token POST; the harness's token service only answers
    // it for the right token, and logs the exchange.
    let registry = env("DS_TOKEN_REGISTRY");
    let refresh = env("DS_TOKEN_REFRESH");
    let reference = format!("{registry}/busybox:latest");
    let dir = Scratch::new("identity-token");
    let log = || fs::read_to_string(env("DS_TOKEN_LOG")).unwrap();
    let before = log().len();
    let good = docker_config(&format!(
        r#"{{"auths":{{"{registry}":{{"identitytoken":"{refresh}"}}}}}}"#
    ));
    let out = dockersave_env(
        dir.path(),
        &["--insecure", "-v", "--tarname", "a.tar", &reference],
        &[("DOCKER_CONFIG", good.path().to_str().unwrap())],
        None,
    );
    assert_eq!(out.code, 0, "{out}");
    assert!(!out.all().contains(&refresh), "{out}");
    let exchanged = log()[before..].to_string();
    assert!(
        exchanged.contains("scope=repository:busybox:pull user=refresh-token\n"),
        "the pull's token came from the refresh token: {exchanged}"
    );
    load(
        &dir.path().join("a.tar"),
        Some(&reference),
        &config_digest(&plain("busybox:latest"), &[]),
    );

    let before = log().len();
    let bad = docker_config(&format!(
        r#"{{"auths":{{"{registry}":{{"identitytoken":"stale-refresh-9"}}}}}}"#
    ));
    let out = dockersave_env(
        dir.path(),
        &["--insecure", "--tarname", "b.tar", &reference],
        &[("DOCKER_CONFIG", bad.path().to_str().unwrap())],
        None,
    );
    assert_eq!(out.code, 4, "{out}");
    assert!(!out.all().contains("stale-refresh-9"), "{out}");
    assert!(
        log()[before..].contains("user=refresh-token(refused)"),
        "{}",
        log()
    );
    assert!(!dir.path().join("b.tar").exists());
}

#[test]
fn credentials_from_a_credential_helper() {
    let registry = env("DS_BASIC_REGISTRY");
    let (user, password) = (env("DS_BASIC_USER"), env("DS_BASIC_PASSWORD"));
    let reference = format!("{registry}/busybox:latest");
    let bin = Scratch::new("helper-bin");
    let asked = bin.path().join("asked");
    let helper = bin.path().join("docker-credential-test");
    fs::write(
        &helper,
        format!(
            "#!/bin/sh\n[ \"$1\" = get ] || exit 1\nread server\necho \"$server\" >> {}\nprintf '{{\"ServerURL\":\"%s\",\"Username\":\"{user}\",\"Secret\":\"{password}\"}}' \"$server\"\n",
            asked.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&helper, fs::Permissions::from_mode(0o755)).unwrap();
    let config = docker_config(&format!(r#"{{"credHelpers":{{"{registry}":"test"}}}}"#));
    let path = format!(
        "{}:{}",
        bin.path().display(),
        std::env::var("PATH").unwrap()
    );
    let dir = Scratch::new("helper");
    let out = dockersave_env(
        dir.path(),
        &["--insecure", &reference],
        &[
            ("DOCKER_CONFIG", config.path().to_str().unwrap()),
            ("PATH", &path),
        ],
        None,
    );
    assert_eq!(out.code, 0, "{out}");
    assert!(!out.all().contains(&password), "{out}");
    assert_eq!(
        fs::read_to_string(&asked).unwrap(),
        format!("{registry}\n"),
        "the helper was asked for the registry host"
    );
    load(
        &dir.path().join("busybox-latest.tar"),
        Some(&reference),
        &config_digest(&plain("busybox:latest"), &[]),
    );

    // A helper named in the config but not installed: a warning, then anonymous (refused here).
    let missing = docker_config(r#"{"credsStore":"not-installed-xyz"}"#);
    let out = dockersave_env(
        dir.path(),
        &["--insecure", "--tarname", "z.tar", &reference],
        &[("DOCKER_CONFIG", missing.path().to_str().unwrap())],
        None,
    );
    assert_eq!(out.code, 4, "{out}");
    assert!(
        out.stderr.contains("docker-credential-not-installed-xyz"),
        "{out}"
    );
}

#[test]
fn env_proxy_carries_requests_and_no_proxy_bypasses_it() {
    let (proxy, log) = connect_proxy(Some(("puser", "proxy-pass-8")));
    let port = env("DS_REGISTRY").rsplit_once(':').unwrap().1.to_string();
    // A non-loopback name the proxy resolves to 127.0.0.1 (loopback is never env-proxied).
    let reference = format!("registry.dockersave.test:{port}/busybox:latest");
    let proxy_url = format!("http://puser:proxy-pass-8@{proxy}");
    let dir = Scratch::new("proxy");
    let out = dockersave_env(
        dir.path(),
        &["--insecure", &reference],
        &[("HTTP_PROXY", &proxy_url)],
        None,
    );
    assert_eq!(out.code, 0, "{out}");
    assert!(!out.all().contains("proxy-pass-8"), "{out}");
    let seen = log.lock().unwrap().clone();
    assert!(
        !seen.is_empty()
            && seen
                .iter()
                .all(|l| *l == format!("CONNECT registry.dockersave.test:{port} user=puser")),
        "{seen:?}"
    );
    load(
        &dir.path().join("busybox-latest.tar"),
        Some(&reference),
        &config_digest(&plain("busybox:latest"), &[]),
    );

    log.lock().unwrap().clear();
    let out = dockersave_env(
        dir.path(),
        &["--insecure", "--tarname", "n.tar", &reference],
        &[("HTTP_PROXY", &proxy_url), ("NO_PROXY", ".dockersave.test")],
        None,
    );
    // Direct, the made-up name does not resolve: the point is that the proxy saw nothing.
    assert_eq!(out.code, 3, "{out}");
    assert!(log.lock().unwrap().is_empty(), "{:?}", log.lock().unwrap());

    let out = dockersave_env(
        dir.path(),
        &["--insecure", "--tarname", "l.tar", &plain("busybox")],
        &[("HTTP_PROXY", &proxy_url)],
        None,
    );
    assert_eq!(out.code, 0, "{out}");
    assert!(
        log.lock().unwrap().is_empty(),
        "loopback went through the env proxy: {:?}",
        log.lock().unwrap()
    );
}

#[test]
fn explicit_proxy_includes_loopback_unless_no_proxy() {
    let (proxy, log) = connect_proxy(None);
    let registry = env("DS_REGISTRY");
    let dir = Scratch::new("explicit-proxy");
    let proxy_url = format!("http://{proxy}");
    let out = dockersave(
        dir.path(),
        &["--insecure", "--proxy", &proxy_url, &plain("busybox")],
    );
    assert_eq!(out.code, 0, "{out}");
    let seen = log.lock().unwrap().clone();
    assert!(
        !seen.is_empty()
            && seen
                .iter()
                .all(|l| *l == format!("CONNECT {registry} user=-")),
        "{seen:?}"
    );

    log.lock().unwrap().clear();
    let out = dockersave_env(
        dir.path(),
        &[
            "--insecure",
            "--proxy",
            &proxy_url,
            "--tarname",
            "d.tar",
            &plain("busybox"),
        ],
        &[("NO_PROXY", "127.0.0.1")],
        None,
    );
    assert_eq!(out.code, 0, "{out}");
    assert!(log.lock().unwrap().is_empty(), "{:?}", log.lock().unwrap());
}

#[test]
fn blob_redirect_to_another_host_gets_no_authorization() {
    let (cdn, log) = recording_server(&env("DS_REGISTRY"));
    // "localhost" is another host than the 127.0.0.1 the registry is reached at.
    let cdn_port = cdn.rsplit_once(':').unwrap().1;
    let front = forwarder(
        &env("DS_BASIC_REGISTRY"),
        Faults {
            redirect_blobs_to: Some(format!("localhost:{cdn_port}")),
            ..Faults::default()
        },
    );
    let (user, password) = (env("DS_BASIC_USER"), env("DS_BASIC_PASSWORD"));
    let reference = format!("{front}/layers:latest");
    let dir = Scratch::new("redirect");
    let out = dockersave_env(
        dir.path(),
        &[
            "--insecure",
            "--user",
            &user,
            "--password-stdin",
            &reference,
        ],
        &[],
        Some(&password),
    );
    assert_eq!(out.code, 0, "{out}");
    let requests = log.lock().unwrap().clone();
    assert_eq!(
        requests.len(),
        4,
        "config and three layers fetched from the redirect target: {requests:?}"
    );
    for headers in &requests {
        assert!(
            headers.iter().all(|(name, _)| name != "authorization"),
            "Authorization reached the other host: {headers:?}"
        );
    }
    load(
        &dir.path().join("layers-latest.tar"),
        Some(&reference),
        &config_digest(&plain("layers:latest"), &[]),
    );
}

#[test]
fn rate_limit_explains_itself() {
    let front = forwarder(
        &env("DS_REGISTRY"),
        Faults {
            manifest_status: Some(429),
            ..Faults::default()
        },
    );
    let dir = Scratch::new("ratelimit");
    let out = dockersave(dir.path(), &["--insecure", &format!("{front}/busybox")]);
    assert_eq!(out.code, 8, "{out}");
    let last = out.stderr.lines().last().unwrap();
    assert!(
        last.contains("rate limit") && last.contains("a login (--user, --ilogin)"),
        "{out}"
    );
    assert!(dir.names().is_empty());
}

/// The requests a pull makes, with -v: method and path, from "  GET http://host/v2/… → 200, …".
fn requests_made(stderr: &str) -> Vec<String> {
    stderr
        .lines()
        .filter_map(|l| l.split_once(" → "))
        .map(|(request, answer)| {
            let path = request.trim().splitn(4, '/').nth(3).unwrap_or("");
            let status = answer.split(',').next().unwrap_or("");
            format!(
                "{} /{path} {status}",
                request.trim().split(' ').next().unwrap_or("")
            )
        })
        .collect()
}

/// Pulls `image` from the registry at `$registry_env` through a counting tunnel with `-v` and
/// `args` (and `stdin`): the requests it made and the connections it opened.
fn pull_counted(
    dir: &Scratch,
    registry_env: &str,
    args: &[&str],
    image: &str,
    stdin: Option<&str>,
) -> (Vec<String>, usize, Output) {
    let (tunnel, connections) = counting_tunnel(&env(registry_env));
    let reference = format!("{tunnel}/{image}");
    let mut all = vec!["--insecure", "-v"];
    all.extend_from_slice(args);
    all.push(&reference);
    let out = dockersave_env(dir.path(), &all, &[], stdin);
    assert_eq!(out.code, 0, "{out}");
    let requests = requests_made(&out.stderr);
    (requests, connections.load(Ordering::SeqCst), out)
}

#[test]
fn a_pull_makes_the_fewest_requests_over_kept_connections() {
    let dir = Scratch::new("round-trips");
    // Hub-style token auth, anonymous: the manifest meets the challenge, one token, the
    // manifest again, then the config and the layer at once.
    let (requests, connections, out) = pull_counted(
        &dir,
        "DS_TOKEN_REGISTRY",
        &["-o", "token.tar"],
        "busybox",
        None,
    );
    assert_eq!(requests.len(), 5, "{out}");
    assert_eq!(requests[0], "GET /v2/busybox/manifests/latest 401", "{out}");
    assert!(
        requests[1].starts_with("GET /token?") && requests[1].ends_with(" 200"),
        "{out}"
    );
    assert_eq!(requests[2], "GET /v2/busybox/manifests/latest 200", "{out}");
    assert!(requests[3..]
        .iter()
        .all(|r| r.contains("/blobs/sha256:") && r.ends_with(" 200")));
    // The challenge's connection is kept for the manifest and one blob; the other blob opens
    // the second.
    assert_eq!(connections, 2, "{out}");

    // Basic auth: the challenge, the manifest with the password, the blobs.
    let user = env("DS_BASIC_USER");
    let args = ["--user", &user, "--password-stdin", "-o", "basic.tar"];
    let password = env("DS_BASIC_PASSWORD");
    let (requests, connections, out) =
        pull_counted(&dir, "DS_BASIC_REGISTRY", &args, "busybox", Some(&password));
    assert_eq!(requests.len(), 4, "{out}");
    assert_eq!(requests[0], "GET /v2/busybox/manifests/latest 401", "{out}");
    assert_eq!(requests[1], "GET /v2/busybox/manifests/latest 200", "{out}");
    assert_eq!(connections, 2, "{out}");

    // An index, then the platform's manifest, then its config and layer.
    let args = ["--platform", "linux/amd64", "-o", "multi.tar"];
    let (requests, connections, out) = pull_counted(&dir, "DS_REGISTRY", &args, "multi", None);
    assert_eq!(requests.len(), 4, "{out}");
    assert_eq!(requests[0], "GET /v2/multi/manifests/latest 200", "{out}");
    assert!(
        requests[1].starts_with("GET /v2/multi/manifests/sha256:"),
        "{out}"
    );
    assert_eq!(connections, 2, "{out}");

    // Three layers: all asked for at once beside the config, so four connections, no more.
    let (requests, connections, out) =
        pull_counted(&dir, "DS_REGISTRY", &["-o", "layers.tar"], "layers", None);
    assert_eq!(requests.len(), 5, "{out}");
    assert!(requests.iter().all(|r| r.ends_with(" 200")), "{out}");
    assert_eq!(connections, 4, "{out}");

    // One layer (--layer): only that blob is asked for, none ahead.
    let (requests, _, out) = pull_counted(&dir, "DS_REGISTRY", &["--layer", "3"], "layers", None);
    assert_eq!(requests.len(), 3, "{out}");
}

#[test]
fn a_host_that_is_not_a_registry_is_named_so() {
    // A web server that answers 404 to everything: with no /v2/ check ahead, the manifest's
    // 404 is explained by asking /v2/ then.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        use std::io::{BufRead, Write};
        for stream in listener.incoming().flatten() {
            let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap_or(0) > 0 {
                if line == "\r\n" {
                    let mut out = &stream;
                    let _ = out
                        .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found");
                }
                line.clear();
            }
        }
    });
    let dir = Scratch::new("not-a-registry");
    let out = dockersave(dir.path(), &["--insecure", &format!("{addr}/busybox")]);
    assert_eq!(out.code, 8, "{out}");
    let errors: Vec<&str> = out.stderr.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(errors.len(), 1, "{out}");
    assert!(
        errors[0].contains("does not serve the registry API"),
        "{out}"
    );
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0, "{out}");
}
