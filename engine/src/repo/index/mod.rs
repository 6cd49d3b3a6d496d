//! The master index: every index file merged, in 39 bytes per blob.
//!
//! Two arrays and a few small tables:
//! - `shards`: the primary array, sorted by (blob id, pack number, slot) and
//!   split by the id's first byte into 256 shards; `bucket_starts` gives, for
//!   each value of the id's first two bytes (65,536 buckets, 256 KiB), the
//!   position of its first record. A record is the id's other 30 bytes and
//!   the low 24 bits of its key, the number of its slot (33 bytes, no
//!   padding), so ids are kept whole. An index of more than 2^24 slots
//!   (16 M blobs) keeps the keys' high bits in `highs`, a byte per record of
//!   each shard that needs them. A record's position (shard base + index)
//!   is what [`MasterIndex::position_of`] and [`MasterIndex::entry_at`]
//!   speak of. A lookup starts where the id's next bytes say within its
//!   bucket (ids are uniform) and gallops to the record: O(log n) whatever
//!   the ids.
//! - `slots`: the secondary array, in the order the index files list blobs,
//!   6 bytes a slot: offset from its run's base (25 bits), the tree bit, and
//!   plaintext length (22 bits). Each listed pack becomes one or more runs
//!   of slots with non-decreasing offsets; a gap between a blob's end and
//!   the next blob's offset gets a phantom slot holding that end, and every
//!   run ends with a sentinel slot holding its last blob's end, so a blob's
//!   sealed length is the next slot's offset minus its own (the next slot is
//!   always in the same run). A blob that starts before the previous one's
//!   end (unsorted or overlapping listings) starts a new run, and so does
//!   one that would end 32 MiB or more past the run's base (packs larger
//!   than the default 16 MiB): the lengths are always exactly the listed
//!   ones.
//! - `wide`: slots whose value does not fit (a blob of 32 MiB or more, a
//!   plaintext length of 4 MiB or more) carry a marker offset and keep their
//!   values here, whole, sorted by slot (slots are appended in order).
//! - `runs`: (first slot, pack number, base offset) of each run, found by
//!   binary search within the few runs that `run_dir` (one entry per 256
//!   slots) points to.
//! - `position_dir`: per 256 positions, the bucket of the first, so that
//!   [`MasterIndex::entry_at`] finds a position's id prefix without a search.
//! - `packs`: the pack ids, by pack number (first-seen order).
//!
//! Per blob: 33 + 6 bytes (and one more past 2^24 slots). Per pack: its id
//! (32), a run (12) and a sentinel slot (6). Fixed: the bucket table
//! (256 KiB). Directories: 6 bytes per 256 blobs.
//! [`MasterIndex::heap_bytes`] counts it all.
//!
//! Loading (`load.rs`): records wait in `staged` (36 bytes: the whole id and
//! the slot) per shard; [`MasterIndex::finish`] sorts each shard (a radix
//! pass on the second id byte, then small sorts) and packs it into its
//! 33-byte form, one shard at a time, so the load peak is the staged records
//! plus the slots, not two copies of the index. Files added after a finish
//! (prune's rescue) are merged into the shards they touch.

use std::collections::HashMap;

use crate::format::ids::{BlobId, PackId};
use crate::format::pack::{BlobType, PackEntry};

mod load;

/// Where a blob is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobLocation {
    /// The pack holding it.
    pub pack: PackId,
    /// Blob type.
    pub blob_type: BlobType,
    /// Offset in the pack.
    pub offset: u32,
    /// Sealed length.
    pub length: u32,
    /// Plaintext length.
    pub raw_length: u32,
}

impl BlobLocation {
    /// The pack entry of blob `id` stored here.
    pub fn entry(&self, id: BlobId) -> PackEntry {
        PackEntry {
            blob_type: self.blob_type,
            id,
            offset: self.offset,
            length: self.length,
            raw_length: self.raw_length,
        }
    }
}

