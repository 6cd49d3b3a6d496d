//! `lifeboat backup`: back up files and directories.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;
use lifeboat_backends::ErrorKind;
use lifeboat_engine::backup::{
    self, BackupOptions, BackupProgress, EntryEvent, EntryObserver, ParentChoice,
};
use lifeboat_engine::Repository;
use serde::Serialize;
use serde_json::json;

use crate::config::Profile;
use crate::context::Context;
use crate::output::{self, SummaryJson, Tick, Ticker};
use crate::selection::SelectionArgs;

/// Arguments of `backup`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Files and directories to back up, and accounts to pull: `davs://USER@HOST/` (CardDAV
    /// and CalDAV: address books, calendars, task lists); passwords come from the source's
    /// password_file, LIFEBOAT_SOURCE_PASSWORD or a prompt, never from the URL (default: the
    /// profile's paths and sources).
    #[arg(value_name = "PATH|SOURCE")]
    pub paths: Vec<PathBuf>,
    /// Tag the snapshot (repeat, or separate with commas).
    #[arg(long = "tag", value_name = "TAG", value_delimiter = ',')]
    pub tags: Vec<String>,
    /// What to read and leave out.
    #[command(flatten)]
    pub selection: SelectionArgs,
    /// Host name to record (default: this machine's).
    #[arg(long, value_name = "NAME")]
    pub host: Option<String>,
    /// Do everything except writing to the destinations; with -v, list every entry that would
    /// be stored and every one left out with the rule that left it out.
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// Compare with this snapshot to skip unchanged files (default: the latest of the same host and paths).
    #[arg(long, value_name = "SNAPSHOT", conflicts_with = "force")]
    pub parent: Option<String>,
    /// Read every file, even those unchanged since the parent snapshot.
    #[arg(long)]
    pub force: bool,
    /// zstd level for this run (0 = off, 1-22; default: the repository's).
    #[arg(long, value_name = "LEVEL", value_parser = clap::value_parser!(i32).range(0..=22))]
    pub compression: Option<i32>,
    /// Worker threads per CPU stage (default: number of cores).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Record this time for the snapshot instead of now: `2025-06-30 12:00:00` (UTC) or
    /// RFC 3339 (for importing old backups).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub time: Option<i64>,
    /// Fail (exit 1) unless at least N destinations hold the snapshot (it stays
    /// wherever it was committed either way).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub min_destinations: usize,
}

/// Opens the repository, creating the embedded default on first use.
async fn open_or_create(ctx: &Context) -> Result<Repository> {
    let selection = ctx.selection()?;
    if selection.embedded_default {
        let primary = selection.backends[0].clone();
        match primary.stat("config").await {
            Err(e) if e.kind == ErrorKind::NotFound => {
                super::init::make_default_parent()?;
                let dests = selection.into_set()?;
                let init_args = super::init::Args {
                    compression: None,
                    kdf_memory: None,
                    kdf_iterations: None,
                    insecure_kdf: false,
                };
                let repo = super::init::create(ctx, &init_args, dests).await?;
                ctx.say(format!(
                    "created a new lifeboat repository at {}\nKeep your password safe: without it nobody, including you, can restore this data.",
                    primary.location()
                ));
                return Ok(repo);
            }
            Err(e) => return Err(e.into()),
            Ok(_) => {}
        }
    }
    ctx.open().await
}

/// Runs `backup`: exit 0, or 3 when entries were unreadable or a
/// destination was missed.
pub async fn run(ctx: &Context, args: Args) -> Result<i32> {
    let profile = ctx.profile()?;
    let (paths, specs) = what_to_back_up(ctx, &args, profile)?;
    let sources = crate::sources::open(&specs)?;
    let repo = open_or_create(ctx).await?;
    let mut options = backup_options(ctx, &args, profile, &repo, paths).await?;
    options.sources = sources;
    let outcome = back_up_with_progress(ctx, &repo, options, args.dry_run).await?;
    if ctx.global.json {
        print_json(&outcome, args.dry_run)?;
    } else {
        print_human(ctx, &repo, &outcome);
    }
    require_min_destinations(&args, &outcome)?;
    Ok(if outcome.is_incomplete() {
        crate::exit::INCOMPLETE
    } else {
        crate::exit::OK
    })
}

