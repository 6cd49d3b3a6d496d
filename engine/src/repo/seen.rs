//! Rollback detection: what each destination listed before, remembered on
//! this machine.
//!
//! Nothing signs a repository's list of snapshots (FORMAT.md §10), so a
//! provider, or anyone who can replace a destination with an older copy of
//! itself, can withhold snapshots and deletion records without a reader
//! noticing: the objects that remain still verify. [`LocalState`] keeps, per
//! repository, in a directory the caller chooses (the CLI's state directory),
//! what each destination listed:
//!
//! - the snapshots it listed (only snapshots that opened with the
//!   repository's keys, so a name a listing made up is never remembered);
//! - the deletion records it listed (only records that opened);
//! - every snapshot a deletion record removes, from any destination: such a
//!   snapshot is legitimately gone and is dropped from the memory.
//!
//! Whenever the snapshots are listed, a destination that no longer lists a
//! snapshot it listed before, with no deletion record covering it, or no
//! longer lists a deletion record it listed before (records are never
//! removed), is **rolled back**: the run gets one warning naming the
//! destination and what it lost ([`Rollback`]), `check` fails and `status`
//! shows it. `lifeboat sync` copying the objects back ends it; for a snapshot
//! no destination holds any more, `lifeboat forget ID` writes a deletion
//! record that ends it.
//!
//! What it cannot see: the first open on a machine (or with a new or
//! removed state directory) has nothing to compare with, so a destination
//! rolled back before then passes; so does a destination that is rolled back
//! together with every snapshot this machine never saw listed. It is local
//! memory, never a repository format: other machines keep their own.
//!
//! The file is `<dir>/seen.json` (JSON, owner-only, directory 0700): per
//! destination, filed under its identity (the canonical location the caller
//! gives, else the backend's location), the snapshot ids and deletion record
//! names it listed; and the ids of snapshots deletion records removed.
//! It holds ids and locations, no secrets. Writes re-read the file under an
//! advisory lock (`seen.lock`) and write the union of what is there and what
//! this run learned to a temporary file, fsynced and renamed over the old
//! one, so two commands running at once both add what they saw. The memory
//! only grows from successful listings: a destination that failed to list
//! is neither compared nor remembered. A damaged or unreadable file is a
//! warning (a damaged one is set aside as `seen.json.damaged` and memory
//! starts again), never a reason for a command to fail.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use lifeboat_backends::Backend;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::format::ids::SnapshotId;
use crate::repo::deletions::Tombstones;
use crate::repo::Repository;

/// The state file's name in the state directory.
pub const STATE_FILE: &str = "seen.json";
/// The advisory lock that serialises updates of [`STATE_FILE`].
const LOCK_FILE: &str = "seen.lock";
/// The state file's format version.
const VERSION: u32 = 1;

/// Why the state file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// A file system call failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid state.
    #[error("{path} is damaged: {source}")]
    Damaged {
        /// The file.
        path: PathBuf,
        /// Why it does not parse.
        #[source]
        source: serde_json::Error,
    },
    /// The file was written by a newer Lifeboat.
    #[error("{path} has version {version}, newer than this lifeboat knows ({VERSION}); it is left alone")]
    Newer {
        /// The file.
        path: PathBuf,
        /// Its version.
        version: u32,
    },
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> StateError + '_ {
    move |source| StateError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The contents of the state file. Merging two is a union: what one run
/// learned is never lost to another's write.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeenFile {
    /// Format version (1).
    #[serde(default)]
    pub version: u32,
    /// Per destination identity (canonical location): what it listed.
    #[serde(default)]
    pub destinations: BTreeMap<String, SeenDestination>,
    /// Snapshots (hex ids) that deletion records removed: legitimately gone.
    #[serde(default)]
    pub removed_snapshots: BTreeSet<String>,
}

/// What one destination listed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeenDestination {
    /// The name it had when last seen (for people reading the file).
    #[serde(default)]
    pub name: String,
    /// Snapshots (hex ids) it listed, that opened, and that no deletion
    /// record removed.
    #[serde(default)]
    pub snapshots: BTreeSet<String>,
    /// Deletion records (names) it listed that opened.
    #[serde(default)]
    pub deletion_records: BTreeSet<String>,
}

impl SeenFile {
    /// Adds everything `other` holds; snapshots either knows as removed are
    /// dropped from every destination.
    pub fn merge(&mut self, other: &SeenFile) {
        self.version = self.version.max(other.version);
        for (identity, theirs) in &other.destinations {
            let ours = self.destinations.entry(identity.clone()).or_default();
            if !theirs.name.is_empty() {
                ours.name.clone_from(&theirs.name);
            }
            ours.snapshots.extend(theirs.snapshots.iter().cloned());
            ours.deletion_records
                .extend(theirs.deletion_records.iter().cloned());
        }
        self.removed_snapshots
            .extend(other.removed_snapshots.iter().cloned());
        let removed = &self.removed_snapshots;
        for d in self.destinations.values_mut() {
            d.snapshots.retain(|s| !removed.contains(s));
        }
    }

