//! End to end through the `lifeboat` binary: restore drills on two local
//! destinations. Each destination is drilled alone: damage on one fails its
//! drill (naming a file) and never the other's, and `status` shows the last
//! drill of each.
//!
//! Needs `cargo build -p lifeboat-cli` first (see `lifeboat_tests::lifeboat_bin`).

use lifeboat_tests::FAST_INIT;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use lifeboat_tests::{repo, tree, Output, Sandbox, PASSWORD};
use serde_json::Value;

/// Two destinations, `<sandbox>/a` and `<sandbox>/b` (`local-a`, `local-b`),
/// one backup of a 40-file tree, and the backup's file and byte counts.
struct Setup {
    sb: Sandbox,
    src: PathBuf,
    files: u64,
    bytes: u64,
}

impl Setup {
    fn new() -> Setup {
        let sb = Sandbox::new();
        let src = sb.join("src");
        // 39 small files in a few directories and one 3 MiB file of random
        // bytes, so the biggest pack is mostly file data.
        for i in 0..39 {
            let dir = ["", "docs/", "docs/old/", "img/"][i % 4];
            tree::write(
                &src.join(format!("{dir}file-{i}.txt")),
                format!("file number {i}\n").repeat(i * 50 + 1).as_bytes(),
            );
        }
        tree::write_generated(&src.join("big.bin"), 3 << 20, 7, false);
        let setup = Setup {
            sb,
            src,
            files: 0,
            bytes: 0,
        };
        setup.run(FAST_INIT).success();
        let summary = setup
            .run(["--json".as_ref(), "backup".as_ref(), setup.src.as_os_str()])
            .success()
            .summary();
        let count = |key: &str| {
            summary[key]
                .as_u64()
                .unwrap_or_else(|| panic!("no {key} in {summary}"))
        };
        Setup {
            files: count("total_files_processed"),
            bytes: count("total_bytes_processed"),
            ..setup
        }
    }

    fn a(&self) -> PathBuf {
        self.sb.join("a")
    }

    fn b(&self) -> PathBuf {
        self.sb.join("b")
    }

    /// `lifeboat -d a -d b <args>`.
    fn run<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.sb
            .command()
            .password(PASSWORD)
            .env("LIFEBOAT_CACHE_DIR", self.sb.join("cache"))
            .env("LIFEBOAT_STATE_DIR", self.sb.join("state"))
            .dest(&self.a())
            .dest(&self.b())
            .args(args)
            .run()
    }

    /// `drill --json <args>`, expecting `code`; returns the drill object.
    #[track_caller]
    fn drill(&self, args: &[&str], code: i32) -> Value {
        let mut all = vec!["--json", "drill"];
        all.extend_from_slice(args);
        let out = self.run(&all);
        out.assert_code(code);
        let json = out.json();
        assert_eq!(json["message_type"], "drill", "{json}");
        assert_eq!(json["ok"], code == 0, "{json}");
        json
    }
}

/// The entry of destination `name` in a drill or status object.
#[track_caller]
fn entry<'a>(json: &'a Value, name: &str) -> &'a Value {
    json["destinations"]
        .as_array()
        .and_then(|list| list.iter().find(|d| d["name"] == name))
        .unwrap_or_else(|| panic!("no destination {name} in {json}"))
}

#[track_caller]
fn number(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("no number {key} in {v}"))
}

#[track_caller]
fn assert_passed_all(setup: &Setup, d: &Value) {
    assert_eq!(d["passed"], true, "{d}");
    assert_eq!(d["error"], Value::Null, "{d}");
    assert_eq!(d["first_failure"], Value::Null, "{d}");
    assert_eq!(number(d, "failures"), 0, "{d}");
    assert_eq!(number(d, "files"), setup.files, "{d}");
    assert_eq!(number(d, "bytes"), setup.bytes, "{d}");
}

#[test]
fn every_destination_passes_and_status_shows_it() {
    let setup = Setup::new();
    assert_eq!(setup.files, 40);
    assert!(setup.bytes > 3 << 20);

    // Nothing recorded yet.
    let status = setup.run(["--json", "status"]).success().json();
    for name in ["local-a", "local-b"] {
        assert_eq!(entry(&status, name)["last_drill"], Value::Null, "{status}");
        assert_eq!(entry(&status, name)["last_check"], Value::Null, "{status}");
    }

    let json = setup.drill(&[], 0);
    let list = json["destinations"].as_array().expect("destinations");
    let names: Vec<&str> = list.iter().filter_map(|d| d["name"].as_str()).collect();
    assert_eq!(names, ["local-a", "local-b"], "{json}");
    for d in list {
        assert_passed_all(&setup, d);
        assert!(
            d["bytes_per_second"].as_f64().is_some_and(|v| v > 0.0),
            "{d}"
        );
    }

    let status = setup.run(["--json", "status"]).success().json();
    let snapshot = json["snapshot"].as_str().expect("snapshot id");
    for name in ["local-a", "local-b"] {
        let last = &entry(&status, name)["last_drill"];
        assert_eq!(last["passed"], true, "{status}");
        assert!(snapshot.starts_with(last["snapshot"].as_str().expect("short id")));
        assert!(last["time"].as_str().is_some_and(|t| !t.is_empty()));
    }
    // The human table says so too.
    let out = setup.run(["status"]);
    let text = out.stdout_text();
    assert!(text.contains("Last drill"), "{text}");
    assert_eq!(text.matches("passed just now").count(), 2, "{text}");

    // The record is state, not cache: it lives under LIFEBOAT_STATE_DIR, per
    // repository id, and nothing of it under the cache directory.
    let cached: Vec<PathBuf> = tree::regular_files(&setup.sb.join("cache"))
        .into_iter()
        .filter(|p| p.ends_with("health.json"))
        .collect();
    assert!(cached.is_empty(), "{cached:?}");
    let records: Vec<PathBuf> = tree::regular_files(&setup.sb.join("state"))
        .into_iter()
        .filter(|p| p.ends_with("health.json"))
        .collect();
    assert_eq!(records.len(), 1, "{records:?}");
    let repo_dir = records[0].parent().and_then(Path::file_name);
    assert_eq!(repo_dir.map(|n| n.len()), Some(64), "{records:?}");
}

