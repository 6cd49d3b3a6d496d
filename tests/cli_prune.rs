//! End to end through the `lifeboat` binary on two local destinations:
//! forget shows keep/remove with reasons, forget --prune shrinks both
//! destinations and keeps what the policy keeps, and a prune killed (SIGKILL)
//! at each of its steps loses nothing: every kept snapshot restores, the next
//! prune completes and a full check is clean.
//!
//! Needs `cargo build -p lifeboat-cli --features failpoints` first, as
//! scripts/test.sh does (see `lifeboat_tests::lifeboat_bin`).

use lifeboat_tests::FAST_INIT;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use lifeboat_tests::{tree, Lb, Output, Sandbox, PASSWORD};
use serde_json::Value;

/// Two destinations and the source history: one copy of the source per day.
struct Setup {
    sb: Sandbox,
    a: PathBuf,
    b: PathBuf,
    src: PathBuf,
    /// (snapshot id, copy of the source at that time)
    days: Vec<(String, PathBuf)>,
}

fn lb(sb: &Sandbox, a: &Path, b: &Path) -> Lb {
    sb.command().password(PASSWORD).dest(a).dest(b)
}

impl Setup {
    /// `days` backups, one a day from 2026-01-01: a constant file, and a file
    /// of fresh random bytes each day (so each forgotten day frees data).
    fn new(days: usize) -> Setup {
        let sb = Sandbox::new();
        let (a, b, src) = (sb.join("a"), sb.join("b"), sb.join("src"));
        std::fs::create_dir_all(&src).expect("mkdir src");
        let mut setup = Setup {
            sb,
            a,
            b,
            src,
            days: Vec::new(),
        };
        setup.run(FAST_INIT).success();
        tree::write_generated(&setup.src.join("constant.bin"), 2 << 20, 99, false);
        for day in 0..days {
            // Distinct seeds (the generator treats 2n and 2n+1 alike).
            tree::write_generated(
                &setup.src.join("daily.bin"),
                3 << 20,
                100 + 2 * day as u64,
                false,
            );
            tree::write(
                &setup.src.join("notes.txt"),
                format!("day {day}\n").repeat(100).as_bytes(),
            );
            let time = format!("2026-01-{:02} 12:00:00", day + 1);
            let summary = setup
                .run([
                    "--json".as_ref(),
                    "backup".as_ref(),
                    "--time".as_ref(),
                    OsStr::new(&time),
                    setup.src.as_os_str(),
                ])
                .success()
                .summary();
            let id = summary["snapshot_id"]
                .as_str()
                .unwrap_or_else(|| panic!("no snapshot_id: {summary}"))
                .to_string();
            let copy = setup.sb.join(format!("day-{day}"));
            copy_dir(&setup.src, &copy);
            setup.days.push((id, copy));
        }
        setup
    }

    fn run<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        lb(&self.sb, &self.a, &self.b).args(args).run()
    }

    /// Snapshot ids, as `snapshots --json` lists them.
    fn snapshot_ids(&self) -> Vec<String> {
        let v = self.run(["--json", "snapshots"]).success().json();
        v.as_array()
            .expect("array")
            .iter()
            .map(|s| s["id"].as_str().expect("id").to_string())
            .collect()
    }

    /// Each remaining snapshot restores identical to its day's copy, from
    /// each destination alone.
    #[track_caller]
    fn assert_kept_restore(&self) {
        let ids = self.snapshot_ids();
        assert!(!ids.is_empty());
        for (id, copy) in self.days.iter().filter(|(id, _)| ids.contains(id)) {
            for dest in [&self.a, &self.b] {
                let target = self.sb.join(format!("r-{}", rand::random::<u32>()));
                self.sb
                    .command()
                    .password(PASSWORD)
                    .dest(dest)
                    .args([
                        "restore".as_ref(),
                        OsStr::new(id),
                        "--target".as_ref(),
                        target.as_os_str(),
                    ])
                    .run()
                    .success();
                // Bit for bit: every file of that day, and nothing else.
                let restored = tree::restored(&target, &self.src);
                let names = |dir: &Path| {
                    let mut v: Vec<_> = std::fs::read_dir(dir)
                        .expect("read dir")
                        .flatten()
                        .map(|e| e.file_name())
                        .collect();
                    v.sort();
                    v
                };
                assert_eq!(names(copy), names(&restored), "snapshot {id}");
                for name in names(copy) {
                    assert!(
                        tree::same_content(&copy.join(&name), &restored.join(&name)),
                        "snapshot {id} from {}: {name:?} differs",
                        dest.display()
                    );
                }
                std::fs::remove_dir_all(&target).expect("remove restore");
            }
        }
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir copy");
    for entry in std::fs::read_dir(from).expect("read src").flatten() {
        std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy file");
    }
}

fn bytes_under(dir: &Path) -> u64 {
    tree::regular_files(dir)
        .iter()
        .map(|f| std::fs::metadata(f).map(|m| m.len()).unwrap_or(0))
        .sum()
}

