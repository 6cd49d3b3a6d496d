//! Snapshots: the root of one backup run, sealed and named by their hash.

use serde::{Deserialize, Serialize};

use super::{RepoFile, SealedFile};
use crate::format::ids::{BlobId, SnapshotId};

/// The snapshot version written and read.
pub const SNAPSHOT_VERSION: u8 = 2;
/// The AAD a snapshot is sealed with.
pub const SNAPSHOT_AAD: &[u8] = b"lifeboat.snapshot.v1";

/// Figures of one backup run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotSummary {
    /// Files not in the parent snapshot.
    pub files_new: u64,
    /// Files whose metadata changed since the parent (content re-read).
    pub files_changed: u64,
    /// Files skipped as unchanged since the parent.
    pub files_unmodified: u64,
    /// Directories not in the parent.
    pub dirs_new: u64,
    /// Directories whose listing changed.
    pub dirs_changed: u64,
    /// Directories unchanged.
    pub dirs_unmodified: u64,
    /// Data blobs written.
    pub data_blobs: u64,
    /// Tree blobs written.
    pub tree_blobs: u64,
    /// Plaintext bytes of new blobs.
    pub data_added: u64,
    /// Stored (compressed, sealed) bytes of new packs.
    pub data_added_packed: u64,
    /// Files in the snapshot.
    pub total_files: u64,
    /// Bytes of file content in the snapshot.
    pub total_bytes: u64,
    /// Files or directories that could not be read (and were left out).
    pub errors: u64,
    /// Wall time, milliseconds.
    pub duration_ms: u64,
}

/// A stored snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Format version (2: optional fields).
    pub version: u8,
    /// Start time: seconds since the epoch (UTC).
    pub time: i64,
    /// Start time: nanoseconds.
    pub time_nsec: u32,
    /// Host name.
    pub hostname: String,
    /// User name of the process that made it.
    pub username: String,
    /// Its uid.
    pub uid: u32,
    /// Its gid.
    pub gid: u32,
    /// The backed-up paths, absolute, as raw bytes.
    pub paths: Vec<serde_bytes::ByteBuf>,
    /// Tags.
    pub tags: Vec<String>,
    /// The snapshot used for change detection.
    pub parent: Option<SnapshotId>,
    /// The root tree: absolute paths' components from `/` down.
    pub tree: BlobId,
    /// Version of lifeboat that wrote it.
    pub program_version: String,
    /// Run figures.
    pub summary: SnapshotSummary,
    /// Optional fields (FORMAT.md §4.10), in tag order.
    pub extra: super::extra::Extra,
}

impl Snapshot {
    /// A snapshot of this version with an empty summary and no optional fields.
    pub fn new(tree: BlobId, paths: Vec<Vec<u8>>, tags: Vec<String>, hostname: String) -> Self {
        let now = time::OffsetDateTime::now_utc();
        // SAFETY: getuid/getgid cannot fail.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        Snapshot {
            version: SNAPSHOT_VERSION,
            time: now.unix_timestamp(),
            time_nsec: now.nanosecond(),
            hostname,
            username: crate::users::user_name(uid),
            uid,
            gid,
            paths: paths.into_iter().map(serde_bytes::ByteBuf::from).collect(),
            tags,
            parent: None,
            tree,
            program_version: env!("CARGO_PKG_VERSION").to_string(),
            summary: SnapshotSummary::default(),
            extra: super::extra::Extra::new(),
        }
    }

    /// The start time as a UTC date-time.
    pub fn datetime(&self) -> time::OffsetDateTime {
        time::OffsetDateTime::from_unix_timestamp(self.time)
            .map(|t| t + time::Duration::nanoseconds(i64::from(self.time_nsec)))
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
    }

    /// The sources tree (FORMAT.md §4.11), when the run pulled any source.
    pub fn sources_tree(&self) -> Option<BlobId> {
        let value = self.extra.get(super::tags::SNAPSHOT_SOURCES)?;
        <[u8; 32]>::try_from(value).ok().map(BlobId)
    }

    /// Records the sources tree.
    pub fn set_sources_tree(&mut self, id: BlobId) {
        self.extra.set(super::tags::SNAPSHOT_SOURCES, id.0.to_vec());
    }

    /// The snapshot this one replaces (`tag`, `rewrite`): the first of the
    /// line, however many copies were made since.
    pub fn original(&self) -> Option<SnapshotId> {
        let value = self.extra.get(super::tags::SNAPSHOT_ORIGINAL)?;
        <[u8; 32]>::try_from(value).ok().map(SnapshotId)
    }

    /// A copy of this snapshot (stored as `id`) to be changed and saved as
    /// its replacement: the same time, host and paths, its original set.
    pub fn replacement(&self, id: SnapshotId) -> Snapshot {
        let mut copy = self.clone();
        let original = self.original().unwrap_or(id);
        copy.extra
            .set(super::tags::SNAPSHOT_ORIGINAL, original.0.to_vec());
        copy
    }

    /// Every tree the snapshot hangs from: the file system's root, then the
    /// sources tree. Both are restored at the target's root, so a source's
    /// items are at `/dav/<host>/…` and `/imap/<user>@<host>/…`.
    pub fn roots(&self) -> Vec<BlobId> {
        std::iter::once(self.tree)
            .chain(self.sources_tree())
            .collect()
    }

    /// The paths, shown lossily as text.
    pub fn paths_lossy(&self) -> Vec<String> {
        self.paths
            .iter()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect()
    }
}

