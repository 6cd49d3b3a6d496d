//! Trees: one blob per directory, listing its entries with full metadata.
//!
//! The encoding is canonical (entries sorted by name bytes, fixed field order,
//! no access times), so an unchanged directory always yields the same blob id.
//! Names and symlink targets are raw bytes: any Unix file name round-trips.

use serde::{Deserialize, Serialize};

use super::extra::Extra;
use super::RepoFile;
use crate::error::{Error, Result};
use crate::format::ids::BlobId;

/// The tree version written and read (2 adds each node's optional fields).
pub const TREE_VERSION: u8 = 2;

/// What kind of file system object a node is, with its kind-specific data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeKind {
    /// A regular file and the blobs of its content, in order.
    File {
        /// The data blobs, concatenated, are the file's content.
        content: Vec<BlobId>,
    },
    /// A directory and its tree blob.
    Dir {
        /// The tree blob listing its entries.
        subtree: BlobId,
    },
    /// A symbolic link.
    Symlink {
        /// Link target, as raw bytes.
        #[serde(with = "serde_bytes")]
        target: Vec<u8>,
    },
    /// A block device.
    BlockDevice {
        /// Device number.
        rdev: u64,
    },
    /// A character device.
    CharDevice {
        /// Device number.
        rdev: u64,
    },
    /// A named pipe.
    Fifo,
    /// A Unix socket (recorded, not recreated).
    Socket,
}

/// One directory entry with its metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// File name, raw bytes (not empty, no `/` or NUL, not `.` or `..`).
    #[serde(with = "serde_bytes")]
    pub name: Vec<u8>,
    /// Kind and kind-specific data.
    pub kind: NodeKind,
    /// Size in bytes (files: content length).
    pub size: u64,
    /// Permission and special bits (`st_mode & 0o7777`).
    pub mode: u32,
    /// Owner user id.
    pub uid: u32,
    /// Owner group id.
    pub gid: u32,
    /// Owner user name, when known.
    pub user: String,
    /// Owner group name, when known.
    pub group: String,
    /// Modification time: seconds since the epoch.
    pub mtime: i64,
    /// Modification time: nanoseconds.
    pub mtime_nsec: u32,
    /// Status change time: seconds (for change detection only).
    pub ctime: i64,
    /// Status change time: nanoseconds.
    pub ctime_nsec: u32,
    /// Inode number (change detection, hard links).
    pub inode: u64,
    /// Device of the containing file system (hard links).
    pub device: u64,
    /// Hard link count at backup time.
    pub links: u64,
    /// Optional fields (FORMAT.md §4.10), in tag order.
    pub extra: Extra,
}

impl Node {
    /// True for a directory.
    pub fn is_dir(&self) -> bool {
        matches!(self.kind, NodeKind::Dir { .. })
    }

    /// A one-letter type as in `ls -l`.
    pub fn type_char(&self) -> char {
        match self.kind {
            NodeKind::File { .. } => '-',
            NodeKind::Dir { .. } => 'd',
            NodeKind::Symlink { .. } => 'l',
            NodeKind::BlockDevice { .. } => 'b',
            NodeKind::CharDevice { .. } => 'c',
            NodeKind::Fifo => 'p',
            NodeKind::Socket => 's',
        }
    }
}

/// A directory listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tree {
    /// Format version (2).
    pub version: u8,
    /// Entries, sorted by name bytes, names unique.
    pub nodes: Vec<Node>,
}

impl Tree {
    /// A tree of `nodes`, sorted into canonical order.
    pub fn new(mut nodes: Vec<Node>) -> Self {
        nodes.sort_by(|a, b| a.name.cmp(&b.name));
        Tree {
            version: TREE_VERSION,
            nodes,
        }
    }

    /// Decodes and validates a tree blob's plaintext.
    ///
    /// # Errors
    /// [`Error::Format`] for malformed bytes, unsorted or duplicate names, or
    /// names that could escape a restore target (`/`, `.`, `..`, empty).
    pub fn decode(id: &BlobId, bytes: &[u8]) -> Result<Self> {
        let object = || format!("tree {id}");
        let tree = Self::decode_named(id, bytes)?;
        for node in &tree.nodes {
            if !valid_name(&node.name) {
                return Err(Error::format(
                    object(),
                    format!(
                        "invalid entry name {:?}",
                        String::from_utf8_lossy(&node.name)
                    ),
                ));
            }
        }
        for node in &tree.nodes {
            if let NodeKind::Symlink { target } = &node.kind {
                if target.is_empty() || target.contains(&0) {
                    return Err(Error::format(object(), "invalid symlink target"));
                }
            }
        }
        if tree.nodes.windows(2).any(|w| w[0].name >= w[1].name) {
            return Err(Error::format(object(), "entries not in canonical order"));
        }
        for node in &tree.nodes {
            node.extra
                .validate()
                .map_err(|e| Error::stored(object(), e))?;
        }
        Ok(tree)
    }

