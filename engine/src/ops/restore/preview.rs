//! `restore --dry-run`: what a restore would do to the target, decided by
//! the same selection and overwrite rules, with nothing read from packs and
//! nothing written. The target is only looked at (`lstat`), never changed.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::plan::keeps;
use super::select::Selection;
use super::target::Existing;
use super::RestoreOptions;
use crate::error::Result;
use crate::format::ids::BlobId;
use crate::format::tree::NodeKind;
use crate::repo::index::MasterIndex;
use crate::repo::tree_stream::{Order, TreeStream};
use crate::repo::Repository;

/// What a restore would do with one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreviewAction {
    /// Nothing there yet: it would be created.
    Create,
    /// Something there would be replaced.
    Replace,
    /// Something there would be left as it is (`--overwrite`).
    Keep,
    /// Not in the snapshot: `--delete` would remove it.
    Delete,
}

impl PreviewAction {
    /// A word for listings.
    pub fn as_str(self) -> &'static str {
        match self {
            PreviewAction::Create => "restore",
            PreviewAction::Replace => "replace",
            PreviewAction::Keep => "keep",
            PreviewAction::Delete => "delete",
        }
    }
}

/// Counts of what a restore would do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PreviewSummary {
    /// Entries that would be created.
    pub create: u64,
    /// Entries that would replace what is there.
    pub replace: u64,
    /// Entries left as they are.
    pub keep: u64,
    /// Entries `--delete` would remove.
    pub delete: u64,
}

fn existing(path: &Path) -> Option<Existing> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    Some(Existing {
        kind: rustix::fs::FileType::from_raw_mode(meta.mode()),
        size: meta.len(),
        mtime: meta.mtime(),
        mtime_nsec: meta.mtime_nsec() as u32,
        links: meta.nlink(),
    })
}

/// Walks the snapshot from `roots` (all restored at the target's root) as a restore with `options` would and
/// tells `report` every action, in walk order.
///
/// # Errors
/// Tree reads; invalid patterns.
pub(super) async fn preview(
    repo: &Repository,
    index: &MasterIndex,
    roots: &[BlobId],
    options: &RestoreOptions,
    selection: &Selection,
    report: &mut dyn FnMut(&Path, PreviewAction),
) -> Result<PreviewSummary> {
    let mut summary = PreviewSummary::default();
    let mut tell = |path: &Path, action: PreviewAction, summary: &mut PreviewSummary| {
        match action {
            PreviewAction::Create => summary.create += 1,
            PreviewAction::Replace => summary.replace += 1,
            PreviewAction::Keep => summary.keep += 1,
            PreviewAction::Delete => summary.delete += 1,
        }
        report(path, action);
    };
    // (snapshot path, tree, target path, everything below taken)
    // Depth first, so that the report reads like a listing.
    let mut trees = TreeStream::new(repo, index, Order::DepthFirst);
    // The target's root holds every root's entries: none of them is extra.
    let mut root_names: HashSet<Vec<u8>> = HashSet::new();
    if options.delete && roots.len() > 1 {
        for root in roots {
            let tree = repo.load_tree(index, root).await?;
            root_names.extend(tree.nodes.into_iter().map(|n| n.name));
        }
    }
    for root in roots {
        trees.want(
            *root,
            (
                PathBuf::from("/"),
                options.target.clone(),
                !selection.filters(),
            ),
        );
    }
    while let Some(((dir, target_dir, whole), tree)) = trees.next().await {
        let tree = tree?;
        if options.delete && whole {
            let mut names: HashSet<&[u8]> = tree.nodes.iter().map(|n| &n.name[..]).collect();
            if dir == Path::new("/") {
                names.extend(root_names.iter().map(Vec::as_slice));
            }
            if let Ok(entries) = std::fs::read_dir(&target_dir) {
                let mut extra: Vec<PathBuf> = entries
                    .filter_map(|e| e.ok())
                    .filter(|e| !names.contains(e.file_name().as_bytes()))
                    .map(|e| e.path())
                    .collect();
                extra.sort();
                for path in extra {
                    tell(&path, PreviewAction::Delete, &mut summary);
                }
            }
        }
        for node in &tree.nodes {
            let name = OsStr::from_bytes(&node.name);
            let path = dir.join(name);
            if selection.excluded(&path) {
                continue;
            }
            let dest = target_dir.join(name);
            let taken = whole || selection.included(&path);
            if !taken {
                if let (NodeKind::Dir { subtree }, true) =
                    (&node.kind, selection.may_contain(&path))
                {
                    trees.want(*subtree, (path, dest, false));
                }
                continue;
            }
            let there = existing(&dest);
            let action = match (&there, &node.kind) {
                (None, _) => PreviewAction::Create,
                (Some(e), NodeKind::Dir { .. }) if e.kind == rustix::fs::FileType::Directory => {
                    // An existing directory is reused, not replaced.
                    if let NodeKind::Dir { subtree } = &node.kind {
                        trees.want(*subtree, (path, dest, true));
                    }
                    continue;
                }
                (Some(e), _) if keeps(options.overwrite, e, node) => PreviewAction::Keep,
                (Some(_), _) => PreviewAction::Replace,
            };
            tell(&dest, action, &mut summary);
            if let (NodeKind::Dir { subtree }, false) = (&node.kind, action == PreviewAction::Keep)
            {
                trees.want(*subtree, (path, dest, true));
            }
        }
    }
    Ok(summary)
}
