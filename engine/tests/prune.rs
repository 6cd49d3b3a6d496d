//! Forget and prune: unused data leaves every destination, kept snapshots
//! restore bit for bit, a blob reused after the mark is rescued, and a
//! destination that missed a prune catches up without getting data back.

use std::path::Path;
use std::sync::Arc;

use futures::TryStreamExt;
use lifeboat_backends::{Backend, FaultPlan, FaultyBackend, MemoryBackend};
use lifeboat_engine::forget::forget;
use lifeboat_engine::prune::{prune, PruneOptions, PruneReport};
use lifeboat_engine::restore::{restore, RestoreOptions};
use lifeboat_engine::{DestinationSet, Repository, SnapshotId};

mod common;
use common::*;

/// Bytes stored on a destination (locks aside).
async fn stored_bytes(backend: &dyn Backend) -> u64 {
    backend
        .list("")
        .try_fold(0, |sum, m| async move {
            Ok(if m.key.starts_with("locks/") {
                sum
            } else {
                sum + m.size
            })
        })
        .await
        .unwrap()
}

fn now_options() -> PruneOptions {
    PruneOptions {
        grace_secs: 0,
        ..Default::default()
    }
}

async fn run_prune(repo: &Repository, options: &PruneOptions) -> PruneReport {
    prune(repo, options, Default::default()).await.unwrap()
}

