//! `lifeboat sync`: bring every destination up to date from the others.

use std::sync::Arc;

use anyhow::Result;
use lifeboat_engine::sync::{self, SyncOutcome, SyncPlan, SyncProgress};
use lifeboat_engine::Admission;
use serde_json::json;

use crate::context::Context;
use crate::output::{self, Tick, Ticker};

/// Arguments of `sync`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Show what would be copied, copy nothing.
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// First read every object on every destination and replace copies found corrupt with a
    /// verified good copy from another destination (bad copies are kept under quarantine/);
    /// takes an exclusive lock.
    #[arg(long, conflicts_with = "dry_run")]
    pub repair: bool,
    /// Copy the repository to this empty destination (one of the -d or configured ones; repeat
    /// for several). Without it an empty destination is left out: it may be an unmounted disk or
    /// a mistyped path.
    #[arg(long, value_name = "NAME")]
    pub seed: Vec<String>,
}

/// Runs `sync`: exit 0 when every destination is complete, 3 when some copy
/// failed or some destination could not be reached. The lock is taken before
/// anything is planned, so no prune can change what the plan saw.
pub async fn run(ctx: &Context, args: Args) -> Result<i32> {
    let admission = Admission {
        seed: args.seed.clone(),
        damaged_config: args.repair,
        ..Default::default()
    };
    let repo = ctx.open_admitting(None, &admission).await?;
    if args.repair {
        let repair = async {
            let repaired = super::repair::run(ctx, &repo).await?;
            let copied = copy_missing(ctx, &repo, &args).await?;
            Ok(if repaired != crate::exit::OK {
                repaired
            } else {
                copied
            })
        };
        return ctx.lock_wait.locked(&repo, true, repair).await;
    }
    let copy = copy_missing(ctx, &repo, &args);
    ctx.lock_wait.locked(&repo, false, copy).await
}

/// Plans and copies what each destination lacks. The caller holds a lock.
async fn copy_missing(
    ctx: &Context,
    repo: &lifeboat_engine::Repository,
    args: &Args,
) -> Result<i32> {
    let plan = sync::plan(repo).await?;
    show_plan(ctx, &plan);
    let incomplete = !plan.unreachable.is_empty() || !repo.destinations().left_out().is_empty();
    if args.dry_run || plan.copies.is_empty() {
        if !args.dry_run {
            record_synced(ctx, repo, &[])?;
        }
        if ctx.global.json {
            let targets: Vec<_> = plan
                .per_target()
                .iter()
                .map(|(name, (objects, bytes))| json!({"name": name, "objects": objects, "bytes": bytes}))
                .collect();
            println!(
                "{}",
                json!({"message_type": "summary", "dry_run": args.dry_run, "to_copy": targets, "copied": 0,
                       "unreachable": unreachable_json(&plan)})
            );
        }
        return Ok(exit_code(incomplete));
    }
    let outcome = apply_with_progress(ctx, repo, &plan).await?;
    record_synced(ctx, repo, &outcome.failed)?;
    show_outcome(ctx, &plan, &outcome);
    relist(repo).await;
    Ok(exit_code(incomplete || !outcome.failed.is_empty()))
}

/// Lists the snapshots again after copying, with the deletion records read
/// afresh: a destination that still lacks what it listed before (a snapshot
/// no destination held to copy back) is warned about once more, and one
/// that got everything back is no longer called rolled back. A failure here
/// changes nothing of what sync did.
async fn relist(repo: &lifeboat_engine::Repository) {
    repo.reload_tombstones().await;
    if let Err(e) = repo.snapshot_names().await {
        tracing::debug!("listing the snapshots after sync: {e}");
    }
}

/// The plan, per destination, in human form (nothing with --json).
fn show_plan(ctx: &Context, plan: &SyncPlan) {
    if ctx.global.json {
        return;
    }
    for (name, error) in &plan.unreachable {
        eprintln!("warning: destination {name} could not be reached: {error}");
    }
    if plan.copies.is_empty() {
        ctx.say("every reachable destination is up to date");
    }
    for (target, (objects, bytes)) in &plan.per_target() {
        ctx.say(format!(
            "{target}: {objects} objects, {} to copy",
            output::bytes(*bytes)
        ));
    }
}

/// Copies the plan's objects with a progress bar.
async fn apply_with_progress(
    ctx: &Context,
    repo: &lifeboat_engine::Repository,
    plan: &SyncPlan,
) -> Result<SyncOutcome> {
    let progress = Arc::new(SyncProgress::default());
    let p = progress.clone();
    let total = plan.bytes();
    let ticker = Ticker::start(ctx, true, move || {
        use std::sync::atomic::Ordering::Relaxed;
        let done = p.bytes_done.load(Relaxed);
        Tick {
            pos: done,
            len: Some(total),
            message: format!("{} objects", p.objects_done.load(Relaxed)),
            json: json!({"message_type": "status", "bytes_done": done, "bytes_total": total}),
        }
    });
    let result = sync::apply(repo, plan, progress).await;
    ticker.finish().await;
    Ok(result?)
}

/// The summary of a sync that copied.
fn show_outcome(ctx: &Context, plan: &SyncPlan, outcome: &SyncOutcome) {
    if ctx.global.json {
        let failed: Vec<_> = outcome
            .failed
            .iter()
            .map(|(k, t, e)| json!({"object": k, "destination": t, "error": e}))
            .collect();
        println!(
            "{}",
            json!({"message_type": "summary", "dry_run": false, "copied": outcome.copied, "bytes": outcome.bytes, "failed": failed,
                   "unreachable": unreachable_json(plan)})
        );
        return;
    }
    for (key, target, error) in &outcome.failed {
        eprintln!("error: copying {key} to {target}: {error}");
    }
    ctx.say(format!(
        "copied {} objects, {}",
        outcome.copied,
        output::bytes(outcome.bytes)
    ));
}

fn unreachable_json(plan: &SyncPlan) -> Vec<serde_json::Value> {
    plan.unreachable
        .iter()
        .map(|(n, e)| json!({"name": n, "error": e}))
        .collect()
}

fn exit_code(incomplete: bool) -> i32 {
    if incomplete {
        crate::exit::INCOMPLETE
    } else {
        crate::exit::OK
    }
}

/// Records each reachable destination that no copy failed on as synced: a
/// damaged check before this is shown as possibly healed, not as current.
fn record_synced(
    ctx: &Context,
    repo: &lifeboat_engine::Repository,
    failed: &[(String, String, String)],
) -> Result<()> {
    let locations = ctx.locations()?;
    for b in repo.destinations().healthy() {
        let failed_here = failed.iter().any(|(_, target, _)| target == b.name());
        if let (false, Some(location)) = (failed_here, locations.get(b.name())) {
            crate::health::record_sync(repo.id(), location, b.name());
        }
    }
    Ok(())
}
