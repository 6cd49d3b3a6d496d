//! The backup targets as a tree of path components from `/`.
//!
//! The snapshot's root tree mirrors this: each target's ancestors appear as
//! directories (with their real metadata), so restore recreates every target
//! at its absolute location under the restore target.

use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result};

/// One path component in the target tree.
#[derive(Debug, Default)]
pub struct TargetNode {
    /// True when this path itself was named for backup (everything below is included).
    pub target: bool,
    /// Components below it that lead to targets.
    pub children: BTreeMap<Vec<u8>, TargetNode>,
}

/// Makes `path` absolute and lexically clean (no `.`, `..` or trailing `/`),
/// without resolving symlinks.
///
/// # Errors
/// When the current directory cannot be read.
pub fn clean_absolute(path: &Path) -> Result<PathBuf> {
    let abs = std::path::absolute(path).map_err(|e| Error::io(path, e))?;
    let mut out = PathBuf::from("/");
    for c in abs.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    Ok(out)
}

/// Resolves symlinks in the directories above `path` (not in its last
/// component), so that every ancestor recorded in the snapshot is a real
/// directory: `/var/run/x` with `/var/run -> /run` becomes `/run/x`.
///
/// # Errors
/// When an ancestor does not exist.
pub fn resolve_ancestors(path: &Path) -> std::io::Result<PathBuf> {
    match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) => Ok(std::fs::canonicalize(parent)?.join(name)),
        _ => Ok(path.to_path_buf()),
    }
}

/// Builds the target tree; a path inside another target is dropped.
pub fn build(paths: &[PathBuf]) -> TargetNode {
    let mut root = TargetNode::default();
    for path in paths {
        let mut node = &mut root;
        for c in path.components() {
            if node.target {
                break;
            }
            if let Component::Normal(name) = c {
                node = node.children.entry(name.as_bytes().to_vec()).or_default();
            }
        }
        node.target = true;
        node.children.clear();
    }
    root
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleaning_and_nesting() {
        assert_eq!(
            clean_absolute(Path::new("/a/./b/../c/")).unwrap(),
            PathBuf::from("/a/c")
        );
        let t = build(&[
            PathBuf::from("/a/b"),
            PathBuf::from("/a/b/c"),
            PathBuf::from("/d"),
        ]);
        assert!(!t.target);
        let a = &t.children[&b"a".to_vec()];
        assert!(!a.target && a.children[&b"b".to_vec()].target);
        assert!(a.children[&b"b".to_vec()].children.is_empty());
        assert!(build(&[PathBuf::from("/"), PathBuf::from("/x")]).target);
    }
}
