//! Reading one batch of a pack's trees: from memory (a pack read whole
//! earlier), the metadata cache, the whole pack, or coalesced ranges, each
//! with failover between destinations. Opening and decoding run off the
//! async workers.

use bytes::Bytes;

use super::Key;
use crate::error::{Error, Result};
use crate::format::ids::{ObjectKind, PackId};
use crate::format::pack::{coalesce, open_blob, PackEntry};
use crate::format::tree::Tree;
use crate::repo::{verify_named, Repository};

/// Trees of one pack to read, and how.
pub(super) struct Batch {
    pub pack: PackId,
    pub entries: Vec<(Key, PackEntry)>,
    /// The pack's bytes, already read whole.
    pub held: Option<Bytes>,
    /// Read the whole pack (its first this many bytes are its blobs).
    pub whole: bool,
}

/// What a batch brought back.
pub(super) struct Fetched {
    pub pack: PackId,
    /// The whole pack, when it was read whole and verified.
    pub whole: Option<Bytes>,
    pub trees: Vec<(Key, Result<Tree>)>,
}

/// Reads and decodes `batch`.
pub(super) async fn fetch(repo: Repository, batch: Batch) -> Fetched {
    let Batch {
        pack,
        entries,
        held,
        whole,
    } = batch;
    if let Some(bytes) = held {
        let trees = open_all(&repo, pack, bytes, entries).await;
        return Fetched {
            pack,
            whole: None,
            trees,
        };
    }
    let (mut trees, misses) = from_cache(&repo, pack, entries).await;
    if misses.is_empty() {
        return Fetched {
            pack,
            whole: None,
            trees,
        };
    }
    let mut whole_bytes = None;
    let mut misses = misses;
    if whole {
        match read_whole(&repo, pack).await {
            Ok(bytes) => {
                if let Some(cache) = repo.cache() {
                    let (cache, bytes) = (cache.clone(), bytes.clone());
                    // Best effort: a failed cache write only costs a download.
                    let _ = tokio::task::spawn_blocking(move || cache.put_tree_pack(&pack, &bytes))
                        .await;
                }
                trees.extend(
                    open_all(&repo, pack, bytes.clone(), std::mem::take(&mut misses)).await,
                );
                whole_bytes = Some(bytes);
            }
            // Every copy damaged somewhere, or unreachable: the wanted trees
            // may still read intact one range at a time.
            Err(e) => tracing::debug!("pack {pack}: whole read failed ({e}); reading ranges"),
        }
    }
    if !misses.is_empty() {
        trees.extend(read_ranges(&repo, pack, misses).await);
    }
    Fetched {
        pack,
        whole: whole_bytes,
        trees,
    }
}

/// The whole pack, verified against its name.
async fn read_whole(repo: &Repository, pack: PackId) -> Result<Bytes> {
    let key = ObjectKind::Pack.key(&pack.to_hex());
    let fetch = |b: std::sync::Arc<dyn lifeboat_backends::Backend>| {
        let key = &key;
        async move { repo.read_whole(b.as_ref(), ObjectKind::Pack, key).await }
    };
    repo.destinations()
        .read_verified(&key, fetch, |dest, bytes| {
            verify_named(dest, &key, ObjectKind::Pack, &bytes)?;
            Ok(bytes)
        })
        .await
}

/// Opens and decodes `entries` from a pack's bytes (starting at offset 0).
async fn open_all(
    repo: &Repository,
    pack: PackId,
    bytes: Bytes,
    entries: Vec<(Key, PackEntry)>,
) -> Vec<(Key, Result<Tree>)> {
    let keys = repo.keys().clone();
    let keys_of: Vec<Key> = entries.iter().map(|(k, _)| k.clone()).collect();
    let opened = tokio::task::spawn_blocking(move || {
        entries
            .into_iter()
            .map(|(key, entry)| {
                let start = entry.offset as usize;
                let sealed = bytes.get(start..start + entry.length as usize);
                let tree = match sealed {
                    Some(sealed) => open_tree(&keys, &pack, &entry, sealed),
                    None => Err(Error::format(
                        format!("pack {pack}"),
                        format!("blob {} lies past the pack's end", entry.id),
                    )),
                };
                (key, tree)
            })
            .collect()
    })
    .await;
    opened.unwrap_or_else(|e| failed_all(keys_of, &format!("tree decoding thread failed: {e}")))
}

fn open_tree(
    keys: &crate::format::crypto::MasterKeys,
    pack: &PackId,
    entry: &PackEntry,
    sealed: &[u8],
) -> Result<Tree> {
    let plain = open_blob(keys, pack, entry, sealed)?;
    Tree::decode(&entry.id, &plain)
}