    /// True when nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.destinations.is_empty() && self.removed_snapshots.is_empty()
    }
}

/// What this run saw.
#[derive(Default)]
struct Run {
    /// The latest listing of each destination (by name).
    listings: BTreeMap<String, Listing>,
    /// Snapshots that opened with the keys.
    verified: BTreeSet<String>,
    /// Snapshots deletion records remove.
    removed: BTreeSet<String>,
    /// Deletion records that opened.
    records: BTreeSet<String>,
    /// The current finding for each rolled-back destination (by name).
    rollbacks: BTreeMap<String, Rollback>,
    /// Findings already reported in this run.
    warned: HashSet<String>,
    /// The state file's problem was already reported.
    file_warned: bool,
}

/// The rollback memory of one repository on this machine (see the module
/// documentation). Shared by clones of a [`Repository`].
pub struct LocalState {
    dir: PathBuf,
    identities: BTreeMap<String, String>,
    hook: Option<RollbackHook>,
    run: Mutex<Run>,
}

impl std::fmt::Debug for LocalState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalState")
            .field("dir", &self.dir)
            .field("identities", &self.identities)
            .finish_non_exhaustive()
    }
}

impl LocalState {
    /// The memory kept in `dir` (one directory per repository; created on
    /// first write, owner-only).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        LocalState {
            dir: dir.into(),
            identities: BTreeMap::new(),
            hook: None,
            run: Mutex::default(),
        }
    }

    /// Files each destination (by name) under the given identity, such as its
    /// canonical location, so that a renamed destination keeps its memory
    /// and two destinations that shared a name never mix theirs. A
    /// destination not named here is filed under its backend's location.
    pub fn with_identities(mut self, identities: BTreeMap<String, String>) -> Self {
        self.identities = identities;
        self
    }

    /// Calls `hook` once per run for each rolled-back destination (and again
    /// if what it lost changes), instead of logging a warning.
    pub fn on_rollback(mut self, hook: impl Fn(&Rollback) + Send + Sync + 'static) -> Self {
        self.hook = Some(Arc::new(hook));
        self
    }

    /// The state file.
    pub fn path(&self) -> PathBuf {
        self.dir.join(STATE_FILE)
    }

    fn run(&self) -> MutexGuard<'_, Run> {
        self.run.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The identity `backend`'s memory is filed under.
    pub fn identity(&self, backend: &dyn Backend) -> String {
        self.identities
            .get(backend.name())
            .cloned()
            .unwrap_or_else(|| backend.location())
    }

    /// What the state file holds: empty when there is none; a damaged,
    /// unreadable or newer file reads as empty, with one warning per run.
    pub fn load(&self) -> SeenFile {
        match read_file(&self.path()) {
            Ok(file) => file,
            Err(e) => {
                let mut run = self.run();
                if !std::mem::replace(&mut run.file_warned, true) {
                    tracing::warn!(
                        "rollback detection: {e}; destinations are not compared with what they \
                         listed before in this run"
                    );
                }
                SeenFile::default()
            }
        }
    }

    /// What `listings` would report as rolled back, given the records in
    /// `tombstones` and the memory; reports and remembers nothing.
    pub fn findings(&self, listings: &[Listing], tombstones: &Tombstones) -> Vec<Rollback> {
        let before = self.load();
        let removed = Self::removed(&before, tombstones);
        detect(&before, listings, &removed, &self.path())
    }

    fn removed(before: &SeenFile, tombstones: &Tombstones) -> BTreeSet<String> {
        let mut removed: BTreeSet<String> =
            tombstones.snapshot_names().map(str::to_string).collect();
        removed.extend(before.removed_snapshots.iter().cloned());
        removed
    }

    /// Compares this run's listings with the memory, reports rolled-back
    /// destinations, and remembers what the listings show.
    pub fn observe(&self, listings: Vec<Listing>, tombstones: &Tombstones) {
        let before = self.load();
        let removed = Self::removed(&before, tombstones);
        let found = detect(&before, &listings, &removed, &self.path());
        let (update, fresh) = {
            let mut run = self.run();
            run.removed.extend(removed);
            run.records.extend(tombstones.records().iter().cloned());
            for listing in &listings {
                run.rollbacks.remove(&listing.name);
                run.listings.insert(listing.name.clone(), listing.clone());
            }
            let mut fresh = Vec::new();
            for rollback in found {
                if run.warned.insert(rollback.to_string()) {
                    fresh.push(rollback.clone());
                }
                run.rollbacks.insert(rollback.destination.clone(), rollback);
            }
            let listings: Vec<Listing> = run.listings.values().cloned().collect();
            (
                learned(&listings, &run.verified, &run.removed, &run.records),
                fresh,
            )
        };
        for rollback in &fresh {
            match &self.hook {
                Some(hook) => hook(rollback),
                None => tracing::warn!("{rollback}"),
            }
        }
        self.save(&update);
    }

    /// Remembers that the snapshots `ids` opened with the repository's keys:
    /// each destination whose listing showed one now remembers it.
    pub fn remember(&self, ids: impl IntoIterator<Item = SnapshotId>) {
        let update = {
            let mut run = self.run();
            let before = run.verified.len();
            run.verified.extend(ids.into_iter().map(|id| id.to_hex()));
            if run.verified.len() == before || run.listings.is_empty() {
                return;
            }
            let listings: Vec<Listing> = run.listings.values().cloned().collect();
            learned(&listings, &run.verified, &run.removed, &run.records)
        };
        self.save(&update);
    }

    /// Remembers that deletion records remove the snapshots `ids` (written
    /// by this run's `forget`).
    pub fn forgotten(&self, ids: impl IntoIterator<Item = SnapshotId>) {
        let removed: BTreeSet<String> = ids.into_iter().map(|id| id.to_hex()).collect();
        self.run().removed.extend(removed.iter().cloned());
        self.save(&SeenFile {
            version: VERSION,
            removed_snapshots: removed,
            ..Default::default()
        });
    }

    /// The rolled-back destinations found in this run, by name.
    pub fn rollbacks(&self) -> Vec<Rollback> {
        self.run().rollbacks.values().cloned().collect()
    }

    /// Adds `update` to the file; a failure is a warning.
    fn save(&self, update: &SeenFile) {
        if let Err(e) = self.try_save(update) {
            let mut run = self.run();
            if !std::mem::replace(&mut run.file_warned, true) {
                tracing::warn!(
                    "rollback detection: cannot update the state file: {e}; what this run saw \
                     is not remembered"
                );
            }
        }
    }

    fn try_save(&self, update: &SeenFile) -> std::result::Result<(), StateError> {
        // Most runs learn nothing new: then nothing is locked, created or
        // written.
        if let Ok(current) = read_file(&self.path()) {
            if !changes(&current, update, self.path().exists()) {
                return Ok(());
            }
        }
        lifeboat_backends::private::create_dir_all(&self.dir).map_err(io_error(&self.dir))?;
        let lock_path = self.dir.join(LOCK_FILE);
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(lifeboat_backends::private::FILE_MODE)
            .open(&lock_path)
            .map_err(io_error(&lock_path))?;
        // Serialises read-merge-write between processes; released on close.
        lock.lock().map_err(io_error(&lock_path))?;
        let path = self.path();
        let (mut merged, existed) = match read_file(&path) {
            Ok(file) => (file, path.exists()),
            Err(e @ StateError::Newer { .. }) => return Err(e),
            Err(StateError::Damaged { .. }) => {
                // Kept for whoever wants to look; memory starts again.
                let aside = self.dir.join(format!("{STATE_FILE}.damaged"));
                std::fs::rename(&path, &aside).map_err(io_error(&path))?;
                (SeenFile::default(), false)
            }
            Err(e) => return Err(e),
        };
        if !changes(&merged, update, existed) {
            return Ok(());
        }
        merged.merge(update);
        merged.version = VERSION;
        write_atomic(&self.dir, &path, &merged)
    }
}

