//! `lifeboat key`: the repository's passwords (key files), changed on every
//! destination at once.

use std::path::PathBuf;

use anyhow::Result;
use clap::Subcommand;
use lifeboat_engine::format::ids::KeyId;
use lifeboat_engine::key_admin::{self, KeyEntry, KeyError};
use lifeboat_engine::{KdfParams, Repository};
use serde_json::json;

use crate::context::Context;
use crate::password;

/// Arguments of `key`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// What to do.
    #[command(subcommand)]
    pub command: KeyCommand,
}

/// The `key` subcommands.
#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Add a password: a new key file for the same repository, on every destination.
    Add(NewKeyArgs),
    /// List the key files: id, creation, host, user, KDF costs, and the one in use.
    List,
    /// Remove a password (never the last one) from every destination.
    Remove(RemoveArgs),
    /// Change the password: add a key with the new password, then remove the one in use.
    Passwd(NewKeyArgs),
}

/// Where the new password comes from, and its key's costs.
#[derive(Debug, clap::Args)]
pub struct NewKeyArgs {
    /// Read the new password from this file (first line). Else LIFEBOAT_NEW_PASSWORD, else a
    /// prompt (twice).
    #[arg(long, value_name = "FILE")]
    pub new_password_file: Option<PathBuf>,
    /// Argon2id memory cost in KiB (default: that of the key in use).
    #[arg(long, value_name = "KIB", value_parser = clap::value_parser!(u32).range(8..=4_194_304))]
    pub kdf_memory: Option<u32>,
    /// Argon2id passes (default: that of the key in use).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=64))]
    pub kdf_iterations: Option<u32>,
    /// Accept --kdf-memory below 16384 (16 MiB) or --kdf-iterations below 2 (see `init`).
    #[arg(long)]
    pub insecure_kdf: bool,
}

/// Arguments of `key remove`.
#[derive(Debug, clap::Args)]
pub struct RemoveArgs {
    /// The key's id, or a unique prefix of it (see `lifeboat key list`).
    #[arg(value_name = "ID")]
    pub id: String,
    /// Also remove the key your password opened.
    #[arg(long)]
    pub force: bool,
}

/// Engine failures keep their type (and exit code); the rest read as they are.
fn key_error(e: KeyError) -> anyhow::Error {
    match e {
        KeyError::Engine(inner) => inner.into(),
        // The command line named no key of this repository: a usage mistake.
        e @ (KeyError::BadId(_) | KeyError::NoSuchKey(_) | KeyError::Ambiguous(_)) => {
            crate::exit::usage(e.to_string())
        }
        other => other.into(),
    }
}

/// Runs a key operation under the repository lock.
async fn locked<T>(
    ctx: &Context,
    repo: &Repository,
    exclusive: bool,
    work: impl std::future::Future<Output = std::result::Result<T, KeyError>>,
) -> Result<T> {
    let work = async { work.await.map_err(key_error) };
    ctx.lock_wait.locked(repo, exclusive, work).await
}

/// Runs `key`.
pub async fn run(ctx: &Context, args: Args) -> Result<i32> {
    let repo = ctx.open().await?;
    match args.command {
        KeyCommand::List => list(ctx, &repo).await,
        KeyCommand::Add(new) => {
            let params = new_params(&repo, &new).await?;
            let password = password::new_key(new.new_password_file.as_deref())?;
            let added = key_admin::add_key(&repo, &password, params);
            let id = locked(ctx, &repo, false, added).await?;
            report(
                ctx,
                &repo,
                "key_added",
                &[("id", id)],
                format!("added key {}", id.short()),
            );
            Ok(crate::exit::OK)
        }
        KeyCommand::Remove(remove) => {
            let removed = key_admin::remove_key(&repo, &remove.id, remove.force);
            let id = locked(ctx, &repo, true, removed).await?;
            report(
                ctx,
                &repo,
                "key_removed",
                &[("id", id)],
                format!("removed key {}", id.short()),
            );
            Ok(crate::exit::OK)
        }
        KeyCommand::Passwd(new) => {
            let params = new_params(&repo, &new).await?;
            let password = password::new_key(new.new_password_file.as_deref())?;
            let changed = key_admin::change_password(&repo, &password, params);
            let (added, removed) = locked(ctx, &repo, true, changed).await?;
            report(
                ctx,
                &repo,
                "password_changed",
                &[("added", added), ("removed", removed)],
                format!(
                    "password changed: added key {}, removed key {}",
                    added.short(),
                    removed.short()
                ),
            );
            Ok(crate::exit::OK)
        }
    }
}

