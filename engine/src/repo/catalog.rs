//! The repository's catalog: object names across destinations, deletion
//! records, the merged index and the snapshots.

use std::collections::BTreeSet;
use std::sync::Arc;

use futures::StreamExt;
use lifeboat_backends::{Backend, ErrorKind};

use super::Repository;
use crate::error::{Error, Result};
use crate::format::ids::{IndexId, ObjectKind, SnapshotId};
use crate::format::index::IndexFile;
use crate::format::snapshot::Snapshot;
use crate::format::SealedFile;
use crate::repo::deletions::Tombstones;
use crate::repo::index::MasterIndex;

/// The most blob entries the merged index makes room for before the index
/// files are read (about 40 bytes each); a larger repository's index grows
/// as its files load.
const MAX_INDEX_RESERVE: usize = 1 << 24;

/// The most items made room for up front from a listing's length: a
/// provider can list names it never stores.
const LISTED_ROOM: usize = 4096;

impl Repository {
    /// Names of every object of `kind` on the preferred destination.
    ///
    /// # Errors
    /// Listing failures.
    pub async fn list_names(&self, kind: ObjectKind) -> Result<Vec<String>> {
        let (destination, metas) = self.dests.list_primary(kind.prefix()).await?;
        let keys = metas.iter().map(|m| m.key.as_str());
        Ok(self.dests.object_names(&destination, kind, keys))
    }

    /// Every tombstoned key (from the deletion records), loaded once per
    /// repository handle.
    ///
    /// # Errors
    /// When the records cannot be listed or one cannot be read anywhere.
    pub async fn tombstones(&self) -> Result<Arc<Tombstones>> {
        let mut slot = self.tombstones.lock().await;
        if let Some(t) = &*slot {
            return Ok(t.clone());
        }
        let loaded = Arc::new(crate::repo::deletions::load(self).await?);
        *slot = Some(loaded.clone());
        Ok(loaded)
    }

    /// Forgets the loaded deletion records (after writing a new one).
    pub async fn reload_tombstones(&self) {
        *self.tombstones.lock().await = None;
    }

    /// Names of every object of `kind` on any reachable destination: a
    /// destination that lags, or lost its objects, does not hide what the
    /// others hold. Each object is then read with failover. Snapshots, index
    /// files and key files that a deletion record lists are left out: a
    /// destination that missed a forget, prune or key remove still holds them
    /// until they are swept.
    ///
    /// # Errors
    /// When no destination can be listed.
    pub async fn list_names_everywhere(&self, kind: ObjectKind) -> Result<Vec<String>> {
        let names = if kind == ObjectKind::Snapshot {
            // Each destination's own list is compared with what it listed
            // before (rollback detection, `repo::seen`).
            let each = self.list_each_destination(kind).await?;
            let tombstones = self.tombstones().await?;
            self.observe_snapshot_listings(&each, tombstones).await?;
            let all: BTreeSet<String> = each.into_iter().flat_map(|(_, names)| names).collect();
            all.into_iter().collect()
        } else {
            self.list_all_names_everywhere(kind).await?
        };
        if !matches!(
            kind,
            ObjectKind::Snapshot | ObjectKind::Index | ObjectKind::Key
        ) {
            return Ok(names);
        }
        let tombstones = self.tombstones().await?;
        if tombstones.is_empty() {
            return Ok(names);
        }
        Ok(names
            .into_iter()
            .filter(|n| !tombstones.contains(&kind.key(n)))
            .collect())
    }

    /// Names of every object of `kind` on any reachable destination,
    /// tombstoned or not.
    ///
    /// # Errors
    /// When no destination can be listed.
    pub async fn list_all_names_everywhere(&self, kind: ObjectKind) -> Result<Vec<String>> {
        let mut names = std::collections::BTreeSet::new();
        for (_, listed) in self.list_each_destination(kind).await? {
            names.extend(listed);
        }
        Ok(names.into_iter().collect())
    }

