//! Repair: replace copies that a check found corrupt with a verified good copy
//! from another destination.
//!
//! For each healable corrupt object: read a good copy and verify it (its hash
//! against its name; `config` against the repository's), keep the bad bytes
//! under `quarantine/<time>/<key>` on the damaged destination (evidence, never
//! destroyed), delete the bad copy, write the good one, and read it back. Run
//! under an exclusive lock: nothing else may read or write while an object is
//! briefly absent. Missing objects are `sync`'s ordinary work; lost objects
//! (no good copy anywhere) are left alone and reported by the caller.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use lifeboat_backends::{Backend, ErrorKind};

use crate::format::ids::{storage_hash, ObjectKind, CONFIG_KEY, MAX_CONFIG_LEN};
use crate::ops::check::{CheckReport, ProblemKind};
use crate::repo::Repository;

/// Prefix under which bad copies are kept.
pub const QUARANTINE_PREFIX: &str = "quarantine/";

/// One repair, done or failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepairAction {
    /// The damaged destination.
    pub destination: String,
    /// The object's storage key.
    pub key: String,
    /// Where the good copy came from.
    pub source: Option<String>,
    /// Where the bad bytes were kept, when they could be read.
    pub quarantined_as: Option<String>,
    /// What went wrong, if anything (the object is then still damaged there).
    pub error: Option<String>,
}

/// Repairs every healable corrupt copy `report` lists; `stamp` (seconds since
/// the epoch) names this run's quarantine folder.
pub async fn repair(repo: &Repository, report: &CheckReport, stamp: i64) -> Vec<RepairAction> {
    let backends: BTreeMap<String, Arc<dyn Backend>> = repo
        .destinations()
        .backends()
        .iter()
        .map(|b| (b.name().to_string(), b.clone()))
        .collect();
    let config = crate::ops::sync::config_of(repo).await.ok();
    let mut actions = Vec::new();
    for problem in &report.problems {
        let (Some(destination), Some(key)) = (&problem.destination, &problem.key) else {
            continue;
        };
        if problem.kind != ProblemKind::Corrupt || !problem.healable() {
            continue;
        }
        let Some(target) = backends.get(destination) else {
            continue;
        };
        let mut action = RepairAction {
            destination: destination.clone(),
            key: key.clone(),
            source: None,
            quarantined_as: None,
            error: None,
        };
        let verify = |bytes: &Bytes| good_bytes(key, bytes, config.as_ref());
        // A good copy first: nothing is touched until one is in hand.
        let mut good = None;
        for source in &problem.good_copies {
            let Some(b) = backends.get(source) else {
                continue;
            };
            if let Ok(bytes) = read_copy(repo, b.as_ref(), key).await {
                if verify(&bytes) {
                    good = Some((source.clone(), bytes));
                    break;
                }
            }
        }
        let Some((source, bytes)) = good else {
            action.error = Some("no destination returned a verified good copy".into());
            actions.push(action);
            continue;
        };
        action.source = Some(source);
        match replace(repo, target.as_ref(), key, bytes, stamp, &verify).await {
            Ok(quarantined) => action.quarantined_as = quarantined,
            Err(e) => action.error = Some(e),
        }
        tracing::info!(
            "repair {destination}: {key} from {}: {}",
            action.source.as_deref().unwrap_or("-"),
            action.error.as_deref().unwrap_or("replaced")
        );
        actions.push(action);
    }
    actions
}

/// Reads a copy of `key` whole, if it is no larger than its kind allows
/// (`config` is the one key repaired that has no kind).
async fn read_copy(
    repo: &Repository,
    backend: &dyn Backend,
    key: &str,
) -> lifeboat_backends::Result<Bytes> {
    match ObjectKind::of_key(key) {
        Some(kind) => repo.read_whole(backend, kind, key).await,
        None => backend.get_bounded(key, MAX_CONFIG_LEN).await,
    }
}

/// True when `bytes` are a good copy of `key`.
fn good_bytes(key: &str, bytes: &Bytes, config: Option<&Bytes>) -> bool {
    if key == CONFIG_KEY {
        return config.is_some_and(|c| c == bytes);
    }
    let name = key.rsplit('/').next().unwrap_or_default();
    hex::encode(storage_hash(bytes)) == name
}

/// Quarantines the bad copy, writes the good one and reads it back.
async fn replace(
    repo: &Repository,
    target: &dyn Backend,
    key: &str,
    good: Bytes,
    stamp: i64,
    verify: &impl Fn(&Bytes) -> bool,
) -> Result<Option<String>, String> {
    let quarantine = format!("{QUARANTINE_PREFIX}{stamp}/{key}");
    // A copy larger than its kind allows is not read (nor kept aside).
    let quarantined = match read_copy(repo, target, key).await {
        Ok(bad) if verify(&bad) => {
            return Err("this copy reads back intact now; left as it is".into());
        }
        Ok(bad) => match target.put(&quarantine, bad).await {
            Ok(()) => Some(quarantine),
            Err(e) if e.kind == ErrorKind::AlreadyExists => Some(quarantine),
            Err(e) => return Err(format!("cannot keep the bad copy aside: {e}")),
        },
        // Unreadable bad bytes cannot be kept; the object is replaced anyway.
        Err(e) if e.kind == ErrorKind::NotFound => None,
        Err(_) => None,
    };
    match target.delete(key).await {
        Ok(()) => {}
        Err(e) if e.kind == ErrorKind::NotFound => {}
        Err(e) => return Err(format!("cannot remove the bad copy: {e}")),
    }
    let len = good.len() as u64;
    target
        .put(key, good)
        .await
        .map_err(|e| format!("cannot write the good copy: {e}"))?;
    let back = target
        .get_bounded(key, len)
        .await
        .map_err(|e| format!("cannot read the new copy back: {e}"))?;
    if !verify(&back) {
        return Err("the new copy reads back wrong".into());
    }
    Ok(quarantined)
}
