//! Helpers for the integration tests: where the harness's servers are, running dockersave and
//! the Docker engine, scratch directories, and a small corrupting proxy.
//!
//! The servers come from `tests/run.sh`; a test run without them fails loudly instead of skipping.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// A value the harness exports, e.g. `DS_REGISTRY`.
pub fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the integration tests through tests/run.sh, which starts the registries and the Docker engine")
    })
}

pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

impl std::fmt::Display for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

pub fn run(program: &str, args: &[&str], cwd: &Path, stdin: Option<&str>) -> Output {
    run_env(program, args, cwd, stdin, &[])
}

/// The variables through which the machine's environment could change what dockersave does;
/// tests start from none of them and set what they test.
const ISOLATED: [&str; 12] = [
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "ALL_PROXY",
    "all_proxy",
    "NO_PROXY",
    "no_proxy",
    "SSL_CERT_FILE",
    "DOCKER_CONFIG",
    "DOCKERSAVE_MIRRORS",
    "DOCKERSAVE_CERTS_D",
];

pub fn run_env(
    program: &str,
    args: &[&str],
    cwd: &Path,
    stdin: Option<&str>,
    envs: &[(&str, &str)],
) -> Output {
    let mut command = Command::new(program);
    // Every program the tests run (dockersave by any name, under qemu, through a shell, and
    // the tools beside it): no proxy of this machine's, no stored Docker credentials and no
    // mirrors of this machine's Docker, unless a test provides them.
    for name in ISOLATED {
        command.env_remove(name);
    }
    command.env("DOCKER_CONFIG", "/nonexistent/dockersave-tests");
    command.env("DOCKERSAVE_DAEMON_JSON", "/nonexistent/dockersave-tests");
    command.envs(envs.iter().copied());
    let mut child = command
        .args(args)
        .current_dir(cwd)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

pub fn dockersave(cwd: &Path, args: &[&str]) -> Output {
    run(env!("CARGO_BIN_EXE_dockersave"), args, cwd, None)
}

/// Runs dockersave with extra environment variables and optional standard input.
pub fn dockersave_env(
    cwd: &Path,
    args: &[&str],
    envs: &[(&str, &str)],
    stdin: Option<&str>,
) -> Output {
    run_env(env!("CARGO_BIN_EXE_dockersave"), args, cwd, stdin, envs)
}

/// An image of the harness's plain registry: `DS_REGISTRY/name`.
pub fn fixture(name: &str) -> String {
    format!("{}/{name}", env("DS_REGISTRY"))
}

/// Runs dockersave with `--insecure` (the plain registry) and insists it succeeded.
pub fn pull_insecure(dir: &Path, args: &[&str]) -> Output {
    let mut all = vec!["--insecure"];
    all.extend_from_slice(args);
    dockersave_ok(dir, &all)
}

/// Runs dockersave and insists it succeeded.
pub fn dockersave_ok(cwd: &Path, args: &[&str]) -> Output {
    let out = dockersave(cwd, args);
    assert_eq!(out.code, 0, "dockersave {args:?} failed:\n{out}");
    out
}

/// Tests of one binary that load images into the one Docker engine, perhaps under the same
/// names, take turns: hold this from the load to the last `docker run` of what was loaded.
pub fn engine() -> std::sync::MutexGuard<'static, ()> {
    static ENGINE: Mutex<()> = Mutex::new(());
    ENGINE.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs the docker client against the harness's engine and insists it succeeded.
pub fn docker(args: &[&str]) -> String {
    env("DOCKER_HOST");
    let out = run("docker", args, Path::new("/"), None);
    assert_eq!(out.code, 0, "docker {args:?} failed:\n{out}");
    out.stdout
}

/// `docker load`s an archive, checks the name it was loaded under and that the loaded image's
/// ID is the config digest; returns that ID.
pub fn load(archive: &Path, expected_tag: Option<&str>, config_digest: &str) -> String {
    let out = docker(&["load", "-i", archive.to_str().unwrap()]);
    let id = match expected_tag {
        Some(tag) => {
            assert!(
                out.contains(&format!("Loaded image: {tag}")),
                "docker load said: {out}"
            );
            docker(&["image", "inspect", "--format", "{{.Id}}", tag])
                .trim()
                .to_string()
        }
        None => {
            let id = out
                .lines()
                .find_map(|l| l.strip_prefix("Loaded image ID: "))
                .unwrap_or_else(|| panic!("docker load named no image ID: {out}"));
            id.trim().to_string()
        }
    };
    assert_eq!(
        id, config_digest,
        "the loaded image ID must be the config digest"
    );
    id
}

/// Runs a command in a container of `image` with no network and returns its output.
pub fn docker_run(image: &str, command: &[&str]) -> String {
    let mut args = vec!["run", "--rm", "--network", "none", image];
    args.extend_from_slice(command);
    docker(&args)
}

/// A Docker engine the harness runs: Debian 12's Docker 20.10 (the graph driver store, the
/// legacy loader), or Debian 13's Docker 26 with either image store — the graph driver store,
/// or the containerd image store that Docker makes the default from version 29.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    Docker20,
    Docker26,
    Docker26Containerd,
}

