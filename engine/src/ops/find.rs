//! `find`: where and when paths matching patterns occur across snapshots.
//!
//! A directory is identified by its tree id and its path (anchored
//! patterns depend on the path), and each distinct one is read and searched
//! once, all snapshots' in one stream of reads; every snapshot holding the
//! same tree at the same path takes the answer from memory, so a hundred
//! snapshots of a mostly unchanged home directory cost little more than
//! one. Matches are listed per path, newest snapshot first.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};
use crate::format::ids::{BlobId, SnapshotId};
use crate::format::snapshot::Snapshot;
use crate::format::tree::{Node, NodeKind};
use crate::ops::patterns::PathPatterns;
use crate::repo::index::MasterIndex;
use crate::repo::tree_stream::{Order, TreeStream};
use crate::repo::Repository;

/// What a matching entry was in one snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The type letter, as `ls -l` shows it (`-`, `d`, `l`, ...).
    pub kind: char,
    /// Size in bytes (files: content length).
    pub size: u64,
    /// Modification time, seconds since the epoch.
    pub mtime: i64,
    /// Permission bits.
    pub mode: u32,
}

impl Entry {
    fn of(node: &Node) -> Self {
        Entry {
            kind: node.type_char(),
            size: node.size,
            mtime: node.mtime,
            mode: node.mode,
        }
    }
}

/// One snapshot in which a path matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Occurrence {
    /// The snapshot.
    pub snapshot: SnapshotId,
    /// Its time (seconds since the epoch).
    pub time: i64,
    /// The entry there.
    pub entry: Entry,
}

/// Every match.
#[derive(Debug, Default)]
pub struct FindReport {
    /// Matching paths (raw bytes, absolute) in byte order, each with the
    /// snapshots holding it, newest first.
    pub matches: BTreeMap<Vec<u8>, Vec<Occurrence>>,
    /// Snapshots searched.
    pub snapshots: usize,
    /// Trees read from the repository: each distinct (tree, path) once.
    pub trees_read: u64,
    /// Directories searched, snapshot by snapshot.
    pub dirs_searched: u64,
    /// Directories answered without a read, since another snapshot holds
    /// the same tree at the same path.
    pub trees_reused: u64,
}

/// A directory's search result: its matching entries and its
/// subdirectories, enough to replay the answer for its whole subtree.
#[derive(Default)]
struct Searched {
    hits: Vec<(Vec<u8>, Entry)>,
    subdirs: Vec<(BlobId, Vec<u8>)>,
}

type Key = (BlobId, PathBuf);

/// Searches `snapshots` for entries whose absolute path matches
/// `patterns`; see the module documentation. `progress` counts the trees
/// read.
///
/// # Errors
/// Tree read failures.
pub async fn find(
    repo: &Repository,
    index: &MasterIndex,
    mut snapshots: Vec<(SnapshotId, Snapshot)>,
    patterns: &PathPatterns,
    progress: &AtomicU64,
) -> Result<FindReport> {
    snapshots.sort_by(|(ia, a), (ib, b)| (b.time, b.time_nsec, ib).cmp(&(a.time, a.time_nsec, ia)));
    let mut report = FindReport {
        snapshots: snapshots.len(),
        ..FindReport::default()
    };
    // First every distinct directory of every snapshot is searched, in one
    // stream: its reads overlap across snapshots, so a slow link costs
    // about one round trip per level of the deepest change, not one per
    // level per snapshot.
    let mut searched: HashMap<Key, Searched> = HashMap::new();
    let mut wanted: HashSet<Key> = HashSet::new();
    let mut trees: TreeStream<'_, Key> = TreeStream::new(repo, index, Order::AsFetched);
    let mut outstanding = 0usize;
    for (_, snapshot) in &snapshots {
        for root in snapshot.roots() {
            let key = (root, PathBuf::from("/"));
            if wanted.insert(key.clone()) {
                trees.want(root, key);
                outstanding += 1;
            }
        }
    }
    while outstanding > 0 {
        let ((tree_id, dir), tree) = trees
            .next()
            .await
            .ok_or_else(|| Error::internal("find: the tree stream ended early"))?;
        outstanding -= 1;
        report.trees_read += 1;
        progress.fetch_add(1, Ordering::Relaxed);
        let tree = tree?;
        let mut result = Searched::default();
        for node in &tree.nodes {
            let path = dir.join(OsStr::from_bytes(&node.name));
            if patterns.matching_index(&path).is_some() {
                result.hits.push((node.name.clone(), Entry::of(node)));
            }
            if let NodeKind::Dir { subtree } = node.kind {
                result.subdirs.push((subtree, node.name.clone()));
                let key = (subtree, path);
                if wanted.insert(key.clone()) {
                    trees.want(subtree, key);
                    outstanding += 1;
                }
            }
        }
        searched.insert((tree_id, dir), result);
    }
    // Then each snapshot's answer is put together from memory.
    for (id, snapshot) in &snapshots {
        let found = |entry: Entry| Occurrence {
            snapshot: *id,
            time: snapshot.time,
            entry,
        };
        for root in snapshot.roots() {
            replay(&searched, (root, PathBuf::from("/")), &mut report, &found);
        }
    }
    report.trees_reused = report.dirs_searched.saturating_sub(report.trees_read);
    Ok(report)
}

/// Adds the matches of the searched subtree `start` (and of every
/// directory below it) to `report`, without reading a tree.
fn replay(
    searched: &HashMap<Key, Searched>,
    start: Key,
    report: &mut FindReport,
    found: &impl Fn(Entry) -> Occurrence,
) {
    let mut stack = vec![start];
    while let Some(key) = stack.pop() {
        let Some(result) = searched.get(&key) else {
            continue;
        };
        report.dirs_searched += 1;
        let (_, dir) = key;
        for (name, entry) in &result.hits {
            let path = dir.join(OsStr::from_bytes(name));
            report
                .matches
                .entry(path.as_os_str().as_bytes().to_vec())
                .or_default()
                .push(found(entry.clone()));
        }
        for (subtree, name) in &result.subdirs {
            stack.push((*subtree, dir.join(OsStr::from_bytes(name))));
        }
    }
}
