//! Issue 12, item 8: output streams and exit codes. Human summaries go to
//! stdout (`lifeboat backup > log` keeps them), progress and warnings to
//! stderr, `--json` alone on stdout; usage mistakes exit 2; `status` exits 0
//! when it could report and 3 with `--fail-on-lag`; a backup whose lock was
//! removed while it ran stops with "lock lost" and writes no snapshot.

use std::time::{Duration, Instant};

use lifeboat_tests::multi::files_under;
use lifeboat_tests::{tree, Sandbox, PASSWORD};

#[test]
fn summaries_go_to_stdout_and_warnings_to_stderr() {
    let sb = Sandbox::new();
    sb.init_repo();
    let src = sb.join("src");
    tree::write(&src.join("a.txt"), b"alpha");
    tree::write(&src.join("b/c.txt"), b"gamma");

    let out = sb.repo_cmd(["backup".as_ref(), src.as_os_str()]);
    out.success()
        .stdout_has("processed 2 files")
        .stdout_has("saved")
        .stdout_has("stored on: local-repo");
    assert!(!out.stderr.contains("processed"), "{}", out.stderr);

    let target = sb.join("restored");
    let restored = sb.restore_latest(&target);
    restored.success().stdout_has("restored snapshot");
    assert!(restored.stderr.trim().is_empty(), "{}", restored.stderr);
    sb.repo_cmd(["check"])
        .success()
        .stdout_has("no errors were found");
    sb.repo_cmd(["forget", "--keep-last", "1"])
        .success()
        .stdout_has("kept 1 snapshot");

    // --json: stdout is JSON lines only; -q: nothing on stdout.
    let json = sb.repo_cmd(["--json".as_ref(), "backup".as_ref(), src.as_os_str()]);
    json.success();
    assert!(!json.json_lines().is_empty());
    let quiet = sb.repo_cmd(["-q".as_ref(), "backup".as_ref(), src.as_os_str()]);
    quiet.success();
    assert!(quiet.stdout.is_empty(), "{}", quiet.stdout_text());
}

#[test]
fn usage_mistakes_exit_2_and_status_reports_with_0() {
    let sb = Sandbox::new();
    sb.init_repo();
    let src = sb.join("src");
    tree::write(&src.join("a.txt"), b"alpha");
    sb.backup(&[&src]);
    sb.repo_cmd(["forget"])
        .assert_code(2)
        .stderr_has("needs a policy");
    sb.repo_cmd(["forget", "--keep-last", "1", "abcd1234"])
        .assert_code(2)
        .stderr_has("not both");
    sb.repo_cmd(["key", "remove", "zz"]).assert_code(2);
    sb.repo_cmd(["prune", "--max-unused", "150%"])
        .assert_code(2);

    // A second destination that lags: status reports (0), --fail-on-lag says 3.
    let lagging = sb.join("lagging");
    let both = |args: &[&str]| {
        sb.command()
            .password(PASSWORD)
            .dest(&sb.repo())
            .dest(&lagging)
            .args(args)
            .run()
    };
    both(&["sync", "--seed", "local-lagging"]).success();
    tree::write(&src.join("b.txt"), b"beta");
    sb.backup(&[&src]);
    both(&["status"]).success().stdout_has("local-lagging");
    both(&["status", "--fail-on-lag"]).assert_code(3);
    both(&["sync"]).success();
    both(&["status", "--fail-on-lag"]).success();
}

