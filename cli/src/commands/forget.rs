//! `lifeboat forget`: remove snapshots by a retention policy or by id.

use std::time::Duration;

use anyhow::Result;
use lifeboat_engine::forget::{self, Decision, GroupBy, GroupKey, KeepPolicy, Within};
use lifeboat_engine::percent::Percent;
use lifeboat_engine::{Repository, SnapshotId};
use serde_json::json;

use crate::context::Context;
use crate::output;

/// Arguments of `forget`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Snapshots to remove (ids or unique prefixes), instead of a policy.
    #[arg(value_name = "SNAPSHOT")]
    pub ids: Vec<String>,
    /// Keep the N newest snapshots.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub keep_last: u32,
    /// Keep the newest snapshot of each of the last N hours that have one.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub keep_hourly: u32,
    /// … of each of the last N days (UTC).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub keep_daily: u32,
    /// … of each of the last N ISO weeks.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub keep_weekly: u32,
    /// … of each of the last N months.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub keep_monthly: u32,
    /// … of each of the last N years.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub keep_yearly: u32,
    /// Keep every snapshot younger than this before the group's newest (`1y6m`, `2w`, `30d`, `12h`).
    #[arg(long, value_name = "DURATION")]
    pub keep_within: Option<Within>,
    /// Keep every snapshot with this tag (repeatable).
    #[arg(long, value_name = "TAG")]
    pub keep_tag: Vec<String>,
    /// Apply the policy separately to each group: `host`, `paths`, `tags`, comma-separated
    /// (empty: one group).
    #[arg(long, value_name = "LIST", default_value = "host,paths")]
    pub group_by: GroupBy,
    /// Only snapshots of this host (repeatable).
    #[arg(long, value_name = "NAME")]
    pub host: Vec<String>,
    /// Only snapshots with this tag (repeatable: any of them).
    #[arg(long, value_name = "TAG")]
    pub tag: Vec<String>,
    /// Only snapshots of this path (repeatable: any of them).
    #[arg(long, value_name = "PATH")]
    pub path: Vec<String>,
    /// Show what would be kept and removed, and why; remove nothing.
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// Then prune: remove the data no remaining snapshot uses.
    #[arg(long)]
    pub prune: bool,
    /// With --prune: unused share tolerated before repacking.
    #[arg(long, value_name = "P%", default_value = "5%", requires = "prune")]
    pub max_unused: Percent,
    /// With --prune: how long marked data waits before deletion.
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "1h",
        requires = "prune",
        value_parser = crate::duration::parse
    )]
    pub grace: Duration,
}

impl Args {
    fn policy(&self) -> KeepPolicy {
        KeepPolicy {
            last: self.keep_last,
            hourly: self.keep_hourly,
            daily: self.keep_daily,
            weekly: self.keep_weekly,
            monthly: self.keep_monthly,
            yearly: self.keep_yearly,
            within: self.keep_within,
            tags: self.keep_tag.clone(),
        }
    }
}

/// Runs `forget`: exit 0; 3 when a destination was missed.
pub async fn run(ctx: &Context, args: Args) -> Result<i32> {
    let policy = args.policy();
    if args.ids.is_empty() && policy.is_empty() {
        return Err(crate::exit::usage(
            "forget needs a policy (--keep-last, --keep-daily, … --keep-within, --keep-tag) or snapshot ids",
        ));
    }
    if !args.ids.is_empty() && !policy.is_empty() {
        return Err(crate::exit::usage(
            "give either snapshot ids or a --keep-* policy, not both",
        ));
    }
    // Checked by clap with prune's own parsers, so a bad value stops the
    // run before anything is forgotten.
    let prune_args = args.prune.then_some(super::prune::Args {
        max_unused: args.max_unused,
        grace: args.grace,
        dry_run: false,
    });
    let repo = ctx.open().await?;
    if args.dry_run {
        return forget_planned(ctx, &repo, &args, &policy).await;
    }
    let work = async {
        let code = forget_planned(ctx, &repo, &args, &policy).await?;
        // A destination missed by forget is missed by prune too: the others
        // are pruned, and prune names the ones it skipped.
        match prune_args {
            Some(p) if code == crate::exit::OK || code == crate::exit::INCOMPLETE => {
                let pruned = super::prune::run_locked(ctx, &repo, &p).await?;
                Ok(if code == crate::exit::INCOMPLETE {
                    code
                } else {
                    pruned
                })
            }
            _ => Ok(code),
        }
    };
    ctx.lock_wait.locked(&repo, true, work).await
}

