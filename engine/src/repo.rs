//! An open repository: its destinations, master keys and parameters, and the
//! verified reads and writes of its objects.

use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use lifeboat_backends::ErrorKind;

use crate::cache::MetadataCache;
use crate::crypto::MasterKeys;
use crate::deletions::Tombstones;
use crate::destinations::DestinationSet;
use crate::error::{Error, Result};
use crate::ids::{
    storage_hash, BlobId, IndexId, KeyId, ObjectKind, RepoId, SnapshotId, CONFIG_KEY,
};
use crate::index::{IndexFile, MasterIndex};
use crate::keys::{KdfParams, KeyFile};
use crate::pack::open_blob;
use crate::pack::PackEntry;
use crate::repo_config::{self, RepoParams};
use crate::snapshot::Snapshot;
use crate::tree::Tree;

/// An open repository.
#[derive(Debug, Clone)]
pub struct Repository {
    dests: DestinationSet,
    keys: Arc<MasterKeys>,
    id: RepoId,
    params: RepoParams,
    /// The key file the password opened (for `init`, the one it wrote).
    key_id: KeyId,
    /// Local copies of index files, snapshots and trees, when enabled.
    cache: Option<Arc<MetadataCache>>,
    /// Deletion records, loaded on first use (shared by clones).
    tombstones: Arc<tokio::sync::Mutex<Option<Arc<Tombstones>>>>,
}

/// Verifies that `bytes` hash to the name in `key`; the check of invariant 3.
pub(crate) fn verify_named(
    destination: &str,
    key: &str,
    kind: ObjectKind,
    bytes: &[u8],
) -> Result<()> {
    let name = kind.name_of(key).unwrap_or("");
    if hex::encode(storage_hash(bytes)) != name {
        return Err(Error::format(
            format!("{destination}: {key}"),
            "content does not match its name (corrupted or tampered)",
        ));
    }
    Ok(())
}

