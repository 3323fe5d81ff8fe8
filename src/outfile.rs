//! The one way dockersave creates what it writes outside an image's tree: archives and their
//! partial files, image and spool directories, cache entries, the `--flatten`, `--initramfs`
//! and `--layer` outputs, the push record.
//!
//! Everything is made in an open handle of its directory (`openat`, `mkdirat`) under a name
//! that must not exist yet (`O_CREAT|O_EXCL|O_NOFOLLOW`), so a symlink, FIFO or file another
//! user planted at that name is refused, never written through. What is made stays private
//! (0600, 0700) until it is complete; then it gets the mode the umask gives and is renamed into
//! place in the same handle. An output named by the user that is not a regular file is written
//! into only when it is standard output, a terminal, `/dev/null` or this user's own FIFO
//! (`target`). This module must never open an existing file for writing by any other route,
//! follow a link at the last component of a name it creates, or leave a half-written file under
//! a final name. A test in this file fails when code outside it (and `confined`, which owns the
//! image's tree) opens a file for writing.

use crate::error::Error;
use crate::partial::{self, OnInterrupt, Undo};
use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// An open directory that files are made in, with its path for messages.
pub struct Dir {
    fd: OwnedFd,
    path: PathBuf,
}

impl Dir {
    /// Opens the directory `path` as the user named it (links on the way are the user's
    /// choice); `""` is the current directory.
    pub fn open(path: &Path) -> Result<Dir, Error> {
        let shown = if path.as_os_str().is_empty() {
            Path::new(".")
        } else {
            path
        };
        let fd = open_at(
            libc::AT_FDCWD,
            shown.as_os_str(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
            0,
        )
        .map_err(|e| Error::io(shown, e))?;
        Ok(Dir {
            fd,
            path: path.to_path_buf(),
        })
    }

    /// Creates `path` and its missing parents (with the umask's modes, as `mkdir -p`), then
    /// opens it.
    pub fn ensure(path: &Path) -> Result<Dir, Error> {
        Dir::ensure_mode(path, 0o777)
    }

    /// As `ensure`, what is made private (0700): the cache's directories.
    pub fn ensure_private(path: &Path) -> Result<Dir, Error> {
        Dir::ensure_mode(path, 0o700)
    }

    fn ensure_mode(path: &Path, mode: u32) -> Result<Dir, Error> {
        use std::os::unix::fs::DirBuilderExt;
        if !path.as_os_str().is_empty() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(mode)
                .create(path)
                .map_err(|e| Error::io(path, e))?;
        }
        Dir::open(path)
    }

    /// What is at `name`, without following it: (type bits, owner, size), or `None`.
    pub fn stat(&self, name: &OsStr) -> Option<(libc::mode_t, u32, u64)> {
        let cname = c_name(name).ok()?;
        let stat = lstat_at(self.fd(), &cname).ok()?;
        Some((
            stat.st_mode & libc::S_IFMT,
            stat.st_uid,
            stat.st_size as u64,
        ))
    }

