//! The commands other than the service (`serve` is [`crate::service`]): each
//! returns or prints what it found and says whether it holds; `main.rs`
//! maps that, and a [`Usage`] error (or [`CommandError::Usage`]), to an
//! exit code. Here anyhow carries the errors of `audit`, as at every edge.
//!
//! - [`stats`]: the commit log's counters and the journal's pending records.
//! - [`report_command`], [`gaps_command`], [`alerts_command`]: the queries
//!   over the sealed tables; what to print, or a [`CommandError`].
//! - [`compact_command`]: merges each ended date's readings files now.
//! - [`audit`]: verify, prove, check-proof, consistency, pubkey, keygen.
//! - [`demo()`]: `gapless demo`, the service on a simulated fleet; and
//!   [`bench()`]: `gapless bench`. Their modules are private: what they
//!   build to measure or to show is no part of the library's API.

mod alerts;
pub mod audit;
mod bench;
mod compact;
mod demo;
mod gaps;
mod report;
mod stats;

pub use alerts::alerts_command;
pub use compact::compact_command;
pub use gaps::gaps_command;
pub use report::report_command;
pub use stats::stats;

/// `gapless demo`: true when the demo found what it should.
pub fn demo(args: crate::cli::DemoArgs) -> anyhow::Result<bool> {
    demo::run(args)
}

/// `gapless bench …`: runs one benchmark and prints its figures.
pub fn bench(cmd: crate::cli::BenchCommand) -> anyhow::Result<()> {
    use crate::cli::BenchCommand;
    match cmd {
        BenchCommand::Ingest(args) => bench::ingest::ingest(args),
        BenchCommand::Report(args) => bench::report::run(&args),
        BenchCommand::LiveState(args) => bench::live_state::run(&args),
        BenchCommand::Lookup(args) => bench::lookup::run(&args),
        BenchCommand::Alerts(args) => bench::alerts::run(&args),
    }
}

/// Bad usage (exit 2): a flag's value that cannot be taken, printed as
/// `gapless: MESSAGE`. Any other error is a failure (exit 1).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Usage(pub String);

/// Why a query command (`report`, `gaps`, `alerts`) failed: the user's input (exit 2)
/// or the data (exit 1).
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Report(#[from] crate::report::ReportError),
    #[error("reading alerts: {0}")]
    Alerts(String),
    #[error(transparent)]
    Certificate(#[from] crate::report::certificate::CertificateError),
}

fn usage(e: impl std::fmt::Display) -> CommandError {
    CommandError::Usage(e.to_string())
}

fn parse_medium_flag(m: Option<&str>) -> Result<Option<crate::reading::Medium>, CommandError> {
    m.map(|m| {
        crate::reading::Medium::parse(m).ok_or_else(|| {
            usage(format!(
                "--medium {m:?}: not one of heat, cooling, water, warm_water, hca"
            ))
        })
    })
    .transpose()
}

fn parse_time_flag(flag: &str, s: &str) -> Result<i64, CommandError> {
    crate::time::parse_time(s).map_err(|e| usage(format!("{flag}: {e}")))
}
