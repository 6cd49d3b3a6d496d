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
                        humanize(retry)
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

/// Parses a duration: `90` (seconds), `30s`, `5m`, `2h`, `1d`, or a sequence
/// such as `1h30m`.
///
/// # Errors
/// A one-line message for clap.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let invalid = || format!("{text:?} is not a duration: use e.g. 90, 30s, 5m, 2h or 1h30m");
    let text = text.trim();
    if text.is_empty() {
        return Err(invalid());
    }
    if let Ok(seconds) = text.parse::<u64>() {
        return Ok(Duration::from_secs(seconds));
    }
    let mut total: u64 = 0;
    let mut digits = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(invalid()),
        };
        let n: u64 = digits.parse().map_err(|_| invalid())?;
        digits.clear();
        total = n
            .checked_mul(unit)
            .and_then(|s| total.checked_add(s))
            .ok_or_else(invalid)?;
    }
    if !digits.is_empty() {
        return Err(invalid());
    }
    Ok(Duration::from_secs(total))
}

/// `1h 30m`, `45s`: a duration for messages.
pub fn humanize(d: Duration) -> String {
    let s = d.as_secs();
    let (h, m, sec) = (s / 3600, s % 3600 / 60, s % 60);
    let mut parts = Vec::new();
    if h > 0 {
        parts.push(format!("{h}h"));
    }
    if m > 0 {
        parts.push(format!("{m}m"));
    }
    if sec > 0 || parts.is_empty() {
        parts.push(format!("{sec}s"));
    }
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        let secs = |t: &str| parse_duration(t).map(|d| d.as_secs());
        assert_eq!(secs("90"), Ok(90));
        assert_eq!(secs("30s"), Ok(30));
        assert_eq!(secs("5m"), Ok(300));
        assert_eq!(secs("1h30m"), Ok(5400));
        assert_eq!(secs("2d"), Ok(172_800));
        for bad in ["", "m", "5x", "1h30", "-5s", "99999999999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(humanize(Duration::from_secs(5400)), "1h 30m");
        assert_eq!(humanize(Duration::ZERO), "0s");
    }
}
