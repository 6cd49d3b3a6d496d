#![no_main]
use libfuzzer_sys::fuzz_target;
use lifeboat_engine::format::index::IndexFile;
use lifeboat_engine::SealedFile;
use lifeboat_fuzz::{sealed_variants, KEYS};

fuzz_target!(|data: &[u8]| {
    sealed_variants(b"lifeboat.index.v1", data, |sealed| {
        if let Ok(file) = IndexFile::open(&KEYS, "fuzz", sealed) {
            // What decodes re-encodes and decodes to itself.
            let again = IndexFile::open(&KEYS, "fuzz", &file.seal(&KEYS)).expect("round trip");
            assert_eq!(again, file);
        }
    });
});
