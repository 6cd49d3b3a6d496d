//! The restore target, confined: every directory, file, link and special is
//! created relative to a directory descriptor, and no operation follows a
//! symlink found in the target.
//!
//! A target may hold anything before a restore starts: a symlink where the
//! snapshot has a directory (`home/u/docs -> /elsewhere`), a symlink or a hard
//! link where it has a file. Path-based calls would follow the first and
//! write through the others, so a restore could change files outside the
//! target. Here each directory is opened with `O_NOFOLLOW | O_DIRECTORY`
//! relative to its parent's descriptor, files are created with
//! `O_CREAT | O_EXCL | O_NOFOLLOW`, and whatever stands in the way (not a
//! directory) is unlinked first, never opened. New files start at mode 0600
//! and new directories at 0700, so no other local user can open them before
//! their own mode is set at the end.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rustix::fs::{AtFlags, FileType, Mode, OFlags};

/// Directory descriptors kept open at once; past this the cache is emptied
/// (restores visit directories in runs, so reopening is rare).
const OPEN_DIRS: usize = 256;

/// The target's directories by number (0 is the target itself): where each
/// is, and a bounded cache of open descriptors.
pub(super) struct TargetDirs {
    /// Per directory: its parent's number and its name (none for 0).
    entries: Vec<(u32, Box<[u8]>)>,
    /// Per directory: its path, for messages only.
    paths: Vec<PathBuf>,
    root: Arc<OwnedFd>,
    open: Mutex<HashMap<u32, Arc<OwnedFd>>>,
}

impl TargetDirs {
    /// Opens the target directory (which the caller created or checked).
    pub fn open(target: &Path) -> io::Result<Self> {
        let root = rustix::fs::open(
            target,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(TargetDirs {
            entries: vec![(0, Box::default())],
            paths: vec![target.to_path_buf()],
            root: Arc::new(root),
            open: Mutex::new(HashMap::new()),
        })
    }

    /// How many directories are known.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The path of directory `n` (for messages; never opened by path).
    pub fn path(&self, n: u32) -> &Path {
        &self.paths[n as usize]
    }

    /// The path of `name` in directory `n` (for messages).
    pub fn path_of(&self, n: u32, name: &[u8]) -> PathBuf {
        self.path(n).join(OsStr::from_bytes(name))
    }

    /// Makes `name` in directory `parent` a directory, creating it (0700) or
    /// reusing a directory already there; whatever else stands there (a
    /// symlink, a file) is removed first, never followed, unless
    /// `keep_others` (then it is an error). Returns its number.
    pub fn make_dir(&mut self, parent: u32, name: &[u8], keep_others: bool) -> io::Result<u32> {
        let dir = self.dir(parent)?;
        let created = match rustix::fs::mkdirat(&*dir, name, Mode::from_raw_mode(0o700)) {
            Ok(()) => true,
            Err(rustix::io::Errno::EXIST) => {
                let st = rustix::fs::statat(&*dir, name, AtFlags::SYMLINK_NOFOLLOW)?;
                if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
                    false
                } else if keep_others {
                    return Err(io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        "something else stands where the snapshot has a directory; left as it is (--overwrite never)",
                    ));
                } else {
                    rustix::fs::unlinkat(&*dir, name, AtFlags::empty())?;
                    rustix::fs::mkdirat(&*dir, name, Mode::from_raw_mode(0o700))?;
                    true
                }
            }
            Err(e) => return Err(e.into()),
        };
        let fd = open_dir_at(&dir, name)?;
        let n = u32::try_from(self.entries.len())
            .map_err(|_| io::Error::other("too many directories to restore in one run"))?;
        self.entries.push((parent, name.into()));
        self.paths.push(self.path_of(parent, name));
        if created {
            tracing::trace!("created {}", self.path(n).display());
        }
        self.remember(n, Arc::new(fd));
        Ok(n)
    }

    /// The open descriptor of directory `n`, opened from its parent's
    /// without following links when not cached.
    pub fn dir(&self, n: u32) -> io::Result<Arc<OwnedFd>> {
        if n == 0 {
            return Ok(self.root.clone());
        }
        if let Some(fd) = self.cache().get(&n) {
            return Ok(fd.clone());
        }
        let (parent, name) = &self.entries[n as usize];
        let fd = Arc::new(open_dir_at(&*self.dir(*parent)?, name)?);
        self.remember(n, fd.clone());
        Ok(fd)
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<u32, Arc<OwnedFd>>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn remember(&self, n: u32, fd: Arc<OwnedFd>) {
        let mut cache = self.cache();
        if cache.len() >= OPEN_DIRS {
            cache.clear();
        }
        cache.insert(n, fd);
    }

    /// Opens directory `n` itself, to set its metadata through the descriptor.
    pub fn open_dir_file(&self, n: u32) -> io::Result<File> {
        let dir = self.dir(n)?;
        Ok(File::from(dir.try_clone()?))
    }
}

