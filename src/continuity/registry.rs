//! The meter registry: what the billing system knows about each meter.
//!
//! A CSV file (`--registry FILE`), documented in `schemas/registry.md`:
//!
//! ```text
//! meter_id,medium,expected_interval_s,group,installed_at,removed_at
//! HZ-000123,heat,900,building-7,2021-01-01,
//! ```
//!
//! The last three columns may be empty; optional columns after them:
//! `seq_wrap` (the meter's sequence-counter wrap) and `alert_after_s` (the
//! silence after which the meter is alerted). A meter may have several rows: one
//! per installation. A replacement is recorded as a row whose `removed_at`
//! ends one installation and a row whose `installed_at` starts the next; a
//! register that goes down at that moment is explained.

use std::collections::BTreeMap;
use std::path::Path;

use crate::reading::{Medium, MeterId};

pub(crate) const HEADER: [&str; 6] = [
    "meter_id",
    "medium",
    "expected_interval_s",
    "group",
    "installed_at",
    "removed_at",
];

/// One installation of a meter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryEntry {
    pub meter_id: String,
    pub medium: Medium,
    pub expected_interval_s: Option<u64>,
    pub group: Option<String>,
    /// µs UTC.
    pub installed_at: Option<i64>,
    pub removed_at: Option<i64>,
    pub seq_wrap: Option<u64>,
    /// Silence after which the meter is alerted (overrides the default of
    /// a multiple of its interval).
    pub alert_after_s: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("cannot read registry {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("registry line {line}: {message}")]
    Invalid { line: usize, message: String },
}

/// Every meter's installations, by meter id, each list sorted by start.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    meters: BTreeMap<String, Vec<RegistryEntry>>,
}

