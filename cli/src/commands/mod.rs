//! One module per subcommand: its arguments and a `run` that calls the engine
//! and formats the result.

pub mod backup;
pub mod check;
pub mod drill;
pub mod forget;
pub mod init;
pub mod key;
pub mod lock_wait;
pub mod ls;
pub mod prune;
pub mod repair;
pub mod restore;
pub mod snapshots;
pub mod status;
pub mod sync;
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
        Command::Restore(args) => restore::run(ctx, args).await,
        Command::Check(args) => check::run(ctx, args).await,
        Command::Status(args) => status::run(ctx, args).await,
        Command::Sync(args) => sync::run(ctx, args).await,
        Command::Drill(args) => drill::run(ctx, args).await,
        Command::Key(args) => key::run(ctx, args).await,
        Command::Unlock(args) => unlock::run(ctx, args).await,
        Command::Forget(args) => forget::run(ctx, args).await,
        Command::Prune(args) => prune::run(ctx, args).await,
    }
}
