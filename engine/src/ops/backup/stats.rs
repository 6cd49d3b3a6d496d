//! Live counters of a backup run, read by progress displays.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters updated by the pipeline as it goes; all relaxed atomics.
#[derive(Debug, Default)]
pub struct BackupProgress {
    /// Files whose content is settled (read or skipped as unchanged).
    pub files_done: AtomicU64,
    /// Bytes of file content settled.
    pub bytes_done: AtomicU64,
    /// Bytes of packs uploaded.
    pub bytes_uploaded: AtomicU64,
    /// Entries that could not be read.
    pub errors: AtomicU64,
    /// Regular files counted so far by the scan that runs beside the
    /// backup (the progress total).
    pub scan_files: AtomicU64,
    /// Their bytes.
    pub scan_bytes: AtomicU64,
    /// Set once the scan has counted everything.
    pub scan_done: std::sync::atomic::AtomicBool,
    /// Items of sources (contacts, events, messages) listed so far.
    pub items_listed: AtomicU64,
    /// Items settled (fetched, or kept from the parent snapshot).
    pub items_done: AtomicU64,
    pub(crate) files_new: AtomicU64,
    pub(crate) files_changed: AtomicU64,
    pub(crate) files_unmodified: AtomicU64,
    pub(crate) dirs_new: AtomicU64,
    pub(crate) dirs_changed: AtomicU64,
    pub(crate) dirs_unmodified: AtomicU64,
    pub(crate) data_blobs: AtomicU64,
    pub(crate) tree_blobs: AtomicU64,
    pub(crate) data_added: AtomicU64,
    pub(crate) data_added_packed: AtomicU64,
    pub(crate) total_files: AtomicU64,
    pub(crate) total_bytes: AtomicU64,
}

/// Adds `n` to a counter.
pub(crate) fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// Reads a counter.
pub(crate) fn get(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}
