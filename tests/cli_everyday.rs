//! The everyday commands, end to end on the real binary: `find`, `diff`,
//! `dump`, `stats`, and the generated completions and manual pages
//! (`tag` and `rewrite`: `cli_rewrite.rs`). Every `--json` output is parsed
//! and checked.

use std::collections::BTreeSet;
use std::fs;
use std::process::{Command, Stdio};

use lifeboat_tests::tree::{self, TreeOptions};
use lifeboat_tests::Sandbox;
use serde_json::Value;

/// `--json <args>` on the sandbox repository: its summary line (status
/// lines may come before it on a slow run).
fn json(sb: &Sandbox, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    sb.repo_cmd(all).success().summary()
}

/// The ids of the sandbox's snapshots, oldest first.
fn snapshot_ids(sb: &Sandbox) -> Vec<String> {
    sb.snapshots()
        .iter()
        .map(|s| s["id"].as_str().expect("id").to_string())
        .collect()
}

#[test]
fn find_lists_each_match_with_its_snapshots_newest_first() {
    let sb = Sandbox::new();
    sb.init_repo();
    let src = sb.join("home");
    tree::write(&src.join("docs/taxes-2024.pdf"), b"return 2024");
    tree::write(&src.join("docs/notes.txt"), b"notes");
    // A mostly unchanged part the second search answers from memory.
    for i in 0..30 {
        tree::write(&src.join(format!("photos/{i:02}/img.jpg")), &[i as u8; 100]);
    }
    sb.backup(&[&src]);
    fs::rename(
        src.join("docs/taxes-2024.pdf"),
        src.join("docs/taxes-2024-final.pdf"),
    )
    .unwrap();
    sb.backup(&[&src]);
    let ids = snapshot_ids(&sb);

    let found = json(&sb, &["find", "taxes-2024*", "notes.txt"]);
    let matches = found["matches"].as_array().expect("matches");
    let by_path = |suffix: &str| -> Vec<String> {
        let m = matches
            .iter()
            .find(|m| m["path"].as_str().unwrap().ends_with(suffix))
            .unwrap_or_else(|| panic!("no match for {suffix} in {found}"));
        m["matches"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["snapshot"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(matches.len(), 3, "{found}");
    // The old name is only in the first snapshot, the new only in the second,
    // the unchanged file in both, newest first.
    assert_eq!(by_path("/docs/taxes-2024.pdf"), vec![ids[0].clone()]);
    assert_eq!(by_path("/docs/taxes-2024-final.pdf"), vec![ids[1].clone()]);
    assert_eq!(
        by_path("/docs/notes.txt"),
        vec![ids[1].clone(), ids[0].clone()]
    );
    let first = &matches[0]["matches"][0];
    assert_eq!(first["type"], "file");
    assert!(first["mtime"].as_str().unwrap().ends_with('Z'), "{first}");
    assert_eq!(found["snapshots_searched"], 2);
    // The photos subtree is the same tree at the same path in both: read once.
    assert!(found["trees_reused"].as_u64().unwrap() >= 31, "{found}");

    // A pattern is a whole name unless it says otherwise; case matters
    // unless -i; --snapshot narrows the search.
    let none = json(&sb, &["find", "taxes"]);
    assert_eq!(none["paths"], 0, "{none}");
    let caseless = json(&sb, &["find", "-i", "NOTES.TXT", "--snapshot", &ids[0]]);
    assert_eq!(caseless["paths"], 1, "{caseless}");
    assert_eq!(caseless["snapshots_searched"], 1);
    let anchored = json(&sb, &["find", &format!("{}/docs", src.display())]);
    assert_eq!(anchored["paths"], 1, "{anchored}");

    let human = sb.repo_cmd(["find", "notes.txt"]);
    human
        .success()
        .stdout_has("1 matching path in 2 snapshots searched");
    sb.repo_cmd(["find", "a["])
        .assert_code(1)
        .stderr_has("invalid find pattern \"a[\"");
}

#[test]
fn diff_reports_every_kind_of_change() {
    let sb = Sandbox::new();
    sb.init_repo();
    let src = sb.join("src");
    tree::write(&src.join("modified.txt"), b"one");
    tree::write(&src.join("removed.txt"), b"gone soon");
    tree::write(&src.join("gone-dir/inner.txt"), b"inner");
    tree::write(&src.join("became-dir"), b"a file first");
    tree::write(&src.join("meta.txt"), b"same bytes");
    tree::write(&src.join("link-target-a"), b"a");
    std::os::unix::fs::symlink("link-target-a", src.join("link")).unwrap();
    for i in 0..20 {
        tree::write(&src.join(format!("same/{i}/f")), b"unchanged");
    }
    tree::fix_times(&src);
    sb.backup(&[&src]);

    tree::write(&src.join("modified.txt"), b"two, longer");
    fs::remove_file(src.join("removed.txt")).unwrap();
    fs::remove_dir_all(src.join("gone-dir")).unwrap();
    fs::remove_file(src.join("became-dir")).unwrap();
    tree::write(&src.join("became-dir/child.txt"), b"child");
    tree::chmod(&src.join("meta.txt"), 0o600);
    fs::remove_file(src.join("link")).unwrap();
    std::os::unix::fs::symlink("elsewhere", src.join("link")).unwrap();
    tree::write(&src.join("added.txt"), b"new");
    tree::write(&src.join("new-dir/a/b.txt"), b"deep");
    sb.backup(&[&src]);
    let ids = snapshot_ids(&sb);

    let run = |metadata: bool| {
        let mut args = vec!["--json", "diff", ids[0].as_str(), ids[1].as_str()];
        if metadata {
            args.push("--metadata");
        }
        sb.repo_cmd(args).success().json_lines()
    };
    let lines = run(true);
    let s = |rel: &str| format!("{}/{rel}", src.display());
    let changes: BTreeSet<(String, String)> = lines
        .iter()
        .filter(|l| l["message_type"] == "change")
        .map(|l| {
            (
                l["modifier"].as_str().unwrap().to_string(),
                l["path"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let want: BTreeSet<(String, String)> = [
        ("M", s("modified.txt")),
        ("-", s("removed.txt")),
        ("-", s("gone-dir/")),
        ("-", s("gone-dir/inner.txt")),
        ("T", s("became-dir/")),
        ("+", s("became-dir/child.txt")),
        ("U", s("meta.txt")),
        ("M", s("link")),
        ("+", s("added.txt")),
        ("+", s("new-dir/")),
        ("+", s("new-dir/a/")),
        ("+", s("new-dir/a/b.txt")),
    ]
    .into_iter()
    .map(|(m, p)| (m.to_string(), p))
    .collect();
    // The source directory itself changed (its mtime): reported as U too.
    let extra: Vec<_> = changes.difference(&want).collect();
    assert!(
        extra.iter().all(|(m, p)| m == "U" && !p.contains("same")),
        "unexpected changes: {extra:?}"
    );
    let missing: Vec<_> = want.difference(&changes).collect();
    assert!(
        missing.is_empty(),
        "missing changes: {missing:?}\nall: {changes:?}"
    );

    let stats = lines.last().expect("statistics line");
    assert_eq!(stats["message_type"], "statistics");
    assert_eq!(stats["added"]["files"], 3, "{stats}"); // added, child, b.txt
    assert_eq!(stats["added"]["dirs"], 2, "{stats}");
    assert_eq!(stats["removed"]["files"], 2, "{stats}"); // removed, inner
    assert_eq!(stats["removed"]["dirs"], 1, "{stats}");
    assert_eq!(stats["changed_files"], 1);
    assert_eq!(stats["changed_others"], 1, "the link's target");
    assert_eq!(stats["type_changed"], 1);
    assert!(
        stats["added"]["bytes"].as_u64().unwrap() >= 3 + 5 + 4 + 11,
        "{stats}"
    );
    // The twenty unchanged directories were skipped unread: the two roots'
    // chains down to the source, the source itself, and the changed
    // directories only.
    assert!(stats["trees_read"].as_u64().unwrap() < 20, "{stats}");

    // Without --metadata, no U lines.
    let plain = run(false);
    assert!(
        plain.iter().all(|l| l["modifier"] != "U"),
        "U without --metadata: {plain:?}"
    );
    sb.repo_cmd(["diff", &ids[0], &ids[1]])
        .success()
        .stdout_has(&format!("+    {}\n", s("added.txt")))
        .stdout_has("Files:       3 new, 2 removed, 1 changed");
}

#[test]
fn dump_writes_a_file_and_a_directory_as_tar_and_zip() {
    let sb = Sandbox::new();
    sb.init_repo();
    let src = sb.join("src");
    let built = tree::build_tree(
        &src,
        &TreeOptions {
            big_file: Some(3 << 20),
            small_files: 40,
            sparse_size: 4 << 20,
            depth: 8,
            fifo: true,
        },
    );
    sb.backup(&[&src]);

    // One file, as it is.
    let big = built.big.expect("big file");
    let out = sb.repo_cmd(["dump".as_ref(), "latest".as_ref(), big.as_os_str()]);
    out.success();
    assert_eq!(out.stdout, fs::read(&big).unwrap(), "dumped bytes differ");

    // The directory as tar, extracted by GNU tar: the same tree (names
    // that are not UTF-8, hard links, symlinks, the sparse file, modes,
    // owners, times to the nanosecond).
    let tar_file = sb.join("src.tar");
    let out = sb.repo_cmd([
        "dump".as_ref(),
        "latest".as_ref(),
        src.as_os_str(),
        "--target".as_ref(),
        tar_file.as_os_str(),
    ]);
    out.success().stdout_has("to ");
    let extracted = sb.join("x");
    fs::create_dir(&extracted).unwrap();
    let status = Command::new("tar")
        .arg("-xpf")
        .arg(&tar_file)
        .arg("-C")
        .arg(&extracted)
        .status()
        .expect("run tar");
    assert!(status.success(), "tar -x failed");
    tree::assert_same_tree(&src, &extracted.join("src"));

    // Standard output piped into tar gives the same.
    let piped = sb.join("piped");
    fs::create_dir(&piped).unwrap();
    let dump = sb
        .command()
        .password(lifeboat_tests::PASSWORD)
        .dest(&sb.repo())
        .args([
            "dump".as_ref(),
            "latest".as_ref(),
            src.join("names").as_os_str(),
        ])
        .run();
    dump.success();
    let mut tar = Command::new("tar")
        .arg("-xpf")
        .arg("-")
        .arg("-C")
        .arg(&piped)
        .stdin(Stdio::piped())
        .spawn()
        .expect("run tar");
    std::io::Write::write_all(tar.stdin.as_mut().unwrap(), &dump.stdout).unwrap();
    drop(tar.stdin.take());
    assert!(tar.wait().unwrap().success());
    tree::assert_same_tree(&src.join("names"), &piped.join("names"));

    // Zip: names that are not UTF-8 cannot be held, and say so.
    sb.repo_cmd([
        "dump".as_ref(),
        "latest".as_ref(),
        src.as_os_str(),
        "--archive".as_ref(),
        "zip".as_ref(),
        "--target".as_ref(),
        sb.join("all.zip").as_os_str(),
    ])
    .assert_code(1)
    .stderr_has("use --archive tar");
    assert!(
        !sb.join("all.zip").exists(),
        "a failed dump left its target"
    );
    assert!(!sb.join("all.zip.partial").exists());
    let zip_file = sb.join("small.zip");
    let out = sb.repo_cmd([
        "--json".as_ref(),
        "dump".as_ref(),
        "latest".as_ref(),
        src.join("small").as_os_str(),
        "-a".as_ref(),
        "zip".as_ref(),
        "-t".as_ref(),
        zip_file.as_os_str(),
    ]);
    let summary = out.success().json();
    let small_files = tree::regular_files(&src.join("small")).len();
    assert_eq!(summary["files"], small_files as u64, "{summary}");
    let unzipped = sb.join("unzipped");
    let status = Command::new("python3")
        .args(["-m", "zipfile", "-e"])
        .arg(&zip_file)
        .arg(&unzipped)
        .status()
        .expect("run python3 -m zipfile");
    assert!(status.success());
    for file in tree::regular_files(&src.join("small")) {
        let rel = file.strip_prefix(&src).unwrap();
        assert_eq!(
            fs::read(unzipped.join(rel)).unwrap(),
            fs::read(&file).unwrap(),
            "{rel:?}"
        );
    }

    // Errors: a path that is not there; a target that exists.
    sb.repo_cmd(["dump", "latest", "/no/such/file"])
        .assert_code(1)
        .stderr_has("not found in the snapshot");
    sb.repo_cmd([
        "dump".as_ref(),
        "latest".as_ref(),
        big.as_os_str(),
        "--target".as_ref(),
        tar_file.as_os_str(),
    ])
    .assert_code(2)
    .stderr_has("already exists");
}

#[test]
fn dump_of_a_damaged_blob_fails_and_leaves_no_target() {
    let sb = Sandbox::new();
    sb.init_repo();
    let src = sb.join("src");
    fs::create_dir_all(&src).unwrap();
    tree::write_generated(&src.join("f.bin"), 1 << 20, 5, false);
    sb.backup(&[&src]);
    // Flip a byte inside every data pack: the blob no longer opens.
    for pack in tree::regular_files(&sb.repo().join("data")) {
        let len = fs::metadata(&pack).unwrap().len();
        if len > 200_000 {
            tree::flip_byte(&pack, len / 3);
        }
    }
    let target = sb.join("out.bin");
    sb.repo_cmd([
        "dump".as_ref(),
        "latest".as_ref(),
        src.join("f.bin").as_os_str(),
        "--target".as_ref(),
        target.as_os_str(),
    ])
    .assert_code(1);
    assert!(!target.exists(), "a dump of damaged data left a file");
}

#[test]
fn stats_agree_with_the_backup_summary() {
    let sb = Sandbox::new();
    sb.init_repo();
    let src = sb.join("src");
    tree::text_tree(&src);
    tree::write_generated(&src.join("big.bin"), 2 << 20, 9, true);
    let summary = sb.backup(&[&src]);
    let one = json(&sb, &["stats", "latest"]);
    assert_eq!(one["mode"], "restore-size");
    assert_eq!(
        one["total_file_count"], summary["total_files_processed"],
        "{one}\n{summary}"
    );
    assert_eq!(one["total_size"], summary["total_bytes_processed"]);
    // The same data again: twice the restore size, the same stored data.
    sb.backup(&[&src]);
    let raw = json(&sb, &["stats", "--mode", "raw-data"]);
    assert_eq!(raw["snapshots_count"], 2);
    assert_eq!(
        raw["total_size"].as_u64().unwrap(),
        2 * summary["total_bytes_processed"].as_u64().unwrap()
    );
    let ratio = raw["deduplication_ratio"].as_f64().unwrap();
    assert!((1.9..=2.0).contains(&ratio), "dedup ratio {ratio}: {raw}");
    assert!(raw["compression_ratio"].as_f64().unwrap() > 1.0, "{raw}");
    let dest = &raw["destinations"][0];
    assert_eq!(dest["kinds"]["snapshots"]["objects"], 2, "{dest}");
    let packs: u64 = tree::regular_files(&sb.repo().join("data"))
        .iter()
        .map(|p| fs::metadata(p).unwrap().len())
        .sum();
    assert_eq!(dest["kinds"]["data"]["bytes"], packs);
    // Every stored blob is used: the distinct blobs fill the packs, less
    // their headers.
    let stored = raw["total_stored_size"].as_u64().unwrap();
    assert!(
        stored <= packs && stored > packs * 9 / 10,
        "{stored} of {packs}"
    );
    let per_file = json(&sb, &["stats", "--mode", "blobs-per-file", "latest"]);
    assert!(per_file["unique_file_count"].as_u64().unwrap() > 0);
    assert!(
        per_file["unique_file_blobs"].as_u64().unwrap()
            >= per_file["unique_file_count"].as_u64().unwrap()
    );
    sb.repo_cmd(["stats"])
        .success()
        .stdout_has("Stats in restore-size mode")
        .stdout_has("Destinations:");
}

#[test]
fn completions_and_manual_pages_come_from_the_same_definitions() {
    let sb = Sandbox::new();
    let bash = sb.command().args(["completion", "bash"]).run();
    bash.success().stdout_has("_lifeboat()").stdout_has("find");
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let out = sb.command().args(["completion", shell]).run();
        out.success();
        assert!(
            out.stdout_text().contains("dump"),
            "{shell} completion lacks dump"
        );
    }
    sb.command()
        .args(["completion", "tcsh"])
        .run()
        .assert_code(2);
    let page = sb.command().args(["man"]).run();
    page.success().stdout_has(".TH lifeboat 1");
    let dir = sb.join("man1");
    sb.command()
        .args(["man".as_ref(), "--dir".as_ref(), dir.as_os_str()])
        .run()
        .success();
    for page in [
        "lifeboat.1",
        "lifeboat-find.1",
        "lifeboat-dump.1",
        "lifeboat-rewrite.1",
    ] {
        let text = fs::read_to_string(dir.join(page)).unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(text.contains(".SH"), "{page} is not a manual page");
    }
}
