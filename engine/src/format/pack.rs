//! Pack files: sealed blobs back to back, then a sealed header listing them,
//! then the header's length as a u32 LE.
//!
//! A pack holds blobs of one type only (data or tree), so tree packs stay small
//! and quick to read. Its name is the BLAKE3 hash of all its bytes.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::{RepoFile, SealedFile};
use crate::error::{Error, Result};
use crate::format::crypto::{MasterKeys, SEAL_OVERHEAD};
use crate::format::ids::{storage_hash, BlobId, PackId};

/// The pack header version written and read.
pub const PACK_HEADER_VERSION: u8 = 1;
/// The AAD a pack header is sealed with.
pub const HEADER_AAD: &[u8] = b"lifeboat.packheader.v1";
/// The zstd level a pack header is sealed with.
pub const HEADER_COMPRESSION: Option<i32> = Some(1);
/// Length of the trailer holding the sealed header's size.
pub const TRAILER_LEN: usize = 4;
/// Most blobs a writer puts in one pack (readers accept any number).
pub const MAX_PACK_BLOBS: usize = 16_384;
/// Most bytes one header entry encodes to: type (1), id (32), two u32
/// varints (5 each).
const MAX_HEADER_ENTRY_LEN: u64 = 1 + 32 + 5 + 5;

/// The most bytes the sealed header of a pack of `blobs` blobs can take:
/// its version, the entry count, every entry at its longest, and the seal
/// (a header is compressed only when that makes it smaller).
pub const fn max_header_len(blobs: u64) -> u64 {
    1 + 10 + blobs * MAX_HEADER_ENTRY_LEN + SEAL_OVERHEAD as u64
}

/// Room a pack needs beyond its blobs: the sealed header of
/// [`MAX_PACK_BLOBS`] blobs (at most 704,564 bytes) and the trailer,
/// rounded up to 1 MiB.
pub const PACK_HEADER_ROOM: u64 = 1 << 20;

/// What a blob holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[repr(u8)]
pub enum BlobType {
    /// A chunk of file content.
    Data = 0,
    /// An encoded directory listing.
    Tree = 1,
}

impl BlobType {
    /// The byte stored in headers, indexes and the blob's AAD.
    pub fn as_u8(self) -> u8 {
        self as u8
    }
}

/// Where one blob sits inside a pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackEntry {
    /// Blob type.
    pub blob_type: BlobType,
    /// Blob id.
    pub id: BlobId,
    /// Offset of the sealed blob in the pack.
    pub offset: u32,
    /// Sealed length.
    pub length: u32,
    /// Plaintext length.
    pub raw_length: u32,
}

#[derive(Serialize, Deserialize)]
struct HeaderEntry {
    blob_type: BlobType,
    id: BlobId,
    length: u32,
    raw_length: u32,
}

#[derive(Serialize, Deserialize)]
struct PackHeader {
    version: u8,
    entries: Vec<HeaderEntry>,
}

impl RepoFile for PackHeader {
    const KIND: &'static str = "pack header";
    const VERSION: u8 = PACK_HEADER_VERSION;

    fn version(&self) -> u8 {
        self.version
    }
}

/// Level 1: a header is ids and lengths, mostly incompressible, and sealed
/// once per pack on the backup's critical path.
impl SealedFile for PackHeader {
    const AAD: &'static [u8] = HEADER_AAD;
    const COMPRESSION: Option<i32> = HEADER_COMPRESSION;
}

/// Accumulates sealed blobs into one pack.
#[derive(Debug, Default)]
pub struct PackWriter {
    buf: Vec<u8>,
    entries: Vec<PackEntry>,
}

/// A finished pack ready to upload.
#[derive(Debug, Clone)]
pub struct FinishedPack {
    /// Its name.
    pub id: PackId,
    /// Its bytes.
    pub bytes: Bytes,
    /// The blobs it holds.
    pub entries: Vec<PackEntry>,
}