/// The paths and sources named on the command line, in `--files-from`
/// lists, or in the profile; a usage error when there are none.
fn what_to_back_up(
    ctx: &Context,
    args: &Args,
    profile: Option<&Profile>,
) -> Result<(Vec<PathBuf>, Vec<crate::sources::SourceSpec>)> {
    let (operands, specs) = crate::sources::split(&args.paths, profile, &ctx.config.sources)?;
    // Operands (even sources alone) replace the profile's paths.
    let fallback = if args.paths.is_empty() { profile } else { None };
    let paths = args.selection.paths(&operands, fallback)?;
    if paths.is_empty() && specs.is_empty() {
        return Err(crate::exit::usage(
            "nothing to back up: name at least one path (lifeboat backup ~/Documents) or source \
             (davs://alice@dav.example.com/), list paths with --files-from, or set paths in a profile",
        ));
    }
    Ok((paths, specs))
}

/// `--tag` values (blank ones dropped) and the profile's tags, sorted once
/// each.
fn tags(args: &Args, profile: Option<&Profile>) -> Vec<String> {
    let mut tags: Vec<String> = args
        .tags
        .iter()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect();
    if let Some(p) = profile {
        tags.extend(p.tags.iter().cloned());
    }
    tags.sort();
    tags.dedup();
    tags
}

/// What the engine is asked to do; resolves `--parent` on the repository.
async fn backup_options(
    ctx: &Context,
    args: &Args,
    profile: Option<&Profile>,
    repo: &Repository,
    paths: Vec<PathBuf>,
) -> Result<BackupOptions> {
    let parent = match (&args.parent, args.force) {
        (_, true) => ParentChoice::None,
        (Some(spec), _) => ParentChoice::Id(repo.find_snapshot(spec).await?.0),
        (None, _) => ParentChoice::Latest,
    };
    // `--dry-run -v`: every decision, on stdout, as it is made.
    let observer = (args.dry_run && ctx.global.verbose > 0 && !ctx.global.json)
        .then(|| EntryObserver(Arc::new(print_entry)));
    Ok(BackupOptions {
        paths,
        sources: Vec::new(),
        tags: tags(args, profile),
        excludes: args.selection.exclude_options(profile)?,
        observer,
        lock: None,
        host: args.host.clone(),
        dry_run: args.dry_run,
        parent,
        compression: args.compression.or(profile.and_then(|p| p.compression)),
        threads: args.threads,
        time: args.time,
    })
}

/// Runs the backup with its progress shown. A dry run writes nothing, not
/// even a lock, so it works on a read-only destination.
async fn back_up_with_progress(
    ctx: &Context,
    repo: &Repository,
    options: BackupOptions,
    dry_run: bool,
) -> Result<backup::BackupOutcome> {
    let progress = Arc::new(BackupProgress::default());
    let ticker = start_ticker(ctx, progress.clone());
    let result = if dry_run {
        backup::backup(repo, &options, progress, ctx.cancel.clone())
            .await
            .map_err(anyhow::Error::from)
    } else {
        locked_backup(ctx, repo, options, progress).await
    };
    ticker.finish().await;
    result
}

