//! Continuity: what a meter's readings say about what is missing.
//!
//! Pure: no I/O, the clock is an argument. The same rules serve the batch
//! pass over stored Parquet ([`series::analyze`], [`window::evaluate`]) and
//! the live engine that follows readings as they are sealed ([`live`]).
//!
//! - [`registry`]: the optional meter registry (CSV): expected intervals,
//!   groups, installation and removal times (meter replacements).
//! - [`series`]: one series (meter, register) in time order → its gaps,
//!   sequence-counter losses, register decreases (explained or not) and
//!   implausible consumption across gaps.
//! - [`window`]: the outage-window report: per series and in summary,
//!   expected / received / late / missing, opening and closing values, and
//!   whether consumption across the window is exactly provable.
//! - [`estimate`]: linear interpolation of missing interval values.
//! - [`interval`]: the one rule for an unknown interval (both passes).
//! - [`live`]: per-series state as readings arrive, out of order included.

pub mod estimate;
pub mod interval;
pub mod live;
pub mod registry;
pub mod sealed;
pub mod series;
pub mod window;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::Deserialize;

use crate::reading::Medium;

/// What continuity needs besides the readings: the rules and the registry.
#[derive(Debug, Clone, Default)]
pub struct Context {
    pub config: ContinuityConfig,
    pub registry: Arc<registry::Registry>,
}

impl Context {
    /// How a series is judged, before its readings are looked at: medium,
    /// interval and counter wrap from the registry entry, else the
    /// configuration; `interval: None` means "infer it". `frame_counter`:
    /// the readings came over LoRaWAN (32-bit frame counters).
    pub(crate) fn setup(
        &self,
        meter: &str,
        medium: Medium,
        frame_counter: bool,
    ) -> live::SeriesSetup {
        let entry = self.registry.latest(meter);
        let medium = entry.map_or(medium, |e| e.medium);
        let secs = |s: u64, source| Interval {
            micros: (s as i64).saturating_mul(SECOND),
            source,
        };
        let interval = entry
            .and_then(|e| e.expected_interval_s)
            .map(|s| secs(s, IntervalSource::Registry))
            .or_else(|| {
                self.config
                    .intervals_s
                    .get(&medium)
                    .map(|&s| secs(s, IntervalSource::Config))
            });
        let seq_wrap = entry
            .and_then(|e| e.seq_wrap)
            .or_else(|| frame_counter.then_some(FRAME_COUNTER_WRAP))
            .or_else(|| self.config.seq_wrap.get(&medium).copied())
            .unwrap_or(DEFAULT_SEQ_WRAP);
        live::SeriesSetup {
            medium,
            interval,
            seq_wrap,
        }
    }
}

/// LoRaWAN frame counters are 32 bits.
pub(crate) const FRAME_COUNTER_WRAP: u64 = 1 << 32;

/// Microseconds per second.
pub(crate) const SECOND: i64 = 1_000_000;
/// Microseconds per day.
pub(crate) const DAY: i64 = 86_400 * SECOND;

/// Default tolerance: a gap is more than `interval × 1.5` without a reading.
pub(crate) const DEFAULT_TOLERANCE: f64 = 0.5;
/// SAP IS-U's example bounds for consumption across a gap, relative to the
/// consumption the meter's own history predicts: above +70 % or below −40 %.
pub(crate) const DEFAULT_PLAUSIBLE_ABOVE: f64 = 0.7;
pub(crate) const DEFAULT_PLAUSIBLE_BELOW: f64 = 0.4;
/// A reading is late when it was received more than this after its own time.
pub(crate) const DEFAULT_LATE_AFTER_S: u64 = 3_600;
/// Gaps longer than this are never filled with estimates.
pub(crate) const DEFAULT_MAX_ESTIMATE_GAP_S: u64 = 7 * 86_400;
/// wM-Bus access numbers are one byte.
pub(crate) const DEFAULT_SEQ_WRAP: u64 = 256;
/// Heat cost allocators reset their current-period counter on this date
/// (month-day) unless the meter reports its own set date.
pub const DEFAULT_HCA_SET_DATE: &str = "12-31";
/// Fewest intervals between readings from which an interval is inferred.
pub(crate) const MIN_INFER_INTERVALS: usize = 2;
/// A series without a registry or configured interval is judged with the
/// interval inferred from its first this many readings in receipt order
/// ([`series::FirstReceived`]); until it has them, with the built-in one.
pub(crate) const INFER_READINGS: usize = 9;
/// Fewest regular intervals of history before consumption across a gap is
/// judged for plausibility.
pub(crate) const MIN_PLAUSIBILITY_INTERVALS: u64 = 8;

