//! Listing directories: an open directory holds its listing (a snapshot's
//! tree, or the made-up entries as they were when it was opened), so the
//! offsets the kernel hands back stay valid while snapshots come and go.
//!
//! Offsets: 1 follows `.`, 2 follows `..`, and `n + 3` follows entry `n`.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::inodes::{DirKey, Inode, Kind};
use super::layout::VEntry;
use super::{child_identity, child_inode, node_kind, Attr, Child, FileKind, FsError, MountFs};
use crate::format::tree::{NodeKind, Tree};

/// The entries of an open directory.
enum Entries {
    /// Made-up entries, as they were at `opendir`.
    Virtual(Vec<(Vec<u8>, VEntry)>),
    /// A snapshot's directory: its (merged) tree.
    Tree { tree: Arc<Tree>, key: DirKey },
}

/// An open directory.
pub(crate) struct Listing {
    ino: u64,
    inode: Arc<Inode>,
    entries: Entries,
}

/// One entry of a listing, as `readdir` hands it out.
#[derive(Debug, Clone, Copy)]
pub struct DirEntry<'a> {
    /// Its inode number.
    pub ino: u64,
    /// The offset of the entry after it.
    pub next: u64,
    /// Its kind.
    pub kind: FileKind,
    /// Its name.
    pub name: &'a [u8],
}

impl Listing {
    fn len(&self) -> usize {
        match &self.entries {
            Entries::Virtual(list) => list.len(),
            Entries::Tree { tree, .. } => tree.nodes.len(),
        }
    }

    /// Entry `n` (not counting `.` and `..`) as a child, with its name.
    fn child(&self, n: usize) -> (&[u8], Child) {
        match &self.entries {
            Entries::Virtual(list) => {
                let (name, entry) = &list[n];
                (name, Child::Virtual(entry.clone()))
            }
            Entries::Tree { tree, key } => {
                let node = &tree.nodes[n];
                (&node.name, Child::Node(node.clone(), key.clone()))
            }
        }
    }

    /// Entry `n` for a plain listing, without making its inode.
    fn entry(&self, n: usize) -> DirEntry<'_> {
        let next = n as u64 + 3;
        match &self.entries {
            Entries::Virtual(list) => {
                let (name, entry) = &list[n];
                let kind = match entry {
                    VEntry::Link(_) => FileKind::Symlink,
                    VEntry::Dir(_) | VEntry::Snapshot(_) => FileKind::Directory,
                };
                let child = Child::Virtual(entry.clone());
                let ino = child_identity(self.ino, self.inode.scope, name, &child).ino();
                DirEntry {
                    ino,
                    next,
                    kind,
                    name,
                }
            }
            Entries::Tree { tree, .. } => {
                let node = &tree.nodes[n];
                let ino = super::node_identity(self.ino, self.inode.scope, node).ino();
                DirEntry {
                    ino,
                    next,
                    kind: node_kind(node),
                    name: &node.name,
                }
            }
        }
    }
}

/// The listing key of a snapshot's directory or top.
pub(crate) fn dir_key(inode: &Inode) -> Result<DirKey, FsError> {
    match &inode.kind {
        Kind::Snapshot(s) => Ok(DirKey(s.roots.clone())),
        Kind::Node { node, .. } => match node.kind {
            NodeKind::Dir { subtree } => Ok(DirKey(vec![subtree])),
            _ => Err(FsError::NotDir),
        },
        Kind::Virtual(_) | Kind::Link(_) => Err(FsError::NotDir),
    }
}

impl MountFs {
    /// The listing `key` names: one tree, or the snapshot's roots merged
    /// (the first root's entry wins a name both hold).
    pub(crate) async fn tree_of(&self, key: &DirKey) -> Result<Arc<Tree>, FsError> {
        if let Some(tree) = self.cached_tree_of(key) {
            return Ok(tree);
        }
        let mut trees = Vec::with_capacity(key.0.len());
        for id in &key.0 {
            trees.push(self.inner.trees.get(id).await?);
        }
        Ok(merged(trees))
    }

    /// [`MountFs::tree_of`] when every tree is cached.
    pub(crate) fn cached_tree_of(&self, key: &DirKey) -> Option<Arc<Tree>> {
        let trees: Option<Vec<Arc<Tree>>> =
            key.0.iter().map(|id| self.inner.trees.cached(id)).collect();
        trees.map(merged)
    }

    fn new_handle(&self, listing: Arc<Listing>) -> u64 {
        let fh = self.inner.next_handle.fetch_add(1, Ordering::Relaxed);
        self.inner
            .handles
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(fh, listing);
        fh
    }

