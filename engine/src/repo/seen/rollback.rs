//! What a run's listings say against what was seen before: the rollback
//! verdict per destination ([`detect`]), the memory to add ([`learned`]),
//! and the one place the warning is worded ([`Rollback`]'s `Display`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::format::ids::SnapshotId;

use super::{SeenDestination, SeenFile, VERSION};

/// One destination's successful listing in this run.
#[derive(Debug, Clone, Default)]
pub struct Listing {
    /// Its name in this run.
    pub name: String,
    /// Its identity: what its memory is filed under.
    pub identity: String,
    /// The snapshot ids it listed (tombstoned ones included).
    pub snapshots: BTreeSet<String>,
    /// The deletion record names it listed, when it could be listed.
    pub records: Option<BTreeSet<String>>,
}

/// A destination that no longer lists what it listed before: it may have
/// been rolled back to an older copy of itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rollback {
    /// The destination's name in this run.
    pub destination: String,
    /// Snapshots it listed before and no longer lists, that no deletion
    /// record removes.
    pub snapshots: Vec<SnapshotId>,
    /// Deletion records it listed before and no longer lists (records are
    /// never removed).
    pub deletion_records: Vec<String>,
    /// Other destinations of this run that list some of what it lost:
    /// `lifeboat sync` copies it back from them.
    pub sources: Vec<String>,
    /// The lost snapshots that no destination of this run lists.
    pub snapshots_nowhere: Vec<SnapshotId>,
    /// The lost deletion records that no destination of this run lists.
    pub records_nowhere: Vec<String>,
    /// The state file (named when only removing it can end the warning).
    pub state_file: PathBuf,
}

fn short_name(name: &str) -> &str {
    name.get(..8).unwrap_or(name)
}

fn plural(n: usize, one: &str, many: &str) -> String {
    if n == 1 {
        one.to_string()
    } else {
        many.to_string()
    }
}

fn shorts(ids: &[SnapshotId]) -> String {
    ids.iter().map(|i| i.short()).collect::<Vec<_>>().join(", ")
}

