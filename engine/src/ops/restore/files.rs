//! The file system side of a restore: the target directory, files created
//! when their first verified blob arrives, metadata set by whichever writer
//! completes a file, and the specials (symlinks, pipes, devices). Every
//! entry is reached through [`TargetDirs`], never by path.

use std::ffi::OsStr;
use std::fs::{self, File};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};

use super::target::{self, TargetDirs};
use crate::error::{Error, Result};
use crate::format::tree::{Node, NodeKind};

/// A regular file to restore: its directory's number, where its name is in
/// the plan's name bytes, its metadata (48 bytes, nothing on the heap).
pub(super) struct FilePlan {
    /// Number of its directory in the plan's `dir_paths`.
    pub dir: u32,
    pub name_len: u32,
    pub name_start: u64,
    pub meta: Meta,
}

impl FilePlan {
    /// Its name, from the plan's name bytes.
    pub fn name<'a>(&self, names: &'a [u8]) -> &'a OsStr {
        let start = self.name_start as usize;
        OsStr::from_bytes(&names[start..start + self.name_len as usize])
    }
}

/// Set in [`Meta::mode`] for a symlink, which keeps its own mode.
const SYMLINK: u32 = 1 << 31;

/// Set in [`Meta::mode`] for a file whose copy already in the target is
/// rewritten in place: only its pieces that differ are written.
pub(super) const IN_PLACE: u32 = 1 << 30;

/// What an entry's metadata is set from: owners by number, mode, mtime.
#[derive(Debug, Clone, Copy)]
pub(super) struct Meta {
    pub size: u64,
    pub mtime: i64,
    pub mtime_nsec: u32,
    /// Permission bits, and [`SYMLINK`] for a symlink.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

impl Meta {
    /// The metadata `node` records.
    pub fn of(node: &Node) -> Self {
        Meta {
            size: node.size,
            mtime: node.mtime,
            mtime_nsec: node.mtime_nsec,
            mode: node.mode & 0o7777
                | if matches!(node.kind, NodeKind::Symlink { .. }) {
                    SYMLINK
                } else {
                    0
                },
            uid: node.uid,
            gid: node.gid,
        }
    }
}

/// One file's progress, shared by the writers (16 bytes).
pub(super) struct FileState {
    /// Created (truncated to its size) by the first writer, true when that
    /// worked; every other writer of the file waits for it, so the
    /// truncation happens once.
    created: OnceLock<bool>,
    /// Placements not yet written; the writer that takes it to zero sets
    /// the metadata, while the file is still warm.
    remaining: AtomicU32,
    metadata_set: AtomicBool,
}

/// Every file of a restore and what has happened to it.
pub(super) struct Files {
    pub plans: Vec<FilePlan>,
    /// The target's directories, opened without following links.
    pub dirs: TargetDirs,
    /// Every file's name, back to back.
    names: Vec<u8>,
    states: Vec<FileState>,
    is_root: bool,
    /// Metadata that could not be set, reported with the outcome.
    metadata_errors: Mutex<Vec<(PathBuf, String)>>,
}

impl Files {
    /// `placements[n]` = how many blob placements file `n` receives.
    pub fn new(plans: Vec<FilePlan>, dirs: TargetDirs, names: Vec<u8>, placements: &[u32]) -> Self {
        let states = placements
            .iter()
            .map(|&n| FileState {
                created: OnceLock::new(),
                remaining: AtomicU32::new(n),
                metadata_set: AtomicBool::new(false),
            })
            .collect();
        Files {
            plans,
            dirs,
            names,
            states,
            // SAFETY: geteuid has no preconditions and cannot fail.
            is_root: unsafe { libc::geteuid() } == 0,
            metadata_errors: Mutex::new(Vec::new()),
        }
    }

    /// The name bytes of file `n`.
    fn name(&self, n: usize) -> &[u8] {
        self.plans[n].name(&self.names).as_bytes()
    }

    /// Target path of file `n` (for messages: files are never opened by path).
    pub fn path(&self, n: usize) -> PathBuf {
        self.dirs.path_of(self.plans[n].dir, self.name(n))
    }

    /// Opens file `n` again, for reading (`--verify`) or writing, refusing
    /// anything that is no longer the regular file this restore created.
    pub fn reopen(&self, n: usize, write: bool) -> std::io::Result<File> {
        let dir = self.dirs.dir(self.plans[n].dir)?;
        target::reopen_file(&dir, self.name(n), write)
    }

