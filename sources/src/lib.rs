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

/// The account `url` names, to upload items to (`restore --to`).
///
/// # Errors
/// As [`open`].
pub fn open_sink(
    url: &SourceUrl,
    password: Zeroizing<String>,
    ca_file: Option<&Path>,
) -> Result<Arc<dyn ItemSink>, SourceError> {
    match url.kind {
        SourceKind::Dav => Ok(Arc::new(dav::DavSource::new(
            url.clone(),
            password,
            ca_file,
        )?)),
        SourceKind::Imap => Ok(Arc::new(imap::ImapSource::new(
            url.clone(),
            password,
            ca_file,
        ))),
    }
}

/// The source `url` names, signing in with `password`; `ca_file` adds a
/// certificate authority to the system's roots.
///
/// # Errors
/// A source that cannot be set up (plain HTTP to a remote host, an
/// unreadable CA file, a kind not supported yet).
pub fn open(
    url: &SourceUrl,
    password: Zeroizing<String>,
    ca_file: Option<&Path>,
) -> Result<Arc<dyn ItemSource>, SourceError> {
    match url.kind {
        SourceKind::Dav => Ok(Arc::new(dav::DavSource::new(
            url.clone(),
            password,
            ca_file,
        )?)),
        SourceKind::Imap => Ok(Arc::new(imap::ImapSource::new(
            url.clone(),
            password,
            ca_file,
        ))),
    }
}
