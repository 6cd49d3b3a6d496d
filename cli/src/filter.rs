//! Choosing snapshots: ids on the command line, else every snapshot that
//! passes `--host`, `--tag` and `--path` (restic's rules). One definition
//! for `find`, `stats`, `tag` and `rewrite`.

use anyhow::Result;
use lifeboat_engine::{Repository, Snapshot, SnapshotId};

/// The flags that narrow a command to some snapshots.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SnapshotFilter {
    /// Only snapshots of this host (repeatable: any of them).
    #[arg(long = "host", value_name = "NAME")]
    pub hosts: Vec<String>,
    /// Only snapshots with this tag (repeatable: any of them; `a,b` needs both).
    #[arg(long = "tag", value_name = "TAG[,TAG]")]
    pub tags: Vec<String>,
    /// Only snapshots of this backed-up path (repeatable: any of them).
    #[arg(long = "path", value_name = "PATH")]
    pub paths: Vec<String>,
}

impl SnapshotFilter {
    /// True when `snapshot` passes every flag given.
    pub fn matches(&self, snapshot: &Snapshot) -> bool {
        let host = self.hosts.is_empty() || self.hosts.contains(&snapshot.hostname);
        let tag = self.tags.is_empty()
            || self.tags.iter().any(|group| {
                group
                    .split(',')
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .all(|t| snapshot.tags.iter().any(|have| have == t))
            });
        let trim = |p: &str| p.trim_end_matches('/').to_string();
        let path = self.paths.is_empty()
            || snapshot
                .paths_lossy()
                .iter()
                .any(|p| self.paths.iter().any(|want| trim(want) == trim(p)));
        host && tag && path
    }

    /// The snapshots `ids` name (`latest`, ids, prefixes), each once, in
    /// the order given; with no ids, every snapshot passing the flags,
    /// oldest first.
    ///
    /// # Errors
    /// An id that names no snapshot or several.
    pub async fn select(
        &self,
        repo: &Repository,
        ids: &[String],
    ) -> Result<Vec<(SnapshotId, Snapshot)>> {
        if ids.is_empty() {
            return Ok(repo
                .list_snapshots()
                .await?
                .into_iter()
                .filter(|(_, s)| self.matches(s))
                .collect());
        }
        let mut chosen: Vec<(SnapshotId, Snapshot)> = Vec::new();
        for spec in ids {
            let (id, snapshot) = repo.find_snapshot(spec).await?;
            if !chosen.iter().any(|(have, _)| *have == id) {
                chosen.push((id, snapshot));
            }
        }
        Ok(chosen)
    }
}
