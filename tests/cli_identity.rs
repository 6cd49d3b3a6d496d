//! Issue 12, items 1, 2 and 9: a destination is proven to hold this
//! repository before anything is written to it. One that holds another
//! repository, nothing, or does not exist is left out of the run with a
//! one-line reason, never created and never written (locks included); only
//! `init` and `sync --seed` put a repository on an empty destination, and a
//! bare word after `-d` is a configured name, never a new directory.
//!
//! Needs the S3 test server for the last test (`./scripts/test.sh` starts it).

use lifeboat_tests::FAST_INIT;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use lifeboat_tests::multi::*;
use lifeboat_tests::{tree, Output, Sandbox};

/// The password of the *other* repository in these tests.
const OTHER: &str = "another repository's password";

/// Every file under `dir` with its size and BLAKE3 hash: equal before and
/// after means nothing was written, renamed or removed there.
fn fingerprint(dir: &Path) -> BTreeMap<PathBuf, (u64, String)> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .map(|e| e.expect("walk"))
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            let bytes = std::fs::read(e.path()).expect("read");
            let rel = e.path().strip_prefix(dir).expect("under dir").to_path_buf();
            (
                rel,
                (
                    bytes.len() as u64,
                    blake3::hash(&bytes).to_hex().to_string(),
                ),
            )
        })
        .collect()
}

/// `lifeboat -d <dests>… <args>` with the other repository's password.
fn run_other<I, S>(sb: &Sandbox, dests: &[&str], args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let mut cmd = lb(sb, dests).password(OTHER);
    cmd = cmd.args(args);
    cmd.run()
}

/// A second repository with its own password and one snapshot of `src`.
fn other_repository(sb: &Sandbox, dest: &str, src: &Path) {
    run_other(sb, &[dest], FAST_INIT).success();
    run_other(sb, &[dest], backup_args(src)).success();
}

fn one_file_tree(sb: &Sandbox) -> PathBuf {
    let src = sb.join("src");
    tree::write(&src.join("notes.txt"), b"the only copy of my notes");
    tree::write(&src.join("sub/photo.jpg"), &[7u8; 100_000]);
    src
}

/// Item 1: `-d A -d B backup` where B holds another repository. Before the
/// fix: exit 0, "stored on: local-usb, local-nas", and B damaged.
#[test]
fn a_foreign_repository_is_left_out_and_untouched_by_every_writing_command() {
    let sb = Sandbox::new();
    let src = one_file_tree(&sb);
    let usb = sb.join("usb").display().to_string();
    let nas = sb.join("nas").display().to_string();
    init(&sb, &[usb.as_str()]);
    other_repository(&sb, &nas, &src);
    // A lock object of the other repository: `unlock --force` must not remove it.
    tree::write(&sb.join("nas/locks/0123456789abcdef"), b"their lock");
    let before = fingerprint(&sb.join("nas"));
    let both = [usb.as_str(), nas.as_str()];

    let out = run(&sb, &both, backup_args(&src));
    out.assert_code(3);
    out.stderr_has("local-nas")
        .stderr_has("holds a different repository");
    let summary = out.summary();
    assert_eq!(reached(&summary), ["local-usb"], "{summary}");
    assert_eq!(missed(&summary), ["local-nas"], "{summary}");
    let error = summary["destinations_missed"][0]["error"]
        .as_str()
        .unwrap_or_default();
    assert!(error.contains("different repository"), "{summary}");
    let human = run(&sb, &both, ["backup".as_ref(), src.as_os_str()]);
    human.assert_code(3);
    human.stdout_has("stored on: local-usb\n");

    run(&sb, &both, ["sync"]).assert_code(3);
    run(&sb, &both, ["sync", "--repair"]).assert_code(3);
    run(&sb, &both, ["forget", "--keep-last", "1", "--prune"]).assert_code(3);
    run(&sb, &both, ["prune"]).assert_code(3);
    run(&sb, &both, ["unlock", "--force"]);
    let key_add = lb(&sb, &both)
        .env("LIFEBOAT_NEW_PASSWORD", "a second password")
        .args(["key", "add"])
        .run();
    key_add.assert_code(1);
    key_add
        .stderr_has("local-nas")
        .stderr_has("nothing was changed");
    let drill = run(&sb, &both, ["drill"]);
    drill.assert_code(1);
    assert!(
        drill.stdout_text().contains("different repository"),
        "{}",
        drill.stdout_text()
    );
    // `check` says the destination was not checked and fails.
    run(&sb, &both, ["check"])
        .assert_code(1)
        .stderr_has("not checked: local-nas");

    assert_eq!(
        fingerprint(&sb.join("nas")),
        before,
        "the other repository changed"
    );
    // Its owner's view: clean and complete (once its owner removed the lock
    // that our `unlock --force` left alone).
    run_other(&sb, &[nas.as_str()], ["unlock", "--force"]).success();
    assert!(!sb.join("nas/locks/0123456789abcdef").exists());
    run_other(&sb, &[nas.as_str()], ["check", "--read-data"]).success();
    let listed = run_other(&sb, &[nas.as_str()], ["--json", "snapshots"]);
    listed.success();
    assert_eq!(listed.json().as_array().map(Vec::len), Some(1));
    // And ours restores from the destination that is ours.
    assert_restores(&sb, &[usb.as_str()], &src);
}

