//! File content for the mount: a bounded cache of verified blob plaintexts,
//! the reads in flight (a blob asked for twice is read once), and reads in
//! coalesced pack ranges with failover across destinations.
//!
//! A read of one blob over a link 40 ms away costs a round trip whatever its
//! size, and a home directory is mostly files of one small blob each. So the
//! blobs wanted together (a file's next blobs, the next files of a
//! directory) are located in the index, grouped by pack, and read as one
//! ranged request per run of neighbours ([`crate::format::pack::coalesce`],
//! as restore does); each blob is then opened and verified on its own
//! ([`open_blob`]: AEAD tag, length and id), off the async workers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use bytes::Bytes;
use futures::channel::oneshot;
use futures::future::{FutureExt, Shared};
use tokio::sync::Semaphore;

use super::lru::Lru;
use crate::error::Error;
use crate::format::ids::{BlobId, ObjectKind, PackId};
use crate::format::pack::{coalesce, open_blob, PackEntry};
use crate::repo::index::MasterIndex;
use crate::repo::Repository;

/// A blob's plaintext, or why no destination returned it intact (shared by
/// every reader waiting for it).
pub(crate) type Fetched = Result<Bytes, Arc<Error>>;

/// A blob being read: every reader that wants it awaits the same read.
type Pending = Shared<oneshot::Receiver<Fetched>>;

/// Bytes of plaintext that read-ahead may have in flight at once, across
/// every file being read: reads a reader waits for are never held back,
/// guesses are dropped past this.
const PREFETCH_IN_FLIGHT: u64 = 64 << 20;

/// What counts against the cache besides a blob's bytes.
const ENTRY_OVERHEAD: usize = 96;

/// One blob asked for: where it is, and how to hand it to its readers.
pub(crate) enum Want {
    /// In the cache.
    Ready(Bytes),
    /// Being read.
    Wait(Pending),
    /// Not in the index (or otherwise unreadable before any read).
    Failed(Arc<Error>),
}

impl Want {
    /// The blob's plaintext once read.
    pub(crate) async fn get(self) -> Fetched {
        match self {
            Want::Ready(bytes) => Ok(bytes),
            Want::Failed(e) => Err(e),
            Want::Wait(pending) => pending.await.unwrap_or_else(|_| {
                Err(Arc::new(Error::internal(
                    "a blob read ended without an answer",
                )))
            }),
        }
    }
}

/// The cache and the reads in flight, under one lock so a blob is always
/// found in one or the other while it is being read.
struct State {
    cache: Lru<BlobId, Bytes>,
    pending: HashMap<BlobId, Pending>,
    /// Plaintext bytes of the reads in flight.
    pending_bytes: u64,
}

/// A blob to read, its readers' channel, and where its run came from in
/// the order of need.
struct Missing {
    pack: PackId,
    entry: PackEntry,
    sender: oneshot::Sender<Fetched>,
}

/// Verified blob plaintexts, cached within a byte budget, read in
/// coalesced runs.
pub(crate) struct BlobStore {
    repo: Repository,
    /// Where reads run: the FUSE threads that ask for blobs are not the
    /// runtime's own.
    runtime: tokio::runtime::Handle,
    index: RwLock<Arc<MasterIndex>>,
    state: Mutex<State>,
    /// Ranged reads in flight at once (the destination's `reads`).
    reads: Arc<Semaphore>,
}

impl BlobStore {
    /// A store reading through `repo` with `index`, caching `cache_bytes`
    /// of plaintext; its reads run on `runtime`.
    pub(crate) fn new(
        repo: Repository,
        index: MasterIndex,
        cache_bytes: usize,
        runtime: tokio::runtime::Handle,
    ) -> Self {
        let reads = repo.destinations().walk_reads().max(1);
        BlobStore {
            repo,
            runtime,
            index: RwLock::new(Arc::new(index)),
            state: Mutex::new(State {
                cache: Lru::new(cache_bytes),
                pending: HashMap::new(),
                pending_bytes: 0,
            }),
            reads: Arc::new(Semaphore::new(reads)),
        }
    }

