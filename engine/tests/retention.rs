//! A year of daily snapshots (faked times) on two destinations: a typical
//! policy keeps exactly the hand-computed set, prune shrinks both
//! destinations, every kept snapshot restores bit for bit, and a full check
//! is clean everywhere.

use std::path::Path;
use std::sync::Arc;

use futures::TryStreamExt;
use lifeboat_backends::{Backend, MemoryBackend};
use lifeboat_engine::backup::{backup, BackupOptions};
use lifeboat_engine::forget::{forget, plan, GroupBy, KeepPolicy};
use lifeboat_engine::prune::{prune, PruneOptions};
use lifeboat_engine::restore::{restore, RestoreOptions};
use lifeboat_engine::{DestinationSet, KdfParams, RepoParams, Repository};

mod common;
use common::*;

const DAY: i64 = 86_400;
/// 2025-01-01 12:00:00 UTC.
const START: i64 = 1_735_732_800;

/// The files of day `i`: one constant, one that changes weekly, one daily.
fn day_files(i: i64) -> Vec<(&'static str, Vec<u8>)> {
    let bytes = |seed: i64, len: usize| {
        let mut data = vec![0u8; len];
        blake3::Hasher::new()
            .update(&seed.to_le_bytes())
            .finalize_xof()
            .fill(&mut data);
        data
    };
    vec![
        ("constant.bin", bytes(-1, 200_000)),
        ("weekly.bin", bytes(1000 + i / 7, 150_000)),
        ("daily.txt", format!("day {i}\n").repeat(2000).into_bytes()),
        ("daily.bin", bytes(i, 60_000)),
    ]
}

fn write_day(dir: &Path, i: i64) {
    for (name, data) in day_files(i) {
        std::fs::write(dir.join(name), data).unwrap();
    }
}

async fn stored(backend: &dyn Backend) -> u64 {
    backend
        .list("data/")
        .try_fold(0, |sum, m| async move { Ok(sum + m.size) })
        .await
        .unwrap()
}

fn day_of(time: i64) -> i64 {
    (time - START) / DAY
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_year_of_dailies_forgotten_pruned_and_restored() {
    let src = tempfile::tempdir().unwrap();
    let (a, b) = (MemoryBackend::new("a"), MemoryBackend::new("b"));
    let dests = DestinationSet::new(vec![Arc::new(a.clone()), Arc::new(b.clone())]).unwrap();
    let params = RepoParams {
        pack_size: 1 << 20,
        ..Default::default()
    };
    Repository::init(
        dests.clone(),
        b"pw",
        params,
        KdfParams::insecure_for_tests(),
    )
    .await
    .unwrap();
    let repo = Repository::open(dests.clone(), b"pw").await.unwrap();
    for i in 0..365 {
        write_day(src.path(), i);
        let options = BackupOptions {
            time: Some(START + i * DAY),
            ..options(src.path())
        };
        backup(&repo, &options, Default::default(), Default::default())
            .await
            .unwrap();
    }
    let policy = KeepPolicy {
        daily: 7,
        weekly: 5,
        monthly: 12,
        ..Default::default()
    };
    let groups = plan(
        repo.list_snapshots().await.unwrap(),
        &policy,
        GroupBy::default(),
    );
    assert_eq!(groups.len(), 1);
    let decisions = &groups[0].1;
    let mut kept: Vec<i64> = decisions
        .iter()
        .filter(|d| d.keep)
        .map(|d| day_of(d.snapshot.time))
        .collect();
    kept.sort();
    // By hand (day 0 = 2025-01-01): the last day of each month, the newest of
    // the last five ISO weeks (Sundays 12-07, 12-14, 12-21, 12-28 and
    // Wednesday 12-31), and the last seven days.
    let month_ends = [30, 58, 89, 119, 150, 180, 211, 242, 272, 303, 333];
    let mut expected: Vec<i64> = month_ends.to_vec();
    expected.extend([340, 347, 354]);
    expected.extend(358..=364);
    assert_eq!(kept, expected);

    let before = (stored(&a).await, stored(&b).await);
    let remove: Vec<_> = decisions.iter().filter(|d| !d.keep).map(|d| d.id).collect();
    assert_eq!(remove.len(), 365 - expected.len());
    forget(&repo, &remove).await.unwrap();
    let options = PruneOptions {
        grace_secs: 0,
        ..Default::default()
    };
    let report = prune(&repo, &options, Default::default()).await.unwrap();
    assert!(report.sweep.deleted > 0, "{report:?}");
    let after = (stored(&a).await, stored(&b).await);
    assert!(after.0 * 2 < before.0, "{before:?} -> {after:?}");
    assert!(after.1 * 2 < before.1, "{before:?} -> {after:?}");

    // Each destination alone restores every kept snapshot bit for bit.
    for backend in [&a, &b] {
        let alone = Repository::open(
            DestinationSet::new(vec![Arc::new(backend.clone())]).unwrap(),
            b"pw",
        )
        .await
        .unwrap();
        let snapshots = alone.list_snapshots().await.unwrap();
        assert_eq!(snapshots.len(), expected.len());
        for (_, snapshot) in snapshots {
            let day = day_of(snapshot.time);
            let target = tempfile::tempdir().unwrap();
            let restore_options = RestoreOptions {
                target: target.path().into(),
                verify: true,
                ..Default::default()
            };
            let outcome = restore(
                &alone,
                &snapshot,
                &restore_options,
                Default::default(),
                Default::default(),
            )
            .await
            .unwrap();
            assert!(outcome.errors.is_empty(), "{:?}", outcome.errors);
            let copy = target.path().join(src.path().strip_prefix("/").unwrap());
            for (name, data) in day_files(day) {
                assert_eq!(
                    std::fs::read(copy.join(name)).unwrap(),
                    data,
                    "day {day} {name}"
                );
            }
        }
        let checked = run_check(&alone, read_all()).await;
        assert!(
            checked.is_ok(),
            "{}: {:?}",
            backend.name(),
            checked.problems
        );
    }
}
