//! Lock records: the sealed content of the objects under `locks/` (random
//! names), saying who holds a lock, since when, and whether it is
//! exclusive. The protocol that writes, refreshes and removes them is
//! [`crate::repo::lock`].

use serde::{Deserialize, Serialize};

use super::crypto::MasterKeys;
use super::{RepoFile, SealedFile};

/// Lock format version written and read.
pub const LOCK_VERSION: u8 = 1;
/// The AAD a lock is sealed with.
pub const LOCK_AAD: &[u8] = b"lifeboat.lock.v1";
/// A lock older than this is stale and ignored (its holder crashed).
pub const STALE_AFTER_SECS: i64 = 30 * 60;

/// The content of a lock object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockFile {
    /// Format version (1).
    pub version: u8,
    /// When it was written, seconds since the epoch.
    pub time: i64,
    /// Host of the holder.
    pub hostname: String,
    /// Process id of the holder.
    pub pid: u32,
    /// User of the holder.
    pub username: String,
    /// True for an exclusive lock.
    pub exclusive: bool,
}

/// Why a lock is stale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Staleness {
    /// Written on this host by a process that no longer exists.
    HolderGone,
    /// Not refreshed for more than [`STALE_AFTER_SECS`].
    TooOld,
}

impl std::fmt::Display for Staleness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Staleness::HolderGone => "its process no longer exists",
            Staleness::TooOld => "not refreshed for over 30 minutes",
        })
    }
}

impl LockFile {
    /// A lock of this process, dated now.
    pub fn current(exclusive: bool) -> Self {
        LockFile {
            version: LOCK_VERSION,
            time: time::OffsetDateTime::now_utc().unix_timestamp(),
            hostname: crate::hostname(),
            pid: std::process::id(),
            // SAFETY: getuid cannot fail.
            username: crate::users::user_name(unsafe { libc::getuid() }),
            exclusive,
        }
    }

    /// `user@host pid N since <time>`: who holds it.
    pub fn describe(&self) -> String {
        let format =
            time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second] UTC");
        let when = time::OffsetDateTime::from_unix_timestamp(self.time)
            .ok()
            .and_then(|t| t.format(&format).ok())
            .unwrap_or_else(|| self.time.to_string());
        format!(
            "{}@{} pid {} since {when}",
            self.username, self.hostname, self.pid
        )
    }

    /// Opens a stored lock; `None` when it is not a readable lock of a
    /// version this build reads (a newer version's, another repository's,
    /// damaged bytes).
    pub fn open_lock(keys: &MasterKeys, sealed: &[u8]) -> Option<LockFile> {
        Self::open_unnamed(keys, sealed).ok()
    }

    /// Whether (and why) the lock is stale at `now` (seconds since the epoch).
    pub fn staleness(&self, now: i64) -> Option<Staleness> {
        if self.holder_gone() {
            Some(Staleness::HolderGone)
        } else if now.saturating_sub(self.time) > STALE_AFTER_SECS {
            Some(Staleness::TooOld)
        } else {
            None
        }
    }

    pub(crate) fn is_stale(&self, now: i64) -> bool {
        self.staleness(now).is_some()
    }

    /// True when the lock was written on this host by a process that no
    /// longer exists: it is stale at once.
    pub(crate) fn holder_gone(&self) -> bool {
        let Ok(pid) = libc::pid_t::try_from(self.pid) else {
            return false;
        };
        self.hostname == crate::hostname()
            && self.pid != std::process::id()
            && pid > 0
            // SAFETY: kill with signal 0 only checks that the pid exists.
            && unsafe { libc::kill(pid, 0) } != 0
            && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
    }
}

impl RepoFile for LockFile {
    const KIND: &'static str = "lock";
    const VERSION: u8 = LOCK_VERSION;

    fn version(&self) -> u8 {
        self.version
    }
}

impl SealedFile for LockFile {
    const AAD: &'static [u8] = LOCK_AAD;
    const COMPRESSION: Option<i32> = None;
}
