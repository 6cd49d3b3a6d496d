//! The lock protocol: writing, refreshing, checking and removing the lock
//! objects under `locks/` on every destination.
//!
//! A client writes its own lock, then lists the others and backs off on a
//! conflict. It never relies on the store refusing an overwrite, so locks stay
//! safe on stores that ignore conditional writes. Shared locks (backup, check,
//! restore) coexist; an exclusive lock (prune) conflicts with every other lock.
//! The record itself is [`crate::format::lock::LockFile`].

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use rand::RngCore;

use crate::error::{Error, Result};
use crate::format::crypto::MasterKeys;
use crate::format::ids::{ObjectKind, MAX_LOCK_LEN};
use crate::format::lock::{LockFile, Staleness, STALE_AFTER_SECS};
use crate::format::SealedFile;
use crate::repo::destinations::DestinationSet;

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
    state: Arc<LockState>,
}

/// What the refresher learned about a held lock.
#[derive(Debug, Default)]
struct LockState {
    /// Why the lock no longer protects the run, once it does not.
    lost: Mutex<Option<String>>,
    /// When the lock object was last written, seconds since the epoch.
    written: std::sync::atomic::AtomicI64,
}

impl LockState {
    fn lose(&self, why: String) {
        let mut lost = self.lost.lock().unwrap_or_else(|p| p.into_inner());
        if lost.is_none() {
            tracing::warn!("the repository lock was lost: {why}");
            *lost = Some(why);
        }
    }

