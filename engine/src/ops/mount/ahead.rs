//! Reading ahead across files: opening a file asks for the blobs of the
//! files that come after it in its snapshot's depth-first order, entries in
//! name order: the order `tar`, `cp -r`, `rsync` and `find` read in.
//!
//! A home directory is mostly files of one small blob each, a few per
//! directory, stored side by side in the order the backup walked them,
//! which is this order. So the next files' blobs, asked for together, come
//! in a few ranged reads of dozens of files each, and a destination 40 ms
//! away costs a round trip per range instead of one per file (or per
//! directory, had the read-ahead stopped at the directory's end).
//!
//! Each snapshot directory keeps a window: the files asked for, in order,
//! and where the walk stopped. A file opened inside the window moves the
//! reader's place, and once less than half the window lies ahead, the walk
//! goes on from where it stopped. A file opened outside it (another
//! reader, a jump) starts the walk again from that file.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use super::inodes::{DirKey, Inode, Kind};
use super::MountFs;
use crate::format::ids::BlobId;
use crate::format::tree::{NodeKind, Tree};

/// Files read ahead of the one opened.
pub const AHEAD_FILES: usize = 1024;
/// Bytes of the next files read ahead of the one opened (at most
/// [`FILE_AHEAD`](super::FILE_AHEAD) of each).
pub const AHEAD_BYTES: u64 = 16 << 20;
/// Entries one extension of the walk looks at, at most (a tree of empty
/// directories must not keep it going).
const WALK_STEPS: usize = 16 * AHEAD_FILES;
/// Snapshot directories with a window; past this they are forgotten.
const SCOPES: usize = 64;

/// A file's place: its directory's listing and its index there.
type FilePos = (DirKey, usize);

/// A directory the walk is in, and the index of its next entry.
#[derive(Clone)]
struct Frame {
    key: DirKey,
    tree: Arc<Tree>,
    next: usize,
}

/// One snapshot directory's read-ahead window.
#[derive(Default)]
pub(crate) struct Window {
    /// The files asked for, in order: place, ordinal, bytes asked for up to
    /// and including it.
    files: VecDeque<(FilePos, u64, u64)>,
    places: HashMap<FilePos, (u64, u64)>,
    next_ordinal: u64,
    total_bytes: u64,
    /// Where the walk stopped, outermost directory first; empty once it
    /// reached the end of the snapshot.
    frames: Vec<Frame>,
    /// A walk is extending the window (others leave it alone).
    busy: bool,
}

impl Window {
    fn restart(&mut self) {
        self.files.clear();
        self.places.clear();
        self.frames.clear();
    }

    fn push(&mut self, place: FilePos, bytes: u64) {
        let ordinal = self.next_ordinal;
        self.next_ordinal += 1;
        self.total_bytes += bytes;
        self.places
            .insert(place.clone(), (ordinal, self.total_bytes));
        self.files.push_back((place, ordinal, self.total_bytes));
    }

    /// The reader is at `ordinal`: the files before it are consumed.
    fn consume_to(&mut self, ordinal: u64) {
        while let Some((place, o, _)) = self.files.front() {
            if *o >= ordinal {
                break;
            }
            self.places.remove(place);
            self.files.pop_front();
        }
    }
}

/// What to do for a file opened at `place`.
enum Plan {
    /// Enough is asked for already.
    Nothing,
    /// Go on from where the walk stopped, for this many files and bytes.
    Extend(Vec<Frame>, usize, u64),
    /// Start again from the opened file.
    Restart,
}

impl MountFs {
    /// Asks for the blobs of the files after `inode` (a file just opened)
    /// in its snapshot's order, if the window runs short. Decided at once
    /// when the file's directory is cached (nearly always: the kernel just
    /// looked the file up there); any walk runs in the background. Never
    /// fails: what cannot be read ahead is read when asked for.
    pub(crate) fn read_ahead(&self, inode: &Arc<Inode>) {
        let Kind::Node { listed_in, .. } = &inode.kind else {
            return;
        };
        match self.cached_tree_of(listed_in) {
            Some(tree) => self.read_ahead_in(inode, tree),
            None => {
                let (fs, inode) = (self.clone(), inode.clone());
                self.inner.store.runtime().spawn(async move {
                    if let Kind::Node { listed_in, .. } = &inode.kind {
                        if let Ok(tree) = fs.tree_of(listed_in).await {
                            fs.read_ahead_in(&inode, tree);
                        }
                    }
                });
            }
        }
    }

