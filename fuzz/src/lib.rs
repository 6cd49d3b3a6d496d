//! Helpers shared by the fuzz targets: master keys whose data key is known, so
//! a target can seal arbitrary payloads (any encoding byte, any zstd frame) and
//! reach the decoders behind the AEAD.
//!
//! The keys are obtained only through the public API and FORMAT.md: a
//! version-1 key file is built by hand (Argon2id with the cheap test
//! parameters, XChaCha20-Poly1305 of 96 known bytes) and opened with
//! `KeyFile::open`.

use std::sync::LazyLock;

use argon2::{Algorithm, Argon2, Params, Version};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::XChaCha20Poly1305;
use lifeboat_engine::format::crypto::MasterKeys;
use lifeboat_engine::format::keys::{KdfParams, KeyFile};
use lifeboat_engine::RepoId;

/// The fixed repository id of the fuzz keys.
pub const REPO: RepoId = RepoId([0x42; 32]);
/// The fixed data key (the first 32 of the 96 key bytes).
pub const DATA_KEY: [u8; 32] = [7; 32];
/// The password of the hand-made key file.
pub const PASSWORD: &[u8] = b"fuzz";
const SALT: [u8; 32] = [9; 32];

fn wrapping_key(params: KdfParams) -> [u8; 32] {
    let p = Params::new(
        params.memory_kib,
        params.iterations,
        params.parallelism,
        Some(32),
    )
    .expect("test parameters are valid");
    let mut out = [0u8; 32];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, p)
        .hash_password_into(PASSWORD, &SALT, &mut out)
        .expect("argon2 runs");
    out
}

/// XChaCha20-Poly1305 of `payload` (encoding byte included) under `key`, with
/// a fixed nonce: the sealed-box layout of FORMAT.md §3.2.
pub fn seal_payload_with(key: &[u8; 32], aad: &[u8], payload: &[u8]) -> Vec<u8> {
    let nonce = [3u8; 24];
    let cipher = XChaCha20Poly1305::new(key.into());
    let mut out = nonce.to_vec();
    out.extend(
        cipher
            .encrypt((&nonce).into(), Payload { msg: payload, aad })
            .expect("encrypts"),
    );
    out
}

/// A version-1 key file for [`KEYS`], password [`PASSWORD`].
pub static KEY_FILE: LazyLock<KeyFile> = LazyLock::new(|| {
    let params = KdfParams::insecure_for_tests();
    let mut master = Vec::with_capacity(96);
    master.extend_from_slice(&DATA_KEY);
    master.extend_from_slice(&[8; 32]);
    master.extend_from_slice(&[10; 32]);
    let mut payload = vec![0u8];
    payload.extend_from_slice(&master);
    let mut aad = b"lifeboat.keyfile.v1".to_vec();
    aad.extend_from_slice(&REPO.0);
    KeyFile {
        version: 1,
        kdf: 1,
        params,
        salt: SALT,
        sealed_keys: seal_payload_with(&wrapping_key(params), &aad, &payload),
        sealed_info: Vec::new(),
    }
});

/// Master keys whose data key is [`DATA_KEY`].
pub static KEYS: LazyLock<MasterKeys> = LazyLock::new(|| {
    KEY_FILE
        .open(PASSWORD, &REPO)
        .expect("the hand-made key file opens")
});

/// Seals `payload` (encoding byte first) under [`KEYS`]' data key.
pub fn seal_payload(aad: &[u8], payload: &[u8]) -> Vec<u8> {
    seal_payload_with(&DATA_KEY, aad, payload)
}

/// Seals `plain` as its writer would (encoding chosen by `MasterKeys::seal`).
pub fn seal(aad: &[u8], plain: &[u8], level: Option<i32>) -> Vec<u8> {
    let mut out = Vec::new();
    KEYS.seal(aad, plain, level, &mut out);
    out
}

/// Feeds `data` to `open` raw, sealed as an encoding-0 payload, as a zstd
/// payload, and as compressed by the writer: four ways into one decoder.
pub fn sealed_variants(aad: &[u8], data: &[u8], mut open: impl FnMut(&[u8])) {
    open(data);
    let mut raw = vec![0u8];
    raw.extend_from_slice(data);
    open(&seal_payload(aad, &raw));
    let mut zstd = vec![1u8];
    zstd.extend_from_slice(data);
    open(&seal_payload(aad, &zstd));
    open(&seal(aad, data, Some(3)));
}
