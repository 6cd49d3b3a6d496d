//! Restore: recreate a snapshot's files under a target directory.
//!
//! Plan first (which blob goes where), then read packs — one ranged read per
//! run of nearby blobs, several packs at once — verify every blob before any
//! byte of it is written, write files in parallel, and set metadata last
//! (directories deepest first, so writing into them does not disturb their
//! times). All-zero chunks are left as holes, so sparse files stay sparse.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};
use crate::format::ids::{ObjectKind, PackId};
use crate::format::pack::{open_blob, PackEntry};
use crate::format::snapshot::Snapshot;
use crate::format::tree::{Node, NodeKind};
use crate::repo::Repository;

mod delete;
mod files;
mod finish;
mod plan;
mod preview;
mod select;
mod target;
mod verify;

pub use preview::{PreviewAction, PreviewSummary};
pub use select::Overwrite;

use files::{prepare_target, Files};
use plan::{Failures, Piece, Plan, WalkRules};
use select::Selection;
use target::TargetDirs;

/// What to restore and where.
#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// The directory under which the snapshot's absolute paths are recreated.
    pub target: PathBuf,
    /// Only what these patterns match (and everything below it); empty =
    /// all. An absolute path without wildcards must exist in the snapshot.
    pub include: Vec<String>,
    /// Leave out what these patterns match (and everything below it).
    pub exclude: Vec<String>,
    /// Restore this directory of the snapshot (`SNAPSHOT:/path`) at the
    /// target's root instead of the whole snapshot at absolute paths.
    pub subtree: Option<PathBuf>,
    /// What to do with entries the target already holds.
    pub overwrite: Overwrite,
    /// Delete what restored directories hold that the snapshot does not.
    pub delete: bool,
    /// Re-read every restored file and compare it with the snapshot.
    pub verify: bool,
    /// Pack ranges read at once (default: [`default_data_reads`]).
    pub concurrency: Option<usize>,
}

/// Data reads a restore (or a drill) keeps in flight unless told otherwise:
/// the `reads` setting of the destination read first. Their bytes are
/// bounded apart ([`DATA_BYTES_IN_FLIGHT`]), so many small runs can be in
/// flight on a far link while large ones stay within the memory of four.
pub fn default_data_reads(repo: &Repository) -> usize {
    repo.destinations().walk_reads()
}

/// Bytes of pack runs (and their descriptions) a restore or a drill holds
/// in flight, at most: four of the largest runs; a 100 Mbit/s link 100 ms
/// away holds 1.25 MB.
pub const DATA_BYTES_IN_FLIGHT: u64 = 4 * crate::format::pack::MAX_READ_RUN;

/// Live counters for progress displays.
#[derive(Debug, Default)]
pub struct RestoreProgress {
    /// Bytes of file content the snapshot holds for the selection.
    pub bytes_total: AtomicU64,
    /// Bytes written (or left as holes) so far.
    pub bytes_done: AtomicU64,
    /// Files in the selection.
    pub files_total: AtomicU64,
}

/// What a restore did.
#[derive(Debug, Clone, Default)]
pub struct RestoreOutcome {
    /// Regular files restored.
    pub files: u64,
    /// Directories created.
    pub dirs: u64,
    /// Symlinks, devices, pipes.
    pub specials: u64,
    /// Extra names linked to already-restored files.
    pub hardlinks: u64,
    /// Bytes of content restored.
    pub bytes: u64,
    /// Files re-read and found identical (with `verify`).
    pub verified: u64,
    /// Existing entries left as they were (`--overwrite`).
    pub kept: u64,
    /// Bytes of files already in the target that were right and left in
    /// place (only the differing pieces were read and written).
    pub bytes_in_place: u64,
    /// Entries deleted from the target (`--delete`).
    pub deleted: u64,
    /// Entries that could not be restored, with the reason.
    pub errors: Vec<(PathBuf, String)>,
}

/// One blob to place: where it is stored and where its bytes go.
#[derive(Clone)]
struct Placement {
    entry: PackEntry,
    /// (file number, offset in file)
    targets: Vec<(usize, u64)>,
}

