//! The commands other than the service: each prints what it found and
//! says whether it holds; `main.rs` maps that, and a [`Usage`] error, to an
//! exit code. Here anyhow carries the errors, as at every edge.

pub mod audit;

/// Bad usage (exit 2): a flag's value that cannot be taken, printed as
/// `gapless: MESSAGE`. Any other error is a failure (exit 1).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Usage(pub String);
