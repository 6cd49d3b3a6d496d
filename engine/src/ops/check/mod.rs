//! Check: verify every destination, and say what each lost and whether a good
//! copy exists elsewhere.
//!
//! First the repository's shape is read with failover (index files,
//! snapshots, trees): what every destination should hold. Then each
//! destination is compared with it: objects missing, objects damaged (pack
//! headers against the index; with `read_data` every byte: object hash, AEAD
//! and blob ids), and packs nothing references. A damaged or missing copy is
//! *healable* when another destination holds a good one (`sync --repair`
//! copies it back); when none does it is *lost*, and the check names the
//! snapshots and files that depend on it. Nothing stops at the first problem.

mod destination;
mod logical;
mod subset;

use std::collections::HashSet;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

pub use subset::Subset;

use crate::error::Result;
use crate::format::ids::{BlobId, ObjectKind, PackId, SnapshotId};
use crate::repo::seen::Rollback;
use crate::repo::Repository;
use destination::DestinationResult;

/// What to check.
#[derive(Debug, Clone, Default)]
pub struct CheckOptions {
    /// Read and verify every byte of every object.
    pub read_data: bool,
    /// Read in full only this part of the objects (implies reading data).
    pub subset: Option<Subset>,
    /// Check only this destination (the others are still listed, to tell
    /// whether a damaged object can be healed).
    pub only: Option<String>,
}

impl CheckOptions {
    /// True when some objects are read in full.
    pub fn reads_packs(&self) -> bool {
        self.read_data || self.subset.is_some()
    }

    /// True when the object with storage key `key` is read in full.
    pub fn reads(&self, key: &str) -> bool {
        if self.read_data {
            return true;
        }
        let name = key.rsplit('/').next().unwrap_or(key);
        self.subset.is_some_and(|s| s.selects(name))
    }
}

/// What is wrong with an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    /// The destination does not hold it.
    Missing,
    /// The destination holds wrong bytes.
    Corrupt,
    /// The destination failed to return it.
    Unreadable,
    /// No destination holds it intact, or the repository's structure is
    /// broken (a tree that references an unindexed blob).
    Lost,
}

impl ProblemKind {
    /// A word for tables and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            ProblemKind::Missing => "missing",
            ProblemKind::Corrupt => "corrupt",
            ProblemKind::Unreadable => "unreadable",
            ProblemKind::Lost => "lost",
        }
    }
}

/// One problem found, named by its object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The object: `pack <id>`, `index <id>`, `snapshot <id>`, `key <id>`,
    /// `config`, `tree <id>`, `blob <id>`.
    pub object: String,
    /// The storage key, when the problem is one stored object.
    pub key: Option<String>,
    /// The destination it concerns; `None` for the repository as a whole.
    pub destination: Option<String>,
    /// What kind of problem.
    pub kind: ProblemKind,
    /// What is wrong with it.
    pub message: String,
    /// Destinations that hold a good copy (empty: not healable).
    pub good_copies: Vec<String>,
}

impl Problem {
    /// True when another destination holds a good copy.
    pub fn healable(&self) -> bool {
        !self.good_copies.is_empty()
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(d) = &self.destination {
            write!(f, "{d}: ")?;
        }
        write!(f, "{}: {}", self.object, self.message)?;
        if self.healable() {
            write!(f, " (healable from {})", self.good_copies.join(", "))
        } else if self.destination.is_some() {
            write!(f, " (LOST: no destination holds a good copy)")
        } else {
            Ok(())
        }
    }
}

/// One destination's row.
#[derive(Debug, Clone, Default)]
pub struct DestinationCheck {
    /// Its name.
    pub name: String,
    /// Whether it could be listed.
    pub reachable: bool,
    /// Why not.
    pub error: Option<String>,
    /// Objects present and examined.
    pub objects_checked: u64,
    /// Objects it should hold and does not.
    pub missing: u64,
    /// Objects it holds damaged (or failed to return).
    pub corrupt: u64,
    /// Packs it holds that no index lists.
    pub extra: u64,
    /// Keys under the repository's prefixes that are not Lifeboat object
    /// names (another program's files, or names a hostile store made up):
    /// never read or copied, only reported.
    pub foreign: Vec<String>,
    /// Bytes read in full and verified.
    pub bytes_read: u64,
    /// What it no longer lists that it listed before, when it may have been
    /// rolled back to an older copy (`repo::seen`).
    pub rolled_back: Option<Rollback>,
}

