//! `lifeboat`: encrypted, deduplicated backups to several destinations at once.

mod args;
mod commands;
mod config;
mod context;
mod duration;
mod exit;
mod filter;
mod health;
mod known_keys;
mod output;
mod password;
mod selection;
mod sources;

use clap::Parser;

fn init_logging(verbose: u8, quiet: bool) {
    let default = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("LIFEBOAT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .without_time()
        .init();
}

/// Keeps glibc malloc from inflating peak memory.
///
/// The backup pipeline allocates and frees many chunk- and pack-sized buffers
/// across threads. glibc's default raises its mmap threshold to the largest
/// buffer freed so far, after which 16 MiB packs come from per-thread arenas
/// that it does not return: peak RSS grew by ~50 MB on /usr/share. A fixed
/// threshold sends packs to mmap; a high trim threshold keeps the heap from
/// being returned and re-faulted on every free (which cost 4x in time).
/// Two arenas instead of eight per core: each arena keeps its own free
/// chunk-sized blocks, and restore's many blocking threads held ~60 MB more
/// with the default (194 -> 130 MB on /usr/share, same time).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tune_malloc() {
    // SAFETY: called first thing in main, before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 8 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 64 << 20);
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_malloc() {}

fn main() {
    tune_malloc();
    let cli = args::Cli::parse();
    init_logging(cli.global.verbose, cli.global.quiet);
    // Generated from the argument definitions alone: no config, no runtime.
    let generated = match &cli.command {
        args::Command::Completion(a) => Some(commands::completion::completion(a)),
        args::Command::Man(a) => Some(commands::completion::man(a)),
        _ => None,
    };
    if let Some(result) = generated {
        std::process::exit(match result {
            Ok(code) => code,
            Err(e) => {
                eprintln!("error: {}", exit::one_line(&e));
                exit::code_for(&e)
            }
        });
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(exit::ERROR);
        }
    };
    let code = runtime.block_on(async move {
        let ctx = match context::Context::new(cli.global) {
            Ok(ctx) => ctx,
            Err(e) => {
                eprintln!("error: {}", exit::one_line(&e));
                return exit::ERROR;
            }
        };
        let cancel = ctx.cancel.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                cancel.store(true, std::sync::atomic::Ordering::Relaxed);
                // Feedback for the person at the terminal; on a pipe the final
                // `error: interrupted …` line is the one message.
                if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
                    eprintln!("\ninterrupted: stopping (press Ctrl-C again to quit at once)");
                }
                if tokio::signal::ctrl_c().await.is_ok() {
                    std::process::exit(exit::INTERRUPTED);
                }
            }
        });
        match commands::run(&ctx, cli.command).await {
            Ok(code) => code,
            Err(e) => {
                let code = exit::code_for(&e);
                let message = exit::one_line(&e);
                if ctx.global.json {
                    let msg = serde_json::json!({"message_type": "error", "error": message, "exit_code": code});
                    println!("{msg}");
                }
                eprintln!("error: {message}");
                code
            }
        }
    });
    // Do not wait for blocked stdin readers or detached tasks.
    runtime.shutdown_background();
    std::process::exit(code);
}
