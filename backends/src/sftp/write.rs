//! The write path of the SFTP destination: directories on demand, a temporary
//! file written with pipelined requests, then published create-only.

use super::*;
use crate::private::{DIR_MODE, FILE_MODE};

impl SftpBackend {
    /// Creates `dir` (a key's directory, relative to the root) and its missing
    /// parents, up to and including the root. Existing directories are fine.
    async fn make_dirs(&self, conn: &Connection, sftp: &RawSftpSession, key: &str) -> Result<()> {
        let dir = parent(key);
        // Candidate directories from the deepest up: "data/ab", "data", then the root.
        let mut chain: Vec<String> = Vec::new();
        let mut rel = dir;
        loop {
            chain.push(self.remote(rel));
            if rel.is_empty() {
                break;
            }
            rel = parent(rel);
        }
        if matches!(self.opts.root.as_str(), "" | "/") {
            chain.pop();
        }
        // Walk up until a mkdir succeeds or finds the directory, then come back down.
        let mut missing = Vec::new();
        let mut found = false;
        for path in chain {
            match self.mkdir(conn, sftp, key, &path).await? {
                true => {
                    found = true;
                    break;
                }
                false => missing.push(path),
            }
        }
        if !found && !matches!(self.opts.root.as_str(), "" | "/") {
            // Not even the root could be made: what is above it is missing.
            return Err(BackendError::new(
                ErrorKind::Permanent,
                &self.name,
                key,
                format!(
                    "the directory above {} does not exist on the server; create it first \
                     (a repository is only created in an existing directory)",
                    self.opts.root
                ),
            ));
        }
        while let Some(path) = missing.pop() {
            if !self.mkdir(conn, sftp, key, &path).await? {
                return Err(BackendError::new(
                    ErrorKind::Permanent,
                    &self.name,
                    key,
                    format!("cannot create directory {path}: its parent vanished"),
                ));
            }
        }
        Ok(())
    }

    /// Creates one directory: `Ok(true)` when it now exists, `Ok(false)` when its
    /// parent is missing.
    async fn mkdir(
        &self,
        conn: &Connection,
        sftp: &RawSftpSession,
        key: &str,
        path: &str,
    ) -> Result<bool> {
        let what = format!("creating directory {path}");
        let ctx = Ctx { key, what: &what };
        match sftp.mkdir(path, owner_only(DIR_MODE)).await {
            Ok(_) => Ok(true),
            Err(SftpError::Status(s)) if s.status_code == StatusCode::NoSuchFile => Ok(false),
            // OpenSSH reports EEXIST as a generic failure: look before judging.
            Err(SftpError::Status(s)) if s.status_code == StatusCode::Failure => {
                match sftp.stat(path).await {
                    Ok(attrs) if attrs.attrs.file_type() == FileType::Dir => Ok(true),
                    _ => Err(self.error(conn, ctx, SftpError::Status(s))),
                }
            }
            Err(e) => Err(self.error(conn, ctx, e)),
        }
    }

    /// Whether a regular file exists at `path` (`None`: could not tell).
    async fn exists(&self, sftp: &RawSftpSession, path: &str) -> Option<bool> {
        match sftp.stat(path).await {
            Ok(_) => Some(true),
            Err(SftpError::Status(s)) if s.status_code == StatusCode::NoSuchFile => Some(false),
            Err(_) => None,
        }
    }

