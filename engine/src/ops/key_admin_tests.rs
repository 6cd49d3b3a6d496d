//! Unit tests of key administration on in-memory destinations.

use std::sync::Arc;

use lifeboat_backends::{Backend, ErrorKind, FaultPlan, FaultyBackend, MemoryBackend};

use super::*;
use crate::format::config::RepoParams;
use crate::repo::destinations::DestinationSet;

const OLD: &[u8] = b"old password";
const NEW: &[u8] = b"new password";

fn cheap() -> KdfParams {
    KdfParams::insecure_for_tests()
}

/// Two in-memory destinations (clones share their objects).
fn two() -> (MemoryBackend, MemoryBackend) {
    (MemoryBackend::new("a"), MemoryBackend::new("b"))
}

fn set(backends: &[Arc<dyn Backend>]) -> DestinationSet {
    DestinationSet::new(backends.to_vec()).unwrap()
}

fn arcs(a: &MemoryBackend, b: &MemoryBackend) -> Vec<Arc<dyn Backend>> {
    vec![Arc::new(a.clone()), Arc::new(b.clone())]
}

async fn init(backends: &[Arc<dyn Backend>]) -> Repository {
    Repository::init(set(backends), OLD, RepoParams::default(), cheap())
        .await
        .unwrap()
}

async fn open(backends: &[Arc<dyn Backend>], password: &[u8]) -> crate::Result<Repository> {
    Repository::open(set(backends), password).await
}

async fn key_ids(backend: &dyn Backend) -> Vec<KeyId> {
    let mut ids = list_key_ids(backend).await.unwrap();
    ids.sort();
    ids
}

#[tokio::test]
async fn add_writes_everywhere_and_either_password_opens() {
    let (a, b) = two();
    let backends = arcs(&a, &b);
    let repo = init(&backends).await;
    let first = repo.key_id();
    let added = add_key(&repo, NEW, cheap()).await.unwrap();
    assert_ne!(added, first);
    let mut expected = vec![first, added];
    expected.sort();
    assert_eq!(key_ids(&a).await, expected);
    assert_eq!(key_ids(&b).await, expected);

    let by_new = open(&backends, NEW).await.unwrap();
    assert_eq!(by_new.key_id(), added);
    assert_eq!(by_new.id(), repo.id());
    assert_eq!(open(&backends, OLD).await.unwrap().key_id(), first);
    assert!(matches!(
        open(&backends, b"wrong").await,
        Err(Error::WrongPassword)
    ));

    let listing = list_keys(&by_new).await.unwrap();
    assert!(listing.unreachable.is_empty());
    assert_eq!(listing.keys.len(), 2);
    let in_use: Vec<_> = listing.keys.iter().filter(|k| k.in_use).collect();
    assert_eq!(in_use.len(), 1);
    assert_eq!(in_use[0].id, added);
    for key in &listing.keys {
        assert_eq!(key.destinations, vec!["a".to_string(), "b".to_string()]);
        assert_eq!(key.params, Some(cheap()));
        assert_eq!(key.problem, None);
        let info = key
            .info
            .as_ref()
            .expect("version 2 key files record their creation");
        assert_eq!(info.hostname, crate::hostname());
        assert!(info.created > 1_600_000_000);
    }
}

#[tokio::test]
async fn remove_refuses_the_last_and_the_key_in_use() {
    let (a, b) = two();
    let backends = arcs(&a, &b);
    let repo = init(&backends).await;
    let only = repo.key_id();
    let err = remove_key(&repo, &only.short(), true).await.unwrap_err();
    assert!(matches!(err, KeyError::LastKey { .. }), "{err}");
    assert!(err.to_string().contains("last usable key"), "{err}");
    assert_eq!(key_ids(&a).await, vec![only]);

    let other = add_key(&repo, NEW, cheap()).await.unwrap();
    let err = remove_key(&repo, &only.to_hex()[..6], false)
        .await
        .unwrap_err();
    assert!(matches!(err, KeyError::InUse(_)), "{err}");
    assert_eq!(key_ids(&b).await.len(), 2);

    assert_eq!(
        remove_key(&repo, &other.short(), false).await.unwrap(),
        other
    );
    assert_eq!(key_ids(&a).await, vec![only]);
    assert_eq!(key_ids(&b).await, vec![only]);
    assert!(matches!(
        open(&backends, NEW).await,
        Err(Error::WrongPassword)
    ));
    assert!(open(&backends, OLD).await.is_ok());
}

