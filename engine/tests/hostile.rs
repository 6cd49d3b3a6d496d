//! A provider (or anyone holding stored bytes) that serves well-formed but
//! wrong objects: each is refused with an error naming it, never trusted.

use std::sync::Arc;

use lifeboat_backends::{Backend, LocalBackend};
use lifeboat_engine::check::ProblemKind;
use lifeboat_engine::format::crypto::{blob_aad, MasterKeys};
use lifeboat_engine::format::deletion::DeletionRecord;
use lifeboat_engine::format::index::IndexFile;
use lifeboat_engine::format::pack::{open_blob, BlobType, PackEntry};
use lifeboat_engine::repair::repair;
use lifeboat_engine::restore::{restore, RestoreOptions};
use lifeboat_engine::RepoFile;
use lifeboat_engine::SealedFile;
use lifeboat_engine::{
    BlobId, DestinationSet, Error, PackId, Repository, Snapshot, SnapshotId, Tree,
};

mod common;
use common::*;

#[test]
fn a_valid_seal_under_another_blobs_id_is_refused() {
    let keys = MasterKeys::generate();
    let plain = b"the bytes of one chunk".to_vec();
    let other = keys.blob_id(b"the bytes of another chunk");
    // Sealed correctly for `other`'s id: the AEAD tag verifies, the id does not.
    let mut sealed = Vec::new();
    keys.seal(
        &blob_aad(BlobType::Data.as_u8(), &other),
        &plain,
        None,
        &mut sealed,
    );
    let entry = PackEntry {
        blob_type: BlobType::Data,
        id: other,
        offset: 0,
        length: sealed.len() as u32,
        raw_length: plain.len() as u32,
    };
    let pack = PackId([9; 32]);
    let err = open_blob(&keys, &pack, &entry, &sealed).expect_err("wrong id accepted");
    let text = err.to_string();
    assert!(
        text.contains(&pack.to_hex()) && text.contains(&other.to_hex()),
        "{text}"
    );
    // The same bytes under their own id open.
    let own = PackEntry {
        id: keys.blob_id(&plain),
        ..entry
    };
    let mut resealed = Vec::new();
    keys.seal(
        &blob_aad(BlobType::Data.as_u8(), &own.id),
        &plain,
        None,
        &mut resealed,
    );
    let own = PackEntry {
        length: resealed.len() as u32,
        ..own
    };
    assert_eq!(open_blob(&keys, &pack, &own, &resealed).unwrap(), plain);
}

#[test]
fn objects_of_an_unknown_version_are_refused_by_name() {
    let keys = MasterKeys::generate();
    let mut snapshot = Snapshot::new(BlobId([1; 32]), vec![b"/x".to_vec()], vec![], "h".into());
    snapshot.version = 3;
    let id = SnapshotId([3; 32]);
    match Snapshot::open(&keys, id, &snapshot.seal(&keys)) {
        Err(Error::UnsupportedVersion { object, version }) => {
            assert!(object.contains(&id.to_hex()), "{object}");
            assert_eq!(version, 3);
        }
        other => panic!("a version-3 snapshot was not refused: {other:?}"),
    }
    let mut index = IndexFile::new();
    index.version = 7;
    assert!(matches!(
        IndexFile::open(&keys, "x", &index.seal(&keys)),
        Err(Error::UnsupportedVersion { .. })
    ));
    let mut record = DeletionRecord::new("forget", vec!["snapshots/00".into()]);
    record.version = 3;
    assert!(matches!(
        DeletionRecord::open(&keys, "d", &record.seal(&keys)),
        Err(Error::UnsupportedVersion { .. })
    ));
    let mut tree = Tree::new(Vec::new());
    tree.version = 9;
    let id = keys.blob_id(&tree.encode());
    assert!(Tree::decode(&id, &tree.encode()).is_err());
}

/// Puts a 64 GiB sparse file (no disk used) under `key` on `dest`, in place
/// of whatever was there: a provider claiming an object of that size.
fn plant_huge(dest: &LocalBackend, key: &str) {
    let path = dest.root().join(key);
    let _ = std::fs::remove_file(&path);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::File::create(&path)
        .unwrap()
        .set_len(64 << 30)
        .unwrap();
}

