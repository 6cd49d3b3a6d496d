//! Sources beside paths: accounts whose items (contacts, calendar entries,
//! tasks, messages) live on a server, pulled into the same snapshot as files.
//!
//! The engine knows no protocol: a source crate implements [`ItemSource`]
//! (list the collections with each item's version, fetch item bodies), and
//! the backup stores every item as an ordinary file node below the
//! snapshot's sources tree (FORMAT.md §4.11): `dav/<host>/<collection
//! path>/<item>` and `imap/<user>@<host>/<mailbox>/<item>`. An item whose
//! version equals the one in the parent snapshot is not fetched again.

use crate::format::extra::Extra;

/// The two kinds of source, each the top-level directory of the sources
/// tree its accounts live under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SourceKind {
    /// CardDAV and CalDAV (`dav://`, `davs://`): directory `dav`.
    Dav,
    /// IMAP (`imap://`, `imaps://`): directory `imap`.
    Imap,
}

impl SourceKind {
    /// The directory name in the sources tree, and the URL scheme shown.
    pub fn dir_name(self) -> &'static str {
        match self {
            SourceKind::Dav => "dav",
            SourceKind::Imap => "imap",
        }
    }
}

/// Where one account's items live in the snapshot: its kind and its
/// account directory (`host[:port]` for DAV, `user@host[:port]` for IMAP).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SourceRoot {
    /// The kind: `dav` or `imap`.
    pub kind: SourceKind,
    /// The account directory's name: a valid node name, no credentials.
    pub account: String,
}

impl SourceRoot {
    /// The name shown to users and recorded in the snapshot's paths:
    /// `dav://host/`, `imap://user@host/`.
    pub fn display(&self) -> String {
        format!("{}://{}/", self.kind.dir_name(), self.account)
    }

    /// The account's directory in a restore target and in `--include`
    /// patterns: `/dav/host`, `/imap/user@host`.
    pub fn snapshot_path(&self) -> String {
        format!("/{}/{}", self.kind.dir_name(), self.account)
    }
}

/// One item as listed: its name in the snapshot and its version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemEntry {
    /// The file name in the snapshot (a valid node name, unique in its
    /// collection).
    pub name: Vec<u8>,
    /// Changes whenever the item's body does (an ETag, a UID): an item
    /// whose version equals the parent snapshot's is not fetched again.
    pub version: Vec<u8>,
    /// Last modification, seconds since the epoch (0 when unknown: the
    /// time of the body's `LAST-MODIFIED`, or the message's internal date).
    pub mtime: i64,
    /// Its size as listed (0 when unknown): fetches are grouped so that the
    /// bodies in flight stay within a byte budget.
    pub size: u64,
    /// Metadata stored on the item's node (FORMAT.md §4.10), besides the
    /// version, which the engine records itself.
    pub extra: Extra,
}

/// One collection (address book, calendar, task list, mailbox) as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Collection {
    /// Its directory below the account directory, one valid node name per
    /// component (not empty).
    pub path: Vec<Vec<u8>>,
    /// Its properties, stored on its directory node.
    pub extra: Extra,
    /// Its items, names unique.
    pub items: Vec<ItemEntry>,
}

/// Why a source failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    /// The server refused the credentials: the whole backup stops, since
    /// every later run would fail the same way until the user acts.
    #[error("{0}")]
    Auth(String),
    /// Anything else: the source is left out of this snapshot and reported,
    /// the rest of the backup is committed (exit status 3).
    #[error("{0}")]
    Failed(String),
}

/// The body of one item, fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedItem {
    /// Its position in the collection's `items`.
    pub index: usize,
    /// Its bytes exactly as served.
    pub body: Vec<u8>,
    /// True when the bytes do not parse as the item's type (they are kept
    /// as served and counted).
    pub malformed: bool,
}

/// Counters a source keeps of its own traffic, for the run's summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SourceTraffic {
    /// Requests (HTTP requests, IMAP commands) sent.
    pub requests: u64,
    /// Bytes received.
    pub bytes_in: u64,
}

/// What the parent snapshot holds of one account, for incremental listings.
#[async_trait::async_trait]
pub trait PreviousState: Send + Sync {
    /// The account directory's metadata as the parent snapshot stored it
    /// (what [`ItemSource::account_extra`] gave then); `None` without one.
    async fn account(&self) -> Option<Extra> {
        None
    }

