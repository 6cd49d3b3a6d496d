//! `dump`: one file's bytes, or a directory as a tar or zip stream, from a
//! snapshot to any writer (standard output, a file).
//!
//! Blobs are read several ahead of the writer and each is verified (opened
//! with the keys, its id checked) before a byte of it is written; a read
//! fails over across destinations as a restore's does. The archive is
//! encoded on a thread of its own, fed through a bounded channel, so memory
//! stays at a few blobs however large the tree, and a slow reader of the
//! output (a pipe) never stalls the runtime.

mod channel;
mod tar;
mod zip;

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use futures::{Stream, StreamExt};

use self::channel::{Message, Sender};
use crate::error::{Error, Result};
use crate::format::ids::BlobId;
use crate::format::snapshot::Snapshot;
use crate::format::tree::{Node, NodeKind};
use crate::ops::ls::{find_node, Walker};
use crate::repo::index::MasterIndex;
use crate::repo::Repository;

/// Blobs read ahead of the writer (each at most a chunk, 8 MiB).
pub const READ_AHEAD: usize = 8;

/// The archive a directory is written as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ArchiveFormat {
    /// POSIX tar with GNU extensions for long names: modes, owners,
    /// times, symlinks, hard links, devices and pipes.
    #[default]
    Tar,
    /// Zip (deflated), for systems without tar: modes, times and symlinks;
    /// hard links are stored as copies; names must be UTF-8.
    Zip,
}

impl std::str::FromStr for ArchiveFormat {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        match text {
            "tar" => Ok(ArchiveFormat::Tar),
            "zip" => Ok(ArchiveFormat::Zip),
            other => Err(Error::InvalidInput(format!(
                "archive format {other:?}: use tar or zip"
            ))),
        }
    }
}

/// What a dump wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DumpOutcome {
    /// Files written (hard links to a file already written count too).
    pub files: u64,
    /// Directories written.
    pub dirs: u64,
    /// Other entries written (links, devices, pipes).
    pub others: u64,
    /// Entries an archive cannot hold (sockets; zip: devices and pipes),
    /// left out.
    pub skipped: u64,
    /// Content bytes written.
    pub bytes: u64,
    /// True when a single file's bytes were written as they are (no archive).
    pub raw: bool,
}

/// A file's content, blob by blob, read [`READ_AHEAD`] ahead, each blob
/// verified.
pub fn content<'a>(
    repo: &'a Repository,
    index: &'a MasterIndex,
    blobs: &'a [BlobId],
) -> impl Stream<Item = Result<Vec<u8>>> + 'a {
    futures::stream::iter(blobs)
        .map(move |id| repo.read_blob(index, id))
        .buffered(READ_AHEAD)
}

/// Writes the entry at `path` of `snapshot` to `out`: a regular file's
/// bytes as they are, anything else (a directory, `/` for the whole
/// snapshot) as a `format` archive whose names are relative to the
/// entry's parent directory (`dump S /home/me/docs` holds `docs/…`).
///
/// # Errors
/// [`Error::PathNotFound`]; read and verification failures; the writer's
/// failures (a closed pipe). What was written before a failure stays
/// written: a dump that fails is incomplete, and the caller says so.
pub async fn dump<W: Write + Send + 'static>(
    repo: &Repository,
    index: &MasterIndex,
    snapshot: &Snapshot,
    path: &Path,
    format: ArchiveFormat,
    out: W,
) -> Result<DumpOutcome> {
    let path = PathBuf::from("/").join(path);
    let found = locate(repo, index, snapshot, &path).await?;
    let (tx, writer) = match (&found, format) {
        (Located::Node(node), _) if matches!(node.kind, NodeKind::File { .. }) => {
            channel::spawn(move |rx| channel::copy_raw(rx, out))
        }
        (_, ArchiveFormat::Tar) => channel::spawn(move |rx| tar::write(rx, out)),
        (_, ArchiveFormat::Zip) => channel::spawn(move |rx| zip::write(rx, out)),
    };
    let mut sent = send_all(repo, index, &found, &path, format, &tx).await;
    if sent.is_ok() {
        if let Err(e) = tx.send(Message::End).await {
            sent = Err(e);
        }
    }
    drop(tx);
    let written = writer.join().await;
    // A writer that failed on its own (a closed pipe, a name zip cannot
    // hold) makes the walk fail too: its error is the cause. A writer that
    // stopped because the walk failed is not.
    let mut outcome = match (sent, written) {
        (Ok(outcome), Ok(skipped)) => DumpOutcome { skipped, ..outcome },
        (Ok(_), Err(e)) | (Err(_), Err(e @ (Error::Output(_) | Error::InvalidInput(_)))) => {
            return Err(e)
        }
        (Err(e), _) => return Err(e),
    };
    outcome.raw = matches!(&found, Located::Node(n) if matches!(n.kind, NodeKind::File { .. }));
    Ok(outcome)
}

