//! `lifeboat diff`: what changed between two snapshots.

use std::io::Write;
use std::os::unix::ffi::OsStrExt;

use anyhow::Result;
use lifeboat_engine::diff::{Change, DiffStats};
use serde_json::json;

use crate::context::Context;
use crate::output;

/// Arguments of `diff`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Each line is a marker and a path (directories end in /): + added, \
    - removed, M content modified, T type changed, U metadata only (with --metadata). \
    Subtrees identical in both snapshots are skipped unread."
)]
pub struct Args {
    /// The older snapshot (`latest`, an id or a prefix).
    #[arg(value_name = "SNAPSHOT_A")]
    pub first: String,
    /// The newer snapshot.
    #[arg(value_name = "SNAPSHOT_B")]
    pub second: String,
    /// Also list entries whose metadata alone changed (mode, owner, modification time).
    #[arg(long)]
    pub metadata: bool,
}

/// Runs `diff`.
pub async fn run(ctx: &Context, args: Args) -> Result<i32> {
    let repo = ctx.open().await?;
    let (first_id, first) = repo.find_snapshot(&args.first).await?;
    let (second_id, second) = repo.find_snapshot(&args.second).await?;
    let index = repo.load_index().await?;
    let (json, quiet) = (ctx.global.json, ctx.global.quiet);
    if !json && !quiet {
        println!(
            "comparing snapshot {} to {}:\n",
            first_id.short(),
            second_id.short()
        );
    }
    let mut out = std::io::stdout().lock();
    let mut failed = None;
    let stats = lifeboat_engine::diff::diff(&repo, &index, &first, &second, args.metadata, |c| {
        if failed.is_none() {
            if let Err(e) = print_change(&mut out, c, json, quiet) {
                failed = Some(e);
            }
        }
    })
    .await?;
    if let Some(e) = failed {
        return Err(e.into());
    }
    drop(out);
    if json {
        println!("{}", stats_json(&stats, &first_id, &second_id));
    } else if !quiet {
        print_stats(&stats);
    }
    Ok(crate::exit::OK)
}

fn print_change(out: &mut impl Write, c: &Change, json: bool, quiet: bool) -> std::io::Result<()> {
    if json {
        let mut path = c.path.to_string_lossy().into_owned();
        if c.is_dir {
            path.push('/');
        }
        let line = json!({"message_type": "change", "path": path, "modifier": c.kind.marker().to_string()});
        return writeln!(out, "{line}");
    }
    if quiet {
        return Ok(());
    }
    // Names are bytes: printed as they are.
    write!(out, "{}    ", c.kind.marker())?;
    out.write_all(c.path.as_os_str().as_bytes())?;
    if c.is_dir {
        out.write_all(b"/")?;
    }
    out.write_all(b"\n")
}

fn print_stats(s: &DiffStats) {
    println!();
    println!(
        "Files:       {} new, {} removed, {} changed",
        s.files_added, s.files_removed, s.files_modified
    );
    println!(
        "Dirs:        {} new, {} removed",
        s.dirs_added, s.dirs_removed
    );
    println!(
        "Others:      {} new, {} removed, {} changed",
        s.others_added, s.others_removed, s.others_modified
    );
    if s.type_changed > 0 {
        println!("Type changed: {}", s.type_changed);
    }
    println!("Metadata:    {} changed", s.metadata_changed);
    println!(
        "Data blobs:  {} new, {} removed",
        s.blobs_added, s.blobs_removed
    );
    println!("Added:       {}", output::bytes(s.bytes_added));
    println!("Removed:     {}", output::bytes(s.bytes_removed));
}

fn stats_json(
    s: &DiffStats,
    first: &lifeboat_engine::SnapshotId,
    second: &lifeboat_engine::SnapshotId,
) -> serde_json::Value {
    json!({
        "message_type": "statistics",
        "source_snapshot": first.to_hex(),
        "target_snapshot": second.to_hex(),
        "added": {"files": s.files_added, "dirs": s.dirs_added, "others": s.others_added,
                  "data_blobs": s.blobs_added, "bytes": s.bytes_added},
        "removed": {"files": s.files_removed, "dirs": s.dirs_removed, "others": s.others_removed,
                    "data_blobs": s.blobs_removed, "bytes": s.bytes_removed},
        "changed_files": s.files_modified,
        "changed_others": s.others_modified,
        "type_changed": s.type_changed,
        "metadata_changed": s.metadata_changed,
        "trees_read": s.trees_read,
    })
}