#[test]
fn forget_shows_reasons_then_forget_prune_shrinks_both_destinations() {
    let setup = Setup::new(4);
    // Dry run: a table with reasons, nothing removed.
    let out = setup.run(["--json", "forget", "--keep-last", "2", "--dry-run"]);
    out.success();
    let groups = out.json_lines();
    assert_eq!(groups.len(), 1, "{groups:?}");
    let ids = |key: &str| -> Vec<String> {
        groups[0][key]
            .as_array()
            .expect("list")
            .iter()
            .map(|s| s["id"].as_str().expect("id").to_string())
            .collect()
    };
    let newest: Vec<String> = setup.days[2..]
        .iter()
        .rev()
        .map(|(id, _)| id.clone())
        .collect();
    assert_eq!(ids("keep"), newest);
    assert_eq!(ids("remove").len(), 2);
    assert!(groups[0]["keep"]
        .as_array()
        .expect("keep")
        .iter()
        .all(|s| s["reasons"] == Value::from(vec!["last"])));
    assert_eq!(setup.snapshot_ids().len(), 4);
    let human = setup.run(["forget", "--keep-last", "2", "--dry-run"]);
    human.success();
    assert!(
        human.stdout_text().contains("remove"),
        "{}",
        human.stdout_text()
    );

    // Durations and percentages take one set of forms everywhere; a bad
    // one is a usage error naming its flag, before anything is removed.
    setup
        .run(["prune", "-n", "--grace", "1h30m", "--max-unused", "2.5%"])
        .success();
    setup
        .run(["forget", "--keep-last", "2", "--prune", "--grace", "soon"])
        .assert_code(2)
        .stderr_has("--grace")
        .stderr_has("1h30m");
    setup
        .run([
            "forget",
            "--keep-last",
            "2",
            "--prune",
            "--max-unused",
            "1e1",
        ])
        .assert_code(2)
        .stderr_has("--max-unused");
    assert_eq!(setup.snapshot_ids().len(), 4);

    let before = (
        bytes_under(&setup.a.join("data")),
        bytes_under(&setup.b.join("data")),
    );
    setup
        .run(["forget", "--keep-last", "2", "--prune", "--grace", "0s"])
        .success();
    let mut left = setup.snapshot_ids();
    left.sort();
    let mut want = newest.clone();
    want.sort();
    assert_eq!(left, want);
    let after = (
        bytes_under(&setup.a.join("data")),
        bytes_under(&setup.b.join("data")),
    );
    // Two days of 3 MiB random data left each destination.
    assert!(after.0 + (5 << 20) < before.0, "{before:?} -> {after:?}");
    assert!(after.1 + (5 << 20) < before.1, "{before:?} -> {after:?}");
    setup.assert_kept_restore();
    setup.run(["check", "--read-data"]).success();
    // No policy and no ids: a clear refusal, as a usage mistake.
    let refused = setup.run(["forget"]);
    assert_eq!(refused.code, 2);
    assert!(refused.stderr.contains("policy"), "{}", refused.stderr);
}

#[test]
fn prune_killed_at_each_step_loses_nothing() {
    for point in [
        "prune-during-repack",
        "prune-after-index",
        "prune-after-record",
        "prune-during-sweep",
    ] {
        let setup = Setup::new(3);
        let first = setup.days[0].0.clone();
        setup.run(["forget", first.as_str()]).success();
        // 0 % tolerated: the pack shared with the constant file is repacked.
        let killed = lb(&setup.sb, &setup.a, &setup.b)
            .env("LIFEBOAT_FAILPOINT", point)
            .args(["prune", "--max-unused", "0%", "--grace", "0s"])
            .run();
        assert_eq!(
            killed.signal,
            Some(9),
            "{point}: not killed: {}",
            killed.stderr
        );
        setup.assert_kept_restore();
        let finished = setup.run(["--json", "prune", "--max-unused", "0%", "--grace", "0s"]);
        finished.success();
        let again = setup
            .run(["--json", "prune", "--max-unused", "0%", "--grace", "0s"])
            .success()
            .summary();
        assert_eq!(again["objects_deleted"], 0, "{point}: {again}");
        assert_eq!(again["packs_repacked"], 0, "{point}: {again}");
        let check = setup.run(["--json", "check", "--read-data"]);
        assert_eq!(check.code, 0, "{point}: {}", check.stdout_text());
        setup.assert_kept_restore();
    }
}

#[test]
fn a_backup_and_a_prune_started_together_both_finish() {
    let mut setup = Setup::new(3);
    let first = setup.days[0].0.clone();
    setup.run(["forget", first.as_str()]).success();
    // Enough new data that the backup is still running when prune starts.
    tree::write_generated(&setup.src.join("big.bin"), 48 << 20, 4242, false);
    let backup = lb(&setup.sb, &setup.a, &setup.b)
        .args([
            "--retry-lock".as_ref(),
            "5m".as_ref(),
            "backup".as_ref(),
            setup.src.as_os_str(),
        ])
        .spawn();
    let prune = lb(&setup.sb, &setup.a, &setup.b)
        .args([
            "--retry-lock",
            "5m",
            "prune",
            "--grace",
            "0s",
            "--max-unused",
            "0%",
        ])
        .spawn();
    let (backup, prune) = (backup.wait(), prune.wait());
    prune.success();
    backup.success();
    // They did meet: one waited for the other's lock.
    assert!(
        backup.stderr.contains("retrying") || prune.stderr.contains("retrying"),
        "no lock wait:\nbackup: {}\nprune: {}",
        backup.stderr,
        prune.stderr
    );
    let known: Vec<&String> = setup.days.iter().map(|(id, _)| id).collect();
    let id = setup
        .snapshot_ids()
        .into_iter()
        .find(|id| !known.contains(&id))
        .expect("the new snapshot");
    let copy = setup.sb.join("day-new");
    copy_dir(&setup.src, &copy);
    setup.days.push((id, copy));
    setup.assert_kept_restore();
    setup.run(["check", "--read-data"]).success();
}
