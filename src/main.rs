//! The `gapless` binary: parse flags, build settings, run, and map errors
//! to an exit code in one place (0 ok, 1 failure, 2 bad usage).

use std::process::ExitCode;

use clap::Parser;
use gapless::cli::{Cli, Command};
use gapless::config::{ServeSettings, PASSWORD_ENV};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&cli.log));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("gapless: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => {
            let settings =
                match ServeSettings::resolve(args.into(), std::env::var(PASSWORD_ENV).ok()) {
                    Ok(s) => s,
                    Err(e) => {
                        eprintln!("gapless: {e}");
                        return Ok(ExitCode::from(2));
                    }
                };
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            rt.block_on(async {
                let shutdown = gapless::app::shutdown_on_signals()?;
                gapless::app::serve(settings, shutdown).await?;
                Ok(ExitCode::SUCCESS)
            })
        }
        Command::Stats { data } => {
            let stats = gapless::app::stats(&data)?;
            println!("{}", serde_json::to_string_pretty(&stats)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(gapless::cli::BenchCommand::Ingest(args)) => {
            gapless::bench::ingest(args)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
