//! `mount`: the repository as a read-only file system, without the file
//! system protocol. The CLI's FUSE glue (`cli/src/commands/mount.rs`) turns
//! each kernel request into one call here and the answer into its reply.
//!
//! - **Layout** ([`layout`]): `snapshots/<time>/`, `ids/<id>/`,
//!   `hosts/<host>/<time>/`, `tags/<tag>/<time>/` and `latest` links, from
//!   the snapshot list, which [`MountFs::refresh`] reads again (new snapshots
//!   appear, forgotten ones go).
//! - **Inodes** ([`inodes`]): numbers derived from what an entry is, a table
//!   of what the kernel holds, files recorded as hard links sharing one.
//! - **Directories** ([`dirs`], [`trees`]): a snapshot's trees loaded when
//!   listed and cached within a budget; entering a snapshot walks its trees
//!   in bulk in the background.
//! - **Files** ([`files`], [`filemap`], [`blobs`]): a read fetches only the
//!   blobs holding its bytes, each verified, with failover across
//!   destinations; blobs are cached within a budget; reading ahead
//!   ([`ahead`]) covers the file's next blobs and the next files in the
//!   snapshot's depth-first order, read in coalesced pack ranges.
//!
//! Every method is safe to call from many tasks at once; none blocks on
//! another request's read.

mod ahead;
mod blobs;
mod dirs;
mod filemap;
mod files;
mod inodes;
mod layout;
mod lru;
mod trees;

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::error::{Error, Result};
use crate::format::ids::ObjectKind;
use crate::format::tree::{Node, NodeKind};
use crate::repo::Repository;

use blobs::BlobStore;
use dirs::Listing;
use inodes::{DirKey, Identity, Inode, InodeTable, Kind};
use layout::{Layout, VEntry};
use trees::Trees;

pub use ahead::{AHEAD_BYTES, AHEAD_FILES};
pub use dirs::DirEntry;
pub use files::FILE_AHEAD;
pub use inodes::ROOT;

/// How long the kernel may keep what it learnt about the made-up
/// directories and links: they change when snapshots come and go.
pub const VIRTUAL_TTL: Duration = Duration::from_secs(1);
/// How long it may keep what it learnt inside a snapshot, which never
/// changes.
pub const SNAPSHOT_TTL: Duration = Duration::from_secs(3600);

/// Settings of a mount.
#[derive(Debug, Clone)]
pub struct MountOptions {
    /// Bytes of file content (decrypted blobs) kept in memory.
    pub cache_bytes: usize,
    /// Bytes of decoded directories kept in memory.
    pub tree_cache_bytes: usize,
    /// Owner of the made-up directories (the mounting user).
    pub uid: u32,
    /// Group of the made-up directories.
    pub gid: u32,
}

impl Default for MountOptions {
    fn default() -> Self {
        MountOptions {
            cache_bytes: 128 << 20,
            tree_cache_bytes: 64 << 20,
            uid: 0,
            gid: 0,
        }
    }
}

/// Why one request failed; [`FsError::errno`] is its answer to the kernel.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    /// No entry by that name.
    #[error("no such file or directory")]
    NotFound,
    /// A directory operation on something else.
    #[error("not a directory")]
    NotDir,
    /// A file operation on a directory.
    #[error("is a directory")]
    IsDir,
    /// An operation this kind of entry does not have (reading a link's
    /// content, opening a device).
    #[error("not valid for this kind of entry")]
    Invalid,
    /// An inode or handle the mount does not know (any more).
    #[error("unknown inode or handle")]
    Stale,
    /// The repository could not give what was asked (no destination had it
    /// intact, a blob is missing from the index, …).
    #[error(transparent)]
    Repository(Arc<Error>),
}

impl FsError {
    /// The errno that answers the request.
    pub fn errno(&self) -> i32 {
        match self {
            FsError::NotFound => libc::ENOENT,
            FsError::NotDir => libc::ENOTDIR,
            FsError::IsDir => libc::EISDIR,
            FsError::Invalid => libc::EINVAL,
            FsError::Stale => libc::ESTALE,
            FsError::Repository(_) => libc::EIO,
        }
    }
}

