//! Key files: one per password, each sealing the same master keys under a key
//! derived from the password with Argon2id.

use argon2::{Algorithm, Argon2, Params, Version};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::format::crypto::{open_with, seal_with, MasterKeys, OpenError, SecretKey};
use crate::format::ids::RepoId;

/// Key file version written by this build: 2 adds the sealed [`KeyInfo`].
pub const KEY_FILE_VERSION: u8 = 2;
/// The first key file version (no [`KeyInfo`]); still read.
const KEY_FILE_V1: u8 = 1;
/// The only KDF of both versions.
const KDF_ARGON2ID: u8 = 1;
/// AAD prefix of a key file's sealed [`KeyInfo`] (then the repository id and the salt).
pub const INFO_AAD: &[u8] = b"lifeboat.keyinfo.v1";
/// AAD prefix of a key file's sealed master keys (then the repository id).
pub const KEY_AAD: &[u8] = b"lifeboat.keyfile.v1";
/// The sealed [`KeyInfo`]'s plaintext is zero-padded to a multiple of this.
const INFO_PAD: usize = 128;

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
    /// 64 MiB, 3 passes, 4 lanes (RFC 9106's second recommended setting).
    /// The lanes are filled on parallel threads: the same memory-hard work
    /// as one lane, at a fraction of the wait on a multi-core machine.
    fn default() -> Self {
        KdfParams {
            memory_kib: 64 * 1024,
            iterations: 3,
            parallelism: 4,
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

    /// True when the costs are within what readers accept (§3.1 of FORMAT.md):
    /// a planted key file must not stall clients.
    pub fn within_limits(&self) -> bool {
        self.memory_kib <= 4 * 1024 * 1024 && self.iterations <= 64 && self.parallelism <= 64
    }
}

/// Who made a key file and when; sealed under the data key inside the key
/// file (version 2), so the storage provider learns none of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyInfo {
    /// Creation time, seconds since the Unix epoch (UTC).
    pub created: i64,
    /// Host name of the creating process.
    pub hostname: String,
    /// User name of the creating process (`""` if unknown).
    pub username: String,
}

impl KeyInfo {
    /// This process, now.
    pub fn current() -> Self {
        KeyInfo {
            created: time::OffsetDateTime::now_utc().unix_timestamp(),
            hostname: crate::hostname(),
            // SAFETY: getuid cannot fail and has no preconditions.
            username: crate::users::user_name(unsafe { libc::getuid() }),
        }
    }
}

/// A key file (stored postcard-encoded, named by the BLAKE3 hash of its bytes).
///
/// Version 1 has the first five fields; version 2 appends `sealed_info`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFile {
    /// Format version of this key file (1 or 2).
    pub version: u8,
    /// KDF identifier (1 = Argon2id v1.3).
    pub kdf: u8,
    /// KDF parameters.
    pub params: KdfParams,
    /// Random 32-byte salt.
    pub salt: [u8; 32],
    /// Sealed master keys (96 bytes of plaintext).
    pub sealed_keys: Vec<u8>,
    /// Sealed [`KeyInfo`] under the data key (version 2); empty in version 1.
    pub sealed_info: Vec<u8>,
}

/// Version 1 on the wire.
#[derive(Serialize, Deserialize)]
struct WireV1 {
    version: u8,
    kdf: u8,
    params: KdfParams,
    salt: [u8; 32],
    #[serde(with = "serde_bytes")]
    sealed_keys: Vec<u8>,
}

/// Version 2 on the wire: version 1's fields, then the sealed info.
#[derive(Serialize, Deserialize)]
struct WireV2 {
    version: u8,
    kdf: u8,
    params: KdfParams,
    salt: [u8; 32],
    #[serde(with = "serde_bytes")]
    sealed_keys: Vec<u8>,
    #[serde(with = "serde_bytes")]
    sealed_info: Vec<u8>,
}

fn key_aad(repo: &RepoId) -> Vec<u8> {
    let mut aad = KEY_AAD.to_vec();
    aad.extend_from_slice(&repo.0);
    aad
}

/// The info is bound to its repository and to its key file (by the salt), so
/// it cannot be moved to another key file.
fn info_aad(repo: &RepoId, salt: &[u8; 32]) -> Vec<u8> {
    let mut aad = INFO_AAD.to_vec();
    aad.extend_from_slice(&repo.0);
    aad.extend_from_slice(salt);
    aad
}

