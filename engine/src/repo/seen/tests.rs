use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;

fn id(n: u8) -> SnapshotId {
    SnapshotId([n; 32])
}

fn hex(n: u8) -> String {
    id(n).to_hex()
}

fn set(items: &[String]) -> BTreeSet<String> {
    items.iter().cloned().collect()
}

fn listing(name: &str, snapshots: &[String], records: Option<&[&str]>) -> Listing {
    Listing {
        name: name.into(),
        identity: format!("file:///{name}"),
        snapshots: set(snapshots),
        records: records.map(|r| r.iter().map(|s| s.to_string()).collect()),
    }
}

fn no_tombstones() -> Tombstones {
    Tombstones::default()
}

fn remembered(dest: &str, snapshots: &[String], records: &[&str]) -> SeenFile {
    let mut file = SeenFile {
        version: VERSION,
        ..Default::default()
    };
    file.destinations.insert(
        format!("file:///{dest}"),
        SeenDestination {
            name: dest.into(),
            snapshots: set(snapshots),
            deletion_records: records.iter().map(|s| s.to_string()).collect(),
        },
    );
    file
}

/// A state whose hook counts and keeps the rollbacks it is told about.
fn state_in(dir: &Path) -> (LocalState, Arc<Mutex<Vec<Rollback>>>) {
    let told = Arc::new(Mutex::new(Vec::new()));
    let sink = told.clone();
    let state = LocalState::new(dir).on_rollback(move |r| {
        sink.lock().expect("sink").push(r.clone());
    });
    (state, told)
}

#[test]
fn merging_is_a_union_and_removed_snapshots_leave_every_destination() {
    let mut a = remembered("usb", &[hex(1), hex(2)], &["r1"]);
    let b = remembered("usb", &[hex(3)], &["r2"]);
    let mut c = remembered("nas", &[hex(1)], &[]);
    c.removed_snapshots.insert(hex(2));
    a.merge(&b);
    a.merge(&c);
    let usb = &a.destinations["file:///usb"];
    assert_eq!(usb.snapshots, set(&[hex(1), hex(3)]));
    assert_eq!(usb.deletion_records, set(&["r1".into(), "r2".into()]));
    assert_eq!(a.destinations["file:///nas"].snapshots, set(&[hex(1)]));
    assert_eq!(a.removed_snapshots, set(&[hex(2)]));
    // Merging is idempotent and order does not matter.
    let mut again = a.clone();
    again.merge(&b);
    again.merge(&c);
    assert_eq!(again, a);
    let mut reversed = c.clone();
    reversed.merge(&b);
    reversed.merge(&remembered("usb", &[hex(1), hex(2)], &["r1"]));
    assert_eq!(reversed.destinations, a.destinations);
}

#[test]
fn a_destination_that_lost_a_snapshot_without_a_record_is_rolled_back() {
    let before = remembered("usb", &[hex(1), hex(2)], &[]);
    let now = [
        listing("usb", &[hex(1)], Some(&[])),
        listing("nas", &[hex(1), hex(2)], Some(&[])),
    ];
    let found = detect(&before, &now, &BTreeSet::new(), Path::new("/s/seen.json"));
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].destination, "usb");
    assert_eq!(found[0].snapshots, vec![id(2)]);
    assert_eq!(found[0].sources, vec!["nas".to_string()]);
    assert!(found[0].snapshots_nowhere.is_empty());
    let text = found[0].to_string();
    assert!(
        text.contains(&format!(
            "destination usb no longer lists snapshot {} that it held before, and no deletion \
             record removes it: it may have been rolled back to an older copy; run `lifeboat \
             sync` to copy it back from nas",
            id(2).short()
        )),
        "{text}"
    );

    // Covered by a deletion record: legitimately gone.
    let removed = set(&[hex(2)]);
    assert!(detect(&before, &now, &removed, Path::new("/s")).is_empty());
}

#[test]
fn lagging_new_and_unlisted_destinations_are_not_rolled_back() {
    let before = remembered("usb", &[hex(1)], &["r1"]);
    // nas never listed anything here: it lags, at most.
    let nas = listing("nas", &[], Some(&[]));
    // usb listed more than before: nothing lost.
    let usb = listing("usb", &[hex(1), hex(2)], Some(&["r1", "r2"]));
    assert!(detect(&before, &[usb, nas], &BTreeSet::new(), Path::new("/s")).is_empty());
    // Nothing remembered at all (the first open on this machine).
    let lost = listing("usb", &[], Some(&[]));
    assert!(detect(
        &SeenFile::default(),
        &[lost],
        &BTreeSet::new(),
        Path::new("/s")
    )
    .is_empty());
}

