//! `lifeboat completion SHELL` and `lifeboat man`: shell completion scripts
//! and manual pages, generated from the same clap definitions as `--help`,
//! so neither can drift from the real flags. Neither needs a repository or a
//! config file.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context as _, Result};
use clap::CommandFactory;

use crate::args::Cli;

/// Arguments of `completion`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Install, for example:\n  \
    bash:  lifeboat completion bash > ~/.local/share/bash-completion/completions/lifeboat\n  \
    zsh:   lifeboat completion zsh > ~/.zfunc/_lifeboat   (with fpath+=~/.zfunc before compinit)\n  \
    fish:  lifeboat completion fish > ~/.config/fish/completions/lifeboat.fish")]
pub struct CompletionArgs {
    /// The shell to write a completion script for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// Arguments of `man`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Install, for example:\n  \
    lifeboat man --dir ~/.local/share/man/man1 && man lifeboat-find")]
pub struct ManArgs {
    /// Write every page (lifeboat.1 and one lifeboat-COMMAND.1 per command) into DIR,
    /// created if missing. Without it, the main page goes to standard output.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// Writes the completion script for `args.shell` to standard output.
///
/// # Errors
/// Standard output closed.
pub fn completion(args: &CompletionArgs) -> Result<i32> {
    let mut command = Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut command, "lifeboat", &mut script);
    std::io::stdout()
        .lock()
        .write_all(&script)
        .context("writing the completion script")?;
    Ok(crate::exit::OK)
}

/// Writes the manual pages.
///
/// # Errors
/// The directory cannot be created or written.
pub fn man(args: &ManArgs) -> Result<i32> {
    let command = Cli::command();
    match &args.dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            clap_mangen::generate_to(command, dir)
                .with_context(|| format!("cannot write the manual pages into {}", dir.display()))?;
        }
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(command)
                .render(&mut page)
                .context("rendering the manual page")?;
            std::io::stdout()
                .lock()
                .write_all(&page)
                .context("writing the manual page")?;
        }
    }
    Ok(crate::exit::OK)
}
