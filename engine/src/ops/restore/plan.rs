//! The restore plan: one walk of the snapshot that creates directories
//! (confined to the target: see [`super::target`]),
//! specials and empty files, and lists every blob placement in a compact
//! form. Files keep their directory's number and their name, not a full path
//! or their tree node, and no content list survives the walk, so the plan
//! costs about 70 bytes per file (and its name) and 64 per placed blob.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use super::files::{create_sized, create_special, FilePlan, Meta, IN_PLACE};
use super::select::{Overwrite, Selection};
use super::target::{Existing, TargetDirs};
use super::{RestoreOutcome, RestoreProgress};
use crate::error::{Error, Result};
use crate::format::ids::{BlobId, PackId};
use crate::format::pack::{BlobType, PackEntry};
use crate::format::tree::{Node, NodeKind};
use crate::repo::index::MasterIndex;
use crate::repo::tree_stream::{Order, TreeStream};
use crate::repo::Repository;

/// One blob placed at one offset of one file.
#[derive(Debug, Clone, Copy)]
pub(super) struct Piece {
    /// Number of the pack in [`Plan::packs`].
    pub pack: u32,
    /// Offset of the sealed blob in its pack.
    pub offset: u32,
    /// Sealed length.
    pub length: u32,
    /// Plaintext length.
    pub raw_length: u32,
    /// Number of the file in [`Plan::files`].
    pub file: u32,
    /// Where in the file the plaintext goes.
    pub file_offset: u64,
    /// The blob.
    pub id: BlobId,
}

impl Piece {
    /// The pack entry this piece reads.
    pub fn entry(&self) -> PackEntry {
        PackEntry {
            blob_type: BlobType::Data,
            id: self.id,
            offset: self.offset,
            length: self.length,
            raw_length: self.raw_length,
        }
    }
}

/// Everything a restore does after its walk.
pub(super) struct Plan {
    /// The target's directories; number 0 is the target itself.
    pub dirs_open: TargetDirs,
    /// Restored directories (number in `dir_paths`) and their metadata,
    /// parents before children.
    pub dirs: Vec<(u32, Meta)>,
    /// Symlinks, pipes and devices created (directory number and name),
    /// with their metadata.
    pub specials: Vec<(u32, Box<[u8]>, Meta)>,
    /// Regular files.
    pub files: Vec<FilePlan>,
    /// The files' names, back to back.
    pub names: Vec<u8>,
    /// Extra names of hard-linked files: (directory number, name, first
    /// file's number).
    pub links: Vec<(u32, Box<[u8]>, usize)>,
    /// Every placement; sorted by pack and offset by [`Plan::sort_for_reading`].
    pub pieces: Vec<Piece>,
    /// Placements per file: how many writes complete it.
    pub placements: Vec<u32>,
    /// Files that cannot be restored (a blob no index lists), by number.
    pub failed: Failures,
    /// Pack ids by number.
    pub packs: Vec<PackId>,
    /// With `--delete`: the snapshot's names in each directory restored
    /// whole, by directory number (anything else there is deleted).
    pub snapshot_names: HashMap<u32, Vec<Box<[u8]>>>,
}

/// Why files failed, by file number; only failed files have an entry.
pub(super) type Failures = HashMap<usize, String>;

impl Plan {
    /// Orders pieces for reading: by pack, then offset (equal blobs become
    /// neighbours, so each is read once however many places it fills).
    pub fn sort_for_reading(&mut self) {
        self.pieces
            .sort_unstable_by_key(|p| (p.pack, p.offset, p.file, p.file_offset));
    }
}

fn number(n: usize, what: &str) -> Result<u32> {
    u32::try_from(n)
        .map_err(|_| Error::InvalidInput(format!("too many {what} to restore in one run")))
}

/// Files at least this big that are already in the target are compared
/// piece by piece and rewritten in place. Smaller ones are simply replaced:
/// reading and hashing them one by one in the walk costs more than writing
/// them again (a restore of /usr/share over itself took 1.7 s comparing
/// every file, against 0.75 s rewriting them).
const IN_PLACE_MIN_SIZE: u64 = 1 << 20;

/// What a walk restores, and how it treats what the target already holds.
pub(super) struct WalkRules<'a> {
    pub selection: &'a Selection,
    pub overwrite: Overwrite,
    /// Keep each restored directory's snapshot names, for `--delete`.
    pub delete: bool,
}

/// A directory of the snapshot seen by the walk but not created yet (with
/// `--include`, a directory is created only once something below it is
/// taken): its parent's snapshot path, its name and metadata.
type PendingDir = (PathBuf, Box<[u8]>, Meta);

