#![no_main]
use libfuzzer_sys::fuzz_target;
use lifeboat_engine::format::deletion::DeletionRecord;
use lifeboat_engine::SealedFile;
use lifeboat_fuzz::{sealed_variants, KEYS};

fuzz_target!(|data: &[u8]| {
    sealed_variants(b"lifeboat.deletion.v1", data, |sealed| {
        if let Ok(record) = DeletionRecord::open(&KEYS, "fuzz", sealed) {
            let again =
                DeletionRecord::open(&KEYS, "fuzz", &record.seal(&KEYS)).expect("round trip");
            assert_eq!(again, record);
        }
    });
});
