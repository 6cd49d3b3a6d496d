//! Directories for the mount: decoded trees cached within a byte budget,
//! loaded when a directory is first listed or searched, and read ahead in
//! bulk once a snapshot is entered.
//!
//! Loading trees one by one as a reader descends costs a round trip per
//! directory (3,000 directories 40 ms away: two minutes before `tar` has
//! read its last one). Entering a snapshot therefore starts one
//! [`TreeStream`] walk of it, depth first like the readers that matter
//! (`tar`, `cp -r`, `find`), with its bulk reads of whole tree packs; the
//! walk stops once it has filled half the cache, so a huge snapshot costs
//! at most that.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use super::blobs::BlobStore;
use super::lru::Lru;
use crate::error::Error;
use crate::format::ids::BlobId;
use crate::format::tree::{NodeKind, Tree};
use crate::repo::tree_stream::{Order, TreeStream};

/// Snapshot roots remembered as walked already; past this the memory is
/// cleared (a walk again costs reads, not correctness).
const WALKS_REMEMBERED: usize = 256;

/// What a decoded tree costs in memory, roughly: each node's fixed fields
/// and its variable ones.
pub(crate) fn tree_weight(tree: &Tree) -> usize {
    tree.nodes
        .iter()
        .map(|n| {
            let kind = match &n.kind {
                NodeKind::File { content } => content.len() * 32,
                NodeKind::Symlink { target } => target.len(),
                _ => 0,
            };
            200 + n.name.len() + n.user.len() + n.group.len() + kind
        })
        .sum::<usize>()
        + 64
}

/// Decoded trees by id, within a budget, and the walks that fill them.
pub(crate) struct Trees {
    store: Arc<BlobStore>,
    cache: Mutex<Lru<BlobId, Arc<Tree>>>,
    budget: usize,
    walked: Mutex<HashSet<BlobId>>,
}

impl Trees {
    /// A tree cache of `budget` bytes reading through `store`'s repository
    /// and index.
    pub(crate) fn new(store: Arc<BlobStore>, budget: usize) -> Self {
        Trees {
            store,
            cache: Mutex::new(Lru::new(budget)),
            budget,
            walked: Mutex::new(HashSet::new()),
        }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Lru<BlobId, Arc<Tree>>> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn keep(&self, id: BlobId, tree: Arc<Tree>) {
        let weight = tree_weight(&tree);
        self.cache().insert(id, tree, weight);
    }

    /// True when tree `id` is cached.
    pub(crate) fn contains(&self, id: &BlobId) -> bool {
        self.cache().contains(id)
    }

    /// Tree `id` if cached.
    pub(crate) fn cached(&self, id: &BlobId) -> Option<Arc<Tree>> {
        self.cache().get(id)
    }

    /// Tree `id`, from the cache or read (verified) now.
    pub(crate) async fn get(&self, id: &BlobId) -> Result<Arc<Tree>, Arc<Error>> {
        if let Some(tree) = self.cache().get(id) {
            return Ok(tree);
        }
        let index = self.store.index();
        let tree = Arc::new(self.store.repo().load_tree(&index, id).await?);
        self.keep(*id, tree.clone());
        Ok(tree)
    }

    /// Starts reading every tree below `root` in the background, unless it
    /// was walked already.
    pub(crate) fn walk(self: &Arc<Self>, root: BlobId) {
        {
            let mut walked = self.walked.lock().unwrap_or_else(|p| p.into_inner());
            if walked.len() >= WALKS_REMEMBERED {
                walked.clear();
            }
            if !walked.insert(root) {
                return;
            }
        }
        let trees = self.clone();
        self.store.runtime().spawn(async move {
            let repo = trees.store.repo().clone();
            let index = trees.store.index();
            let mut stream = TreeStream::new(&repo, &index, Order::DepthFirst);
            let mut seen = HashSet::from([root]);
            stream.want(root, root);
            let mut loaded = 0;
            while let Some((id, tree)) = stream.next().await {
                // A tree that fails here is read again when a reader wants
                // it, and the reader gets the error then.
                let Ok(tree) = tree else { continue };
                for node in &tree.nodes {
                    if let NodeKind::Dir { subtree } = node.kind {
                        if seen.insert(subtree) {
                            stream.want(subtree, subtree);
                        }
                    }
                }
                loaded += tree_weight(&tree);
                if !trees.cache().contains(&id) {
                    trees.keep(id, Arc::new(tree));
                }
                if loaded > trees.budget / 2 {
                    break;
                }
            }
        });
    }
}