/// True when an existing entry stays as it is under `policy` instead of
/// being replaced by the snapshot's `node`.
pub(super) fn keeps(policy: Overwrite, existing: &Existing, node: &Node) -> bool {
    let file = existing.kind == rustix::fs::FileType::RegularFile;
    let snapshot_file = matches!(node.kind, NodeKind::File { .. });
    match policy {
        Overwrite::Always => false,
        Overwrite::Never => true,
        Overwrite::IfChanged => {
            file && snapshot_file
                && existing.size == node.size
                && existing.mtime == node.mtime
                && existing.mtime_nsec == node.mtime_nsec
        }
        Overwrite::IfNewer => {
            file && snapshot_file
                && (existing.mtime, existing.mtime_nsec) >= (node.mtime, node.mtime_nsec)
        }
    }
}

/// Walks the snapshot tree `root`: creates directories, specials and empty
/// files under `target`, and plans the rest. Failures to create an entry are
/// pushed to `outcome` and the walk goes on.
///
/// # Errors
/// Tree reads; cancellation.
#[allow(clippy::too_many_arguments)]
pub(super) async fn walk(
    repo: &Repository,
    index: &MasterIndex,
    roots: &[BlobId],
    target: TargetDirs,
    rules: &WalkRules<'_>,
    progress: &RestoreProgress,
    cancel: &AtomicBool,
    outcome: &mut RestoreOutcome,
) -> Result<Plan> {
    let mut plan = Plan {
        dirs_open: target,
        dirs: Vec::new(),
        specials: Vec::new(),
        files: Vec::new(),
        names: Vec::new(),
        links: Vec::new(),
        pieces: Vec::new(),
        placements: Vec::new(),
        failed: Failures::default(),
        packs: Vec::new(),
        snapshot_names: HashMap::new(),
    };
    let keep_others = rules.overwrite == Overwrite::Never;
    let mut pack_numbers: HashMap<PackId, u32> = HashMap::new();
    let mut first_link: HashMap<(u64, u64), usize> = HashMap::new();
    // Directories walked but not created yet, and those created from that
    // state, by snapshot path (only with --include).
    let mut pending: HashMap<PathBuf, PendingDir> = HashMap::new();
    let mut made: HashMap<PathBuf, u32> = HashMap::new();
    // Trees stream in as they arrive (parents always before children), with
    // (snapshot path, directory number once created, everything below taken).
    let mut trees = TreeStream::new(repo, index, Order::AsFetched);
    for root in roots {
        trees.want(
            *root,
            (PathBuf::from("/"), Some(0), !rules.selection.filters()),
        );
    }
    while let Some(((dir, dir_number, whole), tree)) = trees.next().await {
        if cancel.load(Ordering::Relaxed) {
            return Err(Error::Interrupted);
        }
        let tree = tree?;
        if rules.delete && whole {
            if let Some(n) = dir_number {
                let names = tree
                    .nodes
                    .iter()
                    .map(|n| Box::<[u8]>::from(n.name.as_slice()));
                // The target's root holds every root's entries.
                plan.snapshot_names.entry(n).or_default().extend(names);
            }
        }
        for node in tree.nodes {
            let path = dir.join(OsStr::from_bytes(&node.name));
            if rules.selection.excluded(&path) {
                continue;
            }
            let taken = whole || rules.selection.included(&path);
            let is_dir = matches!(node.kind, NodeKind::Dir { .. });
            if !taken {
                // Not taken itself: walk a directory that may hold what is.
                if let (NodeKind::Dir { subtree }, true) =
                    (&node.kind, rules.selection.may_contain(&path))
                {
                    let meta = Meta::of(&node);
                    pending.insert(path.clone(), (dir.clone(), node.name.clone().into(), meta));
                    trees.want(*subtree, (path, None, false));
                }
                continue;
            }
            // Taken: the directories above it are created first.
            let parent = match dir_number {
                Some(n) => Ok(n),
                None => make_pending(&mut plan, &mut pending, &mut made, &dir, keep_others),
            };
            let parent = match parent {
                Ok(n) => n,
                Err(e) => {
                    let shown = plan
                        .dirs_open
                        .path(0)
                        .join(dir.strip_prefix("/").unwrap_or(&dir));
                    outcome.errors.push((shown, e.to_string()));
                    continue;
                }
            };
            let dest = |dirs: &TargetDirs| dirs.path_of(parent, &node.name);
            let mut there = None;
            let worth_comparing = matches!(&node.kind, NodeKind::File { content } if !content.is_empty())
                && node.size >= IN_PLACE_MIN_SIZE;
            if !is_dir && (rules.overwrite != Overwrite::Always || worth_comparing) {
                let found = plan
                    .dirs_open
                    .dir(parent)
                    .and_then(|fd| super::target::existing(&fd, &node.name));
                match found {
                    Ok(Some(existing)) if keeps(rules.overwrite, &existing, &node) => {
                        outcome.kept += 1;
                        continue;
                    }
                    Ok(found) => there = found,
                    Err(e) => {
                        outcome.errors.push((dest(&plan.dirs_open), e.to_string()));
                        continue;
                    }
                }
            }
            match &node.kind {
                NodeKind::Dir { subtree } => {
                    number(plan.dirs_open.len(), "directories")?;
                    let n = match plan.dirs_open.make_dir(parent, &node.name, keep_others) {
                        Ok(n) => n,
                        Err(e) => {
                            outcome.errors.push((dest(&plan.dirs_open), e.to_string()));
                            continue;
                        }
                    };
                    plan.dirs.push((n, Meta::of(&node)));
                    trees.want(*subtree, (path, Some(n), true));
                }
                NodeKind::File { content } => {
                    let inode = (node.links > 1).then_some((node.device, node.inode));
                    if let Some(&first) = inode.and_then(|key| first_link.get(&key)) {
                        plan.links.push((parent, node.name.clone().into(), first));
                        continue;
                    }
                    // The first name of a hard-linked file carries the
                    // content of every other: when a directory stands where
                    // it goes, it fails now, so that the next name becomes
                    // the first and the others are still restored.
                    if inode.is_some() {
                        let found = plan
                            .dirs_open
                            .dir(parent)
                            .and_then(|fd| super::target::existing(&fd, &node.name));
                        if let Ok(Some(e)) = &found {
                            if e.kind == rustix::fs::FileType::Directory {
                                outcome.errors.push((
                                    dest(&plan.dirs_open),
                                    "a directory is in the way; file not restored".into(),
                                ));
                                continue;
                            }
                        }
                    }
                    // A file is created when its first blob arrives, by the
                    // writer (in parallel); only files without content now.
                    if content.is_empty() {
                        let made = plan
                            .dirs_open
                            .dir(parent)
                            .and_then(|dir| create_sized(&dir, &node.name, node.size));
                        if let Err(e) = made {
                            outcome.errors.push((dest(&plan.dirs_open), e.to_string()));
                            continue;
                        }
                    }
                    progress.bytes_total.fetch_add(node.size, Ordering::Relaxed);
                    progress.files_total.fetch_add(1, Ordering::Relaxed);
                    let file = number(plan.files.len(), "files")?;
                    // A plain file of the same size already there: keep the
                    // pieces it has right, write only the others.
                    let same_size = node.size >= IN_PLACE_MIN_SIZE
                        && there.as_ref().is_some_and(|e| {
                            e.kind == rustix::fs::FileType::RegularFile
                                && e.size == node.size
                                && e.links == 1
                        });
                    let in_place = if same_size {
                        match plan
                            .dirs_open
                            .dir(parent)
                            .and_then(|fd| super::target::reopen_file(&fd, &node.name, false))
                        {
                            Ok(existing) => {
                                // Reading and hashing is blocking work.
                                let layout: Option<Vec<(BlobId, u32)>> = content
                                    .iter()
                                    .map(|id| index.lookup(id).map(|l| (*id, l.raw_length)))
                                    .collect();
                                let keys = repo.keys().clone();
                                match layout {
                                    Some(layout) => tokio::task::spawn_blocking(move || {
                                        pieces_in_place(&keys, &existing, &layout)
                                    })
                                    .await
                                    .unwrap_or_default(),
                                    None => Vec::new(),
                                }
                            }
                            Err(_) => Vec::new(),
                        }
                    } else {
                        Vec::new()
                    };
                    let (placed, failed) = place(
                        index,
                        &mut plan,
                        &mut pack_numbers,
                        file,
                        content,
                        &in_place,
                    );
                    let mut meta = Meta::of(&node);
                    if !in_place.is_empty() {
                        meta.mode |= IN_PLACE;
                        let kept_bytes = node.size - placed_bytes(&plan, file);
                        outcome.bytes_in_place += kept_bytes;
                        progress.bytes_done.fetch_add(kept_bytes, Ordering::Relaxed);
                    }
                    plan.placements.push(placed);
                    if let Some(reason) = failed {
                        plan.failed.insert(plan.files.len(), reason);
                    }
                    if let Some(key) = inode {
                        first_link.insert(key, plan.files.len());
                    }
                    plan.files.push(FilePlan {
                        dir: parent,
                        name_len: node.name.len() as u32,
                        name_start: plan.names.len() as u64,
                        meta,
                    });
                    plan.names.extend_from_slice(&node.name);
                }
                _ => match plan
                    .dirs_open
                    .dir(parent)
                    .and_then(|dir| create_special(&dir, &node.name, &node))
                {
                    Ok(true) => {
                        let meta = Meta::of(&node);
                        plan.specials.push((parent, node.name.clone().into(), meta));
                    }
                    Ok(false) => {}
                    Err(e) => outcome.errors.push((dest(&plan.dirs_open), e.to_string())),
                },
            }
        }
    }
    Ok(plan)
}

