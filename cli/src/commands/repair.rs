//! The repair phase of `lifeboat sync --repair`: read everything, replace
//! corrupt copies from good ones, report what no destination holds intact.

use std::sync::Arc;

use anyhow::Result;
use lifeboat_engine::check::{self, CheckOptions, CheckProgress};
use lifeboat_engine::repair::repair;
use lifeboat_engine::Repository;
use serde_json::json;

use crate::context::Context;
use crate::output::{self, Tick, Ticker};

/// Runs the repair phase (the caller holds an exclusive lock). Exit 1 when
/// something stays damaged: a lost object or a failed repair.
pub async fn run(ctx: &Context, repo: &Repository) -> Result<i32> {
    let progress = Arc::new(CheckProgress::default());
    let p = progress.clone();
    let ticker = Ticker::start(ctx, false, move || {
        use std::sync::atomic::Ordering::Relaxed;
        let (done, total) = (p.packs_done.load(Relaxed), p.packs_total.load(Relaxed));
        Tick {
            pos: done,
            len: Some(total),
            message: "packs verified".into(),
            json: json!({"message_type": "status", "phase": "verify", "packs_done": done, "packs_total": total}),
        }
    });
    let options = CheckOptions {
        read_data: true,
        ..Default::default()
    };
    let report = check::check(repo, &options, progress).await;
    ticker.finish().await;
    let report = report?;
    let stamp = time::OffsetDateTime::now_utc().unix_timestamp();
    let actions = repair(repo, &report, stamp).await;
    let failed = actions.iter().filter(|a| a.error.is_some()).count();
    let lost: Vec<_> = report.lost().collect();
    if ctx.global.json {
        let list: Vec<_> = actions
            .iter()
            .map(|a| {
                json!({"destination": a.destination, "object": a.key, "source": a.source,
                       "quarantined_as": a.quarantined_as, "error": a.error})
            })
            .collect();
        let lost_json: Vec<_> = lost
            .iter()
            .map(
                |p| json!({"object": p.object, "destination": p.destination, "message": p.message}),
            )
            .collect();
        let damaged: Vec<_> = report
            .damaged
            .iter()
            .map(|d| json!({"snapshot": d.snapshot.to_hex(), "time": output::time(d.time), "paths": d.paths, "more_paths": d.more_paths}))
            .collect();
        println!(
            "{}",
            json!({"message_type": "repair", "repaired": actions.len() - failed, "failed": failed,
                   "actions": list, "lost": lost_json, "damaged_snapshots": damaged})
        );
    } else {
        for a in &actions {
            match (&a.error, &a.quarantined_as) {
                (None, Some(q)) => ctx.say(format!(
                    "repaired {}: {} from {} (bad copy kept as {q})",
                    a.destination,
                    a.key,
                    a.source.as_deref().unwrap_or("-")
                )),
                (None, None) => ctx.say(format!(
                    "repaired {}: {} from {}",
                    a.destination,
                    a.key,
                    a.source.as_deref().unwrap_or("-")
                )),
                (Some(e), _) => eprintln!("error: repairing {} on {}: {e}", a.key, a.destination),
            }
        }
        for p in &lost {
            eprintln!("error: {p}");
        }
        for d in &report.damaged {
            eprintln!(
                "{}",
                super::check::damaged_line(d, "cannot be fully restored")
            );
        }
        if actions.is_empty() && lost.is_empty() {
            ctx.say("no corrupt copies found");
        }
    }
    Ok(if failed > 0 || !lost.is_empty() {
        crate::exit::ERROR
    } else {
        crate::exit::OK
    })
}
