//! Every Debian package the build and the tests rely on is declared in `build/packages`, the one
//! list `build/apt.sh` installs from, and `docs/building.md` names them.
//!
//! A machine that has been used for a while holds packages somebody installed by hand; a build
//! that passes there can fail on a new machine (it did: the aarch64 C headers are only a
//! *Recommends* of the cross compiler). So this test does not ask whether commands exist: it
//! asks dpkg which package owns each file the build and the tests really use — the compilers,
//! the headers those compilers resolve, libc.a and the unwinder of every target, every program
//! the tests run — and insists that the package is declared or pulled in by a declared package's
//! `Depends` (what `apt-get install --no-install-recommends` installs), or is Essential.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

struct Declared {
    package: String,
    group: String,
    path: String,
}

fn declared() -> Vec<Declared> {
    let text = fs::read_to_string(root().join("build/packages")).unwrap();
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty())
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(
                fields.len(),
                3,
                "build/packages: {line:?} is not PACKAGE GROUP PATH"
            );
            Declared {
                package: fields[0].into(),
                group: fields[1].into(),
                path: fields[2].into(),
            }
        })
        .collect()
}

fn output(program: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(program)
        .args(args)
        .current_dir(root())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// `name:arch` → `name`: dependencies are followed by name.
fn bare(package: &str) -> &str {
    package.split(':').next().unwrap_or(package)
}

/// Installed packages: name → (essential, the names its Depends and Pre-Depends mention,
/// alternatives included).
fn installed() -> BTreeMap<String, (bool, Vec<String>)> {
    let (ok, text) = output(
        "dpkg-query",
        &[
            "-W",
            "-f=${binary:Package}\\t${db:Status-Abbrev}\\t${Essential}\\t${Pre-Depends}, ${Depends}\\t${Provides}\\n",
        ],
    );
    assert!(ok, "dpkg-query failed: {text}");
    let mut map: BTreeMap<String, (bool, Vec<String>)> = BTreeMap::new();
    let mut provides: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split('\t').collect();
        if fields.len() < 5 || fields[1] != "ii " {
            continue;
        }
        let names = |list: &str| -> Vec<String> {
            list.split([',', '|'])
                .filter_map(|d| d.split_whitespace().next())
                .map(|d| bare(d).to_string())
                .collect()
        };
        let name = bare(fields[0]).to_string();
        for virtual_name in names(fields[4]) {
            provides.push((virtual_name, name.clone()));
        }
        let entry = map.entry(name).or_default();
        entry.0 |= fields[2] == "yes";
        entry.1.extend(names(fields[3]));
    }
    // A dependency on a virtual package is met by the installed packages that provide it.
    for (virtual_name, provider) in provides {
        map.entry(virtual_name).or_default().1.push(provider);
    }
    map
}

/// The installed packages that the declared ones bring in through Depends and Pre-Depends.
fn closure(
    roots: &[String],
    installed: &BTreeMap<String, (bool, Vec<String>)>,
) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut todo: Vec<String> = roots.iter().map(|p| bare(p).to_string()).collect();
    while let Some(package) = todo.pop() {
        let Some((_, depends)) = installed.get(&package) else {
            continue;
        };
        if seen.insert(package) {
            todo.extend(depends.iter().cloned());
        }
    }
    seen
}

/// The package that owns `path` (dpkg -S), without its architecture.
fn owner(path: &str) -> Option<String> {
    let (ok, text) = output("dpkg", &["-S", path]);
    if !ok {
        return None;
    }
    text.lines()
        .filter_map(|l| l.split_once(": "))
        .find(|(_, p)| p.trim() == path)
        .map(|(packages, _)| bare(packages.split(", ").next().unwrap_or(packages)).to_string())
}

/// The groups whose packages `tests/run.sh` unpacks (`unpack_debs`) instead of installing, and
/// the variable naming the tree each goes to.
const UNPACKED: [(&str, &str); 3] = [
    ("boot-arm", "DS_ARM_BOOT"),
    ("tar-corpus", "DS_TAR_CORPUS"),
    ("docker26", "DS_DOCKER26"),
];

