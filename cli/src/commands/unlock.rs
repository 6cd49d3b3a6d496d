//! `lifeboat unlock`: remove stale locks (or, with --force, every lock) from
//! every reachable destination.

use anyhow::{bail, Result};
use lifeboat_engine::repo::lock::{self, LockReport};
use serde_json::json;

use crate::context::Context;

/// Arguments of `unlock`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Remove every lock, also those of commands still running (and unreadable ones). A
    /// backup, prune or repair that is still running may then damage the repository.
    #[arg(long)]
    pub force: bool,
}

/// The first 8 characters of a lock's name.
fn short(name: &str) -> String {
    name.chars().take(8).collect()
}

/// `45s`, `12 min`, `3 h 5 min`, `2 d 4 h`: a lock's age.
fn age(seconds: i64) -> String {
    let s = seconds.max(0);
    match s {
        0..=59 => format!("{s} s"),
        60..=3599 => format!("{} min", s / 60),
        3600..=86_399 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        _ => format!("{} d {} h", s / 86_400, s % 86_400 / 3600),
    }
}

/// `exclusive lock of alice@laptop pid 123, 4 min old`.
fn holder(report: &LockReport) -> String {
    match (&report.lock, report.age_secs) {
        (Some(l), age_secs) => format!(
            "{} lock of {}@{} pid {}, {} old",
            if l.exclusive { "exclusive" } else { "shared" },
            l.username,
            l.hostname,
            l.pid,
            age(age_secs.unwrap_or_default())
        ),
        (None, _) => {
            "unreadable lock (a newer lifeboat's, another repository's, or damaged)".into()
        }
    }
}

fn why(report: &LockReport, force: bool) -> String {
    match (&report.lock, report.stale) {
        (Some(_), Some(reason)) => format!("stale: {reason}"),
        (Some(_), None) if force => "live, removed by --force".into(),
        (Some(_), None) => {
            "live: its holder is running (or on another host and refreshed it recently)".into()
        }
        (None, _) if force => "removed by --force".into(),
        (None, _) => "remove it with --force once you know no other lifeboat runs".into(),
    }
}

fn lock_json(report: &LockReport) -> serde_json::Value {
    let l = report.lock.as_ref();
    json!({
        "name": report.name,
        "destinations": report.destinations,
        "readable": l.is_some(),
        "exclusive": l.map(|l| l.exclusive),
        "hostname": l.map(|l| &l.hostname),
        "pid": l.map(|l| l.pid),
        "username": l.map(|l| &l.username),
        "time": l.map(|l| crate::output::time(l.time)),
        "age_secs": report.age_secs,
        "stale": report.stale.map(|s| s.to_string()),
    })
}

/// Runs `unlock`: exit 0, or 1 when a lock could not be deleted.
pub async fn run(ctx: &Context, args: Args) -> Result<i32> {
    let repo = ctx.open().await?;
    if args.force {
        eprintln!(
            "warning: --force removes every lock, also those of commands still running: \
             a backup, prune or repair still running may corrupt the repository"
        );
    }
    let report = lock::unlock(repo.destinations(), repo.keys(), args.force).await?;
    for (name, reason) in &report.unreachable {
        eprintln!("warning: the locks on destination {name} were not examined: {reason}");
    }
    let several = repo.destinations().backends().len() > 1;
    if ctx.global.json {
        let (removed, kept): (Vec<_>, Vec<_>) = report.locks.iter().partition(|l| l.removed);
        println!(
            "{}",
            json!({
                "message_type": "unlock",
                "removed": removed.into_iter().map(lock_json).collect::<Vec<_>>(),
                "kept": kept.into_iter().map(lock_json).collect::<Vec<_>>(),
                "unreachable": report.unreachable.iter()
                    .map(|(d, e)| json!({"destination": d, "error": e})).collect::<Vec<_>>(),
                "failed": report.failed.iter()
                    .map(|(n, d, e)| json!({"name": n, "destination": d, "error": e})).collect::<Vec<_>>(),
            })
        );
    } else if !ctx.global.quiet {
        if report.locks.is_empty() {
            println!("no locks");
        }
        for l in &report.locks {
            let place = if several {
                format!(" [{}]", l.destinations.join(", "))
            } else {
                String::new()
            };
            println!(
                "{} {}: {}; {}{place}",
                if l.removed { "removed" } else { "kept   " },
                short(&l.name),
                holder(l),
                why(l, args.force),
            );
        }
    }
    if let Some((name, destination, error)) = report.failed.first() {
        bail!(
            "could not remove lock {} from destination {destination}: {error}",
            short(name)
        );
    }
    Ok(crate::exit::OK)
}
