//! The `config` object: format version and repository id in the clear, then
//! the sealed repository parameters.
//!
//! Layout: `"LIFEBOAT"` (8 bytes) || format version (u32 LE) || repository id
//! (32 bytes) || sealed postcard [`RepoParams`] (AAD `"lifeboat.config.v2"` ||
//! the 44 bytes before it). The clear header is authenticated with the
//! parameters, and the sealed box runs to the end: nothing can be changed,
//! appended or downgraded unnoticed once the config is opened.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::format::crypto::MasterKeys;
use crate::format::ids::RepoId;

/// The on-storage format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 2;
/// The first format, written by development builds before the keyed chunker
/// and padded blobs; refused with [`Error::RetiredFormat`].
pub const RETIRED_FORMAT: u32 = 1;
const MAGIC: &[u8; 8] = b"LIFEBOAT";
const HEADER_LEN: usize = 8 + 4 + 32;

/// Parameters fixed when the repository is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoParams {
    /// FastCDC minimum chunk size in bytes.
    pub chunk_min: u32,
    /// FastCDC average (target) chunk size in bytes.
    pub chunk_avg: u32,
    /// FastCDC maximum chunk size in bytes.
    pub chunk_max: u32,
    /// Target pack size in bytes.
    pub pack_size: u32,
    /// Default zstd level for new data (0 = no compression).
    pub compression: i32,
}

impl Default for RepoParams {
    /// The defaults chosen by the chunking benchmark (see FORMAT.md).
    fn default() -> Self {
        RepoParams {
            chunk_min: 128 * 1024,
            chunk_avg: 512 * 1024,
            chunk_max: 2 * 1024 * 1024,
            pack_size: 16 * 1024 * 1024,
            compression: 3,
        }
    }
}

impl RepoParams {
    /// Checks the values against what FastCDC and the pack format accept.
    ///
    /// # Errors
    /// [`Error::Format`] naming the offending value.
    pub fn validate(&self) -> Result<()> {
        let bad = |reason: &str| Err(Error::format("config", reason));
        if !(64..=1 << 20).contains(&self.chunk_min) {
            return bad("chunk_min out of range");
        }
        if !(256..=4 << 20).contains(&self.chunk_avg) || self.chunk_avg < self.chunk_min {
            return bad("chunk_avg out of range");
        }
        if !(1024..=16 << 20).contains(&self.chunk_max) || self.chunk_max < self.chunk_avg {
            return bad("chunk_max out of range");
        }
        if !(1 << 20..=1 << 30).contains(&self.pack_size) {
            return bad("pack_size out of range");
        }
        if !(0..=22).contains(&self.compression) {
            return bad("compression level out of range");
        }
        Ok(())
    }
}

/// The public part of `config`, readable without a password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfigHeader {
    /// Format version.
    pub version: u32,
    /// Repository id.
    pub id: RepoId,
}

/// AAD prefix of the config's sealed parameters (then the clear header:
/// magic, version, repository id).
pub const CONFIG_AAD: &[u8] = b"lifeboat.config.v2";

fn aad(header: &[u8]) -> Vec<u8> {
    let mut aad = CONFIG_AAD.to_vec();
    aad.extend_from_slice(header);
    aad
}

/// Reads the public header of a `config` object.
///
/// # Errors
/// [`Error::Format`] when it is not a Lifeboat config, [`Error::RetiredFormat`]
/// for format 1, [`Error::UnsupportedVersion`] for a newer format.
pub fn read_header(bytes: &[u8]) -> Result<ConfigHeader> {
    if bytes.len() < HEADER_LEN || &bytes[..8] != MAGIC {
        return Err(Error::format("config", "not a lifeboat repository config"));
    }
    let version = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    if version == RETIRED_FORMAT {
        return Err(Error::RetiredFormat { version });
    }
    if version != FORMAT_VERSION {
        return Err(Error::UnsupportedVersion {
            object: "config".into(),
            version,
        });
    }
    let mut id = [0u8; 32];
    id.copy_from_slice(&bytes[12..HEADER_LEN]);
    Ok(ConfigHeader {
        version,
        id: RepoId(id),
    })
}

/// Encodes a `config` object.
pub fn encode(id: &RepoId, params: &RepoParams, keys: &MasterKeys) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&id.0);
    let aad = aad(&out);
    super::seal_body(keys, &aad, params, &mut out);
    out
}

/// Decodes the sealed parameters of a `config` object.
///
/// # Errors
/// [`Error::Format`] on tampering or malformed bytes.
pub fn decode(bytes: &[u8], keys: &MasterKeys) -> Result<(ConfigHeader, RepoParams)> {
    let header = read_header(bytes)?;
    let params: RepoParams =
        super::open_body(keys, &aad(&bytes[..HEADER_LEN]), &bytes[HEADER_LEN..])
            .map_err(|e| Error::format("config", e))?;
    params.validate()?;
    Ok((header, params))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_round_trip() {
        let keys = MasterKeys::generate();
        let id = RepoId([3; 32]);
        let bytes = encode(&id, &RepoParams::default(), &keys);
        let (header, params) = decode(&bytes, &keys).unwrap();
        assert_eq!(header.id, id);
        assert_eq!(params, RepoParams::default());
        let mut newer = bytes.clone();
        newer[8] = 3;
        assert!(matches!(
            read_header(&newer),
            Err(Error::UnsupportedVersion { version: 3, .. })
        ));
        let mut retired = bytes.clone();
        retired[8] = 1;
        assert!(matches!(
            read_header(&retired),
            Err(Error::RetiredFormat { version: 1 })
        ));
        // Every byte is authenticated, the clear header included, and
        // nothing may follow the sealed box.
        for at in 0..bytes.len() {
            let mut tampered = bytes.clone();
            tampered[at] ^= 1;
            assert!(decode(&tampered, &keys).is_err(), "byte {at}");
        }
        let mut longer = bytes;
        longer.push(0);
        assert!(decode(&longer, &keys).is_err());
    }

    use crate::format::crypto::mutate;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn arbitrary_config_bytes_never_panic(bytes in mutate::bytes(200)) {
            let keys = MasterKeys::generate();
            let _ = read_header(&bytes);
            prop_assert!(decode(&bytes, &keys).is_err());
            let mut with_magic = b"LIFEBOAT\x02\x00\x00\x00".to_vec();
            with_magic.extend_from_slice(&bytes);
            let _ = read_header(&with_magic);
            prop_assert!(decode(&with_magic, &keys).is_err());
        }

        #[test]
        fn arbitrary_config_plaintext_never_panics(plain in mutate::bytes(60)) {
            let keys = MasterKeys::generate();
            let id = RepoId([4; 32]);
            let mut bytes = b"LIFEBOAT\x02\x00\x00\x00".to_vec();
            bytes.extend_from_slice(&id.0);
            let aad = aad(&bytes);
            keys.seal(&aad, &plain, None, &mut bytes);
            if let Ok((_, params)) = decode(&bytes, &keys) {
                prop_assert!(params.validate().is_ok());
            }
        }

        #[test]
        fn mutated_configs_are_rejected(m in mutate::mutations()) {
            let keys = MasterKeys::generate();
            let bytes = encode(&RepoId([2; 32]), &RepoParams::default(), &keys);
            let bad = mutate::apply(&bytes, &m);
            prop_assume!(bad != bytes);
            let _ = read_header(&bad);
            prop_assert!(decode(&bad, &keys).is_err());
        }
    }
}