    /// The directory that holds `path`, opened (`.` for a bare name).
    pub fn of(path: &Path) -> Result<(Dir, OsString), Error> {
        let name = path
            .file_name()
            .ok_or_else(|| Error::Usage(format!("{} does not name a file", path.display())))?;
        let parent = path.parent().unwrap_or(Path::new(""));
        Ok((Dir::open(parent)?, name.to_os_string()))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The path of `name` in this directory, for messages and for handing to other programs.
    pub fn join(&self, name: impl AsRef<OsStr>) -> PathBuf {
        self.path.join(name.as_ref())
    }

    /// Creates the file `name`, which must not exist: mode 0600, open for reading and writing.
    /// Something already there is refused with one line, whatever it is.
    pub fn create_file(&self, name: &OsStr) -> Result<File, Error> {
        let fd = open_at(
            self.fd.as_raw_fd(),
            name,
            libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            0o600,
        )
        .map_err(|e| self.refusal(name, e))?;
        Ok(File::from(fd))
    }

    /// Creates the directory `name`, which must not exist (mode 0700), and opens it.
    pub fn create_dir(&self, name: &OsStr) -> Result<Dir, Error> {
        let cname = c_name(name).map_err(|e| Error::io(&self.join(name), e))?;
        cvt(unsafe { libc::mkdirat(self.fd.as_raw_fd(), cname.as_ptr(), 0o700) })
            .map_err(|e| self.refusal(name, e))?;
        self.open_dir(name)
    }

    /// Creates the file at `rel` below this directory, and the directories missing on the way,
    /// with the umask's modes (0666, 0777): for the inside of a directory of this run's, which
    /// nobody else can reach while it is private. Still nothing is followed or replaced.
    pub fn create_at(&self, rel: &Path) -> Result<File, Error> {
        let (parent, name) = self.parent_of(rel)?;
        let fd = open_at(
            parent.fd.as_raw_fd(),
            &name,
            libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            0o666,
        )
        .map_err(|e| parent.refusal(&name, e))?;
        Ok(File::from(fd))
    }

    /// Writes a new file at `rel` (see `create_at`).
    pub fn write_at(&self, rel: &Path, bytes: &[u8]) -> Result<(), Error> {
        use std::io::Write;
        self.create_at(rel)?
            .write_all(bytes)
            .map_err(|e| Error::io(&self.join(rel), e))
    }

    /// The directory at `rel` below this one, made (mode 0777 less the umask) where missing.
    pub fn dirs_at(&self, rel: &Path) -> Result<Dir, Error> {
        self.dirs_at_mode(rel, 0o777)
    }

    /// The directory at `rel` below this one, made private (0700) where missing: the cache's.
    pub fn private_dirs_at(&self, rel: &Path) -> Result<Dir, Error> {
        self.dirs_at_mode(rel, 0o700)
    }

    fn dirs_at_mode(&self, rel: &Path, mode: libc::mode_t) -> Result<Dir, Error> {
        let mut dir = Dir {
            fd: self.fd.try_clone().map_err(|e| Error::io(&self.path, e))?,
            path: self.path.clone(),
        };
        for component in rel.components() {
            let std::path::Component::Normal(name) = component else {
                return Err(Error::Local(format!(
                    "{} is not a plain relative name",
                    rel.display()
                )));
            };
            dir = match dir.open_dir(name) {
                Ok(next) => next,
                Err(_) => {
                    let cname = c_name(name).map_err(|e| Error::io(&dir.join(name), e))?;
                    match cvt(unsafe { libc::mkdirat(dir.fd.as_raw_fd(), cname.as_ptr(), mode) }) {
                        Ok(_) => {}
                        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
                        Err(e) => return Err(dir.refusal(name, e)),
                    }
                    dir.open_dir(name)?
                }
            };
        }
        Ok(dir)
    }

    /// The directory holding `rel` below this one (made where missing) and `rel`'s last name.
    fn parent_of(&self, rel: &Path) -> Result<(Dir, OsString), Error> {
        let name = rel
            .file_name()
            .ok_or_else(|| Error::Local(format!("{} does not name a file", rel.display())))?;
        let parent = self.dirs_at(rel.parent().unwrap_or(Path::new("")))?;
        Ok((parent, name.to_os_string()))
    }

    /// Opens the existing directory `name`, refusing a symlink there.
    pub fn open_dir(&self, name: &OsStr) -> Result<Dir, Error> {
        let fd = open_at(
            self.fd.as_raw_fd(),
            name,
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            0,
        )
        .map_err(|e| self.refusal(name, e))?;
        Ok(Dir {
            fd,
            path: self.join(name),
        })
    }

    /// Opens `name` for reading if it is a regular file that this user owns; `Ok(None)` when
    /// nothing is there. A link, FIFO or device is refused before it can be read or waited on.
    pub fn open_owned(&self, name: &OsStr) -> Result<Option<File>, Error> {
        let fd = match open_at(
            self.fd.as_raw_fd(),
            name,
            libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC,
            0,
        ) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(None),
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                return Err(Error::Local(format!(
                    "{} is a symbolic link, not a regular file of this user: dockersave does not use it; remove it",
                    self.join(name).display()
                )))
            }
            Err(e) => return Err(Error::io(&self.join(name), e)),
        };
        let stat = fstat(fd.as_fd()).map_err(|e| Error::io(&self.join(name), e))?;
        if stat.st_mode & libc::S_IFMT != libc::S_IFREG || stat.st_uid != euid() {
            return Err(Error::Local(format!(
                "{} is {}, not a regular file of this user: dockersave does not use it; remove it",
                self.join(name).display(),
                describe(&stat)
            )));
        }
        Ok(Some(File::from(fd)))
    }

    /// Renames `from` to `to` within this directory, after checking that `to`, if it exists,
    /// is what may be replaced: a regular file (as `docker save -o` replaces one), or for a
    /// directory nothing at all.
    pub fn rename(&self, from: &OsStr, to: &OsStr, is_dir: bool) -> Result<(), Error> {
        self.rename_to(from, self, to, is_dir)
    }

    /// As `rename`, into the directory `target` (on the same filesystem).
    pub fn rename_to(
        &self,
        from: &OsStr,
        target: &Dir,
        to: &OsStr,
        is_dir: bool,
    ) -> Result<(), Error> {
        let dest = target.join(to);
        let cto = c_name(to).map_err(|e| Error::io(&dest, e))?;
        match lstat_at(target.fd(), &cto) {
            Ok(stat) if is_dir || stat.st_mode & libc::S_IFMT != libc::S_IFREG => {
                return Err(Error::Local(format!(
                    "{} already exists as {}; dockersave replaces only a regular file there: remove it or choose another name",
                    dest.display(),
                    describe(&stat)
                )))
            }
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => return Err(Error::io(&dest, e)),
        }
        let cfrom = c_name(from).map_err(|e| Error::io(&self.join(from), e))?;
        cvt(unsafe {
            libc::renameat(
                self.fd.as_raw_fd(),
                cfrom.as_ptr(),
                target.fd.as_raw_fd(),
                cto.as_ptr(),
            )
        })
        .map(drop)
        .map_err(|e| Error::io(&dest, e))
    }

    /// Removes `name` (a file, or a directory and everything in it), following no link. Best
    /// effort: what is to be removed is ours and a failure only leaves litter.
    pub fn remove(&self, name: &OsStr) {
        let _ = crate::confined::remove_all_at(self.fd(), name.as_bytes());
    }

    /// The error for a name that could not be made or opened: one that exists says what is
    /// there, so a planted link or FIFO is named as such.
    fn refusal(&self, name: &OsStr, e: io::Error) -> Error {
        let path = self.join(name);
        let there = c_name(name)
            .ok()
            .and_then(|cname| lstat_at(self.fd(), &cname).ok());
        match (e.raw_os_error(), there) {
            (Some(libc::EEXIST) | Some(libc::ELOOP) | Some(libc::ENOTDIR), Some(stat)) => {
                Error::Local(format!(
                    "{} already exists as {} that this run did not make; dockersave never writes through what it finds at a name it creates: remove it and run again",
                    path.display(),
                    describe(&stat)
                ))
            }
            _ => Error::io(&path, e),
        }
    }
}

