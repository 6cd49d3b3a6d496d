//! `lifeboat drill`: prove that each destination, on its own, brings a
//! snapshot back.
//!
//! The snapshot is resolved once on all the selected destinations together
//! (so `latest` means the repository's newest snapshot, and a destination
//! that lags fails instead of passing on an older one); then each destination
//! is opened alone, under its own shared lock, and drilled in turn. A
//! destination that cannot be opened is a failed drill and the others go on.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Result};
use lifeboat_backends::Backend;
use lifeboat_engine::drill::{self, DrillOptions, DrillProgress, DrillReport};
use lifeboat_engine::percent::Percent;
use lifeboat_engine::{DestinationSet, Error, LeftOut, RepoId, Repository, SnapshotId};
use serde_json::json;

use crate::context::Context;
use crate::output::{self, Tick, Ticker};
use crate::{health, password};

/// Arguments of `drill`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Snapshot: `latest` (the newest on any destination), an id, or a unique
    /// prefix of one (4+ hex digits).
    #[arg(value_name = "SNAPSHOT", default_value = "latest")]
    pub snapshot: String,
    /// Drill only this destination (by name, as `status` shows it); repeat for
    /// several. Default: every selected destination (`-d`, the profile's, or
    /// every configured one).
    #[arg(long, value_name = "NAME")]
    pub from: Vec<String>,
    /// Verify only this share of the files, chosen at random (`5%`).
    #[arg(long, value_name = "PERCENT", value_parser = Percent::parse_positive)]
    pub sample: Option<Percent>,
    /// Restore the whole snapshot, verified, into a temporary directory (then
    /// removed) instead of only reading and verifying every chunk. Needs as
    /// much free space as the snapshot's files.
    #[arg(long, conflicts_with = "sample")]
    pub restore: bool,
    /// Like --restore, with the temporary directory created below DIR
    /// (default: the system's temporary directory).
    #[arg(long, value_name = "DIR", conflicts_with = "sample")]
    pub restore_to: Option<PathBuf>,
}

/// The outcome for one destination.
struct Row {
    name: String,
    report: Option<DrillReport>,
    error: Option<String>,
}

impl Row {
    fn passed(&self) -> bool {
        self.error.is_none() && self.report.as_ref().is_some_and(|r| r.passed)
    }
}

/// Runs `drill`: exit 0 when every drilled destination passed, 1 otherwise.
pub async fn run(ctx: &Context, args: Args) -> Result<i32> {
    let mut selection = ctx.selection()?;
    if !args.from.is_empty() {
        for name in &args.from {
            if !selection.backends.iter().any(|b| b.name() == name) {
                let names: Vec<&str> = selection.backends.iter().map(|b| b.name()).collect();
                return Err(crate::exit::usage(format!(
                    "--from {name}: no such destination; the destinations are: {}",
                    names.join(", ")
                )));
            }
        }
        selection
            .backends
            .retain(|b| args.from.iter().any(|n| n == b.name()));
    }
    let backends = selection.backends;
    let password = password::existing(ctx.global.password_file.as_deref())?;
    let (repo_id, snapshot, left_out) = resolve(&backends, &password, &args.snapshot, ctx).await?;
    let spec = snapshot.map_or_else(|| args.snapshot.clone(), |id| id.to_hex());
    let options = DrillOptions {
        sample: args.sample.map(Percent::value),
        restore_in: (args.restore || args.restore_to.is_some())
            .then(|| args.restore_to.clone().unwrap_or_else(std::env::temp_dir)),
        concurrency: None,
    };

    let locations = ctx.locations()?;
    let mut rows = Vec::new();
    for backend in &backends {
        let name = backend.name().to_string();
        ctx.note(format!("drilling {name}…"));
        let outcome = match left_out.iter().find(|l| l.backend.name() == name) {
            // Not this repository (or not provably): its own snapshots prove nothing.
            Some(left) => Err(anyhow::anyhow!("{}", left.reason)),
            None => drill_one(ctx, backend.clone(), &password, &spec, &options, repo_id).await,
        };
        let row = match outcome {
            Ok(report) => Row {
                name,
                report: Some(report),
                error: None,
            },
            Err(e) if matches!(e.downcast_ref::<Error>(), Some(Error::Interrupted)) => {
                return Err(e)
            }
            Err(e) => {
                let error = match (e.downcast_ref::<Error>(), snapshot) {
                    (Some(Error::SnapshotNotFound(_)), Some(id)) => format!(
                        "this destination does not hold snapshot {} (it lags or lost it; \
                         `lifeboat sync` copies it from another destination)",
                        id.short()
                    ),
                    _ => format!("{e:#}"),
                };
                Row {
                    name,
                    report: None,
                    error: Some(error),
                }
            }
        };
        if let Some(id) = repo_id {
            let short = row
                .report
                .as_ref()
                .map(|r| r.snapshot.short())
                .or_else(|| snapshot.map(|s| s.short()))
                .unwrap_or_default();
            if let Some(location) = locations.get(&row.name) {
                health::record_drill(id, location, &row.name, row.passed(), &short);
            }
        }
        rows.push(row);
    }

    let ok = rows.iter().all(Row::passed);
    if ctx.global.json {
        print_json(&rows, ok, snapshot);
    } else if !ctx.global.quiet {
        print_table(&rows, snapshot, &args);
    }
    for row in rows.iter().filter(|r| !r.passed()) {
        if ctx.global.quiet && !ctx.global.json {
            eprintln!("error: drill of {} failed", row.name);
        }
    }
    Ok(if ok {
        crate::exit::OK
    } else {
        crate::exit::ERROR
    })
}