    /// Names of every object of `kind`, per destination that could be
    /// listed in full (a destination whose listing failed is not in the
    /// result), tombstoned or not.
    ///
    /// # Errors
    /// When no destination can be listed.
    pub(crate) async fn list_each_destination(
        &self,
        kind: ObjectKind,
    ) -> Result<Vec<(Arc<dyn Backend>, BTreeSet<String>)>> {
        let mut out = Vec::new();
        let mut last_error = None;
        // Destinations already given up on this run are not asked again: each
        // ask would cost the whole retry budget once more.
        let mut order = self.dests.healthy();
        if order.is_empty() {
            order = self.dests.read_order();
        }
        for backend in order {
            match crate::repo::destinations::list_all(backend.as_ref(), kind.prefix()).await {
                Ok(metas) => {
                    let keys = metas.iter().map(|m| m.key.as_str());
                    let names = self.dests.object_names(backend.name(), kind, keys);
                    out.push((backend, names.into_iter().collect()));
                }
                Err(e) => {
                    if let Error::Backend(be) = &e {
                        if be.kind == ErrorKind::Transient {
                            self.dests.drop_destination(backend.name(), &be.to_string());
                        }
                    }
                    last_error = Some(e);
                }
            }
        }
        match (out.is_empty(), last_error) {
            (true, Some(e)) => Err(e),
            _ => Ok(out),
        }
    }

    /// Loads and merges every index file. One that no destination returns
    /// intact (a phantom in some listing, or damaged everywhere) is left out
    /// with a warning: reads of its blobs then fail and are reported, and
    /// `check` names it.
    ///
    /// # Errors
    /// When no destination can be listed.
    pub async fn load_index(&self) -> Result<MasterIndex> {
        self.read_index(false).await
    }

    /// Loads and merges every index file; any that cannot be read is an
    /// error (for prune, which must not decide on a partial view).
    ///
    /// # Errors
    /// The first index file that cannot be read or verified.
    pub async fn load_index_strict(&self) -> Result<MasterIndex> {
        self.read_index(true).await
    }

    async fn read_index(&self, strict: bool) -> Result<MasterIndex> {
        let names = self.list_names_everywhere(ObjectKind::Index).await?;
        if let Some(cache) = self.cache() {
            cache.retain_objects(ObjectKind::Index, &names);
        }
        let mut master = MasterIndex::new();
        let files = names.len();
        // A few index files downloaded at once; each is decrypted and
        // decoded off the async workers, one at a time (a decoded file is
        // several times its stored size: decoding them side by side raised
        // a million-file restore's peak by 30 MB).
        let mut reads = futures::stream::iter(names.into_iter().map(|name| async move {
            let bytes = self.read_object(ObjectKind::Index, &name).await;
            (name, bytes)
        }))
        .buffer_unordered(self.dests.walk_reads().min(4));
        let mut first = true;
        while let Some((name, bytes)) = reads.next().await {
            let file = match bytes {
                Ok(bytes) => {
                    let (keys, named) = (self.keys.clone(), name.clone());
                    tokio::task::spawn_blocking(move || IndexFile::open(&keys, &named, &bytes))
                        .await
                        .unwrap_or_else(|e| {
                            Err(Error::task_failed(format!("decoding index {name}"), e))
                        })
                }
                Err(e) => Err(e),
            };
            let file = match file {
                Ok(file) => file,
                Err(e) if !strict => {
                    tracing::warn!("index {name} left out: no destination returns it intact: {e}");
                    continue;
                }
                Err(e) => return Err(e),
            };
            if std::mem::take(&mut first) {
                // Index files are written full but for the last: sizing the
                // merged index once avoids growing it by doubling, which
                // briefly holds both the old and the new copy. The count of
                // files is a listing's (a provider can list names it never
                // stores), so the room made up front is capped.
                master.reserve(
                    file.blob_count()
                        .saturating_mul(files)
                        .min(MAX_INDEX_RESERVE),
                );
            }
            master.add_file(&file);
        }
        master.finish();
        if let Some(cache) = self.cache() {
            cache.retain_tree_packs(master.packs());
        }
        Ok(master)
    }

    /// Writes one index file.
    ///
    /// # Errors
    /// Storage failures; [`Error::InvalidInput`] for a file larger than
    /// readers accept (never written).
    pub async fn save_index(&self, file: &IndexFile) -> Result<IndexId> {
        let sealed = file.seal(&self.keys);
        ObjectKind::Index.check_size(&self.params, sealed.len())?;
        let name = self.write_object(ObjectKind::Index, sealed).await?;
        name.parse().map_err(|_| Error::format("index", "bad name"))
    }

    /// Writes a snapshot; it is the commit point of a backup.
    ///
    /// # Errors
    /// Storage failures; [`Error::InvalidInput`] for a snapshot larger than
    /// readers accept (too many paths or tags: never written).
    pub async fn save_snapshot(&self, snapshot: &Snapshot) -> Result<SnapshotId> {
        let sealed = snapshot.seal(&self.keys);
        // Its paths and tags are the user's: never store what no reader takes.
        ObjectKind::Snapshot.check_size(&self.params, sealed.len())?;
        let name = self.write_object(ObjectKind::Snapshot, sealed).await?;
        name.parse()
            .map_err(|_| Error::format("snapshot", "bad name"))
    }

