//! `lifeboat restore --to URL`: a snapshot's contacts, calendars or mail
//! uploaded back to a server (the same account after a provider lost them,
//! or a new one).

use anyhow::Result;
use lifeboat_engine::push::{self, PushOptions, PushProgress};
use lifeboat_engine::restore::Overwrite;
use lifeboat_engine::{Repository, Snapshot};
use serde_json::json;
use std::sync::Arc;

use crate::context::Context;
use crate::output::{self, Tick, Ticker};

/// Uploads the selection; exit 0, or 3 when some items were not uploaded.
pub async fn run(
    ctx: &Context,
    repo: &Repository,
    snapshot: &Snapshot,
    url: &str,
    include: Vec<String>,
    overwrite: Overwrite,
) -> Result<i32> {
    let sink = crate::sources::open_sink(url, &ctx.config.sources)?;
    let options = PushOptions {
        include,
        overwrite,
        concurrency: None,
    };
    let progress = Arc::new(PushProgress::default());
    let p = progress.clone();
    let ticker = Ticker::start(ctx, true, move || {
        use std::sync::atomic::Ordering::Relaxed;
        let (done, total) = (p.items_done.load(Relaxed), p.items_total.load(Relaxed));
        Tick {
            pos: done,
            len: Some(total),
            message: format!("{done}/{total} items"),
            json: json!({"message_type": "status", "items_done": done, "items_total": total}),
        }
    });
    let started = std::time::Instant::now();
    let result = ctx
        .lock_wait
        .locked(repo, false, async {
            Ok(push::push(
                repo,
                snapshot,
                sink.as_ref(),
                &options,
                &progress,
                &ctx.cancel,
            )
            .await?)
        })
        .await;
    ticker.finish().await;
    let report = result?;
    let seconds = started.elapsed().as_secs_f64();
    if ctx.global.json {
        let errors: Vec<_> = report
            .errors
            .iter()
            .map(|(p, e)| json!({"item": p, "error": e}))
            .collect();
        println!(
            "{}",
            json!({
                "message_type": "summary", "to": sink.display(), "collections": report.collections,
                "items_created": report.created, "items_replaced": report.replaced,
                "items_kept": report.kept, "bytes_uploaded": report.bytes, "errors": errors,
                "total_duration": seconds,
            })
        );
    } else {
        for (path, error) in &report.errors {
            eprintln!("error: {path}: {error}");
        }
        ctx.say(format!(
            "uploaded to {}: {} created, {} replaced, {} already there, in {}; {} in {seconds:.1}s",
            sink.display(),
            report.created,
            report.replaced,
            report.kept,
            output::count(report.collections, "collection"),
            output::bytes(report.bytes)
        ));
    }
    Ok(if report.errors.is_empty() {
        crate::exit::OK
    } else {
        crate::exit::INCOMPLETE
    })
}
