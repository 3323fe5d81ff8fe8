//! The documentation: the man page and the bash completions in `docs/` against the binary's
//! own `--help` (every option `--help` lists is in both, `man` renders the page without a
//! warning, bash completes a flag with them), the README kept for users (short, with the
//! set-up commands), every link between the documents leading somewhere, and the performance
//! notes' tables written by `build/bench.sh`, not by hand.

mod common;

use common::{dockersave, run, run_env};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every `--flag` and `-x` that `--help` lists at the start of an option line.
fn options_in_help() -> BTreeSet<String> {
    let help = dockersave(&root(), &["--help"]);
    assert_eq!(help.code, 0, "{help}");
    let mut options = BTreeSet::new();
    for line in help.stdout.lines().filter(|l| l.starts_with("  -")) {
        for word in line.split_whitespace() {
            let word = word.trim_end_matches(',');
            if word.starts_with('-') {
                options.insert(word.to_string());
            } else {
                break;
            }
        }
    }
    assert!(
        options.len() > 40 && options.contains("--rootfs") && options.contains("-o"),
        "{options:?}"
    );
    options
}

#[test]
fn every_option_of_help_is_in_the_man_page() {
    let page = std::fs::read_to_string(root().join("docs/dockersave.1")).unwrap();
    let missing: Vec<String> = options_in_help()
        .into_iter()
        .filter(|option| {
            !page.contains(&format!(".B {}", option.replace('-', "\\-")))
                && !page.contains(&format!(", {}", option.replace('-', "\\-")))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "docs/dockersave.1 lacks {missing:?}: run DOCKERSAVE_WRITE_DOCS=1 cargo test --lib docs_are_current"
    );
}

#[test]
fn man_renders_the_page_without_warnings() {
    let out = run_env(
        "man",
        &["--warnings", "-l", "docs/dockersave.1"],
        &root(),
        None,
        &[
            ("MANWIDTH", "80"),
            ("MAN_KEEP_FORMATTING", "0"),
            ("PAGER", "cat"),
        ],
    );
    assert_eq!(out.code, 0, "{out}");
    assert!(out.stderr.is_empty(), "man warns:\n{out}");
    // Bold and underline come as overstrikes: `X\bX`.
    let mut text = String::new();
    for c in out.stdout.chars() {
        if c == '\u{8}' {
            text.pop();
        } else {
            text.push(c);
        }
    }
    for heading in ["NAME", "SYNOPSIS", "OPTIONS", "EXIT STATUS", "ENVIRONMENT"] {
        assert!(text.contains(heading), "no {heading}:\n{text}");
    }
    assert!(text.contains("--registry-format"), "{text}");
}

#[test]
fn bash_completes_flags_from_the_completions_file() {
    let script = format!(
        "source {}; COMP_WORDS=(dockersave --roo); COMP_CWORD=1; _dockersave; echo \"${{COMPREPLY[@]}}\"; \
         COMP_WORDS=(dockersave --format d); COMP_CWORD=2; _dockersave; echo \"${{COMPREPLY[@]}}\"",
        Path::new("docs/dockersave.bash").display()
    );
    let out = run("bash", &["-c", &script], &root(), None);
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(out.stdout, "--rootfs\ndocker\n", "{out}");
    let listed = std::fs::read_to_string(root().join("docs/dockersave.bash")).unwrap();
    let missing: Vec<String> = options_in_help()
        .into_iter()
        .filter(|option| {
            !listed.contains(&format!(" {option} "))
                && !listed.contains(&format!("'{option} "))
                && !listed.contains(&format!(" {option}'"))
        })
        .collect();
    assert!(missing.is_empty(), "docs/dockersave.bash lacks {missing:?}");
}

#[test]
fn the_readme_is_for_users_and_links_every_document() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let lines = readme.lines().count();
    assert!(
        lines <= 450,
        "README.md has {lines} lines; move developer detail to docs/"
    );
    for command in [
        "cargo build --release && ./target/release/dockersave --help",
        "tests/run.sh",
    ] {
        assert!(
            readme.contains(command),
            "the set-up command {command:?} is missing"
        );
    }
    for doc in ["design", "security", "performance", "testing", "building"] {
        assert!(
            readme.contains(&format!("](docs/{doc}.md)")),
            "README.md does not link docs/{doc}.md"
        );
    }
}

/// GitHub's anchor of a heading: lower case, punctuation but `-` and `_` dropped, spaces as `-`.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | ' '))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

