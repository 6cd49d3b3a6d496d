//! A seeded fault schedule around a real backend, for the fault matrix: calls
//! fail (transiently or for good), wait, hang and then time out, writes are
//! cut short while the provider claims success, reads come back truncated or
//! with a flipped bit, and listings name objects that do not exist.
//!
//! Every decision is a hash of the seed, the operation, the key and how many
//! times that operation has been applied to that key, so a run replays exactly
//! from its seed whatever order concurrent calls arrive in.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;

use crate::backend::{Backend, ObjectMeta};
use crate::error::{BackendError, ErrorKind, Result};

/// What goes wrong, and how often (each rate is a probability per call).
#[derive(Debug, Clone, Default)]
pub struct Chaos {
    /// Seed of every decision.
    pub seed: u64,
    /// Calls that fail with a transient error (a retry may succeed).
    pub transient: f64,
    /// Calls that fail with a permanent error.
    pub permanent: f64,
    /// Calls that first wait up to `max_delay`.
    pub delay: f64,
    /// Longest injected delay.
    pub max_delay: Duration,
    /// Calls that hang for `hang_for`, then fail as timed out (transient).
    pub hang: f64,
    /// How long a hanging call waits.
    pub hang_for: Duration,
    /// Puts that store only a prefix of the bytes yet report success.
    pub short_write: f64,
    /// Gets that return their bytes with one bit flipped.
    pub flip_read: f64,
    /// Gets that return only a prefix of their bytes.
    pub truncate_read: f64,
    /// Listings that also name an object that does not exist.
    pub phantom_list: f64,
    /// After this many calls in all, every call fails permanently (the
    /// provider is gone). Counted across concurrent calls, so this one knob
    /// depends on their order.
    pub dead_after: Option<u64>,
    /// Only keys starting with this prefix are touched (`None`: every key).
    pub prefix: Option<String>,
}

/// How many faults of each kind were injected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChaosCounts {
    /// Transient failures (hangs included).
    pub transient: u64,
    /// Permanent failures.
    pub permanent: u64,
    /// Writes cut short.
    pub short_writes: u64,
    /// Reads corrupted (flipped or truncated).
    pub bad_reads: u64,
    /// Phantom names listed.
    pub phantoms: u64,
}

/// The reads a [`ChaosBackend`] saw, for tests of how a walk reads.
#[derive(Debug, Clone, Default)]
pub struct Traffic {
    /// Gets per key.
    pub gets: HashMap<String, u64>,
    /// The most gets that were in progress at once.
    pub peak_gets: u64,
}

impl Traffic {
    /// Gets of keys that `wanted` accepts.
    pub fn gets_where(&self, wanted: impl Fn(&str) -> bool) -> u64 {
        self.gets
            .iter()
            .filter(|(k, _)| wanted(k))
            .map(|(_, n)| n)
            .sum()
    }
}

/// Counts a get in progress until dropped.
struct InFlight<'a>(&'a Mutex<(u64, Traffic)>);

impl<'a> InFlight<'a> {
    fn enter(state: &'a Mutex<(u64, Traffic)>, key: &str) -> Self {
        let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
        s.0 += 1;
        s.1.peak_gets = s.1.peak_gets.max(s.0);
        *s.1.gets.entry(key.to_string()).or_insert(0) += 1;
        InFlight(state)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).0 -= 1;
    }
}

/// A backend that follows a [`Chaos`] schedule.
#[derive(Debug, Clone)]
pub struct ChaosBackend {
    inner: Arc<dyn Backend>,
    chaos: Arc<Mutex<Chaos>>,
    /// Per (operation, key): calls so far.
    seen: Arc<Mutex<HashMap<(u8, String), u64>>>,
    calls: Arc<AtomicU64>,
    counts: Arc<Mutex<ChaosCounts>>,
    /// Gets in progress now, and the traffic since the last reset.
    traffic: Arc<Mutex<(u64, Traffic)>>,
}

/// Operations, as they enter the decision hash.
const PUT: u8 = 1;
const GET: u8 = 2;
const STAT: u8 = 3;
const LIST: u8 = 4;
const DELETE: u8 = 5;

impl ChaosBackend {
    /// Wraps `inner` with `chaos`.
    pub fn new(inner: Arc<dyn Backend>, chaos: Chaos) -> Self {
        ChaosBackend {
            inner,
            chaos: Arc::new(Mutex::new(chaos)),
            seen: Arc::default(),
            calls: Arc::default(),
            counts: Arc::default(),
            traffic: Arc::default(),
        }
    }

    /// The gets seen since the last [`ChaosBackend::reset_traffic`].
    pub fn traffic(&self) -> Traffic {
        self.traffic
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .1
            .clone()
    }

