//! The mark phase's writes: used blobs of repacked packs copied into new
//! packs, and a new set of index files for every kept and new pack.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;

use super::usage::Bitset;
use super::PruneProgress;
use crate::error::Result;
use crate::format::ids::{BlobId, ObjectKind, PackId};
use crate::format::index::IndexFile;
use crate::format::pack::{open_blob, parse_pack, PackEntry};
use crate::repo::index::MasterIndex;
use crate::repo::packer::Packer;
use crate::repo::Repository;

/// Every pack stored on any reachable destination, with its size.
pub(super) async fn stored_packs(repo: &Repository) -> Result<HashMap<PackId, u64>> {
    let mut stored = HashMap::new();
    let mut any = None;
    for backend in repo.destinations().healthy() {
        match crate::repo::destinations::list_all(backend.as_ref(), ObjectKind::Pack.prefix()).await
        {
            Ok(list) => {
                any = Some(Ok(()));
                for meta in list {
                    if let Some(id) = ObjectKind::Pack
                        .name_of(&meta.key)
                        .and_then(|n| n.parse::<PackId>().ok())
                    {
                        stored.entry(id).or_insert(meta.size);
                    }
                }
            }
            Err(e) => {
                repo.destinations()
                    .drop_destination(backend.name(), &e.to_string());
                any.get_or_insert(Err(e));
            }
        }
    }
    match any {
        Some(Err(e)) => Err(e),
        _ => Ok(stored),
    }
}

/// The blobs of packs no index lists, for rescuing blobs a snapshot uses.
#[derive(Default)]
pub(super) struct Unlisted {
    /// Each pack's entries (packs no destination holds intact are left out).
    packs: HashMap<PackId, Vec<PackEntry>>,
    /// Which pack holds each blob.
    blobs: HashMap<BlobId, PackId>,
}

impl Unlisted {
    /// Reads every unlisted pack (whole, verified).
    pub async fn read(repo: &Repository, unlisted: &[(PackId, u64)]) -> Self {
        let mut found = Unlisted::default();
        for (id, _) in unlisted {
            let Ok(bytes) = repo.read_object(ObjectKind::Pack, &id.to_hex()).await else {
                continue;
            };
            let Ok(entries) = parse_pack(repo.keys(), id, &bytes) else {
                continue;
            };
            for e in &entries {
                found.blobs.entry(e.id).or_insert(*id);
            }
            found.packs.insert(*id, entries);
        }
        found
    }

    /// An index file of the packs holding any of `wanted`, each taken once.
    pub fn take(&mut self, wanted: &HashSet<BlobId>) -> IndexFile {
        let mut file = IndexFile::new();
        for blob in wanted {
            let Some(pack) = self.blobs.get(blob).copied() else {
                continue;
            };
            if let Some(entries) = self.packs.remove(&pack) {
                file.add_pack(pack, &entries);
            }
        }
        file
    }
}

/// Copies the used blobs of `repack` into new packs and writes index files
/// for every pack neither dropped nor repacked plus the new ones. Returns the
/// number of new packs.
pub(super) async fn rewrite(
    repo: &Repository,
    index: &MasterIndex,
    live: &Bitset,
    drop: &HashSet<u32>,
    repack: &HashSet<u32>,
    progress: Arc<PruneProgress>,
) -> Result<u64> {
    let mut writer = Packer::new(repo);
    let order = index.positions_by_pack();
    progress
        .repack_total
        .store(repack.len() as u64, Ordering::Relaxed);
    // Runs of positions that share a pack number.
    let runs = order.chunk_by(|a, b| {
        let pack = |p: &u32| index.entry_at(*p as usize).map(|(_, _, n)| n);
        pack(a) == pack(b)
    });
    for run in runs {
        let Some((_, first, number)) = index.entry_at(run[0] as usize) else {
            continue;
        };
        if drop.contains(&number) {
            continue;
        }
        if !repack.contains(&number) {
            let entries: Vec<PackEntry> = run
                .iter()
                .filter_map(|p| index.entry_at(*p as usize))
                .map(|(id, loc, _)| loc.entry(id))
                .collect();
            writer.list(first.pack, &entries).await?;
            continue;
        }
        let bytes: Bytes = repo
            .read_object(ObjectKind::Pack, &first.pack.to_hex())
            .await?;
        for p in run.iter().filter(|p| live.get(**p as usize)) {
            let Some((id, loc, _)) = index.entry_at(*p as usize) else {
                continue;
            };
            let entry = loc.entry(id);
            let start = loc.offset as usize;
            let sealed = bytes
                .get(start..start + loc.length as usize)
                .ok_or_else(|| {
                    crate::Error::format(format!("pack {}", loc.pack), "blob past the end")
                })?;
            // Verified before it is copied: a damaged blob is never spread.
            open_blob(repo.keys(), &loc.pack, &entry, sealed)?;
            writer
                .add(loc.blob_type, id, sealed, loc.raw_length)
                .await?;
        }
        progress.repack_done.fetch_add(1, Ordering::Relaxed);
        crate::failpoint("prune-during-repack");
    }
    writer.finish().await
}
