//! Which blobs the snapshots still use, as a bitset over the merged index
//! (one bit per blob: 125 KiB for a million blobs), and each pack's share of
//! used and unused bytes.

use std::collections::HashSet;

use crate::error::Result;
use crate::format::ids::BlobId;
use crate::format::snapshot::Snapshot;
use crate::format::tree::NodeKind;
use crate::repo::index::MasterIndex;
use crate::repo::tree_stream::{Order, TreeStream};
use crate::repo::Repository;

/// One bit per index position.
pub(super) struct Bitset(Vec<u64>);

impl Bitset {
    pub fn new(len: usize) -> Self {
        Bitset(vec![0; len.div_ceil(64)])
    }

    /// Sets bit `i`; returns whether it was already set.
    pub fn set(&mut self, i: usize) -> bool {
        let (word, bit) = (i / 64, 1u64 << (i % 64));
        let was = self.0[word] & bit != 0;
        self.0[word] |= bit;
        was
    }

    pub fn get(&self, i: usize) -> bool {
        self.0[i / 64] & (1u64 << (i % 64)) != 0
    }
}

/// Blobs reached: indexed ones as bits, the others by id.
type Seen = (Bitset, HashSet<BlobId>);

/// The blobs reachable from `snapshots`: bits for indexed ones, and the ids
/// of referenced blobs no index lists (a tree among them is not walked).
pub(super) async fn live_blobs(
    repo: &Repository,
    index: &MasterIndex,
    snapshots: &[Snapshot],
) -> Result<(Bitset, HashSet<BlobId>)> {
    let live = Bitset::new(index.len());
    let missing = HashSet::new();
    // Every snapshot walked at once; a tree is wanted only the first time it
    // is seen (everything below it is counted then).
    let mut trees = TreeStream::new(repo, index, Order::AsFetched);
    let reach = |id: BlobId, trees: &mut TreeStream<'_, ()>, seen: &mut Seen| match index
        .position_of(&id)
    {
        None => {
            seen.1.insert(id);
        }
        Some(pos) => {
            if !seen.0.set(pos) {
                trees.want(id, ());
            }
        }
    };
    let mut seen: Seen = (live, missing);
    for snapshot in snapshots {
        for root in snapshot.roots() {
            reach(root, &mut trees, &mut seen);
        }
    }
    while let Some(((), tree)) = trees.next().await {
        for node in tree?.nodes {
            match node.kind {
                NodeKind::Dir { subtree } => reach(subtree, &mut trees, &mut seen),
                NodeKind::File { content } => {
                    for blob in content {
                        match index.position_of(&blob) {
                            Some(p) => {
                                seen.0.set(p);
                            }
                            None => {
                                seen.1.insert(blob);
                            }
                        }
                    }
                }
                _ => {}
            }
        }
    }
    Ok(seen)
}

/// Used and unused bytes of one pack.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct PackUsage {
    pub blobs: u64,
    pub used_blobs: u64,
    pub bytes: u64,
    pub used_bytes: u64,
}

impl PackUsage {
    pub fn unused_bytes(&self) -> u64 {
        self.bytes - self.used_bytes
    }
}

/// Per pack number: its usage. A blob listed twice counts as used only where
/// lookups find it (its first entry); the other copy is unused.
pub(super) fn pack_usage(index: &MasterIndex, live: &Bitset) -> Vec<PackUsage> {
    let mut usage = vec![PackUsage::default(); index.packs().len()];
    for i in 0..index.len() {
        let Some((_, loc, pack)) = index.entry_at(i) else {
            continue;
        };
        let u = &mut usage[pack as usize];
        u.blobs += 1;
        u.bytes += u64::from(loc.length);
        if live.get(i) {
            u.used_blobs += 1;
            u.used_bytes += u64::from(loc.length);
        }
    }
    usage
}
