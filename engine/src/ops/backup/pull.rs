//! Pulling sources: each account's collections listed, the items whose
//! version changed since the parent snapshot fetched (several requests in
//! flight), chunked and sealed like file content, and the sources tree built
//! one collection at a time, so memory holds one collection's nodes, not an
//! account's (FORMAT.md §4.11).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crossbeam_channel::Sender;
use futures::StreamExt;

use super::pipeline::{SealBatch, SealJob, Shared, Stop};
use super::stats::add;
use super::walker::SkippedEntry;
use crate::error::Error;
use crate::format::extra::Extra;
use crate::format::ids::BlobId;
use crate::format::pack::BlobType;
use crate::format::tags;
use crate::format::tree::{valid_name, Node, NodeKind, Tree};
use crate::format::RepoFile;
use crate::repo::Repository;
use crate::source::{Collection, FetchedItem, ItemSource, SourceError, SourceRoot};

/// Fetch requests a source has in flight at once.
const FETCHES_IN_FLIGHT: usize = 4;
/// Bytes of item bodies one fetch asks for, by the listed sizes (an item
/// larger than this goes alone): with [`FETCHES_IN_FLIGHT`], what a large
/// mailbox holds in memory at once, whatever its size.
const FETCH_BYTES: u64 = 8 << 20;

/// What one source contributed to a run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceReport {
    /// The source as shown: `dav://host/`, `imap://user@host/`.
    pub name: String,
    /// Collections (address books, calendars, mailboxes) stored.
    pub collections: u64,
    /// Items in the snapshot.
    pub items: u64,
    /// Items downloaded in this run.
    pub fetched: u64,
    /// Items kept from the parent snapshot without downloading them.
    pub unchanged: u64,
    /// Items stored as served although they do not parse.
    pub malformed: u64,
    /// Bytes of the items in the snapshot.
    pub bytes: u64,
    /// Bytes of item bodies downloaded in this run.
    pub bytes_fetched: u64,
    /// Requests sent to the source.
    pub requests: u64,
    /// Bytes received from the source (bodies, listings, protocol).
    pub bytes_in: u64,
    /// Milliseconds from the first request to the source to the last.
    pub fetch_ms: u64,
    /// Why the source was left out of the snapshot, when it was.
    pub error: Option<String>,
}

/// The sources tree and each source's report.
pub(crate) struct Pulled {
    /// The sources tree, when any source was stored.
    pub root: Option<BlobId>,
    pub reports: Vec<SourceReport>,
}

/// Owner and modes recorded on source nodes: the backup's own user, files
/// 0600 and directories 0700 (the items are private data).
struct Owner {
    uid: u32,
    gid: u32,
    user: String,
    group: String,
}

impl Owner {
    fn current() -> Self {
        // SAFETY: getuid/getgid cannot fail.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        Owner {
            uid,
            gid,
            user: crate::users::user_name(uid),
            group: crate::users::group_name(gid),
        }
    }

    fn node(&self, name: Vec<u8>, kind: NodeKind, size: u64, mtime: i64, extra: Extra) -> Node {
        let mode = if matches!(kind, NodeKind::Dir { .. }) {
            0o700
        } else {
            0o600
        };
        Node {
            name,
            kind,
            size,
            mode,
            uid: self.uid,
            gid: self.gid,
            user: self.user.clone(),
            group: self.group.clone(),
            mtime,
            mtime_nsec: 0,
            ctime: 0,
            ctime_nsec: 0,
            inode: 0,
            device: 0,
            links: 1,
            extra,
        }
    }
}

/// Why one source stopped.
enum Fail {
    /// Leave this source out and go on.
    Source(String),
    /// Stop the run.
    Stop(Stop),
}

impl From<Stop> for Fail {
    fn from(s: Stop) -> Self {
        Fail::Stop(s)
    }
}

/// Pulls every source; runs on its own thread beside the walker.
pub(crate) struct Puller<'a> {
    pub shared: &'a Shared,
    pub repo: &'a Repository,
    pub runtime: tokio::runtime::Handle,
    pub seal: Sender<Vec<SealJob>>,
    pub skipped: Arc<Mutex<Vec<SkippedEntry>>>,
}

