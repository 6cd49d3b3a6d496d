//! Typed backend errors.
//!
//! Policy: every backend sorts its own failures into four classes so that callers
//! decide by value, not by parsing messages: [`ErrorKind::NotFound`],
//! [`ErrorKind::AlreadyExists`], [`ErrorKind::Transient`] (worth retrying) and
//! [`ErrorKind::Permanent`]. Each error names the destination and the object key;
//! the underlying cause is kept as a `source`, never flattened into a string.

use std::fmt;

/// The class of a backend failure; callers match on this.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The object (or the destination root) does not exist.
    NotFound,
    /// A create-only put found an object already stored under the key.
    AlreadyExists,
    /// A failure that may go away on retry: timeouts, dropped connections, 5xx.
    Transient,
    /// A failure that retrying will not fix: permissions, a full disk, bad input.
    Permanent,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorKind::NotFound => "not found",
            ErrorKind::AlreadyExists => "already exists",
            ErrorKind::Transient => "transient failure",
            ErrorKind::Permanent => "permanent failure",
        })
    }
}

/// An error from a storage destination, naming the destination and the key.
#[derive(Debug, thiserror::Error)]
#[error("destination {destination}: {}{kind}{}", key_label(.key), detail_suffix(.detail))]
pub struct BackendError {
    /// What class of failure this is.
    pub kind: ErrorKind,
    /// The destination's name (as the user configured it or derived from its URL).
    pub destination: String,
    /// The object key concerned, or `""` for the destination as a whole.
    pub key: String,
    /// A short human explanation (never secrets).
    pub detail: String,
    /// The underlying cause.
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

/// The object as messages name it: `config` alone would read like the
/// user's config file, so it is "the repository's config object".
fn key_label(key: &str) -> String {
    match key {
        "" => String::new(),
        "config" => "the repository's config object: ".to_string(),
        key => format!("{key}: "),
    }
}

fn detail_suffix(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        format!(" ({detail})")
    }
}

impl BackendError {
    /// Builds an error of `kind` for `key` on `destination`.
    pub fn new(
        kind: ErrorKind,
        destination: impl Into<String>,
        key: impl Into<String>,
        detail: impl Into<String>,
    ) -> Self {
        BackendError {
            kind,
            destination: destination.into(),
            key: key.into(),
            detail: detail.into(),
            source: None,
        }
    }

    /// Attaches the underlying cause.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// Classifies an I/O error from a filesystem-like destination.
    pub fn from_io(destination: &str, key: &str, err: std::io::Error) -> Self {
        use std::io::ErrorKind as Io;
        let kind = match err.kind() {
            Io::NotFound => ErrorKind::NotFound,
            Io::AlreadyExists => ErrorKind::AlreadyExists,
            Io::Interrupted
            | Io::TimedOut
            | Io::WouldBlock
            | Io::ConnectionReset
            | Io::ConnectionAborted
            | Io::BrokenPipe => ErrorKind::Transient,
            _ => ErrorKind::Permanent,
        };
        let detail = match err.kind() {
            // ENOSPC: say it plainly, it is the one users must act on.
            Io::StorageFull => "no space left on device".to_string(),
            _ => err.to_string(),
        };
        BackendError::new(kind, destination, key, detail).with_source(err)
    }

    /// The `Permanent` error of a bounded read ([`crate::Backend::get_bounded`])
    /// of an object larger than `limit` bytes: `size` when the store reported
    /// it, `None` when the object only turned out larger while it was read.
    pub fn too_large(
        destination: impl Into<String>,
        key: impl Into<String>,
        size: Option<u64>,
        limit: u64,
    ) -> Self {
        let held = match size {
            Some(size) => format!("{size} bytes"),
            None => format!("more than {limit} bytes"),
        };
        BackendError::new(
            ErrorKind::Permanent,
            destination,
            key,
            format!(
                "{held}: larger than any object of its kind can be (at most {limit} bytes); not read"
            ),
        )
        .with_source(TooLarge { size, limit })
    }

    /// What a bounded read refused, when this is its error (see
    /// [`BackendError::too_large`]).
    pub fn too_large_info(&self) -> Option<&TooLarge> {
        self.source.as_ref()?.downcast_ref::<TooLarge>()
    }

    /// True when a bounded read refused an object larger than its limit.
    pub fn is_too_large(&self) -> bool {
        self.too_large_info().is_some()
    }

    /// True for `NotFound`.
    pub fn is_not_found(&self) -> bool {
        self.kind == ErrorKind::NotFound
    }

    /// True when a retry may succeed.
    pub fn is_transient(&self) -> bool {
        self.kind == ErrorKind::Transient
    }

    /// True when the server refused the connection: nothing listens there.
    /// Worth one retry (a server restarting), not a full backoff.
    pub fn is_connection_refused(&self) -> bool {
        let mut cause: Option<&(dyn std::error::Error + 'static)> = match &self.source {
            Some(s) => Some(s.as_ref()),
            None => None,
        };
        while let Some(e) = cause {
            if let Some(io) = e.downcast_ref::<std::io::Error>() {
                if io.kind() == std::io::ErrorKind::ConnectionRefused {
                    return true;
                }
            }
            if e.to_string().contains("Connection refused") {
                return true;
            }
            cause = e.source();
        }
        self.detail.contains("Connection refused")
    }
}

/// The cause kept in a [`BackendError::too_large`] error: a bounded read
/// met an object larger than its limit and read none of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("object larger than the {limit}-byte limit of its read")]
pub struct TooLarge {
    /// The object's size as the store reported it, when it did.
    pub size: Option<u64>,
    /// The most bytes the read would accept.
    pub limit: u64,
}

/// Result alias for backend calls.
pub type Result<T, E = BackendError> = std::result::Result<T, E>;

/// Why a destination URL could not be used.
///
/// It lives here rather than in the URL parser so that backends can report
/// bad options without depending on the parser (which depends on them).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UrlError {
    /// The text is not a destination URL this version understands.
    #[error("invalid destination {url:?}: {reason}")]
    Invalid {
        /// The text as given (credentials removed).
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The destination kind is recognised but not implemented in this version.
    #[error("destination {url:?}: {scheme} destinations are not yet supported by this version of lifeboat; use a local path for now")]
    Unsupported {
        /// The text as given (credentials removed).
        url: String,
        /// The URL scheme.
        scheme: String,
    },
}

impl UrlError {
    /// An [`UrlError::Invalid`] about `url`, shown without its password or
    /// query string (either may hold a secret).
    pub(crate) fn invalid(url: &url::Url, reason: impl Into<String>) -> Self {
        let mut shown = url.clone();
        shown.set_query(None);
        // Fails only for URLs that cannot have a password, which have none to hide.
        let _ = shown.set_password(None);
        UrlError::Invalid {
            url: shown.to_string(),
            reason: reason.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_is_named_plainly() {
        let full = std::io::Error::from_raw_os_error(libc::ENOSPC);
        let err = BackendError::from_io("usb", "data/ab", full);
        assert_eq!(err.kind, ErrorKind::Permanent);
        assert_eq!(err.detail, "no space left on device");
        let denied = std::io::Error::from_raw_os_error(libc::EACCES);
        let err = BackendError::from_io("usb", "data/ab", denied);
        assert_ne!(err.detail, "no space left on device");
    }
}