/// Shows the backup's counters: bar, status lines or JSON status objects.
fn start_ticker(ctx: &Context, p: Arc<BackupProgress>) -> Ticker {
    Ticker::start(ctx, true, move || {
        use std::sync::atomic::Ordering::Relaxed;
        let (files, bytes, up, errors) = (
            p.files_done.load(Relaxed),
            p.bytes_done.load(Relaxed),
            p.bytes_uploaded.load(Relaxed),
            p.errors.load(Relaxed),
        );
        // The scan beside the backup gives the total; until it is done the
        // total grows, and the bar shows the share of what was found so far.
        let (total_files, total_bytes, scanned) = (
            p.scan_files.load(Relaxed),
            p.scan_bytes.load(Relaxed),
            p.scan_done.load(Relaxed),
        );
        let counting = if scanned { "" } else { "+" };
        let (items, items_done) = (p.items_listed.load(Relaxed), p.items_done.load(Relaxed));
        let items_text = match items {
            0 => String::new(),
            n => format!(", {items_done}/{n} items"),
        };
        let errs = match errors {
            0 => String::new(),
            n => format!(", {}", output::count(n, "error")),
        };
        Tick {
            pos: bytes,
            len: Some(total_bytes.max(bytes)),
            message: format!(
                "{files}/{total_files}{counting} files{items_text}, {} stored{errs}",
                output::bytes(up)
            ),
            json: json!({"message_type": "status", "files_done": files, "bytes_done": bytes,
                "total_files": total_files, "total_bytes": total_bytes, "scan_finished": scanned,
                "percent_done": if total_bytes > 0 { bytes as f64 / total_bytes as f64 } else { 0.0 },
                "bytes_uploaded": up, "errors": errors, "items_listed": items, "items_done": items_done}),
        }
    })
}

/// The `--json` summary line: the snapshot's figures under the same keys
/// as `snapshots --json` has them, and where it went.
#[derive(Serialize)]
struct JsonSummary<'a> {
    message_type: &'static str,
    snapshot_id: Option<String>,
    dry_run: bool,
    #[serde(flatten)]
    figures: SummaryJson,
    destinations_reached: &'a [String],
    destinations_missed: Vec<serde_json::Value>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    sources: Vec<serde_json::Value>,
}

/// One error line per unreadable entry, then the summary line.
fn print_json(outcome: &backup::BackupOutcome, dry_run: bool) -> Result<()> {
    for skipped in &outcome.skipped {
        println!(
            "{}",
            json!({"message_type": "error", "item": skipped.path.to_string_lossy(), "error": skipped.reason})
        );
    }
    let summary = JsonSummary {
        message_type: "summary",
        snapshot_id: outcome.snapshot_id.map(|id| id.to_hex()),
        dry_run,
        figures: SummaryJson::from(&outcome.snapshot.summary),
        destinations_reached: &outcome.reached,
        destinations_missed: outcome
            .missed
            .iter()
            .map(|(name, error)| json!({"name": name, "error": error}))
            .collect(),
        sources: outcome.sources.iter().map(source_json).collect(),
    };
    println!("{}", serde_json::to_string(&summary)?);
    Ok(())
}

/// One source's figures for `--json`.
fn source_json(r: &backup::SourceReport) -> serde_json::Value {
    json!({
        "source": r.name, "collections": r.collections, "items": r.items,
        "items_fetched": r.fetched, "items_unchanged": r.unchanged, "items_malformed": r.malformed,
        "bytes": r.bytes, "bytes_fetched": r.bytes_fetched, "requests": r.requests,
        "bytes_received": r.bytes_in, "fetch_ms": r.fetch_ms, "error": r.error,
    })
}

/// One source's line of the human summary.
fn source_line(r: &backup::SourceReport) -> String {
    match &r.error {
        Some(e) => format!("Source {}: left out: {e}", r.name),
        None => {
            let malformed = match r.malformed {
                0 => String::new(),
                n => format!(", {n} malformed (kept as served)"),
            };
            format!(
                "Source {}: {} in {}, {} downloaded, {} unchanged{malformed}; {} requests, {} received in {:.1}s",
                r.name,
                output::count(r.items, "item"),
                output::count(r.collections, "collection"),
                r.fetched,
                r.unchanged,
                r.requests,
                output::bytes(r.bytes_in),
                r.fetch_ms as f64 / 1000.0
            )
        }
    }
}

