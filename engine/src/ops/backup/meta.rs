//! Building tree nodes from file system metadata.

use std::fs::Metadata;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use crate::format::tree::{Node, NodeKind};
use crate::users::{group_name, user_name};

/// A node for `meta` with the given kind-specific data.
pub fn node_from_metadata(name: Vec<u8>, meta: &Metadata, kind: NodeKind) -> Node {
    Node {
        name,
        kind,
        size: if meta.is_file() { meta.len() } else { 0 },
        mode: meta.mode() & 0o7777,
        uid: meta.uid(),
        gid: meta.gid(),
        user: user_name(meta.uid()),
        group: group_name(meta.gid()),
        mtime: meta.mtime(),
        mtime_nsec: meta.mtime_nsec() as u32,
        ctime: meta.ctime(),
        ctime_nsec: meta.ctime_nsec() as u32,
        inode: meta.ino(),
        device: meta.dev(),
        links: meta.nlink(),
        extra: crate::format::extra::Extra::new(),
    }
}

/// What a non-directory, non-file entry is, read from the file system.
///
/// # Errors
/// Reading a symlink target can fail.
pub fn special_kind(path: &Path, meta: &Metadata) -> std::io::Result<NodeKind> {
    use std::os::unix::ffi::OsStrExt;
    let ft = meta.file_type();
    Ok(if ft.is_symlink() {
        NodeKind::Symlink {
            target: std::fs::read_link(path)?.as_os_str().as_bytes().to_vec(),
        }
    } else if ft.is_block_device() {
        NodeKind::BlockDevice { rdev: meta.rdev() }
    } else if ft.is_char_device() {
        NodeKind::CharDevice { rdev: meta.rdev() }
    } else if ft.is_fifo() {
        NodeKind::Fifo
    } else {
        NodeKind::Socket
    })
}

/// True when `node` (from the parent snapshot) describes the same unchanged
/// file as `meta`: size, mtime, ctime and inode all equal.
pub fn unchanged(node: &Node, meta: &Metadata) -> bool {
    matches!(node.kind, NodeKind::File { .. })
        && node.size == meta.len()
        && node.mtime == meta.mtime()
        && node.mtime_nsec == meta.mtime_nsec() as u32
        && node.ctime == meta.ctime()
        && node.ctime_nsec == meta.ctime_nsec() as u32
        && node.inode == meta.ino()
}
