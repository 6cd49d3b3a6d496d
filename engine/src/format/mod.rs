//! Stored formats: how every object a destination holds is encoded, sealed,
//! opened and decoded. `engine/FORMAT.md` is the specification; this module
//! tree is its implementation.
//!
//! Nothing here does I/O or knows destinations, locks or commands: a format
//! turns values into bytes and bytes into verified values. The protocols
//! that list, write and refresh objects live in [`crate::repo`].
//!
//! Most stored records are a postcard struct whose first field is its format
//! version, sealed under the data key with an AAD naming the kind
//! ([`SealedFile`]). The version byte is read before the rest is decoded, so
//! a later format adds a version by adding an arm to [`RepoFile::decode`],
//! and an older build reports "unsupported version" instead of garbage. The
//! AAD names the kind, not the version, and stays the same across versions:
//! the version is inside the seal, so it can only be read once opened.

pub mod config;
pub mod crypto;
pub mod deletion;
pub mod extra;
pub mod ids;
pub mod index;
pub mod keys;
pub mod lock;
pub mod pack;
pub mod snapshot;
pub mod tags;
pub mod tree;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Error, Result};
use crypto::{MasterKeys, OpenError};

/// Why stored bytes were refused. Carried as the source of
/// [`Error::Format`], so the cause is kept, not flattened to a string.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// The seal does not open: tampered or damaged bytes, another
    /// repository's object, or an object of another kind.
    #[error(transparent)]
    Seal(#[from] OpenError),
    /// The plaintext does not decode as the format says.
    #[error("undecodable: {0}")]
    Decode(#[from] postcard::Error),
    /// A version this build does not read.
    #[error("format version {0} is not supported")]
    UnsupportedVersion(u8),
    /// Decoded, but breaks a rule of the format (unsorted names, a length
    /// that does not add up, …).
    #[error("{0}")]
    Invalid(String),
}

impl From<String> for FormatError {
    fn from(reason: String) -> Self {
        FormatError::Invalid(reason)
    }
}

impl From<&str> for FormatError {
    fn from(reason: &str) -> Self {
        FormatError::Invalid(reason.to_string())
    }
}

/// A versioned record: a postcard struct whose first field is its format
/// version (one byte, so it is the plaintext's first byte).
pub trait RepoFile: Serialize + DeserializeOwned {
    /// What the record is called in errors: `snapshot`, `index`, `tree`, ….
    const KIND: &'static str;
    /// The version this build writes.
    const VERSION: u8;

    /// The version this value records.
    fn version(&self) -> u8;

    /// Rules the encoding alone does not enforce (canonical order of
    /// optional fields, …), checked on every decode.
    ///
    /// # Errors
    /// [`FormatError::Invalid`] naming the broken rule.
    fn validate(&self) -> std::result::Result<(), FormatError> {
        Ok(())
    }

    /// The record's plaintext.
    fn encode(&self) -> Vec<u8> {
        postcard::to_stdvec(self).unwrap_or_else(|_| unreachable!("postcard encodes plain structs"))
    }

    /// Decodes a plaintext of any version this build reads. A new format
    /// version overrides this with one arm per version it reads.
    ///
    /// # Errors
    /// [`FormatError::UnsupportedVersion`] for another version,
    /// [`FormatError::Decode`] for bytes that do not decode.
    fn decode(plain: &[u8]) -> std::result::Result<Self, FormatError> {
        match plain.first() {
            Some(&version) if version == Self::VERSION => {
                let value: Self = postcard::from_bytes(plain)?;
                value.validate()?;
                Ok(value)
            }
            Some(&version) => Err(FormatError::UnsupportedVersion(version)),
            None => Err(FormatError::Invalid("empty".into())),
        }
    }

    /// Decodes `plain`, naming the object `{KIND} {name}` in any error.
    ///
    /// # Errors
    /// [`Error::UnsupportedVersion`] or [`Error::Format`].
    fn decode_named(name: impl std::fmt::Display, plain: &[u8]) -> Result<Self> {
        Self::decode(plain).map_err(|e| Error::stored(format!("{} {name}", Self::KIND), e))
    }
}

/// A record stored as its own sealed object (or sealed section of one):
/// `seal(AAD, encode(record))` under the data key.
pub trait SealedFile: RepoFile {
    /// The AAD that binds the seal to this kind of record.
    const AAD: &'static [u8];
    /// The zstd level it is sealed with; `None` stores it raw.
    const COMPRESSION: Option<i32>;

    /// Encodes and seals the record, appending to `out`.
    fn seal_into(&self, keys: &MasterKeys, out: &mut Vec<u8>) {
        keys.seal(Self::AAD, &self.encode(), Self::COMPRESSION, out);
    }

    /// Encodes and seals the record.
    fn seal(&self, keys: &MasterKeys) -> Vec<u8> {
        let mut out = Vec::new();
        self.seal_into(keys, &mut out);
        out
    }

    /// Opens and decodes a stored record without naming it.
    ///
    /// # Errors
    /// The [`FormatError`] that refused it.
    fn open_unnamed(keys: &MasterKeys, sealed: &[u8]) -> std::result::Result<Self, FormatError> {
        Self::decode(&keys.open(Self::AAD, sealed)?)
    }

    /// Opens and decodes the stored record `name` (its object name, for
    /// errors).
    ///
    /// # Errors
    /// [`Error::Format`] naming `{KIND} {name}` on tampering or malformed
    /// bytes, [`Error::UnsupportedVersion`] for a version this build does not
    /// read.
    fn open(keys: &MasterKeys, name: impl std::fmt::Display, sealed: &[u8]) -> Result<Self> {
        Self::open_unnamed(keys, sealed)
            .map_err(|e| Error::stored(format!("{} {name}", Self::KIND), e))
    }
}

/// Seals an unversioned body (one whose version its container records:
/// the config's parameters, a key file's info) under `aad`.
pub(crate) fn seal_body<T: Serialize>(keys: &MasterKeys, aad: &[u8], body: &T, out: &mut Vec<u8>) {
    let plain = postcard::to_stdvec(body)
        .unwrap_or_else(|_| unreachable!("postcard encodes plain structs"));
    keys.seal(aad, &plain, None, out);
}

/// Opens and decodes an unversioned body sealed by [`seal_body`].
pub(crate) fn open_body<T: DeserializeOwned>(
    keys: &MasterKeys,
    aad: &[u8],
    sealed: &[u8],
) -> std::result::Result<T, FormatError> {
    Ok(postcard::from_bytes(&keys.open(aad, sealed)?)?)
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;
    use crate::format::deletion::{DeletionRecord, RECORD_AAD, RECORD_VERSION};

    #[test]
    fn open_reports_each_failure_with_its_cause() {
        let keys = MasterKeys::generate();
        let record = DeletionRecord::new("prune", vec!["index/ab".into()]);
        let sealed = record.seal(&keys);
        assert_eq!(DeletionRecord::open(&keys, "r", &sealed).unwrap(), record);

        // Another repository's keys: the seal does not open.
        let err = DeletionRecord::open(&MasterKeys::generate(), "r", &sealed).unwrap_err();
        assert!(matches!(
            &err,
            Error::Format { object, reason: FormatError::Seal(OpenError::Authentication) }
                if object == "deletion record r"
        ));
        assert!(err.source().is_some(), "the cause is kept: {err}");

        // A version this build does not read: named as such, not as garbage.
        let mut future = record.encode();
        future[0] = RECORD_VERSION + 1;
        let mut sealed = Vec::new();
        keys.seal(RECORD_AAD, &future, None, &mut sealed);
        let err = DeletionRecord::open(&keys, "r", &sealed).unwrap_err();
        assert!(
            matches!(err, Error::UnsupportedVersion { version: 3, .. }),
            "{err}"
        );

        // The right version byte, then bytes that do not decode.
        let mut sealed = Vec::new();
        keys.seal(RECORD_AAD, &[RECORD_VERSION, 0xff, 0xff], None, &mut sealed);
        let err = DeletionRecord::open(&keys, "r", &sealed).unwrap_err();
        assert!(
            matches!(
                &err,
                Error::Format {
                    reason: FormatError::Decode(_),
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.source().and_then(|s| s.source()).is_some(), "{err:?}");
    }
}
