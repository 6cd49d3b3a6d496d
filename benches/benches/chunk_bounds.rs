//! Chooses the chunk size bounds: for each candidate (min, avg, max), how fast
//! it chunks, how many chunks (index entries) it makes, and how much of a
//! stream must be stored again after a few small insertions.
//!
//! The input is ~64 MiB of real files from this machine (`/usr/share/doc` and
//! `/usr/lib`, shuffled and concatenated like a tar stream), so compressed,
//! binary and text data all appear; generated data fills in where those
//! directories are missing. Each trial inserts 1 to 8 random bytes at 10
//! random places, re-chunks the stream with a fresh chunker seed, and counts
//! the bytes of chunks whose blob id the original stream did not have. It also
//! reports what the chunks take once compressed (zstd at the default level) and
//! sealed, since small chunks compress less well.
//!
//! Run with `cargo bench -p lifeboat-benches --bench chunk_bounds`. Without
//! `--bench` (as `cargo test --benches` runs it) it checks itself on 4 MiB.

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use lifeboat_benches::{mixed_corpus, size_label, MIB};
use lifeboat_engine::backup::chunker::Chunker;
use lifeboat_engine::format::crypto::{GearTable, MasterKeys, SEAL_OVERHEAD};
use lifeboat_engine::repo::index::MasterIndex;
use lifeboat_engine::{BlobId, RepoParams};
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};

const SEED: u64 = 0x11fe_b0a7;
const EDITS: usize = 10;
const TRIALS: u64 = 5;
const TIMED_RUNS: usize = 5;

/// (min, avg, max) candidates, in bytes.
const CANDIDATES: [(u32, u32, u32); 7] = [
    (64 << 10, 256 << 10, 1 << 20),
    (128 << 10, 512 << 10, 2 << 20),
    (256 << 10, 1 << 20, 4 << 20),
    (512 << 10, 1 << 20, 8 << 20),
    (512 << 10, 2 << 20, 8 << 20),
    (1 << 20, 2 << 20, 8 << 20),
    (1 << 20, 4 << 20, 16 << 20),
];

/// A fresh chunker key's gear table (the seed only names the trial).
fn gear_for(_trial: u64) -> GearTable {
    MasterKeys::generate().gear_table()
}

/// Each chunk's blob id and length, in stream order.
fn chunks(chunker: &Chunker, keys: &MasterKeys, data: &[u8]) -> Vec<(BlobId, usize)> {
    let mut out = Vec::new();
    chunker
        .chunk_stream::<_, std::io::Error>(data, &mut Vec::new(), |c| {
            out.push((keys.blob_id(c), c.len()));
            Ok(())
        })
        .expect("in-memory reads do not fail");
    out
}

/// Bytes stored for `data` cut as `chunks`: each chunk compressed with zstd at
/// the default level where that shrinks it (as `seal` does), plus the seal's
/// nonce, tag and encoding byte.
fn stored_size(data: &[u8], chunks: &[(BlobId, usize)]) -> usize {
    let mut compressor =
        zstd::bulk::Compressor::new(RepoParams::default().compression).expect("zstd context");
    let mut out = Vec::new();
    let mut at = 0;
    chunks
        .iter()
        .map(|(_, len)| {
            let chunk = &data[at..at + len];
            at += len;
            out.clear();
            out.reserve(zstd::zstd_safe::compress_bound(*len));
            let compressed = compressor
                .compress_to_buffer(chunk, &mut out)
                .expect("output has room");
            compressed.min(*len) + SEAL_OVERHEAD
        })
        .sum()
}

/// The fastest of a few chunking passes over `data`, without hashing.
fn chunk_time(chunker: &Chunker, data: &[u8]) -> Duration {
    let mut buffer = Vec::new();
    (0..TIMED_RUNS)
        .map(|_| {
            let start = Instant::now();
            let mut total = 0usize;
            chunker
                .chunk_stream::<_, std::io::Error>(data, &mut buffer, |c| {
                    total += std::hint::black_box(c).len();
                    Ok(())
                })
                .expect("in-memory reads do not fail");
            assert_eq!(total, data.len());
            start.elapsed()
        })
        .min()
        .expect("at least one run")
}

/// `data` with 1 to 8 random bytes inserted at `EDITS` random places.
fn edit(data: &[u8], rng: &mut StdRng) -> (Vec<u8>, usize) {
    let mut places: Vec<usize> = (0..EDITS).map(|_| rng.gen_range(0..data.len())).collect();
    places.sort_unstable();
    let mut out = Vec::with_capacity(data.len() + 8 * EDITS);
    let mut inserted = 0;
    let mut from = 0;
    for at in places {
        out.extend_from_slice(&data[from..at]);
        let mut bytes = [0u8; 8];
        let n = rng.gen_range(1..=bytes.len());
        rng.fill_bytes(&mut bytes[..n]);
        out.extend_from_slice(&bytes[..n]);
        inserted += n;
        from = at;
    }
    out.extend_from_slice(&data[from..]);
    (out, inserted)
}

