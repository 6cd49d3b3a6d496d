//! ARCHITECTURE.md invariant 4: a destination that fails during a backup never
//! blocks the others; the snapshot commits on every destination that holds
//! all its data, and the outcome names the destinations missed.

use std::sync::Arc;

use lifeboat_backends::{FaultPlan, FaultyBackend, MemoryBackend};
use lifeboat_engine::check::{check, CheckOptions};
use lifeboat_engine::restore::{restore, RestoreOptions};
use lifeboat_engine::{DestinationSet, Error, KdfParams, RepoParams, Repository};

mod common;
use common::*;

/// Two destinations, the second wrapped in a fault injector; a fresh repository.
async fn two_destinations() -> (MemoryBackend, MemoryBackend, FaultyBackend, DestinationSet) {
    let good = MemoryBackend::new("good");
    let sick = MemoryBackend::new("sick");
    let faulty = FaultyBackend::new(Arc::new(sick.clone()), FaultPlan::default());
    let dests =
        DestinationSet::new(vec![Arc::new(good.clone()), Arc::new(faulty.clone())]).unwrap();
    init_repo(dests.clone()).await;
    (good, sick, faulty, dests)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_failing_midway_is_dropped_and_the_others_commit() {
    let src = tempfile::tempdir().unwrap();
    source_tree(src.path());
    let (good, sick, faulty, dests) = two_destinations().await;
    faulty.set_plan(FaultPlan {
        fail_put_prefix: Some("data/".into()),
        ..Default::default()
    });
    let repo = Repository::open(dests, b"pw").await.unwrap();
    let outcome = run_backup(&repo, src.path()).await.unwrap();
    assert_eq!(outcome.reached, vec!["good".to_string()]);
    assert_eq!(outcome.missed.len(), 1);
    assert_eq!(outcome.missed[0].0, "sick");
    assert!(
        outcome.missed[0].1.contains("data/"),
        "{:?}",
        outcome.missed
    );
    assert!(outcome.is_incomplete());
    assert_eq!(
        keys_under(&good, "snapshots/").await.len(),
        1,
        "committed where all data is"
    );
    assert!(
        keys_under(&sick, "snapshots/").await.is_empty(),
        "never committed where data is missing"
    );
    assert!(
        keys_under(&sick, "index/").await.is_empty(),
        "no index where its packs are missing"
    );

    // The good destination alone restores the snapshot.
    let alone = DestinationSet::new(vec![Arc::new(good.clone())]).unwrap();
    let repo = Repository::open(alone, b"pw").await.unwrap();
    assert!(check(
        &repo,
        &CheckOptions {
            read_data: true,
            ..Default::default()
        },
        Default::default()
    )
    .await
    .unwrap()
    .is_ok());
    let target = tempfile::tempdir().unwrap();
    let options = RestoreOptions {
        target: target.path().into(),
        verify: true,
        ..Default::default()
    };
    let restored = restore(
        &repo,
        &outcome.snapshot,
        &options,
        Default::default(),
        Default::default(),
    )
    .await
    .unwrap();
    assert!(restored.errors.is_empty(), "{:?}", restored.errors);
    assert_eq!(restored.verified, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_preferred_destination_does_not_stop_open_or_backup() {
    let src = tempfile::tempdir().unwrap();
    source_tree(src.path());
    let good = MemoryBackend::new("good");
    let dead = MemoryBackend::new("dead");
    let faulty = FaultyBackend::new(Arc::new(dead.clone()), FaultPlan::default());
    let dests =
        DestinationSet::new(vec![Arc::new(faulty.clone()), Arc::new(good.clone())]).unwrap();
    init_repo(dests.clone()).await;
    faulty.set_plan(FaultPlan {
        unreachable: true,
        ..Default::default()
    });
    let fresh = DestinationSet::new(vec![Arc::new(faulty), Arc::new(good.clone())]).unwrap();
    let repo = Repository::open(fresh, b"pw").await.unwrap();
    let outcome = run_backup(&repo, src.path()).await.unwrap();
    assert_eq!(outcome.reached, vec!["good".to_string()]);
    assert_eq!(
        outcome
            .missed
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>(),
        vec!["dead"]
    );
    assert_eq!(keys_under(&good, "snapshots/").await.len(), 1);
    assert!(keys_under(&dead, "snapshots/").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_must_reach_every_destination() {
    let good = MemoryBackend::new("good");
    let faulty = FaultyBackend::new(
        Arc::new(MemoryBackend::new("dead")),
        FaultPlan {
            unreachable: true,
            ..Default::default()
        },
    );
    let dests = DestinationSet::new(vec![Arc::new(good.clone()), Arc::new(faulty)]).unwrap();
    let err = Repository::init(
        dests,
        b"pw",
        RepoParams::default(),
        KdfParams::insecure_for_tests(),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("dead"), "{err}");
    assert!(
        keys_under(&good, "config").await.is_empty(),
        "no config where init did not finish"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_every_destination_fails_the_backup_fails() {
    let src = tempfile::tempdir().unwrap();
    source_tree(src.path());
    let (_good, _sick, faulty, _) = two_destinations().await;
    let good2 = FaultyBackend::new(Arc::new(_good.clone()), FaultPlan::default());
    let dests =
        DestinationSet::new(vec![Arc::new(good2.clone()), Arc::new(faulty.clone())]).unwrap();
    let repo = Repository::open(dests, b"pw").await.unwrap();
    let plan = FaultPlan {
        fail_put_prefix: Some("data/".into()),
        ..Default::default()
    };
    good2.set_plan(plan.clone());
    faulty.set_plan(plan);
    let err = run_backup(&repo, src.path()).await.unwrap_err();
    // Named as what it is: no destination left, each one's failure listed.
    match &err {
        Error::AllDestinationsFailed { operation, why } => {
            assert_eq!(operation, "upload");
            assert!(why.contains("good") && why.contains("sick"), "{why}");
        }
        other => panic!("expected AllDestinationsFailed, got {other:?}"),
    }
    assert!(keys_under(&_good, "snapshots/").await.is_empty());
}

/// Per-destination concurrency: each destination uploads at most as many
/// packs at once as it is given, independently of the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_destination_keeps_its_own_upload_limit() {
    let src = tempfile::tempdir().unwrap();
    // Enough incompressible data for many small packs.
    let data: Vec<u8> = (0..12_000_000u64)
        .map(|i| (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 29) as u8)
        .collect();
    std::fs::write(src.path().join("big.bin"), data).unwrap();
    let slow = |ms| FaultPlan {
        put_delay: Some(std::time::Duration::from_millis(ms)),
        ..Default::default()
    };
    // The wide destination is slower per request, so it only keeps up by
    // running several at once.
    let narrow = FaultyBackend::new(Arc::new(MemoryBackend::new("narrow")), slow(40));
    let wide = FaultyBackend::new(Arc::new(MemoryBackend::new("wide")), slow(400));
    let mut dests =
        DestinationSet::new(vec![Arc::new(narrow.clone()), Arc::new(wide.clone())]).unwrap();
    dests.set_upload_limit("narrow", 1).unwrap();
    dests.set_upload_limit("wide", 4).unwrap();
    assert!(dests.set_upload_limit("nobody", 1).is_err());
    let params = RepoParams {
        pack_size: 1 << 20,
        ..RepoParams::default()
    };
    Repository::init(
        dests.clone(),
        b"pw",
        params,
        KdfParams::insecure_for_tests(),
    )
    .await
    .unwrap();
    let repo = Repository::open(dests, b"pw").await.unwrap();
    let outcome = run_backup(&repo, src.path()).await.unwrap();
    assert_eq!(outcome.reached.len(), 2);
    assert_eq!(narrow.peak_concurrent_puts(), 1);
    let wide_peak = wide.peak_concurrent_puts();
    assert!(
        (2..=4).contains(&wide_peak),
        "wide destination ran {wide_peak} puts at once"
    );
}

/// The backup blocks a runtime worker while its stage threads run, which a
/// current-thread runtime cannot do: it says so instead of panicking, and
/// writes nothing.
#[tokio::test(flavor = "current_thread")]
async fn a_backup_on_a_current_thread_runtime_is_refused_with_an_error() {
    let src = tempfile::tempdir().unwrap();
    source_tree(src.path());
    let (good, _sick, _faulty, dests) = two_destinations().await;
    let repo = Repository::open(dests, b"pw").await.unwrap();
    let err = run_backup(&repo, src.path()).await.unwrap_err();
    assert!(
        matches!(&err, Error::InvalidInput(m) if m.contains("multi-thread runtime")),
        "{err}"
    );
    assert!(keys_under(&good, "data/").await.is_empty());
}
