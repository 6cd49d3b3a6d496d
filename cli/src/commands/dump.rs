//! `lifeboat dump`: a file's bytes, or a directory as a tar or zip
//! archive, on standard output or into a file.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{Context as _, Result};
use lifeboat_engine::dump::ArchiveFormat;
use serde_json::json;

use crate::context::Context;
use crate::output;

/// Arguments of `dump`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    lifeboat dump latest /home/me/taxes-2024.pdf > taxes-2024.pdf\n  \
    lifeboat dump latest /home/me/Documents | tar -x -C /tmp/restored\n  \
    lifeboat dump --archive zip --target docs.zip latest /home/me/Documents\n\n\
    Every blob is verified before it is written. An archive holds the entry's name and \
    everything below it (`Documents/…`).")]
pub struct Args {
    /// Snapshot: `latest`, an id, or a unique prefix of one.
    #[arg(value_name = "SNAPSHOT")]
    pub snapshot: String,
    /// The file or directory in the snapshot (`/` for everything).
    #[arg(value_name = "PATH")]
    pub path: PathBuf,
    /// The archive a directory is written as.
    #[arg(short = 'a', long, value_name = "FORMAT", default_value = "tar")]
    pub archive: ArchiveFormat,
    /// Write into FILE (created; refused if it exists) instead of standard output.
    #[arg(short = 't', long, value_name = "FILE")]
    pub target: Option<PathBuf>,
}

/// Runs `dump`.
pub async fn run(ctx: &Context, args: Args) -> Result<i32> {
    if args.target.is_none() && ctx.global.json {
        return Err(crate::exit::usage(
            "--json needs --target FILE: standard output carries the dump itself",
        ));
    }
    if let Some(target) = &args.target {
        if std::fs::symlink_metadata(target).is_ok() {
            return Err(crate::exit::usage(format!(
                "{} already exists; dump never overwrites, choose another --target",
                target.display()
            )));
        }
    }
    let repo = ctx.open().await?;
    let (_, snapshot) = repo.find_snapshot(&args.snapshot).await?;
    let index = repo.load_index().await?;
    let start = match args.path.to_str() {
        Some(text) => PathBuf::from(crate::sources::snapshot_pattern(text)),
        None => args.path.clone(),
    };
    let outcome = match &args.target {
        None => {
            let stdout = std::io::stdout();
            let archive =
                lifeboat_engine::dump::writes_archive(&repo, &index, &snapshot, &start).await?;
            if archive && stdout.is_terminal() {
                return Err(crate::exit::usage(
                    "an archive would go to the terminal: redirect it (> file.tar, | tar -x) or \
                     give --target FILE",
                ));
            }
            lifeboat_engine::dump::dump(&repo, &index, &snapshot, &start, args.archive, stdout)
                .await?
        }
        Some(target) => {
            // Written beside the target and renamed into place only once
            // complete: a failed dump leaves no file that looks whole.
            let partial = partial_name(target);
            let file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&partial)
                .with_context(|| format!("cannot create {}", partial.display()))?;
            let written = lifeboat_engine::dump::dump(
                &repo,
                &index,
                &snapshot,
                &start,
                args.archive,
                std::io::BufWriter::with_capacity(1 << 20, file),
            )
            .await;
            let done = written.and_then(|o| {
                std::fs::rename(&partial, target)
                    .map_err(|e| lifeboat_engine::Error::io(target, e))
                    .map(|()| o)
            });
            if done.is_err() {
                let _ = std::fs::remove_file(&partial);
            }
            done?
        }
    };
    if outcome.skipped > 0 {
        eprintln!(
            "warning: {} left out: the archive format cannot hold them (sockets; with zip also \
             devices and pipes)",
            output::count(outcome.skipped, "entry")
        );
    }
    if let Some(target) = &args.target {
        if ctx.global.json {
            println!(
                "{}",
                json!({"message_type": "summary", "target": target.display().to_string(),
                       "files": outcome.files, "dirs": outcome.dirs, "others": outcome.others,
                       "skipped": outcome.skipped, "bytes": outcome.bytes, "archive": !outcome.raw})
            );
        } else {
            ctx.say(format!(
                "wrote {} ({}, {}) to {}",
                output::bytes(outcome.bytes),
                output::count(outcome.files, "file"),
                output::count(outcome.dirs, "directory"),
                target.display()
            ));
        }
    }
    Ok(crate::exit::OK)
}

/// `FILE.partial` beside `target`.
fn partial_name(target: &std::path::Path) -> PathBuf {
    let mut name = target.as_os_str().to_os_string();
    name.push(".partial");
    PathBuf::from(name)
}
