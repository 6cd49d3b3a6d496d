//! Which packs a prune drops and which it repacks.

use std::collections::HashSet;

use super::usage::PackUsage;
use super::{Found, PruneReport};
use crate::format::ids::{ObjectKind, PackId};
use crate::repo::deletions::Tombstones;

/// The packs to drop and to repack, by pack number in the index.
pub(super) struct Choice {
    /// Packs nothing uses: deleted whole.
    pub drop: HashSet<u32>,
    /// Packs whose used blobs move to new packs before they are deleted.
    pub repack: HashSet<u32>,
    /// Unused bytes before the prune.
    unused_before: u64,
    /// Unused bytes left after it.
    unused_after: u64,
}

impl Choice {
    /// Whole unused packs go first, and packs a deletion record already
    /// marks (rescued blobs must move); then the packs with the largest
    /// unused share are repacked until the rest is within `max_unused`.
    pub fn make(
        usages: &[PackUsage],
        packs: &[PackId],
        tombstones: &Tombstones,
        max_unused: f64,
    ) -> Self {
        let mut drop = HashSet::new();
        let mut repack = HashSet::new();
        for (n, u) in usages.iter().enumerate() {
            let marked = tombstones.contains(&ObjectKind::Pack.key(&packs[n].to_hex()));
            if u.used_blobs == 0 {
                drop.insert(n as u32);
            } else if marked {
                repack.insert(n as u32);
            }
        }
        let kept = |n: u32| !drop.contains(&n) && !repack.contains(&n);
        let mut unused_after: u64 = usages
            .iter()
            .enumerate()
            .filter(|(n, _)| kept(*n as u32))
            .map(|(_, u)| u.unused_bytes())
            .sum();
        let mut candidates: Vec<(u32, PackUsage)> = usages
            .iter()
            .enumerate()
            .filter(|(n, u)| u.unused_bytes() > 0 && kept(*n as u32))
            .map(|(n, u)| (n as u32, *u))
            .collect();
        candidates.sort_by(|a, b| {
            let share = |u: &PackUsage| u.unused_bytes() as f64 / u.bytes.max(1) as f64;
            share(&b.1).total_cmp(&share(&a.1))
        });
        let used_total: u64 = usages.iter().map(|u| u.used_bytes).sum();
        let tolerated = |unused: u64| unused as f64 <= max_unused * (used_total + unused) as f64;
        for (n, u) in candidates {
            if tolerated(unused_after) {
                break;
            }
            repack.insert(n);
            unused_after -= u.unused_bytes();
        }
        Choice {
            drop,
            repack,
            unused_before: usages.iter().map(PackUsage::unused_bytes).sum(),
            unused_after,
        }
    }

    /// True when some pack is dropped or repacked.
    pub fn changes_anything(&self) -> bool {
        !self.drop.is_empty() || !self.repack.is_empty()
    }

    /// Fills the report's figures for this choice.
    pub fn report(
        &self,
        usages: &[PackUsage],
        found: &Found,
        tombstones: &Tombstones,
        report: &mut PruneReport,
    ) {
        let packs = found.index.packs();
        report.blobs = found.index.len() as u64;
        report.packs = usages.len() as u64;
        report.used_blobs = usages.iter().map(|u| u.used_blobs).sum();
        report.bytes = usages.iter().map(|u| u.bytes).sum();
        report.unused_bytes = self.unused_before;
        report.unused_bytes_after = self.unused_after;
        report.packs_dropped = self.drop.len() as u64;
        report.packs_repacked = self.repack.len() as u64;
        report.packs_unindexed = found
            .unlisted
            .iter()
            .filter(|(id, _)| {
                !tombstones.contains(&ObjectKind::Pack.key(&id.to_hex())) && !packs.contains(id)
            })
            .count() as u64;
        report.bytes_repacked = self
            .repack
            .iter()
            .map(|n| usages[*n as usize].used_bytes)
            .sum();
    }
}