#[tokio::test]
async fn change_password_replaces_the_key_in_use_everywhere() {
    let (a, b) = two();
    let backends = arcs(&a, &b);
    let repo = init(&backends).await;
    let (new, old) = change_password(&repo, NEW, cheap()).await.unwrap();
    assert_eq!(old, repo.key_id());
    assert_eq!(key_ids(&a).await, vec![new]);
    assert_eq!(key_ids(&b).await, vec![new]);
    assert!(matches!(
        open(&backends, OLD).await,
        Err(Error::WrongPassword)
    ));
    assert_eq!(open(&backends, NEW).await.unwrap().key_id(), new);
}

#[tokio::test]
async fn an_unreachable_destination_changes_nothing() {
    let (a, b) = two();
    let faulty = FaultyBackend::new(Arc::new(b.clone()), FaultPlan::default());
    let backends: Vec<Arc<dyn Backend>> = vec![Arc::new(a.clone()), Arc::new(faulty.clone())];
    let repo = init(&backends).await;
    let only = repo.key_id();
    faulty.set_plan(FaultPlan {
        unreachable: true,
        ..FaultPlan::default()
    });
    let err = add_key(&repo, NEW, cheap()).await.unwrap_err();
    assert!(
        matches!(&err, KeyError::Unreachable { destination, .. } if destination == "b"),
        "{err}"
    );
    assert!(err.to_string().contains("nothing was changed"), "{err}");
    assert_eq!(key_ids(&a).await, vec![only]);
    assert!(matches!(
        change_password(&repo, NEW, cheap()).await,
        Err(KeyError::Unreachable { .. })
    ));
    assert_eq!(key_ids(&a).await, vec![only]);
    // Listing still shows what the reachable destinations hold.
    let listing = list_keys(&repo).await.unwrap();
    assert_eq!(listing.keys.len(), 1);
    assert_eq!(listing.unreachable.len(), 1);
}

#[tokio::test]
async fn a_write_failing_half_way_is_undone() {
    let (a, b) = two();
    let faulty = FaultyBackend::new(Arc::new(b.clone()), FaultPlan::default());
    let backends: Vec<Arc<dyn Backend>> = vec![Arc::new(a.clone()), Arc::new(faulty.clone())];
    let repo = init(&backends).await;
    let only = repo.key_id();
    faulty.set_plan(FaultPlan {
        fail_put_prefix: Some("keys/".into()),
        put_error: Some(ErrorKind::Permanent),
        ..FaultPlan::default()
    });
    let err = change_password(&repo, NEW, cheap()).await.unwrap_err();
    assert!(
        matches!(&err, KeyError::Storage { destination, .. } if destination == "b"),
        "{err}"
    );
    assert!(err.to_string().contains("nothing was changed"), "{err}");
    // The key written to `a` first was removed again; the old one stays.
    assert_eq!(key_ids(&a).await, vec![only]);
    assert_eq!(key_ids(&b).await, vec![only]);
    assert!(open(&backends, OLD).await.is_ok());
}

#[test]
fn prefixes_resolve_uniquely() {
    let ids = [KeyId([0xab; 32]), KeyId([0xac; 32]), KeyId([0x12; 32])];
    assert_eq!(resolve("12", ids).unwrap(), ids[2]);
    assert_eq!(resolve("AB", ids).unwrap(), ids[0]);
    assert!(matches!(resolve("a", ids), Err(KeyError::Ambiguous(_))));
    assert!(matches!(resolve("ff", ids), Err(KeyError::NoSuchKey(_))));
    assert!(matches!(resolve("", ids), Err(KeyError::BadId(_))));
    assert!(matches!(resolve("xyz", ids), Err(KeyError::BadId(_))));
}

