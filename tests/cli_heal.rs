//! End to end through the `lifeboat` binary: find what one provider lost or
//! corrupted, heal it from the others, and prove each destination restores
//! alone (the tests issue 4 asks for). Local + S3 (moto) + SFTP (sshd), so
//! these need `./scripts/test.sh`'s servers and never skip.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use lifeboat_tests::multi::*;
use lifeboat_tests::{tree, Sandbox};
use serde_json::Value;

/// Every object key under a local destination's repository prefixes.
fn object_keys(root: &Path) -> Vec<String> {
    let mut keys = Vec::new();
    for prefix in ["data", "index", "snapshots"] {
        let dir = root.join(prefix);
        if dir.exists() {
            for file in tree::regular_files(&dir) {
                let rel = file.strip_prefix(root).expect("under root");
                keys.push(rel.to_string_lossy().into_owned());
            }
        }
    }
    keys.sort();
    keys
}

/// The largest pack under a destination's directory.
fn largest_pack(root: &Path) -> PathBuf {
    tree::regular_files(&root.join("data"))
        .into_iter()
        .max_by_key(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .expect("a pack")
}

/// Flips one byte in the middle of a stored object (replacing the file, so
/// read-only object files need no chmod).
fn corrupt(path: &Path) {
    let mut bytes = std::fs::read(path).expect("read object");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::remove_file(path).expect("remove object");
    std::fs::write(path, bytes).expect("write object");
}

/// `check [args] --json` → (exit code, summary).
fn check_json(sb: &Sandbox, dests: &[&str], args: &[&str]) -> (i32, Value) {
    let mut all = vec!["--json", "check"];
    all.extend_from_slice(args);
    let out = run(sb, dests, all);
    (out.code, out.summary())
}

/// Problems of the check summary as (destination, object, kind, healable).
fn problems(summary: &Value) -> Vec<(String, String, String, bool)> {
    summary["problems"]
        .as_array()
        .unwrap_or_else(|| panic!("no problems array: {summary}"))
        .iter()
        .map(|p| {
            (
                p["destination"].as_str().unwrap_or("").to_string(),
                p["object"].as_str().unwrap_or("").to_string(),
                p["kind"].as_str().unwrap_or("").to_string(),
                p["healable"].as_bool().unwrap_or(false),
            )
        })
        .collect()
}

/// `drill --json` passes on every destination.
#[track_caller]
fn assert_drill_passes(sb: &Sandbox, dests: &[&str]) {
    let out = run(sb, dests, ["--json", "drill"]);
    let v = out.json();
    assert_eq!(out.code, 0, "drill failed: {v}\n{}", out.stderr);
    let rows = v["destinations"].as_array().expect("destinations");
    assert_eq!(rows.len(), dests.len(), "{v}");
    assert!(rows.iter().all(|r| r["passed"] == true), "{v}");
}

/// Deletes objects from an S3 destination through the S3 backend itself
/// (AWS variables from the test servers' script).
fn s3_delete(url: &str, keys: &[&String]) {
    let dest = lifeboat_backends::DestinationUrl::parse(url).expect("s3 url");
    let backend = dest.open("s3-damage").expect("open s3");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        for key in keys {
            backend.delete(key).await.expect("delete on s3");
            assert!(backend.stat(key).await.is_err(), "{key} still there");
        }
    });
}

#[test]
fn a_corrupt_pack_on_sftp_is_found_restored_around_and_healed() {
    let sb = Sandbox::new();
    let src = small_tree(&sb);
    let (sftp, sftp_dir) = sftp_dest();
    let local = sb.join("local");
    let s3 = shared_s3_url();
    // SFTP first: reads prefer it, so restore must fail over past its bad copy.
    let dests = [sftp.as_str(), local.to_str().expect("utf-8"), s3.as_str()];
    init(&sb, &dests);
    run(&sb, &dests, backup_args(&src)).success();
    let pack = largest_pack(&sftp_dir);
    let pack_name = pack
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    corrupt(&pack);

    let (code, summary) = check_json(&sb, &dests, &["--read-data"]);
    assert_eq!(code, 1, "{summary}");
    assert_eq!(
        problems(&summary),
        vec![(
            SFTP_NAME.to_string(),
            format!("pack {pack_name}"),
            "corrupt".to_string(),
            true
        )],
        "{summary}"
    );
    assert_restores(&sb, &dests, &src);

    let repaired = run(&sb, &dests, ["sync", "--repair"]);
    repaired.success();
    repaired.stdout_has(&pack_name);
    assert!(
        sftp_dir.join("quarantine").exists(),
        "the bad copy is kept aside"
    );
    let (code, summary) = check_json(&sb, &dests, &["--read-data"]);
    assert_eq!(code, 0, "{summary}");
    assert_drill_passes(&sb, &dests);
}

