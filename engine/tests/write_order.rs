//! ARCHITECTURE.md invariants 1-3 at the engine level, with faults injected into
//! real (in-memory and local) backends: a failed backup never leaves a
//! snapshot that references missing data, and reads fail over past bad bytes.

use std::path::Path;
use std::sync::Arc;

use lifeboat_backends::{Backend, FaultPlan, FaultyBackend, MemoryBackend};
use lifeboat_engine::backup::backup;
use lifeboat_engine::check::{check, CheckOptions};
use lifeboat_engine::restore::{restore, RestoreOptions};
use lifeboat_engine::Repository;

mod common;
use common::*;

/// Restores `snapshot` with verification and checks the big file came back intact.
async fn restore_and_compare(
    repo: &Repository,
    snapshot: &lifeboat_engine::Snapshot,
    src: &Path,
) -> lifeboat_engine::restore::RestoreOutcome {
    let target = tempfile::tempdir().unwrap();
    let options = RestoreOptions {
        target: target.path().into(),
        verify: true,
        ..Default::default()
    };
    let restored = restore(
        repo,
        snapshot,
        &options,
        Default::default(),
        Default::default(),
    )
    .await
    .unwrap();
    assert!(restored.errors.is_empty(), "{:?}", restored.errors);
    let back = target
        .path()
        .join(src.strip_prefix("/").unwrap())
        .join("sub/big.bin");
    assert_eq!(
        std::fs::read(back).unwrap(),
        std::fs::read(src.join("sub/big.bin")).unwrap()
    );
    restored
}

