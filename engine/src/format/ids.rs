//! Identifier newtypes: 32-byte hashes shown as 64 hex digits.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::config::RepoParams;
use super::crypto::SEAL_OVERHEAD;
use super::pack::PACK_HEADER_ROOM;
use crate::error::{Error, Result};

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
        pub struct $name(pub [u8; 32]);

        impl $name {
            /// The id as 64 lowercase hex digits.
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }

            /// The first 8 hex digits, as shown in tables.
            pub fn short(&self) -> String {
                hex::encode(&self.0[..4])
            }

            /// The raw bytes.
            pub fn as_bytes(&self) -> &[u8; 32] {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.short())
            }
        }

        impl FromStr for $name {
            type Err = hex::FromHexError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let mut out = [0u8; 32];
                hex::decode_to_slice(s, &mut out)?;
                Ok($name(out))
            }
        }
    };
}

id_type!(
    /// A blob's id: keyed BLAKE3 of its plaintext (never leaves sealed objects).
    BlobId
);
id_type!(
    /// A pack file's name: BLAKE3 of its stored bytes.
    PackId
);
id_type!(
    /// A snapshot object's name: BLAKE3 of its stored bytes.
    SnapshotId
);
id_type!(
    /// An index file's name: BLAKE3 of its stored bytes.
    IndexId
);
id_type!(
    /// A key file's name: BLAKE3 of its stored bytes.
    KeyId
);
id_type!(
    /// The repository's random id, stored in plaintext in `config`.
    RepoId
);

/// BLAKE3 (unkeyed) of stored bytes: the name of every content-named object.
pub fn storage_hash(bytes: &[u8]) -> [u8; 32] {
    *blake3::hash(bytes).as_bytes()
}

/// Kinds of stored object and their key prefixes (`config` is the one
/// object outside them: [`CONFIG_KEY`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    /// `data/<xx>/<id>`.
    Pack,
    /// `index/<id>`.
    Index,
    /// `snapshots/<id>`.
    Snapshot,
    /// `keys/<id>`.
    Key,
    /// `locks/<id>`.
    Lock,
    /// `deletions/<id>`: records of objects removed by forget and prune.
    Deletion,
}

impl ObjectKind {
    /// Every kind, in the order FORMAT.md lists them.
    pub const ALL: [ObjectKind; 6] = [
        ObjectKind::Key,
        ObjectKind::Pack,
        ObjectKind::Index,
        ObjectKind::Snapshot,
        ObjectKind::Lock,
        ObjectKind::Deletion,
    ];

    /// The listing prefix of this kind.
    pub fn prefix(self) -> &'static str {
        match self {
            ObjectKind::Pack => "data/",
            ObjectKind::Index => "index/",
            ObjectKind::Snapshot => "snapshots/",
            ObjectKind::Key => "keys/",
            ObjectKind::Lock => "locks/",
            ObjectKind::Deletion => "deletions/",
        }
    }

    /// The storage key of the object named `hex`.
    pub fn key(self, hex: &str) -> String {
        match self {
            ObjectKind::Pack => format!("data/{}/{hex}", hex.get(..2).unwrap_or(hex)),
            other => format!("{}{hex}", other.prefix()),
        }
    }

    /// Extracts the object name from a storage key of this kind.
    pub fn name_of(self, key: &str) -> Option<&str> {
        let rest = key.strip_prefix(self.prefix())?;
        let name = match self {
            ObjectKind::Pack => rest.split_once('/')?.1,
            _ => rest,
        };
        let lower_hex = |s: &str| {
            s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        // Checked before any slicing: a listed name is untrusted and may
        // hold multi-byte characters anywhere.
        if name.len() != 64 || !lower_hex(name) {
            return None;
        }
        // A pack must sit in the directory named by its first two hex digits.
        let placed = self != ObjectKind::Pack
            || (rest.get(..2) == name.get(..2) && rest.as_bytes().get(2) == Some(&b'/'));
        placed.then_some(name)
    }
}

/// Storage key of the repository config object.
pub const CONFIG_KEY: &str = "config";

// The most bytes a stored object of each kind can hold (FORMAT.md §7.4).
// Each is well above what this implementation's writers produce, and a
// writer never stores more; a reader refuses a larger object before making
// room for it, as it would a damaged one.

/// Most bytes of `config` (written: 100 bytes with the default parameters,
/// at most 110).
pub const MAX_CONFIG_LEN: u64 = 4 << 10;
/// Most bytes of a key file (written: about 450 bytes, under 1 KiB with
/// 255-byte host and user names).
pub const MAX_KEY_FILE_LEN: u64 = 64 << 10;
/// Most bytes of a lock (written: about 100 bytes, under 600 with 255-byte
/// host and user names).
pub const MAX_LOCK_LEN: u64 = 64 << 10;
/// Most bytes of a deletion record (written: at most
/// [`crate::format::deletion::MAX_RECORD_KEYS`] keys of at most 74 bytes,
/// under 8 MB).
pub const MAX_DELETION_LEN: u64 = 16 << 20;
/// Most bytes of an index file (written: at most
/// [`crate::format::index::MAX_FILE_BLOBS`] blobs, under 10 MB).
pub const MAX_INDEX_LEN: u64 = 32 << 20;
/// Most bytes of a snapshot (its paths and tags are the user's: a writer
/// refuses a larger snapshot rather than store one no reader takes).
pub const MAX_SNAPSHOT_LEN: u64 = 64 << 20;

