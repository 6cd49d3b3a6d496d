//! `lifeboat check`: verify the repository.

use std::sync::Arc;

use anyhow::Result;
use lifeboat_engine::check::{self, CheckOptions, CheckProgress};
use serde_json::json;

use crate::context::Context;
use crate::output::{self, Tick, Ticker};

/// Arguments of `check`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Also read every pack and verify every byte (slow: reads the whole repository).
    #[arg(long)]
    pub read_data: bool,
    /// Check only this destination (by name, as `status` shows it).
    #[arg(long, value_name = "NAME")]
    pub from: Option<String>,
}

/// Runs `check`: exit 1 when anything is wrong.
pub async fn run(ctx: &Context, args: Args) -> Result<i32> {
    let repo = ctx.open_from(args.from.as_deref()).await?;
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
    };
    let result = super::with_lock(&repo, async {
        Ok(check::check(&repo, &options, progress.clone()).await?)
    })
    .await;
    ticker.finish().await;
    let report = result?;
    if ctx.global.json {
        let problems: Vec<_> = report
            .problems
            .iter()
            .map(|p| json!({"object": p.object, "message": p.message}))
            .collect();
        println!(
            "{}",
            json!({
                "message_type": "summary",
                "ok": report.is_ok(),
                "problems": problems,
                "notes": report.notes,
                "snapshots": report.snapshots,
                "trees": report.trees,
                "index_files": report.index_files,
                "packs": report.packs,
                "blobs": report.blobs,
                "bytes_read": report.bytes_read,
                "read_data": args.read_data,
            })
        );
    } else {
        for problem in &report.problems {
            eprintln!("error: {problem}");
        }
        for note in &report.notes {
            ctx.note(format!("note: {note}"));
        }
        let scope = if args.read_data {
            format!(", read {} of data", output::bytes(report.bytes_read))
        } else {
            String::new()
        };
        ctx.note(format!(
            "checked {} snapshots, {} trees, {} packs, {} blobs{scope}",
            report.snapshots, report.trees, report.packs, report.blobs
        ));
        if report.is_ok() {
            ctx.note("no errors were found");
        } else {
            eprintln!(
                "{} problems found: the repository is damaged",
                report.problems.len()
            );
        }
    }
    Ok(if report.is_ok() {
        crate::exit::OK
    } else {
        crate::exit::ERROR
    })
}
