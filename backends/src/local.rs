//! A destination on a local (or mounted) filesystem.
//!
//! Writes go to a temporary file in the target directory, are fsynced, then
//! hard-linked to the final name (which fails atomically if the name is taken)
//! and the directory is fsynced, so a crash leaves either nothing or the whole
//! object. Filesystems without hard links (FAT, exFAT) fall back to
//! check-then-rename, which is safe for content-named objects.
//!
//! The disk is untrusted (a USB stick may have been prepared by someone
//! else): below the root, every path is walked one directory descriptor at a
//! time with `O_NOFOLLOW`, so a symlink is never followed, for reading,
//! writing or listing. A listing names regular files only; a symlink or
//! special file where an object belongs reads as missing, and writing the
//! object replaces it (the link itself, never its target).

use std::fs::File;
use std::io::{self, Read};
use std::ops::Range;
use std::os::fd::OwnedFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};

use crate::backend::{resolve_range, validate_key, Backend, ObjectMeta};
use crate::error::{BackendError, ErrorKind, Result};

/// Prefix of temporary files; listings skip them.
const TEMP_PREFIX: &str = ".tmp-";

/// A repository stored in a directory.
#[derive(Debug, Clone)]
pub struct LocalBackend {
    name: String,
    root: PathBuf,
}

impl LocalBackend {
    /// A backend rooted at `root`. Nothing is touched until the first call.
    pub fn new(name: impl Into<String>, root: impl Into<PathBuf>) -> Self {
        LocalBackend {
            name: name.into(),
            root: root.into(),
        }
    }

