//! The tree streamer every walk of a snapshot uses (restore planning, `ls`,
//! `check`, drill, prune, a backup's parent): trees are requested as soon
//! as their ids are known, many at once, read in bulk by pack, and handed
//! to the walk in the order it needs.
//!
//! A walk over a link 40 ms away that loads one tree per round trip spends
//! directories x 40 ms before its first byte; this one spends about one
//! round trip per level of the tree plus the time to move its tree packs.
//!
//! - **Concurrency**: at most [`DestinationSet::walk_reads`] reads in
//!   flight (the `reads` setting of the destination read first).
//! - **Bulk**: the wanted trees of one pack go out as one batch, read in
//!   coalesced ranges, or as the whole pack when the batch covers much of
//!   it (or the pack is small); a pack read whole is kept in memory, within
//!   [`HELD_BYTES`], so later trees from it cost no request.
//! - **Bounded memory**: at most [`WINDOW`] trees, and [`AHEAD_BYTES`] of
//!   their plaintext, are read ahead of the walk; the rest wait as ids.
//! - **Order**: [`Order::DepthFirst`] hands trees over in the depth-first
//!   order of the wants (what `ls` prints); [`Order::AsFetched`] as they
//!   arrive (what a check or a restore plan needs: parents before
//!   children, and nothing else).
//!
//! [`DestinationSet::walk_reads`]: crate::DestinationSet::walk_reads

mod fetch;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::StreamExt;

use self::fetch::{Batch, Fetched};
use crate::error::{Error, Result};
use crate::format::ids::{BlobId, PackId};
use crate::format::pack::{coalesce, PackEntry};
use crate::format::tree::Tree;
use crate::repo::index::{BlobLocation, MasterIndex};
use crate::repo::Repository;

/// Trees read ahead of the walk at most (decoded, or in flight).
pub const WINDOW: usize = 1024;
/// Plaintext bytes of the trees read ahead of the walk at most (a decoded
/// tree takes a few times its plaintext: a directory of 1,000 files is
/// about 100 KB of plaintext). Whole tree packs held in memory do the bulk
/// reading; this only bounds what waits, decoded, for the walk.
pub const AHEAD_BYTES: u64 = 2 << 20;
/// Bytes of whole tree packs kept in memory for the trees still to come.
pub const HELD_BYTES: usize = 32 << 20;
/// A tree pack this small is always read whole (about two round trips of
/// a 100 Mbit/s link 40 ms away).
const WHOLE_ALWAYS: u64 = 1 << 20;
/// No pack larger than this is read whole.
const WHOLE_MAX: u64 = 32 << 20;

/// The order a [`TreeStream`] hands trees over in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Depth-first in the order of the wants: the trees wanted while the
    /// walk holds tree T come right after T, before T's later siblings.
    DepthFirst,
    /// As they arrive.
    AsFetched,
}

/// Where a want stands in the hand-over order.
type Key = Vec<u64>;

/// A wanted tree not yet requested.
struct Wanted<C> {
    id: BlobId,
    loc: BlobLocation,
    context: C,
}

/// Streams the trees a walk wants; see the module documentation.
pub struct TreeStream<'a, C> {
    repo: &'a Repository,
    index: &'a MasterIndex,
    order: Order,
    reads: usize,
    /// Wanted, not yet requested.
    pending: BTreeMap<Key, Wanted<C>>,
    /// The keys of `pending`, by pack.
    by_pack: HashMap<PackId, Vec<Key>>,
    /// Wanted from a pack being read whole: served once it arrives.
    parked: HashMap<PackId, Vec<(Key, Wanted<C>)>>,
    parked_keys: BTreeMap<Key, ()>,
    /// Requested: their contexts until the tree arrives.
    outstanding: BTreeMap<Key, C>,
    /// Plaintext bytes of the trees requested and not handed over yet.
    ahead_bytes: u64,
    /// Each such tree's plaintext length.
    sizes: HashMap<Key, u32>,
    ready: BTreeMap<Key, (C, Result<Tree>)>,
    in_flight: FuturesUnordered<BoxFuture<'static, Fetched>>,
    /// The requests' tasks, aborted when the walk stops early.
    tasks: Vec<tokio::task::AbortHandle>,
    /// Packs being read whole, and those tried already (read in ranges
    /// after that).
    loading: HashSet<PackId>,
    tried_whole: HashSet<PackId>,
    held: HeldPacks,
    /// Tree packs' extents, computed on the first request.
    extents: Option<HashMap<PackId, u64>>,
    /// The key of the tree handed over last, and how many wants followed.
    current: Key,
    children: u64,
}

