//! Decoding stored bytes allocates no more than a bound set by the input
//! length: measured with a counting global allocator (this test binary only).
//!
//! Covers postcard length prefixes (serde's cautious preallocation plus
//! postcard's check of the remaining input) and zstd bombs behind the AEAD.

use lifeboat_engine::SealedFile;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use lifeboat_engine::format::crypto::{blob_aad, max_plaintext_len, MasterKeys};
use lifeboat_engine::format::index::IndexFile;
use lifeboat_engine::{BlobId, Snapshot, SnapshotId, Tree};

struct Counting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn track(delta: isize) {
    // `try_with`: thread-local storage may be gone while a thread exits.
    let _ = LIVE.try_with(|live| {
        let now = live.get() + delta;
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

// SAFETY: forwards to the system allocator and only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        track(layout.size() as isize);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        track(-(layout.size() as isize));
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        track(new_size as isize - layout.size() as isize);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Peak bytes allocated on this thread (above what was live before) by `f`.
fn peak_of<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(base));
    let out = f();
    (out, (PEAK.with(Cell::get) - base).max(0) as usize)
}

const HUGE: [u8; 9] = [0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x10]; // 2^60

#[test]
fn length_prefixes_do_not_preallocate() {
    // A tree claiming 2^60 nodes, a node name of 2^60 bytes, a file of 2^60 blobs.
    let mut nodes = vec![1];
    nodes.extend_from_slice(&HUGE);
    let mut name = vec![1, 1];
    name.extend_from_slice(&HUGE);
    let mut content = vec![1, 1, 1, b'a', 0];
    content.extend_from_slice(&HUGE);
    // The same count followed by a megabyte of real-looking bytes: the hint
    // is still refused because the input cannot hold 2^60 elements.
    let mut padded = nodes.clone();
    padded.extend(std::iter::repeat_n(1u8, 1 << 20));
    for bytes in [nodes, name, content, padded] {
        let (result, peak) = peak_of(|| Tree::decode(&BlobId::default(), &bytes));
        assert!(result.is_err());
        // The padded input decodes thousands of real nodes before failing:
        // memory in proportion to the input, never to the claimed count.
        let bound = 64 * 1024 + 16 * bytes.len();
        assert!(peak < bound, "tree decode allocated {peak} bytes");
    }
}

#[test]
fn sealed_metadata_with_huge_counts_fails_within_its_size() {
    let keys = MasterKeys::generate();
    let mut plain = vec![1];
    plain.extend_from_slice(&HUGE);
    for aad in [&b"lifeboat.index.v1"[..], b"lifeboat.snapshot.v1"] {
        let mut sealed = Vec::new();
        keys.seal(aad, &plain, None, &mut sealed);
        let (_, peak) = peak_of(|| {
            assert!(IndexFile::open(&keys, "x", &sealed).is_err());
            assert!(Snapshot::open(&keys, SnapshotId::default(), &sealed).is_err());
        });
        assert!(peak < 64 * 1024, "allocated {peak} bytes");
    }
}

#[test]
fn zstd_bombs_are_refused_within_the_bound() {
    // 64 MiB of zeros compress to a few KiB. Sealed as a blob (whose writer
    // compresses without limit), then offered as metadata: refused without
    // allocating anything near 64 MiB.
    let keys = MasterKeys::generate();
    let zeros = vec![0u8; 64 << 20];
    let id = keys.blob_id(&zeros);
    let aad = blob_aad(0, &id);
    let mut sealed = Vec::new();
    keys.seal(&aad, &zeros, Some(19), &mut sealed);
    drop(zeros);
    assert!(sealed.len() < 64 * 1024, "{}", sealed.len());
    let bound = max_plaintext_len(sealed.len());
    let (result, peak) = peak_of(|| keys.open(&aad, &sealed));
    assert!(result.is_err());
    assert!(
        peak < bound + (1 << 20),
        "allocated {peak} bytes, bound {bound}"
    );
    // As the blob it is, with its recorded length: exactly that much.
    let (result, peak) = peak_of(|| keys.open_exact(&aad, &sealed, 64 << 20));
    let plain = result.unwrap();
    assert_eq!(plain.len(), 64 << 20);
    assert!(peak < (64 << 20) + (1 << 20), "allocated {peak} bytes");
    // A recorded length that is a lie, larger than any frame of this size
    // could produce: refused before allocating it.
    let (result, peak) = peak_of(|| keys.open_exact(&aad, &sealed, u32::MAX as usize));
    assert!(result.is_err());
    assert!(peak < 1 << 20, "allocated {peak} bytes");
}
