//! Repository format 2's two privacy properties, end to end through a
//! backup: chunk boundaries depend on the repository's secret key (two
//! repositories cut the same file differently), and every stored blob's
//! sealed length is a Padmé length, so the byte ranges a restore reads do
//! not give away exact chunk lengths.

mod common;

use std::sync::Arc;

use lifeboat_backends::{Backend, MemoryBackend};
use lifeboat_engine::format::crypto::padme;
use lifeboat_engine::{DestinationSet, KdfParams, RepoParams, Repository};

/// Small chunks, so a few MiB make dozens of them.
fn small_chunks() -> RepoParams {
    RepoParams {
        chunk_min: 16 * 1024,
        chunk_avg: 64 * 1024,
        chunk_max: 256 * 1024,
        ..RepoParams::default()
    }
}

/// Backs `src` up into a new repository; the raw and sealed lengths of its
/// data blobs, sorted by length.
async fn blob_lengths(src: &std::path::Path) -> (Vec<u32>, Vec<u32>) {
    let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::new("m"));
    let repo = Repository::init(
        DestinationSet::new(vec![backend]).unwrap(),
        b"pw",
        small_chunks(),
        KdfParams::insecure_for_tests(),
    )
    .await
    .unwrap();
    common::run_backup(&repo, src).await.unwrap();
    let index = repo.load_index().await.unwrap();
    let mut entries: Vec<_> = index
        .entries_of_pack()
        .into_values()
        .flatten()
        .filter(|e| e.blob_type == lifeboat_engine::format::pack::BlobType::Data)
        .collect();
    entries.sort_by_key(|e| (e.raw_length, e.length));
    (
        entries.iter().map(|e| e.raw_length).collect(),
        entries.iter().map(|e| e.length).collect(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_repositories_cut_the_same_data_differently_and_pad_every_blob() {
    let src = tempfile::tempdir().unwrap();
    // 4 MiB of incompressible bytes: sealed sizes are then the plain sizes
    // plus the seal, where padding matters most.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let data: Vec<u8> = (0..4 << 20)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    std::fs::write(src.path().join("same.bin"), &data).unwrap();

    let (raw_a, sealed_a) = blob_lengths(src.path()).await;
    let (raw_b, sealed_b) = blob_lengths(src.path()).await;
    assert!(raw_a.len() > 20, "{} chunks", raw_a.len());
    assert_eq!(raw_a.iter().map(|&l| l as usize).sum::<usize>(), data.len());
    // Keyed gear tables: the boundaries differ between the repositories.
    assert_ne!(raw_a, raw_b, "the same chunk lengths in two repositories");
    for sealed in sealed_a.iter().chain(&sealed_b) {
        assert_eq!(
            padme(u64::from(*sealed)),
            u64::from(*sealed),
            "sealed {sealed}"
        );
    }
    // And the sealed length is no longer plain length + 41.
    let exact = raw_a
        .iter()
        .zip(&sealed_a)
        .filter(|(raw, sealed)| **sealed == **raw + 41)
        .count();
    assert!(
        exact < raw_a.len() / 4,
        "{exact} of {} unpadded",
        raw_a.len()
    );
}
