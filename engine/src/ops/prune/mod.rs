//! Prune: remove data no snapshot uses, in two phases, the same way on every
//! destination.
//!
//! 1. **Mark** (under an exclusive lock): find the blobs every snapshot
//!    reaches (a bitset over the merged index), then the packs nothing uses
//!    and the packs whose unused share pushes the repository above
//!    `max_unused`. Live blobs of the latter are copied (sealed, untouched)
//!    into new packs; a new set of index files lists every kept and new pack;
//!    a deletion record names the old index files and the dropped packs; then
//!    the old index files are deleted.
//! 2. **Sweep**: packs a deletion record names are deleted once the record is
//!    older than the grace period, on every destination that still holds
//!    them. Until then a backup that loaded the old index and reused a blob
//!    from such a pack is safe: the next prune finds that blob referenced but
//!    unindexed, finds it in the marked pack, and copies it into a new pack.
//!
//! Every step leaves every snapshot restorable: new packs before the index
//! that lists them, the index before the record, the record before any
//! deletion. An interrupted prune is finished by the next one.

mod choose;
mod rewrite;
mod sweep;
mod usage;

use std::collections::HashSet;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::format::deletion::DeletionRecord;
use crate::format::ids::{ObjectKind, PackId};
use crate::repo::deletions::{self, Tombstones};
use crate::repo::index::MasterIndex;
use crate::repo::Repository;

use choose::Choice;
pub use sweep::SweepReport;

/// How to prune.
#[derive(Debug, Clone)]
pub struct PruneOptions {
    /// Unused share of the repository tolerated before packs are repacked
    /// (0.05 = 5 %).
    pub max_unused: f64,
    /// Seconds a deletion record waits before its packs are deleted.
    pub grace_secs: i64,
    /// Plan only: change nothing.
    pub dry_run: bool,
}

impl Default for PruneOptions {
    /// 5 % unused tolerated, one hour of grace.
    fn default() -> Self {
        PruneOptions {
            max_unused: 0.05,
            grace_secs: 3600,
            dry_run: false,
        }
    }
}

/// Live counters for progress displays.
#[derive(Debug, Default)]
pub struct PruneProgress {
    /// Packs to repack.
    pub repack_total: AtomicU64,
    /// Packs repacked.
    pub repack_done: AtomicU64,
}

/// What prune found and did.
#[derive(Debug, Clone, Default)]
pub struct PruneReport {
    /// Snapshots walked.
    pub snapshots: u64,
    /// Blobs in the index.
    pub blobs: u64,
    /// Blobs some snapshot uses.
    pub used_blobs: u64,
    /// Packs in the index.
    pub packs: u64,
    /// Bytes of blobs in the index.
    pub bytes: u64,
    /// Bytes of blobs no snapshot uses.
    pub unused_bytes: u64,
    /// Packs dropped whole (nothing in them is used).
    pub packs_dropped: u64,
    /// Packs whose used blobs were copied into new packs.
    pub packs_repacked: u64,
    /// Bytes copied into new packs.
    pub bytes_repacked: u64,
    /// New packs written.
    pub packs_written: u64,
    /// Packs no index lists (left by interrupted runs), marked for deletion.
    pub packs_unindexed: u64,
    /// Blobs in marked packs indexed again because a snapshot uses some of
    /// them (their used blobs are copied into new packs).
    pub blobs_rescued: u64,
    /// Unused bytes left after this prune (below the tolerated share).
    pub unused_bytes_after: u64,
    /// What the sweep deleted and what waits for the grace period.
    pub sweep: SweepReport,
    /// Destinations reached, and those missed with why.
    pub reached: Vec<String>,
    /// Destinations missed (they catch up at the next prune or sync).
    pub missed: Vec<(String, String)>,
}

/// Prunes the repository. The caller holds an exclusive lock.
///
/// # Errors
/// Storage failures, and a referenced blob that no index and no pack holds
/// (the repository is damaged: nothing is deleted; run `check`).
pub async fn prune(
    repo: &Repository,
    options: &PruneOptions,
    progress: Arc<PruneProgress>,
) -> Result<PruneReport> {
    let mut report = PruneReport::default();
    let tombstones = repo.tombstones().await?;
    let found = find_used(repo, &mut report).await?;
    let usages = usage::pack_usage(&found.index, &found.live);
    let choice = Choice::make(
        &usages,
        found.index.packs(),
        &tombstones,
        options.max_unused,
    );
    choice.report(&usages, &found, &tombstones, &mut report);
    if options.dry_run {
        return Ok(report);
    }
    if choice.changes_anything() || report.packs_unindexed > 0 {
        report.packs_written = mark(repo, &found, &choice, &tombstones, progress).await?;
    }
    report.sweep = sweep::sweep(repo, options.grace_secs).await?;
    report.reached = repo.destinations().reached();
    report.missed = repo.destinations().missed();
    Ok(report)
}

