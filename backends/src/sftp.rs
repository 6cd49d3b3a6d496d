//! A destination in a directory on an SFTP server (OpenSSH's `sftp-server` or
//! `internal-sftp`), over `russh` and `russh-sftp`.
//!
//! URL: `sftp://USER@HOST[:PORT]/PATH[?OPTIONS]`. `PATH` is absolute; `/~/dir`
//! is relative to the login directory. Options (query string):
//! - `known_hosts=FILE`: check the host key against this OpenSSH known_hosts
//!   file instead of `~/.ssh/known_hosts`;
//! - `fingerprint=SHA256:…`: accept exactly the host key with this fingerprint
//!   (as `ssh-keygen -lf` prints it) instead of consulting known_hosts;
//! - `identity=FILE` (repeatable): the private keys to log in with, instead of
//!   `~/.ssh/id_ed25519`, `id_ecdsa`, `id_rsa`; ssh-agent (`SSH_AUTH_SOCK`) is
//!   tried after them. Passphrase-protected keys must go through the agent;
//! - `channels=N` (1–32, default 4): SFTP channels per connection.
//!
//! Why it looks the way it does:
//! - **Lazy connection, shared by all calls.** [`SftpBackend::new`] only
//!   settles the options; the first call connects. One SSH connection carries a few SFTP channels (each a
//!   separate worker on the server) and every channel pipelines requests, so
//!   concurrent calls never wait on each other's round trips: a lock is held
//!   only while (re)connecting, never around an operation.
//! - **Reconnect after a drop.** A transport failure (I/O error, timeout, closed
//!   channel) fails the call with a `Transient` error and forgets the
//!   connection; the next call connects again.
//! - **Create-only, atomic puts.** The bytes go to `.tmp-<random>` in the target
//!   directory (listings skip such names), are fsynced when the server offers
//!   `fsync@openssh.com`, then published with `hardlink@openssh.com`, which
//!   fails when the name is taken: the first object stays as it was and the
//!   loser gets `AlreadyExists`. Servers without hard links get stat-then-rename
//!   (safe for content-named objects; OpenSSH's plain rename also refuses to
//!   replace). Directories are created on demand, racing creators tolerated.
//! - **Errors** arrive as SFTP status codes: "no such file" is `NotFound`, lost
//!   connections and timeouts are `Transient`, everything else `Permanent`.

mod connect;
mod options;
mod read;
mod write;

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};
use russh_sftp::client::error::Error as SftpError;
use russh_sftp::client::RawSftpSession;
use russh_sftp::protocol::{FileAttributes, FileType, OpenFlags, StatusCode};

use self::connect::Connection;
use self::options::SftpOptions;
pub use self::options::{HostKeyPolicy, SftpTarget};
use crate::backend::{validate_key, Backend, ObjectMeta};
use crate::error::{BackendError, ErrorKind, Result, UrlError};

/// Prefix of temporary files; listings skip them.
const TEMP_PREFIX: &str = ".tmp-";

/// Read or write requests of one object kept in flight at once.
const PIPELINE_DEPTH: usize = 8;
/// A ranged read up to this size is sent together with the stat that
/// checks the object (a round trip saved on every ranged read).
const EARLY_READ_MAX: u64 = 64 << 20;

/// Directories read at once by a listing.
const LIST_PARALLELISM: usize = 8;

/// A repository in a directory on an SFTP server.
pub struct SftpBackend {
    name: String,
    opts: Arc<SftpOptions>,
    /// The current connection, if any. Locked only to copy or replace the `Arc`.
    current: Mutex<Option<Arc<Connection>>>,
    /// Held while connecting, so concurrent callers wait for one new connection.
    connecting: tokio::sync::Mutex<()>,
    /// Connection attempts so far (the next attempt's id is this plus one).
    attempts: AtomicU64,
    /// How the latest attempt failed, if it did: `(attempt, kind, detail)`.
    /// Callers that queued behind that attempt share its failure instead of
    /// each waiting out another connect timeout.
    last_failure: Mutex<Option<(u64, ErrorKind, String)>>,
}

impl std::fmt::Debug for SftpBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SftpBackend")
            .field("name", &self.name)
            .field("location", &self.opts.location())
            .finish_non_exhaustive()
    }
}

/// Which object an SFTP failure concerns, and what was being done to it.
#[derive(Clone, Copy)]
struct Ctx<'a> {
    key: &'a str,
    what: &'a str,
}