impl DestinationCheck {
    /// True when reachable, nothing is missing or damaged, and it was not
    /// rolled back.
    pub fn is_clean(&self) -> bool {
        self.reachable && self.missing == 0 && self.corrupt == 0 && self.rolled_back.is_none()
    }
}

/// A snapshot damaged by lost objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DamagedSnapshot {
    /// The snapshot.
    pub snapshot: SnapshotId,
    /// Its time (seconds since the epoch).
    pub time: i64,
    /// Files (and whole directories) that cannot be restored, at most 50.
    pub paths: Vec<String>,
    /// How many more paths are damaged beyond those listed.
    pub more_paths: u64,
}

/// Live counters for progress displays.
#[derive(Debug, Default)]
pub struct CheckProgress {
    /// Packs to check (over every destination).
    pub packs_total: AtomicU64,
    /// Packs checked.
    pub packs_done: AtomicU64,
}

/// What a check found.
#[derive(Debug, Clone, Default)]
pub struct CheckReport {
    /// One row per destination checked, in preference order.
    pub destinations: Vec<DestinationCheck>,
    /// Problems: any makes the repository damaged somewhere.
    pub problems: Vec<Problem>,
    /// Snapshots and files that lost objects damage.
    pub damaged: Vec<DamagedSnapshot>,
    /// Harmless findings (for example packs no index lists, left by an
    /// interrupted backup or waiting out prune's grace period).
    pub notes: Vec<String>,
    /// Snapshots checked.
    pub snapshots: u64,
    /// Trees checked.
    pub trees: u64,
    /// Index files read.
    pub index_files: u64,
    /// Objects examined, over every destination.
    pub packs: u64,
    /// Blobs indexed.
    pub blobs: u64,
    /// Bytes read and verified, over every destination.
    pub bytes_read: u64,
}

impl CheckReport {
    /// True when no problem was found, every destination could be checked
    /// and none was rolled back.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
            && self
                .destinations
                .iter()
                .all(|d| d.reachable && d.rolled_back.is_none())
    }

    /// The destinations that no longer list what they listed before.
    pub fn rolled_back(&self) -> impl Iterator<Item = &Rollback> {
        self.destinations
            .iter()
            .filter_map(|d| d.rolled_back.as_ref())
    }

    /// Problems no destination can heal.
    pub fn lost(&self) -> impl Iterator<Item = &Problem> {
        self.problems.iter().filter(|p| !p.healable())
    }
}