/// Issue 15: sizes are bounded before any allocation. One destination holds
/// a 64 GiB object in place of a snapshot, an index file and a pack, and
/// under planted names of a key file, an index file, a snapshot and a
/// deletion record. Each is refused unread (reading any of them whole used
/// to allocate its claimed size); the other destination serves, check names
/// the replaced copies as damaged and healable, and repair heals them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_larger_than_their_kind_are_refused_unread_and_healed() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (
        LocalBackend::new("a", dir.path().join("a")),
        LocalBackend::new("b", dir.path().join("b")),
    );
    let src = tempfile::tempdir().unwrap();
    source_tree(src.path());
    let both = || {
        DestinationSet::new(vec![
            Arc::new(a.clone()) as Arc<dyn Backend>,
            Arc::new(b.clone()),
        ])
        .unwrap()
    };
    let repo = init_repo(both()).await;
    run_backup(&repo, src.path()).await.unwrap();

    let snapshot = keys_under(&a, "snapshots/").await.remove(0);
    let index = keys_under(&a, "index/").await.remove(0);
    let mut packs = Vec::new();
    for key in keys_under(&a, "data/").await {
        packs.push((a.stat(&key).await.unwrap().size, key));
    }
    let pack = packs.iter().max().unwrap().1.clone();
    let replaced = [snapshot.clone(), index.clone(), pack.clone()];
    for key in &replaced {
        plant_huge(&a, key);
    }
    let mut planted = Vec::new();
    for prefix in ["keys/", "index/", "snapshots/", "deletions/"] {
        let key = format!("{prefix}{}", blake3::hash(prefix.as_bytes()).to_hex());
        plant_huge(&a, &key);
        planted.push(key);
    }

    // Opening reads `a`'s key files first: the huge one is skipped.
    let repo = Repository::open(both(), b"pw").await.unwrap();
    // The huge deletion record deletes nothing and stops nothing.
    assert!(repo.tombstones().await.unwrap().is_empty());
    // The snapshot comes from `b`; the planted one is left out.
    let snapshots = repo.list_snapshots().await.unwrap();
    assert_eq!(snapshots.len(), 1);
    assert_eq!(
        format!("snapshots/{}", snapshots[0].0),
        snapshot,
        "the real snapshot"
    );
    // Restore reads the index from `b` and fails over for the pack.
    let target = tempfile::tempdir().unwrap();
    let options = RestoreOptions {
        target: target.path().into(),
        verify: true,
        ..Default::default()
    };
    let restored = restore(
        &repo,
        &snapshots[0].1,
        &options,
        Default::default(),
        Default::default(),
    )
    .await
    .unwrap();
    assert!(restored.errors.is_empty(), "{:?}", restored.errors);
    assert_eq!(restored.verified, 2);

    // check --read-data: each replaced copy is damaged and healable.
    let report = run_check(&repo, read_all()).await;
    for key in &replaced {
        let problem = report
            .problems
            .iter()
            .find(|p| p.key.as_deref() == Some(key.as_str()))
            .unwrap_or_else(|| panic!("{key} not reported: {:?}", report.problems));
        assert_eq!(problem.destination.as_deref(), Some("a"), "{problem}");
        assert_eq!(problem.kind, ProblemKind::Corrupt, "{problem}");
        assert!(problem.healable(), "{problem}");
        assert!(
            problem.message.contains("68719476736 bytes")
                && problem
                    .message
                    .contains("larger than any object of its kind"),
            "{problem}"
        );
    }
    // The planted names are reported, not read: nothing holds them intact.
    for key in &planted[1..3] {
        let name = key.rsplit('/').next().unwrap();
        assert!(
            report.problems.iter().any(|p| p.object.contains(name)),
            "{key}: {:?}",
            report.problems
        );
    }

    // Repair replaces the three copies without reading (or keeping) them.
    let actions = repair(&repo, &report, 1_700_000_000).await;
    for key in &replaced {
        let action = actions.iter().find(|x| &x.key == key).unwrap();
        assert_eq!(action.error, None, "{action:?}");
        assert_eq!(action.quarantined_as, None, "{action:?}");
        assert_eq!(
            a.get_bounded(key, 64 << 20).await.unwrap(),
            b.get_bounded(key, 64 << 20).await.unwrap()
        );
    }
}