/// Stores `bytes` on every backend under their content name.
async fn plant(backends: &[Arc<dyn Backend>], bytes: Vec<u8>) -> KeyId {
    let bytes = Bytes::from(bytes);
    let id = KeyId(storage_hash(&bytes));
    for backend in backends {
        backend
            .put(&ObjectKind::Key.key(&id.to_hex()), bytes.clone())
            .await
            .unwrap();
    }
    id
}

#[tokio::test]
async fn a_removed_password_stays_removed_under_any_name() {
    let (a, b) = two();
    let backends = arcs(&a, &b);
    let repo = init(&backends).await;
    let added = add_key(&repo, NEW, cheap()).await.unwrap();
    let removed_bytes = a
        .get(&ObjectKind::Key.key(&added.to_hex()), None)
        .await
        .unwrap();
    let removed_file = KeyFile::from_bytes(&removed_bytes).unwrap();
    let serial = removed_file.info(repo.keys(), &repo.id()).unwrap().serial;
    remove_key(&repo, &added.to_hex(), false).await.unwrap();
    assert!(matches!(
        open(&backends, NEW).await,
        Err(Error::WrongPassword)
    ));

    // The provider puts the removed key file back with one byte appended
    // (a new content name; format 1 ignored trailing bytes and opened it).
    let mut appended = removed_bytes.to_vec();
    appended.push(0);
    let appended = plant(&backends, appended).await;
    assert!(open(&backends, NEW).await.is_err());
    for backend in &backends {
        backend
            .delete(&ObjectKind::Key.key(&appended.to_hex()))
            .await
            .unwrap();
    }
    // The very bytes, under their old name: the name is tombstoned.
    plant(&backends, removed_bytes.to_vec()).await;
    assert!(matches!(
        open(&backends, NEW).await,
        Err(Error::KeyRemoved { .. })
    ));
    // A key file that differs in every byte but carries the removed serial
    // (as its former holder could write one): revoked by the serial.
    let info = KeyInfo {
        serial,
        ..KeyInfo::current()
    };
    let twin = KeyFile::create_with_info(repo.keys(), NEW, &repo.id(), cheap(), &info).unwrap();
    plant(&backends, twin.to_bytes()).await;
    assert!(matches!(
        open(&backends, NEW).await,
        Err(Error::KeyRemoved { .. })
    ));
    // The remaining password still opens.
    assert_eq!(open(&backends, OLD).await.unwrap().key_id(), repo.key_id());
}

#[tokio::test]
async fn known_keys_are_tried_first_and_costly_ones_last() {
    let (a, b) = two();
    let backends = arcs(&a, &b);
    let repo = init(&backends).await;
    // A key file a provider planted (another repository's keys under this
    // repository's id) asking for the largest accepted Argon2 cost: tried
    // first it would stall every open for seconds to minutes.
    let costly = KdfParams {
        memory_kib: crate::format::keys::MAX_KDF_MEMORY_KIB,
        iterations: crate::format::keys::MAX_KDF_ITERATIONS,
        parallelism: 1,
    };
    let planted = KeyFile::create_with_info(
        &crate::format::crypto::MasterKeys::generate(),
        b"not yours",
        &repo.id(),
        cheap(),
        &KeyInfo::current(),
    )
    .unwrap();
    let planted = KeyFile {
        params: costly,
        ..planted
    };
    plant(&backends, planted.to_bytes()).await;
    // The real key opens, remembered or not (the order itself is
    // `try_rank`'s, tested in repo/tests.rs).
    let opened = open(&backends, OLD).await.unwrap();
    assert_eq!(opened.key_id(), repo.key_id());
    let admission = crate::repo::Admission {
        known_keys: vec![repo.key_id()],
        ..Default::default()
    };
    let opened = Repository::open_with(set(&backends), OLD, &admission)
        .await
        .unwrap();
    assert_eq!(opened.key_id(), repo.key_id());
}
