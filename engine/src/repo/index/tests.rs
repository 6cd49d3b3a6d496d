use std::collections::{BTreeSet, HashMap};

use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};

use super::*;
use crate::format::index::{IndexBlob, IndexFile, IndexPack};

/// The master index built the old way: every listed blob with its pack
/// number, stably sorted by (id, pack number).
struct Reference {
    packs: Vec<PackId>,
    entries: Vec<(BlobId, u32, IndexBlob)>,
}

impl Reference {
    fn new(files: &[IndexFile]) -> Self {
        let mut packs = Vec::new();
        let mut numbers: HashMap<PackId, u32> = HashMap::new();
        let mut entries = Vec::new();
        for file in files {
            for pack in &file.packs {
                let number = *numbers.entry(pack.id).or_insert_with(|| {
                    packs.push(pack.id);
                    (packs.len() - 1) as u32
                });
                entries.extend(pack.blobs.iter().map(|b| (b.id, number, *b)));
            }
        }
        entries.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
        Reference { packs, entries }
    }

    fn location(&self, i: usize) -> BlobLocation {
        let (_, pack, b) = self.entries[i];
        BlobLocation {
            pack: self.packs[pack as usize],
            blob_type: b.blob_type,
            offset: b.offset,
            length: b.length,
            raw_length: b.raw_length,
        }
    }

    fn entries_of_pack(&self) -> HashMap<PackId, Vec<PackEntry>> {
        let mut by_pack: HashMap<PackId, Vec<PackEntry>> = HashMap::new();
        for (i, (id, _, _)) in self.entries.iter().enumerate() {
            let loc = self.location(i);
            by_pack.entry(loc.pack).or_default().push(PackEntry {
                blob_type: loc.blob_type,
                id: *id,
                offset: loc.offset,
                length: loc.length,
                raw_length: loc.raw_length,
            });
        }
        for list in by_pack.values_mut() {
            list.sort_by_key(|e| e.offset);
        }
        by_pack
    }
}

fn load(files: &[IndexFile]) -> MasterIndex {
    load_split(files, KEY_SPLIT)
}

/// [`load`] into an index whose records keep `bits` key bits.
fn load_split(files: &[IndexFile], bits: u32) -> MasterIndex {
    let mut master = MasterIndex::with_key_split(bits);
    for file in files {
        master.add_file(file);
    }
    master.finish();
    master
}

/// Checks every public answer of `master` against the reference.
fn assert_matches(master: &MasterIndex, files: &[IndexFile], misses: &[[u8; 32]]) {
    let reference = Reference::new(files);
    assert_eq!(master.len(), reference.entries.len());
    assert_eq!(master.is_empty(), reference.entries.is_empty());
    assert_eq!(master.packs(), &reference.packs[..]);
    let mut first: HashMap<BlobId, usize> = HashMap::new();
    for (i, (id, pack, _)) in reference.entries.iter().enumerate() {
        first.entry(*id).or_insert(i);
        assert_eq!(
            master.entry_at(i),
            Some((*id, reference.location(i), *pack)),
            "entry {i}"
        );
    }
    assert_eq!(master.entry_at(reference.entries.len()), None);
    for (id, &i) in &first {
        assert_eq!(master.position_of(id), Some(i));
        assert_eq!(master.lookup(id), Some(reference.location(i)));
        assert!(master.contains(id));
    }
    for miss in misses {
        let id = BlobId(*miss);
        if !first.contains_key(&id) {
            assert_eq!(master.lookup(&id), None);
            assert_eq!(master.position_of(&id), None);
        }
    }
    assert_eq!(master.entries_of_pack(), reference.entries_of_pack());
    let order = master.positions_by_pack();
    assert_eq!(order.len(), reference.entries.len());
    let unique: BTreeSet<u32> = order.iter().copied().collect();
    assert_eq!(unique.len(), order.len());
    let keys: Vec<(u32, u32)> = order
        .iter()
        .map(|&p| {
            let (_, pack, b) = reference.entries[p as usize];
            (pack, b.offset)
        })
        .collect();
    assert!(keys.windows(2).all(|w| w[0] <= w[1]), "{keys:?}");
}

