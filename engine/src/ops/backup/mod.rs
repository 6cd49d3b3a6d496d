//! Backup: walk, chunk, deduplicate, seal, pack, upload, then index, then snapshot.
//!
//! The CPU stages run on dedicated threads (see [`pipeline`]); the uploader runs
//! on the async runtime, so I/O to the destinations overlaps the CPU work.
//! The snapshot is written last, after every pack and index it needs is stored
//! (ARCHITECTURE.md, invariant 1): an interrupted run leaves only unreferenced objects.

mod builder;
pub mod chunker;
mod excludes;
mod meta;
mod parent;
mod pipeline;
mod previous;
mod pull;
mod scan;
mod stages;
mod stats;
mod targets;
mod uploader;
mod walker;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Instant;

pub use excludes::{ExcludeOptions, ExcludeReason, Excludes};
pub use pull::SourceReport;
pub use stats::BackupProgress;
pub use walker::SkippedEntry;

use crate::error::{Error, Result};
use crate::format::ids::SnapshotId;
use crate::format::snapshot::{Snapshot, SnapshotSummary};
use crate::ops::backup::chunker::Chunker;
use crate::repo::Repository;
use pipeline::Shared;
use stats::get;

/// Which snapshot to compare against to skip unchanged files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ParentChoice {
    /// The latest snapshot of the same host and paths.
    #[default]
    Latest,
    /// Read every file.
    None,
    /// This snapshot.
    Id(SnapshotId),
}

/// What the walker decided about one entry.
#[derive(Debug, Clone, Copy)]
pub enum EntryEvent<'a> {
    /// It goes into the snapshot.
    Included,
    /// This rule left it (and everything below it) out.
    Excluded(&'a ExcludeReason),
}

/// A callback told of every entry a backup visits, on the walker's thread;
/// it must be quick (it delays the walk).
#[derive(Clone)]
pub struct EntryObserver(pub Arc<ObserveFn>);

/// The function an [`EntryObserver`] calls.
pub type ObserveFn = dyn Fn(&std::path::Path, EntryEvent<'_>) + Send + Sync;

impl std::fmt::Debug for EntryObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EntryObserver")
    }
}

/// What to back up and how.
#[derive(Debug, Clone, Default)]
pub struct BackupOptions {
    /// Files and directories to back up.
    pub paths: Vec<PathBuf>,
    /// Accounts to pull items from (contacts, calendars, mail), each stored
    /// below the snapshot's sources tree.
    pub sources: Vec<Arc<dyn crate::source::ItemSource>>,
    /// Tags for the snapshot.
    pub tags: Vec<String>,
    /// What to leave out (see [`Excludes`]).
    pub excludes: ExcludeOptions,
    /// Told of every entry stored or left out, from the walker's thread
    /// (`backup --dry-run -v` lists them).
    pub observer: Option<EntryObserver>,
    /// The lock the run holds: checked before the snapshot is written, so a
    /// run whose lock was removed or went stale commits nothing.
    pub lock: Option<crate::repo::lock::LockWatch>,
    /// Host name to record (default: this machine's).
    pub host: Option<String>,
    /// Do everything but write to the destinations.
    pub dry_run: bool,
    /// Parent snapshot for change detection.
    pub parent: ParentChoice,
    /// zstd level for this run (default: the repository's).
    pub compression: Option<i32>,
    /// Worker threads per CPU stage (default: the number of cores).
    pub threads: Option<usize>,
    /// The snapshot's time, seconds since the epoch (default: when the run
    /// started). For importing old backups and for tests of retention.
    pub time: Option<i64>,
}

/// The result of a backup run.
#[derive(Debug, Clone)]
pub struct BackupOutcome {
    /// The stored snapshot's id (`None` on a dry run).
    pub snapshot_id: Option<SnapshotId>,
    /// The snapshot as stored.
    pub snapshot: Snapshot,
    /// Entries left out because they could not be read.
    pub skipped: Vec<SkippedEntry>,
    /// Destinations that hold the snapshot.
    pub reached: Vec<String>,
    /// Destinations left out during the run, with the reason (they lag until `sync`).
    pub missed: Vec<(String, String)>,
    /// What each source contributed, in the order given.
    pub sources: Vec<SourceReport>,
}

