//! The fault matrix's table, and the fixture its in-process cases share.

pub mod chaos;
pub mod process;
pub mod sources;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use lifeboat_backends::{Backend, Chaos, ChaosBackend, LocalBackend, RetryBackend, RetryPolicy};
use lifeboat_engine::backup::{backup, BackupOptions, BackupOutcome};
use lifeboat_engine::check::{check, CheckOptions, CheckReport};
use lifeboat_engine::restore::{restore, RestoreOptions};
use lifeboat_engine::{DestinationSet, KdfParams, RepoParams, Repository, SnapshotId};
use lifeboat_tests::tree;

/// What one run of a case found.
#[derive(Debug, Default, Clone)]
pub struct Outcome {
    /// Snapshot restores compared bit for bit.
    pub snapshots_verified: u64,
    /// Bytes restored wrong, or missing though a good copy existed.
    pub bytes_lost: u64,
    /// Problems the tool detected and named (check findings, failed files).
    pub errors_named: u64,
}

impl Outcome {
    /// Adds another verification's figures.
    pub fn absorb(&mut self, other: Outcome) {
        self.snapshots_verified += other.snapshots_verified;
        self.bytes_lost += other.bytes_lost;
        self.errors_named += other.errors_named;
    }
}

/// A running in-process case.
pub type Run = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Outcome, String>>>>;

/// One case of the matrix, run in-process.
pub struct AsyncCase {
    /// Its name in the table.
    pub name: &'static str,
    /// Runs it with a seed.
    pub run: fn(u64) -> Run,
}

/// One case of the matrix that drives the binary.
pub struct ProcessCase {
    /// Its name in the table.
    pub name: &'static str,
    /// Runs it with a seed.
    pub run: fn(u64) -> Result<Outcome, String>,
}

/// One line of the table.
#[derive(Debug)]
pub struct Row {
    case: &'static str,
    runs: u64,
    outcome: Outcome,
    failures: Vec<String>,
}

impl Row {
    /// An empty row for `case`.
    pub fn new(case: &'static str) -> Self {
        Row {
            case,
            runs: 0,
            outcome: Outcome::default(),
            failures: Vec::new(),
        }
    }

    /// Records one run.
    pub fn add(&mut self, seed: u64, result: Result<Outcome, String>) {
        self.runs += 1;
        match result {
            Ok(outcome) => self.outcome.absorb(outcome),
            Err(why) => self.failures.push(format!("seed {seed}: {why}")),
        }
    }
}

/// The whole table.
#[derive(Debug, Default)]
pub struct Table {
    rows: Vec<Row>,
}

impl Table {
    /// Adds a finished row.
    pub fn push(&mut self, row: Row) {
        eprintln!(
            "fault matrix: {} done ({} runs, {} failed)",
            row.case,
            row.runs,
            row.failures.len()
        );
        self.rows.push(row);
    }

    /// Prints the table on stderr, past the test harness's output capture, so
    /// every run of the suite shows it.
    pub fn print(&self) {
        use std::io::Write;
        let mut out = String::new();
        out.push_str(&format!(
            "\n{:<30} {:>5} {:>10} {:>11} {:>7} {:>7}\n{}\n",
            "case",
            "runs",
            "snapshots",
            "bytes lost",
            "named",
            "result",
            "-".repeat(76)
        ));
        for r in &self.rows {
            out.push_str(&format!(
                "{:<30} {:>5} {:>10} {:>11} {:>7} {:>7}\n",
                r.case,
                r.runs,
                r.outcome.snapshots_verified,
                r.outcome.bytes_lost,
                r.outcome.errors_named,
                if r.failures.is_empty() && r.outcome.bytes_lost == 0 {
                    "ok"
                } else {
                    "FAILED"
                }
            ));
        }
        for r in &self.rows {
            for f in &r.failures {
                out.push_str(&format!("{}: {f}\n", r.case));
            }
        }
        let _ = std::io::stderr().lock().write_all(out.as_bytes());
    }

    /// Fails the test when any case lost data or failed.
    pub fn assert_no_loss(&self) {
        let bad: Vec<&str> = self
            .rows
            .iter()
            .filter(|r| !r.failures.is_empty() || r.outcome.bytes_lost > 0)
            .map(|r| r.case)
            .collect();
        assert!(bad.is_empty(), "cases that failed or lost data: {bad:?}");
    }
}

