//! Repository locks: sealed objects under `locks/` with random names.
//!
//! A client writes its own lock, then lists the others and backs off on a
//! conflict. It never relies on the store refusing an overwrite, so locks stay
//! safe on stores that ignore conditional writes. Shared locks (backup, check,
//! restore) coexist; an exclusive lock (prune) conflicts with every other lock.

use bytes::Bytes;
use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::crypto::MasterKeys;
use crate::destinations::DestinationSet;
use crate::error::{Error, Result};
use crate::ids::ObjectKind;

const LOCK_VERSION: u8 = 1;
const LOCK_AAD: &[u8] = b"lifeboat.lock.v1";
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

impl LockFile {
    fn describe(&self) -> String {
        let when = time::OffsetDateTime::from_unix_timestamp(self.time)
            .map(|t| t.to_string())
            .unwrap_or_default();
        format!(
            "{}@{} pid {} since {when}",
            self.username, self.hostname, self.pid
        )
    }

    /// Opens a stored lock; `None` when it is not a readable version-1 lock.
    pub fn open(keys: &MasterKeys, sealed: &[u8]) -> Option<LockFile> {
        let plain = keys.open(LOCK_AAD, sealed).ok()?;
        postcard::from_bytes::<LockFile>(&plain)
            .ok()
            .filter(|lock| lock.version == LOCK_VERSION)
    }

    fn is_stale(&self, now: i64) -> bool {
        if now - self.time > STALE_AFTER_SECS {
            return true;
        }
        // A lock from this host whose process is gone is stale at once.
        self.hostname == crate::hostname()
            && self.pid != std::process::id()
            // SAFETY: kill with signal 0 only checks that the pid exists.
            && unsafe { libc::kill(self.pid as libc::pid_t, 0) } != 0
            && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
    }
}

/// A held lock; call [`LockGuard::release`] when done.
#[derive(Debug)]
pub struct LockGuard {
    key: String,
    dests: DestinationSet,
    released: bool,
}

impl LockGuard {
    /// Removes the lock from every destination.
    ///
    /// # Errors
    /// A storage failure (the lock then goes stale on its own).
    pub async fn release(mut self) -> Result<()> {
        self.released = true;
        self.dests.delete_everywhere(&self.key).await
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if !self.released {
            tracing::debug!("lock {} not released; it will go stale", self.key);
        }
    }
}

/// Takes a shared or exclusive lock on every destination.
///
/// # Errors
/// [`Error::Locked`] naming the holder when a conflicting lock exists.
pub async fn acquire(
    dests: &DestinationSet,
    keys: &MasterKeys,
    exclusive: bool,
) -> Result<LockGuard> {
    let me = LockFile {
        version: LOCK_VERSION,
        time: time::OffsetDateTime::now_utc().unix_timestamp(),
        hostname: crate::hostname(),
        pid: std::process::id(),
        username: crate::users::user_name(unsafe { libc::getuid() }),
        exclusive,
    };
    let mut name = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut name);
    let name = hex::encode(name);
    let key = ObjectKind::Lock.key(&name);
    let plain =
        postcard::to_stdvec(&me).unwrap_or_else(|_| unreachable!("postcard encodes plain structs"));
    let mut sealed = Vec::new();
    keys.seal(LOCK_AAD, &plain, None, &mut sealed);
    dests.put_new(&key, Bytes::from(sealed)).await?;
    let guard = LockGuard {
        key: key.clone(),
        dests: dests.clone(),
        released: false,
    };
    let now = me.time;
    for backend in dests.backends() {
        for meta in
            crate::destinations::list_all(backend.as_ref(), ObjectKind::Lock.prefix()).await?
        {
            if meta.key == key {
                continue;
            }
            let other = match backend.get(&meta.key, None).await {
                Ok(bytes) => bytes,
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e.into()),
            };
            // A lock we cannot read may be a newer version's exclusive lock: respect it.
            let Some(lock) = LockFile::open(keys, &other) else {
                let _ = guard.release().await;
                return Err(Error::Locked {
                    holder: format!("an unreadable lock on {}", backend.name()),
                    lock: meta.key,
                });
            };
            if lock.is_stale(now) {
                continue;
            }
            if lock.exclusive || exclusive {
                let holder = lock.describe();
                let _ = guard.release().await;
                return Err(Error::Locked {
                    holder,
                    lock: meta.key,
                });
            }
        }
    }
    Ok(guard)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_round_trip_and_staleness() {
        let keys = MasterKeys::generate();
        let lock = LockFile {
            version: LOCK_VERSION,
            time: 1_000_000,
            hostname: "elsewhere".into(),
            pid: 1,
            username: "u".into(),
            exclusive: true,
        };
        let mut sealed = Vec::new();
        keys.seal(
            LOCK_AAD,
            &postcard::to_stdvec(&lock).unwrap(),
            None,
            &mut sealed,
        );
        assert_eq!(LockFile::open(&keys, &sealed), Some(lock.clone()));
        assert!(LockFile::open(&MasterKeys::generate(), &sealed).is_none());
        assert!(!lock.is_stale(1_000_000 + STALE_AFTER_SECS));
        assert!(lock.is_stale(1_000_001 + STALE_AFTER_SECS));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_lock_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let keys = MasterKeys::generate();
            let _ = LockFile::open(&keys, &bytes);
            let _ = postcard::from_bytes::<LockFile>(&bytes);
        }
    }
}
