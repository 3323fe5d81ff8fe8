//! The man page and the bash completions in `docs/` against the binary's own `--help`: every
//! option `--help` lists is in both, `man` renders the page without a warning, and bash reads
//! the completions and completes a flag with them.

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
