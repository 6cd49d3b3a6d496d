//! `find`: where and when paths matching patterns occur across snapshots.
//!
//! Snapshots are searched newest first with the tree streamer. A directory
//! is identified by its tree id and its path (anchored patterns depend on
//! the path): once one snapshot has searched it, every later snapshot that
//! holds the same tree at the same path takes the answer from memory
//! instead of reading the tree again, so a hundred snapshots of a mostly
//! unchanged home directory cost little more than one.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

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
    /// Trees read from the repository.
    pub trees_read: u64,
    /// Directories answered from an earlier snapshot's search.
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
/// `patterns`; see the module documentation.
///
/// # Errors
/// Tree read failures.
pub async fn find(
    repo: &Repository,
    index: &MasterIndex,
    mut snapshots: Vec<(SnapshotId, Snapshot)>,
    patterns: &PathPatterns,
) -> Result<FindReport> {
    snapshots.sort_by(|(ia, a), (ib, b)| (b.time, b.time_nsec, ib).cmp(&(a.time, a.time_nsec, ia)));
    let mut report = FindReport {
        snapshots: snapshots.len(),
        ..FindReport::default()
    };
    let mut searched: HashMap<Key, Searched> = HashMap::new();
    for (id, snapshot) in &snapshots {
        let found = |entry: Entry| Occurrence {
            snapshot: *id,
            time: snapshot.time,
            entry,
        };
        let mut trees: TreeStream<'_, Key> = TreeStream::new(repo, index, Order::AsFetched);
        let mut wanted = 0usize;
        for root in snapshot.roots() {
            let key = (root, PathBuf::from("/"));
            if searched.contains_key(&key) {
                replay(&searched, key, &mut report, &found);
            } else {
                trees.want(root, key);
                wanted += 1;
            }
        }
        while wanted > 0 {
            let ((tree_id, dir), tree) = trees
                .next()
                .await
                .ok_or_else(|| Error::internal("find: the tree stream ended early"))?;
            wanted -= 1;
            report.trees_read += 1;
            let tree = tree?;
            let mut result = Searched::default();
            for node in &tree.nodes {
                let path = dir.join(OsStr::from_bytes(&node.name));
                if patterns.matching_index(&path).is_some() {
                    let entry = Entry::of(node);
                    report
                        .matches
                        .entry(path.as_os_str().as_bytes().to_vec())
                        .or_default()
                        .push(found(entry.clone()));
                    result.hits.push((node.name.clone(), entry));
                }
                if let NodeKind::Dir { subtree } = node.kind {
                    result.subdirs.push((subtree, node.name.clone()));
                    let key = (subtree, path);
                    if searched.contains_key(&key) {
                        replay(&searched, key, &mut report, &found);
                    } else {
                        trees.want(key.0, key);
                        wanted += 1;
                    }
                }
            }
            searched.insert((tree_id, dir), result);
        }
    }
    Ok(report)
}

/// Adds the matches of the already searched subtree `start` (and of every
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
        report.trees_reused += 1;
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
