//! `lifeboat init`: create a repository on every destination.

use anyhow::{Context as _, Result};
use lifeboat_engine::{DestinationSet, KdfParams, RepoParams, Repository};
use serde_json::json;

use crate::context::Context;
use crate::password;

/// Arguments of `init`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Default zstd compression level for new data (0 = off, 1-22).
    #[arg(long, value_name = "LEVEL", value_parser = clap::value_parser!(i32).range(0..=22))]
    pub compression: Option<i32>,
    /// Argon2id memory cost in KiB for this password's key (default 65536 = 64 MiB).
    #[arg(long, value_name = "KIB", value_parser = clap::value_parser!(u32).range(8..=4_194_304))]
    pub kdf_memory: Option<u32>,
    /// Argon2id passes (default 3).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=64))]
    pub kdf_iterations: Option<u32>,
    /// Accept --kdf-memory below 16384 (16 MiB) or --kdf-iterations below 2: a password guess
    /// then costs an attacker next to nothing. For tests and throwaway repositories only.
    #[arg(long)]
    pub insecure_kdf: bool,
}

/// Creates a repository on the selected destinations with a new password.
pub async fn create(ctx: &Context, args: &Args, dests: DestinationSet) -> Result<Repository> {
    let password = password::new(ctx.global.password_file.as_deref())?;
    let mut params = RepoParams::default();
    if let Some(level) = args
        .compression
        .or(ctx.profile()?.and_then(|p| p.compression))
    {
        params.compression = level;
    }
    super::kdf_floor(args.kdf_memory, args.kdf_iterations, args.insecure_kdf)?;
    let defaults = KdfParams::default();
    let kdf = KdfParams {
        memory_kib: args.kdf_memory.unwrap_or(defaults.memory_kib),
        iterations: args.kdf_iterations.unwrap_or(defaults.iterations),
        parallelism: defaults.parallelism,
    };
    Ok(Repository::init(dests, &password, params, kdf).await?)
}

/// Creates the directories above the embedded default repository: it lives
/// in the user's own data directory, which may not exist yet. (Other local
/// destinations must have their parent already: a missing one is an
/// unmounted disk or a typo.)
pub fn make_default_parent() -> Result<()> {
    let path = crate::config::default_repository_path()?;
    if let Some(parent) = path.parent() {
        lifeboat_backends::private::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    Ok(())
}

/// Runs `init`.
pub async fn run(ctx: &Context, args: Args) -> Result<i32> {
    let selection = ctx.selection()?;
    if selection.embedded_default {
        make_default_parent()?;
    }
    let dests = selection.into_set()?;
    let repo = create(ctx, &args, dests).await?;
    let locations: Vec<_> = repo
        .destinations()
        .backends()
        .iter()
        .map(|b| json!({"name": b.name(), "location": b.location()}))
        .collect();
    if ctx.global.json {
        println!(
            "{}",
            json!({"message_type": "init", "repository_id": repo.id().to_hex(), "destinations": locations})
        );
    } else {
        for b in repo.destinations().backends() {
            ctx.say(format!(
                "created lifeboat repository {} at {} ({})",
                repo.id().short(),
                b.name(),
                b.location()
            ));
        }
        ctx.say(
            "Keep your password safe: without it nobody, including you, can restore this data.",
        );
    }
    Ok(crate::exit::OK)
}