/// Writers never store what readers refuse: a deletion record of more keys
/// than one record may list is written as several, each within the limit,
/// and every key is a tombstone; a snapshot too large for any reader is not
/// written at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_stay_within_the_size_limits() {
    use lifeboat_engine::format::deletion::MAX_RECORD_KEYS;
    use lifeboat_engine::format::ids::MAX_DELETION_LEN;
    use lifeboat_engine::repo::deletions;
    use lifeboat_engine::ObjectKind;

    let store = lifeboat_backends::MemoryBackend::new("m");
    let repo = new_repo(vec![Arc::new(store.clone())]).await;
    let keys: Vec<String> = (0..MAX_RECORD_KEYS as u32 + 10)
        .map(|i| ObjectKind::Snapshot.key(&blake3::hash(&i.to_le_bytes()).to_hex()))
        .collect();
    let names = deletions::write(&repo, &DeletionRecord::new("forget", keys.clone()))
        .await
        .unwrap();
    assert_eq!(names.len(), 2);
    for name in &names {
        let size = store.stat(&format!("deletions/{name}")).await.unwrap().size;
        assert!(size <= MAX_DELETION_LEN, "{size}");
    }
    repo.reload_tombstones().await;
    let tombstones = repo.tombstones().await.unwrap();
    assert_eq!(tombstones.len(), keys.len());
    assert!(tombstones.contains(&keys[0]) && tombstones.contains(&keys[keys.len() - 1]));

    // 65 MiB of incompressible paths: more than any reader takes.
    let paths: Vec<Vec<u8>> = (0..(65u32 << 20) / 4096)
        .map(|i| {
            let mut path = vec![b'/'; 4096];
            let mut hasher = blake3::Hasher::new();
            hasher.update(&i.to_le_bytes());
            hasher.finalize_xof().fill(&mut path[1..]);
            path
        })
        .collect();
    let snapshot = Snapshot::new(BlobId([1; 32]), paths, vec![], "h".into());
    let err = repo.save_snapshot(&snapshot).await.unwrap_err();
    assert!(matches!(err, Error::InvalidInput(_)), "{err}");
    assert!(err.to_string().contains("67108864"), "{err}");
    assert!(keys_under(&store, "snapshots/").await.is_empty());
}

/// The one object larger than its kind's limit that a writer makes: a pack
/// holding a single tree blob above the pack size. It is read whole once its
/// sealed header proves its size; junk of the same size under a pack's name
/// is refused unread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pack_above_the_limit_is_read_once_its_header_proves_its_size() {
    use lifeboat_engine::format::pack::PackWriter;
    use lifeboat_engine::ObjectKind;

    let store = lifeboat_backends::MemoryBackend::new("m");
    let repo = new_repo(vec![Arc::new(store.clone())]).await;
    let limit = repo.max_size(ObjectKind::Pack);
    // An incompressible "tree" of the pack limit plus 1 MiB.
    let mut tree = vec![0u8; limit as usize + (1 << 20)];
    blake3::Hasher::new().finalize_xof().fill(&mut tree);
    let id = repo.keys().blob_id(&tree);
    let mut sealed = Vec::new();
    repo.keys().seal(
        &blob_aad(BlobType::Tree.as_u8(), &id),
        &tree,
        None,
        &mut sealed,
    );
    let mut writer = PackWriter::with_capacity(sealed.len() + 4096);
    writer.add(BlobType::Tree, id, &sealed, tree.len() as u32);
    let pack = writer.finish(repo.keys());
    assert!(pack.bytes.len() as u64 > limit);
    let key = ObjectKind::Pack.key(&pack.id.to_hex());
    store.put(&key, pack.bytes.clone()).await.unwrap();
    let read = repo
        .read_whole(&store, ObjectKind::Pack, &key)
        .await
        .unwrap();
    assert_eq!(read, pack.bytes);

    // The same size of junk under a pack name: its header does not open.
    let junk = bytes::Bytes::from(tree);
    let junk_key = ObjectKind::Pack.key(&blake3::hash(&junk).to_hex());
    store.put(&junk_key, junk).await.unwrap();
    let err = repo
        .read_whole(&store, ObjectKind::Pack, &junk_key)
        .await
        .unwrap_err();
    assert!(err.is_too_large(), "{err}");
}
