//! Taking the repository lock, waiting for it with `--retry-lock DURATION`:
//! while another command holds a conflicting lock, try again every few seconds
//! until the duration has passed (so a backup can wait for a prune to finish),
//! then fail as locked (exit 11). Every command takes its lock through
//! [`LockWait`], which the [`Context`](crate::context::Context) carries.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use lifeboat_engine::{Error, LockGuard, LockWatch, Repository};

use crate::args::GlobalArgs;

/// The longest pause between two attempts.
const MAX_PAUSE: Duration = Duration::from_secs(5);

/// How this invocation waits for a lock held elsewhere.
#[derive(Debug, Clone)]
pub struct LockWait {
    /// How long to keep retrying (`--retry-lock`; zero: fail at once).
    pub retry: Duration,
    /// Set by Ctrl-C: stops the wait with "interrupted" instead of "locked".
    pub cancel: Arc<AtomicBool>,
    /// Whether to tell the person on stderr that the run is waiting.
    pub notes: bool,
}

impl LockWait {
    /// The settings that the global flags ask for, stopped by `cancel`.
    pub fn new(global: &GlobalArgs, cancel: Arc<AtomicBool>) -> LockWait {
        LockWait {
            retry: global.retry_lock.unwrap_or_default(),
            cancel,
            notes: !global.quiet && !global.json,
        }
    }

    fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }

    /// Takes a shared or exclusive lock, retrying while it is held elsewhere
    /// for as long as `retry` allows.
    ///
    /// # Errors
    /// [`Error::Locked`] once the wait is over, [`Error::Interrupted`] when
    /// cancelled while waiting; storage failures at once.
    pub async fn acquire(&self, repo: &Repository, exclusive: bool) -> Result<LockGuard> {
        let deadline = Instant::now() + self.retry;
        let mut pause = Duration::from_millis(500);
        let mut told = false;
        loop {
            match lifeboat_engine::acquire_lock(repo.destinations(), repo.keys(), exclusive).await {
                Err(Error::Locked { holder, .. })
                    if Instant::now() < deadline && !self.cancelled() =>
                {
                    if self.notes && !told {
                        eprintln!(
                            "repository is locked by {holder}; retrying for up to {}",
                            crate::duration::show(self.retry)
                        );
                        told = true;
                    }
                    let wake = (Instant::now() + pause).min(deadline);
                    while Instant::now() < wake && !self.cancelled() {
                        let step = Duration::from_millis(100).min(wake - Instant::now());
                        tokio::time::sleep(step).await;
                    }
                    pause = (pause * 2).min(MAX_PAUSE);
                }
                Err(Error::Locked { .. }) if self.cancelled() => {
                    return Err(Error::Interrupted.into())
                }
                other => return Ok(other?),
            }
        }
    }

    /// Runs `work` under a lock, then releases it whatever happened.
    pub async fn locked<T>(
        &self,
        repo: &Repository,
        exclusive: bool,
        work: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        self.watched(repo, exclusive, |_| work).await
    }

    /// Runs the work that `start` makes from a watch on the lock (a backup
    /// checks it before committing), then releases the lock whatever
    /// happened: the one place a command lets go of its lock.
    pub async fn watched<T, F, W>(&self, repo: &Repository, exclusive: bool, start: F) -> Result<T>
    where
        F: FnOnce(LockWatch) -> W,
        W: Future<Output = Result<T>>,
    {
        let lock = self.acquire(repo, exclusive).await?;
        let result = start(lock.watch()).await;
        if let Err(e) = lock.release().await {
            tracing::warn!("could not remove the lock (it will go stale): {e}");
        }
        result
    }
}

#[cfg(test)]
mod tests;