/// The groups `tests/run.sh` installs or unpacks (the bench's own packages are not part of the
/// suite).
fn suite_groups() -> Vec<String> {
    let (ok, targets) = output(
        "bash",
        &["-c", "DS_ROOT=$PWD; . cross/targets.sh; echo $DS_TARGETS"],
    );
    assert!(ok, "{targets}");
    let mut groups = vec!["build".to_string(), "test".to_string()];
    groups.extend(UNPACKED.iter().map(|(group, _)| group.to_string()));
    groups.extend(targets.split_whitespace().map(str::to_string));
    groups
}

#[test]
fn every_declared_package_is_installed_and_owns_its_file() {
    let groups = suite_groups();
    let installed = installed();
    let mut problems = Vec::new();
    for d in declared() {
        if !groups.contains(&d.group) && d.group != "bench" {
            problems.push(format!("{}: unknown group {}", d.package, d.group));
            continue;
        }
        if d.group == "bench" {
            continue;
        }
        if let Some((_, variable)) = UNPACKED.iter().find(|(group, _)| d.group == *group) {
            // Not installed: apt must know it, and run.sh's tree must hold its file. Docker 26
            // is another release's: apt knows it through the lists unpack_debs keeps.
            let (known, text) = match d.group.as_str() {
                "docker26" => output(
                    "bash",
                    &[
                        "-c",
                        &format!(
                            "DS_ROOT=$PWD; . build/apt.sh; suite_apt \"${{DS_DOCKER26:?run through tests/run.sh}}/.apt\" apt-cache show {}",
                            d.package
                        ),
                    ],
                ),
                _ => output("apt-cache", &["show", &d.package]),
            };
            if !known {
                problems.push(format!("{}: apt does not know it: {text}", d.package));
            }
            if let Ok(tree) = std::env::var(variable) {
                if !Path::new(&format!("{tree}{}", d.path)).exists() {
                    problems.push(format!("{} unpacked holds no {}", d.package, d.path));
                }
            }
            continue;
        }
        if !installed.contains_key(bare(&d.package)) {
            problems.push(format!("{} is declared but not installed", d.package));
        }
        // The file is the package's own or comes with it (python3 → python3-minimal).
        let brings = closure(std::slice::from_ref(&d.package), &installed);
        match owner(&d.path) {
            Some(owner) if brings.contains(&owner) => {}
            found => problems.push(format!(
                "{} is declared for {}, but dpkg says that file belongs to {found:?}",
                d.package, d.path
            )),
        }
    }
    assert!(
        problems.is_empty(),
        "build/packages:\n{}",
        problems.join("\n")
    );
}

