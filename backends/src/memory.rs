//! An in-memory destination: for tests and as the conformance suite's reference.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};

use crate::backend::{resolve_range, validate_key, Backend, ObjectMeta};
use crate::error::{BackendError, ErrorKind, Result};

/// A repository held in a map; clones share the same objects.
#[derive(Debug, Clone, Default)]
pub struct MemoryBackend {
    name: String,
    objects: Arc<Mutex<BTreeMap<String, Bytes>>>,
}

impl MemoryBackend {
    /// An empty in-memory destination called `name`.
    pub fn new(name: impl Into<String>) -> Self {
        MemoryBackend {
            name: name.into(),
            objects: Arc::default(),
        }
    }

    fn objects(&self) -> MutexGuard<'_, BTreeMap<String, Bytes>> {
        // A poisoned map still holds consistent whole objects: inserts are single calls.
        self.objects.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn check_key(&self, key: &str) -> Result<()> {
        if validate_key(key) {
            Ok(())
        } else {
            Err(BackendError::new(
                ErrorKind::Permanent,
                &self.name,
                key,
                "invalid object key",
            ))
        }
    }

    fn not_found(&self, key: &str) -> BackendError {
        BackendError::new(ErrorKind::NotFound, &self.name, key, "")
    }
}

#[async_trait]
impl Backend for MemoryBackend {
    fn name(&self) -> &str {
        &self.name
    }

    fn location(&self) -> String {
        format!("memory:{}", self.name)
    }

    async fn put(&self, key: &str, data: Bytes) -> Result<()> {
        self.check_key(key)?;
        let mut objects = self.objects();
        if objects.contains_key(key) {
            return Err(BackendError::new(
                ErrorKind::AlreadyExists,
                &self.name,
                key,
                "",
            ));
        }
        objects.insert(key.to_string(), data);
        Ok(())
    }

    async fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<Bytes> {
        self.check_key(key)?;
        let data = self
            .objects()
            .get(key)
            .cloned()
            .ok_or_else(|| self.not_found(key))?;
        let (range, _) = resolve_range(&self.name, key, range, data.len() as u64)?;
        Ok(data.slice(range.start as usize..range.end as usize))
    }

    async fn get_bounded(&self, key: &str, limit: u64) -> Result<Bytes> {
        self.check_key(key)?;
        let data = self
            .objects()
            .get(key)
            .cloned()
            .ok_or_else(|| self.not_found(key))?;
        if data.len() as u64 > limit {
            return Err(BackendError::too_large(
                &self.name,
                key,
                Some(data.len() as u64),
                limit,
            ));
        }
        Ok(data)
    }

    async fn stat(&self, key: &str) -> Result<ObjectMeta> {
        self.check_key(key)?;
        let size = self
            .objects()
            .get(key)
            .map(|d| d.len() as u64)
            .ok_or_else(|| self.not_found(key))?;
        Ok(ObjectMeta {
            key: key.to_string(),
            size,
        })
    }

    fn list<'a>(&'a self, prefix: &'a str) -> BoxStream<'a, Result<ObjectMeta>> {
        let items: Vec<Result<ObjectMeta>> = self
            .objects()
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| {
                Ok(ObjectMeta {
                    key: k.clone(),
                    size: v.len() as u64,
                })
            })
            .collect();
        stream::iter(items).boxed()
    }

    async fn delete(&self, key: &str) -> Result<()> {
        self.check_key(key)?;
        self.objects()
            .remove(key)
            .map(|_| ())
            .ok_or_else(|| self.not_found(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The whole conformance suite on the reference backend, bounded reads
    // included, without the tests crate.
    crate::conformance_suite!(async { Box::new(MemoryBackend::new("memory")) as Box<dyn Backend> });
}