    /// Writes `data` to a new temporary file next to `path`; returns its name.
    pub(super) async fn upload_temp(
        &self,
        conn: &Connection,
        sftp: &RawSftpSession,
        key: &str,
        path: &str,
        data: &Bytes,
    ) -> Result<String> {
        let tmp = match path.rfind('/') {
            Some(i) => format!("{}/{TEMP_PREFIX}{:016x}", &path[..i], rand::random::<u64>()),
            None => format!("{TEMP_PREFIX}{:016x}", rand::random::<u64>()),
        };
        let ctx = Ctx {
            key,
            what: "creating a temporary file",
        };
        let flags = OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::EXCLUDE;
        let handle = match sftp.open(&tmp, flags, owner_only(FILE_MODE)).await {
            Ok(h) => h.handle,
            Err(SftpError::Status(s)) if s.status_code == StatusCode::NoSuchFile => {
                self.make_dirs(conn, sftp, key).await?;
                sftp.open(&tmp, flags, owner_only(FILE_MODE))
                    .await
                    .map_err(|e| self.error(conn, ctx, e).into_permanent_if_not_found())?
                    .handle
            }
            Err(e) => return Err(self.error(conn, ctx, e).into_permanent_if_not_found()),
        };
        let written = self.write_all(conn, sftp, key, &handle, data).await;
        let closed = sftp.close(handle.as_str()).await;
        let result = written.and_then(|()| {
            closed.map(|_| ()).map_err(|e| {
                self.error(
                    conn,
                    Ctx {
                        key,
                        what: "closing the temporary file",
                    },
                    e,
                )
            })
        });
        match result {
            Ok(()) => Ok(tmp),
            Err(e) => {
                if e.kind != ErrorKind::Transient {
                    let _ = sftp.remove(tmp.as_str()).await;
                }
                Err(e.into_permanent_if_not_found())
            }
        }
    }

    /// Writes `data` from offset 0 with several requests in flight, then fsyncs.
    async fn write_all(
        &self,
        conn: &Connection,
        sftp: &RawSftpSession,
        key: &str,
        handle: &str,
        data: &Bytes,
    ) -> Result<()> {
        let ctx = Ctx {
            key,
            what: "writing",
        };
        let chunk = conn.write_chunk.max(1);
        stream::iter((0..data.len()).step_by(chunk))
            .map(|start| {
                let end = (start + chunk).min(data.len());
                sftp.write(handle, start as u64, data[start..end].to_vec())
            })
            .buffer_unordered(PIPELINE_DEPTH)
            .try_for_each(|_| async { Ok(()) })
            .await
            .map_err(|e| self.error(conn, ctx, e))?;
        if conn.fsync {
            match sftp.fsync(handle).await {
                Ok(_) => {}
                Err(SftpError::Status(s)) if s.status_code == StatusCode::OpUnsupported => {}
                Err(e) => return Err(self.error(conn, Ctx { key, what: "fsync" }, e)),
            }
        }
        Ok(())
    }

    /// Gives the finished temporary file its final name, create-only.
    pub(super) async fn publish(
        &self,
        conn: &Connection,
        sftp: &RawSftpSession,
        key: &str,
        tmp: &str,
        path: &str,
    ) -> Result<()> {
        let already = || BackendError::new(ErrorKind::AlreadyExists, &self.name, key, "");
        let ctx = Ctx {
            key,
            what: "publishing the object",
        };
        if conn.hardlink {
            match sftp.hardlink(tmp, path).await {
                Ok(_) => return Ok(()),
                Err(SftpError::Status(s))
                    if matches!(
                        s.status_code,
                        StatusCode::OpUnsupported | StatusCode::PermissionDenied
                    ) =>
                {
                    // No hard links on this filesystem: fall through to rename.
                }
                Err(SftpError::Status(s)) => {
                    // EEXIST arrives as a generic failure: confirm by looking.
                    return match self.exists(sftp, path).await {
                        Some(true) => Err(already()),
                        _ => Err(self
                            .error(conn, ctx, SftpError::Status(s))
                            .into_permanent_if_not_found()),
                    };
                }
                Err(e) => return Err(self.error(conn, ctx, e)),
            }
        }
        match self.exists(sftp, path).await {
            Some(true) => return Err(already()),
            Some(false) => {}
            None => {
                return Err(BackendError::new(
                    ErrorKind::Transient,
                    &self.name,
                    key,
                    "cannot tell whether the object exists",
                ))
            }
        }
        match sftp.rename(tmp, path).await {
            Ok(_) => Ok(()),
            Err(SftpError::Status(s)) => match self.exists(sftp, path).await {
                Some(true) => Err(already()),
                _ => Err(self
                    .error(conn, ctx, SftpError::Status(s))
                    .into_permanent_if_not_found()),
            },
            Err(e) => Err(self.error(conn, ctx, e)),
        }
    }
}

/// Attributes that create a file or directory readable by its owner alone
/// (OpenSSH's sftp-server applies them, under its umask).
fn owner_only(mode: u32) -> FileAttributes {
    FileAttributes {
        permissions: Some(mode),
        ..FileAttributes::empty()
    }
}
