//! Loading the master index: index files become runs of slots and staged
//! records; [`MasterIndex::finish`] sorts and packs the records.

use std::collections::HashMap;

use super::{
    MasterIndex, Run, Staged, Wide, BUCKETS, DIR_SHIFT, MAX_SLOTS, RAW_BITS, RAW_SHIFT, RECORD,
    SHARDS, STAGED, TAIL, TREE_BIT, WIDE,
};
use crate::format::index::{IndexBlob, IndexFile};
use crate::format::pack::BlobType;

impl MasterIndex {
    /// Makes room for `entries` more blob entries (ids are uniform, so each
    /// shard gets its share plus five standard deviations).
    pub fn reserve(&mut self, entries: usize) {
        self.start_loading();
        let share = entries / SHARDS;
        let margin = 5 * (share as f64).sqrt() as usize + 64;
        for shard in &mut self.staged {
            shard.reserve(share + margin);
        }
        // One sentinel per pack: a sixteenth covers packs of 16 blobs or more.
        self.slots.reserve(entries + entries / 16);
    }

    fn start_loading(&mut self) {
        if self.staged.is_empty() {
            self.staged = vec![Vec::new(); SHARDS];
        }
        if self.pack_numbers.len() != self.packs.len() {
            self.pack_numbers = self
                .packs
                .iter()
                .enumerate()
                .map(|(n, id)| (*id, n as u32))
                .collect();
        }
    }

    /// Adds every pack of an index file. Call [`MasterIndex::finish`] before lookups.
    pub fn add_file(&mut self, file: &IndexFile) {
        self.start_loading();
        for pack in &file.packs {
            let number = *self.pack_numbers.entry(pack.id).or_insert_with(|| {
                self.packs.push(pack.id);
                (self.packs.len() - 1) as u32
            });
            self.add_blobs(number, &pack.blobs);
        }
        self.sorted = false;
    }

    /// Appends one listed pack's blobs as runs of slots and stages their records.
    fn add_blobs(&mut self, pack: u32, blobs: &[IndexBlob]) {
        // The open run's base and its last blob's end.
        let mut open: Option<(u64, u64)> = None;
        for b in blobs {
            let offset = u64::from(b.offset);
            let end = offset + u64::from(b.length);
            let base = match open {
                // The run goes on while its values stay below the marker.
                Some((base, e)) if offset >= e && end - base < WIDE => {
                    if offset > e {
                        self.push_slot(base, e, 0, false); // phantom: the gap's start
                    }
                    base
                }
                _ => {
                    if let Some((base, e)) = open {
                        self.push_slot(base, e, 0, false); // sentinel
                    }
                    let start = self.slots.len() as u32;
                    self.runs.push(Run {
                        start,
                        pack,
                        base: b.offset,
                    });
                    offset
                }
            };
            let slot = self.push_slot(base, offset, b.raw_length, b.blob_type == BlobType::Tree);
            let mut record = [0u8; STAGED];
            record[..32].copy_from_slice(&b.id.0);
            record[32..].copy_from_slice(&slot.to_be_bytes());
            self.staged[usize::from(b.id.0[0])].push(record);
            open = Some((base, end));
        }
        if let Some((base, e)) = open {
            self.push_slot(base, e, 0, false);
        }
        self.len += blobs.len();
    }

