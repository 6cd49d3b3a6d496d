//! The uploader: writes each finished pack to every destination through a
//! queue per destination, then writes the index files that list the packs
//! (only once a pack is stored on every destination still in the run:
//! invariant 1's order, per destination).
//!
//! Each destination drains its own queue with its own concurrency, so a fast
//! destination is not held to a slow one's pace beyond the queue's depth, and
//! a destination that fails is dropped (by the destination set) while the
//! others go on. Packs are shared `Bytes`: one copy in memory however many
//! destinations hold it in their queues, and the queues' depth bounds memory.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use futures::StreamExt;
use lifeboat_backends::{Backend, ErrorKind};
use tokio::sync::mpsc;

use super::pipeline::Stop;
use super::stats::add;
use crate::error::{Error, Result};
use crate::format::ids::ObjectKind;
use crate::format::index::IndexFile;
use crate::format::pack::{BlobType, FinishedPack};
use crate::repo::Repository;

/// Packs waiting in each destination's queue.
const QUEUE_PACKS: usize = 2;
/// Blobs per index file before a new one is started (the format's rule).
const INDEX_FILE_BLOBS: usize = crate::format::index::MAX_FILE_BLOBS;

/// A pack on its way to every destination.
struct InFlight {
    pack: FinishedPack,
    /// Destinations that have not yet stored it (or been dropped).
    remaining: AtomicUsize,
}

impl InFlight {
    /// Marks one destination done; the last one hands the pack to the indexer.
    fn settle(self: &Arc<Self>, done: &mpsc::UnboundedSender<Arc<InFlight>>) {
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            // The indexer only goes away when the run is failing anyway.
            let _ = done.send(self.clone());
        }
    }
}

/// Uploads packs until the packer closes the channel; writes index files.
pub(crate) async fn upload_packs(
    repo: &Repository,
    packs: mpsc::Receiver<FinishedPack>,
    dry_run: bool,
    progress: &super::BackupProgress,
) -> Result<(), Stop> {
    if dry_run {
        let mut packs = packs;
        while let Some(pack) = packs.recv().await {
            add(&progress.data_added_packed, pack.bytes.len() as u64);
        }
        return Ok(());
    }
    let dests = repo.destinations();
    let targets = dests.healthy();
    if targets.is_empty() {
        return Err(Stop::Failed(Error::no_destination(
            "upload",
            "every destination failed earlier in this run",
        )));
    }
    let (done_tx, done_rx) = mpsc::unbounded_channel();
    let mut queues = Vec::with_capacity(targets.len());
    let mut workers = Vec::with_capacity(targets.len());
    for backend in &targets {
        let (tx, rx) = mpsc::channel::<Arc<InFlight>>(QUEUE_PACKS);
        queues.push(tx);
        workers.push(destination_worker(
            repo,
            backend.clone(),
            rx,
            done_tx.clone(),
        ));
    }
    let dispatch = async move {
        let mut packs = packs;
        while let Some(pack) = packs.recv().await {
            if dests.healthy().is_empty() {
                // Nowhere left to write: closing the channel stops the pipeline.
                break;
            }
            let flight = Arc::new(InFlight {
                pack,
                remaining: AtomicUsize::new(queues.len()),
            });
            for queue in &queues {
                if queue.send(flight.clone()).await.is_err() {
                    flight.settle(&done_tx);
                }
            }
        }
        // Dropping the queues and this sender lets the workers and the indexer finish.
    };
    let uploading = futures::future::join_all(workers);
    let indexing = write_indexes(repo, done_rx, progress);
    let ((), _, indexed) = tokio::join!(dispatch, uploading, indexing);
    indexed?;
    if dests.healthy().is_empty() {
        let why = dests
            .missed()
            .into_iter()
            .map(|(n, e)| format!("{n}: {e}"))
            .collect::<Vec<_>>()
            .join("; ");
        return Err(Stop::Failed(Error::no_destination("upload", why)));
    }
    Ok(())
}

/// Drains one destination's queue, a few uploads at a time.
async fn destination_worker(
    repo: &Repository,
    backend: Arc<dyn Backend>,
    queue: mpsc::Receiver<Arc<InFlight>>,
    done: mpsc::UnboundedSender<Arc<InFlight>>,
) {
    let dests = repo.destinations();
    let name = backend.name().to_string();
    let uploads = dests.upload_limit(&name);
    let stream =
        futures::stream::unfold(
            queue,
            |mut rx| async move { rx.recv().await.map(|f| (f, rx)) },
        );
    stream
        .for_each_concurrent(uploads, |flight| {
            let (backend, done, name) = (&backend, &done, &name);
            async move {
                // A dropped destination receives nothing more this run.
                if !dests.is_dropped(name) {
                    let key = ObjectKind::Pack.key(&flight.pack.id.to_hex());
                    match backend.put(&key, flight.pack.bytes.clone()).await {
                        Ok(()) => {}
                        Err(e) if e.kind == ErrorKind::AlreadyExists => {}
                        Err(e) => dests.drop_destination(name, &e.to_string()),
                    }
                }
                flight.settle(done);
            }
        })
        .await;
}

/// Adds each pack stored everywhere to an index file; writes index files as
/// they fill and at the end.
async fn write_indexes(
    repo: &Repository,
    mut done: mpsc::UnboundedReceiver<Arc<InFlight>>,
    progress: &super::BackupProgress,
) -> Result<(), Stop> {
    let mut index = IndexFile::new();
    while let Some(flight) = done.recv().await {
        if repo.destinations().healthy().is_empty() {
            continue;
        }
        let pack = &flight.pack;
        // This machine's next backup reads these trees as its parent's.
        let trees = pack
            .entries
            .first()
            .is_some_and(|e| e.blob_type == BlobType::Tree);
        if let Some(cache) = repo.cache().filter(|_| trees) {
            cache.put_tree_pack(&pack.id, &pack.bytes);
        }
        add(&progress.bytes_uploaded, pack.bytes.len() as u64);
        add(&progress.data_added_packed, pack.bytes.len() as u64);
        index.add_pack(pack.id, &pack.entries);
        if index.blob_count() >= INDEX_FILE_BLOBS {
            repo.save_index(&index).await?;
            index = IndexFile::new();
        }
    }
    if !index.packs.is_empty() && !repo.destinations().healthy().is_empty() {
        repo.save_index(&index).await?;
    }
    Ok(())
}
