//! The mount's top directories, made from the list of snapshots:
//!
//! ```text
//! latest -> snapshots/2026-12-06T21:30:05
//! snapshots/2026-12-06T21:30:05/   one per snapshot, by its time (UTC)
//! snapshots/latest -> 2026-12-06T21:30:05
//! ids/3f2a9c1b/                    the same snapshot by its short id
//! hosts/<host>/<time>/, hosts/<host>/latest -> <time>
//! tags/<tag>/<time>/, tags/<tag>/latest -> <time>
//! ```
//!
//! Two snapshots in the same second: the older keeps the plain time, the
//! others get their short id after it (`2026-12-06T21:30:05-3f2a9c1b`), so
//! a name never changes meaning while snapshots come and go. A host or tag
//! that is not a usable file name (empty, `.`, `..`, with a `/`) is shown
//! with `_` in place of what is not.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::format::ids::{BlobId, SnapshotId};
use crate::format::snapshot::Snapshot;

/// One snapshot as the mount shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SnapInfo {
    /// Its id.
    pub id: SnapshotId,
    /// Its directory name: the time, made unique.
    pub name: String,
    /// Start time, seconds and nanoseconds.
    pub time: (i64, u32),
    /// The trees shown merged at its root: the file system's, then the
    /// sources tree.
    pub roots: Vec<BlobId>,
}

/// A directory the mount makes up (not from a snapshot's trees).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum VDir {
    /// The mount's root.
    Root,
    /// `snapshots/`.
    Snapshots,
    /// `ids/`.
    Ids,
    /// `hosts/`.
    Hosts,
    /// `hosts/<host>/`.
    Host(String),
    /// `tags/`.
    Tags,
    /// `tags/<tag>/`.
    Tag(String),
}

/// What a made-up directory holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum VEntry {
    /// Another made-up directory.
    Dir(VDir),
    /// A snapshot's root.
    Snapshot(Arc<SnapInfo>),
    /// A symbolic link (the `latest` links), with its target.
    Link(Vec<u8>),
}

/// The snapshots, and every made-up directory's entries.
#[derive(Debug, Default)]
pub(crate) struct Layout {
    /// Oldest first.
    snaps: Vec<Arc<SnapInfo>>,
    /// Host → its snapshots (indexes into `snaps`, oldest first).
    hosts: BTreeMap<String, Vec<usize>>,
    /// Tag → its snapshots.
    tags: BTreeMap<String, Vec<usize>>,
    /// Short id → snapshot, sorted by name.
    ids: BTreeMap<String, usize>,
}

/// `name` as a usable file name: `/` and NUL become `_`; empty, `.` and
/// `..` get a `_` in front.
pub(crate) fn file_name(name: &str) -> String {
    let clean: String = name
        .chars()
        .map(|c| if c == '/' || c == '\0' { '_' } else { c })
        .collect();
    match clean.as_str() {
        "" | "." | ".." => format!("_{clean}"),
        _ => clean,
    }
}

fn time_name(snapshot: &Snapshot) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
    let at = time::OffsetDateTime::from_unix_timestamp(snapshot.time)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    at.format(&format)
        .unwrap_or_else(|_| snapshot.time.to_string())
}

