//! `--rootfs DIR --git` (cargo's `-g`): DIR is also a git repository with one commit per layer,
//! each on its own branch `layer<N>_<12 hex of the diff ID>` branched from the previous layer's,
//! so `git diff` between two branches shows what a layer changed.
//!
//! It runs the `git` program after each layer has been applied and verified. The repository is
//! shielded from the image: no hooks run, no user or system configuration is read, ignore files
//! and attributes in the tree (`.gitignore`, `.gitattributes` with filters or line-ending
//! conversion) change nothing, and `confined` keeps every path named `.git` out of the image's
//! reach, however its symlinks lead there (so the image can neither rewrite the repository's
//! configuration nor plant a nested repository for git to read); an opaque marker at the root
//! keeps `/.git`. Git cannot hold owners, device nodes, empty directories, extended attributes
//! or modes other than +x; the tree on disk has them all.

use crate::digest::Digest;
use crate::error::Error;
use crate::manifest::LayerHistory;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub struct Repo {
    dir: PathBuf,
}

/// Settings for every git command: none of the user's or the system's configuration, and
/// nothing from the image's tree that could run code or rewrite content.
const CONFIG: [&str; 12] = [
    "core.hooksPath=/dev/null",
    "core.fsmonitor=false",
    "core.excludesFile=/dev/null",
    "core.autocrlf=false",
    "core.safecrlf=false",
    "core.symlinks=true",
    "core.fileMode=true",
    "commit.gpgSign=false",
    "gc.auto=0",
    "user.name=dockersave",
    "user.email=dockersave@localhost",
    "init.defaultBranch=layer1",
];

/// Highest-precedence attributes: whatever `.gitattributes` files the image holds, content is
/// stored as it is.
const ATTRIBUTES: &str = "* -text -eol -filter -ident -working-tree-encoding -diff -merge\n";

impl Repo {
    /// Fails with a message naming what to install when `git` is not there.
    pub fn check_git() -> Result<(), Error> {
        match Command::new("git")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
        {
            Ok(status) if status.success() => Ok(()),
            _ => Err(Error::Local(
                "--git needs the git program, which was not found; install git (e.g. apt-get install git) or leave out --git".into(),
            )),
        }
    }

    /// Makes `dir` (the tree being built) a repository.
    pub fn init(dir: &Path) -> Result<Repo, Error> {
        let repo = Repo {
            // git runs in the directory with GIT_WORK_TREE set: a relative path would not do.
            dir: fs::canonicalize(dir).map_err(|e| Error::io(dir, e))?,
        };
        repo.git(&["init", "-q"])?;
        // Made in the tree's own handle, as everything else there is: nothing is followed.
        crate::outfile::Dir::open(dir)?
            .write_at(Path::new(".git/info/attributes"), ATTRIBUTES.as_bytes())?;
        Ok(repo)
    }

