//! `restore --verify`: every restored file read back and compared, chunk by
//! chunk, with the blob ids the snapshot lists.

use std::fs;
use std::path::PathBuf;
use std::sync::Arc;

use super::files::Files;
use super::plan::{Failures, Piece};
use crate::format::ids::BlobId;

/// Re-reads every restored file and compares each blob-sized piece's id;
/// `pieces` are sorted by file and offset.
pub(super) async fn verify_files(
    keys: Arc<crate::format::crypto::MasterKeys>,
    files: Arc<Files>,
    pieces: &[Piece],
    failures: &Failures,
) -> (u64, Vec<(PathBuf, String)>) {
    let mut jobs = Vec::new();
    let mut of_file = pieces.chunk_by(|a, b| a.file == b.file).peekable();
    for (n, plan) in files.plans.iter().enumerate() {
        // Pieces left in place were compared when the walk found them.
        let mut mine: Vec<(BlobId, u32, u64)> = Vec::new();
        if let Some(run) = of_file.next_if(|run| run[0].file as usize == n) {
            mine.extend(run.iter().map(|p| (p.id, p.raw_length, p.file_offset)));
        }
        if !failures.contains_key(&n) {
            jobs.push((n, plan.meta.size, mine));
        }
    }
    tokio::task::spawn_blocking(move || {
        let mut verified = 0;
        let mut errors = Vec::new();
        let mut buf = Vec::new();
        for (n, size, pieces) in jobs {
            // Read through the target's directory descriptors, like the writes.
            let checked = files
                .reopen(n, false)
                .map_err(|e| e.to_string())
                .and_then(|file| verify_one(&keys, file, size, &pieces, &mut buf));
            match checked {
                Ok(()) => verified += 1,
                Err(reason) => {
                    errors.push((files.path(n), format!("verification failed: {reason}")))
                }
            }
        }
        (verified, errors)
    })
    .await
    .unwrap_or_else(|e| {
        (
            0,
            vec![(PathBuf::new(), format!("verification thread failed: {e}"))],
        )
    })
}

fn verify_one(
    keys: &crate::format::crypto::MasterKeys,
    file: fs::File,
    size: u64,
    pieces: &[(BlobId, u32, u64)],
    buf: &mut Vec<u8>,
) -> std::result::Result<(), String> {
    use std::os::unix::fs::FileExt;
    let actual = file.metadata().map_err(|e| e.to_string())?.len();
    if actual != size {
        return Err(format!("size {actual}, expected {size}"));
    }
    for (i, (id, len, offset)) in pieces.iter().enumerate() {
        buf.resize(*len as usize, 0);
        file.read_exact_at(buf, *offset)
            .map_err(|e| e.to_string())?;
        if keys.blob_id(buf) != *id {
            return Err(format!("content differs in chunk {i}"));
        }
    }
    Ok(())
}
