//! Walking a snapshot's trees: listing, path lookup.

use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result};
use crate::ids::BlobId;
use crate::index::MasterIndex;
use crate::repo::Repository;
use crate::tree::{Node, NodeKind};

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
    // Pre-order, like `find`: each directory's entries follow it directly.
    let mut stack: Vec<(PathBuf, std::vec::IntoIter<Node>)> = Vec::new();
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
    if let Some(id) = first {
        stack.push((
            start_abs.clone(),
            repo.load_tree(index, &id).await?.nodes.into_iter(),
        ));
    }
    while let Some((dir, nodes)) = stack.last_mut() {
        let Some(node) = nodes.next() else {
            stack.pop();
            continue;
        };
        let path = dir.join(std::ffi::OsStr::from_bytes(&node.name));
        visit(&path, &node);
        if let NodeKind::Dir { subtree } = node.kind {
            let tree = repo.load_tree(index, &subtree).await?;
            stack.push((path, tree.nodes.into_iter()));
        }
    }
    Ok(())
}