#[test]
fn a_lost_deletion_record_is_a_rollback_and_one_held_nowhere_is_named_so() {
    let before = remembered("usb", &[hex(1)], &["aaaaaaaa11", "bbbbbbbb22"]);
    let now = [
        listing("usb", &[hex(1)], Some(&[])),
        listing("nas", &[hex(1)], Some(&["aaaaaaaa11"])),
    ];
    let found = detect(&before, &now, &BTreeSet::new(), Path::new("/s/seen.json"));
    assert_eq!(found.len(), 1);
    assert_eq!(
        found[0].deletion_records,
        vec!["aaaaaaaa11".to_string(), "bbbbbbbb22".to_string()]
    );
    assert_eq!(found[0].records_nowhere, vec!["bbbbbbbb22".to_string()]);
    let text = found[0].to_string();
    assert!(
        text.contains("deletion records aaaaaaaa, bbbbbbbb")
            && text.contains("deletion records are never removed")
            && text.contains("remove /s/seen.json"),
        "{text}"
    );
    // Records not listed in this run (the listing failed) are not compared.
    let unlisted = [listing("usb", &[hex(1)], None)];
    assert!(detect(&before, &unlisted, &BTreeSet::new(), Path::new("/s")).is_empty());
}

#[test]
fn a_snapshot_no_destination_lists_points_to_forget() {
    let before = remembered("usb", &[hex(7)], &[]);
    let found = detect(
        &before,
        &[listing("usb", &[], Some(&[]))],
        &BTreeSet::new(),
        Path::new("/s"),
    );
    assert_eq!(found[0].snapshots_nowhere, vec![id(7)]);
    let text = found[0].to_string();
    assert!(
        text.contains(&format!("`lifeboat forget {}`", id(7).short())),
        "{text}"
    );
}

#[test]
fn only_verified_unremoved_snapshots_and_opened_records_are_learned() {
    let listings = [listing(
        "usb",
        &[hex(1), hex(2), hex(3)],
        Some(&["good", "junk"]),
    )];
    let verified = set(&[hex(1), hex(3)]);
    let removed = set(&[hex(3)]);
    let records = set(&["good".into()]);
    let file = learned(&listings, &verified, &removed, &records);
    let usb = &file.destinations["file:///usb"];
    assert_eq!(usb.snapshots, set(&[hex(1)]));
    assert_eq!(usb.deletion_records, set(&["good".into()]));
    assert_eq!(file.removed_snapshots, removed);
}

#[test]
fn observe_remembers_then_reports_a_rollback_once_per_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state_dir = dir.path().join("repo-id");
    let (state, told) = state_in(&state_dir);
    // First run: nothing remembered, nothing reported; what opened is kept.
    state.observe(
        vec![listing("usb", &[hex(1), hex(2)], Some(&[]))],
        &no_tombstones(),
    );
    assert!(state.rollbacks().is_empty());
    state.remember([id(1), id(2)]);
    let file = state.load();
    assert_eq!(
        file.destinations["file:///usb"].snapshots,
        set(&[hex(1), hex(2)])
    );
    // Owner-only directory and file.
    for path in [state_dir.clone(), state.path()] {
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
        assert_eq!(mode & 0o077, 0, "{}: {mode:o}", path.display());
    }

    // Second run: snapshot 2 is gone without a record.
    let (state, told2) = state_in(&state_dir);
    for _ in 0..2 {
        state.observe(vec![listing("usb", &[hex(1)], Some(&[]))], &no_tombstones());
    }
    assert_eq!(told2.lock().expect("told").len(), 1, "one warning per run");
    assert_eq!(state.rollbacks()[0].snapshots, vec![id(2)]);
    // It stays remembered: the warning lasts until it is listed again...
    assert!(state.load().destinations["file:///usb"]
        .snapshots
        .contains(&hex(2)));
    // ...or a record removes it.
    let tombstones = Tombstones::from_parts([crate::ObjectKind::Snapshot.key(&hex(2))], [], []);
    state.observe(vec![listing("usb", &[hex(1)], Some(&[]))], &tombstones);
    assert!(state.rollbacks().is_empty());
    let file = state.load();
    assert!(!file.destinations["file:///usb"].snapshots.contains(&hex(2)));
    assert!(file.removed_snapshots.contains(&hex(2)));
    assert!(told.lock().expect("told").is_empty());
}

