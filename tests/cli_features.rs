//! End to end through the `lifeboat` binary: privacy of the stored bytes,
//! `--json`, excludes, tags and hosts, snapshot names, the embedded default
//! repository, the config file, password sources and mirrored destinations.
//!
//! Needs `cargo build -p lifeboat-cli` first (see `lifeboat_tests::lifeboat_bin`).

use lifeboat_tests::FAST_INIT;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use lifeboat_tests::tree;
use lifeboat_tests::{Sandbox, PASSWORD};
use serde_json::Value;

fn small_tree(root: &Path) {
    tree::write(&root.join("a.txt"), b"alpha\n");
    tree::write(&root.join("sub/b.txt"), b"beta\n");
    tree::write(
        &root.join(OsStr::from_bytes(b"caf\xe9.txt")),
        b"latin-1 name\n",
    );
}

fn is_hex64(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|s| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// No byte string of the names, contents, paths, host or tags backed up shows
/// in any file, or file name, of the repository.
#[test]
fn repository_reveals_no_names_contents_or_paths() {
    let sb = Sandbox::new();
    sb.init_repo();
    let src = sb.join("SECRET-DIR-qz81");
    let content = "TOPSECRETCONTENT-4f1c ".repeat(20_000);
    tree::write(&src.join("SECRET-NAME-xyz.txt"), content.as_bytes());
    tree::write(
        &src.join("SECRET-SUBDIR-k2/SECRET-NAME-abc.doc"),
        format!("{content} and more TOPSECRETCONTENT").as_bytes(),
    );
    std::os::unix::fs::symlink("SECRET-TARGET-p9", src.join("SECRET-LINK-m3")).expect("symlink");
    sb.repo_cmd([
        "backup".as_ref(),
        src.as_os_str(),
        "--host".as_ref(),
        "SECRET-HOST-w4".as_ref(),
        "--tag".as_ref(),
        "SECRET-TAG-v5".as_ref(),
    ])
    .success();
    // The snapshot does hold them (so the search below is meaningful).
    let listed = sb.ls_paths("latest");
    assert!(
        listed.iter().any(|p| p.ends_with("SECRET-NAME-xyz.txt")),
        "{listed:?}"
    );

    let src_path = src.as_os_str().as_bytes().to_vec();
    let needles: Vec<&[u8]> = vec![
        b"SECRET",
        b"TOPSECRETCONTENT",
        b"SECRET-NAME-xyz",
        b"SECRET-SUBDIR-k2",
        b"SECRET-TARGET-p9",
        b"SECRET-HOST-w4",
        b"SECRET-TAG-v5",
        &src_path,
    ];
    let files = tree::regular_files(&sb.repo());
    assert!(files.len() >= 5, "repository has too few files: {files:?}");
    for file in files {
        let name = file
            .strip_prefix(sb.repo())
            .expect("below repo")
            .as_os_str()
            .as_bytes();
        let bytes = std::fs::read(&file).expect("read repository file");
        for needle in &needles {
            let shown = String::from_utf8_lossy(needle);
            assert!(
                !name.windows(needle.len()).any(|w| w == *needle),
                "repository file name {file:?} contains {shown:?}"
            );
            assert!(
                !bytes.windows(needle.len()).any(|w| w == *needle),
                "repository file {file:?} contains {shown:?} in the clear"
            );
        }
    }
}

/// Issue 15, item 5: the repository (objects, key files, directories), the
/// metadata cache and the health record are owner-only, whatever the umask
/// lets through (restic's 0600/0700).
#[test]
fn everything_lifeboat_creates_is_owner_only() {
    let sb = Sandbox::new();
    sb.init_repo();
    let src = sb.join("src");
    small_tree(&src);
    sb.backup(&[&src]);
    sb.repo_cmd(["check"]).success();
    tree::assert_owner_only(&sb.repo());
    for dir in ["cache", "state"] {
        let dir = sb.home().join(dir);
        assert!(dir.exists(), "{} was not created", dir.display());
        tree::assert_owner_only(&dir.join("lifeboat"));
    }
}

#[test]
fn json_output_parses() {
    let sb = Sandbox::new();
    let init = sb
        .repo_cmd([
            "--json",
            "init",
            "--kdf-memory",
            "64",
            "--kdf-iterations",
            "1",
            "--insecure-kdf",
        ])
        .success()
        .json();
    assert_eq!(init["message_type"], "init", "{init}");
    assert!(is_hex64(&init["repository_id"]), "{init}");

    let src = sb.join("src");
    small_tree(&src);
    let out = sb.repo_cmd(["--json".as_ref(), "backup".as_ref(), src.as_os_str()]);
    out.success();
    for line in out.json_lines() {
        let kind = line["message_type"].as_str().unwrap_or_default();
        assert!(
            ["status", "summary"].contains(&kind),
            "unexpected line {line}"
        );
    }
    let summary = out.summary();
    assert!(is_hex64(&summary["snapshot_id"]), "{summary}");
    assert_eq!(summary["files_new"], 3, "{summary}");

    let snapshots = sb.snapshots();
    assert_eq!(snapshots.len(), 1);
    let snap = &snapshots[0];
    assert_eq!(snap["id"], summary["snapshot_id"], "{snap}");
    // One set of keys: the stored summary reads as the backup's summary line.
    let figures = snap["summary"].as_object().expect("summary object");
    assert!(figures.contains_key("total_duration"), "{snap}");
    for (key, value) in figures {
        assert_eq!(&summary[key], value, "{key}: {summary} vs {snap}");
    }
    let id = snap["id"].as_str().expect("id");
    let short = snap["short_id"].as_str().expect("short_id");
    assert!(short.len() >= 8 && id.starts_with(short), "{snap}");
    let time = snap["time"].as_str().expect("time");
    let offset = time.len() > 6 && {
        let tail = &time.as_bytes()[time.len() - 6..];
        (tail[0] == b'+' || tail[0] == b'-') && tail[3] == b':'
    };
    assert!(
        time.contains('T') && (time.ends_with('Z') || offset),
        "time {time:?} is not RFC 3339"
    );
    assert!(time.starts_with("20"), "time {time:?}");
    assert!(
        snap["hostname"].as_str().is_some_and(|h| !h.is_empty()),
        "{snap}"
    );
    assert_eq!(snap["paths"], serde_json::json!([s(&src)]), "{snap}");
    assert!(snap["tags"].is_array(), "{snap}");

    let entries = sb
        .repo_cmd(["--json", "ls", "latest"])
        .success()
        .json_lines();
    let file = entries
        .iter()
        .find(|e| e["path"] == s(&src.join("a.txt")))
        .unwrap_or_else(|| panic!("a.txt not listed: {entries:?}"));
    assert_eq!(file["type"], "file", "{file}");
    assert_eq!(file["size"], 6, "{file}");

    let check = sb
        .repo_cmd(["--json", "check", "--read-data"])
        .success()
        .summary();
    assert_eq!(check["ok"], true, "{check}");
}

#[test]
fn excludes_tags_and_host_are_honoured() {
    let sb = Sandbox::new();
    sb.init_repo();
    let src = sb.join("src");
    for name in [
        "keep.txt",
        "junk.tmp",
        "sub/keep2.txt",
        "sub/also.tmp",
        "cache/big.dat",
        "notes/skip.log",
        "notes/keep3.md",
    ] {
        tree::write(&src.join(name), name.as_bytes());
    }
    let exclude_file = sb.join("excludes");
    tree::write(
        &exclude_file,
        format!("# a comment\n\n{}\n*.log\n", s(&src.join("cache"))).as_bytes(),
    );
    sb.repo_cmd([
        "backup".as_ref(),
        "--exclude".as_ref(),
        "*.tmp".as_ref(),
        "--exclude-file".as_ref(),
        exclude_file.as_os_str(),
        "--tag".as_ref(),
        "photos".as_ref(),
        "--tag".as_ref(),
        "more,extra".as_ref(),
        "--host".as_ref(),
        "myhost".as_ref(),
        src.as_os_str(),
    ])
    .success();
    let listed = sb.ls_paths("latest");
    for kept in ["keep.txt", "sub/keep2.txt", "notes", "notes/keep3.md"] {
        assert!(
            listed.contains(&s(&src.join(kept))),
            "{kept} missing: {listed:?}"
        );
    }
    for gone in [
        "junk.tmp",
        "sub/also.tmp",
        "cache",
        "cache/big.dat",
        "notes/skip.log",
    ] {
        assert!(
            !listed.contains(&s(&src.join(gone))),
            "{gone} not excluded: {listed:?}"
        );
    }

    let snap = &sb.snapshots()[0];
    assert_eq!(snap["hostname"], "myhost", "{snap}");
    assert_eq!(
        snap["tags"],
        serde_json::json!(["extra", "more", "photos"]),
        "{snap}"
    );
    let count = |args: &[&str]| {
        let mut all = vec!["--json", "snapshots"];
        all.extend_from_slice(args);
        sb.repo_cmd(all)
            .success()
            .json()
            .as_array()
            .expect("array")
            .len()
    };
    assert_eq!(count(&["--tag", "photos"]), 1);
    assert_eq!(count(&["--tag", "nope"]), 0);
    assert_eq!(count(&["--host", "myhost"]), 1);
    assert_eq!(count(&["--host", "elsewhere"]), 0);

    // The parent is the latest snapshot of the same host: another host reads everything.
    let other = sb.repo_cmd([
        "--json".as_ref(),
        "backup".as_ref(),
        "--host".as_ref(),
        "other".as_ref(),
        src.as_os_str(),
    ]);
    let summary = other.success().summary();
    assert_eq!(summary["files_unmodified"], 0, "{summary}");
    let again = sb.repo_cmd([
        "--json".as_ref(),
        "backup".as_ref(),
        "--host".as_ref(),
        "other".as_ref(),
        src.as_os_str(),
    ]);
    let summary = again.success().summary();
    assert_eq!(summary["files_new"], 0, "{summary}");
    assert_eq!(summary["files_changed"], 0, "{summary}");
}

#[test]
fn ls_and_snapshot_names() {
    let sb = Sandbox::new();
    sb.init_repo();
    let target = sb.join("restored");
    for args in [
        vec!["ls", "latest"],
        vec!["restore", "latest", "--target", "restored"],
    ] {
        sb.repo_cmd(args)
            .assert_code(1)
            .stderr_has("no snapshot matches");
    }
    assert!(!target.exists());

    let src = sb.join("src");
    small_tree(&src);
    sb.backup(&[&src]);
    let plain = sb.repo_cmd(["ls", "latest"]).success().stdout.clone();
    let lines: Vec<&[u8]> = plain
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    let mut expected: Vec<PathBuf> = vec![
        src.clone(),
        src.join("a.txt"),
        src.join("sub"),
        src.join("sub/b.txt"),
    ];
    expected.push(src.join(OsStr::from_bytes(b"caf\xe9.txt")));
    for path in &expected {
        let bytes = path.as_os_str().as_bytes();
        assert!(
            lines.contains(&bytes),
            "ls latest does not list {path:?} as raw bytes"
        );
    }

    let id = sb.snapshots()[0]["id"].as_str().expect("id").to_string();
    for prefix in [&id[..4], &id[..8], &id.to_uppercase()[..10], &id[..]] {
        let out = sb.repo_cmd(["ls", prefix]);
        out.success();
        assert_eq!(
            out.stdout, plain,
            "ls {prefix} lists something else than ls latest"
        );
    }
    sb.repo_cmd(["ls", &id[..3]])
        .assert_code(1)
        .stderr_has("at least 4 hex digits");
    sb.repo_cmd(["ls", "zzzz"])
        .assert_code(1)
        .stderr_has("at least 4 hex digits");
    let first = id.as_bytes()[0];
    let other = if first == b'0' { "1" } else { "0" };
    sb.repo_cmd(["ls", &format!("{other}{}", &id[1..6])])
        .assert_code(1)
        .stderr_has("no snapshot matches");

    let sub = sb.repo_cmd([
        "ls".as_ref(),
        "latest".as_ref(),
        src.join("sub").as_os_str(),
    ]);
    let text = sub.success().stdout_text();
    assert_eq!(
        text.lines().collect::<Vec<_>>(),
        vec![s(&src.join("sub")), s(&src.join("sub/b.txt"))]
    );
    let long = sb.repo_cmd(["ls", "-l", "latest"]).success().stdout_text();
    assert!(
        long.lines()
            .any(|l| l.starts_with("-rw-r--r--") && l.ends_with("/a.txt")),
        "{long}"
    );
}

/// With no `-d` and no config file, the first backup creates the repository in
/// `$XDG_DATA_HOME/lifeboat/repository` (default KDF) and says where.
#[test]
fn embedded_default_repository() {
    let sb = Sandbox::new();
    let src = sb.join("src");
    small_tree(&src);
    let repo = sb.data_home().join("lifeboat/repository");
    let out = sb.lb(["backup".as_ref(), src.as_os_str()]);
    out.success().stdout_has(&s(&repo));
    assert!(
        repo.join("config").is_file(),
        "no repository at {repo:?}: {out:?}"
    );
    let list = sb.lb(["--json", "snapshots"]).success().json();
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    assert_eq!(list[0]["paths"], serde_json::json!([s(&src)]));
    let again = sb.lb(["backup".as_ref(), src.as_os_str()]);
    assert!(
        !again.success().stdout_text().contains("created"),
        "{again:?}"
    );
}

/// A config file names the destination and the profile's paths, excludes and
/// tags; found through --config, LIFEBOAT_CONFIG and the default location.
#[test]
fn config_file_destinations_and_profiles() {
    let sb = Sandbox::new();
    let src = sb.join("src");
    small_tree(&src);
    tree::write(&src.join("scratch.tmp"), b"left out");
    tree::write(&sb.home().join("docs/letter.txt"), b"dear");
    let repo = sb.join("cfg-repo");
    let config = sb.join("lifeboat.toml");
    let text = format!(
        "[destinations.main]\nurl = {:?}\n\n[profiles.default]\npaths = [{:?}]\nexclude = [\"*.tmp\"]\ntags = [\"daily\"]\n\n[profiles.home]\npaths = [\"~/docs\"]\n",
        s(&repo),
        s(&src)
    );
    tree::write(&config, text.as_bytes());
    let with_flag = || sb.command().password(PASSWORD).arg("--config").arg(&config);
    let with_env = || {
        sb.command()
            .password(PASSWORD)
            .env("LIFEBOAT_CONFIG", &config)
    };

    with_flag().args(FAST_INIT).run().success();
    assert!(
        repo.join("config").is_file(),
        "init did not use the config's destination"
    );
    with_flag().arg("backup").run().success();
    with_env().arg("backup").run().success();
    with_env()
        .args(["--profile", "home", "backup"])
        .run()
        .success();

    let list = with_env()
        .args(["--json", "snapshots"])
        .run()
        .success()
        .json();
    let list = list.as_array().expect("array").clone();
    assert_eq!(list.len(), 3, "{list:?}");
    for snap in &list[..2] {
        assert_eq!(snap["paths"], serde_json::json!([s(&src)]), "{snap}");
        assert_eq!(snap["tags"], serde_json::json!(["daily"]), "{snap}");
    }
    assert_eq!(
        list[2]["paths"],
        serde_json::json!([s(&sb.home().join("docs"))])
    );

    let listed = with_flag()
        .args(["--json", "-d", "main", "ls"])
        .arg(list[0]["id"].as_str().expect("id"))
        .run();
    let paths: Vec<String> = listed
        .success()
        .json_lines()
        .iter()
        .map(|e| e["path"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(paths.contains(&s(&src.join("a.txt"))), "{paths:?}");
    assert!(
        !paths.contains(&s(&src.join("scratch.tmp"))),
        "profile exclude ignored: {paths:?}"
    );

    // The default location: $XDG_CONFIG_HOME/lifeboat/config.toml.
    tree::write(
        &sb.config_home().join("lifeboat/config.toml"),
        text.as_bytes(),
    );
    let list = sb.lb(["--json", "snapshots"]).success().json();
    assert_eq!(
        list.as_array().map(Vec::len),
        Some(3),
        "default config file not read: {list}"
    );

    sb.lb(["--config", "/nonexistent/lifeboat.toml", "snapshots"])
        .assert_code(1)
        .stderr_has("config file");
}

#[test]
fn password_file_sources() {
    let sb = Sandbox::new();
    sb.init_repo();
    let good = sb.join("pw");
    tree::write(
        &good,
        format!("{PASSWORD}\nignored second line\n").as_bytes(),
    );
    let bad = sb.join("bad-pw");
    tree::write(&bad, b"nope\n");
    let run = |lb: lifeboat_tests::Lb| lb.dest(&sb.repo()).arg("snapshots").run();
    run(sb.command().arg("--password-file").arg(&good)).success();
    run(sb.command().env("LIFEBOAT_PASSWORD_FILE", &good)).success();
    run(sb.command().arg("--password-file").arg(&bad)).assert_code(12);
    run(sb.command().arg("--password-file").arg(sb.join("missing"))).assert_code(1);
}

/// Two destinations hold identical objects; a damaged or missing pack on the
/// first is read from the second, and the restore is still exact.
#[test]
fn mirrored_destinations_fail_over() {
    let sb = Sandbox::new();
    let (a, b) = (sb.join("a"), sb.join("b"));
    let both = || sb.on(&[&a, &b]);
    sb.init_on(&[&a, &b]);
    let src = sb.join("src");
    small_tree(&src);
    tree::write_generated(&src.join("big.bin"), 6 << 20, 3, true);
    both().arg("backup").arg(&src).run().success();
    assert_eq!(
        tree::digest_dir(&a),
        tree::digest_dir(&b),
        "destinations differ"
    );

    let mut packs = tree::regular_files(&a.join("data"));
    packs.sort_by_key(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0));
    let biggest = packs.pop().expect("a pack");
    tree::flip_byte(
        &biggest,
        std::fs::metadata(&biggest).expect("stat").len() / 2,
    );
    for small in packs {
        std::fs::remove_file(small).expect("remove pack");
    }
    let target = sb.join("restored");
    both()
        .args([
            "restore".as_ref(),
            "latest".as_ref(),
            "--target".as_ref(),
            target.as_os_str(),
        ])
        .run()
        .success();
    let diffs = tree::compare_trees(&src, &tree::restored(&target, &src));
    assert!(diffs.is_empty(), "{diffs:#?}");
}

/// `--from NAME` reads one destination only: it restores from an intact one,
/// fails on a damaged one instead of failing over, and an unknown name is a
/// clear error listing the real ones.
#[test]
fn restore_from_one_named_destination() {
    let sb = Sandbox::new();
    let (a, b) = (sb.join("a"), sb.join("b"));
    let both = || sb.on(&[&a, &b]);
    sb.init_on(&[&a, &b]);
    let src = sb.join("src");
    small_tree(&src);
    both().arg("backup").arg(&src).run().success();
    for pack in tree::regular_files(&a.join("data")) {
        std::fs::remove_file(pack).expect("remove pack");
    }
    let restore_from = |name: &str, target: &Path| {
        both()
            .args([
                "restore".as_ref(),
                "latest".as_ref(),
                "--from".as_ref(),
                OsStr::new(name),
                "--target".as_ref(),
                target.as_os_str(),
            ])
            .run()
    };
    let good = sb.join("from-b");
    restore_from("local-b", &good).success();
    assert!(tree::compare_trees(&src, &tree::restored(&good, &src)).is_empty());
    let bad = sb.join("from-a");
    let out = restore_from("local-a", &bad);
    assert_ne!(
        out.code, 0,
        "a destination without its packs cannot restore alone"
    );
    restore_from("nosuch", &sb.join("x"))
        .assert_code(2)
        .stderr_has("local-a, local-b");
}
