//! End to end through the `lifeboat` binary: what goes wrong, the exit code it
//! gives, the message it prints, and that the repository is left as it was.
//!
//! Needs `cargo build -p lifeboat-cli` first (see `lifeboat_tests::lifeboat_bin`).

use lifeboat_tests::FAST_INIT;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use lifeboat_tests::{repo, tree};
use lifeboat_tests::{Running, Sandbox, NOBODY, PASSWORD};

/// `src/` with a few text files.
fn small_tree(sb: &Sandbox) -> PathBuf {
    let src = sb.join("src");
    tree::text_tree(&src);
    src
}

#[test]
fn wrong_password_exits_12_and_changes_nothing() {
    let sb = Sandbox::new();
    sb.init_repo();
    let src = small_tree(&sb);
    sb.backup(&[&src]);
    let before = tree::digest_dir(&sb.repo());
    let target = sb.join("restored");
    let wrong = "NOT-the-password-7f3a";
    let runs: Vec<Vec<&OsStr>> = vec![
        vec!["snapshots".as_ref()],
        vec!["ls".as_ref(), "latest".as_ref()],
        vec!["backup".as_ref(), src.as_os_str()],
        vec![
            "restore".as_ref(),
            "latest".as_ref(),
            "--target".as_ref(),
            target.as_os_str(),
        ],
        vec!["check".as_ref(), "--read-data".as_ref()],
    ];
    for args in runs {
        let out = sb
            .command()
            .password(wrong)
            .dest(&sb.repo())
            .args(args)
            .run();
        out.assert_code(12).stderr_has("wrong password");
        assert!(
            !out.stderr.contains(wrong) && !out.stdout_text().contains(wrong),
            "the password was echoed: {out:?}"
        );
    }
    let out = sb
        .command()
        .password(wrong)
        .dest(&sb.repo())
        .args(["--json", "snapshots"])
        .run();
    out.assert_code(12);
    let last = out.json_lines().pop().expect("a JSON error object");
    assert_eq!(last["message_type"], "error", "{last}");
    assert_eq!(last["exit_code"], 12, "{last}");

    assert_eq!(
        before,
        tree::digest_dir(&sb.repo()),
        "the repository changed"
    );
    assert!(
        !target.exists(),
        "restore created its target before opening the repository"
    );
}

#[test]
fn no_password_and_no_terminal_is_a_one_line_error() {
    let sb = Sandbox::new();
    sb.init_repo();
    let src = small_tree(&sb);
    let fresh = sb.join("fresh");
    let data_home = sb.data_home();
    let repo = sb.repo();
    let cases: Vec<(Vec<&OsStr>, &str)> = vec![
        (
            vec!["-d".as_ref(), repo.as_os_str(), "snapshots".as_ref()],
            "snapshots",
        ),
        (
            vec!["-d".as_ref(), fresh.as_os_str(), "init".as_ref()],
            "init",
        ),
        (
            vec!["backup".as_ref(), src.as_os_str()],
            "first backup to the embedded default",
        ),
    ];
    for (args, what) in cases {
        let out = sb.command().args(args).run();
        assert_ne!(out.code, 0, "{what} without a password succeeded: {out:?}");
        let lines: Vec<&str> = out.stderr.trim_end().lines().collect();
        assert_eq!(lines.len(), 1, "{what}: stderr is not one line: {out:?}");
        assert!(lines[0].contains("LIFEBOAT_PASSWORD"), "{what}: {out:?}");
    }
    assert!(
        !fresh.join("config").exists(),
        "init without a password wrote a config"
    );
    assert!(
        !data_home.join("lifeboat/repository/config").exists(),
        "backup without a password created the default repository"
    );
}

#[test]
fn init_twice_refuses_and_leaves_the_repository_untouched() {
    let sb = Sandbox::new();
    sb.init_repo();
    let before = tree::digest_dir(&sb.repo());
    for password in [PASSWORD, "another password"] {
        let out = sb
            .command()
            .password(password)
            .dest(&sb.repo())
            .args(FAST_INIT)
            .run();
        out.assert_code(1).stderr_has("already exists");
        assert_eq!(
            before,
            tree::digest_dir(&sb.repo()),
            "init overwrote the repository"
        );
    }
    // The original password still opens it.
    assert!(sb.snapshots().is_empty());
}

