//! Managing a repository's key files (its passwords): add, list, remove.
//!
//! Every change is made on every destination of the repository or on none:
//! all of them must be reachable before anything is written, a new key file is
//! written (and read back) everywhere before any old one is removed, and a
//! failure half-way is undone. A destination left with another set of keys
//! would open with a removed password, and `sync` would copy the old key file
//! back to the others.
//!
//! Callers hold a lock: shared for [`add_key`], exclusive for [`remove_key`]
//! and [`change_password`], so two removals cannot together remove every key.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use lifeboat_backends::{Backend, ErrorKind};

use crate::error::Error;
use crate::format::ids::{storage_hash, KeyId, ObjectKind, MAX_KEY_FILE_LEN};
use crate::format::keys::{KdfParams, KeyFile, KeyInfo};
use crate::repo::{verify_named, Repository};

/// Why a key operation failed. Nothing was changed unless the message says so.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// A destination could not be reached or listed before anything was written.
    #[error("destination {destination} cannot be reached ({reason}); keys are changed on every destination at once, so nothing was changed")]
    Unreachable {
        /// The destination.
        destination: String,
        /// What failed.
        reason: String,
    },
    /// A destination is not this repository (or could not be proven to be).
    #[error("destination {destination} {reason}; keys are changed on every destination at once, so nothing was changed (leave it out with -d)")]
    LeftOut {
        /// The destination.
        destination: String,
        /// Why it was left out.
        reason: String,
    },
    /// A write or delete failed part way; what was done has been undone.
    #[error("{action} failed on destination {destination} ({reason}); {outcome}")]
    Storage {
        /// What was being done (`writing key 1a2b3c4d`, …).
        action: String,
        /// The destination that failed.
        destination: String,
        /// The failure.
        reason: String,
        /// What state the repository is left in.
        outcome: String,
    },
    /// A new key file does not read back intact.
    #[error("key {key} does not read back intact from destination {destination}; it was removed again, nothing was changed")]
    ReadBack {
        /// The new key's short id.
        key: String,
        /// The destination.
        destination: String,
    },
    /// The id is not a hex prefix.
    #[error("{0:?} is not a key id: give hex digits of an id from `lifeboat key list`")]
    BadId(String),
    /// No key matches the prefix.
    #[error("no key matches {0:?}; list them with `lifeboat key list`")]
    NoSuchKey(String),
    /// Several keys match the prefix.
    #[error("key id {0:?} is ambiguous; give more hex digits")]
    Ambiguous(String),
    /// Removing the key would leave a destination without any usable key.
    #[error("key {key} is the last usable key on {destination}: removing it would lock everyone out of the repository; add another with `lifeboat key add` first")]
    LastKey {
        /// The key's short id.
        key: String,
        /// The destination that would be left without a key.
        destination: String,
    },
    /// The key is the one the given password opened.
    #[error("key {0} is the one your password opened; pass --force to remove it anyway, or use `lifeboat key passwd` to change the password")]
    InUse(String),
    /// `passwd` added the new key but could not remove the old one.
    #[error("the new key {new} was added, but removing the old key {old} failed: {reason}; both passwords open the repository until you run `lifeboat key remove --force {old}`")]
    PasswdIncomplete {
        /// The new key's short id.
        new: String,
        /// The old key's short id.
        old: String,
        /// Why the removal failed.
        reason: String,
    },
    /// Any other engine failure.
    #[error(transparent)]
    Engine(#[from] Error),
}

/// Result alias for key operations.
pub type KeyResult<T> = std::result::Result<T, KeyError>;

/// One key file as [`list_keys`] shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyEntry {
    /// Its id (the name under `keys/`).
    pub id: KeyId,
    /// Key file version, when it decodes.
    pub version: Option<u8>,
    /// Its Argon2id parameters, when it decodes.
    pub params: Option<KdfParams>,
    /// Who made it and when, and its serial (when its info opens).
    pub info: Option<KeyInfo>,
    /// True for the key the repository was opened with.
    pub in_use: bool,
    /// The destinations that hold it.
    pub destinations: Vec<String>,
    /// Why it cannot be read, when it cannot.
    pub problem: Option<String>,
}

/// What [`list_keys`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyListing {
    /// Every key file on any reachable destination, oldest first.
    pub keys: Vec<KeyEntry>,
    /// Destinations that could not be listed, with the reason.
    pub unreachable: Vec<(String, String)>,
}

