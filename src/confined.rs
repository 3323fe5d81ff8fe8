//! A directory that nothing written through this module can leave: every create, link, chmod
//! and delete of `--rootfs` goes through `Root`.
//!
//! Paths are walked one component at a time from an open handle of the root with
//! `O_NOFOLLOW`, never handed to the kernel whole, so no symlink is followed by accident, on
//! any kernel (routers run kernels without `openat2(RESOLVE_IN_ROOT)`). A symlink met in a
//! *parent* position is read and followed by this code as if the root were `/` — as Docker
//! (which applies layers in a chroot) and umoci (securejoin) follow it: an absolute target
//! starts again at the root, and `..` at the root stays there. A chain of more than 40 links
//! is refused (`Fault::Escape`). The last component of a path is never followed: it is what
//! gets created, replaced or removed, and `lstat`-style calls look at it. With `protect_git`,
//! no walk passes through or ends at a name `.git`, so the repository of `--git` is out of the
//! image's reach whatever its symlinks say. Trees are removed without recursion and with one
//! open directory at a time, whatever their depth. This module knows nothing of layers or
//! whiteouts; it must never take a path as a `&Path` of the host.

use crate::layer_tar::{is_component, Time, TreePath};
use std::collections::VecDeque;
use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::Path;

/// Why an operation under the root failed.
#[derive(Debug)]
pub enum Fault {
    /// Following the path would leave the root: the reason, for the user.
    Escape(String),
    Io(io::Error),
}

impl From<io::Error> for Fault {
    fn from(e: io::Error) -> Fault {
        Fault::Io(e)
    }
}

/// How many symlinks one path may pass through, as the kernel allows.
const MAX_LINKS: usize = 40;

pub struct Root {
    fd: OwnedFd,
    /// Its (device, inode): where `..` must lead back to from a directory one level down.
    id: (u64, u64),
    protect_git: bool,
}