fn blob_id() -> impl Strategy<Value = [u8; 32]> {
    prop_oneof![
        4 => any::<[u8; 32]>(),
        // Shared ids (duplicates across and within packs), some in one bucket.
        1 => (0u8..4).prop_map(|k| [k; 32]),
        1 => (0u8..4).prop_map(|k| {
            let mut id = [0xab; 32];
            id[31] = k;
            id
        }),
    ]
}

/// (id, tree, gap before it, length, raw length)
fn listed_blob() -> impl Strategy<Value = ([u8; 32], bool, u32, u32, u32)> {
    (
        blob_id(),
        any::<bool>(),
        prop_oneof![6 => Just(0u32), 2 => 0u32..1000, 1 => any::<u32>()],
        prop_oneof![6 => 0u32..5000, 1 => Just(0u32), 1 => any::<u32>()],
        prop_oneof![
            4 => 0u32..1 << 20,
            1 => (1u32 << 22) - 2..(1 << 22) + 2,
            1 => any::<u32>()
        ],
    )
}

/// One pack listing: blobs laid out from a start offset (gaps that wrap
/// around give unsorted and overlapping listings), then maybe reordered.
fn listed_pack() -> impl Strategy<Value = IndexPack> {
    (
        0u8..5,
        prop_oneof![
            3 => Just(0u32),
            1 => (1u32 << 25) - 3..(1 << 25) + 3,
            1 => any::<u32>()
        ],
        prop::collection::vec(listed_blob(), 0..12),
        0u8..3,
    )
        .prop_map(|(pack, start, blobs, order)| {
            let mut offset = start;
            let mut listed: Vec<IndexBlob> = blobs
                .into_iter()
                .map(|(id, tree, gap, length, raw_length)| {
                    offset = offset.wrapping_add(gap);
                    let b = IndexBlob {
                        blob_type: if tree { BlobType::Tree } else { BlobType::Data },
                        id: BlobId(id),
                        offset,
                        length,
                        raw_length,
                    };
                    offset = offset.wrapping_add(length);
                    b
                })
                .collect();
            match order {
                1 => listed.reverse(),
                2 => listed.sort_by_key(|b| b.id),
                _ => {}
            }
            IndexPack {
                id: PackId([pack + 1; 32]),
                blobs: listed,
            }
        })
}

