//! Repository access: an open repository (its destinations, master keys and
//! parameters), the verified reads and writes of its objects, and the
//! protocols that list, write and refresh objects across destinations (locks,
//! deletion records, index loading, tree streaming). Operations in
//! [`crate::ops`] reach storage only through here; formats in
//! [`crate::format`] never do.

use std::sync::Arc;

use bytes::Bytes;
use lifeboat_backends::ErrorKind;

pub mod cache;
mod catalog;
pub mod deletions;
pub mod destinations;
pub mod index;
pub(crate) mod inflight;
pub mod lock;
pub(crate) mod packer;
pub mod seen;
pub mod tree_stream;
mod whole;

use crate::error::{Error, Result};
use crate::format::config::{self as repo_config, RepoParams};
use crate::format::crypto::MasterKeys;
use crate::format::ids::{
    storage_hash, BlobId, KeyId, ObjectKind, RepoId, CONFIG_KEY, MAX_CONFIG_LEN, MAX_KEY_FILE_LEN,
};
use crate::format::keys::{KdfParams, KeyFile};
use crate::format::pack::open_blob;
use crate::format::tree::Tree;
use crate::repo::cache::MetadataCache;
use crate::repo::deletions::Tombstones;
use crate::repo::destinations::{DestinationSet, LeftOutReason};
use crate::repo::index::MasterIndex;

/// Which destinations a command admits besides those that hold exactly this
/// repository's config. By default none: a destination that is empty, holds
/// another repository, has a damaged config or cannot be reached is left out
/// of the run before anything touches it.
#[derive(Debug, Clone, Default)]
pub struct Admission {
    /// Empty destinations the command will copy the repository to
    /// (`sync --seed NAME`).
    pub seed: Vec<String>,
    /// Admit destinations whose config carries this repository's id but does
    /// not open with its keys, so that `check` can report the damage and
    /// `sync --repair` can replace it.
    pub damaged_config: bool,
    /// Key files that opened a repository on this machine before, most
    /// recent first (local state): tried before any other, so that a key
    /// file a provider planted with costly KDF parameters is not derived
    /// first. The rest are tried cheapest first.
    pub known_keys: Vec<KeyId>,
}

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
    /// What each destination listed before, when kept (`repo::seen`).
    local_state: Option<Arc<seen::LocalState>>,
}