/// Restores `id` and compares every file under `src` byte for byte.
async fn assert_restores(repo: &Repository, id: &SnapshotId, src: &Path) {
    let (_, snapshot) = repo.find_snapshot(&id.to_hex()).await.unwrap();
    let target = tempfile::tempdir().unwrap();
    let options = RestoreOptions {
        target: target.path().into(),
        verify: true,
        ..Default::default()
    };
    let outcome = restore(
        repo,
        &snapshot,
        &options,
        Default::default(),
        Default::default(),
    )
    .await
    .unwrap();
    assert!(outcome.errors.is_empty(), "{:?}", outcome.errors);
    let copy = target.path().join(src.strip_prefix("/").unwrap());
    for entry in walk(src) {
        let rel = entry.strip_prefix(src).unwrap();
        assert_eq!(
            std::fs::read(&entry).unwrap(),
            std::fs::read(copy.join(rel)).unwrap(),
            "{}",
            rel.display()
        );
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// Incompressible bytes, so each file has its own blobs.
fn random_file(path: &Path, seed: u32, len: usize) {
    let mut data = vec![0u8; len];
    blake3::Hasher::new()
        .update(&seed.to_le_bytes())
        .finalize_xof()
        .fill(&mut data);
    std::fs::write(path, data).unwrap();
}

/// Two snapshots on two destinations: the first holds `old.bin`, the second
/// replaced it with `new.bin`. Small packs, so old data has packs of its own.
async fn two_generations() -> (
    MemoryBackend,
    MemoryBackend,
    Repository,
    tempfile::TempDir,
    SnapshotId,
    SnapshotId,
) {
    let src = tempfile::tempdir().unwrap();
    random_file(&src.path().join("keep.bin"), 1, 1_500_000);
    random_file(&src.path().join("old.bin"), 2, 3_000_000);
    let (a, b) = (MemoryBackend::new("a"), MemoryBackend::new("b"));
    let dests = DestinationSet::new(vec![Arc::new(a.clone()), Arc::new(b.clone())]).unwrap();
    let params = lifeboat_engine::RepoParams {
        pack_size: 1 << 20,
        ..Default::default()
    };
    Repository::init(
        dests.clone(),
        b"pw",
        params,
        lifeboat_engine::KdfParams::insecure_for_tests(),
    )
    .await
    .unwrap();
    let repo = Repository::open(dests, b"pw").await.unwrap();
    let first = run_backup(&repo, src.path()).await.unwrap();
    std::fs::remove_file(src.path().join("old.bin")).unwrap();
    random_file(&src.path().join("new.bin"), 3, 2_000_000);
    let second = run_backup(&repo, src.path()).await.unwrap();
    (
        a,
        b,
        repo,
        src,
        first.snapshot_id.unwrap(),
        second.snapshot_id.unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forget_then_prune_shrinks_every_destination_and_keeps_the_rest() {
    let (a, b, repo, src, first, second) = two_generations().await;
    let before = (stored_bytes(&a).await, stored_bytes(&b).await);
    let outcome = forget(&repo, &[first]).await.unwrap();
    assert_eq!(outcome.removed, 1);
    assert!(repo.find_snapshot(&first.to_hex()).await.is_err());

    let report = run_prune(&repo, &now_options()).await;
    assert!(
        report.packs_dropped + report.packs_repacked > 0,
        "{report:?}"
    );
    assert!(report.sweep.deleted > 0, "{report:?}");
    let after = (stored_bytes(&a).await, stored_bytes(&b).await);
    // old.bin's 3 MB left both destinations.
    assert!(after.0 + 2_500_000 < before.0, "{before:?} -> {after:?}");
    assert!(after.1 + 2_500_000 < before.1, "{before:?} -> {after:?}");
    assert_eq!(stored_bytes(&a).await, stored_bytes(&b).await);

    assert_restores(&repo, &second, src.path()).await;
    let fresh = Repository::open(repo.destinations().clone(), b"pw")
        .await
        .unwrap();
    let checked = run_check(&fresh, read_all()).await;
    assert!(checked.is_ok(), "{:?}", checked.problems);
    // Nothing left to do.
    let again = run_prune(&fresh, &now_options()).await;
    assert_eq!(again.packs_dropped + again.packs_repacked, 0, "{again:?}");
    assert_eq!(again.sweep.deleted, 0, "{again:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packs_wait_for_the_grace_period_and_a_reused_blob_is_rescued() {
    let (a, _b, repo, src, first, _second) = two_generations().await;
    let (_, old_snapshot) = repo.find_snapshot(&first.to_hex()).await.unwrap();
    forget(&repo, &[first]).await.unwrap();
    // An hour of grace: packs are marked, not deleted.
    let report = run_prune(&repo, &PruneOptions::default()).await;
    assert!(report.sweep.waiting > 0, "{report:?}");
    let marked = report.sweep.waiting;

    // A backup that loaded the index before the mark reuses old.bin's blobs:
    // its snapshot references them though no index lists them any more.
    let mut stale = old_snapshot.clone();
    stale.hostname = "stale-laptop".into();
    let stale_id = repo.save_snapshot(&stale).await.unwrap();

    let report = run_prune(&repo, &now_options()).await;
    assert!(report.blobs_rescued > 0, "{report:?}");
    assert!(report.sweep.deleted >= marked, "{report:?}");
    // Every marked pack is gone, and the stale snapshot still restores whole.
    let fresh = Repository::open(repo.destinations().clone(), b"pw")
        .await
        .unwrap();
    std::fs::remove_file(src.path().join("new.bin")).unwrap();
    random_file(&src.path().join("old.bin"), 2, 3_000_000);
    assert_restores(&fresh, &stale_id, src.path()).await;
    let checked = run_check(&fresh, read_all()).await;
    assert!(checked.is_ok(), "{:?}", checked.problems);
    assert_eq!(keys_under(&a, "data/").await.len() as u64, {
        let index = fresh.load_index().await.unwrap();
        index.packs().len() as u64
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_that_missed_the_prune_catches_up() {
    let (a, b, repo, src, first, second) = two_generations().await;
    let faulty = FaultyBackend::new(Arc::new(b.clone()), FaultPlan::default());
    let dests = DestinationSet::new(vec![Arc::new(a.clone()), Arc::new(faulty.clone())]).unwrap();
    let repo2 = Repository::open(dests.clone(), b"pw").await.unwrap();
    drop(repo);
    faulty.set_plan(FaultPlan {
        unreachable: true,
        ..Default::default()
    });
    let outcome = forget(&repo2, &[first]).await.unwrap();
    assert_eq!(outcome.missed.len(), 1);
    let report = run_prune(&repo2, &now_options()).await;
    assert_eq!(report.missed.len(), 1, "{report:?}");
    faulty.set_plan(FaultPlan::default());

    // Back online: sync brings the deletion records and new objects, never
    // the removed ones back; the next prune sweeps the lagging copy.
    let both = Repository::open(
        DestinationSet::new(vec![Arc::new(a.clone()), Arc::new(b.clone())]).unwrap(),
        b"pw",
    )
    .await
    .unwrap();
    assert_eq!(both.list_snapshots().await.unwrap().len(), 1);
    let plan = lifeboat_engine::sync::plan(&both).await.unwrap();
    assert!(plan.copies.iter().all(|c| c.target == "b"), "{plan:?}");
    lifeboat_engine::sync::apply(&both, &plan, Default::default())
        .await
        .unwrap();
    run_prune(&both, &now_options()).await;
    assert_eq!(stored_bytes(&a).await, stored_bytes(&b).await);
    assert_eq!(keys_under(&a, "").await, keys_under(&b, "").await);
    let b_alone = Repository::open(
        DestinationSet::new(vec![Arc::new(b.clone())]).unwrap(),
        b"pw",
    )
    .await
    .unwrap();
    assert_restores(&b_alone, &second, src.path()).await;
    let checked = run_check(&both, read_all()).await;
    assert!(checked.is_ok(), "{:?}", checked.problems);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_key_stays_removed_on_a_destination_that_missed_it() {
    use lifeboat_engine::key_admin::{add_key, remove_key};
    let (a, b, c) = (
        MemoryBackend::new("a"),
        MemoryBackend::new("b"),
        MemoryBackend::new("c"),
    );
    let set = |list: &[&MemoryBackend]| {
        DestinationSet::new(
            list.iter()
                .map(|m| Arc::new((*m).clone()) as Arc<dyn Backend>)
                .collect(),
        )
        .unwrap()
    };
    let repo = init_repo(set(&[&a, &b, &c])).await;
    let second = add_key(
        &repo,
        b"second",
        lifeboat_engine::KdfParams::insecure_for_tests(),
    )
    .await
    .unwrap();
    // Removed while c is not among the destinations.
    let ab = Repository::open(set(&[&a, &b]), b"pw").await.unwrap();
    remove_key(&ab, &second.to_hex(), false).await.unwrap();
    assert_eq!(keys_under(&c, "keys/").await.len(), 2);

    // Sync brings the deletion record to c and never the key back to a or b;
    // c alone then refuses the removed password, and prune sweeps the file.
    let all = Repository::open(set(&[&a, &b, &c]), b"pw").await.unwrap();
    let plan = lifeboat_engine::sync::plan(&all).await.unwrap();
    assert!(
        plan.copies
            .iter()
            .all(|copy| !copy.key.starts_with("keys/")),
        "{plan:?}"
    );
    lifeboat_engine::sync::apply(&all, &plan, Default::default())
        .await
        .unwrap();
    assert_eq!(keys_under(&a, "keys/").await.len(), 1);
    let refused = Repository::open(set(&[&c]), b"second").await.err();
    assert!(
        matches!(refused, Some(lifeboat_engine::Error::KeyRemoved { .. })),
        "{refused:?}"
    );
    run_prune(&all, &now_options()).await;
    assert_eq!(keys_under(&c, "keys/").await.len(), 1);
    let checked = run_check(&all, read_all()).await;
    assert!(checked.is_ok(), "{:?}", checked.problems);
}

/// Data the snapshots use that no index and no pack holds (a provider lost
/// it): prune stops with `Damaged` before it deletes or writes anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_of_a_damaged_repository_changes_nothing() {
    let src = tempfile::tempdir().unwrap();
    source_tree(src.path());
    let store = MemoryBackend::new("only");
    let repo = new_repo(vec![Arc::new(store.clone())]).await;
    run_backup(&repo, src.path()).await.unwrap();
    // The provider loses every index file and every pack.
    for prefix in ["index/", "data/"] {
        for key in keys_under(&store, prefix).await {
            store.delete(&key).await.unwrap();
        }
    }
    let before = keys_under(&store, "").await;
    let repo = Repository::open(
        DestinationSet::new(vec![Arc::new(store.clone())]).unwrap(),
        b"pw",
    )
    .await
    .unwrap();
    let err = prune(&repo, &now_options(), Default::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, lifeboat_engine::Error::Damaged { what } if what.contains("no index and no pack")),
        "{err}"
    );
    let after: Vec<String> = keys_under(&store, "")
        .await
        .into_iter()
        .filter(|k| !k.starts_with("locks/"))
        .collect();
    assert_eq!(after, before, "nothing written or deleted");
}
