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

use super::files::{create_sized, create_special, FilePlan, Meta};
use super::target::TargetDirs;
use super::{RestoreOutcome, RestoreProgress};
use crate::error::{Error, Result};
use crate::ids::{BlobId, PackId};
use crate::index::MasterIndex;
use crate::pack::{BlobType, PackEntry};
use crate::repo::Repository;
use crate::tree::NodeKind;

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

/// True when `path` is selected: inside an included path, or an ancestor of
/// one (ancestors are recreated with their metadata, as restic does).
fn included(path: &Path, includes: &[PathBuf]) -> bool {
    includes.is_empty()
        || includes
            .iter()
            .any(|inc| path.starts_with(inc) || inc.starts_with(path))
}

fn number(n: usize, what: &str) -> Result<u32> {
    u32::try_from(n)
        .map_err(|_| Error::InvalidInput(format!("too many {what} to restore in one run")))
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
    root: BlobId,
    target: TargetDirs,
    includes: &[PathBuf],
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
    };
    let mut pack_numbers: HashMap<PackId, u32> = HashMap::new();
    let mut first_link: HashMap<(u64, u64), usize> = HashMap::new();
    // (snapshot path, tree, directory number)
    let mut stack: Vec<(PathBuf, BlobId, u32)> = vec![(PathBuf::from("/"), root, 0)];
    while let Some((dir, tree_id, dir_number)) = stack.pop() {
        if cancel.load(Ordering::Relaxed) {
            return Err(Error::Interrupted);
        }
        let tree = repo.load_tree(index, &tree_id).await?;
        for node in tree.nodes {
            let path = dir.join(OsStr::from_bytes(&node.name));
            if !included(&path, includes) {
                continue;
            }
            let dest = |dirs: &TargetDirs| dirs.path_of(dir_number, &node.name);
            match &node.kind {
                NodeKind::Dir { subtree } => {
                    number(plan.dirs_open.len(), "directories")?;
                    let n = match plan.dirs_open.make_dir(dir_number, &node.name) {
                        Ok(n) => n,
                        Err(e) => {
                            outcome.errors.push((dest(&plan.dirs_open), e.to_string()));
                            continue;
                        }
                    };
                    plan.dirs.push((n, Meta::of(&node)));
                    stack.push((path, *subtree, n));
                }
                NodeKind::File { content } => {
                    let inode = (node.links > 1).then_some((node.device, node.inode));
                    if let Some(&first) = inode.and_then(|key| first_link.get(&key)) {
                        plan.links
                            .push((dir_number, node.name.clone().into(), first));
                        continue;
                    }
                    // A file is created when its first blob arrives, by the
                    // writer (in parallel); only files without content now.
                    if content.is_empty() {
                        let made = plan
                            .dirs_open
                            .dir(dir_number)
                            .and_then(|dir| create_sized(&dir, &node.name, node.size));
                        if let Err(e) = made {
                            outcome.errors.push((dest(&plan.dirs_open), e.to_string()));
                            continue;
                        }
                    }
                    progress.bytes_total.fetch_add(node.size, Ordering::Relaxed);
                    progress.files_total.fetch_add(1, Ordering::Relaxed);
                    let file = number(plan.files.len(), "files")?;
                    let (placed, failed) =
                        place(index, &mut plan, &mut pack_numbers, file, content);
                    plan.placements.push(placed);
                    if let Some(reason) = failed {
                        plan.failed.insert(plan.files.len(), reason);
                    }
                    if let Some(key) = inode {
                        first_link.insert(key, plan.files.len());
                    }
                    plan.files.push(FilePlan {
                        dir: dir_number,
                        name_len: node.name.len() as u32,
                        name_start: plan.names.len() as u64,
                        meta: Meta::of(&node),
                    });
                    plan.names.extend_from_slice(&node.name);
                }
                _ => match plan
                    .dirs_open
                    .dir(dir_number)
                    .and_then(|dir| create_special(&dir, &node.name, &node))
                {
                    Ok(true) => {
                        let meta = Meta::of(&node);
                        plan.specials
                            .push((dir_number, node.name.clone().into(), meta));
                    }
                    Ok(false) => {}
                    Err(e) => outcome.errors.push((dest(&plan.dirs_open), e.to_string())),
                },
            }
        }
    }
    Ok(plan)
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
) -> (u32, Option<String>) {
    let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    let mut file_offset = 0u64;
    for (placed, id) in content.iter().enumerate() {
        let Some(loc) = index.lookup(id) else {
            return (
                count(placed),
                Some(format!("blob {id} is not in any index")),
            );
        };
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
    (count(content.len()), None)
}
