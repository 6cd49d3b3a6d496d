use super::*;
use chacha20poly1305::AeadCore;
use proptest::prelude::*;

/// Seals `payload` (encoding byte included) as is, bypassing the writer's
/// rules: what a malicious holder of the key could store.
fn seal_payload(keys: &MasterKeys, aad: &[u8], payload: &[u8]) -> Vec<u8> {
    let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
    let cipher = XChaCha20Poly1305::new((&keys.data.0).into());
    let mut out = nonce.to_vec();
    out.extend(
        cipher
            .encrypt(&nonce, Payload { msg: payload, aad })
            .unwrap(),
    );
    out
}

fn zstd_payload(plain: &[u8], level: i32, content_size: bool) -> Vec<u8> {
    let mut payload = vec![ENCODING_ZSTD];
    let mut enc = zstd::stream::write::Encoder::new(&mut payload, level).unwrap();
    enc.include_contentsize(content_size).unwrap();
    if content_size {
        enc.set_pledged_src_size(Some(plain.len() as u64)).unwrap();
    }
    std::io::Write::write_all(&mut enc, plain).unwrap();
    enc.finish().unwrap();
    payload
}

#[test]
fn small_objects_cannot_inflate_past_the_bound() {
    let keys = MasterKeys::generate();
    let zeros = vec![0u8; 8 << 20];
    for content_size in [true, false] {
        let sealed = seal_payload(&keys, b"ctx", &zstd_payload(&zeros, 19, content_size));
        assert!(
            max_plaintext_len(sealed.len()) < zeros.len(),
            "{}",
            sealed.len()
        );
        assert_eq!(keys.open(b"ctx", &sealed), Err(OpenError::Size));
        // As a blob of the right length it opens: blobs are bounded by
        // their recorded raw_length, not by the ratio.
        assert_eq!(
            keys.open_exact(b"ctx", &sealed, zeros.len()).unwrap(),
            zeros
        );
        for wrong in [zeros.len() - 1, zeros.len() + 1, 0] {
            assert_eq!(
                keys.open_exact(b"ctx", &sealed, wrong),
                Err(OpenError::Size),
                "{wrong} {content_size}"
            );
        }
    }
    // Raw payloads are bounded too (exact length for blobs).
    let raw = seal_payload(&keys, b"ctx", &[0, 1, 2, 3]);
    assert_eq!(keys.open_exact(b"ctx", &raw, 3).unwrap(), vec![1, 2, 3]);
    assert_eq!(keys.open_exact(b"ctx", &raw, 2), Err(OpenError::Size));
    assert_eq!(keys.open_exact(b"ctx", &raw, 4), Err(OpenError::Size));
}

#[test]
fn writer_stores_extremely_repetitive_metadata_raw() {
    let keys = MasterKeys::generate();
    let zeros = vec![0u8; 1 << 20];
    let mut sealed = Vec::new();
    keys.seal(b"lifeboat.index.v1", &zeros, Some(3), &mut sealed);
    assert_eq!(sealed.len(), zeros.len() + SEAL_OVERHEAD, "stored raw");
    assert_eq!(keys.open(b"lifeboat.index.v1", &sealed).unwrap(), zeros);
    // Blobs compress as far as zstd goes.
    let aad = blob_aad(0, &keys.blob_id(&zeros));
    let mut blob = Vec::new();
    keys.seal(&aad, &zeros, Some(3), &mut blob);
    assert!(blob.len() < 1000);
    assert_eq!(keys.open_exact(&aad, &blob, zeros.len()).unwrap(), zeros);
    // Ordinary metadata still compresses.
    let text: Vec<u8> = (0..100_000u32)
        .flat_map(|i| format!("{} ", i.wrapping_mul(2_654_435_761)).into_bytes())
        .collect();
    let mut meta = Vec::new();
    keys.seal(b"m", &text, Some(3), &mut meta);
    assert!(meta.len() < text.len() / 2);
    assert_eq!(keys.open(b"m", &meta).unwrap(), text);
}

#[test]
fn frame_claiming_a_huge_size_is_refused_before_allocating() {
    let keys = MasterKeys::generate();
    // A frame header claiming 2^40 bytes of content, with a tiny body.
    let mut payload = zstd_payload(b"hello", 3, true);
    let frame = &payload[1..];
    assert_eq!(
        zstd::zstd_safe::get_frame_content_size(frame).unwrap(),
        Some(5)
    );
    // Frame header descriptor: single segment, 8-byte content size.
    payload[5] = 0xE0;
    let mut forged = payload[..6].to_vec();
    forged.extend_from_slice(&(1u64 << 40).to_le_bytes());
    forged.extend_from_slice(&payload[7..]);
    let sealed = seal_payload(&keys, b"ctx", &forged);
    assert!(keys.open(b"ctx", &sealed).is_err());
    assert!(keys.open_exact(b"ctx", &sealed, 1 << 40).is_err());
}

