//! `restore --to`: a snapshot's source items uploaded back to a server (the
//! same account after a provider lost them, or a new one), collections
//! recreated with their properties. Every item is read verified from the
//! repository, several in flight; nothing on the server is ever deleted.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use futures::StreamExt;

use crate::error::{Error, Result};
use crate::format::ids::BlobId;
use crate::format::tags;
use crate::format::tree::{Node, NodeKind, Tree};
use crate::ops::restore::Overwrite;
use crate::repo::index::MasterIndex;
use crate::repo::Repository;
use crate::source::{CollectionSink, ItemSink, PushCollection, PushItem, Pushed, SourceError};
use crate::Snapshot;

/// Uploads in flight at once.
const DEFAULT_CONCURRENCY: usize = 8;

/// What to upload and how.
#[derive(Debug, Clone, Default)]
pub struct PushOptions {
    /// Snapshot paths at or below one account of the sink's kind
    /// (`/dav/<host>/<collection>`, `/imap/<user>@<host>/INBOX`); empty: the
    /// snapshot's one account of that kind.
    pub include: Vec<String>,
    /// What to do with an item the server already holds under its name.
    pub overwrite: Overwrite,
    /// Uploads in flight (default 8).
    pub concurrency: Option<usize>,
}

/// What an upload did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PushReport {
    /// Collections found or created on the server.
    pub collections: u64,
    /// Items created.
    pub created: u64,
    /// Items that replaced the server's version.
    pub replaced: u64,
    /// Items the server already held (left as they were).
    pub kept: u64,
    /// Bytes uploaded.
    pub bytes: u64,
    /// What could not be uploaded: snapshot path and reason.
    pub errors: Vec<(String, String)>,
}

/// Live counters for progress displays.
#[derive(Debug, Default)]
pub struct PushProgress {
    /// Items selected so far.
    pub items_total: AtomicU64,
    /// Items settled.
    pub items_done: AtomicU64,
}

/// A collection found in the snapshot, with its items.
struct Found {
    /// Its snapshot path, for messages.
    shown: String,
    collection: PushCollection,
    items: Vec<Node>,
}

/// Uploads the selected items of `snapshot` to `sink`.
///
/// # Errors
/// A selection outside the sink's kind of account or not in the snapshot,
/// credentials refused, repository read failures of trees, interruption.
/// Items that fail are listed in the report.
pub async fn push(
    repo: &Repository,
    snapshot: &Snapshot,
    sink: &dyn ItemSink,
    options: &PushOptions,
    progress: &PushProgress,
    cancel: &AtomicBool,
) -> Result<PushReport> {
    let index = repo.load_index().await?;
    let kind = sink.kind().dir_name();
    let sources = snapshot.sources_tree().ok_or_else(|| {
        Error::InvalidInput("this snapshot holds no source (no contacts, calendars or mail); pick one that does with `lifeboat snapshots`".into())
    })?;
    let accounts = match subdir(&repo.load_tree(&index, &sources).await?, kind.as_bytes()) {
        Some(id) => repo.load_tree(&index, &id).await?,
        None => {
            return Err(Error::InvalidInput(format!(
                "this snapshot holds no {kind} account to upload to {}",
                sink.display()
            )))
        }
    };
    let mut found = Vec::new();
    for (account, below) in selections(&options.include, kind, &accounts)? {
        let Some(account_id) = subdir(&accounts, account.as_bytes()) else {
            return Err(Error::PathNotFound(format!("/{kind}/{account}")));
        };
        collect(repo, &index, account_id, &account, &below, kind, &mut found).await?;
    }
    let mut report = PushReport::default();
    for f in &found {
        progress
            .items_total
            .fetch_add(f.items.len() as u64, Ordering::Relaxed);
    }
    let concurrency = options.concurrency.unwrap_or(DEFAULT_CONCURRENCY).max(1);
    for f in found {
        if cancel.load(Ordering::Relaxed) {
            return Err(Error::Interrupted);
        }
        let target = match sink.open_collection(&f.collection).await {
            Ok(t) => t,
            Err(SourceError::Auth(reason)) => {
                return Err(Error::SourceAuth {
                    source_name: sink.display(),
                    reason,
                })
            }
            Err(SourceError::Failed(reason)) => {
                report.errors.push((f.shown.clone(), reason));
                continue;
            }
        };
        report.collections += 1;
        let target: &dyn CollectionSink = target.as_ref();
        let (index, overwrite) = (&index, options.overwrite);
        let mut uploads = futures::stream::iter(f.items.iter())
            .map(|node| async move {
                let body = read_item(repo, index, node).await;
                let result = match &body {
                    Ok(body) => {
                        let item = PushItem {
                            name: &node.name,
                            extra: &node.extra,
                            mtime: node.mtime,
                        };
                        target
                            .put(item, body, overwrite)
                            .await
                            .map_err(|e| match e {
                                SourceError::Auth(r) => (true, r),
                                SourceError::Failed(r) => (false, r),
                            })
                    }
                    Err(e) => Err((false, e.to_string())),
                };
                (node, body.map(|b| b.len() as u64).unwrap_or(0), result)
            })
            .buffer_unordered(concurrency);
        while let Some((node, bytes, result)) = uploads.next().await {
            progress.items_done.fetch_add(1, Ordering::Relaxed);
            match result {
                Ok(Pushed::Created) => {
                    report.created += 1;
                    report.bytes += bytes;
                }
                Ok(Pushed::Replaced) => {
                    report.replaced += 1;
                    report.bytes += bytes;
                }
                Ok(Pushed::Kept) => report.kept += 1,
                Err((true, reason)) => {
                    return Err(Error::SourceAuth {
                        source_name: sink.display(),
                        reason,
                    })
                }
                Err((false, reason)) => {
                    let path = format!("{}/{}", f.shown, String::from_utf8_lossy(&node.name));
                    report.errors.push((path, reason));
                }
            }
        }
    }
    Ok(report)
}

