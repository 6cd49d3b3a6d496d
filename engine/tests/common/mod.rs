//! Helpers shared by the engine's integration tests.

// Each test file uses its own subset.
#![allow(dead_code)]

use std::path::Path;

use futures::TryStreamExt;
use lifeboat_backends::Backend;
use lifeboat_engine::backup::{backup, BackupOptions, BackupOutcome};
use lifeboat_engine::{DestinationSet, KdfParams, RepoParams, Repository};

/// A small tree: `a.txt` and a 3 MB `sub/big.bin` of varied bytes.
pub fn source_tree(dir: &Path) {
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::write(dir.join("a.txt"), b"hello world").unwrap();
    let big: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(dir.join("sub/big.bin"), big).unwrap();
}

/// Every key under `prefix`.
pub async fn keys_under(backend: &dyn Backend, prefix: &str) -> Vec<String> {
    backend
        .list(prefix)
        .map_ok(|m| m.key)
        .try_collect()
        .await
        .unwrap()
}

/// A new repository with a cheap KDF.
pub async fn init_repo(dests: DestinationSet) -> Repository {
    Repository::init(
        dests,
        b"pw",
        RepoParams::default(),
        KdfParams::insecure_for_tests(),
    )
    .await
    .unwrap()
}

/// A new repository on `backends`.
pub async fn new_repo(backends: Vec<std::sync::Arc<dyn Backend>>) -> Repository {
    init_repo(DestinationSet::new(backends).unwrap()).await
}

/// Options to back up `path`.
pub fn options(path: &Path) -> BackupOptions {
    BackupOptions {
        paths: vec![path.to_path_buf()],
        ..Default::default()
    }
}

/// Backs up `path` with default progress and no cancellation.
pub async fn run_backup(repo: &Repository, path: &Path) -> lifeboat_engine::Result<BackupOutcome> {
    backup(repo, &options(path), Default::default(), Default::default()).await
}
