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

use lifeboat_engine::RepoFile;
use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use criterion::{
    criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use lifeboat_benches::{random_bytes, size_label, text_like, MIB};
use lifeboat_engine::backup::chunker::Chunker;
use lifeboat_engine::format::crypto::{blob_aad, MasterKeys};
use lifeboat_engine::format::index::{IndexBlob, IndexFile, IndexPack};
use lifeboat_engine::format::pack::{BlobType, PackWriter};
use lifeboat_engine::repo::index::MasterIndex;
use lifeboat_engine::{BlobId, Node, NodeKind, PackId, RepoParams, Tree};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{RngCore, SeedableRng};

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
const CHUNK_STREAM: usize = 64 * MIB;
const BLOB: usize = MIB;
const PACK_BYTES: usize = 16 * MIB;
const INDEX_ENTRIES: usize = 1 << 20;
const BLOBS_PER_PACK: usize = 16;
const LOOKUPS: usize = 4096;
const LEVELS: [i32; 3] = [1, 3, 6];

#[path = "stages/index_10m.rs"]
mod index_10m;
use index_10m::index_10m;

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
    let gear = MasterKeys::generate().gear_table();
    for p in candidates {
        let chunker = Chunker::new(&p, &gear);
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
                    keys.seal_blob(&aad, black_box(&data), level, &mut out);
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
                keys.seal_blob(
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
            extra: Default::default(),
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

/// Chunk, hash, look up, seal (zstd 3) and pack on one core: what one worker
/// achieves on a stream that is half text-like and half random, in 4 MiB runs.
fn pipeline(c: &mut Criterion) {
    let keys = MasterKeys::generate();
    let params = RepoParams::default();
    let chunker = Chunker::new(&params, &keys.gear_table());
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
                        keys.seal_blob(&aad, chunk, Some(params.compression), &mut sealed);
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
