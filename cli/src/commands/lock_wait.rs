//! Taking the repository lock, waiting for it with `--retry-lock DURATION`:
//! while another command holds a conflicting lock, try again every few seconds
//! until the duration has passed (so a backup can wait for a prune to finish),
//! then fail as locked (exit 11). Every command takes its lock through here.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::Result;
use lifeboat_engine::{Error, LockGuard, Repository};

use crate::context::Context;

/// The longest pause between two attempts.
const MAX_PAUSE: Duration = Duration::from_secs(5);

struct Settings {
    retry: Duration,
    cancel: Arc<AtomicBool>,
    notes: bool,
}

static SETTINGS: OnceLock<Settings> = OnceLock::new();

/// Records `--retry-lock` and the interrupt flag of this invocation.
pub fn configure(ctx: &Context) {
    let _ = SETTINGS.set(Settings {
        retry: ctx.global.retry_lock.unwrap_or_default(),
        cancel: ctx.cancel.clone(),
        notes: !ctx.global.quiet && !ctx.global.json,
    });
}

/// Takes a shared or exclusive lock, retrying while it is held elsewhere for
/// as long as `--retry-lock` allows.
///
/// # Errors
/// [`Error::Locked`] once the wait is over; storage failures at once.
pub async fn acquire(repo: &Repository, exclusive: bool) -> Result<LockGuard> {
    let (retry, cancel, notes) = match SETTINGS.get() {
        Some(s) => (s.retry, Some(s.cancel.clone()), s.notes),
        None => (Duration::ZERO, None, false),
    };
    let cancelled = || cancel.as_ref().is_some_and(|c| c.load(Ordering::Relaxed));
    let deadline = Instant::now() + retry;
    let mut pause = Duration::from_millis(500);
    let mut told = false;
    loop {
        match lifeboat_engine::acquire_lock(repo.destinations(), repo.keys(), exclusive).await {
            Err(Error::Locked { holder, .. }) if Instant::now() < deadline && !cancelled() => {
                if notes && !told {
                    eprintln!(
                        "repository is locked by {holder}; retrying for up to {}",
                        crate::duration::show(retry)
                    );
                    told = true;
                }
                let wake = (Instant::now() + pause).min(deadline);
                while Instant::now() < wake && !cancelled() {
                    tokio::time::sleep(Duration::from_millis(100).min(wake - Instant::now())).await;
                }
                pause = (pause * 2).min(MAX_PAUSE);
            }
            Err(Error::Locked { .. }) if cancelled() => return Err(Error::Interrupted.into()),
            other => return Ok(other?),
        }
    }
}

/// Runs `work` under a lock, then releases it whatever happened.
pub async fn locked<T>(
    repo: &Repository,
    exclusive: bool,
    work: impl Future<Output = Result<T>>,
) -> Result<T> {
    let lock = acquire(repo, exclusive).await?;
    let result = work.await;
    if let Err(e) = lock.release().await {
        tracing::warn!("could not remove the lock (it will go stale): {e}");
    }
    result
}