/// Restores `snapshot` under `options.target`.
///
/// # Errors
/// Setup failures (the index cannot be read, the target cannot be created).
/// Per-file failures do not stop the run: they are listed in the outcome, and
/// a file whose content could not be verified is removed, never left with
/// wrong bytes.
pub async fn restore(
    repo: &Repository,
    snapshot: &Snapshot,
    options: &RestoreOptions,
    progress: Arc<RestoreProgress>,
    cancel: Arc<AtomicBool>,
) -> Result<RestoreOutcome> {
    let started = std::time::Instant::now();
    let index = Arc::new(repo.load_index().await?);
    let roots = resolve_roots(repo, &index, snapshot, options).await?;
    let selection = Selection::new(&options.include, &options.exclude)?;
    let rules = WalkRules {
        selection: &selection,
        overwrite: options.overwrite,
        delete: options.delete,
    };
    let target = open_target(&options.target)?;
    // 1. Walk the snapshot: create directories, specials and empty files,
    //    and list where every blob goes.
    let mut outcome = RestoreOutcome::default();
    let mut plan = plan::walk(
        repo,
        &index,
        &roots,
        target,
        &rules,
        &progress,
        &cancel,
        &mut outcome,
    )
    .await?;
    tracing::debug!(
        "restore: {} directories, {} files and {} placements planned in {:?}",
        plan.dirs_open.len(),
        plan.files.len(),
        plan.pieces.len(),
        started.elapsed()
    );
    // 2. Read packs and write content.
    plan.sort_for_reading();
    let Plan {
        dirs_open,
        dirs,
        specials,
        files,
        names,
        links,
        mut pieces,
        placements,
        failed,
        packs,
        snapshot_names,
    } = plan;
    let files = Arc::new(Files::new(files, dirs_open, names, &placements));
    drop(placements);
    let reads = options
        .concurrency
        .unwrap_or_else(|| default_data_reads(repo))
        .max(1);
    let content = Content {
        repo,
        files: &files,
        failures: Arc::new(Mutex::new(failed)),
    };
    content
        .write(&pieces, &packs, reads, &progress, &cancel)
        .await?;
    let failures = content.into_failures();
    tracing::debug!("restore: content written in {:?}", started.elapsed());
    // 3. Hard links, then metadata (files, specials, then directories deepest
    //    first); extras deleted before directory times are set.
    finish::count_files(&files, &failures, &mut outcome);
    finish::link(&files, links, &failures, &mut outcome);
    delete::delete_extras(&files.dirs, &snapshot_names, &mut outcome);
    finish::specials_metadata(&files, &specials, &mut outcome);
    finish::dirs_metadata(&files, &dirs, &mut outcome);
    // 4. Optional verification: re-read each file and compare blob by blob.
    if options.verify {
        pieces.sort_unstable_by_key(|p| (p.file, p.file_offset));
        let (verified, errors) =
            verify::verify_files(repo.keys().clone(), files.clone(), &pieces, &failures).await;
        outcome.verified = verified;
        outcome.errors.extend(errors);
    }
    Ok(outcome)
}

/// Creates the restore target if needed and opens it as the root of every
/// later file operation.
fn open_target(target: &Path) -> Result<TargetDirs> {
    prepare_target(target)?;
    TargetDirs::open(target).map_err(|e| {
        Error::InvalidInput(format!(
            "cannot open the restore target {}: {e}",
            target.display()
        ))
    })
}

/// The content phase: every read run of the plan, within the destination's
/// reads and [`DATA_BYTES_IN_FLIGHT`], each written to its files.
struct Content<'a> {
    repo: &'a Repository,
    files: &'a Arc<Files>,
    failures: Arc<Mutex<Failures>>,
}