impl From<Arc<Error>> for FsError {
    fn from(e: Arc<Error>) -> Self {
        FsError::Repository(e)
    }
}

impl From<Error> for FsError {
    fn from(e: Error) -> Self {
        FsError::Repository(Arc::new(e))
    }
}

/// The kind of an entry, as `stat` tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// A directory.
    Directory,
    /// A regular file.
    File,
    /// A symbolic link.
    Symlink,
    /// A block device.
    BlockDevice,
    /// A character device.
    CharDevice,
    /// A named pipe.
    Fifo,
    /// A Unix socket.
    Socket,
}

/// An entry's attributes, as `stat` shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attr {
    /// Inode number.
    pub ino: u64,
    /// Kind.
    pub kind: FileKind,
    /// Size in bytes.
    pub size: u64,
    /// Permission and special bits (`st_mode & 0o7777`).
    pub perm: u16,
    /// Link count.
    pub nlink: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time (shown as access and change time too).
    pub mtime: SystemTime,
    /// Device number of a device (the C library's `dev_t`).
    pub rdev: u64,
    /// How long the kernel may keep this without asking again.
    pub ttl: Duration,
}

/// What a mount holds in memory, for tests and diagnostics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MountStats {
    /// Bytes of decrypted file content cached.
    pub cached_bytes: usize,
    /// Inodes the kernel holds.
    pub inodes: usize,
    /// Open directories.
    pub handles: usize,
}

/// When the snapshot list was last read, and the index files then.
struct Freshness {
    at: Instant,
    index_names: Vec<String>,
}

struct Inner {
    store: Arc<BlobStore>,
    trees: Arc<Trees>,
    inodes: InodeTable,
    layout: RwLock<Arc<Layout>>,
    /// Open directories.
    handles: Mutex<HashMap<u64, Arc<Listing>>>,
    next_handle: AtomicU64,
    /// Per snapshot directory (its inode), the files read ahead.
    ahead: Mutex<HashMap<u64, ahead::Window>>,
    freshness: tokio::sync::Mutex<Freshness>,
    options: MountOptions,
}

/// The repository's snapshots as a read-only file system; cheap to clone
/// (every clone is the same mount).
#[derive(Clone)]
pub struct MountFs {
    inner: Arc<Inner>,
}

/// `secs.nanos` since the epoch as a time (before it, for negative times).
fn system_time(secs: i64, nanos: u32) -> SystemTime {
    let at = Duration::new(secs.unsigned_abs(), 0);
    let base = if secs >= 0 {
        UNIX_EPOCH.checked_add(at)
    } else {
        UNIX_EPOCH.checked_sub(at)
    };
    base.and_then(|t| t.checked_add(Duration::from_nanos(u64::from(nanos))))
        .unwrap_or(UNIX_EPOCH)
}

impl MountFs {
    /// The mount of `repo`: reads the index and the snapshot list. Must be
    /// called within a tokio runtime, where its reads will run; its methods
    /// may then be called from any thread.
    ///
    /// # Errors
    /// When the index or the snapshots cannot be listed.
    pub async fn new(repo: Repository, options: MountOptions) -> Result<Self> {
        let index_names = repo.list_names_everywhere(ObjectKind::Index).await?;
        let index = repo.load_index().await?;
        let layout = Layout::new(&repo.list_snapshots().await?);
        let runtime = tokio::runtime::Handle::current();
        let store = Arc::new(BlobStore::new(repo, index, options.cache_bytes, runtime));
        let trees = Arc::new(Trees::new(store.clone(), options.tree_cache_bytes));
        Ok(MountFs {
            inner: Arc::new(Inner {
                store,
                trees,
                inodes: InodeTable::new(),
                layout: RwLock::new(Arc::new(layout)),
                handles: Mutex::new(HashMap::new()),
                next_handle: AtomicU64::new(1),
                ahead: Mutex::new(HashMap::new()),
                freshness: tokio::sync::Mutex::new(Freshness {
                    at: Instant::now(),
                    index_names,
                }),
                options,
            }),
        })
    }

