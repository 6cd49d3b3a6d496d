//! A provider (or anyone holding stored bytes) that serves well-formed but
//! wrong objects: each is refused with an error naming it, never trusted.

use lifeboat_engine::format::crypto::{blob_aad, MasterKeys};
use lifeboat_engine::format::deletion::DeletionRecord;
use lifeboat_engine::format::index::IndexFile;
use lifeboat_engine::format::pack::{open_blob, BlobType, PackEntry};
use lifeboat_engine::RepoFile;
use lifeboat_engine::SealedFile;
use lifeboat_engine::{BlobId, Error, PackId, Snapshot, SnapshotId, Tree};

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
    snapshot.version = 2;
    let id = SnapshotId([3; 32]);
    match Snapshot::open(&keys, id, &snapshot.seal(&keys)) {
        Err(Error::UnsupportedVersion { object, version }) => {
            assert!(object.contains(&id.to_hex()), "{object}");
            assert_eq!(version, 2);
        }
        other => panic!("a version-2 snapshot was not refused: {other:?}"),
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
