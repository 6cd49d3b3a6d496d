//! Inode numbers and the table of inodes the kernel holds.
//!
//! A number is derived from what the inode is (a hash of its parent's
//! number, its name and, for a snapshot or a `latest` link, what it points
//! to), so a listing can give every entry its number without recording it,
//! the same path gets the same number again after the kernel forgot it, and
//! an entry that now means something else (`latest` moved on) gets a new
//! one. Files a snapshot recorded as hard links (same device and inode,
//! more than one link) share one number within that snapshot's directory.
//!
//! The table holds only what the kernel looked up and has not forgotten
//! (it counts lookups as the protocol does), so its size follows the
//! kernel's inode cache, not the repository.

use std::collections::HashMap;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex, OnceLock};

use super::filemap::FileMap;
use super::layout::{SnapInfo, VDir};
use crate::format::ids::BlobId;
use crate::format::tree::Node;

/// The root directory's number, fixed by the protocol.
pub const ROOT: u64 = 1;

/// What an inode is, as a 256-bit hash; its number is the first 64 bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Identity([u8; 32]);

impl Identity {
    /// The entry `name` of directory `parent`; `salt` tells apart what the
    /// same name means at different times (a snapshot id, a link target).
    pub(crate) fn path(parent: u64, name: &[u8], salt: &[u8]) -> Self {
        let mut h = blake3::Hasher::new();
        h.update(b"lifeboat mount path\0");
        h.update(&parent.to_le_bytes());
        h.update(&(name.len() as u64).to_le_bytes());
        h.update(name);
        h.update(salt);
        Identity(*h.finalize().as_bytes())
    }

    /// A file recorded with `links` > 1: the same device and inode within
    /// the snapshot directory `scope` are one inode.
    pub(crate) fn hard_link(scope: u64, device: u64, inode: u64) -> Self {
        let mut h = blake3::Hasher::new();
        h.update(b"lifeboat mount hard link\0");
        h.update(&scope.to_le_bytes());
        h.update(&device.to_le_bytes());
        h.update(&inode.to_le_bytes());
        Identity(*h.finalize().as_bytes())
    }

    /// The identity of the root directory.
    fn root() -> Self {
        Identity([0; 32])
    }

    /// The inode number it asks for: never 0 (invalid) nor 1 (the root).
    pub(crate) fn ino(&self) -> u64 {
        let mut first = [0u8; 8];
        first.copy_from_slice(&self.0[..8]);
        let n = u64::from_le_bytes(first);
        if n <= ROOT {
            n + 2
        } else {
            n
        }
    }
}

/// The trees whose entries, merged, are a directory's listing: one tree for
/// a directory of a snapshot, the snapshot's roots for its top.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct DirKey(pub Vec<BlobId>);

/// What an inode shows.
#[derive(Debug)]
pub(crate) enum Kind {
    /// A made-up directory (the root, `snapshots/`, `hosts/<host>/`, …).
    Virtual(VDir),
    /// A made-up symbolic link (`latest`).
    Link(Vec<u8>),
    /// A snapshot's top directory.
    Snapshot(Arc<SnapInfo>),
    /// An entry of a snapshot, and the listing it was found in (the
    /// neighbours a reader of a directory reads next).
    Node {
        /// The entry.
        node: Node,
        /// Its directory's listing.
        listed_in: DirKey,
    },
}

/// One inode.
#[derive(Debug)]
pub(crate) struct Inode {
    /// What it is.
    pub identity: Identity,
    /// The directory it was found in (itself for the root).
    pub parent: u64,
    /// The snapshot directory it lies in (0 above the snapshots): the scope
    /// of hard links.
    pub scope: u64,
    /// What it shows.
    pub kind: Kind,
    /// A file's blobs and offsets, computed when it is first read.
    pub map: OnceLock<Arc<FileMap>>,
    /// A file's blobs before this one were asked for already (reading
    /// ahead within it).
    pub ahead: AtomicUsize,
}

impl Inode {
    /// An inode for `kind`.
    pub(crate) fn new(identity: Identity, parent: u64, scope: u64, kind: Kind) -> Self {
        Inode {
            identity,
            parent,
            scope,
            kind,
            map: OnceLock::new(),
            ahead: AtomicUsize::new(0),
        }
    }
}

struct Slot {
    inode: Arc<Inode>,
    /// Lookups the kernel has not forgotten yet.
    lookups: u64,
}

/// The inodes the kernel holds, by number.
pub(crate) struct InodeTable {
    slots: Mutex<HashMap<u64, Slot>>,
}

