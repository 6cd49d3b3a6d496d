//! `lifeboat snapshots`: list snapshots.

use anyhow::Result;

use crate::context::Context;
use crate::output;

/// Arguments of `snapshots`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only snapshots with this tag (repeat for any of several).
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
    /// Only snapshots of this host.
    #[arg(long, value_name = "NAME")]
    pub host: Option<String>,
}

/// Runs `snapshots`.
pub async fn run(ctx: &Context, args: Args) -> Result<i32> {
    let repo = ctx.open().await?;
    let all = repo.list_snapshots().await?;
    let chosen: Vec<_> = all
        .iter()
        .filter(|(_, s)| args.tags.is_empty() || s.tags.iter().any(|t| args.tags.contains(t)))
        .filter(|(_, s)| args.host.as_ref().is_none_or(|h| &s.hostname == h))
        .collect();
    if ctx.global.json {
        let list: Vec<_> = chosen
            .iter()
            .map(|(id, s)| output::snapshot_json(id, s))
            .collect();
        println!("{}", serde_json::Value::Array(list));
        return Ok(crate::exit::OK);
    }
    if ctx.global.quiet {
        return Ok(crate::exit::OK);
    }
    println!(
        "{:<8}  {:<19}  {:<16}  {:<12}  {:>10}  Paths",
        "ID", "Time (UTC)", "Host", "Tags", "Size"
    );
    println!("{}", "-".repeat(90));
    for (id, s) in &chosen {
        println!(
            "{:<8}  {:<19}  {:<16}  {:<12}  {:>10}  {}",
            id.short(),
            output::table_time(s),
            s.hostname,
            s.tags.join(","),
            output::bytes(s.summary.total_bytes),
            s.paths_lossy().join(", ")
        );
    }
    println!("{}", "-".repeat(90));
    println!("{} snapshots", chosen.len());
    Ok(crate::exit::OK)
}
