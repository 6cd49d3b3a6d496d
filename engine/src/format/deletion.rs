//! Deletion records: sealed tombstones that list the objects `forget` and
//! `prune` remove, so that every destination — also one unreachable at the
//! time — ends up without them, and `sync` never copies them back.
//!
//! A record is written to every destination *before* any object it lists is
//! deleted. Object names are hashes of fresh random-nonce ciphertext, so a
//! listed name never becomes valid again: a tombstone is final. Readers ignore
//! listed snapshots and index files at once; listed packs are deleted by a
//! later `prune` once the record is older than the grace period, which gives a
//! backup that loaded the index before the record time to finish (and a
//! following prune the chance to rescue blobs it reused).

use serde::{Deserialize, Serialize};

use super::keys::KeySerial;
use super::{RepoFile, SealedFile};

/// The record version written and read (2 adds the revoked key serials).
pub const RECORD_VERSION: u8 = 2;
/// The AAD a record is sealed with.
pub const RECORD_AAD: &[u8] = b"lifeboat.deletion.v1";
/// Most keys a writer lists in one record: more are split across several
/// records, so a record stays far below
/// [`crate::format::ids::MAX_DELETION_LEN`].
pub const MAX_RECORD_KEYS: usize = 100_000;

/// One deletion record (`deletions/<id>`, sealed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletionRecord {
    /// Format version (2).
    pub version: u8,
    /// When it was written, seconds since the epoch.
    pub time: i64,
    /// `forget`, `prune` or `key remove`.
    pub reason: String,
    /// Host that wrote it.
    pub hostname: String,
    /// Storage keys of the removed objects.
    pub keys: Vec<String>,
    /// Serials of the key files `key remove` revoked: no key file carrying
    /// one opens the repository, whatever name it is stored under.
    pub revoked: Vec<KeySerial>,
}

impl DeletionRecord {
    /// A record of `keys`, dated now.
    pub fn new(reason: &str, keys: Vec<String>) -> Self {
        DeletionRecord {
            version: RECORD_VERSION,
            time: time::OffsetDateTime::now_utc().unix_timestamp(),
            reason: reason.to_string(),
            hostname: crate::hostname(),
            keys,
            revoked: Vec::new(),
        }
    }

    /// The record of `key remove`: the key file's storage key and its serial.
    pub fn key_removal(key: String, serial: KeySerial) -> Self {
        DeletionRecord {
            revoked: vec![serial],
            ..Self::new("key remove", vec![key])
        }
    }
}

impl RepoFile for DeletionRecord {
    const KIND: &'static str = "deletion record";
    const VERSION: u8 = RECORD_VERSION;

    fn version(&self) -> u8 {
        self.version
    }
}

impl SealedFile for DeletionRecord {
    const AAD: &'static [u8] = RECORD_AAD;
    const COMPRESSION: Option<i32> = Some(3);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::crypto::{mutate, MasterKeys};
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn arbitrary_record_bytes_never_open(bytes in mutate::bytes(300)) {
            prop_assert!(DeletionRecord::open(&MasterKeys::generate(), "r", &bytes).is_err());
        }

        #[test]
        fn arbitrary_record_plaintext_never_panics(plain in mutate::bytes(300)) {
            let keys = MasterKeys::generate();
            let mut sealed = Vec::new();
            keys.seal(RECORD_AAD, &plain, Some(3), &mut sealed);
            if let Ok(record) = DeletionRecord::open(&keys, "r", &sealed) {
                prop_assert_eq!(record.version, RECORD_VERSION);
            }
        }

        #[test]
        fn records_round_trip_and_any_change_is_rejected(
            time in any::<i64>(),
            reason in ".{0,10}",
            hostname in ".{0,16}",
            listed in prop::collection::vec("[a-z/0-9]{0,80}", 0..20),
            revoked in prop::collection::vec(any::<[u8; 16]>(), 0..3),
            m in mutate::mutations(),
        ) {
            let keys = MasterKeys::generate();
            let revoked = revoked.into_iter().map(KeySerial).collect();
            let record = DeletionRecord { version: RECORD_VERSION, time, reason, hostname, keys: listed, revoked };
            let sealed = record.seal(&keys);
            prop_assert_eq!(&DeletionRecord::open(&keys, "r", &sealed).unwrap(), &record);
            let bad = mutate::apply(&sealed, &m);
            prop_assume!(bad != sealed);
            prop_assert!(DeletionRecord::open(&keys, "r", &bad).is_err());
        }
    }
}
