//! Status: what each destination holds, and how far it lags the others.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use lifeboat_backends::Backend;

use crate::error::Result;
use crate::format::ids::{ObjectKind, SnapshotId, CONFIG_KEY};
use crate::format::snapshot::Snapshot;
use crate::repo::destinations::{count, list_all, LeftOutReason};
use crate::repo::seen::Rollback;
use crate::repo::Repository;

/// The state of one destination.
#[derive(Debug, Clone, Default)]
pub struct DestinationStatus {
    /// Its name.
    pub name: String,
    /// Its path or URL.
    pub location: String,
    /// Whether it answered.
    pub reachable: bool,
    /// Why not, when it did not.
    pub error: Option<String>,
    /// Time of one small request (`stat config`), milliseconds.
    pub latency_ms: Option<f64>,
    /// Whether it holds the repository's `config`.
    pub has_config: bool,
    /// Why it was left out of this run (not this repository, or not
    /// reachable to prove it), when it was.
    pub left_out: Option<crate::repo::destinations::LeftOutReason>,
    /// Objects stored.
    pub objects: u64,
    /// Bytes stored.
    pub bytes: u64,
    /// Snapshots it holds.
    pub snapshots: usize,
    /// Snapshots other destinations hold and it lacks (its lag).
    pub snapshots_missing: usize,
    /// Time of its newest snapshot (seconds since the epoch).
    pub newest_snapshot: Option<i64>,
    /// What it no longer lists that it listed before, when it may have been
    /// rolled back to an older copy (found when the snapshots were listed,
    /// `repo::seen`). A destination that never listed what others hold only
    /// lags (`snapshots_missing`).
    pub rolled_back: Option<Rollback>,
}

/// Which snapshots each destination holds (`Err` for one that did not answer).
///
/// # Errors
/// None at this level: each destination's failure is in its entry.
pub async fn snapshots_by_destination(
    repo: &Repository,
) -> Vec<(String, Result<BTreeSet<SnapshotId>>)> {
    let mut out = Vec::new();
    for b in repo.destinations().backends() {
        let names = list_all(b.as_ref(), ObjectKind::Snapshot.prefix())
            .await
            .map(|metas| {
                metas
                    .iter()
                    .filter_map(|m| ObjectKind::Snapshot.name_of(&m.key)?.parse().ok())
                    .collect::<BTreeSet<SnapshotId>>()
            });
        out.push((b.name().to_string(), names));
    }
    out
}

async fn probe(b: &dyn Backend) -> std::result::Result<(f64, bool), String> {
    let started = Instant::now();
    let has_config = match b.stat(CONFIG_KEY).await {
        Ok(_) => true,
        Err(e) if e.is_not_found() => false,
        Err(e) => return Err(e.to_string()),
    };
    Ok((started.elapsed().as_secs_f64() * 1000.0, has_config))
}

/// The status of every destination, given the repository's snapshots
/// (listed with [`Repository::list_snapshots`], which also finds the
/// destinations rolled back).
///
/// # Errors
/// None at this level: each destination's failure is in its entry.
pub async fn status(
    repo: &Repository,
    snapshots: &[(SnapshotId, Snapshot)],
) -> Vec<DestinationStatus> {
    let times: BTreeMap<SnapshotId, i64> = snapshots.iter().map(|(id, s)| (*id, s.time)).collect();
    let by_destination = snapshots_by_destination(repo).await;
    let all: BTreeSet<SnapshotId> = by_destination
        .iter()
        .filter_map(|(_, r)| r.as_ref().ok())
        .flatten()
        .copied()
        .collect();
    let rollbacks = repo.rollbacks();
    let mut out = Vec::new();
    for (b, (_, held)) in repo.destinations().backends().iter().zip(by_destination) {
        let mut st = DestinationStatus {
            name: b.name().to_string(),
            location: b.location(),
            rolled_back: rollbacks
                .iter()
                .find(|r| r.destination == b.name())
                .cloned(),
            ..Default::default()
        };
        match (probe(b.as_ref()).await, held) {
            (Ok((latency, has_config)), Ok(held)) => {
                st.reachable = true;
                st.latency_ms = Some(latency);
                st.has_config = has_config;
                match count(b.as_ref(), "").await {
                    Ok((objects, bytes)) => (st.objects, st.bytes) = (objects, bytes),
                    Err(e) => st.error = Some(e.to_string()),
                }
                st.snapshots = held.len();
                st.snapshots_missing = all.difference(&held).count();
                st.newest_snapshot = held.iter().filter_map(|id| times.get(id)).max().copied();
            }
            (Err(e), _) => st.error = Some(e),
            (_, Err(e)) => st.error = Some(e.to_string()),
        }
        out.push(st);
    }
    for left in repo.destinations().left_out() {
        out.push(DestinationStatus {
            name: left.backend.name().to_string(),
            location: left.backend.location(),
            reachable: !matches!(left.reason, LeftOutReason::Unreachable(_)),
            error: Some(left.reason.to_string()),
            left_out: Some(left.reason.clone()),
            ..Default::default()
        });
    }
    out.sort_by_key(|s| repo.destinations().position(&s.name));
    out
}
