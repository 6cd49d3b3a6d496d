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

use std::collections::HashMap;

use futures::StreamExt;
use serde::{Deserialize, Serialize};

use crate::crypto::MasterKeys;
use crate::error::{Error, Result};
use crate::ids::ObjectKind;
use crate::repo::Repository;

const RECORD_VERSION: u8 = 1;
const RECORD_AAD: &[u8] = b"lifeboat.deletion.v1";

/// One deletion record (`deletions/<id>`, sealed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletionRecord {
    /// Format version (1).
    pub version: u8,
    /// When it was written, seconds since the epoch.
    pub time: i64,
    /// `forget` or `prune`.
    pub reason: String,
    /// Host that wrote it.
    pub hostname: String,
    /// Storage keys of the removed objects.
    pub keys: Vec<String>,
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
        }
    }

    /// Encodes and seals.
    pub fn seal(&self, keys: &MasterKeys) -> Vec<u8> {
        let plain = postcard::to_stdvec(self)
            .unwrap_or_else(|_| unreachable!("postcard encodes plain structs"));
        let mut out = Vec::new();
        keys.seal(RECORD_AAD, &plain, Some(3), &mut out);
        out
    }

    /// Opens a stored record.
    ///
    /// # Errors
    /// [`Error::Format`] naming the record on tampering or malformed bytes.
    pub fn open(keys: &MasterKeys, name: &str, sealed: &[u8]) -> Result<Self> {
        let object = || format!("deletion record {name}");
        let plain = keys
            .open(RECORD_AAD, sealed)
            .map_err(|e| Error::format(object(), e.to_string()))?;
        let record: DeletionRecord =
            postcard::from_bytes(&plain).map_err(|e| Error::format(object(), e.to_string()))?;
        if record.version != RECORD_VERSION {
            return Err(Error::UnsupportedVersion {
                object: object(),
                version: u32::from(record.version),
            });
        }
        Ok(record)
    }
}

/// Every tombstoned key, with the time of the earliest record that lists it.
#[derive(Debug, Clone, Default)]
pub struct Tombstones {
    keys: HashMap<String, i64>,
}

impl Tombstones {
    /// True when `key` was removed by forget or prune.
    pub fn contains(&self, key: &str) -> bool {
        self.keys.contains_key(key)
    }

    /// When `key` was first recorded as removed.
    pub fn since(&self, key: &str) -> Option<i64> {
        self.keys.get(key).copied()
    }

    /// Number of tombstoned keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when nothing was ever removed.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    fn add(&mut self, record: &DeletionRecord) {
        for key in &record.keys {
            let time = self.keys.entry(key.clone()).or_insert(record.time);
            *time = (*time).min(record.time);
        }
    }
}

/// Reads every deletion record on any reachable destination.
///
/// # Errors
/// When no destination can be listed, or a record no destination holds intact
/// (a tombstone that cannot be read must not be ignored: the objects it lists
/// would come back).
pub async fn load(repo: &Repository) -> Result<Tombstones> {
    let names = repo.list_all_names_everywhere(ObjectKind::Deletion).await?;
    let mut tombstones = Tombstones::default();
    let mut reads = futures::stream::iter(names.into_iter().map(|name| async move {
        let record = match repo.read_object(ObjectKind::Deletion, &name).await {
            Ok(bytes) => DeletionRecord::open(repo.keys(), &name, &bytes),
            Err(e) => Err(e),
        };
        (name, record)
    }))
    .buffer_unordered(repo.destinations().walk_reads());
    while let Some((name, record)) = reads.next().await {
        match record {
            Ok(record) => tombstones.add(&record),
            // Listed somewhere yet stored nowhere: a name a listing made up.
            Err(Error::Backend(e)) if e.is_not_found() => {
                tracing::warn!("deletion record {name} is listed but stored nowhere; ignored");
            }
            Err(e) => return Err(e),
        }
    }
    Ok(tombstones)
}

/// Writes a record to every reachable destination; returns its name.
///
/// # Errors
/// Storage failures (when no destination is left).
pub async fn write(repo: &Repository, record: &DeletionRecord) -> Result<String> {
    let name = repo
        .write_object(ObjectKind::Deletion, record.seal(repo.keys()))
        .await?;
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::mutate;
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
            m in mutate::mutations(),
        ) {
            let keys = MasterKeys::generate();
            let record = DeletionRecord { version: RECORD_VERSION, time, reason, hostname, keys: listed };
            let sealed = record.seal(&keys);
            prop_assert_eq!(&DeletionRecord::open(&keys, "r", &sealed).unwrap(), &record);
            let bad = mutate::apply(&sealed, &m);
            prop_assume!(bad != sealed);
            prop_assert!(DeletionRecord::open(&keys, "r", &bad).is_err());
        }
    }
}
