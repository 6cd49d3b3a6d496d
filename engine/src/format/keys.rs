//! Key files: one per password, each sealing the same master keys under a key
//! derived from the password with Argon2id.
//!
//! Version 3 (repository format 2) is authenticated as a whole: the public
//! header (version, KDF, its costs, salt) is the AAD of the sealed keys, and
//! the sealed info's AAD covers the header and the sealed keys, its box runs
//! to the end of the file. Nothing can be changed, appended or downgraded
//! without the file failing to open. Each key file carries a random serial,
//! sealed with the keys and in the info, by which `key remove` revokes it
//! whatever name it is stored under.

use argon2::{Algorithm, Argon2, Params, Version};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::format::crypto::{
    open_with, seal_with, MasterKeys, OpenError, Padding, SecretKey, SEAL_OVERHEAD,
};
use crate::format::ids::RepoId;

/// Key file version written and read by this build.
pub const KEY_FILE_VERSION: u8 = 3;
/// The only KDF: Argon2id v1.3.
const KDF_ARGON2ID: u8 = 1;
/// AAD prefix of a key file's sealed master keys (then the repository id and
/// the public header).
pub const KEY_AAD: &[u8] = b"lifeboat.keyfile.v3";
/// AAD prefix of a key file's sealed [`KeyInfo`] (then the repository id, the
/// public header and the sealed keys).
pub const INFO_AAD: &[u8] = b"lifeboat.keyinfo.v3";
/// The sealed [`KeyInfo`]'s plaintext is zero-padded to a multiple of this.
const INFO_PAD: usize = 128;
/// Bytes of the public header: version, KDF, three u32 costs, salt.
pub const HEADER_LEN: usize = 1 + 1 + 3 * 4 + 32;
/// Bytes of the sealed keys' plaintext: the 96 bytes of master keys, then the
/// 16-byte serial.
const KEYS_PLAIN_LEN: usize = 96 + SERIAL_LEN;
/// Bytes of the sealed keys (stored raw, never compressed).
pub const SEALED_KEYS_LEN: usize = KEYS_PLAIN_LEN + SEAL_OVERHEAD;
/// The longest sealed info a reader accepts (names of a few hundred bytes).
const MAX_SEALED_INFO: usize = 8 * INFO_PAD + SEAL_OVERHEAD;
/// Bytes of a key serial.
const SERIAL_LEN: usize = 16;

/// Most Argon2 memory a key file may ask for, in KiB (2 GiB): what a person
/// would choose, so that a key file planted by a provider costs a client at
/// most this much.
pub const MAX_KDF_MEMORY_KIB: u32 = 2 * 1024 * 1024;
/// Most Argon2 passes a key file may ask for.
pub const MAX_KDF_ITERATIONS: u32 = 16;
/// Most Argon2 lanes a key file may ask for.
pub const MAX_KDF_PARALLELISM: u32 = 16;

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
        self.memory_kib <= MAX_KDF_MEMORY_KIB
            && self.iterations <= MAX_KDF_ITERATIONS
            && self.parallelism <= MAX_KDF_PARALLELISM
    }

    /// The work of one derivation, for trying cheap key files first:
    /// memory times passes.
    pub fn cost(&self) -> u64 {
        u64::from(self.memory_kib) * u64::from(self.iterations)
    }
}

/// A key file's random serial: its identity whatever name it is stored
/// under, and what `key remove` revokes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct KeySerial(pub [u8; SERIAL_LEN]);

impl KeySerial {
    /// A fresh random serial.
    pub fn random() -> Self {
        let mut serial = [0u8; SERIAL_LEN];
        rand::rngs::OsRng.fill_bytes(&mut serial);
        KeySerial(serial)
    }
}

impl std::fmt::Display for KeySerial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// Who made a key file and when, and its serial; sealed under the data key
/// inside the key file, so the storage provider learns none of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyInfo {
    /// The key file's serial (also sealed with its keys).
    pub serial: KeySerial,
    /// Creation time, seconds since the Unix epoch (UTC).
    pub created: i64,
    /// Host name of the creating process.
    pub hostname: String,
    /// User name of the creating process (`""` if unknown).
    pub username: String,
}

impl KeyInfo {
    /// A new serial, this process, now.
    pub fn current() -> Self {
        KeyInfo {
            serial: KeySerial::random(),
            created: time::OffsetDateTime::now_utc().unix_timestamp(),
            hostname: crate::hostname(),
            // SAFETY: getuid cannot fail and has no preconditions.
            username: crate::users::user_name(unsafe { libc::getuid() }),
        }
    }
}

/// What a password opens: the master keys and the serial of the key file
/// that held them.
#[derive(Debug)]
pub struct OpenedKey {
    /// The repository's master keys.
    pub keys: MasterKeys,
    /// The serial of the key file opened.
    pub serial: KeySerial,
}