fn listed_files() -> impl Strategy<Value = Vec<IndexFile>> {
    prop::collection::vec(
        prop::collection::vec(listed_pack(), 0..5)
            .prop_map(|packs| IndexFile { version: 1, packs }),
        0..4,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn master_index_matches_the_reference(
        files in listed_files(),
        misses in prop::collection::vec(blob_id(), 0..8),
        split in 0usize..4,
        // Few key bits in a record: most keys then need their high byte.
        key_bits in prop_oneof![Just(KEY_SPLIT), 2u32..6],
    ) {
        let master = load_split(&files, key_bits);
        assert_matches(&master, &files, &misses);
        // Files added after a finish (prune's rescue) merge the same way.
        let split = split.min(files.len());
        let mut master = load_split(&files[..split], key_bits);
        for file in &files[split..] {
            master.add_file(file);
        }
        master.finish();
        assert_matches(&master, &files, &misses);
    }
}

fn blob(id: [u8; 32], offset: u32, length: u32, raw_length: u32) -> IndexBlob {
    IndexBlob {
        blob_type: BlobType::Tree,
        id: BlobId(id),
        offset,
        length,
        raw_length,
    }
}

#[test]
fn values_too_large_for_a_slot_are_kept_whole() {
    let marker = (1u32 << 25) - 1;
    let files = vec![IndexFile {
        version: 1,
        packs: vec![
            IndexPack {
                id: PackId([1; 32]),
                blobs: vec![
                    blob([1; 32], 0, 100, (1 << 22) - 1),      // fits
                    blob([2; 32], 100, marker - 100, 1 << 22), // raw too large
                    blob([3; 32], marker, 10, 5),              // offset is the marker itself
                    blob([4; 32], 1 << 30, 1 << 28, u32::MAX),
                    blob([5; 32], u32::MAX - 3, 100, 7), // ends past u32::MAX
                ],
            },
            IndexPack {
                id: PackId([2; 32]),
                blobs: vec![blob([6; 32], 0, u32::MAX, 0), blob([7; 32], u32::MAX, 0, 0)],
            },
        ],
    }];
    let master = load(&files);
    assert!(!master.wide.is_empty());
    assert_matches(&master, &files, &[]);
    let loc = master.lookup(&BlobId([5; 32])).unwrap();
    assert_eq!(
        (loc.offset, loc.length, loc.raw_length),
        (u32::MAX - 3, 100, 7)
    );
}

#[test]
fn packs_past_32_mib_split_into_runs_without_escapes() {
    // A 1 GiB pack of 2 MiB blobs, back to back, with one gap.
    let mut offset = 0u32;
    let blobs: Vec<IndexBlob> = (0..511u32)
        .map(|i| {
            let mut id = [0u8; 32];
            id[..4].copy_from_slice(&i.to_be_bytes());
            id[4] = 0x5a;
            offset += if i == 300 { 12_345 } else { 0 };
            let b = blob(id, offset, 2 << 20, (2 << 20) + i);
            offset += 2 << 20;
            b
        })
        .collect();
    let files = vec![IndexFile {
        version: 1,
        packs: vec![IndexPack {
            id: PackId([3; 32]),
            blobs,
        }],
    }];
    let master = load(&files);
    assert!(master.wide.is_empty());
    assert!(master.runs.len() >= 32);
    assert_matches(&master, &files, &[]);
}

#[test]
fn empty_packs_and_indexes() {
    let mut master = MasterIndex::new();
    master.finish();
    assert!(master.is_empty());
    assert_eq!(master.lookup(&BlobId([0; 32])), None);
    assert_eq!(master.entry_at(0), None);
    assert!(master.positions_by_pack().is_empty());
    let files = vec![IndexFile {
        version: 1,
        packs: vec![IndexPack {
            id: PackId([9; 32]),
            blobs: vec![],
        }],
    }];
    let master = load(&files);
    assert_eq!(master.packs(), &[PackId([9; 32])]);
    assert_matches(&master, &files, &[[9; 32]]);
}

/// `blobs` random blobs in packs of `per_pack`, back to back, as a backup writes them.
fn random_files(blobs: usize, per_pack: usize, seed: u64) -> Vec<IndexFile> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut file = IndexFile::new();
    let mut left = blobs;
    while left > 0 {
        let n = per_pack.min(left);
        left -= n;
        let mut pack = [0u8; 32];
        rng.fill_bytes(&mut pack);
        let mut offset = 0;
        let blobs = (0..n)
            .map(|_| {
                let mut id = [0u8; 32];
                rng.fill_bytes(&mut id);
                let length = rng.gen_range(4000..12_000);
                let b = IndexBlob {
                    blob_type: BlobType::Data,
                    id: BlobId(id),
                    offset,
                    length,
                    raw_length: length + rng.gen_range(0..length),
                };
                offset += length;
                b
            })
            .collect();
        file.packs.push(IndexPack {
            id: PackId(pack),
            blobs,
        });
    }
    vec![file]
}

