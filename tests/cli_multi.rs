//! End to end through the `lifeboat` binary with several destinations at once:
//! a local directory, S3 (moto, `scripts/servers/s3.sh`) and SFTP (a private
//! sshd, `scripts/servers/sftp.sh`). ARCHITECTURE.md invariant 4 and the tests issue 3
//! asks for: restore from any two of three, an S3 server killed in the middle
//! of a backup, a destination unreachable from the start, and a new empty
//! destination seeded by `sync`.
//!
//! Without the servers these tests fail (they never skip): run `./scripts/test.sh`.
//! Needs `cargo build -p lifeboat-cli` first (see `lifeboat_tests::lifeboat_bin`).

use std::time::{Duration, Instant};

use lifeboat_tests::multi::*;
use lifeboat_tests::tree;
use lifeboat_tests::{Running, Sandbox};

/// Backup to local + S3 + SFTP; then each pair of two restores the source
/// alone, and with destinations deleted outright the full list fails over.
#[test]
fn restore_from_any_two_of_three_and_fail_over() {
    let sb = Sandbox::new();
    let local = sb.join("usb");
    let local_url = local.display().to_string();
    let s3 = shared_s3_url();
    let (sftp, sftp_dir) = sftp_dest();
    let all = [local_url.as_str(), s3.as_str(), sftp.as_str()];
    init(&sb, &all);

    let src = small_tree(&sb);
    let out = run(&sb, &all, backup_args(&src));
    out.success();
    let summary = out.summary();
    assert_eq!(summary["errors"].as_u64(), Some(0), "{summary}");
    let s3_name = format!("s3-{}", var("LIFEBOAT_TEST_S3_BUCKET"));
    assert_eq!(
        reached(&summary),
        sorted(&["local-usb", &s3_name, SFTP_NAME]),
        "{summary}"
    );
    assert!(missed(&summary).is_empty(), "{summary}");
    assert_status_complete(&sb, &all);

    // Each destination left out in turn: the other two hold everything.
    for left_out in 0..all.len() {
        let two: Vec<&str> = (0..all.len())
            .filter(|&i| i != left_out)
            .map(|i| all[i])
            .collect();
        assert_restores(&sb, &two, &src);
        run(&sb, &two, ["check", "--read-data"]).success();
    }

    // The first destination in preference order deleted outright: the full
    // list fails over to S3 and SFTP.
    std::fs::remove_dir_all(&local).expect("delete the local destination");
    assert_restores(&sb, &all, &src);
    // And with SFTP deleted too, S3 alone serves the restore.
    std::fs::remove_dir_all(&sftp_dir).expect("delete the SFTP destination");
    assert_restores(&sb, &all, &src);
}

/// Kill the S3 server in the middle of a backup: local and SFTP get the
/// snapshot, the run exits 3 naming S3; a restarted (empty) S3 is seeded by
/// `sync`, after which `status` shows no lag and each destination alone
/// passes `check --read-data`.
#[test]
fn s3_killed_mid_backup_then_synced() {
    const BUCKET: &str = "lifeboat-private";
    let s3_name = format!("s3-{BUCKET}");
    let port = free_port();
    let mut moto = Moto::start(port);
    moto.create_bucket(BUCKET);

    let sb = Sandbox::new();
    let local = sb.join("usb");
    let local_url = local.display().to_string();
    let s3 = s3_url(&moto.endpoint(), BUCKET);
    let (sftp, _sftp_dir) = sftp_dest();
    let all = [local_url.as_str(), s3.as_str(), sftp.as_str()];
    init(&sb, &all);

    // 256 MiB of incompressible data in 8 files: several seconds of uploads.
    let src = sb.join("src");
    std::fs::create_dir_all(&src).expect("mkdir src");
    for i in 0..8u64 {
        tree::write_generated(&src.join(format!("big{i}.bin")), 32 << 20, 1000 + i, false);
    }
    tree::text_tree(&src.join("text"));

    let mut running: Running = lb(&sb, &all).args(backup_args(&src)).spawn();
    // Kill moto once uploads are under way (the first packs have landed locally).
    let started = Instant::now();
    while files_under(&local.join("data")) == 0 {
        assert!(
            running.is_running(),
            "the backup ended before any pack reached the local destination: {:?}",
            running.wait()
        );
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no pack after 120 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        running.is_running(),
        "the backup ended before moto could be killed: make the tree bigger"
    );
    moto.kill();
    let out = running.wait();
    out.assert_code(3);
    let summary = out.summary();
    assert!(summary["snapshot_id"].is_string(), "{summary}");
    assert_eq!(missed(&summary), vec![s3_name.clone()], "{summary}");
    assert_eq!(
        reached(&summary),
        sorted(&["local-usb", SFTP_NAME]),
        "{summary}"
    );

    // S3 back on the same port, empty (moto keeps its state in memory).
    let moto = Moto::start(port);
    moto.create_bucket(BUCKET);
    let holders = snapshot_holders(&sb, &all);
    assert_eq!(holders.len(), 1, "{holders:?}");
    assert_eq!(holders[0].0, summary["snapshot_id"].as_str().unwrap());
    assert_eq!(
        holders[0].1,
        sorted(&["local-usb", SFTP_NAME]),
        "{holders:?}"
    );
    let (before, list) = status(&sb, &all);
    before.assert_code(3);
    let s3_status = list
        .iter()
        .find(|d| d["name"] == s3_name.as_str())
        .unwrap_or_else(|| panic!("{s3_name} not in status: {list:?}"));
    assert_eq!(s3_status["has_repository"], false, "{s3_status}");

    // An empty destination is seeded only when named.
    run(&sb, &all, ["sync"]).assert_code(3);
    run(&sb, &all, ["sync", "--seed", s3_name.as_str()]).success();
    assert_status_complete(&sb, &all);
    let holders = snapshot_holders(&sb, &all);
    assert_eq!(
        holders[0].1,
        sorted(&["local-usb", &s3_name, SFTP_NAME]),
        "{holders:?}"
    );
    for one in all {
        run(&sb, &[one], ["check", "--read-data"]).success();
    }
    assert_restores(&sb, &[s3.as_str()], &src);
    drop(moto);
}