    /// Commits the tree as it is after layer `index` (0-based) on its own branch, returning the
    /// branch's name. `written` are the paths (not directories) the layer wrote.
    pub fn commit_layer(
        &self,
        index: usize,
        total: usize,
        blob: &Digest,
        diff_id: &Digest,
        history: Option<&LayerHistory>,
        written: &[Box<[u8]>],
    ) -> Result<String, Error> {
        let branch = format!("layer{}_{}", index + 1, &diff_id.hex()[..12]);
        let reference = format!("refs/heads/{branch}");
        if index > 0 {
            // The new branch starts at the previous layer's commit; the index and the tree
            // (already holding this layer) stay as they are.
            self.git(&["branch", "-q", &branch, "HEAD"])?;
        }
        self.git(&["symbolic-ref", "HEAD", &reference])?;
        if !written.is_empty() {
            // git trusts a file's stat data (size, mtime, ctime, inode) to tell it is unchanged.
            // The layer set old mtimes from the image, so a rewritten file of the same size on a
            // reused inode within the same second looks unchanged; out of the index, the
            // layer's files are hashed again by the `add` that follows.
            let list: Vec<u8> = written
                .iter()
                .flat_map(|path| path.iter().copied().chain([0]))
                .collect();
            let args = [
                "rm",
                "--cached",
                "-r",
                "-q",
                "--ignore-unmatch",
                "--pathspec-from-file=-",
                "--pathspec-file-nul",
            ];
            run(self.command(&args), &args, Some(&list))?;
        }
        self.git(&["add", "-A", "-f", "--", "."])?;
        let created_by = history
            .and_then(|h| h.created_by.as_deref())
            .map(|c| c.chars().filter(|c| !c.is_control()).collect::<String>())
            .unwrap_or_else(|| "(not recorded)".into());
        let message = format!(
            "layer {}/{total} {blob}\n\ndiff ID: {diff_id}\ncreated by: {created_by}\n",
            index + 1
        );
        // Dates from the image, so the same image gives the same commits.
        let date = history
            .and_then(|h| h.created.as_deref())
            .filter(|d| d.len() <= 64 && d.bytes().all(|b| b.is_ascii_graphic()))
            .unwrap_or("1970-01-01T00:00:00Z");
        let args = ["commit", "-q", "--allow-empty", "-F", "-"];
        let mut command = self.command(&args);
        command
            .env("GIT_AUTHOR_DATE", date)
            .env("GIT_COMMITTER_DATE", date);
        run(command, &args, Some(message.as_bytes()))?;
        Ok(branch)
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new("git");
        for setting in CONFIG {
            command.arg("-c").arg(setting);
        }
        command
            .args(args)
            .current_dir(&self.dir)
            .env("GIT_DIR", self.dir.join(".git"))
            .env("GIT_WORK_TREE", &self.dir)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_TERMINAL_PROMPT", "0")
            // Paths from the image are names, never patterns.
            .env("GIT_LITERAL_PATHSPECS", "1")
            .env_remove("GIT_INDEX_FILE")
            .env_remove("GIT_OBJECT_DIRECTORY")
            .env_remove("GIT_ALTERNATE_OBJECT_DIRECTORIES")
            .env_remove("GIT_CEILING_DIRECTORIES");
        command
    }

    fn git(&self, args: &[&str]) -> Result<(), Error> {
        run(self.command(args), args, None)
    }
}

fn run(mut command: Command, args: &[&str], input: Option<&[u8]>) -> Result<(), Error> {
    let failed = |detail: String| Error::Local(format!("git {} failed: {detail}", args[0]));
    let mut child = command
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| failed(e.to_string()))?;
    if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
        use std::io::Write;
        stdin.write_all(input).map_err(|e| failed(e.to_string()))?;
    }
    let output = child
        .wait_with_output()
        .map_err(|e| failed(e.to_string()))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(failed(
            stderr.lines().next().unwrap_or("no message").to_string(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    fn digest(text: &str) -> Digest {
        Digest::of_bytes(text.as_bytes())
    }

    /// Replaces `f` with as many bytes and the old mtime, as a layer does, in the same second as
    /// the commit before: git's stat data cannot tell the difference; the commit must.
    fn rewrite_after_commit(written: &[Box<[u8]>]) -> String {
        let dir = crate::confined::tests::scratch("git-rewrite");
        let root = dir.join("root");
        let repo = Repo::init(&root).unwrap();
        let file = root.join("f");
        let set_mtime = |path: &Path| {
            let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
            let t = libc::timespec {
                tv_sec: 1_600_000_000,
                tv_nsec: 0,
            };
            assert_eq!(
                unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), [t, t].as_ptr(), 0) },
                0
            );
        };
        // Start early in a second (past the kernel's coarse clock, which file times use), so
        // the commit and the rewrite share it.
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        std::thread::sleep(Duration::from_nanos(u64::from(
            1_050_000_000 - now.subsec_nanos(),
        )));
        fs::write(&file, "old!").unwrap();
        set_mtime(&file);
        let names: Vec<Box<[u8]>> = vec![b"f"[..].into()];
        let first = repo
            .commit_layer(0, 2, &digest("a"), &digest("b"), None, &names)
            .unwrap();
        // As a layer replaces a file: a new one, which often gets the inode just freed.
        fs::remove_file(&file).unwrap();
        fs::write(&file, "new!").unwrap();
        set_mtime(&file);
        let second = repo
            .commit_layer(1, 2, &digest("c"), &digest("d"), None, written)
            .unwrap();
        let out = Command::new("git")
            .args(["diff", "--name-status", &first, &second])
            .env("GIT_DIR", root.join(".git"))
            .output()
            .unwrap();
        fs::remove_dir_all(&dir).unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    #[test]
    fn a_rewritten_file_with_the_same_size_and_mtime_is_committed() {
        let names: Vec<Box<[u8]>> = vec![b"f"[..].into()];
        assert_eq!(rewrite_after_commit(&names), "M\tf\n");
    }
}