/// True when adding `update` to `current` (a file that `existed` or not)
/// changes what is remembered, so that it must be written.
fn changes(current: &SeenFile, update: &SeenFile, existed: bool) -> bool {
    let mut merged = current.clone();
    merged.merge(update);
    let same = merged.destinations == current.destinations
        && merged.removed_snapshots == current.removed_snapshots;
    !(same && (existed || merged.is_empty()))
}

fn read_file(path: &Path) -> std::result::Result<SeenFile, StateError> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(SeenFile::default()),
        Err(e) => return Err(io_error(path)(e)),
    };
    let file: SeenFile = serde_json::from_slice(&bytes).map_err(|source| StateError::Damaged {
        path: path.to_path_buf(),
        source,
    })?;
    if file.version > VERSION {
        return Err(StateError::Newer {
            path: path.to_path_buf(),
            version: file.version,
        });
    }
    Ok(file)
}

/// Writes `file` to `path` by a temporary file in `dir`, fsynced, renamed
/// over `path`, then fsyncs `dir`.
fn write_atomic(dir: &Path, path: &Path, file: &SeenFile) -> std::result::Result<(), StateError> {
    let json = serde_json::to_vec_pretty(file).map_err(|source| StateError::Damaged {
        path: path.to_path_buf(),
        source,
    })?;
    let tmp = dir.join(format!("{STATE_FILE}.{}.tmp", std::process::id()));
    let written = (|| {
        let mut out = lifeboat_backends::private::create_file(&tmp)?;
        out.write_all(&json)?;
        out.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written.map_err(io_error(path))
}

impl Repository {
    /// Keeps the rollback memory in `state` (see [`crate::repo::seen`]):
    /// from now on every listing of the snapshots compares each destination
    /// with what it listed before.
    pub fn with_local_state(mut self, state: LocalState) -> Self {
        self.local_state = Some(Arc::new(state));
        self
    }

    /// The rollback memory, when attached.
    pub fn local_state(&self) -> Option<&LocalState> {
        self.local_state.as_deref()
    }

    /// The destinations found rolled back so far in this run (empty without
    /// a local state, or before the snapshots were listed).
    pub fn rollbacks(&self) -> Vec<Rollback> {
        let mut found = self
            .local_state
            .as_ref()
            .map(|s| s.rollbacks())
            .unwrap_or_default();
        found.sort_by_key(|r| self.dests.position(&r.destination));
        found
    }

    /// The snapshot a rolled-back destination lost that `spec` (a full id
    /// or a prefix of at least 4 hex digits) names, so that `forget` can
    /// record a snapshot no destination lists any more as removed.
    ///
    /// # Errors
    /// [`Error::AmbiguousSnapshot`] when the prefix names several.
    pub fn find_rolled_back(&self, spec: &str) -> Result<Option<SnapshotId>> {
        if spec.len() < 4 || !spec.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(None);
        }
        let spec = spec.to_ascii_lowercase();
        let found: BTreeSet<SnapshotId> = self
            .rollbacks()
            .iter()
            .flat_map(|r| r.snapshots.iter().copied())
            .filter(|id| id.to_hex().starts_with(&spec))
            .collect();
        match found.len() {
            0 => Ok(None),
            1 => Ok(found.into_iter().next()),
            _ => Err(Error::AmbiguousSnapshot(spec)),
        }
    }

    /// Compares each destination's snapshot listing with the memory;
    /// returns the deletion records to filter the listing with.
    ///
    /// # Errors
    /// When deletion records must be read again and cannot be.
    pub(crate) async fn observe_snapshot_listings(
        &self,
        each: &[(Arc<dyn Backend>, BTreeSet<String>)],
        tombstones: Arc<Tombstones>,
    ) -> Result<Arc<Tombstones>> {
        let Some(state) = &self.local_state else {
            return Ok(tombstones);
        };
        let listings = |tombstones: &Tombstones| -> Vec<Listing> {
            each.iter()
                .map(|(backend, names)| Listing {
                    name: backend.name().to_string(),
                    identity: state.identity(backend.as_ref()),
                    snapshots: names.clone(),
                    records: tombstones.listed_by(backend.name()).cloned(),
                })
                .collect()
        };
        let mut tombstones = tombstones;
        if !state
            .findings(&listings(&tombstones), &tombstones)
            .is_empty()
        {
            // The records were read when the repository was opened: a forget
            // or prune elsewhere since then may have written the record that
            // removes what a listing now lacks. Read them again before
            // calling anything rolled back.
            self.reload_tombstones().await;
            tombstones = self.tombstones().await?;
        }
        state.observe(listings(&tombstones), &tombstones);
        Ok(tombstones)
    }

    /// Remembers that the snapshots `ids` opened (see [`LocalState::remember`]).
    pub(crate) fn remember_snapshots(&self, ids: impl IntoIterator<Item = SnapshotId>) {
        if let Some(state) = &self.local_state {
            state.remember(ids);
        }
    }

    /// After a backup committed snapshot `id`: lists the snapshots again so
    /// that every destination that now lists it remembers it (it opened: this
    /// run sealed it). Without it the newest snapshot would be remembered
    /// only by the next command that lists, and a destination rolled back
    /// before then would lose it unnoticed. A failed listing changes
    /// nothing of the backup.
    pub(crate) async fn relist_committed(&self, id: SnapshotId) {
        if self.local_state.is_none() {
            return;
        }
        self.remember_snapshots([id]);
        if let Err(e) = self.snapshot_names().await {
            tracing::debug!("listing the snapshots after the backup: {e}");
        }
    }

    /// Remembers that a deletion record now removes `ids`.
    pub(crate) fn note_forgotten(&self, ids: &[SnapshotId]) {
        if let Some(state) = &self.local_state {
            state.forgotten(ids.iter().copied());
        }
    }
}

mod rollback;
use rollback::RollbackHook;
pub use rollback::{detect, learned, Listing, Rollback};

#[cfg(test)]
mod tests;