const SHARDS: usize = 256;
const BUCKETS: usize = SHARDS * 256;
/// A staged record: the whole id, then the big-endian key (the slot).
const STAGED: usize = 36;
/// A finished record: the id's last 30 bytes, then the key's low bits in
/// three bytes (its high bits, when some key needs them, are in `highs`).
const RECORD: usize = 33;
const TAIL: usize = 30;
/// Key bits a finished record holds: 2^24 slots (16 M blobs) fit in it.
const KEY_SPLIT: u32 = 24;
/// Bytes of one secondary slot.
const SLOT: usize = 6;
/// Slot layout: offset from the run's base (25 bits), the tree bit, then
/// the plaintext length (22 bits).
const OFFSET_BITS: u32 = 25;
const TREE_BIT: u32 = OFFSET_BITS;
const RAW_SHIFT: u32 = OFFSET_BITS + 1;
const RAW_BITS: u32 = 22;
/// Offset field value meaning "the values are in `wide`".
const WIDE: u64 = (1 << OFFSET_BITS) - 1;
/// Slots per `run_dir` entry and positions per `position_dir` entry, as a shift.
const DIR_SHIFT: u32 = 8;
/// Slots must fit 31 bits (so that a key's high part fits a byte).
const MAX_SLOTS: usize = 1 << 31;

type Staged = [u8; STAGED];

/// A run of slots of one pack, from `start` to the next run's start; its
/// slots hold offsets relative to `base` (its first blob's offset).
#[derive(Debug, Clone, Copy)]
struct Run {
    start: u32,
    pack: u32,
    base: u32,
}

/// A slot whose values do not fit its 6 bytes.
#[derive(Debug, Clone, Copy)]
struct Wide {
    slot: u32,
    raw_length: u32,
    offset: u64,
}

/// All index files merged: blob id → location, compact and sorted.
#[derive(Debug)]
pub struct MasterIndex {
    packs: Vec<PackId>,
    /// Pack id → number, only while loading (rebuilt if a file is added after
    /// [`MasterIndex::finish`]).
    pack_numbers: HashMap<PackId, u32>,
    /// Records added since the last finish, per first id byte.
    staged: Vec<Vec<Staged>>,
    /// Finished records, per first id byte.
    shards: Vec<Vec<u8>>,
    /// Per shard, each record's key bits above `key_split`; empty for a
    /// shard whose keys all fit its records (any index under 2^24 slots).
    highs: Vec<Vec<u8>>,
    /// Key bits kept in a record ([`KEY_SPLIT`]; lower in tests, to reach
    /// `highs` with small indexes).
    key_split: u32,
    /// Position of each bucket's first record, then the total (`BUCKETS + 1`).
    bucket_starts: Vec<u32>,
    /// Per 256 positions: the bucket holding the first of them (so that
    /// [`MasterIndex::entry_at`] finds a bucket in a step or two).
    position_dir: Vec<u16>,
    slots: Vec<[u8; SLOT]>,
    wide: Vec<Wide>,
    runs: Vec<Run>,
    /// Per 256 slots: the run holding the first of them.
    run_dir: Vec<u32>,
    /// Records added (finished or not).
    len: usize,
    sorted: bool,
}

impl Default for MasterIndex {
    fn default() -> Self {
        MasterIndex {
            packs: Vec::new(),
            pack_numbers: HashMap::new(),
            staged: Vec::new(),
            shards: Vec::new(),
            highs: Vec::new(),
            key_split: KEY_SPLIT,
            bucket_starts: Vec::new(),
            position_dir: Vec::new(),
            slots: Vec::new(),
            wide: Vec::new(),
            runs: Vec::new(),
            run_dir: Vec::new(),
            len: 0,
            sorted: false,
        }
    }
}

impl MasterIndex {
    /// An empty index.
    pub fn new() -> Self {
        MasterIndex::default()
    }

    /// An empty index whose records keep only `bits` key bits, so that tests
    /// reach the high bytes with a few slots instead of 2^24.
    #[cfg(test)]
    fn with_key_split(bits: u32) -> Self {
        MasterIndex {
            key_split: bits,
            ..MasterIndex::default()
        }
    }

    /// The key of record number `index` of shard `shard`.
    fn key_of(&self, shard: usize, index: usize, r: &[u8; RECORD]) -> u32 {
        let low = u32::from_be_bytes([0, r[TAIL], r[TAIL + 1], r[TAIL + 2]]);
        let high = self.highs[shard].get(index).map_or(0, |&h| u32::from(h));
        high << self.key_split | low
    }

    /// The run holding a slot.
    fn run_of(&self, slot: u32) -> Run {
        let k = (slot >> DIR_SHIFT) as usize;
        let lo = self.run_dir[k] as usize;
        let hi = self
            .run_dir
            .get(k + 1)
            .map_or(self.runs.len(), |&h| h as usize + 1);
        let i = lo + self.runs[lo..hi].partition_point(|r| r.start <= slot) - 1;
        self.runs[i]
    }

