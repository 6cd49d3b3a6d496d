//! End to end through the `lifeboat` binary: a destination replaced by an
//! older copy of itself (issue 15, hostile destinations). Each machine
//! remembers what every destination listed (`seen.json` in the state
//! directory); a destination that no longer lists a snapshot or deletion
//! record it held, with no deletion record removing it, is called rolled
//! back by every command, fails `check` and shows in `status`, until `sync`
//! copies it back or `forget` records a snapshot no destination holds as
//! removed. Lag, forget and a machine with no memory are not rollbacks.
//!
//! Two local destinations; needs `cargo build -p lifeboat-cli` first (see
//! `lifeboat_tests::lifeboat_bin`).

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use lifeboat_tests::{tree, Output, Sandbox, FAST_INIT, PASSWORD};
use serde_json::Value;

/// The warning every command prints about a rolled-back destination.
const ROLLED_BACK: &str = "no longer lists";

/// Two destinations `<sandbox>/a` and `<sandbox>/b` (`local-a`, `local-b`)
/// and a source tree.
struct Setup {
    sb: Sandbox,
    src: PathBuf,
}

impl Setup {
    fn new() -> Setup {
        let sb = Sandbox::new();
        let src = sb.join("src");
        tree::write(&src.join("first.txt"), b"the first backup\n");
        let setup = Setup { sb, src };
        setup.on(&["a", "b"], FAST_INIT).success();
        setup
    }

    fn dest(&self, name: &str) -> PathBuf {
        self.sb.join(name)
    }

    /// `lifeboat -d <each of dests> <args>` with the sandbox's state and
    /// cache directories.
    fn on<I, S>(&self, dests: &[&str], args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.with_state(&self.sb.join("state"), dests, args)
    }

    /// As [`Setup::on`], with another state directory.
    fn with_state<I, S>(&self, state: &Path, dests: &[&str], args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        dests
            .iter()
            .fold(
                self.sb
                    .command()
                    .password(PASSWORD)
                    .env("LIFEBOAT_CACHE_DIR", self.sb.join("cache"))
                    .env("LIFEBOAT_STATE_DIR", state),
                |cmd, d| cmd.dest(&self.dest(d)),
            )
            .args(args)
            .run()
    }

    /// `lifeboat -d a -d b <args>`.
    fn both<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.on(&["a", "b"], args)
    }

    /// Writes `name` into the source and backs it up to `dests`; returns the
    /// new snapshot's full id.
    fn backup(&self, dests: &[&str], name: &str) -> String {
        tree::write(&self.src.join(name), name.as_bytes());
        let summary = self
            .on(
                dests,
                ["--json".as_ref(), "backup".as_ref(), self.src.as_os_str()],
            )
            .success()
            .summary();
        summary["snapshot_id"]
            .as_str()
            .unwrap_or_else(|| panic!("no snapshot_id in {summary}"))
            .to_string()
    }

    /// Copies destination `name` aside as `<name>.old`.
    fn keep_copy(&self, name: &str) {
        copy_dir(&self.dest(name), &self.dest(&format!("{name}.old")));
    }

    /// Replaces destination `name` with the copy [`Setup::keep_copy`] kept.
    fn roll_back(&self, name: &str) {
        let dir = self.dest(name);
        std::fs::remove_dir_all(&dir).expect("remove the destination");
        copy_dir(&self.dest(&format!("{name}.old")), &dir);
    }
}

/// `cp -a from to`: modes and times kept, as a disk image restore would.
fn copy_dir(from: &Path, to: &Path) {
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .expect("run cp");
    assert!(
        status.success(),
        "cp -a {} {}",
        from.display(),
        to.display()
    );
}

fn short(id: &str) -> &str {
    &id[..8]
}

/// The entry of destination `name` in a status or check object.
fn entry<'a>(json: &'a Value, name: &str) -> &'a Value {
    json["destinations"]
        .as_array()
        .unwrap_or_else(|| panic!("no destinations in {json}"))
        .iter()
        .find(|d| d["name"] == name)
        .unwrap_or_else(|| panic!("no destination {name} in {json}"))
}

/// The ids in a JSON list of hex strings.
fn strings(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|v| v.as_str().expect("a string").to_string())
        .collect()
}

#[track_caller]
fn assert_no_rollback_warning(out: &Output) {
    assert!(
        !out.stderr.contains(ROLLED_BACK),
        "unexpected rollback warning:\n{}",
        out.stderr
    );
}