    /// Removes file `n` (it failed: never left with wrong bytes).
    pub fn remove(&self, n: usize) -> std::io::Result<()> {
        let dir = self.dirs.dir(self.plans[n].dir)?;
        target::remove_file(&dir, self.name(n))
    }

    /// Writes one verified blob's bytes into file `n` at `offset` (all-zero
    /// bytes stay a hole), creating the file first if no writer has. When this
    /// was the file's last placement its metadata is set.
    pub fn write(&self, n: usize, offset: u64, data: &[u8], zero: bool) -> std::io::Result<()> {
        let state = &self.states[n];
        let mut fresh: Option<File> = None;
        let mut failed: Option<std::io::Error> = None;
        let created = *state.created.get_or_init(|| {
            let plan = &self.plans[n];
            let made = if plan.meta.mode & IN_PLACE != 0 {
                // Same size, some pieces already right: open it, never
                // through a link (the walk checked it is a plain file).
                self.reopen(n, true)
            } else {
                self.dirs
                    .dir(plan.dir)
                    .and_then(|dir| create_sized(&dir, self.name(n), plan.meta.size))
            };
            match made {
                Ok(file) => {
                    fresh = Some(file);
                    true
                }
                Err(e) => {
                    failed = Some(e);
                    false
                }
            }
        });
        if !created {
            // The writer that tried has the reason; the others say what failed.
            return Err(failed.unwrap_or_else(|| std::io::Error::other("could not be created")));
        }
        let mut open = fresh;
        if !zero {
            let file = match open.take() {
                Some(file) => file,
                None => self.reopen(n, true)?,
            };
            file.write_all_at(data, offset)?;
            open = Some(file);
        }
        if state.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.set_metadata(n, open.as_ref());
        }
        Ok(())
    }

    /// Sets file `n`'s metadata unless a writer already did: through `open`
    /// when the caller holds the file, else through the file opened again.
    pub fn set_metadata(&self, n: usize, open: Option<&File>) {
        if self.states[n].metadata_set.swap(true, Ordering::AcqRel) {
            return;
        }
        let meta = &self.plans[n].meta;
        let applied = match open {
            Some(file) => apply_file_metadata(file, meta, self.is_root),
            None => self
                .reopen(n, false)
                .and_then(|file| apply_file_metadata(&file, meta, self.is_root)),
        };
        if let Err(e) = applied {
            self.metadata_errors
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((self.path(n), format!("setting metadata: {e}")));
        }
    }

    /// The metadata errors so far.
    pub fn take_metadata_errors(&self) -> Vec<(PathBuf, String)> {
        std::mem::take(
            &mut *self
                .metadata_errors
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        )
    }

    /// True when running as root (owners are restored).
    pub fn is_root(&self) -> bool {
        self.is_root
    }

    /// Links `name` in directory `dir` to file `first` (a hard link),
    /// replacing a file or link already there.
    pub fn link(&self, first: usize, dir: u32, name: &[u8]) -> std::io::Result<()> {
        let to = self.dirs.dir(dir)?;
        target::remove_in_the_way(&to, name)?;
        let from = self.dirs.dir(self.plans[first].dir)?;
        Ok(rustix::fs::linkat(
            &*from,
            self.name(first),
            &*to,
            name,
            rustix::fs::AtFlags::empty(),
        )?)
    }
}

/// Creates `name` in `dir` as a new file (mode 0600) of its final size,
/// replacing a file or link already there.
pub(super) fn create_sized(dir: &OwnedFd, name: &[u8], size: u64) -> std::io::Result<File> {
    let file = target::create_file(dir, name)?;
    file.set_len(size)?;
    Ok(file)
}

