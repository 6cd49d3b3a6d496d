//! Throughput of each backup pipeline stage on one core, in MiB/s.
//!
//! Groups, in pipeline order:
//! - `chunk`: FastCDC over 64 MiB of random data, default and candidate bounds;
//! - `hash`: keyed BLAKE3 blob ids of 1 MiB chunks;
//! - `compress`: zstd alone (as `seal` calls it) at levels 1, 3 and 6, on
//!   text-like and random 1 MiB chunks;
//! - `seal`: the whole blob seal, encrypt only (`None`) and zstd + encrypt;
//! - `pack`: `PackWriter` add + finish for 16 MiB of sealed blobs;
//! - `index`: `MasterIndex` load and lookups with 1M entries (lookups/s);
//! - `index-10M`: the same at 10M blobs, in packs of ~32 and of ~2,000 blobs,
//!   with the index's real heap bytes per blob and the heap peak while loading
//!   (counted by this file's allocator) and the walks prune makes (printed);
//!   built only when its filter matches, and about 1.5 GB of memory;
//! - `tree`: encoding (and decoding) a directory listing of 1,000 files of
//!   one chunk each, the tree builder's per-directory work, in entries/s;
//! - `pipeline`: chunk, hash, look up, seal and pack a mixed stream.
//!
//! All inputs come from seeded generators, so runs compare like with like.
//! Sample counts and times are kept small so that the whole file runs in
//! about three minutes (half of it `index-10M`); pass criterion's own flags to change them
//! (`cargo bench -p lifeboat-benches --bench stages -- --measurement-time 10`).

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use criterion::{
    criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use lifeboat_benches::{random_bytes, size_label, text_like, MIB};
use lifeboat_engine::chunker::Chunker;
use lifeboat_engine::crypto::{blob_aad, MasterKeys};
use lifeboat_engine::index::{IndexBlob, IndexFile, IndexPack, MasterIndex};
use lifeboat_engine::pack::{BlobType, PackWriter};
use lifeboat_engine::{BlobId, Node, NodeKind, PackId, RepoParams, Tree};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, RngCore, SeedableRng};

