//! `rewrite`: copies of snapshots without the entries that match exclude
//! patterns (a secret backed up by mistake, a cache too large to keep).
//!
//! Only the trees on the way to a removed entry change: every other
//! subtree keeps its id and is neither read again nor written. A directory
//! is identified by its tree id and its path (anchored patterns depend on
//! the path), so snapshots sharing a subtree rewrite it once. The new
//! trees are stored (packs, then their index) before any new snapshot
//! names them; each new snapshot records its `original` (FORMAT.md §4.10,
//! tag 2). The old snapshots stay unless asked to be forgotten, and the
//! space of what was removed comes back at the next `prune`.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use futures::future::BoxFuture;

use crate::error::Result;
use crate::format::ids::{BlobId, SnapshotId};
use crate::format::pack::BlobType;
use crate::format::snapshot::Snapshot;
use crate::format::tree::{NodeKind, Tree};
use crate::format::RepoFile;
use crate::ops::forget::{self, ForgetOutcome};
use crate::ops::ls::Walker;
use crate::ops::patterns::PathPatterns;
use crate::repo::index::MasterIndex;
use crate::repo::packer::Packer;
use crate::repo::Repository;

/// An entry a rewrite leaves out (what is below it goes too).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removed {
    /// Its absolute path in the snapshot.
    pub path: PathBuf,
    /// True for a directory.
    pub is_dir: bool,
    /// Files it held (1 for a file).
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// One snapshot rewritten.
#[derive(Debug, Clone)]
pub struct Rewritten {
    /// The snapshot rewritten.
    pub old: SnapshotId,
    /// Its copy's id (`None` in a dry run).
    pub new: Option<SnapshotId>,
    /// The copy.
    pub snapshot: Snapshot,
    /// What the copy leaves out.
    pub removed: Vec<Removed>,
}

/// What a rewrite did (or, dry, would do).
#[derive(Debug, Clone, Default)]
pub struct RewriteOutcome {
    /// Snapshots with something to leave out.
    pub rewritten: Vec<Rewritten>,
    /// Snapshots nothing matched in.
    pub unchanged: Vec<SnapshotId>,
    /// New trees stored.
    pub trees_written: u64,
    /// New packs stored.
    pub packs_written: u64,
    /// The old snapshots' retirement, when asked for.
    pub retired: Option<ForgetOutcome>,
}

/// A subtree's rewrite.
#[derive(Clone)]
struct Done {
    id: BlobId,
    removed: Vec<Removed>,
}

struct Rewriter<'a> {
    repo: &'a Repository,
    index: &'a MasterIndex,
    excludes: &'a PathPatterns,
    packer: Option<Packer<'a>>,
    done: HashMap<(BlobId, PathBuf), Done>,
    written: HashSet<BlobId>,
    trees_written: u64,
}

