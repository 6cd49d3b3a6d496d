//! The destination set: every repository object is written to all
//! destinations and read from the first one that returns verified bytes.
//!
//! Degraded mode (ARCHITECTURE.md, invariant 4): a destination whose write fails
//! (after its backend's own retries) is dropped for the rest of the run with
//! a warning, and the others go on. Because a dropped destination receives
//! nothing more, every destination still in the set holds every object written
//! so far, so a snapshot committed there references only durable data. Reads
//! skip destinations found unreachable and fail over past missing or corrupt
//! copies.

use std::collections::HashSet;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use lifeboat_backends::{Backend, BackendError, ErrorKind, ObjectMeta};

use crate::error::{Error, Result};
use crate::format::ids::ObjectKind;

/// Packs uploaded to one destination at once unless configured otherwise.
pub const DEFAULT_UPLOADS: usize = 2;
/// The most concurrent pack uploads one destination may be given.
pub const MAX_UPLOADS: usize = 32;
/// Reads kept in flight to one destination by a walk or a restore unless
/// configured otherwise: enough to fill a link 20-100 ms away.
pub const DEFAULT_READS: usize = 32;
/// The most concurrent reads one destination may be given.
pub const MAX_READS: usize = 256;

/// Why a destination was left out of a run when the repository was opened,
/// before anything was read from or written to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeftOutReason {
    /// It holds no repository: an empty or missing directory or bucket (an
    /// unmounted disk, a typo in a path).
    NoRepository,
    /// It holds a different repository.
    OtherRepository,
    /// Its `config` names this repository but does not open with its keys.
    DamagedConfig,
    /// It could not be reached to check what it holds.
    Unreachable(String),
}

impl std::fmt::Display for LeftOutReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LeftOutReason::NoRepository => f.write_str(
                "holds no lifeboat repository (is the disk mounted and the path right?)",
            ),
            LeftOutReason::OtherRepository => f.write_str("holds a different repository"),
            LeftOutReason::DamagedConfig => f.write_str(
                "its config names this repository but does not open with its keys (damaged; `lifeboat sync --repair` replaces it)",
            ),
            LeftOutReason::Unreachable(why) => write!(f, "cannot be reached: {why}"),
        }
    }
}

/// A destination that is not part of this run: not this repository, or not
/// reachable to prove it is. Nothing is ever read from or written to it.
#[derive(Debug, Clone)]
pub struct LeftOut {
    /// The destination.
    pub backend: Arc<dyn Backend>,
    /// Why it was left out.
    pub reason: LeftOutReason,
}

impl LeftOut {
    /// The one-line warning for this destination.
    pub fn message(&self) -> String {
        let remedy = match self.reason {
            LeftOutReason::NoRepository => format!(
                "; `lifeboat sync --seed {}` copies the repository there",
                self.backend.name()
            ),
            _ => String::new(),
        };
        format!(
            "destination {} ({}) {}{remedy}; it is left out of this run and nothing is written there",
            self.backend.name(),
            self.backend.location(),
            self.reason
        )
    }
}

/// The destinations of one repository, in preference order.
///
/// Clones share the record of which destinations were dropped.
#[derive(Debug, Clone)]
pub struct DestinationSet {
    backends: Vec<Arc<dyn Backend>>,
    /// Per destination: packs uploaded at once during a backup.
    uploads: Vec<usize>,
    /// Per destination: reads kept in flight by walks and restores.
    reads: Vec<usize>,
    /// Per destination: why it was dropped during this run, if it was.
    dropped: Arc<Mutex<Vec<Option<String>>>>,
    /// Destinations taken out of the set when the repository was opened.
    left_out: Vec<LeftOut>,
    /// Every destination's name in the order the set was made with, left
    /// out ones included (reports list destinations in this order).
    order: Vec<String>,
    /// Destinations already warned about in this run for listing keys that
    /// are not Lifeboat objects.
    foreign_warned: Arc<Mutex<HashSet<String>>>,
}