/// The key files on every destination; fails naming the first destination
/// that is unreachable (or was dropped earlier in this run).
async fn listings(repo: &Repository) -> KeyResult<Vec<(Arc<dyn Backend>, Vec<KeyId>)>> {
    let dests = repo.destinations();
    if let Some(left) = dests.left_out().first() {
        return Err(KeyError::LeftOut {
            destination: left.backend.name().into(),
            reason: left.reason.to_string(),
        });
    }
    let missed = dests.missed();
    let mut out = Vec::new();
    for backend in dests.backends() {
        if let Some((_, why)) = missed.iter().find(|(name, _)| name == backend.name()) {
            return Err(KeyError::Unreachable {
                destination: backend.name().into(),
                reason: why.clone(),
            });
        }
        let names = list_key_ids(backend.as_ref())
            .await
            .map_err(|e| KeyError::Unreachable {
                destination: backend.name().into(),
                reason: e.to_string(),
            })?;
        out.push((backend.clone(), names));
    }
    Ok(out)
}

async fn list_key_ids(backend: &dyn Backend) -> crate::Result<Vec<KeyId>> {
    let metas = crate::repo::destinations::list_all(backend, ObjectKind::Key.prefix()).await?;
    Ok(metas
        .iter()
        .filter_map(|m| ObjectKind::Key.name_of(&m.key)?.parse().ok())
        .collect())
}

/// Reads one key file from one destination and verifies its name.
async fn read_key(backend: &dyn Backend, id: &KeyId) -> crate::Result<(Bytes, KeyFile)> {
    let key = ObjectKind::Key.key(&id.to_hex());
    let bytes = backend.get_bounded(&key, MAX_KEY_FILE_LEN).await?;
    verify_named(backend.name(), &key, ObjectKind::Key, &bytes)?;
    let file = KeyFile::from_bytes(&bytes)?;
    Ok((bytes, file))
}

/// Lists the key files on every reachable destination.
///
/// # Errors
/// When no destination can be listed.
pub async fn list_keys(repo: &Repository) -> KeyResult<KeyListing> {
    let mut listing = KeyListing::default();
    let mut holders: BTreeMap<KeyId, Vec<Arc<dyn Backend>>> = BTreeMap::new();
    let missed = repo.destinations().missed();
    for backend in repo.destinations().backends() {
        if let Some((_, why)) = missed.iter().find(|(name, _)| name == backend.name()) {
            listing
                .unreachable
                .push((backend.name().into(), why.clone()));
            continue;
        }
        match list_key_ids(backend.as_ref()).await {
            Ok(ids) => {
                for id in ids {
                    holders.entry(id).or_default().push(backend.clone());
                }
            }
            Err(e) => listing
                .unreachable
                .push((backend.name().into(), e.to_string())),
        }
    }
    if listing.unreachable.len() == repo.destinations().backends().len() {
        let (destination, reason) = listing.unreachable.swap_remove(0);
        return Err(KeyError::Unreachable {
            destination,
            reason,
        });
    }
    for (id, backends) in holders {
        let mut entry = KeyEntry {
            id,
            version: None,
            params: None,
            info: None,
            in_use: id == repo.key_id(),
            destinations: backends.iter().map(|b| b.name().to_string()).collect(),
            problem: None,
        };
        // The first copy that verifies; else the last failure.
        for backend in &backends {
            match read_key(backend.as_ref(), &id).await {
                Ok((_, file)) => {
                    entry.version = Some(crate::format::keys::KEY_FILE_VERSION);
                    entry.params = Some(file.params);
                    match file.info(repo.keys(), &repo.id()) {
                        Ok(info) => {
                            entry.info = Some(info);
                            entry.problem = None;
                        }
                        Err(e) => entry.problem = Some(e.to_string()),
                    }
                    break;
                }
                Err(e) => entry.problem = Some(format!("{}: {e}", backend.name())),
            }
        }
        listing.keys.push(entry);
    }
    listing
        .keys
        .sort_by_key(|k| (k.info.as_ref().map_or(i64::MIN, |i| i.created), k.id));
    Ok(listing)
}