impl Registry {
    pub fn load(path: &Path) -> Result<Registry, RegistryError> {
        let text = std::fs::read_to_string(path).map_err(|source| RegistryError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Registry::parse(&text)
    }

    /// Parses the CSV. Fields are plain (meter ids, media, numbers, times and
    /// group names have no commas); a quoted field is refused rather than
    /// misread.
    pub fn parse(text: &str) -> Result<Registry, RegistryError> {
        let mut lines = text
            .lines()
            .enumerate()
            .map(|(i, l)| (i + 1, l.trim_end_matches('\r')))
            .filter(|(_, l)| !l.trim().is_empty() && !l.starts_with('#'));
        let invalid = |line, message: String| RegistryError::Invalid { line, message };
        let (hline, header) = lines
            .next()
            .ok_or_else(|| invalid(1, "empty file: expected a header line".into()))?;
        let cols: Vec<&str> = header.split(',').map(str::trim).collect();
        if cols.len() < HEADER.len() || cols[..HEADER.len()] != HEADER {
            return Err(invalid(
                hline,
                format!("header must start with {}", HEADER.join(",")),
            ));
        }
        // Optional columns after the six, in any order.
        let (mut wrap_col, mut after_col) = (None, None);
        for (i, &c) in cols.iter().enumerate().skip(HEADER.len()) {
            let slot = match c {
                "seq_wrap" => &mut wrap_col,
                "alert_after_s" => &mut after_col,
                other => {
                    return Err(invalid(
                        hline,
                        format!(
                            "unknown column {other:?} (only seq_wrap and alert_after_s may follow)"
                        ),
                    ))
                }
            };
            if slot.replace(i).is_some() {
                return Err(invalid(hline, format!("column {c:?} appears twice")));
            }
        }
        let mut reg = Registry::default();
        for (n, line) in lines {
            if line.contains('"') {
                return Err(invalid(n, "quoted fields are not supported".into()));
            }
            let f: Vec<&str> = line.split(',').map(str::trim).collect();
            if f.len() != cols.len() {
                return Err(invalid(
                    n,
                    format!("{} fields, the header has {}", f.len(), cols.len()),
                ));
            }
            let meter_id = MeterId::try_new(f[0]).map_err(|e| invalid(n, e.to_string()))?;
            let medium = Medium::parse(f[1]).ok_or_else(|| {
                invalid(
                    n,
                    format!(
                        "unknown medium {:?} (heat, cooling, water, warm_water, hca)",
                        f[1]
                    ),
                )
            })?;
            let positive = |s: &str, col: &str| -> Result<Option<u64>, RegistryError> {
                if s.is_empty() {
                    return Ok(None);
                }
                match s.parse::<u64>() {
                    Ok(v) if v > 0 && v < 100 * 365 * 86_400 => Ok(Some(v)),
                    _ => Err(invalid(
                        n,
                        format!("{col} {s:?} must be a positive integer"),
                    )),
                }
            };
            let time = |s: &str, col: &str| -> Result<Option<i64>, RegistryError> {
                if s.is_empty() {
                    return Ok(None);
                }
                crate::time::parse_time(s)
                    .map(Some)
                    .map_err(|e| invalid(n, format!("{col}: {e}")))
            };
            let entry = RegistryEntry {
                meter_id: meter_id.as_str().to_owned(),
                medium,
                expected_interval_s: positive(f[2], "expected_interval_s")?,
                group: (!f[3].is_empty()).then(|| f[3].to_owned()),
                installed_at: time(f[4], "installed_at")?,
                removed_at: time(f[5], "removed_at")?,
                seq_wrap: match wrap_col {
                    Some(i) => positive(f[i], "seq_wrap")?,
                    None => None,
                },
                alert_after_s: match after_col {
                    Some(i) => positive(f[i], "alert_after_s")?,
                    None => None,
                },
            };
            if let (Some(a), Some(b)) = (entry.installed_at, entry.removed_at) {
                if b <= a {
                    return Err(invalid(n, "removed_at is not after installed_at".into()));
                }
            }
            reg.meters
                .entry(entry.meter_id.clone())
                .or_default()
                .push(entry);
        }
        for list in reg.meters.values_mut() {
            list.sort_by_key(|e| e.installed_at.unwrap_or(i64::MIN));
        }
        Ok(reg)
    }

    pub fn len(&self) -> usize {
        self.meters.len()
    }

    pub fn is_empty(&self) -> bool {
        self.meters.is_empty()
    }

    /// Every meter and its installations, by meter id.
    pub fn meters(&self) -> impl Iterator<Item = (&str, &[RegistryEntry])> {
        self.meters.iter().map(|(k, v)| (k.as_str(), v.as_slice()))
    }

    pub fn entries(&self, meter: &str) -> &[RegistryEntry] {
        self.meters.get(meter).map_or(&[], Vec::as_slice)
    }

    /// The current (latest) installation.
    pub fn latest(&self, meter: &str) -> Option<&RegistryEntry> {
        self.entries(meter).last()
    }

    /// Moments at which the meter was replaced: every installation's start
    /// after the first, and every installation's end.
    pub fn replacements(&self, meter: &str) -> Vec<i64> {
        let e = self.entries(meter);
        let mut out: Vec<i64> = e.iter().skip(1).filter_map(|e| e.installed_at).collect();
        out.extend(e.iter().filter_map(|e| e.removed_at));
        out.sort_unstable();
        out.dedup();
        out
    }

    /// When the meter was in service: from its first installation (None =
    /// always) to its last removal (None = still installed).
    pub fn service_span(&self, meter: &str) -> (Option<i64>, Option<i64>) {
        let e = self.entries(meter);
        let from = e.first().and_then(|e| e.installed_at);
        let to = match e.last() {
            Some(last) => last.removed_at,
            None => None,
        };
        (from, to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::parse_time;

    const GOOD: &str = "\
meter_id,medium,expected_interval_s,group,installed_at,removed_at
HZ-1,heat,900,b7,2021-01-01,2022-07-26T12:00:00Z
HZ-1,heat,900,b7,2022-07-26T12:00:00Z,
# a comment line
WZ-2,water,,,,

HCA-3,hca,86400,b7,,
";

    #[test]
    fn parses_installations_and_replacements() {
        let r = Registry::parse(GOOD).unwrap();
        assert_eq!(r.len(), 3);
        assert_eq!(r.entries("HZ-1").len(), 2);
        let t = parse_time("2022-07-26T12:00:00Z").unwrap();
        assert_eq!(r.replacements("HZ-1"), vec![t]);
        assert_eq!(
            r.service_span("HZ-1"),
            (Some(parse_time("2021-01-01").unwrap()), None)
        );
        let w = r.latest("WZ-2").unwrap();
        assert_eq!(
            (w.medium, w.expected_interval_s, w.group.as_deref()),
            (Medium::Water, None, None)
        );
        assert_eq!(r.latest("HCA-3").unwrap().group.as_deref(), Some("b7"));
        assert!(r.entries("nope").is_empty());
    }

    #[test]
    fn bad_lines_are_refused_with_their_line_number() {
        let h = HEADER.join(",");
        for (body, needle) in [
            ("M-1,gas,900,,,", "line 2: unknown medium \"gas\""),
            ("M 1,heat,900,,,", "line 2: invalid meter_id"),
            ("M-1,heat,abc,,,", "expected_interval_s \"abc\""),
            ("M-1,heat,0,,,", "expected_interval_s \"0\""),
            ("M-1,heat,900,,2022-13-01,", "installed_at"),
            (
                "M-1,heat,900,,2022-02-01,2022-01-01",
                "not after installed_at",
            ),
            ("M-1,heat,900,,", "5 fields, the header has 6"),
            ("\"M-1\",heat,900,,,", "quoted"),
        ] {
            let e = Registry::parse(&format!("{h}\n{body}\n"))
                .unwrap_err()
                .to_string();
            assert!(e.contains(needle), "{body}: {e}");
        }
        let e = Registry::parse("id,medium\n").unwrap_err().to_string();
        assert!(e.contains("line 1: header must start with meter_id"), "{e}");
        let e = Registry::parse(&format!("{h},colour\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown column \"colour\""), "{e}");
        let r = Registry::parse(&format!("{h},seq_wrap\nM-1,heat,900,,,,65536\n")).unwrap();
        assert_eq!(r.latest("M-1").unwrap().seq_wrap, Some(65536));
        let r = Registry::parse(&format!(
            "{h},alert_after_s,seq_wrap\nM-1,heat,900,,,,7200,\n"
        ))
        .unwrap();
        let e = r.latest("M-1").unwrap();
        assert_eq!((e.alert_after_s, e.seq_wrap), (Some(7200), None));
        let e = Registry::parse(&format!("{h},seq_wrap,seq_wrap\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("appears twice"), "{e}");
    }
}