impl Content<'_> {
    async fn write(
        &self,
        pieces: &[Piece],
        packs: &[PackId],
        reads: usize,
        progress: &Arc<RestoreProgress>,
        cancel: &Arc<AtomicBool>,
    ) -> Result<()> {
        let repo = self.repo;
        crate::repo::inflight::for_each_bounded(
            read_runs(pieces, packs),
            reads,
            DATA_BYTES_IN_FLIGHT,
            |(_, run)| crate::format::pack::run_cost(run, |p| &p.entry),
            |(pack, run)| {
                let (files, failures, progress, cancel) = (
                    self.files.clone(),
                    self.failures.clone(),
                    progress.clone(),
                    cancel.clone(),
                );
                async move {
                    if cancel.load(Ordering::Relaxed) {
                        return Err(Error::Interrupted);
                    }
                    restore_run(repo, pack, run, files, failures, progress).await;
                    Ok(())
                }
            },
            |done| done,
        )
        .await
    }

    /// Why each failed file failed.
    fn into_failures(self) -> Failures {
        std::mem::take(&mut *self.failures.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// The trees a restore starts from (the snapshot's roots, or the directory
/// `options.subtree` names), after checking that each plain absolute
/// `--include` path exists in one of them.
async fn resolve_roots(
    repo: &Repository,
    index: &crate::repo::index::MasterIndex,
    snapshot: &Snapshot,
    options: &RestoreOptions,
) -> Result<Vec<crate::format::ids::BlobId>> {
    let roots = match &options.subtree {
        None => snapshot.roots(),
        Some(sub) => {
            let path = PathBuf::from("/").join(sub);
            match crate::ops::ls::find_node(repo, index, snapshot.tree, &path).await? {
                Some(Node {
                    kind: NodeKind::Dir { subtree },
                    ..
                }) => vec![subtree],
                Some(_) => {
                    return Err(Error::InvalidInput(format!(
                        "{}: not a directory; restore its directory with --include {}",
                        path.display(),
                        path.display()
                    )))
                }
                None => snapshot.roots(),
            }
        }
    };
    // A plain absolute path must exist: a typo would restore nothing.
    for inc in &options.include {
        if inc.starts_with('/') && !inc.contains(['*', '?', '[', '{', '\\']) {
            let mut found = None;
            for root in &roots {
                match crate::ops::ls::find_node(repo, index, *root, Path::new(inc)).await {
                    Ok(_) => {
                        found = Some(Ok(()));
                        break;
                    }
                    Err(e) => found = found.or(Some(Err(e))),
                }
            }
            found.unwrap_or(Ok(()))?;
        }
    }
    Ok(roots)
}

/// What [`restore`] would do to the target, told entry by entry to
/// `report`, without reading packs or writing anything.
///
/// # Errors
/// As [`restore`]'s setup.
pub async fn preview(
    repo: &Repository,
    snapshot: &Snapshot,
    options: &RestoreOptions,
    report: &mut dyn FnMut(&Path, PreviewAction),
) -> Result<PreviewSummary> {
    let index = repo.load_index().await?;
    let roots = resolve_roots(repo, &index, snapshot, options).await?;
    let selection = Selection::new(&options.include, &options.exclude)?;
    preview::preview(repo, &index, &roots, options, &selection, report).await
}

/// The ranged reads a restore makes, in pack order, built lazily so that
/// only the runs in flight are held: each pack's pieces (sorted by offset)
/// are grouped into blobs and the blobs into runs by [`crate::format::pack::coalesce`].
fn read_runs<'a>(
    pieces: &'a [Piece],
    packs: &'a [PackId],
) -> impl Iterator<Item = (PackId, Vec<Placement>)> + 'a {
    pieces
        .chunk_by(|a, b| a.pack == b.pack)
        .flat_map(move |of_pack| {
            let blobs: Vec<Placement> = of_pack
                .chunk_by(|a, b| a.offset == b.offset)
                .map(|same| Placement {
                    entry: same[0].entry(),
                    targets: same
                        .iter()
                        .map(|p| (p.file as usize, p.file_offset))
                        .collect(),
                })
                .collect();
            let pack = packs[of_pack[0].pack as usize];
            crate::format::pack::coalesce(blobs, |b| &b.entry)
                .into_iter()
                .map(move |run| (pack, run))
        })
}

/// Reads one run of blobs and writes each blob that verifies. Blobs that fail
/// on one destination are read again from the next; only the files of blobs
/// that no destination has intact are marked failed.
async fn restore_run(
    repo: &Repository,
    pack: PackId,
    run: Vec<Placement>,
    files: Arc<Files>,
    failures: Arc<Mutex<Failures>>,
    progress: Arc<RestoreProgress>,
) {
    let several = run.len() > 1;
    let mut pending = restore_run_once(
        repo,
        pack,
        run,
        files.clone(),
        failures.clone(),
        progress.clone(),
    )
    .await;
    if several && !pending.is_empty() {
        // A range read can fail as a whole (a truncated copy) while most of
        // its blobs are intact somewhere: read what is left blob by blob.
        let mut still = Vec::new();
        for (p, _) in pending {
            still.extend(
                restore_run_once(
                    repo,
                    pack,
                    vec![p],
                    files.clone(),
                    failures.clone(),
                    progress.clone(),
                )
                .await,
            );
        }
        pending = still;
    }
    let mut failures = failures.lock().unwrap_or_else(|p| p.into_inner());
    for (p, reason) in &pending {
        for &(n, _) in &p.targets {
            failures.entry(n).or_insert_with(|| reason.clone());
        }
    }
}