/// Item 2: an unmounted disk (an empty mount point) or a missing parent is
/// never created; the backup exits 3 naming it, and `snapshots` does not
/// claim the snapshot is there.
#[test]
fn a_missing_or_empty_destination_is_not_created_nor_reported_as_stored() {
    let sb = Sandbox::new();
    let src = one_file_tree(&sb);
    let usb = sb.join("usb").display().to_string();
    init(&sb, &[usb.as_str()]);

    let mount_point = sb.join("mnt/nas");
    std::fs::create_dir_all(&mount_point).expect("mount point");
    let below_mount = mount_point.join("lb").display().to_string();
    let on_mount = mount_point.display().to_string();
    let no_parent = sb.join("gone/lb").display().to_string();
    for (dest, name) in [
        (below_mount.as_str(), "local-lb"),
        (on_mount.as_str(), "local-nas"),
        (no_parent.as_str(), "local-lb"),
    ] {
        let out = run(&sb, &[usb.as_str(), dest], backup_args(&src));
        out.assert_code(3);
        out.stderr_has(name)
            .stderr_has("holds no lifeboat repository");
        let summary = out.summary();
        assert_eq!(reached(&summary), ["local-usb"], "{summary}");
        assert_eq!(missed(&summary), [name], "{summary}");
        let holders = snapshot_holders(&sb, &[usb.as_str(), dest]);
        assert!(
            holders.iter().all(|(_, h)| h == &["local-usb"]),
            "{holders:?}"
        );
    }
    assert!(
        !mount_point.join("lb").exists(),
        "created below the mount point"
    );
    assert_eq!(
        std::fs::read_dir(&mount_point).expect("read").count(),
        0,
        "wrote to the empty mount point"
    );
    assert!(!sb.join("gone").exists(), "created a missing parent");

    // `init` under a missing parent fails, naming it, and creates nothing.
    let out = run(&sb, &[no_parent.as_str()], FAST_INIT);
    out.assert_code(1);
    out.stderr_has("does not exist");
    assert!(!sb.join("gone").exists());
}

/// Item 2 (typo): a bare word after `-d` is a configured name; an unknown
/// one is a usage error (exit 2) listing the names, and no directory appears.
#[test]
fn a_mistyped_destination_name_is_a_usage_error_not_a_new_directory() {
    let sb = Sandbox::new();
    let src = one_file_tree(&sb);
    let nas = sb.join("nas");
    let config = sb.config_home().join("lifeboat/config.toml");
    tree::write(
        &config,
        format!("[destinations.home-nas]\nurl = \"{}\"\n", nas.display()).as_bytes(),
    );
    run(&sb, &["home-nas"], FAST_INIT).success();
    let out = run(&sb, &["hom-nas"], ["backup".as_ref(), src.as_os_str()]);
    out.assert_code(2);
    out.stderr_has("hom-nas")
        .stderr_has("home-nas")
        .stderr_has("./hom-nas");
    assert!(
        !sb.join("hom-nas").exists(),
        "a directory was created for the typo"
    );
    // The right name works, and `./name` is a path.
    run(&sb, &["home-nas"], backup_args(&src)).success();
    let relative = run(&sb, &["./hom-nas"], ["snapshots"]);
    relative.assert_code(10);
    assert!(!sb.join("hom-nas").exists());
    // An unknown profile is a usage mistake too.
    let profile = lb(&sb, &[]).args(["--profile", "gti", "snapshots"]).run();
    profile.assert_code(2);
    profile.stderr_has("--profile gti");
}

/// Only `sync --seed NAME` copies the repository to an empty destination;
/// plain `sync` leaves it out naming the flag, and `init` beside an existing
/// repository points to it.
#[test]
fn an_empty_destination_is_seeded_only_when_named() {
    let sb = Sandbox::new();
    let src = one_file_tree(&sb);
    let usb = sb.join("usb").display().to_string();
    let new = sb.join("new").display().to_string();
    init(&sb, &[usb.as_str()]);
    run(&sb, &[usb.as_str()], backup_args(&src)).success();
    let both = [usb.as_str(), new.as_str()];

    let out = run(&sb, &both, FAST_INIT);
    out.assert_code(1);
    out.stderr_has("sync --seed local-new");
    assert!(!sb.join("new/config").exists());

    let out = run(&sb, &both, ["sync"]);
    out.assert_code(3);
    out.stderr_has("sync --seed local-new");
    assert!(
        !sb.join("new").exists(),
        "plain sync wrote to the empty destination"
    );

    let wrong = run(&sb, &both, ["sync", "--seed", "local-neu"]);
    wrong.assert_code(2);
    run(&sb, &both, ["sync", "--seed", "local-new"]).success();
    assert_restores(&sb, &[new.as_str()], &src);
    run(&sb, &both, ["sync"]).success();
}

