//! The machine's limit for a first backup of a real tree, composed from the
//! pipeline's stages measured one by one on that tree's own bytes, and the
//! share of it that `lifeboat backup` reaches end to end.
//!
//! ```text
//! benches/limit.sh [--runs N] [--json] [SOURCE]      (default /usr/share, 3 runs)
//! ```
//!
//! Every regular file is read into memory first (the page cache is then
//! warm for the end-to-end runs too). Each stage then runs alone on one core
//! over exactly the bytes the backup would give it: chunking and hashing see
//! every byte; deduplication sees every chunk id; compression + sealing and
//! pack assembly see only the distinct chunks; tree encoding sees one listing
//! per directory. Their times add up to the CPU cost of the backup on one
//! core, and divided by the cores, to the fastest the backup could go. The
//! end-to-end runs time the real `lifeboat backup` into a fresh local
//! repository; the fixed cost of a command (start-up, key derivation) is
//! measured apart with `lifeboat snapshots`.

use lifeboat_engine::RepoFile;
use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use lifeboat_benches::process::{lifeboat_program, measure, median};

use lifeboat_engine::backup::chunker::Chunker;
use lifeboat_engine::format::crypto::{blob_aad, MasterKeys};
use lifeboat_engine::format::pack::{BlobType, PackWriter};
use lifeboat_engine::format::tree::{Node, NodeKind, Tree};
use lifeboat_engine::{BlobId, RepoParams};

struct Options {
    source: PathBuf,
    runs: usize,
    json: bool,
}

fn parse_args() -> Result<Options, String> {
    let mut opts = Options {
        source: PathBuf::from("/usr/share"),
        runs: 3,
        json: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--json" => opts.json = true,
            "--runs" => {
                opts.runs = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|&n| n > 0)
                    .ok_or("--runs needs a positive number")?
            }
            "-h" | "--help" => {
                println!("usage: limit [--runs N] [--json] [SOURCE]");
                std::process::exit(0);
            }
            other if other.starts_with('-') => return Err(format!("unknown flag {other}")),
            other => opts.source = PathBuf::from(other),
        }
    }
    Ok(opts)
}

/// The source in memory: every file's bytes, and one listing per directory.
struct Loaded {
    files: Vec<Vec<u8>>,
    dirs: Vec<Vec<Node>>,
    bytes: u64,
}

fn node(name: &[u8], meta: &fs::Metadata) -> Node {
    let kind = if meta.is_dir() {
        NodeKind::Dir {
            subtree: BlobId([0; 32]),
        }
    } else {
        // Real listings name each chunk: one id per (average) chunk.
        let chunks = meta
            .len()
            .div_ceil(u64::from(RepoParams::default().chunk_avg));
        NodeKind::File {
            content: vec![BlobId([7; 32]); chunks as usize],
        }
    };
    Node {
        name: name.to_vec(),
        kind,
        size: meta.len(),
        mode: meta.mode() & 0o7777,
        uid: meta.uid(),
        gid: meta.gid(),
        user: "root".into(),
        group: "root".into(),
        mtime: meta.mtime(),
        mtime_nsec: meta.mtime_nsec() as u32,
        ctime: meta.ctime(),
        ctime_nsec: meta.ctime_nsec() as u32,
        inode: meta.ino(),
        device: meta.dev(),
        links: meta.nlink(),
        extra: Default::default(),
    }
}

/// Reads the tree depth first, in name order, as the walker does.
fn load(root: &Path) -> Loaded {
    let mut loaded = Loaded {
        files: Vec::new(),
        dirs: Vec::new(),
        bytes: 0,
    };
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        let mut entries: Vec<_> = entries.flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        let mut listing = Vec::new();
        for entry in entries {
            let Ok(meta) = entry.path().symlink_metadata() else {
                continue;
            };
            use std::os::unix::ffi::OsStrExt;
            listing.push(node(entry.file_name().as_bytes(), &meta));
            if meta.is_dir() {
                stack.push(entry.path());
            } else if meta.is_file() {
                if let Ok(bytes) = fs::read(entry.path()) {
                    loaded.bytes += bytes.len() as u64;
                    loaded.files.push(bytes);
                }
            }
        }
        loaded.dirs.push(listing);
    }
    loaded
}

/// One stage's measurement: the bytes it was given and its best time.
struct Stage {
    name: &'static str,
    what: String,
    bytes: u64,
    seconds: f64,
}