/// The unreadable entries on stderr; the figures, the snapshot and where it
/// went on stdout.
fn print_human(ctx: &Context, repo: &Repository, outcome: &backup::BackupOutcome) {
    let s = &outcome.snapshot.summary;
    for skipped in &outcome.skipped {
        eprintln!(
            "error: cannot read {}: {}",
            skipped.path.display(),
            skipped.reason
        );
    }
    ctx.say(format!(
        "Files: {:>8} new, {:>8} changed, {:>8} unmodified\nDirs:  {:>8} new, {:>8} changed, {:>8} unmodified\nAdded: {} ({} stored)",
        s.files_new,
        s.files_changed,
        s.files_unmodified,
        s.dirs_new,
        s.dirs_changed,
        s.dirs_unmodified,
        output::bytes(s.data_added),
        output::bytes(s.data_added_packed)
    ));
    for report in &outcome.sources {
        ctx.say(source_line(report));
    }
    let saved = match &outcome.snapshot_id {
        Some(id) => format!("snapshot {} saved", id.short()),
        None => "dry run: nothing was written".to_string(),
    };
    ctx.say(format!(
        "processed {} files, {} in {:.1}s; {saved}",
        s.total_files,
        output::bytes(s.total_bytes),
        s.duration_ms as f64 / 1000.0
    ));
    if !outcome.skipped.is_empty() {
        ctx.note(format!(
            "warning: {} entries could not be read and are not in the snapshot",
            outcome.skipped.len()
        ));
    }
    if outcome.snapshot_id.is_some() {
        ctx.say(format!("stored on: {}", outcome.reached.join(", ")));
    }
    output::report_missed(
        ctx,
        repo.destinations(),
        &outcome.missed,
        "it lags behind the others until `lifeboat sync`",
    );
}

/// Fails the run (exit 1) when fewer than `--min-destinations` hold the
/// snapshot; it stays where it was stored.
fn require_min_destinations(args: &Args, outcome: &backup::BackupOutcome) -> Result<()> {
    if !args.dry_run && outcome.reached.len() < args.min_destinations {
        anyhow::bail!(
            "the snapshot reached {} destination(s), fewer than --min-destinations {}; it stays where it was stored",
            outcome.reached.len(),
            args.min_destinations
        );
    }
    Ok(())
}

/// Runs the backup under a shared lock that it checks before committing the
/// snapshot: a lock removed meanwhile (`unlock --force`) or not refreshed in
/// time ends the run with "lock lost" and no snapshot.
async fn locked_backup(
    ctx: &Context,
    repo: &Repository,
    mut options: BackupOptions,
    progress: Arc<BackupProgress>,
) -> Result<backup::BackupOutcome> {
    ctx.lock_wait
        .watched(repo, false, |watch| async move {
            options.lock = Some(watch);
            Ok(backup::backup(repo, &options, progress, ctx.cancel.clone()).await?)
        })
        .await
}

/// Prints one `--dry-run -v` line: `would store PATH` or
/// `excluded PATH (RULE)`.
fn print_entry(path: &std::path::Path, event: EntryEvent<'_>) {
    match event {
        EntryEvent::Included => println!("would store {}", path.display()),
        EntryEvent::Excluded(rule) => println!("excluded    {} ({rule})", path.display()),
    }
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) or RFC 3339, as seconds since the epoch.
fn parse_time(text: &str) -> std::result::Result<i64, String> {
    let plain = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    if let Ok(t) = time::PrimitiveDateTime::parse(text, &plain) {
        return Ok(t.assume_utc().unix_timestamp());
    }
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map(|t| t.unix_timestamp())
        .map_err(|_| format!("{text:?}: use 2025-06-30 12:00:00 (UTC) or RFC 3339"))
}
