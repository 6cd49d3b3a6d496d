//! Unit tests of locks: staleness, acquiring, and `unlock`.

use super::*;
use crate::format::lock::{LOCK_AAD, LOCK_VERSION};
use crate::format::SealedFile;

#[test]
fn lock_round_trip_and_staleness() {
    let keys = MasterKeys::generate();
    let lock = LockFile {
        version: LOCK_VERSION,
        time: 1_000_000,
        hostname: "elsewhere".into(),
        pid: 1,
        username: "u".into(),
        exclusive: true,
    };
    let mut sealed = Vec::new();
    keys.seal(
        LOCK_AAD,
        &postcard::to_stdvec(&lock).unwrap(),
        None,
        &mut sealed,
    );
    assert_eq!(LockFile::open_lock(&keys, &sealed), Some(lock.clone()));
    assert!(LockFile::open_lock(&MasterKeys::generate(), &sealed).is_none());
    assert!(!lock.is_stale(1_000_000 + STALE_AFTER_SECS));
    assert!(lock.is_stale(1_000_001 + STALE_AFTER_SECS));
}

/// The pid of a process that has exited and been reaped.
fn dead_pid() -> u32 {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

fn memory_set() -> (lifeboat_backends::MemoryBackend, DestinationSet) {
    let mem = lifeboat_backends::MemoryBackend::new("mem");
    let set = DestinationSet::new(vec![Arc::new(mem.clone())]).unwrap();
    (mem, set)
}

async fn plant(dests: &DestinationSet, keys: &MasterKeys, lock: &LockFile) -> String {
    let mut name = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut name);
    let key = ObjectKind::Lock.key(&hex::encode(name));
    dests
        .put_new(&key, Bytes::from(lock.seal(keys)))
        .await
        .unwrap();
    key
}

async fn lock_keys(mem: &lifeboat_backends::MemoryBackend) -> Vec<String> {
    crate::repo::destinations::list_all(mem, ObjectKind::Lock.prefix())
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.key)
        .collect()
}

#[test]
fn staleness_names_its_reason() {
    let now = 2_000_000;
    let mut lock = LockFile::current(true);
    lock.time = now;
    assert_eq!(lock.staleness(now), None, "this very process");
    lock.pid = dead_pid();
    assert_eq!(lock.staleness(now), Some(Staleness::HolderGone));
    lock.hostname = "another-host".into();
    assert_eq!(
        lock.staleness(now),
        None,
        "a pid elsewhere cannot be checked"
    );
    assert_eq!(
        lock.staleness(now + STALE_AFTER_SECS + 1),
        Some(Staleness::TooOld)
    );
    lock.pid = u32::MAX;
    lock.hostname = crate::hostname();
    assert_eq!(lock.staleness(now), None, "an impossible pid is not probed");
}

#[tokio::test]
async fn acquire_ignores_stale_locks_and_removes_dead_local_ones() {
    let keys = Arc::new(MasterKeys::generate());
    let (mem, dests) = memory_set();
    let mut dead = LockFile::current(true);
    dead.pid = dead_pid();
    let dead_key = plant(&dests, &keys, &dead).await;
    let mut old = LockFile::current(true);
    old.hostname = "another-host".into();
    old.time -= STALE_AFTER_SECS + 60;
    let old_key = plant(&dests, &keys, &old).await;

    let guard = acquire(&dests, &keys, true).await.unwrap();
    let held = lock_keys(&mem).await;
    assert!(
        !held.contains(&dead_key),
        "the dead local holder's lock stays"
    );
    assert!(
        held.contains(&old_key),
        "another host's old lock is only ignored"
    );
    assert_eq!(held.len(), 2);
    guard.release().await.unwrap();
    assert_eq!(lock_keys(&mem).await, vec![old_key]);
}

#[tokio::test]
async fn a_live_lock_blocks_an_exclusive_one() {
    let keys = Arc::new(MasterKeys::generate());
    let (mem, dests) = memory_set();
    let shared = acquire(&dests, &keys, false).await.unwrap();
    let also_shared = acquire(&dests, &keys, false).await.unwrap();
    match acquire(&dests, &keys, true).await {
        Err(Error::Locked { holder, .. }) => {
            assert!(
                holder.contains(&format!("pid {}", std::process::id())),
                "{holder}"
            )
        }
        other => panic!("expected Locked, got {other:?}"),
    }
    assert_eq!(
        lock_keys(&mem).await.len(),
        2,
        "the loser removed its own lock"
    );
    shared.release().await.unwrap();
    also_shared.release().await.unwrap();
    assert!(lock_keys(&mem).await.is_empty());
}

