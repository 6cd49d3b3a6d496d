//! The destination set: every repository object is written to all
//! destinations and read from the first one that returns verified bytes.
//!
//! This version writes to every destination and fails the write if any
//! fails; degraded mode (commit where possible, record the lag) comes with the
//! multi-destination work.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use lifeboat_backends::{Backend, BackendError, ErrorKind, ObjectMeta};

use crate::error::{Error, Result};

/// The destinations of one repository, in preference order.
#[derive(Debug, Clone)]
pub struct DestinationSet {
    backends: Vec<Arc<dyn Backend>>,
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
        Ok(DestinationSet { backends })
    }

    /// The backends, in preference order.
    pub fn backends(&self) -> &[Arc<dyn Backend>] {
        &self.backends
    }

    /// The preferred destination.
    pub fn primary(&self) -> &Arc<dyn Backend> {
        &self.backends[0]
    }

    /// Writes a content-named object to every destination. An existing object
    /// under the same name holds the same bytes, so `AlreadyExists` counts as done.
    ///
    /// # Errors
    /// The first destination's failure.
    pub async fn put_content(&self, key: &str, data: Bytes) -> Result<()> {
        let puts = self.backends.iter().map(|b| {
            let data = data.clone();
            async move {
                match b.put(key, data).await {
                    Err(e) if e.kind == ErrorKind::AlreadyExists => Ok(()),
                    other => other,
                }
            }
        });
        for result in futures::future::join_all(puts).await {
            result?;
        }
        Ok(())
    }

    /// Writes an object that must not exist yet on any destination.
    ///
    /// # Errors
    /// `AlreadyExists` or a storage failure from any destination.
    pub async fn put_new(&self, key: &str, data: Bytes) -> Result<()> {
        let puts = self.backends.iter().map(|b| b.put(key, data.clone()));
        for result in futures::future::join_all(puts).await {
            result?;
        }
        Ok(())
    }

    /// Reads an object, verifying it with `verify`, from the first destination
    /// that has good bytes; a failure on one destination moves on to the next.
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
        for b in &self.backends {
            match b.get(key, range.clone()).await {
                Ok(bytes) => match verify(b.name(), bytes) {
                    Ok(value) => return Ok(value),
                    Err(e) => {
                        tracing::warn!("{}: {key}: {e}", b.name());
                        last = Some(e);
                    }
                },
                Err(e) => last = Some(Error::Backend(e)),
            }
        }
        Err(last.unwrap_or_else(|| Error::InvalidInput("no destination".into())))
    }

    /// Lists one prefix on the preferred destination.
    ///
    /// # Errors
    /// The listing's failure.
    pub async fn list_primary(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        list_all(self.primary().as_ref(), prefix).await
    }

    /// Deletes an object on every destination; a missing object is not an error.
    ///
    /// # Errors
    /// The first failure other than `NotFound`.
    pub async fn delete_everywhere(&self, key: &str) -> Result<()> {
        for b in &self.backends {
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
