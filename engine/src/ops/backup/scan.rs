//! Counting what a backup has to settle, beside the backup itself, so that
//! its progress has a total and an ETA (restic's scanner does the same).
//! The count follows the same exclude rules as the walker; it is an
//! estimate all the same (files change while it runs), and it stops as soon
//! as the walk ends.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use super::excludes::Excludes;
use super::stats::{add, BackupProgress};

/// Counts the regular files under `paths` and their bytes into
/// `progress.scan_files` and `progress.scan_bytes`, then sets
/// `progress.scan_done`; returns early once `stop` is set.
pub(super) fn scan(
    paths: &[PathBuf],
    excludes: &Excludes,
    progress: &BackupProgress,
    stop: &AtomicBool,
) {
    for root in paths {
        let Ok(meta) = std::fs::symlink_metadata(root) else {
            continue;
        };
        let device = meta.dev();
        let mut stack: Vec<PathBuf> = Vec::new();
        count(root, &meta, excludes, device, progress, &mut stack, true);
        while let Some(dir) = stack.pop() {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if excludes.matching_pattern(&path).is_some() {
                    continue;
                }
                if let Ok(meta) = entry.metadata() {
                    count(&path, &meta, excludes, device, progress, &mut stack, false);
                }
            }
        }
    }
    progress.scan_done.store(true, Ordering::Relaxed);
}

/// Counts one entry; a directory the rules keep goes on `stack`.
fn count(
    path: &Path,
    meta: &std::fs::Metadata,
    excludes: &Excludes,
    device: u64,
    progress: &BackupProgress,
    stack: &mut Vec<PathBuf>,
    named: bool,
) {
    if !named && excludes.one_file_system() && meta.dev() != device {
        return;
    }
    if meta.is_dir() {
        if named || !excludes.has_markers() || excludes.marked_directory(path).is_none() {
            stack.push(path.to_path_buf());
        }
    } else if meta.is_file() {
        add(&progress.scan_files, 1);
        add(&progress.scan_bytes, meta.len());
    }
}