    /// A slot's offset (or end, for phantoms and sentinels) and plaintext
    /// length, given its run's base.
    fn slot_values(&self, base: u32, slot: u32) -> (u64, u32) {
        let value = self.slot_value(slot);
        let delta = value & WIDE;
        if delta != WIDE {
            return (u64::from(base) + delta, (value >> RAW_SHIFT) as u32);
        }
        let i = self.wide.partition_point(|w| w.slot < slot);
        let w = self.wide[i];
        (w.offset, w.raw_length)
    }

    /// A slot's 48 bits.
    fn slot_value(&self, slot: u32) -> u64 {
        let s = self.slots[slot as usize];
        u64::from_le_bytes([s[0], s[1], s[2], s[3], s[4], s[5], 0, 0])
    }

    /// The location a record's key (its slot) names, with its pack number.
    fn location(&self, slot: u32) -> (BlobLocation, u32) {
        // A blob's next slot (blob, phantom or sentinel) is in its run.
        let Run { pack, base, .. } = self.run_of(slot);
        let (offset, raw_length) = self.slot_values(base, slot);
        let (end, _) = self.slot_values(base, slot + 1);
        let location = BlobLocation {
            pack: self.packs[pack as usize],
            blob_type: if self.slot_value(slot) >> TREE_BIT & 1 == 1 {
                BlobType::Tree
            } else {
                BlobType::Data
            },
            offset: offset as u32,
            length: (end - offset) as u32,
            raw_length,
        };
        (location, pack)
    }

    /// Records of one bucket (first two id bytes), the position of the
    /// first, and its number within its shard.
    fn bucket(&self, b: usize) -> (&[[u8; RECORD]], usize, usize) {
        let base = self.bucket_starts[b & !0xff] as usize;
        let (lo, hi) = (
            self.bucket_starts[b] as usize,
            self.bucket_starts[b + 1] as usize,
        );
        let (records, _) = self.shards[b >> 8].as_chunks::<RECORD>();
        (&records[lo - base..hi - base], lo, lo - base)
    }

    fn position(&self, id: &BlobId) -> Option<(usize, u32)> {
        debug_assert!(self.sorted, "MasterIndex::finish not called");
        if self.bucket_starts.is_empty() {
            return None;
        }
        let b = (usize::from(id.0[0]) << 8) | usize::from(id.0[1]);
        let (records, first, in_shard) = self.bucket(b);
        let tail: &[u8; TAIL] = id.0[2..].try_into().ok()?;
        let i = search(records, tail);
        let r = records.get(i)?;
        (r[..TAIL] == tail[..]).then(|| (first + i, self.key_of(b >> 8, in_shard + i, r)))
    }

    /// Locates a blob.
    pub fn lookup(&self, id: &BlobId) -> Option<BlobLocation> {
        let (_, key) = self.position(id)?;
        Some(self.location(key).0)
    }

    /// True when the blob is indexed.
    pub fn contains(&self, id: &BlobId) -> bool {
        self.position(id).is_some()
    }

    /// Number of blob entries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every indexed pack.
    pub fn packs(&self) -> &[PackId] {
        &self.packs
    }

    /// Where each tree pack's blobs end: the packs whose runs start with a
    /// tree blob, with the end of the last blob any of their runs lists.
    /// A tree walk reads such a pack whole when it wants much of it; one
    /// step per run, not per blob.
    pub fn tree_pack_extents(&self) -> HashMap<PackId, u64> {
        let mut extents: HashMap<PackId, u64> = HashMap::new();
        for (r, run) in self.runs.iter().enumerate() {
            let end_slot = self
                .runs
                .get(r + 1)
                .map_or(self.slots.len(), |next| next.start as usize);
            // A run is its blobs and a closing sentinel holding their end.
            if end_slot < run.start as usize + 2 || self.slot_value(run.start) >> TREE_BIT & 1 == 0
            {
                continue;
            }
            let (end, _) = self.slot_values(run.base, end_slot as u32 - 1);
            let extent = extents.entry(self.packs[run.pack as usize]).or_insert(0);
            *extent = (*extent).max(end);
        }
        extents
    }

