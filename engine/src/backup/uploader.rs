//! The uploader: writes finished packs to every destination, a few at a time,
//! then the index files that list them (only once the packs are durable:
//! invariant 1's order).

use futures::StreamExt;

use super::pipeline::Stop;
use super::stats::add;
use crate::error::Result;
use crate::ids::ObjectKind;
use crate::index::IndexFile;
use crate::pack::FinishedPack;
use crate::repo::Repository;

/// Packs uploaded at once.
const CONCURRENT_UPLOADS: usize = 2;
/// Blobs per index file before a new one is started.
const INDEX_FILE_BLOBS: usize = 100_000;

/// Uploads packs until the packer closes the channel; writes index files.
pub(crate) async fn upload_packs(
    repo: &Repository,
    packs: tokio::sync::mpsc::Receiver<FinishedPack>,
    dry_run: bool,
    progress: &super::BackupProgress,
) -> Result<(), Stop> {
    let uploads =
        futures::stream::unfold(
            packs,
            |mut rx| async move { rx.recv().await.map(|p| (p, rx)) },
        )
        .map(|pack| async move {
            if !dry_run {
                let key = ObjectKind::Pack.key(&pack.id.to_hex());
                repo.destinations()
                    .put_content(&key, pack.bytes.clone())
                    .await?;
            }
            Ok::<_, crate::error::Error>(pack)
        })
        .buffer_unordered(CONCURRENT_UPLOADS);
    futures::pin_mut!(uploads);
    let mut index = IndexFile::new();
    while let Some(done) = uploads.next().await {
        let pack = done?;
        add(&progress.bytes_uploaded, pack.bytes.len() as u64);
        add(&progress.data_added_packed, pack.bytes.len() as u64);
        index.add_pack(pack.id, &pack.entries);
        if index.blob_count() >= INDEX_FILE_BLOBS {
            if !dry_run {
                repo.save_index(&index).await?;
            }
            index = IndexFile::new();
        }
    }
    if !index.packs.is_empty() && !dry_run {
        repo.save_index(&index).await?;
    }
    Ok(())
}