impl Layout {
    /// The layout of `snapshots` (oldest first, as
    /// [`Repository::list_snapshots`](crate::Repository::list_snapshots)
    /// returns them).
    pub(crate) fn new(snapshots: &[(SnapshotId, Snapshot)]) -> Self {
        let mut layout = Layout::default();
        let mut taken: HashMap<String, usize> = HashMap::new();
        for (id, snapshot) in snapshots {
            let mut name = time_name(snapshot);
            if taken.contains_key(&name) {
                name = format!("{name}-{}", id.short());
            }
            let i = layout.snaps.len();
            taken.insert(name.clone(), i);
            layout.snaps.push(Arc::new(SnapInfo {
                id: *id,
                name,
                time: (snapshot.time, snapshot.time_nsec),
                roots: snapshot.roots(),
            }));
            layout
                .hosts
                .entry(file_name(&snapshot.hostname))
                .or_default()
                .push(i);
            for tag in &snapshot.tags {
                let of_tag = layout.tags.entry(file_name(tag)).or_default();
                if of_tag.last() != Some(&i) {
                    of_tag.push(i);
                }
            }
        }
        // Short ids, longer where two share a prefix (a full id always
        // differs from the others).
        let mut by_short: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, s) in layout.snaps.iter().enumerate() {
            by_short.entry(s.id.short()).or_default().push(i);
        }
        for (short, all) in by_short {
            if let [one] = all[..] {
                layout.ids.insert(short, one);
            } else {
                for i in all {
                    layout.ids.insert(layout.snaps[i].id.to_hex(), i);
                }
            }
        }
        layout
    }

    /// The snapshots, oldest first.
    pub(crate) fn snapshots(&self) -> &[Arc<SnapInfo>] {
        &self.snaps
    }

    /// When the newest snapshot was taken (the time shown on the made-up
    /// directories).
    pub(crate) fn newest_time(&self) -> (i64, u32) {
        self.snaps.last().map_or((0, 0), |s| s.time)
    }

    /// A directory of `group` snapshots: each by name, then `latest`.
    fn snapshot_dir(&self, group: impl Iterator<Item = usize>) -> Vec<(Vec<u8>, VEntry)> {
        let mut out: Vec<(Vec<u8>, VEntry)> = group
            .map(|i| {
                let s = &self.snaps[i];
                (s.name.clone().into_bytes(), VEntry::Snapshot(s.clone()))
            })
            .collect();
        if let Some((name, _)) = out.last() {
            let target = name.clone();
            out.push((b"latest".to_vec(), VEntry::Link(target)));
        }
        out
    }

    /// The entries of `dir`, in the order a listing shows them; empty for a
    /// host or tag no snapshot has any more.
    pub(crate) fn children(&self, dir: &VDir) -> Vec<(Vec<u8>, VEntry)> {
        match dir {
            VDir::Root => {
                let mut out = vec![
                    (b"hosts".to_vec(), VEntry::Dir(VDir::Hosts)),
                    (b"ids".to_vec(), VEntry::Dir(VDir::Ids)),
                ];
                if let Some(newest) = self.snaps.last() {
                    let target = format!("snapshots/{}", newest.name).into_bytes();
                    out.push((b"latest".to_vec(), VEntry::Link(target)));
                }
                out.push((b"snapshots".to_vec(), VEntry::Dir(VDir::Snapshots)));
                out.push((b"tags".to_vec(), VEntry::Dir(VDir::Tags)));
                out
            }
            VDir::Snapshots => self.snapshot_dir(0..self.snaps.len()),
            VDir::Ids => self
                .ids
                .iter()
                .map(|(name, &i)| {
                    (
                        name.clone().into_bytes(),
                        VEntry::Snapshot(self.snaps[i].clone()),
                    )
                })
                .collect(),
            VDir::Hosts => self
                .hosts
                .keys()
                .map(|h| (h.clone().into_bytes(), VEntry::Dir(VDir::Host(h.clone()))))
                .collect(),
            VDir::Tags => self
                .tags
                .keys()
                .map(|t| (t.clone().into_bytes(), VEntry::Dir(VDir::Tag(t.clone()))))
                .collect(),
            VDir::Host(h) => self.snapshot_dir(self.hosts.get(h).into_iter().flatten().copied()),
            VDir::Tag(t) => self.snapshot_dir(self.tags.get(t).into_iter().flatten().copied()),
        }
    }

    /// The entry `name` of `dir`.
    pub(crate) fn child(&self, dir: &VDir, name: &[u8]) -> Option<VEntry> {
        self.children(dir)
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, entry)| entry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(time: i64, host: &str, tags: &[&str], seed: u8) -> (SnapshotId, Snapshot) {
        let mut s = Snapshot::new(
            BlobId([seed; 32]),
            vec![b"/home".to_vec()],
            tags.iter().map(|t| t.to_string()).collect(),
            host.into(),
        );
        s.time = time;
        (SnapshotId([seed; 32]), s)
    }

    fn names(entries: &[(Vec<u8>, VEntry)]) -> Vec<String> {
        entries
            .iter()
            .map(|(n, _)| String::from_utf8_lossy(n).into_owned())
            .collect()
    }

    #[test]
    fn snapshots_by_time_host_tag_and_id() {
        let list = vec![
            snap(1_796_592_605, "laptop", &["daily"], 1),
            snap(1_796_592_605, "server", &[], 2),
            snap(1_796_600_000, "laptop", &["daily", "before-upgrade"], 3),
        ];
        let layout = Layout::new(&list);
        let snaps = layout.children(&VDir::Snapshots);
        let short2 = SnapshotId([2; 32]).short();
        assert_eq!(
            names(&snaps),
            [
                "2026-12-06T21:30:05".to_string(),
                format!("2026-12-06T21:30:05-{short2}"),
                "2026-12-06T23:33:20".into(),
                "latest".into()
            ]
        );
        assert_eq!(
            snaps[3].1,
            VEntry::Link(b"2026-12-06T23:33:20".to_vec()),
            "latest names the newest"
        );
        assert_eq!(names(&layout.children(&VDir::Hosts)), ["laptop", "server"]);
        assert_eq!(
            names(&layout.children(&VDir::Host("laptop".into()))),
            ["2026-12-06T21:30:05", "2026-12-06T23:33:20", "latest"]
        );
        assert_eq!(
            names(&layout.children(&VDir::Tags)),
            ["before-upgrade", "daily"]
        );
        assert_eq!(
            names(&layout.children(&VDir::Tag("before-upgrade".into()))),
            ["2026-12-06T23:33:20", "latest"]
        );
        assert_eq!(layout.children(&VDir::Ids).len(), 3);
        assert_eq!(
            layout.child(&VDir::Root, b"latest"),
            Some(VEntry::Link(b"snapshots/2026-12-06T23:33:20".to_vec()))
        );
        match layout.child(&VDir::Ids, SnapshotId([3; 32]).short().as_bytes()) {
            Some(VEntry::Snapshot(s)) => assert_eq!(s.id, SnapshotId([3; 32])),
            other => panic!("{other:?}"),
        }
        assert!(layout
            .child(&VDir::Host("nowhere".into()), b"latest")
            .is_none());
    }

    #[test]
    fn an_empty_repository_has_no_latest() {
        let layout = Layout::new(&[]);
        assert_eq!(
            names(&layout.children(&VDir::Root)),
            ["hosts", "ids", "snapshots", "tags"]
        );
        assert!(layout.children(&VDir::Snapshots).is_empty());
    }

    #[test]
    fn hosts_and_tags_become_usable_names() {
        assert_eq!(file_name("a/b"), "a_b");
        assert_eq!(file_name(""), "_");
        assert_eq!(file_name(".."), "_..");
        assert_eq!(file_name("ok-name"), "ok-name");
    }
}
