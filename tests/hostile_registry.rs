//! Every mode against a registry that misbehaves on purpose (tests/harness/hostile_registry.py
//! generates it, endpoint by endpoint): endless, slow, oversized and lying bodies, documents
//! whose counts cost memory, tag lists without end, redirects to plain HTTP or to other hosts,
//! a token service on plain HTTP. Each run is the static release binary under GNU time: it
//! must end within a bound, on one error line, at no more than 16 MiB of peak memory, and
//! leave nothing in its directory (nor a tag in a copy's destination). Run through
//! tests/run.sh.

mod common;

use common::*;
use std::fs;
use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The peak every run must stay under, in KiB, and the longest it may take.
const PEAK_KIB: u64 = 16 * 1024;
const SLOWEST: Duration = Duration::from_secs(45);

/// The hostile registry, on two ports of its own; stopped (by its pid) when dropped.
struct Hostile {
    child: Child,
    plain: String,
    tls: String,
    log: PathBuf,
    _dir: Scratch,
}

impl Hostile {
    fn start() -> Hostile {
        let dir = Scratch::new("hostile-registry");
        let log = dir.path().join("requests.log");
        let tls = PathBuf::from(env("DS_TEST_CA"))
            .parent()
            .unwrap()
            .to_path_buf();
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/harness/hostile_registry.py"
        );
        let mut child = Command::new("python3")
            .arg(script)
            .arg(&log)
            .arg(tls.join("server.pem"))
            .arg(tls.join("server.key"))
            .arg(env("DS_TEST_CA"))
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs the hostile registry");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let ports: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(
            ports.len(),
            2,
            "the hostile registry did not start: {line:?}"
        );
        Hostile {
            plain: format!("127.0.0.1:{}", ports[0]),
            tls: format!("127.0.0.1:{}", ports[1]),
            child,
            log,
            _dir: dir,
        }
    }

    fn requests(&self) -> Vec<String> {
        fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Hostile {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the release binary with `args` in a new directory, as a user would, and checks the
/// bounds every hostile case must keep. Returns what it printed.
fn bounded(args: &[&str]) -> (Output, Scratch) {
    let dir = Scratch::new("hostile-run");
    let (out, peak, took) = run_measured(&release_binary(), args, dir.path(), false);
    assert!(
        peak <= PEAK_KIB,
        "peak {peak} KiB over {PEAK_KIB}: {args:?}\n{out}"
    );
    assert!(took <= SLOWEST, "took {took:?}: {args:?}\n{out}");
    assert_ne!(out.code, 134, "a panic: {args:?}\n{out}");
    (out, dir)
}

/// `bounded`, and the run must fail on one line holding `needle` (or one of its alternatives,
/// `a|b`) and leave nothing behind.
fn refused(args: &[&str], needle: &str) -> Output {
    let (out, dir) = bounded(args);
    assert_ne!(out.code, 0, "{args:?} was accepted:\n{out}");
    let errors: Vec<&str> = out.stderr.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(errors.len(), 1, "{args:?}: one error line\n{out}");
    assert!(
        needle.split('|').any(|n| errors[0].contains(n)),
        "{args:?}: wanted {needle:?}\n{out}"
    );
    assert!(
        dir.names().is_empty(),
        "{args:?} left {:?}\n{out}",
        dir.names()
    );
    out
}

/// The modes that read an image, with `image` and (for a copy) the destination `copy`.
fn modes(image: &str, copy: &str) -> Vec<Vec<String>> {
    let destination = destination(copy);
    [
        vec!["-o", "out.tar"],
        vec!["--rootfs", "root"],
        vec!["--flatten", "flat.tar"],
        vec!["--initramfs", "boot.cpio.gz"],
        vec!["--sha"],
        vec!["--metadata"],
        vec!["--copy-to", &destination],
    ]
    .into_iter()
    .map(|mode| {
        let mut args: Vec<String> = ["--insecure", "--timeout", "5", "--retries", "1"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.extend(mode.iter().map(|s| s.to_string()));
        args.push(image.to_string());
        args
    })
    .collect()
}

fn as_strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

fn destination(name: &str) -> String {
    format!(
        "{}/hostile-{name}-{}:latest",
        env("DS_PUSH_REGISTRY"),
        std::process::id()
    )
}

/// Nothing was stored under the copy destination `name`'s tag.
fn nothing_copied(name: &str) {
    let destination = format!("docker://{}", destination(name));
    let out = run(
        "skopeo",
        &["inspect", "--raw", "--tls-verify=false", &destination],
        std::path::Path::new("/"),
        None,
    );
    assert_ne!(out.code, 0, "a hostile image was copied: {out}");
}

/// Whether a mode parses the image config (inspection and copies take it as bytes).
fn parses_config(args: &[String]) -> bool {
    !args
        .iter()
        .any(|a| a == "--sha" || a == "--metadata" || a == "--copy-to")
}

#[test]
fn documents_that_cost_memory_or_never_end_are_refused_in_every_mode() {
    let hostile = Hostile::start();
    for (scenario, needle, config) in [
        ("endless-manifest", "larger than the 4096 KiB", false),
        ("history-bomb", "more than the 32768 JSON values", true),
        ("cmd-bomb", "more than the 32768 JSON values", true),
        ("twins", "more than the 32768 JSON values", false),
        ("nested", "nest too deeply|lists another index", false),
        ("wrong-digest", "sha256:0000000000", false),
        ("endless-token", "larger than the 1024 KiB", false),
        ("token-bomb", "more than the 32768 JSON values", false),
    ] {
        let image = format!("{}/{scenario}:latest", hostile.plain);
        for args in modes(&image, scenario) {
            if config && !parses_config(&args) {
                // A config bomb is still a document of under 4 MiB: inspection and copies
                // pass its bytes on unparsed, in bounded memory.
                let (out, _) = bounded(&as_strs(&args));
                assert_eq!(out.code, 0, "{args:?}\n{out}");
            } else {
                refused(&as_strs(&args), needle);
                nothing_copied(scenario);
            }
        }
    }
}

#[test]
fn blobs_that_never_end_or_go_round_are_refused() {
    let hostile = Hostile::start();
    for (scenario, needle) in [
        ("endless-blob", "layer 1/1|failed verification"),
        ("redirect-loop", "more than 10 redirects"),
    ] {
        let image = format!("{}/{scenario}:latest", hostile.plain);
        for args in modes(&image, "blobs") {
            let inspects = args.iter().any(|a| a == "--sha" || a == "--metadata");
            if inspects {
                // Inspection reads no layer: the same image is fine there.
                let (out, _) = bounded(&as_strs(&args));
                assert_eq!(out.code, 0, "{args:?}\n{out}");
            } else {
                refused(&as_strs(&args), needle);
            }
        }
    }
    nothing_copied("blobs");
    // The control: the same server's valid image goes through every mode.
    let image = format!("{}/good:latest", hostile.plain);
    for args in modes(&image, "good") {
        let (out, _) = bounded(&as_strs(&args));
        assert_eq!(out.code, 0, "{args:?}\n{out}");
    }
}

#[test]
fn a_manifest_trickled_a_byte_a_second_is_given_up() {
    let hostile = Hostile::start();
    let image = format!("{}/trickle-manifest:latest", hostile.plain);
    // --timeout 2: a grace of 4 s, then the body must average 8 KiB/s.
    for mode in [vec!["-o", "out.tar"], vec!["--sha"]] {
        let mut args = vec!["--insecure", "--timeout", "2", "--retries", "0"];
        args.extend(mode);
        args.push(&image);
        let out = refused(&args, "averaged less than 8 KiB/s");
        assert_eq!(out.code, 3, "{out}");
    }
}

#[test]
fn tags_stream_in_flat_memory_and_stop_at_the_cap() {
    let hostile = Hostile::start();
    let endless = format!("{}/endless-tags", hostile.plain);
    let (out, _) = bounded(&["--insecure", "--tags", &endless]);
    assert_eq!(out.code, 6, "{}", out.stderr);
    assert!(
        out.stderr.contains("more than the 1000000 tags"),
        "{}",
        out.stderr
    );
    assert_eq!(out.stdout.lines().count(), 1_000_000);
    assert_eq!(out.stdout.lines().next(), Some("1"));
    let pages = hostile
        .requests()
        .iter()
        .filter(|r| r.contains("/endless-tags/tags/list"))
        .count();
    assert_eq!(
        pages, 100,
        "pages of 10,000, and none asked for past the cap"
    );
    // A million names in one page (as a registry that ignores `n` sends them): each is
    // printed as it is read, and the page costs no more than its bytes.
    let bomb = format!("{}/tag-bomb", hostile.plain);
    let (out, _) = bounded(&["--insecure", "--tags", &bomb]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout.lines().count(), 1_000_000);
}

#[test]
fn a_bundle_holds_a_bounded_weight_of_configs() {
    let hostile = Hostile::start();
    let image = format!("{}/configs-bundle:latest", hostile.plain);
    refused(
        &["--insecure", "--platform", "all", "-o", "out.tar", &image],
        "configs weigh more than",
    );
}

/// A certs.d directory in `dir` giving `host` the test CA and the harness's client
/// certificate.
fn certs_d(dir: &std::path::Path, host: &str) -> String {
    let host_dir = dir.join("certs.d").join(host);
    fs::create_dir_all(&host_dir).unwrap();
    for (name, source) in [
        ("ca.crt", env("DS_TEST_CA")),
        ("client.cert", env("DS_CLIENT_CERT")),
        ("client.key", env("DS_CLIENT_KEY")),
    ] {
        fs::copy(source, host_dir.join(name)).unwrap();
    }
    dir.join("certs.d").to_str().unwrap().to_string()
}

/// How many requests for `what` reached the plain-HTTP port.
fn on_plain(hostile: &Hostile, what: &str) -> usize {
    hostile
        .requests()
        .iter()
        .filter(|r| r.starts_with("plain") && r.contains(what))
        .count()
}

#[test]
fn no_login_goes_to_a_plain_http_token_service() {
    let hostile = Hostile::start();
    let ca = env("DS_TEST_CA");
    let image = format!("{}/http-realm:latest", hostile.tls);
    let args = [
        "--cacert",
        &ca,
        "--user",
        "someone",
        "--password",
        "hostile-secret-9",
        "-o",
        "out.tar",
        &image,
    ];
    let out = refused(&args, "plain http://");
    assert_eq!(out.code, 4, "{out}");
    assert!(!out.stderr.contains("hostile-secret-9"), "{out}");
    assert_eq!(on_plain(&hostile, "/token"), 0, "{:?}", hostile.requests());
}

#[test]
fn https_is_not_redirected_to_plain_http() {
    let hostile = Hostile::start();
    let ca = env("DS_TEST_CA");
    let image = format!("{}/downgrade:latest", hostile.tls);
    let out = refused(
        &["--cacert", &ca, "--sha", &image],
        "redirects to plain HTTP",
    );
    assert_eq!(out.code, 3, "{out}");
    assert_eq!(
        on_plain(&hostile, "/manifests/"),
        0,
        "{:?}",
        hostile.requests()
    );
}

#[test]
fn a_hosts_certs_d_settings_do_not_follow_a_redirect_to_another_host() {
    let hostile = Hostile::start();
    let ca = env("DS_TEST_CA");
    let image = format!("{}/cross-host:latest", hostile.tls);
    let dir = Scratch::new("cross-host");
    let certs = certs_d(dir.path(), &hostile.tls);
    // A blob redirected to another host: the first host's certs.d CA does not go with it...
    let out = refused(&["--certs-d", &certs, "-o", "out.tar", &image], "localhost");
    assert_eq!(out.code, 3, "{out}");
    assert!(out.stderr.contains("TLS failed"), "{out}");
    // ...and when the other host is trusted on its own, it is not shown the client certificate.
    let (out, _) = bounded(&[
        "--certs-d",
        &certs,
        "--cacert",
        &ca,
        "-o",
        "out.tar",
        &image,
    ]);
    assert_eq!(out.code, 0, "{out}");
    let requests = hostile.requests();
    let cdn: Vec<&String> = requests.iter().filter(|r| r.contains(" /cdn/")).collect();
    assert!(!cdn.is_empty(), "{requests:?}");
    assert!(cdn.iter().all(|r| r.starts_with("tls no ")), "{requests:?}");
    let own: Vec<&String> = requests
        .iter()
        .filter(|r| r.contains("/v2/cross-host/manifests/"))
        .collect();
    assert!(
        !own.is_empty() && own.iter().all(|r| r.starts_with("tls yes ")),
        "the registry's own host gets the certificate: {requests:?}"
    );
}
