//! Issue 12, item 7: restore selection and policy as a restic user expects:
//! `--include`/`--exclude` with the backup's pattern rules, `SNAPSHOT:/dir`
//! restored at the target's root, `--overwrite always|if-changed|if-newer|
//! never`, `--delete` inside the restored tree only, `--dry-run` listing what
//! would change, and a clear message for a file where a directory belongs.
//! Also item 4: `restore latest --from` a lagging destination.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use std::ffi::OsStr;

use lifeboat_tests::{tree, Output, Sandbox};

fn lb(sb: &Sandbox, args: &[&str]) -> Output {
    sb.repo_cmd(args)
}

/// Every file below `dir`, relative to it.
fn files(dir: &Path) -> BTreeSet<String> {
    tree::regular_files(dir)
        .into_iter()
        .map(|p| p.strip_prefix(dir).expect("below").display().to_string())
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// A repository with one snapshot of a small tree; returns the source.
fn setup(sb: &Sandbox) -> PathBuf {
    sb.init_repo();
    let src = sb.join("src");
    for (rel, bytes) in [
        ("docs/a.txt", &b"alpha"[..]),
        ("docs/b.md", b"beta"),
        ("docs/skip/c.txt", b"gamma"),
        ("music/d.txt", b"delta"),
        ("music/e.mp3", b"epsilon"),
    ] {
        tree::write(&src.join(rel), bytes);
    }
    sb.backup(&[&src]);
    src
}

#[test]
fn include_and_exclude_patterns_and_a_subtree_at_the_root() {
    let sb = Sandbox::new();
    let src = setup(&sb);
    let s = src.display().to_string();
    let rel = src.strip_prefix("/").expect("absolute");

    let target = sb.join("t1");
    let t = target.display().to_string();
    lb(
        &sb,
        &[
            "restore",
            "latest",
            "--target",
            &t,
            "--include",
            "*.txt",
            "--exclude",
            "skip",
        ],
    )
    .success();
    assert_eq!(
        files(&target.join(rel)),
        set(&["docs/a.txt", "music/d.txt"])
    );

    // SNAPSHOT:/dir: that directory's contents at the target's root.
    let target = sb.join("t2");
    let t = target.display().to_string();
    let spec = format!("latest:{s}/docs");
    lb(
        &sb,
        &["restore", &spec, "--target", &t, "--exclude", "/skip"],
    )
    .success();
    assert_eq!(files(&target), set(&["a.txt", "b.md"]));

    // A plain path that is not in the snapshot is an error, not an empty restore.
    let missing = format!("{s}/nope");
    lb(
        &sb,
        &["restore", "latest", "--target", &t, "--include", &missing],
    )
    .assert_code(1)
    .stderr_has("not found in the snapshot");
}

fn set_mtime(path: &Path, time: SystemTime) {
    let file = std::fs::File::options()
        .write(true)
        .open(path)
        .expect("open");
    file.set_modified(time).expect("set mtime");
}

#[test]
fn overwrite_policies_delete_and_dry_run() {
    let sb = Sandbox::new();
    let src = setup(&sb);
    let s = src.display().to_string();
    let target = sb.join("t");
    let t = target.display().to_string();
    let spec = format!("latest:{s}");
    lb(&sb, &["restore", &spec, "--target", &t]).success();
    let a = target.join("docs/a.txt");
    let b = target.join("docs/b.md");
    let snapshot_time = std::fs::metadata(&a).expect("a").modified().expect("mtime");
    // a: same size and time, other bytes; b: other size, newer; an extra file.
    std::fs::write(&a, b"ALPHA").expect("write");
    set_mtime(&a, snapshot_time);
    std::fs::write(&b, b"a longer beta").expect("write");
    set_mtime(&b, SystemTime::now() + Duration::from_secs(3600));
    tree::write(&target.join("docs/extra.txt"), b"not in the snapshot");
    let outside = sb.join("outside.txt");
    tree::write(&outside, b"not in the target");

    // Dry run: lists, changes nothing.
    let out = lb(
        &sb,
        &["restore", &spec, "--target", &t, "--delete", "--dry-run"],
    );
    out.success();
    let text = out.stdout_text();
    for line in [
        format!("would replace {t}/docs/a.txt"),
        format!("would replace {t}/docs/b.md"),
        format!("would delete  {t}/docs/extra.txt"),
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in:\n{text}"
        );
    }
    assert_eq!(std::fs::read(&a).expect("a"), b"ALPHA");
    assert!(target.join("docs/extra.txt").exists());

    lb(
        &sb,
        &["restore", &spec, "--target", &t, "--overwrite", "never"],
    )
    .success();
    assert_eq!(std::fs::read(&a).expect("a"), b"ALPHA");
    assert_eq!(std::fs::read(&b).expect("b"), b"a longer beta");

    // if-newer: b is newer than the snapshot's, a is not.
    set_mtime(&a, snapshot_time - Duration::from_secs(60));
    let out = lb(
        &sb,
        &["restore", &spec, "--target", &t, "--overwrite", "if-newer"],
    );
    out.success().stdout_has("kept 4 entries");
    assert_eq!(std::fs::read(&a).expect("a"), b"alpha");
    assert_eq!(std::fs::read(&b).expect("b"), b"a longer beta");

    // if-changed: same size and time is taken as unchanged.
    std::fs::write(&a, b"ALPHA").expect("write");
    set_mtime(&a, snapshot_time);
    lb(
        &sb,
        &[
            "restore",
            &spec,
            "--target",
            &t,
            "--overwrite",
            "if-changed",
        ],
    )
    .success();
    assert_eq!(std::fs::read(&a).expect("a"), b"ALPHA");
    assert_eq!(std::fs::read(&b).expect("b"), b"beta");

    // always (the default) with --delete: the target is the snapshot again,
    // and nothing outside the restored tree is touched.
    lb(&sb, &["restore", &spec, "--target", &t, "--delete"])
        .success()
        .stdout_has("deleted 1 entry");
    assert_eq!(std::fs::read(&a).expect("a"), b"alpha");
    assert!(!target.join("docs/extra.txt").exists());
    assert!(outside.exists());
    let restored = files(&target);
    let source = files(&src);
    assert_eq!(restored, source);
}

