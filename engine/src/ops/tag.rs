//! `tag`: change snapshots' tags. A snapshot is named by the hash of its
//! bytes and never rewritten in place, so a change is a new snapshot (the
//! same time, host, paths and trees, its `original` recorded: FORMAT.md
//! §4.10, tag 2), and the old one is retired as `forget` retires it, by a
//! deletion record, so a destination that missed the change drops the old
//! snapshot at its next sync instead of bringing it back. The caller holds
//! the exclusive lock, as for `forget`.

use crate::error::{Error, Result};
use crate::format::ids::SnapshotId;
use crate::format::snapshot::Snapshot;
use crate::ops::forget;
use crate::repo::Repository;

/// The tag change asked for: `set` first (replacing every tag), then
/// `add`, then `remove`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TagChange {
    /// Replace every tag with these.
    pub set: Option<Vec<String>>,
    /// Add these.
    pub add: Vec<String>,
    /// Remove these.
    pub remove: Vec<String>,
}

impl TagChange {
    /// Refuses an empty change and tags that are empty or hold a comma
    /// (the command line's separator).
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming the problem.
    pub fn validate(&self) -> Result<()> {
        if self.set.is_none() && self.add.is_empty() && self.remove.is_empty() {
            return Err(Error::InvalidInput(
                "no tag change: give --add, --remove or --set".into(),
            ));
        }
        let all = self
            .set
            .iter()
            .flatten()
            .chain(&self.add)
            .chain(&self.remove);
        for tag in all {
            if tag.trim().is_empty() || tag.contains(',') {
                return Err(Error::InvalidInput(format!(
                    "tag {tag:?}: a tag is a non-empty word without commas"
                )));
            }
        }
        Ok(())
    }

    /// The tags `tags` become, in their order, each once.
    pub fn apply(&self, tags: &[String]) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let start = self.set.as_deref().unwrap_or(tags);
        for tag in start.iter().chain(&self.add) {
            if !out.contains(tag) {
                out.push(tag.clone());
            }
        }
        out.retain(|t| !self.remove.contains(t));
        out
    }
}

/// One snapshot replaced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replaced {
    /// The retired snapshot.
    pub old: SnapshotId,
    /// Its replacement.
    pub new: SnapshotId,
    /// The replacement.
    pub snapshot: Snapshot,
}

/// What a tag change did.
#[derive(Debug, Clone, Default)]
pub struct TagOutcome {
    /// Snapshots replaced.
    pub replaced: Vec<Replaced>,
    /// Snapshots whose tags were already as asked.
    pub unchanged: Vec<SnapshotId>,
    /// Destinations reached and missed (see [`forget::ForgetOutcome`]).
    pub retired: forget::ForgetOutcome,
}

/// Applies `change` to `snapshots`. The caller holds an exclusive lock.
///
/// # Errors
/// A replacement that cannot be stored anywhere; the deletion record's
/// write. Replacements stored before a failure retire their originals
/// before the error is returned, so no snapshot is left twice.
pub async fn tag(
    repo: &Repository,
    snapshots: Vec<(SnapshotId, Snapshot)>,
    change: &TagChange,
) -> Result<TagOutcome> {
    change.validate()?;
    let mut outcome = TagOutcome::default();
    let mut failure = None;
    for (id, snapshot) in snapshots {
        let tags = change.apply(&snapshot.tags);
        // The same tags in another order are the same tags: no new snapshot.
        let same =
            tags.len() == snapshot.tags.len() && tags.iter().all(|t| snapshot.tags.contains(t));
        if same {
            outcome.unchanged.push(id);
            continue;
        }
        let mut copy = snapshot.replacement(id);
        copy.tags = tags;
        match repo.save_snapshot(&copy).await {
            Ok(new) => outcome.replaced.push(Replaced {
                old: id,
                new,
                snapshot: copy,
            }),
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    let old: Vec<SnapshotId> = outcome.replaced.iter().map(|r| r.old).collect();
    outcome.retired = forget::forget(repo, &old).await?;
    match failure {
        Some(e) => Err(e),
        None => Ok(outcome),
    }
}

#[cfg(test)]
mod tests {
    use super::TagChange;

    fn tags(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn set_then_add_then_remove() {
        let change = TagChange {
            set: Some(tags(&["a", "b"])),
            add: tags(&["c", "a"]),
            remove: tags(&["b"]),
        };
        assert_eq!(change.apply(&tags(&["x"])), tags(&["a", "c"]));
        let add = TagChange {
            add: tags(&["new"]),
            ..Default::default()
        };
        assert_eq!(add.apply(&tags(&["old"])), tags(&["old", "new"]));
        assert_eq!(add.apply(&tags(&["new"])), tags(&["new"]));
    }

    #[test]
    fn empty_or_comma_tags_are_refused() {
        assert!(TagChange::default().validate().is_err());
        let comma = TagChange {
            add: tags(&["a,b"]),
            ..Default::default()
        };
        assert!(comma.validate().is_err());
        let blank = TagChange {
            set: Some(tags(&[""])),
            ..Default::default()
        };
        assert!(blank.validate().is_err());
        let empty_set = TagChange {
            set: Some(Vec::new()),
            ..Default::default()
        };
        assert!(
            empty_set.validate().is_ok(),
            "--set with no tag clears them"
        );
    }
}