fn derive(password: &[u8], salt: &[u8; 32], params: KdfParams) -> Result<SecretKey> {
    let argon_params = Params::new(
        params.memory_kib,
        params.iterations,
        params.parallelism,
        Some(32),
    )
    .map_err(|e| Error::format("key file", format!("bad KDF parameters: {e}")))?;
    let mut out = Zeroizing::new([0u8; 32]);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, argon_params)
        .hash_password_into(password, salt, &mut *out)
        .map_err(|e| Error::format("key file", format!("KDF failed: {e}")))?;
    Ok(SecretKey(*out))
}

impl KeyFile {
    /// Seals `keys` under `password` for repository `repo`, recording
    /// [`KeyInfo::current`].
    ///
    /// # Errors
    /// Invalid KDF parameters.
    pub fn create(
        keys: &MasterKeys,
        password: &[u8],
        repo: &RepoId,
        params: KdfParams,
    ) -> Result<Self> {
        Self::create_with_info(keys, password, repo, params, &KeyInfo::current())
    }

    /// As [`KeyFile::create`], recording `info`.
    ///
    /// # Errors
    /// Invalid KDF parameters.
    pub fn create_with_info(
        keys: &MasterKeys,
        password: &[u8],
        repo: &RepoId,
        params: KdfParams,
        info: &KeyInfo,
    ) -> Result<Self> {
        if !params.within_limits() {
            return Err(Error::InvalidInput(
                "KDF parameters too large: at most 4 GiB of memory, 64 passes and 64 lanes".into(),
            ));
        }
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
        let mut plain_info = postcard::to_stdvec(info)
            .unwrap_or_else(|_| unreachable!("postcard encodes plain structs"));
        // Zero padding to a multiple of INFO_PAD hides the lengths of the names.
        plain_info.resize(plain_info.len().div_ceil(INFO_PAD) * INFO_PAD, 0);
        let mut sealed_info = Vec::new();
        keys.seal(&info_aad(repo, &salt), &plain_info, None, &mut sealed_info);
        Ok(KeyFile {
            version: KEY_FILE_VERSION,
            kdf: KDF_ARGON2ID,
            params,
            salt,
            sealed_keys,
            sealed_info,
        })
    }

    /// Recovers the master keys with `password`.
    ///
    /// # Errors
    /// [`Error::WrongPassword`] when the password does not open this key file.
    pub fn open(&self, password: &[u8], repo: &RepoId) -> Result<MasterKeys> {
        if !matches!(self.version, KEY_FILE_V1 | KEY_FILE_VERSION) || self.kdf != KDF_ARGON2ID {
            return Err(Error::UnsupportedVersion {
                object: "key file".into(),
                version: u32::from(self.version),
            });
        }
        // Refuse absurd costs an attacker could plant to stall clients.
        if !self.params.within_limits() {
            return Err(Error::format("key file", "KDF parameters out of range"));
        }
        let wrapping = derive(password, &self.salt, self.params)?;
        let plain = Zeroizing::new(
            open_with(&wrapping, &key_aad(repo), &self.sealed_keys).map_err(|e| match e {
                OpenError::Authentication => Error::WrongPassword,
                other => Error::format("key file", other),
            })?,
        );
        MasterKeys::from_bytes(&plain).ok_or_else(|| Error::format("key file", "wrong key length"))
    }

    /// Who made this key file and when: `None` for a version-1 key file, which
    /// does not record it.
    ///
    /// # Errors
    /// [`Error::Format`] when the sealed info does not open with `keys` (a key
    /// file of another repository, or tampered bytes) or does not decode.
    pub fn info(&self, keys: &MasterKeys, repo: &RepoId) -> Result<Option<KeyInfo>> {
        if self.version == KEY_FILE_V1 {
            return Ok(None);
        }
        super::open_body(keys, &info_aad(repo, &self.salt), &self.sealed_info)
            .map(Some)
            .map_err(|e| Error::format("key file info", e))
    }