impl BackupOutcome {
    /// True when some entries could not be read or some destination was
    /// missed (exit status 3).
    pub fn is_incomplete(&self) -> bool {
        !self.skipped.is_empty() || !self.missed.is_empty()
    }
}

async fn find_parent(
    repo: &Repository,
    host: &str,
    paths: &[Vec<u8>],
    choice: &ParentChoice,
) -> Result<Option<(SnapshotId, Snapshot)>> {
    match choice {
        ParentChoice::None => Ok(None),
        ParentChoice::Id(id) => Ok(Some((*id, repo.load_snapshot(id).await?))),
        ParentChoice::Latest => {
            let wanted: HashSet<&[u8]> = paths.iter().map(Vec::as_slice).collect();
            let all = repo.list_snapshots().await?;
            Ok(all.into_iter().rev().find(|(_, s)| {
                s.hostname == host
                    && s.paths.iter().map(|p| p.as_slice()).collect::<HashSet<_>>() == wanted
            }))
        }
    }
}

/// Runs one backup into `repo`.
///
/// `progress` is updated as the run goes; set `cancel` to stop it (the run then
/// returns [`Error::Interrupted`] and writes no snapshot).
///
/// Must run on tokio's multi-thread runtime: the CPU stages run on their own
/// threads and the calling worker blocks on them (`block_in_place`). On a
/// current-thread runtime it returns [`Error::InvalidInput`] instead of
/// panicking.
///
/// # Errors
/// Invalid options, a missing target, storage failures, interruption.
/// Unreadable entries are not errors: they are listed in the outcome.
pub async fn backup(
    repo: &Repository,
    options: &BackupOptions,
    progress: Arc<BackupProgress>,
    cancel: Arc<AtomicBool>,
) -> Result<BackupOutcome> {
    let started = Instant::now();
    require_multi_thread_runtime()?;
    let run = RunSettings::resolve(repo, options)?;
    // The index and the parent snapshot load together: on a far destination
    // their listings and reads overlap instead of queueing.
    let (index, parent) = tokio::join!(
        repo.load_index(),
        find_parent(repo, &run.host, &run.path_bytes, &options.parent)
    );
    let (index, parent) = (Arc::new(index?), parent?);
    let shared = Shared {
        keys: repo.keys().clone(),
        index,
        claimed: Mutex::new(HashSet::new()),
        chunker: Chunker::new(repo.params(), &repo.keys().gear_table()),
        compression: run.compression,
        progress: progress.clone(),
        cancel: cancel.clone(),
    };
    let parent_roots = stages::ParentRoots {
        files: parent.as_ref().map(|(_, s)| s.tree),
        sources: parent.as_ref().and_then(|(_, s)| s.sources_tree()),
    };
    let (root, skipped, pulled) =
        stages::run(repo, options, &run, &shared, parent_roots).into_root_tree(&cancel)?;
    let mut snapshot = new_snapshot(
        root,
        run,
        parent.map(|(id, _)| id),
        options,
        &progress,
        started,
    );
    if let Some(sources) = pulled.root {
        snapshot.set_sources_tree(sources);
    }
    let snapshot_id = commit(repo, options, &snapshot).await?;
    let dests = repo.destinations();
    Ok(BackupOutcome {
        snapshot_id,
        snapshot,
        skipped,
        reached: dests.reached(),
        missed: dests.missed(),
        sources: pulled.reports,
    })
}

/// The pipeline blocks a runtime worker with `block_in_place`, which panics
/// on a current-thread runtime: refuse that with an error instead.
fn require_multi_thread_runtime() -> Result<()> {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => Ok(()),
        _ => Err(Error::InvalidInput(
            "backup must run on tokio's multi-thread runtime".into(),
        )),
    }
}

/// The options of one run, checked and resolved before anything is read.
struct RunSettings {
    /// The targets as absolute paths with their symlinked ancestors resolved.
    abs_paths: Vec<PathBuf>,
    /// The same, as the bytes the snapshot records.
    path_bytes: Vec<Vec<u8>>,
    /// The directories from `/` down to the targets.
    target_tree: targets::TargetNode,
    excludes: Excludes,
    host: String,
    compression: Option<i32>,
    /// Worker threads per CPU stage.
    threads: usize,
}