/// A file written under its partial name (`.NAME.partial-PID`) beside its final one, private
/// until `persist` gives it its mode and renames it into place; removed if dropped before.
pub struct NewFile {
    dir: Dir,
    temp: OsString,
    name: OsString,
    file: File,
    done: bool,
    _interrupt: OnInterrupt,
}

impl NewFile {
    /// Starts the file that will be `dest`. Its directory must exist.
    pub fn create(dest: &Path) -> Result<NewFile, Error> {
        let (dir, name) = Dir::of(dest)?;
        NewFile::create_in(dir, &name)
    }

    /// Starts the file that will be `name` in `dir`.
    pub fn create_in(dir: Dir, name: &OsStr) -> Result<NewFile, Error> {
        let temp = partial_name(name);
        let file = replacing_own(&dir, &temp, libc::S_IFREG, || dir.create_file(&temp))?;
        Ok(NewFile {
            _interrupt: partial::on_interrupt(&dir.join(&temp), Undo::Remove),
            dir,
            temp,
            name: name.to_os_string(),
            file,
            done: false,
        })
    }

    pub fn file(&self) -> &File {
        &self.file
    }

    pub fn file_mut(&mut self) -> &mut File {
        &mut self.file
    }

    /// Where the file is while it is written, for messages.
    pub fn path(&self) -> PathBuf {
        self.dir.join(&self.temp)
    }

