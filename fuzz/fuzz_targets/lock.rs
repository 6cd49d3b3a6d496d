#![no_main]
use libfuzzer_sys::fuzz_target;
use lifeboat_engine::format::lock::LockFile;
use lifeboat_fuzz::{sealed_variants, KEYS};

fuzz_target!(|data: &[u8]| {
    sealed_variants(b"lifeboat.lock.v1", data, |sealed| {
        if let Some(lock) = LockFile::open_lock(&KEYS, sealed) {
            let _ = lock.describe();
            let _ = lock.staleness(i64::MAX);
            let _ = lock.staleness(i64::MIN);
        }
    });
});