impl std::fmt::Display for Rollback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (n_snap, n_rec) = (self.snapshots.len(), self.deletion_records.len());
        let mut lost = Vec::new();
        if n_snap > 0 {
            lost.push(format!(
                "{} {}",
                plural(n_snap, "snapshot", "snapshots"),
                shorts(&self.snapshots)
            ));
        }
        if n_rec > 0 {
            lost.push(format!(
                "{} {}",
                plural(n_rec, "deletion record", "deletion records"),
                self.deletion_records
                    .iter()
                    .map(|r| short_name(r))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        let them = plural(n_snap + n_rec, "it", "them");
        let why = match (n_snap > 0, n_rec > 0) {
            (true, false) => format!("and no deletion record removes {them}"),
            (false, _) => "and deletion records are never removed".to_string(),
            (true, true) => "and no deletion record removes the snapshots (deletion records \
                             themselves are never removed)"
                .to_string(),
        };
        write!(
            f,
            "destination {} no longer lists {} that it held before, {why}: it may have been \
             rolled back to an older copy",
            self.destination,
            lost.join(" and ")
        )?;
        let everything_elsewhere =
            self.snapshots_nowhere.is_empty() && self.records_nowhere.is_empty();
        if !self.sources.is_empty() {
            let what = if everything_elsewhere {
                them
            } else {
                "what they hold".to_string()
            };
            write!(
                f,
                "; run `lifeboat sync` to copy {what} back from {}",
                self.sources.join(", ")
            )?;
        }
        if !self.snapshots_nowhere.is_empty() {
            let n = self.snapshots_nowhere.len();
            let ids = shorts(&self.snapshots_nowhere);
            write!(
                f,
                "; no destination of this run lists {} {ids}: add one that holds {} and run \
                 `lifeboat sync`, or run `lifeboat forget {}` to accept the loss",
                plural(n, "snapshot", "snapshots"),
                plural(n, "it", "them"),
                self.snapshots_nowhere
                    .iter()
                    .map(|i| i.short())
                    .collect::<Vec<_>>()
                    .join(" ")
            )?;
        }
        if !self.records_nowhere.is_empty() {
            let n = self.records_nowhere.len();
            write!(
                f,
                "; no destination of this run lists {} {}: add one that holds {} and run \
                 `lifeboat sync`; if none does, remove {} to accept the loss",
                plural(n, "deletion record", "deletion records"),
                self.records_nowhere
                    .iter()
                    .map(|r| short_name(r))
                    .collect::<Vec<_>>()
                    .join(", "),
                plural(n, "it", "them"),
                self.state_file.display()
            )?;
        }
        Ok(())
    }
}

/// Compares each listing with what its destination listed before. `removed`
/// holds the snapshots deletion records remove (this run's and remembered).
pub fn detect(
    before: &SeenFile,
    listings: &[Listing],
    removed: &BTreeSet<String>,
    state_file: &Path,
) -> Vec<Rollback> {
    let mut out = Vec::new();
    for listing in listings {
        let Some(seen) = before.destinations.get(&listing.identity) else {
            continue;
        };
        let snapshots: Vec<&String> = seen
            .snapshots
            .iter()
            .filter(|s| !listing.snapshots.contains(*s) && !removed.contains(*s))
            .collect();
        let records: Vec<&String> = match &listing.records {
            Some(listed) => seen
                .deletion_records
                .iter()
                .filter(|r| !listed.contains(*r))
                .collect(),
            None => Vec::new(),
        };
        if snapshots.is_empty() && records.is_empty() {
            continue;
        }
        let others = || listings.iter().filter(|l| l.name != listing.name);
        let mut sources = BTreeSet::new();
        let mut snapshots_nowhere = Vec::new();
        for s in &snapshots {
            let holders: Vec<&Listing> = others().filter(|l| l.snapshots.contains(*s)).collect();
            if holders.is_empty() {
                snapshots_nowhere.extend(s.parse::<SnapshotId>().ok());
            }
            sources.extend(holders.iter().map(|l| l.name.clone()));
        }
        let mut records_nowhere = Vec::new();
        for r in &records {
            let holders: Vec<&Listing> = others()
                .filter(|l| l.records.as_ref().is_some_and(|rs| rs.contains(*r)))
                .collect();
            if holders.is_empty() {
                records_nowhere.push((*r).clone());
            }
            sources.extend(holders.iter().map(|l| l.name.clone()));
        }
        out.push(Rollback {
            destination: listing.name.clone(),
            // A remembered name that is not an id is not a snapshot.
            snapshots: snapshots.iter().filter_map(|s| s.parse().ok()).collect(),
            deletion_records: records.into_iter().cloned().collect(),
            sources: sources.into_iter().collect(),
            snapshots_nowhere,
            records_nowhere,
            state_file: state_file.to_path_buf(),
        });
    }
    out
}

/// What this run learned from `listings`: per destination, the snapshots it
/// listed that opened (`verified`) and that no record removes, and the
/// records it listed that opened (`records`); and the removed snapshots.
pub fn learned(
    listings: &[Listing],
    verified: &BTreeSet<String>,
    removed: &BTreeSet<String>,
    records: &BTreeSet<String>,
) -> SeenFile {
    let mut out = SeenFile {
        version: VERSION,
        removed_snapshots: removed.clone(),
        ..Default::default()
    };
    for listing in listings {
        let entry = SeenDestination {
            name: listing.name.clone(),
            snapshots: listing
                .snapshots
                .iter()
                .filter(|s| verified.contains(*s) && !removed.contains(*s))
                .cloned()
                .collect(),
            deletion_records: listing
                .records
                .iter()
                .flatten()
                .filter(|r| records.contains(*r))
                .cloned()
                .collect(),
        };
        // Nothing to remember (an empty repository): no entry, so a run
        // that learned nothing writes nothing.
        if !entry.snapshots.is_empty() || !entry.deletion_records.is_empty() {
            out.destinations.insert(listing.identity.clone(), entry);
        }
    }
    out
}

pub(super) type RollbackHook = Arc<dyn Fn(&Rollback) + Send + Sync>;
