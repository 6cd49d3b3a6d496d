//! The CPU stages of the backup pipeline, each on its own threads, joined by
//! bounded channels so memory stays bounded whatever the data size:
//!
//! ```text
//! walker ─FileBatch─▶ file workers (read, chunk, hash, dedup) ─[SealJob]─▶ sealers (zstd, AEAD)
//!    │                    │ content lists                                │
//!    └──DirJob──▶ tree builder ──[SealJob] (trees)──▶ sealers ─[SealedBlob]─▶ packer ─▶ uploader
//! ```
//!
//! Files and blobs travel in batches (up to [`BATCH_FILES`] files or about
//! [`BATCH_BYTES`] bytes): a channel hand-off costs a thread wake-up, which
//! for a 100-byte file used to cost more than reading, hashing and sealing it.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crossbeam_channel::{Receiver, Sender};

use super::stats::{add, BackupProgress};
use crate::error::Error;
use crate::format::crypto::{blob_aad, MasterKeys};
use crate::format::ids::BlobId;
use crate::format::pack::{BlobType, FinishedPack, PackWriter};
use crate::ops::backup::chunker::Chunker;
use crate::repo::index::MasterIndex;

/// Why a stage stopped early.
#[derive(Debug)]
pub(crate) enum Stop {
    /// A neighbouring stage went away; the root cause is reported elsewhere.
    Closed,
    /// This stage failed.
    Failed(Error),
}

impl From<Error> for Stop {
    fn from(e: Error) -> Self {
        Stop::Failed(e)
    }
}

/// State every stage shares.
pub(crate) struct Shared {
    pub keys: Arc<MasterKeys>,
    pub index: Arc<MasterIndex>,
    /// Blobs claimed by this run (so each new blob is sealed once).
    pub claimed: Mutex<HashSet<BlobId>>,
    pub chunker: Chunker,
    pub compression: Option<i32>,
    pub progress: Arc<BackupProgress>,
    pub cancel: Arc<AtomicBool>,
}

impl Shared {
    /// True when the blob is neither indexed nor already claimed by this run;
    /// the caller then owns sealing it.
    pub fn claim(&self, id: &BlobId) -> bool {
        if self.index.contains(id) {
            return false;
        }
        self.claimed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(*id)
    }

    pub fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }
}

/// Most files in one [`FileBatch`].
pub(crate) const BATCH_FILES: usize = 128;
/// A [`FileBatch`] is sent once its files hold this many bytes, and a file
/// worker hands its new blobs to the sealers in batches of about this size.
pub(crate) const BATCH_BYTES: u64 = 1 << 20;

/// A new blob to compress and seal.
pub(crate) struct SealJob {
    pub blob_type: BlobType,
    pub id: BlobId,
    pub data: Vec<u8>,
}

/// A sealed blob for the packer.
pub(crate) struct SealedBlob {
    blob_type: BlobType,
    id: BlobId,
    sealed: Vec<u8>,
    raw_length: u32,
}

/// The content of one file as read.
#[derive(Debug)]
pub(crate) struct FileContent {
    pub content: Vec<BlobId>,
    pub size: u64,
}

/// What a file worker answers: the content, or why the file was skipped.
pub(crate) type FileReply = Result<FileContent, (PathBuf, String)>;

/// A file to read.
pub(crate) struct FileJob {
    pub path: PathBuf,
    /// Its size and inode when the walker listed it: at most that many bytes
    /// are read, and a different file found at the path is not read at all.
    pub size: u64,
    pub inode: u64,
}

/// Files of one directory, read by one worker, answered together in order.
pub(crate) struct FileBatch {
    pub files: Vec<FileJob>,
    pub reply: Sender<Vec<FileReply>>,
}

/// Opens the regular file the walker listed at `path`, without following a
/// symlink and without blocking.
///
/// `O_NONBLOCK` keeps the open from hanging when the file was replaced by a
/// named pipe after it was listed (a pipe's open waits for a writer);
/// `O_NOFOLLOW` refuses a symlink put in its place. What is opened must still
/// be the same regular file (type and inode), else it is reported.
fn open_listed(path: &Path, inode: u64) -> std::io::Result<File> {
    let flags = libc::O_NONBLOCK | libc::O_NOFOLLOW;
    // O_NOATIME keeps backups from touching access times; only the owner (or
    // root) may use it, so fall back to a plain open.
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(flags | libc::O_NOATIME)
        .open(path)
        .or_else(|_| OpenOptions::new().read(true).custom_flags(flags).open(path))?;
    let meta = file.metadata()?;
    if !meta.is_file() || meta.ino() != inode {
        return Err(std::io::Error::other(
            "replaced while the backup ran (no longer the file that was listed); back it up again",
        ));
    }
    Ok(file)
}

enum ReadFail {
    Io(std::io::Error),
    Stop(Stop),
}

impl From<std::io::Error> for ReadFail {
    fn from(e: std::io::Error) -> Self {
        ReadFail::Io(e)
    }
}

/// New blobs on their way to the sealers, sent once they hold [`BATCH_BYTES`].
pub(crate) struct SealBatch<'a> {
    jobs: Vec<SealJob>,
    bytes: u64,
    out: &'a Sender<Vec<SealJob>>,
}

impl<'a> SealBatch<'a> {
    /// An empty batch that sends to `out`.
    pub(crate) fn new(out: &'a Sender<Vec<SealJob>>) -> Self {
        SealBatch {
            jobs: Vec::new(),
            bytes: 0,
            out,
        }
    }