    /// Syncs the file, gives it the mode a new file gets (0666 less the umask) and renames it
    /// to its final name.
    pub fn persist(mut self) -> Result<(), Error> {
        let path = self.path();
        self.file.sync_all().map_err(|e| Error::io(&path, e))?;
        set_mode(self.file.as_fd(), 0o666 & !umask()).map_err(|e| Error::io(&path, e))?;
        self.dir.rename(&self.temp, &self.name, false)?;
        self.done = true;
        Ok(())
    }
}

impl Drop for NewFile {
    fn drop(&mut self) {
        if !self.done {
            self.dir.remove(&self.temp);
        }
    }
}

/// A directory built under its partial name beside its final one, private (0700) until
/// `persist` gives it its mode and renames it into place. What happens to it if it is dropped
/// first is the caller's `undo` (removed, or kept with `--no-rm`).
pub struct NewDir {
    parent: Dir,
    temp: OsString,
    name: OsString,
    dir: Dir,
    undo: Undo,
    done: bool,
    _interrupt: OnInterrupt,
}

impl NewDir {
    /// Starts the directory that will be `dest`; its parent must exist.
    pub fn create(dest: &Path, undo: Undo) -> Result<NewDir, Error> {
        let (parent, name) = Dir::of(dest)?;
        let temp = partial_name(&name);
        let dir = replacing_own(&parent, &temp, libc::S_IFDIR, || parent.create_dir(&temp))?;
        Ok(NewDir {
            _interrupt: partial::on_interrupt(&parent.join(&temp), undo),
            parent,
            temp,
            name,
            dir,
            undo,
            done: false,
        })
    }

    /// The directory being built.
    pub fn dir(&self) -> &Dir {
        &self.dir
    }

    /// Gives it the mode a new directory gets (`mode`, or 0777 less the umask) and renames it
    /// to its final name, which must not exist.
    pub fn persist(mut self, mode: Option<u32>) -> Result<PathBuf, Error> {
        let path = self.dir.path().to_path_buf();
        set_mode(self.dir.fd(), mode.unwrap_or(0o777 & !umask()))
            .map_err(|e| Error::io(&path, e))?;
        self.parent.rename(&self.temp, &self.name, true)?;
        self.done = true;
        Ok(self.parent.join(&self.name))
    }
}

impl NewDir {
    /// Removes it now, whatever `undo` said: a spool area no longer wanted after a success.
    pub fn discard(mut self) {
        self.parent.remove(&self.temp);
        self.done = true;
    }
}

impl Drop for NewDir {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        match self.undo {
            Undo::Keep => eprintln!(
                "kept the partial directory {} (--no-rm)",
                self.dir.path().display()
            ),
            _ => self.parent.remove(&self.temp),
        }
    }
}

/// A directory of this run's for files nobody else may see (spools), beside `near`: private,
/// and removed with everything in it when dropped.
pub struct PrivateDir {
    inner: Option<NewDir>,
}