impl Engine {
    pub const ALL: [Engine; 3] = [
        Engine::Docker20,
        Engine::Docker26,
        Engine::Docker26Containerd,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Engine::Docker20 => "Docker 20.10",
            Engine::Docker26 => "Docker 26 (graph driver store)",
            Engine::Docker26Containerd => "Docker 26 (containerd store)",
        }
    }

    /// Whether images are containerd's: an image's ID is then its manifest's (or index's)
    /// digest, not its config's.
    pub fn containerd_store(self) -> bool {
        self == Engine::Docker26Containerd
    }

    /// The engine's own client (Docker 26's from its package) and its socket.
    pub fn client_and_host(self) -> (String, String) {
        match self {
            Engine::Docker20 => ("docker".into(), env("DOCKER_HOST")),
            Engine::Docker26 | Engine::Docker26Containerd => {
                let client = format!("{}/usr/bin/docker", env("DS_DOCKER26"));
                let host = match self {
                    Engine::Docker26 => env("DS_DOCKER26_HOST"),
                    _ => env("DS_DOCKER26C_HOST"),
                };
                (client, host)
            }
        }
    }

    /// Runs the engine's client, with standard input from a file if given.
    pub fn try_docker(self, args: &[&str], stdin: Option<&Path>) -> Output {
        let (client, host) = self.client_and_host();
        let mut command = Command::new(&client);
        command
            .args(["-H", &host])
            .args(args)
            .env_remove("DOCKER_HOST");
        if let Some(file) = stdin {
            command.stdin(std::fs::File::open(file).unwrap());
        }
        let out = command
            .output()
            .unwrap_or_else(|e| panic!("{client} (from the harness) did not run: {e}"));
        Output {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Runs the engine's client and insists it succeeded.
    pub fn docker(self, args: &[&str]) -> String {
        let out = self.try_docker(args, None);
        assert_eq!(
            out.code,
            0,
            "{}: docker {args:?} failed:\n{out}",
            self.name()
        );
        out.stdout
    }

    /// The ID the engine gives an image.
    pub fn image_id(self, image: &str) -> String {
        self.docker(&["image", "inspect", "--format", "{{.Id}}", image])
            .trim()
            .to_string()
    }

    /// Runs a command in a container of `image` with no network and returns its output.
    pub fn run(self, image: &str, command: &[&str]) -> String {
        let mut args = vec!["run", "--rm", "--network", "none", image];
        args.extend_from_slice(command);
        self.docker(&args)
    }
}

/// The names in a tar archive, in order, as GNU tar lists them.
pub fn tar_names(archive: &Path) -> Vec<String> {
    let out = run(
        "tar",
        &["-tf", archive.to_str().unwrap()],
        Path::new("/"),
        None,
    );
    assert_eq!(out.code, 0, "tar -t {}: {out}", archive.display());
    out.stdout.lines().map(str::to_string).collect()
}

/// A file of a tar archive, as GNU tar reads it.
pub fn tar_file(archive: &Path, name: &str) -> String {
    let out = run(
        "tar",
        &["-xOf", archive.to_str().unwrap(), name],
        Path::new("/"),
        None,
    );
    assert_eq!(out.code, 0, "{name} of {}: {out}", archive.display());
    out.stdout
}

/// The config digest of an image (for a platform of an index), computed here from the config
/// bytes that skopeo, an independent client, fetches: the test does not take dockersave's word.
pub fn config_digest(image: &str, platform_args: &[&str]) -> String {
    use sha2::Digest as _;
    let mut args = vec!["inspect", "--config", "--raw", "--tls-verify=false"];
    args.extend_from_slice(platform_args);
    let reference = format!("docker://{image}");
    args.push(&reference);
    let raw = run("skopeo", &args, Path::new("/"), None);
    assert_eq!(raw.code, 0, "skopeo inspect failed: {raw}");
    let sum = sha2::Sha256::digest(raw.stdout.as_bytes());
    let hex: String = sum.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// The layer digests (`sha256:…`) of an image, bottom first, from skopeo (not from dockersave).
pub fn layer_digests(image: &str) -> Vec<String> {
    let out = run(
        "skopeo",
        &[
            "inspect",
            "--tls-verify=false",
            "--format",
            "{{range .Layers}}{{.}} {{end}}",
            &format!("docker://{image}"),
        ],
        Path::new("/"),
        None,
    );
    assert_eq!(out.code, 0, "{out}");
    out.stdout.split_whitespace().map(str::to_string).collect()
}

/// The diff IDs of an image, from the config skopeo fetches (an independent client).
pub fn diff_ids(reference: &str) -> Vec<String> {
    let out = run(
        "skopeo",
        &[
            "inspect",
            "--tls-verify=false",
            "--config",
            &format!("docker://{reference}"),
        ],
        Path::new("/"),
        None,
    );
    assert_eq!(out.code, 0, "skopeo inspect --config {reference}: {out}");
    let rootfs = out.stdout.split("\"diff_ids\"").nth(1).expect("diff_ids");
    let list = &rootfs[rootfs.find('[').unwrap() + 1..rootfs.find(']').unwrap()];
    list.split(',')
        .map(|d| d.trim().trim_matches('"').to_string())
        .collect()
}

/// The manifest digest of a tag, from skopeo.
pub fn manifest_digest(image: &str) -> String {
    let reference = format!("docker://{image}");
    let out = run(
        "skopeo",
        &[
            "inspect",
            "--tls-verify=false",
            "--format",
            "{{.Digest}}",
            &reference,
        ],
        Path::new("/"),
        None,
    );
    assert_eq!(out.code, 0, "skopeo inspect failed: {out}");
    out.stdout.trim().to_string()
}

/// A scratch directory removed when dropped.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        static COUNT: AtomicUsize = AtomicUsize::new(0);
        let n = COUNT.fetch_add(1, Ordering::SeqCst);
        let dir =
            std::env::temp_dir().join(format!("dockersave-it-{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// The names in the directory, sorted, hidden ones included.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // GNU rm, not std's remove_dir_all: a hostile image can leave a tree deep enough to
        // overflow a recursive walk's stack.
        let _ = Command::new("rm").arg("-rf").arg(&self.0).status();
    }
}

/// What a `forwarder` does to the traffic it passes to the registry. The one-shot faults
/// (`fail_first`, `cut_blobs_after`, `stall_blobs_after`, `truncate_blobs_to`) apply to the
/// first `times` requests they concern.
#[derive(Clone, Default)]
pub struct Faults {
    /// Flip one byte in the middle of every blob body larger than 1 KiB (layers, not configs).
    pub flip_blobs: bool,
    /// Answer blob requests with a 307 to this `http://host:port` (which serves `/v2/...` too).
    pub redirect_blobs_to: Option<String>,
    /// Answer manifest requests with this status and a registry error body.
    pub manifest_status: Option<u16>,
    /// Answer any request with this status (and `Retry-After` seconds, if given).
    pub fail_first: Option<(u16, Option<u32>)>,
    /// Send this many bytes of a blob body over 1 KiB, then close the connection.
    pub cut_blobs_after: Option<usize>,
    /// Send this many bytes of a blob body over 1 KiB, then stall for 30 s.
    pub stall_blobs_after: Option<usize>,
    /// Send only this many bytes of a blob body over 1 KiB, with a matching Content-Length.
    pub truncate_blobs_to: Option<usize>,
    /// Do not pass `Range` on: the registry answers 200 with the whole blob.
    pub ignore_range: bool,
    /// Read this many bytes of an upload's (PATCH) body, then close the connection unanswered.
    pub cut_uploads_after: Option<usize>,
    /// Serve tag lists in pages of this many, with `Link: <…>; rel="next"` as the distribution
    /// spec describes (Debian's registry 2.8 ignores `n` and sends every tag at once).
    pub page_tags: Option<usize>,
    /// Headers added to every answer (Docker Hub's rate-limit headers, say).
    pub answer_headers: Vec<(&'static str, &'static str)>,
    pub times: Arc<AtomicUsize>,
    /// Every request seen: "GET /v2/... range=bytes=N-" (or "range=-").
    pub log: Arc<Mutex<Vec<String>>>,
    /// Every request's headers, names lower-cased.
    pub headers: Arc<Mutex<Vec<Headers>>>,
}

impl Faults {
    pub fn once() -> Faults {
        Faults::times(1)
    }

    pub fn times(n: usize) -> Faults {
        Faults {
            times: Arc::new(AtomicUsize::new(n)),
            ..Faults::default()
        }
    }

    /// Takes one use of the one-shot faults; false once they are used up.
    fn take(&self) -> bool {
        self.times
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }

    pub fn requests(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    pub fn blob_requests(&self) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.contains("/blobs/"))
            .count()
    }
}

/// An HTTP server on a loopback port that forwards requests (with their `Accept`,
/// `Authorization` and `Range`) to the registry at `upstream`, applying `faults`. Returns its
/// `host:port`.
pub fn forwarder(upstream: &str, faults: Faults) -> String {
    let upstream = upstream.to_string();
    serve(move |request, stream| forward(request, stream, &upstream, &faults))
}

/// A TCP tunnel on a loopback port to `upstream` that counts the connections made through it.
/// Returns its `host:port` and the count.
pub fn counting_tunnel(upstream: &str) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let count = Arc::new(AtomicUsize::new(0));
    let counted = count.clone();
    let upstream = upstream.to_string();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            counted.fetch_add(1, Ordering::SeqCst);
            let Ok(server) = TcpStream::connect(&upstream) else {
                continue;
            };
            for (mut from, mut to) in [
                (client.try_clone().unwrap(), server.try_clone().unwrap()),
                (server, client),
            ] {
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut from, &mut to);
                    let _ = to.shutdown(std::net::Shutdown::Write);
                });
            }
        }
    });
    (addr, count)
}

