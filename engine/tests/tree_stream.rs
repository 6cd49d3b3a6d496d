//! Issue 13: every walk of a snapshot streams its trees. Over a destination
//! that answers each read after a delay, listing, checking, restoring,
//! drilling and a backup's parent walk must keep many reads in flight at
//! once, and read trees about once per tree pack, not once per tree.
//! No wall-clock assertions: the wrapper counts reads and their overlap.

use std::collections::HashSet;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use lifeboat_backends::{Backend, Chaos, ChaosBackend, LocalBackend, Traffic};
use lifeboat_engine::check::{check, CheckOptions};
use lifeboat_engine::drill::{drill, DrillOptions};
use lifeboat_engine::restore::{restore, RestoreOptions};
use lifeboat_engine::{DestinationSet, ObjectKind, Repository};

mod common;
use common::*;

const TOPS: usize = 20;
const SUBS: usize = 100;
/// Backups after the first, each changing one top directory: the latest
/// snapshot's trees then lie in this many tree packs and one more.
const CHANGES: usize = 12;

/// 20 x 100 directories (2,021 with the tops and the root), a file in each.
fn source(dir: &Path) {
    for t in 0..TOPS {
        for s in 0..SUBS {
            let sub = dir.join(format!("t{t:02}/s{s:03}"));
            std::fs::create_dir_all(&sub).unwrap();
            std::fs::write(sub.join("f"), format!("file {t} {s}")).unwrap();
        }
    }
}

struct Fixture {
    src: tempfile::TempDir,
    _store: tempfile::TempDir,
    /// The destination as the walks see it: each read 0-20 ms late.
    slow: ChaosBackend,
    repo: Repository,
    /// Keys of the tree packs.
    tree_packs: HashSet<String>,
}

async fn fixture() -> Fixture {
    let src = tempfile::tempdir().unwrap();
    source(src.path());
    let store = tempfile::tempdir().unwrap();
    let local: Arc<dyn Backend> = Arc::new(LocalBackend::new("far", store.path().join("repo")));
    let repo = new_repo(vec![local.clone()]).await;
    run_backup(&repo, src.path()).await.unwrap();
    for t in 1..=CHANGES {
        std::fs::write(src.path().join(format!("t{t:02}/s000/f")), "changed").unwrap();
        run_backup(&repo, src.path()).await.unwrap();
    }
    let slow = ChaosBackend::new(
        local,
        Chaos {
            seed: 13,
            delay: 1.0,
            max_delay: Duration::from_millis(20),
            ..Default::default()
        },
    );
    let dests = DestinationSet::new(vec![Arc::new(slow.clone()) as Arc<dyn Backend>]).unwrap();
    let repo = Repository::open(dests, b"pw").await.unwrap();
    let index = repo.load_index().await.unwrap();
    let tree_packs = index
        .tree_pack_extents()
        .keys()
        .map(|p| ObjectKind::Pack.key(&p.to_hex()))
        .collect();
    Fixture {
        src,
        _store: store,
        slow,
        repo,
        tree_packs,
    }
}

