//! Master keys, sealing (compress + XChaCha20-Poly1305) and blob ids.
//!
//! A sealed object is `nonce (24) || ciphertext || tag (16)`. Its plaintext
//! starts with one encoding byte: 0 = stored as is, 1 = zstd frame, and for
//! blobs 2 and 3, the same padded (a 4-byte body length, the body, zeros up
//! to the Padmé length of the sealed box) so that sealed sizes do not give
//! away chunk lengths. Every seal draws a fresh random nonce, so nonces never
//! repeat in practice (192-bit).

use chacha20poly1305::aead::{Aead, AeadInPlace, KeyInit, OsRng, Payload};
use chacha20poly1305::XChaCha20Poly1305;
use rand::RngCore;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::format::ids::BlobId;

/// Nonce length of XChaCha20-Poly1305.
pub const NONCE_LEN: usize = 24;
/// Authentication tag length.
pub const TAG_LEN: usize = 16;
/// Bytes a seal adds to its payload: nonce, tag and the encoding byte.
pub const SEAL_OVERHEAD: usize = NONCE_LEN + TAG_LEN + 1;

const ENCODING_RAW: u8 = 0;
const ENCODING_ZSTD: u8 = 1;
/// Stored as is, then padded.
const ENCODING_PADDED_RAW: u8 = 2;
/// A zstd frame, then padded.
const ENCODING_PADDED_ZSTD: u8 = 3;
/// A padded payload's encoding byte and body length (u32 little-endian).
const PADDED_HEADER: usize = 5;

/// Whether a seal pads its box to the Padmé grid (blobs do, FORMAT.md §3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Padding {
    /// The box is exactly as long as its payload.
    None,
    /// Zeros after the body bring the sealed length to [`padme`] of itself.
    Padme,
}

/// The Padmé length of `len` (Nikitin et al., "Reducing metadata leakage
/// from encrypted files and communication with PURBs", 2019): `len` rounded
/// up so that only the top `floor(log2(floor(log2 len))) + 1` bits of its
/// binary length can be nonzero. At most ~12 % larger (for tiny lengths),
/// under 3 % from 64 KiB on, and a length of `n` bits leaks only
/// O(log log n) bits.
pub fn padme(len: u64) -> u64 {
    if len < 2 {
        return len;
    }
    let exponent = u64::from(63 - len.leading_zeros());
    let exponent_bits = u64::from(64 - exponent.leading_zeros());
    let low_bits = exponent - exponent_bits;
    let mask = (1u64 << low_bits) - 1;
    (len + mask) & !mask
}

/// Most plaintext bytes an object other than a blob may open to, per byte of
/// its sealed length (FORMAT.md §3.2): a sealed box of `n` bytes opens to at
/// most `n * MAX_EXPANSION` bytes, so a small object cannot inflate to
/// gigabytes. Writers store such objects raw when zstd would beat this ratio.
/// Blobs are bounded by their recorded `raw_length` instead
/// ([`MasterKeys::open_exact`]).
pub const MAX_EXPANSION: usize = 256;

/// An upper bound on the output of any valid zstd frame per input byte: every
/// block has a 3-byte header and yields at most 128 KiB, and the smallest
/// block that yields anything (an RLE block) is 4 bytes long.
const ZSTD_MAX_RATIO: usize = 128 * 1024 / 4;

/// The first bytes of every blob's AAD ([`blob_aad`]).
pub const BLOB_AAD_PREFIX: &[u8; 16] = b"lifeboat.blob.v1";

/// What the chunker key hashes, followed by one byte (the table index), to
/// give each entry of the gear table.
pub const GEAR_CONTEXT: &[u8] = b"lifeboat.gear.v2";

/// The chunker's secret gear table: 256 64-bit words, wiped when dropped
/// and never printed (chunk boundaries under it reveal nothing by themselves,
/// but the table would let anyone predict them).
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct GearTable(pub Box<[u64; 256]>);

impl std::fmt::Debug for GearTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GearTable(..)")
    }
}

/// A 32-byte secret that is wiped from memory when dropped and never printed.
#[derive(Clone, Zeroize, ZeroizeOnDrop, PartialEq, Eq)]
pub struct SecretKey(pub(crate) [u8; 32]);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

impl SecretKey {
    /// A fresh random key from the OS generator.
    pub fn random() -> Self {
        let mut k = [0u8; 32];
        OsRng.fill_bytes(&mut k);
        SecretKey(k)
    }
}

