//! One destination against the repository's shape: what it lacks, what it
//! holds damaged, and what it holds that nothing references.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use futures::StreamExt;
use lifeboat_backends::{Backend, BackendError, ErrorKind};

use super::logical::{Expected, Shape};
use super::{CheckOptions, CheckProgress, DestinationCheck, ProblemKind};
use crate::error::{Error, Result};
use crate::format::ids::{BlobId, ObjectKind, PackId, CONFIG_KEY, MAX_CONFIG_LEN};
use crate::format::pack::{
    decode_header, header_length, open_blob, parse_pack, PackEntry, TRAILER_LEN,
};
use crate::repo::{verify_named, Repository};

/// Bytes read from a pack's end in one request: enough for the header and
/// trailer of any ordinary pack, so most header checks cost one round trip.
const TAIL_READ: u64 = 64 * 1024;

/// Whole packs read at once per destination (each is up to a pack in memory).
const FULL_READS: usize = 2;

/// A missing or damaged object on one destination.
pub(super) struct Bad {
    /// Its storage key.
    pub key: String,
    /// Missing, corrupt or unreadable.
    pub kind: ProblemKind,
    /// What is wrong.
    pub message: String,
    /// For a pack read in full: exactly the blobs that failed to verify.
    /// `None` when every blob must be assumed bad (missing, unreadable, or
    /// only the header was checked).
    pub bad_blobs: Option<HashSet<BlobId>>,
}

/// What one destination holds.
pub(super) struct DestinationResult {
    /// Its row in the report.
    pub row: DestinationCheck,
    /// Keys it lists (empty when it could not be listed).
    pub present: HashSet<String>,
    /// Missing or damaged objects.
    pub bad: Vec<Bad>,
    /// Packs it holds that no index lists.
    pub extra: Vec<String>,
}

impl DestinationResult {
    /// True when this destination holds a copy of `key` not found damaged.
    pub fn holds_good(&self, key: &str) -> bool {
        self.row.reachable && self.present.contains(key) && !self.bad.iter().any(|b| b.key == key)
    }
}

/// Every object key a repository uses that `backend` holds, `config` included.
///
/// # Errors
/// The listing's failure.
pub(super) async fn inventory(backend: &dyn Backend) -> Result<HashSet<String>> {
    let mut present: HashSet<String> = list_sizes(backend).await?.sizes.into_keys().collect();
    if has_config(backend).await? {
        present.insert(CONFIG_KEY.to_string());
    }
    Ok(present)
}

/// Checks one destination.
pub(super) async fn check_destination(
    repo: &Repository,
    backend: Arc<dyn Backend>,
    shape: &Shape,
    options: &CheckOptions,
    progress: &CheckProgress,
) -> DestinationResult {
    let mut result = DestinationResult {
        row: DestinationCheck {
            name: backend.name().to_string(),
            reachable: true,
            ..Default::default()
        },
        present: HashSet::new(),
        bad: Vec::new(),
        extra: Vec::new(),
    };
    // Sizes come with the listing; keep them for the size checks.
    let Listing {
        sizes: listed,
        foreign,
    } = match list_sizes(backend.as_ref()).await {
        Ok(listed) => listed,
        Err(e) => {
            result.row.reachable = false;
            result.row.error = Some(e.to_string());
            return result;
        }
    };
    result.present = listed.keys().cloned().collect();
    result.row.foreign = foreign;
    match has_config(backend.as_ref()).await {
        Ok(true) => {
            result.present.insert(CONFIG_KEY.to_string());
        }
        Ok(false) => {}
        Err(e) => {
            result.row.reachable = false;
            result.row.error = Some(e.to_string());
            return result;
        }
    }

    for key in result.present.iter() {
        if !shape.objects.contains_key(key) {
            result.extra.push(key.clone());
        }
    }
    result.extra.sort();
    result.row.extra = result.extra.len() as u64;

    let mut work = Vec::new();
    for (key, expected) in &shape.objects {
        if !result.present.contains(key) {
            result.bad.push(Bad {
                key: key.clone(),
                kind: ProblemKind::Missing,
                message: "missing".into(),
                bad_blobs: None,
            });
            continue;
        }
        let size = listed.get(key).copied();
        work.push((key.clone(), *expected, size));
    }
    let packs = work.iter().filter(|(_, e, _)| *e == Expected::Pack).count();
    progress
        .packs_total
        .fetch_add(packs as u64, Ordering::Relaxed);
    // Header checks are small reads: as many at once as the destination's
    // `reads` allows, so a far destination is not checked one round trip
    // after another.
    let concurrency = if options.reads_packs() {
        FULL_READS
    } else {
        repo.destinations().read_limit(backend.name())
    };
    let backend = &backend;
    let mut checks =
        futures::stream::iter(work.into_iter().map(|(key, expected, size)| async move {
            let read = options.reads(&key);
            let outcome = verify(repo, backend.as_ref(), shape, &key, expected, size, read).await;
            if expected == Expected::Pack {
                progress.packs_done.fetch_add(1, Ordering::Relaxed);
            }
            (key, outcome)
        }))
        .buffer_unordered(concurrency);
    while let Some((key, outcome)) = checks.next().await {
        result.row.objects_checked += 1;
        match outcome {
            Ok(bytes_read) => result.row.bytes_read += bytes_read,
            Err(failure) => result.bad.push(Bad {
                key,
                kind: failure.kind,
                message: failure.message,
                bad_blobs: failure.bad_blobs,
            }),
        }
    }
    drop(checks);
    for bad in &result.bad {
        match bad.kind {
            ProblemKind::Missing => result.row.missing += 1,
            _ => result.row.corrupt += 1,
        }
    }
    result.bad.sort_by(|a, b| a.key.cmp(&b.key));
    result
}

