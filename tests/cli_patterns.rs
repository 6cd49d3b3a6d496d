//! Issue 12, item 5: what a backup leaves out behaves as a restic user
//! expects. `*` stops at `/`, a pattern without a leading `/` matches at any
//! depth, `~` and `$HOME` expand in flags and in the config file, marker
//! files and other file systems exclude, `--files-from` names the paths, and
//! `--dry-run -v` lists every decision with the rule behind it. (The full
//! pattern table is a unit test: `engine/src/backup/excludes.rs`.)

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use lifeboat_tests::{tree, Output, Sandbox, PASSWORD};

/// A home directory with something for every rule; returns it.
fn home_tree(sb: &Sandbox) -> PathBuf {
    let home = sb.home().to_path_buf();
    for (rel, bytes) in [
        ("Documents/notes/a.txt", &b"left out by Documents/notes"[..]),
        ("Documents/notes2/b.txt", b"kept: notes2 is not notes"),
        ("Documents/report.txt", b"kept"),
        ("src/.cache/z", b"left out by $HOME/*/.cache"),
        ("src/x/.cache/y", b"kept: * does not cross /"),
        (
            "build/CACHEDIR.TAG",
            b"Signature: 8a477f597d28d172789f06886806bc55\n",
        ),
        ("build/obj.o", b"left out with its cache directory"),
        ("fakecache/CACHEDIR.TAG", b"no signature here"),
        ("private/.nobackup", b""),
        ("private/secret", b"left out by --exclude-if-present"),
        ("Music/LOUD.MP3", b"left out by --iexclude"),
        ("Music/quiet.mp3", b"left out by --iexclude"),
        ("Music/list.txt", b"kept"),
    ] {
        tree::write(&home.join(rel), bytes);
    }
    home
}

fn rules() -> Vec<&'static str> {
    vec![
        "--exclude",
        "Documents/notes",
        "--exclude",
        "$HOME/*/.cache",
        "--exclude-caches",
        "--exclude-if-present",
        ".nobackup",
        "--iexclude",
        "*.mp3",
    ]
}

fn lb(sb: &Sandbox, args: &[&str]) -> Output {
    sb.command()
        .password(PASSWORD)
        .dest(&sb.repo())
        .args(args)
        .run()
}

/// The paths of the latest snapshot under `home`, relative to it, leaving
/// out Lifeboat's own state directory (the sandbox's `XDG_STATE_HOME` is
/// `home/state`; opening a repository writes the key files it knows there,
/// and a backup of a home directory stores them like any other file).
fn stored_under(sb: &Sandbox, home: &Path) -> BTreeSet<String> {
    sb.ls_paths("latest")
        .into_iter()
        .filter_map(|p| {
            Path::new(&p)
                .strip_prefix(home)
                .ok()
                .map(|r| r.display().to_string())
        })
        .filter(|r| !r.is_empty() && r != "state" && !r.starts_with("state/"))
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[test]
fn excludes_follow_the_pattern_rules_and_dry_run_lists_each_decision() {
    let sb = Sandbox::new();
    sb.init_repo();
    let home = home_tree(&sb);
    let h = home.display().to_string();

    let mut args = vec!["backup", "--dry-run", "-v"];
    args.extend(rules());
    args.push(&h);
    let out = lb(&sb, &args);
    out.success();
    let text = out.stdout_text();
    for line in [
        format!("excluded    {h}/Documents/notes (--exclude \"Documents/notes\")"),
        format!("would store {h}/Documents/notes2/b.txt"),
        format!("excluded    {h}/src/.cache (--exclude \"{h}/*/.cache\")"),
        format!("would store {h}/src/x/.cache/y"),
        format!("excluded    {h}/build (--exclude-caches (CACHEDIR.TAG))"),
        format!("would store {h}/fakecache/CACHEDIR.TAG"),
        format!("excluded    {h}/private (--exclude-if-present .nobackup)"),
        format!("excluded    {h}/Music/LOUD.MP3 (--iexclude \"*.mp3\")"),
        format!("would store {h}/Music/list.txt"),
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in:\n{text}"
        );
    }
    assert!(
        !text.contains("notes/a.txt"),
        "below an excluded directory:\n{text}"
    );
    assert!(sb.snapshots().is_empty(), "a dry run stored a snapshot");

    let mut args = vec!["backup"];
    args.extend(rules());
    args.push(&h);
    lb(&sb, &args).success();
    assert_eq!(
        stored_under(&sb, &home),
        set(&[
            "Documents",
            "Documents/notes2",
            "Documents/notes2/b.txt",
            "Documents/report.txt",
            "Music",
            "Music/list.txt",
            "fakecache",
            "fakecache/CACHEDIR.TAG",
            "src",
            "src/x",
            "src/x/.cache",
            "src/x/.cache/y",
        ])
    );
}