    /// Loads one snapshot.
    ///
    /// # Errors
    /// Read or verification failures.
    pub async fn load_snapshot(&self, id: &SnapshotId) -> Result<Snapshot> {
        let bytes = self.read_object(ObjectKind::Snapshot, &id.to_hex()).await?;
        Snapshot::open(&self.keys, id, &bytes)
    }

    /// Names of the snapshots on every reachable destination (a snapshot that
    /// reached only some destinations is still listed).
    ///
    /// # Errors
    /// When no destination can be listed.
    pub async fn snapshot_names(&self) -> Result<Vec<String>> {
        self.list_names_everywhere(ObjectKind::Snapshot).await
    }

    /// Every snapshot, oldest first. A snapshot no destination can return
    /// (a phantom in some listing, or damaged everywhere) is left out with a
    /// warning; `check` names it.
    ///
    /// # Errors
    /// When no destination can be listed.
    pub async fn list_snapshots(&self) -> Result<Vec<(SnapshotId, Snapshot)>> {
        self.read_snapshots(false).await
    }

    /// Every snapshot, oldest first; any that cannot be read is an error
    /// (for prune, which must not decide on a partial view).
    ///
    /// # Errors
    /// The first snapshot that cannot be read.
    pub async fn list_snapshots_strict(&self) -> Result<Vec<(SnapshotId, Snapshot)>> {
        self.read_snapshots(true).await
    }

    async fn read_snapshots(&self, strict: bool) -> Result<Vec<(SnapshotId, Snapshot)>> {
        let names = self.snapshot_names().await?;
        if let Some(cache) = self.cache() {
            cache.retain_objects(ObjectKind::Snapshot, &names);
        }
        // Listed names, not yet loaded snapshots: room grows with what loads.
        let mut out = Vec::with_capacity(names.len().min(LISTED_ROOM));
        let mut reads = futures::stream::iter(names.into_iter().map(|name| async move {
            let loaded = async {
                let id: SnapshotId = name
                    .parse()
                    .map_err(|_| Error::format("snapshot", "bad name"))?;
                Ok::<_, Error>((id, self.load_snapshot(&id).await?))
            }
            .await;
            (name, loaded)
        }))
        .buffer_unordered(self.dests.walk_reads());
        while let Some((name, item)) = reads.next().await {
            match item {
                Ok(found) => out.push(found),
                Err(e) if !strict => {
                    tracing::warn!(
                        "snapshot {name} left out: no destination returns it intact: {e}"
                    )
                }
                Err(e) => return Err(e),
            }
        }
        out.sort_by_key(|(id, s)| (s.time, s.time_nsec, *id));
        // Only snapshots that opened are remembered as held: a name a
        // listing made up is never taken for a snapshot.
        self.remember_snapshots(out.iter().map(|(id, _)| *id));
        Ok(out)
    }

    /// Resolves `latest`, a full id or a unique prefix of at least 4 hex digits.
    ///
    /// # Errors
    /// [`Error::SnapshotNotFound`] or [`Error::AmbiguousSnapshot`].
    pub async fn find_snapshot(&self, spec: &str) -> Result<(SnapshotId, Snapshot)> {
        if spec == "latest" {
            let mut all = self.list_snapshots().await?;
            return all
                .pop()
                .ok_or_else(|| Error::SnapshotNotFound(spec.into()));
        }
        if spec.len() < 4 || !spec.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::InvalidInput(format!(
                "{spec:?} is not a snapshot name: use `latest`, an id, or at least 4 hex digits of one"
            )));
        }
        let spec_lower = spec.to_ascii_lowercase();
        let names = self.snapshot_names().await?;
        let matches: Vec<&String> = names
            .iter()
            .filter(|n| n.starts_with(&spec_lower))
            .collect();
        match matches.as_slice() {
            [] => Err(Error::SnapshotNotFound(spec.into())),
            [one] => {
                let id: SnapshotId = one
                    .parse()
                    .map_err(|_| Error::format("snapshot", "bad name"))?;
                let snapshot = self.load_snapshot(&id).await?;
                self.remember_snapshots([id]);
                Ok((id, snapshot))
            }
            _ => Err(Error::AmbiguousSnapshot(spec.into())),
        }
    }
}