#[test]
fn objects_deleted_on_s3_are_listed_exactly_and_synced_back() {
    let sb = Sandbox::new();
    let src = small_tree(&sb);
    let local = sb.join("local");
    let (endpoint, bucket) = (
        var("LIFEBOAT_TEST_S3_ENDPOINT"),
        var("LIFEBOAT_TEST_S3_BUCKET"),
    );
    let prefix = format!("heal/{:016x}", rand::random::<u64>());
    let s3 = format!("s3://{bucket}/{prefix}?endpoint={endpoint}&region=us-east-1");
    let dests = [local.to_str().expect("utf-8"), s3.as_str()];
    init(&sb, &dests);
    run(&sb, &dests, backup_args(&src)).success();
    // Every tenth object (at least one).
    let keys = object_keys(&local);
    let deleted: Vec<&String> = keys.iter().step_by(10).collect();
    assert!(!deleted.is_empty());
    s3_delete(&s3, &deleted);
    let (code, summary) = check_json(&sb, &dests, &[]);
    assert_eq!(code, 1, "{summary}");
    let found: BTreeSet<String> = problems(&summary)
        .into_iter()
        .map(|(dest, object, kind, healable)| {
            assert_eq!(dest, format!("s3-{bucket}"));
            assert_eq!(kind, "missing");
            assert!(healable);
            object
        })
        .collect();
    let expected: BTreeSet<String> = deleted
        .iter()
        .map(|k| {
            let name = k.rsplit('/').next().expect("name");
            let word = match k.split('/').next() {
                Some("data") => "pack",
                Some("index") => "index",
                _ => "snapshot",
            };
            format!("{word} {name}")
        })
        .collect();
    assert_eq!(found, expected);

    run(&sb, &dests, ["sync"]).success();
    let (code, summary) = check_json(&sb, &dests, &["--read-data"]);
    assert_eq!(code, 0, "{summary}");
    assert_drill_passes(&sb, &dests);
}

#[test]
fn a_pack_damaged_everywhere_is_lost_and_the_rest_still_restores() {
    let sb = Sandbox::new();
    let src = sb.join("src");
    std::fs::create_dir_all(&src).expect("mkdir src");
    // Two big incompressible files land in different packs; small files too.
    tree::write_generated(&src.join("one.bin"), 20 << 20, 1, false);
    tree::write_generated(&src.join("two.bin"), 20 << 20, 2, false);
    tree::text_tree(&src.join("text"));
    let (a, b) = (sb.join("a"), sb.join("b"));
    let dests = [a.to_str().expect("utf-8"), b.to_str().expect("utf-8")];
    init(&sb, &dests);
    run(&sb, &dests, backup_args(&src)).success();
    let pack = largest_pack(&a);
    let rel = pack.strip_prefix(&a).expect("under a").to_path_buf();
    corrupt(&pack);
    corrupt(&b.join(&rel));

    let (code, summary) = check_json(&sb, &dests, &["--read-data"]);
    assert_eq!(code, 1, "{summary}");
    let found = problems(&summary);
    assert_eq!(found.len(), 2, "{summary}");
    assert!(
        found.iter().all(|(_, _, _, healable)| !healable),
        "{summary}"
    );
    let damaged = summary["damaged_snapshots"].as_array().expect("damaged");
    assert_eq!(damaged.len(), 1, "{summary}");
    let paths: Vec<String> = damaged[0]["paths"]
        .as_array()
        .expect("paths")
        .iter()
        .map(|p| p.as_str().expect("path").to_string())
        .collect();
    // One flipped byte damages one blob, so exactly one file.
    assert_eq!(paths.len(), 1, "{paths:?}");
    // Human output names the lost pack and says so.
    let human = run(&sb, &dests, ["check", "--read-data"]);
    assert_eq!(human.code, 1);
    assert!(human.stderr.contains("LOST"), "{}", human.stderr);

    // Restore: every file not named damaged comes back identical; the damaged
    // ones are absent, never wrong.
    let target = sb.join("restored");
    let out = run(
        &sb,
        &dests,
        [
            "restore".as_ref(),
            "latest".as_ref(),
            "--target".as_ref(),
            target.as_os_str(),
        ],
    );
    assert_ne!(out.code, 0, "a damaged restore does not claim success");
    let copy = tree::restored(&target, &src);
    let mut intact = 0;
    for file in tree::regular_files(&src) {
        let shown = file.to_string_lossy().into_owned();
        let restored = copy.join(file.strip_prefix(&src).expect("under src"));
        if paths.iter().any(|p| p == &shown) {
            assert!(!restored.exists(), "{shown} restored from lost data");
        } else {
            assert!(
                tree::same_content(&file, &restored),
                "{shown} differs after restore"
            );
            intact += 1;
        }
    }
    assert!(intact > 0);
}
