//! `lifeboat status`: each destination's state and lag.

use anyhow::Result;
use serde_json::json;

use crate::context::Context;
use crate::output;

/// Arguments of `status`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Exit 3 when any destination lags, was rolled back, cannot be reached or holds no (or
    /// another) repository, for monitoring; without it status exits 0 whenever it could report.
    #[arg(long)]
    pub fail_on_lag: bool,
}

/// Runs `status`: exit 0 when it could report; with `--fail-on-lag`, 3 when
/// any destination lags, was rolled back, is unreachable or is not this
/// repository.
pub async fn run(ctx: &Context, args: Args) -> Result<i32> {
    let repo = ctx.open().await?;
    let snapshots = repo.list_snapshots().await?;
    let statuses = lifeboat_engine::status::status(&repo, &snapshots).await;
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    let when = |t: Option<i64>| {
        t.and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok())
            .and_then(|t| t.format(&format).ok())
    };
    let health = crate::health::load(repo.id());
    let locations = ctx.locations()?;
    // Results are kept per location: a name another destination had once
    // never shows that destination's results.
    let record = |name: &str| {
        locations
            .get(name)
            .and_then(|l| health.destinations.get(l))
            .cloned()
            .unwrap_or_default()
    };
    let healthy = statuses.iter().all(|s| {
        s.reachable && s.has_config && s.snapshots_missing == 0 && s.rolled_back.is_none()
    });
    if ctx.global.json {
        let list: Vec<_> = statuses
            .iter()
            .map(|s| {
                let h = record(&s.name);
                json!({
                    "name": s.name, "location": s.location, "reachable": s.reachable, "error": s.error,
                    "latency_ms": s.latency_ms, "has_repository": s.has_config,
                    "left_out": s.left_out.as_ref().map(|r| r.to_string()), "objects": s.objects, "bytes": s.bytes,
                    "snapshots": s.snapshots, "snapshots_missing": s.snapshots_missing,
                    "rolled_back": s.rolled_back.as_ref().map(super::check::rollback_json),
                    "newest_snapshot": s.newest_snapshot.and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok())
                        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok()),
                    "last_check": h.last_check.as_ref().map(check_json),
                    "last_clean_check": h.last_clean_check.as_ref().map(check_json),
                    "last_sync": h.last_sync.and_then(crate::health::rfc3339),
                    "last_drill": h.last_drill.as_ref().map(|d| json!({
                        "time": crate::health::rfc3339(d.time), "passed": d.passed, "snapshot": d.snapshot,
                    })),
                })
            })
            .collect();
        println!(
            "{}",
            json!({"message_type": "status", "ok": healthy, "destinations": list})
        );
    } else if !ctx.global.quiet {
        println!(
            "{:<16} {:<10} {:>9} {:>9} {:>11} {:>9} {:>6}  {:<21} {:<18} Last drill",
            "Destination",
            "Reachable",
            "Latency",
            "Objects",
            "Size",
            "Snapshots",
            "Lag",
            "Newest snapshot (UTC)",
            "Last check"
        );
        for s in &statuses {
            let reachable = if s.reachable { "yes" } else { "NO" };
            let latency = s
                .latency_ms
                .map(|ms| format!("{ms:.1} ms"))
                .unwrap_or_else(|| "-".into());
            let h = record(&s.name);
            println!(
                "{:<16} {:<10} {:>9} {:>9} {:>11} {:>9} {:>6}  {:<21} {:<18} {}",
                s.name,
                reachable,
                latency,
                s.objects,
                output::bytes(s.bytes),
                s.snapshots,
                s.snapshots_missing,
                when(s.newest_snapshot).unwrap_or_else(|| "-".into()),
                crate::health::describe_check(&h),
                crate::health::describe_drill(h.last_drill.as_ref()),
            );
            if let Some(r) = &s.rolled_back {
                println!(
                    "{:<16} ROLLED BACK: no longer lists {} that it held before: it may have been \
                     replaced by an older copy (see the warning above)",
                    "",
                    super::check::rollback_lost(r)
                );
            }
            if let Some(e) = &s.error {
                println!("{:<16} error: {e}", "");
            } else if !s.has_config {
                println!(
                    "{:<16} holds no repository yet: `lifeboat sync --seed {}` copies it there",
                    "", s.name
                );
            }
        }
    }
    Ok(if healthy || !args.fail_on_lag {
        crate::exit::OK
    } else {
        crate::exit::INCOMPLETE
    })
}

/// A check record as JSON.
fn check_json(c: &crate::health::CheckRecord) -> serde_json::Value {
    json!({"time": crate::health::rfc3339(c.time), "clean": c.clean, "read_data": c.read_data})
}