/// The accounts and paths below them that the include patterns name.
fn selections(
    include: &[String],
    kind: &str,
    accounts: &Tree,
) -> Result<Vec<(String, Vec<Vec<u8>>)>> {
    if include.is_empty() {
        let names: Vec<String> = accounts
            .nodes
            .iter()
            .filter(|n| n.is_dir())
            .map(|n| String::from_utf8_lossy(&n.name).into_owned())
            .collect();
        return match names.as_slice() {
            [one] => Ok(vec![(one.clone(), Vec::new())]),
            _ => Err(Error::InvalidInput(format!(
                "the snapshot holds several {kind} accounts ({}); name one with --include /{kind}/ACCOUNT",
                names.join(", ")
            ))),
        };
    }
    let mut chosen = Vec::new();
    for pattern in include {
        let components: Vec<&str> = Path::new(pattern)
            .components()
            .filter_map(|c| match c {
                std::path::Component::Normal(s) => s.to_str(),
                _ => None,
            })
            .collect();
        match components.as_slice() {
            [k, account, rest @ ..] if *k == kind => {
                chosen.push((account.to_string(), rest.iter().map(|c| c.as_bytes().to_vec()).collect()));
            }
            _ => {
                return Err(Error::InvalidInput(format!(
                    "--include {pattern}: uploads to this account take paths below /{kind}/ACCOUNT (without wildcards)"
                )))
            }
        }
    }
    Ok(chosen)
}

/// Every collection at or below `below` in the account's tree.
#[allow(clippy::too_many_arguments)]
async fn collect(
    repo: &Repository,
    index: &MasterIndex,
    account: BlobId,
    account_name: &str,
    below: &[Vec<u8>],
    kind: &str,
    found: &mut Vec<Found>,
) -> Result<()> {
    let shown = |path: &[Vec<u8>]| {
        let mut s = format!("/{kind}/{account_name}");
        for c in path {
            s.push('/');
            s.push_str(&String::from_utf8_lossy(c));
        }
        s
    };
    // Walk down to the selection; a selected item restores alone.
    let mut tree = repo.load_tree(index, &account).await?;
    let mut dir_extra = None;
    for (depth, name) in below.iter().enumerate() {
        let node = tree
            .find(name)
            .cloned()
            .ok_or_else(|| Error::PathNotFound(shown(&below[..=depth])))?;
        match node.kind {
            NodeKind::Dir { subtree } => {
                dir_extra = Some(node.extra.clone());
                tree = repo.load_tree(index, &subtree).await?;
            }
            NodeKind::File { .. } if depth + 1 == below.len() => {
                let extra = dir_extra
                    .filter(|e| e.get(tags::COLLECTION_KIND).is_some())
                    .ok_or_else(|| {
                        Error::InvalidInput(format!(
                            "{}: not an item of a collection",
                            shown(below)
                        ))
                    })?;
                found.push(Found {
                    shown: shown(&below[..depth]),
                    collection: PushCollection {
                        path: below[..depth].to_vec(),
                        extra,
                    },
                    items: vec![node],
                });
                return Ok(());
            }
            _ => return Err(Error::PathNotFound(shown(&below[..=depth]))),
        }
    }
    // Depth first from the selection.
    let mut stack = vec![(below.to_vec(), dir_extra, tree)];
    while let Some((path, extra, tree)) = stack.pop() {
        let items: Vec<Node> = tree
            .nodes
            .iter()
            .filter(|n| matches!(n.kind, NodeKind::File { .. }))
            .cloned()
            .collect();
        if let Some(extra) = extra.filter(|e| e.get(tags::COLLECTION_KIND).is_some()) {
            found.push(Found {
                shown: shown(&path),
                collection: PushCollection {
                    path: path.clone(),
                    extra,
                },
                items,
            });
        }
        for node in tree.nodes.iter().rev() {
            if let NodeKind::Dir { subtree } = node.kind {
                let mut child = path.clone();
                child.push(node.name.clone());
                let sub = repo.load_tree(index, &subtree).await?;
                stack.push((child, Some(node.extra.clone()), sub));
            }
        }
    }
    Ok(())
}

/// An item's bytes, every blob verified, its length checked.
async fn read_item(repo: &Repository, index: &MasterIndex, node: &Node) -> Result<Vec<u8>> {
    let NodeKind::File { content } = &node.kind else {
        return Err(Error::internal("an item that is not a file"));
    };
    let mut body = Vec::with_capacity(node.size.min(64 << 20) as usize);
    for id in content {
        body.extend(repo.read_blob(index, id).await?);
    }
    if body.len() as u64 != node.size {
        return Err(Error::Damaged {
            what: format!(
                "item {}: {} bytes read, {} recorded",
                String::from_utf8_lossy(&node.name),
                body.len(),
                node.size
            ),
        });
    }
    Ok(body)
}

/// The subtree of the directory `name` in `tree`.
fn subdir(tree: &Tree, name: &[u8]) -> Option<BlobId> {
    match tree.find(name)?.kind {
        NodeKind::Dir { subtree } => Some(subtree),
        _ => None,
    }
}