    /// Finds an entry by name.
    pub fn find(&self, name: &[u8]) -> Option<&Node> {
        self.nodes
            .binary_search_by(|n| n.name.as_slice().cmp(name))
            .ok()
            .map(|i| &self.nodes[i])
    }
}

/// True for a name an entry may have: not empty, not `.` or `..`, no `/`
/// or NUL, so that it can never escape a restore target.
pub fn valid_name(name: &[u8]) -> bool {
    !(name.is_empty() || name == b"." || name == b".." || name.contains(&b'/') || name.contains(&0))
}

/// A tree's canonical encoding is [`RepoFile::encode`], the plaintext of its
/// blob; it has no seal of its own (the blob's seal and id protect it).
impl RepoFile for Tree {
    const KIND: &'static str = "tree";
    const VERSION: u8 = TREE_VERSION;

    fn version(&self) -> u8 {
        self.version
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn node(name: &[u8], kind: NodeKind) -> Node {
        Node {
            name: name.to_vec(),
            kind,
            size: 3,
            mode: 0o644,
            uid: 1000,
            gid: 1000,
            user: "u".into(),
            group: "g".into(),
            mtime: 1_700_000_000,
            mtime_nsec: 5,
            ctime: 1_700_000_001,
            ctime_nsec: 6,
            inode: 42,
            device: 7,
            links: 1,
            extra: Extra::new(),
        }
    }

    #[test]
    fn optional_fields_round_trip_and_must_be_canonical() {
        let mut a = node(b"a", NodeKind::Fifo);
        a.extra.set(77, b"a tag this build does not know".to_vec());
        a.extra.set(3, vec![1, 2, 3]);
        let tree = Tree::new(vec![a]);
        let bytes = tree.encode();
        let id = BlobId([9; 32]);
        let decoded = Tree::decode(&id, &bytes).unwrap();
        assert_eq!(decoded, tree);
        assert_eq!(decoded.encode(), bytes, "one encoding");
        assert_eq!(
            decoded.nodes[0].extra.get(77),
            Some(&b"a tag this build does not know"[..])
        );
        // The same fields out of order: after the count `02`, tag 77 (1 +
        // 1 + 30 bytes) before tag 3 (1 + 1 + 3 bytes).
        let fields = (1 + 1 + 30) + (1 + 1 + 3);
        let mut swapped = bytes[..bytes.len() - fields].to_vec();
        assert_eq!(swapped.last(), Some(&2), "the count of fields");
        swapped.extend_from_slice(&[77, 30]);
        swapped.extend_from_slice(b"a tag this build does not know");
        swapped.extend_from_slice(&[3, 3, 1, 2, 3]);
        assert_eq!(swapped.len(), bytes.len());
        assert!(matches!(
            Tree::decode(&id, &swapped),
            Err(Error::Format { .. })
        ));
    }

    #[test]
    fn canonical_and_round_trip() {
        let a = node(
            b"b\xff\nname",
            NodeKind::File {
                content: vec![BlobId([1; 32])],
            },
        );
        let b = node(
            b"a",
            NodeKind::Symlink {
                target: b"/nowhere\xfe".to_vec(),
            },
        );
        let t1 = Tree::new(vec![a.clone(), b.clone()]);
        let t2 = Tree::new(vec![b, a]);
        assert_eq!(t1.encode(), t2.encode());
        let decoded = Tree::decode(&BlobId::default(), &t1.encode()).unwrap();
        assert_eq!(decoded, t1);
        assert!(decoded.find(b"b\xff\nname").is_some());
    }

    #[test]
    fn rejects_dangerous_names_and_disorder() {
        for bad in [&b".."[..], b".", b"a/b", b""] {
            let t = Tree::new(vec![node(bad, NodeKind::Fifo)]);
            assert!(
                Tree::decode(&BlobId::default(), &t.encode()).is_err(),
                "{bad:?}"
            );
        }
        let t = Tree {
            version: 1,
            nodes: vec![node(b"b", NodeKind::Fifo), node(b"a", NodeKind::Fifo)],
        };
        assert!(Tree::decode(&BlobId::default(), &t.encode()).is_err());
        let dup = Tree {
            version: 1,
            nodes: vec![node(b"a", NodeKind::Fifo), node(b"a", NodeKind::Fifo)],
        };
        assert!(Tree::decode(&BlobId::default(), &dup.encode()).is_err());
    }

    use crate::format::crypto::mutate;
    use proptest::prelude::*;

    fn kinds() -> impl Strategy<Value = NodeKind> {
        prop_oneof![
            prop::collection::vec(any::<[u8; 32]>(), 0..4).prop_map(|c| NodeKind::File {
                content: c.into_iter().map(BlobId).collect()
            }),
            any::<[u8; 32]>().prop_map(|s| NodeKind::Dir { subtree: BlobId(s) }),
            prop::collection::vec(1..=255u8, 1..40).prop_map(|target| NodeKind::Symlink { target }),
            any::<u64>().prop_map(|rdev| NodeKind::BlockDevice { rdev }),
            any::<u64>().prop_map(|rdev| NodeKind::CharDevice { rdev }),
            Just(NodeKind::Fifo),
            Just(NodeKind::Socket),
        ]
    }

    /// Valid trees: names unique, without `/` or NUL, not `.` or `..`.
    fn trees() -> impl Strategy<Value = Tree> {
        let name = prop::collection::vec(any::<u8>(), 1..12).prop_filter("valid name", |n| {
            n != b"." && n != b".." && !n.contains(&b'/') && !n.contains(&0)
        });
        let node = (
            name,
            kinds(),
            any::<(u64, u32, u32, u32)>(),
            ".{0,8}",
            ".{0,8}",
            any::<(i64, u32, i64, u32)>(),
            any::<(u64, u64, u64)>(),
            crate::format::extra::tests::extras(),
        )
            .prop_map(
                |(
                    name,
                    kind,
                    (size, mode, uid, gid),
                    user,
                    group,
                    times,
                    (inode, device, links),
                    extra,
                )| {
                    Node {
                        name,
                        kind,
                        size,
                        mode,
                        uid,
                        gid,
                        user,
                        group,
                        mtime: times.0,
                        mtime_nsec: times.1,
                        ctime: times.2,
                        ctime_nsec: times.3,
                        inode,
                        device,
                        links,
                        extra,
                    }
                },
            );
        prop::collection::vec(node, 0..6).prop_map(|mut nodes| {
            nodes.sort_by(|a, b| a.name.cmp(&b.name));
            nodes.dedup_by(|a, b| a.name == b.name);
            Tree::new(nodes)
        })
    }

    #[test]
    fn huge_length_prefixes_fail_fast() {
        let huge = [0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x10]; // 2^60
                                                                           // Node count; a name's length; a file's content count.
        let mut nodes = vec![1];
        nodes.extend_from_slice(&huge);
        let mut name = vec![1, 1];
        name.extend_from_slice(&huge);
        let mut content = vec![1, 1, 1, b'a', 0];
        content.extend_from_slice(&huge);
        for bytes in [nodes, name, content] {
            let started = std::time::Instant::now();
            assert!(Tree::decode(&BlobId::default(), &bytes).is_err());
            assert!(started.elapsed() < std::time::Duration::from_secs(1));
        }
    }

    proptest! {
        #[test]
        fn arbitrary_tree_bytes_never_panic(bytes in mutate::bytes(500)) {
            let _ = Tree::decode(&BlobId::default(), &bytes);
        }

        #[test]
        fn trees_round_trip(tree in trees()) {
            let bytes = tree.encode();
            prop_assert_eq!(&Tree::decode(&BlobId::default(), &bytes).unwrap(), &tree);
        }

        #[test]
        fn mutated_trees_never_panic_and_stay_valid(tree in trees(), m in mutate::mutations()) {
            // A tree's plaintext is protected by its blob's seal and id; the
            // decoder itself must still survive anything and only hand out
            // trees that pass its checks.
            let bad = mutate::apply(&tree.encode(), &m);
            if let Ok(decoded) = Tree::decode(&BlobId::default(), &bad) {
                prop_assert!(decoded.nodes.windows(2).all(|w| w[0].name < w[1].name));
                for n in &decoded.nodes {
                    prop_assert!(!n.name.is_empty() && !n.name.contains(&b'/') && !n.name.contains(&0));
                    prop_assert!(n.name != b"." && n.name != b"..");
                }
            }
        }
    }
}