impl RunSettings {
    fn resolve(repo: &Repository, options: &BackupOptions) -> Result<Self> {
        if options.paths.is_empty() && options.sources.is_empty() {
            return Err(Error::InvalidInput(
                "nothing to back up: give at least one path or source".into(),
            ));
        }
        let abs_paths = absolute_targets(&options.paths)?;
        let mut path_bytes: Vec<Vec<u8>> = abs_paths
            .iter()
            .map(|p| std::os::unix::ffi::OsStrExt::as_bytes(p.as_os_str()).to_vec())
            .collect();
        let mut roots = HashSet::new();
        for source in &options.sources {
            let root = source.root();
            if !crate::format::tree::valid_name(root.account.as_bytes()) {
                return Err(Error::InvalidInput(format!(
                    "source {}: its account name cannot be a directory name",
                    root.display()
                )));
            }
            if !roots.insert(root.clone()) {
                return Err(Error::InvalidInput(format!(
                    "source {} is given twice; give each account once",
                    root.display()
                )));
            }
            path_bytes.push(root.display().into_bytes());
        }
        let compression = match options.compression.unwrap_or(repo.params().compression) {
            0 => None,
            level if (1..=22).contains(&level) => Some(level),
            level => {
                return Err(Error::InvalidInput(format!(
                    "compression level {level} out of range 0..=22"
                )))
            }
        };
        let threads = options
            .threads
            .unwrap_or_else(|| {
                std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(2)
            })
            .clamp(1, 64);
        Ok(RunSettings {
            target_tree: targets::build(&abs_paths),
            abs_paths,
            path_bytes,
            excludes: Excludes::new(&options.excludes)?,
            host: options.host.clone().unwrap_or_else(crate::hostname),
            compression,
            threads,
        })
    }
}

/// Each target made absolute, its ancestors' symlinks resolved, checked to
/// exist; sorted, without duplicates.
fn absolute_targets(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut abs_paths = Vec::new();
    for p in paths {
        let abs = targets::resolve_ancestors(&targets::clean_absolute(p)?)
            .map_err(|e| Error::InvalidInput(format!("cannot back up {}: {e}", p.display())))?;
        std::fs::symlink_metadata(&abs)
            .map_err(|e| Error::InvalidInput(format!("cannot back up {}: {e}", abs.display())))?;
        abs_paths.push(abs);
    }
    abs_paths.sort();
    abs_paths.dedup();
    Ok(abs_paths)
}

/// The snapshot of a finished run, with the run's figures.
fn new_snapshot(
    root: crate::format::ids::BlobId,
    run: RunSettings,
    parent: Option<SnapshotId>,
    options: &BackupOptions,
    p: &BackupProgress,
    started: Instant,
) -> Snapshot {
    let mut snapshot = Snapshot::new(root, run.path_bytes, options.tags.clone(), run.host);
    snapshot.parent = parent;
    if let Some(time) = options.time {
        snapshot.time = time;
        snapshot.time_nsec = 0;
    }
    snapshot.summary = SnapshotSummary {
        files_new: get(&p.files_new),
        files_changed: get(&p.files_changed),
        files_unmodified: get(&p.files_unmodified),
        dirs_new: get(&p.dirs_new),
        dirs_changed: get(&p.dirs_changed),
        dirs_unmodified: get(&p.dirs_unmodified),
        data_blobs: get(&p.data_blobs),
        tree_blobs: get(&p.tree_blobs),
        data_added: get(&p.data_added),
        data_added_packed: get(&p.data_added_packed),
        total_files: get(&p.total_files),
        total_bytes: get(&p.total_bytes),
        errors: get(&p.errors),
        duration_ms: started.elapsed().as_millis() as u64,
    };
    snapshot
}

/// Writes the snapshot (not on a dry run), once the run's lock is verified
/// to still protect it: every pack and index it needs is stored by now.
async fn commit(
    repo: &Repository,
    options: &BackupOptions,
    snapshot: &Snapshot,
) -> Result<Option<SnapshotId>> {
    if options.dry_run {
        return Ok(None);
    }
    if let Some(lock) = &options.lock {
        lock.verify().await?;
    }
    let id = repo.save_snapshot(snapshot).await?;
    repo.relist_committed(id).await;
    Ok(Some(id))
}
