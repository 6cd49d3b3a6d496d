//! Restore drills: proof that one destination, on its own, brings a snapshot
//! back.
//!
//! A drill runs on a [`Repository`] opened on a [`DestinationSet`] of exactly
//! one destination, so every read — config, keys, index, snapshot, trees and
//! content — comes from that destination and nothing can fail over to another.
//!
//! Two modes:
//! - verify only (the default): every content blob of every selected file is
//!   read (grouped by pack, one ranged read per run of nearby blobs, a few
//!   runs at once), decrypted and checked against its id, and the blobs'
//!   lengths must add up to the size the snapshot records;
//! - restore: [`crate::ops::restore::restore`] with `verify` into a temporary
//!   directory, removed afterwards.
//!
//! A failure on one file never stops the drill: it is counted, and the first
//! one (in walk order) is kept for the report.
//!
//! [`DestinationSet`]: crate::DestinationSet

use std::collections::HashMap;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::format::ids::{BlobId, ObjectKind, PackId, SnapshotId};
use crate::format::pack::{open_blob, BlobType, PackEntry};
use crate::format::snapshot::Snapshot;
use crate::format::tree::NodeKind;
use crate::ops::restore::{self, RestoreOptions, RestoreProgress};
use crate::repo::index::MasterIndex;
use crate::repo::tree_stream::{Order, TreeStream};
use crate::repo::Repository;

/// How to drill.
#[derive(Debug, Clone, Default)]
pub struct DrillOptions {
    /// Verify only this percentage of the snapshot's files, chosen at random
    /// (`None`: every file). Verify-only mode only.
    pub sample: Option<f64>,
    /// Restore mode: restore the whole snapshot, with verification, into a
    /// new temporary directory below this one, then remove it.
    pub restore_in: Option<PathBuf>,
    /// Pack runs read at once (default: [`restore::default_data_reads`]).
    pub concurrency: Option<usize>,
}

/// Live counters for progress displays.
#[derive(Debug, Default)]
pub struct DrillProgress {
    /// Bytes of file content to verify.
    pub bytes_total: AtomicU64,
    /// Bytes verified (or restored) so far.
    pub bytes_done: AtomicU64,
    /// Files to verify.
    pub files_total: AtomicU64,
}

/// What a drill found.
#[derive(Debug, Clone)]
pub struct DrillReport {
    /// The destination drilled.
    pub destination: String,
    /// The snapshot drilled.
    pub snapshot: SnapshotId,
    /// True when every selected file came back intact.
    pub passed: bool,
    /// True for a restore drill, false for verify only.
    pub restored: bool,
    /// Files selected (all of the snapshot's regular files, or the sample).
    pub files_selected: u64,
    /// Files whose whole content was read back and verified.
    pub files_verified: u64,
    /// Content bytes of the verified files.
    pub bytes_verified: u64,
    /// Files (and directories whose listing could not be read) that failed.
    pub failures: u64,
    /// The first failure in walk order: the path and what went wrong.
    pub first_failure: Option<String>,
    /// Wall time of the drill.
    pub duration: Duration,
}

impl DrillReport {
    /// Verified bytes per second of wall time.
    pub fn throughput(&self) -> f64 {
        let secs = self.duration.as_secs_f64();
        if secs > 0.0 {
            self.bytes_verified as f64 / secs
        } else {
            0.0
        }
    }
}

/// One regular file of the snapshot.
struct FileEntry {
    path: PathBuf,
    size: u64,
    content: Vec<BlobId>,
}

/// One blob to read and the files (one entry per occurrence) it belongs to.
struct Wanted {
    entry: PackEntry,
    files: Vec<usize>,
}