/// The repository id and the snapshot's id, resolved on every selected
/// destination together. A snapshot that does not exist anywhere is the
/// user's error; a repository that cannot be opened at all leaves both
/// unknown, and each destination's drill reports its own failure.
async fn resolve(
    backends: &[Arc<dyn Backend>],
    password: &[u8],
    spec: &str,
    ctx: &Context,
) -> Result<(Option<RepoId>, Option<SnapshotId>, Vec<LeftOut>)> {
    let all = DestinationSet::new(backends.to_vec())?;
    let repo = match Repository::open_with(all, password, &known_keys_first()).await {
        Ok(repo) => repo,
        Err(e @ Error::WrongPassword) => return Err(e.into()),
        Err(e) => {
            tracing::warn!("cannot open the repository on the destinations together: {e}");
            return Ok((None, None, Vec::new()));
        }
    };
    // Resolving the snapshot lists every destination: compared with what
    // each listed before, as every command does.
    let repo = ctx.with_local_state(repo);
    let left_out = repo.destinations().left_out().to_vec();
    match repo.find_snapshot(spec).await {
        Ok((id, _)) => Ok((Some(repo.id()), Some(id), left_out)),
        Err(
            e @ (Error::SnapshotNotFound(_) | Error::AmbiguousSnapshot(_) | Error::InvalidInput(_)),
        ) => Err(e.into()),
        Err(e) => {
            ctx.note(format!(
                "warning: cannot resolve {spec:?} on all destinations together: {e}"
            ));
            Ok((Some(repo.id()), None, left_out))
        }
    }
}

/// Opening options that try this machine's known key files first.
fn known_keys_first() -> lifeboat_engine::Admission {
    lifeboat_engine::Admission {
        known_keys: crate::known_keys::load(),
        ..Default::default()
    }
}

/// Opens the repository on `backend` alone and drills it under a shared lock.
async fn drill_one(
    ctx: &Context,
    backend: Arc<dyn Backend>,
    password: &[u8],
    spec: &str,
    options: &DrillOptions,
    expected: Option<RepoId>,
) -> Result<DrillReport> {
    let name = backend.name().to_string();
    let alone = DestinationSet::new(vec![backend])?;
    // Opened directly, not through `Context::open`: no other destination to
    // fail over to and no local metadata cache, so every byte the drill
    // trusts comes from this destination.
    let repo = Repository::open_with(alone, password, &known_keys_first()).await?;
    if expected.is_some_and(|id| id != repo.id()) {
        bail!("holds a different repository");
    }
    let progress = Arc::new(DrillProgress::default());
    // One JSON object on stdout: no periodic status lines with --json.
    let ticker = (!ctx.global.json).then(|| {
        let p = progress.clone();
        Ticker::start(ctx, true, move || {
            use std::sync::atomic::Ordering::Relaxed;
            let (done, total) = (p.bytes_done.load(Relaxed), p.bytes_total.load(Relaxed));
            Tick {
                pos: done,
                len: Some(total),
                message: name.clone(),
                json: json!({"message_type": "status", "destination": name, "bytes_done": done, "bytes_total": total}),
            }
        })
    });
    let result = ctx
        .lock_wait
        .locked(&repo, false, async {
            Ok(drill::drill(&repo, spec, options, progress.clone(), ctx.cancel.clone()).await?)
        })
        .await;
    if let Some(ticker) = ticker {
        ticker.finish().await;
    }
    result
}