    fn lost(&self) -> Option<String> {
        self.lost.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// A handle on a held lock that a long run checks before it commits
/// anything others rely on (a backup, before its snapshot): a lock another
/// process removed (`unlock --force`) or that could not be refreshed for
/// [`STALE_AFTER_SECS`] no longer keeps a prune from deleting what the run
/// uses.
#[derive(Debug, Clone)]
pub struct LockWatch {
    current: Arc<Mutex<String>>,
    dests: DestinationSet,
    state: Arc<LockState>,
}

impl LockWatch {
    /// Checks that the lock still stands on every destination the run
    /// writes to, and has been refreshed in time.
    ///
    /// # Errors
    /// [`Error::LockLost`] saying why.
    pub async fn verify(&self) -> Result<()> {
        if let Some(why) = self.state.lost() {
            return Err(Error::LockLost { reason: why });
        }
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let age = now.saturating_sub(
            self.state
                .written
                .load(std::sync::atomic::Ordering::Relaxed),
        );
        if age > STALE_AFTER_SECS {
            self.state.lose(format!(
                "it could not be refreshed for {} minutes, so other processes may take it for stale",
                age / 60
            ));
        } else if let Some(why) = still_there(&self.dests, &self.current).await {
            self.state.lose(why);
        }
        match self.state.lost() {
            Some(why) => Err(Error::LockLost { reason: why }),
            None => Ok(()),
        }
    }
}

/// `None` when the current lock object is on every healthy destination;
/// else why not.
async fn still_there(dests: &DestinationSet, current: &Mutex<String>) -> Option<String> {
    let key = current.lock().unwrap_or_else(|p| p.into_inner()).clone();
    for backend in dests.healthy() {
        match backend.stat(&key).await {
            Ok(_) => {}
            Err(e) if e.is_not_found() => {
                return Some(format!(
                    "it was removed from {} by another process (`unlock --force`?)",
                    backend.name()
                ))
            }
            // Unreachable now: the run's writes there fail on their own.
            Err(_) => {}
        }
    }
    None
}

impl LockGuard {
    /// A handle to check, before committing, that the lock still holds.
    pub fn watch(&self) -> LockWatch {
        LockWatch {
            current: self.current.clone(),
            dests: self.dests.clone(),
            state: self.state.clone(),
        }
    }

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
    let me = LockFile::current(exclusive);
    let mut name = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut name);
    let key = ObjectKind::Lock.key(&hex::encode(name));
    dests.put_new(&key, Bytes::from(me.seal(keys))).await?;
    Ok((key, me))
}

/// Takes a shared or exclusive lock on every destination.
///
/// Stale locks are ignored; one written on this host by a process that no
/// longer exists is also deleted from that destination on the way.
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
    let state = Arc::new(LockState::default());
    state
        .written
        .store(me.time, std::sync::atomic::Ordering::Relaxed);
    let refresher = {
        let (dests, keys, current, state) =
            (dests.clone(), keys.clone(), current.clone(), state.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_secs(REFRESH_EVERY_SECS)).await;
                // Removed meanwhile: writing a fresh one would hide that.
                if let Some(why) = still_there(&dests, &current).await {
                    state.lose(why);
                    return;
                }
                match write_lock(&dests, &keys, exclusive).await {
                    Ok((fresh, lock)) => {
                        state
                            .written
                            .store(lock.time, std::sync::atomic::Ordering::Relaxed);
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
        state,
    };
    let now = me.time;
    for backend in dests.healthy() {
        let locks =
            match crate::repo::destinations::list_all(backend.as_ref(), ObjectKind::Lock.prefix())
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
            let other = match backend.get_bounded(&meta.key, MAX_LOCK_LEN).await {
                Ok(bytes) => Some(bytes),
                Err(e) if e.is_not_found() => continue,
                // Larger than any lock: as unreadable as a damaged one.
                Err(e) if e.is_too_large() => None,
                Err(e) => {
                    let _ = guard.release().await;
                    return Err(e.into());
                }
            };
            // A lock we cannot read may be a newer version's exclusive lock: respect it.
            let Some(lock) = other.and_then(|other| LockFile::open_lock(keys, &other)) else {
                let _ = guard.release().await;
                return Err(Error::Locked {
                    holder: format!("an unreadable lock on {}", backend.name()),
                    lock: meta.key,
                });
            };
            if lock.is_stale(now) {
                if lock.holder_gone() {
                    // Its holder on this host died: nobody will remove it otherwise.
                    match backend.delete(&meta.key).await {
                        Ok(()) => tracing::info!(
                            "removed the stale lock of {} on {}",
                            lock.describe(),
                            backend.name()
                        ),
                        Err(e) => tracing::debug!("could not remove a stale lock: {e}"),
                    }
                }
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

/// One lock as [`unlock`] found it (by name, across destinations).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockReport {
    /// The object's name under `locks/`.
    pub name: String,
    /// The destinations that hold it.
    pub destinations: Vec<String>,
    /// Its content; `None` when it does not open or decode (a newer version's
    /// lock, another repository's, or damaged bytes).
    pub lock: Option<LockFile>,
    /// Seconds since it was written (its last refresh).
    pub age_secs: Option<i64>,
    /// Why it is stale, when it is.
    pub stale: Option<Staleness>,
    /// True when [`unlock`] removed it.
    pub removed: bool,
}

/// What [`unlock`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnlockReport {
    /// Every lock found, removed or kept, in name order.
    pub locks: Vec<LockReport>,
    /// Destinations whose locks could not be listed or read, with the reason.
    pub unreachable: Vec<(String, String)>,
    /// Deletions that failed: lock name, destination, reason.
    pub failed: Vec<(String, String, String)>,
}

/// Removes stale locks (or, with `force`, every lock) from every reachable
/// destination and reports every lock found. Unreadable locks are kept unless
/// `force`: they may belong to a newer version of lifeboat.
///
/// Removing a live lock (`force`) lets another command run beside its holder:
/// a running prune or backup may then lose data.
///
/// # Errors
/// None so far: unreachable destinations and failed deletions are reported in
/// the [`UnlockReport`].
pub async fn unlock(
    dests: &DestinationSet,
    keys: &MasterKeys,
    force: bool,
) -> Result<UnlockReport> {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut report = UnlockReport::default();
    let mut found: std::collections::BTreeMap<String, LockReport> = Default::default();
    // Per destination: the lock keys it holds.
    let mut held: Vec<(Arc<dyn lifeboat_backends::Backend>, Vec<String>)> = Vec::new();
    let missed = dests.missed();
    for backend in dests.backends() {
        if let Some((_, why)) = missed.iter().find(|(name, _)| name == backend.name()) {
            report
                .unreachable
                .push((backend.name().to_string(), why.clone()));
            continue;
        }
        match read_locks(backend.as_ref(), keys).await {
            Ok(locks) => {
                let mut keys_here = Vec::new();
                for (key, lock) in locks {
                    let name = key
                        .strip_prefix(ObjectKind::Lock.prefix())
                        .unwrap_or(&key)
                        .to_string();
                    let entry = found.entry(name.clone()).or_insert_with(|| LockReport {
                        name,
                        destinations: Vec::new(),
                        lock: None,
                        age_secs: None,
                        stale: None,
                        removed: false,
                    });
                    entry.destinations.push(backend.name().to_string());
                    if entry.lock.is_none() {
                        if let Some(lock) = lock {
                            entry.age_secs = Some(now.saturating_sub(lock.time));
                            entry.stale = lock.staleness(now);
                            entry.lock = Some(lock);
                        }
                    }
                    keys_here.push(key);
                }
                held.push((backend.clone(), keys_here));
            }
            Err(e) => report
                .unreachable
                .push((backend.name().to_string(), e.to_string())),
        }
    }
    for (backend, keys_here) in &held {
        for key in keys_here {
            let name = key.strip_prefix(ObjectKind::Lock.prefix()).unwrap_or(key);
            let Some(entry) = found.get_mut(name) else {
                continue;
            };
            let remove = force || (entry.lock.is_some() && entry.stale.is_some());
            if !remove {
                continue;
            }
            match backend.delete(key).await {
                Ok(()) => entry.removed = true,
                Err(e) if e.is_not_found() => entry.removed = true,
                Err(e) => report.failed.push((
                    entry.name.clone(),
                    backend.name().to_string(),
                    e.to_string(),
                )),
            }
        }
    }
    report.locks = found.into_values().collect();
    Ok(report)
}

/// Every object under `locks/` on one destination, opened when possible.
async fn read_locks(
    backend: &dyn lifeboat_backends::Backend,
    keys: &MasterKeys,
) -> Result<Vec<(String, Option<LockFile>)>> {
    let mut out = Vec::new();
    for meta in crate::repo::destinations::list_all(backend, ObjectKind::Lock.prefix()).await? {
        match backend.get_bounded(&meta.key, MAX_LOCK_LEN).await {
            Ok(bytes) => out.push((meta.key, LockFile::open_lock(keys, &bytes))),
            // Released since the listing.
            Err(e) if e.is_not_found() => {}
            // Larger than any lock: unreadable, never read.
            Err(e) if e.is_too_large() => out.push((meta.key, None)),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(out)
}

#[cfg(test)]
#[path = "lock_tests.rs"]
mod tests;
