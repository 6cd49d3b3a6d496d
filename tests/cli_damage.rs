//! End to end through the `lifeboat` binary: damaged repositories. A flipped
//! byte or a missing pack is named by `check` and `restore`, never restored as
//! wrong bytes, and costs only the files that use the damaged data.
//!
//! Needs `cargo build -p lifeboat-cli` first (see `lifeboat_tests::lifeboat_bin`).

use lifeboat_tests::FAST_INIT;
use std::path::{Path, PathBuf};

use lifeboat_tests::{repo, tree, Sandbox};

/// `src/` with a few text files.
fn small_tree(sb: &Sandbox) -> PathBuf {
    let src = sb.join("src");
    tree::text_tree(&src);
    src
}

fn file_name(p: &Path) -> String {
    p.file_name().expect("name").to_string_lossy().into_owned()
}

/// A byte flipped in the middle of the biggest pack: `check --read-data` and
/// `restore` name the pack, and restore never leaves wrong bytes in a file.
#[test]
fn corrupted_pack_is_named_and_never_restored_as_wrong_bytes() {
    let sb = Sandbox::new();
    sb.init_repo();
    let src = small_tree(&sb);
    let big = src.join("big.bin");
    tree::write_generated(&big, 12 << 20, 9, false);
    sb.backup(&[&src]);
    sb.repo_cmd(["check", "--read-data"]).success();

    let (pack, size) = repo::biggest_pack(&sb.repo());
    tree::flip_byte(&pack, size / 2);
    let pack_id = file_name(&pack);

    let out = sb.repo_cmd(["check", "--read-data"]);
    out.assert_code(1).stderr_has(&pack_id);
    let json = sb.repo_cmd(["--json", "check", "--read-data"]);
    json.assert_code(1);
    let report = json.summary();
    assert_eq!(report["ok"], false, "{report}");
    let problems = report["problems"].as_array().expect("problems").clone();
    assert!(
        problems
            .iter()
            .any(|p| p["object"].as_str().is_some_and(|o| o.contains(&pack_id))),
        "no problem names pack {pack_id}: {report}"
    );

    // The structural check reads only pack headers: it runs to the end.
    let out = sb.repo_cmd(["check"]);
    assert!(
        out.code == 0 || (out.code == 1 && out.stderr.contains(&pack_id)),
        "check without --read-data: {out:?}"
    );
    out.stdout_has("checked");

    let target = sb.join("restored");
    let out = sb.restore_latest(&target);
    assert_ne!(out.code, 0, "restore of damaged data succeeded: {out:?}");
    out.stderr_has(&pack_id);
    let copy = tree::restored(&target, &src);
    for file in tree::regular_files(&src) {
        let restored = copy.join(file.strip_prefix(&src).expect("below src"));
        if restored.exists() {
            assert!(
                tree::same_content(&file, &restored),
                "{restored:?} was restored with wrong content"
            );
        }
    }
    assert!(
        !tree::restored(&target, &big).exists(),
        "the file whose chunk is damaged was restored"
    );
}

/// A damaged chunk costs only the files that use it: a small file whose chunk
/// sits intact in the same pack must still be restored.
#[test]
fn restore_keeps_files_whose_chunks_are_intact() {
    let sb = Sandbox::new();
    sb.init_repo();
    let src = sb.join("src");
    let big = src.join("big.bin");
    let small = src.join("small.txt");
    std::fs::create_dir_all(&src).expect("mkdir");
    tree::write_generated(&big, 3 << 20, 11, false);
    tree::write(&small, b"an innocent bystander\n");
    sb.backup(&[&src]);

    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let repository = repo::open(&rt, &sb.repo());
    let (pack_of_big, damaged_at, pack_of_small) = rt.block_on(async {
        let index = repository.load_index().await.expect("index");
        let (_, snapshot) = repository.find_snapshot("latest").await.expect("snapshot");
        let big_blob = repo::file_blobs(&repository, &index, snapshot.tree, &big).await[0];
        let small_blob = repo::file_blobs(&repository, &index, snapshot.tree, &small).await[0];
        let (b, s) = (
            index.lookup(&big_blob).expect("indexed"),
            index.lookup(&small_blob).expect("indexed"),
        );
        (
            b.pack,
            u64::from(b.offset) + u64::from(b.length) / 2,
            s.pack,
        )
    });
    assert_eq!(
        pack_of_big, pack_of_small,
        "test setup: both files in one pack"
    );
    let pack_hex = pack_of_big.to_hex();
    tree::flip_byte(
        &sb.repo().join("data").join(&pack_hex[..2]).join(&pack_hex),
        damaged_at,
    );

    let target = sb.join("restored");
    let out = sb.restore_latest(&target);
    out.assert_code(1).stderr_has(&pack_hex);
    assert!(
        !tree::restored(&target, &big).exists(),
        "damaged file restored"
    );
    let small_copy = tree::restored(&target, &small);
    assert!(
        small_copy.exists() && tree::same_content(&small, &small_copy),
        "{small:?} was not restored although its chunk is intact (only {big:?} uses the damaged \
         chunk): {out:?}"
    );
}

#[test]
fn missing_pack_is_reported_by_check_and_restore() {
    let sb = Sandbox::new();
    sb.init_repo();
    let src = small_tree(&sb);
    tree::write_generated(&src.join("data.bin"), 2 << 20, 6, true);
    sb.backup(&[&src]);
    let (pack, _) = repo::biggest_pack(&sb.repo());
    std::fs::remove_file(&pack).expect("remove pack");
    let pack_id = file_name(&pack);
    sb.repo_cmd(["check"]).assert_code(1).stderr_has(&pack_id);
    let target = sb.join("restored");
    let out = sb.restore_latest(&target);
    assert_ne!(
        out.code, 0,
        "restore with a missing pack succeeded: {out:?}"
    );
    assert!(!tree::restored(&target, &src.join("data.bin")).exists());
}