    /// Every finished record in position order: (id, key).
    fn records(&self) -> impl Iterator<Item = (BlobId, u32)> + '_ {
        let shards = if self.bucket_starts.is_empty() {
            0
        } else {
            SHARDS
        };
        let occupied = move |b: &usize| self.bucket_starts[*b] < self.bucket_starts[*b + 1];
        (0..shards)
            .filter(|&first| !self.shards[first].is_empty())
            .flat_map(move |first| (first << 8..(first + 1) << 8).filter(occupied))
            .flat_map(move |b| {
                let (records, _, in_shard) = self.bucket(b);
                records.iter().enumerate().map(move |(i, r)| {
                    let mut id = [0u8; 32];
                    id[0] = (b >> 8) as u8;
                    id[1] = b as u8;
                    id[2..].copy_from_slice(&r[..TAIL]);
                    (BlobId(id), self.key_of(b >> 8, in_shard + i, r))
                })
            })
    }

    /// Every entry of one pack, in offset order.
    pub fn entries_of_pack(&self) -> HashMap<PackId, Vec<PackEntry>> {
        let mut by_pack: HashMap<PackId, Vec<PackEntry>> = HashMap::new();
        for (id, key) in self.records() {
            let (loc, _) = self.location(key);
            by_pack.entry(loc.pack).or_default().push(loc.entry(id));
        }
        for list in by_pack.values_mut() {
            list.sort_by_key(|e| e.offset);
        }
        by_pack
    }

    /// The position of `id`'s first entry (the one lookups return), in
    /// `0..len()`: a dense number for bitsets over the index.
    pub fn position_of(&self, id: &BlobId) -> Option<usize> {
        self.position(id).map(|(p, _)| p)
    }

    /// The entry at `position`: its blob id, location and pack number (an
    /// index into [`MasterIndex::packs`]).
    pub fn entry_at(&self, position: usize) -> Option<(BlobId, BlobLocation, u32)> {
        let total = *self.bucket_starts.last()? as usize;
        if position >= total {
            return None;
        }
        // The bucket is between those holding the directory's two positions
        // around this one: one or two, as buckets hold about 150 records.
        let k = position >> DIR_SHIFT;
        let lo = usize::from(self.position_dir[k]);
        let hi = self
            .position_dir
            .get(k + 1)
            .map_or(BUCKETS - 1, |&h| usize::from(h));
        let b = lo + self.bucket_starts[lo + 1..=hi].partition_point(|&s| s as usize <= position);
        let (records, first, in_shard) = self.bucket(b);
        let r = &records[position - first];
        let mut id = [0u8; 32];
        id[0] = (b >> 8) as u8;
        id[1] = b as u8;
        id[2..].copy_from_slice(&r[..TAIL]);
        let key = self.key_of(b >> 8, in_shard + position - first, r);
        let (loc, pack) = self.location(key);
        Some((BlobId(id), loc, pack))
    }

    /// Every entry position, ordered by pack number then offset: 4 bytes per
    /// blob (and briefly per slot), to walk the index pack by pack without
    /// regrouping it.
    pub fn positions_by_pack(&self) -> Vec<u32> {
        // Position of each slot's record (phantoms and sentinels have none).
        let mut by_slot = vec![u32::MAX; self.slots.len()];
        for (position, (_, key)) in self.records().enumerate() {
            by_slot[key as usize] = position as u32;
        }
        let slots_of = |r: usize| {
            let end = self
                .runs
                .get(r + 1)
                .map_or(self.slots.len(), |n| n.start as usize);
            self.runs[r].start as usize..end
        };
        // Run `r` comes right after run `r - 1` in (pack, offset) order: a
        // higher pack, or the same one from the end of the previous run on
        // (where a large pack's offsets outgrew one run).
        let follows = |r: usize| {
            let (p, q) = (self.runs[r - 1], self.runs[r]);
            p.pack < q.pack
                || (p.pack == q.pack
                    && u64::from(q.base) >= self.slot_values(p.base, q.start - 1).0)
        };
        // Runs are added in pack-number order unless a pack is listed again
        // (in several index files, or unsorted): then slot order is the answer.
        if (1..self.runs.len()).all(follows) {
            by_slot.retain(|&p| p != u32::MAX);
            by_slot.shrink_to_fit();
            return by_slot;
        }
        let mut order: Vec<usize> = (0..self.runs.len()).collect();
        order.sort_by_key(|&r| self.runs[r].pack);
        let mut out = Vec::with_capacity(self.len);
        for group in order.chunk_by(|&a, &b| self.runs[a].pack == self.runs[b].pack) {
            if group.windows(2).all(|w| w[1] == w[0] + 1 && follows(w[1])) {
                for &r in group {
                    out.extend(by_slot[slots_of(r)].iter().filter(|&&p| p != u32::MAX));
                }
                continue;
            }
            let mut blobs: Vec<(u64, u32)> = group
                .iter()
                .flat_map(|&r| slots_of(r).map(move |s| (r, s)))
                .filter(|&(_, s)| by_slot[s] != u32::MAX)
                .map(|(r, s)| (self.slot_values(self.runs[r].base, s as u32).0, by_slot[s]))
                .collect();
            blobs.sort_unstable();
            out.extend(blobs.into_iter().map(|(_, p)| p));
        }
        out
    }

    /// Bytes of memory per blob entry: a 33-byte record and a 6-byte slot
    /// (one more byte a blob in an index of more than 2^24 slots).
    /// Each pack adds its id (32 bytes), a run (12 bytes) and a sentinel slot
    /// (6 bytes); [`MasterIndex::heap_bytes`] counts everything.
    pub const fn bytes_per_entry() -> usize {
        RECORD + SLOT
    }

    /// Heap bytes held: the capacity of every allocation (the pack map,
    /// present only while loading, is estimated from its capacity).
    pub fn heap_bytes(&self) -> usize {
        let map = if self.pack_numbers.capacity() == 0 {
            0
        } else {
            let buckets = (self.pack_numbers.capacity() * 8 / 7).next_power_of_two();
            buckets * (std::mem::size_of::<(PackId, u32)>() + 1) + 16
        };
        let vecs = |n: usize| n * std::mem::size_of::<Vec<u8>>();
        self.packs.capacity() * std::mem::size_of::<PackId>()
            + map
            + vecs(self.staged.capacity())
            + self
                .staged
                .iter()
                .map(|s| s.capacity() * STAGED)
                .sum::<usize>()
            + vecs(self.shards.capacity())
            + self.shards.iter().map(Vec::capacity).sum::<usize>()
            + vecs(self.highs.capacity())
            + self.highs.iter().map(Vec::capacity).sum::<usize>()
            + self.bucket_starts.capacity() * 4
            + self.position_dir.capacity() * 2
            + self.slots.capacity() * SLOT
            + self.wide.capacity() * std::mem::size_of::<Wide>()
            + self.runs.capacity() * std::mem::size_of::<Run>()
            + self.run_dir.capacity() * 4
    }
}