fn print_json(rows: &[Row], ok: bool, snapshot: Option<SnapshotId>) {
    let list: Vec<_> = rows
        .iter()
        .map(|row| {
            let r = row.report.as_ref();
            json!({
                "name": row.name,
                "passed": row.passed(),
                "snapshot": r.map(|r| r.snapshot.to_hex()),
                "restored": r.map(|r| r.restored),
                "files_selected": r.map(|r| r.files_selected),
                "files": r.map_or(0, |r| r.files_verified),
                "bytes": r.map_or(0, |r| r.bytes_verified),
                "failures": r.map_or(0, |r| r.failures),
                "seconds": r.map(|r| r.duration.as_secs_f64()),
                "bytes_per_second": r.map(|r| r.throughput()),
                "first_failure": r.and_then(|r| r.first_failure.clone()),
                "error": row.error,
            })
        })
        .collect();
    println!(
        "{}",
        json!({
            "message_type": "drill",
            "ok": ok,
            "snapshot": snapshot.map(|s| s.to_hex()),
            "destinations": list,
        })
    );
}

fn print_table(rows: &[Row], snapshot: Option<SnapshotId>, args: &Args) {
    println!(
        "{:<16} {:<7} {:>9} {:>11} {:>8} {:>12}",
        "Destination", "Result", "Files", "Size", "Time", "Speed"
    );
    for row in rows {
        let result = if row.passed() { "passed" } else { "FAILED" };
        match &row.report {
            Some(r) => {
                let files = if r.files_verified == r.files_selected {
                    r.files_verified.to_string()
                } else {
                    format!("{}/{}", r.files_verified, r.files_selected)
                };
                println!(
                    "{:<16} {:<7} {:>9} {:>11} {:>7.1}s {:>10}/s",
                    row.name,
                    result,
                    files,
                    output::bytes(r.bytes_verified),
                    r.duration.as_secs_f64(),
                    output::bytes(r.throughput() as u64),
                );
                if let Some(first) = &r.first_failure {
                    let more = match r.failures {
                        0 | 1 => String::new(),
                        n => format!(" (and {} more)", n - 1),
                    };
                    println!("{:<16} first failure: {first}{more}", "");
                }
            }
            None => {
                println!(
                    "{:<16} {:<7} {:>9} {:>11} {:>8} {:>12}",
                    row.name, result, "-", "-", "-", "-"
                );
            }
        }
        if let Some(e) = &row.error {
            println!("{:<16} error: {e}", "");
        }
    }
    let passed = rows.iter().filter(|r| r.passed()).count();
    let what = match (args.restore || args.restore_to.is_some(), args.sample) {
        (true, _) => "restored and verified".to_string(),
        (false, Some(p)) => format!("verified a {p} sample"),
        (false, None) => "verified every file".to_string(),
    };
    let snapshot = snapshot.map_or_else(|| args.snapshot.clone(), |s| s.short());
    if passed == rows.len() {
        println!(
            "snapshot {snapshot}: {what}; {passed} of {passed} destinations can each bring it back alone"
        );
    } else {
        println!(
            "snapshot {snapshot}: {} of {} destinations FAILED the drill",
            rows.len() - passed,
            rows.len()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Drill {
        #[command(flatten)]
        args: Args,
    }

    #[test]
    fn sample_takes_the_shared_percent_forms_above_zero() {
        let sample = |text: &str| {
            Drill::try_parse_from(["drill", "--sample", text])
                .map(|d| d.args.sample.map(Percent::value))
        };
        assert_eq!(sample("5%").ok(), Some(Some(5.0)));
        assert_eq!(sample("5").ok(), Some(Some(5.0)));
        assert_eq!(sample("2.5%").ok(), Some(Some(2.5)));
        for bad in ["0%", "150%", "half"] {
            let error = sample(bad).expect_err(bad).to_string();
            assert!(error.contains("--sample"), "{error}");
        }
    }
}
