//! Deterministic inputs shared by the benchmarks in `benches/benches/`.
//!
//! Every generator takes a seed, so two runs (before and after a change)
//! measure the same bytes. The mixed corpus reads real files from this machine
//! because synthetic data chunks and compresses unlike real data; it falls
//! back to generated data where those files are missing.

pub mod process;
pub mod remote;
pub mod wan;

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, RngCore, SeedableRng};

/// One mebibyte.
pub const MIB: usize = 1 << 20;

/// `len` bytes of incompressible pseudo-random data.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut out = vec![0u8; len];
    StdRng::seed_from_u64(seed).fill_bytes(&mut out);
    out
}

/// `len` bytes that look like log files: timestamped lines of words drawn
/// with a skewed distribution from a fixed vocabulary. zstd level 3 shrinks it
/// about threefold, in the range of source code and logs.
pub fn text_like(len: usize, seed: u64) -> Vec<u8> {
    const LEVELS: [&str; 4] = ["INFO", "DEBUG", "WARN", "ERROR"];
    let mut rng = StdRng::seed_from_u64(seed);
    let vocabulary: Vec<Vec<u8>> = (0..4096)
        .map(|_| {
            let n = rng.gen_range(2..=11);
            (0..n).map(|_| rng.gen_range(b'a'..=b'z')).collect()
        })
        .collect();
    let mut out = Vec::with_capacity(len + 256);
    let mut seconds = 0u32;
    while out.len() < len {
        seconds += rng.gen_range(0..3);
        let line = format!(
            "2025-03-{:02} {:02}:{:02}:{:02}.{:03} {} [worker-{}] ",
            1 + seconds / 86_400 % 28,
            seconds / 3600 % 24,
            seconds / 60 % 60,
            seconds % 60,
            rng.gen_range(0..1000),
            LEVELS[rng.gen_range(0..LEVELS.len())],
            rng.gen_range(0..16),
        );
        out.extend_from_slice(line.as_bytes());
        for i in 0..rng.gen_range(4..16) {
            if i > 0 {
                out.push(b' ');
            }
            // Cubing a uniform draw favours the first words, roughly like Zipf.
            let u: f64 = rng.gen();
            let word = &vocabulary[(u * u * u * vocabulary.len() as f64) as usize];
            out.extend_from_slice(word);
            if rng.gen_ratio(1, 8) {
                out.extend_from_slice(format!("={}", rng.gen_range(0..100_000)).as_bytes());
            }
        }
        out.push(b'\n');
    }
    out.truncate(len);
    out
}

/// A corpus of real files, and what it is made of.
pub struct Corpus {
    /// The files' bytes, concatenated.
    pub bytes: Vec<u8>,
    /// Where the bytes came from, for the report.
    pub description: String,
}

/// About `len` bytes of real files from `roots`, concatenated like a tar
/// stream.
///
/// Files are listed recursively (symlinks skipped), shuffled with `seed` so
/// the corpus mixes text, binaries and compressed files, and each is cut to at
/// most 8 MiB. When the roots hold less than `len` bytes, the rest is filled
/// with generated data, half text-like and half random.
pub fn mixed_corpus(len: usize, roots: &[&Path], seed: u64) -> Corpus {
    let mut files = Vec::new();
    for root in roots {
        list_files(root, &mut files);
    }
    files.sort();
    files.shuffle(&mut StdRng::seed_from_u64(seed));

    let mut bytes = Vec::with_capacity(len);
    let mut used = 0usize;
    for path in files {
        if bytes.len() >= len {
            break;
        }
        let Ok(file) = fs::File::open(&path) else {
            continue;
        };
        let take = (len - bytes.len()).min(8 * MIB) as u64;
        if file.take(take).read_to_end(&mut bytes).is_ok() {
            used += 1;
        }
    }
    let from_files = bytes.len();
    if bytes.len() < len {
        let missing = len - bytes.len();
        bytes.extend_from_slice(&text_like(missing / 2, seed));
        bytes.extend_from_slice(&random_bytes(missing - missing / 2, seed));
    }
    let roots: Vec<String> = roots.iter().map(|r| r.display().to_string()).collect();
    let description = format!(
        "{} MiB: {:.1} MiB from {used} files under {}, {:.1} MiB generated",
        bytes.len() / MIB,
        from_files as f64 / MIB as f64,
        roots.join(" and "),
        (bytes.len() - from_files) as f64 / MIB as f64,
    );
    Corpus { bytes, description }
}

/// Every regular file under `dir`, recursively (symlinks skipped), appended to `out`.
pub fn list_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            list_files(&entry.path(), out);
        } else if kind.is_file() {
            out.push(entry.path());
        }
    }
}

/// A byte count in binary units as used for chunk bounds: `512K`, `1M`.
pub fn size_label(bytes: u32) -> String {
    if bytes > 0 && bytes.trailing_zeros() >= 20 {
        format!("{}M", bytes >> 20)
    } else if bytes > 0 && bytes.trailing_zeros() >= 10 {
        format!("{}K", bytes >> 10)
    } else {
        bytes.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generators_are_deterministic_and_sized() {
        assert_eq!(random_bytes(1000, 1), random_bytes(1000, 1));
        assert_ne!(random_bytes(1000, 1), random_bytes(1000, 2));
        let text = text_like(100_000, 3);
        assert_eq!(text.len(), 100_000);
        assert_eq!(text, text_like(100_000, 3));
        let compressed = zstd::bulk::compress(&text, 3).unwrap();
        assert!(
            compressed.len() < text.len() / 2,
            "text-like data compresses"
        );
    }

    #[test]
    fn corpus_falls_back_to_generated_data() {
        let corpus = mixed_corpus(100_000, &[Path::new("/nonexistent/lifeboat")], 1);
        assert_eq!(corpus.bytes.len(), 100_000);
        assert!(
            corpus.description.contains("0 files"),
            "{}",
            corpus.description
        );
    }

    #[test]
    fn size_labels() {
        assert_eq!(size_label(512 << 10), "512K");
        assert_eq!(size_label(8 << 20), "8M");
        assert_eq!(size_label(1000), "1000");
    }
}
