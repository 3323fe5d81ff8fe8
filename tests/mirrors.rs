//! Integration tests for mirrors, certs.d and rate limits: a real pull-through cache
//! (distribution in proxy mode, `DS_MIRROR`) in front of the token-auth registry, mirrors that
//! are dead, answer 503 or 404, a spy mirror that records what it is sent, TLS registries found
//! through certs.d (one of them wanting a client certificate), and Docker Hub's rate-limit
//! headers. Run through tests/run.sh.

mod common;

use common::*;
use std::fs;
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The requests the pull-through cache logged (combined log format), e.g.
/// `GET /v2/library/busybox/manifests/latest`, with their status.
fn mirror_requests() -> Vec<String> {
    let log = fs::read_to_string(env("DS_MIRROR_LOG")).unwrap();
    log.lines()
        .filter_map(|line| {
            let (_, rest) = line.split_once("] \"")?;
            let (request, after) = rest.split_once('"')?;
            let status = after.split_whitespace().next()?;
            let mut words = request.split_whitespace();
            Some(format!("{} {} {status}", words.next()?, words.next()?))
        })
        .collect()
}

/// A loopback port that nothing listens on (bound, then let go).
fn dead_port() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

#[test]
fn a_hub_image_comes_through_the_pull_through_cache() {
    // `busybox` is Docker Hub's library/busybox: the mirror is asked for that path, and its
    // upstream (the token-auth registry) has it. Were the mirror not used, the pull would go
    // to the internet and fail.
    let dir = Scratch::new("hub-mirror");
    let mirror = env("DS_MIRROR");
    let out = dockersave_ok(
        dir.path(),
        &["-v", "--mirror", &format!("http://{mirror}"), "busybox"],
    );
    assert_eq!(dir.names(), ["library-busybox-latest.tar"], "{out}");
    assert!(
        out.stderr.contains(&format!(
            "the manifest of docker.io/library/busybox:latest came from mirror {mirror}"
        )),
        "--verbose names the host that answered: {out}"
    );
    let requests = mirror_requests();
    assert!(
        requests.contains(&"GET /v2/library/busybox/manifests/latest 200".to_string()),
        "{requests:?}"
    );
    let upstream = format!("{}/library/busybox:latest", env("DS_TOKEN_REGISTRY"));
    for layer in layer_digests(&upstream) {
        assert!(
            requests.contains(&format!("GET /v2/library/busybox/blobs/{layer} 200")),
            "layer {layer} did not come through the mirror: {requests:?}"
        );
    }
    load(
        &dir.path().join("library-busybox-latest.tar"),
        Some("busybox:latest"),
        &config_digest(&upstream, &[]),
    );
    assert_eq!(
        docker_run("busybox:latest", &["cat", "/etc/fixture"]).trim(),
        "dockersave fixture"
    );
    // Inspection goes through the mirror as well.
    let sha = dockersave_ok(
        dir.path(),
        &["--sha", "--mirror", &format!("http://{mirror}"), "busybox"],
    );
    assert_eq!(sha.stdout.trim(), manifest_digest(&upstream), "{sha}");
}