impl PackWriter {
    /// An empty pack with room for `capacity` bytes.
    pub fn with_capacity(capacity: usize) -> Self {
        PackWriter {
            buf: Vec::with_capacity(capacity),
            entries: Vec::new(),
        }
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// True when no blob was added.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// True when a blob of `incoming` bytes should go into a new pack: this
    /// one would pass `pack_size`, or holds [`MAX_PACK_BLOBS`] blobs already
    /// (which bounds the header, and the memory to read it, for tiny blobs).
    pub fn is_full_for(&self, incoming: usize, pack_size: usize) -> bool {
        !self.is_empty()
            && (self.buf.len() + incoming > pack_size || self.entries.len() >= MAX_PACK_BLOBS)
    }

    /// Appends one sealed blob.
    pub fn add(&mut self, blob_type: BlobType, id: BlobId, sealed: &[u8], raw_length: u32) {
        self.entries.push(PackEntry {
            blob_type,
            id,
            offset: self.buf.len() as u32,
            length: sealed.len() as u32,
            raw_length,
        });
        self.buf.extend_from_slice(sealed);
    }

    /// Seals the header, appends it and the trailer, and names the pack.
    pub fn finish(mut self, keys: &MasterKeys) -> FinishedPack {
        let header = PackHeader {
            version: PACK_HEADER_VERSION,
            entries: self
                .entries
                .iter()
                .map(|e| HeaderEntry {
                    blob_type: e.blob_type,
                    id: e.id,
                    length: e.length,
                    raw_length: e.raw_length,
                })
                .collect(),
        };
        let plain = header.encode();
        // Exactly enough room for the sealed header and the trailer, so a
        // full pack buffer never grows by doubling.
        self.buf.reserve_exact(plain.len() + 64);
        let before = self.buf.len();
        keys.seal(
            PackHeader::AAD,
            &plain,
            PackHeader::COMPRESSION,
            &mut self.buf,
        );
        let header_len = (self.buf.len() - before) as u32;
        self.buf.extend_from_slice(&header_len.to_le_bytes());
        let id = PackId(storage_hash(&self.buf));
        FinishedPack {
            id,
            bytes: Bytes::from(self.buf),
            entries: self.entries,
        }
    }
}

/// Gap between two wanted blobs of a pack that one ranged read reads through.
pub const MAX_READ_GAP: u64 = 1 << 20;
/// The most bytes one ranged read asks for (bounds memory: reads in flight x 4 MiB).
pub const MAX_READ_RUN: u64 = 4 << 20;

/// Groups one pack's wanted blobs (sorted by offset) into runs read with one
/// ranged request each: gaps up to [`MAX_READ_GAP`] are read through, and a
/// run stays within [`MAX_READ_RUN`] bytes. Restore and drill share it.
pub fn coalesce<T>(blobs: Vec<T>, entry: impl Fn(&T) -> &PackEntry) -> Vec<Vec<T>> {
    let mut runs: Vec<Vec<T>> = Vec::new();
    for blob in blobs {
        let start = u64::from(entry(&blob).offset);
        let joins = runs.last().is_some_and(|run| {
            let first = u64::from(entry(&run[0]).offset);
            let last = entry(&run[run.len() - 1]);
            let end = u64::from(last.offset) + u64::from(last.length);
            start >= end
                && start - end <= MAX_READ_GAP
                && start + u64::from(entry(&blob).length) - first <= MAX_READ_RUN
        });
        match runs.last_mut() {
            Some(run) if joins => run.push(blob),
            _ => runs.push(vec![blob]),
        }
    }
    runs
}

/// What reading a run (from [`coalesce`]) holds in memory: the bytes it
/// spans, and about 128 bytes a blob for its description (thousands of
/// them in a run of small files). Restore and drill bound their reads in
/// flight by it.
pub fn run_cost<T>(run: &[T], entry: impl Fn(&T) -> &PackEntry) -> u64 {
    let bytes = match (run.first().map(&entry), run.last().map(&entry)) {
        (Some(first), Some(last)) => (u64::from(last.offset) + u64::from(last.length))
            .saturating_sub(u64::from(first.offset)),
        _ => 0,
    };
    bytes + 128 * run.len() as u64
}

/// Reads the header length from a pack's last four bytes.
pub fn header_length(trailer: &[u8]) -> Option<u32> {
    let t: [u8; 4] = trailer
        .get(trailer.len().checked_sub(TRAILER_LEN)?..)?
        .try_into()
        .ok()?;
    Some(u32::from_le_bytes(t))
}

/// Decodes a pack's sealed header, given the pack's total size, and checks that
/// the blobs it lists exactly fill the space before it.
///
/// # Errors
/// [`Error::Format`] naming the pack on tampering or inconsistency.
pub fn decode_header(
    keys: &MasterKeys,
    pack: &PackId,
    pack_size: u64,
    sealed_header: &[u8],
) -> Result<Vec<PackEntry>> {
    let object = || format!("pack {pack}");
    let header = PackHeader::open(keys, pack, sealed_header)?;
    let data_end = pack_size
        .checked_sub((sealed_header.len() + TRAILER_LEN) as u64)
        .ok_or_else(|| Error::format(object(), "header larger than pack"))?;
    let mut offset = 0u64;
    let mut entries = Vec::with_capacity(header.entries.len());
    for e in header.entries {
        entries.push(PackEntry {
            blob_type: e.blob_type,
            id: e.id,
            offset: offset as u32,
            length: e.length,
            raw_length: e.raw_length,
        });
        offset += u64::from(e.length);
    }
    if offset != data_end {
        return Err(Error::format(
            object(),
            format!("header lists {offset} bytes of blobs, pack holds {data_end}"),
        ));
    }
    Ok(entries)
}

/// Splits a whole pack into its header entries, verifying its name first.
///
/// # Errors
/// [`Error::Format`] when the hash does not match the name or the header is bad.
pub fn parse_pack(keys: &MasterKeys, pack: &PackId, bytes: &[u8]) -> Result<Vec<PackEntry>> {
    if storage_hash(bytes) != pack.0 {
        return Err(Error::format(
            format!("pack {pack}"),
            "content does not match its name (corrupted)",
        ));
    }
    let header_len = header_length(bytes)
        .ok_or_else(|| Error::format(format!("pack {pack}"), "too short"))?
        as usize;
    let header_start = bytes
        .len()
        .checked_sub(TRAILER_LEN + header_len)
        .ok_or_else(|| Error::format(format!("pack {pack}"), "header length exceeds pack"))?;
    decode_header(
        keys,
        pack,
        bytes.len() as u64,
        &bytes[header_start..bytes.len() - TRAILER_LEN],
    )
}

/// Opens one sealed blob, checks its length against `entry.raw_length` and
/// its id.
///
/// # Errors
/// [`Error::Format`] naming the pack and blob on any mismatch.
pub fn open_blob(
    keys: &MasterKeys,
    pack: &PackId,
    entry: &PackEntry,
    sealed: &[u8],
) -> Result<Vec<u8>> {
    let aad = crate::format::crypto::blob_aad(entry.blob_type.as_u8(), &entry.id);
    // Decompressed into exactly `raw_length` bytes: a blob cannot inflate
    // past the length its index entry records.
    let plain = keys
        .open_exact(&aad, sealed, entry.raw_length as usize)
        .map_err(|e| Error::format(format!("pack {pack}"), format!("blob {}: {e}", entry.id)))?;
    if keys.blob_id(&plain) != entry.id {
        return Err(Error::format(
            format!("pack {pack}"),
            format!("blob {}: content does not match its id", entry.id),
        ));
    }
    Ok(plain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_widest_header_fits_its_room() {
        let keys = MasterKeys::generate();
        let header = PackHeader {
            version: PACK_HEADER_VERSION,
            entries: (0..MAX_PACK_BLOBS as u32)
                .map(|i| HeaderEntry {
                    blob_type: BlobType::Data,
                    id: BlobId(storage_hash(&i.to_le_bytes())),
                    length: u32::MAX,
                    raw_length: u32::MAX,
                })
                .collect(),
        };
        let widest = max_header_len(MAX_PACK_BLOBS as u64);
        assert_eq!(widest, 704_564);
        assert!(header.seal(&keys).len() as u64 <= widest);
        assert!(widest + TRAILER_LEN as u64 <= PACK_HEADER_ROOM);
    }

    fn build(keys: &MasterKeys, blobs: &[&[u8]]) -> FinishedPack {
        let mut w = PackWriter::with_capacity(1024);
        for b in blobs {
            let id = keys.blob_id(b);
            let mut sealed = Vec::new();
            keys.seal(
                &crate::format::crypto::blob_aad(0, &id),
                b,
                Some(3),
                &mut sealed,
            );
            w.add(BlobType::Data, id, &sealed, b.len() as u32);
        }
        w.finish(keys)
    }

    #[test]
    fn pack_round_trip() {
        let keys = MasterKeys::generate();
        let pack = build(&keys, &[b"hello", &[0u8; 10000], b""]);
        let entries = parse_pack(&keys, &pack.id, &pack.bytes).unwrap();
        assert_eq!(entries, pack.entries);
        let e = entries[1];
        let sealed = &pack.bytes[e.offset as usize..(e.offset + e.length) as usize];
        assert_eq!(
            open_blob(&keys, &pack.id, &e, sealed).unwrap(),
            vec![0u8; 10000]
        );
        // A blob cannot be passed off under another id.
        let mut wrong = e;
        wrong.id = entries[0].id;
        assert!(open_blob(&keys, &pack.id, &wrong, sealed).is_err());
    }

    #[test]
    fn flipped_byte_is_detected_and_named() {
        let keys = MasterKeys::generate();
        let pack = build(&keys, &[b"hello world"]);
        let mut bad = pack.bytes.to_vec();
        bad[3] ^= 1;
        let err = parse_pack(&keys, &pack.id, &bad).unwrap_err().to_string();
        assert!(err.contains(&pack.id.to_hex()), "{err}");
    }

    #[test]
    fn blob_longer_or_shorter_than_its_raw_length_is_refused() {
        let keys = MasterKeys::generate();
        let zeros = vec![0u8; 1 << 20];
        let pack = build(&keys, &[&zeros]);
        let e = pack.entries[0];
        let sealed = &pack.bytes[..e.length as usize];
        assert!(sealed.len() < 1000, "zeros compress");
        for raw_length in [0, 1, e.raw_length - 1, e.raw_length + 1, u32::MAX] {
            let lying = PackEntry { raw_length, ..e };
            assert!(open_blob(&keys, &pack.id, &lying, sealed).is_err());
        }
        assert_eq!(open_blob(&keys, &pack.id, &e, sealed).unwrap(), zeros);
    }

    #[test]
    fn header_with_a_huge_entry_count_fails_fast() {
        let keys = MasterKeys::generate();
        // version 1, then a varint claiming 2^60 entries and nothing else.
        let plain = [1, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x10];
        let mut sealed = Vec::new();
        keys.seal(HEADER_AAD, &plain, None, &mut sealed);
        let started = std::time::Instant::now();
        assert!(decode_header(&keys, &PackId::default(), 1 << 40, &sealed).is_err());
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }

    fn blobs() -> impl proptest::strategy::Strategy<Value = Vec<Vec<u8>>> {
        use proptest::prelude::*;
        prop::collection::vec(
            prop_oneof![
                mutate::bytes(300),
                (0usize..5000).prop_map(|n| vec![b'x'; n]),
            ],
            1..6,
        )
    }

    use crate::format::crypto::mutate;

    proptest::proptest! {
        #[test]
        fn arbitrary_pack_bytes_never_panic(bytes in mutate::bytes(400), size in proptest::num::u64::ANY) {
            let keys = MasterKeys::generate();
            let id = PackId(storage_hash(&bytes));
            proptest::prop_assert!(parse_pack(&keys, &id, &bytes).is_err());
            let _ = header_length(&bytes);
            proptest::prop_assert!(decode_header(&keys, &id, bytes.len() as u64 + 7, &bytes).is_err());
            proptest::prop_assert!(decode_header(&keys, &id, size, &bytes).is_err());
        }

        #[test]
        fn arbitrary_header_plaintext_never_panics(plain in mutate::bytes(400), size in proptest::num::u64::ANY) {
            // Behind the AEAD: postcard decoding of whatever a key holder seals.
            let keys = MasterKeys::generate();
            let mut sealed = Vec::new();
            keys.seal(HEADER_AAD, &plain, Some(1), &mut sealed);
            let _ = decode_header(&keys, &PackId::default(), size, &sealed);
            let _ = decode_header(&keys, &PackId::default(), (sealed.len() + TRAILER_LEN) as u64, &sealed);
        }

        #[test]
        fn packs_round_trip(blobs in blobs()) {
            let keys = MasterKeys::generate();
            let refs: Vec<&[u8]> = blobs.iter().map(Vec::as_slice).collect();
            let pack = build(&keys, &refs);
            let entries = parse_pack(&keys, &pack.id, &pack.bytes).unwrap();
            proptest::prop_assert_eq!(&entries, &pack.entries);
            let trailer = header_length(&pack.bytes).unwrap() as usize;
            let start = pack.bytes.len() - TRAILER_LEN - trailer;
            let sealed_header = &pack.bytes[start..pack.bytes.len() - TRAILER_LEN];
            proptest::prop_assert_eq!(
                decode_header(&keys, &pack.id, pack.bytes.len() as u64, sealed_header).unwrap(),
                entries.clone()
            );
            for (e, plain) in entries.iter().zip(&blobs) {
                let sealed = &pack.bytes[e.offset as usize..(e.offset + e.length) as usize];
                proptest::prop_assert_eq!(&open_blob(&keys, &pack.id, e, sealed).unwrap(), plain);
            }
        }

        #[test]
        fn mutated_packs_never_verify(blobs in blobs(), m in mutate::mutations()) {
            let keys = MasterKeys::generate();
            let refs: Vec<&[u8]> = blobs.iter().map(Vec::as_slice).collect();
            let pack = build(&keys, &refs);
            let bad = mutate::apply(&pack.bytes, &m);
            proptest::prop_assume!(bad != pack.bytes.as_ref());
            // Under its own (recomputed) name, so the check goes past the hash.
            let id = PackId(storage_hash(&bad));
            match parse_pack(&keys, &id, &bad) {
                Err(_) => {}
                Ok(entries) => {
                    // The header survived: the change is inside a blob, which
                    // then does not open.
                    let all_open = entries.iter().all(|e| {
                        let range = e.offset as usize..(e.offset + e.length) as usize;
                        open_blob(&keys, &id, e, &bad[range]).is_ok()
                    });
                    proptest::prop_assert!(!all_open, "a changed pack verified");
                }
            }
            // The stored name no longer matches.
            proptest::prop_assert!(parse_pack(&keys, &pack.id, &bad).is_err());
        }
    }
}
