//! The `index-10M` group: `MasterIndex` at 10 M blobs, its real heap per
//! blob (counted by the parent file's allocator), load time and lookups.

use std::hint::black_box;
use std::sync::atomic::Ordering;
use std::time::Instant;

use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use lifeboat_engine::format::index::{IndexBlob, IndexFile, IndexPack};
use lifeboat_engine::format::pack::BlobType;
use lifeboat_engine::repo::index::MasterIndex;
use lifeboat_engine::{BlobId, PackId};
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};

use lifeboat_benches::MIB;

use super::{LIVE, PACK_BYTES, PEAK, SEED};

const INDEX_10M: usize = 10_000_000;
const LOOKUPS_10M: usize = 1 << 17;
/// Index files the 10M blobs are split into (as a repository holds many).
const INDEX_FILES_10M: usize = 100;

/// `INDEX_10M` random blob ids in packs of about `per_pack` blobs filling
/// about 16 MiB each (sealed lengths uniform in 0.5-1.5x the mean, offsets
/// back to back, plaintext 1-2x the sealed length; one pack in 64 holds
/// trees), split into `INDEX_FILES_10M` index files.
fn index_files_10m(per_pack: usize) -> Vec<IndexFile> {
    let mut rng = StdRng::seed_from_u64(SEED ^ per_pack as u64);
    let mean = (PACK_BYTES / per_pack) as u32;
    let per_file = INDEX_10M / INDEX_FILES_10M;
    let mut files = Vec::with_capacity(INDEX_FILES_10M);
    let mut packs = 0usize;
    for _ in 0..INDEX_FILES_10M {
        let mut file = IndexFile::new();
        let mut left = per_file;
        while left > 0 {
            let n = rng.gen_range(per_pack * 3 / 4..=per_pack * 5 / 4).min(left);
            left -= n;
            let blob_type = if packs % 64 == 63 {
                BlobType::Tree
            } else {
                BlobType::Data
            };
            packs += 1;
            let mut offset = 0u32;
            let mut pack = [0u8; 32];
            rng.fill_bytes(&mut pack);
            let blobs = (0..n)
                .map(|_| {
                    let mut id = [0u8; 32];
                    rng.fill_bytes(&mut id);
                    let length = rng.gen_range(mean / 2..mean * 3 / 2);
                    let blob = IndexBlob {
                        blob_type,
                        id: BlobId(id),
                        offset,
                        length,
                        raw_length: length + rng.gen_range(0..length),
                    };
                    offset += length;
                    blob
                })
                .collect();
            file.packs.push(IndexPack {
                id: PackId(pack),
                blobs,
            });
        }
        files.push(file);
    }
    files
}

/// Loads like `Repository::load_index` (one reservation from the first
/// file's size), or like `check` (none).
fn load_10m(files: &[IndexFile], reserve: bool) -> MasterIndex {
    let mut m = MasterIndex::new();
    if reserve {
        m.reserve(files[0].blob_count() * files.len());
    }
    for file in files {
        m.add_file(file);
    }
    m.finish();
    m
}

/// What `index_10m` builds once per pack shape, when its filter matches.
struct Loaded10M {
    files: Vec<IndexFile>,
    master: MasterIndex,
    hits: Vec<BlobId>,
    misses: Vec<BlobId>,
}

fn loaded_10m(per_pack: usize) -> Loaded10M {
    let files = index_files_10m(per_pack);
    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let started = Instant::now();
    let master = load_10m(&files, true);
    let took = started.elapsed();
    let peak = PEAK.load(Ordering::Relaxed) - before;
    let held = LIVE.load(Ordering::Relaxed) - before;
    let n = master.len();
    eprintln!(
        "index-10M/{per_pack}-per-pack: {n} blobs in {} packs; one load {:.2} s; \
         heap held {:.1} MiB = {:.2} bytes/blob (allocator count); \
         heap peak while loading {:.1} MiB = {:.2} bytes/blob; \
         MasterIndex::heap_bytes() = {:.2} bytes/blob; MasterIndex::bytes_per_entry() = {}",
        master.packs().len(),
        took.as_secs_f64(),
        held as f64 / MIB as f64,
        held as f64 / n as f64,
        peak as f64 / MIB as f64,
        peak as f64 / n as f64,
        master.heap_bytes() as f64 / n as f64,
        MasterIndex::bytes_per_entry(),
    );
    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    drop(load_10m(&files, false));
    let unreserved = PEAK.load(Ordering::Relaxed) - before;
    // What prune does with the index: every entry in order (pack usage),
    // then the entries pack by pack.
    let started = Instant::now();
    let bytes: u64 = (0..n)
        .filter_map(|i| master.entry_at(i))
        .map(|(_, loc, _)| u64::from(loc.length))
        .sum();
    let sweep = started.elapsed();
    let started = Instant::now();
    let order = master.positions_by_pack();
    let by_pack = started.elapsed();
    let started = Instant::now();
    let packs = order
        .chunk_by(|a, b| {
            let pack = |p: &u32| master.entry_at(*p as usize).map(|(_, _, n)| n);
            pack(a) == pack(b)
        })
        .count();
    let walk = started.elapsed();
    eprintln!(
        "index-10M/{per_pack}-per-pack: heap peak loading without reserve {:.2} bytes/blob; \
         entry_at over every position {:.2} s ({} GiB listed); positions_by_pack {:.2} s; \
         entry_at twice a position in that order {:.2} s ({packs} packs)",
        unreserved as f64 / n as f64,
        sweep.as_secs_f64(),
        bytes >> 30,
        by_pack.as_secs_f64(),
        walk.as_secs_f64(),
    );
    drop(order);
    let mut rng = StdRng::seed_from_u64(SEED + 1);
    let hits: Vec<BlobId> = (0..LOOKUPS_10M)
        .map(|_| {
            let file = &files[rng.gen_range(0..files.len())];
            let pack = &file.packs[rng.gen_range(0..file.packs.len())];
            pack.blobs[rng.gen_range(0..pack.blobs.len())].id
        })
        .collect();
    let misses: Vec<BlobId> = (0..LOOKUPS_10M)
        .map(|_| {
            let mut bytes = [0u8; 32];
            rng.fill_bytes(&mut bytes);
            BlobId(bytes)
        })
        .collect();
    Loaded10M {
        files,
        master,
        hits,
        misses,
    }
}

/// 10M blobs: lookups over 128k random ids (too many to stay in cache) and
/// one whole load per iteration.
pub(super) fn index_10m(c: &mut Criterion) {
    let mut group = c.benchmark_group("index-10M");
    group.sampling_mode(SamplingMode::Flat).sample_size(10);
    for per_pack in [32, 2000] {
        let mut data: Option<Loaded10M> = None;
        let label = format!("{per_pack}-per-pack");
        group.throughput(Throughput::Elements(LOOKUPS_10M as u64));
        for hit in [true, false] {
            let name = if hit { "lookup-hit" } else { "lookup-miss" };
            group.bench_function(BenchmarkId::new(name, &label), |b| {
                let d = data.get_or_insert_with(|| loaded_10m(per_pack));
                let ids = if hit { &d.hits } else { &d.misses };
                b.iter(|| {
                    ids.iter()
                        .filter(|id| d.master.lookup(black_box(id)).is_some())
                        .count()
                })
            });
        }
        group.throughput(Throughput::Elements(INDEX_10M as u64));
        group.bench_function(BenchmarkId::new("load", &label), |b| {
            let d = data.get_or_insert_with(|| loaded_10m(per_pack));
            b.iter(|| load_10m(black_box(&d.files), true).len())
        });
    }
    group.finish();
}