impl PrivateDir {
    pub fn create(near: &Path) -> Result<PrivateDir, Error> {
        Ok(PrivateDir {
            inner: Some(NewDir::create(near, Undo::Remove)?),
        })
    }

    pub fn dir(&self) -> &Dir {
        self.inner
            .as_ref()
            .map(NewDir::dir)
            .expect("a private directory lives until dropped")
    }
}

/// `.NAME.partial-PID`, the name `partial` owns.
fn partial_name(name: &OsStr) -> OsString {
    partial::temp_name(Path::new(name)).into_os_string()
}

/// Makes the partial file or directory `temp` in `dir` with `make`. A regular file (or
/// directory, `kind`) of this user already there under this process's number is what a dead
/// process with the same number left: it is removed and made again. Anything else is refused.
fn replacing_own<T>(
    dir: &Dir,
    temp: &OsStr,
    kind: libc::mode_t,
    make: impl Fn() -> Result<T, Error>,
) -> Result<T, Error> {
    let refused = match make() {
        Err(refused @ Error::Local(_)) => refused,
        other => return other,
    };
    let cname = c_name(temp).map_err(|e| Error::io(&dir.join(temp), e))?;
    match lstat_at(dir.fd(), &cname) {
        Ok(stat) if stat.st_mode & libc::S_IFMT == kind && stat.st_uid == euid() => {
            dir.remove(temp);
            make()
        }
        _ => Err(refused),
    }
}

/// Opens `path` for reading if it is a regular file: a FIFO or device named where a file is
/// expected (an archive's `manifest.json`, say) would block or call a driver. `O_NONBLOCK` keeps
/// the open itself from waiting on a FIFO; it changes nothing for a regular file.
#[cfg(feature = "push")]
pub fn open_regular(path: &Path) -> Result<File, Error> {
    let fd = open_at(
        libc::AT_FDCWD,
        path.as_os_str(),
        libc::O_RDONLY | libc::O_NONBLOCK | libc::O_CLOEXEC,
        0,
    )
    .map_err(|e| Error::io(path, e))?;
    let stat = fstat(fd.as_fd()).map_err(|e| Error::io(path, e))?;
    if stat.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Err(Error::Invalid {
            what: path.display().to_string(),
            detail: "it is not a regular file; an image directory holds only files and directories"
                .into(),
        });
    }
    Ok(File::from(fd))
}

/// Where an output the user named goes.
pub enum Target {
    /// Standard output (`-`, or a name for it such as `/dev/stdout`).
    Stdout,
    /// Something written as it is, front to back: a terminal, `/dev/null`, this user's FIFO.
    Stream(File),
    /// A new regular file, written under its partial name and renamed into place.
    File,
}

