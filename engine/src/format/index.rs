//! Index files: a sealed postcard [`IndexFile`] listing, per pack, the
//! blobs it holds with their types, offsets and lengths. Loading them into
//! the in-memory lookup is [`crate::repo::index::MasterIndex`]'s work.

use serde::{Deserialize, Serialize};

use super::{RepoFile, SealedFile};
use crate::format::ids::{BlobId, PackId};
use crate::format::pack::{BlobType, PackEntry};

/// The index file version written and read.
pub const INDEX_VERSION: u8 = 1;
/// The AAD an index file is sealed with.
pub const INDEX_AAD: &[u8] = b"lifeboat.index.v1";
/// A writer starts a new index file once the one it fills lists this many
/// blobs, so one lists fewer than this plus one pack's worth
/// ([`crate::format::pack::MAX_PACK_BLOBS`]).
pub const MAX_FILE_BLOBS: usize = 100_000;

/// One blob of a pack, as listed in an index file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexBlob {
    /// Blob type.
    pub blob_type: BlobType,
    /// Blob id.
    pub id: BlobId,
    /// Offset in the pack.
    pub offset: u32,
    /// Sealed length.
    pub length: u32,
    /// Plaintext length.
    pub raw_length: u32,
}

/// One pack and its blobs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexPack {
    /// The pack's name.
    pub id: PackId,
    /// Its blobs, in pack order.
    pub blobs: Vec<IndexBlob>,
}

/// A stored index file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexFile {
    /// Format version (1).
    pub version: u8,
    /// The packs it describes.
    pub packs: Vec<IndexPack>,
}

impl Default for IndexFile {
    /// An empty version-1 index file (what `std::mem::take` leaves behind
    /// must be writable too).
    fn default() -> Self {
        IndexFile::new()
    }
}

impl IndexFile {
    /// An empty version-1 index file.
    pub fn new() -> Self {
        IndexFile {
            version: INDEX_VERSION,
            packs: Vec::new(),
        }
    }

    /// Adds a pack's entries.
    pub fn add_pack(&mut self, id: PackId, entries: &[PackEntry]) {
        self.packs.push(IndexPack {
            id,
            blobs: entries
                .iter()
                .map(|e| IndexBlob {
                    blob_type: e.blob_type,
                    id: e.id,
                    offset: e.offset,
                    length: e.length,
                    raw_length: e.raw_length,
                })
                .collect(),
        });
    }

    /// Number of blobs listed.
    pub fn blob_count(&self) -> usize {
        self.packs.iter().map(|p| p.blobs.len()).sum()
    }
}

impl RepoFile for IndexFile {
    const KIND: &'static str = "index";
    const VERSION: u8 = INDEX_VERSION;

    fn version(&self) -> u8 {
        self.version
    }
}

impl SealedFile for IndexFile {
    const AAD: &'static [u8] = INDEX_AAD;
    const COMPRESSION: Option<i32> = Some(3);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::crypto::MasterKeys;

    fn blob(n: u8, offset: u32) -> IndexBlob {
        IndexBlob {
            blob_type: BlobType::Data,
            id: BlobId([n; 32]),
            offset,
            length: 10,
            raw_length: 8,
        }
    }

    #[test]
    fn index_file_round_trip() {
        let keys = MasterKeys::generate();
        let mut file = IndexFile::new();
        file.packs.push(IndexPack {
            id: PackId([1; 32]),
            blobs: vec![blob(9, 0), blob(3, 10)],
        });
        file.packs.push(IndexPack {
            id: PackId([2; 32]),
            blobs: vec![blob(5, 0)],
        });
        let sealed = file.seal(&keys);
        let opened = IndexFile::open(&keys, "x", &sealed).unwrap();
        assert_eq!(opened, file);
        // A taken index file leaves a writable one behind.
        let mut taken = IndexFile::new();
        let _ = std::mem::take(&mut taken);
        assert_eq!(taken.version, INDEX_VERSION);
    }

    use crate::format::crypto::mutate;
    use proptest::prelude::*;

    fn index_files() -> impl Strategy<Value = IndexFile> {
        let blob = (
            any::<bool>(),
            any::<[u8; 32]>(),
            any::<u32>(),
            any::<u32>(),
            any::<u32>(),
        )
            .prop_map(|(tree, id, offset, length, raw_length)| IndexBlob {
                blob_type: if tree { BlobType::Tree } else { BlobType::Data },
                id: BlobId(id),
                offset,
                length,
                raw_length,
            });
        let pack =
            (any::<[u8; 32]>(), prop::collection::vec(blob, 0..8)).prop_map(|(id, blobs)| {
                IndexPack {
                    id: PackId(id),
                    blobs,
                }
            });
        prop::collection::vec(pack, 0..6).prop_map(|packs| IndexFile { version: 1, packs })
    }

    #[test]
    fn huge_length_prefixes_fail_fast() {
        let keys = MasterKeys::generate();
        let huge = [0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x10]; // 2^60
        let mut packs = vec![1];
        packs.extend_from_slice(&huge);
        let mut blobs = vec![1, 1];
        blobs.extend_from_slice(&[7; 32]);
        blobs.extend_from_slice(&huge);
        for plain in [packs, blobs] {
            let mut sealed = Vec::new();
            keys.seal(INDEX_AAD, &plain, None, &mut sealed);
            let started = std::time::Instant::now();
            assert!(IndexFile::open(&keys, "huge", &sealed).is_err());
            assert!(started.elapsed() < std::time::Duration::from_secs(1));
        }
    }

    proptest! {
        #[test]
        fn arbitrary_index_bytes_never_panic(bytes in mutate::bytes(400)) {
            let keys = MasterKeys::generate();
            prop_assert!(IndexFile::open(&keys, "p", &bytes).is_err());
            let _ = postcard::from_bytes::<IndexFile>(&bytes);
        }

        #[test]
        fn arbitrary_index_plaintext_never_panics(plain in mutate::bytes(400)) {
            let keys = MasterKeys::generate();
            let mut sealed = Vec::new();
            keys.seal(INDEX_AAD, &plain, Some(3), &mut sealed);
            if let Ok(file) = IndexFile::open(&keys, "p", &sealed) {
                prop_assert_eq!(file.version, INDEX_VERSION);
            }
        }

        #[test]
        fn index_files_round_trip(file in index_files()) {
            let keys = MasterKeys::generate();
            let plain = postcard::to_stdvec(&file).unwrap();
            prop_assert_eq!(&postcard::from_bytes::<IndexFile>(&plain).unwrap(), &file);
            let sealed = file.seal(&keys);
            prop_assert_eq!(&IndexFile::open(&keys, "p", &sealed).unwrap(), &file);
        }

        #[test]
        fn mutated_index_files_are_rejected(file in index_files(), m in mutate::mutations()) {
            let keys = MasterKeys::generate();
            let sealed = file.seal(&keys);
            let bad = mutate::apply(&sealed, &m);
            prop_assume!(bad != sealed);
            prop_assert!(IndexFile::open(&keys, "p", &bad).is_err());
        }
    }
}