/// A lock removed by `unlock --force` while a backup runs: the backup
/// notices before it commits, stops with exit 1 and "lock lost", and no
/// snapshot appears.
#[test]
fn a_backup_whose_lock_was_removed_writes_no_snapshot() {
    let sb = Sandbox::new();
    sb.init_repo();
    let src = sb.join("src");
    std::fs::create_dir_all(&src).expect("mkdir src");
    for i in 0..8u64 {
        tree::write_generated(&src.join(format!("big{i}.bin")), 32 << 20, 500 + i, false);
    }
    let before = sb.snapshots().len();
    let running = sb
        .command()
        .password(PASSWORD)
        .dest(&sb.repo())
        .arg("backup")
        .arg(&src)
        .spawn();
    let mut running = running;
    let started = Instant::now();
    while files_under(&sb.repo().join("data")) == 0 {
        assert!(
            running.is_running(),
            "the backup ended before writing a pack"
        );
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no pack after 120 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        running.is_running(),
        "the backup ended before its lock could be removed: make the source bigger"
    );
    sb.repo_cmd(["unlock", "--force"]).success();
    let out = running.wait();
    out.assert_code(1).stderr_has("lock lost");
    assert_eq!(sb.snapshots().len(), before, "a snapshot was written");
    // The next backup, with its own lock, completes.
    sb.repo_cmd(["backup".as_ref(), src.as_os_str()]).success();
    assert_eq!(sb.snapshots().len(), before + 1);
}

/// Item 11: messages that read right: plurals, an empty password refused,
/// `sync` (not `--repair`) for missing copies, `ls -l` showing the sticky bit.
#[test]
fn messages_read_right() {
    use std::os::unix::fs::PermissionsExt;
    let sb = Sandbox::new();
    let (a, b) = (sb.join("a"), sb.join("b"));
    let both = || sb.on(&[&a, &b]);
    sb.init_on(&[&a, &b]);
    let src = sb.join("src");
    tree::write(&src.join("shared/file"), b"in a sticky directory");
    std::fs::set_permissions(src.join("shared"), std::fs::Permissions::from_mode(0o1777))
        .expect("chmod");
    both().arg("backup").arg(&src).run().success();

    let list = both().arg("snapshots").run();
    list.success();
    assert!(
        list.stdout_text().lines().any(|l| l == "1 snapshot"),
        "{}",
        list.stdout_text()
    );
    let long = both().args(["ls", "-l", "latest"]).run();
    long.success();
    assert!(
        long.stdout_text()
            .lines()
            .any(|l| l.starts_with("drwxrwxrwt") && l.ends_with("/shared")),
        "{}",
        long.stdout_text()
    );
    sb.command()
        .password("")
        .dest(&a)
        .arg("snapshots")
        .run()
        .assert_code(1)
        .stderr_has("LIFEBOAT_PASSWORD is set but empty");

    // One pack missing on b: healable by a plain sync.
    let pack = tree::regular_files(&b.join("data"))
        .into_iter()
        .next()
        .expect("a pack on b");
    std::fs::remove_file(&pack).expect("remove");
    let check = both().arg("check").run();
    check.assert_code(1);
    check.stderr_has("1 problem found, all healable: run `lifeboat sync`");
    assert!(!check.stderr.contains("--repair"), "{}", check.stderr);
    both().arg("sync").run().success();
    both().arg("check").run().success();
}

/// Backup and restore count the same directories (the snapshot's root is
/// not one of the user's).
#[test]
fn backup_and_restore_count_the_same_directories() {
    let sb = Sandbox::new();
    sb.init_repo();
    let src = sb.join("src");
    tree::write(&src.join("a/b/c.txt"), b"deep");
    tree::write(&src.join("d/e.txt"), b"shallow");
    let summary = sb.backup(&[&src]);
    let dirs = ["dirs_new", "dirs_changed", "dirs_unmodified"]
        .iter()
        .map(|k| summary[k].as_u64().expect("count"))
        .sum::<u64>();
    let target = sb.join("restored");
    let restored = sb.repo_cmd([
        "--json".as_ref(),
        "restore".as_ref(),
        "latest".as_ref(),
        "--target".as_ref(),
        target.as_os_str(),
    ]);
    let restored = restored.success().summary();
    assert_eq!(
        Some(dirs),
        restored["dirs_restored"].as_u64(),
        "backup {summary} / restore {restored}"
    );
}
