//! Optional fields: the extensible tail of a [`crate::format::tree::Node`]
//! and a [`crate::format::snapshot::Snapshot`] (FORMAT.md §4.10).
//!
//! Postcard is not self-describing, so a struct cannot grow a field without
//! a new version. Each of these two records therefore ends with a list of
//! `(tag, bytes)` pairs, in ascending tag order with no tag twice (one
//! encoding per value, so a tree's blob id stays canonical). A reader takes
//! the tags it knows and keeps the rest as they are; a later addition (a
//! contact's ETag, a message's flags, extended attributes) is a new tag, not
//! a new version.

use serde::{Deserialize, Serialize};

use super::FormatError;

/// One optional field: a tag from FORMAT.md §4.10's registry and its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Field {
    /// What the value is.
    pub tag: u32,
    /// The value, encoded as the tag's registry entry says.
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
}

/// A record's optional fields, in ascending tag order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Extra(Vec<Field>);

impl Extra {
    /// No optional fields.
    pub fn new() -> Self {
        Extra(Vec::new())
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The value of `tag`, when present.
    pub fn get(&self, tag: u32) -> Option<&[u8]> {
        self.0
            .binary_search_by_key(&tag, |f| f.tag)
            .ok()
            .map(|i| self.0[i].value.as_slice())
    }

    /// Sets `tag` to `value`, keeping the order (and replacing an old value).
    pub fn set(&mut self, tag: u32, value: Vec<u8>) {
        match self.0.binary_search_by_key(&tag, |f| f.tag) {
            Ok(i) => self.0[i].value = value,
            Err(i) => self.0.insert(i, Field { tag, value }),
        }
    }

    /// Removes `tag`; its old value, when it was present.
    pub fn remove(&mut self, tag: u32) -> Option<Vec<u8>> {
        self.0
            .binary_search_by_key(&tag, |f| f.tag)
            .ok()
            .map(|i| self.0.remove(i).value)
    }

    /// Every field, in tag order (known or not).
    pub fn fields(&self) -> &[Field] {
        &self.0
    }

    /// Refuses a list out of order or with a tag twice: such bytes would be a
    /// second encoding of the same value.
    ///
    /// # Errors
    /// [`FormatError::Invalid`] naming the problem.
    pub fn validate(&self) -> Result<(), FormatError> {
        if self.0.windows(2).all(|w| w[0].tag < w[1].tag) {
            Ok(())
        } else {
            Err(FormatError::Invalid(
                "optional fields out of order or repeated".into(),
            ))
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Arbitrary optional fields, in canonical order.
    pub(crate) fn extras() -> impl Strategy<Value = Extra> {
        prop::collection::vec(
            (any::<u32>(), prop::collection::vec(any::<u8>(), 0..12)),
            0..4,
        )
        .prop_map(|fields| {
            let mut extra = Extra::new();
            for (tag, value) in fields {
                extra.set(tag, value);
            }
            extra
        })
    }

    #[test]
    fn fields_stay_sorted_and_unique() {
        let mut extra = Extra::new();
        assert!(extra.is_empty());
        extra.set(9, b"nine".to_vec());
        extra.set(2, b"two".to_vec());
        extra.set(5, b"five".to_vec());
        extra.set(2, b"TWO".to_vec());
        let tags: Vec<u32> = extra.fields().iter().map(|f| f.tag).collect();
        assert_eq!(tags, vec![2, 5, 9]);
        assert_eq!(extra.get(2), Some(&b"TWO"[..]));
        assert!(extra.get(3).is_none());
        assert!(extra.validate().is_ok());
        assert_eq!(extra.remove(5), Some(b"five".to_vec()));
        assert_eq!(extra.remove(5), None);
        // On the wire: a count, then (tag varint, length varint, bytes) each.
        let bytes = postcard::to_stdvec(&extra).unwrap();
        assert_eq!(
            bytes,
            [2, 2, 3, b'T', b'W', b'O', 9, 4, b'n', b'i', b'n', b'e']
        );
        assert_eq!(postcard::from_bytes::<Extra>(&bytes).unwrap(), extra);
        // Out of order or repeated: decodes, but does not validate.
        let unsorted: Extra = postcard::from_bytes(&[2, 9, 0, 2, 0]).unwrap();
        assert!(unsorted.validate().is_err());
        let repeated: Extra = postcard::from_bytes(&[2, 4, 0, 4, 0]).unwrap();
        assert!(repeated.validate().is_err());
    }
}