/// A request's headers, names lower-cased.
pub type Headers = Vec<(String, String)>;

/// A blob server standing in for a CDN: it serves `/v2/...` from the registry at `upstream`
/// and records every request's headers (lower-cased names) in the returned log.
pub fn recording_server(upstream: &str) -> (String, Arc<Mutex<Vec<Headers>>>) {
    let log = Arc::new(Mutex::new(Vec::new()));
    let seen = log.clone();
    let upstream = upstream.to_string();
    let addr = serve(move |request, stream| {
        seen.lock().unwrap().push(request.headers.clone());
        let plain = Request {
            headers: Vec::new(),
            body_start: Vec::new(),
            ..request
        };
        forward(plain, stream, &upstream, &Faults::default())
    });
    (addr, log)
}

/// A forward proxy for CONNECT tunnels, logging `CONNECT host:port user=NAME|-` per tunnel. With
/// `credentials` it demands `Proxy-Authorization` (407 otherwise). Names ending in
/// `.dockersave.test` resolve to 127.0.0.1, so tests can use a non-loopback name.
pub fn connect_proxy(credentials: Option<(&str, &str)>) -> (String, Arc<Mutex<Vec<String>>>) {
    let log = Arc::new(Mutex::new(Vec::new()));
    let seen = log.clone();
    let expected = credentials.map(|(u, p)| (u.to_string(), p.to_string()));
    let addr = serve(move |request, mut stream| {
        let user = request
            .header("proxy-authorization")
            .and_then(|v| v.strip_prefix("Basic "))
            .and_then(decode_basic);
        let user_name = user.as_ref().map_or("-".to_string(), |(u, _)| u.clone());
        seen.lock().unwrap().push(format!(
            "{} {} user={user_name}",
            request.method, request.target
        ));
        if request.method != "CONNECT" {
            return stream.write_all(b"HTTP/1.1 501 Only CONNECT\r\nContent-Length: 0\r\n\r\n");
        }
        if expected.is_some() && user != expected {
            return stream.write_all(b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"t\"\r\nContent-Length: 0\r\n\r\n");
        }
        let target = match request.target.rsplit_once(':') {
            Some((name, port)) if name.ends_with(".dockersave.test") => format!("127.0.0.1:{port}"),
            _ => request.target.clone(),
        };
        let upstream = TcpStream::connect(&target)?;
        stream.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")?;
        let (mut a, mut b) = (stream.try_clone()?, upstream.try_clone()?);
        let pump = std::thread::spawn(move || {
            let _ = std::io::copy(&mut a, &mut b);
            let _ = b.shutdown(std::net::Shutdown::Write);
        });
        let (mut up, mut down) = (upstream, stream);
        let _ = std::io::copy(&mut up, &mut down);
        let _ = down.shutdown(std::net::Shutdown::Write);
        let _ = pump.join();
        Ok(())
    });
    (addr, log)
}