/// Creates the restore target (a directory) when missing and checks that it
/// can be written, so a bad target is one clear error before anything is
/// written rather than an error per file.
pub(super) fn prepare_target(target: &Path) -> Result<()> {
    let shown = target.display();
    match fs::metadata(target) {
        Ok(meta) if !meta.is_dir() => {
            return Err(Error::InvalidInput(format!(
                "restore target {shown} exists and is not a directory; \
                 give a directory (it is created when missing)"
            )))
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            fs::create_dir_all(target).map_err(|e| {
                Error::InvalidInput(format!(
                    "cannot create the restore target {shown}: {e}; \
                     give a directory you can write to"
                ))
            })?;
        }
        Err(e) => {
            return Err(Error::InvalidInput(format!(
                "cannot use the restore target {shown}: {e}; give a directory you can write to"
            )))
        }
    }
    let cpath = std::ffi::CString::new(target.as_os_str().as_bytes())
        .map_err(|_| Error::InvalidInput(format!("restore target {shown} contains a NUL byte")))?;
    // SAFETY: `cpath` is a valid NUL-terminated path for the duration of the call.
    if unsafe { libc::access(cpath.as_ptr(), libc::W_OK | libc::X_OK) } != 0 {
        let e = std::io::Error::last_os_error();
        return Err(Error::InvalidInput(format!(
            "restore target {shown} is not writable: {e}; give a directory you can write to"
        )));
    }
    Ok(())
}

/// Creates a symlink, pipe or device `name` in `dir`, replacing a file or
/// link already there; returns false for what is not recreated (sockets).
pub(super) fn create_special(dir: &OwnedFd, name: &[u8], node: &Node) -> std::io::Result<bool> {
    use rustix::fs::{FileType, Mode};
    let owner_only = Mode::from_raw_mode(0o600);
    let make = || -> std::io::Result<bool> {
        match &node.kind {
            NodeKind::Symlink { target } => rustix::fs::symlinkat(target.as_slice(), dir, name)?,
            NodeKind::Fifo => rustix::fs::mknodat(dir, name, FileType::Fifo, owner_only, 0)?,
            NodeKind::BlockDevice { rdev } => {
                rustix::fs::mknodat(dir, name, FileType::BlockDevice, owner_only, *rdev)?
            }
            NodeKind::CharDevice { rdev } => {
                rustix::fs::mknodat(dir, name, FileType::CharacterDevice, owner_only, *rdev)?
            }
            NodeKind::Socket | NodeKind::File { .. } | NodeKind::Dir { .. } => return Ok(false),
        }
        Ok(true)
    };
    match make() {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            target::remove_in_the_way(dir, name)?;
            make()
        }
        other => other,
    }
}

/// [`apply_metadata`] for a regular file held open.
fn apply_file_metadata(file: &File, meta: &Meta, is_root: bool) -> std::io::Result<()> {
    if is_root {
        std::os::unix::fs::fchown(file, Some(meta.uid), Some(meta.gid))?;
    }
    file.set_permissions(fs::Permissions::from_mode(meta.mode & 0o7777))?;
    let mtime = filetime::FileTime::from_unix_time(meta.mtime, meta.mtime_nsec);
    filetime::set_file_handle_times(file, Some(mtime), Some(mtime))
}

/// Sets a special's owner (as root), permissions (not a symlink's) and
/// modification time, by name in `dir` without following it.
pub(super) fn apply_metadata_at(
    dir: &OwnedFd,
    name: &[u8],
    meta: &Meta,
    is_root: bool,
) -> std::io::Result<()> {
    use rustix::fs::{AtFlags, Gid, Mode, Timespec, Timestamps, Uid};
    if is_root {
        rustix::fs::chownat(
            dir,
            name,
            Some(Uid::from_raw(meta.uid)),
            Some(Gid::from_raw(meta.gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        )?;
    }
    if meta.mode & SYMLINK == 0 {
        // A pipe or device this restore just made (0600) in a directory
        // still 0700: nobody else can have swapped a link in.
        rustix::fs::chmodat(dir, name, Mode::from_raw_mode(meta.mode), AtFlags::empty())?;
    }
    let time = Timespec {
        tv_sec: meta.mtime,
        tv_nsec: meta.mtime_nsec.into(),
    };
    let times = Timestamps {
        last_access: time,
        last_modification: time,
    };
    Ok(rustix::fs::utimensat(
        dir,
        name,
        &times,
        AtFlags::SYMLINK_NOFOLLOW,
    )?)
}

/// Sets directory `n`'s owner (as root), permissions and time through its
/// descriptor.
pub(super) fn apply_dir_metadata(
    dirs: &TargetDirs,
    n: u32,
    meta: &Meta,
    is_root: bool,
) -> std::io::Result<()> {
    apply_file_metadata(&dirs.open_dir_file(n)?, meta, is_root)
}
