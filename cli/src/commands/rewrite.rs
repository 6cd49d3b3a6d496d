//! `lifeboat rewrite`: copies of snapshots without files that should never
//! have been backed up.

use anyhow::{Context as _, Result};
use lifeboat_engine::backup::Excludes;
use lifeboat_engine::patterns::{PathPatterns, Reach};
use serde_json::json;

use crate::context::Context;
use crate::filter::SnapshotFilter;
use crate::output;

/// Arguments of `rewrite`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Example: lifeboat rewrite --exclude .env --forget\n\n\
    Patterns follow the backup's exclude rules (README, Patterns). Each snapshot holding a match \
    is stored again without it (unchanged directories are reused, not copied); the old snapshot \
    stays unless --forget retires it, and `lifeboat prune` then frees the space.")]
pub struct Args {
    /// Snapshots to rewrite (`latest`, ids or prefixes); default: every snapshot the filters pass.
    #[arg(value_name = "SNAPSHOT")]
    pub snapshots: Vec<String>,
    /// Leave out what matches GLOB (and everything below it); repeatable.
    #[arg(short = 'e', long = "exclude", value_name = "GLOB")]
    pub excludes: Vec<String>,
    /// Like --exclude, ignoring case.
    #[arg(long = "iexclude", value_name = "GLOB")]
    pub iexcludes: Vec<String>,
    /// Read --exclude patterns from FILE (one per line, # comments).
    #[arg(long = "exclude-file", value_name = "FILE")]
    pub exclude_files: Vec<std::path::PathBuf>,
    /// Retire each rewritten snapshot once its copy is stored (as forget does).
    #[arg(long)]
    pub forget: bool,
    /// List what would be left out; write nothing.
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// Which snapshots to rewrite when none is named.
    #[command(flatten)]
    pub filter: SnapshotFilter,
}

/// Runs `rewrite`: exit 0; 3 when a destination was missed.
pub async fn run(ctx: &Context, args: Args) -> Result<i32> {
    let mut patterns = args.excludes.clone();
    for file in &args.exclude_files {
        patterns.extend(
            Excludes::read_file(file)
                .with_context(|| format!("--exclude-file {}", file.display()))?,
        );
    }
    let expand = |v: &[String]| -> Vec<String> {
        v.iter().map(|p| crate::selection::expand_user(p)).collect()
    };
    let excludes = PathPatterns::new(
        &expand(&patterns),
        &expand(&args.iexcludes),
        Reach::Subtree,
        "exclude",
    )?;
    if excludes.is_empty() {
        return Err(crate::exit::usage(
            "rewrite needs something to leave out: --exclude, --iexclude or --exclude-file",
        ));
    }
    let repo = ctx.open().await?;
    let work = async {
        let snapshots = args.filter.select(&repo, &args.snapshots).await?;
        let index = repo.load_index().await?;
        let outcome = lifeboat_engine::rewrite::rewrite(
            &repo,
            &index,
            snapshots,
            &excludes,
            args.dry_run,
            args.forget,
        )
        .await?;
        let missed = repo.destinations().missed();
        if ctx.global.json {
            println!(
                "{}",
                json!({"message_type": "summary", "dry_run": args.dry_run,
                       "rewritten": outcome.rewritten.iter().map(|r| json!({
                           "old": r.old.to_hex(),
                           "new": r.new.map(|n| n.to_hex()),
                           "removed": r.removed.iter().map(|x| json!({"path": x.path.to_string_lossy(), "dir": x.is_dir, "files": x.files, "bytes": x.bytes})).collect::<Vec<_>>(),
                       })).collect::<Vec<_>>(),
                       "unchanged": outcome.unchanged.iter().map(|id| id.to_hex()).collect::<Vec<_>>(),
                       "forgotten": outcome.retired.as_ref().map_or(0, |r| r.removed),
                       "trees_written": outcome.trees_written, "packs_written": outcome.packs_written,
                       "destinations_missed": missed.iter().map(|(n, e)| json!({"name": n, "error": e})).collect::<Vec<_>>()})
            );
        } else {
            for r in &outcome.rewritten {
                let (files, bytes) = r
                    .removed
                    .iter()
                    .fold((0, 0), |(f, b), x| (f + x.files, b + x.bytes));
                let into = match r.new {
                    Some(new) => format!("now {}", new.short()),
                    None => "would be rewritten".to_string(),
                };
                ctx.say(format!(
                    "snapshot {} {into}: {} left out ({})",
                    r.old.short(),
                    output::count(files, "file"),
                    output::bytes(bytes)
                ));
                for x in &r.removed {
                    let slash = if x.is_dir { "/" } else { "" };
                    ctx.say(format!("  - {}{slash}", x.path.display()));
                }
            }
            let verb = if args.dry_run {
                "would rewrite"
            } else {
                "rewrote"
            };
            ctx.say(format!(
                "{verb} {}, {} had no match{}",
                output::count(outcome.rewritten.len() as u64, "snapshot"),
                outcome.unchanged.len(),
                match &outcome.retired {
                    Some(r) => format!(
                        "; {} forgotten (run `lifeboat prune` to free the space)",
                        r.removed
                    ),
                    None if args.dry_run || outcome.rewritten.is_empty() => String::new(),
                    None => "; the old snapshots stay until forgotten (--forget)".to_string(),
                }
            ));
            output::report_missed(
                ctx,
                repo.destinations(),
                &missed,
                "`lifeboat sync` brings it the new snapshots",
            );
        }
        Ok(if missed.is_empty() || args.dry_run {
            crate::exit::OK
        } else {
            crate::exit::INCOMPLETE
        })
    };
    ctx.lock_wait.locked(&repo, args.forget, work).await
}
