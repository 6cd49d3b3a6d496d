//! Content-defined chunking: FastCDC (v2020) over a stream, with the gear
//! table keyed by the repository's chunker seed so chunk boundaries do not
//! fingerprint known files.
//!
//! The buffer is read in large blocks and chunks are handed out as slices of
//! it, so deduplicated chunks are never copied.

use std::io::Read;

use fastcdc::v2020::{FastCDC, Normalization};

use crate::format::config::RepoParams;

/// Size a chunking buffer starts at.
const INITIAL_BUFFER: usize = 256 * 1024;

/// Splits streams into chunks with fixed parameters and seed.
#[derive(Debug, Clone, Copy)]
pub struct Chunker {
    min: u32,
    avg: u32,
    max: u32,
    seed: u64,
}

impl Chunker {
    /// A chunker with the repository's size bounds and seed.
    pub fn new(params: &RepoParams, seed: u64) -> Self {
        Chunker {
            min: params.chunk_min,
            avg: params.chunk_avg,
            max: params.chunk_max,
            seed,
        }
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
            let cdc = FastCDC::with_level_and_seed(
                &buffer[..filled],
                self.min,
                self.avg,
                self.max,
                Normalization::Level1,
                self.seed,
            );
            let mut start = 0usize;
            // Cut only while a whole maximum-size window is buffered, unless at EOF,
            // so boundaries do not depend on how reads happen to fall.
            while start < filled && (eof || filled - start >= self.max as usize) {
                let (_, end) = cdc.cut(start, filled - start);
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
        let chunker = Chunker::new(&small(), 7);
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
        let chunker = Chunker::new(&small(), 7);
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
    fn seed_changes_boundaries_and_edits_stay_local() {
        let input = data(1_000_000);
        let a = Chunker::new(&small(), 1).chunk_lengths(&input);
        let b = Chunker::new(&small(), 2).chunk_lengths(&input);
        assert_ne!(a, b);
        let mut edited = input.clone();
        edited[500_000] ^= 0xff;
        let c = Chunker::new(&small(), 1).chunk_lengths(&edited);
        let same = a.iter().zip(&c).take_while(|(x, y)| x == y).count();
        assert!(same > a.len() / 3, "prefix chunks unchanged");
        assert!(a.len().abs_diff(c.len()) <= 2);
    }

    #[test]
    fn empty_input_has_no_chunks() {
        assert!(Chunker::new(&small(), 0).chunk_lengths(&[]).is_empty());
    }
}