/// The repository's master keys, shared by every password's key file.
#[derive(Clone, Debug, Zeroize, ZeroizeOnDrop)]
pub struct MasterKeys {
    /// Seals every object (XChaCha20-Poly1305).
    pub(crate) data: SecretKey,
    /// Keys BLAKE3 to compute blob ids.
    pub(crate) blob_id: SecretKey,
    /// Seeds the chunker's gear table.
    pub(crate) chunker: SecretKey,
}

/// Why unsealing failed. Deliberately vague: it is either tampering or the wrong key.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OpenError {
    /// Shorter than a nonce, an encoding byte and a tag (41 bytes).
    #[error("sealed object too short")]
    TooShort,
    /// Tag mismatch: tampered bytes, a swapped object or the wrong key.
    #[error("does not open with this repository's keys (damaged, tampered with, or another repository's)")]
    Authentication,
    /// The payload's encoding byte or compressed stream is invalid.
    #[error("bad payload encoding")]
    Encoding,
    /// The payload decompresses to more than its bound (see [`MAX_EXPANSION`])
    /// or to another length than expected.
    #[error("decompressed size out of bounds")]
    Size,
}

/// The most plaintext bytes [`MasterKeys::open`] accepts from a sealed box of
/// `sealed_len` bytes: [`MAX_EXPANSION`] times its length.
pub fn max_plaintext_len(sealed_len: usize) -> usize {
    sealed_len.saturating_mul(MAX_EXPANSION)
}

impl MasterKeys {
    /// Three fresh random keys.
    pub fn generate() -> Self {
        MasterKeys {
            data: SecretKey::random(),
            blob_id: SecretKey::random(),
            chunker: SecretKey::random(),
        }
    }

    /// The keys as 96 bytes (data, blob id, chunker), for a key file.
    pub(crate) fn to_bytes(&self) -> zeroize::Zeroizing<Vec<u8>> {
        let mut v = zeroize::Zeroizing::new(Vec::with_capacity(96));
        v.extend_from_slice(&self.data.0);
        v.extend_from_slice(&self.blob_id.0);
        v.extend_from_slice(&self.chunker.0);
        v
    }

    /// Reverses [`MasterKeys::to_bytes`].
    pub(crate) fn from_bytes(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != 96 {
            return None;
        }
        let key = |i: usize| {
            let mut k = [0u8; 32];
            k.copy_from_slice(&bytes[i * 32..(i + 1) * 32]);
            SecretKey(k)
        };
        Some(MasterKeys {
            data: key(0),
            blob_id: key(1),
            chunker: key(2),
        })
    }

    /// The blob id of `plaintext`: keyed BLAKE3.
    pub fn blob_id(&self, plaintext: &[u8]) -> BlobId {
        BlobId(*blake3::keyed_hash(&self.blob_id.0, plaintext).as_bytes())
    }

    /// The chunker's gear table (FORMAT.md §3.4): every entry drawn from the
    /// chunker key with keyed BLAKE3 over its index, so the whole table is
    /// secret. Format 1 XORed one 64-bit seed into FastCDC's public table,
    /// which leaves the table's structure known and the seed recoverable from
    /// chunk lengths (the content-defined-chunking attacks of 2025).
    pub fn gear_table(&self) -> GearTable {
        let mut table = [0u64; 256];
        for (index, entry) in table.iter_mut().enumerate() {
            let mut input = [0u8; GEAR_CONTEXT.len() + 1];
            input[..GEAR_CONTEXT.len()].copy_from_slice(GEAR_CONTEXT);
            input[GEAR_CONTEXT.len()] = index as u8;
            let hash = blake3::keyed_hash(&self.chunker.0, &input);
            let mut word = [0u8; 8];
            word.copy_from_slice(&hash.as_bytes()[..8]);
            *entry = u64::from_le_bytes(word);
        }
        GearTable(Box::new(table))
    }

