//! `lifeboat`: encrypted, deduplicated backups to several destinations at once.

mod args;
mod commands;
mod config;
mod context;
mod exit;
mod output;
mod password;

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
        .with_target(false)
        .without_time()
        .init();
}

fn main() {
    let cli = args::Cli::parse();
    init_logging(cli.global.verbose, cli.global.quiet);
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
                eprintln!("error: {e:#}");
                return exit::ERROR;
            }
        };
        let cancel = ctx.cancel.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                cancel.store(true, std::sync::atomic::Ordering::Relaxed);
                eprintln!("\ninterrupted: stopping (press Ctrl-C again to quit at once)");
                if tokio::signal::ctrl_c().await.is_ok() {
                    std::process::exit(exit::INTERRUPTED);
                }
            }
        });
        match commands::run(&ctx, cli.command).await {
            Ok(code) => code,
            Err(e) => {
                let code = exit::code_for(&e);
                if ctx.global.json {
                    let msg = serde_json::json!({"message_type": "error", "error": format!("{e:#}"), "exit_code": code});
                    println!("{msg}");
                }
                eprintln!("error: {e:#}");
                code
            }
        }
    });
    // Do not wait for blocked stdin readers or detached tasks.
    runtime.shutdown_background();
    std::process::exit(code);
}
