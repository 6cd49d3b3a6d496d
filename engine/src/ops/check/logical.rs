//! The repository as a whole, read with failover: what every destination
//! should hold, and whether the snapshots' trees are complete.
//!
//! Index files, snapshots and trees are read from the first destination with
//! good bytes, so one damaged copy does not hide the repository's shape; the
//! per-destination pass then compares each destination with that shape.

use std::collections::{BTreeMap, HashMap, HashSet};

use bytes::Bytes;
use futures::StreamExt;

use super::{CheckReport, DamagedSnapshot, Problem, ProblemKind};
use crate::error::Result;
use crate::format::ids::{BlobId, ObjectKind, PackId, SnapshotId, CONFIG_KEY};
use crate::format::index::IndexFile;
use crate::format::pack::PackEntry;
use crate::format::snapshot::Snapshot;
use crate::format::tree::NodeKind;
use crate::format::SealedFile;
use crate::repo::index::MasterIndex;
use crate::repo::tree_stream::{Order, TreeStream};
use crate::repo::Repository;

/// Most file paths named per damaged snapshot; the rest are counted.
const PATHS_PER_SNAPSHOT: usize = 50;

/// What one expected object is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Expected {
    /// The `config` object: identical bytes everywhere.
    Config,
    /// A small object read whole on every check: a key file or a deletion record.
    Whole(ObjectKind),
    /// An index file or a snapshot of known size (from its verified copy).
    Sized(u64),
    /// A pack listed by an index file.
    Pack,
}

/// The repository's shape.
pub(super) struct Shape {
    /// Every object each destination should hold, by storage key.
    pub objects: BTreeMap<String, Expected>,
    /// Each indexed pack's entries, in offset order.
    pub packs: HashMap<PackId, Vec<PackEntry>>,
    /// Every indexed blob.
    pub master: MasterIndex,
    /// The repository's `config` bytes.
    pub config: Bytes,
    /// Every snapshot that could be read.
    pub snapshots: Vec<(SnapshotId, Snapshot)>,
}

