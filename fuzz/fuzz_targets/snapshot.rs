#![no_main]
use libfuzzer_sys::fuzz_target;
use lifeboat_engine::SealedFile;
use lifeboat_engine::{Snapshot, SnapshotId};
use lifeboat_fuzz::{sealed_variants, KEYS};

fuzz_target!(|data: &[u8]| {
    sealed_variants(b"lifeboat.snapshot.v1", data, |sealed| {
        if let Ok(snap) = Snapshot::open(&KEYS, &SnapshotId::default(), sealed) {
            let _ = snap.datetime();
            let _ = snap.paths_lossy();
            let again = Snapshot::open(&KEYS, &SnapshotId::default(), &snap.seal(&KEYS))
                .expect("round trip");
            assert_eq!(again, snap);
        }
    });
});
