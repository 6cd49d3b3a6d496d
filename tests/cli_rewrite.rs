//! `tag` and `rewrite` end to end: snapshots stored again (recording their
//! original) and the old ones retired, on two destinations, one of them
//! unplugged during the change and brought up to date by `sync`.

use std::fs;
use std::path::{Path, PathBuf};

use lifeboat_tests::tree;
use lifeboat_tests::Sandbox;
use serde_json::Value;

/// Two local destinations; the second "unplugged" (its directory moved
/// away) while `args` runs, then plugged back and synced.
fn on_two_with_one_unplugged(sb: &Sandbox, src: &Path, args: &[&str]) -> (Value, PathBuf, PathBuf) {
    let (d1, d2) = (sb.join("d1"), sb.join("d2"));
    sb.init_on(&[&d1, &d2]);
    sb.on(&[&d1, &d2])
        .args(["backup".as_ref(), src.as_os_str()])
        .run()
        .success();
    let away = sb.join("d2-unplugged");
    fs::rename(&d2, &away).unwrap();
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = sb.on(&[&d1, &d2]).args(all).run();
    out.assert_code(3);
    let summary = out.json();
    fs::rename(&away, &d2).unwrap();
    sb.on(&[&d1, &d2]).args(["sync"]).run().success();
    (summary, d1, d2)
}

fn snapshots_on(sb: &Sandbox, dest: &Path) -> Vec<Value> {
    match sb
        .on(&[dest])
        .args(["--json", "snapshots"])
        .run()
        .success()
        .json()
    {
        Value::Array(list) => list,
        other => panic!("{other}"),
    }
}

#[test]
fn tag_reaches_an_unplugged_destination_by_sync() {
    let sb = Sandbox::new();
    let src = sb.join("src");
    tree::text_tree(&src);
    let (summary, d1, d2) =
        on_two_with_one_unplugged(&sb, &src, &["tag", "--add", "keep,yearly", "latest"]);
    let changed = &summary["changed"][0];
    let (old, new) = (
        changed["old"].as_str().unwrap(),
        changed["new"].as_str().unwrap(),
    );
    assert_eq!(changed["tags"], serde_json::json!(["keep", "yearly"]));
    assert_eq!(
        summary["destinations_missed"][0]["name"], "local-d2",
        "{summary}"
    );
    // Each destination alone now holds the new snapshot only, which names
    // the one it replaced.
    for dest in [&d1, &d2] {
        let list = snapshots_on(&sb, dest);
        assert_eq!(list.len(), 1, "{dest:?}: {list:?}");
        assert_eq!(list[0]["id"], new);
        assert_eq!(list[0]["original"], old);
        assert_eq!(list[0]["tags"], serde_json::json!(["keep", "yearly"]));
    }
    // The same change again changes nothing.
    let again = sb
        .on(&[&d1, &d2])
        .args(["--json", "tag", "--add", "keep", "latest"])
        .run();
    let again = again.success().json();
    assert_eq!(again["changed"].as_array().unwrap().len(), 0, "{again}");
    // A tag of a tagged copy still names the first snapshot.
    let third = sb
        .on(&[&d1, &d2])
        .args(["--json", "tag", "--set", "other", "latest"])
        .run();
    third.success();
    assert_eq!(snapshots_on(&sb, &d1)[0]["original"], old);
    sb.on(&[&d1])
        .args(["tag", "latest"])
        .run()
        .assert_code(2)
        .stderr_has("--add, --remove or --set");
    sb.on(&[&d1, &d2]).args(["check"]).run().success();
}

#[test]
fn rewrite_removes_a_secret_from_every_snapshot_and_destination() {
    let sb = Sandbox::new();
    let src = sb.join("src");
    tree::text_tree(&src);
    tree::write(&src.join("app/.env"), b"API_KEY=hunter2");
    tree::write(&src.join("app/main.rs"), b"fn main() {}");

    // A dry run lists what would go and writes nothing.
    let (d1, d2) = (sb.join("d1"), sb.join("d2"));
    sb.init_on(&[&d1, &d2]);
    sb.on(&[&d1, &d2])
        .args(["backup".as_ref(), src.as_os_str()])
        .run()
        .success();
    let before = snapshots_on(&sb, &d1);
    let dry = sb
        .on(&[&d1, &d2])
        .args(["--json", "rewrite", "--exclude", ".env", "--dry-run"])
        .run();
    let dry = dry.success().json();
    assert_eq!(
        dry["rewritten"][0]["removed"][0]["path"],
        format!("{}/app/.env", src.display())
    );
    assert!(dry["rewritten"][0]["new"].is_null());
    assert_eq!(
        snapshots_on(&sb, &d1),
        before,
        "a dry run changed the snapshots"
    );
    fs::remove_dir_all(&d1).unwrap();
    fs::remove_dir_all(&d2).unwrap();

    let (summary, d1, d2) =
        on_two_with_one_unplugged(&sb, &src, &["rewrite", "--exclude", ".env", "--forget"]);
    let rewritten = &summary["rewritten"][0];
    assert_eq!(rewritten["removed"][0]["files"], 1, "{summary}");
    assert_eq!(summary["forgotten"], 1);
    assert!(summary["trees_written"].as_u64().unwrap() >= 2, "{summary}");
    for dest in [&d1, &d2] {
        let list = snapshots_on(&sb, dest);
        assert_eq!(list.len(), 1, "{dest:?}: {list:?}");
        assert_eq!(list[0]["id"], rewritten["new"]);
        assert_eq!(list[0]["original"], rewritten["old"]);
        let found = sb.on(&[dest]).args(["--json", "find", ".env"]).run();
        assert_eq!(
            found.success().json()["paths"],
            0,
            "{dest:?} still holds .env"
        );
        let target = sb.join(format!(
            "restored-{}",
            dest.file_name().unwrap().to_string_lossy()
        ));
        sb.on(&[dest])
            .args([
                "restore".as_ref(),
                "latest".as_ref(),
                "--target".as_ref(),
                target.as_os_str(),
            ])
            .run()
            .success();
        let copy = tree::restored(&target, &src);
        assert!(!copy.join("app/.env").exists());
        assert_eq!(fs::read(copy.join("app/main.rs")).unwrap(), b"fn main() {}");
    }
    sb.on(&[&d1, &d2])
        .args(["check", "--read-data"])
        .run()
        .success();
    // Nothing matches any more: nothing to rewrite.
    let none = sb
        .on(&[&d1, &d2])
        .args(["--json", "rewrite", "-e", ".env"])
        .run();
    assert_eq!(
        none.success().json()["rewritten"].as_array().unwrap().len(),
        0
    );
    sb.on(&[&d1])
        .args(["rewrite"])
        .run()
        .assert_code(2)
        .stderr_has("--exclude");
}
