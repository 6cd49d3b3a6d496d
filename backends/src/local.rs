//! A destination on a local (or mounted) filesystem.
//!
//! Writes go to a temporary file in the target directory, are fsynced, then
//! hard-linked to the final name (which fails atomically if the name is taken)
//! and the directory is fsynced, so a crash leaves either nothing or the whole
//! object. Filesystems without hard links (FAT, exFAT) fall back to
//! check-then-rename, which is safe for content-named objects.

use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom};
use std::ops::Range;
use std::path::{Path, PathBuf};

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

    fn path_of(&self, key: &str) -> Result<PathBuf> {
        if !validate_key(key) {
            return Err(BackendError::new(
                ErrorKind::Permanent,
                &self.name,
                key,
                "invalid object key",
            ));
        }
        Ok(self.root.join(key))
    }

    fn io_err(&self, key: &str, err: std::io::Error) -> BackendError {
        BackendError::from_io(&self.name, key, err)
    }

    fn put_blocking(&self, key: &str, data: &[u8]) -> Result<()> {
        let path = self.path_of(key)?;
        let dir = path.parent().unwrap_or(&self.root).to_path_buf();
        if !dir.is_dir() {
            self.create_root(key)?;
            crate::private::create_dir_all(&dir).map_err(|e| self.io_err(key, e))?;
            // Make the new directories durable up to the root (data/ and data/xx/).
            let mut up = dir.parent();
            while let Some(parent) = up.filter(|p| p.starts_with(&self.root)) {
                sync_dir(parent).map_err(|e| self.io_err(key, e))?;
                up = parent.parent();
            }
        }
        if path.exists() {
            return Err(BackendError::new(
                ErrorKind::AlreadyExists,
                &self.name,
                key,
                "",
            ));
        }
        let tmp = dir.join(format!("{TEMP_PREFIX}{:016x}", rand::random::<u64>()));
        let result = crate::durable_write::write_new_file(&tmp, data);
        if let Err(err) = result {
            let _ = fs::remove_file(&tmp);
            return Err(self.io_err(key, err));
        }
        let linked = match fs::hard_link(&tmp, &path) {
            Ok(()) => {
                let _ = fs::remove_file(&tmp);
                Ok(())
            }
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
                let _ = fs::remove_file(&tmp);
                Err(BackendError::new(
                    ErrorKind::AlreadyExists,
                    &self.name,
                    key,
                    "",
                ))
            }
            // No hard links on this filesystem (FAT, exFAT, some FUSE mounts):
            // the existence check above stands in for the atomic one.
            Err(err) if links_unsupported(&err) => fs::rename(&tmp, &path).map_err(|e| {
                let _ = fs::remove_file(&tmp);
                self.io_err(key, e)
            }),
            Err(err) => {
                let _ = fs::remove_file(&tmp);
                Err(self.io_err(key, err))
            }
        };
        linked?;
        sync_dir(&dir).map_err(|e| self.io_err(key, e))
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
            Ok(()) => sync_dir(parent).map_err(|e| self.io_err(key, e)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(self.io_err(key, e)),
        }
    }

    fn get_blocking(&self, key: &str, range: Option<Range<u64>>) -> Result<Bytes> {
        let path = self.path_of(key)?;
        let mut file = File::open(&path).map_err(|e| self.io_err(key, e))?;
        let size = file.metadata().map_err(|e| self.io_err(key, e))?.len();
        let (range, len) = resolve_range(&self.name, key, range, size)?;
        let mut buf = vec![0u8; len];
        file.seek(SeekFrom::Start(range.start))
            .and_then(|_| file.read_exact(&mut buf))
            .map_err(|e| self.io_err(key, e))?;
        Ok(Bytes::from(buf))
    }

    fn list_blocking(&self, prefix: &str, tx: tokio::sync::mpsc::Sender<Result<ObjectMeta>>) {
        // Walk only the directory the prefix names, then filter by the rest.
        let dir_part = match prefix.rfind('/') {
            Some(i) => &prefix[..i],
            None => "",
        };
        let start = if dir_part.is_empty() {
            self.root.clone()
        } else {
            self.root.join(dir_part)
        };
        let mut stack = vec![(start, dir_part.to_string())];
        while let Some((dir, rel)) = stack.pop() {
            let entries = match fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    let _ = tx.blocking_send(Err(self.io_err(&rel, e)));
                    return;
                }
            };
            for entry in entries {
                let item = entry.and_then(|entry| {
                    let file_type = entry.file_type()?;
                    let name = entry.file_name().to_string_lossy().into_owned();
                    let key = if rel.is_empty() {
                        name.clone()
                    } else {
                        format!("{rel}/{name}")
                    };
                    if name.starts_with(TEMP_PREFIX) {
                        return Ok(None);
                    }
                    if file_type.is_dir() {
                        if key.starts_with(prefix) || prefix.starts_with(&format!("{key}/")) {
                            stack.push((entry.path(), key));
                        }
                        return Ok(None);
                    }
                    if !key.starts_with(prefix) {
                        return Ok(None);
                    }
                    let size = entry.metadata()?.len();
                    Ok(Some(ObjectMeta { key, size }))
                });
                match item {
                    Ok(None) => {}
                    Ok(Some(meta)) => {
                        if tx.blocking_send(Ok(meta)).is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        let _ = tx.blocking_send(Err(self.io_err(&rel, e)));
                        return;
                    }
                }
            }
        }
    }
}

fn links_unsupported(err: &std::io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc::EPERM | libc::ENOSYS | libc::EOPNOTSUPP)
    )
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
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

    async fn stat(&self, key: &str) -> Result<ObjectMeta> {
        let path = self.path_of(key)?;
        let meta = tokio::fs::metadata(&path)
            .await
            .map_err(|e| self.io_err(key, e))?;
        if !meta.is_file() {
            return Err(BackendError::new(
                ErrorKind::NotFound,
                &self.name,
                key,
                "not a file",
            ));
        }
        Ok(ObjectMeta {
            key: key.to_string(),
            size: meta.len(),
        })
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
        let path = self.path_of(key)?;
        tokio::fs::remove_file(&path)
            .await
            .map_err(|e| self.io_err(key, e))
    }
}
