//! Identifier newtypes: 32-byte hashes shown as 64 hex digits.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
        pub struct $name(pub [u8; 32]);

        impl $name {
            /// The id as 64 lowercase hex digits.
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }

            /// The first 8 hex digits, as shown in tables.
            pub fn short(&self) -> String {
                hex::encode(&self.0[..4])
            }

            /// The raw bytes.
            pub fn as_bytes(&self) -> &[u8; 32] {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.short())
            }
        }

        impl FromStr for $name {
            type Err = hex::FromHexError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let mut out = [0u8; 32];
                hex::decode_to_slice(s, &mut out)?;
                Ok($name(out))
            }
        }
    };
}

id_type!(
    /// A blob's id: keyed BLAKE3 of its plaintext (never leaves sealed objects).
    BlobId
);
id_type!(
    /// A pack file's name: BLAKE3 of its stored bytes.
    PackId
);
id_type!(
    /// A snapshot object's name: BLAKE3 of its stored bytes.
    SnapshotId
);
id_type!(
    /// An index file's name: BLAKE3 of its stored bytes.
    IndexId
);
id_type!(
    /// A key file's name: BLAKE3 of its stored bytes.
    KeyId
);
id_type!(
    /// The repository's random id, stored in plaintext in `config`.
    RepoId
);

/// BLAKE3 (unkeyed) of stored bytes: the name of every content-named object.
pub fn storage_hash(bytes: &[u8]) -> [u8; 32] {
    *blake3::hash(bytes).as_bytes()
}

/// Kinds of stored object and their key prefixes (`config` is the one
/// object outside them: [`CONFIG_KEY`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    /// `data/<xx>/<id>`.
    Pack,
    /// `index/<id>`.
    Index,
    /// `snapshots/<id>`.
    Snapshot,
    /// `keys/<id>`.
    Key,
    /// `locks/<id>`.
    Lock,
    /// `deletions/<id>`: records of objects removed by forget and prune.
    Deletion,
}

impl ObjectKind {
    /// Every kind, in the order FORMAT.md lists them.
    pub const ALL: [ObjectKind; 6] = [
        ObjectKind::Key,
        ObjectKind::Pack,
        ObjectKind::Index,
        ObjectKind::Snapshot,
        ObjectKind::Lock,
        ObjectKind::Deletion,
    ];

    /// The listing prefix of this kind.
    pub fn prefix(self) -> &'static str {
        match self {
            ObjectKind::Pack => "data/",
            ObjectKind::Index => "index/",
            ObjectKind::Snapshot => "snapshots/",
            ObjectKind::Key => "keys/",
            ObjectKind::Lock => "locks/",
            ObjectKind::Deletion => "deletions/",
        }
    }

    /// The storage key of the object named `hex`.
    pub fn key(self, hex: &str) -> String {
        match self {
            ObjectKind::Pack => format!("data/{}/{hex}", hex.get(..2).unwrap_or(hex)),
            other => format!("{}{hex}", other.prefix()),
        }
    }

    /// Extracts the object name from a storage key of this kind.
    pub fn name_of(self, key: &str) -> Option<&str> {
        let rest = key.strip_prefix(self.prefix())?;
        let name = match self {
            ObjectKind::Pack => rest.split_once('/')?.1,
            _ => rest,
        };
        let lower_hex = |s: &str| {
            s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        // Checked before any slicing: a listed name is untrusted and may
        // hold multi-byte characters anywhere.
        if name.len() != 64 || !lower_hex(name) {
            return None;
        }
        // A pack must sit in the directory named by its first two hex digits.
        let placed = self != ObjectKind::Pack
            || (rest.get(..2) == name.get(..2) && rest.as_bytes().get(2) == Some(&b'/'));
        placed.then_some(name)
    }
}

/// Storage key of the repository config object.
pub const CONFIG_KEY: &str = "config";

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever a store lists, naming it never panics, and only a
        /// well-formed key yields a name.
        #[test]
        fn any_listed_key_is_named_or_refused(key in "\\PC{0,80}") {
            for kind in ObjectKind::ALL {
                if let Some(name) = kind.name_of(&key) {
                    prop_assert_eq!(kind.key(name), key.clone());
                }
                let _ = kind.key(&key);
            }
        }
    }

    #[test]
    fn names_with_multibyte_characters_are_refused() {
        for key in [
            "data/ab/€",
            "data/€/x",
            "index/€",
            "data/a€/abc",
            "snapshots/\u{fffd}",
        ] {
            for kind in ObjectKind::ALL {
                assert_eq!(kind.name_of(key), None, "{key}");
            }
        }
        let name = "ab".repeat(32);
        assert_eq!(
            ObjectKind::Pack.name_of(&format!("data/ab/{name}")),
            Some(&name[..])
        );
        assert_eq!(ObjectKind::Pack.name_of(&format!("data/ac/{name}")), None);
        assert_eq!(ObjectKind::Pack.name_of(&format!("data/abx{name}")), None);
    }

    #[test]
    fn hex_round_trip_and_keys() {
        let id = PackId([0xab; 32]);
        assert_eq!(id.to_hex().parse::<PackId>().unwrap(), id);
        let key = ObjectKind::Pack.key(&id.to_hex());
        assert!(key.starts_with("data/ab/abab"));
        assert_eq!(ObjectKind::Pack.name_of(&key), Some(id.to_hex().as_str()));
        assert_eq!(ObjectKind::Index.name_of("index/xyz"), None);
        assert!("zz".parse::<BlobId>().is_err());
    }
}