/// The new key's costs: the flags, else those of the key in use.
async fn new_params(repo: &Repository, args: &NewKeyArgs) -> Result<KdfParams> {
    super::kdf_floor(args.kdf_memory, args.kdf_iterations, args.insecure_kdf)?;
    let current = key_admin::params_in_use(repo).await.map_err(key_error)?;
    Ok(KdfParams {
        memory_kib: args.kdf_memory.unwrap_or(current.memory_kib),
        iterations: args.kdf_iterations.unwrap_or(current.iterations),
        parallelism: current.parallelism,
    })
}

/// One JSON message, or one human line naming the destinations.
fn report(ctx: &Context, repo: &Repository, kind: &str, ids: &[(&str, KeyId)], human: String) {
    let destinations = repo.destinations().reached();
    if ctx.global.json {
        let mut msg = json!({"message_type": kind, "destinations": destinations});
        for (field, id) in ids {
            msg[*field] = json!(id.to_hex());
        }
        println!("{msg}");
    } else if !ctx.global.quiet {
        println!("{human} on {}", destinations.join(", "));
    }
}

fn created(entry: &KeyEntry) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    entry
        .info
        .as_ref()
        .and_then(|i| time::OffsetDateTime::from_unix_timestamp(i.created).ok())
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_else(|| "-".into())
}

fn entry_json(entry: &KeyEntry) -> serde_json::Value {
    json!({
        "id": entry.id.to_hex(),
        "short_id": entry.id.short(),
        "in_use": entry.in_use,
        "version": entry.version,
        "created": entry.info.as_ref().map(|i| crate::output::time(i.created)),
        "hostname": entry.info.as_ref().map(|i| &i.hostname),
        "username": entry.info.as_ref().map(|i| &i.username),
        "kdf": entry.params.map(|p| json!({
            "memory_kib": p.memory_kib,
            "iterations": p.iterations,
            "parallelism": p.parallelism,
        })),
        "destinations": entry.destinations,
        "problem": entry.problem,
    })
}

async fn list(ctx: &Context, repo: &Repository) -> Result<i32> {
    let listing = key_admin::list_keys(repo).await.map_err(key_error)?;
    for (name, why) in &listing.unreachable {
        tracing::warn!("destination {name} could not be listed: {why}");
    }
    if ctx.global.json {
        let list: Vec<_> = listing.keys.iter().map(entry_json).collect();
        println!("{}", serde_json::Value::Array(list));
        return Ok(crate::exit::OK);
    }
    if ctx.global.quiet {
        return Ok(crate::exit::OK);
    }
    let all = repo.destinations().backends().len();
    let several = all > 1;
    println!(
        "  {:<8}  {:<19}  {:<16}  {:<12}  {:>10}  {:>6}  {:>5}{}",
        "ID",
        "Created (UTC)",
        "Host",
        "User",
        "KDF KiB",
        "passes",
        "lanes",
        if several { "  Destinations" } else { "" }
    );
    println!("{}", "-".repeat(if several { 104 } else { 88 }));
    for entry in &listing.keys {
        let (host, user) = entry
            .info
            .as_ref()
            .map_or(("-", "-"), |i| (i.hostname.as_str(), i.username.as_str()));
        let (memory, passes, lanes) =
            entry
                .params
                .map_or(("-".into(), "-".into(), "-".into()), |p| {
                    (
                        p.memory_kib.to_string(),
                        p.iterations.to_string(),
                        p.parallelism.to_string(),
                    )
                });
        let place = if several {
            format!("  {}", entry.destinations.join(", "))
        } else {
            String::new()
        };
        println!(
            "{} {:<8}  {:<19}  {:<16}  {:<12}  {:>10}  {:>6}  {:>5}{place}",
            if entry.in_use { "*" } else { " " },
            entry.id.short(),
            created(entry),
            host,
            user,
            memory,
            passes,
            lanes,
        );
        if let Some(problem) = &entry.problem {
            println!("  {} cannot be read: {problem}", entry.id.short());
        }
    }
    println!("{}", "-".repeat(if several { 104 } else { 88 }));
    println!(
        "{} keys; * marks the key your password opened",
        listing.keys.len()
    );
    Ok(crate::exit::OK)
}
