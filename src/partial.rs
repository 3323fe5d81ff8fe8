//! Work in progress on disk: the hidden `.NAME.partial-PID` name a file or directory has until
//! it is complete, the removal of what killed runs left under such names, and the list of what
//! an interrupted run (Ctrl-C, SIGTERM) must remove before it exits.
//!
//! Everything dockersave writes appears under its final name only by a rename, so a reader
//! never sees half of it; this module owns the naming that makes that, and the cleanup, work.
//! The interrupt list is the crate's one piece of global state: a signal can arrive anywhere,
//! and what to undo then is whatever is in progress at that moment.

use crate::confined::{self, Root};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// What to do with a path if the run is interrupted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Undo {
    /// Remove it (a partial file or directory).
    Remove,
    /// Remove what is in it, keep it (an empty directory the user gave, e.g. a mount point).
    Empty,
    /// Leave it and say so (`--no-rm`).
    Keep,
    /// Leave it and say it is partly updated (`--rootfs --force`).
    Partial,
}

static ON_INTERRUPT: Mutex<Vec<(usize, PathBuf, Undo)>> = Mutex::new(Vec::new());
// usize, not u64: ARMv5 has no 64-bit atomics.
static NEXT: AtomicUsize = AtomicUsize::new(0);

/// A path on the interrupt list; it comes off when this is dropped.
#[derive(Debug)]
pub struct OnInterrupt(usize);

/// Puts `path` on the interrupt list with what to do to it.
pub fn on_interrupt(path: &Path, undo: Undo) -> OnInterrupt {
    let id = NEXT.fetch_add(1, Ordering::SeqCst);
    interrupt_list().push((id, path.to_path_buf(), undo));
    OnInterrupt(id)
}

impl Drop for OnInterrupt {
    fn drop(&mut self) {
        interrupt_list().retain(|(id, _, _)| *id != self.0);
    }
}

fn interrupt_list() -> std::sync::MutexGuard<'static, Vec<(usize, PathBuf, Undo)>> {
    crate::locks::lock(&ON_INTERRUPT)
}

/// Undoes everything on the interrupt list, newest first; returns what was left in place and
/// why, for the user. Called once, by the interrupt watcher, just before the process exits.
pub fn undo_interrupted() -> Vec<String> {
    let list = std::mem::take(&mut *interrupt_list());
    let mut left = Vec::new();
    for (_, path, undo) in list.into_iter().rev() {
        match undo {
            Undo::Remove => remove(&path),
            Undo::Empty => empty(&path),
            Undo::Keep => left.push(format!("kept {} (--no-rm)", path.display())),
            Undo::Partial => left.push(format!("{} is partly updated", path.display())),
        }
    }
    left
}

/// The name a file is written under until it is complete: hidden, beside the final one, unique
/// to this process.
pub fn temp_name(dest: &Path) -> PathBuf {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    dest.with_file_name(format!(".{name}.partial-{}", std::process::id()))
}

/// Removes what killed runs left behind in `dir`: `.NAME.partial-PID` files and directories
/// whose process is gone and which belong to the user running this one (in a shared
/// directory, another user's names are not ours to judge). Best effort; a live process's
/// partial files are never touched.
pub fn remove_stale_partials(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some((_, pid)) = name
            .strip_prefix('.')
            .and_then(|n| n.rsplit_once(".partial-"))
        else {
            continue;
        };
        let Ok(pid) = pid.parse::<u32>() else {
            continue;
        };
        if pid == std::process::id() || alive(pid) {
            continue;
        }
        use std::os::unix::fs::MetadataExt;
        let ours = fs::symlink_metadata(entry.path())
            .is_ok_and(|meta| meta.uid() == unsafe { libc::geteuid() });
        if ours {
            remove(&entry.path());
        }
    }
}

/// Whether a process exists (signal 0 checks without sending; EPERM means it exists but is
/// not ours). No /proc needed: an initramfs may not have one.
fn alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    pid > 0
        && (unsafe { libc::kill(pid, 0) } == 0
            || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM))
}

/// Removes a file, or a directory tree with read-only directories in it (an unprivileged
/// `--rootfs` makes those), following no symlink. Best effort.
pub fn remove(path: &Path) {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return;
    };
    let parent = if parent.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent
    };
    if let Ok(root) = Root::open(parent) {
        let _ = confined::remove_all_at(root.fd(), name.as_encoded_bytes());
    }
}

/// Removes everything in a directory, keeping the directory. Best effort.
pub fn empty(dir: &Path) {
    if let Ok(root) = Root::open(dir) {
        for name in confined::list_dir(root.fd()).unwrap_or_default() {
            let _ = confined::remove_all_at(root.fd(), &name);
        }
    }
}
