//! The destination set: every repository object is written to all
//! destinations and read from the first one that returns verified bytes.
//!
//! Degraded mode (DESIGN.md invariant 4): a destination whose write fails
//! (after its backend's own retries) is dropped for the rest of the run with
//! a warning, and the others go on. Because a dropped destination receives
//! nothing more, every destination still in the set holds every object written
//! so far, so a snapshot committed there references only durable data. Reads
//! skip destinations found unreachable and fail over past missing or corrupt
//! copies.

use std::ops::Range;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use lifeboat_backends::{Backend, BackendError, ErrorKind, ObjectMeta};

use crate::error::{Error, Result};

/// Packs uploaded to one destination at once unless configured otherwise.
pub const DEFAULT_UPLOADS: usize = 2;
/// The most concurrent pack uploads one destination may be given.
pub const MAX_UPLOADS: usize = 32;

/// The destinations of one repository, in preference order.
///
/// Clones share the record of which destinations were dropped.
#[derive(Debug, Clone)]
pub struct DestinationSet {
    backends: Vec<Arc<dyn Backend>>,
    /// Per destination: packs uploaded at once during a backup.
    uploads: Vec<usize>,
    /// Per destination: why it was dropped during this run, if it was.
    dropped: Arc<Mutex<Vec<Option<String>>>>,
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
        Ok(DestinationSet {
            backends,
            uploads,
            dropped,
        })
    }

    /// Sets how many packs the named destination uploads at once (clamped to
    /// 1..=[`MAX_UPLOADS`]): a far or slow provider wants more requests in
    /// flight than a local disk.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when no destination has that name.
    pub fn set_upload_limit(&mut self, name: &str, uploads: usize) -> Result<()> {
        let Some(i) = self.backends.iter().position(|b| b.name() == name) else {
            return Err(Error::InvalidInput(format!(
                "no destination named {name:?}"
            )));
        };
        self.uploads[i] = uploads.clamp(1, MAX_UPLOADS);
        Ok(())
    }

    /// How many packs the named destination uploads at once.
    pub fn upload_limit(&self, name: &str) -> usize {
        self.backends
            .iter()
            .position(|b| b.name() == name)
            .map_or(DEFAULT_UPLOADS, |i| self.uploads[i])
    }

    /// Every backend, in preference order (dropped ones included).
    pub fn backends(&self) -> &[Arc<dyn Backend>] {
        &self.backends
    }

    /// The preferred destination.
    pub fn primary(&self) -> &Arc<dyn Backend> {
        &self.backends[0]
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

    /// The destinations dropped during this run, with the reason.
    pub fn missed(&self) -> Vec<(String, String)> {
        let dropped = self.dropped_state();
        self.backends
            .iter()
            .zip(dropped.iter())
            .filter_map(|(b, d)| d.as_ref().map(|why| (b.name().to_string(), why.clone())))
            .collect()
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
        if let Some(i) = self.backends.iter().position(|b| b.name() == name) {
            if dropped[i].is_none() {
                tracing::warn!(
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
            (true, None) => Err(Error::InvalidInput("every destination has failed".into())),
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

    /// Reads an object, verifying it with `verify`, from the first destination
    /// that has good bytes. A destination that cannot be reached is dropped
    /// for the rest of the run; a missing or bad copy moves on to the next.
    ///
    /// # Errors
    /// The last destination's failure when none has good bytes.
    pub async fn get_verified<T>(
        &self,
        key: &str,
        range: Option<Range<u64>>,
        verify: impl Fn(&str, Bytes) -> Result<T>,
    ) -> Result<T> {
        let mut last = None;
        for b in self.read_order() {
            match b.get(key, range.clone()).await {
                Ok(bytes) => match verify(b.name(), bytes) {
                    Ok(value) => return Ok(value),
                    Err(e) => {
                        tracing::warn!("{}: {key}: {e}", b.name());
                        last = Some(e);
                    }
                },
                Err(e) => {
                    if e.kind == ErrorKind::Transient {
                        self.drop_destination(b.name(), &e.to_string());
                    }
                    last = Some(Error::Backend(e));
                }
            }
        }
        Err(last.unwrap_or_else(|| Error::InvalidInput("no destination".into())))
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

    /// Lists one prefix on the first destination that answers.
    ///
    /// # Errors
    /// The last failure when no destination answers.
    pub async fn list_primary(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        let mut last = None;
        for b in self.read_order() {
            match list_all(b.as_ref(), prefix).await {
                Ok(list) => return Ok(list),
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
        Err(last.unwrap_or_else(|| Error::InvalidInput("no destination".into())))
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
