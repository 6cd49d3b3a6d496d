//! The registry of optional-field tags (FORMAT.md §4.10): what each tag of a
//! [`super::extra::Extra`] means and how its value is encoded. A tag is never
//! reused for another meaning; readers keep the tags they do not know.

/// Snapshot: the sources tree (32-byte blob id): a tree whose entries are
/// the directories `dav` and `imap`, one directory per account below them.
pub const SNAPSHOT_SOURCES: u32 = 1;
/// Snapshot: the original (32-byte snapshot id) this snapshot replaces,
/// written by `tag` and `rewrite`; a copy of a copy names the first one.
pub const SNAPSHOT_ORIGINAL: u32 = 2;

/// Item node: the source's version of the item (a WebDAV ETag, an IMAP
/// message's UIDVALIDITY-UID): the next run downloads the item again only
/// when this changed. Raw bytes as the server sent them.
pub const ITEM_VERSION: u32 = 16;
/// Item node: where the item lives on its server (a WebDAV href, UTF-8).
pub const ITEM_HREF: u32 = 17;
/// Item node: present (empty value) when the server served bytes that do
/// not parse as the item's type; they are kept exactly as served.
pub const ITEM_MALFORMED: u32 = 18;
/// Item node: an IMAP message's flags, UTF-8, space-separated.
pub const ITEM_FLAGS: u32 = 19;
/// Item node: an IMAP message's internal date as the server sent it
/// (RFC 3501 `date-time`, UTF-8), so an upload can set it with its zone.
pub const ITEM_DATE: u32 = 20;
/// Item node: the item's size as the server listed it (decimal, UTF-8).
pub const ITEM_SIZE: u32 = 21;

/// Collection directory: its kind, UTF-8: `addressbook`, `calendar` or
/// `mailbox`.
pub const COLLECTION_KIND: u32 = 32;
/// Collection directory: its display name, UTF-8.
pub const COLLECTION_NAME: u32 = 33;
/// Collection directory: its description, UTF-8.
pub const COLLECTION_DESCRIPTION: u32 = 34;
/// Collection directory: its color (CalDAV/Apple `calendar-color`), UTF-8.
pub const COLLECTION_COLOR: u32 = 35;
/// Collection directory: the calendar components it holds (`VEVENT`,
/// `VTODO`, ...), UTF-8, comma-separated.
pub const COLLECTION_COMPONENTS: u32 = 36;
/// Collection directory: the server's synchronization state at the time of
/// the backup (a WebDAV sync token, an IMAP UIDVALIDITY), UTF-8.
pub const COLLECTION_SYNC_STATE: u32 = 37;
/// Collection directory: where the collection lives on its server (a
/// WebDAV href or an IMAP mailbox name), UTF-8.
pub const COLLECTION_HREF: u32 = 38;
/// Collection directory: an IMAP mailbox's attributes, special use
/// included (`\Sent \HasNoChildren`), UTF-8, space-separated.
pub const COLLECTION_ATTRIBUTES: u32 = 39;
/// Collection directory: an IMAP mailbox's hierarchy delimiter, UTF-8.
pub const COLLECTION_DELIMITER: u32 = 40;
/// Collection directory: the server's CTag (CalendarServer's `getctag`),
/// UTF-8: with no sync token, an unchanged CTag means an unchanged
/// collection.
pub const COLLECTION_CTAG: u32 = 41;
/// Collection directory: an IMAP mailbox's HIGHESTMODSEQ (CONDSTORE, RFC
/// 7162), decimal UTF-8.
pub const COLLECTION_MODSEQ: u32 = 42;
/// Collection directory: an IMAP mailbox's UIDNEXT, decimal UTF-8.
pub const COLLECTION_UIDNEXT: u32 = 43;

/// Account directory: the source's URL without credentials, UTF-8.
pub const ACCOUNT_URL: u32 = 48;
/// Account directory: where DAV discovery led, UTF-8 lines `addressbook
/// <href>`, `calendar <href>` or `collection <href>`: the next run lists
/// these first and discovers again only when that fails.
pub const ACCOUNT_HOMES: u32 = 49;
