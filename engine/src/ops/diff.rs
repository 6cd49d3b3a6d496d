//! `diff`: what changed between two snapshots.
//!
//! Both snapshots' trees are walked side by side, in name order, with the
//! tree streamer; a directory whose tree id is the same in both is skipped
//! unread (nothing below it can differ). Each difference is handed to the
//! caller as it is found, depth first, so a large diff prints as it goes.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::format::ids::BlobId;
use crate::format::snapshot::Snapshot;
use crate::format::tree::{Node, NodeKind};
use crate::repo::index::MasterIndex;
use crate::repo::tree_stream::{Order, TreeStream};
use crate::repo::Repository;

/// How an entry differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// Only in the second snapshot (`+`).
    Added,
    /// Only in the first (`-`).
    Removed,
    /// Content changed: a file's bytes, a link's target, a device's number (`M`).
    Modified,
    /// A different type of entry under the same name (`T`).
    TypeChanged,
    /// Same content, different metadata: mode, owner, modification time
    /// (`U`, reported only when asked for).
    Metadata,
}

impl ChangeKind {
    /// The one-letter marker restic prints.
    pub fn marker(self) -> char {
        match self {
            ChangeKind::Added => '+',
            ChangeKind::Removed => '-',
            ChangeKind::Modified => 'M',
            ChangeKind::TypeChanged => 'T',
            ChangeKind::Metadata => 'U',
        }
    }
}

/// One difference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Absolute path in the snapshots.
    pub path: PathBuf,
    /// How it differs.
    pub kind: ChangeKind,
    /// True when the entry is a directory (in the snapshot that has it;
    /// for a type change, in the second).
    pub is_dir: bool,
}

/// Totals of a diff.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiffStats {
    /// Files only in the second snapshot.
    pub files_added: u64,
    /// Files only in the first.
    pub files_removed: u64,
    /// Files whose content changed.
    pub files_modified: u64,
    /// Directories only in the second snapshot.
    pub dirs_added: u64,
    /// Directories only in the first.
    pub dirs_removed: u64,
    /// Other entries (links, devices, pipes) only in the second snapshot.
    pub others_added: u64,
    /// Other entries only in the first.
    pub others_removed: u64,
    /// Links and devices whose target or number changed.
    pub others_modified: u64,
    /// Entries whose type changed.
    pub type_changed: u64,
    /// Entries whose metadata alone changed (counted with or without
    /// `metadata`).
    pub metadata_changed: u64,
    /// Distinct data blobs the changed entries of the second snapshot
    /// reference and those of the first do not.
    pub blobs_added: u64,
    /// … and the other way round.
    pub blobs_removed: u64,
    /// Plaintext bytes of `blobs_added`.
    pub bytes_added: u64,
    /// Plaintext bytes of `blobs_removed`.
    pub bytes_removed: u64,
    /// Trees read.
    pub trees_read: u64,
}

/// Which snapshot a one-sided subtree is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    First,
    Second,
}

/// A directory being walked.
enum Frame {
    /// In both snapshots, with different trees.
    Both {
        dir: PathBuf,
        entries: std::vec::IntoIter<(Option<Node>, Option<Node>)>,
    },
    /// A one-sided directory whose tree is taken when the walk reaches it
    /// (its tree comes after everything wanted before it).
    Later { dir: PathBuf, side: Side },
    /// Only in one: every entry is added or removed.
    One {
        dir: PathBuf,
        side: Side,
        nodes: std::vec::IntoIter<Node>,
    },
}

/// Compares `first` with `second`; `on_change` gets every difference
/// (metadata-only ones when `metadata`), depth first in name order.
///
/// # Errors
/// Tree read failures.
pub async fn diff(
    repo: &Repository,
    index: &MasterIndex,
    first: &Snapshot,
    second: &Snapshot,
    metadata: bool,
    mut on_change: impl FnMut(&Change),
) -> Result<DiffStats> {
    let mut walk = Walk {
        trees: TreeStream::new(repo, index, Order::DepthFirst),
        stats: DiffStats::default(),
        first_blobs: HashSet::new(),
        second_blobs: HashSet::new(),
        metadata,
    };
    let root = PathBuf::from("/");
    let pairs = [
        (Some(first.tree), Some(second.tree)),
        (first.sources_tree(), second.sources_tree()),
    ];
    for pair in pairs {
        let mut stack = Vec::new();
        match pair {
            (Some(a), Some(b)) if a == b => continue,
            (Some(a), Some(b)) => {
                walk.trees.want(a, root.clone());
                walk.trees.want(b, root.clone());
                stack.push(walk.take_both(&root).await?);
            }
            (Some(a), None) => {
                walk.trees.want(a, root.clone());
                stack.push(walk.take_one(&root, Side::First).await?);
            }
            (None, Some(b)) => {
                walk.trees.want(b, root.clone());
                stack.push(walk.take_one(&root, Side::Second).await?);
            }
            (None, None) => continue,
        }
        walk.run(stack, &mut on_change).await?;
    }
    walk.settle(index);
    Ok(walk.stats)
}

