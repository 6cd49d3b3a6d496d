#![no_main]
use libfuzzer_sys::fuzz_target;
use lifeboat_engine::format::ids::storage_hash;
use lifeboat_engine::format::pack::{decode_header, header_length, parse_pack};
use lifeboat_engine::PackId;
use lifeboat_fuzz::{sealed_variants, KEYS};

fuzz_target!(|data: &[u8]| {
    let keys = &*KEYS;
    let _ = header_length(data);
    let id = PackId(storage_hash(data));
    let _ = parse_pack(keys, &id, data);
    sealed_variants(b"lifeboat.packheader.v1", data, |sealed| {
        // The pack size the header must account for: exact, and arbitrary.
        let exact = sealed.len() as u64 + 4;
        let _ = decode_header(keys, &id, exact, sealed);
        let _ = decode_header(keys, &id, exact.wrapping_mul(0x1_0001), sealed);
        // As a whole pack: no blobs, the header, its length.
        let mut pack = sealed.to_vec();
        pack.extend_from_slice(&(sealed.len() as u32).to_le_bytes());
        let _ = parse_pack(keys, &PackId(storage_hash(&pack)), &pack);
    });
});
