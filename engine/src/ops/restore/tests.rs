//! The compact plan: reads grouped per pack, one read per blob however many
//! places it fills, and verification from the same pieces.

use std::sync::Arc;

use super::files::{FilePlan, Files, Meta};
use super::plan::{Failures, Piece};
use super::*;
use crate::format::crypto::MasterKeys;
use crate::format::ids::BlobId;

fn piece(pack: u32, offset: u32, file: u32, file_offset: u64, id: BlobId) -> Piece {
    Piece {
        pack,
        offset,
        length: 100,
        raw_length: 60,
        file,
        file_offset,
        id,
    }
}

fn id(n: u8) -> BlobId {
    BlobId([n; 32])
}

#[test]
fn one_read_per_blob_and_runs_per_pack() {
    let packs = [PackId([1; 32]), PackId([2; 32])];
    let mut pieces = [
        piece(1, 0, 0, 0, id(3)),
        piece(0, 100, 1, 60, id(2)),
        piece(0, 0, 1, 0, id(1)),
        // The same blob in two files and twice in one.
        piece(0, 100, 0, 60, id(2)),
        piece(0, 100, 0, 120, id(2)),
    ];
    pieces.sort_unstable_by_key(|p| (p.pack, p.offset, p.file, p.file_offset));
    let runs: Vec<(PackId, Vec<Placement>)> = read_runs(&pieces, &packs).collect();
    assert_eq!(runs.len(), 2, "one run per pack (the blobs are adjacent)");
    let (pack, first) = &runs[0];
    assert_eq!(*pack, packs[0]);
    let offsets: Vec<u32> = first.iter().map(|p| p.entry.offset).collect();
    assert_eq!(offsets, [0, 100], "each blob read once, in offset order");
    assert_eq!(first[1].entry.id, id(2));
    assert_eq!(first[1].targets, [(0, 60), (0, 120), (1, 60)]);
    assert_eq!(runs[1].0, packs[1]);
    assert_eq!(runs[1].1[0].targets, [(0, 0)]);
}

#[tokio::test]
async fn verification_reads_each_file_against_its_own_pieces() {
    let keys = Arc::new(MasterKeys::generate());
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b) = (b"first piece ".to_vec(), b"and a second".to_vec());
    let ids = [keys.blob_id(&a), keys.blob_id(&b)];
    let meta = |size| Meta {
        size,
        mtime: 0,
        mtime_nsec: 0,
        mode: 0o644,
        uid: 0,
        gid: 0,
    };
    let names = b"abemptyb".to_vec();
    let plans = vec![
        FilePlan {
            dir: 0,
            name_start: 0,
            name_len: 2,
            meta: meta(24),
        },
        FilePlan {
            dir: 0,
            name_start: 2,
            name_len: 5,
            meta: meta(0),
        },
        FilePlan {
            dir: 0,
            name_start: 7,
            name_len: 1,
            meta: meta(12),
        },
    ];
    std::fs::write(dir.path().join("ab"), [a.clone(), b.clone()].concat()).expect("write");
    std::fs::write(dir.path().join("empty"), b"").expect("write");
    std::fs::write(dir.path().join("b"), &b).expect("write");
    let target = super::target::TargetDirs::open(dir.path()).expect("open the target");
    let files = Arc::new(Files::new(plans, target, names, &[2, 0, 1]));
    assert!(files.path(1).ends_with("empty"));
    let mut pieces = vec![
        Piece {
            raw_length: 12,
            ..piece(0, 0, 0, 0, ids[0])
        },
        Piece {
            raw_length: 12,
            ..piece(0, 100, 0, 12, ids[1])
        },
        Piece {
            raw_length: 12,
            ..piece(0, 100, 2, 0, ids[1])
        },
    ];
    pieces.sort_unstable_by_key(|p| (p.file, p.file_offset));
    let ok = Failures::new();
    let (verified, errors) = verify::verify_files(keys.clone(), files.clone(), &pieces, &ok).await;
    assert_eq!((verified, errors.len()), (3, 0), "{errors:?}");

    // A changed byte in the last file is found, and only there.
    std::fs::write(dir.path().join("b"), b"and a secone").expect("write");
    let (verified, errors) = verify::verify_files(keys.clone(), files.clone(), &pieces, &ok).await;
    assert_eq!(verified, 2);
    assert_eq!(errors.len(), 1);
    assert!(errors[0].0.ends_with("b"), "{errors:?}");

    // Failed files are not verified.
    let failed = Failures::from([(2, "lost".to_string())]);
    let (verified, errors) = verify::verify_files(keys, files.clone(), &pieces, &failed).await;
    assert_eq!((verified, errors.len()), (2, 0));
}

#[test]
fn a_planned_file_costs_48_bytes_and_its_state_16() {
    // With its name's bytes, a 64-byte piece per blob, and a
    // `HashMap` entry only when it fails: what a 1 M-file restore holds.
    assert_eq!(std::mem::size_of::<FilePlan>(), 48);
    assert_eq!(std::mem::size_of::<Meta>(), 32);
    assert_eq!(std::mem::size_of::<Piece>(), 64);
    assert!(std::mem::size_of::<files::FileState>() <= 16);
}
