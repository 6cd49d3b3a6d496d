//! Lock waiting against an in-memory repository: the settings travel with
//! each `LockWait`, and every path out of `locked` lets go of the lock.

use std::time::Duration;

use clap::Parser;
use lifeboat_backends::MemoryBackend;
use lifeboat_engine::{DestinationSet, KdfParams, RepoParams};

use super::*;

async fn memory_repo() -> Repository {
    let store: Arc<dyn lifeboat_backends::Backend> = Arc::new(MemoryBackend::new("mem"));
    let dests = DestinationSet::new(vec![store]).expect("one destination");
    Repository::init(
        dests,
        b"password",
        RepoParams::default(),
        KdfParams::insecure_for_tests(),
    )
    .await
    .expect("init")
}

fn waiting(retry: Duration) -> LockWait {
    LockWait {
        retry,
        cancel: Arc::new(AtomicBool::new(false)),
        notes: false,
    }
}

fn is_locked(e: &anyhow::Error) -> bool {
    matches!(e.downcast_ref::<Error>(), Some(Error::Locked { .. }))
}

#[test]
fn settings_come_from_the_global_flags() {
    let cli = crate::args::Cli::try_parse_from([
        "lifeboat",
        "--retry-lock",
        "1h30m",
        "--json",
        "snapshots",
    ])
    .expect("parses");
    let wait = LockWait::new(&cli.global, Arc::new(AtomicBool::new(false)));
    assert_eq!(wait.retry, Duration::from_secs(5400));
    assert!(!wait.notes, "--json keeps stderr notes off");
    let cli = crate::args::Cli::try_parse_from(["lifeboat", "snapshots"]).expect("parses");
    let wait = LockWait::new(&cli.global, Arc::new(AtomicBool::new(false)));
    assert_eq!(wait.retry, Duration::ZERO);
    assert!(wait.notes);
}

#[tokio::test]
async fn two_waits_in_one_process_keep_their_own_settings() {
    let repo = memory_repo().await;
    let holder = waiting(Duration::ZERO)
        .acquire(&repo, true)
        .await
        .expect("first lock");
    let impatient = waiting(Duration::ZERO).acquire(&repo, false).await;
    assert!(impatient.as_ref().is_err_and(is_locked), "{impatient:?}");
    let patient = {
        let repo = repo.clone();
        tokio::spawn(async move { waiting(Duration::from_secs(20)).acquire(&repo, false).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    holder.release().await.expect("release");
    let lock = patient.await.expect("joins").expect("waited for the lock");
    lock.watch()
        .verify()
        .await
        .expect("the waiting run holds the lock");
    lock.release().await.expect("release");
}

#[tokio::test]
async fn a_cancelled_wait_ends_as_interrupted() {
    let repo = memory_repo().await;
    let _holder = waiting(Duration::ZERO)
        .acquire(&repo, true)
        .await
        .expect("first lock");
    let wait = waiting(Duration::from_secs(60));
    wait.cancel.store(true, Ordering::Relaxed);
    let started = Instant::now();
    let result = wait.acquire(&repo, true).await;
    let error = result.expect_err("still locked");
    assert!(
        matches!(error.downcast_ref::<Error>(), Some(Error::Interrupted)),
        "{error}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn the_lock_is_released_whether_the_work_succeeds_or_fails() {
    let repo = memory_repo().await;
    let wait = waiting(Duration::ZERO);
    let failed: Result<()> = wait
        .locked(&repo, true, async { anyhow::bail!("the work failed") })
        .await;
    assert_eq!(failed.expect_err("fails").to_string(), "the work failed");
    let watched = wait
        .watched(&repo, true, |watch| async move {
            watch.verify().await?;
            Ok(7)
        })
        .await;
    assert_eq!(watched.expect("works"), 7);
    // Both locks are gone: an exclusive one can be taken at once.
    let again = wait
        .acquire(&repo, true)
        .await
        .expect("nothing left locked");
    again.release().await.expect("release");
}