    pub(crate) fn push(&mut self, job: SealJob) -> Result<(), Stop> {
        self.bytes += job.data.len() as u64;
        self.jobs.push(job);
        if self.bytes >= BATCH_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    pub(crate) fn flush(&mut self) -> Result<(), Stop> {
        if !self.jobs.is_empty() {
            self.bytes = 0;
            self.out
                .send(std::mem::take(&mut self.jobs))
                .map_err(|_| Stop::Closed)?;
        }
        Ok(())
    }
}

/// File worker: reads, chunks and hashes files, handing new chunks to the sealers.
pub(crate) fn file_worker(
    shared: &Shared,
    batches: Receiver<FileBatch>,
    seal: Sender<Vec<SealJob>>,
) -> Result<(), Stop> {
    let mut buffer = Vec::new();
    let mut new_blobs = SealBatch::new(&seal);
    for batch in batches {
        let mut replies = Vec::with_capacity(batch.files.len());
        for job in &batch.files {
            replies.push(read_file(shared, job, &mut buffer, &mut new_blobs)?);
            add(&shared.progress.files_done, 1);
        }
        // Blobs go out before the answer, so a tree never waits on a file
        // whose blobs sit in a half-full batch.
        new_blobs.flush()?;
        // A large file grew the buffer to twice the maximum chunk size; give
        // that back so idle workers do not each hold one.
        if buffer.len() > 1 << 20 {
            buffer = Vec::new();
        }
        if batch.reply.send(replies).is_err() {
            return Err(Stop::Closed);
        }
    }
    new_blobs.flush()
}

/// Reads, chunks and hashes one file; new chunks join `new_blobs`.
fn read_file(
    shared: &Shared,
    job: &FileJob,
    buffer: &mut Vec<u8>,
    new_blobs: &mut SealBatch<'_>,
) -> Result<FileReply, Stop> {
    let mut content = Vec::new();
    let mut size = 0u64;
    // Read no more than the size listed: a file appended to while it is
    // read is stored as the consistent prefix it had then, and a writer
    // that never stops cannot keep the backup running forever.
    let result = open_listed(&job.path, job.inode)
        .map_err(ReadFail::Io)
        .and_then(|file| {
            shared
                .chunker
                .chunk_stream(file.take(job.size), buffer, |chunk: &[u8]| {
                    if shared.cancelled() {
                        return Err(ReadFail::Stop(Stop::Failed(Error::Interrupted)));
                    }
                    let id = shared.keys.blob_id(chunk);
                    content.push(id);
                    size += chunk.len() as u64;
                    add(&shared.progress.bytes_done, chunk.len() as u64);
                    if shared.claim(&id) {
                        new_blobs
                            .push(SealJob {
                                blob_type: BlobType::Data,
                                id,
                                data: chunk.to_vec(),
                            })
                            .map_err(ReadFail::Stop)?;
                    }
                    Ok(())
                })
        });
    match result {
        Ok(()) => Ok(Ok(FileContent { content, size })),
        Err(ReadFail::Io(e)) => Ok(Err((job.path.clone(), e.to_string()))),
        Err(ReadFail::Stop(stop)) => Err(stop),
    }
}

/// Sealer: compresses and encrypts blobs.
pub(crate) fn sealer(
    shared: &Shared,
    batches: Receiver<Vec<SealJob>>,
    out: Sender<Vec<SealedBlob>>,
) -> Result<(), Stop> {
    for batch in batches {
        let sealed_batch = batch.into_iter().map(|job| seal_one(shared, job)).collect();
        out.send(sealed_batch).map_err(|_| Stop::Closed)?;
    }
    Ok(())
}

fn seal_one(shared: &Shared, job: SealJob) -> SealedBlob {
    let mut sealed = Vec::with_capacity(job.data.len() / 2 + 64);
    let aad = blob_aad(job.blob_type.as_u8(), &job.id);
    shared
        .keys
        .seal_blob(&aad, &job.data, shared.compression, &mut sealed);
    let counter = match job.blob_type {
        BlobType::Data => &shared.progress.data_blobs,
        BlobType::Tree => &shared.progress.tree_blobs,
    };
    add(counter, 1);
    add(&shared.progress.data_added, job.data.len() as u64);
    SealedBlob {
        blob_type: job.blob_type,
        id: job.id,
        sealed,
        raw_length: job.data.len() as u32,
    }
}

/// Packer: fills one pack per blob type and hands full packs to the uploader.
pub(crate) fn packer(
    keys: &MasterKeys,
    pack_size: usize,
    batches: Receiver<Vec<SealedBlob>>,
    upload: tokio::sync::mpsc::Sender<FinishedPack>,
) -> Result<(), Stop> {
    let mut open: [Option<PackWriter>; 2] = [None, None];
    for blob in batches.into_iter().flatten() {
        let slot = &mut open[blob.blob_type.as_u8() as usize];
        // Close the pack before a blob would overflow it, so a pack buffer never
        // reallocates: its size is bounded by the target (or one large blob).
        if slot
            .as_ref()
            .is_some_and(|w| w.is_full_for(blob.sealed.len(), pack_size))
        {
            if let Some(full) = slot.take() {
                upload
                    .blocking_send(full.finish(keys))
                    .map_err(|_| Stop::Closed)?;
            }
        }
        let writer = slot.get_or_insert_with(|| {
            PackWriter::with_capacity(pack_size.max(blob.sealed.len()) + 64 * 1024)
        });
        writer.add(blob.blob_type, blob.id, &blob.sealed, blob.raw_length);
    }
    for writer in open.into_iter().flatten() {
        upload
            .blocking_send(writer.finish(keys))
            .map_err(|_| Stop::Closed)?;
    }
    Ok(())
}