impl Puller<'_> {
    /// Pulls `sources` into a new sources tree, comparing with the parent
    /// snapshot's (`parent_root`).
    pub(crate) fn pull(
        &self,
        sources: &[Arc<dyn ItemSource>],
        parent_root: Option<BlobId>,
    ) -> Result<Pulled, Stop> {
        let owner = Owner::current();
        let parent = self.load(parent_root);
        let mut kinds: BTreeMap<&'static str, Vec<Node>> = BTreeMap::new();
        let mut reports = Vec::new();
        for source in sources {
            let root = source.root();
            let parent_account = parent
                .as_ref()
                .and_then(|t| subdir(t, root.kind.dir_name().as_bytes()))
                .and_then(|id| self.load(Some(id)))
                .and_then(|t| t.find(root.account.as_bytes()).cloned())
                .and_then(|node| match node.kind {
                    NodeKind::Dir { subtree } => Some((subtree, node.extra)),
                    _ => None,
                });
            let mut report = SourceReport {
                name: root.display(),
                ..SourceReport::default()
            };
            let started = Instant::now();
            let pulled =
                self.pull_account(source.as_ref(), &root, parent_account, &owner, &mut report);
            report.fetch_ms = started.elapsed().as_millis() as u64;
            let traffic = source.traffic();
            report.requests = traffic.requests;
            report.bytes_in = traffic.bytes_in;
            match pulled {
                Ok(node) => kinds.entry(root.kind.dir_name()).or_default().push(node),
                Err(Fail::Source(reason)) => {
                    add(&self.shared.progress.errors, 1);
                    tracing::warn!("source {} left out: {reason}", root.display());
                    self.skipped
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(SkippedEntry {
                            path: root.display().into(),
                            reason: reason.clone(),
                        });
                    report.error = Some(reason);
                }
                Err(Fail::Stop(stop)) => return Err(stop),
            }
            reports.push(report);
        }
        if kinds.is_empty() {
            return Ok(Pulled {
                root: None,
                reports,
            });
        }
        let mut seal = SealBatch::new(&self.seal);
        let mut top = Vec::new();
        for (kind, accounts) in kinds {
            let mtime = accounts.iter().map(|n| n.mtime).max().unwrap_or(0);
            let id = self.store_tree(accounts, &mut seal)?;
            let node_kind = NodeKind::Dir { subtree: id };
            top.push(owner.node(kind.as_bytes().to_vec(), node_kind, 0, mtime, Extra::new()));
        }
        let root = self.store_tree(top, &mut seal)?;
        seal.flush()?;
        Ok(Pulled {
            root: Some(root),
            reports,
        })
    }

    /// One account: its directory node, every collection below it.
    fn pull_account(
        &self,
        source: &dyn ItemSource,
        root: &SourceRoot,
        parent: Option<(BlobId, Extra)>,
        owner: &Owner,
        report: &mut SourceReport,
    ) -> Result<Node, Fail> {
        let (parent, parent_extra) = match parent {
            Some((id, extra)) => (Some(id), Some(extra)),
            None => (None, None),
        };
        let previous = super::previous::ParentAccount {
            repo: self.repo,
            index: &self.shared.index,
            account: parent,
            account_extra: parent_extra,
        };
        let listed = self.runtime.block_on(source.collections(&previous));
        let collections = listed.map_err(|e| self.source_failure(root, e))?;
        // Every directory to build: the collections and the directories
        // above them, built deepest first (a path sorts after its prefixes,
        // so in reverse order every directory comes after those below it).
        let mut by_path: BTreeMap<Vec<Vec<u8>>, Option<Collection>> = BTreeMap::new();
        by_path.insert(Vec::new(), None);
        for collection in collections {
            if collection.path.is_empty() || !collection.path.iter().all(|c| valid_name(c)) {
                self.skip(
                    format!("{}{}", root.display(), lossy_path(&collection.path)),
                    "the server named this collection with a path that is not a valid file name; left out".into(),
                );
                continue;
            }
            for depth in 1..collection.path.len() {
                by_path
                    .entry(collection.path[..depth].to_vec())
                    .or_insert(None);
            }
            by_path.insert(collection.path.clone(), Some(collection));
        }
        let mut pending: HashMap<Vec<Vec<u8>>, Vec<Node>> = HashMap::new();
        let mut seal = SealBatch::new(&self.seal);
        let mut account_extra = Extra::new();
        for field in source.account_extra().fields() {
            account_extra.set(field.tag, field.value.clone());
        }
        account_extra.set(tags::ACCOUNT_URL, root.display().into_bytes());
        while let Some((path, collection)) = by_path.pop_last() {
            if self.shared.cancelled() {
                return Err(Fail::Stop(Stop::Failed(Error::Interrupted)));
            }
            let mut nodes = pending.remove(&path).unwrap_or_default();
            let mut extra = Extra::new();
            if let Some(collection) = collection {
                let parent_tree = self.find(parent, &path).and_then(|id| self.load(Some(id)));
                nodes.extend(self.pull_collection(
                    source,
                    root,
                    &collection,
                    parent_tree.as_ref(),
                    owner,
                    &mut seal,
                    report,
                )?);
                report.collections += 1;
                extra = collection.extra;
            }
            let mtime = nodes.iter().map(|n| n.mtime).max().unwrap_or(0);
            let id = self.store_tree(nodes, &mut seal)?;
            let kind = NodeKind::Dir { subtree: id };
            match path.split_last() {
                Some((name, above)) => {
                    let node = owner.node(name.clone(), kind, 0, mtime, extra);
                    pending.entry(above.to_vec()).or_default().push(node);
                }
                None => {
                    seal.flush()?;
                    let name = root.account.clone().into_bytes();
                    return Ok(owner.node(name, kind, 0, mtime, account_extra));
                }
            }
        }
        Err(Fail::Stop(Stop::Failed(Error::internal(
            "source tree built without its account directory",
        ))))
    }

    /// One collection's item nodes: unchanged items from the parent,
    /// the others fetched.
    #[allow(clippy::too_many_arguments)]
    fn pull_collection(
        &self,
        source: &dyn ItemSource,
        root: &SourceRoot,
        collection: &Collection,
        parent: Option<&Tree>,
        owner: &Owner,
        seal: &mut SealBatch<'_>,
        report: &mut SourceReport,
    ) -> Result<Vec<Node>, Fail> {
        let progress = &self.shared.progress;
        let mut nodes: Vec<Option<Node>> = vec![None; collection.items.len()];
        let mut wanted = Vec::new();
        let mut names = BTreeSet::new();
        for (i, item) in collection.items.iter().enumerate() {
            if !valid_name(&item.name) || !names.insert(item.name.as_slice()) {
                self.skip(
                    format!(
                        "{}{}/{}",
                        root.display(),
                        lossy_path(&collection.path),
                        String::from_utf8_lossy(&item.name)
                    ),
                    "the server listed an item whose name is not a valid file name or is listed twice; left out".into(),
                );
                continue;
            }
            add(&progress.items_listed, 1);
            let old = parent.and_then(|t| t.find(&item.name));
            // An item stored malformed is fetched again: what the server
            // served may have been damaged on the way.
            let reusable = |n: &&Node| {
                n.extra.get(tags::ITEM_VERSION) == Some(&item.version[..])
                    && n.extra.get(tags::ITEM_MALFORMED).is_none()
            };
            match old.filter(reusable) {
                Some(Node {
                    kind: NodeKind::File { content },
                    size,
                    ..
                }) if content.iter().all(|id| self.shared.index.contains(id)) => {
                    let kept = item_extra(item);
                    let kind = NodeKind::File {
                        content: content.clone(),
                    };
                    nodes[i] = Some(owner.node(item.name.clone(), kind, *size, item.mtime, kept));
                    report.unchanged += 1;
                    add(&progress.items_done, 1);
                }
                _ => wanted.push(i),
            }
        }
        let batches = batches(collection, &wanted, source.batch_size().max(1));
        let fetched = self.runtime.block_on(async {
            let mut answers = futures::stream::iter(batches.iter().map(Vec::as_slice))
                .map(|chunk| source.fetch(collection, chunk))
                .buffer_unordered(FETCHES_IN_FLIGHT);
            while let Some(answer) = answers.next().await {
                for item in answer.map_err(|e| self.source_failure(root, e))? {
                    let slot = nodes.get_mut(item.index);
                    let asked = wanted.binary_search(&item.index).is_ok();
                    if let (Some(slot @ None), true) = (slot, asked) {
                        *slot = Some(self.store_item(collection, item, owner, seal, report)?);
                        add(&progress.items_done, 1);
                    }
                }
            }
            Ok::<(), Fail>(())
        });
        fetched?;
        let nodes: Vec<Node> = nodes.into_iter().flatten().collect();
        for node in &nodes {
            report.items += 1;
            report.bytes += node.size;
            add(&progress.total_files, 1);
            add(&progress.total_bytes, node.size);
        }
        Ok(nodes)
    }

    /// Chunks, hashes and seals one fetched item; its node.
    fn store_item(
        &self,
        collection: &Collection,
        item: FetchedItem,
        owner: &Owner,
        seal: &mut SealBatch<'_>,
        report: &mut SourceReport,
    ) -> Result<Node, Fail> {
        let listed = &collection.items[item.index];
        let shared = self.shared;
        let mut content = Vec::new();
        let mut offset = 0;
        for length in shared.chunker.chunk_lengths(&item.body) {
            let chunk = &item.body[offset..offset + length];
            offset += length;
            let id = shared.keys.blob_id(chunk);
            content.push(id);
            if shared.claim(&id) {
                seal.push(SealJob {
                    blob_type: BlobType::Data,
                    id,
                    data: chunk.to_vec(),
                })?;
            }
        }
        let mut extra = item_extra(listed);
        if item.malformed {
            extra.set(tags::ITEM_MALFORMED, Vec::new());
            report.malformed += 1;
        }
        let size = item.body.len() as u64;
        report.fetched += 1;
        report.bytes_fetched += size;
        let kind = NodeKind::File { content };
        Ok(owner.node(listed.name.clone(), kind, size, listed.mtime, extra))
    }

    /// Encodes a tree of `nodes`, seals it when new; its id.
    fn store_tree(&self, nodes: Vec<Node>, seal: &mut SealBatch<'_>) -> Result<BlobId, Stop> {
        let bytes = Tree::new(nodes).encode();
        let id = self.shared.keys.blob_id(&bytes);
        if self.shared.claim(&id) {
            seal.push(SealJob {
                blob_type: BlobType::Tree,
                id,
                data: bytes,
            })?;
        }
        Ok(id)
    }

    /// A parent tree, or `None` when there is none or it cannot be read
    /// (then every item below it is fetched again).
    fn load(&self, id: Option<BlobId>) -> Option<Tree> {
        let id = id?;
        match self
            .runtime
            .block_on(self.repo.load_tree(&self.shared.index, &id))
        {
            Ok(tree) => Some(tree),
            Err(e) => {
                tracing::warn!("parent tree {id} unreadable, fetching every item below it: {e}");
                None
            }
        }
    }

    /// The parent's directory at `path` below the account directory `from`.
    fn find(&self, from: Option<BlobId>, path: &[Vec<u8>]) -> Option<BlobId> {
        let mut id = from?;
        for name in path {
            id = subdir(&self.load(Some(id))?, name)?;
        }
        Some(id)
    }

    fn source_failure(&self, root: &SourceRoot, e: SourceError) -> Fail {
        match e {
            SourceError::Auth(reason) => Fail::Stop(Stop::Failed(Error::SourceAuth {
                source_name: root.display(),
                reason,
            })),
            SourceError::Failed(reason) => Fail::Source(reason),
        }
    }

    fn skip(&self, path: String, reason: String) {
        add(&self.shared.progress.errors, 1);
        tracing::warn!("skipping {path}: {reason}");
        self.skipped
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(SkippedEntry {
                path: path.into(),
                reason,
            });
    }
}