    /// The directory holding the repository.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The key's directories and its file name, once the key is checked.
    fn split_key<'k>(&self, key: &'k str) -> Result<(Vec<&'k str>, &'k str)> {
        if !validate_key(key) {
            return Err(BackendError::new(
                ErrorKind::Permanent,
                &self.name,
                key,
                "invalid object key",
            ));
        }
        Ok(match key.rsplit_once('/') {
            Some((dirs, name)) => (dirs.split('/').collect(), name),
            None => (Vec::new(), key),
        })
    }

    /// Opens the directory `dirs` below the root, one component at a time,
    /// never following a symlink; with `create`, makes the missing ones
    /// (owner-only, each made durable in its parent).
    fn open_dir(&self, dirs: &[&str], create: bool) -> io::Result<OwnedFd> {
        let flags = OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC;
        let mut fd = rustix::fs::open(&self.root, flags, Mode::empty())?;
        for component in dirs {
            let next = rustix::fs::openat(&fd, *component, flags | OFlags::NOFOLLOW, Mode::empty());
            fd = match next {
                Ok(next) => next,
                Err(Errno::NOENT) if create => {
                    let mode = Mode::from_raw_mode(crate::private::DIR_MODE);
                    match rustix::fs::mkdirat(&fd, *component, mode) {
                        Ok(()) | Err(Errno::EXIST) => {}
                        Err(e) => return Err(e.into()),
                    }
                    rustix::fs::fsync(&fd)?;
                    rustix::fs::openat(&fd, *component, flags | OFlags::NOFOLLOW, Mode::empty())
                        .map_err(not_followed)?
                }
                Err(e) => return Err(not_followed(e)),
            };
        }
        Ok(fd)
    }

    /// Opens the object `key` for reading: a regular file reached without
    /// following any symlink, or `NotFound`.
    fn open_object(&self, key: &str) -> Result<File> {
        let (dirs, name) = self.split_key(key)?;
        let opened = self.open_dir(&dirs, false).and_then(|dir| {
            // O_NONBLOCK: opening a FIFO planted under an object's name must
            // not hang; regular files ignore it.
            let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
            Ok(File::from(
                rustix::fs::openat(&dir, name, flags, Mode::empty()).map_err(not_followed)?,
            ))
        });
        let file = opened.map_err(|e| self.io_err(key, e))?;
        let meta = file.metadata().map_err(|e| self.io_err(key, e))?;
        if !meta.is_file() {
            return Err(self.not_regular(key));
        }
        Ok(file)
    }

    fn not_regular(&self, key: &str) -> BackendError {
        BackendError::new(
            ErrorKind::NotFound,
            &self.name,
            key,
            "not a regular file (a symlink or special file is never followed or read)",
        )
    }

    fn io_err(&self, key: &str, err: std::io::Error) -> BackendError {
        BackendError::from_io(&self.name, key, err)
    }

    fn put_blocking(&self, key: &str, data: &[u8]) -> Result<()> {
        let (dirs, name) = self.split_key(key)?;
        self.create_root(key)?;
        let dir = self.open_dir(&dirs, true).map_err(|e| match e.kind() {
            // A symlink where a directory belongs is not followed, and
            // not a missing object either: this write cannot be done here.
            io::ErrorKind::NotFound => BackendError::new(
                ErrorKind::Permanent,
                &self.name,
                key,
                format!("opening its directory: {e}"),
            ),
            _ => self.io_err(key, e),
        })?;
        match rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::RegularFile => {
                return Err(BackendError::new(
                    ErrorKind::AlreadyExists,
                    &self.name,
                    key,
                    "",
                ));
            }
            // Something that is not an object sits under its name (a
            // planted symlink, a FIFO): the object replaces it.
            Ok(_) => rustix::fs::unlinkat(&dir, name, AtFlags::empty())
                .map_err(|e| self.io_err(key, e.into()))?,
            Err(Errno::NOENT) => {}
            Err(e) => return Err(self.io_err(key, e.into())),
        }
        let tmp = format!("{TEMP_PREFIX}{:016x}", rand::random::<u64>());
        let remove_tmp = || {
            let _ = rustix::fs::unlinkat(&dir, tmp.as_str(), AtFlags::empty());
        };
        if let Err(err) = crate::durable_write::write_new_file_at(&dir, &tmp, data) {
            remove_tmp();
            return Err(self.io_err(key, err));
        }
        let linked = match rustix::fs::linkat(&dir, tmp.as_str(), &dir, name, AtFlags::empty()) {
            Ok(()) => Ok(()),
            Err(Errno::EXIST) => Err(BackendError::new(
                ErrorKind::AlreadyExists,
                &self.name,
                key,
                "",
            )),
            // No hard links on this filesystem (FAT, exFAT, some FUSE mounts):
            // the existence check above stands in for the atomic one.
            Err(err) if links_unsupported(err) => {
                rustix::fs::renameat(&dir, tmp.as_str(), &dir, name)
                    .map_err(|e| self.io_err(key, e.into()))
            }
            Err(err) => Err(self.io_err(key, err.into())),
        };
        remove_tmp();
        linked?;
        rustix::fs::fsync(&dir).map_err(|e| self.io_err(key, e.into()))
    }

    /// Creates the root directory when it is missing, but never its parent:
    /// a missing parent is an unmounted disk or a mistyped path, and a
    /// repository created there would hide on the wrong disk.
    fn create_root(&self, key: &str) -> Result<()> {
        if self.root.is_dir() {
            return Ok(());
        }
        let parent = match self.root.parent() {
            Some(p) if p.as_os_str().is_empty() => Path::new("."),
            Some(p) => p,
            None => Path::new("/"),
        };
        if !parent.is_dir() {
            return Err(BackendError::new(
                ErrorKind::Permanent,
                &self.name,
                key,
                format!(
                    "the parent directory {} does not exist (is the disk mounted? create it first)",
                    parent.display()
                ),
            ));
        }
        match crate::private::create_dir(&self.root) {
            Ok(()) => File::open(parent)
                .and_then(|d| d.sync_all())
                .map_err(|e| self.io_err(key, e)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(self.io_err(key, e)),
        }
    }

    fn get_blocking(&self, key: &str, range: Option<Range<u64>>) -> Result<Bytes> {
        let file = self.open_object(key)?;
        let size = file.metadata().map_err(|e| self.io_err(key, e))?.len();
        let (range, len) = resolve_range(&self.name, key, range, size)?;
        let mut buf = vec![0u8; len];
        file.read_exact_at(&mut buf, range.start)
            .map_err(|e| self.io_err(key, e))?;
        Ok(Bytes::from(buf))
    }

    /// Reads the whole object if it holds at most `limit` bytes: the size
    /// is checked on the open file before any buffer is made, and the read
    /// takes at most `limit + 1` bytes, so a file that grows in between
    /// cannot overrun the limit either.
    fn get_bounded_blocking(&self, key: &str, limit: u64) -> Result<Bytes> {
        let file = self.open_object(key)?;
        let size = file.metadata().map_err(|e| self.io_err(key, e))?.len();
        if size > limit {
            return Err(BackendError::too_large(&self.name, key, Some(size), limit));
        }
        let room = usize::try_from(size).map_err(|_| {
            BackendError::new(
                ErrorKind::Permanent,
                &self.name,
                key,
                "too large for memory",
            )
        })?;
        let mut buf = Vec::with_capacity(room);
        (&file)
            .take(limit.saturating_add(1))
            .read_to_end(&mut buf)
            .map_err(|e| self.io_err(key, e))?;
        if buf.len() as u64 > limit {
            return Err(BackendError::too_large(&self.name, key, None, limit));
        }
        Ok(Bytes::from(buf))
    }

    fn list_blocking(&self, prefix: &str, tx: tokio::sync::mpsc::Sender<Result<ObjectMeta>>) {
        // Walk only the directory the prefix names, then filter by the rest.
        let dir_part = prefix.rfind('/').map_or("", |i| &prefix[..i]);
        let components: Vec<&str> = dir_part.split('/').filter(|c| !c.is_empty()).collect();
        let start = match self.open_dir(&components, false) {
            Ok(fd) => fd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return,
            Err(e) => {
                let _ = tx.blocking_send(Err(self.io_err(dir_part, e)));
                return;
            }
        };
        let mut stack = vec![(start, dir_part.to_string())];
        while let Some((dir, rel)) = stack.pop() {
            if let Err(e) = self.list_dir(&dir, &rel, prefix, &mut stack, &tx) {
                let _ = tx.blocking_send(Err(self.io_err(&rel, e)));
                return;
            }
        }
    }

    /// Sends the objects of one directory and stacks its subdirectories.
    /// Returns early (`Ok`) once the receiver is gone.
    fn list_dir(
        &self,
        dir: &OwnedFd,
        rel: &str,
        prefix: &str,
        stack: &mut Vec<(OwnedFd, String)>,
        tx: &tokio::sync::mpsc::Sender<Result<ObjectMeta>>,
    ) -> io::Result<()> {
        for entry in rustix::fs::Dir::read_from(dir)? {
            let entry = entry?;
            let raw = entry.file_name().to_bytes();
            if raw == b"." || raw == b".." || raw.starts_with(TEMP_PREFIX.as_bytes()) {
                continue;
            }
            let name = String::from_utf8_lossy(raw).into_owned();
            let key = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{}", String::from_utf8_lossy(raw))
            };
            // Never from a name: from the entry, without following it.
            let stat = rustix::fs::statat(dir, entry.file_name(), AtFlags::SYMLINK_NOFOLLOW)?;
            match FileType::from_raw_mode(stat.st_mode) {
                FileType::Directory => {
                    if key.starts_with(prefix) || prefix.starts_with(&format!("{key}/")) {
                        let flags =
                            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
                        let sub = rustix::fs::openat(dir, entry.file_name(), flags, Mode::empty())?;
                        stack.push((sub, key));
                    }
                }
                FileType::RegularFile if key.starts_with(prefix) => {
                    let meta = ObjectMeta {
                        key,
                        size: stat.st_size as u64,
                    };
                    if tx.blocking_send(Ok(meta)).is_err() {
                        return Ok(());
                    }
                }
                FileType::RegularFile => {}
                other => tracing::warn!(
                    "destination {}: {key} is a {other:?}, not an object: never followed or read",
                    self.name
                ),
            }
        }
        Ok(())
    }
}