#[test]
fn mirrors_come_from_flags_then_the_variable_then_daemon_json() {
    let registry = env("DS_TOKEN_REGISTRY");
    let image = format!("{registry}/layers:latest");
    let live = format!("{registry}=http://{}", env("DS_MIRROR"));
    let dead = format!("{registry}=http://{}", dead_port());
    let dir = Scratch::new("mirror-sources");
    let daemon_json = dir.path().join("daemon.json");
    // daemon.json holds Docker Hub mirrors only; it must not touch another registry's pull.
    fs::write(
        &daemon_json,
        format!(
            r#"{{"debug": true, "registry-mirrors": ["http://{}"]}}"#,
            dead_port()
        ),
    )
    .unwrap();
    let pull = |args: &[&str], envs: &[(&str, &str)]| {
        let mut all = vec!["--insecure", "-v", "-o", "-"];
        all.extend_from_slice(args);
        all.push(&image);
        let out = dockersave_env(dir.path(), &all, envs, None);
        assert_eq!(out.code, 0, "{out}");
        out.stderr
    };
    let daemon = [("DOCKERSAVE_DAEMON_JSON", daemon_json.to_str().unwrap())];
    let warned = |stderr: &str| stderr.contains("warning: mirror ");
    let from_mirror = |stderr: &str| stderr.contains("came from mirror");

    let stderr = pull(&[], &daemon);
    assert!(!warned(&stderr) && !from_mirror(&stderr), "{stderr}");
    let with_var = [daemon[0], ("DOCKERSAVE_MIRRORS", &dead)];
    let stderr = pull(&[], &with_var);
    assert!(
        warned(&stderr) && !from_mirror(&stderr),
        "the variable's mirror is tried: {stderr}"
    );
    let stderr = pull(&["--mirror", &live], &with_var);
    assert!(
        !warned(&stderr) && from_mirror(&stderr),
        "--mirror replaces the variable: {stderr}"
    );
    let stderr = pull(&["--no-mirror"], &with_var);
    assert!(
        !warned(&stderr) && !from_mirror(&stderr),
        "--no-mirror turns them off: {stderr}"
    );
    let empty = [daemon[0], ("DOCKERSAVE_MIRRORS", "")];
    let stderr = pull(&[], &empty);
    assert!(!warned(&stderr) && !from_mirror(&stderr), "{stderr}");

    // daemon.json's registry-mirrors serve Docker Hub images: with only it, `busybox` comes
    // through the cache it names (or would go to the internet and fail).
    fs::write(
        &daemon_json,
        format!(r#"{{"registry-mirrors": ["http://{}"]}}"#, env("DS_MIRROR")),
    )
    .unwrap();
    let out = dockersave_env(dir.path(), &["-v", "-o", "-", "busybox"], &daemon, None);
    assert_eq!(out.code, 0, "{out}");
    assert!(from_mirror(&out.stderr), "{out}");

    let bad = dockersave_env(
        dir.path(),
        &["busybox"],
        &[("DOCKERSAVE_MIRRORS", "ftp://x")],
        None,
    );
    assert_eq!(bad.code, 2, "{bad}");
    assert!(bad.stderr.contains("DOCKERSAVE_MIRRORS"), "{bad}");
    let push = dockersave(dir.path(), &["--push", "x.tar", "--mirror", &live, &image]);
    assert_eq!(push.code, 2, "{push}");
    assert!(
        push.stderr.contains("--push always goes to the registry"),
        "{push}"
    );
}

#[test]
fn failing_mirrors_give_way_to_the_next_and_then_to_the_registry() {
    let registry = env("DS_TOKEN_REGISTRY");
    let unavailable = Faults {
        fail_first: Some((503, None)),
        ..Faults::times(1000)
    };
    let busy = forwarder(&registry, unavailable.clone());
    let missing = Faults {
        manifest_status: Some(404),
        ..Faults::default()
    };
    let empty = forwarder(&registry, missing.clone());
    let dead = dead_port();
    let dir = Scratch::new("mirror-fallback");
    let image = format!("{registry}/busybox:latest");
    let mirror = |host: &str| format!("{registry}=http://{host}");
    let out = dockersave_ok(
        dir.path(),
        &[
            "--insecure",
            "--mirror",
            &mirror(&dead),
            "--mirror",
            &mirror(&busy),
            "--mirror",
            &mirror(&empty),
            &image,
        ],
    );
    let warnings: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("warning: mirror "))
        .collect();
    assert_eq!(warnings.len(), 3, "one line per failed mirror: {out}");
    assert!(
        warnings[0].contains(&dead)
            && warnings[0].contains(&format!("trying the next mirror, {busy}")),
        "{out}"
    );
    assert!(
        warnings[1].contains("HTTP 503")
            && warnings[1].contains(&format!("trying the next mirror, {empty}")),
        "{out}"
    );
    assert!(
        warnings[2].contains("HTTP 404")
            && warnings[2].contains(&format!("trying the registry, {registry}")),
        "{out}"
    );
    assert_eq!(
        unavailable.requests().len(),
        1,
        "a mirror is not retried: {:?}",
        unavailable.requests()
    );
    assert!(
        missing.requests().iter().all(|r| r.contains("/manifests/")),
        "once failed, a mirror is not asked for the blobs: {:?}",
        missing.requests()
    );
    load(
        &dir.path().join("busybox-latest.tar"),
        Some(&image),
        &config_digest(&image, &[]),
    );
}

