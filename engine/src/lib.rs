//! The Lifeboat engine: an encrypted, deduplicating repository written to
//! several destinations at once.
//!
//! Main types:
//! - [`Repository`]: created with [`Repository::init`], opened with
//!   [`Repository::open`] on a [`DestinationSet`];
//! - [`backup::backup`] writes a [`Snapshot`]; [`restore::restore`] brings one
//!   back; [`check::check`] verifies the repository; [`drill::drill`]
//!   proves that one destination alone brings a snapshot back.
//!
//! Storage format: see `engine/FORMAT.md`.
//!
//! ```no_run
//! # async fn example() -> lifeboat_engine::Result<()> {
//! use std::sync::Arc;
//! use lifeboat_engine::{backup, DestinationSet, KdfParams, RepoParams, Repository};
//! let dest = lifeboat_backends::DestinationUrl::parse("/mnt/usb/lb")?.open("usb")?;
//! let dests = DestinationSet::new(vec![dest])?;
//! let repo = Repository::init(dests, b"password", RepoParams::default(), KdfParams::default()).await?;
//! let options = backup::BackupOptions { paths: vec!["/home/me/Documents".into()], ..Default::default() };
//! let outcome = backup::backup(&repo, &options, Default::default(), Default::default()).await?;
//! println!("snapshot {:?}", outcome.snapshot_id);
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

mod error;
pub mod format;
pub mod ops;
pub mod percent;
pub mod repo;
pub mod source;
mod users;

// The operations, at the root for callers (`lifeboat_engine::backup::backup`).
pub use ops::{
    backup, check, diff, drill, dump, find, forget, key_admin, ls, mount, patterns, prune, push,
    repair, restore, rewrite, stats, status, sync, tag,
};

pub use error::{Error, Result};
pub use format::config::RepoParams;
pub use format::ids::{BlobId, IndexId, ObjectKind, PackId, RepoId, SnapshotId};
pub use format::keys::KdfParams;
pub use format::snapshot::{Snapshot, SnapshotSummary};
pub use format::tree::{Node, NodeKind, Tree};
pub use format::{FormatError, RepoFile, SealedFile};
pub use repo::destinations::{
    count, list_all, DestinationSet, LeftOut, LeftOutReason, DEFAULT_READS, DEFAULT_UPLOADS,
    MAX_READS, MAX_UPLOADS,
};
pub use repo::lock::{acquire as acquire_lock, LockGuard, LockWatch};
pub use repo::{Admission, Repository};

/// This machine's host name.
pub fn hostname() -> String {
    gethostname::gethostname().to_string_lossy().into_owned()
}

/// Crash-test hook: when the environment variable `LIFEBOAT_FAILPOINT` names
/// this point, the process kills itself with SIGKILL right here, as a power cut
/// would. Used by the tests that prove an interrupted prune loses nothing.
#[cfg(feature = "failpoints")]
pub fn failpoint(name: &str) {
    if std::env::var("LIFEBOAT_FAILPOINT").is_ok_and(|v| v == name) {
        // SAFETY: getpid and kill have no memory-safety preconditions.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
}

/// Crash-test hook, compiled out: only builds with the `failpoints` feature
/// let an environment variable kill the process.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn failpoint(_name: &str) {}