fn links_unsupported(err: Errno) -> bool {
    matches!(err, Errno::PERM | Errno::NOSYS | Errno::OPNOTSUPP)
}

/// `ELOOP` (the last component is a symlink, under `O_NOFOLLOW`) and
/// `ENOTDIR` (a symlink or file where a directory belongs) read as a missing
/// object: nothing was followed.
fn not_followed(err: Errno) -> io::Error {
    match err {
        Errno::LOOP | Errno::NOTDIR => io::Error::new(
            io::ErrorKind::NotFound,
            "a symlink or special file is in the way (never followed: move it out of the destination)",
        ),
        other => other.into(),
    }
}

fn join_error(name: &str, key: &str, err: tokio::task::JoinError) -> BackendError {
    BackendError::new(ErrorKind::Permanent, name, key, "worker thread failed").with_source(err)
}

#[async_trait]
impl Backend for LocalBackend {
    fn name(&self) -> &str {
        &self.name
    }

    fn location(&self) -> String {
        self.root.display().to_string()
    }

    async fn put(&self, key: &str, data: Bytes) -> Result<()> {
        let this = self.clone();
        let owned_key = key.to_string();
        tokio::task::spawn_blocking(move || this.put_blocking(&owned_key, &data))
            .await
            .map_err(|e| join_error(&self.name, key, e))?
    }

