//! Sync: bring every destination up to date from the others.
//!
//! Each object a destination lacks is copied, byte for byte, from a
//! destination that has it, after checking its hash against its name (so a
//! corrupt copy is never spread). Objects go in write order — key files,
//! packs, index files, snapshots, and `config` last — so a destination is
//! never left with a snapshot whose data is missing, and an empty destination
//! becomes a repository only once it is complete. Plan first, then apply, so
//! `--dry-run` shows the plan.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use lifeboat_backends::{Backend, ErrorKind};

use crate::error::{Error, Result};
use crate::format::deletion::DeletionRecord;
use crate::format::ids::{storage_hash, ObjectKind, CONFIG_KEY, MAX_CONFIG_LEN};
use crate::format::index::IndexFile;
use crate::format::keys::KeyFile;
use crate::format::snapshot::Snapshot;
use crate::format::SealedFile;
use crate::repo::destinations::list_all;
use crate::repo::Repository;

/// Kinds copied by sync, in the order they are written. Deletion records go
/// first, so a destination learns what was removed before anything else.
const ORDER: [ObjectKind; 5] = [
    ObjectKind::Deletion,
    ObjectKind::Key,
    ObjectKind::Pack,
    ObjectKind::Index,
    ObjectKind::Snapshot,
];

/// One object to copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copy {
    /// Storage key.
    pub key: String,
    /// Size in bytes (as listed on the source).
    pub size: u64,
    /// Destinations that hold it, in preference order.
    pub sources: Vec<String>,
    /// Destination that lacks it.
    pub target: String,
}

/// What sync will do.
#[derive(Debug, Clone, Default)]
pub struct SyncPlan {
    /// Copies, in write order.
    pub copies: Vec<Copy>,
    /// Destinations that could not be listed (left out).
    pub unreachable: Vec<(String, String)>,
}

impl SyncPlan {
    /// Bytes to copy.
    pub fn bytes(&self) -> u64 {
        self.copies.iter().map(|c| c.size).sum()
    }

    /// Copies per target destination.
    pub fn per_target(&self) -> BTreeMap<String, (u64, u64)> {
        let mut out = BTreeMap::new();
        for c in &self.copies {
            let e = out.entry(c.target.clone()).or_insert((0, 0));
            e.0 += 1;
            e.1 += c.size;
        }
        out
    }
}

/// Live counters for progress displays.
#[derive(Debug, Default)]
pub struct SyncProgress {
    /// Bytes copied so far.
    pub bytes_done: AtomicU64,
    /// Objects copied so far.
    pub objects_done: AtomicU64,
}

/// What sync did.
#[derive(Debug, Clone, Default)]
pub struct SyncOutcome {
    /// Objects copied.
    pub copied: u64,
    /// Bytes copied.
    pub bytes: u64,
    /// Copies that failed: key, target, reason.
    pub failed: Vec<(String, String, String)>,
}

/// Lists what every destination holds and plans the copies.
///
/// # Errors
/// [`Error::Format`] when a destination holds a different repository.
pub async fn plan(repo: &Repository) -> Result<SyncPlan> {
    let backends = repo.destinations().backends().to_vec();
    let mut plan = SyncPlan::default();
    let mut listings: Vec<Option<BTreeMap<String, u64>>> = Vec::new();
    let reference = config_of(repo).await?;
    for b in &backends {
        match listing(b.as_ref()).await {
            Ok(list) => {
                let config = match read_config(b.as_ref()).await {
                    // Larger than any config: damaged, repair's work.
                    Err(Error::Backend(e)) if e.is_too_large() => {
                        tracing::warn!("{e}; `lifeboat sync --repair` replaces it");
                        None
                    }
                    other => other?,
                };
                if let Some(config) = config {
                    let same_repository = crate::format::config::read_header(&config)
                        .is_ok_and(|h| h.id == repo.id());
                    if config != reference && !same_repository {
                        return Err(Error::format(
                            format!("{}: config", b.name()),
                            "this destination holds a different repository; refusing to mix them",
                        ));
                    }
                    if config != reference {
                        // This repository's config, damaged: repair's work.
                        tracing::warn!(
                            "{}: config is damaged; `lifeboat sync --repair` replaces it",
                            b.name()
                        );
                    }
                }
                listings.push(Some(list));
            }
            Err(e) => {
                plan.unreachable.push((b.name().to_string(), e.to_string()));
                listings.push(None);
            }
        }
    }
    let mut all: BTreeMap<String, u64> = BTreeMap::new();
    for list in listings.iter().flatten() {
        for (k, size) in list {
            all.entry(k.clone()).or_insert(*size);
        }
    }
    let rank = |key: &str| {
        ORDER
            .iter()
            .position(|kind| kind.name_of(key).is_some())
            .unwrap_or(ORDER.len())
    };
    // What forget or prune removed is never copied back from a destination
    // that missed the removal.
    let tombstones = repo.tombstones().await?;
    let mut keys: Vec<&String> = all.keys().filter(|k| !tombstones.contains(k)).collect();
    keys.sort_by_key(|k| rank(k));
    for key in keys {
        let holders: Vec<String> = backends
            .iter()
            .zip(&listings)
            .filter(|(_, l)| l.as_ref().is_some_and(|l| l.contains_key(key)))
            .map(|(b, _)| b.name().to_string())
            .collect();
        for (b, list) in backends.iter().zip(&listings) {
            if list.as_ref().is_some_and(|l| !l.contains_key(key)) {
                plan.copies.push(Copy {
                    key: key.clone(),
                    size: all[key],
                    sources: holders.clone(),
                    target: b.name().to_string(),
                });
            }
        }
    }
    // config last: a destination becomes a repository only once complete.
    for (b, list) in backends.iter().zip(&listings) {
        let missing = match read_config(b.as_ref()).await {
            Ok(config) => config.is_none(),
            // There, but damaged: not copied over (repair's work).
            Err(Error::Backend(e)) if e.is_too_large() => false,
            Err(e) => return Err(e),
        };
        if list.is_some() && missing {
            plan.copies.push(Copy {
                key: CONFIG_KEY.to_string(),
                size: reference.len() as u64,
                sources: Vec::new(),
                target: b.name().to_string(),
            });
        }
    }
    Ok(plan)
}

