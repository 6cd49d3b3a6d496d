//! Sync: seeds an empty destination, heals missing objects, never spreads a
//! corrupt copy, never mixes two repositories, and is idempotent. An empty
//! destination is seeded only when named (`Admission::seed`).

use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use lifeboat_backends::{Backend, MemoryBackend};
use lifeboat_engine::check::{check, CheckOptions};
use lifeboat_engine::sync::{apply, plan};
use lifeboat_engine::{Admission, DestinationSet, LeftOutReason, Repository};

mod common;
use common::*;

async fn keys(backend: &dyn Backend) -> Vec<(String, u64)> {
    let mut all: Vec<(String, u64)> = backend
        .list("")
        .map_ok(|m| (m.key, m.size))
        .try_collect()
        .await
        .unwrap();
    all.retain(|(k, _)| !k.starts_with("locks/"));
    all.sort();
    all
}

/// A repository with one snapshot on `first`.
async fn populated(first: &MemoryBackend) -> tempfile::TempDir {
    let src = tempfile::tempdir().unwrap();
    source_tree(src.path());
    let dests = DestinationSet::new(vec![Arc::new(first.clone())]).unwrap();
    let repo = init_repo(dests).await;
    run_backup(&repo, src.path()).await.unwrap();
    src
}

async fn open(backends: &[&MemoryBackend]) -> Repository {
    open_seeding(backends, &[]).await
}

/// Opens the repository admitting the named empty destinations as ones to seed.
async fn open_seeding(backends: &[&MemoryBackend], seed: &[&str]) -> Repository {
    let list: Vec<Arc<dyn Backend>> = backends
        .iter()
        .map(|b| Arc::new((*b).clone()) as Arc<dyn Backend>)
        .collect();
    let admission = Admission {
        seed: seed.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    Repository::open_with(DestinationSet::new(list).unwrap(), b"pw", &admission)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeds_an_empty_destination_and_is_idempotent() {
    let first = MemoryBackend::new("first");
    let _src = populated(&first).await;
    let empty = MemoryBackend::new("new");
    // Not named to be seeded: left out, nothing planned for it.
    let unnamed = open(&[&first, &empty]).await;
    assert_eq!(
        unnamed.destinations().left_out()[0].reason,
        LeftOutReason::NoRepository
    );
    assert!(plan(&unnamed).await.unwrap().copies.is_empty());
    let repo = open_seeding(&[&first, &empty], &["new"]).await;
    let plan1 = plan(&repo).await.unwrap();
    assert!(plan1.unreachable.is_empty());
    assert_eq!(
        plan1.copies.last().map(|c| c.key.as_str()),
        Some("config"),
        "config is copied last"
    );
    let outcome = apply(&repo, &plan1, Default::default()).await.unwrap();
    assert!(outcome.failed.is_empty(), "{:?}", outcome.failed);
    assert_eq!(keys(&first).await, keys(&empty).await, "identical objects");
    // The new destination alone is a complete repository.
    let alone = open(&[&empty]).await;
    assert!(check(
        &alone,
        &CheckOptions {
            read_data: true,
            ..Default::default()
        },
        Default::default()
    )
    .await
    .unwrap()
    .is_ok());
    assert!(
        plan(&repo).await.unwrap().copies.is_empty(),
        "a second sync has nothing to do"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heals_missing_objects_but_never_spreads_corruption() {
    let first = MemoryBackend::new("first");
    let _src = populated(&first).await;
    let second = MemoryBackend::new("second");
    let repo = open_seeding(&[&first, &second], &["second"]).await;
    apply(&repo, &plan(&repo).await.unwrap(), Default::default())
        .await
        .unwrap();
    // `second` loses its packs; `first` has one pack corrupted.
    let packs: Vec<String> = keys(&second)
        .await
        .into_iter()
        .map(|(k, _)| k)
        .filter(|k| k.starts_with("data/"))
        .collect();
    assert!(packs.len() >= 2);
    for p in &packs {
        second.delete(p).await.unwrap();
    }
    let bad = &packs[0];
    let mut bytes = first.get(bad, None).await.unwrap().to_vec();
    bytes[10] ^= 1;
    first.delete(bad).await.unwrap();
    first.put(bad, Bytes::from(bytes)).await.unwrap();

    let outcome = apply(&repo, &plan(&repo).await.unwrap(), Default::default())
        .await
        .unwrap();
    assert_eq!(outcome.failed.len(), 1, "{:?}", outcome.failed);
    assert_eq!(&outcome.failed[0].0, bad);
    assert!(
        outcome.failed[0].2.contains("corrupt"),
        "{:?}",
        outcome.failed
    );
    assert!(
        second.stat(bad).await.is_err(),
        "the corrupt copy was not spread"
    );
    for p in &packs[1..] {
        assert!(second.stat(p).await.is_ok(), "good packs were healed");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_to_mix_two_repositories() {
    let first = MemoryBackend::new("first");
    let _a = populated(&first).await;
    let other = MemoryBackend::new("other");
    let _b = populated(&other).await;
    let before = keys(&other).await;
    // Same password, other repository: left out when opened, so sync (even
    // asked to seed it) plans nothing there.
    let repo = open_seeding(&[&first, &other], &["other"]).await;
    let left = repo.destinations().left_out();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].backend.name(), "other");
    assert_eq!(left[0].reason, LeftOutReason::OtherRepository);
    let planned = plan(&repo).await.unwrap();
    assert!(planned.copies.iter().all(|c| c.target != "other"));
    apply(&repo, &planned, Default::default()).await.unwrap();
    assert_eq!(keys(&other).await, before);
}

/// Issue 15: objects a provider planted under valid content names (junk that
/// does not open with the repository's keys) are never spread by sync, and a
/// junk deletion record neither stops commands nor holds back healing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junk_objects_are_never_spread_and_junk_deletion_records_are_ignored() {
    let first = MemoryBackend::new("first");
    let _src = populated(&first).await;
    let second = MemoryBackend::new("second");
    let mut planted = Vec::new();
    for (n, prefix) in ["deletions/", "snapshots/", "index/", "keys/"]
        .iter()
        .enumerate()
    {
        let junk = Bytes::from(vec![n as u8 + 1; 200]);
        let key = format!("{prefix}{}", hex::encode(blake3::hash(&junk).as_bytes()));
        first.put(&key, junk).await.unwrap();
        planted.push(key);
    }
    let repo = open_seeding(&[&first, &second], &["second"]).await;
    // The junk record does not stop the commands that read tombstones.
    assert!(repo.tombstones().await.unwrap().is_empty());
    let outcome = apply(&repo, &plan(&repo).await.unwrap(), Default::default())
        .await
        .unwrap();
    assert!(outcome.failed.is_empty(), "{:?}", outcome.failed);
    for key in &planted {
        assert!(second.stat(key).await.is_err(), "{key} was spread");
    }
    // Everything of the repository's own did reach the new destination.
    let theirs: Vec<_> = keys(&first)
        .await
        .into_iter()
        .filter(|(k, _)| !planted.contains(k))
        .collect();
    assert_eq!(keys(&second).await, theirs);
}