impl Repository {
    /// Creates a new repository with the same id and keys on every destination.
    ///
    /// Key files go first and `config` last, so a destination is only seen as a
    /// repository once it can be opened.
    ///
    /// # Errors
    /// [`Error::RepositoryExists`] when any destination already holds a
    /// repository (nothing is written then); storage failures.
    pub async fn init(
        dests: DestinationSet,
        password: &[u8],
        params: RepoParams,
        kdf: KdfParams,
    ) -> Result<Self> {
        params.validate()?;
        for b in dests.backends() {
            match b.stat(CONFIG_KEY).await {
                Ok(_) => {
                    return Err(Error::RepositoryExists {
                        destination: b.name().into(),
                        location: b.location(),
                    })
                }
                Err(e) if e.kind == ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
        let keys = MasterKeys::generate();
        let mut id = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut id);
        let id = RepoId(id);
        let key_file = KeyFile::create(&keys, password, &id, kdf)?.to_bytes();
        let key_name = KeyId(storage_hash(&key_file));
        // Every destination must get the repository: init is all or error.
        let key_key = ObjectKind::Key.key(&key_name.to_hex());
        dests
            .put_everywhere(&key_key, Bytes::from(key_file), true)
            .await?;
        let config = Bytes::from(repo_config::encode(&id, &params, &keys));
        dests.put_everywhere(CONFIG_KEY, config, false).await?;
        Ok(Repository {
            dests,
            keys: Arc::new(keys),
            id,
            params,
            key_id: key_name,
            cache: None,
            tombstones: Arc::default(),
        })
    }

    /// Keeps index files, snapshots and trees in `cache` and reads them from
    /// there when they verify.
    pub fn with_cache(mut self, cache: MetadataCache) -> Self {
        self.cache = Some(Arc::new(cache));
        self
    }

    /// Reads every object from the destinations, never from the local cache
    /// (a restore drill must prove the destination alone).
    pub fn without_cache(mut self) -> Self {
        self.cache = None;
        self
    }

    /// The metadata cache, when enabled.
    pub fn cache(&self) -> Option<&MetadataCache> {
        self.cache.as_deref()
    }

    /// Opens the repository with `password`.
    ///
    /// # Errors
    /// [`Error::NoRepository`] when the preferred destination has no `config`;
    /// [`Error::WrongPassword`] when no key file opens with the password.
    pub async fn open(dests: DestinationSet, password: &[u8]) -> Result<Self> {
        // The first destination that holds the repository answers; one that
        // cannot be reached is dropped, one without a repository is skipped,
        // and one whose config or key files are damaged hands over to the next.
        let mut last_error = None;
        let mut any_config = false;
        // Configs a password was already tried against: the same config and
        // key files give the same answer, so a wrong password costs one key
        // derivation per key file, not one per destination.
        let mut tried_configs: Vec<Bytes> = Vec::new();
        for backend in dests.read_order() {
            let config = match backend.get(CONFIG_KEY, None).await {
                Ok(bytes) => bytes,
                Err(e) if e.kind == ErrorKind::NotFound => continue,
                Err(e) => {
                    dests.drop_destination(backend.name(), &e.to_string());
                    last_error = Some(e.into());
                    continue;
                }
            };
            any_config = true;
            if matches!(last_error, Some(Error::WrongPassword)) && tried_configs.contains(&config) {
                continue;
            }
            tried_configs.push(config.clone());
            match Self::open_on(&dests, &backend, config, password).await {
                Ok(repo) => return Ok(repo),
                // The password is at fault, not the destination.
                Err(e @ Error::KeyRemoved { .. }) => return Err(e),
                Err(e) => {
                    if !matches!(e, Error::WrongPassword) {
                        tracing::warn!("{}: cannot open the repository there: {e}", backend.name());
                    }
                    last_error = Some(e);
                }
            }
        }
        Err(match last_error {
            Some(e) => e,
            None if !any_config => Error::NoRepository {
                destination: dests.primary().name().into(),
                location: dests.primary().location(),
            },
            None => Error::WrongPassword,
        })
    }

    /// Opens the repository with `primary`'s config and key files.
    async fn open_on(
        dests: &DestinationSet,
        primary: &Arc<dyn lifeboat_backends::Backend>,
        config: Bytes,
        password: &[u8],
    ) -> Result<Self> {
        let header = repo_config::read_header(&config)?;
        let key_objects =
            crate::destinations::list_all(primary.as_ref(), ObjectKind::Key.prefix()).await?;
        if key_objects.is_empty() {
            return Err(Error::format(
                format!("{}: keys/", primary.name()),
                "no key files (repository damaged)",
            ));
        }
        // A key file that does not verify or decode (damaged, or a newer
        // version's) is skipped with a warning: another one may still open.
        let mut unreadable = None;
        let mut removed_key = None;
        let mut tried = false;
        for meta in key_objects {
            let bytes = match primary.get(&meta.key, None).await {
                Ok(bytes) => bytes,
                // Removed since the listing (`key remove` elsewhere).
                Err(e) if e.kind == ErrorKind::NotFound => continue,
                Err(e) => return Err(e.into()),
            };
            let key_file = match verify_named(primary.name(), &meta.key, ObjectKind::Key, &bytes)
                .and_then(|()| KeyFile::from_bytes(&bytes))
            {
                Ok(key_file) => key_file,
                Err(e) => {
                    tracing::warn!("{}: {} skipped: {e}", primary.name(), meta.key);
                    unreadable = Some(e);
                    continue;
                }
            };
            let key_id = KeyId(storage_hash(&bytes));
            let password = zeroize::Zeroizing::new(password.to_vec());
            let opened = tokio::task::spawn_blocking(move || key_file.open(&password, &header.id))
                .await
                .map_err(|e| Error::InvalidInput(format!("key derivation thread failed: {e}")))?;
            match opened {
                Ok(keys) => {
                    let (_, params) = repo_config::decode(&config, &keys)?;
                    let repo = Repository {
                        dests: dests.clone(),
                        keys: Arc::new(keys),
                        id: header.id,
                        params,
                        key_id,
                        cache: None,
                        tombstones: Arc::default(),
                    };
                    // A key file `key remove` removed may linger on a
                    // destination not swept yet: its password must not open.
                    let removed = match repo.tombstones().await {
                        Ok(t) => t.contains(&meta.key),
                        Err(e) => {
                            tracing::warn!("cannot read the deletion records: {e}");
                            false
                        }
                    };
                    if !removed {
                        return Ok(repo);
                    }
                    removed_key = Some(Error::KeyRemoved {
                        key: key_id.short(),
                    });
                }
                Err(Error::WrongPassword) => tried = true,
                Err(e) => {
                    tracing::warn!("{}: {} skipped: {e}", primary.name(), meta.key);
                    unreadable = Some(e);
                }
            }
        }
        // Only when no key file could even be tried is the password not to blame.
        Err(match (removed_key, unreadable) {
            (Some(removed), _) => removed,
            (None, Some(e)) if !tried => e,
            _ => Error::WrongPassword,
        })
    }

    /// The destinations.
    pub fn destinations(&self) -> &DestinationSet {
        &self.dests
    }

    /// The master keys.
    pub fn keys(&self) -> &Arc<MasterKeys> {
        &self.keys
    }

    /// The repository id.
    pub fn id(&self) -> RepoId {
        self.id
    }

    /// The key file that opened the repository: the password in use.
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }

    /// The parameters fixed at init.
    pub fn params(&self) -> &RepoParams {
        &self.params
    }

    /// Reads a content-named object, verifying its hash, with failover.
    ///
    /// # Errors
    /// When no destination has good bytes.
    pub async fn read_object(&self, kind: ObjectKind, name: &str) -> Result<Bytes> {
        if let Some(bytes) = self.cache().and_then(|c| c.object(kind, name)) {
            return Ok(Bytes::from(bytes));
        }
        let key = kind.key(name);
        let bytes = self
            .dests
            .get_verified(&key, None, |dest, bytes| {
                verify_named(dest, &key, kind, &bytes)?;
                Ok(bytes)
            })
            .await?;
        if let Some(cache) = self.cache() {
            cache.put_object(kind, name, &bytes);
        }
        Ok(bytes)
    }