/// How the output `path` is written. A name that does not exist or is a regular file becomes
/// a new file. Standard output by any name, a terminal, `/dev/null` and a FIFO of this user's
/// (opened without waiting: no reader is an error at once, not a hang) are written into. Any
/// other FIFO, socket or device, a directory, and a symlink that is none of these is refused:
/// root must not fill another user's pipe or a device, nor write through a planted link.
pub fn target(path: &Path) -> Result<Target, Error> {
    if path.as_os_str() == "-" {
        return Ok(Target::Stdout);
    }
    if path.file_name().is_none() {
        return Err(Error::Local(format!(
            "{} is a directory; name a file",
            path.display()
        )));
    }
    let (dir, name) = Dir::of(path)?;
    let cname = c_name(&name).map_err(|e| Error::io(path, e))?;
    let stat = match lstat_at(dir.fd(), &cname) {
        Ok(stat) => stat,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(Target::File),
        Err(e) => return Err(Error::io(path, e)),
    };
    let kind = stat.st_mode & libc::S_IFMT;
    if kind == libc::S_IFREG {
        return Ok(Target::File);
    }
    let refuse = |what: &str| {
        Err(Error::Local(format!(
            "{} is {what}; dockersave writes a regular file there, or into standard output (-), a terminal, /dev/null or a FIFO of your own: remove it or choose another name",
            path.display()
        )))
    };
    if kind == libc::S_IFDIR {
        return Err(Error::Local(format!(
            "{} is a directory; name a file",
            path.display()
        )));
    }
    // A link is looked through only to find standard output or a terminal by another name.
    let followed = if kind == libc::S_IFLNK {
        match std::fs::metadata(path) {
            Ok(_) => stat_path(path).map_err(|e| Error::io(path, e))?,
            Err(_) => return refuse("a symbolic link that leads nowhere"),
        }
    } else {
        stat
    };
    if let Ok(out) = fstat(io::stdout().as_fd()) {
        if out.st_dev == followed.st_dev && out.st_ino == followed.st_ino {
            return Ok(Target::Stdout);
        }
    }
    let followed_kind = followed.st_mode & libc::S_IFMT;
    let own_fifo = followed_kind == libc::S_IFIFO && followed.st_uid == euid();
    if kind == libc::S_IFLNK && followed_kind != libc::S_IFCHR {
        return refuse("a symbolic link");
    }
    if followed_kind != libc::S_IFCHR && !own_fifo {
        return refuse(&describe(&followed));
    }
    let flags = libc::O_WRONLY | libc::O_NOCTTY | libc::O_NONBLOCK | libc::O_CLOEXEC;
    let nofollow = if kind == libc::S_IFLNK {
        0
    } else {
        libc::O_NOFOLLOW
    };
    let fd = match open_at(dir.fd.as_raw_fd(), &name, flags | nofollow, 0) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(libc::ENXIO) => {
            return Err(Error::Local(format!(
                "{} is a FIFO that no process reads; start its reader first",
                path.display()
            )))
        }
        Err(e) => return Err(Error::io(path, e)),
    };
    let opened = fstat(fd.as_fd()).map_err(|e| Error::io(path, e))?;
    if opened.st_dev != followed.st_dev || opened.st_ino != followed.st_ino {
        return refuse("something that changed while it was opened");
    }
    if followed_kind == libc::S_IFCHR {
        let null = opened.st_rdev == libc::makedev(1, 3);
        let terminal = unsafe { libc::isatty(fd.as_raw_fd()) } == 1;
        if !null && !terminal {
            return refuse("a device");
        }
    }
    // Blocking from here on: the reader sets the pace.
    let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
    if flags >= 0 {
        unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags & !libc::O_NONBLOCK) };
    }
    Ok(Target::Stream(File::from(fd)))
}

/// "a symbolic link", "a FIFO of uid 1000", for messages.
fn describe(stat: &libc::stat) -> String {
    let kind = match stat.st_mode & libc::S_IFMT {
        libc::S_IFREG => "a regular file",
        libc::S_IFDIR => "a directory",
        libc::S_IFLNK => "a symbolic link",
        libc::S_IFIFO => "a FIFO",
        libc::S_IFSOCK => "a socket",
        libc::S_IFCHR => "a character device",
        libc::S_IFBLK => "a block device",
        _ => "something unknown",
    };
    if stat.st_uid == euid() {
        kind.to_string()
    } else {
        format!("{kind} of uid {}", stat.st_uid)
    }
}

/// A file written front to back whose writeback is started as it grows (see `Writeback`),
/// for files that are synced before they are renamed into place.
pub struct EarlyWriteback<'a> {
    file: &'a File,
    writeback: Writeback,
}