#[test]
fn commands_without_a_repository_exit_10() {
    let sb = Sandbox::new();
    let src = small_tree(&sb);
    let empty = sb.join("empty");
    std::fs::create_dir(&empty).expect("mkdir");
    let missing = sb.join("missing/repo");
    let target = sb.join("restored");
    for dest in [&empty, &missing] {
        let runs: Vec<Vec<&OsStr>> = vec![
            vec!["snapshots".as_ref()],
            vec!["ls".as_ref(), "latest".as_ref()],
            vec!["check".as_ref()],
            vec![
                "restore".as_ref(),
                "latest".as_ref(),
                "--target".as_ref(),
                target.as_os_str(),
            ],
            vec!["backup".as_ref(), src.as_os_str()],
        ];
        for args in runs {
            let out = sb.command().password(PASSWORD).dest(dest).args(args).run();
            out.assert_code(10).stderr_has("lifeboat init");
        }
    }
    assert!(
        tree::digest_dir(&empty).len() == 1,
        "something was written to {empty:?}"
    );
    assert!(!missing.exists(), "a missing destination was created");
    assert!(!target.exists());
}

#[test]
fn usage_errors_exit_2() {
    let sb = Sandbox::new();
    let runs: [&[&str]; 5] = [
        &[],
        &["backup", "--no-such-flag"],
        &["frobnicate"],
        &["init", "--kdf-memory", "1"],
        &["backup", "--compression", "99", "."],
    ];
    for args in runs {
        sb.lb(args).assert_code(2);
    }
}

#[test]
fn locked_repository_exits_11() {
    let sb = Sandbox::new();
    sb.init_repo();
    let src = small_tree(&sb);
    sb.backup(&[&src]);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let repository = repo::open(&rt, &sb.repo());
    let target = sb.join("restored");

    let exclusive = rt
        .block_on(lifeboat_engine::acquire_lock(
            repository.destinations(),
            repository.keys(),
            true,
        ))
        .expect("exclusive lock");
    let runs: Vec<Vec<&OsStr>> = vec![
        vec!["backup".as_ref(), src.as_os_str()],
        vec!["check".as_ref()],
        vec![
            "restore".as_ref(),
            "latest".as_ref(),
            "--target".as_ref(),
            target.as_os_str(),
        ],
    ];
    for args in runs {
        sb.repo_cmd(args).assert_code(11).stderr_has("locked");
    }
    assert_eq!(
        sb.snapshots().len(),
        1,
        "a snapshot was written under the lock"
    );
    rt.block_on(exclusive.release()).expect("release");

    // Shared locks coexist: a backup runs beside another holder's shared lock.
    let shared = rt
        .block_on(lifeboat_engine::acquire_lock(
            repository.destinations(),
            repository.keys(),
            false,
        ))
        .expect("shared lock");
    sb.backup(&[&src]);
    rt.block_on(shared.release()).expect("release");
    assert_eq!(sb.snapshots().len(), 2);
}

/// A file and a directory that cannot be read: backup exits 3, names them, and
/// saves everything else.
///
/// Root reads mode-000 files, so as root every invocation runs as `nobody`
/// (uid and gid 65534, no supplementary groups; std's `CommandExt::uid/gid`,
/// the same as `setpriv --reuid=65534 --regid=65534 --clear-groups`) on a
/// sandbox handed over to that user.
#[test]
fn unreadable_entries_make_backup_incomplete() {
    let mut sb = Sandbox::new();
    let src = small_tree(&sb);
    let secret = src.join("unreadable.txt");
    let closed = src.join("closed");
    tree::write(&secret, b"cannot read me");
    tree::write(&closed.join("inside.txt"), b"cannot list me");
    if lifeboat_tests::is_root() {
        tree::chmod(sb.path(), 0o755);
        tree::chown_recursive(sb.path(), NOBODY.0, NOBODY.1);
        sb.run_as(NOBODY.0, NOBODY.1);
    }
    tree::chmod(&secret, 0o000);
    tree::chmod(&closed, 0o000);
    sb.init_repo();

    let out = sb.repo_cmd(["--json".as_ref(), "backup".as_ref(), src.as_os_str()]);
    out.assert_code(3);
    let lines = out.json_lines();
    let errors: Vec<&str> = lines
        .iter()
        .filter(|l| l["message_type"] == "error")
        .filter_map(|l| l["item"].as_str())
        .collect();
    for path in [&secret, &closed] {
        assert!(
            errors.iter().any(|e| Path::new(e) == path.as_path()),
            "no error names {path:?}: {out:?}"
        );
    }
    assert_eq!(out.summary()["errors"], 2, "{out:?}");

    let snapshots = sb.snapshots();
    assert_eq!(
        snapshots.len(),
        1,
        "an incomplete backup still saves a snapshot"
    );
    let listed = sb.ls_paths("latest");
    for ok in ["f0.txt", "f4.txt", "sub/g.txt"] {
        let want = src.join(ok).to_string_lossy().into_owned();
        assert!(listed.contains(&want), "{want} missing from {listed:?}");
    }
    for left_out in [&secret, &closed, &closed.join("inside.txt")] {
        let path = left_out.to_string_lossy().into_owned();
        assert!(!listed.contains(&path), "{path} is in the snapshot");
    }

    // The human output names the entries too, and still exits 3.
    let out = sb.repo_cmd(["backup".as_ref(), src.as_os_str()]);
    out.assert_code(3)
        .stderr_has(&secret.to_string_lossy())
        .stderr_has(&closed.to_string_lossy());
}