    /// Writes a content-named object to every destination; returns its name.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn write_object(&self, kind: ObjectKind, bytes: Vec<u8>) -> Result<String> {
        let name = hex::encode(storage_hash(&bytes));
        self.dests
            .put_content(&kind.key(&name), Bytes::from(bytes))
            .await?;
        Ok(name)
    }

    /// Names of every object of `kind` on the preferred destination.
    ///
    /// # Errors
    /// Listing failures.
    pub async fn list_names(&self, kind: ObjectKind) -> Result<Vec<String>> {
        let metas = self.dests.list_primary(kind.prefix()).await?;
        Ok(metas
            .into_iter()
            .filter_map(|m| kind.name_of(&m.key).map(str::to_string))
            .collect())
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
        let loaded = Arc::new(crate::deletions::load(self).await?);
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
        let names = self.list_all_names_everywhere(kind).await?;
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
        let mut last_error = None;
        let mut any = false;
        // Destinations already given up on this run are not asked again: each
        // ask would cost the whole retry budget once more.
        let mut order = self.dests.healthy();
        if order.is_empty() {
            order = self.dests.read_order();
        }
        for backend in order {
            match crate::destinations::list_all(backend.as_ref(), kind.prefix()).await {
                Ok(metas) => {
                    any = true;
                    names.extend(
                        metas
                            .iter()
                            .filter_map(|m| kind.name_of(&m.key).map(str::to_string)),
                    );
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
        match (any, last_error) {
            (false, Some(e)) => Err(e),
            _ => Ok(names.into_iter().collect()),
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
        let mut reads = futures::stream::iter(names.into_iter().map(|name| async move {
            let file = match self.read_object(ObjectKind::Index, &name).await {
                Ok(bytes) => IndexFile::open(&self.keys, &name, &bytes),
                Err(e) => Err(e),
            };
            (name, file)
        }))
        .buffer_unordered(4);
        let mut first = true;
        while let Some((name, file)) = reads.next().await {
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
                // briefly holds both the old and the new copy.
                master.reserve(file.blob_count().saturating_mul(files));
            }
            master.add_file(&file);
        }
        master.finish();
        Ok(master)
    }

    /// Writes one index file.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn save_index(&self, file: &IndexFile) -> Result<IndexId> {
        let name = self
            .write_object(ObjectKind::Index, file.seal(&self.keys))
            .await?;
        name.parse().map_err(|_| Error::format("index", "bad name"))
    }

    /// Writes a snapshot; it is the commit point of a backup.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn save_snapshot(&self, snapshot: &Snapshot) -> Result<SnapshotId> {
        let name = self
            .write_object(ObjectKind::Snapshot, snapshot.seal(&self.keys))
            .await?;
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
        let mut out = Vec::with_capacity(names.len());
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
        .buffer_unordered(8);
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
                Ok((id, self.load_snapshot(&id).await?))
            }
            _ => Err(Error::AmbiguousSnapshot(spec.into())),
        }
    }

    /// Reads, opens and verifies one blob located through `index`.
    ///
    /// # Errors
    /// [`Error::MissingBlob`] when unindexed; verification failures naming the pack.
    pub async fn read_blob(&self, index: &MasterIndex, id: &BlobId) -> Result<Vec<u8>> {
        let loc = index
            .lookup(id)
            .ok_or_else(|| Error::MissingBlob { blob: id.to_hex() })?;
        let entry = PackEntry {
            blob_type: loc.blob_type,
            id: *id,
            offset: loc.offset,
            length: loc.length,
            raw_length: loc.raw_length,
        };
        let tree_cache = self
            .cache()
            .filter(|_| loc.blob_type == crate::pack::BlobType::Tree);
        if let Some(cache) = tree_cache {
            if let Some(sealed) = cache.tree(id) {
                match open_blob(&self.keys, &loc.pack, &entry, &sealed) {
                    Ok(plain) => return Ok(plain),
                    Err(_) => cache.forget_tree(id),
                }
            }
        }
        let key = ObjectKind::Pack.key(&loc.pack.to_hex());
        let range = u64::from(loc.offset)..u64::from(loc.offset) + u64::from(loc.length);
        let keys = self.keys.clone();
        let (plain, sealed) = self
            .dests
            .get_verified(&key, Some(range), |_, sealed| {
                open_blob(&keys, &loc.pack, &entry, &sealed).map(|plain| (plain, sealed))
            })
            .await?;
        if let Some(cache) = tree_cache {
            cache.put_tree(id, &sealed);
        }
        Ok(plain)
    }

    /// Reads and decodes one tree.
    ///
    /// # Errors
    /// As [`Repository::read_blob`], plus decoding failures.
    pub async fn load_tree(&self, index: &MasterIndex, id: &BlobId) -> Result<Tree> {
        let bytes = self.read_blob(index, id).await?;
        Tree::decode(id, &bytes)
    }
}
