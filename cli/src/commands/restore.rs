//! `lifeboat restore`: restore a snapshot under a target directory.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;
use lifeboat_engine::restore::{self, Overwrite, PreviewAction, RestoreOptions, RestoreProgress};
use serde_json::json;

use crate::context::Context;
use crate::output::{self, Tick, Ticker};

/// Arguments of `restore`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Snapshot: `latest`, an id, or a unique prefix of one (4+ hex digits); `SNAPSHOT:/dir`
    /// restores that directory of it at the target's root.
    #[arg(value_name = "SNAPSHOT[:PATH]")]
    pub snapshot: String,
    /// Directory to restore into; each backed-up path is recreated at its absolute
    /// location below it (with `SNAPSHOT:/dir`, that directory's contents at its root).
    #[arg(
        long,
        short = 't',
        value_name = "DIR",
        required_unless_present = "to",
        conflicts_with = "to"
    )]
    pub target: Option<PathBuf>,
    /// Upload a source's items back to a server instead: `davs://USER@HOST/` (collections
    /// recreated with their properties below the account's home, or into the collection the
    /// URL names) or `imaps://USER@HOST/` (mailboxes created, messages appended with their flags
    /// and dates). Choose what with --include /dav/HOST/… or /imap/USER@HOST/…; items the server
    /// already holds are kept (--overwrite never, the default here); nothing is ever deleted.
    #[arg(long, value_name = "URL", conflicts_with_all = ["delete", "verify", "dry_run"])]
    pub to: Option<String>,
    /// Restore only what matches PATTERN and everything below it (repeat for several; the
    /// backup's pattern rules: `/home/*/docs`, `*.txt`, `Documents/taxes`; a source's items as
    /// `dav://HOST/collection` or `/dav/HOST/collection`).
    #[arg(long = "include", short = 'i', value_name = "PATTERN")]
    pub includes: Vec<String>,
    /// Leave out what matches PATTERN and everything below it.
    #[arg(long = "exclude", short = 'e', value_name = "PATTERN")]
    pub excludes: Vec<String>,
    /// What to do with files already in the target: always (replace), if-changed (unless
    /// size and modification time match), if-newer (only when the snapshot's is newer), never.
    /// Default: always for --target, never for --to.
    #[arg(long, value_name = "WHEN")]
    pub overwrite: Option<Overwrite>,
    /// Delete what the restored directories hold that the snapshot does not.
    #[arg(long)]
    pub delete: bool,
    /// List what would be restored, replaced, kept and deleted; change nothing.
    #[arg(short = 'n', long)]
    pub dry_run: bool,
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
    let (spec, subtree) = match args.snapshot.split_once(':') {
        Some((spec, path)) => (spec, Some(PathBuf::from(path))),
        None => (args.snapshot.as_str(), None),
    };
    let repo = ctx.open().await?;
    let (id, snapshot) = repo.find_snapshot(spec).await?;
    let repo = match &args.from {
        Some(name) => from_one(&repo, name, &id, snapshot.time).await?,
        None => repo,
    };
    let expand = |list: &[String]| -> Vec<String> {
        list.iter()
            .map(|p| crate::sources::snapshot_pattern(&crate::selection::expand_user(p)))
            .collect()
    };
    if let Some(url) = &args.to {
        let overwrite = args.overwrite.unwrap_or(Overwrite::Never);
        let include = expand(&args.includes);
        return super::restore_to::run(ctx, &repo, &snapshot, url, include, overwrite).await;
    }
    let Some(target) = args.target.clone() else {
        return Err(crate::exit::usage("restore needs --target DIR or --to URL"));
    };
    let overwrite = args.overwrite.unwrap_or(Overwrite::Always);
    let options = RestoreOptions {
        target: target.clone(),
        include: expand(&args.includes),
        exclude: expand(&args.excludes),
        subtree,
        overwrite,
        delete: args.delete,
        verify: args.verify,
        concurrency: None,
    };
    if args.dry_run {
        return dry_run(ctx, &repo, &snapshot, &options).await;
    }
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
    let result = ctx
        .lock_wait
        .locked(&repo, false, async {
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
                "target": target.to_string_lossy(),
                "files_restored": outcome.files,
                "dirs_restored": outcome.dirs,
                "specials_restored": outcome.specials,
                "hardlinks_restored": outcome.hardlinks,
                "bytes_restored": outcome.bytes,
                "files_verified": outcome.verified,
                "files_kept": outcome.kept,
                "bytes_in_place": outcome.bytes_in_place,
                "deleted": outcome.deleted,
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
        ctx.say(format!(
            "restored snapshot {} to {}: {} files, {} dirs, {} links{verified}, {} in {seconds:.1}s",
            id.short(),
            target.display(),
            outcome.files,
            outcome.dirs,
            outcome.specials + outcome.hardlinks,
            output::bytes(outcome.bytes)
        ));
        if outcome.bytes_in_place > 0 {
            ctx.say(format!(
                "{} of existing files were already right and left in place",
                output::bytes(outcome.bytes_in_place)
            ));
        }
        if outcome.kept > 0 {
            ctx.say(format!(
                "kept {} existing (--overwrite {})",
                output::count(outcome.kept, "entry"),
                args_overwrite_word(overwrite)
            ));
        }
        if outcome.deleted > 0 {
            ctx.say(format!(
                "deleted {} not in the snapshot (--delete)",
                output::count(outcome.deleted, "entry")
            ));
        }
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

/// `restore --dry-run`: one line per action on stdout (a JSON object each
/// with `--json`), then a summary.
async fn dry_run(
    ctx: &Context,
    repo: &lifeboat_engine::Repository,
    snapshot: &lifeboat_engine::Snapshot,
    options: &RestoreOptions,
) -> Result<i32> {
    let json = ctx.global.json;
    let quiet = ctx.global.quiet;
    let mut report = |path: &std::path::Path, action: PreviewAction| {
        if json {
            println!(
                "{}",
                json!({"message_type": "verbose_status", "action": action.as_str(), "item": path.to_string_lossy()})
            );
        } else if !quiet {
            println!("would {:<7} {}", action.as_str(), path.display());
        }
    };
    let summary = restore::preview(repo, snapshot, options, &mut report).await?;
    if json {
        println!(
            "{}",
            json!({"message_type": "summary", "dry_run": true, "restore": summary.create,
                   "replace": summary.replace, "keep": summary.keep, "delete": summary.delete})
        );
    } else {
        ctx.say(format!(
            "dry run: would restore {}, replace {}, keep {}, delete {}; nothing was changed",
            summary.create, summary.replace, summary.keep, summary.delete
        ));
    }
    Ok(crate::exit::OK)
}

/// The `--overwrite` word for messages.
fn args_overwrite_word(policy: Overwrite) -> &'static str {
    match policy {
        Overwrite::Always => "always",
        Overwrite::IfChanged => "if-changed",
        Overwrite::IfNewer => "if-newer",
        Overwrite::Never => "never",
    }
}
