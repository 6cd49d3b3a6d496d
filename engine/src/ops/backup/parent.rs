//! The parent snapshot's trees, streamed ahead of the walker.
//!
//! The walker visits the sources depth first in name order and needs, for
//! each directory, the same directory's tree in the parent snapshot. Read
//! one at a time that is a round trip per directory; instead a task streams
//! the parent's trees depth first in name order (the walker's order) with
//! many reads in flight, and the walker takes them from a bounded queue,
//! passing over those of directories it no longer has or excludes.

use std::sync::Arc;

use tokio::sync::mpsc::{channel, Receiver};

use crate::error::Result;
use crate::format::ids::BlobId;
use crate::format::tree::{NodeKind, Tree};
use crate::repo::index::MasterIndex;
use crate::repo::tree_stream::{Order, TreeStream};
use crate::repo::Repository;

/// Trees the task may run ahead of the walker (beyond the stream's own
/// read-ahead).
const QUEUE: usize = 256;

/// The parent's trees in the walker's order.
pub(super) struct ParentTrees {
    queue: Option<Receiver<(BlobId, Result<Tree>)>>,
    task: tokio::task::JoinHandle<()>,
}

impl ParentTrees {
    /// Starts streaming the trees below `root` on `runtime`.
    pub fn start(
        repo: &Repository,
        index: Arc<MasterIndex>,
        root: BlobId,
        runtime: &tokio::runtime::Handle,
    ) -> Self {
        let (tx, rx) = channel(QUEUE);
        let repo = repo.clone();
        let task = runtime.spawn(async move {
            let mut trees = TreeStream::new(&repo, &index, Order::DepthFirst);
            trees.want(root, root);
            while let Some((id, tree)) = trees.next().await {
                if let Ok(tree) = &tree {
                    for node in &tree.nodes {
                        if let NodeKind::Dir { subtree } = node.kind {
                            trees.want(subtree, subtree);
                        }
                    }
                }
                // A full queue waits for the walker; a gone one ends the task.
                if tx.send((id, tree)).await.is_err() {
                    return;
                }
            }
        });
        ParentTrees {
            queue: Some(rx),
            task,
        }
    }

    /// Tree `id`, when it is still ahead in the stream; trees before it
    /// (of directories the walker passed over) are dropped. `None` once the
    /// stream has passed it or ended: the caller reads it directly. Blocks:
    /// for the walker's thread, never an async worker.
    pub fn take(&mut self, id: &BlobId) -> Option<Result<Tree>> {
        let queue = self.queue.as_mut()?;
        loop {
            match queue.blocking_recv() {
                Some((got, tree)) if got == *id => return Some(tree),
                Some(_) => continue,
                None => {
                    self.queue = None;
                    return None;
                }
            }
        }
    }
}

impl Drop for ParentTrees {
    fn drop(&mut self) {
        self.queue = None;
        self.task.abort();
    }
}
