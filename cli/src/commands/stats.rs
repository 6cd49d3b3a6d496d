//! `lifeboat stats`: how big snapshots are, restored and stored, and what
//! each destination holds.

use anyhow::Result;
use lifeboat_engine::stats::{Stats, StatsWanted};
use serde_json::json;

use crate::context::Context;
use crate::filter::SnapshotFilter;
use crate::output;

/// What `stats` counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Files and bytes as a restore writes them.
    RestoreSize,
    /// Distinct blobs stored after deduplication and compression, and the ratios.
    RawData,
    /// Distinct file contents and how many blobs each takes.
    BlobsPerFile,
}

/// Arguments of `stats`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Snapshots to count (`latest`, ids or prefixes); default: every snapshot the filters pass.
    #[arg(value_name = "SNAPSHOT")]
    pub snapshots: Vec<String>,
    /// What to count.
    #[arg(long, value_enum, default_value = "restore-size")]
    pub mode: Mode,
    /// Which snapshots to count when none is named.
    #[command(flatten)]
    pub filter: SnapshotFilter,
}

/// Runs `stats`.
pub async fn run(ctx: &Context, args: Args) -> Result<i32> {
    let repo = ctx.open().await?;
    let snapshots = args.filter.select(&repo, &args.snapshots).await?;
    let index = repo.load_index().await?;
    let wanted = StatsWanted {
        raw_data: args.mode == Mode::RawData,
        blobs_per_file: args.mode == Mode::BlobsPerFile,
    };
    let (ticker, progress) = output::tree_ticker(
        ctx,
        format!("trees of {} snapshots counted", snapshots.len()),
    );
    let stats = lifeboat_engine::stats::stats(&repo, &index, &snapshots, wanted, &progress).await;
    ticker.finish().await;
    let stats = stats?;
    let usage = lifeboat_engine::stats::destinations(&repo).await;
    if ctx.global.json {
        let mut v = json!({
            "message_type": "summary",
            "mode": mode_name(args.mode),
            "snapshots_count": stats.snapshots,
            "total_file_count": stats.files,
            "total_dir_count": stats.dirs,
            "total_size": stats.restore_bytes,
        });
        match args.mode {
            Mode::RestoreSize => {}
            Mode::RawData => {
                v["total_blob_count"] = json!(stats.data_blobs + stats.tree_blobs);
                v["data_blob_count"] = json!(stats.data_blobs);
                v["tree_blob_count"] = json!(stats.tree_blobs);
                v["total_uncompressed_size"] = json!(stats.raw_bytes);
                v["total_stored_size"] = json!(stats.stored_bytes);
                v["compression_ratio"] = json!(stats.compression_ratio());
                v["deduplication_ratio"] = json!(stats.dedup_ratio());
                v["missing_blobs"] = json!(stats.missing_blobs);
            }
            Mode::BlobsPerFile => {
                v["unique_file_count"] = json!(stats.unique_files);
                v["unique_file_blobs"] = json!(stats.unique_file_blobs);
                v["unique_file_size"] = json!(stats.unique_file_bytes);
            }
        }
        v["destinations"] = usage
            .iter()
            .map(|u| {
                json!({"name": u.name, "objects": u.objects(), "bytes": u.bytes(), "error": u.error,
                       "kinds": u.kinds.iter().map(|(k, n, b)| (k.to_string(), json!({"objects": n, "bytes": b}))).collect::<serde_json::Map<_, _>>()})
            })
            .collect();
        println!("{v}");
        return Ok(crate::exit::OK);
    }
    if ctx.global.quiet {
        return Ok(crate::exit::OK);
    }
    print_stats(args.mode, &stats);
    println!("\nDestinations:");
    for u in &usage {
        match &u.error {
            Some(e) => println!("  {:<16} unreadable: {e}", u.name),
            None => println!(
                "  {:<16} {:>10} objects  {:>10}  ({} in packs)",
                u.name,
                u.objects(),
                output::bytes(u.bytes()),
                output::bytes(u.kinds.first().map_or(0, |(_, _, b)| *b)),
            ),
        }
    }
    Ok(crate::exit::OK)
}

fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::RestoreSize => "restore-size",
        Mode::RawData => "raw-data",
        Mode::BlobsPerFile => "blobs-per-file",
    }
}

fn print_stats(mode: Mode, s: &Stats) {
    println!("Stats in {} mode:", mode_name(mode));
    println!("  Snapshots processed:   {}", s.snapshots);
    match mode {
        Mode::RestoreSize => {
            println!("  Total file count:      {}", s.files);
            println!("  Total directory count: {}", s.dirs);
            println!(
                "  Total size:            {}",
                output::bytes(s.restore_bytes)
            );
        }
        Mode::RawData => {
            println!(
                "  Total blob count:      {} ({} data, {} trees)",
                s.data_blobs + s.tree_blobs,
                s.data_blobs,
                s.tree_blobs
            );
            println!("  Total uncompressed:    {}", output::bytes(s.raw_bytes));
            println!("  Total stored:          {}", output::bytes(s.stored_bytes));
            println!(
                "  Restore size:          {}",
                output::bytes(s.restore_bytes)
            );
            if let Some(r) = s.dedup_ratio() {
                println!("  Deduplication ratio:   {r:.2}x");
            }
            if let Some(r) = s.compression_ratio() {
                println!("  Compression ratio:     {r:.2}x");
            }
            if s.missing_blobs > 0 {
                println!(
                    "  Missing blobs:         {} (run `lifeboat check`)",
                    s.missing_blobs
                );
            }
        }
        Mode::BlobsPerFile => {
            println!("  Distinct files:        {}", s.unique_files);
            println!("  Their blobs:           {}", s.unique_file_blobs);
            println!(
                "  Their size:            {}",
                output::bytes(s.unique_file_bytes)
            );
            if s.unique_files > 0 {
                println!(
                    "  Blobs per file:        {:.2}",
                    s.unique_file_blobs as f64 / s.unique_files as f64
                );
            }
        }
    }
}