struct Row {
    label: String,
    mib_per_s: f64,
    chunks: usize,
    at_max: usize,
    mean_chunk: f64,
    stored: f64,
    restored: Vec<f64>,
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let len = if full { 64 * MIB } else { 4 * MIB };
    let trials = if full { TRIALS } else { 1 };
    let corpus = mixed_corpus(
        len,
        &[Path::new("/usr/share/doc"), Path::new("/usr/lib")],
        SEED,
    );
    let data = corpus.bytes;
    println!("chunk_bounds: corpus {}", corpus.description);
    println!(
        "{EDITS} insertions of 1-8 bytes, {trials} trial(s) with fresh chunker seeds; \
         throughput is the best of {TIMED_RUNS} passes on one core"
    );

    let keys = MasterKeys::generate();
    let mut rng = StdRng::seed_from_u64(SEED);
    let edited: Vec<(Vec<u8>, usize)> = (0..trials).map(|_| edit(&data, &mut rng)).collect();

    let mut rows = Vec::new();
    for (min, avg, max) in CANDIDATES {
        let params = RepoParams {
            chunk_min: min,
            chunk_avg: avg,
            chunk_max: max,
            ..RepoParams::default()
        };
        let mut label = format!(
            "{}/{}/{}",
            size_label(min),
            size_label(avg),
            size_label(max)
        );
        if params == RepoParams::default() {
            label.push_str(" (default)");
        }
        let elapsed = chunk_time(&Chunker::new(&params, &gear_for(SEED)), &data);
        let mut row = Row {
            label,
            mib_per_s: data.len() as f64 / MIB as f64 / elapsed.as_secs_f64(),
            chunks: 0,
            at_max: 0,
            mean_chunk: 0.0,
            stored: 0.0,
            restored: Vec::new(),
        };
        for (trial, (changed, inserted)) in edited.iter().enumerate() {
            let chunker = Chunker::new(&params, &gear_for(SEED + trial as u64));
            let before = chunks(&chunker, &keys, &data);
            row.chunks += before.len();
            row.at_max += before
                .iter()
                .filter(|(_, len)| *len == max as usize)
                .count();
            if trial == 0 {
                row.stored = stored_size(&data, &before) as f64 / data.len() as f64;
            }
            let mut stored: HashSet<BlobId> = before.iter().map(|(id, _)| *id).collect();
            let after = chunks(&chunker, &keys, changed);
            let new_bytes: usize = after
                .iter()
                .filter(|(id, _)| stored.insert(*id))
                .map(|(_, len)| len)
                .sum();
            assert!(new_bytes >= *inserted, "the inserted bytes are stored");
            row.restored.push(new_bytes as f64 / changed.len() as f64);
        }
        row.chunks /= edited.len();
        row.at_max /= edited.len();
        row.mean_chunk = data.len() as f64 / row.chunks as f64;
        rows.push(row);
    }

    let per_entry = MasterIndex::bytes_per_entry();
    println!();
    println!(
        "| bounds (min/avg/max) | chunk MiB/s | chunks in {} MiB | cut at max | mean chunk \
         | stored after zstd-{} | re-stored after edit, mean (min-max) | index per TiB |",
        data.len() / MIB,
        RepoParams::default().compression,
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for row in &rows {
        let mean = row.restored.iter().sum::<f64>() / row.restored.len() as f64;
        let lo = row.restored.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = row.restored.iter().copied().fold(0.0, f64::max);
        let index_per_tib = (1u64 << 40) as f64 / row.mean_chunk * per_entry as f64 / MIB as f64;
        println!(
            "| {} | {:.0} | {} | {} | {:.0} KiB | {:.1}% | {:.1}% ({:.1}-{:.1}%) | {:.1} MiB |",
            row.label,
            row.mib_per_s,
            row.chunks,
            row.at_max,
            row.mean_chunk / 1024.0,
            row.stored * 100.0,
            mean * 100.0,
            lo * 100.0,
            hi * 100.0,
            index_per_tib,
        );
    }
    // Format 1's table (the crate's public one with a seed XORed in) run
    // through the same cutting loop: the speed cost of the keyed table.
    let defaults = RepoParams::default();
    let (format1, _) = fastcdc::v2020::get_gear_with_seed(SEED);
    let before = chunk_time(&Chunker::new(&defaults, &GearTable(format1)), &data);
    let after = chunk_time(&Chunker::new(&defaults, &gear_for(SEED)), &data);
    let rate = |d: Duration| data.len() as f64 / MIB as f64 / d.as_secs_f64();
    println!(
        "default bounds: format 1 gear table (public, seed-XORed) {:.0} MiB/s, \
         format 2 keyed table {:.0} MiB/s",
        rate(before),
        rate(after)
    );
    println!("(stored = sealed size of the original stream's chunks / its size, before dedup)");
    println!(
        "(index per TiB = unique data / mean chunk x {per_entry} bytes per MasterIndex entry)"
    );
}
