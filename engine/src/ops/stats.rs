//! `stats`: how big snapshots are as restored, how much they take stored
//! (after deduplication and compression), and what each destination holds.
//!
//! Each distinct tree of the chosen snapshots is read once (the streamer
//! reads them in bulk); the totals of a snapshot are then summed over the
//! in-memory graph of trees, so a hundred snapshots sharing most of their
//! trees cost about as much as one.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};
use crate::format::ids::{BlobId, ObjectKind, SnapshotId};
use crate::format::snapshot::Snapshot;
use crate::format::tree::NodeKind;
use crate::repo::index::MasterIndex;
use crate::repo::tree_stream::{Order, TreeStream};
use crate::repo::Repository;

/// What to count besides the restore size.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsWanted {
    /// Distinct blobs and their stored size (`raw-data`).
    pub raw_data: bool,
    /// Distinct file contents and their blobs (`blobs-per-file`).
    pub blobs_per_file: bool,
}

/// Figures of the chosen snapshots.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stats {
    /// Snapshots counted.
    pub snapshots: usize,
    /// Files as a restore writes them (every name of a hard-linked file).
    pub files: u64,
    /// Directories (below each snapshot's root).
    pub dirs: u64,
    /// Other entries: links, devices, pipes, sockets.
    pub others: u64,
    /// Bytes of file content as restored.
    pub restore_bytes: u64,
    /// Distinct trees.
    pub tree_blobs: u64,
    /// Distinct data blobs (`raw-data`).
    pub data_blobs: u64,
    /// Their plaintext bytes, trees included (`raw-data`).
    pub raw_bytes: u64,
    /// Their stored bytes: compressed, sealed, padded (`raw-data`).
    pub stored_bytes: u64,
    /// Distinct file contents (`blobs-per-file`).
    pub unique_files: u64,
    /// Their blobs, counted per file (`blobs-per-file`).
    pub unique_file_blobs: u64,
    /// Their bytes (`blobs-per-file`).
    pub unique_file_bytes: u64,
    /// Blobs the trees name that no index lists (a damaged repository).
    pub missing_blobs: u64,
}

impl Stats {
    /// Restored bytes per plaintext byte stored: what deduplication saves.
    pub fn dedup_ratio(&self) -> Option<f64> {
        let data = self.raw_bytes;
        (data > 0).then(|| self.restore_bytes as f64 / data as f64)
    }

    /// Plaintext bytes per stored byte: what compression saves.
    pub fn compression_ratio(&self) -> Option<f64> {
        (self.stored_bytes > 0).then(|| self.raw_bytes as f64 / self.stored_bytes as f64)
    }
}

/// One tree's own figures and its subdirectories' trees.
#[derive(Default)]
struct TreeFacts {
    files: u64,
    dirs: u64,
    others: u64,
    bytes: u64,
    children: Vec<BlobId>,
}

/// Totals of a subtree.
#[derive(Clone, Copy, Default)]
struct Totals {
    files: u64,
    dirs: u64,
    others: u64,
    bytes: u64,
}