impl DestinationSet {
    /// A set of one or more destinations.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for an empty set or duplicate names.
    pub fn new(backends: Vec<Arc<dyn Backend>>) -> Result<Self> {
        if backends.is_empty() {
            return Err(Error::InvalidInput("no destination given".into()));
        }
        for (i, b) in backends.iter().enumerate() {
            if backends[..i].iter().any(|o| o.name() == b.name()) {
                return Err(Error::InvalidInput(format!(
                    "two destinations are named {:?}; give them distinct names in the config file",
                    b.name()
                )));
            }
        }
        let dropped = Arc::new(Mutex::new(vec![None; backends.len()]));
        let uploads = vec![DEFAULT_UPLOADS; backends.len()];
        let reads = vec![DEFAULT_READS; backends.len()];
        let order = backends.iter().map(|b| b.name().to_string()).collect();
        Ok(DestinationSet {
            backends,
            uploads,
            reads,
            dropped,
            left_out: Vec::new(),
            order,
            foreign_warned: Arc::default(),
        })
    }

    /// The object names of `kind` among keys `destination` listed. A key
    /// that is not a valid object name (another program's file, or a name a
    /// hostile store made up) is skipped, with one warning per destination
    /// and run: it is never read, copied or trusted.
    pub fn object_names<'a>(
        &self,
        destination: &str,
        kind: ObjectKind,
        keys: impl IntoIterator<Item = &'a str>,
    ) -> Vec<String> {
        let mut names = Vec::new();
        let mut foreign = None;
        for key in keys {
            match kind.name_of(key) {
                Some(name) => names.push(name.to_string()),
                None => foreign = foreign.or(Some(key)),
            }
        }
        if let Some(key) = foreign {
            let mut warned = self
                .foreign_warned
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if warned.insert(destination.to_string()) {
                tracing::warn!(
                    "destination {destination} lists objects that are not Lifeboat's (for \
                     example {key:?}); they are ignored: `lifeboat check` lists them"
                );
            }
        }
        names
    }

    /// Takes destinations out of the set for good: they are no longer read,
    /// written, listed or locked, and [`DestinationSet::missed`] names them.
    /// Every destination may be left out; the caller decides whether the run
    /// can go on.
    pub fn leave_out(&mut self, names: &[(String, LeftOutReason)]) {
        let mut dropped = self.dropped_state().clone();
        let mut kept = Vec::new();
        let mut uploads = Vec::new();
        let mut reads = Vec::new();
        let mut kept_dropped = Vec::new();
        for (i, b) in self.backends.iter().enumerate() {
            match names.iter().find(|(n, _)| n == b.name()) {
                Some((_, reason)) => self.left_out.push(LeftOut {
                    backend: b.clone(),
                    reason: reason.clone(),
                }),
                None => {
                    kept.push(b.clone());
                    uploads.push(self.uploads[i]);
                    reads.push(self.reads[i]);
                    kept_dropped.push(dropped[i].take());
                }
            }
        }
        self.backends = kept;
        self.uploads = uploads;
        self.reads = reads;
        // A fresh record: clones made before this keep their own view.
        self.dropped = Arc::new(Mutex::new(kept_dropped));
    }

    /// A set of the named destination alone, with its upload limit and a
    /// fresh record of failures: reads never fail over to another.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when the set has no such destination (a
    /// left-out one is named with its reason).
    pub fn only(&self, name: &str) -> Result<DestinationSet> {
        if let Some(left) = self.left_out.iter().find(|l| l.backend.name() == name) {
            return Err(Error::InvalidInput(format!(
                "destination {name} {}; it cannot be read from",
                left.reason
            )));
        }
        let i = self.named(name)?;
        let mut set = DestinationSet::new(vec![self.backends[i].clone()])?;
        set.uploads = vec![self.uploads[i]];
        set.reads = vec![self.reads[i]];
        Ok(set)
    }

    /// Where the named destination stood in the order the set was made
    /// with (left-out ones included); unknown names sort last.
    pub fn position(&self, name: &str) -> usize {
        self.order
            .iter()
            .position(|n| n == name)
            .unwrap_or(usize::MAX)
    }

    /// The destinations left out when the repository was opened.
    pub fn left_out(&self) -> &[LeftOut] {
        &self.left_out
    }

    /// Sets how many packs the named destination uploads at once (clamped to
    /// 1..=[`MAX_UPLOADS`]): a far or slow provider wants more requests in
    /// flight than a local disk.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when no destination has that name.
    pub fn set_upload_limit(&mut self, name: &str, uploads: usize) -> Result<()> {
        let i = self.named(name)?;
        self.uploads[i] = uploads.clamp(1, MAX_UPLOADS);
        Ok(())
    }

    /// How many packs the named destination uploads at once.
    pub fn upload_limit(&self, name: &str) -> usize {
        self.named(name)
            .map_or(DEFAULT_UPLOADS, |i| self.uploads[i])
    }

    /// The position of the named destination.
    fn named(&self, name: &str) -> Result<usize> {
        self.backends
            .iter()
            .position(|b| b.name() == name)
            .ok_or_else(|| Error::InvalidInput(format!("no destination named {name:?}")))
    }

    /// Sets how many reads walks and restores keep in flight to the named
    /// destination (clamped to 1..=[`MAX_READS`]): the longer its round
    /// trip, the more it takes to fill the link.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when no destination has that name.
    pub fn set_read_limit(&mut self, name: &str, reads: usize) -> Result<()> {
        let i = self.named(name)?;
        self.reads[i] = reads.clamp(1, MAX_READS);
        Ok(())
    }

    /// How many reads walks and restores keep in flight to the named
    /// destination.
    pub fn read_limit(&self, name: &str) -> usize {
        self.named(name).map_or(DEFAULT_READS, |i| self.reads[i])
    }

    /// Reads to keep in flight for a walk that reads from the first
    /// destination of [`DestinationSet::read_order`].
    pub fn walk_reads(&self) -> usize {
        self.read_order()
            .first()
            .map_or(DEFAULT_READS, |b| self.read_limit(b.name()))
    }

    /// Every backend of the repository, in preference order (dropped ones
    /// included, left-out ones not).
    pub fn backends(&self) -> &[Arc<dyn Backend>] {
        &self.backends
    }

    /// The preferred destination (a left-out one when every one was).
    pub fn primary(&self) -> &Arc<dyn Backend> {
        match self.backends.first() {
            Some(b) => b,
            None => &self.left_out[0].backend,
        }
    }

    fn dropped_state(&self) -> std::sync::MutexGuard<'_, Vec<Option<String>>> {
        self.dropped.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The destinations not dropped, in preference order.
    pub fn healthy(&self) -> Vec<Arc<dyn Backend>> {
        let dropped = self.dropped_state();
        self.backends
            .iter()
            .zip(dropped.iter())
            .filter(|(_, d)| d.is_none())
            .map(|(b, _)| b.clone())
            .collect()
    }

    /// Names of the destinations still in the set.
    pub fn reached(&self) -> Vec<String> {
        self.healthy()
            .iter()
            .map(|b| b.name().to_string())
            .collect()
    }

    /// The destinations left out when the repository was opened and those
    /// dropped during this run, with the reason.
    pub fn missed(&self) -> Vec<(String, String)> {
        let dropped = self.dropped_state();
        let left_out = self
            .left_out
            .iter()
            .map(|l| (l.backend.name().to_string(), l.reason.to_string()));
        let dropped = self
            .backends
            .iter()
            .zip(dropped.iter())
            .filter_map(|(b, d)| d.as_ref().map(|why| (b.name().to_string(), why.clone())));
        left_out.chain(dropped).collect()
    }

    /// True when the named destination was dropped during this run.
    pub fn is_dropped(&self, name: &str) -> bool {
        let dropped = self.dropped_state();
        self.backends
            .iter()
            .zip(dropped.iter())
            .any(|(b, d)| b.name() == name && d.is_some())
    }

    /// Starts a new run: every destination is given another chance. (A
    /// process that opens the repository once per run never needs this.)
    pub fn reset_dropped(&self) {
        self.dropped_state().iter_mut().for_each(|d| *d = None);
    }

    /// Drops a destination for the rest of the run.
    pub fn drop_destination(&self, name: &str, why: &str) {
        let mut dropped = self.dropped_state();
        if let Ok(i) = self.named(name) {
            if dropped[i].is_none() {
                // Shown with -v: every command reports its missed destinations
                // once, in its summary or in the warning for a left-out one.
                tracing::info!(
                    "destination {name} failed and is left out for the rest of this run: {why}"
                );
                dropped[i] = Some(why.to_string());
            }
        }
    }

    /// Puts `data` on every healthy destination; a failing destination is
    /// dropped and the others go on.
    async fn put_tolerant(&self, key: &str, data: Bytes, existing_is_fine: bool) -> Result<()> {
        let targets = self.healthy();
        let puts = targets.iter().map(|b| {
            let data = data.clone();
            async move {
                match b.put(key, data).await {
                    Err(e) if existing_is_fine && e.kind == ErrorKind::AlreadyExists => Ok(()),
                    other => other,
                }
            }
        });
        let mut last_error = None;
        for (backend, result) in targets.iter().zip(futures::future::join_all(puts).await) {
            if let Err(e) = result {
                self.drop_destination(backend.name(), &e.to_string());
                last_error = Some(e);
            }
        }
        match (self.healthy().is_empty(), last_error) {
            (true, Some(e)) => Err(e.into()),
            (true, None) => Err(Error::no_destination(
                format!("write of {key}"),
                "every destination failed earlier in this run",
            )),
            (false, _) => Ok(()),
        }
    }

    /// Writes a content-named object to every healthy destination. An existing
    /// object under the same name holds the same bytes, so `AlreadyExists`
    /// counts as done.
    ///
    /// # Errors
    /// Only when no destination is left: the last failure.
    pub async fn put_content(&self, key: &str, data: Bytes) -> Result<()> {
        self.put_tolerant(key, data, true).await
    }

    /// Writes an object that must not exist yet (a lock) to every healthy
    /// destination.
    ///
    /// # Errors
    /// Only when no destination is left: the last failure.
    pub async fn put_new(&self, key: &str, data: Bytes) -> Result<()> {
        self.put_tolerant(key, data, false).await
    }

    /// Writes an object to every destination, all of which must succeed (used
    /// by `init`, which must create the same repository everywhere).
    ///
    /// # Errors
    /// The first failure, naming its destination.
    pub async fn put_everywhere(
        &self,
        key: &str,
        data: Bytes,
        existing_is_fine: bool,
    ) -> Result<()> {
        let puts = self.backends.iter().map(|b| b.put(key, data.clone()));
        for result in futures::future::join_all(puts).await {
            match result {
                Err(e) if existing_is_fine && e.kind == ErrorKind::AlreadyExists => {}
                other => other?,
            }
        }
        Ok(())
    }

    /// Reads the byte `range` of an object, verifying it with `verify`, from
    /// the first destination that has good bytes. A destination that cannot
    /// be reached is dropped for the rest of the run; a missing or bad copy
    /// moves on to the next.
    ///
    /// # Errors
    /// The last destination's failure when none has good bytes.
    pub async fn get_verified<T>(
        &self,
        key: &str,
        range: Range<u64>,
        verify: impl Fn(&str, Bytes) -> Result<T>,
    ) -> Result<T> {
        let fetch = |b: Arc<dyn Backend>| {
            let range = range.clone();
            async move { b.get(key, Some(range)).await }
        };
        self.read_verified(key, fetch, verify).await
    }

    /// Reads an object with `fetch` (a whole read bounded by its kind's
    /// maximum, or a range), verifying it with `verify`, from the first
    /// destination that has good bytes, as [`DestinationSet::get_verified`].
    /// A copy larger than its kind can be counts as a bad copy: it is
    /// reported like one and the next destination serves.
    ///
    /// # Errors
    /// The last destination's failure when none has good bytes.
    pub async fn read_verified<T, Fut>(
        &self,
        key: &str,
        fetch: impl Fn(Arc<dyn Backend>) -> Fut,
        verify: impl Fn(&str, Bytes) -> Result<T>,
    ) -> Result<T>
    where
        Fut: std::future::Future<Output = lifeboat_backends::Result<Bytes>>,
    {
        let mut last = None;
        for b in self.read_order() {
            match fetch(b.clone()).await {
                Ok(bytes) => match verify(b.name(), bytes) {
                    Ok(value) => return Ok(value),
                    Err(e) => {
                        tracing::warn!("{}: {key}: {e}", b.name());
                        last = Some(e);
                    }
                },
                Err(e) if e.is_too_large() => {
                    let e = oversized(&e);
                    tracing::warn!("{e}");
                    last = Some(e);
                }
                Err(e) => {
                    if e.kind == ErrorKind::Transient {
                        self.drop_destination(b.name(), &e.to_string());
                    }
                    last = Some(Error::Backend(e));
                }
            }
        }
        Err(last.unwrap_or_else(|| {
            Error::no_destination("read", "every destination failed earlier in this run")
        }))
    }

    /// Healthy destinations first, then dropped ones as a last resort.
    pub fn read_order(&self) -> Vec<Arc<dyn Backend>> {
        let mut order = self.healthy();
        for b in &self.backends {
            if !order.iter().any(|o| o.name() == b.name()) {
                order.push(b.clone());
            }
        }
        order
    }

    /// Lists one prefix on the first destination that answers; returns its
    /// name with the listing.
    ///
    /// # Errors
    /// The last failure when no destination answers.
    pub async fn list_primary(&self, prefix: &str) -> Result<(String, Vec<ObjectMeta>)> {
        let mut last = None;
        for b in self.read_order() {
            match list_all(b.as_ref(), prefix).await {
                Ok(list) => return Ok((b.name().to_string(), list)),
                Err(e) => {
                    if let Error::Backend(be) = &e {
                        if be.kind == ErrorKind::Transient {
                            self.drop_destination(b.name(), &be.to_string());
                        }
                    }
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| {
            Error::no_destination("read", "every destination failed earlier in this run")
        }))
    }

    /// Deletes an object on every healthy destination; a missing object is not
    /// an error.
    ///
    /// # Errors
    /// The first failure other than `NotFound`.
    pub async fn delete_everywhere(&self, key: &str) -> Result<()> {
        for b in self.healthy() {
            match b.delete(key).await {
                Ok(()) => {}
                Err(e) if e.kind == ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

/// The error for a copy a bounded read refused as larger than its kind can
/// be: stored bytes that fail, like a copy that does not match its name.
pub(crate) fn oversized(e: &BackendError) -> Error {
    Error::format(format!("{}: {}", e.destination, e.key), e.detail.clone())
}

/// Collects a whole listing.
///
/// # Errors
/// The listing's failure.
pub async fn list_all(backend: &dyn Backend, prefix: &str) -> Result<Vec<ObjectMeta>> {
    backend
        .list(prefix)
        .map_err(Error::from)
        .try_collect::<Vec<_>>()
        .await
}

/// Counts objects and bytes under a prefix without holding the listing.
///
/// # Errors
/// The listing's failure.
pub async fn count(backend: &dyn Backend, prefix: &str) -> Result<(u64, u64), BackendError> {
    let mut stream = backend.list(prefix);
    let (mut n, mut bytes) = (0, 0);
    while let Some(item) = stream.next().await {
        let meta = item?;
        n += 1;
        bytes += meta.size;
    }
    Ok((n, bytes))
}