fn decode_basic(b64: &str) -> Option<(String, String)> {
    let out = run("base64", &["-d"], Path::new("/"), Some(b64));
    let text = out.stdout;
    let (u, p) = text.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

/// One parsed request head.
pub struct Request {
    pub method: String,
    pub target: String,
    pub headers: Headers,
    /// What the head's reader had buffered past the head: the body's first bytes.
    pub body_start: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Accepts connections on a loopback port, one thread each, handing each request head to
/// `handle` (one request per connection: answers say `Connection: close`). Returns its
/// `host:port`.
pub fn serve(
    handle: impl Fn(Request, TcpStream) -> std::io::Result<()> + Send + Sync + 'static,
) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let handle = Arc::new(handle);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let handle = handle.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    return;
                }
                let mut parts = line.split_whitespace();
                let method = parts.next().unwrap_or("").to_string();
                let target = parts.next().unwrap_or("/").to_string();
                let mut headers = Vec::new();
                loop {
                    let mut header = String::new();
                    if reader.read_line(&mut header).unwrap_or(0) == 0 || header == "\r\n" {
                        break;
                    }
                    if let Some((name, value)) = header.trim_end().split_once(':') {
                        headers.push((name.to_ascii_lowercase(), value.trim().to_string()));
                    }
                }
                let body_start = reader.buffer().to_vec();
                let _ = handle(
                    Request {
                        method,
                        target,
                        headers,
                        body_start,
                    },
                    stream,
                );
            });
        }
    });
    addr
}

/// One page of a tag list: the tags after `last=` in the query, at most `n`, and a `Link` to
/// the next page when more remain.
fn page_tags(
    agent: &ureq::Agent,
    upstream: &str,
    target: &str,
    query: &str,
    n: usize,
    request: &Request,
    mut stream: TcpStream,
) -> std::io::Result<()> {
    let mut upstream_request = agent.get(&format!("http://{upstream}{target}"));
    if let Some(value) = request.header("authorization") {
        upstream_request = upstream_request.header("authorization", value);
    }
    let mut response = upstream_request.call().map_err(std::io::Error::other)?;
    let mut body = String::new();
    response.body_mut().as_reader().read_to_string(&mut body)?;
    let tags_at = body.find("\"tags\":[").map(|i| i + 8).unwrap_or(body.len());
    let list = &body[tags_at
        ..body[tags_at..]
            .find(']')
            .map_or(body.len(), |e| tags_at + e)];
    let mut tags: Vec<String> = list
        .split(',')
        .map(|t| t.trim().trim_matches('"').to_string())
        .filter(|t| !t.is_empty())
        .collect();
    tags.sort();
    let last = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("last="))
        .unwrap_or("");
    let rest: Vec<&String> = tags.iter().filter(|t| t.as_str() > last).collect();
    let page: Vec<String> = rest.iter().take(n).map(|t| format!("\"{t}\"")).collect();
    let mut head = format!(
        "HTTP/1.1 {} X\r\nConnection: close\r\nContent-Type: application/json\r\n",
        response.status().as_u16()
    );
    if rest.len() > n {
        let next = rest[n - 1];
        head.push_str(&format!(
            "Link: <{target}?n={n}&last={next}>; rel=\"next\"\r\n"
        ));
    }
    let json = format!("{{\"name\":\"x\",\"tags\":[{}]}}", page.join(","));
    head.push_str(&format!("Content-Length: {}\r\n\r\n", json.len()));
    stream.write_all(head.as_bytes())?;
    stream.write_all(json.as_bytes())
}