/// Reads the shape; problems no destination can heal go into `report`.
///
/// # Errors
/// Only when no destination can be listed.
pub(super) async fn load(repo: &Repository, report: &mut CheckReport) -> Result<Shape> {
    let config = crate::ops::sync::config_of(repo).await?;
    let mut objects = BTreeMap::new();
    objects.insert(CONFIG_KEY.to_string(), Expected::Config);
    for kind in [ObjectKind::Key, ObjectKind::Deletion] {
        let names = repo.list_names_everywhere(kind).await?;
        // Junk a provider planted under a matching name is not expected
        // anywhere: where it is, it is noted as not this repository's. Read
        // concurrently, like the index files below: one round trip each.
        let mut verdicts = futures::stream::iter(names.into_iter().map(|name| async move {
            let junk = is_junk(repo, kind, &name).await;
            (name, junk)
        }))
        .buffer_unordered(repo.destinations().walk_reads());
        while let Some((name, junk)) = verdicts.next().await {
            if !junk {
                objects.insert(kind.key(&name), Expected::Whole(kind));
            }
        }
    }

    let mut master = MasterIndex::new();
    let mut packs: HashMap<PackId, Vec<PackEntry>> = HashMap::new();
    let index_names = repo.list_names_everywhere(ObjectKind::Index).await?;
    report.index_files = index_names.len() as u64;
    let mut reads = futures::stream::iter(index_names.into_iter().map(|name| async move {
        let file = match repo.read_object(ObjectKind::Index, &name).await {
            Ok(bytes) => {
                junk_as_none(IndexFile::open(repo.keys(), &name, &bytes).map(|f| (f, bytes.len())))
            }
            Err(e) => Err(e),
        };
        (name, file)
    }))
    .buffer_unordered(repo.destinations().walk_reads());
    while let Some((name, file)) = reads.next().await {
        let key = ObjectKind::Index.key(&name);
        match file {
            Ok(None) => {}
            Ok(Some((file, size))) => {
                objects.insert(key, Expected::Sized(size as u64));
                for pack in &file.packs {
                    let mut entries: Vec<PackEntry> = pack
                        .blobs
                        .iter()
                        .map(|b| PackEntry {
                            blob_type: b.blob_type,
                            id: b.id,
                            offset: b.offset,
                            length: b.length,
                            raw_length: b.raw_length,
                        })
                        .collect();
                    entries.sort_by_key(|e| e.offset);
                    packs.insert(pack.id, entries);
                    objects.insert(ObjectKind::Pack.key(&pack.id.to_hex()), Expected::Pack);
                }
                master.add_file(&file);
            }
            Err(e) => report.problems.push(Problem::lost(
                format!("index {name}"),
                format!("no destination has a good copy: {e}"),
            )),
        }
    }
    drop(reads);
    master.finish();
    report.blobs = master.len() as u64;

    let snapshot_names = repo.snapshot_names().await?;
    // A listing's length (a provider can list phantoms): room grows as they load.
    let mut snapshots = Vec::with_capacity(snapshot_names.len().min(4096));
    let mut reads = futures::stream::iter(snapshot_names.into_iter().map(|name| async move {
        let loaded = async {
            let id: SnapshotId = name
                .parse()
                .map_err(|_| crate::Error::format("snapshot", "bad name"))?;
            let bytes = repo.read_object(ObjectKind::Snapshot, &name).await?;
            let snapshot = junk_as_none(Snapshot::open(repo.keys(), id, &bytes))?;
            Ok::<_, crate::Error>(snapshot.map(|snapshot| (id, snapshot, bytes.len())))
        }
        .await;
        (name, loaded)
    }))
    .buffer_unordered(repo.destinations().walk_reads());
    while let Some((name, loaded)) = reads.next().await {
        match loaded {
            Ok(None) => {}
            Ok(Some((id, snapshot, size))) => {
                objects.insert(
                    ObjectKind::Snapshot.key(&name),
                    Expected::Sized(size as u64),
                );
                snapshots.push((id, snapshot));
            }
            Err(e) => report.problems.push(Problem::lost(
                format!("snapshot {name}"),
                format!("no destination has a good copy: {e}"),
            )),
        }
    }
    drop(reads);
    snapshots.sort_by_key(|(id, s)| (s.time, s.time_nsec, *id));
    repo.remember_snapshots(snapshots.iter().map(|(id, _)| *id));
    report.snapshots = snapshots.len() as u64;
    Ok(Shape {
        objects,
        packs,
        master,
        config,
        snapshots,
    })
}