    /// Seals `plaintext` with the data key.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8], compression: Option<i32>, out: &mut Vec<u8>) {
        seal_with(&self.data, aad, plaintext, compression, Padding::None, out);
    }

    /// Seals a blob with the data key, padded so that its sealed length is a
    /// Padmé length ([`padme`]): a provider that sees the ranges a restore
    /// reads learns a rounded size, not the chunk's length.
    pub fn seal_blob(
        &self,
        aad: &[u8],
        plaintext: &[u8],
        compression: Option<i32>,
        out: &mut Vec<u8>,
    ) {
        seal_with(&self.data, aad, plaintext, compression, Padding::Padme, out);
    }

    /// Opens an object sealed with the data key. Its plaintext may be at most
    /// [`max_plaintext_len`]`(sealed.len())` bytes.
    ///
    /// # Errors
    /// See [`OpenError`].
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, OpenError> {
        open_with(&self.data, aad, sealed)
    }

    /// Opens a sealed blob whose plaintext must be exactly `len` bytes (its
    /// recorded `raw_length`): it is decompressed into a buffer of exactly that
    /// capacity, and anything longer or shorter is refused. A `len` that no
    /// payload of this size could reach is refused before allocating.
    ///
    /// # Errors
    /// See [`OpenError`]; [`OpenError::Size`] for a length mismatch.
    pub fn open_exact(&self, aad: &[u8], sealed: &[u8], len: usize) -> Result<Vec<u8>, OpenError> {
        let plain = open_bounded(&self.data, aad, sealed, len, true)?;
        if plain.len() == len {
            Ok(plain)
        } else {
            Err(OpenError::Size)
        }
    }
}

/// Encodes `plaintext` (zstd at `compression` when that shrinks it), then seals it
/// under `key` with a random nonce, appending the result to `out`.
pub(crate) fn seal_with(
    key: &SecretKey,
    aad: &[u8],
    plaintext: &[u8],
    compression: Option<i32>,
    padding: Padding,
    out: &mut Vec<u8>,
) {
    // Build nonce || encoding || body directly in `out` and encrypt in place:
    // no intermediate payload buffer on the hot path.
    // A random 192-bit nonce from the thread's CSPRNG (ChaCha, seeded and
    // reseeded from the OS): one system call per blob cost more than sealing
    // a small one.
    let mut nonce = [0u8; NONCE_LEN];
    rand::thread_rng().fill_bytes(&mut nonce);
    let padded = padding == Padding::Padme;
    let header = if padded { PADDED_HEADER } else { 1 };
    out.reserve(NONCE_LEN + header + plaintext.len() + TAG_LEN);
    out.extend_from_slice(&nonce);
    let start = out.len();
    out.resize(start + header, 0);
    let mut compressed = compression.is_some_and(|level| compress_into(level, plaintext, out));
    // Readers refuse objects other than blobs that open to more than
    // MAX_EXPANSION times their sealed size: such a rare, extremely repetitive
    // plaintext is stored raw instead.
    if compressed
        && !aad.starts_with(BLOB_AAD_PREFIX)
        && plaintext.len() > max_plaintext_len(out.len() - start + NONCE_LEN + TAG_LEN)
    {
        compressed = false;
    }
    if !compressed {
        out.truncate(start + header);
        out.extend_from_slice(plaintext);
    }
    out[start] = match (padded, compressed) {
        (false, false) => ENCODING_RAW,
        (false, true) => ENCODING_ZSTD,
        (true, false) => ENCODING_PADDED_RAW,
        (true, true) => ENCODING_PADDED_ZSTD,
    };
    if padded {
        let body = out.len() - start - PADDED_HEADER;
        let body = u32::try_from(body)
            .unwrap_or_else(|_| unreachable!("blobs are at most a chunk, far below 4 GiB"));
        out[start + 1..start + PADDED_HEADER].copy_from_slice(&body.to_le_bytes());
        let sealed = (out.len() - start + NONCE_LEN + TAG_LEN) as u64;
        let zeros = (padme(sealed) - sealed) as usize;
        out.resize(out.len() + zeros, 0);
    }
    let cipher = XChaCha20Poly1305::new((&key.0).into());
    let tag = cipher
        .encrypt_in_place_detached((&nonce).into(), aad, &mut out[start..])
        .unwrap_or_else(|_| unreachable!("XChaCha20-Poly1305 encrypts any length below 256 GiB"));
    out.extend_from_slice(&tag);
}

/// Appends the zstd frame of `plaintext` to `out`; false (with `out` unchanged
/// in length) when it would not be smaller than the input.
///
/// Each thread keeps one compression context: creating one per blob cost
/// ~80 µs, a third of the time for small files.
fn compress_into(level: i32, plaintext: &[u8], out: &mut Vec<u8>) -> bool {
    thread_local! {
        static CONTEXT: std::cell::RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> =
            const { std::cell::RefCell::new(None) };
    }
    CONTEXT.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.as_ref().map(|(l, _)| *l) != Some(level) {
            *slot = zstd::bulk::Compressor::new(level).ok().map(|c| (level, c));
        }
        let Some((_, compressor)) = slot.as_mut() else {
            return false;
        };
        let start = out.len();
        // Room for no more than the input: a frame that does not shrink it fails
        // to fit, and the blob is stored raw.
        out.reserve_exact(plaintext.len());
        let room = out.capacity().min(start + plaintext.len());
        let mut cursor = std::io::Cursor::new(&mut *out);
        cursor.set_position(start as u64);
        let ok = compressor
            .compress_to_buffer(plaintext, &mut cursor)
            .is_ok();
        if ok && out.len() < room {
            true
        } else {
            out.truncate(start);
            false
        }
    })
}

