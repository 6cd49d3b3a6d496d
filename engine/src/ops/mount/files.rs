//! Reading files: each read fetches the blobs holding its bytes, and reads
//! ahead of the reader: within a file, the next [`FILE_AHEAD`] bytes of
//! blobs past each read, asked for again once half of them were consumed,
//! so a large file streams with several ranges in flight; across files,
//! see [`super::ahead`].
//!
//! Reads are by inode, not by open handle: a snapshot's file never changes,
//! so there is nothing an open would have to pin, and the kernel can skip
//! the open and release of every file (zero-message opens), which are two
//! of the four requests a small file costs otherwise. A file's blob map is
//! made on its first read (or open), which is also when reading ahead
//! across files moves on.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;

use super::filemap::FileMap;
use super::inodes::{Inode, Kind};
use super::{FsError, MountFs};
use crate::error::Error;
use crate::format::tree::{Node, NodeKind};

/// Bytes of a file read ahead of its reader.
pub const FILE_AHEAD: u64 = 16 << 20;

impl MountFs {
    /// Checks that `ino` is a regular file that can be read (every blob in
    /// the index), for a kernel that sends opens; reading ahead starts.
    ///
    /// # Errors
    /// [`FsError::IsDir`], [`FsError::Invalid`] for what is not a regular
    /// file, or a blob missing from the index.
    pub fn open(&self, ino: u64) -> Result<(), FsError> {
        let inode = self.inode(ino)?;
        self.map_of(&inode).map(|_| ())
    }

    /// `inode`'s blob map, made on first use (which also moves reading
    /// ahead across files on to it).
    fn map_of(&self, inode: &Arc<Inode>) -> Result<Arc<FileMap>, FsError> {
        if let Some(map) = inode.map.get() {
            return Ok(map.clone());
        }
        let node = match &inode.kind {
            Kind::Node { node, .. } => node,
            Kind::Virtual(_) | Kind::Snapshot(_) => return Err(FsError::IsDir),
            Kind::Link(_) => return Err(FsError::Invalid),
        };
        let map = Arc::new(self.file_map(node)?);
        if map.len() != node.size {
            tracing::warn!(
                "{}: the snapshot records {} bytes, its content holds {}; reads show the content",
                String::from_utf8_lossy(&node.name),
                node.size,
                map.len()
            );
        }
        let mut first = false;
        let map = inode
            .map
            .get_or_init(|| {
                first = true;
                map
            })
            .clone();
        if first {
            self.read_ahead(inode);
        }
        Ok(map)
    }

    /// A file's blobs with their lengths from the index.
    fn file_map(&self, node: &Node) -> Result<FileMap, FsError> {
        let NodeKind::File { content } = &node.kind else {
            return Err(match node.kind {
                NodeKind::Dir { .. } => FsError::IsDir,
                _ => FsError::Invalid,
            });
        };
        let index = self.inner.store.index();
        let mut blobs = Vec::with_capacity(content.len());
        for id in content {
            let location = index
                .lookup(id)
                .ok_or_else(|| Error::MissingBlob { blob: id.to_hex() })?;
            blobs.push((*id, u64::from(location.raw_length)));
        }
        Ok(FileMap::new(blobs))
    }

    /// [`MountFs::read`] when every blob it needs is cached; `None` when
    /// it must wait for the repository.
    pub fn try_read(&self, ino: u64, offset: u64, size: u32) -> Option<Result<Bytes, FsError>> {
        let (inode, map) = match self.inode(ino).and_then(|i| Ok((self.map_of(&i)?, i))) {
            Ok((map, inode)) => (inode, map),
            Err(e) => return Some(Err(e)),
        };
        let span = map.span(offset, u64::from(size));
        if span.is_empty() {
            return Some(Ok(Bytes::new()));
        }
        let parts = self.inner.store.cached(map.ids(span.clone()))?;
        self.read_ahead_in_file(&inode, &map, span.end);
        Some(Ok(map.assemble(span, &parts, offset, u64::from(size))))
    }

    /// Reads up to `size` bytes at `offset` of file `ino` (fewer only at the
    /// end of the file).
    ///
    /// # Errors
    /// [`FsError::Stale`] for an unknown inode, [`FsError::IsDir`] and
    /// [`FsError::Invalid`] for what is not a regular file; the
    /// repository's failure when no destination has a needed blob intact.
    pub async fn read(&self, ino: u64, offset: u64, size: u32) -> Result<Bytes, FsError> {
        let inode = self.inode(ino)?;
        let map = self.map_of(&inode)?;
        let span = map.span(offset, u64::from(size));
        if span.is_empty() {
            return Ok(Bytes::new());
        }
        // What the reader waits for is asked for before any guess.
        let wants = self.inner.store.want(map.ids(span.clone()));
        self.read_ahead_in_file(&inode, &map, span.end);
        let mut parts = Vec::with_capacity(wants.len());
        for want in wants {
            parts.push(want.get().await?);
        }
        Ok(map.assemble(span, &parts, offset, u64::from(size)))
    }

    /// Keeps [`FILE_AHEAD`] bytes of file `inode` past blob `end` asked
    /// for, asking for more once half of what was asked for is consumed (so
    /// each ask is large enough to coalesce).
    fn read_ahead_in_file(&self, inode: &Inode, map: &FileMap, end: usize) {
        let target = map.ahead(end, FILE_AHEAD);
        let done = inode.ahead.load(Ordering::Relaxed).max(end);
        if target > done && (map.start(done) - map.start(end)) * 2 <= FILE_AHEAD {
            inode.ahead.fetch_max(target, Ordering::Relaxed);
            self.inner.store.prefetch(map.ids(done..target));
        }
    }
}
