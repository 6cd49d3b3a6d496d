//! Check: verify the repository's structure and, optionally, every byte.
//!
//! Structure: every index file opens, every indexed pack exists with the size
//! its header implies, pack headers agree with the index, every snapshot
//! opens, every tree is reachable, indexed and decodable, and every blob a
//! tree references is indexed. `read_data` also reads every pack, checks its
//! hash against its name and opens every blob. Every problem is collected and
//! named by its object; nothing stops at the first.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use futures::StreamExt;

use crate::error::{Error, Result};
use crate::ids::{BlobId, ObjectKind, PackId, SnapshotId};
use crate::index::{IndexFile, MasterIndex};
use crate::pack::{decode_header, header_length, open_blob, parse_pack, PackEntry, TRAILER_LEN};
use crate::repo::Repository;
use crate::tree::NodeKind;

/// What to check.
#[derive(Debug, Clone, Default)]
pub struct CheckOptions {
    /// Read and verify every byte of every pack.
    pub read_data: bool,
}

/// One problem found, named by its object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The object: `pack <id>`, `index <id>`, `snapshot <id>`, `tree <id>`, `blob <id>`.
    pub object: String,
    /// What is wrong with it.
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.object, self.message)
    }
}

/// Live counters for progress displays.
#[derive(Debug, Default)]
pub struct CheckProgress {
    /// Packs to check.
    pub packs_total: AtomicU64,
    /// Packs checked.
    pub packs_done: AtomicU64,
}

/// What a check found.
#[derive(Debug, Clone, Default)]
pub struct CheckReport {
    /// Problems: any makes the repository damaged.
    pub problems: Vec<Problem>,
    /// Harmless findings (for example packs no index lists, left by an interrupted backup).
    pub notes: Vec<String>,
    /// Snapshots checked.
    pub snapshots: u64,
    /// Trees checked.
    pub trees: u64,
    /// Index files read.
    pub index_files: u64,
    /// Packs checked.
    pub packs: u64,
    /// Blobs indexed.
    pub blobs: u64,
    /// Bytes read and verified (with `read_data`).
    pub bytes_read: u64,
}

impl CheckReport {
    /// True when no problem was found.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }

    fn problem(&mut self, object: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem {
            object: object.into(),
            message: message.into(),
        });
    }
}

