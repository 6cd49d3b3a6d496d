//! The sweep: delete, on every reachable destination, the objects deletion
//! records name — removed key files, snapshots and index files at once, packs
//! once their record is older than the grace period.

use std::sync::Arc;

use futures::StreamExt;
use lifeboat_backends::Backend;

use crate::error::Result;
use crate::format::ids::ObjectKind;
use crate::repo::deletions::Tombstones;
use crate::repo::Repository;

/// What a sweep did.
#[derive(Debug, Clone, Default)]
pub struct SweepReport {
    /// Objects deleted, over every destination.
    pub deleted: u64,
    /// Bytes they held.
    pub bytes: u64,
    /// Marked packs kept for now (their record is younger than the grace period).
    pub waiting: u64,
    /// Per destination: objects and bytes deleted.
    pub per_destination: Vec<(String, u64, u64)>,
}

/// Sweeps every healthy destination, all at once: a far or slow one does
/// not hold up the others.
///
/// # Errors
/// When the deletion records cannot be read.
pub(super) async fn sweep(repo: &Repository, grace_secs: i64) -> Result<SweepReport> {
    let tombstones = repo.tombstones().await?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let dests = repo.destinations();
    let sweeps = dests
        .healthy()
        .into_iter()
        .map(|backend| sweep_one(repo, backend, &tombstones, now, grace_secs));
    let mut report = SweepReport::default();
    for one in futures::future::join_all(sweeps).await {
        report.deleted += one.deleted;
        report.bytes += one.bytes;
        report.waiting += one.waiting;
        report.per_destination.extend(one.per_destination);
    }
    Ok(report)
}

/// Sweeps one destination, kind after kind (snapshots and index files
/// before packs: nothing may list a pack that is gone), each kind's
/// deletions with the destination's `reads` in flight.
async fn sweep_one(
    repo: &Repository,
    backend: Arc<dyn Backend>,
    tombstones: &Tombstones,
    now: i64,
    grace_secs: i64,
) -> SweepReport {
    let dests = repo.destinations();
    let at_once = dests.read_limit(backend.name());
    let mut report = SweepReport::default();
    let (mut deleted, mut bytes) = (0u64, 0u64);
    // Removed key files go at once too.
    for kind in [
        ObjectKind::Key,
        ObjectKind::Snapshot,
        ObjectKind::Index,
        ObjectKind::Pack,
    ] {
        let listed =
            match crate::repo::destinations::list_all(backend.as_ref(), kind.prefix()).await {
                Ok(listed) => listed,
                Err(e) => {
                    dests.drop_destination(backend.name(), &e.to_string());
                    break;
                }
            };
        let mut doomed = Vec::new();
        for meta in listed {
            let Some(since) = tombstones.since(&meta.key) else {
                continue;
            };
            if kind == ObjectKind::Pack && now.saturating_sub(since) < grace_secs {
                report.waiting += 1;
                continue;
            }
            doomed.push(meta);
        }
        let backend = &backend;
        let mut deletions = futures::stream::iter(doomed.into_iter().map(|meta| async move {
            let result = match backend.delete(&meta.key).await {
                Err(e) if !e.is_not_found() => Err(e),
                _ => Ok(meta.size),
            };
            if kind == ObjectKind::Pack {
                crate::failpoint("prune-during-sweep");
            }
            result
        }))
        .buffer_unordered(at_once);
        let mut failed = false;
        while let Some(result) = deletions.next().await {
            match result {
                Ok(size) => {
                    deleted += 1;
                    bytes += size;
                }
                Err(e) => {
                    dests.drop_destination(backend.name(), &e.to_string());
                    failed = true;
                    break;
                }
            }
        }
        if failed {
            break;
        }
    }
    report.deleted = deleted;
    report.bytes = bytes;
    report
        .per_destination
        .push((backend.name().to_string(), deleted, bytes));
    report
}
