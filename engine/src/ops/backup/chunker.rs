//! Content-defined chunking: FastCDC (v2020) over a stream, with a gear
//! table drawn entirely from the repository's chunker key, so chunk
//! boundaries neither fingerprint known files nor reveal the key.
//!
//! The buffer is read in large blocks and chunks are handed out as slices of
//! it, so deduplicated chunks are never copied.

use std::io::Read;
use std::sync::Arc;

use fastcdc::v2020::{cut_gear, logarithm2, MASKS};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::format::config::RepoParams;
use crate::format::crypto::GearTable;

/// Size a chunking buffer starts at.
const INITIAL_BUFFER: usize = 256 * 1024;

/// FastCDC's normalization level 1: the small mask has one bit more than
/// the average chunk size asks for, the large mask one bit fewer.
const NORMALIZATION_BITS: u32 = 1;

/// The gear table and its left-shifted twin, which FastCDC v2020 uses on
/// even positions (two bytes per loop step).
#[derive(Zeroize, ZeroizeOnDrop)]
struct Tables {
    gear: [u64; 256],
    gear_ls: [u64; 256],
}

/// Splits streams into chunks with fixed parameters and gear table.
#[derive(Clone)]
pub struct Chunker {
    min: u32,
    avg: u32,
    max: u32,
    mask_s: u64,
    mask_l: u64,
    tables: Arc<Tables>,
}

impl std::fmt::Debug for Chunker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chunker")
            .field("min", &self.min)
            .field("avg", &self.avg)
            .field("max", &self.max)
            .finish_non_exhaustive()
    }
}

impl Chunker {
    /// A chunker with the repository's size bounds and gear table
    /// ([`crate::format::crypto::MasterKeys::gear_table`]).
    pub fn new(params: &RepoParams, gear: &GearTable) -> Self {
        let bits = logarithm2(params.chunk_avg);
        let mut tables = Tables {
            gear: *gear.0,
            gear_ls: [0; 256],
        };
        for (shifted, word) in tables.gear_ls.iter_mut().zip(gear.0.iter()) {
            *shifted = word << 1;
        }
        Chunker {
            min: params.chunk_min,
            avg: params.chunk_avg,
            max: params.chunk_max,
            mask_s: MASKS[(bits + NORMALIZATION_BITS) as usize],
            mask_l: MASKS[(bits - NORMALIZATION_BITS) as usize],
            tables: Arc::new(tables),
        }
    }

    /// The end (exclusive) of the chunk that starts at `data[0]`.
    fn cut(&self, data: &[u8]) -> usize {
        cut_gear(
            data,
            self.min as usize,
            self.avg as usize,
            self.max as usize,
            self.mask_s,
            self.mask_l,
            self.mask_s << 1,
            self.mask_l << 1,
            &self.tables.gear,
            &self.tables.gear_ls,
        )
        .1
    }

    /// The largest chunk this chunker emits.
    pub fn max_size(&self) -> usize {
        self.max as usize
    }