/// The first record of a bucket not below `tail`. Ids are keyed hashes, so
/// uniform: start where the tail's first bytes say (about a cache line or
/// two from the answer, where a binary search takes seven or eight steps).
fn search(records: &[[u8; RECORD]], tail: &[u8; TAIL]) -> usize {
    let first = u64::from(u32::from_be_bytes([tail[0], tail[1], tail[2], tail[3]]));
    let guess = (first * records.len() as u64) >> 32;
    partition_from(records, guess as usize, |r| r[..TAIL] < tail[..])
}

/// `items.partition_point(below)`, starting from a guess: gallops outwards
/// from it to bracket the answer, then binary searches the bracket. At most
/// about twice a binary search's steps, whatever the guess; a few when it is
/// close.
fn partition_from<T>(items: &[T], guess: usize, below: impl Fn(&T) -> bool) -> usize {
    let n = items.len();
    if n < 8 {
        return items.partition_point(below);
    }
    let guess = guess.min(n - 1);
    // Every item before `lo` is below; none from `hi` on is.
    let (mut lo, mut hi);
    let mut step = 1;
    if below(&items[guess]) {
        lo = guess + 1;
        loop {
            let probe = guess + step;
            if probe >= n {
                hi = n;
                break;
            }
            if !below(&items[probe]) {
                hi = probe;
                break;
            }
            lo = probe + 1;
            step *= 2;
        }
    } else {
        hi = guess;
        loop {
            if step > guess {
                lo = 0;
                break;
            }
            let probe = guess - step;
            if below(&items[probe]) {
                lo = probe + 1;
                break;
            }
            hi = probe;
            step *= 2;
        }
    }
    lo + items[lo..hi].partition_point(below)
}

#[cfg(test)]
mod tests;