/// What each target's build uses, by file: every one must come from a declared package.
#[test]
fn every_file_the_cross_builds_use_comes_from_a_declared_package() {
    let declared = declared();
    let installed = installed();
    let roots: Vec<String> = declared.iter().map(|d| d.package.clone()).collect();
    let allowed = closure(&roots, &installed);
    let mut problems = Vec::new();
    let groups = suite_groups();
    for target in groups.iter().filter(|g| g.contains("-linux-")) {
        let script = format!("DS_ROOT=$PWD; . cross/targets.sh; cross_used_files {target}");
        let (ok, files) = output("bash", &["-c", &script]);
        assert!(ok, "cross_used_files {target} failed: {files}");
        assert!(
            files.lines().count() >= 3,
            "{target}: too few files found: {files}"
        );
        for file in files.lines().filter(|l| l.starts_with('/')) {
            match owner(file) {
                Some(package)
                    if allowed.contains(&package)
                        || installed.get(&package).is_some_and(|(e, _)| *e) => {}
                Some(package) => problems.push(format!(
                    "{target} uses {file} from {package}, which no declared package depends on: add {package} to build/packages"
                )),
                None => problems.push(format!(
                    "{target} uses {file}, which no Debian package owns: it was installed by hand"
                )),
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The programs the integration tests and the harness run come from declared (or Essential)
/// packages.
#[test]
fn every_program_the_tests_run_comes_from_a_declared_package() {
    let declared = declared();
    let installed = installed();
    let roots: Vec<String> = declared.iter().map(|d| d.package.clone()).collect();
    let allowed = closure(&roots, &installed);
    let mut programs = BTreeSet::new();
    let sources = ["tests", "tests/common"].iter().flat_map(|dir| {
        fs::read_dir(root().join(dir))
            .unwrap()
            .map(|entry| entry.unwrap().path())
    });
    for path in sources {
        let text = match fs::read_to_string(&path) {
            Ok(text) if path.extension().is_some_and(|e| e == "rs") => text,
            _ => continue,
        };
        for pattern in [
            "run(\"",
            "run_env(\"",
            "run_as_nobody(\"",
            "Command::new(\"",
        ] {
            for (at, _) in text.match_indices(pattern) {
                // The test helpers `run(` and `run_env(`, not methods that share the name.
                let before = text[..at].chars().next_back().unwrap_or(' ');
                if pattern != "Command::new(\""
                    && (before.is_alphanumeric() || "_:.".contains(before))
                {
                    continue;
                }
                let rest = &text[at + pattern.len()..];
                let name = &rest[..rest.find('"').unwrap_or(0)];
                if !name.is_empty() && !name.contains('/') {
                    programs.insert(name.to_string());
                }
            }
        }
    }
    assert!(
        programs.contains("docker") && programs.contains("skopeo"),
        "{programs:?}"
    );
    let mut problems = Vec::new();
    for program in &programs {
        let owners: Vec<String> = ["/usr/bin/", "/usr/sbin/", "/bin/", "/sbin/"]
            .iter()
            .filter_map(|dir| owner(&format!("{dir}{program}")))
            .collect();
        let ok = owners.iter().any(|p| {
            allowed.contains(p) || installed.get(p).is_some_and(|(essential, _)| *essential)
        });
        if !ok {
            problems.push(format!(
                "the tests run {program}, which comes from {owners:?}: declare its package in build/packages"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Packages are installed in one place: only build/apt.sh calls apt-get, and scripts name
/// groups of build/packages, never packages.
#[test]
fn packages_are_installed_only_from_the_declaration() {
    let groups = suite_groups();
    let mut problems = Vec::new();
    let mut scripts = Vec::new();
    for dir in ["build", "cross", "tests", "tests/harness", ".ci"] {
        for entry in fs::read_dir(root().join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.is_file() && path.extension().is_none_or(|e| e == "sh") {
                scripts.push(path);
            }
        }
    }
    for path in &scripts {
        let text = fs::read_to_string(path).unwrap();
        let name = path
            .strip_prefix(root())
            .unwrap_or(path)
            .display()
            .to_string();
        if name == "build/apt.sh" || name == "build/packages" {
            continue;
        }
        for line in text.lines().filter(|l| !l.trim_start().starts_with('#')) {
            if line.contains("apt-get") || line.contains("apt_install") || line.contains("dpkg -i")
            {
                problems.push(format!("{name} installs packages itself: {line}"));
            }
            if let Some(args) = line.split("ensure_debs ").nth(1) {
                for group in args.split_whitespace() {
                    if group.starts_with('"') || group.starts_with('$') {
                        continue;
                    }
                    if !groups.contains(&group.to_string()) && group != "bench" {
                        problems.push(format!("{name} asks for unknown group {group}"));
                    }
                }
            }
        }
    }
    assert!(!scripts.is_empty());
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The documentation (the README and `docs/building.md`) names every declared package.
#[test]
fn the_documentation_names_every_declared_package() {
    let readme = fs::read_to_string(root().join("README.md")).unwrap()
        + &fs::read_to_string(root().join("docs/building.md")).unwrap();
    let missing: Vec<String> = declared()
        .into_iter()
        .filter(|d| !readme.contains(&format!("`{}`", d.package)))
        .map(|d| d.package)
        .collect();
    assert!(
        missing.is_empty(),
        "README.md and docs/building.md do not name these packages of build/packages: {missing:?}"
    );
    assert!(Path::new(&root().join("build/packages")).is_file());
}
