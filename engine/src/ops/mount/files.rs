//! Reading files: each read fetches the blobs holding its bytes, and reads
//! ahead of the reader.
//!
//! Two kinds of read-ahead, both read as coalesced pack ranges:
//! - **within a file**: the next [`FILE_AHEAD`] bytes of blobs past each
//!   read, asked for again once half of them were consumed, so a large
//!   file streams with several ranges in flight;
//! - **across a directory**: opening a file asks for the blobs of the files
//!   after it in the directory's order (the order `ls`, `tar`, `cp -r` and
//!   `rsync` read in), up to [`DIR_AHEAD_FILES`] files or
//!   [`DIR_AHEAD_BYTES`] (at most [`FILE_AHEAD`] of each). A home directory
//!   is mostly files of one small blob each, stored side by side in the
//!   order a backup walked them, so one ranged read brings dozens of them:
//!   the round trip per file that a far destination would cost is paid
//!   once per range instead.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;

use super::filemap::FileMap;
use super::inodes::{DirKey, Kind};
use super::{FsError, Handle, MountFs};
use crate::error::Error;
use crate::format::ids::BlobId;
use crate::format::tree::{Node, NodeKind};

/// Bytes of a file read ahead of its reader.
pub const FILE_AHEAD: u64 = 16 << 20;
/// Files of a directory read ahead of the one opened.
pub const DIR_AHEAD_FILES: usize = 1024;
/// Bytes of a directory's next files read ahead of the one opened.
pub const DIR_AHEAD_BYTES: u64 = 16 << 20;
/// Directories whose read-ahead position is remembered; past this they are
/// forgotten (read-ahead then starts again from the file opened).
const CURSORS: usize = 4096;

/// An open file.
pub(crate) struct OpenFile {
    map: Arc<FileMap>,
    /// The blobs before this one were asked for already.
    ahead: AtomicUsize,
}

impl MountFs {
    /// Opens regular file `ino` for reading, and reads ahead the files after
    /// it in its directory.
    ///
    /// # Errors
    /// [`FsError::IsDir`], [`FsError::Invalid`] for what is not a regular
    /// file, or a blob missing from the index.
    pub async fn open(&self, ino: u64) -> Result<u64, FsError> {
        let inode = self.inode(ino)?;
        let (node, listed_in) = match &inode.kind {
            Kind::Node { node, listed_in } => (node, listed_in),
            Kind::Virtual(_) | Kind::Snapshot(_) => return Err(FsError::IsDir),
            Kind::Link(_) => return Err(FsError::Invalid),
        };
        let map = match inode.map.get() {
            Some(map) => map.clone(),
            None => {
                let map = Arc::new(self.file_map(node)?);
                if map.len() != node.size {
                    tracing::warn!(
                        "{}: the snapshot records {} bytes, its content holds {}; reads show the content",
                        String::from_utf8_lossy(&node.name),
                        node.size,
                        map.len()
                    );
                }
                inode.map.get_or_init(|| map).clone()
            }
        };
        self.read_ahead_dir(listed_in, &node.name).await;
        let file = OpenFile {
            map,
            ahead: AtomicUsize::new(0),
        };
        Ok(self.new_handle(Handle::File(Arc::new(file))))
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

    /// Reads ahead the files after `name` in listing `key`, unless enough
    /// of them were asked for already by an earlier open.
    async fn read_ahead_dir(&self, key: &DirKey, name: &[u8]) {
        let Ok(tree) = self.tree_of(key).await else {
            return;
        };
        let Ok(at) = tree.nodes.binary_search_by(|n| n.name.as_slice().cmp(name)) else {
            return;
        };
        let index = self.inner.store.index();
        let ids = {
            let mut cursors = self.inner.cursors.lock().unwrap_or_else(|p| p.into_inner());
            // A position behind this file, or far past it (another reader
            // elsewhere in the directory), starts again here.
            let from = cursors
                .get(key)
                .copied()
                .filter(|&c| c > at && c <= at + DIR_AHEAD_FILES)
                .unwrap_or(at);
            let lead: u64 = tree.nodes[at..from].iter().map(ahead_bytes).sum();
            if from - at > DIR_AHEAD_FILES / 2 || lead > DIR_AHEAD_BYTES / 2 {
                return;
            }
            let (mut end, mut bytes, mut ids) = (from, lead, Vec::<BlobId>::new());
            while end < tree.nodes.len() && end - at < DIR_AHEAD_FILES && bytes < DIR_AHEAD_BYTES {
                if let NodeKind::File { content } = &tree.nodes[end].kind {
                    let mut of_file = 0;
                    for id in content {
                        if of_file >= FILE_AHEAD {
                            break;
                        }
                        let len = index.lookup(id).map_or(0, |l| u64::from(l.raw_length));
                        of_file += len;
                        ids.push(*id);
                    }
                    bytes += of_file;
                }
                end += 1;
            }
            if cursors.len() >= CURSORS {
                cursors.clear();
            }
            cursors.insert(key.clone(), end);
            ids
        };
        self.inner.store.prefetch(&ids);
    }

    fn file_of(&self, fh: u64) -> Result<Arc<OpenFile>, FsError> {
        match self
            .inner
            .handles
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&fh)
        {
            Some(Handle::File(file)) => Ok(file.clone()),
            _ => Err(FsError::Stale),
        }
    }

    /// Reads up to `size` bytes at `offset` of open file `fh` (fewer only at
    /// the end of the file).
    ///
    /// # Errors
    /// [`FsError::Stale`] for an unknown handle; the repository's failure
    /// when no destination has a needed blob intact.
    pub async fn read(&self, fh: u64, offset: u64, size: u32) -> Result<Bytes, FsError> {
        let file = self.file_of(fh)?;
        let map = &file.map;
        let span = map.span(offset, u64::from(size));
        if span.is_empty() {
            return Ok(Bytes::new());
        }
        // What the reader waits for is asked for before any guess.
        let wants = self.inner.store.want(map.ids(span.clone()));
        let target = map.ahead(span.end, FILE_AHEAD);
        let done = file.ahead.load(Ordering::Relaxed).max(span.end);
        // Ask for more once half of what was asked for is consumed, so
        // each ask is large enough to coalesce.
        if target > done && (map.start(done) - map.start(span.end)) * 2 <= FILE_AHEAD {
            file.ahead.fetch_max(target, Ordering::Relaxed);
            self.inner.store.prefetch(map.ids(done..target));
        }
        let mut parts = Vec::with_capacity(wants.len());
        for want in wants {
            parts.push(want.get().await?);
        }
        Ok(map.assemble(span, &parts, offset, u64::from(size)))
    }

    /// Closes file or directory handle `fh`.
    pub fn release(&self, fh: u64) {
        self.inner
            .handles
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&fh);
    }
}

/// The bytes of `node` that reading ahead across its directory takes.
fn ahead_bytes(node: &Node) -> u64 {
    match node.kind {
        NodeKind::File { .. } => node.size.min(FILE_AHEAD),
        _ => 0,
    }
}