    fn handle_of(&self, fh: u64) -> Result<Arc<Listing>, FsError> {
        match self
            .inner
            .handles
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&fh)
        {
            Some(listing) => Ok(listing.clone()),
            None => Err(FsError::Stale),
        }
    }

    /// [`MountFs::opendir`] when it can be answered from memory (a
    /// snapshot's directory whose tree is cached, a made-up one whose
    /// snapshot list is fresh); `None` when it must wait.
    pub fn try_opendir(
        &self,
        ino: u64,
        fresh: std::time::Duration,
    ) -> Option<Result<(u64, bool), FsError>> {
        let inode = match self.inode(ino) {
            Ok(inode) => inode,
            Err(e) => return Some(Err(e)),
        };
        if let Kind::Virtual(_) = inode.kind {
            if !self.is_fresh(fresh) {
                return None;
            }
            return Some(Ok(self.open_listing(ino, inode, None)));
        }
        let key = match dir_key(&inode) {
            Ok(key) => key,
            Err(e) => return Some(Err(e)),
        };
        self.walk_below(&inode, &key);
        let tree = self.cached_tree_of(&key)?;
        Some(Ok(self.open_listing(ino, inode, Some((tree, key)))))
    }

    /// Entering a snapshot, or a directory no walk reached yet: reads the
    /// trees below it ahead of the reader.
    fn walk_below(&self, inode: &Inode, key: &DirKey) {
        let cached = key.0.len() == 1 && self.inner.trees.contains(&key.0[0]);
        if matches!(inode.kind, Kind::Snapshot(_)) || !cached {
            for root in &key.0 {
                self.inner.trees.walk(*root);
            }
        }
    }

    /// A handle on `inode`'s listing: `tree` for a snapshot's directory,
    /// the made-up entries now for the others.
    fn open_listing(
        &self,
        ino: u64,
        inode: Arc<Inode>,
        tree: Option<(Arc<Tree>, DirKey)>,
    ) -> (u64, bool) {
        let entries = match (&inode.kind, tree) {
            (_, Some((tree, key))) => Entries::Tree { tree, key },
            (Kind::Virtual(v), None) => Entries::Virtual(self.layout().children(v)),
            (_, None) => Entries::Virtual(Vec::new()),
        };
        let cacheable = matches!(entries, Entries::Tree { .. });
        let listing = Listing {
            ino,
            inode,
            entries,
        };
        (self.new_handle(Arc::new(listing)), cacheable)
    }

    /// Opens directory `ino`; returns the handle, and whether the kernel
    /// may cache the listing (a snapshot's directories never change). The
    /// made-up directories read the snapshot list again first when it is
    /// older than `fresh` (`ls` right after a backup shows it).
    ///
    /// # Errors
    /// [`FsError::NotDir`], or the repository's failure to read the tree.
    pub async fn opendir(
        &self,
        ino: u64,
        fresh: std::time::Duration,
    ) -> Result<(u64, bool), FsError> {
        if let Some(done) = self.try_opendir(ino, fresh) {
            return done;
        }
        let inode = self.inode(ino)?;
        if let Kind::Virtual(_) = inode.kind {
            self.refresh_if_older(fresh).await;
            return Ok(self.open_listing(ino, inode, None));
        }
        let key = dir_key(&inode)?;
        let tree = self.tree_of(&key).await?;
        Ok(self.open_listing(ino, inode, Some((tree, key))))
    }

    /// The entries of open directory `fh` from `offset` on, each handed to
    /// `fill` until it returns true (its buffer is full).
    ///
    /// # Errors
    /// [`FsError::Stale`] for an unknown handle.
    pub fn readdir(
        &self,
        fh: u64,
        offset: u64,
        mut fill: impl FnMut(DirEntry<'_>) -> bool,
    ) -> Result<(), FsError> {
        let listing = self.handle_of(fh)?;
        let parent = listing.inode.parent;
        for at in offset..listing.len() as u64 + 2 {
            let entry = match at {
                0 => dot(listing.ino, b"."),
                1 => dot(parent, b".."),
                _ => listing.entry((at - 2) as usize),
            };
            if fill(entry) {
                break;
            }
        }
        Ok(())
    }

    /// As [`MountFs::readdir`], with each entry's attributes; every entry
    /// `fill` takes (returns false for) counts as a lookup, as the kernel
    /// counts it (`.` and `..` do not).
    ///
    /// # Errors
    /// [`FsError::Stale`] for an unknown handle.
    pub fn readdirplus(
        &self,
        fh: u64,
        offset: u64,
        mut fill: impl FnMut(DirEntry<'_>, &Attr) -> bool,
    ) -> Result<(), FsError> {
        let listing = self.handle_of(fh)?;
        for at in offset..listing.len() as u64 + 2 {
            if at < 2 {
                let ino = if at == 0 {
                    listing.ino
                } else {
                    listing.inode.parent
                };
                let attr = match self.inode(ino) {
                    Ok(inode) => self.attr(ino, &inode),
                    Err(_) => self.attr(listing.ino, &listing.inode),
                };
                let name: &[u8] = if at == 0 { b"." } else { b".." };
                if fill(dot(ino, name), &attr) {
                    break;
                }
                continue;
            }
            let n = (at - 2) as usize;
            let (name, child) = listing.child(n);
            let inode = child_inode(listing.ino, &listing.inode, name, child);
            let (ino, inode) = self.inner.inodes.remember(inode);
            let attr = self.attr(ino, &inode);
            let entry = DirEntry {
                ino,
                ..listing.entry(n)
            };
            if fill(entry, &attr) {
                // Not handed over: not looked up.
                self.inner.inodes.forget(ino, 1);
                break;
            }
        }
        Ok(())
    }

    /// Closes directory handle `fh`.
    pub fn releasedir(&self, fh: u64) {
        self.inner
            .handles
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&fh);
    }
}

/// One listing of `trees`: the tree itself when alone, else their entries
/// merged (the first tree's entry wins a name several hold).
fn merged(mut trees: Vec<Arc<Tree>>) -> Arc<Tree> {
    if trees.len() == 1 {
        if let Some(one) = trees.pop() {
            return one;
        }
    }
    let mut names = HashSet::new();
    let mut nodes = Vec::new();
    for tree in &trees {
        for node in &tree.nodes {
            if names.insert(node.name.clone()) {
                nodes.push(node.clone());
            }
        }
    }
    Arc::new(Tree::new(nodes))
}

/// `.` or `..`.
fn dot(ino: u64, name: &'static [u8]) -> DirEntry<'static> {
    DirEntry {
        ino,
        next: if name == b"." { 1 } else { 2 },
        kind: FileKind::Directory,
        name,
    }
}
