//! `lifeboat tag`: add, remove or set snapshots' tags.

use anyhow::Result;
use lifeboat_engine::tag::TagChange;
use serde_json::json;

use crate::context::Context;
use crate::filter::SnapshotFilter;
use crate::output;

/// Arguments of `tag`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "A snapshot is never changed in place: each changed snapshot is stored \
    again with its new tags (recording the original it replaces), and the old one is retired \
    as `forget` retires it, on every destination."
)]
pub struct Args {
    /// Snapshots to change (`latest`, ids or prefixes); default: every snapshot the filters pass.
    #[arg(value_name = "SNAPSHOT")]
    pub snapshots: Vec<String>,
    /// Add this tag (repeatable, or comma-separated).
    #[arg(long, value_name = "TAG", value_delimiter = ',')]
    pub add: Vec<String>,
    /// Remove this tag (repeatable, or comma-separated).
    #[arg(long, value_name = "TAG", value_delimiter = ',')]
    pub remove: Vec<String>,
    /// Replace every tag with these (repeatable, or comma-separated; `--set ''` clears them).
    #[arg(long, value_name = "TAG", value_delimiter = ',')]
    pub set: Option<Vec<String>>,
    /// Which snapshots to change when none is named.
    #[command(flatten)]
    pub filter: SnapshotFilter,
}

/// Runs `tag`: exit 0; 3 when a destination was missed.
pub async fn run(ctx: &Context, args: Args) -> Result<i32> {
    let change = TagChange {
        set: args
            .set
            .clone()
            .map(|v| v.into_iter().filter(|t| !t.is_empty()).collect()),
        add: args.add.clone(),
        remove: args.remove.clone(),
    };
    change
        .validate()
        .map_err(|e| crate::exit::usage(e.to_string()))?;
    let repo = ctx.open().await?;
    let work = async {
        let snapshots = args.filter.select(&repo, &args.snapshots).await?;
        let outcome = lifeboat_engine::tag::tag(&repo, snapshots, &change).await?;
        let missed = &outcome.retired.missed;
        if ctx.global.json {
            println!(
                "{}",
                json!({"message_type": "summary",
                       "changed": outcome.replaced.iter().map(|r| json!({"old": r.old.to_hex(), "new": r.new.to_hex(), "tags": r.snapshot.tags})).collect::<Vec<_>>(),
                       "unchanged": outcome.unchanged.iter().map(|id| id.to_hex()).collect::<Vec<_>>(),
                       "destinations_reached": outcome.retired.reached,
                       "destinations_missed": missed.iter().map(|(n, e)| json!({"name": n, "error": e})).collect::<Vec<_>>()})
            );
        } else {
            for r in &outcome.replaced {
                ctx.say(format!(
                    "snapshot {} is now {}: tags {}",
                    r.old.short(),
                    r.new.short(),
                    if r.snapshot.tags.is_empty() {
                        "(none)".to_string()
                    } else {
                        r.snapshot.tags.join(",")
                    }
                ));
            }
            ctx.say(format!(
                "changed {}, {} already as asked",
                output::count(outcome.replaced.len() as u64, "snapshot"),
                outcome.unchanged.len()
            ));
            output::report_missed(
                ctx,
                repo.destinations(),
                missed,
                "`lifeboat sync` brings it the new snapshots and retires the old ones there",
            );
        }
        // Left-out destinations are among the missed ones.
        Ok(if missed.is_empty() {
            crate::exit::OK
        } else {
            crate::exit::INCOMPLETE
        })
    };
    ctx.lock_wait.locked(&repo, true, work).await
}