/// Adds a key file for `password` on every destination; returns its id.
///
/// # Errors
/// [`KeyError::Unreachable`] before anything is written when a destination
/// cannot be listed; [`KeyError::Storage`] or [`KeyError::ReadBack`] when a
/// write fails part way (the new key is then removed from every destination).
pub async fn add_key(repo: &Repository, password: &[u8], params: KdfParams) -> KeyResult<KeyId> {
    let targets = listings(repo).await?;
    let keys = repo.keys().clone();
    let repo_id = repo.id();
    let password = zeroize::Zeroizing::new(password.to_vec());
    let file =
        tokio::task::spawn_blocking(move || KeyFile::create(&keys, &password, &repo_id, params))
            .await
            .map_err(|e| Error::task_failed("key derivation thread", e))??;
    let bytes = Bytes::from(file.to_bytes());
    let id = KeyId(storage_hash(&bytes));
    let key = ObjectKind::Key.key(&id.to_hex());
    let mut written: Vec<Arc<dyn Backend>> = Vec::new();
    for (backend, _) in &targets {
        let failure = match backend.put(&key, bytes.clone()).await {
            Ok(()) => match read_key(backend.as_ref(), &id).await {
                Ok(_) => None,
                Err(_) => Some(KeyError::ReadBack {
                    key: id.short(),
                    destination: backend.name().into(),
                }),
            },
            Err(e) if e.kind == ErrorKind::AlreadyExists => None,
            Err(e) => Some(KeyError::Storage {
                action: format!("writing key {}", id.short()),
                destination: backend.name().into(),
                reason: e.to_string(),
                outcome: String::new(),
            }),
        };
        written.push(backend.clone());
        if let Some(failure) = failure {
            let undone = delete_from(&written, &key).await;
            return Err(with_outcome(
                failure,
                if undone {
                    "the new key was removed again: nothing was changed".into()
                } else {
                    format!(
                        "the new key {} could not be removed everywhere: remove it with `lifeboat key remove {}`",
                        id.short(),
                        id.short()
                    )
                },
            ));
        }
    }
    Ok(id)
}

fn with_outcome(error: KeyError, text: String) -> KeyError {
    match error {
        KeyError::Storage {
            action,
            destination,
            reason,
            ..
        } => KeyError::Storage {
            action,
            destination,
            reason,
            outcome: text,
        },
        other => other,
    }
}

/// Deletes `key` from each backend; true when it is gone from all of them.
async fn delete_from(backends: &[Arc<dyn Backend>], key: &str) -> bool {
    let mut all = true;
    for backend in backends {
        match backend.delete(key).await {
            Ok(()) => {}
            Err(e) if e.kind == ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!("could not undo {key} on {}: {e}", backend.name());
                all = false;
            }
        }
    }
    all
}

/// Resolves a full id or unique hex prefix among `ids`.
fn resolve(prefix: &str, ids: impl IntoIterator<Item = KeyId>) -> KeyResult<KeyId> {
    if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(KeyError::BadId(prefix.into()));
    }
    let lower = prefix.to_ascii_lowercase();
    let mut matches: Vec<KeyId> = ids
        .into_iter()
        .filter(|id| id.to_hex().starts_with(&lower))
        .collect();
    matches.sort();
    matches.dedup();
    match matches.as_slice() {
        [] => Err(KeyError::NoSuchKey(prefix.into())),
        [one] => Ok(*one),
        _ => Err(KeyError::Ambiguous(prefix.into())),
    }
}