impl<'a> EarlyWriteback<'a> {
    pub fn new(file: &'a File) -> EarlyWriteback<'a> {
        EarlyWriteback {
            file,
            writeback: Writeback::default(),
        }
    }
}

impl io::Write for EarlyWriteback<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = (&mut &*self.file).write(buf)?;
        self.writeback.wrote(self.file, n as u64);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Counts the bytes written into one file, by one thread or several, and starts their
/// writeback (`start_writeback`) every 8 MiB: the pages go to disk while the layers are still
/// being inflated and hashed, not all at the final `fsync`. (A usize: ARMv5 has no 64-bit
/// atomics.)
#[derive(Default)]
pub struct Writeback {
    unflushed: std::sync::atomic::AtomicUsize,
}

impl Writeback {
    const STEP: usize = 8 << 20;

    pub fn wrote(&self, file: &File, n: u64) {
        use std::sync::atomic::Ordering::Relaxed;
        let n = usize::try_from(n).unwrap_or(usize::MAX);
        // Racing threads may lose a count between the add and the reset: advice, not accounting.
        if self.unflushed.fetch_add(n, Relaxed).saturating_add(n) >= Self::STEP {
            self.unflushed.store(0, Relaxed);
            start_writeback(file);
        }
    }
}

/// Asks the kernel to start writing `file`'s dirty pages to disk now, without waiting for
/// them: the final `fsync` of a file written over seconds then finds little left, and the
/// device works while the CPU goes on. Advice only: an error changes nothing.
fn start_writeback(file: &File) {
    // SAFETY: a valid descriptor; the call only starts I/O on it.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE);
    }
}

/// The file-creation mask, read once without changing it where `/proc` says it (Linux 4.7 and
/// later); else set and restored, once, before any file is made.
pub fn umask() -> u32 {
    static UMASK: OnceLock<u32> = OnceLock::new();
    *UMASK.get_or_init(|| {
        let from_proc = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("Umask:"))
                    .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
            });
        from_proc.unwrap_or_else(|| {
            let mask = unsafe { libc::umask(0o022) };
            unsafe { libc::umask(mask) };
            mask as u32
        })
    })
}

pub fn euid() -> u32 {
    unsafe { libc::geteuid() }
}

fn set_mode(fd: BorrowedFd, mode: u32) -> io::Result<()> {
    cvt(unsafe { libc::fchmod(fd.as_raw_fd(), mode as libc::mode_t) }).map(drop)
}