impl ObjectKind {
    /// The most bytes an object of this kind can hold in a repository with
    /// `params`; a reader refuses a larger one before reading it.
    ///
    /// A pack holds blobs up to `pack_size` bytes, or one blob larger than
    /// that (a data blob is at most `chunk_max` plus the seal, padded), and then its
    /// header and trailer ([`crate::format::pack::PACK_HEADER_ROOM`]). The one
    /// pack that can be larger holds a single tree blob above that size; its
    /// size is then learned from its sealed header, which a provider cannot
    /// forge.
    pub fn max_size(self, params: &RepoParams) -> u64 {
        match self {
            ObjectKind::Pack => {
                // Sealed, with the padded encoding's length field, then
                // padded (FORMAT.md §3.2).
                let largest_blob = crate::format::crypto::padme(
                    u64::from(params.chunk_max) + SEAL_OVERHEAD as u64 + 4,
                );
                u64::from(params.pack_size).max(largest_blob) + PACK_HEADER_ROOM
            }
            ObjectKind::Index => MAX_INDEX_LEN,
            ObjectKind::Snapshot => MAX_SNAPSHOT_LEN,
            ObjectKind::Key => MAX_KEY_FILE_LEN,
            ObjectKind::Lock => MAX_LOCK_LEN,
            ObjectKind::Deletion => MAX_DELETION_LEN,
        }
    }

    /// Refuses to store an object of this kind that readers would refuse:
    /// `len` bytes above [`ObjectKind::max_size`].
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming the kind, the size and the limit.
    pub fn check_size(self, params: &RepoParams, len: usize) -> Result<()> {
        let max = self.max_size(params);
        if len as u64 <= max {
            return Ok(());
        }
        let what = match self {
            ObjectKind::Snapshot => "the snapshot (too many paths or tags?)",
            ObjectKind::Index => "an index file",
            ObjectKind::Deletion => "a deletion record",
            ObjectKind::Key => "a key file (host or user name too long?)",
            ObjectKind::Lock => "a lock (host or user name too long?)",
            ObjectKind::Pack => "a pack",
        };
        Err(Error::InvalidInput(format!(
            "{what} would take {len} bytes, more than the {max} bytes any reader accepts; nothing was written"
        )))
    }

