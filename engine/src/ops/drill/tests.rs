//! Drills on in-memory destinations: a clean one passes with the source's
//! counts, a damaged pack fails naming a file, a sample verifies fewer files,
//! and nothing is read from a second destination.

use std::sync::Arc;

use bytes::Bytes;
use lifeboat_backends::{Backend, MemoryBackend};

use futures::StreamExt;

use super::*;
use crate::ops::backup::{backup, BackupOptions};
use crate::{DestinationSet, KdfParams, RepoParams};

const FILES: u64 = 30;

/// `FILES` files of varied content (one of 2 MB) under a temporary directory.
fn source() -> (tempfile::TempDir, u64) {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = 0;
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    for i in 0..FILES {
        let len = if i == 0 {
            2_000_000
        } else {
            1000 + i as usize * 37
        };
        let data: Vec<u8> = (0..len)
            .map(|j| ((j as u64).wrapping_mul(2_654_435_761 + i) >> 11) as u8)
            .collect();
        let name = if i % 2 == 0 {
            format!("f{i}")
        } else {
            format!("sub/f{i}")
        };
        std::fs::write(dir.path().join(name), &data).unwrap();
        bytes += len as u64;
    }
    (dir, bytes)
}

/// A repository on one memory destination holding one backup of `source()`.
async fn backed_up(dest: &MemoryBackend) -> (Repository, tempfile::TempDir, u64) {
    let set = DestinationSet::new(vec![Arc::new(dest.clone()) as Arc<dyn Backend>]).unwrap();
    let repo = Repository::init(
        set,
        b"pw",
        RepoParams::default(),
        KdfParams::insecure_for_tests(),
    )
    .await
    .unwrap();
    let (dir, bytes) = source();
    let options = BackupOptions {
        paths: vec![dir.path().to_path_buf()],
        ..Default::default()
    };
    backup(&repo, &options, Default::default(), Default::default())
        .await
        .unwrap();
    (repo, dir, bytes)
}

async fn run(repo: &Repository, options: &DrillOptions) -> Result<DrillReport> {
    drill(
        repo,
        "latest",
        options,
        Default::default(),
        Default::default(),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_destination_passes_with_the_source_counts() {
    let dest = MemoryBackend::new("mem");
    let (repo, _dir, bytes) = backed_up(&dest).await;
    let progress = Arc::new(DrillProgress::default());
    let report = drill(
        &repo,
        "latest",
        &DrillOptions::default(),
        progress.clone(),
        Default::default(),
    )
    .await
    .unwrap();
    assert!(report.passed, "{report:?}");
    assert_eq!(report.destination, "mem");
    assert_eq!(
        (report.files_selected, report.files_verified),
        (FILES, FILES)
    );
    assert_eq!(report.bytes_verified, bytes);
    assert_eq!(
        (report.failures, report.first_failure.as_deref()),
        (0, None)
    );
    assert_eq!(progress.bytes_done.load(Ordering::Relaxed), bytes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_byte_fails_the_drill_and_names_the_file() {
    let dest = MemoryBackend::new("mem");
    let (repo, _dir, _) = backed_up(&dest).await;
    // The biggest pack holds the 2 MB file's chunks.
    let mut packs = Vec::new();
    let mut listing = dest.list("data/");
    while let Some(meta) = listing.next().await {
        packs.push(meta.unwrap());
    }
    let biggest = packs.iter().max_by_key(|m| m.size).unwrap().key.clone();
    let mut bytes = dest.get(&biggest, None).await.unwrap().to_vec();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    dest.delete(&biggest).await.unwrap();
    dest.put(&biggest, Bytes::from(bytes)).await.unwrap();

    let report = run(&repo, &DrillOptions::default()).await.unwrap();
    assert!(!report.passed, "{report:?}");
    assert!(report.failures >= 1, "{report:?}");
    assert_eq!(report.files_verified + report.failures, FILES, "{report:?}");
    let first = report.first_failure.unwrap();
    assert!(first.contains("/f"), "{first}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sample_verifies_some_files_but_not_all() {
    let dest = MemoryBackend::new("mem");
    let (repo, _dir, _) = backed_up(&dest).await;
    let options = DrillOptions {
        sample: Some(50.0),
        ..Default::default()
    };
    let report = run(&repo, &options).await.unwrap();
    assert!(report.passed, "{report:?}");
    assert_eq!(report.files_verified, FILES / 2);
    let tiny = DrillOptions {
        sample: Some(0.1),
        ..Default::default()
    };
    assert_eq!(run(&repo, &tiny).await.unwrap().files_verified, 1);
    for bad in [0.0, -5.0, 100.5, f64::NAN] {
        let options = DrillOptions {
            sample: Some(bad),
            ..Default::default()
        };
        assert!(run(&repo, &options).await.is_err(), "sample {bad}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_mode_passes_and_leaves_nothing_behind() {
    let dest = MemoryBackend::new("mem");
    let (repo, _dir, bytes) = backed_up(&dest).await;
    let scratch = tempfile::tempdir().unwrap();
    let options = DrillOptions {
        restore_in: Some(scratch.path().to_path_buf()),
        ..Default::default()
    };
    let report = run(&repo, &options).await.unwrap();
    assert!(report.passed && report.restored, "{report:?}");
    assert_eq!(
        (report.files_verified, report.bytes_verified),
        (FILES, bytes)
    );
    assert_eq!(std::fs::read_dir(scratch.path()).unwrap().count(), 0);
    let sampled = DrillOptions {
        sample: Some(5.0),
        ..options
    };
    assert!(run(&repo, &sampled).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drill_reads_one_destination_only() {
    let dest = MemoryBackend::new("a");
    let (_repo, _dir, _) = backed_up(&dest).await;
    // Two destinations of the repository: refused outright.
    let other = MemoryBackend::new("b");
    let mut everything = dest.list("");
    while let Some(meta) = everything.next().await {
        let key = meta.unwrap().key;
        other
            .put(&key, dest.get(&key, None).await.unwrap())
            .await
            .unwrap();
    }
    drop(everything);
    let both = DestinationSet::new(vec![
        Arc::new(dest.clone()) as Arc<dyn Backend>,
        Arc::new(other.clone()) as Arc<dyn Backend>,
    ])
    .unwrap();
    let two = Repository::open(both, b"pw").await.unwrap();
    assert!(run(&two, &DrillOptions::default()).await.is_err());

    // A copy that lost every pack fails, though the original is intact.
    let copy = MemoryBackend::new("copy");
    let mut listing = dest.list("");
    while let Some(meta) = listing.next().await {
        let key = meta.unwrap().key;
        if !key.starts_with("data/") {
            copy.put(&key, dest.get(&key, None).await.unwrap())
                .await
                .unwrap();
        }
    }
    let alone = DestinationSet::new(vec![Arc::new(copy) as Arc<dyn Backend>]).unwrap();
    let alone = Repository::open(alone, b"pw").await.unwrap();
    let report = run(&alone, &DrillOptions::default()).await.unwrap();
    assert!(!report.passed, "{report:?}");
    assert_eq!(report.files_verified, 0);
    assert!(report.first_failure.unwrap().contains("not found"));
}
