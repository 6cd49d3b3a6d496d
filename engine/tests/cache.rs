//! The local metadata cache: a second run reads index files, snapshots and
//! trees from it instead of the destination, and a damaged entry is fetched
//! again, never trusted.

use std::sync::Arc;

use lifeboat_backends::{FaultPlan, FaultyBackend, MemoryBackend};
use lifeboat_engine::format::tree::NodeKind;
use lifeboat_engine::ls::{find_node, walk};
use lifeboat_engine::repo::cache::MetadataCache;
use lifeboat_engine::{BlobId, DestinationSet, Repository};

mod common;
use common::*;

/// Lists the latest snapshot completely; returns its paths.
async fn list_all_paths(repo: &Repository) -> Vec<String> {
    let index = repo.load_index().await.unwrap();
    let (_, snapshot) = repo.find_snapshot("latest").await.unwrap();
    let mut paths = Vec::new();
    walk(
        repo,
        &index,
        snapshot.tree,
        std::path::Path::new("/"),
        |p, _| paths.push(p.display().to_string()),
    )
    .await
    .unwrap();
    assert!(paths.len() >= 3, "{paths:?}");
    paths
}

/// A source tree and a repository on one recorded memory destination, with
/// a metadata cache directory.
struct Cached {
    src: tempfile::TempDir,
    recorder: FaultyBackend,
    dests: DestinationSet,
    cache_dir: tempfile::TempDir,
}

impl Cached {
    async fn new() -> Self {
        let src = tempfile::tempdir().unwrap();
        source_tree(src.path());
        let memory = MemoryBackend::new("m");
        let recorder = FaultyBackend::new(Arc::new(memory), FaultPlan::default());
        let dests = DestinationSet::new(vec![Arc::new(recorder.clone())]).unwrap();
        init_repo(dests.clone()).await;
        let cache_dir = tempfile::tempdir().unwrap();
        Cached {
            src,
            recorder,
            dests,
            cache_dir,
        }
    }

    /// Opens the repository with the cache, as every command does.
    async fn open(&self) -> Repository {
        Repository::open(self.dests.clone(), b"pw")
            .await
            .unwrap()
            .with_cache(MetadataCache::new(self.cache_dir.path()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_comes_from_the_cache_the_second_time() {
    let fx = Cached::new().await;
    let (src, recorder, cache_dir) = (&fx.src, &fx.recorder, &fx.cache_dir);
    let open = || fx.open();
    run_backup(&open().await, src.path()).await.unwrap();

    recorder.take_reads();
    let first = list_all_paths(&open().await).await;
    let metadata = |reads: &[(String, bool)]| {
        reads
            .iter()
            .filter(|(k, _)| !k.starts_with("keys/") && k != "config")
            .count()
    };
    assert!(metadata(&recorder.take_reads()) > 0);
    let second = list_all_paths(&open().await).await;
    assert_eq!(first, second);
    // Only the repository's own opening (config, key file) touched the destination.
    let reads = recorder.take_reads();
    assert_eq!(metadata(&reads), 0, "{reads:?}");

    // Damage every cache entry: the answers stay right, read from the destination.
    for file in files(cache_dir.path()) {
        std::fs::write(&file, b"garbage").unwrap();
    }
    let third = list_all_paths(&open().await).await;
    assert_eq!(first, third);
    assert!(metadata(&recorder.take_reads()) > 0);
}

/// The subtree id of the directory at `path` in the snapshot tree `root`.
async fn source_subtree(repo: &Repository, root: BlobId, path: &std::path::Path) -> BlobId {
    let index = repo.load_index().await.unwrap();
    match find_node(repo, &index, root, path)
        .await
        .unwrap()
        .map(|n| n.kind)
    {
        Some(NodeKind::Dir { subtree }) => subtree,
        other => panic!(
            "{} is not a directory in the snapshot: {other:?}",
            path.display()
        ),
    }
}

fn files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_keeps_its_tree_packs_so_the_next_reads_no_pack() {
    let fx = Cached::new().await;
    let (src, recorder, cache_dir) = (&fx.src, &fx.recorder, &fx.cache_dir);
    let open = || fx.open();
    run_backup(&open().await, src.path()).await.unwrap();
    let tree_packs = files(&cache_dir.path().join("tree-packs"));
    assert_eq!(tree_packs.len(), 1, "one tree pack kept: {tree_packs:?}");

    // The parent's trees come from the kept pack: no pack is read at all.
    recorder.take_reads();
    let second = run_backup(&open().await, src.path()).await.unwrap();
    let pack_reads = |reads: Vec<(String, bool)>| {
        reads
            .into_iter()
            .filter(|(k, _)| k.starts_with("data/"))
            .count()
    };
    assert_eq!(pack_reads(recorder.take_reads()), 0);
    assert_eq!(second.snapshot.summary.files_changed, 0);
    assert!(second.snapshot.summary.files_unmodified > 0);

    // A damaged kept pack is dropped and the trees are read from the destination.
    let mut bytes = std::fs::read(&tree_packs[0]).unwrap();
    bytes[10] ^= 0x40;
    std::fs::write(&tree_packs[0], &bytes).unwrap();
    let third = run_backup(&open().await, src.path()).await.unwrap();
    // The source's own subtree, not the snapshot root: the root also records
    // the source's ancestors (`/tmp`), which concurrent tests change.
    let repo = open().await;
    let source_tree = |root| source_subtree(&repo, root, src.path());
    assert_eq!(
        source_tree(third.snapshot.tree).await,
        source_tree(second.snapshot.tree).await
    );
    assert!(pack_reads(recorder.take_reads()) > 0);
    assert!(!tree_packs[0].exists(), "the damaged pack is dropped");
    let listed = list_all_paths(&open().await).await;
    assert!(listed.len() >= 3);
}