/// Checks every destination (or the one in `options.only`).
///
/// # Errors
/// Only when the check itself cannot run (no destination can be listed, or
/// `only` names no destination); damage is reported in the [`CheckReport`].
pub async fn check(
    repo: &Repository,
    options: &CheckOptions,
    progress: Arc<CheckProgress>,
) -> Result<CheckReport> {
    let mut report = CheckReport::default();
    let tombstones = repo.tombstones().await?;
    let shape = logical::load(repo, &mut report).await?;

    let backends = repo.destinations().backends().to_vec();
    if let Some(only) = &options.only {
        if !backends.iter().any(|b| b.name() == only) {
            return Err(crate::Error::InvalidInput(format!(
                "no destination named {only:?}"
            )));
        }
    }
    let checked = |name: &str| options.only.as_deref().is_none_or(|only| only == name);
    let runs = backends
        .iter()
        .filter(|b| checked(b.name()))
        .map(|b| destination::check_destination(repo, b.clone(), &shape, options, &progress));
    // The tree walk and every destination's object checks run together.
    let (results, ()) = tokio::join!(
        futures::future::join_all(runs),
        logical::check_trees(repo, &shape, &mut report)
    );
    let results: Vec<DestinationResult> = results;
    // Destinations not checked are still asked what they hold, so a problem
    // on the checked one can be called healable or lost.
    let mut others = Vec::new();
    for b in backends.iter().filter(|b| !checked(b.name())) {
        if let Ok(present) = destination::inventory(b.as_ref()).await {
            others.push((b.name().to_string(), present));
        }
    }

    let mut lost_packs: HashSet<String> = HashSet::new();
    for result in &results {
        for bad in &result.bad {
            let key = &bad.key;
            let good_copies: Vec<String> = results
                .iter()
                .filter(|r| r.row.name != result.row.name && r.holds_good(key))
                .map(|r| r.row.name.clone())
                .chain(
                    others
                        .iter()
                        .filter(|(_, present)| present.contains(key))
                        .map(|(name, _)| name.clone()),
                )
                .collect();
            if good_copies.is_empty() && ObjectKind::Pack.name_of(key).is_some() {
                lost_packs.insert(key.clone());
            }
            report.problems.push(Problem {
                object: object_label(key),
                key: Some(key.clone()),
                destination: Some(result.row.name.clone()),
                kind: bad.kind,
                message: bad.message.clone(),
                good_copies,
            });
        }
        for key in &result.extra {
            let why = if tombstones.contains(key) {
                "removed by forget or prune; deleted here by the next prune"
            } else if ObjectKind::Pack.name_of(key).is_some() {
                "not in any index: left by an interrupted backup, or marked by prune and \
                 waiting out its grace period; harmless, the next prune removes it"
            } else {
                "not part of this repository as read from its destinations (another \
                 repository's, or written after this check started); left alone"
            };
            report.notes.push(format!(
                "{}: {} is {why}",
                result.row.name,
                object_label(key)
            ));
        }
        report.packs += result.row.objects_checked;
        report.bytes_read += result.row.bytes_read;
    }
    let lost_blobs = lost_blobs(&shape, &results, &lost_packs);
    if !lost_blobs.is_empty() {
        report.damaged = logical::damage_of(repo, &shape, &lost_blobs).await;
    }
    // The shape's listing of the snapshots compared each destination with
    // what it listed before.
    let rollbacks = repo.rollbacks();
    report.destinations = results
        .into_iter()
        .map(|r| {
            let mut row = r.row;
            row.rolled_back = rollbacks
                .iter()
                .find(|b| b.destination == row.name)
                .cloned();
            row
        })
        .collect();
    Ok(report)
}

/// The blobs of lost packs that no destination's copy holds intact: a blob
/// that verifies in some copy can still be restored (reads fail over blob by
/// blob), so only blobs bad everywhere damage files.
fn lost_blobs(
    shape: &logical::Shape,
    results: &[DestinationResult],
    lost_packs: &HashSet<String>,
) -> HashSet<BlobId> {
    let mut lost = HashSet::new();
    for key in lost_packs {
        let Some(id) = ObjectKind::Pack
            .name_of(key)
            .and_then(|n| n.parse::<PackId>().ok())
        else {
            continue;
        };
        let mut bad: HashSet<BlobId> = shape
            .packs
            .get(&id)
            .map(|entries| entries.iter().map(|e| e.id).collect())
            .unwrap_or_default();
        for result in results {
            if let Some(copy) = result.bad.iter().find(|b| &b.key == key) {
                if let Some(blobs) = &copy.bad_blobs {
                    bad.retain(|b| blobs.contains(b));
                }
            }
        }
        lost.extend(bad);
    }
    lost
}

/// `pack <id>` for `data/xx/<id>`, and so on.
pub fn object_label(key: &str) -> String {
    for (kind, word) in [
        (ObjectKind::Pack, "pack"),
        (ObjectKind::Index, "index"),
        (ObjectKind::Snapshot, "snapshot"),
        (ObjectKind::Key, "key"),
        (ObjectKind::Deletion, "deletion record"),
    ] {
        if let Some(name) = kind.name_of(key) {
            return format!("{word} {name}");
        }
    }
    key.to_string()
}
