//! `lifeboat find`: which snapshots hold paths matching patterns.

use std::io::Write;

use anyhow::Result;
use lifeboat_engine::patterns::{PathPatterns, Reach};
use serde_json::json;

use crate::context::Context;
use crate::filter::SnapshotFilter;
use crate::output;

/// Arguments of `find`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Patterns follow the exclude rules (README, Patterns): `taxes-2024.pdf` and \
    `*.pdf` match a name at any depth, `/home/*/Documents` matches from the root, `**` crosses \
    directories. Each matching path is listed once, with every snapshot holding it, newest first."
)]
pub struct Args {
    /// What to look for (repeat for any of several).
    #[arg(value_name = "PATTERN", required = true)]
    pub patterns: Vec<String>,
    /// Match ignoring case.
    #[arg(short = 'i', long)]
    pub ignore_case: bool,
    /// Search only this snapshot (`latest`, an id or a prefix; repeatable).
    #[arg(short = 's', long = "snapshot", value_name = "ID")]
    pub snapshots: Vec<String>,
    /// Which snapshots to search when none is named.
    #[command(flatten)]
    pub filter: SnapshotFilter,
}

/// Runs `find`.
pub async fn run(ctx: &Context, args: Args) -> Result<i32> {
    let (exact, caseless) = if args.ignore_case {
        (Vec::new(), args.patterns.clone())
    } else {
        (args.patterns.clone(), Vec::new())
    };
    let patterns = PathPatterns::new(&exact, &caseless, Reach::Entry, "find")?;
    let repo = ctx.open().await?;
    let snapshots = args.filter.select(&repo, &args.snapshots).await?;
    let index = repo.load_index().await?;
    let count = snapshots.len();
    let (ticker, progress) =
        output::tree_ticker(ctx, format!("trees of {count} snapshots searched"));
    let report = lifeboat_engine::find::find(&repo, &index, snapshots, &patterns, &progress).await;
    ticker.finish().await;
    let report = report?;
    if ctx.global.json {
        let list: Vec<_> = report
            .matches
            .iter()
            .map(|(path, found)| {
                json!({
                    "path": String::from_utf8_lossy(path),
                    "matches": found.iter().map(|o| json!({
                        "snapshot": o.snapshot.to_hex(),
                        "short_id": o.snapshot.short(),
                        "time": output::time(o.time),
                        "type": type_name(o.entry.kind),
                        "size": o.entry.size,
                        "mode": o.entry.mode,
                        "mtime": output::time(o.entry.mtime),
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        println!(
            "{}",
            json!({"message_type": "summary", "matches": list, "paths": report.matches.len(),
                   "snapshots_searched": report.snapshots, "trees_read": report.trees_read,
                   "trees_reused": report.trees_reused})
        );
        return Ok(crate::exit::OK);
    }
    if ctx.global.quiet {
        return Ok(crate::exit::OK);
    }
    let mut out = std::io::stdout().lock();
    for (path, found) in &report.matches {
        // Names are bytes: printed as they are, like `ls`.
        out.write_all(path)?;
        out.write_all(b"\n")?;
        for o in found {
            writeln!(
                out,
                "  {}  {}  {}  {:>10}  modified {}",
                output::table_seconds(o.time),
                o.snapshot.short(),
                crate::commands::ls::mode_text(o.entry.kind, o.entry.mode),
                output::bytes(o.entry.size),
                output::table_seconds(o.entry.mtime),
            )?;
        }
    }
    writeln!(
        out,
        "{} in {} searched",
        match report.matches.len() {
            0 => "no match".to_string(),
            n => output::count(n as u64, "matching path"),
        },
        output::count(report.snapshots as u64, "snapshot"),
    )?;
    Ok(crate::exit::OK)
}

/// The JSON name of a type letter.
pub fn type_name(kind: char) -> &'static str {
    match kind {
        '-' => "file",
        'd' => "dir",
        'l' => "symlink",
        'p' => "fifo",
        's' => "socket",
        'b' => "blockdev",
        'c' => "chardev",
        _ => "unknown",
    }
}