/// Rewrites `snapshots` without what `excludes` (compiled with
/// [`crate::ops::patterns::Reach::Subtree`]) matches. `dry_run` writes
/// nothing; `forget_old` retires each rewritten snapshot once its copy is
/// stored. The caller holds a lock: exclusive when `forget_old`.
///
/// # Errors
/// Tree reads; writes failing on every destination. Nothing is forgotten
/// unless every copy was stored.
pub async fn rewrite(
    repo: &Repository,
    index: &MasterIndex,
    snapshots: Vec<(SnapshotId, Snapshot)>,
    excludes: &PathPatterns,
    dry_run: bool,
    forget_old: bool,
) -> Result<RewriteOutcome> {
    let mut rewriter = Rewriter {
        repo,
        index,
        excludes,
        packer: (!dry_run).then(|| Packer::new(repo)),
        done: HashMap::new(),
        written: HashSet::new(),
        trees_written: 0,
    };
    let mut outcome = RewriteOutcome::default();
    for (id, snapshot) in snapshots {
        let root = PathBuf::from("/");
        let tree = rewriter.tree(snapshot.tree, root.clone()).await?;
        let sources = match snapshot.sources_tree() {
            Some(s) => Some(rewriter.tree(s, root).await?),
            None => None,
        };
        let mut removed = tree.removed.clone();
        removed.extend(sources.iter().flat_map(|s| s.removed.iter().cloned()));
        if removed.is_empty() {
            outcome.unchanged.push(id);
            continue;
        }
        let mut copy = snapshot.replacement(id);
        copy.tree = tree.id;
        if let Some(s) = &sources {
            copy.set_sources_tree(s.id);
        }
        let (files, bytes) = removed
            .iter()
            .fold((0, 0), |(f, b), r| (f + r.files, b + r.bytes));
        copy.summary.total_files = copy.summary.total_files.saturating_sub(files);
        copy.summary.total_bytes = copy.summary.total_bytes.saturating_sub(bytes);
        outcome.rewritten.push(Rewritten {
            old: id,
            new: None,
            snapshot: copy,
            removed,
        });
    }
    outcome.trees_written = rewriter.trees_written;
    let Some(packer) = rewriter.packer.take() else {
        return Ok(outcome);
    };
    // Every new tree is stored, and indexed, before a snapshot names it.
    outcome.packs_written = packer.finish().await?;
    for r in &mut outcome.rewritten {
        r.new = Some(repo.save_snapshot(&r.snapshot).await?);
    }
    if forget_old {
        let old: Vec<SnapshotId> = outcome.rewritten.iter().map(|r| r.old).collect();
        outcome.retired = Some(forget::forget(repo, &old).await?);
    }
    Ok(outcome)
}

impl<'a> Rewriter<'a> {
    /// The tree `id` at `dir` without the excluded entries below it.
    fn tree(&mut self, id: BlobId, dir: PathBuf) -> BoxFuture<'_, Result<Done>> {
        Box::pin(async move {
            if let Some(done) = self.done.get(&(id, dir.clone())) {
                return Ok(done.clone());
            }
            let tree = self.repo.load_tree(self.index, &id).await?;
            let mut nodes = Vec::with_capacity(tree.nodes.len());
            let mut removed = Vec::new();
            for mut node in tree.nodes {
                let path = dir.join(OsStr::from_bytes(&node.name));
                if self.excludes.matching(&path).is_some() {
                    removed.push(self.measure(&path, &node.kind, node.size).await?);
                    continue;
                }
                if let NodeKind::Dir { subtree } = node.kind {
                    let below = self.tree(subtree, path).await?;
                    node.kind = NodeKind::Dir { subtree: below.id };
                    removed.extend(below.removed);
                }
                nodes.push(node);
            }
            let new_id = if removed.is_empty() {
                id
            } else {
                self.store(Tree::new(nodes)).await?
            };
            let done = Done {
                id: new_id,
                removed,
            };
            self.done.insert((id, dir), done.clone());
            Ok(done)
        })
    }

    /// What leaving out the entry at `path` removes.
    async fn measure(&self, path: &Path, kind: &NodeKind, size: u64) -> Result<Removed> {
        let mut removed = Removed {
            path: path.to_path_buf(),
            is_dir: matches!(kind, NodeKind::Dir { .. }),
            files: 0,
            bytes: 0,
        };
        match kind {
            NodeKind::File { .. } => {
                removed.files = 1;
                removed.bytes = size;
            }
            NodeKind::Dir { subtree } => {
                let mut walker = Walker::new(self.repo, self.index, *subtree, path.to_path_buf());
                while let Some((_, node)) = walker.next().await? {
                    if let NodeKind::File { .. } = node.kind {
                        removed.files += 1;
                        removed.bytes += node.size;
                    }
                }
            }
            _ => {}
        }
        Ok(removed)
    }

    /// Stores a new tree (unless the repository or this run has it).
    async fn store(&mut self, tree: Tree) -> Result<BlobId> {
        let bytes = tree.encode();
        let id = self.repo.keys().blob_id(&bytes);
        let Some(packer) = self.packer.as_mut() else {
            return Ok(id);
        };
        if !self.index.contains(&id) && self.written.insert(id) {
            packer.add_plain(BlobType::Tree, id, &bytes).await?;
            self.trees_written += 1;
        }
        Ok(id)
    }
}
