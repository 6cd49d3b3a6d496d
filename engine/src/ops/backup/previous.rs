//! What the parent snapshot holds of one account, handed to a source so
//! that it can list only what changed since (a WebDAV sync token, an IMAP
//! HIGHESTMODSEQ) and complete the rest from it.

use crate::format::extra::Extra;
use crate::format::ids::BlobId;
use crate::format::tags;
use crate::format::tree::NodeKind;
use crate::repo::Repository;
use crate::source::Collection;

/// The parent snapshot's account directory, read for a source's
/// incremental listing.
pub(super) struct ParentAccount<'a> {
    pub repo: &'a Repository,
    pub index: &'a crate::repo::index::MasterIndex,
    pub account: Option<BlobId>,
    pub account_extra: Option<Extra>,
}

#[async_trait::async_trait]
impl crate::source::PreviousState for ParentAccount<'_> {
    async fn account(&self) -> Option<Extra> {
        self.account_extra.clone()
    }

    async fn collection(&self, path: &[Vec<u8>]) -> Option<Collection> {
        let mut tree = self.repo.load_tree(self.index, &self.account?).await.ok()?;
        let mut extra = Extra::new();
        for name in path {
            let node = tree.find(name)?;
            let NodeKind::Dir { subtree } = node.kind else {
                return None;
            };
            extra = node.extra.clone();
            tree = self.repo.load_tree(self.index, &subtree).await.ok()?;
        }
        let items = tree
            .nodes
            .into_iter()
            .filter(|n| matches!(n.kind, NodeKind::File { .. }))
            .map(|n| {
                let version = n.extra.get(tags::ITEM_VERSION).unwrap_or_default().to_vec();
                let mut extra = n.extra;
                extra.remove(tags::ITEM_VERSION);
                extra.remove(tags::ITEM_MALFORMED);
                crate::source::ItemEntry {
                    name: n.name,
                    version,
                    mtime: n.mtime,
                    size: n.size,
                    extra,
                }
            })
            .collect();
        Some(Collection {
            path: path.to_vec(),
            extra,
            items,
        })
    }
}
