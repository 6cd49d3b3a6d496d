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
    let presence = lifeboat_engine::status::snapshots_by_destination(&repo).await;
    let holders = |id: &lifeboat_engine::SnapshotId| -> Vec<String> {
        presence
            .iter()
            .filter(|(_, held)| held.as_ref().is_ok_and(|h| h.contains(id)))
            .map(|(name, _)| name.clone())
            .collect()
    };
    let several = presence.len() > 1;
    let chosen: Vec<_> = all
        .iter()
        .filter(|(_, s)| args.tags.is_empty() || s.tags.iter().any(|t| args.tags.contains(t)))
        .filter(|(_, s)| args.host.as_ref().is_none_or(|h| &s.hostname == h))
        .collect();
    if ctx.global.json {
        let list: Vec<_> = chosen
            .iter()
            .map(|(id, s)| {
                let mut v = output::snapshot_json(id, s);
                v["destinations"] = serde_json::json!(holders(id));
                v
            })
            .collect();
        println!("{}", serde_json::Value::Array(list));
        return Ok(crate::exit::OK);
    }
    if ctx.global.quiet {
        return Ok(crate::exit::OK);
    }
    let where_header = if several { "  Destinations" } else { "" };
    println!(
        "{:<8}  {:<19}  {:<16}  {:<12}  {:>10}  Paths{where_header}",
        "ID", "Time (UTC)", "Host", "Tags", "Size"
    );
    println!("{}", "-".repeat(90));
    for (id, s) in &chosen {
        let place = if several {
            format!("  [{}]", holders(id).join(", "))
        } else {
            String::new()
        };
        println!(
            "{:<8}  {:<19}  {:<16}  {:<12}  {:>10}  {}{place}",
            id.short(),
            output::table_time(s),
            s.hostname,
            s.tags.join(","),
            output::bytes(s.summary.total_bytes),
            s.paths_lossy().join(", ")
        );
    }
    println!("{}", "-".repeat(90));
    println!("{}", crate::output::count(chosen.len() as u64, "snapshot"));
    Ok(crate::exit::OK)
}