/// The walk kept at least 8 reads in flight at some point, and read tree
/// packs about `per_pack` times each (read one tree at a time, the 2,021
/// trees would take as many reads).
fn assert_streamed(what: &str, traffic: &Traffic, tree_packs: &HashSet<String>, per_pack: u64) {
    let tree_reads = traffic.gets_where(|k| tree_packs.contains(k));
    assert!(
        traffic.peak_gets >= 8,
        "{what}: at most {} reads in flight at once; the walk did not overlap them",
        traffic.peak_gets
    );
    assert!(
        tree_reads <= per_pack * tree_packs.len() as u64,
        "{what}: {tree_reads} reads of {} tree packs (2,021 trees)",
        tree_packs.len()
    );
    assert!(
        tree_reads > 0,
        "{what}: no tree was read from the destination"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn walks_keep_many_reads_in_flight_and_read_trees_by_pack() {
    let f = fixture().await;
    assert!(
        f.tree_packs.len() > CHANGES,
        "the fixture spreads the latest snapshot over {} tree packs",
        f.tree_packs.len()
    );
    let index = f.repo.load_index().await.unwrap();
    let (_, latest) = f.repo.find_snapshot("latest").await.unwrap();

    f.slow.reset_traffic();
    let mut dirs = 0;
    lifeboat_engine::ls::walk(&f.repo, &index, latest.tree, Path::new("/"), |_, node| {
        dirs += usize::from(node.is_dir());
    })
    .await
    .unwrap();
    // The source's own parent directories sit above the 2,020 below it.
    assert!(dirs >= TOPS * SUBS + TOPS, "ls saw {dirs} directories");
    assert_streamed("ls", &f.slow.traffic(), &f.tree_packs, 2);

    f.slow.reset_traffic();
    let report = check(&f.repo, &CheckOptions::default(), Default::default())
        .await
        .unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    assert!(
        report.trees as usize > TOPS * SUBS,
        "{} trees",
        report.trees
    );
    // Besides the walk, check reads every pack's header once.
    assert_streamed("check", &f.slow.traffic(), &f.tree_packs, 3);

    f.slow.reset_traffic();
    let target = tempfile::tempdir().unwrap();
    let options = RestoreOptions {
        target: target.path().join("out"),
        ..Default::default()
    };
    let outcome = restore(
        &f.repo,
        &latest,
        &options,
        Default::default(),
        Default::default(),
    )
    .await
    .unwrap();
    assert!(outcome.errors.is_empty(), "{:?}", outcome.errors);
    let restored = options
        .target
        .join(f.src.path().strip_prefix("/").unwrap())
        .join("t05/s000/f");
    assert_eq!(std::fs::read_to_string(restored).unwrap(), "changed");
    assert_streamed("restore", &f.slow.traffic(), &f.tree_packs, 2);

    f.slow.reset_traffic();
    let report = drill(
        &f.repo,
        "latest",
        &DrillOptions::default(),
        Default::default(),
        Default::default(),
    )
    .await
    .unwrap();
    assert_eq!(report.failures, 0, "{:?}", report.first_failure);
    assert_streamed("drill", &f.slow.traffic(), &f.tree_packs, 2);

    // A backup on a new machine (no cache) reads its parent's trees.
    f.slow.reset_traffic();
    let outcome = run_backup(&f.repo, f.src.path()).await.unwrap();
    let summary = &outcome.snapshot.summary;
    assert_eq!(
        summary.files_new + summary.files_changed,
        0,
        "nothing changed"
    );
    assert_streamed("backup's parent walk", &f.slow.traffic(), &f.tree_packs, 2);
}

/// Every path below `tree`, depth first in name order, read one tree at a
/// time: the order `ls` promises.
async fn reference_walk(
    repo: &Repository,
    index: &lifeboat_engine::repo::index::MasterIndex,
    tree: lifeboat_engine::BlobId,
    dir: &Path,
    out: &mut Vec<std::path::PathBuf>,
) {
    let tree = repo.load_tree(index, &tree).await.unwrap();
    for node in tree.nodes {
        let path = dir.join(std::ffi::OsStr::from_bytes(&node.name));
        out.push(path.clone());
        if let lifeboat_engine::NodeKind::Dir { subtree } = node.kind {
            Box::pin(reference_walk(repo, index, subtree, &path, out)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_listing_keeps_depth_first_name_order() {
    let f = fixture().await;
    let index = f.repo.load_index().await.unwrap();
    let (_, latest) = f.repo.find_snapshot("latest").await.unwrap();
    let mut expected = Vec::new();
    reference_walk(&f.repo, &index, latest.tree, Path::new("/"), &mut expected).await;
    let mut listed = Vec::new();
    lifeboat_engine::ls::walk(&f.repo, &index, latest.tree, Path::new("/"), |path, _| {
        listed.push(path.to_path_buf());
    })
    .await
    .unwrap();
    assert_eq!(listed.len(), expected.len());
    assert!(
        listed == expected,
        "ls order differs from a depth-first walk in name order"
    );
}
