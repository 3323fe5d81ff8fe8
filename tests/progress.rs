//! Integration tests for what stderr shows: the live progress lines on a real pseudo-terminal
//! (tmux, and `script` for the raw bytes), plain lines without a terminal, `--quiet`, and
//! `--verbose` request lines that never carry a secret. Run through tests/run.sh.

mod common;

use common::*;
use std::path::Path;
use std::time::{Duration, Instant};

fn plain(image: &str) -> String {
    format!("{}/{image}", env("DS_REGISTRY"))
}

/// A tmux server of this test's own, stopped when dropped.
struct Tmux(String);

impl Tmux {
    /// Runs `command` in a detached session of `width` × `height` and waits until it printed
    /// `EXIT=`; returns the screen.
    fn run(name: &str, width: u32, height: u32, command: &str) -> (Tmux, String) {
        let tmux = Tmux(format!("dockersave-{name}-{}", std::process::id()));
        let out = run(
            "tmux",
            &[
                "-L",
                &tmux.0,
                "new-session",
                "-d",
                "-s",
                "s",
                "-x",
                &width.to_string(),
                "-y",
                &height.to_string(),
                &format!("{command}; echo EXIT=$?; sleep 60"),
            ],
            Path::new("/"),
            None,
        );
        assert_eq!(out.code, 0, "{out}");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let screen = tmux.screen();
            if screen.contains("EXIT=") {
                return (tmux, screen);
            }
            assert!(
                Instant::now() < deadline,
                "no EXIT= on the screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn screen(&self) -> String {
        let out = run(
            "tmux",
            &["-L", &self.0, "capture-pane", "-p", "-t", "s"],
            Path::new("/"),
            None,
        );
        assert_eq!(out.code, 0, "{out}");
        out.stdout
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = run(
            "tmux",
            &["-L", &self.0, "kill-server"],
            Path::new("/"),
            None,
        );
    }
}

/// The short (12 hex) layer digests of `image:latest`, as the progress lines show them.
fn short_layer_digests(image: &str) -> Vec<String> {
    layer_digests(&format!("{image}:latest"))
        .iter()
        .map(|d| d[7..19].to_string())
        .collect()
}

#[test]
fn a_terminal_gets_live_lines_and_a_final_screen_with_every_layer_done() {
    let dir = Scratch::new("progress-tty");
    let image = plain("layers");
    let command = format!(
        "cd {} && DOCKER_CONFIG=/nonexistent {} --insecure {image}",
        dir.path().display(),
        env!("CARGO_BIN_EXE_dockersave")
    );
    let (_tmux, screen) = Tmux::run("wide", 100, 30, &command);
    assert!(screen.contains("EXIT=0"), "{screen}");
    for short in short_layer_digests(&image) {
        let line = screen
            .lines()
            .find(|l| l.contains(&short))
            .unwrap_or_else(|| panic!("no line for layer {short}:\n{screen}"));
        assert!(line.contains(" done "), "{line}\n{screen}");
    }
    assert!(
        screen.lines().any(|l| l.trim_start().starts_with("total ")),
        "{screen}"
    );
    assert!(screen.contains("Saved "), "{screen}");
    // A narrow terminal: no line is longer than the screen is wide (it would wrap and break
    // the redraw), and the layers' lines are still there.
    let narrow_dir = Scratch::new("progress-narrow");
    let command = format!(
        "cd {} && DOCKER_CONFIG=/nonexistent {} --insecure {image}",
        narrow_dir.path().display(),
        env!("CARGO_BIN_EXE_dockersave")
    );
    let (_tmux, screen) = Tmux::run("narrow", 40, 30, &command);
    assert!(screen.contains("EXIT=0"), "{screen}");
    let live: Vec<&str> = screen
        .lines()
        .filter(|l| l.contains(" done ") || l.trim_start().starts_with("total "))
        .collect();
    assert_eq!(live.len(), 4, "three layers and the total:\n{screen}");
    for line in live {
        assert!(line.chars().count() < 40, "{line:?}");
    }
}

#[test]
fn the_raw_terminal_output_redraws_in_place() {
    // `script` gives the run a pseudo-terminal and records every byte it writes.
    let dir = Scratch::new("progress-script");
    let command = format!(
        "DOCKER_CONFIG=/nonexistent {} --insecure {}",
        env!("CARGO_BIN_EXE_dockersave"),
        plain("layers")
    );
    let out = run(
        "script",
        &["-q", "-e", "-c", &command, "/dev/null"],
        dir.path(),
        None,
    );
    assert_eq!(out.code, 0, "{out}");
    assert!(
        out.stdout.contains("\u{1b}[2K"),
        "lines are cleared and redrawn: {:?}",
        out.stdout
    );
    assert!(
        out.stdout.contains("\u{1b}[4A\r\u{1b}[2K"),
        "the cursor goes back up: {:?}",
        out.stdout
    );
}

#[test]
fn without_a_terminal_there_are_plain_lines_only() {
    let dir = Scratch::new("progress-plain");
    let out = dockersave_ok(dir.path(), &["--insecure", &plain("layers")]);
    assert!(
        !out.stderr.contains('\u{1b}'),
        "control sequences in a log: {:?}",
        out.stderr
    );
    assert_eq!(
        out.stderr.matches("  layer ").count(),
        3,
        "a line per layer: {out}"
    );
    assert!(out.stderr.contains("Saved "), "{out}");
    // --quiet: nothing but errors.
    let quiet = Scratch::new("progress-quiet");
    let out = dockersave_ok(quiet.path(), &["--insecure", "--quiet", &plain("layers")]);
    assert_eq!(out.stderr, "", "{out}");
    assert!(out.stdout.trim().ends_with("layers-latest.tar"), "{out}");
    let out = dockersave(quiet.path(), &["--insecure", "-q", &plain("nonexistent")]);
    assert_eq!(out.code, 5);
    assert!(out.stderr.starts_with("dockersave: error:"), "{out}");
}

#[test]
fn verbose_lists_requests_and_never_a_secret() {
    let dir = Scratch::new("progress-verbose");
    let image = format!("{}/layers", env("DS_TOKEN_REGISTRY"));
    let out = dockersave_env(
        dir.path(),
        &[
            "--insecure",
            "--verbose",
            "--user",
            "tokenuser",
            "--password-stdin",
            &image,
        ],
        &[],
        Some("token-secret-42"),
    );
    assert_eq!(out.code, 0, "{out}");
    let requests: Vec<&str> = out.stderr.lines().filter(|l| l.contains(" → ")).collect();
    // The token flow in the fewest requests: the manifest meets the challenge, one token, the
    // manifest again; no /v2/ ping.
    let first: Vec<&str> = requests
        .iter()
        .take(3)
        .map(|l| l.split(" → ").next().unwrap_or(""))
        .map(|l| l.rsplit('/').next().unwrap_or(""))
        .collect();
    assert_eq!(first, ["latest", "token?…", "latest"], "{out}");
    assert!(requests[0].contains("/manifests/latest → 401"), "{out}");
    assert!(
        requests[1].contains("/token?… → 200"),
        "the token URL's query is left out: {out}"
    );
    assert!(!requests.iter().any(|l| l.contains("/v2/ → ")), "{out}");
    assert_eq!(
        requests.iter().filter(|l| l.contains("/token?")).count(),
        1,
        "one token for the whole pull: {out}"
    );
    assert!(
        requests
            .iter()
            .filter(|l| l.contains("/blobs/sha256:"))
            .count()
            >= 4,
        "{out}"
    );
    for line in &requests {
        assert!(line.ends_with(" ms"), "{line}");
    }
    for secret in ["token-secret-42", "Bearer", "Basic ", "uthorization"] {
        assert!(
            !out.stderr.contains(secret),
            "{secret} in the output:\n{}",
            out.stderr
        );
    }
    // The tokens the test service hands out are 32 hex digits; digests are 64.
    let token_like = out
        .stderr
        .split(|c: char| !c.is_ascii_hexdigit())
        .any(|run| run.len() == 32);
    assert!(
        !token_like,
        "something token-like in the output:\n{}",
        out.stderr
    );
}