    /// Appends a slot for `offset` (or an end) in a run starting at `base`.
    fn push_slot(&mut self, base: u64, offset: u64, raw_length: u32, tree: bool) -> u32 {
        assert!(
            self.slots.len() < MAX_SLOTS - 1,
            "the master index holds at most 2^31 slots"
        );
        let slot = self.slots.len() as u32;
        let delta = offset - base;
        let value = if delta < WIDE && raw_length < 1 << RAW_BITS {
            delta | u64::from(raw_length) << RAW_SHIFT
        } else {
            self.wide.push(Wide {
                slot,
                raw_length,
                offset,
            });
            WIDE
        };
        let value = value | u64::from(tree) << TREE_BIT;
        let bytes = value.to_le_bytes();
        self.slots
            .push([bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5]]);
        slot
    }

    /// Sorts the entries (duplicates across packs keep every copy, first found wins lookups).
    pub fn finish(&mut self) {
        self.packs.shrink_to_fit();
        self.slots.shrink_to_fit();
        self.wide.shrink_to_fit();
        self.runs.shrink_to_fit();
        self.build_run_dir();
        self.pack_numbers = HashMap::new();
        let mut staged = std::mem::take(&mut self.staged);
        staged.resize_with(SHARDS, Vec::new);
        if self.shards.is_empty() {
            self.shards = vec![Vec::new(); SHARDS];
            self.highs = vec![Vec::new(); SHARDS];
        }
        let mut starts = vec![0u32; BUCKETS + 1];
        for (first, mut records) in staged.into_iter().enumerate() {
            if !records.is_empty() && !self.shards[first].is_empty() {
                // Files added after a finish: merge with what is there.
                let mut all = self.unpack_shard(first);
                all.append(&mut records);
                records = all;
            }
            if records.is_empty() {
                // Unchanged since the last finish (or empty): same bucket sizes.
                if !self.bucket_starts.is_empty() {
                    for b in first << 8..(first + 1) << 8 {
                        starts[b + 1] = self.bucket_starts[b + 1] - self.bucket_starts[b];
                    }
                }
                continue;
            }
            drop(std::mem::take(&mut self.shards[first]));
            drop(std::mem::take(&mut self.highs[first]));
            self.sort_shard(
                &mut records,
                &mut starts[(first << 8) + 1..=(first + 1) << 8],
            );
            self.pack_shard(first, &records);
        }
        for b in 0..BUCKETS {
            starts[b + 1] += starts[b];
        }
        let total = starts[BUCKETS] as usize;
        let mut dir = Vec::with_capacity(total.div_ceil(1 << DIR_SHIFT));
        let mut b = 0;
        for k in 0..total.div_ceil(1 << DIR_SHIFT) {
            while starts[b + 1] as usize <= k << DIR_SHIFT {
                b += 1;
            }
            dir.push(b as u16);
        }
        self.position_dir = dir;
        self.bucket_starts = starts;
        self.sorted = true;
    }

    /// Packs one sorted shard: ids without their first two bytes, keys in
    /// three bytes, and a high byte per record only if some key needs one.
    fn pack_shard(&mut self, first: usize, records: &[Staged]) {
        let split = self.key_split;
        let key = |r: &Staged| u32::from_be_bytes([r[32], r[33], r[34], r[35]]);
        let mut packed = Vec::with_capacity(records.len() * RECORD);
        for r in records {
            let low = (key(r) & ((1 << split) - 1)).to_be_bytes();
            packed.extend_from_slice(&r[2..32]);
            packed.extend_from_slice(&low[1..]);
        }
        self.shards[first] = packed;
        if records.iter().any(|r| key(r) >> split != 0) {
            // Keys are below 2^31 and the split at least 23 bits (lower
            // only in tests, with few slots): the high part fits a byte.
            self.highs[first] = records.iter().map(|r| (key(r) >> split) as u8).collect();
        }
    }

    /// Sorts one shard's records by (id, pack number, slot), counting each
    /// bucket (second id byte) into `counts`.
    fn sort_shard(&self, records: &mut [Staged], counts: &mut [u32]) {
        for r in records.iter() {
            counts[usize::from(r[1])] += 1;
        }
        // American flag sort on the second byte, in place.
        let mut next = [0usize; 256];
        let mut ends = [0usize; 256];
        let mut at = 0;
        for b in 0..256 {
            next[b] = at;
            at += counts[b] as usize;
            ends[b] = at;
        }
        for b in 0..256 {
            while next[b] < ends[b] {
                let d = usize::from(records[next[b]][1]);
                if d == b {
                    next[b] += 1;
                } else {
                    records.swap(next[b], next[d]);
                    next[d] += 1;
                }
            }
        }
        let mut start = 0;
        for b in 0..256 {
            let bucket = &mut records[start..ends[b]];
            start = ends[b];
            // By (id, slot): slots follow the order blobs were added.
            bucket.sort_unstable();
            // A blob listed in several packs: by pack number, then slot.
            for group in bucket.chunk_by_mut(|x, y| x[..32] == y[..32]) {
                if group.len() > 1 {
                    group.sort_by_key(|r| {
                        let slot = u32::from_be_bytes([r[32], r[33], r[34], r[35]]);
                        (self.run_of(slot).pack, slot)
                    });
                }
            }
        }
    }

    /// A finished shard back in staged form.
    fn unpack_shard(&self, first: usize) -> Vec<Staged> {
        let shard = &self.shards[first];
        let mut out = Vec::with_capacity(shard.len() / RECORD);
        let base = self.bucket_starts[first << 8];
        for second in 0..256 {
            let b = (first << 8) | second;
            let (lo, hi) = (
                self.bucket_starts[b] - base,
                self.bucket_starts[b + 1] - base,
            );
            let (records, _) = shard[lo as usize * RECORD..hi as usize * RECORD].as_chunks();
            for (i, r) in records.iter().enumerate() {
                let key = self.key_of(first, lo as usize + i, r);
                let mut staged = [0u8; STAGED];
                staged[0] = first as u8;
                staged[1] = second as u8;
                staged[2..32].copy_from_slice(&r[..TAIL]);
                staged[32..].copy_from_slice(&key.to_be_bytes());
                out.push(staged);
            }
        }
        out
    }

    fn build_run_dir(&mut self) {
        let entries = self.slots.len().div_ceil(1 << DIR_SHIFT);
        let mut dir = Vec::with_capacity(entries);
        let mut run = 0usize;
        for k in 0..entries {
            let slot = (k << DIR_SHIFT) as u32;
            while run + 1 < self.runs.len() && self.runs[run + 1].start <= slot {
                run += 1;
            }
            dir.push(run as u32);
        }
        self.run_dir = dir;
    }
}
