//! Where "now" comes from: the system clock, or a clock the caller moves
//! (the demo replays a simulated week at full speed, and tests control
//! time). Receive times are stamped from it.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

#[derive(Debug, Clone, Default)]
pub enum Clock {
    /// The system's UTC clock.
    #[default]
    System,
    /// Microseconds since the epoch, set by whoever holds the other handle.
    Manual(Arc<AtomicI64>),
}

impl Clock {
    /// A manual clock starting at `micros`, and the handle that moves it.
    pub fn manual(micros: i64) -> (Clock, Arc<AtomicI64>) {
        let t = Arc::new(AtomicI64::new(micros));
        (Clock::Manual(t.clone()), t)
    }

    /// Now, in microseconds since the Unix epoch (UTC).
    pub fn now_micros(&self) -> i64 {
        match self {
            Clock::System => chrono::Utc::now().timestamp_micros(),
            Clock::Manual(t) => t.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let (c, handle) = Clock::manual(5);
        assert_eq!(c.now_micros(), 5);
        handle.store(9, Ordering::Relaxed);
        assert_eq!(c.now_micros(), 9);
        assert!(Clock::System.now_micros() > 1_600_000_000_000_000);
    }
}