/// Creates the pending directory at snapshot path `dir`, and those above it
/// not created yet, each with its metadata planned; returns its number.
fn make_pending(
    plan: &mut Plan,
    pending: &mut HashMap<PathBuf, PendingDir>,
    made: &mut HashMap<PathBuf, u32>,
    dir: &Path,
    keep_others: bool,
) -> std::io::Result<u32> {
    // The chain from the nearest created ancestor down to `dir`.
    let mut chain = Vec::new();
    let mut at = dir.to_path_buf();
    let mut above = loop {
        if let Some(&n) = made.get(&at) {
            break n;
        }
        if at == Path::new("/") {
            break 0;
        }
        let Some((parent, _, _)) = pending.get(&at) else {
            break 0;
        };
        let parent = parent.clone();
        chain.push(at);
        at = parent;
    };
    for path in chain.into_iter().rev() {
        let Some((_, name, meta)) = pending.remove(&path) else {
            continue;
        };
        let n = plan.dirs_open.make_dir(above, &name, keep_others)?;
        plan.dirs.push((n, meta));
        made.insert(path, n);
        above = n;
    }
    Ok(above)
}

/// Adds the pieces of file `file`; returns how many were placed (saturated
/// at `u32::MAX`: such a file gets its metadata at the end instead) and,
/// when a blob is missing from the index, why the file cannot be restored.
fn place(
    index: &MasterIndex,
    plan: &mut Plan,
    pack_numbers: &mut HashMap<PackId, u32>,
    file: u32,
    content: &[BlobId],
    in_place: &[bool],
) -> (u32, Option<String>) {
    let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    let mut file_offset = 0u64;
    let mut placed = 0;
    for (i, id) in content.iter().enumerate() {
        let Some(loc) = index.lookup(id) else {
            return (
                count(placed),
                Some(format!("blob {id} is not in any index")),
            );
        };
        // Already right in the target's copy: nothing to read or write.
        if in_place.get(i).copied().unwrap_or(false) {
            file_offset += u64::from(loc.raw_length);
            continue;
        }
        placed += 1;
        let next = plan.packs.len() as u32;
        let pack = *pack_numbers.entry(loc.pack).or_insert_with(|| {
            plan.packs.push(loc.pack);
            next
        });
        plan.pieces.push(Piece {
            pack,
            offset: loc.offset,
            length: loc.length,
            raw_length: loc.raw_length,
            file,
            file_offset,
            id: *id,
        });
        file_offset += u64::from(loc.raw_length);
    }
    (count(placed), None)
}

/// Which of `content`'s pieces the file already in the target holds, read
/// through `file` and compared by blob id; empty when none does (or the
/// layout cannot be known). A restore over an earlier one then reads and
/// writes only what changed.
fn pieces_in_place(
    keys: &crate::format::crypto::MasterKeys,
    file: &std::fs::File,
    layout: &[(BlobId, u32)],
) -> Vec<bool> {
    use std::os::unix::fs::FileExt;
    let mut out = Vec::with_capacity(layout.len());
    let mut offset = 0u64;
    let mut buf = Vec::new();
    for (id, raw_length) in layout {
        buf.resize(*raw_length as usize, 0);
        let same = file.read_exact_at(&mut buf, offset).is_ok() && keys.blob_id(&buf) == *id;
        out.push(same);
        offset += u64::from(*raw_length);
    }
    if out.iter().any(|&same| same) {
        out
    } else {
        Vec::new()
    }
}

/// Bytes of file `file` that its planned pieces (the last ones pushed) write.
fn placed_bytes(plan: &Plan, file: u32) -> u64 {
    plan.pieces
        .iter()
        .rev()
        .take_while(|p| p.file == file)
        .map(|p| u64::from(p.raw_length))
        .sum()
}