/// The scenario of issue 15: `a` is replaced by a copy taken before the
/// second backup. Every listing names it, check fails, status shows it,
/// `latest` is still the newest, and sync ends it.
#[test]
fn a_destination_replaced_by_an_older_copy_is_rolled_back_until_sync() {
    let setup = Setup::new();
    let first = setup.backup(&["a", "b"], "one.txt");
    setup.keep_copy("a");
    let second = setup.backup(&["a", "b"], "two.txt");
    setup.roll_back("a");

    // `snapshots`: still both (b holds the second), with one warning naming
    // the destination, the snapshot and the way out.
    let out = setup.both(["snapshots"]);
    out.success();
    let warning = format!(
        "warning: destination local-a no longer lists snapshot {} that it held before, and no \
         deletion record removes it: it may have been rolled back to an older copy; run \
         `lifeboat sync` to copy it back from local-b",
        short(&second)
    );
    out.stderr_has(&warning);
    assert_eq!(
        out.stderr.matches(ROLLED_BACK).count(),
        1,
        "one warning per run:\n{}",
        out.stderr
    );
    assert!(!out.stderr.contains(short(&first)), "{}", out.stderr);

    // `check` fails and names it, in JSON too.
    let out = setup.both(["--json", "check"]);
    out.assert_code(1);
    let summary = out.summary();
    assert_eq!(summary["ok"], false, "{summary}");
    let rolled = &summary["rolled_back"][0];
    assert_eq!(rolled["destination"], "local-a", "{summary}");
    assert_eq!(strings(&rolled["snapshots"]), vec![second.clone()]);
    assert_eq!(strings(&rolled["sources"]), vec!["local-b".to_string()]);
    assert_eq!(entry(&summary, "local-a")["rolled_back"], true);
    assert_eq!(entry(&summary, "local-b")["rolled_back"], false);
    let out = setup.both(["check"]);
    out.assert_code(1);
    out.stderr_has(&format!(
        "error: local-a: ROLLED BACK: no longer lists snapshot {}",
        short(&second)
    ));

    // Alone, the old copy is consistent: only the memory tells.
    let out = setup.on(&["a"], ["--json", "check"]);
    out.assert_code(1);
    let summary = out.summary();
    assert_eq!(
        strings(&summary["rolled_back"][0]["snapshots_nowhere"]),
        vec![second.clone()],
        "{summary}"
    );
    out.stderr_has(&format!("`lifeboat forget {}`", short(&second)));

    // `status` shows it per destination.
    let out = setup.both(["--json", "status"]);
    out.success();
    let status = out.json();
    assert_eq!(status["ok"], false, "{status}");
    assert_eq!(
        strings(&entry(&status, "local-a")["rolled_back"]["snapshots"]),
        vec![second.clone()]
    );
    assert!(
        entry(&status, "local-b")["rolled_back"].is_null(),
        "{status}"
    );
    setup.both(["status", "--fail-on-lag"]).assert_code(3);
    let out = setup.both(["status"]);
    out.stdout_has("ROLLED BACK");

    // `latest` is still the newest: the other destination's catalog counts.
    let out = setup.both(["--json", "ls", "latest"]);
    out.success();
    out.stderr_has(ROLLED_BACK);
    let paths: Vec<String> = out
        .json_lines()
        .iter()
        .filter_map(|v| v["path"].as_str().map(str::to_string))
        .collect();
    assert!(
        paths.iter().any(|p| p.ends_with("/two.txt")),
        "latest is not the newest snapshot: {paths:?}"
    );

    // Every command that lists the snapshots says so, once.
    let target = setup.sb.join("target");
    let src = setup.src.to_string_lossy().into_owned();
    let restore = ["restore", "latest", "--dry-run", "--target"];
    let runs: [Vec<&str>; 3] = [
        restore
            .iter()
            .copied()
            .chain([target.to_str().expect("utf-8")])
            .collect(),
        vec!["backup", "--dry-run", &src],
        vec!["drill"],
    ];
    for args in runs {
        let out = setup.both(&args);
        assert_eq!(
            out.stderr.matches(ROLLED_BACK).count(),
            1,
            "{args:?}: one warning expected:\n{}",
            out.stderr
        );
    }

    // sync copies it back: no warning any more, check is clean.
    let out = setup.both(["sync"]);
    out.success();
    assert_no_rollback_warning(&out);
    let out = setup.both(["snapshots"]);
    out.success();
    assert_no_rollback_warning(&out);
    let out = setup.both(["--json", "check"]);
    out.success();
    assert_no_rollback_warning(&out);
    assert_eq!(out.summary()["rolled_back"], Value::Array(Vec::new()));

    // The memory is owner-only.
    let state = setup.sb.join("state");
    let file = std::fs::read_dir(&state)
        .expect("state dir")
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("seen.json"))
        .find(|p| p.exists())
        .expect("a seen.json");
    for path in [file.parent().expect("dir").to_path_buf(), file.clone()] {
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
        assert_eq!(mode & 0o077, 0, "{}: {mode:o}", path.display());
    }
}