/// Every content-named object of the kinds sync copies, with sizes.
async fn listing(backend: &dyn Backend) -> Result<BTreeMap<String, u64>> {
    let mut out = BTreeMap::new();
    for kind in ORDER {
        for meta in list_all(backend, kind.prefix()).await? {
            if kind.name_of(&meta.key).is_some() {
                out.insert(meta.key, meta.size);
            }
        }
    }
    Ok(out)
}

pub(crate) async fn read_config(backend: &dyn Backend) -> Result<Option<Bytes>> {
    match backend.get_bounded(CONFIG_KEY, MAX_CONFIG_LEN).await {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The config bytes of the repository as opened.
pub(crate) async fn config_of(repo: &Repository) -> Result<Bytes> {
    for b in repo.destinations().read_order() {
        if let Ok(Some(config)) = read_config(b.as_ref()).await {
            // Only a config that opens with this repository's keys (the seal
            // authenticates every byte) is the reference: a damaged copy must
            // never be taken for the good one and spread.
            let intact = crate::format::config::decode(&config, repo.keys())
                .is_ok_and(|(header, _)| header.id == repo.id());
            if intact {
                return Ok(config);
            }
        }
    }
    Err(Error::no_destination(
        "read of the repository config",
        "no destination holds an intact copy of it",
    ))
}

/// Carries out a plan: copies each object from the first source with good
/// bytes, a few at a time, keeping write order between kinds.
///
/// # Errors
/// Only setup failures; failed copies are listed in the outcome.
pub async fn apply(
    repo: &Repository,
    plan: &SyncPlan,
    progress: Arc<SyncProgress>,
) -> Result<SyncOutcome> {
    let backends: BTreeMap<String, Arc<dyn Backend>> = repo
        .destinations()
        .backends()
        .iter()
        .map(|b| (b.name().to_string(), b.clone()))
        .collect();
    let config = config_of(repo).await?;
    let mut outcome = SyncOutcome::default();
    // Write order holds across kinds: each kind finishes before the next starts.
    let mut by_stage: BTreeMap<usize, Vec<&Copy>> = BTreeMap::new();
    for c in &plan.copies {
        let stage = ORDER
            .iter()
            .position(|kind| kind.name_of(&c.key).is_some())
            .unwrap_or(ORDER.len());
        by_stage.entry(stage).or_default().push(c);
    }
    let failed_targets: std::sync::Mutex<BTreeSet<String>> = Default::default();
    // Each copy holds one object (a pack: up to 16 MiB) in memory: the
    // destinations' `reads`, up to 8 at once.
    let copies_at_once = repo.destinations().walk_reads().clamp(1, 8);
    for (_, copies) in by_stage {
        // A target that failed a copy of an earlier kind gets none of the later
        // ones: an index or snapshot must not arrive where its data is missing.
        let blocked = failed_targets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let results = futures::stream::iter(copies.into_iter().map(|c| {
            let (backends, config, progress, failed_targets, blocked) =
                (&backends, &config, &progress, &failed_targets, &blocked);
            async move {
                if blocked.contains(&c.target) {
                    return (
                        c,
                        Err(
                            "not copied: an earlier object failed to reach this destination"
                                .to_string(),
                        ),
                    );
                }
                let result = match copy_one(repo, backends, c, config).await {
                    Ok(Copied::Yes) => Ok(()),
                    // Not this repository's: skipped, neither copied nor a
                    // failure that would hold back the target's later kinds.
                    Ok(Copied::NotOurs(why)) => {
                        tracing::warn!("{} not copied to {}: {why}", c.key, c.target);
                        return (c, Ok(false));
                    }
                    Err(e) => Err(e),
                };
                if result.is_ok() {
                    progress.bytes_done.fetch_add(c.size, Ordering::Relaxed);
                    progress.objects_done.fetch_add(1, Ordering::Relaxed);
                } else {
                    failed_targets
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(c.target.clone());
                }
                (c, result.map(|()| true))
            }
        }))
        .buffer_unordered(copies_at_once)
        .collect::<Vec<_>>()
        .await;
        for (c, result) in results {
            match result {
                Ok(true) => {
                    outcome.copied += 1;
                    outcome.bytes += c.size;
                }
                Ok(false) => {}
                Err(reason) => outcome
                    .failed
                    .push((c.key.clone(), c.target.clone(), reason)),
            }
        }
    }
    Ok(outcome)
}

/// What [`copy_one`] did.
enum Copied {
    /// The object is on the target now.
    Yes,
    /// Every source's copy matches its name but does not open with this
    /// repository's keys: someone else's object (junk a provider planted),
    /// never spread to another destination.
    NotOurs(String),
}

async fn copy_one(
    repo: &Repository,
    backends: &BTreeMap<String, Arc<dyn Backend>>,
    c: &Copy,
    config: &Bytes,
) -> Result<Copied, String> {
    let target = backends
        .get(&c.target)
        .ok_or_else(|| format!("unknown destination {}", c.target))?;
    let data = if c.key == CONFIG_KEY {
        config.clone()
    } else {
        let kind = ORDER
            .iter()
            .find(|k| k.name_of(&c.key).is_some())
            .ok_or("unknown object kind")?;
        let name = kind.name_of(&c.key).unwrap_or_default().to_string();
        let mut good = None;
        let mut reasons = Vec::new();
        let mut foreign = Vec::new();
        for source in &c.sources {
            let Some(b) = backends.get(source) else {
                continue;
            };
            match repo.read_whole(b.as_ref(), *kind, &c.key).await {
                Ok(bytes) if hex::encode(storage_hash(&bytes)) == name => {
                    if let Err(why) = opens(repo, *kind, &name, &bytes) {
                        foreign.push(format!("{source}'s copy {why}"));
                        continue;
                    }
                    good = Some(bytes);
                    break;
                }
                Ok(_) => reasons.push(format!(
                    "{source}: copy is corrupt (hash does not match its name)"
                )),
                Err(e) => reasons.push(e.to_string()),
            }
        }
        match good {
            Some(bytes) => bytes,
            None if reasons.is_empty() && !foreign.is_empty() => {
                return Ok(Copied::NotOurs(foreign.join("; ")));
            }
            None => {
                reasons.extend(foreign);
                return Err(format!("no good copy: {}", reasons.join("; ")));
            }
        }
    };
    match target.put(&c.key, data).await {
        Ok(()) => Ok(Copied::Yes),
        Err(e) if e.kind == ErrorKind::AlreadyExists && c.key != CONFIG_KEY => Ok(Copied::Yes),
        Err(e) => Err(e.to_string()),
    }
}

/// Opens a small object with the repository's keys before it is copied, so
/// an object someone else sealed (a provider's junk, valid only by its
/// content name) never spreads. Packs are checked by their name only here
/// (their blobs by `check --read-data`). An object of a format version this
/// build does not read cannot be verified, so it is not copied either.
pub(crate) fn opens(
    repo: &Repository,
    kind: ObjectKind,
    name: &str,
    bytes: &[u8],
) -> Result<(), String> {
    let keys = repo.keys();
    let opened = match kind {
        ObjectKind::Snapshot => Snapshot::open(keys, name, bytes).map(drop),
        ObjectKind::Index => IndexFile::open(keys, name, bytes).map(drop),
        ObjectKind::Deletion => DeletionRecord::open(keys, name, bytes).map(drop),
        ObjectKind::Key => KeyFile::from_bytes(bytes)
            .and_then(|file| file.info(keys, &repo.id()))
            .map(drop),
        ObjectKind::Pack | ObjectKind::Lock => Ok(()),
    };
    match opened {
        Err(Error::Format { reason, .. }) => Err(format!(
            "does not open with this repository's keys ({reason})"
        )),
        // It cannot be checked, so it is not spread: a newer Lifeboat's
        // own sync copies it.
        Err(Error::UnsupportedVersion { version, .. }) => Err(format!(
            "has format version {version}, which this Lifeboat cannot verify"
        )),
        _ => Ok(()),
    }
}