/// True when [`dump`] of `path` writes an archive (anything but a regular
/// file), so a caller can refuse to send one to a terminal.
///
/// # Errors
/// As [`dump`]'s lookup.
pub async fn writes_archive(
    repo: &Repository,
    index: &MasterIndex,
    snapshot: &Snapshot,
    path: &Path,
) -> Result<bool> {
    let path = PathBuf::from("/").join(path);
    Ok(match locate(repo, index, snapshot, &path).await? {
        Located::Node(node) => !matches!(node.kind, NodeKind::File { .. }),
        Located::Root(_) => true,
    })
}

/// The entry a dump starts from.
enum Located {
    /// Some node below the root.
    Node(Node),
    /// The snapshot's root: every root tree.
    Root(Vec<BlobId>),
}

async fn locate(
    repo: &Repository,
    index: &MasterIndex,
    snapshot: &Snapshot,
    path: &Path,
) -> Result<Located> {
    if path == Path::new("/") {
        return Ok(Located::Root(snapshot.roots()));
    }
    let mut missing = None;
    for root in snapshot.roots() {
        match find_node(repo, index, root, path).await {
            Ok(Some(node)) => return Ok(Located::Node(node)),
            Ok(None) => return Ok(Located::Root(vec![root])),
            Err(e @ Error::PathNotFound(_)) => missing = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(missing.unwrap_or_else(|| Error::PathNotFound(path.display().to_string())))
}

/// Walks what `found` covers and sends every entry (and file's content)
/// to the writer.
async fn send_all(
    repo: &Repository,
    index: &MasterIndex,
    found: &Located,
    path: &Path,
    format: ArchiveFormat,
    tx: &Sender,
) -> Result<DumpOutcome> {
    let mut outcome = DumpOutcome::default();
    let (base, first, roots) = match found {
        Located::Node(node) if matches!(node.kind, NodeKind::File { .. }) => {
            send_content(repo, index, node, tx, &mut outcome).await?;
            return Ok(outcome);
        }
        Located::Node(node) => {
            // Names relative to the entry's parent: `docs`, `docs/a.txt`.
            let base = path.parent().unwrap_or(Path::new("/")).to_path_buf();
            let roots = match node.kind {
                NodeKind::Dir { subtree } => vec![(subtree, path.to_path_buf())],
                _ => Vec::new(),
            };
            (base, Some((path.to_path_buf(), node.clone())), roots)
        }
        Located::Root(roots) => {
            let base = PathBuf::from("/");
            let roots = roots.iter().map(|r| (*r, base.clone())).collect();
            (base, None, roots)
        }
    };
    // Every entry below, in walk order.
    let walked = futures::stream::iter(roots).flat_map(|(tree, dir)| {
        futures::stream::unfold(Walker::new(repo, index, tree, dir), |mut walker| async move {
            walker.next().await.transpose().map(|entry| (entry, walker))
        })
    });
    let entries = futures::stream::iter(first.map(Ok)).chain(walked);
    // Each entry becomes its header and one read per blob; the reads run
    // [`ARCHIVE_AHEAD`] ahead of the writer across files, so a directory of
    // small files costs about one round trip per batch of files, not one
    // per file.
    let mut links = HashMap::new();
    let mut counts = DumpOutcome::default();
    let mut bytes = 0;
    {
        let units = entries
            .map(|entry| match entry {
                Ok((at, node)) => plan(
                    index,
                    relative(&base, &at),
                    &node,
                    format,
                    &mut links,
                    &mut counts,
                ),
                Err(e) => vec![Err(e)],
            })
            .flat_map(futures::stream::iter)
            .map(|unit| async move {
                match unit? {
                    Unit::Ready(message) => Ok(message),
                    Unit::Blob(id) => repo.read_blob(index, &id).await.map(Message::Data),
                }
            })
            .buffered(ARCHIVE_AHEAD);
        let mut units = std::pin::pin!(units);
        while let Some(message) = units.next().await {
            let message = message?;
            if let Message::Data(data) = &message {
                bytes += data.len() as u64;
            }
            tx.send(message).await?;
        }
    }
    Ok(DumpOutcome { bytes, ..counts })
}

/// Reads in flight ahead of an archive's writer (across files).
const ARCHIVE_AHEAD: usize = 16;

/// What an archive entry turns into: its header, then its blobs' reads.
enum Unit {
    Ready(Message),
    Blob(BlobId),
}

/// `path` below `base`, as the archive's raw name bytes.
fn relative(base: &Path, path: &Path) -> Vec<u8> {
    path.strip_prefix(base)
        .unwrap_or(path)
        .as_os_str()
        .as_bytes()
        .to_vec()
}

/// One archive entry: its header, then (unless it is a hard link to a
/// file already written: tar only, zip stores a copy) a read per blob.
fn plan(
    index: &MasterIndex,
    name: Vec<u8>,
    node: &Node,
    format: ArchiveFormat,
    links: &mut HashMap<(u64, u64), Vec<u8>>,
    outcome: &mut DumpOutcome,
) -> Vec<Result<Unit>> {
    let mut link_to = None;
    if let NodeKind::File { content } = &node.kind {
        if node.links > 1 && format == ArchiveFormat::Tar {
            match links.get(&(node.device, node.inode)) {
                Some(first) => link_to = Some(first.clone()),
                None => {
                    links.insert((node.device, node.inode), name.clone());
                }
            }
        }
        // The header states the size before any content is read: a node
        // whose blobs add up to another size is refused, not truncated.
        if link_to.is_none() {
            let stored = content
                .iter()
                .map(|id| {
                    index
                        .lookup(id)
                        .map(|l| u64::from(l.raw_length))
                        .ok_or_else(|| Error::MissingBlob { blob: id.to_hex() })
                })
                .sum::<Result<u64>>();
            match stored {
                Ok(stored) if stored == node.size => {}
                Ok(stored) => {
                    return vec![Err(Error::format(
                        format!("file {}", String::from_utf8_lossy(&name)),
                        format!(
                            "recorded size {} differs from its content's {stored} bytes",
                            node.size
                        ),
                    ))]
                }
                Err(e) => return vec![Err(e)],
            }
        }
    }
    match node.kind {
        NodeKind::File { .. } => outcome.files += 1,
        NodeKind::Dir { .. } => outcome.dirs += 1,
        _ => outcome.others += 1,
    }
    let blobs = match (&node.kind, &link_to) {
        (NodeKind::File { content }, None) => content.clone(),
        _ => Vec::new(),
    };
    let mut units = Vec::with_capacity(1 + blobs.len());
    units.push(Ok(Unit::Ready(Message::Entry {
        name,
        node: Box::new(header_of(node)),
        link_to,
    })));
    units.extend(blobs.into_iter().map(|id| Ok(Unit::Blob(id))));
    units
}

/// A node without its content list (the writer needs only the metadata).
fn header_of(node: &Node) -> Node {
    let mut header = node.clone();
    if let NodeKind::File { content } = &mut header.kind {
        content.clear();
    }
    header
}

async fn send_content(
    repo: &Repository,
    index: &MasterIndex,
    node: &Node,
    tx: &Sender,
    outcome: &mut DumpOutcome,
) -> Result<()> {
    let NodeKind::File { content: blobs } = &node.kind else {
        return Ok(());
    };
    let mut stream = std::pin::pin!(content(repo, index, blobs));
    while let Some(blob) = stream.next().await {
        let blob = blob?;
        outcome.bytes += blob.len() as u64;
        tx.send(Message::Data(blob)).await?;
    }
    Ok(())
}

/// A name as a path, for the archive writers.
pub(crate) fn name_path(name: &[u8]) -> &Path {
    Path::new(OsStr::from_bytes(name))
}