/// Runs `f` `runs` times and keeps the fastest (the least disturbed) time.
fn best_of<T>(runs: usize, mut f: impl FnMut() -> T) -> (f64, T) {
    let mut best = f64::INFINITY;
    let mut last = None;
    for _ in 0..runs {
        let started = Instant::now();
        let out = f();
        best = best.min(started.elapsed().as_secs_f64());
        last = Some(out);
    }
    match last {
        Some(out) => (best, out),
        None => unreachable!("runs is at least one"),
    }
}

fn measure_stages(loaded: &Loaded, runs: usize) -> Vec<Stage> {
    let keys = MasterKeys::generate();
    let params = RepoParams::default();
    let chunker = Chunker::new(&params, &keys.gear_table());
    let level = Some(params.compression);
    let mut stages = Vec::new();

    let (seconds, chunks) = best_of(runs, || {
        let mut buffer = Vec::new();
        let mut chunks: Vec<(usize, usize, usize)> = Vec::new();
        for (f, bytes) in loaded.files.iter().enumerate() {
            let mut at = 0;
            let _ = chunker.chunk_stream::<_, std::io::Error>(&bytes[..], &mut buffer, |c| {
                chunks.push((f, at, c.len()));
                at += c.len();
                Ok(())
            });
        }
        chunks
    });
    let chunk = |&(f, at, len): &(usize, usize, usize)| &loaded.files[f][at..at + len];
    stages.push(Stage {
        name: "chunk",
        what: format!("FastCDC, {} chunks", chunks.len()),
        bytes: loaded.bytes,
        seconds,
    });

    let (seconds, ids) = best_of(runs, || {
        chunks
            .iter()
            .map(|c| keys.blob_id(chunk(c)))
            .collect::<Vec<_>>()
    });
    stages.push(Stage {
        name: "hash",
        what: "keyed BLAKE3 blob ids".into(),
        bytes: loaded.bytes,
        seconds,
    });

    let (seconds, unique) = best_of(runs, || {
        let mut seen = HashSet::with_capacity(ids.len());
        let mut unique = Vec::new();
        for (i, id) in ids.iter().enumerate() {
            if seen.insert(*id) {
                unique.push(i);
            }
        }
        unique
    });
    let unique_bytes: u64 = unique.iter().map(|&i| chunks[i].2 as u64).sum();
    stages.push(Stage {
        name: "dedup",
        what: format!("{} distinct of {} chunks", unique.len(), chunks.len()),
        bytes: loaded.bytes,
        seconds,
    });

    let (seconds, sealed) = best_of(runs, || {
        unique
            .iter()
            .map(|&i| {
                let mut out = Vec::with_capacity(chunks[i].2 / 2 + 64);
                keys.seal_blob(
                    &blob_aad(BlobType::Data.as_u8(), &ids[i]),
                    chunk(&chunks[i]),
                    level,
                    &mut out,
                );
                out
            })
            .collect::<Vec<_>>()
    });
    let sealed_bytes: u64 = sealed.iter().map(|s| s.len() as u64).sum();
    stages.push(Stage {
        name: "compress+seal",
        what: format!(
            "zstd {} + XChaCha20-Poly1305, {:.0} MB → {:.0} MB",
            params.compression,
            unique_bytes as f64 / 1e6,
            sealed_bytes as f64 / 1e6
        ),
        bytes: unique_bytes,
        seconds,
    });

    let pack_size = params.pack_size as usize;
    let (seconds, packs) = best_of(runs, || {
        let mut packs = 0usize;
        let mut writer = PackWriter::with_capacity(pack_size + (1 << 20));
        for (n, &i) in unique.iter().enumerate() {
            if writer.is_full_for(sealed[n].len(), pack_size) {
                let full = std::mem::replace(
                    &mut writer,
                    PackWriter::with_capacity(pack_size + (1 << 20)),
                );
                std::hint::black_box(full.finish(&keys));
                packs += 1;
            }
            writer.add(BlobType::Data, ids[i], &sealed[n], chunks[i].2 as u32);
        }
        std::hint::black_box(writer.finish(&keys));
        packs + 1
    });
    stages.push(Stage {
        name: "pack",
        what: format!("{packs} packs, headers sealed, packs hashed"),
        bytes: unique_bytes,
        seconds,
    });

    let (seconds, tree_bytes) = best_of(runs, || {
        let mut total = 0u64;
        for listing in &loaded.dirs {
            let tree = Tree::new(listing.clone());
            let plain = tree.encode();
            let id = keys.blob_id(&plain);
            let mut out = Vec::new();
            keys.seal_blob(
                &blob_aad(BlobType::Tree.as_u8(), &id),
                &plain,
                level,
                &mut out,
            );
            total += plain.len() as u64;
        }
        total
    });
    stages.push(Stage {
        name: "trees",
        what: format!("{} directories encoded, hashed, sealed", loaded.dirs.len()),
        bytes: tree_bytes,
        seconds,
    });
    stages
}