/// Where a key file comes in the order they are tried (lowest first): key
/// files that opened here before, most recent first, then the rest by
/// KDF cost, cheapest first. Every try costs one key derivation, so a key
/// file a provider planted with the highest accepted cost comes last.
fn try_rank(key_id: &KeyId, params: &KdfParams, known_keys: &[KeyId]) -> (usize, u64) {
    let known = known_keys.iter().position(|k| k == key_id);
    (known.unwrap_or(known_keys.len()), params.cost())
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
        let (mut holding, mut empty) = (Vec::new(), Vec::new());
        for b in dests.backends() {
            match b.stat(CONFIG_KEY).await {
                Ok(_) => holding.push(b.clone()),
                Err(e) if e.kind == ErrorKind::NotFound => empty.push(b.name().to_string()),
                Err(e) => return Err(e.into()),
            }
        }
        if let Some(first) = holding.first() {
            if !empty.is_empty() {
                return Err(Error::SeedInstead {
                    existing: first.name().into(),
                    empty: empty.join(" --seed "),
                });
            }
            return Err(Error::RepositoryExists {
                destination: first.name().into(),
                location: first.location(),
            });
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
            local_state: None,
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
        Self::open_with(dests, password, &Admission::default()).await
    }

    /// Opens the repository with `password`, then proves that every other
    /// destination holds this same repository: its `config` must be the same
    /// bytes (or open with the same keys). The id alone is no proof: it sits
    /// in the config's public header and can be copied. Destinations that
    /// fail the proof, and those `admission` does not admit, are left out of
    /// the set ([`DestinationSet::left_out`]) before anything is written.
    ///
    /// # Errors
    /// As [`Repository::open`].
    pub async fn open_with(
        dests: DestinationSet,
        password: &[u8],
        admission: &Admission,
    ) -> Result<Self> {
        let (mut repo, opened_on, config) = Self::open_first(dests, password, admission).await?;
        let verdicts = repo.identify_others(&opened_on, &config, admission).await;
        if !verdicts.is_empty() {
            repo.dests.leave_out(&verdicts);
        }
        Ok(repo)
    }

    /// What each destination other than `opened_on` holds, for those that
    /// are not admitted: their name and why.
    async fn identify_others(
        &self,
        opened_on: &str,
        config: &Bytes,
        admission: &Admission,
    ) -> Vec<(String, LeftOutReason)> {
        let missed = &self.dests.missed();
        let checks = self
            .dests
            .backends()
            .iter()
            .filter(|b| b.name() != opened_on)
            .map(|b| async move {
                if let Some((_, why)) = missed.iter().find(|(n, _)| n == b.name()) {
                    return Some((
                        b.name().to_string(),
                        LeftOutReason::Unreachable(why.clone()),
                    ));
                }
                let verdict = match b.get_bounded(CONFIG_KEY, MAX_CONFIG_LEN).await {
                    Ok(theirs) if theirs == *config => None,
                    Ok(theirs) => match repo_config::decode(&theirs, &self.keys) {
                        // Sealed with this repository's keys: the same one.
                        Ok((header, _)) if header.id == self.id => None,
                        // Damaged, or another repository's. Ours when it
                        // names our id or holds the very key file that
                        // opened this repository (content-named, so a
                        // verified copy is proof).
                        _ => {
                            let same_id =
                                repo_config::read_header(&theirs).is_ok_and(|h| h.id == self.id);
                            if !same_id && !self.holds_our_key(b.as_ref()).await {
                                Some(LeftOutReason::OtherRepository)
                            } else if admission.damaged_config {
                                None
                            } else {
                                Some(LeftOutReason::DamagedConfig)
                            }
                        }
                    },
                    Err(e) if e.kind == ErrorKind::NotFound => {
                        (!admission.seed.iter().any(|n| n == b.name()))
                            .then_some(LeftOutReason::NoRepository)
                    }
                    Err(e) => Some(LeftOutReason::Unreachable(e.to_string())),
                };
                verdict.map(|v| (b.name().to_string(), v))
            });
        futures::future::join_all(checks)
            .await
            .into_iter()
            .flatten()
            .collect()
    }

    /// True when `backend` holds, intact, the key file this repository was
    /// opened with.
    async fn holds_our_key(&self, backend: &dyn lifeboat_backends::Backend) -> bool {
        let key = ObjectKind::Key.key(&self.key_id.to_hex());
        match backend.get_bounded(&key, MAX_KEY_FILE_LEN).await {
            Ok(bytes) => storage_hash(&bytes) == self.key_id.0,
            Err(_) => false,
        }
    }

    /// Opens the repository on the first destination whose config and key
    /// files open with `password`; returns it with that destination's name
    /// and config bytes.
    async fn open_first(
        dests: DestinationSet,
        password: &[u8],
        admission: &Admission,
    ) -> Result<(Self, String, Bytes)> {
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
            // The config and the key listing in one round trip.
            let (config, key_objects) = tokio::join!(
                backend.get_bounded(CONFIG_KEY, MAX_CONFIG_LEN),
                crate::repo::destinations::list_all(backend.as_ref(), ObjectKind::Key.prefix())
            );
            let config = match config {
                Ok(bytes) => bytes,
                Err(e) if e.kind == ErrorKind::NotFound => continue,
                // Larger than any config: damaged here, not unreachable.
                Err(e) if e.is_too_large() => {
                    tracing::warn!("{e}");
                    last_error = Some(e.into());
                    continue;
                }
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
            let key_objects = match key_objects {
                Ok(listed) => listed,
                Err(e) => {
                    last_error = Some(e);
                    continue;
                }
            };
            let opened = Self::open_on(
                &dests,
                &backend,
                config.clone(),
                key_objects,
                password,
                &admission.known_keys,
            )
            .await;
            match opened {
                Ok(repo) => return Ok((repo, backend.name().to_string(), config)),
                // The password is at fault, not the destination; or the
                // repository is of a format this build no longer reads.
                Err(e @ (Error::KeyRemoved { .. } | Error::RetiredFormat { .. })) => return Err(e),
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
        key_objects: Vec<lifeboat_backends::ObjectMeta>,
        password: &[u8],
        known_keys: &[KeyId],
    ) -> Result<Self> {
        let header = repo_config::read_header(&config)?;
        // Every key file requested at once: one round trip, not one each.
        let fetched = futures::future::join_all(
            key_objects
                .iter()
                .map(|meta| primary.get_bounded(&meta.key, MAX_KEY_FILE_LEN)),
        )
        .await;
        if key_objects.is_empty() {
            return Err(Error::format(
                format!("{}: keys/", primary.name()),
                "no key files (repository damaged)",
            ));
        }
        // A key file that does not verify or decode (damaged, or a newer
        // version's) is skipped with a warning: another one may still open.
        // Key files are tried in the order given, known ones first, then the
        // cheapest: each costs one key derivation.
        let mut decoded = Vec::with_capacity(key_objects.len());
        let mut unreadable = None;
        for (meta, fetched) in key_objects.into_iter().zip(fetched) {
            let bytes = match fetched {
                Ok(bytes) => bytes,
                // Removed since the listing (`key remove` elsewhere).
                Err(e) if e.kind == ErrorKind::NotFound => continue,
                // Larger than any key file: skipped like a damaged one.
                Err(e) if e.is_too_large() => {
                    tracing::warn!("{}: {} skipped: {e}", primary.name(), meta.key);
                    unreadable = Some(e.into());
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            match verify_named(primary.name(), &meta.key, ObjectKind::Key, &bytes)
                .and_then(|()| KeyFile::from_bytes(&bytes))
            {
                Ok(key_file) => decoded.push((meta, KeyId(storage_hash(&bytes)), key_file)),
                Err(e) => {
                    tracing::warn!("{}: {} skipped: {e}", primary.name(), meta.key);
                    unreadable = Some(e);
                }
            }
        }
        decoded.sort_by_key(|(_, key_id, key_file)| try_rank(key_id, &key_file.params, known_keys));
        let mut removed_key = None;
        let mut tried = false;
        for (meta, key_id, key_file) in decoded {
            let password = zeroize::Zeroizing::new(password.to_vec());
            let opened = tokio::task::spawn_blocking(move || key_file.open(&password, &header.id))
                .await
                .map_err(|e| Error::task_failed("key derivation thread", e))?;
            match opened {
                Ok(opened) => {
                    let (_, params) = repo_config::decode(&config, &opened.keys)?;
                    let repo = Repository {
                        dests: dests.clone(),
                        keys: Arc::new(opened.keys),
                        id: header.id,
                        params,
                        key_id,
                        cache: None,
                        tombstones: Arc::default(),
                        local_state: None,
                    };
                    // A key file `key remove` removed may linger on a
                    // destination not swept yet, or be put back by a
                    // provider under another name: by its name or its
                    // serial, its password must not open.
                    let removed = match repo.tombstones().await {
                        Ok(t) => t.contains(&meta.key) || t.revoked(&opened.serial),
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

    /// The same repository read from and written to the named destination
    /// alone (`--from`): nothing fails over to another. The metadata cache
    /// stays (every cached object is verified on use); a drill, which must
    /// prove the destination alone, also calls [`Repository::without_cache`].
    ///
    /// # Errors
    /// When the set has no such destination, or it was left out.
    pub fn only(&self, name: &str) -> Result<Self> {
        let mut alone = self.clone();
        alone.dests = self.dests.only(name)?;
        Ok(alone)
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
        let fetch = |b: Arc<dyn lifeboat_backends::Backend>| {
            let key = &key;
            async move { self.read_whole(b.as_ref(), kind, key).await }
        };
        let bytes = self
            .dests
            .read_verified(&key, fetch, |dest, bytes| {
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

    /// Reads, opens and verifies one blob located through `index`.
    ///
    /// # Errors
    /// [`Error::MissingBlob`] when unindexed; verification failures naming the pack.
    pub async fn read_blob(&self, index: &MasterIndex, id: &BlobId) -> Result<Vec<u8>> {
        let loc = index
            .lookup(id)
            .ok_or_else(|| Error::MissingBlob { blob: id.to_hex() })?;
        let entry = loc.entry(*id);
        let tree_cache = self
            .cache()
            .filter(|_| loc.blob_type == crate::format::pack::BlobType::Tree);
        if let Some(cache) = tree_cache {
            if let Some(sealed) = cache.tree_from_pack(&loc.pack, loc.offset, loc.length) {
                match open_blob(&self.keys, &loc.pack, &entry, &sealed) {
                    Ok(plain) => return Ok(plain),
                    Err(_) => cache.forget_tree_pack(&loc.pack),
                }
            }
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
            .get_verified(&key, range, |_, sealed| {
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

#[cfg(test)]
mod tests;
