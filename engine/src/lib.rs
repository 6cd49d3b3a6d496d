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

pub mod backup;
pub mod cache;
pub mod check;
pub mod chunker;
pub mod crypto;
pub mod deletions;
mod destinations;
pub mod drill;
mod error;
pub mod forget;
pub mod ids;
pub mod index;
mod inflight;
pub mod key_admin;
pub mod keys;
pub mod lock;
pub mod ls;
pub mod pack;
pub mod percent;
pub mod prune;
pub mod repair;
mod repo;
pub mod repo_config;
pub mod restore;
pub mod snapshot;
pub mod status;
pub mod sync;
pub mod tree;
pub mod tree_stream;
mod users;

pub use destinations::{
    count, list_all, DestinationSet, LeftOut, LeftOutReason, DEFAULT_READS, DEFAULT_UPLOADS,
    MAX_READS, MAX_UPLOADS,
};
pub use error::{Error, Result};
pub use ids::{BlobId, IndexId, ObjectKind, PackId, RepoId, SnapshotId};
pub use keys::KdfParams;
pub use lock::{acquire as acquire_lock, LockGuard, LockWatch};
pub use repo::{Admission, Repository};
pub use repo_config::RepoParams;
pub use snapshot::{Snapshot, SnapshotSummary};
pub use tree::{Node, NodeKind, Tree};

/// This machine's host name.
pub fn hostname() -> String {
    gethostname::gethostname().to_string_lossy().into_owned()
}

/// Crash-test hook: when the environment variable `LIFEBOAT_FAILPOINT` names
/// this point, the process kills itself with SIGKILL right here, as a power cut
/// would. Used by the tests that prove an interrupted prune loses nothing.
pub fn failpoint(name: &str) {
    if std::env::var("LIFEBOAT_FAILPOINT").is_ok_and(|v| v == name) {
        // SAFETY: getpid and kill have no memory-safety preconditions.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
}
