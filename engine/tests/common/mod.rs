//! Helpers shared by the engine's integration tests.

// Each test file uses its own subset.
#![allow(dead_code)]

use std::path::Path;

use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use lifeboat_backends::{Backend, MemoryBackend};
use lifeboat_engine::backup::{backup, BackupOptions, BackupOutcome};
use lifeboat_engine::check::{check, CheckOptions, CheckReport};
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

/// Two memory destinations `a` and `b` holding one backup of `source_tree`.
pub async fn two_copies() -> (MemoryBackend, MemoryBackend, Repository, tempfile::TempDir) {
    let src = tempfile::tempdir().unwrap();
    source_tree(src.path());
    let (a, b) = (MemoryBackend::new("a"), MemoryBackend::new("b"));
    let repo = new_repo(vec![Arc::new(a.clone()), Arc::new(b.clone())]).await;
    run_backup(&repo, src.path()).await.unwrap();
    (a, b, repo, src)
}

pub async fn run_check(repo: &Repository, options: CheckOptions) -> CheckReport {
    check(repo, &options, Default::default()).await.unwrap()
}

pub fn read_all() -> CheckOptions {
    CheckOptions {
        read_data: true,
        ..Default::default()
    }
}

/// Replaces an object's bytes (memory objects are create-only).
pub async fn overwrite(backend: &MemoryBackend, key: &str, bytes: Vec<u8>) {
    backend.delete(key).await.unwrap();
    backend.put(key, Bytes::from(bytes)).await.unwrap();
}

pub async fn flip_middle_byte(backend: &MemoryBackend, key: &str) {
    let mut bytes = backend.get(key, None).await.unwrap().to_vec();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    overwrite(backend, key, bytes).await;
}

/// The largest pack (the one holding `sub/big.bin`'s data).
pub async fn largest_pack(backend: &MemoryBackend) -> String {
    let mut best = (0, String::new());
    for key in keys_under(backend, "data/").await {
        let size = backend.stat(&key).await.unwrap().size;
        if size > best.0 {
            best = (size, key);
        }
    }
    best.1
}