/// Checks the repository through its preferred destination.
///
/// # Errors
/// Only when the check itself cannot run (listing fails); damage is reported
/// in the [`CheckReport`].
pub async fn check(
    repo: &Repository,
    options: &CheckOptions,
    progress: Arc<CheckProgress>,
) -> Result<CheckReport> {
    let mut report = CheckReport::default();

    // Index files.
    let mut master = MasterIndex::new();
    let mut index_of_pack: HashMap<PackId, Vec<PackEntry>> = HashMap::new();
    for name in repo.list_names(ObjectKind::Index).await? {
        report.index_files += 1;
        let file = match repo.read_object(ObjectKind::Index, &name).await {
            Ok(bytes) => IndexFile::open(repo.keys(), &name, &bytes),
            Err(e) => Err(e),
        };
        match file {
            Ok(file) => {
                for pack in &file.packs {
                    let entries = pack
                        .blobs
                        .iter()
                        .map(|b| PackEntry {
                            blob_type: b.blob_type,
                            id: b.id,
                            offset: b.offset,
                            length: b.length,
                            raw_length: b.raw_length,
                        })
                        .collect();
                    index_of_pack.insert(pack.id, entries);
                }
                master.add_file(&file);
            }
            Err(e) => report.problem(format!("index {name}"), e.to_string()),
        }
    }
    master.finish();
    report.blobs = master.len() as u64;

    // Packs present on the destination.
    let stored: HashMap<PackId, u64> = repo
        .destinations()
        .list_primary(ObjectKind::Pack.prefix())
        .await?
        .into_iter()
        .filter_map(|m| Some((ObjectKind::Pack.name_of(&m.key)?.parse().ok()?, m.size)))
        .collect();
    for id in stored.keys().filter(|id| !index_of_pack.contains_key(id)) {
        report.notes.push(format!(
            "pack {id} is not in any index (left by an interrupted backup; harmless)"
        ));
    }
    let mut to_read = Vec::new();
    for (id, entries) in &index_of_pack {
        match stored.get(id) {
            None => report.problem(
                format!("pack {id}"),
                "missing: listed in the index but not stored",
            ),
            Some(&size) => to_read.push((*id, size, entries.clone())),
        }
    }
    progress
        .packs_total
        .store(to_read.len() as u64, Ordering::Relaxed);

    // Pack headers (or whole packs) against the index.
    let read_data = options.read_data;
    let mut checks = futures::stream::iter(to_read.into_iter().map(|(id, size, entries)| {
        let progress = progress.clone();
        async move {
            let result = check_pack(repo, id, size, entries, read_data).await;
            progress.packs_done.fetch_add(1, Ordering::Relaxed);
            (id, size, result)
        }
    }))
    .buffer_unordered(4);
    while let Some((id, size, result)) = checks.next().await {
        report.packs += 1;
        match result {
            Ok(()) => {
                if read_data {
                    report.bytes_read += size;
                }
            }
            Err(problems) => {
                for message in problems {
                    report.problem(format!("pack {id}"), message);
                }
            }
        }
    }
    drop(checks);

    // Snapshots and trees.
    let mut seen_trees: HashSet<BlobId> = HashSet::new();
    for name in repo.list_names(ObjectKind::Snapshot).await? {
        report.snapshots += 1;
        let Ok(id) = name.parse::<SnapshotId>() else {
            continue;
        };
        let snapshot = match repo.load_snapshot(&id).await {
            Ok(s) => s,
            Err(e) => {
                report.problem(format!("snapshot {name}"), e.to_string());
                continue;
            }
        };
        let mut stack = vec![snapshot.tree];
        while let Some(tree_id) = stack.pop() {
            if !seen_trees.insert(tree_id) {
                continue;
            }
            report.trees += 1;
            let tree = match repo.load_tree(&master, &tree_id).await {
                Ok(t) => t,
                Err(e) => {
                    report.problem(
                        format!("tree {tree_id}"),
                        format!("{e} (in snapshot {})", id.short()),
                    );
                    continue;
                }
            };
            for node in &tree.nodes {
                match &node.kind {
                    NodeKind::Dir { subtree } => stack.push(*subtree),
                    NodeKind::File { content } => {
                        for blob in content.iter().filter(|b| !master.contains(b)) {
                            report.problem(
                                format!("blob {blob}"),
                                format!(
                                    "referenced by {:?} in tree {} but in no index",
                                    String::from_utf8_lossy(&node.name),
                                    tree_id.short()
                                ),
                            );
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    Ok(report)
}

/// Checks one pack; returns every problem found with it.
async fn check_pack(
    repo: &Repository,
    id: PackId,
    size: u64,
    indexed: Vec<PackEntry>,
    read_data: bool,
) -> std::result::Result<(), Vec<String>> {
    // The same destination the listing came from: the first one that answers.
    let Some(backend) = repo.destinations().read_order().into_iter().next() else {
        return Err(vec!["no destination".to_string()]);
    };
    let key = ObjectKind::Pack.key(&id.to_hex());
    let keys = repo.keys().clone();
    let header_entries = if read_data {
        let bytes = backend
            .get(&key, None)
            .await
            .map_err(|e| vec![e.to_string()])?;
        tokio::task::spawn_blocking(move || -> Result<Vec<PackEntry>> {
            let entries = parse_pack(&keys, &id, &bytes)?;
            for e in &entries {
                let sealed = &bytes[e.offset as usize..(e.offset + e.length) as usize];
                open_blob(&keys, &id, e, sealed)?;
            }
            Ok(entries)
        })
        .await
        .map_err(|e| vec![e.to_string()])?
    } else {
        let trailer = backend
            .get(&key, Some(size.saturating_sub(TRAILER_LEN as u64)..size))
            .await
            .map_err(|e| vec![e.to_string()])?;
        let header_len =
            u64::from(header_length(&trailer).ok_or_else(|| vec!["too short".to_string()])?);
        let start = size
            .checked_sub(TRAILER_LEN as u64 + header_len)
            .ok_or_else(|| vec!["header length exceeds pack size".to_string()])?;
        let header = backend
            .get(&key, Some(start..size - TRAILER_LEN as u64))
            .await
            .map_err(|e| vec![e.to_string()])?;
        decode_header(&keys, &id, size, &header)
    };
    let header_entries = header_entries.map_err(|e| vec![strip_object(&e, &id)])?;
    let mut indexed = indexed;
    indexed.sort_by_key(|e| e.offset);
    if header_entries != indexed {
        return Err(vec![format!(
            "header lists {} blobs that differ from the index's {} entries",
            header_entries.len(),
            indexed.len()
        )]);
    }
    Ok(())
}

/// The message of a pack error without its repeated `pack <id>:` prefix.
fn strip_object(e: &Error, id: &PackId) -> String {
    let text = e.to_string();
    text.strip_prefix(&format!("pack {id}: "))
        .map(str::to_string)
        .unwrap_or(text)
}
