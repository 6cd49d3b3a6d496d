//! Repair: corrupt copies are replaced from a good destination, the bad bytes
//! kept aside; what no destination holds intact is never touched.

use lifeboat_backends::Backend;
use lifeboat_engine::check::ProblemKind;
use lifeboat_engine::repair::repair;

mod common;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_copy_is_replaced_and_kept_in_quarantine() {
    let (_a, b, repo, _src) = two_copies().await;
    let pack = largest_pack(&b).await;
    let good = b.get(&pack, None).await.unwrap();
    flip_middle_byte(&b, &pack).await;
    let bad = b.get(&pack, None).await.unwrap();
    let index = keys_under(&b, "index/").await.remove(0);
    flip_middle_byte(&b, &index).await;

    let report = run_check(&repo, read_all()).await;
    assert_eq!(report.problems.len(), 2, "{:?}", report.problems);
    let actions = repair(&repo, &report, 1_700_000_000).await;
    assert_eq!(actions.len(), 2, "{actions:?}");
    for action in &actions {
        assert_eq!(action.error, None, "{action:?}");
        assert_eq!(action.destination, "b");
        assert_eq!(action.source.as_deref(), Some("a"));
    }
    let kept = actions
        .iter()
        .find(|a| a.key == pack)
        .and_then(|a| a.quarantined_as.clone())
        .expect("the bad pack is kept");
    assert_eq!(kept, format!("quarantine/1700000000/{pack}"));
    assert_eq!(b.get(&kept, None).await.unwrap(), bad);
    assert_eq!(b.get(&pack, None).await.unwrap(), good);

    let again = run_check(&repo, read_all()).await;
    assert!(again.is_ok(), "{:?}", again.problems);
    // Nothing left to do: a second repair changes nothing.
    assert!(repair(&repo, &again, 1_700_000_001).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_object_is_left_alone() {
    let (a, b, repo, _src) = two_copies().await;
    let pack = largest_pack(&a).await;
    flip_middle_byte(&a, &pack).await;
    flip_middle_byte(&b, &pack).await;
    let before = b.get(&pack, None).await.unwrap();
    let report = run_check(&repo, read_all()).await;
    assert!(report.problems.iter().all(|p| !p.healable()));
    assert!(report
        .problems
        .iter()
        .all(|p| p.kind == ProblemKind::Corrupt));
    let actions = repair(&repo, &report, 1).await;
    assert!(actions.is_empty(), "{actions:?}");
    assert_eq!(b.get(&pack, None).await.unwrap(), before);
    assert!(keys_under(&b, "quarantine/").await.is_empty());
}
