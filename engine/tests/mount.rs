//! The mount's file system without the kernel: the calls the FUSE glue
//! makes, on repositories in memory, compared with the source tree.

use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;

use lifeboat_backends::{Backend, MemoryBackend};
use lifeboat_engine::mount::{Attr, FileKind, MountFs, MountOptions, ROOT};

mod common;
use common::*;

/// Looks up each component of `path` (relative to the mount's root).
async fn walk(fs: &MountFs, path: &[&[u8]]) -> Attr {
    let mut attr = fs.getattr(ROOT).unwrap();
    for name in path {
        attr = fs
            .lookup(attr.ino, name)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", String::from_utf8_lossy(name)));
    }
    attr
}

/// The mount path of `source` in the newest snapshot.
fn in_latest(source: &Path) -> Vec<Vec<u8>> {
    let mut path = vec![b"latest".to_vec()];
    path.extend(
        source
            .components()
            .skip(1)
            .map(|c| c.as_os_str().as_bytes().to_vec()),
    );
    path
}

async fn read_all(fs: &MountFs, ino: u64, chunk: u32) -> Vec<u8> {
    fs.open(ino).unwrap();
    let mut out = Vec::new();
    loop {
        let got = fs.read(ino, out.len() as u64, chunk).await.unwrap();
        if got.is_empty() {
            break;
        }
        out.extend_from_slice(&got);
    }
    out
}

async fn names(fs: &MountFs, ino: u64) -> Vec<String> {
    let (fh, _) = fs
        .opendir(ino, std::time::Duration::from_secs(3600))
        .await
        .unwrap();
    let mut out = Vec::new();
    fs.readdir(fh, 0, |e| {
        out.push(String::from_utf8_lossy(e.name).into_owned());
        false
    })
    .unwrap();
    fs.releasedir(fh);
    out
}

fn small_cache() -> MountOptions {
    MountOptions {
        cache_bytes: 4 << 20,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_reads_back_as_its_source() {
    let (_a, _b, repo, src) = two_copies().await;
    let fs = MountFs::new(repo, small_cache()).await.unwrap();
    assert_eq!(
        names(&fs, ROOT).await,
        [".", "..", "hosts", "ids", "latest", "snapshots", "tags"]
    );
    let latest = walk(&fs, &[b"latest"]).await;
    assert_eq!(latest.kind, FileKind::Symlink);
    let target = fs.readlink(latest.ino).unwrap();
    assert!(target.starts_with(b"snapshots/"), "{target:?}");
    let path = in_latest(src.path());
    let refs: Vec<&[u8]> = path.iter().map(Vec::as_slice).collect();
    // `latest` is a link: the kernel follows it; here, its target.
    let mut resolved: Vec<&[u8]> = target.split(|&b| b == b'/').collect();
    resolved.extend_from_slice(&refs[1..]);
    let dir = walk(&fs, &resolved).await;
    assert_eq!(dir.kind, FileKind::Directory);
    assert_eq!(names(&fs, dir.ino).await, [".", "..", "a.txt", "sub"]);
    let a = fs.lookup(dir.ino, b"a.txt").await.unwrap();
    assert_eq!((a.kind, a.size), (FileKind::File, 11));
    assert_eq!(read_all(&fs, a.ino, 4096).await, b"hello world");
    let sub = fs.lookup(dir.ino, b"sub").await.unwrap();
    let big = fs.lookup(sub.ino, b"big.bin").await.unwrap();
    let expected = std::fs::read(src.path().join("sub/big.bin")).unwrap();
    assert_eq!(big.size, expected.len() as u64);
    // Reads of the kernel's sizes, and odd ones across blob boundaries.
    assert!(read_all(&fs, big.ino, 128 << 10).await == expected);
    assert!(read_all(&fs, big.ino, 77_777).await == expected);
    let stats = fs.stats();
    assert!(
        stats.cached_bytes <= 4 << 20,
        "the blob cache holds {} bytes, over its 4 MiB budget",
        stats.cached_bytes
    );
    assert_eq!(stats.handles, 0, "every directory handle was released");
    assert!(fs.lookup(dir.ino, b"missing").await.is_err());
    assert_eq!(
        fs.lookup(a.ino, b"x").await.unwrap_err().errno(),
        libc::ENOTDIR
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_fall_over_to_the_next_destination() {
    let (a, _b, repo, src) = two_copies().await;
    let fs = MountFs::new(repo, small_cache()).await.unwrap();
    let path = in_latest(src.path());
    let target = fs.readlink(walk(&fs, &[b"latest"]).await.ino).unwrap();
    let mut resolved: Vec<&[u8]> = target.split(|&b| b == b'/').collect();
    resolved.extend(path[1..].iter().map(Vec::as_slice));
    resolved.push(b"sub");
    resolved.push(b"big.bin");
    let big = walk(&fs, &resolved).await;
    // Every pack of the first destination is gone (and one of them damaged
    // would do the same: each blob is verified).
    for key in keys_under(&a, "data/").await {
        a.delete(&key).await.unwrap();
    }
    let expected = std::fs::read(src.path().join("sub/big.bin")).unwrap();
    assert!(read_all(&fs, big.ino, 128 << 10).await == expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listings_with_attributes_count_lookups_and_new_snapshots_appear() {
    let src = tempfile::tempdir().unwrap();
    source_tree(src.path());
    let backend = MemoryBackend::new("m");
    let repo = new_repo(vec![Arc::new(backend) as Arc<dyn Backend>]).await;
    run_backup(&repo, src.path()).await.unwrap();
    let fs = MountFs::new(repo.clone(), small_cache()).await.unwrap();
    assert_eq!(fs.snapshot_count(), 1);
    let snapshots = walk(&fs, &[b"snapshots"]).await;
    let before = fs.stats().inodes;
    let (fh, cacheable) = fs
        .opendir(snapshots.ino, std::time::Duration::from_secs(3600))
        .await
        .unwrap();
    assert!(!cacheable, "made-up directories change");
    let mut seen = Vec::new();
    fs.readdirplus(fh, 0, |e, attr| {
        assert_eq!(e.ino, attr.ino);
        seen.push((String::from_utf8_lossy(e.name).into_owned(), attr.ino));
        false
    })
    .unwrap();
    fs.releasedir(fh);
    assert_eq!(seen.len(), 4, "., .., the snapshot, latest: {seen:?}");
    assert_eq!(fs.stats().inodes, before + 2, "the two entries are held");
    for (_, ino) in &seen[2..] {
        fs.forget(*ino, 1);
    }
    assert_eq!(fs.stats().inodes, before, "and forgotten");

    std::fs::write(src.path().join("new.txt"), b"new").unwrap();
    run_backup(&repo, src.path()).await.unwrap();
    assert!(fs.refresh().await.unwrap(), "a new snapshot");
    assert_eq!(fs.snapshot_count(), 2);
    assert!(!fs.refresh().await.unwrap(), "nothing new");
}
