//! Backup: walk, chunk, deduplicate, seal, pack, upload, then index, then snapshot.
//!
//! The CPU stages run on dedicated threads (see [`pipeline`]); the uploader runs
//! on the async runtime, so I/O to the destinations overlaps the CPU work.
//! The snapshot is written last, after every pack and index it needs is stored
//! (DESIGN.md invariant 1): an interrupted run leaves only unreferenced objects.

mod builder;
mod excludes;
mod meta;
mod parent;
mod pipeline;
mod scan;
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
pub use stats::BackupProgress;
pub use walker::SkippedEntry;

use crate::chunker::Chunker;
use crate::error::{Error, Result};
use crate::ids::SnapshotId;
use crate::repo::Repository;
use crate::snapshot::{Snapshot, SnapshotSummary};
use pipeline::{Shared, Stop};
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
    /// Tags for the snapshot.
    pub tags: Vec<String>,
    /// What to leave out (see [`Excludes`]).
    pub excludes: ExcludeOptions,
    /// Told of every entry stored or left out, from the walker's thread
    /// (`backup --dry-run -v` lists them).
    pub observer: Option<EntryObserver>,
    /// The lock the run holds: checked before the snapshot is written, so a
    /// run whose lock was removed or went stale commits nothing.
    pub lock: Option<crate::lock::LockWatch>,
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
    if options.paths.is_empty() {
        return Err(Error::InvalidInput(
            "nothing to back up: give at least one path".into(),
        ));
    }
    let mut abs_paths = Vec::new();
    for p in &options.paths {
        let abs = targets::resolve_ancestors(&targets::clean_absolute(p)?)
            .map_err(|e| Error::InvalidInput(format!("cannot back up {}: {e}", p.display())))?;
        std::fs::symlink_metadata(&abs)
            .map_err(|e| Error::InvalidInput(format!("cannot back up {}: {e}", abs.display())))?;
        abs_paths.push(abs);
    }
    abs_paths.sort();
    abs_paths.dedup();
    let target_tree = targets::build(&abs_paths);
    let path_bytes: Vec<Vec<u8>> = {
        use std::os::unix::ffi::OsStrExt;
        abs_paths
            .iter()
            .map(|p| p.as_os_str().as_bytes().to_vec())
            .collect()
    };
    let excludes = Excludes::new(&options.excludes)?;
    let observer = options.observer.as_ref();
    let host = options.host.clone().unwrap_or_else(crate::hostname);
    let compression = match options.compression.unwrap_or(repo.params().compression) {
        0 => None,
        level if (1..=22).contains(&level) => Some(level),
        level => {
            return Err(Error::InvalidInput(format!(
                "compression level {level} out of range 0..=22"
            )))
        }
    };

    // The index and the parent snapshot load together: on a far destination
    // their listings and reads overlap instead of queueing.
    let (index, parent) = tokio::join!(
        repo.load_index(),
        find_parent(repo, &host, &path_bytes, &options.parent)
    );
    let (index, parent) = (Arc::new(index?), parent?);
    let threads = options
        .threads
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
        })
        .clamp(1, 64);
    let shared = Shared {
        keys: repo.keys().clone(),
        index,
        claimed: Mutex::new(HashSet::new()),
        chunker: Chunker::new(repo.params(), repo.keys().chunker_seed()),
        compression,
        progress: progress.clone(),
        cancel: cancel.clone(),
    };
    let skipped = Arc::new(Mutex::new(Vec::new()));

    let (file_tx, file_rx) = crossbeam_channel::bounded(threads * 8);
    let (dir_tx, dir_rx) = crossbeam_channel::bounded(1024);
    let (seal_tx, seal_rx) = crossbeam_channel::bounded(threads * 2);
    let (sealed_tx, sealed_rx) = crossbeam_channel::bounded(threads * 2);
    let (upload_tx, upload_rx) = tokio::sync::mpsc::channel(1);
    let runtime = tokio::runtime::Handle::current();
    let pack_size = repo.params().pack_size as usize;
    let parent_root = parent.as_ref().map(|(_, s)| s.tree);

    // block_in_place lets this runtime thread block on the stage threads and
    // drive the uploader with `block_on` (needs the multi-threaded runtime).
    let scan_stop = &std::sync::atomic::AtomicBool::new(false);
    let (stage_results, upload_result) = tokio::task::block_in_place(|| {
        std::thread::scope(|scope| {
            let shared = &shared;
            let mut handles = Vec::new();
            {
                let (files, dirs, skipped) = (file_tx, dir_tx, skipped.clone());
                let (repo, excludes, runtime, target_tree) =
                    (repo, &excludes, runtime.clone(), &target_tree);
                handles.push(scope.spawn(move || {
                    let parent_trees = parent_root.map(|root| {
                        parent::ParentTrees::start(repo, shared.index.clone(), root, &runtime)
                    });
                    let mut walker = walker::Walker {
                        shared,
                        repo,
                        runtime,
                        excludes,
                        observer,
                        files,
                        dirs,
                        skipped,
                        parent_trees,
                    };
                    let walked = walker.walk_root(target_tree, parent_root).map(|()| None);
                    scan_stop.store(true, std::sync::atomic::Ordering::Relaxed);
                    walked
                }));
            }
            // The progress total, counted beside the walk (nothing to count
            // for a dry run's sake alone: it shows progress too).
            {
                let (paths, excludes, stop) = (&abs_paths, &excludes, scan_stop);
                scope.spawn(move || scan::scan(paths, excludes, &shared.progress, stop));
            }
            for _ in 0..threads {
                let (jobs, seal) = (file_rx.clone(), seal_tx.clone());
                handles.push(
                    scope.spawn(move || pipeline::file_worker(shared, jobs, seal).map(|()| None)),
                );
            }
            drop(file_rx);
            {
                let (seal, skipped) = (seal_tx, skipped.clone());
                handles.push(
                    scope.spawn(move || {
                        builder::build_trees(shared, dir_rx, seal, &skipped).map(Some)
                    }),
                );
            }
            for _ in 0..threads {
                let (jobs, out) = (seal_rx.clone(), sealed_tx.clone());
                handles
                    .push(scope.spawn(move || pipeline::sealer(shared, jobs, out).map(|()| None)));
            }
            drop((seal_rx, sealed_tx));
            let keys = shared.keys.clone();
            handles.push(scope.spawn(move || {
                pipeline::packer(&keys, pack_size, sealed_rx, upload_tx).map(|()| None)
            }));
            // This thread is outside the runtime's workers, so it may block on the uploader.
            let upload_result = runtime.block_on(uploader::upload_packs(
                repo,
                upload_rx,
                options.dry_run,
                &progress,
            ));
            let results: Vec<_> = handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or(Err(Stop::Failed(Error::InvalidInput(
                        "a backup worker panicked".into(),
                    ))))
                })
                .collect();
            (results, upload_result)
        })
    });

    // Report the root cause: an interruption, then the first real failure.
    let mut root = None;
    let mut failure = None;
    for result in std::iter::once(upload_result.map(|()| None)).chain(stage_results) {
        match result {
            Ok(Some(id)) => root = Some(id),
            Ok(None) | Err(Stop::Closed) => {}
            Err(Stop::Failed(Error::Interrupted)) => return Err(Error::Interrupted),
            Err(Stop::Failed(e)) => failure = failure.or(Some(e)),
        }
    }
    if let Some(e) = failure {
        return Err(e);
    }
    if cancel.load(std::sync::atomic::Ordering::Relaxed) {
        return Err(Error::Interrupted);
    }
    let root = root
        .ok_or_else(|| Error::InvalidInput("backup pipeline stopped without a root tree".into()))?;

    let mut snapshot = Snapshot::new(root, path_bytes, options.tags.clone(), host);
    snapshot.parent = parent.map(|(id, _)| id);
    if let Some(time) = options.time {
        snapshot.time = time;
        snapshot.time_nsec = 0;
    }
    let p = &progress;
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
    let snapshot_id = if options.dry_run {
        None
    } else {
        if let Some(lock) = &options.lock {
            lock.verify().await?;
        }
        Some(repo.save_snapshot(&snapshot).await?)
    };
    let skipped = std::mem::take(&mut *skipped.lock().unwrap_or_else(|p| p.into_inner()));
    let dests = repo.destinations();
    Ok(BackupOutcome {
        snapshot_id,
        snapshot,
        skipped,
        reached: dests.reached(),
        missed: dests.missed(),
    })
}