/// Removes the key `prefix` (an id or unique prefix) from every destination;
/// returns its id. Refuses the last usable key of any destination, and the
/// key in use unless `force`.
///
/// # Errors
/// [`KeyError::Unreachable`] before anything is changed; [`KeyError::BadId`],
/// [`KeyError::NoSuchKey`], [`KeyError::Ambiguous`], [`KeyError::InUse`],
/// [`KeyError::LastKey`]; [`KeyError::Storage`] when a deletion fails part
/// way (the key is then put back where it was removed).
pub async fn remove_key(repo: &Repository, prefix: &str, force: bool) -> KeyResult<KeyId> {
    let targets = listings(repo).await?;
    let id = resolve(prefix, targets.iter().flat_map(|(_, ids)| ids.clone()))?;
    // Every destination must keep another key file that verifies and decodes.
    let mut original = None;
    for (backend, ids) in &targets {
        let mut usable = false;
        for other in ids.iter().filter(|other| **other != id) {
            if read_key(backend.as_ref(), other).await.is_ok() {
                usable = true;
                break;
            }
        }
        if !usable {
            return Err(KeyError::LastKey {
                key: id.short(),
                destination: backend.name().into(),
            });
        }
        if original.is_none() && ids.contains(&id) {
            let key = ObjectKind::Key.key(&id.to_hex());
            let bytes = backend
                .get_bounded(&key, MAX_KEY_FILE_LEN)
                .await
                .map_err(Error::from)?;
            original = Some(bytes);
        }
    }
    if id == repo.key_id() && !force {
        return Err(KeyError::InUse(id.short()));
    }
    let key = ObjectKind::Key.key(&id.to_hex());
    let mut removed: Vec<Arc<dyn Backend>> = Vec::new();
    for (backend, ids) in &targets {
        if !ids.contains(&id) {
            continue;
        }
        match backend.delete(&key).await {
            Ok(()) => removed.push(backend.clone()),
            Err(e) if e.kind == ErrorKind::NotFound => {}
            Err(e) => {
                let restored = match &original {
                    Some(bytes) => restore_to(&removed, &key, bytes).await,
                    None => removed.is_empty(),
                };
                return Err(KeyError::Storage {
                    action: format!("removing key {}", id.short()),
                    destination: backend.name().into(),
                    reason: e.to_string(),
                    outcome: if restored {
                        "it was put back where it had been removed: nothing was changed".into()
                    } else {
                        format!(
                            "it is removed from some destinations only: run `lifeboat key remove {}` again",
                            id.short()
                        )
                    },
                });
            }
        }
    }
    // A tombstone, so a destination outside this selection that still holds
    // the key file neither gets it copied back by sync nor opens with it.
    // It names the key file's serial too: a copy a provider puts back under
    // another name (or with bytes appended) still does not open.
    let serial = original
        .as_deref()
        .and_then(|bytes| KeyFile::from_bytes(bytes).ok())
        .and_then(|file| file.info(repo.keys(), &repo.id()).ok())
        .map(|info| info.serial);
    let record = match serial {
        Some(serial) => crate::format::deletion::DeletionRecord::key_removal(key, serial),
        None => crate::format::deletion::DeletionRecord::new("key remove", vec![key]),
    };
    crate::repo::deletions::write(repo, &record).await?;
    repo.reload_tombstones().await;
    Ok(id)
}

/// Puts `bytes` back under `key` on each backend; true when all succeeded.
async fn restore_to(backends: &[Arc<dyn Backend>], key: &str, bytes: &Bytes) -> bool {
    let mut all = true;
    for backend in backends {
        match backend.put(key, bytes.clone()).await {
            Ok(()) => {}
            Err(e) if e.kind == ErrorKind::AlreadyExists => {}
            Err(e) => {
                tracing::warn!("could not put {key} back on {}: {e}", backend.name());
                all = false;
            }
        }
    }
    all
}

/// Changes the password: adds a key for `new_password` everywhere, then
/// removes the key in use everywhere. Returns the new and the removed key ids.
///
/// # Errors
/// As [`add_key`] (nothing changed); [`KeyError::PasswdIncomplete`] when the
/// new key was added but the old one could not be removed.
pub async fn change_password(
    repo: &Repository,
    new_password: &[u8],
    params: KdfParams,
) -> KeyResult<(KeyId, KeyId)> {
    let old = repo.key_id();
    let new = add_key(repo, new_password, params).await?;
    match remove_key(repo, &old.to_hex(), true).await {
        Ok(_) => Ok((new, old)),
        Err(e) => Err(KeyError::PasswdIncomplete {
            new: new.short(),
            old: old.short(),
            reason: e.to_string(),
        }),
    }
}

/// The KDF parameters of the key in use (the default for a new key).
///
/// # Errors
/// When the key file cannot be read from any destination.
pub async fn params_in_use(repo: &Repository) -> KeyResult<KdfParams> {
    let id = repo.key_id();
    let mut last = None;
    for backend in repo.destinations().read_order() {
        match read_key(backend.as_ref(), &id).await {
            Ok((_, file)) => return Ok(file.params),
            Err(e) => last = Some(e),
        }
    }
    Err(last
        .unwrap_or_else(|| {
            Error::no_destination("read of the repository config", "no destination to read")
        })
        .into())
}

#[cfg(test)]
#[path = "key_admin_tests.rs"]
mod tests;