    /// Starts counting gets afresh.
    pub fn reset_traffic(&self) {
        self.traffic.lock().unwrap_or_else(|p| p.into_inner()).1 = Traffic::default();
    }

    /// Replaces the schedule (for example to let the provider recover).
    pub fn set_chaos(&self, chaos: Chaos) {
        *self.chaos.lock().unwrap_or_else(|p| p.into_inner()) = chaos;
        self.calls.store(0, Ordering::SeqCst);
    }

    /// Faults injected so far.
    pub fn counts(&self) -> ChaosCounts {
        *self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn chaos(&self) -> Chaos {
        self.chaos.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn count(&self, f: impl FnOnce(&mut ChaosCounts)) {
        f(&mut self.counts.lock().unwrap_or_else(|p| p.into_inner()));
    }

    /// The dice for one call: a function returning a uniform number in
    /// [0, 1) for each question asked about it.
    fn dice(&self, chaos: &Chaos, op: u8, key: &str) -> impl Fn(&str) -> f64 {
        let n = {
            let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            let entry = seen.entry((op, key.to_string())).or_insert(0);
            *entry += 1;
            *entry
        };
        let mut base = blake3::Hasher::new();
        base.update(&chaos.seed.to_le_bytes());
        base.update(&[op]);
        base.update(key.as_bytes());
        base.update(&n.to_le_bytes());
        move |question: &str| {
            let mut h = base.clone();
            h.update(question.as_bytes());
            let bytes = h.finalize();
            let mut eight = [0u8; 8];
            eight.copy_from_slice(&bytes.as_bytes()[..8]);
            (u64::from_le_bytes(eight) >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    /// Applies the call-level faults (death, failures, delays, hangs).
    async fn before(&self, op: u8, key: &str) -> Result<Option<(Chaos, impl Fn(&str) -> f64)>> {
        let chaos = self.chaos();
        if chaos.prefix.as_deref().is_some_and(|p| !key.starts_with(p)) {
            return Ok(None);
        }
        let calls = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        let fail = |kind, what: &str| BackendError::new(kind, self.inner.name(), key, what);
        if chaos.dead_after.is_some_and(|limit| calls > limit) {
            self.count(|c| c.permanent += 1);
            return Err(fail(ErrorKind::Permanent, "injected: provider gone"));
        }
        let roll = self.dice(&chaos, op, key);
        if roll("delay") < chaos.delay {
            tokio::time::sleep(chaos.max_delay.mul_f64(roll("delay length"))).await;
        }
        if roll("hang") < chaos.hang {
            tokio::time::sleep(chaos.hang_for).await;
            self.count(|c| c.transient += 1);
            return Err(fail(ErrorKind::Transient, "injected: request timed out"));
        }
        if roll("permanent") < chaos.permanent {
            self.count(|c| c.permanent += 1);
            return Err(fail(ErrorKind::Permanent, "injected: permanent failure"));
        }
        if roll("transient") < chaos.transient {
            self.count(|c| c.transient += 1);
            return Err(fail(ErrorKind::Transient, "injected: transient failure"));
        }
        Ok(Some((chaos, roll)))
    }
}

#[async_trait]
impl Backend for ChaosBackend {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn location(&self) -> String {
        self.inner.location()
    }

    async fn put(&self, key: &str, data: Bytes) -> Result<()> {
        let Some((chaos, roll)) = self.before(PUT, key).await? else {
            return self.inner.put(key, data).await;
        };
        if data.len() > 1 && roll("short write") < chaos.short_write {
            self.count(|c| c.short_writes += 1);
            let cut = 1 + (roll("cut at") * (data.len() - 1) as f64) as usize;
            return self.inner.put(key, data.slice(..cut)).await;
        }
        self.inner.put(key, data).await
    }

    async fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<Bytes> {
        self.read_through(key, self.inner.get(key, range)).await
    }

    async fn get_bounded(&self, key: &str, limit: u64) -> Result<Bytes> {
        self.read_through(key, self.inner.get_bounded(key, limit))
            .await
    }

    async fn stat(&self, key: &str) -> Result<ObjectMeta> {
        if self.before(STAT, key).await?.is_none() {
            return self.inner.stat(key).await;
        }
        self.inner.stat(key).await
    }

    fn list<'a>(&'a self, prefix: &'a str) -> BoxStream<'a, Result<ObjectMeta>> {
        let this = self.clone();
        let prefix_owned = prefix.to_string();
        let head = futures::stream::once(async move {
            match this.before(LIST, &prefix_owned).await {
                Err(e) => Err(e),
                Ok(None) => Ok(None),
                Ok(Some((chaos, roll))) => {
                    if roll("phantom") < chaos.phantom_list {
                        this.count(|c| c.phantoms += 1);
                        // A well-formed name nothing was ever stored under.
                        let name = blake3::hash(
                            format!("phantom {prefix_owned} {}", chaos.seed).as_bytes(),
                        )
                        .to_hex()
                        .to_string();
                        let key = if prefix_owned.starts_with("data") {
                            format!("data/{}/{name}", &name[..2])
                        } else {
                            format!("{prefix_owned}{name}")
                        };
                        Ok(Some(ObjectMeta { key, size: 4096 }))
                    } else {
                        Ok(None)
                    }
                }
            }
        });
        let inner = self.inner.list(prefix);
        Box::pin(
            head.filter_map(|item| async move {
                match item {
                    Ok(None) => None,
                    Ok(Some(meta)) => Some(Ok(meta)),
                    Err(e) => Some(Err(e)),
                }
            })
            .chain(inner),
        )
    }

    async fn delete(&self, key: &str) -> Result<()> {
        if self.before(DELETE, key).await?.is_none() {
            return self.inner.delete(key).await;
        }
        self.inner.delete(key).await
    }
}

impl ChaosBackend {
    /// A get of `key` by `read`, through the schedule: counted, maybe
    /// failed, delayed or hung first, its bytes maybe flipped or cut after.
    async fn read_through(
        &self,
        key: &str,
        read: impl std::future::Future<Output = Result<Bytes>>,
    ) -> Result<Bytes> {
        let _in_flight = InFlight::enter(&self.traffic, key);
        let Some((chaos, roll)) = self.before(GET, key).await? else {
            return read.await;
        };
        let bytes = read.await?;
        if bytes.is_empty() {
            return Ok(bytes);
        }
        if roll("flip") < chaos.flip_read {
            self.count(|c| c.bad_reads += 1);
            let mut bad = bytes.to_vec();
            let at = ((roll("flip at") * bad.len() as f64) as usize).min(bad.len() - 1);
            bad[at] ^= 1 << ((roll("flip bit") * 8.0) as u32 % 8);
            return Ok(Bytes::from(bad));
        }
        if roll("truncate") < chaos.truncate_read {
            self.count(|c| c.bad_reads += 1);
            let keep = (roll("keep") * bytes.len() as f64) as usize;
            return Ok(bytes.slice(..keep));
        }
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryBackend;

    async fn run(seed: u64) -> (Vec<bool>, ChaosCounts) {
        let memory = Arc::new(MemoryBackend::new("m"));
        for i in 0..50 {
            memory
                .put(&format!("k{i}"), Bytes::from(vec![7u8; 100]))
                .await
                .unwrap();
        }
        let chaos = ChaosBackend::new(
            memory,
            Chaos {
                seed,
                transient: 0.3,
                flip_read: 0.2,
                ..Default::default()
            },
        );
        let mut outcomes = Vec::new();
        for i in 0..50 {
            let got = chaos.get(&format!("k{i}"), None).await;
            outcomes.push(got.is_ok_and(|b| b.iter().all(|&x| x == 7)));
        }
        (outcomes, chaos.counts())
    }

    #[tokio::test]
    async fn the_same_seed_replays_the_same_faults() {
        let (a, counts) = run(7).await;
        let (b, again) = run(7).await;
        assert_eq!(a, b);
        assert_eq!(counts, again);
        // Roughly 30 % transient and 20 % of the rest corrupted.
        assert!((5..=25).contains(&counts.transient), "{counts:?}");
        assert!(counts.bad_reads >= 2, "{counts:?}");
        let (c, _) = run(8).await;
        assert_ne!(a, c, "another seed, other faults");
    }

    #[tokio::test]
    async fn short_writes_lie_and_phantoms_do_not_exist() {
        let memory = Arc::new(MemoryBackend::new("m"));
        let chaos = ChaosBackend::new(
            memory.clone(),
            Chaos {
                seed: 1,
                short_write: 1.0,
                phantom_list: 1.0,
                ..Default::default()
            },
        );
        chaos
            .put("a/x", Bytes::from(vec![1u8; 1000]))
            .await
            .unwrap();
        assert!(memory.get("a/x", None).await.unwrap().len() < 1000);
        let listed: Vec<ObjectMeta> = chaos.list("a/").map(|m| m.unwrap()).collect().await;
        assert_eq!(listed.len(), 2);
        let phantom = listed.iter().find(|m| m.key != "a/x").unwrap();
        assert!(chaos
            .get(&phantom.key, None)
            .await
            .unwrap_err()
            .is_not_found());
    }
}