fn forward(
    request: Request,
    mut stream: TcpStream,
    upstream: &str,
    faults: &Faults,
) -> std::io::Result<()> {
    let path = request.target.clone();
    let blob = path.contains("/blobs/");
    faults.headers.lock().unwrap().push(request.headers.clone());
    let added: String = faults
        .answer_headers
        .iter()
        .map(|(name, value)| format!("{name}: {value}\r\n"))
        .collect();
    faults.log.lock().unwrap().push(format!(
        "{} {path} range={}",
        request.method,
        request.header("range").unwrap_or("-")
    ));
    if let Some((status, retry_after)) = faults.fail_first {
        if faults.take() {
            let extra = retry_after
                .map(|s| format!("Retry-After: {s}\r\n"))
                .unwrap_or_default();
            let head = format!(
                "HTTP/1.1 {status} X\r\n{extra}{added}Content-Length: 0\r\nConnection: close\r\n\r\n"
            );
            return stream.write_all(head.as_bytes());
        }
    }
    if let (Some(cdn), true) = (&faults.redirect_blobs_to, blob) {
        let head = format!("HTTP/1.1 307 Temporary Redirect\r\nLocation: http://{cdn}{path}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        return stream.write_all(head.as_bytes());
    }
    if let (Some(status), true) = (faults.manifest_status, path.contains("/manifests/")) {
        let body = r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"You have reached your pull rate limit."}]}"#;
        let head = format!("HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
        stream.write_all(head.as_bytes())?;
        return stream.write_all(body.as_bytes());
    }
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .proxy(None)
        .build()
        .new_agent();
    if request.method != "GET" {
        return forward_upload(&agent, request, stream, upstream, faults);
    }
    let (target, query) = path.split_once('?').unwrap_or((&path, ""));
    if let (Some(n), true) = (faults.page_tags, target.ends_with("/tags/list")) {
        return page_tags(&agent, upstream, target, query, n, &request, stream);
    }
    let mut upstream_request = agent.get(&format!("http://{upstream}{path}"));
    for name in ["accept", "authorization", "range"] {
        if name == "range" && faults.ignore_range {
            continue;
        }
        if let Some(value) = request.header(name) {
            upstream_request = upstream_request.header(name, value);
        }
    }
    let mut response = upstream_request.call().map_err(std::io::Error::other)?;
    let status = response.status().as_u16();
    let mut head = format!("HTTP/1.1 {status} X\r\nConnection: close\r\n{added}");
    for name in [
        "content-type",
        "docker-content-digest",
        "www-authenticate",
        "content-range",
        "link",
    ] {
        if let Some(value) = response.headers().get(name).and_then(|v| v.to_str().ok()) {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    let mut body = Vec::new();
    response.body_mut().as_reader().read_to_end(&mut body)?;
    let big_blob = blob && body.len() > 1024;
    if faults.flip_blobs && big_blob {
        let middle = body.len() / 2;
        body[middle] ^= 0x40;
    }
    if let (Some(n), true) = (faults.truncate_blobs_to, big_blob) {
        if faults.take() {
            body.truncate(n);
        }
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    stream.write_all(head.as_bytes())?;
    for (cut, stall) in [
        (faults.cut_blobs_after, false),
        (faults.stall_blobs_after, true),
    ] {
        if let (Some(n), true) = (cut, big_blob) {
            if faults.take() {
                stream.write_all(&body[..n.min(body.len())])?;
                stream.flush()?;
                if stall {
                    std::thread::sleep(std::time::Duration::from_secs(30));
                }
                return stream.shutdown(std::net::Shutdown::Both);
            }
        }
    }
    stream.write_all(&body)
}

/// Forwards a push request (HEAD, POST, PATCH, PUT, DELETE) with its body, whole or chunked;
/// an absolute `Location` naming the registry is turned to this forwarder, so the upload comes
/// back through it. `cut_uploads_after` breaks a PATCH mid-body.
fn forward_upload(
    agent: &ureq::Agent,
    request: Request,
    mut stream: TcpStream,
    upstream: &str,
    faults: &Faults,
) -> std::io::Result<()> {
    let mut body_in = std::io::Read::chain(
        std::io::Cursor::new(request.body_start.clone()),
        stream.try_clone()?,
    );
    let mut body = Vec::new();
    if let Some(length) = request.header("content-length") {
        let length: u64 = length.parse().unwrap_or(0);
        (&mut body_in).take(length).read_to_end(&mut body)?;
    } else if request.header("transfer-encoding") == Some("chunked") {
        let mut chunked = BufReader::new(body_in);
        loop {
            let mut line = String::new();
            chunked.read_line(&mut line)?;
            let size = usize::from_str_radix(line.trim(), 16).unwrap_or(0);
            if let (Some(cut), true) = (faults.cut_uploads_after, request.method == "PATCH") {
                if body.len() + size > cut && faults.take() {
                    return stream.shutdown(std::net::Shutdown::Both);
                }
            }
            let mut chunk = vec![0; size + 2];
            chunked.read_exact(&mut chunk)?;
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    }
    let mut builder = ureq::http::Request::builder()
        .method(request.method.as_str())
        .uri(format!("http://{upstream}{}", request.target));
    for name in ["authorization", "content-type", "content-range"] {
        if let Some(value) = request.header(name) {
            builder = builder.header(name, value);
        }
    }
    let head_only = request.method == "HEAD";
    let response = if body.is_empty() {
        agent.run(builder.body(()).unwrap())
    } else {
        agent.run(builder.body(&body[..]).unwrap())
    };
    let mut response = response.map_err(std::io::Error::other)?;
    let status = response.status().as_u16();
    let mut head = format!("HTTP/1.1 {status} X\r\nConnection: close\r\n");
    let front = request.header("host").unwrap_or(upstream).to_string();
    for name in [
        "content-type",
        "docker-content-digest",
        "docker-upload-uuid",
        "www-authenticate",
        "location",
        "range",
    ] {
        if let Some(value) = response.headers().get(name).and_then(|v| v.to_str().ok()) {
            let value = value.replace(&format!("http://{upstream}"), &format!("http://{front}"));
            head.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    let mut answer = Vec::new();
    if head_only {
        let length = response
            .headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("0")
            .to_string();
        head.push_str(&format!("Content-Length: {length}\r\n\r\n"));
    } else {
        response.body_mut().as_reader().read_to_end(&mut answer)?;
        head.push_str(&format!("Content-Length: {}\r\n\r\n", answer.len()));
    }
    stream.write_all(head.as_bytes())?;
    stream.write_all(&answer)
}

/// Builds the test image `builder` of `tests/harness/images.py` (aimed at `canary`, for the
/// hostile ones), pushes it with skopeo to the plain registry as `repository:latest` and
/// returns `REGISTRY/repository`.
pub fn push_built_image(builder: &str, repository: &str, canary: Option<&Path>) -> String {
    let layout = Scratch::new("layout");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/harness/images.py");
    let layout_dir = layout.path().join("oci");
    let mut args = vec![script, builder, layout_dir.to_str().unwrap()];
    let canary = canary.map(|c| c.to_str().unwrap().to_string());
    if let Some(canary) = &canary {
        args.push(canary);
    }
    let built = run("python3", &args, Path::new("/"), None);
    assert_eq!(built.code, 0, "images.py {builder} failed:\n{built}");
    let reference = format!("{}/{repository}", env("DS_REGISTRY"));
    let source = format!("oci:{}:{builder}", layout_dir.display());
    let destination = format!("docker://{reference}:latest");
    let pushed = run(
        "skopeo",
        &[
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            &source,
            &destination,
        ],
        Path::new("/"),
        None,
    );
    assert_eq!(pushed.code, 0, "skopeo copy failed:\n{pushed}");
    reference
}

/// One path of a tree, as the comparisons see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// `-` file, `d` directory, `l` symlink, `c`/`b` device, `p` FIFO.
    pub kind: char,
    /// Permission bits with setuid, setgid and sticky.
    pub mode: u32,
    pub owner: (u32, u32),
    pub link: Option<String>,
    pub xattrs: std::collections::BTreeMap<String, Vec<u8>>,
    pub sha256: Option<String>,
    pub rdev: u64,
    /// (device, inode): which paths are hard links of each other.
    pub inode: (u64, u64),
}

/// Every path below `dir` (not `dir` itself), lstat'ed: symlinks are not followed.
pub fn snapshot(dir: &Path) -> std::collections::BTreeMap<String, Node> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let mut out = std::collections::BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(current) = todo.pop() {
        for entry in std::fs::read_dir(&current).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let kind = meta.file_type();
            let kind = if kind.is_dir() {
                todo.push(path.clone());
                'd'
            } else if kind.is_symlink() {
                'l'
            } else if kind.is_char_device() {
                'c'
            } else if kind.is_block_device() {
                'b'
            } else if kind.is_fifo() {
                'p'
            } else {
                '-'
            };
            let sha256 = (kind == '-').then(|| content_digest(&path));
            let link =
                (kind == 'l').then(|| std::fs::read_link(&path).unwrap().display().to_string());
            let rel = path.strip_prefix(dir).unwrap().display().to_string();
            out.insert(
                rel,
                Node {
                    kind,
                    mode: meta.mode() & 0o7777,
                    owner: (meta.uid(), meta.gid()),
                    link,
                    xattrs: xattrs(&path),
                    sha256,
                    rdev: meta.rdev(),
                    inode: (meta.dev(), meta.ino()),
                },
            );
        }
    }
    out
}

fn xattrs(path: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    let cpath = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    let mut names = vec![0u8; 4096];
    let n = unsafe { libc::llistxattr(cpath.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    assert!(n >= 0, "llistxattr {}", path.display());
    let mut out = std::collections::BTreeMap::new();
    for name in names[..n as usize]
        .split(|&b| b == 0)
        .filter(|n| !n.is_empty())
    {
        let cname = std::ffi::CString::new(name).unwrap();
        let mut value = vec![0u8; 4096];
        let len = unsafe {
            libc::lgetxattr(
                cpath.as_ptr(),
                cname.as_ptr(),
                value.as_mut_ptr().cast(),
                value.len(),
            )
        };
        assert!(len >= 0, "lgetxattr {}", path.display());
        value.truncate(len as usize);
        out.insert(String::from_utf8_lossy(name).into_owned(), value);
    }
    out
}

/// A file's content as a digest that does not depend on how it is stored: its size, and every
/// 4 KiB block that is not all zeros with its index. Holes are found with SEEK_DATA and never
/// read, so a sparse file of 60 GB costs its data, and one with written zeros in place of holes
/// digests the same.
pub fn content_digest(path: &Path) -> String {
    use sha2::Digest as _;
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::FileExt;
    const BLOCK: u64 = 4096;
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let size = file.metadata().unwrap().len();
    let mut hasher = sha2::Sha256::new();
    let mut block = vec![0u8; BLOCK as usize];
    let mut at: u64 = 0;
    while at < size {
        let data = unsafe { libc::lseek(file.as_raw_fd(), at as libc::off_t, libc::SEEK_DATA) };
        if data < 0 {
            break; // ENXIO: only a hole is left
        }
        let hole = unsafe { libc::lseek(file.as_raw_fd(), data, libc::SEEK_HOLE) } as u64;
        let mut offset = data as u64 / BLOCK * BLOCK;
        while offset < hole.min(size) {
            let n = (size - offset).min(BLOCK) as usize;
            file.read_exact_at(&mut block[..n], offset).unwrap();
            if block[..n].iter().any(|&b| b != 0) {
                hasher.update((offset / BLOCK).to_le_bytes());
                hasher.update(&block[..n]);
            }
            offset += BLOCK;
        }
        at = hole.max(offset);
    }
    hasher.update(size.to_le_bytes());
    format!("{:x}", hasher.finalize())
}

/// What `compare` looks at.
#[derive(Clone, Copy)]
pub struct Compare {
    pub owners: bool,
    /// Whether hard links must be hard links in both trees (the same paths share an inode).
    pub hard_links: bool,
}

/// The differences between two snapshots, one line each; empty when they agree on the set of
/// paths and, for each, its type, mode, (owner), link target, xattrs, content and device.
pub fn compare(
    ours: &std::collections::BTreeMap<String, Node>,
    theirs: &std::collections::BTreeMap<String, Node>,
    how: Compare,
) -> Vec<String> {
    let mut differences = Vec::new();
    for path in ours
        .keys()
        .chain(theirs.keys())
        .collect::<std::collections::BTreeSet<_>>()
    {
        match (ours.get(path), theirs.get(path)) {
            (Some(a), Some(b)) => {
                let mut a = a.clone();
                let mut b = b.clone();
                if !how.owners {
                    a.owner = (0, 0);
                    b.owner = (0, 0);
                }
                (a.inode, b.inode) = ((0, 0), (0, 0));
                if a != b {
                    differences.push(format!("{path}: ours {a:?}, theirs {b:?}"));
                }
            }
            (Some(_), None) => differences.push(format!("{path}: only in ours")),
            (None, Some(_)) => differences.push(format!("{path}: only in theirs")),
            (None, None) => unreachable!(),
        }
    }
    if how.hard_links {
        let groups = |tree: &std::collections::BTreeMap<String, Node>| {
            let mut by_inode: std::collections::BTreeMap<(u64, u64), Vec<String>> =
                Default::default();
            for (path, node) in tree {
                if node.kind == '-' {
                    by_inode.entry(node.inode).or_default().push(path.clone());
                }
            }
            let mut groups: Vec<Vec<String>> =
                by_inode.into_values().filter(|g| g.len() > 1).collect();
            groups.sort();
            groups
        };
        let (a, b) = (groups(ours), groups(theirs));
        if a != b {
            differences.push(format!("hard links: ours {a:?}, theirs {b:?}"));
        }
    }
    differences
}

/// Runs a program as the unprivileged user `nobody` (setpriv, from util-linux). dockersave
/// itself runs from a copy in the temporary directory: the checkout may sit where `nobody`
/// cannot reach (CI clones under /root).
pub fn run_as_nobody(program: &str, args: &[&str], cwd: &Path, envs: &[(&str, &str)]) -> Output {
    let program = if program == env!("CARGO_BIN_EXE_dockersave") {
        nobody_dockersave()
    } else {
        program
    };
    let mut all = vec![
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--",
        program,
    ];
    all.extend_from_slice(args);
    run_env("setpriv", &all, cwd, None, envs)
}

/// A copy of dockersave that `nobody` can run.
pub fn nobody_dockersave() -> &'static str {
    static COPY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    COPY.get_or_init(|| {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("dockersave-nobody-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let copy = dir.join("dockersave");
        std::fs::copy(env!("CARGO_BIN_EXE_dockersave"), &copy).unwrap();
        std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
        copy.display().to_string()
    })
}

/// Sets a path's access and modification times (following a symlink), for canaries.
pub fn set_times(path: &Path, seconds: i64) {
    let time = libc::timespec {
        tv_sec: seconds,
        tv_nsec: 0,
    };
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    assert_eq!(
        unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), [time, time].as_ptr(), 0) },
        0
    );
}

/// Makes a directory the user `nobody` may write in.
pub fn give_to_nobody(dir: &Path) {
    let out = run(
        "chown",
        &["-R", "65534:65534", dir.to_str().unwrap()],
        Path::new("/"),
        None,
    );
    assert_eq!(out.code, 0, "{out}");
}

/// Runs a program (through `setpriv` as `nobody` when `as_nobody`) and returns what it printed
/// with its peak resident memory in KiB, and its wall time.
///
/// The peak comes from GNU time, which forks the program from its own small process. The
/// kernel carries a process's peak across `exec` (the `maxrss` of the memory it had before),
/// so a program spawned straight from this test process, whose memory it shares until the
/// `exec`, would be charged with the test process's peak: several MiB, more with other tests
/// running beside it.
pub fn run_measured(
    program: &str,
    args: &[&str],
    cwd: &Path,
    as_nobody: bool,
) -> (Output, u64, std::time::Duration) {
    let mut all: Vec<&str> = Vec::new();
    let program = if as_nobody {
        all.extend(["--reuid=65534", "--regid=65534", "--clear-groups", "--"]);
        all.push(if program == env!("CARGO_BIN_EXE_dockersave") {
            nobody_dockersave()
        } else {
            program
        });
        "setpriv"
    } else {
        program
    };
    all.extend_from_slice(args);
    static MEASURED: AtomicUsize = AtomicUsize::new(0);
    let n = MEASURED.fetch_add(1, Ordering::SeqCst);
    let peak_file =
        std::env::temp_dir().join(format!("dockersave-peak-{}-{n}", std::process::id()));
    let peak_path = peak_file.to_str().unwrap().to_string();
    let mut timed = vec!["-f", "%M", "-o", &peak_path, program];
    timed.extend_from_slice(&all);
    let mut command = Command::new("/usr/bin/time");
    for name in ISOLATED {
        command.env_remove(name);
    }
    command.env("DOCKER_CONFIG", "/nonexistent/dockersave-tests");
    command.env("DOCKERSAVE_DAEMON_JSON", "/nonexistent/dockersave-tests");
    let started = std::time::Instant::now();
    #[allow(clippy::zombie_processes)] // reaped by wait4 below, which std cannot do
    let mut child = command
        .args(&timed)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    let read = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = Vec::new();
            let _ = pipe.read_to_end(&mut text);
            String::from_utf8_lossy(&text).into_owned()
        })
    };
    let stdout = read(Box::new(child.stdout.take().unwrap()));
    let stderr = read(Box::new(child.stderr.take().unwrap()));
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = child.id() as libc::pid_t;
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(waited, pid, "wait4: {}", std::io::Error::last_os_error());
    let elapsed = started.elapsed();
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    };
    let out = Output {
        code,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    };
    // GNU time writes "Command exited with non-zero status N" before the figure when it did.
    let text = std::fs::read_to_string(&peak_file)
        .unwrap_or_else(|e| panic!("GNU time wrote no peak for {program}: {e}\n{out}"));
    let _ = std::fs::remove_file(&peak_file);
    let peak = text
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("GNU time's output for {program}: {text:?}"));
    (out, peak, elapsed)
}

