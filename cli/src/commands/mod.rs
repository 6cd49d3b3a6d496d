//! One module per subcommand: its arguments and a `run` that calls the engine
//! and formats the result.

pub mod backup;
pub mod check;
pub mod completion;
pub mod diff;
pub mod drill;
pub mod dump;
pub mod find;
pub mod forget;
pub mod init;
pub mod key;
pub mod lock_wait;
pub mod ls;
pub mod mount;
pub mod prune;
pub mod repair;
pub mod restore;
pub mod restore_to;
pub mod rewrite;
pub mod snapshots;
pub mod stats;
pub mod status;
pub mod sync;
pub mod tag;
pub mod unlock;

use anyhow::Result;

use crate::args::Command;
use crate::context::Context;

/// Runs a command; returns the exit code.
pub async fn run(ctx: &Context, command: Command) -> Result<i32> {
    match command {
        Command::Init(args) => init::run(ctx, args).await,
        Command::Backup(args) => backup::run(ctx, args).await,
        Command::Snapshots(args) => snapshots::run(ctx, args).await,
        Command::Ls(args) => ls::run(ctx, args).await,
        Command::Find(args) => find::run(ctx, args).await,
        Command::Diff(args) => diff::run(ctx, args).await,
        Command::Dump(args) => dump::run(ctx, args).await,
        Command::Stats(args) => stats::run(ctx, args).await,
        Command::Restore(args) => restore::run(ctx, args).await,
        Command::Check(args) => check::run(ctx, args).await,
        Command::Status(args) => status::run(ctx, args).await,
        Command::Sync(args) => sync::run(ctx, args).await,
        Command::Drill(args) => drill::run(ctx, args).await,
        Command::Key(args) => key::run(ctx, args).await,
        Command::Unlock(args) => unlock::run(ctx, args).await,
        Command::Forget(args) => forget::run(ctx, args).await,
        Command::Prune(args) => prune::run(ctx, args).await,
        Command::Tag(args) => tag::run(ctx, args).await,
        Command::Rewrite(args) => rewrite::run(ctx, args).await,
        Command::Completion(args) => completion::completion(&args),
        Command::Man(args) => completion::man(&args),
        Command::Mount(args) => mount::run(ctx, args).await,
    }
}

/// The least Argon2id memory (KiB) and passes a new key gets without
/// `--insecure-kdf`: below them a guessed password costs an attacker who
/// holds a key file next to nothing.
pub const KDF_FLOOR: (u32, u32) = (16 * 1024, 2);

/// Refuses explicit KDF costs below [`KDF_FLOOR`] unless `insecure` (a
/// usage error naming the flag). Costs inherited from the key in use are
/// not checked again.
pub fn kdf_floor(
    memory: Option<u32>,
    iterations: Option<u32>,
    insecure: bool,
) -> anyhow::Result<()> {
    let (min_memory, min_passes) = KDF_FLOOR;
    let weak = memory.is_some_and(|m| m < min_memory) || iterations.is_some_and(|i| i < min_passes);
    if weak && !insecure {
        return Err(crate::exit::usage(format!(
            "--kdf-memory below {min_memory} or --kdf-iterations below {min_passes} makes the \
             password cheap to guess; raise them, or add --insecure-kdf for a throwaway repository"
        )));
    }
    Ok(())
}