/// What a destination lists under the repository's prefixes.
#[derive(Default)]
struct Listing {
    /// Keys and sizes of the repository's objects.
    sizes: HashMap<String, u64>,
    /// Keys that are not valid object names: never read, only reported.
    foreign: Vec<String>,
}

/// Keys and sizes of everything a repository uses, and what else is there.
async fn list_sizes(backend: &dyn Backend) -> Result<Listing> {
    let mut out = Listing::default();
    for kind in [
        ObjectKind::Key,
        ObjectKind::Deletion,
        ObjectKind::Index,
        ObjectKind::Snapshot,
        ObjectKind::Pack,
    ] {
        for meta in crate::repo::destinations::list_all(backend, kind.prefix()).await? {
            if kind.name_of(&meta.key).is_some() {
                out.sizes.insert(meta.key, meta.size);
            } else {
                out.foreign.push(meta.key);
            }
        }
    }
    out.foreign.sort();
    Ok(out)
}

async fn has_config(backend: &dyn Backend) -> Result<bool> {
    match backend.stat(CONFIG_KEY).await {
        Ok(_) => Ok(true),
        Err(e) if e.kind == ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Why an object failed its check.
struct Failure {
    kind: ProblemKind,
    message: String,
    bad_blobs: Option<HashSet<BlobId>>,
}

impl From<(ProblemKind, String)> for Failure {
    fn from((kind, message): (ProblemKind, String)) -> Self {
        Failure {
            kind,
            message,
            bad_blobs: None,
        }
    }
}

type Verdict = std::result::Result<u64, Failure>;

/// Checks one present object; returns the bytes read in full.
async fn verify(
    repo: &Repository,
    backend: &dyn Backend,
    shape: &Shape,
    key: &str,
    expected: Expected,
    size: Option<u64>,
    read_all: bool,
) -> Verdict {
    let corrupt = |message: String| Failure::from((ProblemKind::Corrupt, message));
    let failure = |e: BackendError| match e.kind {
        ErrorKind::NotFound => Failure::from((ProblemKind::Missing, "missing".to_string())),
        // Larger than any object of its kind: damaged, and never read.
        _ if e.is_too_large() => corrupt(e.detail),
        _ => Failure::from((ProblemKind::Unreadable, e.to_string())),
    };
    let fetch = |range| async move { backend.get(key, Some(range)).await.map_err(failure) };
    // Whole reads within the most bytes the object's kind can hold.
    let whole = |kind: Option<ObjectKind>| async move {
        match kind {
            Some(kind) => repo.read_whole(backend, kind, key).await,
            None => backend.get_bounded(key, MAX_CONFIG_LEN).await,
        }
        .map_err(failure)
    };
    match expected {
        Expected::Config => {
            let bytes = whole(None).await?;
            if bytes != shape.config {
                return Err(corrupt(
                    "differs from the repository's config (damaged, or another repository)".into(),
                ));
            }
            Ok(bytes.len() as u64)
        }
        Expected::Whole(kind) => {
            let bytes = whole(Some(kind)).await?;
            verify_named(backend.name(), key, kind, &bytes)
                .map_err(|_| corrupt(NOT_ITS_NAME.into()))?;
            Ok(bytes.len() as u64)
        }
        Expected::Sized(want) => {
            if read_all {
                let kind = if key.starts_with(ObjectKind::Index.prefix()) {
                    ObjectKind::Index
                } else {
                    ObjectKind::Snapshot
                };
                let bytes = whole(Some(kind)).await?;
                verify_named(backend.name(), key, kind, &bytes)
                    .map_err(|_| corrupt(NOT_ITS_NAME.into()))?;
                return Ok(bytes.len() as u64);
            }
            match size {
                Some(got) if got != want => {
                    Err(corrupt(format!("{got} bytes stored, {want} expected")))
                }
                _ => Ok(0),
            }
        }
        Expected::Pack => {
            let name = ObjectKind::Pack.name_of(key).unwrap_or_default();
            let id: PackId = name
                .parse()
                .map_err(|_| corrupt("not a pack name".into()))?;
            let indexed = shape.packs.get(&id).cloned().unwrap_or_default();
            if read_all {
                let bytes = whole(Some(ObjectKind::Pack)).await?;
                let len = bytes.len() as u64;
                let keys = repo.keys().clone();
                return tokio::task::spawn_blocking(move || {
                    verify_whole_pack(&keys, &id, &bytes, &indexed)
                })
                .await
                .map_err(|e| corrupt(format!("verification thread failed: {e}")))?
                .map(|()| len);
            }
            let Some(size) = size else {
                return Err(Failure::from((ProblemKind::Missing, "missing".into())));
            };
            let tail_start = size.saturating_sub(TAIL_READ);
            let tail = fetch(tail_start..size).await?;
            let header_len = u64::from(
                header_length(&tail).ok_or_else(|| corrupt("too short to be a pack".into()))?,
            );
            // The trailer is the provider's to set: a header larger than a
            // pack can be is refused before it is read.
            let most = repo.max_size(ObjectKind::Pack);
            if header_len > most {
                return Err(corrupt(format!(
                    "header of {header_len} bytes, more than any pack can hold ({most})"
                )));
            }
            let start = size
                .checked_sub(TRAILER_LEN as u64 + header_len)
                .ok_or_else(|| corrupt("header length exceeds pack size".into()))?;
            let header = if start >= tail_start {
                let from = (start - tail_start) as usize;
                tail.slice(from..tail.len() - TRAILER_LEN)
            } else {
                fetch(start..size - TRAILER_LEN as u64).await?
            };
            let found = decode_header(repo.keys(), &id, size, &header)
                .map_err(|e| corrupt(strip_object(&e, &id)))?;
            compare(&found, &indexed).map_err(corrupt)?;
            Ok(0)
        }
    }
}

/// Verifies a whole pack: its hash, its header against the index, and every
/// blob the index places in it; names exactly the blobs that fail.
fn verify_whole_pack(
    keys: &crate::format::crypto::MasterKeys,
    id: &PackId,
    bytes: &[u8],
    indexed: &[PackEntry],
) -> std::result::Result<(), Failure> {
    let mut problems = Vec::new();
    let header = parse_pack(keys, id, bytes);
    match &header {
        Ok(found) => {
            if let Err(e) = compare(found, indexed) {
                problems.push(e);
            }
        }
        Err(e) => problems.push(strip_object(e, id)),
    }
    // Blobs are located through the index, so a damaged header or hash does
    // not hide which blobs are still intact.
    let mut bad_blobs = HashSet::new();
    for e in indexed {
        let start = e.offset as usize;
        let sealed = bytes.get(start..start + e.length as usize);
        if sealed.is_none_or(|sealed| open_blob(keys, id, e, sealed).is_err()) {
            bad_blobs.insert(e.id);
        }
    }
    if !bad_blobs.is_empty() {
        problems.push(format!(
            "{} of {} blobs fail to verify",
            bad_blobs.len(),
            indexed.len()
        ));
    }
    if problems.is_empty() {
        return Ok(());
    }
    problems.dedup();
    Err(Failure {
        kind: ProblemKind::Corrupt,
        message: problems.join("; "),
        bad_blobs: Some(bad_blobs),
    })
}

const NOT_ITS_NAME: &str = "content does not match its name (corrupted or tampered)";

/// The pack's header against the index's entries for it.
fn compare(found: &[PackEntry], indexed: &[PackEntry]) -> std::result::Result<(), String> {
    if found == indexed {
        Ok(())
    } else {
        Err(format!(
            "header lists {} blobs that differ from the index's {} entries",
            found.len(),
            indexed.len()
        ))
    }
}

/// The message of a pack error without its repeated `pack <id>:` prefix.
fn strip_object(e: &Error, id: &PackId) -> String {
    let text = e.to_string();
    text.strip_prefix(&format!("pack {id}: "))
        .map(str::to_string)
        .unwrap_or(text)
}