/// Podman, rootful with the vfs driver, with its storage in `store` (a test's scratch
/// directory); insists it succeeded and returns what it printed.
pub fn podman(store: &Path, args: &[&str]) -> String {
    let (root, runroot) = (store.join("root"), store.join("run"));
    let mut all = vec![
        "--root",
        root.to_str().unwrap(),
        "--runroot",
        runroot.to_str().unwrap(),
        "--storage-driver",
        "vfs",
        "--events-backend",
        "file",
    ];
    all.extend_from_slice(args);
    let out = run("podman", &all, Path::new("/"), None);
    assert_eq!(out.code, 0, "podman {args:?}: {out}");
    out.stdout
}

/// The static x86_64 release binary: what users run, and what the memory figures are of (a
/// glibc build keeps freed windows in per-thread arenas, so its peak says little).
pub fn release_binary() -> String {
    dist_binary("x86_64-unknown-linux-musl")
}

/// The static release binary for `target` in `$DS_DIST` (build/release.sh).
pub fn dist_binary(target: &str) -> String {
    built("dockersave", target, "build/release.sh")
}

/// The minimal build for `target` (`build/release.sh --minimal=…`; tests/run.sh builds it for
/// x86_64 and ARMv5TE).
pub fn minimal_binary(target: &str) -> String {
    built("dockersave-minimal", target, "build/release.sh --minimal")
}

fn built(name: &str, target: &str, how: &str) -> String {
    let binary = format!(
        "{}/{name}-{}-{target}",
        env("DS_DIST"),
        env!("CARGO_PKG_VERSION")
    );
    assert!(
        Path::new(&binary).is_file(),
        "{binary} was not built: run {how} (tests/run.sh does)"
    );
    binary
}
