#![no_main]
//! The sealed-box layer alone: arbitrary bytes as a box, and arbitrary
//! payloads (encoding byte, zstd frame) behind a valid tag, opened as metadata
//! (bounded by MAX_EXPANSION) and as a blob of a length taken from the input.
use libfuzzer_sys::fuzz_target;
use lifeboat_engine::format::crypto::max_plaintext_len;
use lifeboat_fuzz::{seal_payload, KEYS};

fuzz_target!(|data: &[u8]| {
    let keys = &*KEYS;
    assert!(keys.open(b"ctx", data).is_err());
    let (len, payload) = match data {
        [a, b, c, rest @ ..] => (
            usize::from(*a) | usize::from(*b) << 8 | usize::from(*c) << 16,
            rest,
        ),
        _ => (0, data),
    };
    let sealed = seal_payload(b"ctx", payload);
    if let Ok(plain) = keys.open(b"ctx", &sealed) {
        assert!(plain.len() <= max_plaintext_len(sealed.len()));
    }
    if let Ok(plain) = keys.open_exact(b"ctx", &sealed, len) {
        assert_eq!(plain.len(), len);
    }
    // A zstd frame: the input after the magic number.
    let mut frame = vec![1u8, 0x28, 0xb5, 0x2f, 0xfd];
    frame.extend_from_slice(payload);
    let sealed = seal_payload(b"ctx", &frame);
    if let Ok(plain) = keys.open(b"ctx", &sealed) {
        assert!(plain.len() <= max_plaintext_len(sealed.len()));
    }
    if let Ok(plain) = keys.open_exact(b"ctx", &sealed, len) {
        assert_eq!(plain.len(), len);
    }
    // Whatever the writer seals opens back.
    for level in [None, Some(3)] {
        let mut out = Vec::new();
        keys.seal(b"ctx", payload, level, &mut out);
        assert_eq!(keys.open(b"ctx", &out).as_deref(), Ok(payload));
    }
});
