//! Reading objects over SFTP: a ranged read pipelined in chunks, sent
//! together with the stat that checks the object.

use std::ops::Range;

use bytes::{Bytes, BytesMut};
use futures::stream::{self, StreamExt};
use russh_sftp::client::error::Error as SftpError;
use russh_sftp::client::RawSftpSession;
use russh_sftp::protocol::{FileAttributes, FileType, StatusCode};

use super::connect::Connection;
use super::{Ctx, SftpBackend, EARLY_READ_MAX, PIPELINE_DEPTH};
use crate::backend::resolve_range;
use crate::error::{BackendError, ErrorKind, Result};

impl SftpBackend {
    /// Reads `len` bytes at `offset`, asking again after short answers.
    async fn read_exact_at(
        &self,
        conn: &Connection,
        sftp: &RawSftpSession,
        key: &str,
        handle: &str,
        offset: u64,
        len: u32,
    ) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(len as usize);
        while out.len() < len as usize {
            let at = offset + out.len() as u64;
            let want = len - out.len() as u32;
            match sftp.read(handle, at, want).await {
                Ok(data) if !data.data.is_empty() => {
                    let take = data.data.len().min(want as usize);
                    out.extend_from_slice(&data.data[..take]);
                }
                Ok(_) => return Err(self.shrank(key, at)),
                Err(SftpError::Status(s)) if s.status_code == StatusCode::Eof => {
                    return Err(self.shrank(key, at))
                }
                Err(e) => {
                    return Err(self.error(
                        conn,
                        Ctx {
                            key,
                            what: "reading",
                        },
                        e,
                    ))
                }
            }
        }
        Ok(out)
    }

    fn shrank(&self, key: &str, at: u64) -> BackendError {
        BackendError::new(
            ErrorKind::Permanent,
            &self.name,
            key,
            format!("object ended at byte {at}, before the requested range (it shrank while read)"),
        )
    }

    /// Reads `range` of an open file, or the whole file when it holds at
    /// most `limit` bytes (checked on the size the server reports before
    /// anything is read; the read then takes exactly that many bytes).
    pub(super) async fn read_range(
        &self,
        conn: &Connection,
        sftp: &RawSftpSession,
        key: &str,
        handle: &str,
        range: Option<Range<u64>>,
        limit: u64,
    ) -> Result<Bytes> {
        // A ranged read of a sensible size goes out with the stat, not a
        // round trip after it; the size is checked when both are back.
        if let Some(r) = range
            .clone()
            .filter(|r| r.start <= r.end && r.end - r.start <= EARLY_READ_MAX)
        {
            let stat = sftp.fstat(handle);
            let read = self.read_span(conn, sftp, key, handle, r.clone());
            let (attrs, data) = tokio::join!(stat, read);
            let attrs = attrs.map_err(|e| self.error(conn, Ctx { key, what: "stat" }, e))?;
            self.check_file(key, &attrs.attrs, Some(r))?;
            return data;
        }
        let attrs = sftp
            .fstat(handle)
            .await
            .map_err(|e| self.error(conn, Ctx { key, what: "stat" }, e))?;
        self.check_file(key, &attrs.attrs, range.clone())?;
        let size = attrs.attrs.size.unwrap_or(0);
        if range.is_none() && size > limit {
            return Err(BackendError::too_large(&self.name, key, Some(size), limit));
        }
        let (range, _) = resolve_range(&self.name, key, range, size)?;
        self.read_span(conn, sftp, key, handle, range).await
    }

    /// An object is a regular file; anything else there counts as missing.
    pub(super) fn require_file(&self, key: &str, attrs: &FileAttributes) -> Result<()> {
        if attrs.file_type() == FileType::File {
            return Ok(());
        }
        Err(BackendError::new(
            ErrorKind::NotFound,
            &self.name,
            key,
            "not a file",
        ))
    }

    /// The object's attributes must show a regular file holding `range`.
    fn check_file(
        &self,
        key: &str,
        attrs: &FileAttributes,
        range: Option<Range<u64>>,
    ) -> Result<()> {
        self.require_file(key, attrs)?;
        let size = attrs.size.ok_or_else(|| {
            BackendError::new(
                ErrorKind::Permanent,
                &self.name,
                key,
                "the server did not report the object's size",
            )
        })?;
        resolve_range(&self.name, key, range, size).map(|_| ())
    }

    /// Reads `range` of an open file in pipelined chunks.
    async fn read_span(
        &self,
        conn: &Connection,
        sftp: &RawSftpSession,
        key: &str,
        handle: &str,
        range: Range<u64>,
    ) -> Result<Bytes> {
        let total = usize::try_from(range.end - range.start).map_err(|_| {
            BackendError::new(ErrorKind::Permanent, &self.name, key, "range too large")
        })?;
        let chunk = u64::from(conn.read_chunk.max(1));
        let mut buf = BytesMut::with_capacity(total);
        let mut parts = stream::iter((range.start..range.end).step_by(chunk as usize))
            .map(|start| {
                let len = (range.end - start).min(chunk) as u32;
                self.read_exact_at(conn, sftp, key, handle, start, len)
            })
            .buffered(PIPELINE_DEPTH);
        while let Some(part) = parts.next().await {
            buf.extend_from_slice(&part?);
        }
        Ok(buf.freeze())
    }
}
