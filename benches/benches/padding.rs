//! What Padmé padding of blobs costs in repository size (FORMAT.md §3.2):
//! every regular file under a directory (default `/usr/share`, or
//! `$LIFEBOAT_PADDING_ROOT`) is chunked with the default bounds and a fresh
//! key, each unique chunk is sealed as a blob twice, padded (what Lifeboat
//! stores) and unpadded (format 1), with zstd at the default level, and
//! the sealed sizes are summed. Files are chunked on their own, as a backup
//! does, and duplicate chunks counted once.
//!
//! Run with `cargo bench -p lifeboat-benches --bench padding`. Without
//! `--bench` (as `cargo test --benches` runs it) it checks itself on the
//! first 8 MiB of files.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use lifeboat_benches::{list_files, MIB};
use lifeboat_engine::backup::chunker::Chunker;
use lifeboat_engine::format::crypto::{blob_aad, padme, MasterKeys};
use lifeboat_engine::{BlobId, RepoParams};

#[derive(Default)]
struct Totals {
    files: usize,
    input: u64,
    unique_chunks: u64,
    unique_raw: u64,
    unpadded: u64,
    padded: u64,
    /// The largest padding of one blob, relative to its unpadded size.
    worst: f64,
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let root = std::env::var_os("LIFEBOAT_PADDING_ROOT")
        .map_or_else(|| PathBuf::from("/usr/share"), PathBuf::from);
    let budget = if full { u64::MAX } else { 8 * MIB as u64 };
    let mut files = Vec::new();
    list_files(Path::new(&root), &mut files);
    files.sort();

    let params = RepoParams::default();
    let keys = MasterKeys::generate();
    let chunker = Chunker::new(&params, &keys.gear_table());
    let level = Some(params.compression);
    let mut seen: HashSet<BlobId> = HashSet::new();
    let mut totals = Totals::default();
    let (mut buffer, mut sealed) = (Vec::new(), Vec::new());
    for path in files {
        if totals.input >= budget {
            break;
        }
        let Ok(file) = std::fs::File::open(&path) else {
            continue;
        };
        let mut input = 0u64;
        let chunked = chunker.chunk_stream::<_, std::io::Error>(file, &mut buffer, |chunk| {
            input += chunk.len() as u64;
            let id = keys.blob_id(chunk);
            if !seen.insert(id) {
                return Ok(());
            }
            let aad = blob_aad(0, &id);
            sealed.clear();
            keys.seal(&aad, chunk, level, &mut sealed);
            let unpadded = sealed.len() as u64;
            sealed.clear();
            keys.seal_blob(&aad, chunk, level, &mut sealed);
            let padded = sealed.len() as u64;
            assert_eq!(padme(padded), padded, "sealed blobs sit on the Padmé grid");
            assert!(padded >= unpadded + 4, "the length field and padding");
            totals.unique_chunks += 1;
            totals.unique_raw += chunk.len() as u64;
            totals.unpadded += unpadded;
            totals.padded += padded;
            totals.worst = totals.worst.max(padded as f64 / unpadded as f64 - 1.0);
            Ok(())
        });
        if chunked.is_ok() {
            totals.files += 1;
            totals.input += input;
        }
    }
    assert!(
        totals.unique_chunks > 0,
        "no readable files under {}",
        root.display()
    );
    let mib = |b: u64| b as f64 / MIB as f64;
    let cost = totals.padded as f64 / totals.unpadded as f64 - 1.0;
    println!(
        "padding: {} files under {}, {:.1} MiB read, {} unique chunks ({:.1} MiB)",
        totals.files,
        root.display(),
        mib(totals.input),
        totals.unique_chunks,
        mib(totals.unique_raw),
    );
    println!(
        "sealed with zstd-{}: unpadded {:.2} MiB, Padmé-padded {:.2} MiB: +{:.2} % \
         (+{:.2} MiB); the worst single blob +{:.1} %",
        params.compression,
        mib(totals.unpadded),
        mib(totals.padded),
        cost * 100.0,
        mib(totals.padded - totals.unpadded),
        totals.worst * 100.0,
    );
    assert!(
        cost < 0.12,
        "Padmé costs at most ~12 % per blob, so in total"
    );
}