/// Three local destinations, each behind a chaos schedule (off at first)
/// and fast retries; a source directory and the copies of each snapshot.
pub struct Fixture {
    _dirs: Vec<tempfile::TempDir>,
    /// The plain backends (for tampering at rest and single-destination reads).
    pub plain: Vec<Arc<dyn Backend>>,
    /// The chaos wrappers, to switch faults on and off.
    pub chaos: Vec<ChaosBackend>,
    /// The source being backed up.
    pub src: tempfile::TempDir,
    /// Copies of the source, one per snapshot.
    pub history: Vec<(SnapshotId, tempfile::TempDir)>,
}

/// Retries fast enough for tests (millisecond delays) and patient enough
/// that a 30 % storm never exhausts them in a run (0.3^12 per call).
pub fn fast_retries() -> RetryPolicy {
    RetryPolicy {
        attempts: 12,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(20),
    }
}

impl Fixture {
    /// A fresh repository on three destinations, no snapshot yet.
    pub async fn new(seed: u64) -> Result<Fixture, String> {
        let mut dirs = Vec::new();
        let mut plain: Vec<Arc<dyn Backend>> = Vec::new();
        let mut chaos = Vec::new();
        for n in 0..3 {
            let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
            let local = LocalBackend::new(format!("d{n}"), dir.path());
            let local: Arc<dyn Backend> = Arc::new(local);
            let wrapped = ChaosBackend::new(
                local.clone(),
                Chaos {
                    seed,
                    ..Default::default()
                },
            );
            plain.push(local);
            chaos.push(wrapped);
            dirs.push(dir);
        }
        let fixture = Fixture {
            _dirs: dirs,
            plain,
            chaos,
            src: tempfile::tempdir().map_err(|e| e.to_string())?,
            history: Vec::new(),
        };
        let params = RepoParams {
            pack_size: 1 << 20,
            ..Default::default()
        };
        Repository::init(
            fixture.set_all(),
            b"pw",
            params,
            KdfParams::insecure_for_tests(),
        )
        .await
        .map_err(|e| e.to_string())?;
        Ok(fixture)
    }

    /// Destination `n`'s directory on the local disk.
    pub fn dir(&self, n: usize) -> &std::path::Path {
        self._dirs[n].path()
    }

    /// The three destinations as the engine sees them: retries over chaos.
    pub fn set_all(&self) -> DestinationSet {
        let list: Vec<Arc<dyn Backend>> = self
            .chaos
            .iter()
            .map(|c| {
                Arc::new(RetryBackend::new(Arc::new(c.clone()), fast_retries())) as Arc<dyn Backend>
            })
            .collect();
        DestinationSet::new(list).expect("three names")
    }

    /// A fresh repository handle on every destination (a new run).
    /// Opens on every destination as `check` and `sync --repair` do: a
    /// destination whose config rotted is admitted, to be reported and healed.
    pub async fn open(&self) -> Result<Repository, String> {
        let admission = lifeboat_engine::Admission {
            damaged_config: true,
            ..Default::default()
        };
        Repository::open_with(self.set_all(), b"pw", &admission)
            .await
            .map_err(|e| format!("open: {e}"))
    }

    /// Turns every fault off.
    pub fn calm(&self) {
        for c in &self.chaos {
            c.set_chaos(Chaos::default());
        }
    }

    /// Writes generation `generation` of the source for `seed`.
    pub fn write_source(&self, seed: u64, generation: u64) {
        let root = self.src.path();
        tree::write_generated(&root.join("photo.raw"), 1_500_000, 10 + 2 * seed, false);
        tree::write_generated(
            &root.join("changing.bin"),
            700_000,
            1000 + 2 * (seed * 100 + generation),
            false,
        );
        tree::write_generated(&root.join("notes.txt"), 600_000, 3000 + 2 * seed, true);
        for i in 0..20 {
            tree::write(
                &root.join(format!("small/{i}.txt")),
                format!("seed {seed} generation {generation} file {i}\n")
                    .repeat(i + 1)
                    .as_bytes(),
            );
        }
    }

    /// Backs up the source and remembers a copy of it.
    pub async fn backup(&mut self, repo: &Repository) -> Result<BackupOutcome, String> {
        let options = BackupOptions {
            paths: vec![self.src.path().to_path_buf()],
            ..Default::default()
        };
        let outcome = backup(repo, &options, Default::default(), Default::default())
            .await
            .map_err(|e| format!("backup: {e}"))?;
        if let Some(id) = outcome.snapshot_id {
            let copy = tempfile::tempdir().map_err(|e| e.to_string())?;
            copy_tree(self.src.path(), copy.path());
            self.history.push((id, copy));
        }
        Ok(outcome)
    }