fn open_dir_at(parent: &OwnedFd, name: &[u8]) -> io::Result<OwnedFd> {
    Ok(rustix::fs::openat(
        parent,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// Removes what stands at `name` unless it is a directory (which is an
/// error: the snapshot has something else there). A missing entry is fine.
pub(super) fn remove_in_the_way(dir: &OwnedFd, name: &[u8]) -> io::Result<()> {
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {
            Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "a directory stands where the snapshot has a file or link; move it away and restore again",
            ))
        }
        Ok(_) => Ok(rustix::fs::unlinkat(dir, name, AtFlags::empty())?),
        Err(rustix::io::Errno::NOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Creates a new regular file `name` (mode 0600) in `dir`, replacing a file
/// or link already there (never writing through it).
pub(super) fn create_file(dir: &OwnedFd, name: &[u8]) -> io::Result<File> {
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let mode = Mode::from_raw_mode(0o600);
    match rustix::fs::openat(dir, name, flags, mode) {
        Ok(fd) => Ok(File::from(fd)),
        Err(rustix::io::Errno::EXIST) => {
            remove_in_the_way(dir, name)?;
            Ok(File::from(rustix::fs::openat(dir, name, flags, mode)?))
        }
        Err(e) => Err(e.into()),
    }
}

/// Opens the regular file `name` in `dir` again, refusing a link or anything
/// that is not a regular file (a FIFO swapped in would block a plain open).
pub(super) fn reopen_file(dir: &OwnedFd, name: &[u8], write: bool) -> io::Result<File> {
    let access = if write {
        OFlags::WRONLY
    } else {
        OFlags::RDONLY
    };
    let fd = rustix::fs::openat(
        dir,
        name,
        access | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let st = rustix::fs::fstat(&fd)?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Err(io::Error::other("no longer a regular file"));
    }
    Ok(File::from(fd))
}

/// What stands at `name` in `dir`, without following a link: its type,
/// size and modification time; `None` when nothing does.
pub(super) fn existing(dir: &OwnedFd, name: &[u8]) -> io::Result<Option<Existing>> {
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        // st_nlink is u64 here, u32 on some other targets.
        #[allow(clippy::unnecessary_cast)]
        Ok(st) => Ok(Some(Existing {
            kind: FileType::from_raw_mode(st.st_mode),
            size: st.st_size as u64,
            mtime: st.st_mtime,
            mtime_nsec: st.st_mtime_nsec as u32,
            links: st.st_nlink as u64,
        })),
        Err(rustix::io::Errno::NOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// An entry found in the target where the snapshot has one.
#[derive(Debug, Clone, Copy)]
pub(super) struct Existing {
    pub kind: FileType,
    pub size: u64,
    pub mtime: i64,
    pub mtime_nsec: u32,
    /// Hard links to it: one written in place must have no other name.
    pub links: u64,
}

/// Removes the file `name` from `dir` (a failed file is never left behind).
pub(super) fn remove_file(dir: &OwnedFd, name: &[u8]) -> io::Result<()> {
    Ok(rustix::fs::unlinkat(dir, name, AtFlags::empty())?)
}