#[test]
fn zstd_ratio_bound_holds() {
    let zeros = vec![0u8; 16 << 20];
    for level in [1, 3, 19, 22] {
        let frame = zstd::bulk::compress(&zeros, level).unwrap();
        assert!(frame.len() * ZSTD_MAX_RATIO >= zeros.len(), "{level}");
    }
    assert_eq!(stream_window_log(0), 23);
    assert_eq!(stream_window_log(1 << 25), 25);
    assert_eq!(stream_window_log(usize::MAX), 27);
}

proptest! {
    #[test]
    fn arbitrary_sealed_bytes_never_panic(bytes in mutate::bytes(300)) {
        let keys = MasterKeys::generate();
        prop_assert!(keys.open(b"ctx", &bytes).is_err());
        prop_assert!(keys.open_exact(b"ctx", &bytes, 100).is_err());
    }

    #[test]
    fn arbitrary_payloads_behind_the_aead_never_panic(payload in mutate::bytes(300), len in 0usize..400) {
        // Past the tag: arbitrary encoding bytes and zstd frames.
        let keys = MasterKeys::generate();
        let sealed = seal_payload(&keys, b"ctx", &payload);
        let _ = keys.open(b"ctx", &sealed);
        let _ = keys.open_exact(b"ctx", &sealed, len);
        let mut zstd = vec![ENCODING_ZSTD, 0x28, 0xb5, 0x2f, 0xfd];
        zstd.extend_from_slice(&payload);
        let sealed = seal_payload(&keys, b"ctx", &zstd);
        let _ = keys.open(b"ctx", &sealed);
        let _ = keys.open_exact(b"ctx", &sealed, len);
    }

    #[test]
    fn seal_round_trips_and_any_change_is_rejected(
        plain in mutate::bytes(2000),
        level in proptest::option::of(0i32..6),
        m in mutate::mutations(),
    ) {
        let keys = MasterKeys::generate();
        let mut sealed = Vec::new();
        keys.seal(b"ctx", &plain, level, &mut sealed);
        prop_assert_eq!(keys.open(b"ctx", &sealed).unwrap(), plain.clone());
        prop_assert_eq!(keys.open_exact(b"ctx", &sealed, plain.len()).unwrap(), plain.clone());
        let bad = mutate::apply(&sealed, &m);
        prop_assume!(bad != sealed);
        prop_assert!(keys.open(b"ctx", &bad).is_err());
        prop_assert!(keys.open_exact(b"ctx", &bad, plain.len()).is_err());
    }
}

#[test]
fn seal_round_trip_compressed_and_raw() {
    let keys = MasterKeys::generate();
    for (data, level) in [
        (vec![7u8; 100_000], Some(3)),
        (vec![1, 2, 3], Some(3)),
        (vec![9u8; 5000], None),
    ] {
        // A blob: compressed however far zstd goes (metadata is capped
        // at MAX_EXPANSION, see writer_stores_extremely_repetitive_metadata_raw).
        let aad = blob_aad(0, &keys.blob_id(&data));
        let mut sealed = Vec::new();
        keys.seal(&aad, &data, level, &mut sealed);
        assert_eq!(keys.open_exact(&aad, &sealed, data.len()).unwrap(), data);
        if level.is_some() && data.len() > 1000 {
            assert!(sealed.len() < data.len() / 10, "compressible data shrinks");
        }
    }
}

#[test]
fn tampering_and_wrong_context_fail() {
    let keys = MasterKeys::generate();
    let mut sealed = Vec::new();
    keys.seal(b"ctx", b"secret data", Some(3), &mut sealed);
    assert_eq!(keys.open(b"other", &sealed), Err(OpenError::Authentication));
    for i in 0..sealed.len() {
        let mut bad = sealed.clone();
        bad[i] ^= 1;
        assert_eq!(keys.open(b"ctx", &bad), Err(OpenError::Authentication));
    }
    assert_eq!(keys.open(b"ctx", &sealed[..10]), Err(OpenError::TooShort));
    let other = MasterKeys::generate();
    assert_eq!(other.open(b"ctx", &sealed), Err(OpenError::Authentication));
}

#[test]
fn blob_ids_are_keyed() {
    let a = MasterKeys::generate();
    let b = MasterKeys::generate();
    assert_eq!(a.blob_id(b"x"), a.blob_id(b"x"));
    assert_ne!(a.blob_id(b"x"), b.blob_id(b"x"));
    assert_ne!(a.chunker_seed(), b.chunker_seed());
    let restored = MasterKeys::from_bytes(&a.to_bytes()).unwrap();
    assert_eq!(restored.blob_id(b"x"), a.blob_id(b"x"));
}