#[test]
fn forgotten_snapshots_end_the_warning() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (state, _) = state_in(dir.path());
    state.observe(vec![listing("usb", &[hex(5)], Some(&[]))], &no_tombstones());
    state.remember([id(5)]);
    state.forgotten([id(5)]);
    let (state, told) = state_in(dir.path());
    state.observe(vec![listing("usb", &[], Some(&[]))], &no_tombstones());
    assert!(told.lock().expect("told").is_empty());
    assert!(state.load().destinations["file:///usb"]
        .snapshots
        .is_empty());
}

#[test]
fn a_failed_listing_is_neither_compared_nor_remembered() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (state, _) = state_in(dir.path());
    state.observe(vec![listing("usb", &[hex(1)], Some(&[]))], &no_tombstones());
    state.remember([id(1)]);
    // nas did not list (not in the listings): nothing filed for it.
    let (state, told) = state_in(dir.path());
    state.observe(vec![listing("usb", &[hex(1)], Some(&[]))], &no_tombstones());
    state.remember([id(1)]);
    assert!(!state.load().destinations.contains_key("file:///nas"));
    assert!(told.lock().expect("told").is_empty());
}

#[test]
fn a_run_that_learned_nothing_writes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (state, _) = state_in(dir.path());
    state.observe(vec![listing("usb", &[], Some(&[]))], &no_tombstones());
    state.remember([]);
    assert!(!dir.path().join("seen.lock").exists());
    assert!(!state.path().exists());
}

#[test]
fn two_runs_at_once_both_keep_what_they_saw() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_path_buf();
    let rounds = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for n in 0..4u8 {
            let (path, rounds) = (&path, &rounds);
            scope.spawn(move || {
                // Each "command" has its own LocalState (its own process).
                for k in 0..10u8 {
                    let (state, _) = state_in(path);
                    let snap = n * 16 + k;
                    let dest = format!("d{n}");
                    state.observe(
                        vec![listing(&dest, &[hex(snap)], Some(&[]))],
                        &no_tombstones(),
                    );
                    state.remember([id(snap)]);
                    rounds.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    });
    assert_eq!(rounds.load(Ordering::Relaxed), 40);
    let (state, _) = state_in(&path);
    let file = state.load();
    for n in 0..4u8 {
        let want: BTreeSet<String> = (0..10u8).map(|k| hex(n * 16 + k)).collect();
        assert_eq!(file.destinations[&format!("file:///d{n}")].snapshots, want);
    }
    // No temporary file is left behind.
    let leftovers: Vec<_> = std::fs::read_dir(&path)
        .expect("read dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn a_damaged_file_is_a_warning_set_aside_and_started_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (state, told) = state_in(dir.path());
    std::fs::write(state.path(), b"{\"destinations\": [not json").expect("write");
    // Reads as empty: nothing to compare, nothing reported, no failure.
    assert_eq!(state.load(), SeenFile::default());
    state.observe(vec![listing("usb", &[hex(1)], Some(&[]))], &no_tombstones());
    state.remember([id(1)]);
    assert!(told.lock().expect("told").is_empty());
    let aside = dir.path().join("seen.json.damaged");
    assert!(aside.exists(), "the damaged file is kept aside");
    assert!(state.load().destinations["file:///usb"]
        .snapshots
        .contains(&hex(1)));
}

#[test]
fn a_newer_file_is_left_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (state, _) = state_in(dir.path());
    let newer = b"{\"version\": 99, \"destinations\": {}}";
    std::fs::write(state.path(), newer).expect("write");
    state.observe(vec![listing("usb", &[hex(1)], Some(&[]))], &no_tombstones());
    state.remember([id(1)]);
    assert_eq!(std::fs::read(state.path()).expect("read"), newer);
}

#[test]
fn an_unwritable_directory_is_only_a_warning() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A file where the directory should be: every write fails.
    let blocked = dir.path().join("blocked");
    std::fs::write(&blocked, b"").expect("write");
    let (state, told) = state_in(&blocked.join("repo"));
    state.observe(vec![listing("usb", &[hex(1)], Some(&[]))], &no_tombstones());
    state.remember([id(1)]);
    assert!(state.rollbacks().is_empty());
    assert!(told.lock().expect("told").is_empty());
}