/// Opens a sealed object and decodes its payload, which may be at most
/// [`max_plaintext_len`] bytes.
pub(crate) fn open_with(key: &SecretKey, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, OpenError> {
    open_bounded(key, aad, sealed, max_plaintext_len(sealed.len()), false)
}

/// Opens a sealed object whose plaintext may be at most `limit` bytes
/// (exactly `limit` when `exact`).
fn open_bounded(
    key: &SecretKey,
    aad: &[u8],
    sealed: &[u8],
    limit: usize,
    exact: bool,
) -> Result<Vec<u8>, OpenError> {
    if sealed.len() < NONCE_LEN + TAG_LEN + 1 {
        return Err(OpenError::TooShort);
    }
    let cipher = XChaCha20Poly1305::new((&key.0).into());
    let (nonce, body) = sealed.split_at(NONCE_LEN);
    let mut payload = cipher
        .decrypt(nonce.into(), Payload { msg: body, aad })
        .map_err(|_| OpenError::Authentication)?;
    let outcome = decode_payload(&mut payload, limit, exact);
    payload.zeroize();
    outcome
}

/// Decodes an opened payload (encoding byte, body, any padding) into at most
/// `limit` bytes (exactly `limit` when `exact`).
fn decode_payload(payload: &mut Vec<u8>, limit: usize, exact: bool) -> Result<Vec<u8>, OpenError> {
    let Some(&encoding) = payload.first() else {
        return Err(OpenError::Encoding);
    };
    let body = match encoding {
        ENCODING_RAW | ENCODING_ZSTD => 1..payload.len(),
        ENCODING_PADDED_RAW | ENCODING_PADDED_ZSTD => {
            let Some(length) = payload.get(1..PADDED_HEADER) else {
                return Err(OpenError::Encoding);
            };
            let length = u32::from_le_bytes([length[0], length[1], length[2], length[3]]);
            let end = PADDED_HEADER.saturating_add(length as usize);
            // The padding must be zeros and end the payload: one encoding
            // per blob, nothing hidden after the body.
            match payload.get(end..) {
                Some(zeros) if zeros.iter().all(|&b| b == 0) => PADDED_HEADER..end,
                _ => return Err(OpenError::Encoding),
            }
        }
        _ => return Err(OpenError::Encoding),
    };
    if matches!(encoding, ENCODING_ZSTD | ENCODING_PADDED_ZSTD) {
        return decompress_bounded(&payload[body], limit, exact);
    }
    if body.len() > limit {
        return Err(OpenError::Size);
    }
    // Stored as is: hand the buffer over instead of copying the body (the
    // bytes cut off are the encoding, the length and zeros).
    payload.truncate(body.end);
    payload.drain(..body.start);
    Ok(std::mem::take(payload))
}

/// Decompresses a zstd frame into at most `limit` bytes, never allocating more
/// than the smaller of `limit` and what a frame of this length can produce.
///
/// A frame that records its content size (every frame this implementation
/// writes) is decompressed in one shot into a buffer of exactly that size;
/// one that does not is streamed, stopping one byte past the limit. When
/// `exact`, a recorded content size other than `limit` is refused at once.
fn decompress_bounded(frame: &[u8], limit: usize, exact: bool) -> Result<Vec<u8>, OpenError> {
    if exact && limit > frame.len().saturating_mul(ZSTD_MAX_RATIO) {
        return Err(OpenError::Size);
    }
    let limit = limit.min(frame.len().saturating_mul(ZSTD_MAX_RATIO));
    match zstd::zstd_safe::get_frame_content_size(frame) {
        Ok(Some(size)) => {
            let size = usize::try_from(size)
                .ok()
                .filter(|&s| s <= limit && (!exact || s == limit))
                .ok_or(OpenError::Size)?;
            thread_local! {
                static CONTEXT: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
                    const { std::cell::RefCell::new(None) };
            }
            CONTEXT.with(|cell| {
                let mut slot = cell.borrow_mut();
                if slot.is_none() {
                    *slot = zstd::bulk::Decompressor::new().ok();
                }
                let decompressor = slot.as_mut().ok_or(OpenError::Encoding)?;
                let mut out = Vec::with_capacity(size);
                match decompressor.decompress_to_buffer(frame, &mut out) {
                    // A frame whose content does not match its recorded size is
                    // an error inside zstd; more frames after it do not fit.
                    Ok(n) if n == size => Ok(out),
                    _ => {
                        out.zeroize();
                        Err(OpenError::Encoding)
                    }
                }
            })
        }
        Ok(None) => {
            use std::io::Read;
            let mut decoder =
                zstd::stream::read::Decoder::with_buffer(frame).map_err(|_| OpenError::Encoding)?;
            // The streaming decoder allocates the window the frame header
            // asks for: at most the output bound, or 8 MiB (the window of
            // every non-"ultra" zstd level), never above zstd's 2^27.
            decoder
                .window_log_max(stream_window_log(limit))
                .map_err(|_| OpenError::Encoding)?;
            let mut out = Vec::new();
            let read = decoder
                .take(limit as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|_| OpenError::Encoding);
            if read.is_err() || out.len() > limit {
                out.zeroize();
                return Err(read.err().unwrap_or(OpenError::Size));
            }
            Ok(out)
        }
        Err(_) => Err(OpenError::Encoding),
    }
}

/// The largest window (log2) accepted from a frame without a content size
/// whose output may be `limit` bytes: `max(limit, 8 MiB)`, at most 2^27.
fn stream_window_log(limit: usize) -> u32 {
    let needed = usize::BITS - limit.saturating_sub(1).leading_zeros();
    needed.clamp(23, 27)
}

/// Associated data of a blob: binds its type and id to the ciphertext.
pub fn blob_aad(blob_type: u8, id: &BlobId) -> [u8; 49] {
    let mut aad = [0u8; 49];
    aad[..16].copy_from_slice(BLOB_AAD_PREFIX);
    aad[16] = blob_type;
    aad[17..].copy_from_slice(&id.0);
    aad
}

/// Proptest helpers shared by the parsers' tests: mutations of valid stored
/// bytes (flip, insert, delete, truncate, append at chosen positions).
#[cfg(test)]
pub(crate) mod mutate {
    use proptest::prelude::*;
    use proptest::sample::Index;

    /// One change to a byte string.
    #[derive(Debug, Clone)]
    pub(crate) enum Mutation {
        /// XOR one byte with a non-zero mask.
        Flip(Index, u8),
        /// Insert a byte before a position.
        Insert(Index, u8),
        /// Remove one byte.
        Delete(Index),
        /// Keep only a prefix.
        Truncate(Index),
        /// Append bytes.
        Append(Vec<u8>),
    }

    fn mutation() -> impl Strategy<Value = Mutation> {
        prop_oneof![
            4 => (any::<Index>(), 1..=255u8).prop_map(|(i, m)| Mutation::Flip(i, m)),
            2 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
            2 => any::<Index>().prop_map(Mutation::Delete),
            1 => any::<Index>().prop_map(Mutation::Truncate),
            1 => prop::collection::vec(any::<u8>(), 1..8).prop_map(Mutation::Append),
        ]
    }

    /// One to four mutations.
    pub(crate) fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
        prop::collection::vec(mutation(), 1..4)
    }

    /// `bytes` with `mutations` applied in order.
    pub(crate) fn apply(bytes: &[u8], mutations: &[Mutation]) -> Vec<u8> {
        let mut out = bytes.to_vec();
        for m in mutations {
            match m {
                Mutation::Flip(i, mask) if !out.is_empty() => {
                    let i = i.index(out.len());
                    out[i] ^= mask;
                }
                Mutation::Insert(i, b) => {
                    let i = i.index(out.len() + 1);
                    out.insert(i, *b);
                }
                Mutation::Delete(i) if !out.is_empty() => {
                    let i = i.index(out.len());
                    out.remove(i);
                }
                Mutation::Truncate(i) => {
                    let len = i.index(out.len() + 1);
                    out.truncate(len);
                }
                Mutation::Append(extra) => out.extend_from_slice(extra),
                _ => {}
            }
        }
        out
    }

    /// Arbitrary bytes, up to `max` long.
    pub(crate) fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(any::<u8>(), 0..max)
    }
}

#[cfg(test)]
mod tests;