    /// The collection at `path` (below the account directory) as the parent
    /// snapshot stored it: its properties and its items (each with its
    /// version, time, size and metadata); `None` when it has none.
    async fn collection(&self, path: &[Vec<u8>]) -> Option<Collection>;
}

/// No parent: every listing is a full one.
pub struct NoPreviousState;

#[async_trait::async_trait]
impl PreviousState for NoPreviousState {
    async fn collection(&self, _: &[Vec<u8>]) -> Option<Collection> {
        None
    }
}

/// An account whose items a backup pulls.
#[async_trait::async_trait]
pub trait ItemSource: Send + Sync {
    /// Where the account's items go in the snapshot.
    fn root(&self) -> SourceRoot;

    /// Every collection with every item's name and version. `previous`
    /// holds what the parent snapshot stored, so a source can list only
    /// what changed since (a WebDAV sync token, a CTag) and complete the
    /// rest from it.
    ///
    /// # Errors
    /// [`SourceError::Auth`] when the credentials are refused, else
    /// [`SourceError::Failed`].
    async fn collections(
        &self,
        previous: &dyn PreviousState,
    ) -> Result<Vec<Collection>, SourceError>;

    /// The bodies of the items at `wanted` (positions in
    /// `collection.items`), in any order; an item the server no longer has
    /// is left out of the answer.
    ///
    /// # Errors
    /// As [`ItemSource::collections`].
    async fn fetch(
        &self,
        collection: &Collection,
        wanted: &[usize],
    ) -> Result<Vec<FetchedItem>, SourceError>;

    /// Metadata for the account's directory, asked after
    /// [`ItemSource::collections`]: what the next run finds in
    /// [`PreviousState::account`] (where discovery led, to skip it).
    fn account_extra(&self) -> Extra {
        Extra::new()
    }

    /// Items a single [`ItemSource::fetch`] asks for, at most.
    fn batch_size(&self) -> usize {
        64
    }

    /// Requests sent and bytes received so far.
    fn traffic(&self) -> SourceTraffic;
}

impl std::fmt::Debug for dyn ItemSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ItemSource({})", self.root().display())
    }
}

/// A collection to recreate on a server (`restore --to`): its path below
/// the account directory and its properties as backed up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushCollection {
    /// Its directory below the account directory.
    pub path: Vec<Vec<u8>>,
    /// Its properties (FORMAT.md §4.10).
    pub extra: Extra,
}

/// One item to upload.
#[derive(Debug, Clone, Copy)]
pub struct PushItem<'a> {
    /// Its file name in the snapshot.
    pub name: &'a [u8],
    /// Its metadata as backed up (flags, internal date, …).
    pub extra: &'a Extra,
    /// Its modification time, seconds since the epoch.
    pub mtime: i64,
}

/// What uploading one item did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// It was not on the server and now is.
    Created,
    /// The server held another version, which it now replaced.
    Replaced,
    /// The server already held it (or `--overwrite` kept its version).
    Kept,
}

/// An account items are uploaded to (`restore --to`). Uploads never delete
/// anything on the server.
#[async_trait::async_trait]
pub trait ItemSink: Send + Sync {
    /// The kind of account it is: items restore only to their own kind.
    fn kind(&self) -> SourceKind;

    /// The account as shown (`davs://alice@host/`).
    fn display(&self) -> String;

    /// Finds or creates (with its properties) the collection a backed-up
    /// one restores to.
    ///
    /// # Errors
    /// As [`ItemSource::collections`].
    async fn open_collection(
        &self,
        collection: &PushCollection,
    ) -> Result<Box<dyn CollectionSink + '_>, SourceError>;
}

/// One collection on the server, open for uploads.
#[async_trait::async_trait]
pub trait CollectionSink: Send + Sync {
    /// Where it is on the server (an href, a mailbox name).
    fn location(&self) -> String;

    /// Uploads `body` as `item`, keeping or replacing what the server holds
    /// under it as `overwrite` says.
    ///
    /// # Errors
    /// As [`ItemSource::collections`]; an item the server refuses is
    /// [`SourceError::Failed`] with the server's reason.
    async fn put(
        &self,
        item: PushItem<'_>,
        body: &[u8],
        overwrite: crate::ops::restore::Overwrite,
    ) -> Result<Pushed, SourceError>;
}