#[test]
fn thirty_nine_bytes_a_blob() {
    let files = random_files(200_000, 2000, 7);
    let mut master = MasterIndex::new();
    master.reserve(200_000);
    master.add_file(&files[0]);
    master.finish();
    let (n, packs) = (master.len(), master.packs().len());
    // Fixed: the bucket table (256 KiB) and the shards' vector headers.
    let fixed = (BUCKETS + 1) * 4 + 2 * SHARDS * std::mem::size_of::<Vec<u8>>();
    let per_pack = 32 + std::mem::size_of::<Run>() + SLOT;
    assert_eq!(per_pack, 50);
    // And the directories: 4 bytes per 256 slots, 2 per 256 positions.
    let bound = MasterIndex::bytes_per_entry() * n + per_pack * packs + fixed + n / 32;
    assert_eq!(MasterIndex::bytes_per_entry(), 39);
    assert!(master.highs.iter().all(Vec::is_empty));
    assert!(
        master.heap_bytes() <= bound,
        "{} bytes for {n} blobs in {packs} packs: {:.2} a blob, bound {bound}",
        master.heap_bytes(),
        master.heap_bytes() as f64 / n as f64
    );
    // Spot checks (the property test covers the rest).
    let b = files[0].packs[57].blobs[1234];
    let loc = master.lookup(&b.id).unwrap();
    assert_eq!(
        (loc.pack, loc.offset, loc.length, loc.raw_length),
        (files[0].packs[57].id, b.offset, b.length, b.raw_length)
    );
    assert_eq!(master.positions_by_pack().len(), n);
}

#[test]
fn a_pack_listed_in_two_files_keeps_both_copies() {
    let mut files = random_files(300, 100, 3);
    files.push(files[0].clone());
    files[1].packs.swap(0, 2);
    let master = load(&files);
    assert_eq!(master.len(), 600);
    assert_eq!(master.packs().len(), 3);
    assert_matches(&master, &files, &[[0; 32]]);
}

#[test]
fn tree_pack_extents_name_tree_packs_and_their_ends() {
    let data = |id: [u8; 32], offset, length| IndexBlob {
        blob_type: BlobType::Data,
        ..blob(id, offset, length, 1)
    };
    let files = vec![
        IndexFile {
            version: 1,
            packs: vec![
                IndexPack {
                    id: PackId([1; 32]),
                    blobs: vec![blob([1; 32], 0, 100, 50), blob([2; 32], 150, 20, 10)],
                },
                IndexPack {
                    id: PackId([2; 32]),
                    blobs: vec![data([3; 32], 0, 5000)],
                },
            ],
        },
        // The same tree pack listed again with a blob further on.
        IndexFile {
            version: 1,
            packs: vec![IndexPack {
                id: PackId([1; 32]),
                blobs: vec![blob([4; 32], 400, 30, 10)],
            }],
        },
    ];
    let extents = load(&files).tree_pack_extents();
    assert_eq!(extents.len(), 1, "{extents:?}");
    assert_eq!(extents.get(&PackId([1; 32])), Some(&430));
}

#[test]
fn an_opened_index_file_is_looked_up() {
    use crate::format::crypto::MasterKeys;
    use crate::format::SealedFile;
    let keys = MasterKeys::generate();
    let blob = |n: u8, offset: u32| IndexBlob {
        blob_type: BlobType::Data,
        id: BlobId([n; 32]),
        offset,
        length: 10,
        raw_length: 8,
    };
    let mut file = IndexFile::new();
    file.packs.push(IndexPack {
        id: PackId([1; 32]),
        blobs: vec![blob(9, 0), blob(3, 10)],
    });
    file.packs.push(IndexPack {
        id: PackId([2; 32]),
        blobs: vec![blob(5, 0)],
    });
    let opened = IndexFile::open(&keys, "x", &file.seal(&keys)).unwrap();
    let mut master = MasterIndex::new();
    master.add_file(&opened);
    master.finish();
    assert_eq!(master.len(), 3);
    let loc = master.lookup(&BlobId([3; 32])).unwrap();
    assert_eq!((loc.pack, loc.offset), (PackId([1; 32]), 10));
    assert_eq!(
        master.lookup(&BlobId([5; 32])).unwrap().pack,
        PackId([2; 32])
    );
    assert!(master.lookup(&BlobId([4; 32])).is_none());
    assert!(MasterIndex::bytes_per_entry() <= 40);
}
