//! Retries with exponential backoff and jitter, as a wrapper around any backend.
//!
//! Only [`ErrorKind::Transient`] failures are retried; `NotFound`,
//! `AlreadyExists` and `Permanent` return at once. Attempts are bounded, so a
//! dead destination costs at most the retry budget before its error surfaces,
//! and a refused connection is tried only twice: nothing listens there, and
//! every command should give such a destination up within seconds. This is
//! the only retry layer: backends do not retry underneath it.
//!
//! Puts are create-only, so a put whose first attempt stored the object but
//! lost the answer would come back from its retry as `AlreadyExists`: a
//! retried put that meets `AlreadyExists` reads the object back, and it is a
//! success when the bytes are the caller's.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use rand::Rng;

use crate::backend::{Backend, ObjectMeta};
use crate::error::{ErrorKind, Result};

/// How often and how patiently to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (at least 1).
    pub attempts: u32,
    /// Delay before the first retry; doubled each time.
    pub base_delay: Duration,
    /// Upper bound of one delay.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// 7 attempts, 250 ms doubling to at most 4 s: about 12 s of waiting in all
    /// (jitter ±50 %), so a 30 % error storm fails a call once in 4,500 tries.
    fn default() -> Self {
        RetryPolicy {
            attempts: 7,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(4),
        }
    }
}

impl RetryPolicy {
    /// The delay before retry number `retry` (0-based), with ±50 % jitter so
    /// that many clients do not retry in lockstep.
    pub fn delay(&self, retry: u32) -> Duration {
        let exp = self.base_delay.saturating_mul(1u32 << retry.min(16));
        let capped = exp.min(self.max_delay);
        let jitter = rand::thread_rng().gen_range(0.5..1.5);
        capped.mul_f64(jitter)
    }
}

/// A backend whose transient failures are retried.
#[derive(Debug, Clone)]
pub struct RetryBackend {
    inner: Arc<dyn Backend>,
    policy: RetryPolicy,
}

impl RetryBackend {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Backend>, policy: RetryPolicy) -> Self {
        RetryBackend { inner, policy }
    }

    async fn retry<T, F, Fut>(&self, mut call: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let mut retry = 0;
        let mut refused = 0;
        loop {
            match call().await {
                // Refused twice: nothing listens there; give up at once
                // rather than wait out the whole backoff.
                Err(e) if e.is_connection_refused() && refused >= 1 => return Err(e),
                Err(e) if e.kind == ErrorKind::Transient && retry + 1 < self.policy.attempts => {
                    if e.is_connection_refused() {
                        refused += 1;
                    }
                    let delay = self.policy.delay(retry);
                    tracing::debug!("{e}; retrying in {delay:?}");
                    tokio::time::sleep(delay).await;
                    retry += 1;
                }
                other => return other,
            }
        }
    }
}

#[async_trait]
impl Backend for RetryBackend {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn location(&self) -> String {
        self.inner.location()
    }

    async fn put(&self, key: &str, data: Bytes) -> Result<()> {
        let mut attempts = 0;
        let result = self
            .retry(|| {
                attempts += 1;
                self.inner.put(key, data.clone())
            })
            .await;
        match result {
            // A failed attempt may have landed before its answer was lost:
            // then the retry finds the caller's own object, and the put did
            // succeed. Anything else there (or an object that cannot be read
            // back) is a real conflict.
            Err(e) if e.kind == ErrorKind::AlreadyExists && attempts > 1 => {
                // Anything larger than the caller's bytes is not theirs.
                let limit = data.len() as u64;
                match self.retry(|| self.inner.get_bounded(key, limit)).await {
                    Ok(stored) if stored == data => Ok(()),
                    _ => Err(e),
                }
            }
            other => other,
        }
    }

    async fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<Bytes> {
        self.retry(|| self.inner.get(key, range.clone())).await
    }

    async fn get_bounded(&self, key: &str, limit: u64) -> Result<Bytes> {
        self.retry(|| self.inner.get_bounded(key, limit)).await
    }

    async fn stat(&self, key: &str) -> Result<ObjectMeta> {
        self.retry(|| self.inner.stat(key)).await
    }