/// Drills `snapshot_spec` (`latest`, an id or a prefix) on the repository's
/// single destination.
///
/// # Errors
/// When the drill cannot start: the repository is open on more than one
/// destination, the index or the snapshot cannot be read from this
/// destination, the snapshot is not there, the options are invalid, or the
/// temporary directory cannot be created; [`Error::Interrupted`] when
/// `cancel` is set. Damage to file content or to directory listings is
/// reported in the [`DrillReport`], not as an error.
pub async fn drill(
    repo: &Repository,
    snapshot_spec: &str,
    options: &DrillOptions,
    progress: Arc<DrillProgress>,
    cancel: Arc<AtomicBool>,
) -> Result<DrillReport> {
    let started = Instant::now();
    // The drill proves the destination alone: no metadata from the local cache.
    let repo = &repo.clone().without_cache();
    let destination =
        match repo.destinations().backends() {
            [one] => one.name().to_string(),
            _ => return Err(Error::InvalidInput(
                "a drill reads one destination alone: open the repository on that destination only"
                    .into(),
            )),
        };
    let sample = match (options.sample, &options.restore_in) {
        (Some(_), Some(_)) => return Err(Error::InvalidInput(
            "a restore drill restores the whole snapshot: --sample applies to verify-only drills"
                .into(),
        )),
        (Some(p), None) if !(p > 0.0 && p <= 100.0) => {
            return Err(Error::InvalidInput(format!(
                "the sample must be more than 0% and at most 100%, not {p}%"
            )))
        }
        (sample, _) => sample,
    };
    let (snapshot_id, snapshot) = repo.find_snapshot(snapshot_spec).await?;
    let mut report = DrillReport {
        destination,
        snapshot: snapshot_id,
        passed: false,
        restored: options.restore_in.is_some(),
        files_selected: 0,
        files_verified: 0,
        bytes_verified: 0,
        failures: 0,
        first_failure: None,
        duration: Duration::ZERO,
    };
    match &options.restore_in {
        Some(parent) => {
            restore_drill(
                repo,
                &snapshot,
                parent,
                options,
                &progress,
                cancel,
                &mut report,
            )
            .await?
        }
        None => {
            verify_drill(
                repo,
                &snapshot,
                sample,
                options,
                &progress,
                cancel,
                &mut report,
            )
            .await?
        }
    }
    report.passed = report.failures == 0 && report.files_verified == report.files_selected;
    report.duration = started.elapsed();
    Ok(report)
}

/// Verify-only mode: read and check every blob of the selected files.
async fn verify_drill(
    repo: &Repository,
    snapshot: &Snapshot,
    sample: Option<f64>,
    options: &DrillOptions,
    progress: &DrillProgress,
    cancel: Arc<AtomicBool>,
    report: &mut DrillReport,
) -> Result<()> {
    let index = repo.load_index().await?;
    let (files, tree_failures) = walk_files(repo, &index, &snapshot.roots(), &cancel).await?;
    let files = match sample {
        Some(percent) => choose_sample(files, percent),
        None => files,
    };
    report.files_selected = files.len() as u64;
    progress
        .files_total
        .store(files.len() as u64, Ordering::Relaxed);
    progress
        .bytes_total
        .store(files.iter().map(|f| f.size).sum::<u64>(), Ordering::Relaxed);

    // Plan: every distinct blob once, grouped by pack; sizes checked here.
    let mut failed: Vec<Option<String>> = vec![None; files.len()];
    let mut by_pack: HashMap<PackId, HashMap<BlobId, Wanted>> = HashMap::new();
    for (n, file) in files.iter().enumerate() {
        let mut total = 0u64;
        for id in &file.content {
            let Some(loc) = index.lookup(id) else {
                failed[n] = Some(format!("blob {id} is not in this destination's index"));
                break;
            };
            total += u64::from(loc.raw_length);
            let entry = PackEntry {
                blob_type: BlobType::Data,
                id: *id,
                offset: loc.offset,
                length: loc.length,
                raw_length: loc.raw_length,
            };
            by_pack
                .entry(loc.pack)
                .or_default()
                .entry(*id)
                .or_insert_with(|| Wanted {
                    entry,
                    files: Vec::new(),
                })
                .files
                .push(n);
        }
        if failed[n].is_none() && total != file.size {
            failed[n] = Some(format!(
                "its chunks hold {total} bytes but the snapshot records {}",
                file.size
            ));
        }
    }

    // Read: one ranged read per run of nearby blobs, a few runs at once.
    let runs = by_pack.into_iter().flat_map(|(pack, blobs)| {
        let mut blobs: Vec<Wanted> = blobs.into_values().collect();
        blobs.sort_by_key(|w| w.entry.offset);
        crate::format::pack::coalesce(blobs, |b| &b.entry)
            .into_iter()
            .map(move |run| (pack, run))
    });
    let concurrency = options
        .concurrency
        .unwrap_or_else(|| restore::default_data_reads(repo))
        .max(1);
    // Many small runs in flight on a far link, their bytes bounded as a
    // restore's are.
    crate::repo::inflight::for_each_bounded(
        runs,
        concurrency,
        restore::DATA_BYTES_IN_FLIGHT,
        |(_, run)| crate::format::pack::run_cost(run, |w| &w.entry),
        |(pack, run)| {
            let cancel = cancel.clone();
            async move {
                if cancel.load(Ordering::Relaxed) {
                    return Err(Error::Interrupted);
                }
                Ok(verify_run(repo, pack, run, progress).await)
            }
        },
        |done| {
            for (n, reason) in done? {
                failed[n].get_or_insert(reason);
            }
            Ok(())
        },
    )
    .await?;

    // Tally, in walk order.
    report.failures = tree_failures.len() as u64;
    report.first_failure = tree_failures.into_iter().next();
    for (file, failure) in files.iter().zip(&failed) {
        match failure {
            None => {
                report.files_verified += 1;
                report.bytes_verified += file.size;
            }
            Some(reason) => {
                report.failures += 1;
                report
                    .first_failure
                    .get_or_insert_with(|| format!("{}: {reason}", file.path.display()));
            }
        }
    }
    Ok(())
}

