//! Tests that keep the safe way the only way: each rule has one home (a module), and these
//! fail when code elsewhere in `src/` goes around it. They read the source, so a new way round
//! is caught the day it is written, not the day it is exploited. Test code (after a file's
//! `#[cfg(test)]`, and `tests.rs` files) and the fuzz harness (`src/fuzzing/`) are free.

use std::path::PathBuf;

/// Every `path:line: pattern` of `src/` outside `owners` (path prefixes) where a line of
/// product code holds one of `patterns`.
fn offenders(patterns: &[&str], owners: &[&str]) -> Vec<String> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut found = Vec::new();
    let mut stack = vec![root.join("src")];
    let mut files = 0;
    while let Some(path) = stack.pop() {
        if path.is_dir() {
            stack.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
            continue;
        }
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        files += 1;
        let relative = path
            .strip_prefix(&root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let free = ["src/fuzzing/", "src/rules.rs"];
        if owners.iter().chain(&free).any(|o| relative.starts_with(o))
            || relative.ends_with("/tests.rs")
        {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        for (n, line) in code.lines().enumerate() {
            let line = line.split("//").next().unwrap_or("");
            for pattern in patterns {
                if line.contains(pattern) {
                    found.push(format!("{relative}:{}: {pattern}", n + 1));
                }
            }
        }
    }
    assert!(files > 40, "the walk found only {files} source files");
    found
}

/// Every file dockersave creates outside an image's tree is made by `outfile` (openat,
/// O_CREAT|O_EXCL|O_NOFOLLOW, private until renamed into place); `confined` owns the image's
/// tree, made the same way inside its root.
#[test]
fn nothing_but_outfile_creates_or_renames_a_file() {
    let found = offenders(
        &[
            " File::create",
            "(File::create",
            "OpenOptions",
            "fs::write(",
            "create_new(",
            ".create(true)",
            "create_dir",
            "DirBuilder",
            "fs::rename(",
            "O_CREAT",
            "libc::open(",
            "libc::openat(",
            "mkdirat(",
            "renameat(",
        ],
        &["src/outfile.rs", "src/confined.rs"],
    );
    assert!(
        found.is_empty(),
        "create files through outfile.rs:\n{}",
        found.join("\n")
    );
}

/// Every JSON document from outside is parsed by `limits::json`, which checks its size and
/// shape against the table first.
#[test]
fn nothing_but_limits_parses_json() {
    let found = offenders(
        &["json::from_str", "from_str::<", "serde_json"],
        &["src/limits.rs"],
    );
    assert!(
        found.is_empty(),
        "parse JSON with limits::json:\n{}",
        found.join("\n")
    );
}
