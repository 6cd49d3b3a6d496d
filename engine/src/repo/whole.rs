//! Whole-object reads within the format's size limits.
//!
//! A provider reports every size it likes, so an object is read whole only
//! up to the most bytes its kind can hold ([`ObjectKind::max_size`]): the
//! backend refuses a larger one before making room for it
//! ([`Backend::get_bounded`]), and the caller treats the refusal like a
//! damaged copy. The one legitimate object above its kind's limit is a pack
//! holding a single tree blob larger than a pack's usual size; such a pack
//! is read whole once its sealed header, which no provider can forge, has
//! proved its size.

use bytes::Bytes;
use lifeboat_backends::Backend;

use super::Repository;
use crate::format::ids::{ObjectKind, PackId};
use crate::format::pack::{decode_header, header_length, TRAILER_LEN};

/// Bytes read from a pack's end to find its header: the header and trailer
/// of a pack of a few large blobs fit in one request.
const TAIL_READ: u64 = 64 * 1024;

impl Repository {
    /// The most bytes an object of `kind` can hold in this repository.
    pub fn max_size(&self, kind: ObjectKind) -> u64 {
        kind.max_size(&self.params)
    }

    /// Reads the object `key` of `kind` whole from `backend`, if it holds
    /// no more than such an object can ([`Repository::max_size`]; a larger
    /// pack only when its sealed header proves the size).
    ///
    /// # Errors
    /// The backend's failure; for a larger object, the bounded read's
    /// refusal ([`BackendError::is_too_large`]), with nothing read.
    pub async fn read_whole(
        &self,
        backend: &dyn Backend,
        kind: ObjectKind,
        key: &str,
    ) -> lifeboat_backends::Result<Bytes> {
        let limit = self.max_size(kind);
        let refused = match backend.get_bounded(key, limit).await {
            Err(e) if kind == ObjectKind::Pack && e.is_too_large() => e,
            other => return other,
        };
        match self.sealed_pack_size(backend, key).await {
            Some(size) if size > limit => backend.get_bounded(key, size).await,
            _ => Err(refused),
        }
    }

    /// The size of the pack `key` on `backend` when its sealed header (read
    /// from the end, within the pack limit) opens with this repository's keys
    /// and its blobs fill exactly the space before it; `None` otherwise.
    async fn sealed_pack_size(&self, backend: &dyn Backend, key: &str) -> Option<u64> {
        let id: PackId = ObjectKind::Pack.name_of(key)?.parse().ok()?;
        let size = backend.stat(key).await.ok()?.size;
        let tail_start = size.saturating_sub(TAIL_READ);
        let tail = backend.get(key, Some(tail_start..size)).await.ok()?;
        let header_len = u64::from(header_length(&tail)?);
        // A header is never larger than the pack limit: read no more.
        if header_len > self.max_size(ObjectKind::Pack) {
            return None;
        }
        let start = size.checked_sub(header_len + TRAILER_LEN as u64)?;
        let end = size - TRAILER_LEN as u64;
        let header = if start >= tail_start {
            tail.slice((start - tail_start) as usize..(end - tail_start) as usize)
        } else {
            backend.get(key, Some(start..end)).await.ok()?
        };
        decode_header(&self.keys, &id, size, &header).ok()?;
        Some(size)
    }
}
