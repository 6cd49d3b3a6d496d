//! The tree builder: receives directory listings in post-order, waits for
//! their files' content lists, encodes each tree and hands new trees to the
//! sealers. The last tree it builds is the snapshot's root.

use crossbeam_channel::{Receiver, Sender};

use super::pipeline::{SealJob, Shared, Stop};
use super::stats::add;
use super::walker::{DirJob, Pending, SkippedEntry};
use crate::error::Error;
use crate::format::ids::BlobId;
use crate::format::pack::BlobType;
use crate::format::tree::{NodeKind, Tree};
use crate::format::RepoFile;

/// Builds every tree; returns the root tree's id.
pub(crate) fn build_trees(
    shared: &Shared,
    dirs: Receiver<DirJob>,
    seal: Sender<Vec<SealJob>>,
    skipped: &std::sync::Mutex<Vec<SkippedEntry>>,
) -> Result<BlobId, Stop> {
    let progress = &shared.progress;
    let mut finished: Vec<BlobId> = Vec::new();
    let mut last_counted: Option<&std::sync::atomic::AtomicU64> = None;
    for job in dirs {
        let subdirs = job
            .nodes
            .iter()
            .filter(|p| matches!(p, Pending::Subdir(_)))
            .count();
        let first = finished
            .len()
            .checked_sub(subdirs)
            .ok_or_else(|| Stop::Failed(Error::internal("tree builder out of step with walker")))?;
        let mut subtrees = finished.split_off(first).into_iter();
        let mut nodes = Vec::with_capacity(job.nodes.len());
        // Each batch's answers arrive together, in the order of the files; a
        // batch whose worker went away yields none, and the next file then
        // finds no answer (Stop::Closed).
        let mut answers = job
            .batches
            .into_iter()
            .flat_map(|batch| batch.recv().unwrap_or_default());
        for pending in job.nodes {
            match pending {
                Pending::Ready(node) => nodes.push(node),
                Pending::Subdir(mut node) => {
                    let subtree = subtrees.next().ok_or(Stop::Closed)?;
                    node.kind = NodeKind::Dir { subtree };
                    nodes.push(node);
                }
                Pending::File(mut node) => match answers.next().ok_or(Stop::Closed)? {
                    Ok(file) => {
                        node.size = file.size;
                        node.kind = NodeKind::File {
                            content: file.content,
                        };
                        nodes.push(node);
                    }
                    Err((path, reason)) => {
                        add(&progress.errors, 1);
                        tracing::warn!("skipping {}: {reason}", path.display());
                        skipped
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push(SkippedEntry { path, reason });
                    }
                },
            }
        }
        for node in &nodes {
            if matches!(node.kind, NodeKind::File { .. }) {
                add(&progress.total_files, 1);
                add(&progress.total_bytes, node.size);
            }
        }
        let tree = Tree::new(nodes);
        let bytes = tree.encode();
        let id = shared.keys.blob_id(&bytes);
        let class = match job.parent_subtree {
            None => &progress.dirs_new,
            Some(old) if old == id => &progress.dirs_unmodified,
            Some(_) => &progress.dirs_changed,
        };
        add(class, 1);
        last_counted = Some(class);
        if shared.claim(&id) {
            seal.send(vec![SealJob {
                blob_type: BlobType::Tree,
                id,
                data: bytes,
            }])
            .map_err(|_| Stop::Closed)?;
        }
        finished.push(id);
    }
    // The last directory is the snapshot's root ("/"), which is not one of
    // the user's directories and which restore does not create: not counted.
    if let Some(class) = last_counted {
        class.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
    match finished.as_slice() {
        [root] => Ok(*root),
        _ => Err(Stop::Closed),
    }
}
