//! The engine's error type.
//!
//! Policy: an error names what went wrong and the object, destination or path
//! concerned, so the CLI can print one line that tells the user what to do.
//! Backend failures keep their typed [`BackendError`] as the source. Secrets
//! (passwords, keys) never appear in any variant.

use std::path::PathBuf;

use lifeboat_backends::{BackendError, UrlError};

use crate::format::FormatError;

/// Everything the engine can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No repository exists at a destination.
    #[error("no lifeboat repository at {destination} ({location}); `lifeboat init` creates one, `lifeboat sync --seed {destination}` copies an existing one there from another destination")]
    NoRepository {
        /// Destination name.
        destination: String,
        /// Its path or URL.
        location: String,
    },
    /// `init` found a repository already there.
    #[error("a repository already exists at {destination} ({location}); it was left untouched")]
    RepositoryExists {
        /// Destination name.
        destination: String,
        /// Its path or URL.
        location: String,
    },
    /// `init` named new destinations beside ones that already hold a
    /// repository: copying it there is `sync --seed`'s work.
    #[error("{existing} already holds a repository, so nothing was created; to copy it to the new destination, run `lifeboat sync --seed {empty}` with the same -d options")]
    SeedInstead {
        /// A destination that holds a repository.
        existing: String,
        /// The empty destinations, joined with ` --seed `.
        empty: String,
    },
    /// The password opens none of the key files.
    #[error("wrong password: it does not open any key of this repository")]
    WrongPassword,
    /// The password opens a key file that `key remove` removed (a copy left
    /// on a destination that has not been swept yet).
    #[error("this password's key {key} was removed from the repository (key remove); use a current password")]
    KeyRemoved {
        /// The removed key's short id.
        key: String,
    },
    /// Another process holds a conflicting lock.
    #[error("repository is locked by {holder} (lock {lock}); wait for it to finish, or remove the lock if that process is gone")]
    Locked {
        /// Who holds it: host, pid, time.
        holder: String,
        /// The lock object's name.
        lock: String,
    },
    /// The run's lock was removed or went stale while it ran: what it was
    /// about to commit is no longer protected from a concurrent prune.
    #[error("lock lost: {reason}; nothing was committed, run the command again")]
    LockLost {
        /// Why.
        reason: String,
    },
    /// A storage call failed.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// A destination URL is invalid or unsupported.
    #[error(transparent)]
    Url(#[from] UrlError),
    /// Stored bytes fail verification or decoding.
    #[error("{object}: {reason}")]
    Format {
        /// The object (`pack <id>`, `index <id>`, `config`, …).
        object: String,
        /// What is wrong.
        #[source]
        reason: FormatError,
    },
    /// Stored bytes use a format version this build does not know.
    #[error("{object} uses format version {version}, which this lifeboat does not support; upgrade lifeboat")]
    UnsupportedVersion {
        /// The object.
        object: String,
        /// Its version.
        version: u32,
    },
    /// The repository is in a format early development builds wrote, which
    /// this build no longer reads.
    #[error("this repository is in format {version}, written by an early development build of lifeboat, and this lifeboat reads format 2 only: format 2 chunks files with a keyed table and pads every blob, so the old data cannot be converted in place; create a new repository with `lifeboat init` and back up again")]
    RetiredFormat {
        /// Its format version.
        version: u32,
    },
    /// A blob is referenced but in no index.
    #[error("blob {blob} is not in any index (repository damaged; run `lifeboat check`)")]
    MissingBlob {
        /// The blob id.
        blob: String,
    },
    /// The repository lacks what its snapshots reference, so a destructive
    /// operation stopped before changing anything.
    #[error("{what}: the repository is damaged; nothing was changed; run `lifeboat check`")]
    Damaged {
        /// What is missing, with examples.
        what: String,
    },
    /// A snapshot name matches nothing.
    #[error("no snapshot matches {0:?}; list them with `lifeboat snapshots`")]
    SnapshotNotFound(String),
    /// A snapshot prefix matches several.
    #[error("snapshot prefix {0:?} is ambiguous; give more hex digits")]
    AmbiguousSnapshot(String),
    /// A path in a snapshot does not exist.
    #[error("path {0:?} not found in the snapshot")]
    PathNotFound(String),
    /// A local file operation failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Writing a command's output (standard output, a dump's target)
    /// failed: a closed pipe, a full disk.
    #[error("cannot write the output: {0}")]
    Output(#[source] std::io::Error),
    /// The user's input is not acceptable.
    #[error("{0}")]
    InvalidInput(String),
    /// No destination is left to serve a request: every one failed (earlier
    /// in the run or on this request) or was left out. A request that failed
    /// on each destination in turn returns the last destination's error
    /// instead, which names it.
    #[error("{operation} failed: no destination is left ({why}); `lifeboat status` shows each destination's state")]
    AllDestinationsFailed {
        /// What was attempted (`upload`, `read of the repository config`, …).
        operation: String,
        /// Each destination's failure, or why none was tried.
        why: String,
    },
    /// A bug: an internal invariant broke or a worker task panicked. Never
    /// the user's fault; the message says what broke.
    #[error("internal error: {what}; please report this")]
    Internal {
        /// What broke.
        what: String,
        /// The underlying failure, when there is one (a panicked task).
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// The run was interrupted (Ctrl-C).
    #[error("interrupted")]
    Interrupted,

    /// A source refused the credentials (`lifeboat backup dav://…`): the
    /// backup stops before anything is committed.
    #[error("source {source_name}: {reason}")]
    SourceAuth {
        /// The source, as shown (`dav://host/`).
        source_name: String,
        /// What the server said, one line.
        reason: String,
    },
}

impl Error {
    /// An [`Error::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// An [`Error::Format`] for `object`.
    pub fn format(object: impl Into<String>, reason: impl Into<FormatError>) -> Self {
        Error::stored(object.into(), reason.into())
    }

    /// The error for stored bytes of `object` that `reason` refused: an
    /// unsupported version becomes [`Error::UnsupportedVersion`] (the user's
    /// remedy is an upgrade), anything else [`Error::Format`].
    pub fn stored(object: String, reason: FormatError) -> Self {
        match reason {
            FormatError::UnsupportedVersion(version) => Error::UnsupportedVersion {
                object,
                version: u32::from(version),
            },
            reason => Error::Format { object, reason },
        }
    }

    /// An [`Error::AllDestinationsFailed`] for `operation`.
    pub fn no_destination(operation: impl Into<String>, why: impl Into<String>) -> Self {
        Error::AllDestinationsFailed {
            operation: operation.into(),
            why: why.into(),
        }
    }

    /// An [`Error::Internal`]: an invariant that broke, with no cause.
    pub fn internal(what: impl Into<String>) -> Self {
        Error::Internal {
            what: what.into(),
            source: None,
        }
    }

    /// An [`Error::Internal`] for a worker task or thread that panicked or
    /// was cancelled.
    pub fn task_failed(
        what: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Error::Internal {
            what: what.into(),
            source: Some(source.into()),
        }
    }
}

/// Result alias for the engine.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The message a panicked thread left (its `&str` or `String` payload), for
/// the [`Error::Internal`] that reports it.
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".to_string())
}