/// `wanted` in fetch batches of at most `count` items and about
/// [`FETCH_BYTES`] of listed size each.
fn batches(collection: &Collection, wanted: &[usize], count: usize) -> Vec<Vec<usize>> {
    let mut batches: Vec<Vec<usize>> = Vec::new();
    let mut bytes = 0u64;
    for &i in wanted {
        let size = collection.items.get(i).map_or(0, |item| item.size);
        let full = batches
            .last()
            .is_none_or(|b| b.len() >= count || (bytes + size > FETCH_BYTES && !b.is_empty()));
        if full {
            batches.push(Vec::new());
            bytes = 0;
        }
        bytes += size;
        if let Some(batch) = batches.last_mut() {
            batch.push(i);
        }
    }
    batches
}

/// The metadata an item's node carries: the source's, and its version.
fn item_extra(item: &crate::source::ItemEntry) -> Extra {
    let mut extra = item.extra.clone();
    extra.remove(tags::ITEM_MALFORMED);
    extra.set(tags::ITEM_VERSION, item.version.clone());
    extra
}

/// The subtree of the directory `name` in `tree`.
fn subdir(tree: &Tree, name: &[u8]) -> Option<BlobId> {
    match tree.find(name)?.kind {
        NodeKind::Dir { subtree } => Some(subtree),
        _ => None,
    }
}

/// A collection path shown, lossily.
fn lossy_path(path: &[Vec<u8>]) -> String {
    path.iter()
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::ItemEntry;

    fn collection(sizes: &[u64]) -> Collection {
        let items = sizes
            .iter()
            .enumerate()
            .map(|(i, &size)| ItemEntry {
                name: format!("{i}.eml").into_bytes(),
                version: vec![],
                mtime: 0,
                size,
                extra: Extra::new(),
            })
            .collect();
        Collection {
            path: vec![b"INBOX".to_vec()],
            extra: Extra::new(),
            items,
        }
    }

    #[test]
    fn fetch_batches_stay_within_count_and_bytes() {
        let mb = 1 << 20;
        let c = collection(&[mb, mb, 6 * mb, 30 * mb, 1, 1, 1]);
        let all: Vec<usize> = (0..7).collect();
        assert_eq!(
            batches(&c, &all, 64),
            vec![vec![0, 1, 2], vec![3], vec![4, 5, 6]]
        );
        assert_eq!(
            batches(&c, &all, 2),
            vec![vec![0, 1], vec![2], vec![3], vec![4, 5], vec![6]]
        );
        assert!(batches(&c, &[], 8).is_empty());
    }
}
