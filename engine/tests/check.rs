//! Check across destinations: each destination's missing and damaged objects,
//! whether another holds a good copy, and what a lost object damages.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use lifeboat_backends::{Backend, FaultPlan, FaultyBackend, MemoryBackend};
use lifeboat_engine::check::{CheckOptions, ProblemKind, Subset};
use lifeboat_engine::{DestinationSet, Repository};

mod common;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_repository_is_clean_on_every_destination() {
    let (a, _b, repo, _src) = two_copies().await;
    let mut stored = a.get("config", None).await.unwrap().len() as u64;
    let mut objects = 1;
    for prefix in ["keys/", "data/", "index/", "snapshots/"] {
        for key in keys_under(&a, prefix).await {
            stored += a.stat(&key).await.unwrap().size;
            objects += 1;
        }
    }
    let report = run_check(&repo, read_all()).await;
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!(report.destinations.len(), 2);
    for row in &report.destinations {
        assert!(row.is_clean(), "{row:?}");
        // Every object, every byte.
        assert_eq!(row.objects_checked, objects, "{row:?}");
        assert_eq!(row.bytes_read, stored, "{row:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_byte_on_one_destination_is_named_and_healable() {
    let (_a, b, repo, _src) = two_copies().await;
    let pack = largest_pack(&b).await;
    flip_middle_byte(&b, &pack).await;
    let report = run_check(&repo, read_all()).await;
    assert!(!report.is_ok());
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    let problem = &report.problems[0];
    let name = pack.rsplit('/').next().unwrap();
    assert_eq!(problem.object, format!("pack {name}"));
    assert_eq!(problem.destination.as_deref(), Some("b"));
    assert_eq!(problem.kind, ProblemKind::Corrupt);
    assert_eq!(problem.good_copies, vec!["a".to_string()]);
    assert!(report.damaged.is_empty());
    let rows: BTreeMap<_, _> = report
        .destinations
        .iter()
        .map(|d| (d.name.as_str(), (d.corrupt, d.missing)))
        .collect();
    assert_eq!(rows["a"], (0, 0));
    assert_eq!(rows["b"], (1, 0));
    // Only --from b: still healable, because a is listed.
    let only_b = CheckOptions {
        only: Some("b".into()),
        ..read_all()
    };
    let report = run_check(&repo, only_b).await;
    assert_eq!(report.destinations.len(), 1);
    assert_eq!(report.problems.len(), 1);
    assert!(report.problems[0].healable());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_objects_are_listed_exactly_as_missing() {
    let (_a, b, repo, _src) = two_copies().await;
    let mut all = Vec::new();
    for prefix in ["data/", "index/", "snapshots/"] {
        all.extend(keys_under(&b, prefix).await);
    }
    all.sort();
    // Every other object, so at least one of each kind goes when there are several.
    let deleted: BTreeSet<String> = all.iter().step_by(2).cloned().collect();
    for key in &deleted {
        b.delete(key).await.unwrap();
    }
    // Structure only: missing objects need no data read.
    let report = run_check(&repo, CheckOptions::default()).await;
    let missing: BTreeSet<String> = report
        .problems
        .iter()
        .filter(|p| p.kind == ProblemKind::Missing)
        .map(|p| {
            assert_eq!(p.destination.as_deref(), Some("b"));
            assert!(p.healable());
            p.object.clone()
        })
        .collect();
    let expected: BTreeSet<String> = deleted
        .iter()
        .map(|k| lifeboat_engine::check::object_label(k))
        .collect();
    assert_eq!(missing, expected);
    assert_eq!(
        report.problems.len(),
        deleted.len(),
        "{:?}",
        report.problems
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_pack_damaged_everywhere_is_lost_and_its_files_are_named() {
    let (a, b, repo, _src) = two_copies().await;
    let pack = largest_pack(&a).await;
    flip_middle_byte(&a, &pack).await;
    flip_middle_byte(&b, &pack).await;
    let report = run_check(&repo, read_all()).await;
    assert_eq!(report.problems.len(), 2, "{:?}", report.problems);
    assert!(report.problems.iter().all(|p| !p.healable()));
    assert_eq!(report.lost().count(), 2);
    assert_eq!(report.damaged.len(), 1, "{:?}", report.damaged);
    let damaged = &report.damaged[0];
    assert!(
        damaged.paths.iter().any(|p| p.ends_with("/sub/big.bin")),
        "{:?}",
        damaged.paths
    );
    // Trees live in their own packs: no directory is lost, only file data.
    assert!(
        !damaged.paths.iter().any(|p| p.contains("whole directory")),
        "{:?}",
        damaged.paths
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_and_swapped_objects_are_found_without_reading_data() {
    let (_a, b, repo, _src) = two_copies().await;
    // A truncated index file: its size no longer matches.
    let index = keys_under(&b, "index/").await.remove(0);
    let bytes = b.get(&index, None).await.unwrap();
    overwrite(&b, &index, bytes[..bytes.len() / 2].to_vec()).await;
    // One pack's bytes stored under another pack's name: the header disagrees
    // with what the index says that pack holds.
    let packs = keys_under(&b, "data/").await;
    assert!(packs.len() >= 2, "needs two packs: {packs:?}");
    let other = b.get(&packs[1], None).await.unwrap();
    overwrite(&b, &packs[0], other.to_vec()).await;
    let report = run_check(&repo, CheckOptions::default()).await;
    let named: BTreeSet<String> = report.problems.iter().map(|p| p.object.clone()).collect();
    let expected: BTreeSet<String> = [&index, &packs[0]]
        .iter()
        .map(|k| lifeboat_engine::check::object_label(k))
        .collect();
    assert_eq!(named, expected, "{:?}", report.problems);
    assert!(report
        .problems
        .iter()
        .all(|p| p.kind == ProblemKind::Corrupt && p.healable()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_whose_tree_is_missing_is_named() {
    let (_a, _b, repo, _src) = two_copies().await;
    let (_, mut snapshot) = repo.find_snapshot("latest").await.unwrap();
    snapshot.tree = lifeboat_engine::BlobId([7; 32]);
    snapshot.hostname = "forged".into();
    let forged = repo.save_snapshot(&snapshot).await.unwrap();
    let report = run_check(&repo, CheckOptions::default()).await;
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    let problem = &report.problems[0];
    assert_eq!(problem.kind, ProblemKind::Lost);
    assert!(problem.object.starts_with("tree 0707"), "{problem}");
    assert!(problem.message.contains(&forged.short()), "{problem}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seven_slices_read_every_object_exactly_once() {
    let src = tempfile::tempdir().unwrap();
    source_tree(src.path());
    for i in 0..100u32 {
        // Incompressible, so the 100 files fill several 1 MiB packs.
        let mut data = vec![0u8; 60_000];
        blake3::Hasher::new()
            .update(&i.to_le_bytes())
            .finalize_xof()
            .fill(&mut data);
        std::fs::write(src.path().join(format!("f{i}")), data).unwrap();
    }
    let memory = MemoryBackend::new("m");
    let recorder = FaultyBackend::new(Arc::new(memory.clone()), FaultPlan::default());
    let params = lifeboat_engine::RepoParams {
        pack_size: 1 << 20,
        ..Default::default()
    };
    let dests = DestinationSet::new(vec![Arc::new(recorder.clone())]).unwrap();
    Repository::init(
        dests.clone(),
        b"pw",
        params,
        lifeboat_engine::KdfParams::insecure_for_tests(),
    )
    .await
    .unwrap();
    // With the metadata cache, as the CLI runs it: index files and snapshots
    // are then read whole from the destination only to verify them.
    let cache = tempfile::tempdir().unwrap();
    let repo = Repository::open(dests, b"pw").await.unwrap().with_cache(
        lifeboat_engine::repo::cache::MetadataCache::new(cache.path()),
    );
    run_backup(&repo, src.path()).await.unwrap();
    // A second snapshot adds an index file and a snapshot to the objects.
    std::fs::write(src.path().join("later"), b"a second snapshot").unwrap();
    run_backup(&repo, src.path()).await.unwrap();
    let packs: BTreeSet<String> = keys_under(&memory, "data/").await.into_iter().collect();
    assert!(packs.len() >= 5, "{} packs", packs.len());
    let mut objects = packs.clone();
    for prefix in ["index/", "snapshots/"] {
        objects.extend(keys_under(&memory, prefix).await);
    }
    // A structure check fills the cache.
    assert!(run_check(&repo, CheckOptions::default()).await.is_ok());
    recorder.take_whole_reads();
    let mut read: Vec<String> = Vec::new();
    for n in 1..=7 {
        let options = CheckOptions {
            subset: Some(Subset::Slice { n, of: 7 }),
            ..Default::default()
        };
        let report = run_check(&repo, options).await;
        assert!(report.is_ok(), "{:?}", report.problems);
        read.extend(
            recorder
                .take_whole_reads()
                .into_iter()
                .filter(|k| !k.starts_with("keys/") && k != "config"),
        );
    }
    read.sort();
    let distinct: BTreeSet<String> = read.iter().cloned().collect();
    assert_eq!(distinct, objects);
    assert_eq!(read.len(), objects.len(), "some object was read twice");
}
