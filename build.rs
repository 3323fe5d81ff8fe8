//! Records what `--version` reports: the target triple and the git commit of the build.
//! `DOCKERSAVE_COMMIT` overrides the commit (for builds from a tarball without `.git`).

use std::process::Command;

fn main() {
    let target = std::env::var("TARGET").unwrap_or_else(|_| "unknown".into());
    println!("cargo:rustc-env=DOCKERSAVE_TARGET={target}");
    let commit = std::env::var("DOCKERSAVE_COMMIT").ok().or_else(|| {
        let out = Command::new("git")
            .args(["rev-parse", "--short=12", "HEAD"])
            .output()
            .ok()?;
        let dirty = Command::new("git")
            .args(["status", "--porcelain", "--untracked-files=no"])
            .output()
            .ok()
            .is_some_and(|o| !o.stdout.is_empty());
        let hash = String::from_utf8(out.stdout).ok()?.trim().to_string();
        (out.status.success() && !hash.is_empty()).then(|| {
            if dirty {
                format!("{hash}-dirty")
            } else {
                hash
            }
        })
    });
    println!(
        "cargo:rustc-env=DOCKERSAVE_COMMIT={}",
        commit.as_deref().unwrap_or("unknown")
    );
    println!("cargo:rerun-if-env-changed=DOCKERSAVE_COMMIT");
    for path in [".git/HEAD", ".git/index", ".git/refs"] {
        if std::path::Path::new(path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
}
