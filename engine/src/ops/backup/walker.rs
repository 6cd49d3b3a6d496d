//! The walker: visits the targets depth-first in name order, decides which
//! files must be read (skipping those unchanged since the parent snapshot),
//! and hands each finished directory listing to the tree builder.

use std::fs::Metadata;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};

use super::excludes::{ExcludeReason, Excludes};
use super::meta::{node_from_metadata, special_kind, unchanged};
use super::pipeline::{FileBatch, FileJob, FileReply, Shared, Stop, BATCH_BYTES, BATCH_FILES};
use super::stats::add;
use super::targets::TargetNode;
use super::{EntryEvent, EntryObserver};
use crate::error::Error;
use crate::format::ids::BlobId;
use crate::format::tree::{Node, NodeKind, Tree};
use crate::repo::Repository;

/// One entry of a directory listing on its way to the tree builder.
pub(crate) enum Pending {
    /// Complete.
    Ready(Node),
    /// A file being read by a worker: its answer is the next one of the
    /// directory's batches, in listing order.
    File(Node),
    /// A directory whose tree the builder finished just before (post-order).
    Subdir(Node),
}

/// A directory whose entries are all known or in flight.
pub(crate) struct DirJob {
    pub nodes: Vec<Pending>,
    /// Answers to the directory's file batches, in the order of its files.
    pub batches: Vec<Receiver<Vec<FileReply>>>,
    /// The same directory's tree in the parent snapshot.
    pub parent_subtree: Option<BlobId>,
}

/// An entry that could not be read and was left out.
#[derive(Debug, Clone)]
pub struct SkippedEntry {
    /// Its path.
    pub path: PathBuf,
    /// Why.
    pub reason: String,
}

/// The files of one directory being gathered into batches for the workers.
#[derive(Default)]
struct DirFiles {
    open: Vec<FileJob>,
    open_bytes: u64,
    sent: Vec<Receiver<Vec<FileReply>>>,
}

pub(crate) struct Walker<'a> {
    pub shared: &'a Shared,
    pub repo: &'a Repository,
    pub runtime: tokio::runtime::Handle,
    pub excludes: &'a Excludes,
    /// Told of every entry stored or left out (`--dry-run -v`).
    pub observer: Option<&'a EntryObserver>,
    pub files: Sender<FileBatch>,
    pub dirs: Sender<DirJob>,
    pub skipped: Arc<std::sync::Mutex<Vec<SkippedEntry>>>,
    /// The parent snapshot's trees, streamed ahead of the walk.
    pub parent_trees: Option<super::parent::ParentTrees>,
}

/// Where an entry stands: the targets below it, its node in the parent
/// snapshot, and the file system of the backup path it is under.
struct Place<'a> {
    targets: Option<&'a TargetNode>,
    parent: Option<&'a Node>,
    device: Option<u64>,
}

enum WalkFail {
    /// This directory cannot be listed: leave it out.
    Skip(std::io::Error),
    Stop(Stop),
}

impl From<Stop> for WalkFail {
    fn from(s: Stop) -> Self {
        WalkFail::Stop(s)
    }
}