impl<'a, C> TreeStream<'a, C> {
    /// A stream reading `repo`'s trees located through `index`.
    pub fn new(repo: &'a Repository, index: &'a MasterIndex, order: Order) -> Self {
        TreeStream {
            repo,
            index,
            order,
            reads: repo.destinations().walk_reads(),
            pending: BTreeMap::new(),
            by_pack: HashMap::new(),
            parked: HashMap::new(),
            parked_keys: BTreeMap::new(),
            outstanding: BTreeMap::new(),
            ahead_bytes: 0,
            sizes: HashMap::new(),
            ready: BTreeMap::new(),
            in_flight: FuturesUnordered::new(),
            tasks: Vec::new(),
            loading: HashSet::new(),
            tried_whole: HashSet::new(),
            held: HeldPacks::default(),
            extents: None,
            current: Vec::new(),
            children: 0,
        }
    }

    /// Wants tree `id`; `context` comes back with it.
    pub fn want(&mut self, id: BlobId, context: C) {
        let mut key = match self.order {
            Order::DepthFirst => self.current.clone(),
            Order::AsFetched => Vec::new(),
        };
        key.push(self.children);
        self.children += 1;
        let Some(loc) = self.index.lookup(&id) else {
            let missing = Error::MissingBlob { blob: id.to_hex() };
            self.ready.insert(key, (context, Err(missing)));
            return;
        };
        self.by_pack.entry(loc.pack).or_default().push(key.clone());
        self.pending.insert(key, Wanted { id, loc, context });
    }