impl SftpBackend {
    /// A backend for `target`. Nothing is contacted yet.
    ///
    /// # Errors
    /// [`UrlError::Invalid`] when the URL names no user and `$USER` is not
    /// set, or it names no host key check and there is no home directory to
    /// find `~/.ssh/known_hosts` in.
    pub fn new(name: impl Into<String>, target: &SftpTarget) -> Result<Self, UrlError> {
        Ok(SftpBackend {
            name: name.into(),
            opts: Arc::new(SftpOptions::resolve(target)?),
            current: Mutex::new(None),
            connecting: tokio::sync::Mutex::new(()),
            attempts: AtomicU64::new(0),
            last_failure: Mutex::new(None),
        })
    }

    fn cached(&self) -> Option<Arc<Connection>> {
        let slot = self.current.lock().unwrap_or_else(|e| e.into_inner());
        slot.as_ref().filter(|c| !c.is_closed()).cloned()
    }

    /// The live connection, connecting first when there is none.
    async fn conn(&self, key: &str) -> Result<Arc<Connection>> {
        if let Some(conn) = self.cached() {
            return Ok(conn);
        }
        let seen = self.attempts.load(Ordering::SeqCst);
        let _gate = self.connecting.lock().await;
        if let Some(conn) = self.cached() {
            return Ok(conn);
        }
        // An attempt made while this call waited for the gate failed: report
        // that failure rather than trying again at once.
        let failed = self
            .last_failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some((_, kind, detail)) = failed.filter(|(attempt, ..)| *attempt > seen) {
            return Err(BackendError::new(kind, &self.name, key, detail));
        }
        let id = self.attempts.fetch_add(1, Ordering::SeqCst) + 1;
        match connect::connect(&self.name, &self.opts, id).await {
            Ok(conn) => {
                let conn = Arc::new(conn);
                *self.current.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::clone(&conn));
                Ok(conn)
            }
            Err(mut e) => {
                *self.last_failure.lock().unwrap_or_else(|e| e.into_inner()) =
                    Some((id, e.kind, e.detail.clone()));
                e.key = key.to_string();
                Err(e)
            }
        }
    }

    /// Forgets `conn` (if still current) so the next call reconnects.
    fn drop_connection(&self, conn: &Connection) {
        let mut slot = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if slot.as_ref().is_some_and(|c| c.id == conn.id) {
            *slot = None;
        }
    }

    /// Sorts an SFTP failure into the typed errors; a transport failure also
    /// drops the connection.
    fn error(&self, conn: &Connection, ctx: Ctx<'_>, err: SftpError) -> BackendError {
        let kind = match &err {
            SftpError::Status(status) => match status.status_code {
                StatusCode::NoSuchFile => ErrorKind::NotFound,
                StatusCode::NoConnection | StatusCode::ConnectionLost => ErrorKind::Transient,
                _ => ErrorKind::Permanent,
            },
            SftpError::IO(_)
            | SftpError::Timeout
            | SftpError::UnexpectedPacket
            | SftpError::UnexpectedBehavior(_) => ErrorKind::Transient,
            SftpError::Limited(_) => ErrorKind::Permanent,
        };
        if kind == ErrorKind::Transient {
            self.drop_connection(conn);
        }
        let detail = match &err {
            SftpError::Status(s) if s.error_message.is_empty() => {
                format!("{}: {}", ctx.what, s.status_code)
            }
            SftpError::Status(s) => {
                format!("{}: {} ({})", ctx.what, s.status_code, s.error_message)
            }
            SftpError::Timeout => format!("{}: the server did not answer in time", ctx.what),
            other => format!("{}: {other}", ctx.what),
        };
        BackendError::new(kind, &self.name, ctx.key, detail).with_source(err)
    }

    /// Opens `key` and reads `range` of it, or all of it when it holds at
    /// most `limit` bytes.
    async fn read_object(&self, key: &str, range: Option<Range<u64>>, limit: u64) -> Result<Bytes> {
        if !validate_key(key) {
            return Err(self.invalid_key(key));
        }
        let conn = self.conn(key).await?;
        let sftp = conn.channel().await;
        let handle = sftp
            .open(self.remote(key), OpenFlags::READ, FileAttributes::empty())
            .await
            .map_err(|e| {
                self.error(
                    &conn,
                    Ctx {
                        key,
                        what: "opening",
                    },
                    e,
                )
            })?
            .handle;
        let result = self
            .read_range(&conn, &sftp, key, &handle, range, limit)
            .await;
        let _ = sftp.close(handle.as_str()).await;
        result
    }

    fn invalid_key(&self, key: &str) -> BackendError {
        BackendError::new(ErrorKind::Permanent, &self.name, key, "invalid object key")
    }

    /// The remote path of `rel` (a key or a key's directory; `""` is the root).
    fn remote(&self, rel: &str) -> String {
        let root = self.opts.root.as_str();
        match (root, rel) {
            ("", "") => ".".to_string(),
            ("", rel) => rel.to_string(),
            (root, "") => root.to_string(),
            ("/", rel) => format!("/{rel}"),
            (root, rel) => format!("{root}/{rel}"),
        }
    }

    /// Lists one directory (`rel` relative to the root): matching objects, and
    /// the subdirectories worth descending into.
    async fn read_dir(
        &self,
        conn: &Connection,
        rel: &str,
        prefix: &str,
    ) -> Result<(Vec<ObjectMeta>, Vec<String>)> {
        let sftp = conn.channel().await;
        let ctx = Ctx {
            key: rel,
            what: "listing",
        };
        let handle = match sftp.opendir(self.remote(rel)).await {
            Ok(h) => h.handle,
            Err(SftpError::Status(s)) if s.status_code == StatusCode::NoSuchFile => {
                return Ok((Vec::new(), Vec::new()))
            }
            Err(e) => return Err(self.error(conn, ctx, e)),
        };
        let mut objects = Vec::new();
        let mut dirs = Vec::new();
        let result = loop {
            match sftp.readdir(handle.as_str()).await {
                Ok(name) => {
                    for file in name.files {
                        let entry = file.filename;
                        if entry == "." || entry == ".." || entry.starts_with(TEMP_PREFIX) {
                            continue;
                        }
                        let key = if rel.is_empty() {
                            entry
                        } else {
                            format!("{rel}/{entry}")
                        };
                        match file.attrs.file_type() {
                            FileType::Dir
                                if key.starts_with(prefix)
                                    || prefix.starts_with(&format!("{key}/")) =>
                            {
                                dirs.push(key);
                            }
                            FileType::File if key.starts_with(prefix) => objects.push(ObjectMeta {
                                size: file.attrs.len(),
                                key,
                            }),
                            _ => {}
                        }
                    }
                }
                Err(SftpError::Status(s)) if s.status_code == StatusCode::Eof => break Ok(()),
                Err(e) => break Err(self.error(conn, ctx, e)),
            }
        };
        let _ = sftp.close(handle.as_str()).await;
        result.map(|()| (objects, dirs))
    }
}