    /// Encodes the key file for storage (in the layout of its version).
    pub fn to_bytes(&self) -> Vec<u8> {
        let encoded = if self.version == KEY_FILE_V1 {
            postcard::to_stdvec(&WireV1 {
                version: self.version,
                kdf: self.kdf,
                params: self.params,
                salt: self.salt,
                sealed_keys: self.sealed_keys.clone(),
            })
        } else {
            postcard::to_stdvec(&WireV2 {
                version: self.version,
                kdf: self.kdf,
                params: self.params,
                salt: self.salt,
                sealed_keys: self.sealed_keys.clone(),
                sealed_info: self.sealed_info.clone(),
            })
        };
        encoded.unwrap_or_else(|_| unreachable!("postcard encodes plain structs"))
    }

    /// Decodes a stored key file of version 1 or 2.
    ///
    /// # Errors
    /// [`Error::UnsupportedVersion`] for another version; [`Error::Format`] on
    /// malformed bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let malformed = |e: postcard::Error| Error::format("key file", e);
        // The version is the first byte of every version's layout.
        match bytes.first().copied() {
            Some(KEY_FILE_V1) => {
                let w: WireV1 = postcard::from_bytes(bytes).map_err(malformed)?;
                Ok(KeyFile {
                    version: w.version,
                    kdf: w.kdf,
                    params: w.params,
                    salt: w.salt,
                    sealed_keys: w.sealed_keys,
                    sealed_info: Vec::new(),
                })
            }
            Some(KEY_FILE_VERSION) => {
                let w: WireV2 = postcard::from_bytes(bytes).map_err(malformed)?;
                Ok(KeyFile {
                    version: w.version,
                    kdf: w.kdf,
                    params: w.params,
                    salt: w.salt,
                    sealed_keys: w.sealed_keys,
                    sealed_info: w.sealed_info,
                })
            }
            Some(other) => Err(Error::UnsupportedVersion {
                object: "key file".into(),
                version: u32::from(other),
            }),
            None => Err(Error::format("key file", "empty")),
        }
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

    #[test]
    fn version_2_records_sealed_info_bound_to_its_key_file() {
        let keys = MasterKeys::generate();
        let repo = RepoId([7; 32]);
        let info = KeyInfo {
            created: 1_700_000_000,
            hostname: "host-a".into(),
            username: "alice".into(),
        };
        let params = KdfParams::insecure_for_tests();
        let kf = KeyFile::create_with_info(&keys, b"pw", &repo, params, &info).unwrap();
        assert_eq!(kf.version, KEY_FILE_VERSION);
        let bytes = kf.to_bytes();
        // Nothing of the info is readable in the stored bytes.
        assert!(!bytes.windows(5).any(|w| w == b"alice"));
        assert!(!bytes.windows(6).any(|w| w == b"host-a"));
        let decoded = KeyFile::from_bytes(&bytes).unwrap();
        assert_eq!(decoded, kf);
        assert_eq!(decoded.info(&keys, &repo).unwrap(), Some(info.clone()));
        assert!(decoded.open(b"pw", &repo).is_ok());
        // Another repository's keys, another repository id, or the info moved
        // to another key file (another salt): refused.
        assert!(decoded.info(&MasterKeys::generate(), &repo).is_err());
        assert!(decoded.info(&keys, &RepoId([8; 32])).is_err());
        let other = KeyFile::create(&keys, b"pw2", &repo, params).unwrap();
        let moved = KeyFile {
            sealed_info: kf.sealed_info.clone(),
            ..other
        };
        assert!(moved.info(&keys, &repo).is_err());
        // Names of other lengths give a key file of the same size.
        let longer = KeyInfo {
            hostname: "a-much-longer-host-name.example.org".into(),
            ..info
        };
        let padded = KeyFile::create_with_info(&keys, b"pw", &repo, params, &longer).unwrap();
        assert_eq!(padded.to_bytes().len(), bytes.len());
        assert_eq!(padded.info(&keys, &repo).unwrap(), Some(longer));
    }