/// `~` expands in the config file's `exclude` as it does in `paths`.
#[test]
fn home_expands_in_profile_excludes() {
    let sb = Sandbox::new();
    sb.init_repo();
    let home = home_tree(&sb);
    tree::write(
        &sb.config_home().join("lifeboat/config.toml"),
        b"[profiles.default]\npaths = [\"~/Documents\"]\nexclude = [\"~/Documents/notes2\"]\n",
    );
    lb(&sb, &["backup"]).success();
    assert_eq!(
        stored_under(&sb, &home),
        set(&[
            "Documents",
            "Documents/notes",
            "Documents/notes/a.txt",
            "Documents/report.txt",
        ])
    );
}

/// `--files-from` (lines, comments) and `--files-from-verbatim` (NUL
/// separated, names kept exactly) name what to back up.
#[test]
fn files_from_lists_name_the_paths() {
    let sb = Sandbox::new();
    sb.init_repo();
    let home = home_tree(&sb);
    let odd = home.join("odd name\nwith newline");
    tree::write(&odd, b"a name only a NUL-separated list can carry");
    let list = sb.join("list.txt");
    tree::write(
        &list,
        format!(
            "# what to keep\n{}/Documents/report.txt\n\n~/Music\n",
            home.display()
        )
        .as_bytes(),
    );
    let nul = sb.join("list.nul");
    let mut bytes = odd.as_os_str().as_encoded_bytes().to_vec();
    bytes.push(0);
    tree::write(&nul, &bytes);
    lb(
        &sb,
        &[
            "backup",
            "--files-from",
            list.to_str().expect("utf-8"),
            "--files-from-verbatim",
            nul.to_str().expect("utf-8"),
        ],
    )
    .success();
    assert_eq!(
        stored_under(&sb, &home),
        set(&[
            "Documents",
            "Documents/report.txt",
            "Music",
            "Music/LOUD.MP3",
            "Music/list.txt",
            "Music/quiet.mp3",
            "odd name\nwith newline",
        ])
    );
    // An empty list is not "back up nothing silently".
    let empty = sb.join("empty.txt");
    tree::write(&empty, b"# nothing\n");
    lb(
        &sb,
        &["backup", "--files-from", empty.to_str().expect("utf-8")],
    )
    .assert_code(2);
}

/// `--one-file-system` leaves out what is mounted below a backup path:
/// `/dev/shm` (a tmpfs) below `/dev` (devtmpfs), listed by a dry run.
#[test]
fn one_file_system_stays_on_the_backup_paths_file_system() {
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::metadata("/dev").expect("/dev").dev();
    let shm = std::fs::metadata("/dev/shm").expect("/dev/shm").dev();
    assert_ne!(dev, shm, "this test needs /dev/shm mounted apart from /dev");
    let sb = Sandbox::new();
    sb.init_repo();
    let out = lb(
        &sb,
        &["backup", "--dry-run", "-v", "--one-file-system", "/dev"],
    );
    out.success();
    let text = out.stdout_text();
    assert!(
        text.lines()
            .any(|l| l == "excluded    /dev/shm (--one-file-system)"),
        "{text}"
    );
    let without = lb(&sb, &["backup", "--dry-run", "-v", "/dev"]);
    without.success();
    assert!(
        without
            .stdout_text()
            .lines()
            .any(|l| l == "would store /dev/shm"),
        "{}",
        without.stdout_text()
    );
}