/// Starts a backup of `src` (which must take a few seconds) and returns once it
/// holds its lock and has run a little.
fn backup_in_progress(sb: &Sandbox, src: &Path) -> Running {
    let locks = sb.repo().join("locks");
    let mut running = sb
        .command()
        .password(PASSWORD)
        .dest(&sb.repo())
        .arg("backup")
        .arg(src)
        .spawn();
    let started = std::time::Instant::now();
    while tree::regular_files(&sb.repo())
        .iter()
        .all(|p| !p.starts_with(&locks))
    {
        assert!(
            running.is_running(),
            "test setup: backup ended before taking its lock"
        );
        assert!(
            started.elapsed().as_secs() < 60,
            "backup took no lock within 60 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(
        running.is_running(),
        "test setup: backup finished before it could be stopped"
    );
    running
}

/// SIGINT during a backup: exit 130, no snapshot, the lock released, and the
/// repository still checks clean (only unreferenced packs may remain).
#[test]
fn interrupted_backup_exits_130_and_saves_nothing() {
    let sb = Sandbox::new();
    sb.init_repo();
    let src = sb.join("src");
    std::fs::create_dir_all(&src).expect("mkdir");
    tree::write_generated(&src.join("big.bin"), 256 << 20, 13, false);
    let locks = sb.repo().join("locks");
    let running = backup_in_progress(&sb, &src);
    running.signal(libc::SIGINT);
    let out = running.wait();
    out.assert_code(130).stderr_has("interrupted");
    assert!(
        sb.snapshots().is_empty(),
        "an interrupted backup saved a snapshot"
    );
    assert!(
        tree::regular_files(&locks).is_empty(),
        "the interrupted backup left its lock"
    );
    sb.repo_cmd(["check", "--read-data"]).success();
}

#[test]
fn missing_paths_are_errors() {
    let sb = Sandbox::new();
    sb.init_repo();
    let src = small_tree(&sb);
    let missing = sb.join("no-such-dir");
    sb.repo_cmd(["backup".as_ref(), src.as_os_str(), missing.as_os_str()])
        .assert_code(1)
        .stderr_has(&missing.to_string_lossy());
    assert!(sb.snapshots().is_empty(), "a snapshot was saved");
    sb.backup(&[&src]);
    let target = sb.join("restored");
    sb.repo_cmd([
        "restore".as_ref(),
        "latest".as_ref(),
        "--target".as_ref(),
        target.as_os_str(),
        "--include".as_ref(),
        missing.as_os_str(),
    ])
    .assert_code(1)
    .stderr_has("not found in the snapshot");
    sb.repo_cmd(["ls".as_ref(), "latest".as_ref(), missing.as_os_str()])
        .assert_code(1)
        .stderr_has("not found in the snapshot");
}

/// A backup killed outright leaves its lock behind; on the same host a lock
/// whose process is gone is stale at once, so the next commands run, and the
/// repository holds no snapshot and no broken reference.
#[test]
fn lock_of_a_killed_backup_does_not_block() {
    let sb = Sandbox::new();
    sb.init_repo();
    let src = sb.join("src");
    std::fs::create_dir_all(&src).expect("mkdir");
    tree::write_generated(&src.join("big.bin"), 256 << 20, 17, false);
    let running = backup_in_progress(&sb, &src);
    running.signal(libc::SIGKILL);
    let out = running.wait();
    assert_eq!(out.signal, Some(libc::SIGKILL), "{out:?}");
    assert_eq!(
        tree::regular_files(&sb.repo().join("locks")).len(),
        1,
        "test setup: the killed backup should have left its lock"
    );
    sb.repo_cmd(["check", "--read-data"]).success();
    assert!(
        sb.snapshots().is_empty(),
        "a killed backup saved a snapshot"
    );
    let summary = sb.backup(&[&src]);
    assert_eq!(summary["files_new"], 1, "{summary}");
    let target = sb.join("restored");
    sb.restore_latest(&target).success();
    assert!(tree::same_content(
        &src.join("big.bin"),
        &tree::restored(&target, &src.join("big.bin"))
    ));
}

/// Issue 15, item 5: `init` (and `key add`) refuse an Argon2id cost that
/// makes a password cheap to guess, naming `--insecure-kdf`, and create
/// nothing; with the flag the tests' fast settings pass.
#[test]
fn a_cheap_kdf_is_refused_unless_asked_for() {
    let sb = Sandbox::new();
    for weak in [
        &["init", "--kdf-memory", "64"][..],
        &["init", "--kdf-iterations", "1"][..],
    ] {
        sb.repo_cmd(weak)
            .assert_code(2)
            .stderr_has("--insecure-kdf");
        assert!(
            !sb.repo().join("config").exists(),
            "{weak:?} created a repository"
        );
    }
    sb.init_repo();
    sb.repo_cmd(["key", "add", "--kdf-memory", "1024"])
        .assert_code(2)
        .stderr_has("--insecure-kdf");
    // At the floor or above, no flag is needed.
    sb.command()
        .password(lifeboat_tests::PASSWORD)
        .env("LIFEBOAT_NEW_PASSWORD", "a second password")
        .dest(&sb.repo())
        .args([
            "key",
            "add",
            "--kdf-memory",
            "16384",
            "--kdf-iterations",
            "2",
        ])
        .run()
        .success();
}

/// A repository of format 1 (the development format before the keyed
/// chunker and padded blobs), laid out as format 1 wrote it: the config's
/// public header with version 1, its parameters sealed under format 1's AAD
/// (`"lifeboat.config.v1" || id`). Every command refuses it with one line
/// naming the format and what to do, and writes nothing.
#[test]
fn a_format_1_repository_is_refused_naming_its_version() {
    use lifeboat_engine::format::crypto::MasterKeys;
    let sb = Sandbox::new();
    let repo = sb.repo();
    std::fs::create_dir_all(repo.join("keys")).expect("mkdir");
    let keys = MasterKeys::generate();
    let id = [0x5au8; 32];
    let mut config = b"LIFEBOAT".to_vec();
    config.extend_from_slice(&1u32.to_le_bytes());
    config.extend_from_slice(&id);
    let mut aad = b"lifeboat.config.v1".to_vec();
    aad.extend_from_slice(&id);
    // The default RepoParams of format 1, postcard-encoded (FORMAT.md §4.3).
    let params = [
        0x80, 0x80, 0x08, 0x80, 0x80, 0x20, 0x80, 0x80, 0x80, 0x01, 0x80, 0x80, 0x80, 0x08, 0x06,
    ];
    keys.seal(&aad, &params, None, &mut config);
    std::fs::write(repo.join("config"), &config).expect("write config");
    let before = tree::digest_dir(&repo);
    let src = small_tree(&sb);
    for args in [
        vec!["snapshots".as_ref()],
        vec!["backup".as_ref(), src.as_os_str()],
        vec!["check".as_ref()],
    ] {
        let out = sb.repo_cmd(&args);
        out.assert_code(1)
            .stderr_has("repository is in format 1")
            .stderr_has("lifeboat init");
        assert_eq!(out.stderr.trim().lines().count(), 1, "{args:?}: one line");
    }
    assert_eq!(tree::digest_dir(&repo), before, "nothing was written");
}