/// Built-in expected intervals, used when neither the registry nor the
/// configuration gives one and the meter's history is too short to infer
/// it: heat and cooling meters every 15 min, water hourly, HCAs daily.
pub(crate) fn builtin_interval_s(medium: Medium) -> u64 {
    match medium {
        Medium::Heat | Medium::Cooling => 900,
        Medium::Water | Medium::WarmWater => 3_600,
        Medium::Hca => 86_400,
    }
}

/// Where a meter's expected interval came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IntervalSource {
    /// The meter's registry entry.
    Registry,
    /// The per-medium default of the configuration.
    Config,
    /// The median time between the meter's own readings.
    Inferred,
    /// Built in ([`builtin_interval_s`]): too little history to infer.
    Default,
}

impl IntervalSource {
    pub fn as_str(self) -> &'static str {
        match self {
            IntervalSource::Registry => "registry",
            IntervalSource::Config => "config",
            IntervalSource::Inferred => "inferred",
            IntervalSource::Default => "default",
        }
    }

    /// The source an `interval_source` column names.
    pub fn parse(s: &str) -> Option<IntervalSource> {
        [
            IntervalSource::Registry,
            IntervalSource::Config,
            IntervalSource::Inferred,
            IntervalSource::Default,
        ]
        .into_iter()
        .find(|i| i.as_str() == s)
    }
}

impl fmt::Display for IntervalSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A series' expected interval and where it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Interval {
    pub micros: i64,
    pub source: IntervalSource,
}

/// The `[continuity]` table of the TOML config (every key optional).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ContinuityFileConfig {
    pub tolerance: Option<f64>,
    pub late_after_s: Option<u64>,
    pub max_estimate_gap_s: Option<u64>,
    pub plausible_above: Option<f64>,
    pub plausible_below: Option<f64>,
    pub hca_set_date: Option<String>,
    /// Per-medium expected interval in seconds: `{ heat = 900, water = 3600 }`.
    #[serde(default)]
    pub intervals_s: BTreeMap<String, u64>,
    /// Per-medium sequence-counter wrap: `{ heat = 256 }`.
    #[serde(default)]
    pub seq_wrap: BTreeMap<String, u64>,
}

/// Validated continuity rules.
#[derive(Debug, Clone, PartialEq)]
pub struct ContinuityConfig {
    /// A gap is more than `interval × (1 + tolerance)` without a reading.
    pub tolerance: f64,
    /// Received more than this after its own timestamp = late (µs).
    pub late_after: i64,
    /// Longest gap that estimation may fill (µs).
    pub max_estimate_gap: i64,
    /// Consumption across a gap above `expected × (1 + plausible_above)` or
    /// below `expected × (1 − plausible_below)` is implausible.
    pub plausible_above: f64,
    pub plausible_below: f64,
    /// Month and day on which heat cost allocators reset.
    pub hca_set_date: (u32, u32),
    pub intervals_s: BTreeMap<Medium, u64>,
    pub seq_wrap: BTreeMap<Medium, u64>,
}

impl Default for ContinuityConfig {
    fn default() -> Self {
        ContinuityConfig {
            tolerance: DEFAULT_TOLERANCE,
            late_after: DEFAULT_LATE_AFTER_S as i64 * SECOND,
            max_estimate_gap: DEFAULT_MAX_ESTIMATE_GAP_S as i64 * SECOND,
            plausible_above: DEFAULT_PLAUSIBLE_ABOVE,
            plausible_below: DEFAULT_PLAUSIBLE_BELOW,
            hca_set_date: (12, 31),
            intervals_s: BTreeMap::new(),
            seq_wrap: BTreeMap::new(),
        }
    }
}

/// A `[continuity]` setting that cannot be taken: its key and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {why}")]
pub(crate) struct SettingError {
    pub key: String,
    pub why: String,
}

fn bad(key: impl Into<String>, why: impl Into<String>) -> SettingError {
    SettingError {
        key: key.into(),
        why: why.into(),
    }
}