/// What every snapshot uses, read strictly (an unreadable snapshot or
/// index file would make used data look unused).
struct Found {
    index: MasterIndex,
    live: usage::Bitset,
    /// Packs stored somewhere that the index does not list: leftovers of
    /// interrupted runs, and packs marked by an earlier prune.
    unlisted: Vec<(PackId, u64)>,
}

/// Walks every snapshot over the index. Blobs found in no index are looked
/// for in unlisted packs (a backup that reused blobs from a marked pack):
/// those packs are indexed again (their used blobs are repacked) and the
/// walk repeats until the trees found in them lead nowhere new.
///
/// # Errors
/// Storage failures; blobs in no index and no pack (a damaged repository).
async fn find_used(repo: &Repository, report: &mut PruneReport) -> Result<Found> {
    let mut index = repo.load_index_strict().await?;
    let snapshots: Vec<_> = repo
        .list_snapshots_strict()
        .await?
        .into_iter()
        .map(|(_, s)| s)
        .collect();
    report.snapshots = snapshots.len() as u64;
    let (mut live, mut missing) = usage::live_blobs(repo, &index, &snapshots).await?;
    let stored = rewrite::stored_packs(repo).await?;
    let indexed: HashSet<PackId> = index.packs().iter().copied().collect();
    let unlisted: Vec<(PackId, u64)> = stored
        .into_iter()
        .filter(|(id, _)| !indexed.contains(id))
        .collect();
    if !missing.is_empty() {
        let mut catalog = rewrite::Unlisted::read(repo, &unlisted).await;
        while !missing.is_empty() {
            let rescue = catalog.take(&missing);
            if rescue.packs.is_empty() {
                break;
            }
            index.add_file(&rescue);
            index.finish();
            (live, missing) = usage::live_blobs(repo, &index, &snapshots).await?;
            report.blobs_rescued += rescue.blob_count() as u64;
        }
    }
    if !missing.is_empty() {
        let some: Vec<String> = missing.iter().take(5).map(|b| b.to_string()).collect();
        return Err(Error::Damaged {
            what: format!(
                "{} blobs the snapshots use are in no index and no pack (for example {})",
                missing.len(),
                some.join(", ")
            ),
        });
    }
    Ok(Found {
        index,
        live,
        unlisted,
    })
}

/// Mark phase: new packs and index files, then a deletion record naming
/// the old index files and the dropped, repacked and unlisted packs.
/// Returns the number of packs written.
async fn mark(
    repo: &Repository,
    found: &Found,
    choice: &Choice,
    tombstones: &Tombstones,
    progress: Arc<PruneProgress>,
) -> Result<u64> {
    let Found {
        index,
        live,
        unlisted,
    } = found;
    let old_index = repo.list_names_everywhere(ObjectKind::Index).await?;
    let written =
        rewrite::rewrite(repo, index, live, &choice.drop, &choice.repack, progress).await?;
    crate::failpoint("prune-after-index");
    let packs = index.packs();
    let mut keys: Vec<String> = old_index.iter().map(|n| ObjectKind::Index.key(n)).collect();
    keys.extend(
        choice
            .drop
            .iter()
            .chain(choice.repack.iter())
            .map(|n| ObjectKind::Pack.key(&packs[*n as usize].to_hex())),
    );
    let in_index: HashSet<PackId> = packs.iter().copied().collect();
    keys.extend(
        unlisted
            .iter()
            .filter(|(id, _)| !in_index.contains(id))
            .map(|(id, _)| ObjectKind::Pack.key(&id.to_hex())),
    );
    keys.retain(|k| !tombstones.contains(k));
    keys.sort();
    keys.dedup();
    // Index files first: a record too long for one object is written as
    // several, and a crash between them must not leave a pack tombstoned
    // while an index file that lists it is still live.
    keys.sort_by_key(|k| !k.starts_with(ObjectKind::Index.prefix()));
    deletions::write(repo, &DeletionRecord::new("prune", keys)).await?;
    repo.reload_tombstones().await;
    crate::failpoint("prune-after-record");
    Ok(written)
}
