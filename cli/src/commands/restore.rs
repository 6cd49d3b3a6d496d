//! `lifeboat restore`: restore a snapshot under a target directory.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;
use lifeboat_engine::restore::{self, RestoreOptions, RestoreProgress};
use serde_json::json;

use crate::context::Context;
use crate::output::{self, Tick, Ticker};

/// Arguments of `restore`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Snapshot: `latest`, an id, or a unique prefix of one (4+ hex digits).
    #[arg(value_name = "SNAPSHOT")]
    pub snapshot: String,
    /// Directory to restore into; each backed-up path is recreated at its absolute
    /// location below it.
    #[arg(long, short = 't', value_name = "DIR")]
    pub target: PathBuf,
    /// Restore only this path of the snapshot (repeat for several).
    #[arg(long = "include", short = 'i', value_name = "PATH")]
    pub includes: Vec<PathBuf>,
    /// Re-read every restored file and compare it with the snapshot.
    #[arg(long)]
    pub verify: bool,
    /// Read only from this destination (by name, as `status` shows it) instead
    /// of the first healthy one with failover.
    #[arg(long, value_name = "NAME")]
    pub from: Option<String>,
}

/// Runs `restore`.
pub async fn run(ctx: &Context, args: Args) -> Result<i32> {
    // The snapshot is resolved on every destination together, so `latest`
    // means the newest anywhere; `--from` then reads it from one alone.
    let repo = ctx.open().await?;
    let (id, snapshot) = repo.find_snapshot(&args.snapshot).await?;
    let repo = match &args.from {
        Some(name) => from_one(&repo, name, &id, snapshot.time).await?,
        None => repo,
    };
    let options = RestoreOptions {
        target: args.target.clone(),
        includes: args.includes.clone(),
        verify: args.verify,
        concurrency: None,
    };
    let progress = Arc::new(RestoreProgress::default());
    let p = progress.clone();
    let ticker = Ticker::start(ctx, true, move || {
        use std::sync::atomic::Ordering::Relaxed;
        let (done, total) = (p.bytes_done.load(Relaxed), p.bytes_total.load(Relaxed));
        Tick {
            pos: done,
            len: Some(total),
            message: String::new(),
            json: json!({"message_type": "status", "bytes_done": done, "bytes_total": total}),
        }
    });
    let started = std::time::Instant::now();
    let result = super::with_lock(&repo, async {
        Ok(restore::restore(
            &repo,
            &snapshot,
            &options,
            progress.clone(),
            ctx.cancel.clone(),
        )
        .await?)
    })
    .await;
    ticker.finish().await;
    let outcome = result?;
    let seconds = started.elapsed().as_secs_f64();
    if ctx.global.json {
        let errors: Vec<_> = outcome
            .errors
            .iter()
            .map(|(p, e)| json!({"item": p.to_string_lossy(), "error": e}))
            .collect();
        println!(
            "{}",
            json!({
                "message_type": "summary",
                "snapshot_id": id.to_hex(),
                "target": args.target.to_string_lossy(),
                "files_restored": outcome.files,
                "dirs_restored": outcome.dirs,
                "specials_restored": outcome.specials,
                "hardlinks_restored": outcome.hardlinks,
                "bytes_restored": outcome.bytes,
                "files_verified": outcome.verified,
                "errors": errors,
                "total_duration": seconds,
            })
        );
    } else {
        for (path, error) in &outcome.errors {
            eprintln!("error: {}: {error}", path.display());
        }
        let verified = if args.verify {
            format!(", {} verified", outcome.verified)
        } else {
            String::new()
        };
        ctx.note(format!(
            "restored snapshot {} to {}: {} files, {} dirs, {} links{verified}, {} in {seconds:.1}s",
            id.short(),
            args.target.display(),
            outcome.files,
            outcome.dirs,
            outcome.specials + outcome.hardlinks,
            output::bytes(outcome.bytes)
        ));
        if !outcome.errors.is_empty() {
            eprintln!("{} entries could not be restored", outcome.errors.len());
        }
    }
    Ok(if outcome.errors.is_empty() {
        crate::exit::OK
    } else {
        crate::exit::ERROR
    })
}

/// The repository on destination `name` alone, which must hold snapshot `id`:
/// a destination that lags fails with the newest snapshot it does hold,
/// rather than restoring something older than asked for.
async fn from_one(
    repo: &lifeboat_engine::Repository,
    name: &str,
    id: &lifeboat_engine::SnapshotId,
    time: i64,
) -> Result<lifeboat_engine::Repository> {
    if !repo
        .destinations()
        .backends()
        .iter()
        .any(|b| b.name() == name)
        && !repo
            .destinations()
            .left_out()
            .iter()
            .any(|l| l.backend.name() == name)
    {
        let names: Vec<&str> = repo
            .destinations()
            .backends()
            .iter()
            .map(|b| b.name())
            .collect();
        return Err(crate::exit::usage(format!(
            "--from {name}: no such destination; the destinations are: {}",
            names.join(", ")
        )));
    }
    let alone = repo.only(name)?;
    let held = alone
        .list_names(lifeboat_engine::ObjectKind::Snapshot)
        .await?;
    if held.iter().any(|n| *n == id.to_hex()) {
        return Ok(alone);
    }
    let newest_there = match alone.list_snapshots().await {
        Ok(list) => match list.last() {
            Some((other, s)) => format!(
                "the newest it holds is {} from {}: restore that by id, or",
                other.short(),
                output::utc_time(s.time)
            ),
            None => "it holds no snapshot;".to_string(),
        },
        Err(e) => format!("its snapshots cannot be listed ({e});"),
    };
    anyhow::bail!(
        "--from {name}: this destination does not hold snapshot {} from {}; {newest_there} run `lifeboat sync` to copy it there",
        id.short(),
        output::utc_time(time)
    )
}