impl ContinuityConfig {
    /// Validates the file's `[continuity]` table; errors name the key.
    pub(crate) fn from_file(f: &ContinuityFileConfig) -> Result<ContinuityConfig, SettingError> {
        let mut c = ContinuityConfig::default();
        if let Some(t) = f.tolerance {
            if !(t.is_finite() && t >= 0.0) {
                return Err(bad("continuity.tolerance", format!("{t} must be ≥ 0")));
            }
            c.tolerance = t;
        }
        if let Some(s) = f.late_after_s {
            c.late_after = secs(s, "continuity.late_after_s")?;
        }
        if let Some(s) = f.max_estimate_gap_s {
            c.max_estimate_gap = secs(s, "continuity.max_estimate_gap_s")?;
        }
        for (key, v, slot) in [
            ("plausible_above", f.plausible_above, &mut c.plausible_above),
            ("plausible_below", f.plausible_below, &mut c.plausible_below),
        ] {
            if let Some(v) = v {
                if !(v.is_finite() && v >= 0.0) {
                    return Err(bad(format!("continuity.{key}"), format!("{v} must be ≥ 0")));
                }
                *slot = v;
            }
        }
        if c.plausible_below > 1.0 {
            return Err(bad(
                "continuity.plausible_below",
                "must be at most 1 (100 %)",
            ));
        }
        if let Some(d) = &f.hca_set_date {
            c.hca_set_date = parse_month_day(d)
                .ok_or_else(|| bad("continuity.hca_set_date", format!("{d:?} is not MM-DD")))?;
        }
        for (m, v) in &f.intervals_s {
            let medium = parse_medium(m, "continuity.intervals_s")?;
            if *v == 0 {
                return Err(bad(format!("continuity.intervals_s.{m}"), "must be > 0"));
            }
            secs(*v, "continuity.intervals_s")?;
            c.intervals_s.insert(medium, *v);
        }
        for (m, v) in &f.seq_wrap {
            let medium = parse_medium(m, "continuity.seq_wrap")?;
            if *v < 2 {
                return Err(bad(format!("continuity.seq_wrap.{m}"), "must be ≥ 2"));
            }
            c.seq_wrap.insert(medium, *v);
        }
        Ok(c)
    }

    /// The gap threshold for an interval (µs): longer than this = a gap.
    pub(crate) fn gap_threshold(&self, interval: i64) -> i64 {
        (interval as f64 * (1.0 + self.tolerance)) as i64
    }
}

fn secs(s: u64, key: &str) -> Result<i64, SettingError> {
    i64::try_from(s)
        .ok()
        .and_then(|s| s.checked_mul(SECOND))
        .ok_or_else(|| bad(key, format!("{s} s is too large")))
}

fn parse_medium(m: &str, key: &str) -> Result<Medium, SettingError> {
    Medium::parse(m).ok_or_else(|| {
        bad(
            key,
            format!("unknown medium {m:?} (heat, cooling, water, warm_water, hca)"),
        )
    })
}

/// `MM-DD` → (month, day).
pub(crate) fn parse_month_day(s: &str) -> Option<(u32, u32)> {
    let (m, d) = s.split_once('-')?;
    let (m, d): (u32, u32) = (m.parse().ok()?, d.parse().ok()?);
    crate::time::midnight_utc(2000, m, d)?;
    Some((m, d))
}

/// The first `k` in `[lo, hi)` for which `below(k)` is false, `below` being
/// true up to some point and false after it (a binary search over a
/// predicate, where there is no slice to search).
pub(crate) fn first_not_below(mut lo: u64, mut hi: u64, below: impl Fn(u64) -> bool) -> u64 {
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if below(mid) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}

/// Rounds `num / den` to the nearest integer (halves away from zero); `den > 0`.
pub(crate) fn div_round(num: i128, den: i128) -> i128 {
    debug_assert!(den > 0);
    if num >= 0 {
        (num + den / 2) / den
    } else {
        -((-num + den / 2) / den)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_config_is_validated_with_the_key_named() {
        let ok: ContinuityFileConfig = toml::from_str(
            "tolerance = 0.25\nhca_set_date = \"09-30\"\n[intervals_s]\nheat = 240\n[seq_wrap]\nwater = 65536\n",
        )
        .unwrap();
        let c = ContinuityConfig::from_file(&ok).unwrap();
        assert_eq!(c.tolerance, 0.25);
        assert_eq!(c.hca_set_date, (9, 30));
        assert_eq!(c.intervals_s[&Medium::Heat], 240);
        assert_eq!(c.seq_wrap[&Medium::Water], 65536);
        for (toml, needle) in [
            ("tolerance = -1.0", "continuity.tolerance"),
            ("hca_set_date = \"02-30\"", "hca_set_date"),
            ("[intervals_s]\ngas = 60", "unknown medium \"gas\""),
            ("[intervals_s]\nheat = 0", "must be > 0"),
            ("[seq_wrap]\nheat = 1", "must be ≥ 2"),
            ("plausible_below = 1.5", "plausible_below"),
        ] {
            let f: ContinuityFileConfig = toml::from_str(toml).unwrap();
            let e = ContinuityConfig::from_file(&f).unwrap_err().to_string();
            assert!(e.contains(needle), "{toml}: {e}");
        }
    }

    #[test]
    fn rounding_is_half_away_from_zero() {
        assert_eq!(div_round(5, 2), 3);
        assert_eq!(div_round(-5, 2), -3);
        assert_eq!(div_round(4, 3), 1);
        assert_eq!(div_round(0, 7), 0);
    }
}
