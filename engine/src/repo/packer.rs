//! The packer of operations that write blobs outside a backup (`prune`'s
//! repacking, `rewrite`'s new trees): sealed blobs gathered into packs by
//! type, each pack written to every destination as it fills, and the index
//! files listing them written only after their packs (invariant 1's order).
//! A backup has its own pipeline (`ops::backup`), with a queue per
//! destination; these writes are small or rare enough to go one pack at a
//! time.

use crate::error::Result;
use crate::format::crypto::blob_aad;
use crate::format::ids::{BlobId, ObjectKind, PackId};
use crate::format::index::IndexFile;
use crate::format::pack::{BlobType, PackEntry, PackWriter};
use crate::repo::Repository;

/// Blobs per index file before a new one is started (the format's rule).
const INDEX_FILE_BLOBS: usize = crate::format::index::MAX_FILE_BLOBS;

/// Writes new packs (and the index files listing them) as they fill.
pub(crate) struct Packer<'a> {
    repo: &'a Repository,
    data: PackWriter,
    tree: PackWriter,
    index: IndexFile,
    packs_written: u64,
}

impl<'a> Packer<'a> {
    /// An empty packer writing to `repo`.
    pub fn new(repo: &'a Repository) -> Self {
        // Room for a full pack and its header up front: a buffer grown by
        // doubling would reach twice the pack size.
        let room = Self::room(repo);
        Packer {
            repo,
            data: PackWriter::with_capacity(room),
            tree: PackWriter::with_capacity(room),
            index: IndexFile::new(),
            packs_written: 0,
        }
    }

    fn room(repo: &Repository) -> usize {
        repo.params().pack_size as usize + (1 << 20)
    }

    fn pack_for(&mut self, blob_type: BlobType) -> &mut PackWriter {
        match blob_type {
            BlobType::Data => &mut self.data,
            BlobType::Tree => &mut self.tree,
        }
    }

    /// Adds a blob already sealed (copied from another pack, verified).
    ///
    /// # Errors
    /// A full pack's upload failing on every destination.
    pub async fn add(
        &mut self,
        blob_type: BlobType,
        id: BlobId,
        sealed: &[u8],
        raw: u32,
    ) -> Result<()> {
        let limit = self.repo.params().pack_size as usize;
        let pack = self.pack_for(blob_type);
        if pack.is_full_for(sealed.len(), limit) {
            self.flush(blob_type).await?;
        }
        self.pack_for(blob_type).add(blob_type, id, sealed, raw);
        Ok(())
    }

    /// Seals `plaintext` (named `id`, compressed at the repository's level)
    /// and adds it.
    ///
    /// # Errors
    /// As [`Packer::add`].
    pub async fn add_plain(
        &mut self,
        blob_type: BlobType,
        id: BlobId,
        plaintext: &[u8],
    ) -> Result<()> {
        let mut sealed = Vec::with_capacity(plaintext.len() / 2 + 64);
        let level = self.repo.params().compression;
        let compression = (level > 0).then_some(level);
        self.repo.keys().seal_blob(
            &blob_aad(blob_type.as_u8(), &id),
            plaintext,
            compression,
            &mut sealed,
        );
        self.add(blob_type, id, &sealed, plaintext.len() as u32)
            .await
    }

    async fn flush(&mut self, blob_type: BlobType) -> Result<()> {
        let room = Self::room(self.repo);
        let pack = std::mem::replace(self.pack_for(blob_type), PackWriter::with_capacity(room));
        if pack.is_empty() {
            return Ok(());
        }
        let finished = pack.finish(self.repo.keys());
        self.repo
            .destinations()
            .put_content(&ObjectKind::Pack.key(&finished.id.to_hex()), finished.bytes)
            .await?;
        self.packs_written += 1;
        self.list(finished.id, &finished.entries).await
    }

    /// Adds a stored pack to the index being written; writes the index
    /// file when full.
    ///
    /// # Errors
    /// The index file's write failing on every destination.
    pub async fn list(&mut self, pack: PackId, entries: &[PackEntry]) -> Result<()> {
        self.index.add_pack(pack, entries);
        if self.index.blob_count() >= INDEX_FILE_BLOBS {
            let full = std::mem::take(&mut self.index);
            self.repo.save_index(&full).await?;
        }
        Ok(())
    }

    /// Writes the open packs and the last index file; returns the number of
    /// packs written.
    ///
    /// # Errors
    /// As [`Packer::add`] and [`Packer::list`].
    pub async fn finish(mut self) -> Result<u64> {
        self.flush(BlobType::Data).await?;
        self.flush(BlobType::Tree).await?;
        if !self.index.packs.is_empty() {
            let last = std::mem::take(&mut self.index);
            self.repo.save_index(&last).await?;
        }
        Ok(self.packs_written)
    }
}
