//! Walking a snapshot's trees: listing, path lookup.

use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result};
use crate::format::ids::BlobId;
use crate::format::tree::{Node, NodeKind};
use crate::repo::index::MasterIndex;
use crate::repo::tree_stream::{Order, TreeStream};
use crate::repo::Repository;

/// Splits an absolute or relative path into its name components.
pub fn components(path: &Path) -> Vec<Vec<u8>> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.as_bytes().to_vec()),
            _ => None,
        })
        .collect()
}

/// Finds the node at `path` below the tree `root`; `None` for the root itself.
///
/// # Errors
/// [`Error::PathNotFound`] when some component is missing.
pub async fn find_node(
    repo: &Repository,
    index: &MasterIndex,
    root: BlobId,
    path: &Path,
) -> Result<Option<Node>> {
    let mut tree_id = root;
    let mut found = None;
    let parts = components(path);
    for (i, part) in parts.iter().enumerate() {
        let tree = repo.load_tree(index, &tree_id).await?;
        let node = tree
            .find(part)
            .cloned()
            .ok_or_else(|| Error::PathNotFound(path.display().to_string()))?;
        match (&node.kind, i + 1 < parts.len()) {
            (NodeKind::Dir { subtree }, _) => tree_id = *subtree,
            (_, true) => return Err(Error::PathNotFound(path.display().to_string())),
            (_, false) => {}
        }
        found = Some(node);
    }
    Ok(found)
}

/// A depth-first walk of the nodes below one directory, in name order
/// (pre-order, like `find`: each directory's entries follow it directly),
/// handing nodes over one at a time so the caller may await between them.
pub struct Walker<'a> {
    trees: TreeStream<'a, PathBuf>,
    stack: Vec<(PathBuf, std::vec::IntoIter<Node>)>,
    started: bool,
}

impl<'a> Walker<'a> {
    /// A walk of the tree `subtree`, whose directory is at `dir`.
    pub fn new(
        repo: &'a Repository,
        index: &'a MasterIndex,
        subtree: BlobId,
        dir: PathBuf,
    ) -> Self {
        // Every subdirectory is wanted as soon as its parent arrives, and
        // the stream hands them back depth first, in the order the walk
        // needs.
        let mut trees = TreeStream::new(repo, index, Order::DepthFirst);
        trees.want(subtree, dir);
        Walker {
            trees,
            stack: Vec::new(),
            started: false,
        }
    }

    /// The next node and its path; `None` at the end.
    ///
    /// # Errors
    /// Tree read failures.
    pub async fn next(&mut self) -> Result<Option<(PathBuf, Node)>> {
        if !self.started {
            self.started = true;
            let first = take(&mut self.trees).await?;
            self.stack.push(first);
        }
        while let Some((dir, nodes)) = self.stack.last_mut() {
            let Some(node) = nodes.next() else {
                self.stack.pop();
                continue;
            };
            let path = dir.join(std::ffi::OsStr::from_bytes(&node.name));
            if let NodeKind::Dir { .. } = node.kind {
                let (dir, nodes) = take(&mut self.trees).await?;
                if dir != path {
                    return Err(Error::internal("tree walk out of step with its stream"));
                }
                self.stack.push((dir, nodes));
            }
            return Ok(Some((path, node)));
        }
        Ok(None)
    }
}

/// Visits every node below `start` (a path in the snapshot, `/` for all),
/// depth-first in name order, calling `visit(path, node)`.
///
/// # Errors
/// Tree read failures; [`Error::PathNotFound`].
pub async fn walk(
    repo: &Repository,
    index: &MasterIndex,
    root: BlobId,
    start: &Path,
    mut visit: impl FnMut(&Path, &Node),
) -> Result<()> {
    let start_abs = PathBuf::from("/").join(start);
    let first = match find_node(repo, index, root, &start_abs).await? {
        None => Some(root),
        Some(node) => {
            visit(&start_abs, &node);
            match node.kind {
                NodeKind::Dir { subtree } => Some(subtree),
                _ => None,
            }
        }
    };
    let Some(id) = first else {
        return Ok(());
    };
    let mut walker = Walker::new(repo, index, id, start_abs);
    while let Some((path, node)) = walker.next().await? {
        visit(&path, &node);
    }
    Ok(())
}

/// [`walk`] over every root of `snapshot` (the file system's, then the
/// sources tree, whose accounts are at `/dav/…` and `/imap/…`): `start`
/// must exist below one of them.
///
/// # Errors
/// As [`walk`].
pub async fn walk_snapshot(
    repo: &Repository,
    index: &MasterIndex,
    snapshot: &crate::format::snapshot::Snapshot,
    start: &Path,
    mut visit: impl FnMut(&Path, &Node),
) -> Result<()> {
    let mut missing = None;
    let mut found = false;
    for root in snapshot.roots() {
        match walk(repo, index, root, start, &mut visit).await {
            Ok(()) => found = true,
            Err(e @ Error::PathNotFound(_)) => missing = Some(e),
            Err(e) => return Err(e),
        }
    }
    match (found, missing) {
        (false, Some(e)) => Err(e),
        _ => Ok(()),
    }
}

/// The next directory of a depth-first walk, its subdirectories wanted.
async fn take(trees: &mut TreeStream<'_, PathBuf>) -> Result<(PathBuf, std::vec::IntoIter<Node>)> {
    let (dir, tree) = trees
        .next()
        .await
        .ok_or_else(|| Error::internal("tree walk ended before every wanted tree came"))?;
    let tree = tree?;
    for node in &tree.nodes {
        if let NodeKind::Dir { subtree } = node.kind {
            trees.want(subtree, dir.join(std::ffi::OsStr::from_bytes(&node.name)));
        }
    }
    Ok((dir, tree.nodes.into_iter()))
}
