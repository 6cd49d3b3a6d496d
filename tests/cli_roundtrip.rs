//! End to end through the `lifeboat` binary: back up a tree holding every kind
//! of entry, restore it and compare it with the source; deduplication across
//! runs; partial and verified restores.
//!
//! Needs `cargo build -p lifeboat-cli` first (see `lifeboat_tests::lifeboat_bin`).

use std::fs;
use std::time::Duration;

use lifeboat_tests::tree::{self, TreeOptions};
use lifeboat_tests::{Sandbox, PASSWORD};
use serde_json::Value;

fn count(summary: &Value, field: &str) -> u64 {
    summary[field]
        .as_u64()
        .unwrap_or_else(|| panic!("summary has no number {field:?}: {summary}"))
}

/// The one test with the 200 MB file: everything a backup must carry comes back
/// identical, and the sparse file stays sparse.
#[test]
fn round_trip_preserves_every_kind_of_entry() {
    let sb = Sandbox::new();
    sb.init_repo();
    let src = sb.join("src");
    let opts = TreeOptions {
        big_file: Some(200_000_000),
        small_files: 2000,
        sparse_size: 128 << 20,
        depth: 60,
        fifo: true,
    };
    let built = tree::build_tree(&src, &opts);
    assert!(
        tree::allocated_bytes(&built.sparse) < opts.sparse_size / 8,
        "test setup: the source file system did not keep the hole in {:?}",
        built.sparse
    );

    let summary = sb.backup(&[&src]);
    assert_eq!(count(&summary, "errors"), 0, "{summary}");
    assert_eq!(
        count(&summary, "total_files_processed"),
        built.files as u64,
        "{summary}"
    );
    // About half of the big file compresses away.
    let (added, packed) = (
        count(&summary, "data_added"),
        count(&summary, "data_added_packed"),
    );
    assert!(
        packed < added / 4 * 3,
        "stored {packed} bytes for {added}: not compressed: {summary}"
    );

    let target = sb.join("restored");
    sb.command()
        .password(PASSWORD)
        .dest(&sb.repo())
        .args([
            "restore".as_ref(),
            "latest".as_ref(),
            "--target".as_ref(),
            target.as_os_str(),
        ])
        .timeout(Duration::from_secs(3 * 60))
        .run()
        .success();
    let copy = tree::restored(&target, &src);
    tree::assert_same_tree(&src, &copy);

    let sparse_copy = tree::restored(&target, &built.sparse);
    let allocated = tree::allocated_bytes(&sparse_copy);
    assert!(
        allocated < opts.sparse_size / 8,
        "restored sparse file {sparse_copy:?} allocates {allocated} bytes for {} bytes of size \
         with 4 KiB of data: its hole was written as zeros",
        opts.sparse_size
    );
}

/// A second run of an unchanged tree stores no data; `--force` re-reads
/// everything and still stores nothing; a one-byte edit stores about one chunk;
/// a copy under a new name stores nothing.
#[test]
fn dedup_across_runs() {
    let sb = Sandbox::new();
    sb.init_repo();
    let src = sb.join("src");
    let random = src.join("random.bin");
    fs::create_dir_all(&src).expect("mkdir");
    tree::write_generated(&random, 20 << 20, 42, false);
    for i in 0..50u64 {
        tree::write(
            &src.join(format!("small/f{i:02}")),
            &tree::random_bytes(1000 + i as usize, i),
        );
    }
    let files = tree::regular_files(&src).len() as u64;
    let chunk_max = u64::from(lifeboat_engine::RepoParams::default().chunk_max);

    let first = sb.backup(&[&src]);
    assert_eq!(count(&first, "files_new"), files, "{first}");
    // 50 small files, and at least 3 chunks of at most chunk_max for 20 MiB.
    assert!(count(&first, "data_blobs") >= 53, "{first}");

    let second = sb.backup(&[&src]);
    assert_eq!(
        count(&second, "data_blobs"),
        0,
        "unchanged tree stored data: {second}"
    );
    assert_eq!(count(&second, "files_unmodified"), files, "{second}");
    assert_eq!(
        count(&second, "files_new") + count(&second, "files_changed"),
        0,
        "{second}"
    );
    assert!(count(&second, "data_added") < 64 << 10, "{second}");

    let forced = sb
        .repo_cmd([
            "--json".as_ref(),
            "backup".as_ref(),
            "--force".as_ref(),
            src.as_os_str(),
        ])
        .success()
        .summary();
    assert_eq!(
        count(&forced, "files_unmodified"),
        0,
        "--force skipped files: {forced}"
    );
    assert_eq!(count(&forced, "total_files_processed"), files, "{forced}");
    assert_eq!(
        count(&forced, "data_blobs"),
        0,
        "re-read content was stored again: {forced}"
    );
    assert!(count(&forced, "data_added") < 64 << 10, "{forced}");

    tree::flip_byte(&random, 10 << 20);
    let edited = sb.backup(&[&src]);
    assert_eq!(count(&edited, "files_changed"), 1, "{edited}");
    assert_eq!(count(&edited, "files_unmodified"), files - 1, "{edited}");
    let blobs = count(&edited, "data_blobs");
    assert!(
        (1..=3).contains(&blobs),
        "a one-byte edit stored {blobs} chunks: {edited}"
    );
    let added = count(&edited, "data_added");
    assert!(
        added > 0 && added < 3 * chunk_max,
        "a one-byte edit stored {added} bytes (max chunk {chunk_max}): {edited}"
    );

    fs::copy(&random, src.join("copy.bin")).expect("copy");
    let copied = sb.backup(&[&src]);
    assert_eq!(count(&copied, "files_new"), 1, "{copied}");
    assert_eq!(
        count(&copied, "data_blobs"),
        0,
        "a copy was stored again: {copied}"
    );

    // Every snapshot still restores the content it had.
    let target = sb.join("restored");
    sb.restore_latest(&target).success();
    tree::assert_same_tree(&src, &tree::restored(&target, &src));
}