/// The next number to try after a collision.
fn next(ino: u64) -> u64 {
    match ino.wrapping_add(1) {
        n if n <= ROOT => ROOT + 1,
        n => n,
    }
}

impl InodeTable {
    /// A table holding the root, which is never forgotten.
    pub(crate) fn new() -> Self {
        let root = Inode::new(Identity::root(), ROOT, 0, Kind::Virtual(VDir::Root));
        let slots = HashMap::from([(
            ROOT,
            Slot {
                inode: Arc::new(root),
                lookups: u64::MAX / 2,
            },
        )]);
        InodeTable {
            slots: Mutex::new(slots),
        }
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Slot>> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The inode numbered `ino`, if the kernel holds it.
    pub(crate) fn get(&self, ino: u64) -> Option<Arc<Inode>> {
        self.slots().get(&ino).map(|s| s.inode.clone())
    }

    /// Counts one lookup of `inode`: recorded under the number its identity
    /// asks for, or found there already (then `inode` is dropped for the
    /// one recorded). Two identities asking for one number (a 64-bit
    /// collision) get the next free number.
    pub(crate) fn remember(&self, inode: Inode) -> (u64, Arc<Inode>) {
        let mut slots = self.slots();
        let mut ino = inode.identity.ino();
        loop {
            match slots.get_mut(&ino) {
                Some(slot) if slot.inode.identity == inode.identity => {
                    slot.lookups += 1;
                    return (ino, slot.inode.clone());
                }
                Some(_) => ino = next(ino),
                None => {
                    let inode = Arc::new(inode);
                    slots.insert(
                        ino,
                        Slot {
                            inode: inode.clone(),
                            lookups: 1,
                        },
                    );
                    return (ino, inode);
                }
            }
        }
    }

    /// The kernel forgot `n` lookups of `ino`; at none left it is dropped.
    pub(crate) fn forget(&self, ino: u64, n: u64) {
        if ino == ROOT {
            return;
        }
        let mut slots = self.slots();
        if let Some(slot) = slots.get_mut(&ino) {
            slot.lookups = slot.lookups.saturating_sub(n);
            if slot.lookups == 0 {
                slots.remove(&ino);
            }
        }
    }

    /// Inodes held (the root included).
    pub(crate) fn len(&self) -> usize {
        self.slots().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(identity: Identity) -> Inode {
        Inode::new(identity, ROOT, 0, Kind::Virtual(VDir::Snapshots))
    }

    #[test]
    fn numbers_follow_identities() {
        let a = Identity::path(ROOT, b"snapshots", b"");
        assert_eq!(a, Identity::path(ROOT, b"snapshots", b""));
        assert_ne!(a, Identity::path(ROOT, b"snapshots", b"x"), "salted");
        assert_ne!(a, Identity::path(7, b"snapshots", b""), "by parent");
        assert_ne!(
            Identity::path(ROOT, b"ab", b"c"),
            Identity::path(ROOT, b"a", b"bc"),
            "names are delimited"
        );
        assert_eq!(
            Identity::hard_link(9, 1, 2).ino(),
            Identity::hard_link(9, 1, 2).ino()
        );
        assert!(Identity::path(ROOT, b"x", b"").ino() > ROOT);
        assert_eq!(Identity([0; 32]).ino(), 2, "never 0");
        let mut one = [0; 32];
        one[0] = 1;
        assert_eq!(Identity(one).ino(), 3, "never the root");
    }

    #[test]
    fn lookups_are_counted_and_forgotten() {
        let table = InodeTable::new();
        let id = Identity::path(ROOT, b"snapshots", b"");
        let (ino, _) = table.remember(dir(id));
        assert_eq!(ino, id.ino());
        assert_eq!(table.remember(dir(id)).0, ino, "same identity, same inode");
        assert_eq!(table.len(), 2);
        table.forget(ino, 1);
        assert!(table.get(ino).is_some(), "one lookup left");
        table.forget(ino, 1);
        assert!(table.get(ino).is_none());
        table.forget(ROOT, 1000);
        assert!(table.get(ROOT).is_some(), "the root stays");
    }

    #[test]
    fn colliding_numbers_are_told_apart() {
        let table = InodeTable::new();
        // Two identities asking for the same number.
        let mut a = [7u8; 32];
        let mut b = [7u8; 32];
        a[31] = 1;
        b[31] = 2;
        let (ia, _) = table.remember(dir(Identity(a)));
        let (ib, _) = table.remember(dir(Identity(b)));
        assert_eq!(ia, Identity(a).ino());
        assert_ne!(ia, ib);
        assert_eq!(table.remember(dir(Identity(b))).0, ib, "found again");
        assert_eq!(next(u64::MAX), ROOT + 1);
    }
}
