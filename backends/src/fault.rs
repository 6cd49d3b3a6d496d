//! A fault-injecting wrapper around a real backend, for tests: it fails chosen
//! calls the way a sick provider would, while every other call goes through.

use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;

use crate::backend::{Backend, ObjectMeta};
use crate::error::{BackendError, ErrorKind, Result};

/// Which calls fail, and how.
#[derive(Debug, Clone, Default)]
pub struct FaultPlan {
    /// Puts of keys starting with this prefix fail (after `put_after` successful puts of it).
    pub fail_put_prefix: Option<String>,
    /// Number of matching puts that succeed before failures start.
    pub put_after: usize,
    /// The class of the injected put failure.
    pub put_error: Option<ErrorKind>,
    /// How many matching puts fail (after `put_after`); `None` for every one
    /// (a provider that hiccups, against one that is down).
    pub put_failures: Option<usize>,
    /// The injected put failure comes after the object was stored: the
    /// provider wrote it but its answer was lost on the way back.
    pub put_lands: bool,
    /// Gets of keys starting with this prefix return bytes with one bit flipped.
    pub corrupt_get_prefix: Option<String>,
    /// Every call fails as if the destination were unreachable.
    pub unreachable: bool,
    /// Every put waits this long before it goes through (a slow provider).
    pub put_delay: Option<std::time::Duration>,
}

/// A backend that injects the faults of a [`FaultPlan`].
#[derive(Debug, Clone)]
pub struct FaultyBackend {
    inner: Arc<dyn Backend>,
    plan: Arc<Mutex<FaultPlan>>,
    matching_puts: Arc<AtomicUsize>,
    /// Puts running now, and the most ever running at once.
    puts_in_flight: Arc<(AtomicUsize, AtomicUsize)>,
    /// Keys read, in order, and whether whole (without a range).
    reads: Arc<Mutex<Vec<(String, bool)>>>,
}

impl FaultyBackend {
    /// Wraps `inner` with `plan`.
    pub fn new(inner: Arc<dyn Backend>, plan: FaultPlan) -> Self {
        FaultyBackend {
            inner,
            plan: Arc::new(Mutex::new(plan)),
            matching_puts: Arc::default(),
            puts_in_flight: Arc::default(),
            reads: Arc::default(),
        }
    }

    /// Takes the record of keys read whole (without a range) since the last
    /// call (clearing the record of ranged reads too).
    pub fn take_whole_reads(&self) -> Vec<String> {
        self.take_reads()
            .into_iter()
            .filter_map(|(key, whole)| whole.then_some(key))
            .collect()
    }

    /// Takes the record of every read since the last call: key, and whether
    /// it was whole.
    pub fn take_reads(&self) -> Vec<(String, bool)> {
        std::mem::take(&mut *self.reads.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// The most puts that were ever running at once through this wrapper.
    pub fn peak_concurrent_puts(&self) -> usize {
        self.puts_in_flight.1.load(Ordering::SeqCst)
    }

    /// Replaces the plan (for example to let a destination recover).
    pub fn set_plan(&self, plan: FaultPlan) {
        *self.plan.lock().unwrap_or_else(|p| p.into_inner()) = plan;
        self.matching_puts.store(0, Ordering::SeqCst);
    }

    fn plan(&self) -> FaultPlan {
        self.plan.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Whether this put of `key` is one the plan fails (counting it).
    fn put_fails(&self, plan: &FaultPlan, key: &str) -> bool {
        if !plan
            .fail_put_prefix
            .as_ref()
            .is_some_and(|p| key.starts_with(p.as_str()))
        {
            return false;
        }
        let n = self.matching_puts.fetch_add(1, Ordering::SeqCst);
        n >= plan.put_after
            && plan
                .put_failures
                .is_none_or(|failures| n < plan.put_after + failures)
    }

    fn injected_put_failure(&self, plan: &FaultPlan, key: &str) -> BackendError {
        let kind = plan.put_error.unwrap_or(ErrorKind::Permanent);
        BackendError::new(kind, self.inner.name(), key, "injected put failure")
    }

    fn unreachable(&self, key: &str) -> BackendError {
        BackendError::new(
            ErrorKind::Transient,
            self.inner.name(),
            key,
            "injected: destination unreachable",
        )
    }
}

/// Counts a put as running until dropped (also when its future is cancelled).
struct InFlightPut<'a>(&'a (AtomicUsize, AtomicUsize));

impl<'a> InFlightPut<'a> {
    fn enter(counters: &'a (AtomicUsize, AtomicUsize)) -> Self {
        let running = counters.0.fetch_add(1, Ordering::SeqCst) + 1;
        counters.1.fetch_max(running, Ordering::SeqCst);
        InFlightPut(counters)
    }
}

impl Drop for InFlightPut<'_> {
    fn drop(&mut self) {
        self.0 .0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[async_trait]
impl Backend for FaultyBackend {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn location(&self) -> String {
        self.inner.location()
    }

    async fn put(&self, key: &str, data: Bytes) -> Result<()> {
        let plan = self.plan();
        if plan.unreachable {
            return Err(self.unreachable(key));
        }
        let fails = self.put_fails(&plan, key);
        if fails && !plan.put_lands {
            return Err(self.injected_put_failure(&plan, key));
        }
        let _running = InFlightPut::enter(&self.puts_in_flight);
        if let Some(delay) = plan.put_delay {
            tokio::time::sleep(delay).await;
        }
        self.inner.put(key, data).await?;
        if fails {
            return Err(self.injected_put_failure(&plan, key));
        }
        Ok(())
    }

    async fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<Bytes> {
        let whole = range.is_none();
        self.read_through(key, whole, self.inner.get(key, range))
            .await
    }

    async fn get_bounded(&self, key: &str, limit: u64) -> Result<Bytes> {
        self.read_through(key, true, self.inner.get_bounded(key, limit))
            .await
    }

    async fn stat(&self, key: &str) -> Result<ObjectMeta> {
        if self.plan().unreachable {
            return Err(self.unreachable(key));
        }
        self.inner.stat(key).await
    }

    fn list<'a>(&'a self, prefix: &'a str) -> BoxStream<'a, Result<ObjectMeta>> {
        if self.plan().unreachable {
            let err = self.unreachable(prefix);
            return Box::pin(futures::stream::once(async move { Err(err) }));
        }
        self.inner.list(prefix)
    }

    async fn delete(&self, key: &str) -> Result<()> {
        if self.plan().unreachable {
            return Err(self.unreachable(key));
        }
        self.inner.delete(key).await
    }
}

impl FaultyBackend {
    /// A read of `key` (`whole` or ranged) by `read`, through the plan:
    /// refused when unreachable, recorded, corrupted when the plan says so.
    async fn read_through(
        &self,
        key: &str,
        whole: bool,
        read: impl std::future::Future<Output = Result<Bytes>>,
    ) -> Result<Bytes> {
        let plan = self.plan();
        if plan.unreachable {
            return Err(self.unreachable(key));
        }
        self.reads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((key.to_string(), whole));
        let bytes = read.await?;
        if plan
            .corrupt_get_prefix
            .as_ref()
            .is_some_and(|p| key.starts_with(p.as_str()))
            && !bytes.is_empty()
        {
            let mut bad = bytes.to_vec();
            let middle = bad.len() / 2;
            bad[middle] ^= 0x10;
            return Ok(Bytes::from(bad));
        }
        Ok(bytes)
    }
}