/// A key file (named by the BLAKE3 hash of its bytes; layout in FORMAT.md
/// §4.2): a public header, the sealed keys, the sealed info.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFile {
    /// KDF parameters.
    pub params: KdfParams,
    /// Random 32-byte salt.
    pub salt: [u8; 32],
    /// Sealed master keys and serial ([`SEALED_KEYS_LEN`] bytes).
    pub sealed_keys: Vec<u8>,
    /// Sealed [`KeyInfo`] under the data key.
    pub sealed_info: Vec<u8>,
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

/// The public header of a key file with these costs and salt.
fn header(params: &KdfParams, salt: &[u8; 32]) -> [u8; HEADER_LEN] {
    let mut out = [0u8; HEADER_LEN];
    out[0] = KEY_FILE_VERSION;
    out[1] = KDF_ARGON2ID;
    out[2..6].copy_from_slice(&params.memory_kib.to_le_bytes());
    out[6..10].copy_from_slice(&params.iterations.to_le_bytes());
    out[10..14].copy_from_slice(&params.parallelism.to_le_bytes());
    out[14..].copy_from_slice(salt);
    out
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

impl KeyFile {
    /// Seals `keys` under `password` for repository `repo`, recording
    /// [`KeyInfo::current`] (a new serial).
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

    /// As [`KeyFile::create`], recording `info` (and its serial).
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
            return Err(Error::InvalidInput(format!(
                "KDF parameters too large: at most {} GiB of memory, {MAX_KDF_ITERATIONS} passes \
                 and {MAX_KDF_PARALLELISM} lanes",
                MAX_KDF_MEMORY_KIB / (1024 * 1024)
            )));
        }
        let mut salt = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut salt);
        let wrapping = derive(password, &salt, params)?;
        let header = header(&params, &salt);
        let mut plain_keys = Zeroizing::new(keys.to_bytes());
        plain_keys.extend_from_slice(&info.serial.0);
        let mut sealed_keys = Vec::with_capacity(SEALED_KEYS_LEN);
        seal_with(
            &wrapping,
            &keys_aad(repo, &header),
            &plain_keys,
            None,
            Padding::None,
            &mut sealed_keys,
        );
        let mut plain_info = postcard::to_stdvec(info)
            .unwrap_or_else(|_| unreachable!("postcard encodes plain structs"));
        // Zero padding to a multiple of INFO_PAD hides the lengths of the names.
        plain_info.resize(plain_info.len().div_ceil(INFO_PAD) * INFO_PAD, 0);
        let mut sealed_info = Vec::new();
        keys.seal(
            &info_aad(repo, &header, &sealed_keys),
            &plain_info,
            None,
            &mut sealed_info,
        );
        Ok(KeyFile {
            params,
            salt,
            sealed_keys,
            sealed_info,
        })
    }

    /// Recovers the master keys and the key file's serial with `password`,
    /// after checking that the whole file is intact (its sealed info opens
    /// with the recovered keys and names the same serial).
    ///
    /// # Errors
    /// [`Error::WrongPassword`] when the password does not open this key
    /// file; [`Error::Format`] when it opens but the file was altered, or
    /// its costs are out of range.
    pub fn open(&self, password: &[u8], repo: &RepoId) -> Result<OpenedKey> {
        // Refuse absurd costs an attacker could plant to stall clients.
        if !self.params.within_limits() {
            return Err(Error::format("key file", "KDF parameters out of range"));
        }
        let header = header(&self.params, &self.salt);
        let wrapping = derive(password, &self.salt, self.params)?;
        let plain = Zeroizing::new(
            open_with(&wrapping, &keys_aad(repo, &header), &self.sealed_keys).map_err(
                |e| match e {
                    OpenError::Authentication => Error::WrongPassword,
                    other => Error::format("key file", other),
                },
            )?,
        );
        if plain.len() != KEYS_PLAIN_LEN {
            return Err(Error::format("key file", "wrong key length"));
        }
        let keys = MasterKeys::from_bytes(&plain[..96])
            .ok_or_else(|| Error::format("key file", "wrong key length"))?;
        let mut serial = [0u8; SERIAL_LEN];
        serial.copy_from_slice(&plain[96..]);
        let serial = KeySerial(serial);
        let info = self.info(&keys, repo)?;
        if info.serial != serial {
            return Err(Error::format(
                "key file",
                "its info names another key file's serial (tampered)",
            ));
        }
        Ok(OpenedKey { keys, serial })
    }

    /// Who made this key file and when, and its serial; readable with the
    /// master keys alone (`key list`, `key remove`), no password needed.
    ///
    /// # Errors
    /// [`Error::Format`] when the sealed info does not open with `keys` (a key
    /// file of another repository, or tampered bytes) or does not decode.
    pub fn info(&self, keys: &MasterKeys, repo: &RepoId) -> Result<KeyInfo> {
        let header = header(&self.params, &self.salt);
        super::open_body(
            keys,
            &info_aad(repo, &header, &self.sealed_keys),
            &self.sealed_info,
        )
        .map_err(|e| Error::format("key file info", e))
    }

    /// Encodes the key file for storage.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out =
            Vec::with_capacity(HEADER_LEN + self.sealed_keys.len() + self.sealed_info.len());
        out.extend_from_slice(&header(&self.params, &self.salt));
        out.extend_from_slice(&self.sealed_keys);
        out.extend_from_slice(&self.sealed_info);
        out
    }

    /// Decodes a stored key file.
    ///
    /// # Errors
    /// [`Error::UnsupportedVersion`] for another version (1 and 2 belong to
    /// repository format 1); [`Error::Format`] on malformed bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let malformed = |why: &str| Err(Error::format("key file", why.to_string()));
        match bytes.first().copied() {
            Some(KEY_FILE_VERSION) => {}
            Some(other) => {
                return Err(Error::UnsupportedVersion {
                    object: "key file".into(),
                    version: u32::from(other),
                })
            }
            None => return malformed("empty"),
        }
        let info_len = bytes.len().saturating_sub(HEADER_LEN + SEALED_KEYS_LEN);
        if !(INFO_PAD + SEAL_OVERHEAD..=MAX_SEALED_INFO).contains(&info_len) {
            return malformed("wrong length");
        }
        if bytes[1] != KDF_ARGON2ID {
            return malformed("unknown KDF");
        }
        let mut salt = [0u8; 32];
        salt.copy_from_slice(&bytes[14..HEADER_LEN]);
        Ok(KeyFile {
            params: KdfParams {
                memory_kib: u32_at(bytes, 2),
                iterations: u32_at(bytes, 6),
                parallelism: u32_at(bytes, 10),
            },
            salt,
            sealed_keys: bytes[HEADER_LEN..HEADER_LEN + SEALED_KEYS_LEN].to_vec(),
            sealed_info: bytes[HEADER_LEN + SEALED_KEYS_LEN..].to_vec(),
        })
    }
}