    async fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<Bytes> {
        let this = self.clone();
        let owned_key = key.to_string();
        tokio::task::spawn_blocking(move || this.get_blocking(&owned_key, range))
            .await
            .map_err(|e| join_error(&self.name, key, e))?
    }

    async fn get_bounded(&self, key: &str, limit: u64) -> Result<Bytes> {
        let this = self.clone();
        let owned_key = key.to_string();
        tokio::task::spawn_blocking(move || this.get_bounded_blocking(&owned_key, limit))
            .await
            .map_err(|e| join_error(&self.name, key, e))?
    }

    async fn stat(&self, key: &str) -> Result<ObjectMeta> {
        let this = self.clone();
        let owned_key = key.to_string();
        tokio::task::spawn_blocking(move || {
            let file = this.open_object(&owned_key)?;
            let size = file
                .metadata()
                .map_err(|e| this.io_err(&owned_key, e))?
                .len();
            Ok(ObjectMeta {
                key: owned_key,
                size,
            })
        })
        .await
        .map_err(|e| join_error(&self.name, key, e))?
    }

    fn list<'a>(&'a self, prefix: &'a str) -> BoxStream<'a, Result<ObjectMeta>> {
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        let this = self.clone();
        let owned_prefix = prefix.to_string();
        tokio::task::spawn_blocking(move || this.list_blocking(&owned_prefix, tx));
        stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        })
        .boxed()
    }

    async fn delete(&self, key: &str) -> Result<()> {
        let this = self.clone();
        let owned_key = key.to_string();
        tokio::task::spawn_blocking(move || {
            let (dirs, name) = this.split_key(&owned_key)?;
            // Unlinking removes a symlink itself, never what it points to.
            this.open_dir(&dirs, false)
                .and_then(|dir| Ok(rustix::fs::unlinkat(&dir, name, AtFlags::empty())?))
                .map_err(|e| this.io_err(&owned_key, e))
        })
        .await
        .map_err(|e| join_error(&self.name, key, e))?
    }
}

#[cfg(test)]
#[path = "local_tests.rs"]
mod tests;