/// `--include` restores one subtree (and its ancestors) only; `--verify`
/// re-reads what it wrote.
#[test]
fn partial_and_verified_restore() {
    let sb = Sandbox::new();
    sb.init_repo();
    let src = sb.join("src");
    let opts = TreeOptions {
        small_files: 100,
        depth: 5,
        sparse_size: 4 << 20,
        fifo: false,
        ..TreeOptions::default()
    };
    tree::build_tree(&src, &opts);
    sb.backup(&[&src]);

    let target = sb.join("partial");
    let names = src.join("names");
    sb.repo_cmd([
        "restore".as_ref(),
        "latest".as_ref(),
        "--target".as_ref(),
        target.as_os_str(),
        "--include".as_ref(),
        names.as_os_str(),
    ])
    .success();
    let copy = tree::restored(&target, &src);
    tree::assert_same_tree(&names, &copy.join("names"));
    let top: Vec<_> = fs::read_dir(&copy)
        .expect("restored source dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(top, vec!["names"], "--include restored more than the path");

    let target = sb.join("verified");
    let summary = sb
        .repo_cmd([
            "--json".as_ref(),
            "restore".as_ref(),
            "latest".as_ref(),
            "--verify".as_ref(),
            "--target".as_ref(),
            target.as_os_str(),
        ])
        .success()
        .summary();
    let restored = count(&summary, "files_restored");
    assert!(restored > 100, "{summary}");
    assert_eq!(count(&summary, "files_verified"), restored, "{summary}");
    assert_eq!(summary["errors"], Value::Array(vec![]), "{summary}");
    tree::assert_same_tree(&src, &tree::restored(&target, &src));
}

/// Restoring a named pipe creates it and sets its mode and time without
/// opening it (an open(2) of a FIFO blocks until a writer comes).
#[test]
fn restore_of_a_named_pipe_completes() {
    let sb = Sandbox::new();
    sb.init_repo();
    let src = sb.join("src");
    tree::write(&src.join("before.txt"), b"a file next to the pipe");
    tree::mkfifo(&src.join("pipe"));
    tree::chmod(&src.join("pipe"), 0o640);
    tree::fix_times(&src);
    sb.backup(&[&src]);
    let target = sb.join("restored");
    sb.command()
        .password(PASSWORD)
        .dest(&sb.repo())
        .args([
            "restore".as_ref(),
            "latest".as_ref(),
            "--target".as_ref(),
            target.as_os_str(),
        ])
        .timeout(Duration::from_secs(60))
        .run()
        .success();
    tree::assert_same_tree(&src, &tree::restored(&target, &src));
}

/// A second restore into the same target repairs what changed there since.
#[test]
fn restore_over_an_existing_copy() {
    let sb = Sandbox::new();
    sb.init_repo();
    let src = sb.join("src");
    let opts = TreeOptions {
        small_files: 30,
        depth: 3,
        sparse_size: 2 << 20,
        fifo: false,
        ..TreeOptions::default()
    };
    tree::build_tree(&src, &opts);
    sb.backup(&[&src]);
    let target = sb.join("restored");
    let restore = || {
        sb.restore_latest(&target).success();
    };
    restore();
    let copy = tree::restored(&target, &src);
    tree::write(
        &copy.join("hard/a"),
        b"overwritten through one of its links",
    );
    fs::remove_file(copy.join("small/d01/f0001")).expect("remove");
    fs::remove_file(copy.join("links/dangling")).expect("remove");
    tree::chmod(&copy.join("perms/f640"), 0o777);
    tree::write(&copy.join("sparse.img"), &tree::random_bytes(100, 1));
    restore();
    tree::assert_same_tree(&src, &copy);
}

/// One run with a directory, a single file and a symlink as targets; a dry run
/// writes nothing.
#[test]
fn several_targets_and_dry_run() {
    let sb = Sandbox::new();
    sb.init_repo();
    let dir = sb.join("dir");
    tree::write(&dir.join("inside.txt"), b"inside");
    let file = sb.join("single.txt");
    tree::write(&file, b"a lone file");
    let link = sb.join("link");
    std::os::unix::fs::symlink("single.txt", &link).expect("symlink");
    tree::fix_times(sb.path());

    // Objects only: an empty `locks/` directory may stay behind.
    let objects = || {
        let mut all = tree::digest_dir(&sb.repo());
        all.retain(|_, kind| kind.starts_with("file:"));
        all
    };
    let before = objects();
    let dry = sb
        .repo_cmd([
            "--json".as_ref(),
            "backup".as_ref(),
            "-n".as_ref(),
            dir.as_os_str(),
            file.as_os_str(),
        ])
        .success()
        .summary();
    assert_eq!(dry["dry_run"], true, "{dry}");
    assert_eq!(dry["snapshot_id"], Value::Null, "{dry}");
    assert_eq!(count(&dry, "files_new"), 2, "{dry}");
    assert_eq!(before, objects(), "a dry run wrote to the repository");

    sb.backup(&[&link, &file, &dir]);
    let snap = &sb.snapshots()[0];
    let mut expected: Vec<String> = [&dir, &file, &link]
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    expected.sort();
    assert_eq!(snap["paths"], serde_json::json!(expected), "{snap}");
    let target = sb.join("restored");
    sb.restore_latest(&target).success();
    for path in [&dir, &file, &link] {
        tree::assert_same_tree(path, &tree::restored(&target, path));
    }
    assert!(
        !tree::restored(&target, &sb.repo()).exists(),
        "restored a sibling of the targets"
    );
}