/// Median wall time of a first backup and of a bare command (`snapshots`).
fn end_to_end(source: &Path, runs: usize) -> Result<(f64, f64), String> {
    let program = lifeboat_program()?;
    let work = std::env::temp_dir().join(format!("lifeboat-limit.{}", std::process::id()));
    let lb = |repo: &Path| {
        let mut cmd = Command::new(&program);
        cmd.env("LIFEBOAT_PASSWORD", "benchmark-password")
            .env("XDG_CACHE_HOME", work.join("cache"))
            .arg("-q")
            .arg("-d")
            .arg(repo);
        cmd
    };
    let mut backups = Vec::new();
    let mut bare = Vec::new();
    let result = (|| {
        for run in 0..runs {
            let repo = work.join(format!("repo{run}"));
            measure(lb(&repo).arg("init"))?;
            backups.push(measure(lb(&repo).arg("backup").arg(source))?.seconds);
            bare.push(measure(lb(&repo).arg("snapshots"))?.seconds);
            let _ = fs::remove_dir_all(&repo);
        }
        Ok::<_, String>(())
    })();
    let _ = fs::remove_dir_all(&work);
    result?;
    Ok((median(&backups), median(&bare)))
}

fn main() {
    if let Err(e) = real_main() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn real_main() -> Result<(), String> {
    let opts = parse_args()?;
    if !opts.source.is_dir() {
        return Err(format!("{} is not a directory", opts.source.display()));
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let started = Instant::now();
    let loaded = load(&opts.source);
    let read_seconds = started.elapsed().as_secs_f64();
    let stages = measure_stages(&loaded, opts.runs.min(2));
    let one_core: f64 = stages.iter().map(|s| s.seconds).sum();
    let limit = one_core / cores as f64;
    let (e2e, fixed) = end_to_end(&opts.source, opts.runs)?;
    let share = limit / e2e;
    let share_without_fixed = limit / (e2e - fixed).max(f64::MIN_POSITIVE);
    let mb = |b: u64| b as f64 / 1e6;

    if opts.json {
        let stage_json: Vec<_> = stages
            .iter()
            .map(|s| {
                serde_json::json!({
                    "stage": s.name, "what": s.what, "bytes": s.bytes,
                    "seconds": s.seconds, "mb_per_s_one_core": mb(s.bytes) / s.seconds,
                })
            })
            .collect();
        let doc = serde_json::json!({
            "source": opts.source.display().to_string(),
            "source_bytes": loaded.bytes,
            "files": loaded.files.len(),
            "directories": loaded.dirs.len(),
            "cores": cores,
            "read_seconds_one_core": read_seconds,
            "stages": stage_json,
            "one_core_seconds": one_core,
            "limit_seconds": limit,
            "limit_mb_per_s": mb(loaded.bytes) / limit,
            "end_to_end_seconds": e2e,
            "fixed_command_seconds": fixed,
            "share_of_limit": share,
            "share_of_limit_without_fixed_cost": share_without_fixed,
        });
        println!("{doc:#}");
        return Ok(());
    }
    println!(
        "source {}: {} files, {} directories, {:.0} MB (read into memory in {:.2} s, one thread)",
        opts.source.display(),
        loaded.files.len(),
        loaded.dirs.len(),
        mb(loaded.bytes),
        read_seconds
    );
    println!(
        "{:<14} {:>9} {:>9} {:>12}  what",
        "stage (1 core)", "MB in", "seconds", "MB/s"
    );
    for s in &stages {
        println!(
            "{:<14} {:>9.0} {:>9.3} {:>12.0}  {}",
            s.name,
            mb(s.bytes),
            s.seconds,
            mb(s.bytes) / s.seconds,
            s.what
        );
    }
    println!(
        "composed: {:.2} s of CPU on one core = {:.0} MB/s of source per core; limit on {cores} cores: {:.2} s ({:.0} MB/s)",
        one_core,
        mb(loaded.bytes) / one_core,
        limit,
        mb(loaded.bytes) / limit
    );
    println!(
        "lifeboat backup end to end (median of {}): {:.2} s = {:.0}% of the limit; fixed cost per command {:.2} s, without it {:.0}%",
        opts.runs,
        e2e,
        share * 100.0,
        fixed,
        share_without_fixed * 100.0
    );
    Ok(())
}