/// Decides, prints, and (unless a dry run) removes.
async fn forget_planned(
    ctx: &Context,
    repo: &Repository,
    args: &Args,
    policy: &KeepPolicy,
) -> Result<i32> {
    // Snapshots a rolled-back destination lost that no destination lists
    // any more: forgetting them by id writes the deletion record that ends
    // the rollback warning.
    let mut gone = Vec::new();
    let groups: Vec<(GroupKey, Vec<Decision>)> = if args.ids.is_empty() {
        let snapshots: Vec<_> = repo
            .list_snapshots()
            .await?
            .into_iter()
            .filter(|(_, s)| args.host.is_empty() || args.host.contains(&s.hostname))
            .filter(|(_, s)| args.tag.is_empty() || s.tags.iter().any(|t| args.tag.contains(t)))
            .filter(|(_, s)| {
                args.path.is_empty() || s.paths_lossy().iter().any(|p| args.path.contains(p))
            })
            .collect();
        forget::plan(snapshots, policy, args.group_by)
    } else {
        let mut chosen = Vec::new();
        for spec in &args.ids {
            let (id, snapshot) = match repo.find_snapshot(spec).await {
                Ok(found) => found,
                Err(e @ lifeboat_engine::Error::SnapshotNotFound(_)) => {
                    match repo.find_rolled_back(spec)? {
                        Some(id) => {
                            gone.push(id);
                            continue;
                        }
                        None => return Err(e.into()),
                    }
                }
                Err(e) => return Err(e.into()),
            };
            chosen.push(Decision {
                id,
                snapshot,
                keep: false,
                reasons: Vec::new(),
            });
        }
        // Only snapshots no destination lists: no table to show.
        if chosen.is_empty() {
            Vec::new()
        } else {
            vec![(GroupKey::default(), chosen)]
        }
    };
    let remove: Vec<SnapshotId> = groups
        .iter()
        .flat_map(|(_, d)| d)
        .filter(|d| !d.keep)
        .map(|d| d.id)
        .chain(gone.iter().copied())
        .collect();
    let kept = groups
        .iter()
        .flat_map(|(_, d)| d)
        .filter(|d| d.keep)
        .count();
    print(ctx, &groups);
    let verb = if args.dry_run { "would be" } else { "is" };
    for id in &gone {
        ctx.say(format!(
            "snapshot {}: no destination lists it any more (a rolled-back destination lost it); \
             it {verb} recorded as removed, which ends the rollback warning",
            id.short()
        ));
    }
    if args.dry_run {
        ctx.say(format!(
            "would keep {} and remove {} (dry run: nothing removed)",
            crate::output::count(kept as u64, "snapshot"),
            remove.len()
        ));
        return Ok(crate::exit::OK);
    }
    let outcome = forget::forget(repo, &remove).await?;
    if ctx.global.json {
        println!(
            "{}",
            json!({"message_type": "summary", "kept": kept, "removed": outcome.removed,
                   "destinations_reached": outcome.reached,
                   "destinations_missed": outcome.missed.iter().map(|(n, e)| json!({"name": n, "error": e})).collect::<Vec<_>>()})
        );
    } else {
        // By id, nothing was weighed for keeping: say only what went.
        if args.ids.is_empty() {
            ctx.say(format!(
                "kept {}, removed {}",
                crate::output::count(kept as u64, "snapshot"),
                outcome.removed
            ));
        } else {
            ctx.say(format!(
                "removed {}",
                crate::output::count(outcome.removed as u64, "snapshot")
            ));
        }
        crate::output::report_missed(
            ctx,
            repo.destinations(),
            &outcome.missed,
            "it drops these snapshots at the next sync or prune",
        );
    }
    Ok(if outcome.missed.is_empty() {
        crate::exit::OK
    } else {
        crate::exit::INCOMPLETE
    })
}

fn print(ctx: &Context, groups: &[(GroupKey, Vec<Decision>)]) {
    if ctx.global.json {
        let list: Vec<_> = groups
            .iter()
            .map(|(key, decisions)| {
                let entry = |d: &Decision| {
                    json!({"id": d.id.to_hex(), "short_id": d.id.short(), "time": output::rfc3339(&d.snapshot),
                           "host": d.snapshot.hostname, "tags": d.snapshot.tags, "paths": d.snapshot.paths_lossy(),
                           "reasons": d.reasons})
                };
                json!({
                    "message_type": "forget_group",
                    "host": key.host, "paths": key.paths, "tags": key.tags,
                    "keep": decisions.iter().filter(|d| d.keep).map(entry).collect::<Vec<_>>(),
                    "remove": decisions.iter().filter(|d| !d.keep).map(entry).collect::<Vec<_>>(),
                })
            })
            .collect();
        for group in list {
            println!("{group}");
        }
        return;
    }
    if ctx.global.quiet {
        return;
    }
    for (key, decisions) in groups {
        let mut title = Vec::new();
        if let Some(h) = &key.host {
            title.push(format!("host {h}"));
        }
        if let Some(p) = &key.paths {
            title.push(format!("paths {}", p.join(", ")));
        }
        if let Some(t) = &key.tags {
            title.push(format!("tags {}", t.join(",")));
        }
        if !title.is_empty() {
            println!("{}", title.join(", "));
        }
        println!(
            "{:<8}  {:<19}  {:<16}  {:<12}  {:<7}  Reasons",
            "ID", "Time (UTC)", "Host", "Tags", "Action"
        );
        for d in decisions {
            println!(
                "{:<8}  {:<19}  {:<16}  {:<12}  {:<7}  {}",
                d.id.short(),
                output::table_time(&d.snapshot),
                d.snapshot.hostname,
                d.snapshot.tags.join(","),
                if d.keep { "keep" } else { "remove" },
                d.reasons.join(", ")
            );
        }
        println!();
    }
}
