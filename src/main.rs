//! The `gapless` binary: parse flags, build settings, run, and map errors
//! to an exit code in one place (0 ok, 1 failure, 2 bad usage, 141 output
//! closed early: `gapless stats | head`).

use std::process::ExitCode;

use clap::Parser;
use gapless::cli::{Cli, Command};
use gapless::config::{ServeSettings, PASSWORD_ENV};

fn main() -> ExitCode {
    exit_quietly_on_broken_pipe();
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        let default = match cli.command {
            // The demo and the benchmarks print their own results; the
            // service's per-seal lines would bury them.
            Command::Demo(_) | Command::Bench(_) => "warn",
            _ => "info",
        };
        tracing_subscriber::EnvFilter::new(cli.log.as_deref().unwrap_or(default))
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(gapless::progress::log_writer)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match run(cli) {
        Ok(code) => code,
        Err(e) => match e.downcast_ref::<gapless::commands::Usage>() {
            Some(usage) => {
                eprintln!("gapless: {usage}");
                ExitCode::from(2)
            }
            None => {
                eprintln!("gapless: error: {e:#}");
                ExitCode::from(1)
            }
        },
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => {
            let settings =
                match ServeSettings::resolve((*args).into(), std::env::var(PASSWORD_ENV).ok()) {
                    Ok(s) => s,
                    Err(e) => {
                        eprintln!("gapless: {e}");
                        return Ok(ExitCode::from(2));
                    }
                };
            until_signal(|shutdown| async move {
                gapless::service::serve(settings, shutdown).await?;
                Ok(())
            })
        }
        Command::Stats { data } => {
            let stats = gapless::commands::stats(&data)?;
            println!("{}", serde_json::to_string_pretty(&stats)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Compact(args) => {
            let round = gapless::commands::compact_command(&args, now())?;
            for c in &round.done {
                println!(
                    "{}: {} readings files, {} rows -> {} ({:.1} MB)",
                    c.date,
                    c.sources,
                    c.rows,
                    c.path,
                    c.bytes as f64 / 1e6
                );
            }
            for (date, e) in &round.failed {
                eprintln!("gapless: {date}: not compacted: {e}");
            }
            println!("compacted {} dates", round.done.len());
            Ok(if round.failed.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Report(args) => query(gapless::commands::report_command(&args, now())),
        Command::Gaps(args) => query(gapless::commands::gaps_command(&args, now())),
        Command::Alerts(args) => query(gapless::commands::alerts_command(&args)),
        Command::Demo(args) => {
            let ok = gapless::commands::demo(args)?;
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Audit(cmd) => Ok(if gapless::commands::audit::run(cmd)? {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        }),
        Command::Witness(args) => {
            let cfg = match gapless::witness::config(
                &args.listen,
                args.state,
                &args.key,
                args.name.as_deref(),
                &args.logs,
            ) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("gapless: {e}");
                    return Ok(ExitCode::from(2));
                }
            };
            until_signal(|shutdown| async move {
                gapless::witness::server::run(cfg, shutdown).await?;
                Ok(())
            })
        }
        Command::Bench(cmd) => {
            gapless::commands::bench(cmd)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Runs a server on two worker threads until SIGINT/SIGTERM (the
/// receiver turns true), then exits 0 once it has stopped.
fn until_signal<F, Fut>(server: F) -> anyhow::Result<ExitCode>
where
    F: FnOnce(tokio::sync::watch::Receiver<bool>) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let shutdown = gapless::service::shutdown_on_signals()?;
        server(shutdown).await?;
        Ok(ExitCode::SUCCESS)
    })
}

fn now() -> i64 {
    gapless::time::now_micros()
}

/// Prints a query's output; bad usage exits 2, a failure 1.
fn query(r: Result<String, gapless::commands::CommandError>) -> anyhow::Result<ExitCode> {
    use std::io::Write;
    match r {
        Ok(out) => match std::io::stdout().write_all(out.as_bytes()) {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                Ok(ExitCode::from(BROKEN_PIPE_EXIT))
            }
            r => r.map(|()| ExitCode::SUCCESS).map_err(Into::into),
        },
        Err(gapless::commands::CommandError::Usage(m)) => {
            eprintln!("gapless: {m}");
            Ok(ExitCode::from(2))
        }
        Err(e) => Err(e.into()),
    }
}

/// Exit status when stdout or stderr is closed before we are done writing
/// (`gapless stats | head`): 128 + SIGPIPE, what a shell reports for a tool
/// that SIGPIPE ended, so `set -o pipefail` scripts see what they see with
/// coreutils.
const BROKEN_PIPE_EXIT: u8 = 141;

/// Rust ignores SIGPIPE, so `println!` into a closed pipe panics ("failed
/// printing to stdout: Broken pipe"). A reader that stopped reading is not
/// a bug: leave quietly with [`BROKEN_PIPE_EXIT`] instead of a panic
/// message, whichever command (or thread) was printing. Every other panic
/// goes to the default hook as before.
fn exit_quietly_on_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.starts_with("failed printing to std") && msg.contains("Broken pipe") {
            std::process::exit(i32::from(BROKEN_PIPE_EXIT));
        }
        default(info);
    }));
}