/// Every regular file below `root`, depth first in name order (the same
/// list every run), and the directories whose listing could not be read
/// (`path: reason`).
async fn walk_files(
    repo: &Repository,
    index: &MasterIndex,
    roots: &[BlobId],
    cancel: &AtomicBool,
) -> Result<(Vec<FileEntry>, Vec<String>)> {
    let mut files = Vec::new();
    let mut failures = Vec::new();
    let mut trees = TreeStream::new(repo, index, Order::DepthFirst);
    for root in roots {
        trees.want(*root, PathBuf::from("/"));
    }
    while let Some((dir, tree)) = trees.next().await {
        if cancel.load(Ordering::Relaxed) {
            return Err(Error::Interrupted);
        }
        let tree = match tree {
            Ok(tree) => tree,
            Err(e) => {
                failures.push(format!(
                    "{}: directory listing unreadable: {e}",
                    dir.display()
                ));
                continue;
            }
        };
        for node in tree.nodes {
            let path = dir.join(std::ffi::OsStr::from_bytes(&node.name));
            match node.kind {
                NodeKind::Dir { subtree } => trees.want(subtree, path),
                NodeKind::File { content } => files.push(FileEntry {
                    path,
                    size: node.size,
                    content,
                }),
                _ => {}
            }
        }
    }
    Ok((files, failures))
}

/// `percent` of `files` (at least one when there are any), chosen at random,
/// kept in walk order.
fn choose_sample(files: Vec<FileEntry>, percent: f64) -> Vec<FileEntry> {
    let n = files.len();
    let wanted = ((n as f64) * percent / 100.0).ceil() as usize;
    let wanted = wanted.clamp(usize::from(n > 0), n);
    let mut chosen = vec![false; n];
    for i in rand::seq::index::sample(&mut rand::thread_rng(), n, wanted) {
        chosen[i] = true;
    }
    files
        .into_iter()
        .zip(chosen)
        .filter_map(|(f, keep)| keep.then_some(f))
        .collect()
}