/// The sealed keys are bound to the repository and to every public byte
/// of their key file.
fn keys_aad(repo: &RepoId, header: &[u8; HEADER_LEN]) -> Vec<u8> {
    let mut aad = KEY_AAD.to_vec();
    aad.extend_from_slice(&repo.0);
    aad.extend_from_slice(header);
    aad
}

/// The info is bound to its repository and to the rest of its key file, so
/// it cannot be moved to another one, and nothing can follow it.
fn info_aad(repo: &RepoId, header: &[u8; HEADER_LEN], sealed_keys: &[u8]) -> Vec<u8> {
    let mut aad = INFO_AAD.to_vec();
    aad.extend_from_slice(&repo.0);
    aad.extend_from_slice(header);
    aad.extend_from_slice(sealed_keys);
    aad
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap() -> KdfParams {
        KdfParams::insecure_for_tests()
    }

    #[test]
    fn right_and_wrong_password() {
        let keys = MasterKeys::generate();
        let repo = RepoId([5; 32]);
        let kf = KeyFile::create(&keys, b"correct horse", &repo, cheap()).unwrap();
        let decoded = KeyFile::from_bytes(&kf.to_bytes()).unwrap();
        assert_eq!(decoded, kf);
        let opened = decoded.open(b"correct horse", &repo).unwrap();
        assert_eq!(opened.keys.blob_id(b"a"), keys.blob_id(b"a"));
        assert_eq!(opened.serial, kf.info(&keys, &repo).unwrap().serial);
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
    fn sealed_info_is_private_padded_and_bound_to_its_key_file() {
        let keys = MasterKeys::generate();
        let repo = RepoId([7; 32]);
        let info = KeyInfo {
            serial: KeySerial([1; 16]),
            created: 1_700_000_000,
            hostname: "host-a".into(),
            username: "alice".into(),
        };
        let kf = KeyFile::create_with_info(&keys, b"pw", &repo, cheap(), &info).unwrap();
        let bytes = kf.to_bytes();
        // Nothing of the info is readable in the stored bytes.
        assert!(!bytes.windows(5).any(|w| w == b"alice"));
        assert!(!bytes.windows(6).any(|w| w == b"host-a"));
        assert!(!bytes.windows(16).any(|w| w == [1; 16]));
        let decoded = KeyFile::from_bytes(&bytes).unwrap();
        assert_eq!(decoded.info(&keys, &repo).unwrap(), info);
        assert_eq!(decoded.open(b"pw", &repo).unwrap().serial, info.serial);
        // Another repository's keys, another repository id, or the info moved
        // to another key file: refused, and the password no longer opens it.
        assert!(decoded.info(&MasterKeys::generate(), &repo).is_err());
        assert!(decoded.info(&keys, &RepoId([8; 32])).is_err());
        let other = KeyFile::create(&keys, b"pw", &repo, cheap()).unwrap();
        let moved = KeyFile {
            sealed_info: kf.sealed_info.clone(),
            ..other
        };
        assert!(moved.info(&keys, &repo).is_err());
        assert!(matches!(
            moved.open(b"pw", &repo),
            Err(Error::Format { .. })
        ));
        // Names of other lengths give a key file of the same size.
        let longer = KeyInfo {
            hostname: "a-much-longer-host-name.example.org".into(),
            ..info
        };
        let padded = KeyFile::create_with_info(&keys, b"pw", &repo, cheap(), &longer).unwrap();
        assert_eq!(padded.to_bytes().len(), bytes.len());
        assert_eq!(padded.info(&keys, &repo).unwrap(), longer);
    }

    #[test]
    fn appended_bytes_and_changed_header_never_open() {
        let keys = MasterKeys::generate();
        let repo = RepoId([2; 32]);
        let kf = KeyFile::create(&keys, b"pw", &repo, cheap()).unwrap();
        let bytes = kf.to_bytes();
        // One byte appended: the sealed info runs to the end, so its tag fails.
        let mut longer = bytes.clone();
        longer.push(0);
        match KeyFile::from_bytes(&longer) {
            Ok(decoded) => assert!(decoded.open(b"pw", &repo).is_err()),
            Err(e) => assert!(matches!(e, Error::Format { .. })),
        }
        // Any header byte changed (costs, salt): the password fails, or the
        // costs are refused before any work.
        for at in 1..HEADER_LEN {
            let mut bad = bytes.clone();
            bad[at] ^= 1;
            if let Ok(decoded) = KeyFile::from_bytes(&bad) {
                if decoded.params.cost() <= 4 * cheap().cost() && decoded.params.parallelism <= 2 {
                    assert!(decoded.open(b"pw", &repo).is_err(), "byte {at}");
                }
            }
        }
    }

    #[test]
    fn other_versions_and_costs_are_refused() {
        let keys = MasterKeys::generate();
        let repo = RepoId([1; 32]);
        let kf = KeyFile::create(&keys, b"pw", &repo, cheap()).unwrap();
        for version in [1u8, 2, 4] {
            let mut bytes = kf.to_bytes();
            bytes[0] = version;
            assert!(matches!(
                KeyFile::from_bytes(&bytes),
                Err(Error::UnsupportedVersion { version: v, .. }) if v == u32::from(version)
            ));
        }
        assert!(KeyFile::from_bytes(&[]).is_err());
        for greedy in [
            KdfParams {
                memory_kib: MAX_KDF_MEMORY_KIB + 1,
                ..cheap()
            },
            KdfParams {
                iterations: MAX_KDF_ITERATIONS + 1,
                ..cheap()
            },
            KdfParams {
                parallelism: MAX_KDF_PARALLELISM + 1,
                ..cheap()
            },
        ] {
            assert!(KeyFile::create(&keys, b"pw", &repo, greedy).is_err());
            let planted = KeyFile {
                params: greedy,
                ..kf.clone()
            };
            assert!(matches!(
                planted.open(b"pw", &repo),
                Err(Error::Format { .. })
            ));
        }
    }

    use crate::format::crypto::mutate;
    use proptest::prelude::*;

    /// True when opening `kf` is cheap enough for a property test (a mutated
    /// key file may ask for up to 2 GiB of Argon2 memory, which is allowed).
    fn affordable(kf: &KeyFile) -> bool {
        kf.params.memory_kib <= 1024 && kf.params.iterations <= 4 && kf.params.parallelism <= 4
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn arbitrary_key_file_bytes_never_panic(bytes in mutate::bytes(400)) {
            if let Ok(kf) = KeyFile::from_bytes(&bytes) {
                if affordable(&kf) {
                    prop_assert!(kf.open(b"pw", &RepoId([0; 32])).is_err());
                }
                let _ = kf.info(&MasterKeys::generate(), &RepoId([0; 32]));
            }
        }

        #[test]
        fn mutated_key_files_never_open(m in mutate::mutations()) {
            let keys = MasterKeys::generate();
            let repo = RepoId([3; 32]);
            let kf = KeyFile::create(&keys, b"pw", &repo, cheap()).unwrap();
            let bytes = kf.to_bytes();
            let bad = mutate::apply(&bytes, &m);
            prop_assume!(bad != bytes);
            let Ok(decoded) = KeyFile::from_bytes(&bad) else {
                return Ok(());
            };
            // Every byte is authenticated: any change fails to open (or
            // asks for costs not worth running Argon2 at here).
            if affordable(&decoded) {
                prop_assert!(decoded.open(b"pw", &repo).is_err());
            }
        }
    }
}
