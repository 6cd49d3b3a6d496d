//! The deletion protocol: reading every destination's deletion records into
//! [`Tombstones`], and writing a new record everywhere. The record itself is
//! [`crate::format::deletion::DeletionRecord`]; why records exist and when
//! they are written is described there.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use futures::StreamExt;

use crate::error::{Error, Result};
use crate::format::deletion::{DeletionRecord, MAX_RECORD_KEYS};
use crate::format::ids::ObjectKind;
use crate::format::keys::KeySerial;
use crate::format::SealedFile;
use crate::repo::Repository;

/// Every tombstoned key, with the time of the earliest record that lists it;
/// also which records opened and which destination listed which records
/// (for rollback detection, `repo::seen`).
#[derive(Debug, Clone, Default)]
pub struct Tombstones {
    keys: HashMap<String, i64>,
    /// Serials of key files `key remove` revoked.
    revoked: HashSet<KeySerial>,
    /// Names of the records that opened with this repository's keys.
    records: BTreeSet<String>,
    /// Per destination (by name) that could be listed: the record names it
    /// listed.
    listed_by: BTreeMap<String, BTreeSet<String>>,
}

impl Tombstones {
    /// True when `key` was removed by forget or prune.
    pub fn contains(&self, key: &str) -> bool {
        self.keys.contains_key(key)
    }

    /// True when `key remove` revoked the key file with this serial.
    pub fn revoked(&self, serial: &KeySerial) -> bool {
        self.revoked.contains(serial)
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

    /// Ids of the tombstoned snapshots (hex).
    pub fn snapshot_names(&self) -> impl Iterator<Item = &str> {
        self.keys
            .keys()
            .filter_map(|k| ObjectKind::Snapshot.name_of(k))
    }

    /// Names of the deletion records that opened with this repository's
    /// keys (records that did not open are ignored and not here).
    pub fn records(&self) -> &BTreeSet<String> {
        &self.records
    }

    /// The record names `destination` listed when the records were loaded;
    /// `None` when it was not listed (unreachable, or not in this run).
    pub fn listed_by(&self, destination: &str) -> Option<&BTreeSet<String>> {
        self.listed_by.get(destination)
    }

    /// Tombstones made of parts, for tests of what reads them.
    #[cfg(test)]
    pub(crate) fn from_parts(
        keys: impl IntoIterator<Item = String>,
        records: impl IntoIterator<Item = String>,
        listed_by: impl IntoIterator<Item = (String, BTreeSet<String>)>,
    ) -> Self {
        Tombstones {
            keys: keys.into_iter().map(|k| (k, 0)).collect(),
            records: records.into_iter().collect(),
            listed_by: listed_by.into_iter().collect(),
            revoked: HashSet::new(),
        }
    }

    fn add(&mut self, record: &DeletionRecord) {
        for key in &record.keys {
            let time = self.keys.entry(key.clone()).or_insert(record.time);
            *time = (*time).min(record.time);
        }
        self.revoked.extend(record.revoked.iter().copied());
    }
}

/// Reads every deletion record on any reachable destination.
///
/// # Errors
/// When no destination can be listed, or a record no destination holds intact
/// (a tombstone that cannot be read must not be ignored: the objects it lists
/// would come back).
pub async fn load(repo: &Repository) -> Result<Tombstones> {
    let each = repo.list_each_destination(ObjectKind::Deletion).await?;
    let mut tombstones = Tombstones::default();
    let mut names = BTreeSet::new();
    for (backend, listed) in each {
        names.extend(listed.iter().cloned());
        tombstones
            .listed_by
            .insert(backend.name().to_string(), listed);
    }
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
            Ok(record) => {
                tombstones.add(&record);
                tombstones.records.insert(name);
            }
            // Listed somewhere yet stored nowhere: a name a listing made up.
            Err(Error::Backend(e)) if e.is_not_found() => {
                tracing::warn!("deletion record {name} is listed but stored nowhere; ignored");
            }
            // Its bytes match its name (read_object checked) yet it does not
            // open with this repository's keys: no key holder wrote it, so
            // it deletes nothing. A damaged copy of a real record fails the
            // name check instead and is read from another destination.
            Err(Error::Format { reason, .. }) => {
                tracing::warn!(
                    "deletion record {name} is not this repository's ({reason}); ignored"
                );
            }
            Err(e) => return Err(e),
        }
    }
    Ok(tombstones)
}

/// Writes a record to every reachable destination; returns its name.
///
/// A record of more than [`MAX_RECORD_KEYS`] keys is written as several
/// records of at most that many, one after the other in the order of its
/// keys (a record stays far below the size readers accept; prune lists its
/// index files first, so a crash between two leaves no pack tombstoned
/// while an index file that lists it is not). Returns their names.
///
/// # Errors
/// Storage failures (when no destination is left).
pub async fn write(repo: &Repository, record: &DeletionRecord) -> Result<Vec<String>> {
    let mut names = Vec::new();
    let parts: Vec<&[String]> = if record.keys.len() <= MAX_RECORD_KEYS {
        vec![&record.keys]
    } else {
        record.keys.chunks(MAX_RECORD_KEYS).collect()
    };
    for keys in parts {
        let part = DeletionRecord {
            keys: keys.to_vec(),
            ..record.clone()
        };
        let sealed = part.seal(repo.keys());
        ObjectKind::Deletion.check_size(repo.params(), sealed.len())?;
        names.push(repo.write_object(ObjectKind::Deletion, sealed).await?);
    }
    Ok(names)
}