#[test]
fn every_link_between_the_documents_leads_somewhere() {
    let mut documents = vec![root().join("README.md")];
    for entry in std::fs::read_dir(root().join("docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            documents.push(path);
        }
    }
    let anchors = |path: &Path| -> BTreeSet<String> {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let mut fenced = false;
        let mut found = BTreeSet::new();
        for line in text.lines() {
            if line.starts_with("```") {
                fenced = !fenced;
            } else if !fenced && line.starts_with('#') {
                found.insert(anchor(line.trim_start_matches('#')));
            }
        }
        found
    };
    let mut broken = Vec::new();
    let mut checked = 0;
    for document in &documents {
        let text = std::fs::read_to_string(document).unwrap();
        for (at, _) in text.match_indices("](") {
            let rest = &text[at + 2..];
            let target = &rest[..rest.find(')').unwrap_or(0)];
            if target.contains("://") || target.is_empty() {
                continue;
            }
            checked += 1;
            let (file, fragment) = target.split_once('#').unwrap_or((target, ""));
            let path = if file.is_empty() {
                document.clone()
            } else {
                document.parent().unwrap().join(file)
            };
            if !path.exists() {
                broken.push(format!("{}: {target} (no such file)", document.display()));
            } else if !fragment.is_empty() && !anchors(&path).contains(fragment) {
                broken.push(format!(
                    "{}: {target} (no such heading)",
                    document.display()
                ));
            }
        }
    }
    assert!(checked > 20, "only {checked} links found");
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

/// The performance notes' tables are written by `build/bench.sh` (`DS_BENCH_DOCS=1`), each
/// between the markers of the section that measured it and closed by the line that says how
/// and when; no table outside them holds a figure, and every program the notes name is here.
#[test]
fn every_table_of_figures_in_the_performance_notes_is_written_by_the_bench() {
    let bench = std::fs::read_to_string(root().join("build/bench.sh")).unwrap();
    let notes = std::fs::read_to_string(root().join("docs/performance.md")).unwrap();
    let default: BTreeSet<String> = bench
        .lines()
        .find_map(|l| l.strip_prefix("sections=${DS_BENCH_SECTIONS:-"))
        .expect("bench.sh's default sections")
        .trim_end_matches('}')
        .split_whitespace()
        .map(String::from)
        .collect();
    let started: BTreeSet<String> = bench
        .lines()
        .filter_map(|l| l.strip_prefix("section "))
        .map(|s| s.trim().to_string())
        .collect();
    assert_eq!(
        default, started,
        "bench.sh runs by default exactly the sections it has"
    );

    let mut blocks = BTreeSet::new();
    let mut inside: Option<(String, Vec<&str>)> = None;
    let mut loose = Vec::new();
    let figure = |line: &str| {
        let b = line.as_bytes();
        (1..b.len().saturating_sub(1))
            .any(|i| b[i] == b'.' && b[i - 1].is_ascii_digit() && b[i + 1].is_ascii_digit())
            || [
                " s ", " s|", " ms", " MiB", " KiB", " MB", " KB", " GB", "%",
            ]
            .iter()
            .any(|unit| {
                line.match_indices(unit)
                    .any(|(at, _)| line[..at].ends_with(|c: char| c.is_ascii_digit()))
            })
    };
    for (number, line) in notes.lines().enumerate() {
        if let Some(name) = line
            .strip_prefix("<!-- bench ")
            .and_then(|l| l.strip_suffix(" -->"))
        {
            assert!(
                inside.is_none(),
                "line {}: a block inside a block",
                number + 1
            );
            inside = Some((name.to_string(), Vec::new()));
        } else if let Some(name) = line
            .strip_prefix("<!-- /bench ")
            .and_then(|l| l.strip_suffix(" -->"))
        {
            let (open, body) = inside.take().expect("a block's end without its start");
            assert_eq!(
                open,
                name,
                "line {}: the block of {open} ends as {name}",
                number + 1
            );
            assert!(
                body.iter().any(|l| l.starts_with("|---")),
                "the block of {name} holds no table: run DS_BENCH_SECTIONS={name} DS_BENCH_DOCS=1 build/bench.sh"
            );
            let provenance = body
                .iter()
                .rev()
                .find(|l| !l.is_empty())
                .copied()
                .unwrap_or("");
            let prefix = format!("Measured by `DS_BENCH_SECTIONS={name} build/bench.sh ");
            assert!(
                provenance.starts_with(&prefix) && provenance.contains("` on 20"),
                "the block of {name} does not end with the line bench.sh writes: {provenance:?}"
            );
            assert!(blocks.insert(name.to_string()), "two blocks of {name}");
        } else if let Some((_, body)) = inside.as_mut() {
            body.push(line);
        } else if line.starts_with('|') && !line.starts_with("|--") && figure(line) {
            loose.push(format!("line {}: {line}", number + 1));
        }
    }
    assert!(inside.is_none(), "a block is not closed");
    assert_eq!(
        blocks, default,
        "docs/performance.md has one block for each section of bench.sh"
    );
    assert!(
        loose.is_empty(),
        "figures in tables that bench.sh did not write (measure them in a section of build/bench.sh):\n{}",
        loose.join("\n")
    );
    assert!(figure("| big | 0.42 |") && figure("| 3 MiB |") && !figure("| 1 + min(N, 3) |"));

    let mut missing = Vec::new();
    for (at, _) in notes.match_indices("build/") {
        let path: String = notes[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || "/._-".contains(*c))
            .collect();
        let path = path.trim_end_matches('.');
        if path != "build/" && !root().join(path).exists() {
            missing.push(path.to_string());
        }
    }
    assert!(
        missing.is_empty(),
        "programs named in docs/performance.md that are not here: {missing:?}"
    );
}
