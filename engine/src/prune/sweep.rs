//! The sweep: delete, on every reachable destination, the objects deletion
//! records name — removed key files, snapshots and index files at once, packs
//! once their record is older than the grace period.

use crate::error::Result;
use crate::ids::ObjectKind;
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

/// Sweeps every healthy destination.
///
/// # Errors
/// When the deletion records cannot be read.
pub(super) async fn sweep(repo: &Repository, grace_secs: i64) -> Result<SweepReport> {
    let tombstones = repo.tombstones().await?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut report = SweepReport::default();
    let dests = repo.destinations();
    for backend in dests.healthy() {
        let (mut deleted, mut bytes) = (0u64, 0u64);
        // Snapshots and index files first: nothing may list a pack that is gone.
        // Removed key files go at once too.
        'kinds: for kind in [
            ObjectKind::Key,
            ObjectKind::Snapshot,
            ObjectKind::Index,
            ObjectKind::Pack,
        ] {
            let listed = match crate::destinations::list_all(backend.as_ref(), kind.prefix()).await
            {
                Ok(listed) => listed,
                Err(e) => {
                    dests.drop_destination(backend.name(), &e.to_string());
                    break 'kinds;
                }
            };
            for meta in listed {
                let Some(since) = tombstones.since(&meta.key) else {
                    continue;
                };
                if kind == ObjectKind::Pack && now.saturating_sub(since) < grace_secs {
                    report.waiting += 1;
                    continue;
                }
                match backend.delete(&meta.key).await {
                    Ok(()) => {}
                    Err(e) if e.is_not_found() => {}
                    Err(e) => {
                        dests.drop_destination(backend.name(), &e.to_string());
                        break 'kinds;
                    }
                }
                deleted += 1;
                bytes += meta.size;
                if kind == ObjectKind::Pack {
                    crate::failpoint("prune-during-sweep");
                }
            }
        }
        report.deleted += deleted;
        report.bytes += bytes;
        report
            .per_destination
            .push((backend.name().to_string(), deleted, bytes));
    }
    Ok(report)
}
