use super::*;
use chacha20poly1305::AeadCore;
use proptest::prelude::*;
use rand::Rng;

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
    assert_ne!(a.gear_table(), b.gear_table());
    let restored = MasterKeys::from_bytes(&a.to_bytes()).unwrap();
    assert_eq!(restored.blob_id(b"x"), a.blob_id(b"x"));
}

#[test]
fn padme_rounds_up_by_at_most_twelve_percent() {
    assert_eq!(padme(0), 0);
    assert_eq!(padme(1), 1);
    assert_eq!(padme(100), 104);
    assert_eq!(padme(1 << 20), 1 << 20);
    assert_eq!(padme((1 << 20) + 1), (1 << 20) + (1 << 15));
    let mut previous = 0;
    for len in (2..3_000_000u64).step_by(997) {
        let padded = padme(len);
        assert!(padded >= len && padded >= previous);
        assert!(
            padded as f64 <= len as f64 * 1.12 + 1.0,
            "{len} -> {padded}"
        );
        assert_eq!(padme(padded), padded, "padded lengths are fixed points");
        previous = padded;
    }
}

#[test]
fn sealed_blobs_fall_on_the_padding_grid_and_open_exactly() {
    let keys = MasterKeys::generate();
    let aad = blob_aad(0, &BlobId([1; 32]));
    let mut rng = rand::thread_rng();
    for len in [0usize, 1, 40, 1000, 4097, 131_072, 600_000, 2 << 20] {
        let random: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
        let text: Vec<u8> = b"lifeboat ".iter().copied().cycle().take(len).collect();
        for (plain, level) in [(&random, Some(3)), (&text, Some(3)), (&random, None)] {
            let mut sealed = Vec::new();
            keys.seal_blob(&aad, plain, level, &mut sealed);
            assert_eq!(padme(sealed.len() as u64), sealed.len() as u64, "len {len}");
            assert_eq!(&keys.open_exact(&aad, &sealed, len).unwrap(), plain);
            assert_eq!(
                keys.open_exact(&aad, &sealed, len + 1),
                Err(OpenError::Size)
            );
        }
    }
    // Incompressible chunks of different lengths in one bucket: the same
    // sealed size, so a ranged read does not give the exact length away.
    let sizes: Vec<usize> = [600_000usize, 600_123, 601_000]
        .iter()
        .map(|&len| {
            let plain: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
            let mut sealed = Vec::new();
            keys.seal_blob(&aad, &plain, Some(3), &mut sealed);
            sealed.len()
        })
        .collect();
    assert!(sizes.windows(2).all(|w| w[0] == w[1]), "{sizes:?}");
}

#[test]
fn padded_payloads_must_be_well_formed() {
    let keys = MasterKeys::generate();
    let aad = blob_aad(0, &BlobId([2; 32]));
    let padded = |encoding: u8, length: u32, body: &[u8], padding: &[u8]| {
        let mut payload = vec![encoding];
        payload.extend_from_slice(&length.to_le_bytes());
        payload.extend_from_slice(body);
        payload.extend_from_slice(padding);
        seal_payload(&keys, &aad, &payload)
    };
    let good = padded(ENCODING_PADDED_RAW, 3, b"abc", &[0; 9]);
    assert_eq!(keys.open_exact(&aad, &good, 3).unwrap(), b"abc");
    // Nonzero padding, a length past the end, a truncated length field.
    let nonzero = padded(ENCODING_PADDED_RAW, 3, b"abc", &[0, 1, 0]);
    assert_eq!(keys.open_exact(&aad, &nonzero, 3), Err(OpenError::Encoding));
    let past_end = padded(ENCODING_PADDED_RAW, 300, b"abc", &[0; 9]);
    assert_eq!(
        keys.open_exact(&aad, &past_end, 3),
        Err(OpenError::Encoding)
    );
    let huge = padded(ENCODING_PADDED_ZSTD, u32::MAX, b"abc", &[]);
    assert_eq!(keys.open_exact(&aad, &huge, 3), Err(OpenError::Encoding));
    let short = seal_payload(&keys, &aad, &[ENCODING_PADDED_RAW, 1, 0]);
    assert_eq!(keys.open_exact(&aad, &short, 0), Err(OpenError::Encoding));
    // A zstd body inside padding decodes, bounded like any other.
    let frame = zstd_payload(b"hello hello hello", 3, true);
    let zstd = padded(
        ENCODING_PADDED_ZSTD,
        (frame.len() - 1) as u32,
        &frame[1..],
        &[0; 5],
    );
    assert_eq!(
        keys.open_exact(&aad, &zstd, 17).unwrap(),
        b"hello hello hello"
    );
    assert_eq!(keys.open_exact(&aad, &zstd, 5), Err(OpenError::Size));
}