/// Reads one run of blobs from the destination and opens each; returns the
/// files that failed, with the reason.
async fn verify_run(
    repo: &Repository,
    pack: PackId,
    run: Vec<Wanted>,
    progress: &DrillProgress,
) -> Vec<(usize, String)> {
    let fail_all = |run: &[Wanted], reason: &str| {
        run.iter()
            .flat_map(|w| w.files.iter().map(|&n| (n, reason.to_string())))
            .collect::<Vec<_>>()
    };
    let (Some(first), Some(last)) = (run.first(), run.last()) else {
        return Vec::new();
    };
    let start = u64::from(first.entry.offset);
    let end = u64::from(last.entry.offset) + u64::from(last.entry.length);
    let backend = repo.destinations().primary().clone();
    let key = ObjectKind::Pack.key(&pack.to_hex());
    let bytes = match backend.get(&key, Some(start..end)).await {
        Ok(bytes) if bytes.len() as u64 == end - start => bytes,
        Ok(bytes) => {
            let reason = format!(
                "pack {pack}: {} bytes where {} were expected (truncated)",
                bytes.len(),
                end - start
            );
            return fail_all(&run, &reason);
        }
        Err(e) => return fail_all(&run, &e.to_string()),
    };
    let everyone: Vec<usize> = run.iter().flat_map(|w| w.files.iter().copied()).collect();
    let keys = repo.keys().clone();
    let opened = tokio::task::spawn_blocking(move || {
        let mut failed = Vec::new();
        let mut good_bytes = 0u64;
        for w in &run {
            let at = (u64::from(w.entry.offset) - start) as usize;
            let sealed = &bytes[at..at + w.entry.length as usize];
            match open_blob(&keys, &pack, &w.entry, sealed) {
                Ok(_) => good_bytes += u64::from(w.entry.raw_length) * w.files.len() as u64,
                Err(e) => failed.extend(w.files.iter().map(|&n| (n, e.to_string()))),
            }
        }
        (failed, good_bytes)
    })
    .await;
    match opened {
        Ok((failed, good_bytes)) => {
            progress.bytes_done.fetch_add(good_bytes, Ordering::Relaxed);
            failed
        }
        Err(e) => {
            let reason = format!("pack {pack}: verification worker failed: {e}");
            everyone.into_iter().map(|n| (n, reason.clone())).collect()
        }
    }
}

/// Restore mode: a verified restore into a temporary directory below `parent`.
async fn restore_drill(
    repo: &Repository,
    snapshot: &Snapshot,
    parent: &Path,
    options: &DrillOptions,
    progress: &DrillProgress,
    cancel: Arc<AtomicBool>,
    report: &mut DrillReport,
) -> Result<()> {
    let scratch = Scratch::create(parent)?;
    let restore_options = RestoreOptions {
        target: scratch.path.clone(),
        verify: true,
        concurrency: options.concurrency,
        ..RestoreOptions::default()
    };
    let restore_progress = Arc::new(RestoreProgress::default());
    let run = restore::restore(
        repo,
        snapshot,
        &restore_options,
        restore_progress.clone(),
        cancel,
    );
    tokio::pin!(run);
    let outcome = loop {
        tokio::select! {
            outcome = &mut run => break outcome?,
            () = tokio::time::sleep(Duration::from_millis(200)) => {
                copy_progress(&restore_progress, progress);
            }
        }
    };
    copy_progress(&restore_progress, progress);
    // Hard links share the content verified through their first name.
    report.files_selected =
        restore_progress.files_total.load(Ordering::Relaxed) + outcome.hardlinks;
    report.files_verified = outcome.verified + outcome.hardlinks;
    report.bytes_verified = outcome.bytes;
    report.failures = outcome.errors.len() as u64;
    report.first_failure = outcome.errors.first().map(|(path, reason)| {
        let shown = path
            .strip_prefix(&scratch.path)
            .map(|p| Path::new("/").join(p))
            .unwrap_or_else(|_| path.clone());
        format!("{}: {reason}", shown.display())
    });
    Ok(())
}

fn copy_progress(from: &RestoreProgress, to: &DrillProgress) {
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
    to.bytes_total
        .store(get(&from.bytes_total), Ordering::Relaxed);
    to.bytes_done
        .store(get(&from.bytes_done), Ordering::Relaxed);
    to.files_total
        .store(get(&from.files_total), Ordering::Relaxed);
}

/// A temporary directory removed (whatever the restored permissions) on drop.
struct Scratch {
    path: PathBuf,
}

impl Scratch {
    fn create(parent: &Path) -> Result<Self> {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        let mut name = [0u8; 8];
        rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut name);
        let path = parent.join(format!("lifeboat-drill-{}", hex::encode(name)));
        std::fs::create_dir(&path).map_err(|e| Error::io(&path, e))?;
        Ok(Scratch { path })
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::fs::remove_dir_all(&self.path).is_ok() {
            return;
        }
        // Restored directories may be read-only: open them up, then retry.
        make_writable(&self.path);
        if let Err(e) = std::fs::remove_dir_all(&self.path) {
            tracing::warn!(
                "could not remove the drill's temporary directory {}: {e}",
                self.path.display()
            );
        }
    }
}

/// Gives the owner rwx on every directory below `dir` (symlinks not followed).
fn make_writable(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            make_writable(&entry.path());
        }
    }
}

#[cfg(test)]
mod tests;