/// Item 9: a backup naming an S3 prefix that holds another repository
/// leaves it untouched; `sync` on an empty prefix does not suggest `init`.
#[test]
fn an_s3_prefix_holding_another_repository_is_left_untouched() {
    let sb = Sandbox::new();
    let src = one_file_tree(&sb);
    let usb = sb.join("usb").display().to_string();
    let s3 = shared_s3_url();
    init(&sb, &[usb.as_str()]);
    other_repository(&sb, &s3, &src);
    let snapshots_before = run_other(&sb, &[s3.as_str()], ["--json", "snapshots"]).json();

    let both = [usb.as_str(), s3.as_str()];
    let out = run(&sb, &both, backup_args(&src));
    out.assert_code(3);
    out.stderr_has("holds a different repository");
    let summary = out.summary();
    assert_eq!(reached(&summary), ["local-usb"], "{summary}");
    run(&sb, &both, ["sync", "--repair"]).assert_code(3);

    run_other(&sb, &[s3.as_str()], ["check", "--read-data"]).success();
    let snapshots_after = run_other(&sb, &[s3.as_str()], ["--json", "snapshots"]).json();
    assert_eq!(snapshots_before, snapshots_after);

    let empty = shared_s3_url();
    let out = run(&sb, &[empty.as_str()], ["sync"]);
    out.assert_code(10);
    out.stderr_has("sync --seed");
}

/// The `name` of every destination `status --json` lists, in order.
fn status_names(sb: &Sandbox, dests: &[&str]) -> Vec<String> {
    let (_, list) = status(sb, dests);
    list.iter()
        .map(|d| d["name"].as_str().expect("name").to_string())
        .collect()
}

/// The last drill `status --json` shows for the destination named `name`.
fn last_drill(sb: &Sandbox, dests: &[&str], name: &str) -> serde_json::Value {
    let (_, list) = status(sb, dests);
    list.iter()
        .find(|d| d["name"] == name)
        .unwrap_or_else(|| panic!("{name} not in {list:?}"))["last_drill"]
        .clone()
}

/// Item 3: drill and check results are filed under the destination's
/// location, not its derived name. Two `lb` directories get distinct names;
/// swapping `-d` order or naming one alone never shows one destination's
/// result for the other; two prefixes of one bucket likewise.
#[test]
fn health_results_follow_the_destination_not_its_name() {
    let sb = Sandbox::new();
    let src = one_file_tree(&sb);
    std::fs::create_dir_all(sb.join("usb")).expect("mkdir");
    std::fs::create_dir_all(sb.join("nas")).expect("mkdir");
    let usb = sb.join("usb/lb").display().to_string();
    let nas = sb.join("nas/lb").display().to_string();
    let s3_a = shared_s3_url();
    let s3_b = shared_s3_url();
    let all = [usb.as_str(), nas.as_str(), s3_a.as_str(), s3_b.as_str()];
    init(&sb, &all);
    run(&sb, &all, backup_args(&src)).success();

    let names = status_names(&sb, &all);
    assert_eq!(names[..2], ["local-usb-lb", "local-nas-lb"], "{names:?}");
    assert_ne!(
        names[2], names[3],
        "two prefixes of one bucket share a name"
    );
    assert!(names[2].starts_with("s3-lifeboat-test-"), "{names:?}");
    let (s3_a_name, s3_b_name) = (names[2].clone(), names[3].clone());

    run(
        &sb,
        &all,
        [
            "drill",
            "--from",
            "local-usb-lb",
            "--from",
            s3_a_name.as_str(),
        ],
    )
    .success();
    assert_eq!(last_drill(&sb, &all, "local-usb-lb")["passed"], true);
    assert_eq!(
        last_drill(&sb, &all, "local-nas-lb"),
        serde_json::Value::Null
    );
    assert_eq!(last_drill(&sb, &all, &s3_a_name)["passed"], true);
    assert_eq!(last_drill(&sb, &all, &s3_b_name), serde_json::Value::Null);

    // Swapped order: the same destinations, the same results.
    let swapped = [s3_b.as_str(), s3_a.as_str(), nas.as_str(), usb.as_str()];
    assert_eq!(last_drill(&sb, &swapped, "local-usb-lb")["passed"], true);
    assert_eq!(
        last_drill(&sb, &swapped, "local-nas-lb"),
        serde_json::Value::Null
    );
    // Alone, each is `local-lb`: still its own result.
    assert_eq!(
        last_drill(&sb, &[nas.as_str()], "local-lb"),
        serde_json::Value::Null
    );
    assert_eq!(last_drill(&sb, &[usb.as_str()], "local-lb")["passed"], true);
    // Through another spelling of the same path.
    let dotted = sb.join("nas/../usb/lb").display().to_string();
    assert_eq!(
        last_drill(&sb, &[dotted.as_str()], "local-lb")["passed"],
        true
    );
}