    /// The repository.
    pub(crate) fn repo(&self) -> &Repository {
        &self.repo
    }

    /// The runtime reads and walks run on.
    pub(crate) fn runtime(&self) -> &tokio::runtime::Handle {
        &self.runtime
    }

    /// The index in use.
    pub(crate) fn index(&self) -> Arc<MasterIndex> {
        self.index.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Uses `index` from now on (a refresh found new index files).
    pub(crate) fn set_index(&self, index: MasterIndex) {
        *self.index.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(index);
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Plaintext bytes cached (for tests and figures).
    pub(crate) fn cached_bytes(&self) -> usize {
        self.state().cache.weight()
    }

    /// The plaintexts of `ids` if every one is cached (a read answered at
    /// once), else `None`.
    pub(crate) fn cached(&self, ids: &[BlobId]) -> Option<Vec<Bytes>> {
        let mut state = self.state();
        ids.iter().map(|id| state.cache.get(id)).collect()
    }

    /// Each of `ids` (in the order a reader needs them): from the cache,
    /// from a read in flight, or from new reads started now.
    pub(crate) fn want(self: &Arc<Self>, ids: &[BlobId]) -> Vec<Want> {
        self.request(ids, false)
    }

    /// Starts reading whichever of `ids` is neither cached nor in flight,
    /// unless read-ahead already has [`PREFETCH_IN_FLIGHT`] bytes in flight:
    /// a guess must not hold more memory than that.
    pub(crate) fn prefetch(self: &Arc<Self>, ids: &[BlobId]) {
        self.request(ids, true);
    }

    fn request(self: &Arc<Self>, ids: &[BlobId], guess: bool) -> Vec<Want> {
        let index = self.index();
        let mut out = Vec::with_capacity(if guess { 0 } else { ids.len() });
        let mut missing = Vec::new();
        {
            let mut state = self.state();
            for id in ids {
                if guess && state.pending_bytes >= PREFETCH_IN_FLIGHT {
                    break;
                }
                let want = if let Some(bytes) = state.cache.get(id) {
                    Want::Ready(bytes)
                } else if let Some(pending) = state.pending.get(id) {
                    Want::Wait(pending.clone())
                } else if let Some(location) = index.lookup(id) {
                    let (sender, receiver) = oneshot::channel();
                    let pending = receiver.shared();
                    state.pending.insert(*id, pending.clone());
                    state.pending_bytes += u64::from(location.raw_length);
                    missing.push(Missing {
                        pack: location.pack,
                        entry: location.entry(*id),
                        sender,
                    });
                    Want::Wait(pending)
                } else {
                    Want::Failed(Arc::new(Error::MissingBlob { blob: id.to_hex() }))
                };
                if !guess {
                    out.push(want);
                }
            }
        }
        self.start(missing, index);
        out
    }

    /// Reads `missing` in runs: grouped by pack in the order their first
    /// blob is needed, coalesced within each pack, one task per run. The
    /// tasks queue on [`BlobStore::reads`] (first come, first served), so
    /// what is needed first is read first.
    fn start(self: &Arc<Self>, missing: Vec<Missing>, index: Arc<MasterIndex>) {
        if missing.is_empty() {
            return;
        }
        let mut first_need: HashMap<PackId, usize> = HashMap::new();
        for (i, m) in missing.iter().enumerate() {
            first_need.entry(m.pack).or_insert(i);
        }
        let mut missing = missing;
        missing.sort_by_key(|m| (first_need[&m.pack], m.entry.offset));
        let mut runs = Vec::new();
        let mut rest = missing.into_iter().peekable();
        while let Some(first) = rest.next() {
            let pack = first.pack;
            let mut of_pack = vec![first];
            while let Some(next) = rest.next_if(|m| m.pack == pack) {
                of_pack.push(next);
            }
            runs.extend(
                coalesce(of_pack, |m| &m.entry)
                    .into_iter()
                    .map(|run| (pack, run)),
            );
        }
        for (pack, run) in runs {
            let (store, index) = (self.clone(), index.clone());
            self.runtime.spawn(async move {
                let permit = store.reads.clone().acquire_owned().await;
                let entries: Vec<PackEntry> = run.iter().map(|m| m.entry).collect();
                let results = read_run(&store.repo, &index, pack, &entries).await;
                drop(permit);
                let mut state = store.state();
                for (m, result) in run.into_iter().zip(results) {
                    if let Ok(bytes) = &result {
                        let weight = bytes.len() + ENTRY_OVERHEAD;
                        state.cache.insert(m.entry.id, bytes.clone(), weight);
                    }
                    state.pending.remove(&m.entry.id);
                    state.pending_bytes = state
                        .pending_bytes
                        .saturating_sub(u64::from(m.entry.raw_length));
                    // Nobody waiting (a guess no reader reached yet) is fine.
                    let _ = m.sender.send(result);
                }
            });
        }
    }
}

/// Reads one run of blobs of `pack`: one ranged read from each destination
/// in turn until every blob has opened and verified; what none returned
/// intact in a range is read once more blob by blob through
/// [`Repository::read_blob`] (its failover, and its error when that fails
/// too).
async fn read_run(
    repo: &Repository,
    index: &MasterIndex,
    pack: PackId,
    entries: &[PackEntry],
) -> Vec<Fetched> {
    let key = ObjectKind::Pack.key(&pack.to_hex());
    let mut results: Vec<Option<Fetched>> = entries.iter().map(|_| None).collect();
    let mut todo: Vec<usize> = (0..entries.len()).collect();
    for backend in repo.destinations().read_order() {
        let (Some(&first), Some(&last)) = (todo.first(), todo.last()) else {
            break;
        };
        let start = u64::from(entries[first].offset);
        let end = u64::from(entries[last].offset) + u64::from(entries[last].length);
        let bytes = match backend.get(&key, Some(start..end)).await {
            Ok(bytes) => bytes,
            Err(e) => {
                if e.kind == lifeboat_backends::ErrorKind::Transient {
                    repo.destinations()
                        .drop_destination(backend.name(), &e.to_string());
                }
                tracing::debug!("{}: {key}: {e}", backend.name());
                continue;
            }
        };
        let keys = repo.keys().clone();
        let batch: Vec<(usize, PackEntry)> = todo.iter().map(|&i| (i, entries[i])).collect();
        let opened = tokio::task::spawn_blocking(move || {
            batch
                .into_iter()
                .map(|(i, entry)| {
                    let at = (u64::from(entry.offset) - start) as usize;
                    // A provider may return fewer bytes than asked: that blob
                    // then fails over like a damaged one.
                    let result = match bytes.get(at..at + entry.length as usize) {
                        Some(sealed) => open_blob(&keys, &pack, &entry, sealed),
                        None => Err(Error::format(format!("pack {pack}"), "short read")),
                    };
                    (i, result)
                })
                .collect::<Vec<_>>()
        })
        .await;
        let Ok(opened) = opened else {
            break;
        };
        todo.clear();
        for (i, result) in opened {
            match result {
                Ok(plain) => results[i] = Some(Ok(Bytes::from(plain))),
                Err(e) => {
                    tracing::warn!("{}: {e}", backend.name());
                    todo.push(i);
                }
            }
        }
    }
    for i in todo {
        let result = repo.read_blob(index, &entries[i].id).await;
        results[i] = Some(result.map(Bytes::from).map_err(Arc::new));
    }
    results
        .into_iter()
        .map(|r| {
            r.unwrap_or_else(|| {
                Err(Arc::new(Error::internal(
                    "a blob of a run was neither read nor retried",
                )))
            })
        })
        .collect()
}
