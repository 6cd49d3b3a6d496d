//! `lifeboat prune`: remove data no snapshot uses, on every destination.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use lifeboat_engine::percent::Percent;
use lifeboat_engine::prune::{self, PruneOptions, PruneProgress, PruneReport};
use lifeboat_engine::Repository;
use serde_json::json;

use crate::context::Context;
use crate::output::{self, Tick, Ticker};

/// Arguments of `prune` (also taken by `forget --prune`).
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Unused share of the repository tolerated before packs are repacked
    /// (`5%`; `0%` repacks every pack with unused data).
    #[arg(long, value_name = "P%", default_value = "5%")]
    pub max_unused: Percent,
    /// How long marked data waits before it is deleted, so a backup that
    /// started before the mark cannot lose blobs it reused (`1h`, `30m`, `0s`).
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = crate::duration::parse)]
    pub grace: Duration,
    /// Show what would be removed and repacked; change nothing.
    #[arg(short = 'n', long)]
    pub dry_run: bool,
}

/// Runs `prune`: exit 0, or 3 when a destination was missed.
pub async fn run(ctx: &Context, args: Args) -> Result<i32> {
    let repo = ctx.open().await?;
    ctx.lock_wait
        .locked(&repo, true, run_locked(ctx, &repo, &args))
        .await
}

/// Prunes under a lock the caller holds (`forget --prune` holds one already).
pub async fn run_locked(ctx: &Context, repo: &Repository, args: &Args) -> Result<i32> {
    let options = PruneOptions {
        max_unused: args.max_unused.fraction(),
        // Longer than i64 seconds is forever either way.
        grace_secs: i64::try_from(args.grace.as_secs()).unwrap_or(i64::MAX),
        dry_run: args.dry_run,
    };
    let progress = Arc::new(PruneProgress::default());
    let p = progress.clone();
    let ticker = Ticker::start(ctx, false, move || {
        use std::sync::atomic::Ordering::Relaxed;
        let (done, total) = (p.repack_done.load(Relaxed), p.repack_total.load(Relaxed));
        Tick {
            pos: done,
            len: Some(total),
            message: "packs repacked".into(),
            json: json!({"message_type": "status", "repack_done": done, "repack_total": total}),
        }
    });
    let result = prune::prune(repo, &options, progress).await;
    ticker.finish().await;
    let report = result?;
    print(ctx, &report, args, repo.destinations());
    Ok(if report.missed.is_empty() {
        crate::exit::OK
    } else {
        crate::exit::INCOMPLETE
    })
}

fn print(ctx: &Context, r: &PruneReport, args: &Args, dests: &lifeboat_engine::DestinationSet) {
    if ctx.global.json {
        let per: Vec<_> = r
            .sweep
            .per_destination
            .iter()
            .map(|(name, objects, bytes)| json!({"name": name, "objects_deleted": objects, "bytes_deleted": bytes}))
            .collect();
        println!(
            "{}",
            json!({
                "message_type": "summary", "dry_run": args.dry_run,
                "snapshots": r.snapshots, "blobs": r.blobs, "used_blobs": r.used_blobs,
                "packs": r.packs, "bytes": r.bytes, "unused_bytes": r.unused_bytes,
                "packs_dropped": r.packs_dropped, "packs_repacked": r.packs_repacked,
                "bytes_repacked": r.bytes_repacked, "packs_written": r.packs_written,
                "packs_unindexed": r.packs_unindexed, "blobs_rescued": r.blobs_rescued,
                "unused_bytes_after": r.unused_bytes_after,
                "objects_deleted": r.sweep.deleted, "bytes_deleted": r.sweep.bytes,
                "packs_waiting": r.sweep.waiting, "destinations": per,
                "destinations_missed": r.missed.iter().map(|(n, e)| json!({"name": n, "error": e})).collect::<Vec<_>>(),
            })
        );
        return;
    }
    let share = |part: u64| {
        if r.bytes == 0 {
            0.0
        } else {
            part as f64 * 100.0 / r.bytes as f64
        }
    };
    ctx.say(format!(
        "{} {} {} of {}; {} of {} unused ({:.1}%)",
        output::count(r.snapshots, "snapshot"),
        if r.snapshots == 1 { "uses" } else { "use" },
        r.used_blobs,
        output::count(r.blobs, "blob"),
        output::bytes(r.unused_bytes),
        output::bytes(r.bytes),
        share(r.unused_bytes)
    ));
    let verb = if args.dry_run { "would " } else { "" };
    ctx.say(format!(
        "{verb}mark {} for deletion, repack {} ({} copied){}, leaving {} unused",
        output::count(r.packs_dropped, "unused pack"),
        output::count(r.packs_repacked, "pack"),
        output::bytes(r.bytes_repacked),
        if r.packs_unindexed > 0 {
            format!(
                ", mark {} no index lists",
                output::count(r.packs_unindexed, "pack")
            )
        } else {
            String::new()
        },
        output::bytes(r.unused_bytes_after)
    ));
    if r.blobs_rescued > 0 {
        ctx.say(format!(
            "indexed {} blobs again that a snapshot written after an earlier prune uses",
            r.blobs_rescued
        ));
    }
    if args.dry_run {
        return;
    }
    for (name, objects, bytes) in &r.sweep.per_destination {
        ctx.say(format!(
            "{name}: deleted {} past their grace period (packs, index files, snapshots), {}",
            output::count(*objects, "marked object"),
            output::bytes(*bytes)
        ));
    }
    if r.sweep.waiting > 0 {
        ctx.say(format!(
            "{} wait out the grace period ({}); a prune after it deletes them",
            output::count(r.sweep.waiting, "marked object"),
            crate::duration::show(args.grace)
        ));
    }
    crate::output::report_missed(
        ctx,
        dests,
        &r.missed,
        "the next prune or sync catches it up",
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Prune {
        #[command(flatten)]
        args: Args,
    }

    fn parse(args: &[&str]) -> Result<Args, clap::Error> {
        Prune::try_parse_from(std::iter::once("prune").chain(args.iter().copied())).map(|p| p.args)
    }

    #[test]
    fn grace_takes_every_duration_form() {
        let grace = |text: &str| parse(&[&format!("--grace={text}")]).map(|a| a.grace.as_secs());
        assert_eq!(grace("1h30m").ok(), Some(5400));
        assert_eq!(grace("90s").ok(), Some(90));
        assert_eq!(grace("7d").ok(), Some(604_800));
        assert_eq!(grace("0").ok(), Some(0));
        assert_eq!(parse(&[]).map(|a| a.grace.as_secs()).ok(), Some(3600));
        let error = grace("-1h").expect_err("negative").to_string();
        assert!(
            error.contains("--grace") && error.contains("1h30m"),
            "{error}"
        );
    }

    #[test]
    fn max_unused_takes_every_percent_form() {
        let share =
            |text: &str| parse(&[&format!("--max-unused={text}")]).map(|a| a.max_unused.fraction());
        assert_eq!(share("5%").ok(), Some(0.05));
        assert_eq!(share("10").ok(), Some(0.1));
        assert_eq!(share("2.5%").ok(), Some(0.025));
        assert_eq!(share("0%").ok(), Some(0.0));
        assert_eq!(parse(&[]).map(|a| a.max_unused.fraction()).ok(), Some(0.05));
        let error = share("150%").expect_err("too high").to_string();
        assert!(
            error.contains("--max-unused") && error.contains("0% to 100%"),
            "{error}"
        );
    }
}