impl Root {
    /// Opens `dir`, which must be a directory (a symlink to one is refused).
    pub fn open(dir: &Path) -> io::Result<Root> {
        let path = CString::new(dir.as_os_str().as_encoded_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))?;
        let fd = cvt(unsafe {
            libc::open(
                path.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            )
        })?;
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Root {
            id: identity(fd.as_fd())?,
            fd,
            protect_git: false,
        })
    }

    /// From now on no path may pass through or end at a component named `.git` (in any case:
    /// some filesystems fold it), whatever symlinks lead there: `--git`'s repository.
    pub fn protect_git(&mut self) {
        self.protect_git = true;
    }

    /// Refuses `name` as a component of a path under this root, with `--git`.
    pub fn check_name(&self, name: &[u8]) -> Result<(), Fault> {
        if self.protect_git && name.eq_ignore_ascii_case(b".git") {
            return Err(Fault::Escape(
                "with --git the repository is /.git, and the image may not reach any path named .git (git would take it for a repository)".into(),
            ));
        }
        Ok(())
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Whether `dir` is the root itself (by device and inode: a path through a symlink such as
    /// `a -> .` can lead there under another name).
    pub fn is_root(&self, dir: BorrowedFd) -> io::Result<bool> {
        Ok(identity(dir)? == self.id)
    }

    /// Opens the directory `path`, creating missing components (mode 0755, like Docker) when
    /// `create`. Symlinks on the way are followed with the root as `/`.
    pub fn open_dir(&self, path: &TreePath, create: bool) -> Result<OwnedFd, Fault> {
        // Components still to walk; a symlink's target is pushed in front.
        let mut todo: VecDeque<Vec<u8>> = path.components().map(<[u8]>::to_vec).collect();
        // The real directories from the root to `current`: name and (device, inode), so `..`
        // can go up one level and check it arrived where it came from.
        let mut resolved: Vec<(Vec<u8>, (u64, u64))> = Vec::new();
        let mut current = dup(self.fd.as_fd())?;
        let mut links = 0;
        while let Some(name) = todo.pop_front() {
            match name.as_slice() {
                b"" | b"." => continue,
                b".." => {
                    // At the root, `..` is the root, as in a chroot.
                    if resolved.pop().is_some() {
                        let up = open_dir_at(current.as_fd(), c"..")?;
                        let expected = resolved.last().map_or(self.id, |(_, id)| *id);
                        if identity(up.as_fd())? != expected {
                            return Err(Fault::Io(io::Error::other(
                                "the directory was moved while being written",
                            )));
                        }
                        current = up;
                    }
                    continue;
                }
                _ => {}
            }
            self.check_name(&name)?;
            let cname = cstring(&name)?;
            match open_dir_at(current.as_fd(), &cname) {
                Ok(fd) => {
                    current = fd;
                    resolved.push((name, identity(current.as_fd())?));
                }
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) && create => {
                    match cvt(unsafe { libc::mkdirat(current.as_raw_fd(), cname.as_ptr(), 0o755) })
                    {
                        Ok(_) => {}
                        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
                        Err(e) => return Err(e.into()),
                    }
                    current = open_dir_at(current.as_fd(), &cname)?;
                    resolved.push((name, identity(current.as_fd())?));
                }
                Err(e)
                    if e.raw_os_error() == Some(libc::ELOOP)
                        || e.raw_os_error() == Some(libc::ENOTDIR) =>
                {
                    let stat = lstat_at(current.as_fd(), &cname)?;
                    if stat.st_mode & libc::S_IFMT != libc::S_IFLNK {
                        let shown = shown_path(&resolved, &name);
                        return Err(Fault::Io(io::Error::new(
                            io::ErrorKind::NotADirectory,
                            format!("{shown} is not a directory"),
                        )));
                    }
                    links += 1;
                    if links > MAX_LINKS {
                        return Err(Fault::Escape(format!(
                            "more than {MAX_LINKS} symlinks on its path (a loop?)"
                        )));
                    }
                    let target = read_link_at(current.as_fd(), &cname)?;
                    if target.first() == Some(&b'/') {
                        // Absolute: from the root of the tree, not of the host.
                        resolved.clear();
                        current = dup(self.fd.as_fd())?;
                    }
                    // Otherwise relative to the directory holding the link, `current`.
                    for component in target.split(|&b| b == b'/').rev() {
                        todo.push_front(component.to_vec());
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(current)
    }

    /// Opens the directory `path` itself without following a symlink in its last component;
    /// `None` if it is gone or no longer a directory.
    pub fn open_dir_exact(&self, path: &TreePath) -> Result<Option<OwnedFd>, Fault> {
        let Some((parent, name)) = path.split_last() else {
            return Ok(Some(dup(self.fd.as_fd())?));
        };
        let parent = match self.open_dir(&parent, false) {
            Ok(fd) => fd,
            Err(Fault::Io(e)) if is_gone(&e) => return Ok(None),
            Err(e) => return Err(e),
        };
        match open_dir_at(parent.as_fd(), &cstring(name)?) {
            Ok(fd) => Ok(Some(fd)),
            Err(e) if is_gone(&e) || e.raw_os_error() == Some(libc::ELOOP) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

/// Whether an error means the path is not there (or not a directory any more).
pub fn is_gone(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR))
        || e.kind() == io::ErrorKind::NotADirectory
}

fn shown_path(resolved: &[(Vec<u8>, (u64, u64))], name: &[u8]) -> String {
    let mut path = String::new();
    for component in resolved.iter().map(|(n, _)| n.as_slice()).chain([name]) {
        path.push('/');
        path.push_str(&String::from_utf8_lossy(component));
    }
    path
}

fn cstring(name: &[u8]) -> io::Result<CString> {
    CString::new(name).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a name"))
}

/// One valid component as a C string; anything else is a bug in the caller.
fn component(name: &[u8]) -> io::Result<CString> {
    if !is_component(name) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{:?} is not a file name", String::from_utf8_lossy(name)),
        ));
    }
    cstring(name)
}

fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn dup(fd: BorrowedFd) -> io::Result<OwnedFd> {
    fd.try_clone_to_owned()
}

fn open_dir_at(dir: BorrowedFd, name: &std::ffi::CStr) -> io::Result<OwnedFd> {
    let fd = cvt(unsafe {
        libc::openat(
            dir.as_raw_fd(),
            name.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    })?;
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

fn fstat(fd: BorrowedFd) -> io::Result<libc::stat> {
    let mut stat: libc::stat = unsafe { std::mem::zeroed() };
    cvt(unsafe { libc::fstat(fd.as_raw_fd(), &mut stat) })?;
    Ok(stat)
}

/// (device, inode) of an open file.
fn identity(fd: BorrowedFd) -> io::Result<(u64, u64)> {
    let stat = fstat(fd)?;
    #[allow(clippy::unnecessary_cast)] // dev_t and ino_t differ in width across targets
    Ok((stat.st_dev as u64, stat.st_ino as u64))
}

fn read_link_at(dir: BorrowedFd, name: &CString) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; 4096];
    let n = unsafe {
        libc::readlinkat(
            dir.as_raw_fd(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    buf.truncate(n as usize);
    Ok(buf)
}

/// What is at `dir/name` without following it: its type bits, or `None` if nothing.
pub fn kind_at(dir: BorrowedFd, name: &[u8]) -> io::Result<Option<libc::mode_t>> {
    match lstat_at(dir, &component(name)?) {
        Ok(stat) => Ok(Some(stat.st_mode & libc::S_IFMT)),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Removes `dir/name` and, for a directory, everything below it, following no symlink.
/// Read-only directories on the way are made writable first (needed without root). Nothing
/// there is fine.
pub fn remove_all_at(dir: BorrowedFd, name: &[u8]) -> io::Result<()> {
    let cname = component(name)?;
    match kind_at(dir, name)? {
        None => Ok(()),
        Some(libc::S_IFDIR) => {
            let sub = open_dir_at(dir, &cname)?;
            prune::<()>(sub, None, &mut |_, _, _| Visit::Remove)?;
            cvt(unsafe { libc::unlinkat(dir.as_raw_fd(), cname.as_ptr(), libc::AT_REMOVEDIR) })?;
            Ok(())
        }
        Some(_) => {
            cvt(unsafe { libc::unlinkat(dir.as_raw_fd(), cname.as_ptr(), 0) })?;
            Ok(())
        }
    }
}

/// How `prune` asks what to do: `decide(token of the directory, name, is a directory)`.
pub type Decide<'a, T> = dyn FnMut(&T, &[u8], bool) -> Visit<T> + 'a;

/// What `prune` does with one entry of a directory it walks.
pub enum Visit<T> {
    Keep,
    /// Removed, with everything below it for a directory.
    Remove,
    /// For a directory: kept, and its entries decided on too, each given `T`.
    Enter(T),
}

/// Walks the tree below the directory `top` depth first, asking `decide(token, name, is_dir)`
/// for each entry of a directory entered with `token` (`top` with `token`; `None`: remove
/// everything below `top`). Directories are made writable as they are entered.
///
/// No recursion and one open directory at a time, whatever the depth: each level keeps only
/// the names of the directories still to visit and its (device, inode), and the walk goes back
/// up through `..`, checked against that, so a tree 2,000 levels deep costs neither 2,000
/// descriptors nor 2,000 stack frames.
pub fn prune<T>(top: OwnedFd, token: Option<T>, decide: &mut Decide<T>) -> io::Result<()> {
    struct Level<T> {
        /// Its name in the level above (none for `top`).
        name: Option<CString>,
        id: (u64, u64),
        removing: bool,
        /// Subdirectories still to enter, with their token (`None`: remove them).
        todo: Vec<(Vec<u8>, Option<T>)>,
    }
    fn enter<T>(
        fd: BorrowedFd,
        name: Option<CString>,
        token: Option<T>,
        decide: &mut Decide<T>,
    ) -> io::Result<Level<T>> {
        make_writable(fd)?;
        let mut todo = Vec::new();
        for child in list_dir(fd)? {
            let is_dir = kind_at(fd, &child)? == Some(libc::S_IFDIR);
            let visit = match &token {
                None => Visit::Remove,
                Some(token) => decide(token, &child, is_dir),
            };
            match (visit, is_dir) {
                (Visit::Keep, _) | (Visit::Enter(_), false) => {}
                (Visit::Remove, true) => todo.push((child, None)),
                (Visit::Enter(sub), true) => todo.push((child, Some(sub))),
                (Visit::Remove, false) => {
                    let cname = component(&child)?;
                    cvt(unsafe { libc::unlinkat(fd.as_raw_fd(), cname.as_ptr(), 0) })?;
                }
            }
        }
        Ok(Level {
            name,
            id: identity(fd)?,
            removing: token.is_none(),
            todo,
        })
    }
    let mut current = top;
    let mut levels = vec![enter(current.as_fd(), None, token, decide)?];
    loop {
        let level = levels.last_mut().expect("the top level is popped last");
        if let Some((name, token)) = level.todo.pop() {
            let cname = component(&name)?;
            match open_dir_at(current.as_fd(), &cname) {
                Ok(sub) => {
                    current = sub;
                    let level = enter(current.as_fd(), Some(cname), token, decide)?;
                    levels.push(level);
                }
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
                Err(e) => return Err(e),
            }
            continue;
        }
        let done = levels.pop().expect("checked above");
        let (Some(name), Some(parent)) = (done.name, levels.last()) else {
            return Ok(());
        };
        let up = open_dir_at(current.as_fd(), c"..")?;
        if identity(up.as_fd())? != parent.id {
            return Err(io::Error::other(
                "a directory was moved while its tree was being removed",
            ));
        }
        current = up;
        if done.removing {
            cvt(unsafe { libc::unlinkat(current.as_raw_fd(), name.as_ptr(), libc::AT_REMOVEDIR) })?;
        }
    }
}

/// The names in a directory, `.` and `..` left out.
pub fn list_dir(dir: BorrowedFd) -> io::Result<Vec<Vec<u8>>> {
    let fd = dup(dir)?;
    // fdopendir takes the descriptor; rewind, as the duplicate shares the offset.
    let stream = unsafe { libc::fdopendir(fd.as_raw_fd()) };
    if stream.is_null() {
        return Err(io::Error::last_os_error());
    }
    std::mem::forget(fd);
    unsafe { libc::rewinddir(stream) };
    let mut names = Vec::new();
    loop {
        // readdir signals errors only through errno.
        unsafe { *libc::__errno_location() = 0 };
        let entry = unsafe { libc::readdir(stream) };
        if entry.is_null() {
            let errno = io::Error::last_os_error();
            unsafe { libc::closedir(stream) };
            if errno.raw_os_error().unwrap_or(0) != 0 {
                return Err(errno);
            }
            return Ok(names);
        }
        let name = unsafe { std::ffi::CStr::from_ptr((*entry).d_name.as_ptr()) }.to_bytes();
        if name != b"." && name != b".." {
            names.push(name.to_vec());
        }
    }
}

/// Gives the owner write and search permission on a directory (its final mode is set later).
pub fn make_writable(dir: BorrowedFd) -> io::Result<()> {
    let mode = fstat(dir)?.st_mode & 0o7777;
    if mode & 0o700 != 0o700 {
        cvt(unsafe { libc::fchmod(dir.as_raw_fd(), mode | 0o700) })?;
    }
    Ok(())
}

/// Clears the way for a new entry at `dir/name`: removes what is there unless it is a
/// directory and `keep_dir`.
fn clear_way(dir: BorrowedFd, name: &[u8], keep_dir: bool) -> io::Result<()> {
    match kind_at(dir, name)? {
        None => Ok(()),
        Some(libc::S_IFDIR) if keep_dir => Ok(()),
        Some(_) => remove_all_at(dir, name),
    }
}

/// Creates the regular file `dir/name` (replacing what is there), mode 0600 until the caller
/// sets the real one.
pub fn create_file(dir: BorrowedFd, name: &[u8]) -> io::Result<File> {
    let cname = component(name)?;
    let create = || {
        cvt(unsafe {
            libc::openat(
                dir.as_raw_fd(),
                cname.as_ptr(),
                libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                0o600 as libc::c_uint,
            )
        })
    };
    // Usually nothing is there: try first, clear the way only if something is.
    let fd = match create() {
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
            clear_way(dir, name, false)?;
            create()?
        }
        other => other?,
    };
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// The directory `dir/name`: kept if it is one, else created (mode 0700 until the caller sets
/// the real one) in place of whatever is there.
pub fn make_dir(dir: BorrowedFd, name: &[u8]) -> io::Result<OwnedFd> {
    clear_way(dir, name, true)?;
    let cname = component(name)?;
    match cvt(unsafe { libc::mkdirat(dir.as_raw_fd(), cname.as_ptr(), 0o700) }) {
        Ok(_) => {}
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
        Err(e) => return Err(e),
    }
    open_dir_at(dir, &cname)
}

pub fn symlink_at(target: &[u8], dir: BorrowedFd, name: &[u8]) -> io::Result<()> {
    clear_way(dir, name, false)?;
    let (ctarget, cname) = (cstring(target)?, component(name)?);
    cvt(unsafe { libc::symlinkat(ctarget.as_ptr(), dir.as_raw_fd(), cname.as_ptr()) })?;
    Ok(())
}

/// Hard-links `from_dir/from_name` (not followed if it is a symlink) as `dir/name`.
pub fn link_at(
    from_dir: BorrowedFd,
    from_name: &[u8],
    dir: BorrowedFd,
    name: &[u8],
) -> io::Result<()> {
    let (cfrom, cname) = (component(from_name)?, component(name)?);
    let source = lstat_at(from_dir, &cfrom)?;
    if source.st_mode & libc::S_IFMT == libc::S_IFDIR {
        return Err(io::Error::new(
            io::ErrorKind::IsADirectory,
            "a hard link cannot point to a directory",
        ));
    }
    if let Ok(existing) = lstat_at(dir, &cname) {
        if (existing.st_dev, existing.st_ino) == (source.st_dev, source.st_ino) {
            return Ok(());
        }
    }
    clear_way(dir, name, false)?;
    cvt(unsafe {
        libc::linkat(
            from_dir.as_raw_fd(),
            cfrom.as_ptr(),
            dir.as_raw_fd(),
            cname.as_ptr(),
            0,
        )
    })?;
    Ok(())
}

/// Creates a FIFO with exactly `mode`. It is opened (without blocking, and without following
/// anything) to set the mode, since `mkfifo` applies the umask.
pub fn make_fifo(dir: BorrowedFd, name: &[u8], mode: u32) -> io::Result<OwnedFd> {
    clear_way(dir, name, false)?;
    let cname = component(name)?;
    cvt(unsafe { libc::mknodat(dir.as_raw_fd(), cname.as_ptr(), libc::S_IFIFO | 0o600, 0) })?;
    let fd = cvt(unsafe {
        libc::openat(
            dir.as_raw_fd(),
            cname.as_ptr(),
            libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    })?;
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    if fstat(fd.as_fd())?.st_mode & libc::S_IFMT != libc::S_IFIFO {
        return Err(io::Error::other(
            "the new FIFO was replaced while being created",
        ));
    }
    set_mode(fd.as_fd(), mode)?;
    Ok(fd)
}

/// Creates a character or block device node (root only) with exactly `mode`.
pub fn make_device(
    dir: BorrowedFd,
    name: &[u8],
    block: bool,
    mode: u32,
    major: u32,
    minor: u32,
) -> io::Result<()> {
    clear_way(dir, name, false)?;
    let cname = component(name)?;
    let kind = if block { libc::S_IFBLK } else { libc::S_IFCHR };
    let dev = libc::makedev(major, minor);
    cvt(unsafe { libc::mknodat(dir.as_raw_fd(), cname.as_ptr(), kind | 0o600, dev) })?;
    // Opening a device would call its driver, so the mode is set by name, after checking that
    // the name still holds the node just made (only a concurrent writer inside the root could
    // change that, and the check narrows it to the node itself).
    let stat = lstat_at(dir, &cname)?;
    if stat.st_mode & libc::S_IFMT != kind || stat.st_rdev != dev {
        return Err(io::Error::other(
            "the new device node was replaced while being created",
        ));
    }
    cvt(unsafe { libc::fchmodat(dir.as_raw_fd(), cname.as_ptr(), mode & 0o7777, 0) })?;
    Ok(())
}

pub fn set_mode(fd: BorrowedFd, mode: u32) -> io::Result<()> {
    cvt(unsafe { libc::fchmod(fd.as_raw_fd(), (mode & 0o7777) as libc::mode_t) })?;
    Ok(())
}

pub fn set_owner(fd: BorrowedFd, uid: u32, gid: u32) -> io::Result<()> {
    cvt(unsafe { libc::fchown(fd.as_raw_fd(), uid, gid) })?;
    Ok(())
}

/// `lchown`: the owner of `dir/name` itself, a symlink included.
pub fn set_owner_at(dir: BorrowedFd, name: &[u8], uid: u32, gid: u32) -> io::Result<()> {
    let cname = component(name)?;
    cvt(unsafe {
        libc::fchownat(
            dir.as_raw_fd(),
            cname.as_ptr(),
            uid,
            gid,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })?;
    Ok(())
}

// libc marks `time_t` deprecated on musl because it will follow musl 1.2's 64-bit time_t on
// 32-bit targets; until then a 32-bit target clamps times past 2038, which is what we want.
#[allow(deprecated)]
fn timespecs(mtime: Time) -> [libc::timespec; 2] {
    let seconds = libc::time_t::try_from(mtime.seconds).unwrap_or(if mtime.seconds < 0 {
        libc::time_t::MIN
    } else {
        libc::time_t::MAX
    });
    let time = libc::timespec {
        tv_sec: seconds,
        // c_long is 32 bits on the ARM targets, where no u32 converts; below 10^9 always fits.
        tv_nsec: mtime.nanos.min(999_999_999) as libc::c_long,
    };
    [time, time]
}

pub fn set_mtime(fd: BorrowedFd, mtime: Time) -> io::Result<()> {
    let times = timespecs(mtime);
    cvt(unsafe { libc::futimens(fd.as_raw_fd(), times.as_ptr()) })?;
    Ok(())
}

/// Access and modification time of `dir/name` itself, a symlink included.
pub fn set_mtime_at(dir: BorrowedFd, name: &[u8], mtime: Time) -> io::Result<()> {
    let cname = component(name)?;
    let times = timespecs(mtime);
    cvt(unsafe {
        libc::utimensat(
            dir.as_raw_fd(),
            cname.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })?;
    Ok(())
}

pub fn set_xattr(fd: BorrowedFd, name: &[u8], value: &[u8]) -> io::Result<()> {
    let cname = cstring(name)?;
    cvt(unsafe {
        libc::fsetxattr(
            fd.as_raw_fd(),
            cname.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    })?;
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;
    use std::path::PathBuf;

    /// A fresh directory for a test, with an empty `root/` in it.
    pub(crate) fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("dockersave-confined-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("root")).unwrap();
        dir
    }

    fn path(text: &str) -> TreePath {
        TreePath::parse(text.as_bytes()).unwrap()
    }

    #[test]
    fn follows_symlinks_with_the_root_as_slash() {
        let dir = scratch("links");
        let root_path = dir.join("root");
        fs::create_dir_all(root_path.join("usr/lib")).unwrap();
        fs::create_dir_all(dir.join("outside")).unwrap();
        symlink("usr/lib", root_path.join("lib")).unwrap();
        symlink("../../lib", root_path.join("usr/lib/up")).unwrap();
        symlink("/", root_path.join("slash")).unwrap();
        symlink("..", root_path.join("dotdot")).unwrap();
        symlink("../outside", root_path.join("sibling")).unwrap();
        symlink("chain2", root_path.join("chain1")).unwrap();
        symlink("usr/../..", root_path.join("chain2")).unwrap();
        symlink("/usr/lib", root_path.join("absolute")).unwrap();
        symlink("loop", root_path.join("loop")).unwrap();
        fs::write(root_path.join("file"), b"").unwrap();
        let root = Root::open(&root_path).unwrap();

        // lib → usr/lib; usr/lib/up → ../../lib → usr/lib again.
        let fd = root.open_dir(&path("lib/up/up"), false).unwrap();
        drop(create_file(fd.as_fd(), b"marker").unwrap());
        assert!(root_path.join("usr/lib/marker").is_file());

        // Absolute targets start at the root, `..` stops there: as in a chroot.
        for (p, lands) in [
            ("slash/tmp", "tmp"),
            ("dotdot/x", "x"),
            ("sibling", "outside"),
            ("chain1/y", "y"),
            ("absolute/z", "usr/lib/z"),
        ] {
            let fd = root.open_dir(&path(p), true).unwrap();
            drop(create_file(fd.as_fd(), b"here").unwrap());
            assert!(root_path.join(lands).join("here").is_file(), "{p}");
        }
        match root.open_dir(&path("loop/x"), true) {
            Err(Fault::Escape(reason)) => assert!(reason.contains("symlinks"), "{reason}"),
            other => panic!("loop: {other:?}"),
        }
        assert!(matches!(
            root.open_dir(&path("file/x"), true),
            Err(Fault::Io(_))
        ));
        // Missing directories are made, inside.
        root.open_dir(&path("new/deep/dir"), true).unwrap();
        assert!(root_path.join("new/deep/dir").is_dir());
        assert_eq!(fs::read_dir(dir.join("outside")).unwrap().count(), 0);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn protects_the_repository_whatever_leads_there() {
        let dir = scratch("protect");
        let root_path = dir.join("root");
        fs::create_dir_all(root_path.join(".git")).unwrap();
        symlink(".git", root_path.join("x")).unwrap();
        symlink(".", root_path.join("dot")).unwrap();
        symlink("/.GIT", root_path.join("folded")).unwrap();
        let mut root = Root::open(&root_path).unwrap();
        root.open_dir(&path("x"), false).unwrap();
        root.protect_git();
        for p in ["x", "dot/.git", "folded/info", ".git/hooks", "a/.git/b"] {
            assert!(
                matches!(root.open_dir(&path(p), true), Err(Fault::Escape(_))),
                "{p}"
            );
        }
        assert!(root.check_name(b".git").is_err());
        assert!(root.check_name(b".gitignore").is_ok());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn removes_trees_deeper_than_the_descriptor_limit() {
        let dir = scratch("deep");
        let root_path = dir.join("root");
        let root = Root::open(&root_path).unwrap();
        // 3,000 levels (over the usual 1,024 descriptors), read-only ones among them.
        let mut fd = root.open_dir(&TreePath::root(), false).unwrap();
        for level in 0..3000 {
            let sub = make_dir(fd.as_fd(), b"d").unwrap();
            drop(create_file(sub.as_fd(), b"f").unwrap());
            if level % 500 == 0 {
                set_mode(fd.as_fd(), 0o555).unwrap();
            }
            fd = sub;
        }
        drop(fd);
        fs::write(dir.join("beside"), b"keep").unwrap();
        remove_all_at(root.fd(), b"d").unwrap();
        assert_eq!(list_dir(root.fd()).unwrap().len(), 0);
        assert_eq!(fs::read(dir.join("beside")).unwrap(), b"keep");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn replaces_and_removes_without_following() {
        let dir = scratch("replace");
        let root_path = dir.join("root");
        fs::write(dir.join("victim"), b"keep").unwrap();
        symlink(dir.join("victim"), root_path.join("link")).unwrap();
        let root = Root::open(&root_path).unwrap();
        // Creating a file where a symlink is replaces the symlink, not its target.
        drop(create_file(root.fd(), b"link").unwrap());
        assert_eq!(fs::read(dir.join("victim")).unwrap(), b"keep");
        assert!(!fs::symlink_metadata(root_path.join("link"))
            .unwrap()
            .is_symlink());
        // Removing a directory tree does not follow the symlinks inside it.
        fs::create_dir_all(root_path.join("tree/sub")).unwrap();
        symlink(dir.join("victim"), root_path.join("tree/sub/l")).unwrap();
        symlink(&dir, root_path.join("tree/d")).unwrap();
        remove_all_at(root.fd(), b"tree").unwrap();
        assert!(!root_path.join("tree").exists());
        assert_eq!(fs::read(dir.join("victim")).unwrap(), b"keep");
        // Names are single components.
        assert!(create_file(root.fd(), b"../x").is_err());
        assert!(create_file(root.fd(), b"..").is_err());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn links_fifos_and_modes() {
        let dir = scratch("kinds");
        let root_path = dir.join("root");
        let root = Root::open(&root_path).unwrap();
        let mut file = create_file(root.fd(), b"f").unwrap();
        io::Write::write_all(&mut file, b"data").unwrap();
        set_mode(file.as_fd(), 0o4755).unwrap();
        link_at(root.fd(), b"f", root.fd(), b"hl").unwrap();
        link_at(root.fd(), b"f", root.fd(), b"hl").unwrap();
        let fifo = make_fifo(root.fd(), b"p", 0o622).unwrap();
        drop(fifo);
        use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
        let meta = fs::metadata(root_path.join("hl")).unwrap();
        assert_eq!(meta.permissions().mode() & 0o7777, 0o4755);
        assert_eq!(meta.nlink(), 2);
        let fifo = fs::symlink_metadata(root_path.join("p")).unwrap();
        assert!(fifo.file_type().is_fifo());
        assert_eq!(fifo.permissions().mode() & 0o7777, 0o622);
        let sub = make_dir(root.fd(), b"d").unwrap();
        assert!(link_at(root.fd(), b"d", root.fd(), b"dl").is_err());
        symlink_at(b"/etc/passwd", sub.as_fd(), b"s").unwrap();
        set_mtime_at(sub.as_fd(), b"s", Time::at(1234)).unwrap();
        assert_eq!(
            fs::symlink_metadata(root_path.join("d/s")).unwrap().mtime(),
            1234
        );
        let mut names = list_dir(root.fd()).unwrap();
        names.sort();
        assert_eq!(names, [&b"d"[..], b"f", b"hl", b"p"]);
        fs::remove_dir_all(&dir).unwrap();
    }
}
