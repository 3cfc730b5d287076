//! Fault seams for the fault tests (`tests/faults`): failures that a real
//! disk produces rarely and a test cannot otherwise provoke on demand.
//!
//! Armed only when BOTH environment variables are set, so that no
//! configuration, flag or stray variable can trigger one by accident:
//!
//! ```text
//! GAPLESS_FAULT=<point>:<n>          which fault, from the n-th time on (n ≥ 1)
//! GAPLESS_FAULT_ARMED=break-this-process
//! ```
//!
//! Points:
//! - `journal-fsync:N`: the N-th journal `fdatasync` and every later one
//!   fail with EIO (the commit is not durable: nothing of it is acked).
//! - `seal-panic:N`: the N-th seal panics after writing its Parquet files,
//!   before its commit (a crash in the middle of a seal).
//!
//! An armed fault is logged at start as an error.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

pub(crate) const FAULT_ENV: &str = "GAPLESS_FAULT";
pub(crate) const ARMED_ENV: &str = "GAPLESS_FAULT_ARMED";
pub(crate) const ARMED_VALUE: &str = "break-this-process";

/// Where a fault can be injected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Point {
    JournalFsync,
    SealPanic,
}

impl Point {
    fn parse(s: &str) -> Option<Point> {
        match s {
            "journal-fsync" => Some(Point::JournalFsync),
            "seal-panic" => Some(Point::SealPanic),
            _ => None,
        }
    }
}

#[derive(Debug)]
struct Armed {
    point: Point,
    from: u64,
    seen: AtomicU64,
}

fn armed() -> Option<&'static Armed> {
    static ARMED: OnceLock<Option<Armed>> = OnceLock::new();
    ARMED
        .get_or_init(|| {
            let spec = std::env::var(FAULT_ENV).ok()?;
            if std::env::var(ARMED_ENV).ok().as_deref() != Some(ARMED_VALUE) {
                tracing::warn!(
                    "{FAULT_ENV} is set but {ARMED_ENV} is not {ARMED_VALUE:?}: ignored"
                );
                return None;
            }
            let (point, n) = spec.split_once(':').unwrap_or((&spec, "1"));
            let (Some(point), Ok(from)) = (Point::parse(point), n.parse::<u64>()) else {
                tracing::warn!("{FAULT_ENV}={spec:?}: not <journal-fsync|seal-panic>:<n>; ignored");
                return None;
            };
            tracing::error!("FAULT INJECTION ARMED: {spec} (tests only)");
            Some(Armed {
                point,
                from: from.max(1),
                seen: AtomicU64::new(0),
            })
        })
        .as_ref()
}

/// Logs an armed fault at start (reading the environment once).
pub(crate) fn announce() {
    let _ = armed();
}

/// Whether the fault at `point` strikes now (counting this passage).
pub(crate) fn strikes(point: Point) -> bool {
    match armed() {
        Some(a) if a.point == point => a.seen.fetch_add(1, Ordering::Relaxed) + 1 >= a.from,
        _ => false,
    }
}
