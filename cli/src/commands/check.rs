//! `lifeboat check`: verify every destination and say what can be healed.

use std::sync::Arc;

use anyhow::Result;
use lifeboat_engine::check::{self, CheckOptions, CheckProgress, CheckReport, Subset};
use serde_json::json;

use crate::context::Context;
use crate::output::{self, Tick, Ticker};

/// Arguments of `check`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Also read every object and verify every byte (slow: reads the whole repository from every destination).
    #[arg(long)]
    pub read_data: bool,
    /// Read only part of the data: `n/m` is the n-th of m slices (m runs with n = 1..m read
    /// everything once), `P%` a random share.
    #[arg(long, value_name = "n/m|P%", conflicts_with = "read_data")]
    pub read_data_subset: Option<Subset>,
    /// Check only this destination (by name, as `status` shows it); the others are still
    /// listed to tell whether a problem can be healed.
    #[arg(long, value_name = "NAME")]
    pub from: Option<String>,
}

/// Runs `check`: exit 1 when anything is wrong.
pub async fn run(ctx: &Context, args: Args) -> Result<i32> {
    // A destination whose config names this repository but is damaged is
    // checked (its config is reported corrupt, for `sync --repair`).
    let admission = lifeboat_engine::Admission {
        damaged_config: true,
        ..Default::default()
    };
    let repo = ctx.open_admitting(None, &admission).await?;
    let progress = Arc::new(CheckProgress::default());
    let p = progress.clone();
    let ticker = Ticker::start(ctx, false, move || {
        use std::sync::atomic::Ordering::Relaxed;
        let (done, total) = (p.packs_done.load(Relaxed), p.packs_total.load(Relaxed));
        Tick {
            pos: done,
            len: Some(total),
            message: "packs".into(),
            json: json!({"message_type": "status", "packs_done": done, "packs_total": total}),
        }
    });
    let options = CheckOptions {
        read_data: args.read_data,
        subset: args.read_data_subset,
        only: args.from.clone(),
    };
    let result = ctx
        .lock_wait
        .locked(&repo, false, async {
            Ok(check::check(&repo, &options, progress.clone()).await?)
        })
        .await;
    ticker.finish().await;
    let report = result?;
    // Remembered per destination, so `status` can show the last clean check.
    let nothing_lost = report.lost().next().is_none();
    let locations = ctx.locations()?;
    for row in &report.destinations {
        // A destination that could not be reached was not checked: its last
        // result stands (status shows it unreachable).
        let (Some(location), true) = (locations.get(&row.name), row.reachable) else {
            continue;
        };
        crate::health::record_check(
            repo.id(),
            location,
            &row.name,
            row.is_clean() && nothing_lost,
            options.reads_packs(),
        );
    }
    if ctx.global.json {
        print_json(&report, &args, repo.destinations().left_out());
    } else {
        print_human(ctx, &report, &args);
    }
    let left_out = repo.destinations().left_out();
    if !left_out.is_empty() && !ctx.global.json {
        ctx.note(format!(
            "not checked: {} (see the warnings above)",
            left_out
                .iter()
                .map(|l| l.backend.name())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Ok(if report.is_ok() && left_out.is_empty() {
        crate::exit::OK
    } else {
        crate::exit::ERROR
    })
}

fn print_json(report: &CheckReport, args: &Args, left_out: &[lifeboat_engine::LeftOut]) {
    let problems: Vec<_> = report
        .problems
        .iter()
        .map(|p| {
            json!({
                "object": p.object, "destination": p.destination, "kind": p.kind.as_str(),
                "message": p.message, "healable": p.healable(), "good_copies": p.good_copies,
            })
        })
        .collect();
    let destinations: Vec<_> = report
        .destinations
        .iter()
        .map(|d| {
            json!({
                "name": d.name, "reachable": d.reachable, "error": d.error,
                "objects_checked": d.objects_checked, "missing": d.missing, "corrupt": d.corrupt,
                "extra": d.extra, "foreign": d.foreign, "bytes_read": d.bytes_read,
                "rolled_back": d.rolled_back.is_some(), "clean": d.is_clean(),
            })
        })
        .collect();
    let damaged: Vec<_> = report
        .damaged
        .iter()
        .map(|d| {
            json!({
                "snapshot": d.snapshot.to_hex(), "time": output::time(d.time),
                "paths": d.paths, "more_paths": d.more_paths,
            })
        })
        .collect();
    println!(
        "{}",
        json!({
            "message_type": "summary",
            "ok": report.is_ok() && left_out.is_empty(),
            "destinations": destinations,
            "left_out": left_out.iter().map(|l| json!({"name": l.backend.name(), "reason": l.reason.to_string()})).collect::<Vec<_>>(),
            "problems": problems,
            "rolled_back": report.rolled_back().map(rollback_json).collect::<Vec<_>>(),
            "damaged_snapshots": damaged,
            "notes": report.notes,
            "snapshots": report.snapshots,
            "trees": report.trees,
            "index_files": report.index_files,
            "objects_checked": report.packs,
            "blobs": report.blobs,
            "bytes_read": report.bytes_read,
            "read_data": args.read_data,
            "read_data_subset": args.read_data_subset.map(|s| s.to_string()),
        })
    );
}

/// A rolled-back destination as JSON (for `check` and `status`): what it no
/// longer lists that it listed before.
pub fn rollback_json(r: &lifeboat_engine::repo::seen::Rollback) -> serde_json::Value {
    json!({
        "destination": r.destination,
        "snapshots": r.snapshots.iter().map(|i| i.to_hex()).collect::<Vec<_>>(),
        "deletion_records": r.deletion_records,
        "sources": r.sources,
        "snapshots_nowhere": r.snapshots_nowhere.iter().map(|i| i.to_hex()).collect::<Vec<_>>(),
        "deletion_records_nowhere": r.records_nowhere,
    })
}

/// `snapshots 1a2b3c4d, 5e6f7a8b and deletion record 0a1b2c3d`: what a
/// rolled-back destination lost, short.
pub fn rollback_lost(r: &lifeboat_engine::repo::seen::Rollback) -> String {
    let mut parts = Vec::new();
    if !r.snapshots.is_empty() {
        let ids: Vec<String> = r.snapshots.iter().map(|i| i.short()).collect();
        let word = if ids.len() == 1 {
            "snapshot"
        } else {
            "snapshots"
        };
        parts.push(format!("{word} {}", ids.join(", ")));
    }
    if !r.deletion_records.is_empty() {
        let names: Vec<&str> = r
            .deletion_records
            .iter()
            .map(|n| n.get(..8).unwrap_or(n))
            .collect();
        let word = if names.len() == 1 {
            "deletion record"
        } else {
            "deletion records"
        };
        parts.push(format!("{word} {}", names.join(", ")));
    }
    parts.join(" and ")
}

fn print_human(ctx: &Context, report: &CheckReport, args: &Args) {
    for problem in &report.problems {
        eprintln!("error: {problem}");
    }
    for r in report.rolled_back() {
        eprintln!(
            "error: {}: ROLLED BACK: no longer lists {} that it held before (see the warning above)",
            r.destination,
            rollback_lost(r)
        );
    }
    for d in &report.damaged {
        eprintln!("{}", damaged_line(d, "is damaged"));
    }
    for note in &report.notes {
        ctx.say(format!("note: {note}"));
    }
    for d in &report.destinations {
        if let Some(first) = d.foreign.first() {
            eprintln!(
                "warning: {}: {} that {} not Lifeboat's (for example {first:?}): never read \
                 or copied; remove {} if nothing else uses this directory",
                d.name,
                output::count(d.foreign.len() as u64, "object"),
                if d.foreign.len() == 1 { "is" } else { "are" },
                if d.foreign.len() == 1 { "it" } else { "them" },
            );
        }
    }
    if !ctx.global.quiet {
        println!(
            "{:<16} {:<10} {:>9} {:>8} {:>8} {:>7} {:>11}",
            "Destination", "Reachable", "Objects", "Missing", "Corrupt", "Extra", "Read"
        );
        for d in &report.destinations {
            println!(
                "{:<16} {:<10} {:>9} {:>8} {:>8} {:>7} {:>11}",
                d.name,
                if d.reachable { "yes" } else { "NO" },
                d.objects_checked,
                d.missing,
                d.corrupt,
                d.extra,
                output::bytes(d.bytes_read)
            );
            if let Some(e) = &d.error {
                eprintln!("error: {}: could not be checked: {e}", d.name);
            }
        }
    }
    let scope = match (&args.read_data, &args.read_data_subset) {
        (true, _) => format!(", read {} of data", output::bytes(report.bytes_read)),
        (_, Some(s)) => format!(
            ", read {} of data (subset {s})",
            output::bytes(report.bytes_read)
        ),
        _ => String::new(),
    };
    ctx.say(format!(
        "checked {}, {}, {}, {}{scope}",
        output::count(report.snapshots, "snapshot"),
        output::count(report.trees, "tree"),
        output::count(report.packs, "object"),
        output::count(report.blobs, "blob"),
    ));
    if report.destinations.iter().any(|d| d.extra > 0) {
        ctx.say(
            "extra: packs no index lists: left by an interrupted backup, or marked by prune \
             and waiting out its grace period; harmless, the next prune removes them",
        );
    }
    let lost = report.lost().count();
    let problems = output::count(report.problems.len() as u64, "problem");
    // Missing copies are sync's ordinary work; corrupt ones need --repair.
    let corrupt = report
        .problems
        .iter()
        .any(|p| p.kind != lifeboat_engine::check::ProblemKind::Missing);
    let remedy = if corrupt {
        "lifeboat sync --repair"
    } else {
        "lifeboat sync"
    };
    let rolled_back: Vec<&str> = report
        .rolled_back()
        .map(|r| r.destination.as_str())
        .collect();
    if !rolled_back.is_empty() {
        eprintln!(
            "{} may have been rolled back to an older copy: run `lifeboat sync` to copy back what \
             another destination holds",
            rolled_back.join(", ")
        );
    }
    if report.is_ok() {
        ctx.say("no errors were found");
    } else if report.problems.is_empty() && !rolled_back.is_empty() {
        // Said above.
    } else if lost == 0 && !report.problems.is_empty() {
        eprintln!("{problems} found, all healable: run `{remedy}`");
    } else if !report.problems.is_empty() {
        eprintln!("{problems} found, {lost} with no good copy anywhere: the repository is damaged");
    } else {
        eprintln!("some destinations could not be checked");
    }
}

/// `snapshot <id> (<time>) <what>: <paths>[ and N more]`: one damaged
/// snapshot, for check and repair.
pub fn damaged_line(d: &check::DamagedSnapshot, what: &str) -> String {
    let more = if d.more_paths > 0 {
        format!(" and {} more", d.more_paths)
    } else {
        String::new()
    };
    format!(
        "snapshot {} ({}) {what}: {}{more}",
        d.snapshot.short(),
        output::time(d.time),
        d.paths.join(", ")
    )
}