/// A mirror that wants a token from its own token service, records every request's headers,
/// hands out `spy-token` for Basic credentials, and answers 503 to whatever that token asks.
fn spy_mirror() -> (String, Arc<Mutex<Vec<Headers>>>) {
    let log = Arc::new(Mutex::new(Vec::new()));
    let seen = log.clone();
    let addr = Arc::new(Mutex::new(String::new()));
    let me = addr.clone();
    let bound = serve(move |request, mut stream| {
        let mut headers = request.headers.clone();
        headers.push(("request".into(), request.target.clone()));
        seen.lock().unwrap().push(headers);
        let authorization = request.header("authorization").unwrap_or_default();
        let (status, extra, body) = if request.target.starts_with("/token") {
            if authorization.starts_with("Basic ") {
                (200, String::new(), r#"{"token":"spy-token"}"#)
            } else {
                (401, String::new(), "")
            }
        } else if authorization == "Bearer spy-token" {
            (503, String::new(), "")
        } else {
            let realm = format!("http://{}/token", me.lock().unwrap());
            (
                401,
                format!("WWW-Authenticate: Bearer realm=\"{realm}\",service=\"spy\"\r\n"),
                "",
            )
        };
        write!(
            stream,
            "HTTP/1.1 {status} X\r\n{extra}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    });
    *addr.lock().unwrap() = bound.clone();
    (bound, log)
}

fn base64(text: &str) -> String {
    run("base64", &["-w0"], Path::new("/"), Some(text)).stdout
}

#[test]
fn a_mirror_gets_its_own_credentials_and_never_the_registrys() {
    let (spy, spied) = spy_mirror();
    let seen_by_registry = Faults::default();
    let registry = forwarder(&env("DS_TOKEN_REGISTRY"), seen_by_registry.clone());
    let dir = Scratch::new("mirror-credentials");
    let config = dir.path().join("docker");
    fs::create_dir_all(&config).unwrap();
    // Stored credentials for the mirror's host and, to be overridden by --user, the registry's.
    fs::write(
        config.join("config.json"),
        format!(
            r#"{{"auths":{{"{spy}":{{"auth":"{}"}},"{registry}":{{"auth":"{}"}}}}}}"#,
            base64("spyuser:spy-secret-9"),
            base64("stored:stored-secret-3")
        ),
    )
    .unwrap();
    let user = env("DS_TOKEN_USER");
    let password = env("DS_TOKEN_PASSWORD");
    let out = dockersave_env(
        dir.path(),
        &[
            "--insecure",
            "--mirror",
            &format!("{registry}=http://{spy}"),
            "--user",
            &user,
            "--password-stdin",
            "-o",
            "-",
            &format!("{registry}/busybox"),
        ],
        &[("DOCKER_CONFIG", config.to_str().unwrap())],
        Some(&password),
    );
    assert_eq!(out.code, 0, "{out}");
    assert!(
        out.stderr
            .contains(&format!("warning: mirror {spy}: HTTP 503")),
        "{out}"
    );

    let spied = spied.lock().unwrap().clone();
    let values = |log: &[Headers]| -> String {
        log.iter()
            .flatten()
            .map(|(name, value)| format!("{name}: {value}\n"))
            .collect()
    };
    let at_mirror = values(&spied);
    assert!(
        at_mirror.contains(&format!(
            "authorization: Basic {}",
            base64("spyuser:spy-secret-9")
        )),
        "the mirror's token service got the mirror's stored credentials: {at_mirror}"
    );
    assert!(
        at_mirror.contains("authorization: Bearer spy-token"),
        "{at_mirror}"
    );
    for secret in [
        &user,
        &password,
        &base64("stored:stored-secret-3"),
        &base64(&format!("{user}:{password}")),
    ] {
        assert!(
            !at_mirror.contains(secret.as_str()),
            "the registry's credentials reached the mirror: {secret}"
        );
    }
    let at_registry = values(&seen_by_registry.headers.lock().unwrap());
    assert!(
        at_registry.contains("authorization: Bearer "),
        "the registry got its own token: {at_registry}"
    );
    for secret in ["spy-token", "spy-secret-9", "spyuser"] {
        assert!(
            !at_registry.contains(secret),
            "the mirror's credentials or token reached the registry: {secret}"
        );
    }
    assert!(
        fs::read_to_string(env("DS_TOKEN_LOG"))
            .unwrap()
            .contains(&format!("scope=repository:busybox:pull user={user}")),
        "--user went to the registry's token service"
    );
}

/// A certs.d directory holding `files` (name, source path) for `host`.
fn certs_d(dir: &Path, host: &str, files: &[(&str, String)]) -> String {
    let host_dir = dir.join("certs.d").join(host);
    fs::create_dir_all(&host_dir).unwrap();
    for (name, source) in files {
        fs::copy(source, host_dir.join(name)).unwrap();
    }
    dir.join("certs.d").to_str().unwrap().to_string()
}

#[test]
fn certs_d_trusts_a_private_ca_for_its_host_alone() {
    let registry = env("DS_TLS_REGISTRY");
    let image = format!("{registry}/busybox:latest");
    let dir = Scratch::new("certs-d");
    let without = dockersave(dir.path(), &["-o", "-", &image]);
    assert_eq!(
        without.code, 3,
        "the CA is not trusted by default: {without}"
    );
    assert!(without.stderr.contains("TLS failed"), "{without}");

    let certs = certs_d(dir.path(), &registry, &[("ca.crt", env("DS_TEST_CA"))]);
    let out = dockersave_ok(dir.path(), &["--certs-d", &certs, &image]);
    load(
        &dir.path().join("busybox-latest.tar"),
        Some(&image),
        &config_digest(&format!("{}/busybox:latest", env("DS_REGISTRY")), &[]),
    );
    assert!(!out.stderr.contains("warning"), "{out}");
    let by_variable = dockersave_env(
        dir.path(),
        &["-o", "-", &image],
        &[("DOCKERSAVE_CERTS_D", &certs)],
        None,
    );
    assert_eq!(by_variable.code, 0, "{by_variable}");

    // The CA is trusted for the host its directory names, not for another host it signed.
    let other = dir.path().join("other");
    let elsewhere = certs_d(&other, "127.0.0.1:1", &[("ca.crt", env("DS_TEST_CA"))]);
    let refused = dockersave(dir.path(), &["--certs-d", &elsewhere, "-o", "-", &image]);
    assert_eq!(refused.code, 3, "{refused}");
}

#[test]
fn mutual_tls_with_the_client_certificate_of_certs_d() {
    let registry = env("DS_MTLS_REGISTRY");
    let image = format!("{registry}/busybox:latest");
    let dir = Scratch::new("mtls");
    let ca_only = certs_d(dir.path(), &registry, &[("ca.crt", env("DS_TEST_CA"))]);
    let refused = dockersave(dir.path(), &["--certs-d", &ca_only, &image]);
    assert_eq!(refused.code, 4, "{refused}");
    let line = refused.stderr.trim_end();
    assert_eq!(line.lines().count(), 2, "Pulling, then one line: {refused}");
    let error = line.lines().last().unwrap();
    assert!(
        error.contains("requires a client certificate")
            && error.contains(&format!("{ca_only}/{registry}"))
            && error.contains(&format!("/etc/docker/certs.d/{registry}")),
        "{refused}"
    );
    assert!(
        dir.names().iter().all(|n| n == "certs.d"),
        "{:?}",
        dir.names()
    );

    let with_client = Scratch::new("mtls-client");
    let certs = certs_d(
        with_client.path(),
        &registry,
        &[
            ("ca.crt", env("DS_TEST_CA")),
            ("client.cert", env("DS_CLIENT_CERT")),
            ("client.key", env("DS_CLIENT_KEY")),
        ],
    );
    dockersave_ok(with_client.path(), &["--certs-d", &certs, &image]);
    load(
        &with_client.path().join("busybox-latest.tar"),
        Some(&image),
        &config_digest(&format!("{}/busybox:latest", env("DS_REGISTRY")), &[]),
    );

    // A certificate from a CA the registry does not trust is refused, and said so.
    let stranger = Scratch::new("mtls-stranger");
    let key = stranger.path().join("client.key");
    let cert = stranger.path().join("client.cert");
    let made = run(
        "openssl",
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=stranger",
            "-keyout",
            key.to_str().unwrap(),
            "-out",
            cert.to_str().unwrap(),
        ],
        Path::new("/"),
        None,
    );
    assert_eq!(made.code, 0, "{made}");
    let certs = certs_d(
        stranger.path(),
        &registry,
        &[
            ("ca.crt", env("DS_TEST_CA")),
            ("client.cert", cert.to_str().unwrap().into()),
            ("client.key", key.to_str().unwrap().into()),
        ],
    );
    let out = dockersave(stranger.path(), &["--certs-d", &certs, "-o", "-", &image]);
    assert_eq!(out.code, 4, "{out}");
    assert!(
        out.stderr.contains("refused the client certificate") && out.stderr.contains("client.cert"),
        "{out}"
    );
}

#[test]
fn an_x509_v1_client_certificate_is_sent_as_docker_sends_it() {
    // What `openssl x509 -req` makes without an extensions file: version 1, no extensions.
    // rustls cannot parse it; it is only sent, so it must work (it used to abort the run).
    let registry = env("DS_MTLS_REGISTRY");
    let dir = Scratch::new("mtls-v1");
    let (key, csr, cert) = (
        dir.path().join("v1.key"),
        dir.path().join("v1.csr"),
        dir.path().join("v1.cert"),
    );
    let ca = PathBuf::from(env("DS_TEST_CA"));
    let ca_key = ca.with_file_name("ca.key");
    let path = |p: &PathBuf| p.to_str().unwrap().to_string();
    for args in [
        vec![
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=v1-client",
            "-keyout",
            &path(&key),
            "-out",
            &path(&csr),
        ],
        vec![
            "x509",
            "-req",
            "-in",
            &path(&csr),
            "-CA",
            &path(&ca),
            "-CAkey",
            &path(&ca_key),
            "-CAcreateserial",
            "-days",
            "1",
            "-out",
            &path(&cert),
        ],
    ] {
        let made = run("openssl", &args, dir.path(), None);
        assert_eq!(made.code, 0, "{made}");
    }
    let text = run(
        "openssl",
        &["x509", "-in", &path(&cert), "-noout", "-text"],
        dir.path(),
        None,
    );
    assert!(text.stdout.contains("Version: 1 (0x0)"), "{text}");
    let certs = certs_d(
        dir.path(),
        &registry,
        &[
            ("ca.crt", env("DS_TEST_CA")),
            ("client.cert", path(&cert)),
            ("client.key", path(&key)),
        ],
    );
    let image = format!("{registry}/busybox:latest");
    let out = dockersave(dir.path(), &["--certs-d", &certs, "-o", "out.tar", &image]);
    assert_eq!(out.code, 0, "{out}");
    load(
        &dir.path().join("out.tar"),
        Some(&image),
        &config_digest(&format!("{}/busybox:latest", env("DS_REGISTRY")), &[]),
    );
}

const HUB_HEADERS: [(&str, &str); 3] = [
    ("ratelimit-limit", "100;w=21600"),
    ("ratelimit-remaining", "76;w=21600"),
    ("docker-ratelimit-source", "203.0.113.7"),
];

#[test]
fn rate_limits_are_shown_and_a_429_explained() {
    let counted = Faults {
        answer_headers: HUB_HEADERS.to_vec(),
        ..Faults::default()
    };
    let front = forwarder(&env("DS_REGISTRY"), counted.clone());
    let dir = Scratch::new("ratelimit-hub");
    let out = dockersave_ok(
        dir.path(),
        &["--insecure", "-v", "-o", "-", &format!("{front}/busybox")],
    );
    assert!(
        out.stderr
            .contains("rate limit: 100 pulls per 6 h, 76 left, counted for 203.0.113.7"),
        "{out}"
    );
    let requests = counted.requests();

    let limited = Faults {
        fail_first: Some((429, Some(3600))),
        answer_headers: vec![
            ("ratelimit-limit", "100;w=21600"),
            ("ratelimit-remaining", "0;w=21600"),
            ("docker-ratelimit-source", "203.0.113.7"),
        ],
        ..Faults::times(100)
    };
    let front = forwarder(&env("DS_REGISTRY"), limited.clone());
    let out = dockersave(dir.path(), &["--insecure", &format!("{front}/busybox")]);
    assert_eq!(out.code, 8, "{out}");
    let last = out.stderr.lines().last().unwrap();
    for part in [
        "HTTP 429",
        "100 pulls per 6 h, 0 left, counted for 203.0.113.7",
        "resets in about 1 h",
        "--mirror",
        "--user",
    ] {
        assert!(last.contains(part), "{part:?} missing: {out}");
    }
    assert_eq!(
        limited.requests().len(),
        1,
        "a long Retry-After is explained, not waited out, and nothing is asked to learn the limit"
    );
    assert!(
        requests
            .iter()
            .filter(|r| r.contains("/manifests/"))
            .count()
            == 1
            && requests
                .iter()
                .all(|r| r.contains("/manifests/") || r.contains("/blobs/")),
        "no extra request to learn the limit: {requests:?}"
    );
}