struct Walk<'a> {
    trees: TreeStream<'a, PathBuf>,
    stats: DiffStats,
    first_blobs: HashSet<BlobId>,
    second_blobs: HashSet<BlobId>,
    metadata: bool,
}

impl Walk<'_> {
    async fn run(
        &mut self,
        mut stack: Vec<Frame>,
        on_change: &mut impl FnMut(&Change),
    ) -> Result<()> {
        while let Some(frame) = stack.last_mut() {
            match frame {
                Frame::Both { dir, entries } => {
                    let Some((a, b)) = entries.next() else {
                        stack.pop();
                        continue;
                    };
                    let dir = dir.clone();
                    match (a, b) {
                        (Some(a), Some(b)) => {
                            let next = self.compare(&dir, a, b, on_change).await?;
                            stack.extend(next);
                        }
                        (Some(one), None) => {
                            let next = self.one_sided(&dir, one, Side::First, on_change).await?;
                            stack.extend(next);
                        }
                        (None, Some(one)) => {
                            let next = self.one_sided(&dir, one, Side::Second, on_change).await?;
                            stack.extend(next);
                        }
                        (None, None) => {}
                    }
                }
                Frame::Later { dir, side } => {
                    let (dir, side) = (dir.clone(), *side);
                    stack.pop();
                    stack.push(self.take_one(&dir, side).await?);
                }
                Frame::One { dir, side, nodes } => {
                    let Some(node) = nodes.next() else {
                        stack.pop();
                        continue;
                    };
                    let (dir, side) = (dir.clone(), *side);
                    let next = self.one_sided(&dir, node, side, on_change).await?;
                    stack.extend(next);
                }
            }
        }
        Ok(())
    }

    /// An entry only `side` has: reported, counted, and its directory (if
    /// it is one) returned to be walked.
    async fn one_sided(
        &mut self,
        dir: &Path,
        node: Node,
        side: Side,
        on_change: &mut impl FnMut(&Change),
    ) -> Result<Option<Frame>> {
        let path = dir.join(OsStr::from_bytes(&node.name));
        let kind = match side {
            Side::First => ChangeKind::Removed,
            Side::Second => ChangeKind::Added,
        };
        self.count_one(&node, side);
        on_change(&Change {
            path: path.clone(),
            kind,
            is_dir: node.is_dir(),
        });
        if node.is_dir() {
            return Ok(Some(self.take_one(&path, side).await?));
        }
        Ok(None)
    }

    /// A name in both snapshots; returns the frames to walk next (last on
    /// top of the stack is walked first).
    async fn compare(
        &mut self,
        dir: &Path,
        a: Node,
        b: Node,
        on_change: &mut impl FnMut(&Change),
    ) -> Result<Vec<Frame>> {
        let path = dir.join(OsStr::from_bytes(&a.name));
        let change = |kind, is_dir| Change {
            path: path.clone(),
            kind,
            is_dir,
        };
        if a.type_char() != b.type_char() {
            self.stats.type_changed += 1;
            self.count_content(&a, Side::First);
            self.count_content(&b, Side::Second);
            on_change(&change(ChangeKind::TypeChanged, b.is_dir()));
            // What was below the old directory is gone, what is below the
            // new one is new: walked as one-sided trees, old first.
            let mut frames = Vec::new();
            if a.is_dir() {
                frames.push(Frame::Later {
                    dir: path.clone(),
                    side: Side::First,
                });
            }
            if b.is_dir() {
                frames.push(Frame::Later {
                    dir: path.clone(),
                    side: Side::Second,
                });
            }
            // The old tree is walked first: it was wanted first.
            frames.reverse();
            return Ok(frames);
        }
        let meta_differs = metadata_differs(&a, &b);
        match (&a.kind, &b.kind) {
            (NodeKind::Dir { subtree: sa }, NodeKind::Dir { subtree: sb }) => {
                if meta_differs {
                    self.stats.metadata_changed += 1;
                    if self.metadata {
                        on_change(&change(ChangeKind::Metadata, true));
                    }
                }
                if sa == sb {
                    return Ok(Vec::new());
                }
                return Ok(vec![self.take_both(&path).await?]);
            }
            (NodeKind::File { content: ca }, NodeKind::File { content: cb }) => {
                if ca != cb {
                    self.stats.files_modified += 1;
                    self.first_blobs.extend(ca.iter().copied());
                    self.second_blobs.extend(cb.iter().copied());
                    on_change(&change(ChangeKind::Modified, false));
                    return Ok(Vec::new());
                }
            }
            (ka, kb) => {
                if ka != kb {
                    self.stats.others_modified += 1;
                    on_change(&change(ChangeKind::Modified, false));
                    return Ok(Vec::new());
                }
            }
        }
        if meta_differs {
            self.stats.metadata_changed += 1;
            if self.metadata {
                on_change(&change(ChangeKind::Metadata, false));
            }
        }
        Ok(Vec::new())
    }

    /// The next two trees (first snapshot's, second's) of `dir`, their
    /// entries merged by name, the subtrees the walk will enter wanted.
    async fn take_both(&mut self, dir: &Path) -> Result<Frame> {
        let a = self.take(dir).await?;
        let b = self.take(dir).await?;
        let mut entries = Vec::with_capacity(a.len().max(b.len()));
        let (mut a, mut b) = (a.into_iter().peekable(), b.into_iter().peekable());
        loop {
            let order = match (a.peek(), b.peek()) {
                (None, None) => break,
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (Some(x), Some(y)) => x.name.cmp(&y.name),
            };
            entries.push(match order {
                std::cmp::Ordering::Less => (a.next(), None),
                std::cmp::Ordering::Greater => (None, b.next()),
                std::cmp::Ordering::Equal => (a.next(), b.next()),
            });
        }
        // Wanted in the order `run` takes them: per entry, the first
        // snapshot's subtree before the second's.
        for (x, y) in &entries {
            let path = |n: &Node| dir.join(OsStr::from_bytes(&n.name));
            match (x, y) {
                (Some(x), Some(y)) => match (&x.kind, &y.kind) {
                    (NodeKind::Dir { subtree: sa }, NodeKind::Dir { subtree: sb }) => {
                        if sa != sb {
                            self.trees.want(*sa, path(x));
                            self.trees.want(*sb, path(y));
                        }
                    }
                    (ka, kb) => {
                        if let NodeKind::Dir { subtree } = ka {
                            self.trees.want(*subtree, path(x));
                        }
                        if let NodeKind::Dir { subtree } = kb {
                            self.trees.want(*subtree, path(y));
                        }
                    }
                },
                (Some(one), None) | (None, Some(one)) => {
                    if let NodeKind::Dir { subtree } = one.kind {
                        self.trees.want(subtree, path(one));
                    }
                }
                (None, None) => {}
            }
        }
        Ok(Frame::Both {
            dir: dir.to_path_buf(),
            entries: entries.into_iter(),
        })
    }

    /// The next tree, of a directory only `side` has; its subtrees wanted.
    async fn take_one(&mut self, dir: &Path, side: Side) -> Result<Frame> {
        let nodes = self.take(dir).await?;
        for node in &nodes {
            if let NodeKind::Dir { subtree } = node.kind {
                self.trees
                    .want(subtree, dir.join(OsStr::from_bytes(&node.name)));
            }
        }
        Ok(Frame::One {
            dir: dir.to_path_buf(),
            side,
            nodes: nodes.into_iter(),
        })
    }

    async fn take(&mut self, dir: &Path) -> Result<Vec<Node>> {
        let (at, tree) = self
            .trees
            .next()
            .await
            .ok_or_else(|| Error::internal("diff: the tree stream ended early"))?;
        if at != dir {
            return Err(Error::internal(format!(
                "diff: wanted the tree of {}, got {}'s",
                dir.display(),
                at.display()
            )));
        }
        self.stats.trees_read += 1;
        Ok(tree?.nodes)
    }

    fn count_one(&mut self, node: &Node, side: Side) {
        let (files, dirs, others) = match side {
            Side::First => (
                &mut self.stats.files_removed,
                &mut self.stats.dirs_removed,
                &mut self.stats.others_removed,
            ),
            Side::Second => (
                &mut self.stats.files_added,
                &mut self.stats.dirs_added,
                &mut self.stats.others_added,
            ),
        };
        match node.kind {
            NodeKind::File { .. } => *files += 1,
            NodeKind::Dir { .. } => *dirs += 1,
            _ => *others += 1,
        }
        self.count_content(node, side);
    }

    fn count_content(&mut self, node: &Node, side: Side) {
        if let NodeKind::File { content } = &node.kind {
            let set = match side {
                Side::First => &mut self.first_blobs,
                Side::Second => &mut self.second_blobs,
            };
            set.extend(content.iter().copied());
        }
    }

    /// Turns the two blob sets into the byte totals.
    fn settle(&mut self, index: &MasterIndex) {
        let size = |id: &BlobId| index.lookup(id).map_or(0, |l| u64::from(l.raw_length));
        for id in self.second_blobs.difference(&self.first_blobs) {
            self.stats.blobs_added += 1;
            self.stats.bytes_added += size(id);
        }
        for id in self.first_blobs.difference(&self.second_blobs) {
            self.stats.blobs_removed += 1;
            self.stats.bytes_removed += size(id);
        }
    }
}

/// True when what a restore sets differs: mode, owner, modification time.
fn metadata_differs(a: &Node, b: &Node) -> bool {
    (
        a.mode,
        a.uid,
        a.gid,
        &a.user,
        &a.group,
        a.mtime,
        a.mtime_nsec,
    ) != (
        b.mode,
        b.uid,
        b.gid,
        &b.user,
        &b.group,
        b.mtime,
        b.mtime_nsec,
    )
}