    fn list<'a>(&'a self, prefix: &'a str) -> BoxStream<'a, Result<ObjectMeta>> {
        // A listing that fails before its first item is started again; one
        // that fails midway is not (it would repeat items).
        type State<'a> = Option<(u32, Option<BoxStream<'a, Result<ObjectMeta>>>, bool)>;
        let start: State<'a> = Some((0, None, false));
        Box::pin(futures::stream::unfold(start, move |state| async move {
            let (mut retry, mut stream, yielded) = state?;
            let mut refused = 0;
            loop {
                let current = stream.get_or_insert_with(|| self.inner.list(prefix));
                match current.next().await {
                    None => return None,
                    Some(Ok(meta)) => return Some((Ok(meta), Some((retry, stream, true)))),
                    Some(Err(e)) if e.is_connection_refused() && refused >= 1 => {
                        return Some((Err(e), None))
                    }
                    Some(Err(e))
                        if !yielded
                            && e.kind == ErrorKind::Transient
                            && retry + 1 < self.policy.attempts =>
                    {
                        if e.is_connection_refused() {
                            refused += 1;
                        }
                        let delay = self.policy.delay(retry);
                        tracing::debug!("{e}; listing again in {delay:?}");
                        tokio::time::sleep(delay).await;
                        retry += 1;
                        stream = None;
                    }
                    // The error ends the listing.
                    Some(Err(e)) => return Some((Err(e), None)),
                }
            }
        }))
    }

    async fn delete(&self, key: &str) -> Result<()> {
        self.retry(|| self.inner.delete(key)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BackendError, FaultPlan, FaultyBackend, MemoryBackend};

    #[test]
    fn delays_grow_and_stay_bounded() {
        let p = RetryPolicy::default();
        assert!(p.delay(0) <= Duration::from_millis(375));
        assert!(p.delay(10) <= Duration::from_secs(6));
        assert!(p.delay(3) >= Duration::from_secs(1));
    }

    #[tokio::test]
    async fn transient_failures_are_retried_then_reported() {
        let memory = Arc::new(MemoryBackend::new("m"));
        let faulty = FaultyBackend::new(
            memory.clone(),
            FaultPlan {
                unreachable: true,
                ..Default::default()
            },
        );
        let fast = RetryPolicy {
            attempts: 3,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
        };
        let retrying = RetryBackend::new(Arc::new(faulty.clone()), fast);
        let err: BackendError = retrying
            .put("k", Bytes::from_static(b"x"))
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Transient);
        // Permanent failures are not retried: the injected put failure comes back once.
        faulty.set_plan(FaultPlan {
            fail_put_prefix: Some("k".into()),
            ..Default::default()
        });
        let err = retrying
            .put("k", Bytes::from_static(b"x"))
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Permanent);
        faulty.set_plan(FaultPlan::default());
        retrying.put("k", Bytes::from_static(b"x")).await.unwrap();
        assert_eq!(&memory.get("k", None).await.unwrap()[..], b"x");
    }

    fn fast() -> RetryPolicy {
        RetryPolicy {
            attempts: 3,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
        }
    }

    #[tokio::test]
    async fn a_put_that_landed_before_its_answer_was_lost_succeeds() {
        let memory = Arc::new(MemoryBackend::new("m"));
        let faulty = FaultyBackend::new(
            memory.clone(),
            FaultPlan {
                fail_put_prefix: Some("config".into()),
                put_error: Some(ErrorKind::Transient),
                put_failures: Some(1),
                put_lands: true,
                ..Default::default()
            },
        );
        let retrying = RetryBackend::new(Arc::new(faulty.clone()), fast());
        retrying
            .put("config", Bytes::from_static(b"repo"))
            .await
            .expect("the first attempt stored it");
        assert_eq!(&memory.get("config", None).await.unwrap()[..], b"repo");
        assert_eq!(faulty.take_reads(), vec![("config".to_string(), true)]);
    }

    #[tokio::test]
    async fn a_retried_put_that_finds_other_bytes_reports_already_exists() {
        let memory = Arc::new(MemoryBackend::new("m"));
        memory
            .put("config", Bytes::from_static(b"another repo"))
            .await
            .unwrap();
        // The first attempt fails without storing anything; the retry finds
        // an object someone else wrote.
        let faulty = FaultyBackend::new(
            memory.clone(),
            FaultPlan {
                fail_put_prefix: Some("config".into()),
                put_error: Some(ErrorKind::Transient),
                put_failures: Some(1),
                ..Default::default()
            },
        );
        let retrying = RetryBackend::new(Arc::new(faulty.clone()), fast());
        let err = retrying
            .put("config", Bytes::from_static(b"repo"))
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::AlreadyExists);
        assert_eq!(faulty.take_reads().len(), 1, "compared with what is there");
        assert_eq!(
            &memory.get("config", None).await.unwrap()[..],
            b"another repo"
        );
    }

    #[tokio::test]
    async fn a_first_attempt_that_finds_an_object_reports_already_exists_unread() {
        let memory = Arc::new(MemoryBackend::new("m"));
        memory
            .put("config", Bytes::from_static(b"repo"))
            .await
            .unwrap();
        let faulty = FaultyBackend::new(memory.clone(), FaultPlan::default());
        let retrying = RetryBackend::new(Arc::new(faulty.clone()), fast());
        // Even the same bytes: nothing failed, so this caller did not write them.
        let err = retrying
            .put("config", Bytes::from_static(b"repo"))
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::AlreadyExists);
        assert!(faulty.take_reads().is_empty());
    }

    #[tokio::test]
    async fn a_listing_that_fails_at_its_start_is_started_again() {
        use crate::{Chaos, ChaosBackend};
        use futures::TryStreamExt;
        let memory = Arc::new(MemoryBackend::new("m"));
        for i in 0..5 {
            memory
                .put(&format!("p/{i}"), Bytes::from_static(b"x"))
                .await
                .unwrap();
        }
        for seed in 0..20 {
            let stormy = ChaosBackend::new(
                memory.clone(),
                Chaos {
                    seed,
                    transient: 0.5,
                    ..Default::default()
                },
            );
            let policy = RetryPolicy {
                attempts: 12,
                base_delay: Duration::from_millis(1),
                max_delay: Duration::from_millis(2),
            };
            let retrying = RetryBackend::new(Arc::new(stormy.clone()), policy);
            let listed: Vec<ObjectMeta> = retrying.list("p/").try_collect().await.unwrap();
            assert_eq!(listed.len(), 5, "seed {seed}");
        }
    }
}