    fn repo(&self) -> &Repository {
        self.inner.store.repo()
    }

    fn layout(&self) -> Arc<Layout> {
        self.inner
            .layout
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The number of snapshots shown.
    pub fn snapshot_count(&self) -> usize {
        self.layout().snapshots().len()
    }

    /// What the mount holds in memory.
    pub fn stats(&self) -> MountStats {
        MountStats {
            cached_bytes: self.inner.store.cached_bytes(),
            inodes: self.inner.inodes.len(),
            handles: self
                .inner
                .handles
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .len(),
        }
    }

    /// Reads the snapshot list again (and the index, when its files
    /// changed, so the new snapshots' blobs are found). Destinations given
    /// up on earlier are tried again. Returns whether the snapshots changed.
    ///
    /// # Errors
    /// When no destination can be listed or the index cannot be read; the
    /// mount then keeps what it showed.
    pub async fn refresh(&self) -> Result<bool> {
        let mut freshness = self.inner.freshness.lock().await;
        self.refresh_locked(&mut freshness).await
    }

    /// True when the snapshot list was read less than `age` ago (and is not
    /// being read again right now).
    fn is_fresh(&self, age: Duration) -> bool {
        self.inner
            .freshness
            .try_lock()
            .is_ok_and(|f| f.at.elapsed() < age)
    }

    /// [`MountFs::refresh`] unless the list was read less than `age` ago; a
    /// failure is logged, not returned (the mount shows what it had).
    pub async fn refresh_if_older(&self, age: Duration) {
        let mut freshness = self.inner.freshness.lock().await;
        if freshness.at.elapsed() < age {
            return;
        }
        if let Err(e) = self.refresh_locked(&mut freshness).await {
            tracing::warn!("cannot read the snapshot list again: {e}");
        }
    }

    async fn refresh_locked(&self, freshness: &mut Freshness) -> Result<bool> {
        let repo = self.repo();
        repo.destinations().reset_dropped();
        // A forget elsewhere writes a deletion record: read them again.
        repo.reload_tombstones().await;
        let names = repo.list_names_everywhere(ObjectKind::Index).await?;
        if names != freshness.index_names {
            // The index first: a new snapshot is shown only once its blobs
            // can be found.
            self.inner.store.set_index(repo.load_index().await?);
            freshness.index_names = names;
        }
        let layout = Layout::new(&repo.list_snapshots().await?);
        let old = self.layout();
        let changed = old.snapshots() != layout.snapshots();
        *self.inner.layout.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(layout);
        freshness.at = Instant::now();
        Ok(changed)
    }

    fn inode(&self, ino: u64) -> Result<Arc<Inode>, FsError> {
        self.inner.inodes.get(ino).ok_or(FsError::Stale)
    }

    /// The attributes of `ino`.
    ///
    /// # Errors
    /// [`FsError::Stale`] for an inode the kernel does not hold.
    pub fn getattr(&self, ino: u64) -> Result<Attr, FsError> {
        let inode = self.inode(ino)?;
        Ok(self.attr(ino, &inode))
    }

    /// [`MountFs::lookup`] when it can be answered from memory (the
    /// directory's listing is cached); `None` when it must wait for the
    /// repository.
    pub fn try_lookup(&self, parent: u64, name: &[u8]) -> Option<Result<Attr, FsError>> {
        let dir = match self.inode(parent) {
            Ok(dir) => dir,
            Err(e) => return Some(Err(e)),
        };
        let tree = match &dir.kind {
            Kind::Virtual(_) | Kind::Link(_) => None,
            _ => match dirs::dir_key(&dir) {
                Ok(key) => Some(self.cached_tree_of(&key)?),
                Err(e) => return Some(Err(e)),
            },
        };
        Some(self.lookup_in(parent, &dir, name, tree))
    }

    /// Looks up `name` in directory `parent` and counts one lookup of the
    /// entry (the kernel will forget it).
    ///
    /// # Errors
    /// [`FsError::NotFound`], [`FsError::NotDir`], or the repository's
    /// failure to read the directory.
    pub async fn lookup(&self, parent: u64, name: &[u8]) -> Result<Attr, FsError> {
        if let Some(done) = self.try_lookup(parent, name) {
            return done;
        }
        let dir = self.inode(parent)?;
        let tree = self.tree_of(&dirs::dir_key(&dir)?).await?;
        self.lookup_in(parent, &dir, name, Some(tree))
    }

    /// Looks up `name` in `dir` (numbered `parent`), whose listing is
    /// `tree` when it is a snapshot's directory.
    fn lookup_in(
        &self,
        parent: u64,
        dir: &Inode,
        name: &[u8],
        tree: Option<Arc<crate::format::tree::Tree>>,
    ) -> Result<Attr, FsError> {
        let child = match (&dir.kind, tree) {
            (Kind::Virtual(v), _) => {
                let entry = self.layout().child(v, name).ok_or(FsError::NotFound)?;
                Child::Virtual(entry)
            }
            (Kind::Link(_), _) => return Err(FsError::NotDir),
            (_, Some(tree)) => {
                if let Kind::Snapshot(s) = &dir.kind {
                    // Whatever is looked up in a snapshot is the start of
                    // a walk into it.
                    for root in &s.roots {
                        self.inner.trees.walk(*root);
                    }
                }
                let node = tree.find(name).ok_or(FsError::NotFound)?.clone();
                Child::Node(node, dirs::dir_key(dir)?)
            }
            (_, None) => return Err(FsError::NotDir),
        };
        let inode = child_inode(parent, dir, name, child);
        let (ino, inode) = self.inner.inodes.remember(inode);
        Ok(self.attr(ino, &inode))
    }

    /// The kernel forgot `n` lookups of `ino`.
    pub fn forget(&self, ino: u64, n: u64) {
        self.inner.inodes.forget(ino, n);
    }

    /// The target of symbolic link `ino`.
    ///
    /// # Errors
    /// [`FsError::Invalid`] when it is not a link.
    pub fn readlink(&self, ino: u64) -> Result<Vec<u8>, FsError> {
        let inode = self.inode(ino)?;
        match &inode.kind {
            Kind::Link(target) => Ok(target.clone()),
            Kind::Node {
                node:
                    Node {
                        kind: NodeKind::Symlink { target },
                        ..
                    },
                ..
            } => Ok(target.clone()),
            _ => Err(FsError::Invalid),
        }
    }

    /// The attributes of inode `ino`, which is `inode`.
    fn attr(&self, ino: u64, inode: &Inode) -> Attr {
        let options = &self.inner.options;
        let made_up = |kind, perm, size, mtime: (i64, u32), ttl| Attr {
            ino,
            kind,
            size,
            perm,
            nlink: if kind == FileKind::Directory { 2 } else { 1 },
            uid: options.uid,
            gid: options.gid,
            mtime: system_time(mtime.0, mtime.1),
            rdev: 0,
            ttl,
        };
        match &inode.kind {
            Kind::Virtual(_) => made_up(
                FileKind::Directory,
                0o555,
                0,
                self.layout().newest_time(),
                VIRTUAL_TTL,
            ),
            Kind::Link(target) => made_up(
                FileKind::Symlink,
                0o777,
                target.len() as u64,
                self.layout().newest_time(),
                VIRTUAL_TTL,
            ),
            Kind::Snapshot(s) => made_up(FileKind::Directory, 0o555, 0, s.time, SNAPSHOT_TTL),
            Kind::Node { node, .. } => node_attr(ino, node),
        }
    }
}

/// What a directory's entry is, before it becomes an inode.
enum Child {
    Virtual(VEntry),
    /// An entry of a snapshot and the listing it is in.
    Node(Node, DirKey),
}

/// The kind of `node`.
fn node_kind(node: &Node) -> FileKind {
    match node.kind {
        NodeKind::File { .. } => FileKind::File,
        NodeKind::Dir { .. } => FileKind::Directory,
        NodeKind::Symlink { .. } => FileKind::Symlink,
        NodeKind::BlockDevice { .. } => FileKind::BlockDevice,
        NodeKind::CharDevice { .. } => FileKind::CharDevice,
        NodeKind::Fifo => FileKind::Fifo,
        NodeKind::Socket => FileKind::Socket,
    }
}

/// The attributes a snapshot recorded for `node`.
fn node_attr(ino: u64, node: &Node) -> Attr {
    let (size, rdev) = match &node.kind {
        NodeKind::Symlink { target } => (target.len() as u64, 0),
        NodeKind::BlockDevice { rdev } | NodeKind::CharDevice { rdev } => (0, *rdev),
        _ => (node.size, 0),
    };
    Attr {
        ino,
        kind: node_kind(node),
        size,
        perm: (node.mode & 0o7777) as u16,
        nlink: u32::try_from(node.links).unwrap_or(u32::MAX).max(1),
        uid: node.uid,
        gid: node.gid,
        mtime: system_time(node.mtime, node.mtime_nsec),
        rdev,
        ttl: SNAPSHOT_TTL,
    }
}

/// The identity and kind of an entry, shared by lookups and listings so
/// both give it the same number.
fn child_identity(dir_ino: u64, scope: u64, name: &[u8], child: &Child) -> Identity {
    match child {
        Child::Virtual(VEntry::Dir(_)) => Identity::path(dir_ino, name, b""),
        Child::Virtual(VEntry::Link(target)) => Identity::path(dir_ino, name, target),
        Child::Virtual(VEntry::Snapshot(s)) => Identity::path(dir_ino, name, &s.id.0),
        Child::Node(node, _) => node_identity(dir_ino, scope, node),
    }
}

/// A node's identity: hard links recorded in the snapshot share one.
fn node_identity(dir_ino: u64, scope: u64, node: &Node) -> Identity {
    match node.kind {
        NodeKind::File { .. } if node.links > 1 && node.inode != 0 => {
            Identity::hard_link(scope, node.device, node.inode)
        }
        _ => Identity::path(dir_ino, &node.name, b""),
    }
}

/// The inode of entry `name` of directory `dir` (numbered `dir_ino`).
fn child_inode(dir_ino: u64, dir: &Inode, name: &[u8], child: Child) -> Inode {
    let identity = child_identity(dir_ino, dir.scope, name, &child);
    match child {
        Child::Virtual(VEntry::Dir(v)) => Inode::new(identity, dir_ino, 0, Kind::Virtual(v)),
        Child::Virtual(VEntry::Link(target)) => {
            Inode::new(identity, dir_ino, 0, Kind::Link(target))
        }
        // A snapshot's directory is the scope of its hard links.
        Child::Virtual(VEntry::Snapshot(s)) => {
            Inode::new(identity, dir_ino, identity.ino(), Kind::Snapshot(s))
        }
        Child::Node(node, listed_in) => {
            Inode::new(identity, dir_ino, dir.scope, Kind::Node { node, listed_in })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_before_and_after_the_epoch() {
        assert_eq!(system_time(0, 0), UNIX_EPOCH);
        assert_eq!(system_time(10, 5), UNIX_EPOCH + Duration::new(10, 5));
        assert_eq!(system_time(-10, 0), UNIX_EPOCH - Duration::from_secs(10));
    }

    #[test]
    fn errors_have_errnos() {
        assert_eq!(FsError::NotFound.errno(), libc::ENOENT);
        assert_eq!(FsError::from(Error::internal("x")).errno(), libc::EIO);
    }
}