    /// True when every wanted tree was handed over.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
            && self.parked_keys.is_empty()
            && self.outstanding.is_empty()
            && self.ready.is_empty()
    }

    /// The next tree with its context; `None` once every wanted tree was
    /// handed over. A tree that cannot be read comes back as its error.
    pub async fn next(&mut self) -> Option<(C, Result<Tree>)> {
        loop {
            self.issue();
            if let Some(item) = self.pop_ready() {
                return Some(item);
            }
            if self.in_flight.is_empty() {
                // Nothing can arrive: every want was handed over (wants
                // always find a request, or a pack being read).
                return None;
            }
            let fetched = self.in_flight.next().await?;
            self.absorb(fetched);
        }
    }

    fn deliver(&mut self, key: Key, result: Result<Tree>) {
        if let Some(context) = self.outstanding.remove(&key) {
            self.ready.insert(key, (context, result));
        }
    }

    fn absorb(&mut self, fetched: Fetched) {
        let Fetched { pack, whole, trees } = fetched;
        self.loading.remove(&pack);
        if let Some(bytes) = whole {
            self.held.insert(pack, bytes);
        }
        // What waited for this pack is wanted again: from memory if it
        // was read whole, by range if not.
        for (key, wanted) in self.parked.remove(&pack).unwrap_or_default() {
            self.parked_keys.remove(&key);
            self.by_pack.entry(pack).or_default().push(key.clone());
            self.pending.insert(key, wanted);
        }
        for (key, result) in trees {
            self.deliver(key, result);
        }
    }

    /// The smallest key still to hand over.
    fn head(&self) -> Option<&Key> {
        [
            self.pending.keys().next(),
            self.parked_keys.keys().next(),
            self.outstanding.keys().next(),
            self.ready.keys().next(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn pop_ready(&mut self) -> Option<(C, Result<Tree>)> {
        let key = match self.order {
            Order::AsFetched => self.ready.keys().next()?.clone(),
            Order::DepthFirst => {
                let head = self.head()?;
                if !self.ready.contains_key(head) {
                    return None;
                }
                head.clone()
            }
        };
        let (context, tree) = self.ready.remove(&key)?;
        if let Some(size) = self.sizes.remove(&key) {
            self.ahead_bytes -= u64::from(size);
        }
        if self.order == Order::DepthFirst {
            self.current = key;
            self.children = 0;
        }
        Some((context, tree))
    }

    /// Requests what the limits allow, most urgent first.
    fn issue(&mut self) {
        while self.in_flight.len() < self.reads {
            let candidate = match self.order {
                Order::DepthFirst => self.pending.keys().next(),
                // Newest first: the frontier stays as small as a
                // depth-first walk's.
                Order::AsFetched => self.pending.keys().next_back(),
            };
            let Some(key) = candidate.cloned() else {
                return;
            };
            let room = if self.ahead_bytes >= AHEAD_BYTES {
                0
            } else {
                WINDOW.saturating_sub(self.outstanding.len() + self.ready.len())
            };
            let is_head = self.order == Order::DepthFirst && self.head() == Some(&key);
            if room == 0 && !is_head {
                return;
            }
            let Some(pack) = self.pending.get(&key).map(|w| w.loc.pack) else {
                return;
            };
            if self.loading.contains(&pack) {
                self.park(pack);
                continue;
            }
            let batch = self.take_batch(pack, room.max(1));
            self.launch(batch);
        }
    }

    /// Moves every pending want of `pack` aside until the pack arrives.
    fn park(&mut self, pack: PackId) {
        for key in self.by_pack.remove(&pack).unwrap_or_default() {
            if let Some(wanted) = self.pending.remove(&key) {
                self.parked_keys.insert(key.clone(), ());
                self.parked.entry(pack).or_default().push((key, wanted));
            }
        }
    }

    /// Up to `limit` pending wants of `pack`, most urgent first, as a batch.
    fn take_batch(&mut self, pack: PackId, limit: usize) -> Batch {
        let mut keys = self.by_pack.remove(&pack).unwrap_or_default();
        keys.sort_unstable();
        if self.order == Order::AsFetched {
            keys.reverse();
        }
        let mut entries = Vec::new();
        let mut rest = Vec::new();
        for key in keys {
            // Within the count and the bytes read ahead (one tree at least).
            let full =
                entries.len() >= limit || (!entries.is_empty() && self.ahead_bytes >= AHEAD_BYTES);
            if full {
                rest.push(key);
                continue;
            }
            if let Some(Wanted { id, loc, context }) = self.pending.remove(&key) {
                self.outstanding.insert(key.clone(), context);
                self.ahead_bytes += u64::from(loc.raw_length);
                self.sizes.insert(key.clone(), loc.raw_length);
                let entry = loc.entry(id);
                entries.push((key, entry));
            }
        }
        if !rest.is_empty() {
            self.by_pack.insert(pack, rest);
        }
        let held = self.held.get(&pack);
        let whole = held.is_none() && self.read_whole(pack, &entries);
        if whole {
            self.loading.insert(pack);
            self.tried_whole.insert(pack);
        }
        Batch {
            pack,
            entries,
            held,
            whole,
        }
    }

    /// True when `pack` is better read whole than in ranges for `entries`:
    /// a tree pack that is small, or that the ranges would mostly cover.
    fn read_whole(&mut self, pack: PackId, entries: &[(Key, PackEntry)]) -> bool {
        if self.tried_whole.contains(&pack) {
            return false;
        }
        let index = self.index;
        let extents = self
            .extents
            .get_or_insert_with(|| index.tree_pack_extents());
        let Some(&extent) = extents.get(&pack) else {
            return false;
        };
        if extent > WHOLE_MAX || extent as usize > HELD_BYTES {
            return false;
        }
        if extent <= WHOLE_ALWAYS {
            return true;
        }
        let mut sorted: Vec<&PackEntry> = entries.iter().map(|(_, e)| e).collect();
        sorted.sort_by_key(|e| e.offset);
        let span: u64 = coalesce(sorted, |e| *e)
            .iter()
            .map(|run| {
                let (first, last) = (run[0], run[run.len() - 1]);
                u64::from(last.offset) + u64::from(last.length) - u64::from(first.offset)
            })
            .sum();
        span.saturating_mul(4) >= extent
    }

    /// Runs `batch` on its own task, so that opening and decoding spread
    /// over the cores.
    fn launch(&mut self, batch: Batch) {
        let keys: Vec<Key> = batch.entries.iter().map(|(k, _)| k.clone()).collect();
        let pack = batch.pack;
        let repo = self.repo.clone();
        let task = tokio::spawn(async move { fetch::fetch(repo, batch).await });
        self.tasks.retain(|t| !t.is_finished());
        self.tasks.push(task.abort_handle());
        self.in_flight.push(Box::pin(async move {
            match task.await {
                Ok(fetched) => fetched,
                // The task died: every tree it carried fails.
                Err(e) => Fetched {
                    pack,
                    whole: None,
                    trees: fetch::failed_all(keys, &format!("tree read task failed: {e}")),
                },
            }
        }));
    }
}

impl<C> Drop for TreeStream<'_, C> {
    fn drop(&mut self) {
        // A walk that stops early (an error, Ctrl-C) leaves no reads behind.
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Whole tree packs kept for the trees still to come, oldest dropped
/// first past [`HELD_BYTES`].
#[derive(Default)]
struct HeldPacks {
    packs: HashMap<PackId, Bytes>,
    order: VecDeque<PackId>,
    bytes: usize,
}

impl HeldPacks {
    fn get(&self, pack: &PackId) -> Option<Bytes> {
        self.packs.get(pack).cloned()
    }

    fn insert(&mut self, pack: PackId, bytes: Bytes) {
        self.bytes += bytes.len();
        if self.packs.insert(pack, bytes).is_none() {
            self.order.push_back(pack);
        }
        while self.bytes > HELD_BYTES {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            if let Some(dropped) = self.packs.remove(&oldest) {
                self.bytes -= dropped.len();
            }
        }
    }
}
