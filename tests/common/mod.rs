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
    let mut child = Command::new(program)
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

/// Runs dockersave and insists it succeeded.
pub fn dockersave_ok(cwd: &Path, args: &[&str]) -> Output {
    let out = dockersave(cwd, args);
    assert_eq!(out.code, 0, "dockersave {args:?} failed:\n{out}");
    out
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
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An HTTP server on a loopback port that forwards every request to the registry at `upstream`
/// and flips one byte in the middle of every blob body larger than 1 KiB (layers, not configs).
/// Returns its `host:port`.
pub fn corrupting_proxy(upstream: &str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let upstream = upstream.to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let upstream = upstream.clone();
            std::thread::spawn(move || {
                let _ = forward_corrupted(stream, &upstream);
            });
        }
    });
    addr
}

fn forward_corrupted(mut stream: TcpStream, upstream: &str) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let path = request_line
        .split_whitespace()
        .nth(1)
        .unwrap_or("/")
        .to_string();
    let mut forwarded = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.trim_end().split_once(':') {
            if name.eq_ignore_ascii_case("accept") || name.eq_ignore_ascii_case("authorization") {
                forwarded.push((name.to_string(), value.trim().to_string()));
            }
        }
    }
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .new_agent();
    let mut request = agent.get(&format!("http://{upstream}{path}"));
    for (name, value) in &forwarded {
        request = request.header(name.as_str(), value.as_str());
    }
    let mut response = request.call().map_err(std::io::Error::other)?;
    let status = response.status().as_u16();
    let mut head = format!("HTTP/1.1 {status} X\r\nConnection: close\r\n");
    for name in ["content-type", "docker-content-digest", "www-authenticate"] {
        if let Some(value) = response.headers().get(name).and_then(|v| v.to_str().ok()) {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    let mut body = Vec::new();
    response.body_mut().as_reader().read_to_end(&mut body)?;
    if path.contains("/blobs/") && body.len() > 1024 {
        let middle = body.len() / 2;
        body[middle] ^= 0x40;
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    stream.write_all(head.as_bytes())?;
    stream.write_all(&body)
}
