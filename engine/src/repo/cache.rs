//! A local cache of repository metadata: index files, snapshots and tree
//! blobs, so check and incremental backups do not download them every run.
//!
//! Entries hold the bytes exactly as stored (still encrypted: the cache
//! reveals no more than the provider sees) and are verified on every use —
//! an index file or snapshot against its name, a tree blob by its AEAD tag and
//! blob id — so a damaged or tampered cache entry is discarded and fetched
//! again, never trusted. Writes go through a temporary file and a rename, so
//! a crash leaves no partial entry. Any cache failure only costs a download.
//!
//! Layout under the cache directory (one per repository):
//! `index/<id>`, `snapshots/<id>`, `trees/<xx>/<blob id>` (trees read from a
//! destination), `tree-packs/<pack id>` (whole tree packs this machine wrote:
//! a backup keeps its tree packs, so the next one reads its parent's trees
//! without a download and without a file per tree).

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::format::ids::{storage_hash, BlobId, ObjectKind, PackId};

/// The metadata cache of one repository.
#[derive(Debug, Clone)]
pub struct MetadataCache {
    dir: PathBuf,
}

impl MetadataCache {
    /// A cache rooted at `dir` (created on first write).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        MetadataCache { dir: dir.into() }
    }

    /// Its directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn object_path(&self, kind: ObjectKind, name: &str) -> Option<PathBuf> {
        let sub = match kind {
            ObjectKind::Index => "index",
            ObjectKind::Snapshot => "snapshots",
            _ => return None,
        };
        valid_name(name).then(|| self.dir.join(sub).join(name))
    }

    fn tree_path(&self, id: &BlobId) -> PathBuf {
        let hex = id.to_hex();
        self.dir.join("trees").join(&hex[..2]).join(hex)
    }

    /// A cached index file or snapshot whose bytes match its name.
    pub fn object(&self, kind: ObjectKind, name: &str) -> Option<Vec<u8>> {
        let path = self.object_path(kind, name)?;
        let bytes = std::fs::read(&path).ok()?;
        if hex::encode(storage_hash(&bytes)) == name {
            Some(bytes)
        } else {
            tracing::warn!("cache: {} is damaged; fetching it again", path.display());
            let _ = std::fs::remove_file(&path);
            None
        }
    }

    /// Keeps an index file or snapshot (already verified against its name).
    pub fn put_object(&self, kind: ObjectKind, name: &str, bytes: &[u8]) {
        if let Some(path) = self.object_path(kind, name) {
            write_atomic(&path, bytes);
        }
    }

    /// A cached sealed tree blob; the caller verifies it and calls
    /// [`MetadataCache::forget_tree`] when it does not open.
    pub fn tree(&self, id: &BlobId) -> Option<Vec<u8>> {
        std::fs::read(self.tree_path(id)).ok()
    }

    /// Keeps a sealed tree blob (already verified).
    pub fn put_tree(&self, id: &BlobId, sealed: &[u8]) {
        write_atomic(&self.tree_path(id), sealed);
    }

    /// Drops a tree blob that failed verification.
    pub fn forget_tree(&self, id: &BlobId) {
        tracing::warn!("cache: tree {id} is damaged; fetching it again");
        let _ = std::fs::remove_file(self.tree_path(id));
    }

    fn tree_pack_path(&self, pack: &PackId) -> PathBuf {
        self.dir.join("tree-packs").join(pack.to_hex())
    }

    /// Keeps a whole tree pack as written (its name is its hash).
    pub fn put_tree_pack(&self, pack: &PackId, bytes: &[u8]) {
        write_atomic(&self.tree_pack_path(pack), bytes);
    }

    /// `length` bytes at `offset` of a cached tree pack (one sealed tree blob);
    /// the caller verifies them and calls [`MetadataCache::forget_tree_pack`]
    /// when they do not open.
    pub fn tree_from_pack(&self, pack: &PackId, offset: u32, length: u32) -> Option<Vec<u8>> {
        use std::os::unix::fs::FileExt;
        let file = std::fs::File::open(self.tree_pack_path(pack)).ok()?;
        let mut buf = vec![0; length as usize];
        file.read_exact_at(&mut buf, u64::from(offset)).ok()?;
        Some(buf)
    }

    /// True when the whole tree pack is cached.
    pub fn has_tree_pack(&self, pack: &PackId) -> bool {
        self.tree_pack_path(pack).is_file()
    }

    /// Drops a cached tree pack that held a damaged blob.
    pub fn forget_tree_pack(&self, pack: &PackId) {
        tracing::warn!("cache: tree pack {pack} is damaged; fetching its trees again");
        let _ = std::fs::remove_file(self.tree_pack_path(pack));
    }

    /// Removes cached tree packs the index no longer lists (pruned).
    pub fn retain_tree_packs(&self, live: &[PackId]) {
        let Ok(entries) = std::fs::read_dir(self.dir.join("tree-packs")) else {
            return;
        };
        let mut live_set = None;
        for entry in entries.flatten() {
            let live_set = live_set
                .get_or_insert_with(|| live.iter().collect::<std::collections::HashSet<_>>());
            let name = entry.file_name().to_string_lossy().into_owned();
            let keep = name
                .parse::<PackId>()
                .is_ok_and(|id| live_set.contains(&id));
            if !keep {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }

    /// Removes cached index files and snapshots no longer in the repository.
    pub fn retain_objects(&self, kind: ObjectKind, live: &[String]) {
        let Some(dir) = self
            .object_path(kind, &"0".repeat(64))
            .and_then(|p| p.parent().map(Path::to_path_buf))
        else {
            return;
        };
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !live.contains(&name) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

/// 64 lowercase hex digits: never a path trick.
fn valid_name(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Writes through a temporary file and a rename; failures are only logged.
fn write_atomic(path: &Path, bytes: &[u8]) {
    let Some(dir) = path.parent() else {
        return;
    };
    let result = (|| -> std::io::Result<()> {
        lifeboat_backends::private::create_dir_all(dir)?;
        let tmp = dir.join(format!(".tmp-{:016x}", rand::random::<u64>()));
        let mut file = lifeboat_backends::private::create_file(&tmp)?;
        file.write_all(bytes)?;
        drop(file);
        std::fs::rename(&tmp, path).inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })
    })();
    if let Err(e) = result {
        tracing::debug!("cache: cannot write {}: {e}", path.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_are_verified_on_use() {
        let dir = tempfile::tempdir().unwrap();
        let cache = MetadataCache::new(dir.path());
        let bytes = b"sealed index bytes".to_vec();
        let name = hex::encode(storage_hash(&bytes));
        assert_eq!(cache.object(ObjectKind::Index, &name), None);
        cache.put_object(ObjectKind::Index, &name, &bytes);
        assert_eq!(cache.object(ObjectKind::Index, &name), Some(bytes.clone()));
        // A damaged entry is dropped, never returned.
        std::fs::write(dir.path().join("index").join(&name), b"tampered").unwrap();
        assert_eq!(cache.object(ObjectKind::Index, &name), None);
        assert!(!dir.path().join("index").join(&name).exists());
        // Names that are not object names never reach the filesystem.
        cache.put_object(ObjectKind::Index, "../escape", &bytes);
        assert!(!dir.path().join("escape").exists());
    }

    #[test]
    fn stale_objects_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let cache = MetadataCache::new(dir.path());
        let names: Vec<String> = [b"a".as_slice(), b"b"]
            .iter()
            .map(|b| {
                let name = hex::encode(storage_hash(b));
                cache.put_object(ObjectKind::Snapshot, &name, b);
                name
            })
            .collect();
        cache.retain_objects(ObjectKind::Snapshot, &names[..1]);
        assert!(cache.object(ObjectKind::Snapshot, &names[0]).is_some());
        assert!(cache.object(ObjectKind::Snapshot, &names[1]).is_none());
    }
}