/// A "no such file" while writing is not a missing object: the directory
/// vanished under us or the root is unusable.
trait WriteError {
    fn into_permanent_if_not_found(self) -> Self;
}

impl WriteError for BackendError {
    fn into_permanent_if_not_found(mut self) -> Self {
        if self.kind == ErrorKind::NotFound {
            self.kind = ErrorKind::Permanent;
        }
        self
    }
}

/// The directory part of a key or relative directory (`""` at the top).
fn parent(rel: &str) -> &str {
    rel.rfind('/').map_or("", |i| &rel[..i])
}

/// The state of a listing between two items.
struct Listing<'a> {
    backend: &'a SftpBackend,
    prefix: &'a str,
    conn: Option<Arc<Connection>>,
    pending_dirs: Vec<String>,
    ready: VecDeque<ObjectMeta>,
    failed: bool,
}

impl Listing<'_> {
    async fn next_item(&mut self) -> Option<Result<ObjectMeta>> {
        loop {
            if let Some(meta) = self.ready.pop_front() {
                return Some(Ok(meta));
            }
            if self.failed || self.pending_dirs.is_empty() {
                return None;
            }
            let conn = match &self.conn {
                Some(conn) => Arc::clone(conn),
                None => match self.backend.conn(self.prefix).await {
                    Ok(conn) => {
                        self.conn = Some(Arc::clone(&conn));
                        conn
                    }
                    Err(e) => {
                        self.failed = true;
                        return Some(Err(e));
                    }
                },
            };
            let take = self.pending_dirs.len().min(LIST_PARALLELISM);
            let batch: Vec<String> = self
                .pending_dirs
                .drain(self.pending_dirs.len() - take..)
                .collect();
            let results = futures::future::join_all(
                batch
                    .iter()
                    .map(|dir| self.backend.read_dir(&conn, dir, self.prefix)),
            )
            .await;
            for result in results {
                match result {
                    Ok((objects, dirs)) => {
                        self.ready.extend(objects);
                        self.pending_dirs.extend(dirs);
                    }
                    Err(e) => {
                        self.failed = true;
                        return Some(Err(e));
                    }
                }
            }
        }
    }
}

