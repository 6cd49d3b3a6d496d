//! Looking inside a repository through the engine: opening it, finding packs
//! and the chunks of a file, so tests can damage exactly what they mean to.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use lifeboat_backends::{Backend, LocalBackend};
use lifeboat_engine::repo::index::MasterIndex;
use lifeboat_engine::{BlobId, DestinationSet, NodeKind, Repository};

use crate::PASSWORD;

/// Opens the repository in directory `path` with [`PASSWORD`].
///
/// # Panics
/// When it cannot be opened.
pub fn open(rt: &tokio::runtime::Runtime, path: &Path) -> Repository {
    let backend: Arc<dyn Backend> = Arc::new(LocalBackend::new("local", path));
    let dests = DestinationSet::new(vec![backend]).expect("destination set");
    rt.block_on(Repository::open(dests, PASSWORD.as_bytes()))
        .expect("open the repository")
}

/// Every pack file (`data/xx/<id>`) of the repository in `repo`, with its size.
pub fn pack_files(repo: &Path) -> Vec<(PathBuf, u64)> {
    crate::tree::regular_files(&repo.join("data"))
        .into_iter()
        .map(|p| {
            let size = std::fs::metadata(&p).expect("stat pack").len();
            (p, size)
        })
        .collect()
}

/// The largest pack file and its size.
///
/// # Panics
/// When there is no pack.
pub fn biggest_pack(repo: &Path) -> (PathBuf, u64) {
    pack_files(repo)
        .into_iter()
        .max_by_key(|(_, size)| *size)
        .expect("the repository has no pack")
}

/// The chunks of the file at `path` in the snapshot whose root tree is `root`.
///
/// # Panics
/// When the path is missing or not a file.
pub async fn file_blobs(
    repo: &Repository,
    index: &MasterIndex,
    root: BlobId,
    path: &Path,
) -> Vec<BlobId> {
    let node = lifeboat_engine::ls::find_node(repo, index, root, path)
        .await
        .expect("find node")
        .expect("a node");
    match node.kind {
        NodeKind::File { content } => content,
        other => panic!("{path:?} is {other:?}"),
    }
}