/// One pass of [`restore_run`] over the destinations; returns the blobs no
/// destination returned intact, with the last reason.
async fn restore_run_once(
    repo: &Repository,
    pack: PackId,
    run: Vec<Placement>,
    files: Arc<Files>,
    failures: Arc<Mutex<Failures>>,
    progress: Arc<RestoreProgress>,
) -> Vec<(Placement, String)> {
    let key = ObjectKind::Pack.key(&pack.to_hex());
    // Blobs still to restore, each with the last reason it failed.
    let mut pending: Vec<(Placement, String)> =
        run.into_iter().map(|p| (p, String::new())).collect();
    for backend in repo.destinations().read_order() {
        if pending.is_empty() {
            return pending;
        }
        let start = u64::from(pending[0].0.entry.offset);
        let last = &pending[pending.len() - 1].0.entry;
        let end = u64::from(last.offset) + u64::from(last.length);
        let bytes = match backend.get(&key, Some(start..end)).await {
            Ok(b) => b,
            Err(e) => {
                if e.kind == lifeboat_backends::ErrorKind::Transient {
                    repo.destinations()
                        .drop_destination(backend.name(), &e.to_string());
                }
                for (_, reason) in pending.iter_mut() {
                    *reason = e.to_string();
                }
                continue;
            }
        };
        let (keys, files2, progress2, name) = (
            repo.keys().clone(),
            files.clone(),
            progress.clone(),
            backend.name().to_string(),
        );
        let batch = std::mem::take(&mut pending);
        let batch_files: Vec<usize> = batch
            .iter()
            .flat_map(|(p, _)| p.targets.iter().map(|&(n, _)| n))
            .collect();
        let outcome = tokio::task::spawn_blocking(move || {
            let mut still = Vec::new();
            let mut write_errors = Vec::new();
            for (p, _) in batch {
                let at = (u64::from(p.entry.offset) - start) as usize;
                // A provider may return fewer bytes than asked: that blob
                // then fails over like a damaged one.
                let Some(sealed) = bytes.get(at..at + p.entry.length as usize) else {
                    let why = format!("{name}: pack {pack}: short read");
                    tracing::warn!("{why}");
                    still.push((p, why));
                    continue;
                };
                // Verified before any of its bytes reach a file.
                let data = match open_blob(&keys, &pack, &p.entry, sealed) {
                    Ok(data) => data,
                    Err(e) => {
                        tracing::warn!("{name}: {e}");
                        still.push((p, format!("{name}: {e}")));
                        continue;
                    }
                };
                let zero = data.iter().all(|&b| b == 0);
                for &(n, offset) in &p.targets {
                    if let Err(e) = files2.write(n, offset, &data, zero) {
                        let path = files2.path(n);
                        write_errors.push((n, format!("{}: {e}", path.display())));
                    }
                    progress2
                        .bytes_done
                        .fetch_add(data.len() as u64, Ordering::Relaxed);
                }
            }
            (still, write_errors)
        })
        .await;
        let (still, write_errors) = match outcome {
            Ok(result) => result,
            Err(e) => {
                let mut failures = failures.lock().unwrap_or_else(|p| p.into_inner());
                for n in batch_files {
                    failures
                        .entry(n)
                        .or_insert_with(|| format!("restore worker failed: {e}"));
                }
                return Vec::new();
            }
        };
        let mut failures_guard = failures.lock().unwrap_or_else(|p| p.into_inner());
        for (n, reason) in write_errors {
            failures_guard.entry(n).or_insert(reason);
        }
        drop(failures_guard);
        pending = still;
    }
    pending
}

#[cfg(test)]
mod tests;