impl Walker<'_> {
    fn observe(&self, path: &Path, event: EntryEvent<'_>) {
        if let Some(observer) = self.observer {
            (observer.0)(path, event);
        }
    }

    /// The rule that leaves out `path`, found before (`meta` None: patterns
    /// only) or after its metadata is read; `device` is the file system of
    /// the backup path it is under.
    fn excluded(
        &self,
        path: &Path,
        meta: Option<&Metadata>,
        device: Option<u64>,
    ) -> Option<ExcludeReason> {
        let Some(meta) = meta else {
            return self.excludes.matching_pattern(path).cloned();
        };
        if self.excludes.one_file_system()
            && device.is_some_and(|d| d != std::os::unix::fs::MetadataExt::dev(meta))
        {
            return Some(ExcludeReason::OtherFileSystem);
        }
        if meta.is_dir() && self.excludes.has_markers() {
            return self.excludes.marked_directory(path).cloned();
        }
        None
    }

    fn skip(&self, path: &Path, reason: String) {
        add(&self.shared.progress.errors, 1);
        tracing::warn!("skipping {}: {reason}", path.display());
        self.skipped
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(SkippedEntry {
                path: path.to_path_buf(),
                reason,
            });
    }

    /// Hands the directory's gathered files to a worker.
    fn send_batch(&self, files: &mut DirFiles) -> Result<(), WalkFail> {
        if files.open.is_empty() {
            return Ok(());
        }
        let (reply, answers) = crossbeam_channel::bounded(1);
        files.open_bytes = 0;
        self.files
            .send(FileBatch {
                files: std::mem::take(&mut files.open),
                reply,
            })
            .map_err(|_| WalkFail::Stop(Stop::Closed))?;
        files.sent.push(answers);
        Ok(())
    }

    fn load_parent_tree(&mut self, id: Option<BlobId>) -> Option<Tree> {
        let id = id?;
        // Streamed ahead when the walk follows the parent's order; read
        // directly when it does not.
        let streamed = self.parent_trees.as_mut().and_then(|p| p.take(&id));
        let read = match streamed {
            Some(tree) => tree,
            None => self
                .runtime
                .block_on(self.repo.load_tree(&self.shared.index, &id)),
        };
        match read {
            Ok(tree) => Some(tree),
            Err(e) => {
                tracing::warn!("parent tree {id} unreadable, reading everything below it: {e}");
                None
            }
        }
    }

    /// Walks from `/` through the target tree; the last directory sent is the root.
    pub fn walk_root(
        &mut self,
        targets: &TargetNode,
        parent_root: Option<BlobId>,
    ) -> Result<(), Stop> {
        let parent = self.load_parent_tree(parent_root);
        match self.walk_dir(
            Path::new("/"),
            Some(targets),
            parent.as_ref(),
            parent_root,
            None,
        ) {
            Ok(()) => Ok(()),
            Err(WalkFail::Stop(s)) => Err(s),
            Err(WalkFail::Skip(e)) => Err(Stop::Failed(Error::io("/", e))),
        }
    }

    fn walk_dir(
        &mut self,
        dir: &Path,
        targets: Option<&TargetNode>,
        parent: Option<&Tree>,
        parent_id: Option<BlobId>,
        device: Option<u64>,
    ) -> Result<(), WalkFail> {
        if self.shared.cancelled() {
            return Err(Stop::Failed(Error::Interrupted).into());
        }
        // Above the targets only the components leading to them are listed.
        let virtual_children = targets.filter(|t| !t.target);
        // Listed entries keep their `DirEntry`: its metadata is an `fstatat`
        // relative to the open directory, not a walk of the whole path.
        let mut entries: Vec<(Vec<u8>, Option<std::fs::DirEntry>)> = match virtual_children {
            Some(t) => t.children.keys().map(|name| (name.clone(), None)).collect(),
            None => {
                let mut entries = Vec::new();
                for entry in std::fs::read_dir(dir).map_err(WalkFail::Skip)? {
                    match entry {
                        Ok(e) => entries.push((e.file_name().as_bytes().to_vec(), Some(e))),
                        Err(e) => self.skip(dir, e.to_string()),
                    }
                }
                entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
                entries
            }
        };
        entries.dedup_by(|a, b| a.0 == b.0);
        let mut nodes = Vec::with_capacity(entries.len());
        let mut files = DirFiles::default();
        for (name, entry) in entries {
            let path = dir.join(std::ffi::OsStr::from_bytes(&name));
            // Entries the user named (and the directories above them) are
            // never excluded; everything below them may be.
            let ruled = virtual_children.is_none();
            if let Some(rule) = self.excluded(&path, None, device).filter(|_| ruled) {
                self.observe(&path, EntryEvent::Excluded(&rule));
                continue;
            }
            let meta =
                match entry.map_or_else(|| std::fs::symlink_metadata(&path), |e| e.metadata()) {
                    Ok(m) => m,
                    Err(e) => {
                        self.skip(&path, e.to_string());
                        continue;
                    }
                };
            if let Some(rule) = self.excluded(&path, Some(&meta), device).filter(|_| ruled) {
                self.observe(&path, EntryEvent::Excluded(&rule));
                continue;
            }
            let child_targets = virtual_children.and_then(|t| t.children.get(&name));
            // A named backup path sets the file system its subtree stays on.
            let child_device = match child_targets {
                Some(t) if t.target => Some(std::os::unix::fs::MetadataExt::dev(&meta)),
                Some(_) => None,
                None => device,
            };
            let parent_node = parent.and_then(|t| t.find(&name));
            if ruled || child_targets.is_some_and(|t| t.target) {
                self.observe(&path, EntryEvent::Included);
            }
            let place = Place {
                targets: child_targets,
                parent: parent_node,
                device: child_device,
            };
            let visited = self.visit(&path, name, &meta, place, &mut files)?;
            if let Some(pending) = visited {
                nodes.push(pending);
            }
        }
        self.send_batch(&mut files)?;
        self.dirs
            .send(DirJob {
                nodes,
                batches: files.sent,
                parent_subtree: parent_id,
            })
            .map_err(|_| WalkFail::Stop(Stop::Closed))
    }

    fn visit(
        &mut self,
        path: &Path,
        name: Vec<u8>,
        meta: &Metadata,
        place: Place<'_>,
        files: &mut DirFiles,
    ) -> Result<Option<Pending>, WalkFail> {
        let Place {
            targets,
            parent: parent_node,
            device,
        } = place;
        let progress = &self.shared.progress;
        if meta.is_dir() {
            let parent_sub = match parent_node.map(|n| &n.kind) {
                Some(NodeKind::Dir { subtree }) => Some(*subtree),
                _ => None,
            };
            let parent_tree = self.load_parent_tree(parent_sub);
            return match self.walk_dir(path, targets, parent_tree.as_ref(), parent_sub, device) {
                Ok(()) => {
                    let node = node_from_metadata(
                        name,
                        meta,
                        NodeKind::Dir {
                            subtree: BlobId::default(),
                        },
                    );
                    Ok(Some(Pending::Subdir(node)))
                }
                Err(WalkFail::Skip(e)) => {
                    self.skip(path, e.to_string());
                    Ok(None)
                }
                Err(stop) => Err(stop),
            };
        }
        if meta.is_file() {
            if let Some(old) = parent_node.filter(|n| unchanged(n, meta)) {
                if let NodeKind::File { content } = &old.kind {
                    if content.iter().all(|id| self.shared.index.contains(id)) {
                        add(&progress.files_unmodified, 1);
                        add(&progress.files_done, 1);
                        add(&progress.bytes_done, meta.len());
                        let node = node_from_metadata(
                            name,
                            meta,
                            NodeKind::File {
                                content: content.clone(),
                            },
                        );
                        return Ok(Some(Pending::Ready(node)));
                    }
                }
            }
            add(
                if parent_node.is_some() {
                    &progress.files_changed
                } else {
                    &progress.files_new
                },
                1,
            );
            files.open.push(FileJob {
                path: path.to_path_buf(),
                size: meta.len(),
                inode: std::os::unix::fs::MetadataExt::ino(meta),
            });
            files.open_bytes += meta.len();
            if files.open.len() >= BATCH_FILES || files.open_bytes >= BATCH_BYTES {
                self.send_batch(files)?;
            }
            let node = node_from_metadata(
                name,
                meta,
                NodeKind::File {
                    content: Vec::new(),
                },
            );
            return Ok(Some(Pending::File(node)));
        }
        match special_kind(path, meta) {
            Ok(kind) => Ok(Some(Pending::Ready(node_from_metadata(name, meta, kind)))),
            Err(e) => {
                self.skip(path, e.to_string());
                Ok(None)
            }
        }
    }
}
