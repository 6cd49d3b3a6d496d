#![no_main]
use libfuzzer_sys::fuzz_target;
use lifeboat_engine::format::keys::KeyFile;
use lifeboat_fuzz::{KEYS, PASSWORD, REPO};

fuzz_target!(|data: &[u8]| {
    let Ok(kf) = KeyFile::from_bytes(data) else {
        return;
    };
    // A fixed layout: one encoding per key file, so no other bytes (and no
    // other name) decode to the same one.
    assert_eq!(kf.to_bytes(), data);
    let _ = kf.info(&KEYS, &REPO);
    // Argon2 at the costs readers accept (up to 2 GiB) would only measure the
    // KDF: run it when it is cheap.
    let p = kf.params;
    if p.memory_kib <= 256 && p.iterations <= 2 && p.parallelism <= 2 {
        let _ = kf.open(PASSWORD, &REPO);
        let _ = kf.open(b"other", &REPO);
    }
});