    /// The kind of the object stored under `key`, if it is one (`config`
    /// has no kind: see [`MAX_CONFIG_LEN`]).
    pub fn of_key(key: &str) -> Option<ObjectKind> {
        ObjectKind::ALL
            .into_iter()
            .find(|kind| kind.name_of(key).is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever a store lists, naming it never panics, and only a
        /// well-formed key yields a name.
        #[test]
        fn any_listed_key_is_named_or_refused(key in "\\PC{0,80}") {
            for kind in ObjectKind::ALL {
                if let Some(name) = kind.name_of(&key) {
                    prop_assert_eq!(kind.key(name), key.clone());
                }
                let _ = kind.key(&key);
            }
        }
    }

    #[test]
    fn names_with_multibyte_characters_are_refused() {
        for key in [
            "data/ab/€",
            "data/€/x",
            "index/€",
            "data/a€/abc",
            "snapshots/\u{fffd}",
        ] {
            for kind in ObjectKind::ALL {
                assert_eq!(kind.name_of(key), None, "{key}");
            }
        }
        let name = "ab".repeat(32);
        assert_eq!(
            ObjectKind::Pack.name_of(&format!("data/ab/{name}")),
            Some(&name[..])
        );
        assert_eq!(ObjectKind::Pack.name_of(&format!("data/ac/{name}")), None);
        assert_eq!(ObjectKind::Pack.name_of(&format!("data/abx{name}")), None);
    }

    /// The largest objects this implementation's writers make stay below
    /// the maxima readers enforce, with room to spare.
    #[test]
    fn writers_stay_below_the_maxima() {
        use crate::format::crypto::MasterKeys;
        use crate::format::deletion::{DeletionRecord, MAX_RECORD_KEYS};
        use crate::format::index::{IndexBlob, IndexFile, IndexPack, MAX_FILE_BLOBS};
        use crate::format::keys::{KdfParams, KeyFile, KeyInfo};
        use crate::format::lock::LockFile;
        use crate::format::pack::{BlobType, MAX_PACK_BLOBS};
        use crate::format::{RepoFile, SealedFile};
        let keys = MasterKeys::generate();
        let params = RepoParams::default();
        let long_name = "n".repeat(255);
        // Sealed without compression: the most bytes the record can take.
        let raw_sealed = |plain: Vec<u8>| (plain.len() + SEAL_OVERHEAD) as u64;

        let widest = RepoParams {
            chunk_min: u32::MAX,
            chunk_avg: u32::MAX,
            chunk_max: u32::MAX,
            pack_size: u32::MAX,
            compression: i32::MIN,
        };
        let config = crate::format::config::encode(&RepoId([0xff; 32]), &widest, &keys);
        assert!(config.len() <= 110 && (config.len() as u64) < MAX_CONFIG_LEN);

        let info = KeyInfo {
            serial: crate::format::keys::KeySerial([0xff; 16]),
            created: i64::MIN,
            hostname: long_name.clone(),
            username: long_name.clone(),
        };
        let key_file = KeyFile::create_with_info(
            &keys,
            b"pw",
            &RepoId([1; 32]),
            KdfParams::insecure_for_tests(),
            &info,
        )
        .unwrap()
        .to_bytes();
        // A fixed layout: the KDF parameters' values do not change its length.
        assert!(key_file.len() < 1024, "{}", key_file.len());
        const { assert!(1024 < MAX_KEY_FILE_LEN) };

        let lock = LockFile {
            version: 1,
            time: i64::MIN,
            hostname: long_name.clone(),
            pid: u32::MAX,
            username: long_name.clone(),
            exclusive: true,
        };
        assert!(raw_sealed(lock.encode()) < 600 && 600 < MAX_LOCK_LEN);

        let record = DeletionRecord {
            version: crate::format::deletion::RECORD_VERSION,
            revoked: vec![crate::format::keys::KeySerial([0xff; 16])],
            time: i64::MIN,
            reason: "key remove".into(),
            hostname: long_name,
            keys: (0..MAX_RECORD_KEYS as u32)
                .map(|i| ObjectKind::Snapshot.key(&hex::encode(storage_hash(&i.to_le_bytes()))))
                .collect(),
        };
        let record_len = raw_sealed(record.encode());
        assert!(
            record_len < 8_000_000 && 8_000_000 < MAX_DELETION_LEN,
            "{record_len}"
        );
        assert!(record.seal(&keys).len() as u64 <= record_len);

        // One blob per pack, every number at its longest: the widest index
        // file a writer can fill before it starts a new one.
        let packs = MAX_FILE_BLOBS - 1 + MAX_PACK_BLOBS;
        let index = IndexFile {
            version: 1,
            packs: (0..packs as u32)
                .map(|i| IndexPack {
                    id: PackId(storage_hash(&i.to_le_bytes())),
                    blobs: vec![IndexBlob {
                        blob_type: BlobType::Tree,
                        id: BlobId(storage_hash(&i.to_be_bytes())),
                        offset: u32::MAX,
                        length: u32::MAX,
                        raw_length: u32::MAX,
                    }],
                })
                .collect(),
        };
        let index_len = raw_sealed(index.encode());
        assert!(
            index_len < 10_000_000 && 10_000_000 < MAX_INDEX_LEN,
            "{index_len}"
        );

        // A pack: its blobs, then at most the room for header and trailer.
        let pack = ObjectKind::Pack.max_size(&params);
        assert_eq!(pack, (16 << 20) + PACK_HEADER_ROOM);
        let small_packs = RepoParams {
            pack_size: 1 << 20,
            chunk_max: 16 << 20,
            ..params
        };
        // One padded blob of chunk_max: 16 MiB + 45 rounds up to 16.5 MiB.
        assert_eq!(
            ObjectKind::Pack.max_size(&small_packs),
            (16 << 20) + (512 << 10) + PACK_HEADER_ROOM
        );
        let mut sealed = Vec::new();
        let chunk = vec![7u8; 16 << 20];
        keys.seal_blob(b"lifeboat.blob.v1", &chunk, None, &mut sealed);
        assert!(sealed.len() as u64 + PACK_HEADER_ROOM <= ObjectKind::Pack.max_size(&small_packs));
    }

    #[test]
    fn a_writer_refuses_an_object_no_reader_takes() {
        let params = RepoParams::default();
        for kind in ObjectKind::ALL {
            let max = kind.max_size(&params) as usize;
            assert!(kind.check_size(&params, max).is_ok());
            let err = kind.check_size(&params, max + 1).unwrap_err().to_string();
            assert!(err.contains(&max.to_string()), "{err}");
        }
        assert_eq!(ObjectKind::of_key("config"), None);
        let name = "ab".repeat(32);
        assert_eq!(
            ObjectKind::of_key(&format!("data/ab/{name}")),
            Some(ObjectKind::Pack)
        );
        assert_eq!(
            ObjectKind::of_key(&format!("locks/{name}")),
            Some(ObjectKind::Lock)
        );
    }

    #[test]
    fn hex_round_trip_and_keys() {
        let id = PackId([0xab; 32]);
        assert_eq!(id.to_hex().parse::<PackId>().unwrap(), id);
        let key = ObjectKind::Pack.key(&id.to_hex());
        assert!(key.starts_with("data/ab/abab"));
        assert_eq!(ObjectKind::Pack.name_of(&key), Some(id.to_hex().as_str()));
        assert_eq!(ObjectKind::Index.name_of("index/xyz"), None);
        assert!("zz".parse::<BlobId>().is_err());
    }
}