    /// [`MountFs::read_ahead`] for a file of listing `tree`.
    fn read_ahead_in(&self, inode: &Arc<Inode>, tree: Arc<Tree>) {
        let Kind::Node { node, listed_in } = &inode.kind else {
            return;
        };
        let Ok(at) = tree
            .nodes
            .binary_search_by(|n| n.name.as_slice().cmp(&node.name))
        else {
            return;
        };
        let place: FilePos = (listed_in.clone(), at);
        let plan = {
            let mut all = self.inner.ahead.lock().unwrap_or_else(|p| p.into_inner());
            if all.len() >= SCOPES && !all.contains_key(&inode.scope) {
                all.clear();
            }
            let window = all.entry(inode.scope).or_default();
            if window.busy {
                return;
            }
            let plan = match window.places.get(&place).copied() {
                Some((ordinal, up_to)) => {
                    window.consume_to(ordinal);
                    let files = (window.next_ordinal - ordinal) as usize;
                    let bytes = window.total_bytes - up_to;
                    if files > AHEAD_FILES / 2
                        || bytes > AHEAD_BYTES / 2
                        || window.frames.is_empty()
                    {
                        Plan::Nothing
                    } else {
                        Plan::Extend(
                            window.frames.clone(),
                            AHEAD_FILES - files,
                            AHEAD_BYTES.saturating_sub(bytes),
                        )
                    }
                }
                None => Plan::Restart,
            };
            if !matches!(plan, Plan::Nothing) {
                window.busy = true;
            }
            plan
        };
        if matches!(plan, Plan::Nothing) {
            return;
        }
        let (fs, inode) = (self.clone(), inode.clone());
        self.inner.store.runtime().spawn(async move {
            let (frames, files, bytes, restart) = match plan {
                Plan::Nothing => return,
                Plan::Extend(frames, files, bytes) => (frames, files, bytes, false),
                Plan::Restart => {
                    let frames = fs.frames_from(&inode, tree, at).await;
                    (frames, AHEAD_FILES, AHEAD_BYTES, true)
                }
            };
            let (found, ids, frames) = fs.walk_ahead(frames, files, bytes).await;
            {
                let mut all = fs.inner.ahead.lock().unwrap_or_else(|p| p.into_inner());
                let window = all.entry(inode.scope).or_default();
                if restart {
                    window.restart();
                }
                for (place, bytes) in found {
                    window.push(place, bytes);
                }
                window.frames = frames;
                window.busy = false;
            }
            fs.inner.store.prefetch(&ids);
        });
    }

    /// The walk's state at the opened file (its index `at` in `tree`): its
    /// directory and every directory above it up to the snapshot's top,
    /// each at the entry after the one on the way down.
    async fn frames_from(&self, inode: &Inode, tree: Arc<Tree>, at: usize) -> Vec<Frame> {
        let Kind::Node { listed_in, .. } = &inode.kind else {
            return Vec::new();
        };
        let mut frames = vec![Frame {
            key: listed_in.clone(),
            tree,
            next: at,
        }];
        let mut parent = inode.parent;
        while let Some(dir) = self.inner.inodes.get(parent) {
            let Kind::Node { node, listed_in } = &dir.kind else {
                break;
            };
            let Ok(tree) = self.tree_of(listed_in).await else {
                break;
            };
            let Ok(i) = tree
                .nodes
                .binary_search_by(|n| n.name.as_slice().cmp(&node.name))
            else {
                break;
            };
            frames.push(Frame {
                key: listed_in.clone(),
                tree,
                next: i + 1,
            });
            parent = dir.parent;
        }
        frames.reverse();
        frames
    }

    /// Walks on from `frames` until `files` files or `bytes` bytes were
    /// found; returns them (place, bytes), their blobs, and where it stopped.
    async fn walk_ahead(
        &self,
        mut frames: Vec<Frame>,
        files: usize,
        bytes: u64,
    ) -> (Vec<(FilePos, u64)>, Vec<BlobId>, Vec<Frame>) {
        let index = self.inner.store.index();
        let (mut found, mut ids, mut total) = (Vec::new(), Vec::new(), 0u64);
        let mut steps = 0;
        while let Some(frame) = frames.last_mut() {
            if found.len() >= files || total >= bytes || steps >= WALK_STEPS {
                break;
            }
            steps += 1;
            let (tree, i) = (frame.tree.clone(), frame.next);
            let Some(node) = tree.nodes.get(i) else {
                frames.pop();
                continue;
            };
            frame.next += 1;
            match &node.kind {
                NodeKind::File { content } => {
                    let mut of_file = 0;
                    for id in content {
                        if of_file >= super::FILE_AHEAD {
                            break;
                        }
                        of_file += index.lookup(id).map_or(0, |l| u64::from(l.raw_length));
                        ids.push(*id);
                    }
                    total += of_file;
                    found.push(((frame.key.clone(), i), of_file));
                }
                NodeKind::Dir { subtree } => {
                    // A directory that cannot be read is left out here; its
                    // reader gets the error.
                    if let Ok(tree) = self.inner.trees.get(subtree).await {
                        frames.push(Frame {
                            key: DirKey(vec![*subtree]),
                            tree,
                            next: 0,
                        });
                    }
                }
                _ => {}
            }
        }
        (found, ids, frames)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn place(n: u8) -> FilePos {
        (DirKey(vec![BlobId([n; 32])]), usize::from(n))
    }

    #[test]
    fn the_window_moves_with_the_reader() {
        let mut w = Window::default();
        for n in 0..5 {
            w.push(place(n), 100);
        }
        assert_eq!((w.next_ordinal, w.total_bytes), (5, 500));
        // The reader opens the third file: the two before it are consumed.
        let (ordinal, up_to) = w.places[&place(2)];
        assert_eq!((ordinal, up_to), (2, 300));
        w.consume_to(ordinal);
        assert_eq!(w.files.len(), 3);
        assert!(!w.places.contains_key(&place(0)) && !w.places.contains_key(&place(1)));
        assert!(
            w.places.contains_key(&place(2)),
            "the file being read stays"
        );
        // What lies ahead of it: two files, 200 bytes.
        assert_eq!((w.next_ordinal - ordinal, w.total_bytes - up_to), (3, 200));
        w.restart();
        assert!(w.files.is_empty() && w.places.is_empty() && w.frames.is_empty());
        w.push(place(9), 7);
        assert_eq!(w.places[&place(9)], (5, 507), "ordinals and totals go on");
    }
}