/// A destination that never listed a snapshot the others hold lags; it is
/// not rolled back. Nor is one that was added later.
#[test]
fn a_lagging_or_added_destination_is_not_rolled_back() {
    let setup = Setup::new();
    setup.backup(&["a", "b"], "one.txt");
    // b is left out of the second backup: it lags.
    let second = setup.backup(&["a"], "two.txt");
    let out = setup.both(["--json", "status"]);
    out.success();
    assert_no_rollback_warning(&out);
    let status = out.json();
    let b = entry(&status, "local-b");
    assert_eq!(b["snapshots_missing"], 1, "{status}");
    assert!(b["rolled_back"].is_null(), "{status}");
    let out = setup.both(["--json", "check"]);
    assert_no_rollback_warning(&out);
    assert_eq!(out.summary()["rolled_back"], Value::Array(Vec::new()));

    // A destination seeded later, then lagging: not rolled back either.
    setup
        .on(&["a", "b", "c"], ["sync", "--seed", "local-c"])
        .success();
    let third = setup.backup(&["a", "b"], "three.txt");
    let out = setup.on(&["a", "b", "c"], ["snapshots"]);
    out.success();
    assert_no_rollback_warning(&out);
    assert!(out.stdout_text().contains(short(&second)));
    assert!(out.stdout_text().contains(short(&third)));
}

/// `forget` writes a deletion record: the snapshot is gone legitimately. A
/// destination replaced by a copy from before the forget lost the record,
/// which is a rollback sign of its own, until sync copies it back.
#[test]
fn forget_is_not_a_rollback_but_losing_its_record_is() {
    let setup = Setup::new();
    let first = setup.backup(&["a", "b"], "one.txt");
    setup.backup(&["a", "b"], "two.txt");
    setup.keep_copy("b");
    let out = setup.both(["forget", short(&first)]);
    out.success();
    let out = setup.both(["snapshots"]);
    out.success();
    assert_no_rollback_warning(&out);
    assert!(!out.stdout_text().contains(short(&first)));
    let out = setup.both(["check"]);
    out.success();
    assert_no_rollback_warning(&out);

    // b goes back to before the forget: it lists the forgotten snapshot again
    // (the record keeps it forgotten) and lacks the record.
    setup.roll_back("b");
    let out = setup.both(["snapshots"]);
    out.success();
    out.stderr_has("warning: destination local-b no longer lists deletion record");
    out.stderr_has("deletion records are never removed");
    assert!(!out.stdout_text().contains(short(&first)));
    let out = setup.both(["--json", "check"]);
    out.assert_code(1);
    let summary = out.summary();
    assert_eq!(summary["rolled_back"][0]["destination"], "local-b");
    assert_eq!(
        summary["rolled_back"][0]["deletion_records"]
            .as_array()
            .map(Vec::len),
        Some(1),
        "{summary}"
    );

    setup.both(["sync"]).success();
    let out = setup.both(["snapshots"]);
    out.success();
    assert_no_rollback_warning(&out);
}

/// Every destination rolled back: no destination holds the newest snapshot.
/// `forget ID` records it as removed, which ends the warning.
#[test]
fn a_snapshot_no_destination_holds_is_accepted_with_forget() {
    let setup = Setup::new();
    let first = setup.backup(&["a", "b"], "one.txt");
    setup.keep_copy("a");
    setup.keep_copy("b");
    let second = setup.backup(&["a", "b"], "two.txt");
    setup.roll_back("a");
    setup.roll_back("b");

    let out = setup.both(["--json", "snapshots"]);
    out.success();
    for dest in ["local-a", "local-b"] {
        out.stderr_has(&format!(
            "warning: destination {dest} no longer lists snapshot {}",
            short(&second)
        ));
    }
    out.stderr_has(&format!(
        "no destination of this run lists snapshot {0}: add one that holds it and run \
         `lifeboat sync`, or run `lifeboat forget {0}` to accept the loss",
        short(&second)
    ));
    // Only the first is left, so it is `latest`, and the warning says why.
    let listed = out.json();
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    assert_eq!(listed[0]["id"], first.as_str());
    setup.both(["check"]).assert_code(1);

    // An id no destination ever held is still unknown.
    setup.both(["forget", "abcdef12"]).assert_code(1);

    let out = setup.both(["forget", short(&second)]);
    out.success();
    out.stdout_has("no destination lists it any more");
    let out = setup.both(["snapshots"]);
    out.success();
    assert_no_rollback_warning(&out);
    let out = setup.both(["check"]);
    out.success();
    assert_no_rollback_warning(&out);
}

/// A machine with no memory (a fresh state directory) cannot tell: nothing
/// is called rolled back, as documented.
#[test]
fn a_fresh_state_directory_shows_nothing() {
    let setup = Setup::new();
    setup.backup(&["a", "b"], "one.txt");
    setup.keep_copy("a");
    setup.backup(&["a", "b"], "two.txt");
    setup.roll_back("a");

    let fresh = setup.sb.join("fresh-state");
    let out = setup.with_state(&fresh, &["a", "b"], ["snapshots"]);
    out.success();
    assert_no_rollback_warning(&out);
    let out = setup.with_state(&fresh, &["a"], ["--json", "check"]);
    out.success();
    assert_no_rollback_warning(&out);
    // The remembering machine still tells.
    setup.on(&["a"], ["check"]).assert_code(1);
}