#[test]
fn a_flipped_byte_fails_only_that_destination_and_names_a_file() {
    let setup = Setup::new();
    let (pack, size) = repo::biggest_pack(&setup.b());
    tree::flip_byte(&pack, size / 2);

    let json = setup.drill(&[], 1);
    assert_passed_all(&setup, entry(&json, "local-a"));
    let b = entry(&json, "local-b");
    assert_eq!(b["passed"], false, "{b}");
    assert_eq!(b["error"], Value::Null, "{b}");
    let failures = number(b, "failures");
    assert!(failures >= 1, "{b}");
    assert_eq!(number(b, "files") + failures, setup.files, "{b}");
    let first = b["first_failure"].as_str().expect("first_failure");
    let file = first.split(": ").next().unwrap_or_default();
    assert!(
        file.starts_with(setup.src.to_str().expect("utf-8")) && Path::new(file).is_file(),
        "first_failure does not name a source file: {first}"
    );
    let pack_id = pack
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    assert!(
        first.contains(&pack_id),
        "first_failure names no pack: {first}"
    );

    let status = setup.run(["--json", "status"]).json();
    assert_eq!(entry(&status, "local-a")["last_drill"]["passed"], true);
    assert_eq!(entry(&status, "local-b")["last_drill"]["passed"], false);

    // The human table names the failure too.
    let out = setup.run(["drill"]);
    out.assert_code(1);
    let text = out.stdout_text();
    assert!(text.contains("FAILED") && text.contains(file), "{text}");
}

#[test]
fn a_destination_without_snapshots_fails_with_a_clear_error() {
    let setup = Setup::new();
    std::fs::remove_dir_all(setup.b().join("snapshots")).expect("remove snapshots/");

    let json = setup.drill(&[], 1);
    assert_passed_all(&setup, entry(&json, "local-a"));
    let b = entry(&json, "local-b");
    assert_eq!(
        (b["passed"].clone(), number(b, "files")),
        (false.into(), 0),
        "{b}"
    );
    let error = b["error"].as_str().expect("an error");
    assert!(error.contains("does not hold snapshot"), "{error}");

    // A destination with no repository at all fails alone too.
    let empty = setup.sb.join("empty");
    std::fs::create_dir(&empty).expect("mkdir");
    let out = setup
        .sb
        .command()
        .password(PASSWORD)
        .dest(&setup.a())
        .dest(&empty)
        .args(["--json", "drill"])
        .run();
    out.assert_code(1);
    let json = out.json();
    assert_passed_all(&setup, entry(&json, "local-a"));
    let error = entry(&json, "local-empty")["error"]
        .as_str()
        .expect("an error")
        .to_string();
    assert!(error.contains("no lifeboat repository"), "{error}");
}

#[test]
fn a_sample_verifies_some_files_and_one_destination_can_be_chosen() {
    let setup = Setup::new();
    let json = setup.drill(&["--sample", "50%", "--from", "local-b"], 0);
    let list = json["destinations"].as_array().expect("destinations");
    assert_eq!(list.len(), 1, "{json}");
    let b = entry(&json, "local-b");
    let files = number(b, "files");
    assert!(files > 0 && files < setup.files, "{b}");
    assert_eq!(files, setup.files / 2, "{b}");
    assert_eq!(number(b, "files_selected"), files, "{b}");

    // Bad samples are usage errors.
    for bad in ["0%", "150%", "half"] {
        setup.run(["drill", "--sample", bad]).assert_code(2);
    }
    setup
        .run(["drill", "--from", "nowhere"])
        .assert_code(2)
        .stderr_has("no such destination");
}

#[test]
fn a_restore_drill_restores_into_a_temporary_directory_and_removes_it() {
    let setup = Setup::new();
    let scratch = setup.sb.join("scratch");
    let json = setup.drill(&["--restore-to", scratch.to_str().expect("utf-8")], 0);
    for name in ["local-a", "local-b"] {
        let d = entry(&json, name);
        assert_passed_all(&setup, d);
        assert_eq!(d["restored"], true, "{d}");
    }
    let left: Vec<_> = std::fs::read_dir(&scratch).expect("scratch").collect();
    assert!(left.is_empty(), "the drill left {left:?}");
}