    /// Reads `source` to the end, calling `on_chunk` with each chunk in order.
    ///
    /// `buffer` is reused across calls. It starts small and grows (up to twice
    /// the maximum chunk size) only while a stream is larger than it, so small
    /// files never cost a large buffer.
    ///
    /// # Errors
    /// The first read error, or the first error `on_chunk` returns.
    pub fn chunk_stream<R: Read, E: From<std::io::Error>>(
        &self,
        mut source: R,
        buffer: &mut Vec<u8>,
        mut on_chunk: impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        let block = 2 * self.max as usize;
        if buffer.len() < INITIAL_BUFFER.min(block) {
            buffer.resize(INITIAL_BUFFER.min(block), 0);
        }
        let mut filled = 0usize;
        let mut eof = false;
        loop {
            while !eof {
                if filled == buffer.len() {
                    if buffer.len() >= block {
                        break;
                    }
                    let grown = (buffer.len() * 4).min(block);
                    buffer.resize(grown, 0);
                }
                match source.read(&mut buffer[filled..]) {
                    Ok(0) => eof = true,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e.into()),
                }
            }
            if filled == 0 {
                return Ok(());
            }
            let mut start = 0usize;
            // Cut only while a whole maximum-size window is buffered, unless at EOF,
            // so boundaries do not depend on how reads happen to fall.
            while start < filled && (eof || filled - start >= self.max as usize) {
                let end = start + self.cut(&buffer[start..filled]);
                on_chunk(&buffer[start..end])?;
                start = end;
            }
            buffer.copy_within(start..filled, 0);
            filled -= start;
            if eof && filled == 0 {
                return Ok(());
            }
        }
    }

    /// Chunk boundaries of an in-memory slice (for tests and benchmarks).
    pub fn chunk_lengths(&self, data: &[u8]) -> Vec<usize> {
        let mut lens = Vec::new();
        let mut buffer = Vec::new();
        let _ = self.chunk_stream::<_, std::io::Error>(data, &mut buffer, |c| {
            lens.push(c.len());
            Ok(())
        });
        lens
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn data(len: usize) -> Vec<u8> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(42);
        (0..len).map(|_| rng.gen()).collect()
    }

    /// The gear table of a fixed key, so failures reproduce.
    fn gear(key_byte: u8) -> GearTable {
        crate::format::crypto::MasterKeys::from_bytes(&[key_byte; 96])
            .expect("96 bytes are master keys")
            .gear_table()
    }

    fn small() -> RepoParams {
        RepoParams {
            chunk_min: 2048,
            chunk_avg: 8192,
            chunk_max: 32768,
            ..RepoParams::default()
        }
    }

    #[test]
    fn chunks_cover_input_and_respect_bounds() {
        let input = data(1_000_000);
        let chunker = Chunker::new(&small(), &gear(7));
        let lens = chunker.chunk_lengths(&input);
        assert_eq!(lens.iter().sum::<usize>(), input.len());
        assert!(lens[..lens.len() - 1]
            .iter()
            .all(|&l| (2048..=32768).contains(&l)));
        assert!(lens.len() > 50);
    }

    #[test]
    fn boundaries_independent_of_read_sizes() {
        struct Trickle<'a>(&'a [u8]);
        impl Read for Trickle<'_> {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                let n = buf.len().min(1000).min(self.0.len());
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let input = data(500_000);
        let chunker = Chunker::new(&small(), &gear(7));
        let mut lens = Vec::new();
        chunker
            .chunk_stream::<_, std::io::Error>(Trickle(&input), &mut Vec::new(), |c| {
                lens.push(c.len());
                Ok(())
            })
            .unwrap();
        assert_eq!(lens, chunker.chunk_lengths(&input));
    }

    #[test]
    fn key_changes_boundaries_and_edits_stay_local() {
        let input = data(1_000_000);
        let a = Chunker::new(&small(), &gear(1)).chunk_lengths(&input);
        let b = Chunker::new(&small(), &gear(2)).chunk_lengths(&input);
        assert_ne!(a, b);
        let mut edited = input.clone();
        edited[500_000] ^= 0xff;
        let c = Chunker::new(&small(), &gear(1)).chunk_lengths(&edited);
        let same = a.iter().zip(&c).take_while(|(x, y)| x == y).count();
        assert!(same > a.len() / 3, "prefix chunks unchanged");
        assert!(a.len().abs_diff(c.len()) <= 2);
    }

    #[test]
    fn empty_input_has_no_chunks() {
        assert!(Chunker::new(&small(), &gear(0))
            .chunk_lengths(&[])
            .is_empty());
    }

    #[test]
    fn gear_table_is_no_seed_xored_into_the_public_table() {
        let (public, _) = fastcdc::v2020::get_gear_with_seed(0);
        let table = gear(9);
        // Format 1's table was the public one XORed with one word: every
        // entry differed from it by the same value. Here no two do.
        let mut differences: Vec<u64> = table
            .0
            .iter()
            .zip(public.iter())
            .map(|(a, b)| a ^ b)
            .collect();
        differences.sort_unstable();
        differences.dedup();
        assert_eq!(differences.len(), 256);
        assert_ne!(gear(9), gear(10));
        assert_eq!(gear(9), gear(9));
    }

    #[test]
    fn keyed_table_keeps_the_chunk_size_distribution() {
        // The mean chunk of random data stays near the configured average
        // (normalized chunking puts it a little above): the keyed words are
        // as random as FastCDC's.
        let input = data(8_000_000);
        for key in [1, 2, 3] {
            let lens = Chunker::new(&small(), &gear(key)).chunk_lengths(&input);
            let mean = input.len() / lens.len();
            assert!(
                (8192..=16384).contains(&mean),
                "mean chunk {mean} for key {key}"
            );
        }
    }

    #[test]
    fn cuts_as_the_fastcdc_crate_does_for_the_same_table() {
        // With format 1's table (the crate's, seed-XORed) the keyed cutting
        // loop reproduces the crate's own FastCDC boundaries exactly: the
        // only change of format 2 is the table.
        let input = data(2_000_000);
        let p = small();
        let (seeded, _) = fastcdc::v2020::get_gear_with_seed(7);
        let ours = Chunker::new(&p, &GearTable(seeded)).chunk_lengths(&input);
        let theirs: Vec<usize> = fastcdc::v2020::FastCDC::with_level_and_seed(
            &input,
            p.chunk_min,
            p.chunk_avg,
            p.chunk_max,
            fastcdc::v2020::Normalization::Level1,
            7,
        )
        .map(|c| c.length)
        .collect();
        assert_eq!(ours, theirs);
    }
}