fn c_name(name: &OsStr) -> io::Result<CString> {
    CString::new(name.as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a file name"))
}

fn open_at(dir: libc::c_int, name: &OsStr, flags: libc::c_int, mode: u32) -> io::Result<OwnedFd> {
    let cname = c_name(name)?;
    let fd = cvt(unsafe { libc::openat(dir, cname.as_ptr(), flags, mode as libc::c_uint) })?;
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn lstat_at(dir: BorrowedFd, name: &CString) -> io::Result<libc::stat> {
    let mut stat: libc::stat = unsafe { std::mem::zeroed() };
    cvt(unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            name.as_ptr(),
            &mut stat,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })?;
    Ok(stat)
}

fn stat_path(path: &Path) -> io::Result<libc::stat> {
    let cpath = c_name(path.as_os_str())?;
    let mut stat: libc::stat = unsafe { std::mem::zeroed() };
    cvt(unsafe { libc::stat(cpath.as_ptr(), &mut stat) })?;
    Ok(stat)
}

/// Whether `fd` is the null device (`/dev/null` by any name, or standard output sent there):
/// what is written to it goes nowhere, so there is nothing to write behind.
pub fn discards(fd: BorrowedFd) -> bool {
    fstat(fd).is_ok_and(|stat| {
        stat.st_mode & libc::S_IFMT == libc::S_IFCHR && stat.st_rdev == libc::makedev(1, 3)
    })
}

fn fstat(fd: BorrowedFd) -> io::Result<libc::stat> {
    let mut stat: libc::stat = unsafe { std::mem::zeroed() };
    cvt(unsafe { libc::fstat(fd.as_raw_fd(), &mut stat) })?;
    Ok(stat)
}

fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("dockersave-outfile-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn only_the_null_device_discards() {
        let null = File::options().write(true).open("/dev/null").unwrap();
        assert!(discards(null.as_fd()));
        let dir = scratch("discards");
        let file = File::create(dir.join("file")).unwrap();
        assert!(!discards(file.as_fd()));
        let zero = File::open("/dev/zero").unwrap();
        assert!(!discards(zero.as_fd()), "another character device");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_new_file_is_private_until_it_is_renamed_into_place() {
        let dir = scratch("new");
        let dest = dir.join("out.tar");
        let mut file = NewFile::create(&dest).unwrap();
        let temp = file.path();
        assert_eq!(
            std::fs::metadata(&temp).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(!dest.exists());
        file.file_mut().write_all(b"archive").unwrap();
        file.persist().unwrap();
        assert!(!temp.exists());
        assert_eq!(std::fs::read(&dest).unwrap(), b"archive");
        assert_eq!(
            std::fs::metadata(&dest).unwrap().permissions().mode() & 0o777,
            0o666 & !umask()
        );
        // Dropped before persist: nothing is left.
        let dropped = NewFile::create(&dir.join("other")).unwrap();
        let temp = dropped.path();
        drop(dropped);
        assert!(!temp.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_link_planted_at_the_partial_name_is_refused_not_followed() {
        let dir = scratch("planted");
        let victim = dir.join("victim");
        std::fs::write(&victim, b"keep").unwrap();
        let dest = dir.join("out.tar");
        let planted = partial::temp_name(&dest);
        std::os::unix::fs::symlink(&victim, &planted).unwrap();
        let error = NewFile::create(&dest).err().expect("refused").to_string();
        assert!(
            error.contains("symbolic link") && error.contains("remove it"),
            "{error}"
        );
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
        // A directory's partial name likewise.
        let planted = partial::temp_name(&dir.join("tree"));
        std::os::unix::fs::symlink(&dir, &planted).unwrap();
        assert!(NewDir::create(&dir.join("tree"), Undo::Remove).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn what_a_dead_process_of_the_same_number_left_is_replaced() {
        let dir = scratch("stale");
        let dest = dir.join("out.tar");
        std::fs::write(partial::temp_name(&dest), b"stale").unwrap();
        let file = NewFile::create(&dest).unwrap();
        assert_eq!(file.file().metadata().unwrap().len(), 0);
        drop(file);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_final_name_is_replaced_only_when_it_is_a_regular_file() {
        let dir = scratch("final");
        let dest = dir.join("out.tar");
        std::fs::write(&dest, b"old").unwrap();
        let file = NewFile::create(&dest).unwrap();
        file.persist().unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"");
        std::fs::remove_file(&dest).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", &dest).unwrap();
        assert!(matches!(target(&dest), Err(Error::Local(_))));
        let file = NewFile::create(&dest).unwrap();
        let error = file.persist().expect_err("refused").to_string();
        assert!(error.contains("symbolic link"), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn outputs_that_are_no_regular_file() {
        let dir = scratch("targets");
        assert!(matches!(target(Path::new("-")), Ok(Target::Stdout)));
        assert!(matches!(target(&dir.join("new")), Ok(Target::File)));
        assert!(matches!(
            target(Path::new("/dev/null")),
            Ok(Target::Stream(_))
        ));
        assert!(matches!(target(&dir), Err(Error::Local(_))));
        // A FIFO of this user's with no reader: an error at once, not a hang.
        let fifo = dir.join("pipe");
        let c = CString::new(fifo.as_os_str().as_bytes()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let error = target(&fifo).err().expect("no reader").to_string();
        assert!(error.contains("no process reads"), "{error}");
        // Another user's FIFO: refused whoever reads it.
        if euid() == 0 {
            std::os::unix::fs::chown(&fifo, Some(65534), None).unwrap();
            let error = target(&fifo).err().expect("refused").to_string();
            assert!(error.contains("a FIFO of uid 65534"), "{error}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