/// The system allocator, counting live and peak heap bytes so the `index-10M`
/// group can report what the index really holds (one relaxed atomic add per
/// call: no measurable cost to the other groups).
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(bytes: usize) {
    let now = LIVE.fetch_add(bytes, Ordering::Relaxed) + bytes;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: every call is forwarded to `System` unchanged; only counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc_zeroed(layout);
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
    // Counted at the new size: a realloc that copies briefly holds both, which
    // this does not see (glibc moves large blocks with mremap, without a copy).
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = System.realloc(ptr, layout, new_size);
        if !p.is_null() {
            if new_size >= layout.size() {
                grew(new_size - layout.size());
            } else {
                LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const SEED: u64 = 0x11fe_b0a7;
const CHUNKER_SEED: u64 = 0x5eed;
const CHUNK_STREAM: usize = 64 * MIB;
const BLOB: usize = MIB;
const PACK_BYTES: usize = 16 * MIB;
const INDEX_ENTRIES: usize = 1 << 20;
const BLOBS_PER_PACK: usize = 16;
const LOOKUPS: usize = 4096;
const LEVELS: [i32; 3] = [1, 3, 6];

fn params(min: u32, avg: u32, max: u32) -> RepoParams {
    RepoParams {
        chunk_min: min,
        chunk_avg: avg,
        chunk_max: max,
        ..RepoParams::default()
    }
}

fn bounds_label(p: &RepoParams) -> String {
    let label = format!(
        "{}-{}-{}",
        size_label(p.chunk_min),
        size_label(p.chunk_avg),
        size_label(p.chunk_max)
    );
    if *p == RepoParams::default() {
        format!("{label}-default")
    } else {
        label
    }
}

/// One 1 MiB blob of each kind: (name, bytes).
fn blobs() -> [(&'static str, Vec<u8>); 2] {
    [
        ("text", text_like(BLOB, SEED)),
        ("random", random_bytes(BLOB, SEED)),
    ]
}

fn chunk(c: &mut Criterion) {
    let data = random_bytes(CHUNK_STREAM, SEED);
    let mut group = c.benchmark_group("chunk");
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .measurement_time(Duration::from_secs(3));
    group.throughput(Throughput::Bytes(data.len() as u64));
    let candidates = [
        RepoParams::default(),
        params(256 << 10, 1 << 20, 4 << 20),
        params(1 << 20, 2 << 20, 8 << 20),
    ];
    let mut buffer = Vec::new();
    for p in candidates {
        let chunker = Chunker::new(&p, CHUNKER_SEED);
        group.bench_function(BenchmarkId::from_parameter(bounds_label(&p)), |b| {
            b.iter(|| {
                let mut count = 0usize;
                chunker
                    .chunk_stream::<_, std::io::Error>(&data[..], &mut buffer, |c| {
                        count += black_box(c).len();
                        Ok(())
                    })
                    .expect("in-memory reads do not fail");
                count
            })
        });
    }
    group.finish();
}

fn hash(c: &mut Criterion) {
    let keys = MasterKeys::generate();
    let data = random_bytes(BLOB, SEED);
    let mut group = c.benchmark_group("hash");
    group.throughput(Throughput::Bytes(data.len() as u64));
    group.bench_function("blob_id-1M", |b| b.iter(|| keys.blob_id(black_box(&data))));
    group.finish();
}

fn compress(c: &mut Criterion) {
    let mut group = c.benchmark_group("compress");
    group.throughput(Throughput::Bytes(BLOB as u64));
    let mut out = Vec::with_capacity(BLOB + MIB / 8);
    for (kind, data) in blobs() {
        for level in LEVELS {
            out.clear();
            zstd::stream::copy_encode(&data[..], &mut out, level).expect("zstd into a Vec");
            println!(
                "compress/{kind}/{level}: ratio {:.2}",
                data.len() as f64 / out.len() as f64
            );
            // The same call as `seal` makes: a fresh zstd context per blob.
            group.bench_function(BenchmarkId::new(kind, format!("zstd-{level}")), |b| {
                b.iter(|| {
                    out.clear();
                    zstd::stream::copy_encode(black_box(&data[..]), &mut out, level)
                        .expect("zstd into a Vec");
                    out.len()
                })
            });
        }
        // A reused context, for comparison with the per-blob context above.
        let mut compressor = zstd::bulk::Compressor::new(3).expect("zstd context");
        group.bench_function(BenchmarkId::new(kind, "zstd-3-reused-context"), |b| {
            b.iter(|| {
                out.clear();
                compressor
                    .compress_to_buffer(black_box(&data[..]), &mut out)
                    .expect("output has room")
            })
        });
    }
    group.finish();
}

fn seal(c: &mut Criterion) {
    let keys = MasterKeys::generate();
    let mut group = c.benchmark_group("seal");
    group.throughput(Throughput::Bytes(BLOB as u64));
    let mut out = Vec::with_capacity(BLOB + MIB / 8);
    for (kind, data) in blobs() {
        let aad = blob_aad(BlobType::Data.as_u8(), &keys.blob_id(&data));
        // Encrypt-only cost does not depend on the bytes: measure it once.
        let encrypt_only = if kind == "random" { vec![None] } else { vec![] };
        for level in encrypt_only.into_iter().chain(LEVELS.map(Some)) {
            let name = level.map_or("encrypt-only".to_string(), |l| format!("zstd-{l}+encrypt"));
            group.bench_function(BenchmarkId::new(kind, name), |b| {
                b.iter(|| {
                    out.clear();
                    keys.seal(&aad, black_box(&data), level, &mut out);
                    out.len()
                })
            });
        }
    }
    group.finish();
}

fn pack(c: &mut Criterion) {
    let keys = MasterKeys::generate();
    let mut group = c.benchmark_group("pack");
    group.throughput(Throughput::Bytes(PACK_BYTES as u64));
    for blob_size in [BLOB, 64 << 10] {
        let sealed: Vec<(BlobId, Vec<u8>)> = (0..PACK_BYTES / blob_size)
            .map(|i| {
                let data = random_bytes(blob_size, SEED + i as u64);
                let id = keys.blob_id(&data);
                let mut out = Vec::new();
                keys.seal(
                    &blob_aad(BlobType::Data.as_u8(), &id),
                    &data,
                    None,
                    &mut out,
                );
                (id, out)
            })
            .collect();
        let raw_length = blob_size as u32;
        let capacity: usize = sealed.iter().map(|(_, s)| s.len()).sum::<usize>() + 64 * 1024;
        group.bench_function(
            BenchmarkId::new(
                "add+finish",
                format!("blobs-{}", size_label(blob_size as u32)),
            ),
            |b| {
                b.iter(|| {
                    let mut writer = PackWriter::with_capacity(capacity);
                    for (id, s) in &sealed {
                        writer.add(BlobType::Data, *id, s, raw_length);
                    }
                    writer.finish(&keys)
                })
            },
        );
    }
    group.finish();
}

/// An index file of `INDEX_ENTRIES` random blob ids in packs of 16 blobs of 1 MiB.
fn index_file(rng: &mut StdRng) -> IndexFile {
    let mut file = IndexFile::new();
    let mut id = || {
        let mut bytes = [0u8; 32];
        rng.fill_bytes(&mut bytes);
        bytes
    };
    for _ in 0..INDEX_ENTRIES / BLOBS_PER_PACK {
        let pack = PackId(id());
        let blobs = (0..BLOBS_PER_PACK)
            .map(|i| IndexBlob {
                blob_type: BlobType::Data,
                id: BlobId(id()),
                offset: (i * BLOB) as u32,
                length: BLOB as u32,
                raw_length: BLOB as u32,
            })
            .collect();
        file.packs.push(IndexPack { id: pack, blobs });
    }
    file
}

fn index(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(SEED);
    let file = index_file(&mut rng);
    let mut master = MasterIndex::new();
    master.add_file(&file);
    master.finish();
    let per_entry = MasterIndex::bytes_per_entry();
    println!(
        "index: MasterIndex::bytes_per_entry() = {per_entry} bytes; {} entries in {} packs: \
         heap_bytes() = {:.1} MiB = {:.2} bytes per entry (pack ids, runs and the bucket table included)",
        master.len(),
        master.packs().len(),
        master.heap_bytes() as f64 / MIB as f64,
        master.heap_bytes() as f64 / master.len() as f64,
    );

    let mut hits: Vec<BlobId> = file
        .packs
        .iter()
        .flat_map(|p| p.blobs.iter().map(|b| b.id))
        .collect();
    hits.shuffle(&mut rng);
    hits.truncate(LOOKUPS);
    let misses: Vec<BlobId> = (0..LOOKUPS)
        .map(|_| {
            let mut bytes = [0u8; 32];
            rng.fill_bytes(&mut bytes);
            BlobId(bytes)
        })
        .collect();

    let mut group = c.benchmark_group("index");
    group.throughput(Throughput::Elements(LOOKUPS as u64));
    for (name, ids) in [("lookup-hit", &hits), ("lookup-miss", &misses)] {
        group.bench_function(BenchmarkId::new(name, "1M-entries"), |b| {
            b.iter(|| {
                ids.iter()
                    .filter(|id| master.lookup(black_box(id)).is_some())
                    .count()
            })
        });
    }
    group.sampling_mode(SamplingMode::Flat).sample_size(10);
    group.throughput(Throughput::Elements(INDEX_ENTRIES as u64));
    group.bench_function(BenchmarkId::new("load", "1M-entries"), |b| {
        b.iter(|| {
            let mut m = MasterIndex::new();
            m.add_file(black_box(&file));
            m.finish();
            m.len()
        })
    });
    group.finish();
}

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
fn index_10m(c: &mut Criterion) {
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

/// Chunk, hash, look up, seal (zstd 3) and pack on one core: what one worker
/// achieves on a stream that is half text-like and half random, in 4 MiB runs.
/// A directory of `n` regular files of one chunk each, as the walker lists them.
fn listing(n: usize) -> Vec<Node> {
    (0..n)
        .map(|i| Node {
            name: format!("file-{i:05}.txt").into_bytes(),
            kind: NodeKind::File {
                content: vec![BlobId(*blake3::hash(&i.to_le_bytes()).as_bytes())],
            },
            size: 4096 + i as u64,
            mode: 0o644,
            uid: 1000,
            gid: 1000,
            user: "alice".into(),
            group: "alice".into(),
            mtime: 1_764_000_000 + i as i64,
            mtime_nsec: 123_456_789,
            ctime: 1_764_000_000 + i as i64,
            ctime_nsec: 987_654_321,
            inode: 1_000_000 + i as u64,
            device: 2049,
            links: 1,
        })
        .collect()
}

fn tree(c: &mut Criterion) {
    const ENTRIES: usize = 1000;
    let nodes = listing(ENTRIES);
    let encoded = Tree::new(nodes.clone()).encode();
    let id = BlobId(*blake3::hash(&encoded).as_bytes());
    let mut group = c.benchmark_group("tree");
    group.throughput(Throughput::Elements(ENTRIES as u64));
    // What the tree builder does per directory: sort the listing, encode it.
    group.bench_function(format!("sort+encode/{ENTRIES}-files"), |b| {
        b.iter(|| Tree::new(black_box(nodes.clone())).encode())
    });
    // What a no-change backup and restore do per directory of the parent.
    group.bench_function(format!("decode+validate/{ENTRIES}-files"), |b| {
        b.iter(|| Tree::decode(&id, black_box(&encoded)))
    });
    eprintln!(
        "tree: {ENTRIES} file entries encode to {} bytes ({} per entry)",
        encoded.len(),
        encoded.len() / ENTRIES
    );
    group.finish();
}

fn pipeline(c: &mut Criterion) {
    let keys = MasterKeys::generate();
    let params = RepoParams::default();
    let chunker = Chunker::new(&params, keys.chunker_seed());
    let mut data = Vec::with_capacity(32 * MIB);
    for i in 0..8 {
        data.extend_from_slice(&text_like(2 * MIB, SEED + i));
        data.extend_from_slice(&random_bytes(2 * MIB, SEED + i));
    }
    let mut known = MasterIndex::new();
    known.add_file(&index_file(&mut StdRng::seed_from_u64(SEED)));
    known.finish();

    let mut group = c.benchmark_group("pipeline");
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .measurement_time(Duration::from_secs(4));
    group.throughput(Throughput::Bytes(data.len() as u64));
    let mut buffer = Vec::new();
    let mut sealed = Vec::with_capacity(chunker.max_size() + MIB);
    group.bench_function(
        BenchmarkId::new("single-core", format!("zstd-{}", params.compression)),
        |b| {
            b.iter(|| {
                let new_writer =
                    || PackWriter::with_capacity(params.pack_size as usize + chunker.max_size());
                let mut writer = new_writer();
                let mut packs = 0usize;
                chunker
                    .chunk_stream::<_, std::io::Error>(&data[..], &mut buffer, |chunk| {
                        let id = keys.blob_id(chunk);
                        if known.contains(&id) {
                            return Ok(());
                        }
                        sealed.clear();
                        let aad = blob_aad(BlobType::Data.as_u8(), &id);
                        keys.seal(&aad, chunk, Some(params.compression), &mut sealed);
                        writer.add(BlobType::Data, id, &sealed, chunk.len() as u32);
                        if writer.len() >= params.pack_size as usize {
                            let full = std::mem::replace(&mut writer, new_writer());
                            black_box(full.finish(&keys));
                            packs += 1;
                        }
                        Ok(())
                    })
                    .expect("in-memory reads do not fail");
                if !writer.is_empty() {
                    black_box(writer.finish(&keys));
                    packs += 1;
                }
                packs
            })
        },
    );
    group.finish();
}

criterion_group! {
    name = stages;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
    targets = chunk, hash, compress, seal, pack, index, index_10m, tree, pipeline
}
criterion_main!(stages);
