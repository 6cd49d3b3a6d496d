//! Command-line arguments (clap derive). Each flag's doc comment is its help.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::commands;

/// Encrypted, deduplicated backups to several destinations at once.
///
/// With nothing configured, lifeboat keeps one local repository in your data
/// directory. Name destinations with -d (a path, file:///path, s3://… or
/// sftp://…) or in the config file (lifeboat/config.toml in your config
/// directory).
///
/// Exit codes: 0 ok, 1 error, 2 usage, 3 incomplete (some files unreadable),
/// 10 no repository, 11 locked, 12 wrong password, 130 interrupted.
#[derive(Debug, Parser)]
#[command(
    name = "lifeboat",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    /// Global options.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command accepts.
#[derive(Debug, clap::Args)]
pub struct GlobalArgs {
    /// Config file (default: lifeboat/config.toml in the user's config directory).
    #[arg(long, global = true, env = "LIFEBOAT_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Destination: a path, file:///path, s3://bucket/prefix, sftp://user@host/path,
    /// or a name from the config file. Repeat for several.
    #[arg(short = 'd', long = "dest", global = true, value_name = "URL")]
    pub dest: Vec<String>,
    /// Profile from the config file (destinations, paths, excludes).
    #[arg(long, global = true, env = "LIFEBOAT_PROFILE", value_name = "NAME")]
    pub profile: Option<String>,
    /// Read the password from this file (first line). Else LIFEBOAT_PASSWORD, else a prompt.
    #[arg(
        long,
        global = true,
        env = "LIFEBOAT_PASSWORD_FILE",
        value_name = "FILE"
    )]
    pub password_file: Option<PathBuf>,
    /// When the repository is locked, retry for up to this long (90, 30s, 5m, 1h30m) before
    /// failing with exit 11.
    #[arg(long, global = true, value_name = "DURATION", value_parser = crate::duration::parse)]
    pub retry_lock: Option<std::time::Duration>,
    /// Print machine-readable JSON on stdout (and nothing else there).
    #[arg(long, global = true)]
    pub json: bool,
    /// Print only errors.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// More detail (repeat for debug output).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a new repository on every destination.
    Init(commands::init::Args),
    /// Back up files and directories.
    Backup(commands::backup::Args),
    /// List snapshots.
    Snapshots(commands::snapshots::Args),
    /// List the files in a snapshot.
    Ls(commands::ls::Args),
    /// Find files by name or pattern across snapshots (when did I last have it?).
    Find(commands::find::Args),
    /// Show what changed between two snapshots.
    Diff(commands::diff::Args),
    /// Write a file from a snapshot to stdout, or a directory as a tar or zip archive.
    Dump(commands::dump::Args),
    /// How big snapshots are restored and stored; what each destination holds.
    Stats(commands::stats::Args),
    /// Restore a snapshot.
    Restore(commands::restore::Args),
    /// Verify the repository's integrity.
    Check(commands::check::Args),
    /// Show each destination's state: reachable, objects, size, snapshots, lag.
    Status(commands::status::Args),
    /// Copy to each destination what it lacks from the others (also seeds a new one).
    Sync(commands::sync::Args),
    /// Prove that each destination alone brings a snapshot back (a restore drill).
    Drill(commands::drill::Args),
    /// Manage passwords: add, list, remove keys, or change the password (every destination).
    Key(commands::key::Args),
    /// Remove stale locks left by crashed commands (--force: every lock).
    Unlock(commands::unlock::Args),
    /// Remove snapshots by a retention policy (--keep-daily 7 …) or by id.
    Forget(commands::forget::Args),
    /// Remove data no snapshot uses, on every destination (two phases: mark, then delete).
    Prune(commands::prune::Args),
    /// Add, remove or set snapshots' tags.
    Tag(commands::tag::Args),
    /// Store snapshots again without files matching --exclude (a secret backed up by mistake).
    Rewrite(commands::rewrite::Args),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completion(commands::completion::CompletionArgs),
    /// Print the manual page, or write every command's page into a directory (--dir).
    Man(commands::completion::ManArgs),
    /// Show the snapshots as a read-only file system (FUSE) until Ctrl-C or `fusermount -u`.
    Mount(commands::mount::Args),
}