async fn failing_backup_leaves_no_snapshot(prefix: &str, after: usize) {
    let src = tempfile::tempdir().unwrap();
    source_tree(src.path());
    let memory = MemoryBackend::new("mem");
    let faulty = FaultyBackend::new(Arc::new(memory.clone()), FaultPlan::default());
    let repo = new_repo(vec![Arc::new(faulty.clone())]).await;
    faulty.set_plan(FaultPlan {
        fail_put_prefix: Some(prefix.into()),
        put_after: after,
        ..Default::default()
    });
    let result = run_backup(&repo, src.path()).await;
    let err = result.expect_err("backup must fail when the destination fails");
    assert!(
        err.to_string().contains(prefix.trim_end_matches('/')),
        "error names the object: {err}"
    );
    assert!(
        keys_under(&memory, "snapshots/").await.is_empty(),
        "no snapshot after a failed {prefix} write"
    );
    // Whatever was written is consistent: check finds no problem.
    faulty.set_plan(FaultPlan::default());
    let report = check(
        &repo,
        &CheckOptions {
            read_data: true,
            ..Default::default()
        },
        Default::default(),
    )
    .await
    .unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    // And the next run (the destination given another chance) succeeds and restores.
    repo.destinations().reset_dropped();
    let outcome = run_backup(&repo, src.path()).await.unwrap();
    assert!(outcome.snapshot_id.is_some());
    let restored = restore_and_compare(&repo, &outcome.snapshot, src.path()).await;
    assert_eq!(restored.verified, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pack_write_failure_leaves_no_snapshot() {
    failing_backup_leaves_no_snapshot("data/", 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_write_failure_leaves_no_snapshot() {
    failing_backup_leaves_no_snapshot("index/", 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_write_failure_leaves_no_snapshot() {
    failing_backup_leaves_no_snapshot("snapshots/", 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_is_written_after_packs_and_index() {
    // Record the order of puts as the destination sees them.
    #[derive(Debug)]
    struct Recorder {
        inner: MemoryBackend,
        order: std::sync::Mutex<Vec<String>>,
    }
    #[async_trait::async_trait]
    impl Backend for Recorder {
        fn name(&self) -> &str {
            self.inner.name()
        }
        fn location(&self) -> String {
            self.inner.location()
        }
        async fn put(&self, key: &str, data: bytes::Bytes) -> lifeboat_backends::Result<()> {
            self.inner.put(key, data).await?;
            self.order.lock().unwrap().push(key.to_string());
            Ok(())
        }
        async fn get(
            &self,
            key: &str,
            range: Option<std::ops::Range<u64>>,
        ) -> lifeboat_backends::Result<bytes::Bytes> {
            self.inner.get(key, range).await
        }
        async fn get_bounded(
            &self,
            key: &str,
            limit: u64,
        ) -> lifeboat_backends::Result<bytes::Bytes> {
            self.inner.get_bounded(key, limit).await
        }
        async fn stat(
            &self,
            key: &str,
        ) -> lifeboat_backends::Result<lifeboat_backends::ObjectMeta> {
            self.inner.stat(key).await
        }
        fn list<'a>(
            &'a self,
            prefix: &'a str,
        ) -> futures::stream::BoxStream<'a, lifeboat_backends::Result<lifeboat_backends::ObjectMeta>>
        {
            self.inner.list(prefix)
        }
        async fn delete(&self, key: &str) -> lifeboat_backends::Result<()> {
            self.inner.delete(key).await
        }
    }
    let src = tempfile::tempdir().unwrap();
    source_tree(src.path());
    let recorder = Arc::new(Recorder {
        inner: MemoryBackend::new("rec"),
        order: Default::default(),
    });
    let repo = new_repo(vec![recorder.clone()]).await;
    let order_at_init = recorder.order.lock().unwrap().clone();
    assert_eq!(
        order_at_init.last().map(String::as_str),
        Some("config"),
        "config is written last at init"
    );
    run_backup(&repo, src.path()).await.unwrap();
    let order = recorder.order.lock().unwrap().clone();
    let pos = |pred: &dyn Fn(&str) -> bool| order.iter().position(|k| pred(k));
    let last_pack = order
        .iter()
        .rposition(|k| k.starts_with("data/"))
        .expect("packs written");
    let first_index = pos(&|k| k.starts_with("index/")).expect("index written");
    let snapshot = pos(&|k| k.starts_with("snapshots/")).expect("snapshot written");
    assert!(
        last_pack < first_index,
        "every pack precedes the index: {order:?}"
    );
    assert!(
        first_index < snapshot,
        "the index precedes the snapshot: {order:?}"
    );
    assert_eq!(
        snapshot,
        order
            .iter()
            .rposition(|k| !k.starts_with("locks/"))
            .unwrap(),
        "snapshot is the last object"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_fail_over_past_corrupted_bytes() {
    let src = tempfile::tempdir().unwrap();
    source_tree(src.path());
    let first = MemoryBackend::new("first");
    let second = MemoryBackend::new("second");
    let faulty = FaultyBackend::new(Arc::new(first.clone()), FaultPlan::default());
    let repo = new_repo(vec![Arc::new(faulty.clone()), Arc::new(second.clone())]).await;
    let outcome = run_backup(&repo, src.path()).await.unwrap();
    // Both destinations hold identical objects.
    assert_eq!(
        keys_under(&first, "").await.len(),
        keys_under(&second, "").await.len()
    );
    // The preferred destination now returns flipped bits for every pack read.
    faulty.set_plan(FaultPlan {
        corrupt_get_prefix: Some("data/".into()),
        ..Default::default()
    });
    let restored = restore_and_compare(&repo, &outcome.snapshot, src.path()).await;
    assert_eq!(restored.verified, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_destination_fails_the_backup_with_its_name() {
    let src = tempfile::tempdir().unwrap();
    source_tree(src.path());
    let faulty = FaultyBackend::new(Arc::new(MemoryBackend::new("nas")), FaultPlan::default());
    let repo = new_repo(vec![Arc::new(faulty.clone())]).await;
    faulty.set_plan(FaultPlan {
        unreachable: true,
        ..Default::default()
    });
    let err = run_backup(&repo, src.path()).await.unwrap_err();
    assert!(err.to_string().contains("nas"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupted_backup_writes_no_snapshot() {
    let src = tempfile::tempdir().unwrap();
    source_tree(src.path());
    let memory = MemoryBackend::new("mem");
    let repo = new_repo(vec![Arc::new(memory.clone())]).await;
    let cancel = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let err = backup(&repo, &options(src.path()), Default::default(), cancel)
        .await
        .unwrap_err();
    assert!(matches!(err, lifeboat_engine::Error::Interrupted), "{err}");
    assert!(keys_under(&memory, "snapshots/").await.is_empty());
}