/// Trees found intact in the metadata cache, and the entries still to read.
async fn from_cache(
    repo: &Repository,
    pack: PackId,
    entries: Vec<(Key, PackEntry)>,
) -> (Vec<(Key, Result<Tree>)>, Vec<(Key, PackEntry)>) {
    let Some(cache) = repo.cache().cloned() else {
        return (Vec::new(), entries);
    };
    let keys = repo.keys().clone();
    let backup = entries.clone();
    let found = tokio::task::spawn_blocking(move || {
        let (mut hits, mut misses) = (Vec::new(), Vec::new());
        // One look for the pack, not a failed open per tree.
        let mut whole_pack = cache.has_tree_pack(&pack);
        for (key, entry) in entries {
            let from_pack = whole_pack
                .then(|| cache.tree_from_pack(&pack, entry.offset, entry.length))
                .flatten()
                .map(|sealed| open_tree(&keys, &pack, &entry, &sealed));
            match from_pack {
                Some(Ok(tree)) => {
                    hits.push((key, Ok(tree)));
                    continue;
                }
                Some(Err(_)) => {
                    cache.forget_tree_pack(&pack);
                    whole_pack = false;
                }
                None => {}
            }
            match cache
                .tree(&entry.id)
                .map(|sealed| open_tree(&keys, &pack, &entry, &sealed))
            {
                Some(Ok(tree)) => hits.push((key, Ok(tree))),
                Some(Err(_)) => {
                    cache.forget_tree(&entry.id);
                    misses.push((key, entry));
                }
                None => misses.push((key, entry)),
            }
        }
        (hits, misses)
    })
    .await;
    found.unwrap_or((Vec::new(), backup))
}

/// Reads `entries` in coalesced ranges, concurrently; a range that no
/// destination holds intact is retried blob by blob, so one damaged tree
/// does not take its neighbours with it.
async fn read_ranges(
    repo: &Repository,
    pack: PackId,
    mut entries: Vec<(Key, PackEntry)>,
) -> Vec<(Key, Result<Tree>)> {
    entries.sort_by_key(|(_, e)| e.offset);
    let runs = coalesce(entries, |(_, e)| e);
    let reads = runs.into_iter().map(|run| async move {
        match read_run(repo, pack, &run).await {
            Ok(trees) => trees,
            Err(_) if run.len() > 1 => {
                let singles = run.into_iter().map(|one| async move {
                    let key = one.0.clone();
                    match read_run(repo, pack, std::slice::from_ref(&one)).await {
                        Ok(mut trees) => trees.pop().unwrap_or((key, Err(Error::Interrupted))),
                        Err(e) => (key, Err(e)),
                    }
                });
                futures::future::join_all(singles).await
            }
            Err(e) => run
                .into_iter()
                .map(|(key, _)| (key, Err(duplicate(&e))))
                .collect(),
        }
    });
    futures::future::join_all(reads)
        .await
        .into_iter()
        .flatten()
        .collect()
}

/// One ranged read of `run` (sorted by offset), every blob opened and
/// decoded; the first destination whose bytes all open wins.
async fn read_run(
    repo: &Repository,
    pack: PackId,
    run: &[(Key, PackEntry)],
) -> Result<Vec<(Key, Result<Tree>)>> {
    let (Some((_, first)), Some((_, last))) = (run.first(), run.last()) else {
        return Ok(Vec::new());
    };
    let start = u64::from(first.offset);
    let end = u64::from(last.offset) + u64::from(last.length);
    let key = ObjectKind::Pack.key(&pack.to_hex());
    let keys = repo.keys().clone();
    let (trees, sealed) = repo
        .destinations()
        .get_verified(&key, start..end, |_, bytes| {
            let mut trees = Vec::with_capacity(run.len());
            let mut sealed = Vec::with_capacity(run.len());
            for (k, entry) in run {
                let at = (u64::from(entry.offset) - start) as usize;
                let blob = bytes.get(at..at + entry.length as usize).ok_or_else(|| {
                    Error::format(format!("pack {pack}"), "short read of a tree range")
                })?;
                let plain = open_blob(&keys, &pack, entry, blob)?;
                trees.push((k.clone(), Tree::decode(&entry.id, &plain)));
                sealed.push(bytes.slice(at..at + entry.length as usize));
            }
            Ok((trees, sealed))
        })
        .await?;
    if let Some(cache) = repo.cache().cloned() {
        let ids: Vec<_> = run.iter().map(|(_, e)| e.id).collect();
        let _ = tokio::task::spawn_blocking(move || {
            for (id, sealed) in ids.iter().zip(&sealed) {
                cache.put_tree(id, sealed);
            }
        })
        .await;
    }
    Ok(trees)
}

/// The same failure for another tree of a failed read.
pub(super) fn duplicate(e: &Error) -> Error {
    match e {
        Error::Backend(b) => Error::Backend(lifeboat_backends::BackendError::new(
            b.kind,
            b.destination.clone(),
            b.key.clone(),
            b.detail.clone(),
        )),
        Error::Interrupted => Error::Interrupted,
        other => Error::format("tree", other.to_string()),
    }
}

/// Every key failed with the same message.
pub(super) fn failed_all(keys: Vec<Key>, why: &str) -> Vec<(Key, Result<Tree>)> {
    keys.into_iter()
        .map(|key| (key, Err(Error::format("tree", why.to_string()))))
        .collect()
}