/// An object that verified against its name but does not open with the
/// repository's keys is junk a provider made (anyone can name bytes by their
/// hash): `None`, so it is neither used nor expected on other destinations;
/// the destinations that hold it note it as not this repository's. A
/// version this build does not read stays an error: it may be real.
fn junk_as_none<T>(opened: Result<T>) -> Result<Option<T>> {
    match opened {
        Ok(value) => Ok(Some(value)),
        Err(crate::Error::Format { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// True when the key file or deletion record `name` verifies against its
/// name somewhere but does not open with the repository's keys.
async fn is_junk(repo: &Repository, kind: ObjectKind, name: &str) -> bool {
    match repo.read_object(kind, name).await {
        Ok(bytes) => crate::ops::sync::opens(repo, kind, name, &bytes).is_err(),
        Err(_) => false,
    }
}

/// Walks every snapshot's trees (with failover): each tree must be readable
/// and every blob a tree references indexed.
pub(super) async fn check_trees(repo: &Repository, shape: &Shape, report: &mut CheckReport) {
    let mut seen: HashSet<BlobId> = HashSet::new();
    // Every snapshot at once; a tree shared by several is read once, and
    // named by the first snapshot that reached it.
    let mut trees = TreeStream::new(repo, &shape.master, Order::AsFetched);
    for (id, snapshot) in &shape.snapshots {
        for root in snapshot.roots() {
            if seen.insert(root) {
                trees.want(root, (*id, String::from("/"), root));
            }
        }
    }
    while let Some(((id, path, tree_id), tree)) = trees.next().await {
        report.trees += 1;
        let tree = match tree {
            Ok(t) => t,
            Err(e) => {
                report.problems.push(Problem::lost(
                    format!("tree {tree_id}"),
                    format!("{e} (directory {path} in snapshot {})", id.short()),
                ));
                continue;
            }
        };
        for node in &tree.nodes {
            let child = join(&path, &node.name);
            match &node.kind {
                NodeKind::Dir { subtree } if seen.insert(*subtree) => {
                    trees.want(*subtree, (id, child, *subtree));
                }
                NodeKind::File { content } => {
                    for blob in content.iter().filter(|b| !shape.master.contains(b)) {
                        report.problems.push(Problem::lost(
                            format!("blob {blob}"),
                            format!("part of {child} in snapshot {} but in no index", id.short()),
                        ));
                    }
                }
                _ => {}
            }
        }
    }
}

/// For blobs no destination holds intact: the snapshots and files they damage.
pub(super) async fn damage_of(
    repo: &Repository,
    shape: &Shape,
    lost_blobs: &HashSet<BlobId>,
) -> Vec<DamagedSnapshot> {
    let in_lost = |blob: &BlobId| lost_blobs.contains(blob);
    let mut hits: Vec<DamagedSnapshot> = shape
        .snapshots
        .iter()
        .map(|(id, snapshot)| DamagedSnapshot {
            snapshot: *id,
            time: snapshot.time,
            paths: Vec::new(),
            more_paths: 0,
        })
        .collect();
    let note = |hit: &mut DamagedSnapshot, path: String| {
        if hit.paths.len() < PATHS_PER_SNAPSHOT {
            hit.paths.push(path);
        } else {
            hit.more_paths += 1;
        }
    };
    // Depth first, so that the paths kept past the limit are the same
    // every run.
    let mut trees = TreeStream::new(repo, &shape.master, Order::DepthFirst);
    for (n, (_, snapshot)) in shape.snapshots.iter().enumerate() {
        for root in snapshot.roots() {
            if in_lost(&root) {
                note(&mut hits[n], "/ (whole directory)".to_string());
            } else {
                trees.want(root, (n, String::from("/")));
            }
        }
    }
    while let Some(((n, path), tree)) = trees.next().await {
        let Ok(tree) = tree else {
            continue; // reported by the tree walk
        };
        for node in &tree.nodes {
            let child = join(&path, &node.name);
            match &node.kind {
                NodeKind::Dir { subtree } if in_lost(subtree) => {
                    note(&mut hits[n], format!("{child} (whole directory)"));
                }
                NodeKind::Dir { subtree } => trees.want(*subtree, (n, child)),
                NodeKind::File { content } if content.iter().any(in_lost) => {
                    note(&mut hits[n], child);
                }
                _ => {}
            }
        }
    }
    hits.into_iter()
        .filter(|hit| !hit.paths.is_empty())
        .map(|mut hit| {
            hit.paths.sort();
            hit
        })
        .collect()
}

/// `parent/name`, for display.
fn join(parent: &str, name: &[u8]) -> String {
    let name = String::from_utf8_lossy(name);
    if parent.ends_with('/') {
        format!("{parent}{name}")
    } else {
        format!("{parent}/{name}")
    }
}

/// The problem kind of a finding no destination can heal.
impl Problem {
    pub(super) fn lost(object: String, message: String) -> Self {
        Problem {
            object,
            key: None,
            destination: None,
            kind: ProblemKind::Lost,
            message,
            good_copies: Vec::new(),
        }
    }
}