/// Log lines on a pipe are plain text: no colour escapes in files or CI logs.
#[test]
fn stderr_on_a_pipe_has_no_terminal_escapes() {
    let sb = Sandbox::new();
    sb.init_repo();
    let src = small_tree(&sb);
    tree::write_generated(&src.join("data.bin"), 1 << 20, 5, false);
    sb.backup(&[&src]);
    let (pack, size) = repo::biggest_pack(&sb.repo());
    tree::flip_byte(&pack, size / 2);
    let target = sb.join("restored");
    let out = sb.restore_latest(&target);
    assert_ne!(out.code, 0, "{out:?}");
    assert!(
        !out.stderr.contains('\x1b'),
        "terminal escape sequences on a pipe: {:?}",
        out.stderr
    );
}

/// Issue 15, item 2: names a store lists that are not Lifeboat object names
/// (a multi-byte character where a pack's directory digits belong, a name
/// that is not UTF-8, a short name) never crash a command: they are skipped
/// with one warning, and `check` lists them as foreign, without failing.
#[test]
fn names_that_are_not_lifeboat_objects_are_reported_never_a_crash() {
    use std::os::unix::ffi::OsStrExt;
    let sb = Sandbox::new();
    sb.init_repo();
    let src = small_tree(&sb);
    sb.backup(&[&src]);
    let repo = sb.repo();
    std::fs::create_dir_all(repo.join("data/ab")).expect("data/ab");
    std::fs::write(repo.join("data/ab/€"), b"x").expect("a planted name");
    std::fs::write(repo.join("data/ab").join("€uro-€uro"), b"x").expect("a planted name");
    let not_utf8 = std::ffi::OsStr::from_bytes(b"\xff\xfe-not-utf8");
    std::fs::write(repo.join("index").join(not_utf8), b"x").expect("a planted name");
    std::fs::write(repo.join("snapshots/short"), b"x").expect("a planted name");

    let out = sb.repo_cmd(["check"]);
    out.success()
        .stderr_has("not Lifeboat's")
        .stderr_has("4 objects");
    let json = sb.repo_cmd(["--json", "check"]);
    json.success();
    let report = json.summary();
    let foreign = report["destinations"][0]["foreign"]
        .as_array()
        .expect("a foreign list")
        .clone();
    assert_eq!(foreign.len(), 4, "{report}");
    assert!(foreign.iter().any(|k| k == "data/ab/€"), "{report}");

    // Listing commands skip them with one warning.
    let out = sb.repo_cmd(["snapshots"]);
    out.success();
    assert_eq!(out.stderr.matches("not Lifeboat's").count(), 1, "{out:?}");
    sb.restore_latest(&sb.join("restored")).success();
}

/// Issue 15, item 1: a destination disk on which a pack was replaced by a
/// symlink to a host file. `check --read-data` never reads through the link
/// (the pack is missing there, healable from the other destination), and
/// `sync --repair` heals it by replacing the link: the host file's bytes are
/// never copied anywhere, into `quarantine/` or onto another destination.
#[test]
fn a_symlink_planted_on_a_destination_never_leaks_the_file_it_points_to() {
    let sb = Sandbox::new();
    let (a, b) = (sb.join("a"), sb.join("b"));
    let run = |args: &[&str]| {
        sb.command()
            .password(lifeboat_tests::PASSWORD)
            .arg("-d")
            .arg(&a)
            .arg("-d")
            .arg(&b)
            .args(args)
            .run()
    };
    run(&FAST_INIT).success();
    let src = small_tree(&sb);
    sb.command()
        .password(lifeboat_tests::PASSWORD)
        .arg("-d")
        .arg(&a)
        .arg("-d")
        .arg(&b)
        .arg("backup")
        .arg(&src)
        .run()
        .success();

    let secret_text = "PRIVATE-KEY-MATERIAL-9c4e ".repeat(100);
    let secret = sb.join("id_ed25519");
    std::fs::write(&secret, &secret_text).expect("a host file");
    let (pack, _) = repo::biggest_pack(&b);
    std::fs::remove_file(&pack).expect("remove the pack");
    std::os::unix::fs::symlink(&secret, &pack).expect("plant a symlink");

    let out = run(&["--json", "check", "--read-data"]);
    out.assert_code(1);
    let report = out.summary();
    let problems = report["problems"].as_array().expect("problems").clone();
    assert_eq!(problems.len(), 1, "{report}");
    assert_eq!(problems[0]["kind"], "missing", "{report}");
    assert_eq!(problems[0]["healable"], true, "{report}");

    run(&["sync", "--repair"]).success();
    assert!(
        !pack
            .symlink_metadata()
            .expect("healed")
            .file_type()
            .is_symlink(),
        "the link is replaced by the pack"
    );
    run(&["check", "--read-data"]).success();
    assert_eq!(
        std::fs::read_to_string(&secret).expect("secret"),
        secret_text
    );
    for root in [&a, &b] {
        for file in tree::regular_files(root) {
            let bytes = std::fs::read(&file).expect("a repository file");
            assert!(
                !bytes
                    .windows(26)
                    .any(|w| w == b"PRIVATE-KEY-MATERIAL-9c4e "),
                "{} holds the host file's bytes",
                file.display()
            );
        }
    }
}