#[test]
fn a_file_where_a_directory_belongs_follows_the_policy() {
    let sb = Sandbox::new();
    let src = setup(&sb);
    let spec = format!("latest:{}", src.display());
    let target = sb.join("t");
    let t = target.display().to_string();
    tree::write(
        &target.join("docs"),
        b"a file where the snapshot has a directory",
    );
    let out = lb(
        &sb,
        &["restore", &spec, "--target", &t, "--overwrite", "never"],
    );
    out.assert_code(1)
        .stderr_has("something else stands where the snapshot has a directory");
    assert!(
        target.join("docs").is_file(),
        "--overwrite never replaced it"
    );
    lb(&sb, &["restore", &spec, "--target", &t]).success();
    assert!(target.join("docs/a.txt").is_file());
}

/// `--overwrite always` over an earlier restore: a file of the same size is
/// compared piece by piece and only what differs is read and written.
#[test]
fn restoring_over_an_earlier_restore_rewrites_only_what_differs() {
    let sb = Sandbox::new();
    sb.init_repo();
    let src = sb.join("src");
    std::fs::create_dir_all(&src).expect("mkdir");
    tree::write_generated(&src.join("big.bin"), 24 << 20, 77, false);
    tree::write(&src.join("small.txt"), b"small");
    sb.backup(&[&src]);
    let target = sb.join("t");
    let t = target.display().to_string();
    let spec = format!("latest:{}", src.display());
    lb(&sb, &["restore", &spec, "--target", &t]).success();
    // Damage one MiB in the middle of the restored copy.
    let big = target.join("big.bin");
    let mut bytes = std::fs::read(&big).expect("read");
    for b in &mut bytes[12 << 20..13 << 20] {
        *b ^= 0x5a;
    }
    std::fs::write(&big, &bytes).expect("write");
    let out = lb(
        &sb,
        &["--json", "restore", &spec, "--target", &t, "--verify"],
    );
    out.success();
    let summary = out.summary();
    let in_place = summary["bytes_in_place"].as_u64().expect("bytes_in_place");
    assert!(
        ((16 << 20)..(24 << 20)).contains(&in_place),
        "{in_place} bytes left in place: {summary}"
    );
    assert_eq!(summary["files_verified"].as_u64(), Some(2), "{summary}");
    assert_eq!(
        std::fs::read(&big).expect("read"),
        std::fs::read(src.join("big.bin")).expect("read")
    );
}

/// Issue 12, item 4: `latest` is the newest snapshot on any destination. A
/// `--from` destination that lacks it fails, naming the newest it does hold,
/// instead of silently restoring an older snapshot.
#[test]
fn restore_latest_from_a_lagging_destination_names_what_it_holds() {
    let sb = Sandbox::new();
    let (a, b) = (sb.join("a"), sb.join("b"));
    let both = || sb.on(&[&a, &b]);
    sb.init_on(&[&a, &b]);
    let src = sb.join("src");
    tree::write(&src.join("a.txt"), b"alpha");
    tree::write(&src.join("sub/b.txt"), b"beta");
    let id_of = |out: &Output| {
        out.summary()["snapshot_id"]
            .as_str()
            .expect("snapshot id")
            .to_string()
    };
    let first = id_of(both().arg("--json").arg("backup").arg(&src).run().success());
    tree::write(&src.join("newer.txt"), b"only in the second snapshot");
    // The second snapshot reaches `a` only: `b` lags.
    let second = id_of(
        sb.on(&[&a])
            .arg("--json")
            .arg("backup")
            .arg(&src)
            .run()
            .success(),
    );
    let restore = |spec: &str, from: &str, target: &Path| {
        both()
            .args([
                "restore".as_ref(),
                OsStr::new(spec),
                "--from".as_ref(),
                OsStr::new(from),
                "--target".as_ref(),
                target.as_os_str(),
            ])
            .run()
    };
    let lagging = sb.join("from-b");
    let out = restore("latest", "local-b", &lagging);
    out.assert_code(1);
    out.stderr_has(&second[..8])
        .stderr_has(&first[..8])
        .stderr_has("lifeboat sync");
    assert!(
        !lagging.exists(),
        "something was restored from the lagging destination"
    );
    restore(&first[..8], "local-b", &lagging).success();
    assert!(!tree::restored(&lagging, &src).join("newer.txt").exists());
    let newest = sb.join("from-a");
    restore("latest", "local-a", &newest).success();
    assert!(tree::compare_trees(&src, &tree::restored(&newest, &src)).is_empty());
}
