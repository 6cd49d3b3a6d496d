#![no_main]
use libfuzzer_sys::fuzz_target;
use lifeboat_engine::format::config::{decode, read_header};
use lifeboat_fuzz::{seal_payload, KEYS, REPO};

fuzz_target!(|data: &[u8]| {
    let _ = read_header(data);
    let _ = decode(data, &KEYS);
    // A valid public header, then the input sealed as the body.
    let mut aad = b"lifeboat.config.v1".to_vec();
    aad.extend_from_slice(&REPO.0);
    for encoding in [0u8, 1] {
        let mut config = b"LIFEBOAT\x01\x00\x00\x00".to_vec();
        config.extend_from_slice(&REPO.0);
        let mut payload = vec![encoding];
        payload.extend_from_slice(data);
        config.extend_from_slice(&seal_payload(&aad, &payload));
        if let Ok((_, params)) = decode(&config, &KEYS) {
            assert!(params.validate().is_ok());
        }
    }
});
