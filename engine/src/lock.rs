//! Repository locks: sealed objects under `locks/` with random names.
//!
//! A client writes its own lock, then lists the others and backs off on a
//! conflict. It never relies on the store refusing an overwrite, so locks stay
//! safe on stores that ignore conditional writes. Shared locks (backup, check,
//! restore) coexist; an exclusive lock (prune) conflicts with every other lock.

use std::sync::{Arc, Mutex};

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

/// How often a held lock is rewritten with a fresh time, well inside
/// [`STALE_AFTER_SECS`], so a long backup never looks stale to others.
pub const REFRESH_EVERY_SECS: u64 = 5 * 60;

/// A held lock; call [`LockGuard::release`] when done. While held, a background
/// task refreshes it every [`REFRESH_EVERY_SECS`].
#[derive(Debug)]
pub struct LockGuard {
    current: Arc<Mutex<String>>,
    dests: DestinationSet,
    refresher: Option<tokio::task::JoinHandle<()>>,
}

impl LockGuard {
    /// Stops refreshing and removes the lock from every destination.
    ///
    /// # Errors
    /// A storage failure (the lock then goes stale on its own).
    pub async fn release(mut self) -> Result<()> {
        if let Some(task) = self.refresher.take() {
            task.abort();
        }
        let key = self
            .current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        self.dests.delete_everywhere(&key).await
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if let Some(task) = self.refresher.take() {
            task.abort();
            tracing::debug!("lock not released; it will go stale");
        }
    }
}

/// Writes one lock object with the current time; returns its key.
async fn write_lock(
    dests: &DestinationSet,
    keys: &MasterKeys,
    exclusive: bool,
) -> Result<(String, LockFile)> {
    let me = LockFile {
        version: LOCK_VERSION,
        time: time::OffsetDateTime::now_utc().unix_timestamp(),
        hostname: crate::hostname(),
        pid: std::process::id(),
        // SAFETY: getuid cannot fail.
        username: crate::users::user_name(unsafe { libc::getuid() }),
        exclusive,
    };
    let mut name = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut name);
    let key = ObjectKind::Lock.key(&hex::encode(name));
    let plain =
        postcard::to_stdvec(&me).unwrap_or_else(|_| unreachable!("postcard encodes plain structs"));
    let mut sealed = Vec::new();
    keys.seal(LOCK_AAD, &plain, None, &mut sealed);
    dests.put_new(&key, Bytes::from(sealed)).await?;
    Ok((key, me))
}

/// Takes a shared or exclusive lock on every destination.
///
/// # Errors
/// [`Error::Locked`] naming the holder when a conflicting lock exists.
pub async fn acquire(
    dests: &DestinationSet,
    keys: &Arc<MasterKeys>,
    exclusive: bool,
) -> Result<LockGuard> {
    let (key, me) = write_lock(dests, keys, exclusive).await?;
    let current = Arc::new(Mutex::new(key.clone()));
    let refresher = {
        let (dests, keys, current) = (dests.clone(), keys.clone(), current.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_secs(REFRESH_EVERY_SECS)).await;
                match write_lock(&dests, &keys, exclusive).await {
                    Ok((fresh, _)) => {
                        let old = std::mem::replace(
                            &mut *current.lock().unwrap_or_else(|p| p.into_inner()),
                            fresh,
                        );
                        if let Err(e) = dests.delete_everywhere(&old).await {
                            tracing::warn!("could not remove the previous lock {old}: {e}");
                        }
                    }
                    Err(e) => tracing::warn!("could not refresh the repository lock: {e}"),
                }
            }
        })
    };
    let guard = LockGuard {
        current,
        dests: dests.clone(),
        refresher: Some(refresher),
    };
    let now = me.time;
    for backend in dests.healthy() {
        let locks = match crate::destinations::list_all(backend.as_ref(), ObjectKind::Lock.prefix())
            .await
        {
            Ok(locks) => locks,
            Err(e) => {
                // A destination whose locks cannot be listed gets nothing this run.
                dests.drop_destination(backend.name(), &e.to_string());
                continue;
            }
        };
        for meta in locks {
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