#[async_trait]
impl Backend for SftpBackend {
    fn name(&self) -> &str {
        &self.name
    }

    fn location(&self) -> String {
        self.opts.location()
    }

    async fn put(&self, key: &str, data: Bytes) -> Result<()> {
        if !validate_key(key) {
            return Err(self.invalid_key(key));
        }
        let path = self.remote(key);
        let conn = self.conn(key).await?;
        // One channel for the whole put: file handles belong to their channel.
        let sftp = conn.channel().await;
        let tmp = self.upload_temp(&conn, &sftp, key, &path, &data).await?;
        let published = self.publish(&conn, &sftp, key, &tmp, &path).await;
        // After a hard link (or a failed publish) the temporary name must go;
        // after a rename it is already gone and this fails harmlessly.
        let transport_lost = matches!(&published, Err(e) if e.kind == ErrorKind::Transient);
        if !transport_lost {
            let _ = sftp.remove(tmp.as_str()).await;
        }
        published
    }

    async fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<Bytes> {
        self.read_object(key, range, u64::MAX).await
    }

    async fn get_bounded(&self, key: &str, limit: u64) -> Result<Bytes> {
        self.read_object(key, None, limit).await
    }

    async fn stat(&self, key: &str) -> Result<ObjectMeta> {
        if !validate_key(key) {
            return Err(self.invalid_key(key));
        }
        let conn = self.conn(key).await?;
        let attrs = conn
            .channel()
            .await
            .stat(self.remote(key))
            .await
            .map_err(|e| self.error(&conn, Ctx { key, what: "stat" }, e))?
            .attrs;
        self.require_file(key, &attrs)?;
        Ok(ObjectMeta {
            key: key.to_string(),
            size: attrs.len(),
        })
    }

    fn list<'a>(&'a self, prefix: &'a str) -> BoxStream<'a, Result<ObjectMeta>> {
        // Start in the deepest directory the prefix names; filter by the rest.
        let listing = Listing {
            backend: self,
            prefix,
            conn: None,
            pending_dirs: vec![parent(prefix).to_string()],
            ready: VecDeque::new(),
            failed: false,
        };
        stream::unfold(listing, |mut listing| async move {
            listing.next_item().await.map(|item| (item, listing))
        })
        .boxed()
    }

    async fn delete(&self, key: &str) -> Result<()> {
        if !validate_key(key) {
            return Err(self.invalid_key(key));
        }
        let conn = self.conn(key).await?;
        let removed = conn.channel().await.remove(self.remote(key)).await;
        removed.map(|_| ()).map_err(|e| {
            self.error(
                &conn,
                Ctx {
                    key,
                    what: "deleting",
                },
                e,
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend(url: &str) -> SftpBackend {
        let url = url::Url::parse(url).expect("url");
        SftpBackend::new("s", &SftpTarget::from_url(&url).expect("target")).expect("backend")
    }

    #[test]
    fn remote_paths() {
        let abs = backend("sftp://u@h/srv/lb/?known_hosts=/k");
        assert_eq!(abs.remote("data/ab/x"), "/srv/lb/data/ab/x");
        assert_eq!(abs.remote(""), "/srv/lb");
        let home = backend("sftp://u@h/~?known_hosts=/k");
        assert_eq!(home.remote("config"), "config");
        assert_eq!(home.remote(""), ".");
        let top = backend("sftp://u@h/?known_hosts=/k");
        assert_eq!(top.remote("config"), "/config");
        assert_eq!(parent("data/ab/x"), "data/ab");
        assert_eq!(parent("config"), "");
        assert_eq!(parent("data/03/"), "data/03");
        assert_eq!(abs.location(), "sftp://u@h:22/srv/lb");
    }
}
