//! Key files: one per password, each sealing the same master keys under a key
//! derived from the password with Argon2id.

use argon2::{Algorithm, Argon2, Params, Version};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::crypto::{open_with, seal_with, MasterKeys, OpenError, SecretKey};
use crate::error::{Error, Result};
use crate::ids::RepoId;

/// Key file format version.
const KEY_FILE_VERSION: u8 = 1;
/// The only KDF of version 1.
const KDF_ARGON2ID: u8 = 1;

/// Argon2id cost parameters, stored in each key file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Passes over memory.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl Default for KdfParams {
    /// 64 MiB, 3 passes, 1 lane: about a quarter of a second on a laptop core.
    fn default() -> Self {
        KdfParams {
            memory_kib: 64 * 1024,
            iterations: 3,
            parallelism: 1,
        }
    }
}

impl KdfParams {
    /// Cheap parameters for tests only (`LIFEBOAT_INSECURE_TEST_KDF`).
    pub fn insecure_for_tests() -> Self {
        KdfParams {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        }
    }
}

/// The stored key file (postcard-encoded, then named by its BLAKE3 hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyFile {
    /// Format version of this key file (1).
    pub version: u8,
    /// KDF identifier (1 = Argon2id v1.3).
    pub kdf: u8,
    /// KDF parameters.
    pub params: KdfParams,
    /// Random 32-byte salt.
    pub salt: [u8; 32],
    /// Sealed master keys (96 bytes of plaintext).
    #[serde(with = "serde_bytes")]
    pub sealed_keys: Vec<u8>,
}

fn key_aad(repo: &RepoId) -> Vec<u8> {
    let mut aad = b"lifeboat.keyfile.v1".to_vec();
    aad.extend_from_slice(&repo.0);
    aad
}

fn derive(password: &[u8], salt: &[u8; 32], params: KdfParams) -> Result<SecretKey> {
    let argon_params = Params::new(
        params.memory_kib,
        params.iterations,
        params.parallelism,
        Some(32),
    )
    .map_err(|e| Error::Format {
        object: "key file".into(),
        reason: format!("bad KDF parameters: {e}"),
    })?;
    let mut out = Zeroizing::new([0u8; 32]);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, argon_params)
        .hash_password_into(password, salt, &mut *out)
        .map_err(|e| Error::Format {
            object: "key file".into(),
            reason: format!("KDF failed: {e}"),
        })?;
    Ok(SecretKey(*out))
}

impl KeyFile {
    /// Seals `keys` under `password` for repository `repo`.
    ///
    /// # Errors
    /// Invalid KDF parameters.
    pub fn create(
        keys: &MasterKeys,
        password: &[u8],
        repo: &RepoId,
        params: KdfParams,
    ) -> Result<Self> {
        let mut salt = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut salt);
        let wrapping = derive(password, &salt, params)?;
        let mut sealed_keys = Vec::new();
        seal_with(
            &wrapping,
            &key_aad(repo),
            &keys.to_bytes(),
            None,
            &mut sealed_keys,
        );
        Ok(KeyFile {
            version: KEY_FILE_VERSION,
            kdf: KDF_ARGON2ID,
            params,
            salt,
            sealed_keys,
        })
    }

    /// Recovers the master keys with `password`.
    ///
    /// # Errors
    /// [`Error::WrongPassword`] when the password does not open this key file.
    pub fn open(&self, password: &[u8], repo: &RepoId) -> Result<MasterKeys> {
        if self.version != KEY_FILE_VERSION || self.kdf != KDF_ARGON2ID {
            return Err(Error::UnsupportedVersion {
                object: "key file".into(),
                version: u32::from(self.version),
            });
        }
        // Refuse absurd costs an attacker could plant to stall clients.
        if self.params.memory_kib > 4 * 1024 * 1024
            || self.params.iterations > 64
            || self.params.parallelism > 64
        {
            return Err(Error::Format {
                object: "key file".into(),
                reason: "KDF parameters out of range".into(),
            });
        }
        let wrapping = derive(password, &self.salt, self.params)?;
        let plain = Zeroizing::new(
            open_with(&wrapping, &key_aad(repo), &self.sealed_keys).map_err(|e| match e {
                OpenError::Authentication => Error::WrongPassword,
                other => Error::Format {
                    object: "key file".into(),
                    reason: other.to_string(),
                },
            })?,
        );
        MasterKeys::from_bytes(&plain).ok_or_else(|| Error::Format {
            object: "key file".into(),
            reason: "wrong key length".into(),
        })
    }

    /// Encodes the key file for storage.
    pub fn to_bytes(&self) -> Vec<u8> {
        postcard::to_stdvec(self).unwrap_or_else(|_| unreachable!("postcard encodes plain structs"))
    }

    /// Decodes a stored key file.
    ///
    /// # Errors
    /// [`Error::Format`] on malformed bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let kf: KeyFile = postcard::from_bytes(bytes).map_err(|e| Error::Format {
            object: "key file".into(),
            reason: e.to_string(),
        })?;
        if kf.version != KEY_FILE_VERSION {
            return Err(Error::UnsupportedVersion {
                object: "key file".into(),
                version: u32::from(kf.version),
            });
        }
        Ok(kf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn right_and_wrong_password() {
        let keys = MasterKeys::generate();
        let repo = RepoId([5; 32]);
        let kf = KeyFile::create(
            &keys,
            b"correct horse",
            &repo,
            KdfParams::insecure_for_tests(),
        )
        .unwrap();
        let decoded = KeyFile::from_bytes(&kf.to_bytes()).unwrap();
        assert_eq!(decoded, kf);
        let opened = decoded.open(b"correct horse", &repo).unwrap();
        assert_eq!(opened.blob_id(b"a"), keys.blob_id(b"a"));
        assert!(matches!(
            decoded.open(b"wrong", &repo),
            Err(Error::WrongPassword)
        ));
        assert!(matches!(
            decoded.open(b"correct horse", &RepoId([6; 32])),
            Err(Error::WrongPassword)
        ));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_key_file_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            if let Ok(kf) = KeyFile::from_bytes(&bytes) {
                let _ = kf.open(b"pw", &RepoId([0; 32]));
            }
        }
    }
}
