//! Where a file's bytes are: its blobs in order with the offset each one
//! ends at, so a read at any offset finds its blobs by binary search.
//!
//! A node lists its content as blob ids only; the plaintext length of each
//! comes from the index, once, when the file is first opened.

use std::ops::Range;

use crate::format::ids::BlobId;

/// A file's blobs and the running total of their lengths.
#[derive(Debug, Clone, Default)]
pub(crate) struct FileMap {
    ids: Vec<BlobId>,
    /// `ends[i]`: the file offset just past blob `i`.
    ends: Vec<u64>,
}

impl FileMap {
    /// The map of a file made of `blobs` (id, plaintext length), in order.
    pub(crate) fn new(blobs: impl IntoIterator<Item = (BlobId, u64)>) -> Self {
        let mut map = FileMap::default();
        let mut end = 0u64;
        for (id, len) in blobs {
            end = end.saturating_add(len);
            map.ids.push(id);
            map.ends.push(end);
        }
        map
    }

    /// The file's length: the sum of its blobs' lengths.
    pub(crate) fn len(&self) -> u64 {
        self.ends.last().copied().unwrap_or(0)
    }

    /// The number of blobs.
    #[cfg(test)]
    pub(crate) fn blobs(&self) -> usize {
        self.ids.len()
    }

    /// The ids of blobs `range`.
    pub(crate) fn ids(&self, range: Range<usize>) -> &[BlobId] {
        &self.ids[range]
    }

    /// The file offset where blob `i` starts.
    pub(crate) fn start(&self, i: usize) -> u64 {
        if i == 0 {
            0
        } else {
            self.ends[i - 1]
        }
    }

    /// The blobs holding bytes `offset .. offset + size` (clipped to the
    /// file): empty at or past the end, or for a read of nothing.
    pub(crate) fn span(&self, offset: u64, size: u64) -> Range<usize> {
        let end = offset.saturating_add(size).min(self.len());
        if offset >= end {
            return 0..0;
        }
        // The first blob ending after `offset`, up to the first ending at
        // or after `end` (zero-length blobs before it are skipped).
        let first = self.ends.partition_point(|&e| e <= offset);
        let last = self.ends.partition_point(|&e| e < end);
        first..last + 1
    }

    /// The end of the blobs from `from` on that fit in `budget` bytes
    /// (always at least one more blob when there is one, so a blob larger
    /// than the budget is still read ahead).
    pub(crate) fn ahead(&self, from: usize, budget: u64) -> usize {
        if from >= self.ids.len() {
            return self.ids.len();
        }
        let limit = self.start(from).saturating_add(budget);
        let fit = self.ends.partition_point(|&e| e <= limit);
        fit.max(from + 1)
    }

    /// Copies bytes `offset .. offset + size` out of the blobs `span` (as
    /// returned by [`FileMap::span`]) whose plaintexts are `parts`, in order.
    pub(crate) fn assemble(
        &self,
        span: Range<usize>,
        parts: &[bytes::Bytes],
        offset: u64,
        size: u64,
    ) -> bytes::Bytes {
        let end = offset.saturating_add(size).min(self.len());
        if let ([part], Some(&first)) = (parts, span.clone().next().as_ref()) {
            // One blob: a slice of it, no copy.
            let from = (offset - self.start(first)) as usize;
            let to = (end - self.start(first)) as usize;
            return part.slice(from.min(part.len())..to.min(part.len()));
        }
        let mut out = Vec::with_capacity((end.saturating_sub(offset)) as usize);
        for (i, part) in span.zip(parts) {
            let start = self.start(i);
            let from = offset.saturating_sub(start) as usize;
            let to = (end - start).min(part.len() as u64) as usize;
            if from < to {
                out.extend_from_slice(&part[from..to]);
            }
        }
        bytes::Bytes::from(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn map(lengths: &[u64]) -> FileMap {
        FileMap::new(
            lengths
                .iter()
                .enumerate()
                .map(|(i, &len)| (BlobId([i as u8; 32]), len)),
        )
    }

    #[test]
    fn offsets_map_to_the_blobs_that_hold_them() {
        let m = map(&[100, 50, 200]);
        assert_eq!(m.len(), 350);
        assert_eq!(m.span(0, 1), 0..1);
        assert_eq!(m.span(0, 100), 0..1, "the first blob exactly");
        assert_eq!(m.span(99, 2), 0..2, "across a boundary");
        assert_eq!(m.span(100, 1), 1..2, "the first byte of the second blob");
        assert_eq!(m.span(149, 1), 1..2);
        assert_eq!(m.span(150, 1000), 2..3, "clipped to the end");
        assert_eq!(m.span(0, 350), 0..3);
        assert_eq!(m.span(0, u64::MAX), 0..3, "no overflow");
        assert_eq!(m.span(350, 10), 0..0, "at the end: nothing");
        assert_eq!(m.span(1000, 10), 0..0, "past the end: nothing");
        assert_eq!(m.span(10, 0), 0..0, "a read of nothing");
        assert_eq!(m.start(0), 0);
        assert_eq!(m.start(2), 150);
    }

    #[test]
    fn zero_length_blobs_and_empty_files() {
        let m = map(&[]);
        assert_eq!((m.len(), m.blobs()), (0, 0));
        assert_eq!(m.span(0, 4096), 0..0);
        assert_eq!(m.ahead(0, 100), 0);
        let m = map(&[10, 0, 10]);
        assert_eq!(m.span(10, 1), 2..3, "the empty blob holds no byte");
        assert_eq!(m.span(5, 10), 0..3);
    }

    #[test]
    fn read_ahead_stays_within_its_budget_but_always_moves() {
        let m = map(&[100, 100, 100, 100]);
        assert_eq!(m.ahead(1, 200), 3, "two blobs of 100 fit in 200");
        assert_eq!(m.ahead(1, 250), 3);
        assert_eq!(m.ahead(1, 50), 2, "one blob even when larger");
        assert_eq!(m.ahead(3, 1000), 4);
        assert_eq!(m.ahead(4, 1000), 4, "nothing past the end");
    }

    #[test]
    fn reads_are_assembled_from_their_blobs() {
        let m = map(&[4, 3, 5]);
        let parts: Vec<Bytes> = [&b"abcd"[..], b"efg", b"hijkl"]
            .iter()
            .map(|p| Bytes::copy_from_slice(p))
            .collect();
        let read = |offset, size| {
            let span = m.span(offset, size);
            let got = m.assemble(span.clone(), &parts[span], offset, size);
            String::from_utf8(got.to_vec()).unwrap()
        };
        assert_eq!(read(0, 12), "abcdefghijkl");
        assert_eq!(read(2, 4), "cdef");
        assert_eq!(read(4, 3), "efg");
        assert_eq!(read(5, 1), "f", "inside one blob: a slice");
        assert_eq!(read(10, 100), "kl", "clipped at the end");
        assert_eq!(read(12, 1), "");
    }

    #[test]
    fn a_short_blob_yields_a_short_read_not_a_panic() {
        // The index said 8 bytes; the blob gave 3 (never after verification,
        // but the arithmetic must not trust it).
        let m = map(&[8]);
        let got = m.assemble(0..1, &[Bytes::from_static(b"abc")], 2, 6);
        assert_eq!(&got[..], b"c");
    }
}
