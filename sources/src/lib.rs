//! Sources beside paths: accounts whose items live on a server, pulled into
//! Lifeboat snapshots through the engine's [`ItemSource`] trait.
//!
//! - [`url`]: `dav://`, `davs://`, `imap://`, `imaps://` URLs;
//! - [`dav`]: CardDAV and CalDAV accounts (address books, calendars, task
//!   lists);
//! - [`imap`]: IMAP accounts (every mailbox, or those named).

#![warn(missing_docs)]

pub mod dav;
pub mod imap;
pub mod url;

use std::path::Path;
use std::sync::Arc;

use lifeboat_engine::source::{ItemSink, ItemSource, SourceError, SourceKind};
use zeroize::Zeroizing;

pub use url::{is_source_url, SourceUrl, SourceUrlError};

/// An account both ways: pulled by a backup, pushed to by `restore --to`.
pub trait Account: ItemSource + ItemSink {}
impl<T: ItemSource + ItemSink> Account for T {}

/// The account `url` names, signing in with `password`; `ca_file` adds a
/// certificate authority to the system's roots. Nothing connects yet.
///
/// # Errors
/// An account that cannot be set up (plain HTTP to a remote host, an
/// unreadable CA file).
pub fn open(
    url: &SourceUrl,
    password: Zeroizing<String>,
    ca_file: Option<&Path>,
) -> Result<Arc<dyn Account>, SourceError> {
    let (url, dav) = (url.clone(), url.kind == SourceKind::Dav);
    Ok(if dav {
        Arc::new(dav::DavSource::new(url, password, ca_file)?)
    } else {
        Arc::new(imap::ImapSource::new(url, password, ca_file))
    })
}