    #[test]
    fn version_1_key_files_still_open() {
        let keys = MasterKeys::generate();
        let repo = RepoId([9; 32]);
        let v2 = KeyFile::create(&keys, b"old", &repo, KdfParams::insecure_for_tests()).unwrap();
        let v1 = KeyFile {
            version: KEY_FILE_V1,
            sealed_info: Vec::new(),
            ..v2
        };
        let bytes = v1.to_bytes();
        // The version-1 layout: version, kdf, params (3 varints), salt, then
        // the sealed keys and nothing after them.
        assert_eq!(&bytes[..2], &[1, 1]);
        assert_eq!(bytes.len(), 2 + 3 + 32 + 2 + v1.sealed_keys.len());
        let decoded = KeyFile::from_bytes(&bytes).unwrap();
        assert_eq!(decoded, v1);
        assert_eq!(decoded.info(&keys, &repo).unwrap(), None);
        let opened = decoded.open(b"old", &repo).unwrap();
        assert_eq!(opened.blob_id(b"x"), keys.blob_id(b"x"));
    }

    #[test]
    fn unknown_versions_and_costs_are_refused() {
        let keys = MasterKeys::generate();
        let repo = RepoId([1; 32]);
        let kf = KeyFile::create(&keys, b"pw", &repo, KdfParams::insecure_for_tests()).unwrap();
        let mut bytes = kf.to_bytes();
        bytes[0] = 3;
        assert!(matches!(
            KeyFile::from_bytes(&bytes),
            Err(Error::UnsupportedVersion { version: 3, .. })
        ));
        assert!(KeyFile::from_bytes(&[]).is_err());
        let greedy = KdfParams {
            memory_kib: 4 * 1024 * 1024 + 1,
            ..KdfParams::insecure_for_tests()
        };
        assert!(KeyFile::create(&keys, b"pw", &repo, greedy).is_err());
        let planted = KeyFile {
            params: greedy,
            ..kf
        };
        assert!(matches!(
            planted.open(b"pw", &repo),
            Err(Error::Format { .. })
        ));
    }

    use crate::format::crypto::mutate;
    use proptest::prelude::*;

    /// True when opening `kf` is cheap enough for a property test (a mutated
    /// key file may ask for up to 4 GiB of Argon2 memory, which is allowed).
    fn cheap(kf: &KeyFile) -> bool {
        kf.params.memory_kib <= 1024 && kf.params.iterations <= 4 && kf.params.parallelism <= 4
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn arbitrary_key_file_bytes_never_panic(bytes in mutate::bytes(300)) {
            if let Ok(kf) = KeyFile::from_bytes(&bytes) {
                if cheap(&kf) {
                    prop_assert!(kf.open(b"pw", &RepoId([0; 32])).is_err());
                }
                let _ = kf.info(&MasterKeys::generate(), &RepoId([0; 32]));
            }
        }

        #[test]
        fn mutated_key_files_never_open(v1 in any::<bool>(), m in mutate::mutations()) {
            let keys = MasterKeys::generate();
            let repo = RepoId([3; 32]);
            let mut kf = KeyFile::create(&keys, b"pw", &repo, KdfParams::insecure_for_tests()).unwrap();
            if v1 {
                kf = KeyFile { version: KEY_FILE_V1, sealed_info: Vec::new(), ..kf };
            }
            let bytes = kf.to_bytes();
            let bad = mutate::apply(&bytes, &m);
            prop_assume!(bad != bytes);
            let Ok(decoded) = KeyFile::from_bytes(&bad) else {
                return Ok(());
            };
            // Postcard ignores trailing bytes (FORMAT.md §4.1): a key file
            // with bytes appended decodes to the same value. Its stored name
            // (the hash of its bytes) is what catches that.
            prop_assume!(decoded != kf);
            if decoded.params != kf.params {
                // Other KDF parameters derive another wrapping key (or are
                // refused); not worth running Argon2 at arbitrary cost here.
                if cheap(&decoded) {
                    prop_assert!(decoded.open(b"pw", &repo).is_err());
                }
                return Ok(());
            }
            // Same parameters: another salt or sealed box must fail.
            let opened = decoded.open(b"pw", &repo);
            let info = decoded.info(&keys, &repo);
            let intact_keys = decoded.salt == kf.salt && decoded.sealed_keys == kf.sealed_keys;
            if intact_keys && decoded.version == kf.version && decoded.kdf == kf.kdf {
                // Only the sealed info changed: it must not open.
                prop_assert!(info.is_err());
            } else {
                prop_assert!(opened.is_err());
            }
        }
    }
}
