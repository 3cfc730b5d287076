//! What the live engine may ask of the sealed `readings` files: a series'
//! stored readings in a time range. The store implements it; the engine
//! asks only for a late reading older than its gap memory (see
//! [`super::live`]'s "Memory"), so the question is rare.

use super::series::Point;
use super::DAY;

/// Why the sealed files could not be asked.
#[derive(Debug, thiserror::Error)]
#[error("looking up {meter} {register} at {ts} in the sealed readings: {why}")]
pub struct LookupError {
    pub meter: String,
    pub register: String,
    pub ts: i64,
    pub why: String,
}

/// A series' sealed readings.
pub trait SealedSeries {
    /// The measured, non-conflicting readings of `meter`/`register` sealed
    /// in a receipt before `before_receipt` (every sealed one if None),
    /// whose time lies in `from..=to` (µs), sorted by time.
    fn points_in(
        &mut self,
        meter: &str,
        register: &str,
        from: i64,
        to: i64,
        before_receipt: Option<u64>,
    ) -> Result<Vec<Point>, LookupError>;

    /// The series' nearest sealed readings at or before `ts`, and after it,
    /// searched one UTC day at a time (a date is a partition), no further
    /// than `span` (the series' first and last times).
    fn neighbours(
        &mut self,
        meter: &str,
        register: &str,
        ts: i64,
        span: (i64, i64),
        before_receipt: Option<u64>,
    ) -> Result<(Option<Point>, Option<Point>), LookupError> {
        let day = ts.div_euclid(DAY);
        let mut before = None;
        for d in (span.0.div_euclid(DAY)..=day).rev() {
            let to = (d * DAY + DAY - 1).min(ts);
            let found = self.points_in(meter, register, d * DAY, to, before_receipt)?;
            if let Some(p) = found.last() {
                before = Some(*p);
                break;
            }
        }
        let mut after = None;
        for d in day..=span.1.div_euclid(DAY) {
            let from = (d * DAY).max(ts + 1);
            let found = self.points_in(meter, register, from, d * DAY + DAY - 1, before_receipt)?;
            if let Some(p) = found.first() {
                after = Some(*p);
                break;
            }
        }
        Ok((before, after))
    }
}

/// No sealed files: unit tests of the engine alone, benchmarks that start
/// empty.
pub struct NoSealed;

impl SealedSeries for NoSealed {
    fn points_in(
        &mut self,
        _: &str,
        _: &str,
        _: i64,
        _: i64,
        _: Option<u64>,
    ) -> Result<Vec<Point>, LookupError> {
        Ok(Vec::new())
    }
}
