//! The one storage abstraction every destination implements.

use std::ops::Range;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;

use crate::error::{BackendError, ErrorKind, Result};

/// What a listing or `stat` tells about one stored object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    /// The object's key, relative to the destination root (`data/ab/ab12…`).
    pub key: String,
    /// The object's size in bytes.
    pub size: u64,
}

/// An object store holding a Lifeboat repository: flat keys with `/` separators.
///
/// Keys are relative, use `/` as separator and never contain `..`, empty
/// segments or a leading `/`. Implementations must be safe to call concurrently.
#[async_trait]
pub trait Backend: Send + Sync + std::fmt::Debug {
    /// The destination's name, used in every error and message.
    fn name(&self) -> &str;

    /// A human-readable location (path or URL without credentials).
    fn location(&self) -> String;

    /// Stores `data` under `key` if, and only if, no object exists there yet.
    ///
    /// The write is atomic: readers see either no object or the whole of it.
    ///
    /// # Errors
    /// `AlreadyExists` when the key is taken (the stored object is left as it
    /// was); `Transient`/`Permanent` on storage failures, in which case no
    /// partial object is visible under `key`.
    async fn put(&self, key: &str, data: Bytes) -> Result<()>;

    /// Reads the whole object, or the byte `range` of it.
    ///
    /// A whole read (`None`) holds whatever size the store reports: code
    /// that reads objects a provider controls reads them whole with
    /// [`Backend::get_bounded`] instead.
    ///
    /// # Errors
    /// `NotFound` when the key does not exist. A range that reaches past the end
    /// of the object is a `Permanent` error, never a short read.
    async fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<Bytes>;

    /// Reads the whole object, if it holds at most `limit` bytes.
    ///
    /// The size the store reports is checked before any room is made for the
    /// bytes, and no more than `limit` bytes are ever taken in (an object
    /// that grows while it is read fails too): a provider cannot make the
    /// caller allocate more than `limit` bytes, whatever it claims.
    ///
    /// # Errors
    /// `NotFound` when the key does not exist; for an object larger than
    /// `limit`, a `Permanent` error naming the object, its size and the limit
    /// ([`BackendError::too_large`], recognized by
    /// [`BackendError::is_too_large`]), with nothing read.
    async fn get_bounded(&self, key: &str, limit: u64) -> Result<Bytes>;

    /// Returns the object's metadata.
    ///
    /// # Errors
    /// `NotFound` when the key does not exist.
    async fn stat(&self, key: &str) -> Result<ObjectMeta>;

    /// Streams every object whose key starts with `prefix`, in no set order.
    ///
    /// A prefix that matches nothing yields an empty stream, not an error.
    /// A failure part-way yields an `Err` item; items before it are valid.
    fn list<'a>(&'a self, prefix: &'a str) -> BoxStream<'a, Result<ObjectMeta>>;

    /// Removes the object.
    ///
    /// # Errors
    /// `NotFound` when the key does not exist.
    async fn delete(&self, key: &str) -> Result<()>;
}

/// Checks that `key` is a well-formed relative object key.
pub fn validate_key(key: &str) -> bool {
    !key.is_empty()
        && !key.starts_with('/')
        && key
            .split('/')
            .all(|seg| !seg.is_empty() && seg != "." && seg != ".." && !seg.contains('\0'))
}

/// Resolves an optional byte range against an object of `size` bytes, and
/// returns it with its length: the whole object for `None`, a `Permanent`
/// error for a range that reaches past the end (never a short read).
///
/// # Errors
/// A range outside the object, or one too long for memory.
pub fn resolve_range(
    destination: &str,
    key: &str,
    range: Option<Range<u64>>,
    size: u64,
) -> Result<(Range<u64>, usize)> {
    let range = range.unwrap_or(0..size);
    if range.start > range.end || range.end > size {
        return Err(BackendError::new(
            ErrorKind::Permanent,
            destination,
            key,
            format!(
                "range {}..{} outside object of {size} bytes",
                range.start, range.end
            ),
        ));
    }
    let len = usize::try_from(range.end - range.start).map_err(|_| {
        BackendError::new(ErrorKind::Permanent, destination, key, "range too large")
    })?;
    Ok((range, len))
}