    /// Restores every remembered snapshot through `repo`; counts the bytes
    /// that come back wrong or missing.
    pub async fn verify_with(&self, repo: &Repository) -> Outcome {
        let mut outcome = Outcome::default();
        for (id, copy) in &self.history {
            outcome.absorb(verify_snapshot(repo, id, copy.path(), self.src.path()).await);
        }
        outcome
    }

    /// Every snapshot from every destination alone (no chaos, no failover).
    pub async fn verify_each_alone(&self) -> Outcome {
        let mut outcome = Outcome::default();
        for backend in &self.plain {
            let set = DestinationSet::new(vec![backend.clone()]).expect("one");
            match Repository::open(set, b"pw").await {
                Ok(repo) => outcome.absorb(self.verify_with(&repo).await),
                Err(_) => {
                    outcome.bytes_lost += self
                        .history
                        .iter()
                        .map(|(_, c)| tree_bytes(c.path()))
                        .sum::<u64>();
                }
            }
        }
        outcome
    }

    /// Sync (with repair) until clean, then a full check; returns the
    /// problems the first check named.
    pub async fn heal_and_check(&self) -> Result<u64, String> {
        self.calm();
        let repo = self.open().await?;
        let first = full_check(&repo).await?;
        let named = first.problems.len() as u64;
        let actions = lifeboat_engine::repair::repair(&repo, &first, 1).await;
        if let Some(failed) = actions.iter().find(|a| a.error.is_some()) {
            return Err(format!("repair failed: {failed:?}"));
        }
        let plan = lifeboat_engine::sync::plan(&repo)
            .await
            .map_err(|e| format!("sync plan: {e}"))?;
        let done = lifeboat_engine::sync::apply(&repo, &plan, Default::default())
            .await
            .map_err(|e| format!("sync: {e}"))?;
        if !done.failed.is_empty() {
            return Err(format!("sync failed: {:?}", done.failed));
        }
        let fresh = self.open().await?;
        let report = full_check(&fresh).await?;
        if !report.is_ok() {
            return Err(format!(
                "check after sync: {:?}",
                report
                    .problems
                    .iter()
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>()
            ));
        }
        Ok(named)
    }
}

/// `check --read-data` on every destination.
pub async fn full_check(repo: &Repository) -> Result<CheckReport, String> {
    let options = CheckOptions {
        read_data: true,
        ..Default::default()
    };
    check(repo, &options, Default::default())
        .await
        .map_err(|e| format!("check: {e}"))
}

/// Restores one snapshot and compares it with `copy` (the source at the
/// time, which lived at `src`).
pub async fn verify_snapshot(
    repo: &Repository,
    id: &SnapshotId,
    copy: &Path,
    src: &Path,
) -> Outcome {
    let mut outcome = Outcome::default();
    let total = tree_bytes(copy);
    let Ok(target) = tempfile::tempdir() else {
        outcome.bytes_lost = total;
        return outcome;
    };
    let snapshot = match repo.find_snapshot(&id.to_hex()).await {
        Ok((_, s)) => s,
        Err(_) => {
            outcome.bytes_lost = total;
            return outcome;
        }
    };
    let options = RestoreOptions {
        target: target.path().into(),
        verify: true,
        ..Default::default()
    };
    let restored = restore(
        repo,
        &snapshot,
        &options,
        Default::default(),
        Default::default(),
    )
    .await;
    match restored {
        Ok(r) => outcome.errors_named += r.errors.len() as u64,
        Err(_) => {
            outcome.bytes_lost = total;
            return outcome;
        }
    }
    let root = target.path().join(src.strip_prefix("/").unwrap_or(src));
    for file in tree::regular_files(copy) {
        let rel = file.strip_prefix(copy).unwrap_or(&file);
        let want = std::fs::read(&file).unwrap_or_default();
        let got = std::fs::read(root.join(rel)).ok();
        if got.as_deref() != Some(&want[..]) {
            outcome.bytes_lost += want.len() as u64;
        }
    }
    outcome.snapshots_verified += 1;
    outcome
}

/// Bytes of every regular file under `dir`.
pub fn tree_bytes(dir: &Path) -> u64 {
    tree::regular_files(dir)
        .iter()
        .map(|f| std::fs::metadata(f).map(|m| m.len()).unwrap_or(0))
        .sum()
}

/// Copies regular files and directories.
pub fn copy_tree(from: &Path, to: &Path) {
    for file in tree::regular_files(from) {
        let rel: PathBuf = file.strip_prefix(from).unwrap_or(&file).to_path_buf();
        let dest = to.join(&rel);
        if let Some(parent) = dest.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        let _ = std::fs::copy(&file, dest);
    }
}