impl RepoFile for Snapshot {
    const KIND: &'static str = "snapshot";
    const VERSION: u8 = SNAPSHOT_VERSION;

    fn version(&self) -> u8 {
        self.version
    }

    fn validate(&self) -> std::result::Result<(), super::FormatError> {
        self.extra.validate()?;
        match self.extra.get(super::tags::SNAPSHOT_SOURCES) {
            Some(v) if v.len() != 32 => {
                return Err(super::FormatError::Invalid(
                    "the sources tree's id is not 32 bytes".into(),
                ))
            }
            _ => {}
        }
        match self.extra.get(super::tags::SNAPSHOT_ORIGINAL) {
            Some(v) if v.len() != 32 => Err(super::FormatError::Invalid(
                "the original snapshot's id is not 32 bytes".into(),
            )),
            _ => Ok(()),
        }
    }
}

impl SealedFile for Snapshot {
    const AAD: &'static [u8] = SNAPSHOT_AAD;
    const COMPRESSION: Option<i32> = Some(3);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::crypto::MasterKeys;

    #[test]
    fn snapshot_round_trip_and_tamper() {
        let keys = MasterKeys::generate();
        let mut s = Snapshot::new(
            BlobId([1; 32]),
            vec![b"/home/\xffx".to_vec()],
            vec!["t".into()],
            "h".into(),
        );
        s.summary.files_new = 3;
        let sealed = s.seal(&keys);
        let id = SnapshotId(crate::format::ids::storage_hash(&sealed));
        assert_eq!(Snapshot::open(&keys, id, &sealed).unwrap(), s);
        let mut bad = sealed;
        bad[30] ^= 4;
        assert!(Snapshot::open(&keys, id, &bad)
            .unwrap_err()
            .to_string()
            .contains(&id.to_hex()));
    }

    use crate::format::crypto::mutate;
    use proptest::prelude::*;

    fn snapshots() -> impl Strategy<Value = Snapshot> {
        (
            any::<(i64, u32, u32, u32)>(),
            (".{0,12}", ".{0,12}", ".{0,8}"),
            prop::collection::vec(mutate::bytes(20), 0..4),
            prop::collection::vec(".{0,6}", 0..4),
            proptest::option::of(any::<[u8; 32]>()),
            any::<[u8; 32]>(),
            any::<[u64; 14]>(),
            crate::format::extra::tests::extras(),
        )
            .prop_map(
                |(
                    (time, time_nsec, uid, gid),
                    (host, user, version),
                    paths,
                    tags,
                    parent,
                    tree,
                    s,
                    extra,
                )| {
                    Snapshot {
                        version: SNAPSHOT_VERSION,
                        time,
                        time_nsec,
                        hostname: host,
                        username: user,
                        uid,
                        gid,
                        paths: paths.into_iter().map(serde_bytes::ByteBuf::from).collect(),
                        tags,
                        parent: parent.map(SnapshotId),
                        tree: BlobId(tree),
                        program_version: version,
                        summary: SnapshotSummary {
                            files_new: s[0],
                            files_changed: s[1],
                            files_unmodified: s[2],
                            dirs_new: s[3],
                            dirs_changed: s[4],
                            dirs_unmodified: s[5],
                            data_blobs: s[6],
                            tree_blobs: s[7],
                            data_added: s[8],
                            data_added_packed: s[9],
                            total_files: s[10],
                            total_bytes: s[11],
                            errors: s[12],
                            duration_ms: s[13],
                        },
                        extra,
                    }
                },
            )
    }

    proptest! {
        #[test]
        fn arbitrary_snapshot_bytes_never_panic(bytes in mutate::bytes(400)) {
            let keys = MasterKeys::generate();
            prop_assert!(Snapshot::open(&keys, SnapshotId::default(), &bytes).is_err());
            let _ = postcard::from_bytes::<Snapshot>(&bytes);
        }

        #[test]
        fn arbitrary_snapshot_plaintext_never_panics(plain in mutate::bytes(400)) {
            let keys = MasterKeys::generate();
            let mut sealed = Vec::new();
            keys.seal(SNAPSHOT_AAD, &plain, Some(3), &mut sealed);
            if let Ok(snap) = Snapshot::open(&keys, SnapshotId::default(), &sealed) {
                prop_assert_eq!(snap.version, SNAPSHOT_VERSION);
            }
        }

        #[test]
        fn snapshots_round_trip_and_any_change_is_rejected(s in snapshots(), m in mutate::mutations()) {
            let keys = MasterKeys::generate();
            let sealed = s.seal(&keys);
            prop_assert_eq!(&Snapshot::open(&keys, SnapshotId::default(), &sealed).unwrap(), &s);
            let bad = mutate::apply(&sealed, &m);
            prop_assume!(bad != sealed);
            prop_assert!(Snapshot::open(&keys, SnapshotId::default(), &bad).is_err());
        }
    }
}
