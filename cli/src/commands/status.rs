//! `lifeboat status`: each destination's state and lag.

use anyhow::Result;
use serde_json::json;

use crate::context::Context;
use crate::output;

/// Arguments of `status`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `status`: exit 0 when every destination is reachable and complete, 3 otherwise.
pub async fn run(ctx: &Context, _args: Args) -> Result<i32> {
    let repo = ctx.open().await?;
    let snapshots = repo.list_snapshots().await?;
    let statuses = lifeboat_engine::status::status(&repo, &snapshots).await;
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    let when = |t: Option<i64>| {
        t.and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok())
            .and_then(|t| t.format(&format).ok())
    };
    let healthy = statuses
        .iter()
        .all(|s| s.reachable && s.has_config && s.snapshots_missing == 0);
    if ctx.global.json {
        let list: Vec<_> = statuses
            .iter()
            .map(|s| {
                json!({
                    "name": s.name, "location": s.location, "reachable": s.reachable, "error": s.error,
                    "latency_ms": s.latency_ms, "has_repository": s.has_config, "objects": s.objects, "bytes": s.bytes,
                    "snapshots": s.snapshots, "snapshots_missing": s.snapshots_missing,
                    "newest_snapshot": s.newest_snapshot.and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok())
                        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok()),
                })
            })
            .collect();
        println!(
            "{}",
            json!({"message_type": "status", "ok": healthy, "destinations": list})
        );
    } else if !ctx.global.quiet {
        println!(
            "{:<16} {:<10} {:>9} {:>9} {:>11} {:>9} {:>6}  Newest snapshot (UTC)",
            "Destination", "Reachable", "Latency", "Objects", "Size", "Snapshots", "Lag"
        );
        for s in &statuses {
            let reachable = if s.reachable { "yes" } else { "NO" };
            let latency = s
                .latency_ms
                .map(|ms| format!("{ms:.1} ms"))
                .unwrap_or_else(|| "-".into());
            println!(
                "{:<16} {:<10} {:>9} {:>9} {:>11} {:>9} {:>6}  {}",
                s.name,
                reachable,
                latency,
                s.objects,
                output::bytes(s.bytes),
                s.snapshots,
                s.snapshots_missing,
                when(s.newest_snapshot).unwrap_or_else(|| "-".into())
            );
            if let Some(e) = &s.error {
                println!("{:<16} error: {e}", "");
            } else if !s.has_config {
                println!(
                    "{:<16} holds no repository yet: run `lifeboat sync` to seed it",
                    ""
                );
            }
        }
    }
    Ok(if healthy {
        crate::exit::OK
    } else {
        crate::exit::INCOMPLETE
    })
}