/// An S3 destination on a port where nothing listens: the backup goes on to
/// local and SFTP, exits 3 naming it, and costs no more than the retry budget.
#[test]
fn unreachable_destination_is_bounded_and_reported() {
    let sb = Sandbox::new();
    let src = small_tree(&sb);

    // The same backup to local + SFTP alone, for the time it takes.
    let base_local = sb.join("base");
    let base_local_url = base_local.display().to_string();
    let (base_sftp, _) = sftp_dest();
    let base = [base_local_url.as_str(), base_sftp.as_str()];
    init(&sb, &base);
    let t0 = Instant::now();
    run(&sb, &base, backup_args(&src)).success();
    let baseline = t0.elapsed();

    let local = sb.join("usb");
    let local_url = local.display().to_string();
    let (sftp, _) = sftp_dest();
    init(&sb, &[local_url.as_str(), sftp.as_str()]);
    let dead = format!(
        "s3://unreachable/multi?endpoint=http://127.0.0.1:{}&region=us-east-1",
        free_port()
    );
    let all = [local_url.as_str(), dead.as_str(), sftp.as_str()];
    let t1 = Instant::now();
    let out = run(&sb, &all, backup_args(&src));
    let took = t1.elapsed();
    eprintln!("backup to local + SFTP: {baseline:?}; with an unreachable S3 too: {took:?}");
    out.assert_code(3);
    let summary = out.summary();
    assert!(summary["snapshot_id"].is_string(), "{summary}");
    assert_eq!(missed(&summary), vec!["s3-unreachable"], "{summary}");
    assert_eq!(
        reached(&summary),
        sorted(&["local-usb", SFTP_NAME]),
        "{summary}"
    );
    let error = summary["destinations_missed"][0]["error"]
        .as_str()
        .unwrap_or_default();
    assert!(!error.is_empty(), "no error for the missed one: {summary}");
    assert!(
        took < baseline + Duration::from_secs(30),
        "the backup with an unreachable destination took {took:?}, the same backup \
         without it {baseline:?}: more than the retry budget"
    );

    // The human output names it too.
    let human = run(&sb, &all, ["backup".as_ref(), src.as_os_str()]);
    human.assert_code(3);
    human.stderr_has("s3-unreachable");

    let two = [local_url.as_str(), sftp.as_str()];
    let holders = snapshot_holders(&sb, &two);
    assert_eq!(holders.len(), 2, "{holders:?}");
    for (_, h) in &holders {
        assert_eq!(*h, sorted(&["local-usb", SFTP_NAME]), "{holders:?}");
    }
    assert_restores(&sb, &[sftp.as_str()], &src);
}

/// A new empty destination added to the list is seeded completely by
/// `sync --seed`, then restores and checks alone.
#[test]
fn new_empty_destination_is_seeded_by_sync() {
    let sb = Sandbox::new();
    let local = sb.join("usb");
    let local_url = local.display().to_string();
    let (sftp, _) = sftp_dest();
    init(&sb, &[local_url.as_str(), sftp.as_str()]);
    let src = small_tree(&sb);
    run(&sb, &[local_url.as_str(), sftp.as_str()], backup_args(&src)).success();
    tree::write(&src.join("text/later.txt"), b"a second snapshot");
    run(&sb, &[local_url.as_str(), sftp.as_str()], backup_args(&src)).success();

    // The new destination first in preference order: it holds nothing yet.
    let new = shared_s3_url();
    let all = [new.as_str(), local_url.as_str(), sftp.as_str()];
    let (out, list) = status(&sb, &all);
    out.assert_code(3);
    assert_eq!(list[0]["has_repository"], false, "{list:?}");

    let new_name = format!("s3-{}", var("LIFEBOAT_TEST_S3_BUCKET"));
    let synced = run(&sb, &all, ["--json", "sync", "--seed", new_name.as_str()]);
    synced.success();
    let summary = synced.summary();
    assert!(summary["copied"].as_u64().unwrap_or(0) > 0, "{summary}");
    assert_eq!(
        summary["failed"].as_array().map(Vec::len),
        Some(0),
        "{summary}"
    );
    assert_status_complete(&sb, &all);

    // Idempotent: nothing left to copy.
    let again = run(&sb, &all, ["--json", "sync"]);
    again.success();
    assert_eq!(
        again.summary()["copied"].as_u64(),
        Some(0),
        "{}",
        again.summary()
    );

    let alone = [new.as_str()];
    assert_eq!(snapshot_holders(&sb, &alone).len(), 2);
    assert_restores(&sb, &alone, &src);
    run(&sb, &alone, ["check", "--read-data"]).success();
}