#[tokio::test]
async fn unlock_removes_stale_keeps_live_and_unreadable_unless_forced() {
    let keys = Arc::new(MasterKeys::generate());
    let (mem, dests) = memory_set();
    // First, since acquiring removes the dead local holder's lock.
    let live = acquire(&dests, &keys, false).await.unwrap();
    let mut dead = LockFile::current(false);
    dead.pid = dead_pid();
    let dead_key = plant(&dests, &keys, &dead).await;
    let mut old = LockFile::current(true);
    old.hostname = "another-host".into();
    old.time -= 3600;
    let old_key = plant(&dests, &keys, &old).await;
    let foreign = ObjectKind::Lock.key(&"ab".repeat(32));
    dests
        .put_new(&foreign, Bytes::from_static(b"a newer lifeboat's lock"))
        .await
        .unwrap();

    let report = unlock(&dests, &keys, false).await.unwrap();
    assert!(report.unreachable.is_empty() && report.failed.is_empty());
    assert_eq!(report.locks.len(), 4);
    let find = |key: &str| {
        let name = key.strip_prefix("locks/").unwrap();
        report
            .locks
            .iter()
            .find(|l| l.name == name)
            .unwrap()
            .clone()
    };
    let d = find(&dead_key);
    assert!(d.removed);
    assert_eq!(d.stale, Some(Staleness::HolderGone));
    assert_eq!(d.destinations, vec!["mem".to_string()]);
    let o = find(&old_key);
    assert!(o.removed);
    assert_eq!(o.stale, Some(Staleness::TooOld));
    assert!(o.age_secs.unwrap() >= 3600);
    let f = find(&foreign);
    assert!(!f.removed && f.lock.is_none());
    let kept: Vec<_> = report.locks.iter().filter(|l| !l.removed).collect();
    assert_eq!(kept.len(), 2);
    assert!(kept
        .iter()
        .any(|l| l.lock.as_ref().is_some_and(|x| x.pid == std::process::id())));
    assert_eq!(lock_keys(&mem).await.len(), 2);

    let forced = unlock(&dests, &keys, true).await.unwrap();
    assert_eq!(forced.locks.len(), 2);
    assert!(forced.locks.iter().all(|l| l.removed));
    assert!(lock_keys(&mem).await.is_empty());
    live.release().await.unwrap();
}

proptest::proptest! {
    #[test]
    fn arbitrary_lock_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
        let keys = MasterKeys::generate();
        let _ = LockFile::open_lock(&keys, &bytes);
        let _ = postcard::from_bytes::<LockFile>(&bytes);
    }
}

/// Found by the `lock` fuzz target: a lock dated near `i64::MIN` made
/// `staleness` (and `unlock`'s age) overflow. A lock from the far past is stale.
#[tokio::test]
async fn locks_with_extreme_times_do_not_overflow() {
    let keys = MasterKeys::generate();
    let (_mem, dests) = memory_set();
    for time in [i64::MIN, i64::MIN + 1, i64::MAX] {
        let lock = LockFile {
            version: LOCK_VERSION,
            time,
            hostname: "elsewhere".into(),
            pid: 1,
            username: "u".into(),
            exclusive: false,
        };
        let expected = (time < 0).then_some(Staleness::TooOld);
        assert_eq!(lock.staleness(1_700_000_000), expected);
        let from_the_end = (time != i64::MAX).then_some(Staleness::TooOld);
        assert_eq!(lock.staleness(i64::MAX), from_the_end);
        assert_eq!(lock.staleness(i64::MIN), None);
        let _ = lock.describe();
        plant(&dests, &keys, &lock).await;
    }
    let report = unlock(&dests, &keys, false).await.unwrap();
    assert_eq!(report.locks.len(), 3);
    assert!(report.locks.iter().all(|l| l.age_secs.is_some()));
}

mod properties {
    use super::*;
    use crate::format::crypto::mutate;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn arbitrary_lock_bytes_never_open(bytes in mutate::bytes(300)) {
            prop_assert!(LockFile::open_lock(&MasterKeys::generate(), &bytes).is_none());
        }

        #[test]
        fn arbitrary_lock_plaintext_never_panics(plain in mutate::bytes(200), now in any::<i64>()) {
            let keys = MasterKeys::generate();
            let mut sealed = Vec::new();
            keys.seal(LOCK_AAD, &plain, Some(3), &mut sealed);
            if let Some(lock) = LockFile::open_lock(&keys, &sealed) {
                prop_assert_eq!(lock.version, LOCK_VERSION);
                let _ = lock.staleness(now);
                let _ = lock.describe();
            }
        }

        #[test]
        fn locks_round_trip_and_any_change_is_rejected(
            time in any::<i64>(),
            hostname in ".{0,16}",
            pid in any::<u32>(),
            username in ".{0,16}",
            exclusive in any::<bool>(),
            m in mutate::mutations(),
        ) {
            let keys = MasterKeys::generate();
            let lock = LockFile { version: LOCK_VERSION, time, hostname, pid, username, exclusive };
            let sealed = lock.seal(&keys);
            prop_assert_eq!(LockFile::open_lock(&keys, &sealed), Some(lock));
            let bad = mutate::apply(&sealed, &m);
            prop_assume!(bad != sealed);
            prop_assert!(LockFile::open_lock(&keys, &bad).is_none());
        }
    }
}