/// Counts `snapshots`; `progress` counts the trees read.
///
/// # Errors
/// Tree read failures.
pub async fn stats(
    repo: &Repository,
    index: &MasterIndex,
    snapshots: &[(SnapshotId, Snapshot)],
    wanted: StatsWanted,
    progress: &AtomicU64,
) -> Result<Stats> {
    let mut out = Stats {
        snapshots: snapshots.len(),
        ..Stats::default()
    };
    let mut facts: HashMap<BlobId, TreeFacts> = HashMap::new();
    let mut data_blobs: HashSet<BlobId> = HashSet::new();
    let mut contents: HashSet<[u8; 32]> = HashSet::new();
    let mut trees: TreeStream<'_, BlobId> = TreeStream::new(repo, index, Order::AsFetched);
    let mut seen: HashSet<BlobId> = HashSet::new();
    let mut wanted_trees = 0usize;
    for (_, snapshot) in snapshots {
        for root in snapshot.roots() {
            if seen.insert(root) {
                trees.want(root, root);
                wanted_trees += 1;
            }
        }
    }
    while wanted_trees > 0 {
        let (id, tree) = trees
            .next()
            .await
            .ok_or_else(|| Error::internal("stats: the tree stream ended early"))?;
        wanted_trees -= 1;
        progress.fetch_add(1, Ordering::Relaxed);
        let tree = tree?;
        let mut own = TreeFacts::default();
        for node in &tree.nodes {
            match &node.kind {
                NodeKind::File { content } => {
                    own.files += 1;
                    own.bytes += node.size;
                    if wanted.raw_data {
                        data_blobs.extend(content.iter().copied());
                    }
                    if wanted.blobs_per_file {
                        let mut hasher = blake3::Hasher::new();
                        for blob in content {
                            hasher.update(&blob.0);
                        }
                        if contents.insert(*hasher.finalize().as_bytes()) {
                            out.unique_files += 1;
                            out.unique_file_blobs += content.len() as u64;
                            out.unique_file_bytes += node.size;
                        }
                    }
                }
                NodeKind::Dir { subtree } => {
                    own.dirs += 1;
                    own.children.push(*subtree);
                    if seen.insert(*subtree) {
                        trees.want(*subtree, *subtree);
                        wanted_trees += 1;
                    }
                }
                _ => own.others += 1,
            }
        }
        facts.insert(id, own);
    }
    let mut memo: HashMap<BlobId, Totals> = HashMap::new();
    for (_, snapshot) in snapshots {
        for root in snapshot.roots() {
            let t = totals(root, &facts, &mut memo);
            out.files += t.files;
            out.dirs += t.dirs;
            out.others += t.others;
            out.restore_bytes += t.bytes;
        }
    }
    out.tree_blobs = facts.len() as u64;
    if wanted.raw_data {
        out.data_blobs = data_blobs.len() as u64;
        for id in facts.keys().chain(data_blobs.iter()) {
            match index.lookup(id) {
                Some(loc) => {
                    out.raw_bytes += u64::from(loc.raw_length);
                    out.stored_bytes += u64::from(loc.length);
                }
                None => out.missing_blobs += 1,
            }
        }
    }
    Ok(out)
}

/// The totals of the tree `root`, every subtree's computed once.
fn totals(
    root: BlobId,
    facts: &HashMap<BlobId, TreeFacts>,
    memo: &mut HashMap<BlobId, Totals>,
) -> Totals {
    // Post-order without recursion: deep trees must not overflow the stack.
    let mut stack = vec![(root, false)];
    while let Some((id, children_done)) = stack.pop() {
        if memo.contains_key(&id) {
            continue;
        }
        let Some(own) = facts.get(&id) else {
            memo.insert(id, Totals::default());
            continue;
        };
        if !children_done {
            stack.push((id, true));
            stack.extend(
                own.children
                    .iter()
                    .filter(|c| !memo.contains_key(c))
                    .map(|c| (*c, false)),
            );
            continue;
        }
        let mut t = Totals {
            files: own.files,
            dirs: own.dirs,
            others: own.others,
            bytes: own.bytes,
        };
        for child in &own.children {
            if let Some(c) = memo.get(child) {
                t.files += c.files;
                t.dirs += c.dirs;
                t.others += c.others;
                t.bytes += c.bytes;
            }
        }
        memo.insert(id, t);
    }
    memo.get(&root).copied().unwrap_or_default()
}

/// What one destination holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DestinationUsage {
    /// Its name.
    pub name: String,
    /// Objects and bytes by kind (`data`, `index`, `snapshots`, `keys`,
    /// `locks`, `deletions`).
    pub kinds: Vec<(&'static str, u64, u64)>,
    /// Why it could not be listed, if it could not.
    pub error: Option<String>,
}

impl DestinationUsage {
    /// Objects in all.
    pub fn objects(&self) -> u64 {
        self.kinds.iter().map(|(_, n, _)| n).sum()
    }

    /// Bytes in all.
    pub fn bytes(&self) -> u64 {
        self.kinds.iter().map(|(_, _, b)| b).sum()
    }
}

/// Lists what each destination of `repo` holds.
pub async fn destinations(repo: &Repository) -> Vec<DestinationUsage> {
    let kinds = [
        ObjectKind::Pack,
        ObjectKind::Index,
        ObjectKind::Snapshot,
        ObjectKind::Key,
        ObjectKind::Lock,
        ObjectKind::Deletion,
    ];
    let mut out = Vec::new();
    for backend in repo.destinations().backends() {
        let mut usage = DestinationUsage {
            name: backend.name().to_string(),
            ..DestinationUsage::default()
        };
        for kind in kinds {
            let prefix = kind.prefix();
            match crate::repo::destinations::count(backend.as_ref(), prefix).await {
                Ok((n, bytes)) => usage.kinds.push((prefix.trim_end_matches('/'), n, bytes)),
                Err(e) => {
                    usage.error = Some(e.to_string());
                    break;
                }
            }
        }
        out.push(usage);
    }
    out
}
