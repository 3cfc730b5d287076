//! Alerts for device teams: which meter (or which whole group) went
//! silent or misbehaves, and when it recovered.
//!
//! - [`engine`]: pure: per-meter deadlines in one heap keyed by deadline
//!   (no task or timer per meter), silence and recovery as state changes,
//!   group storms folded into one alert, and the event alerts. The clock
//!   is an argument.
//! - delivery of what was sealed is [`crate::alerts`]' (the sinks); the
//!   `alerts` table is the store's ([`crate::store::alerts_table`]).
//!
//! The ingest stage runs the engine: readings reach it as they are ingested, and
//! the alerts it raises are sealed into the `alerts` table (entered in the
//! audit ledger) in the same commit as the readings that caused them. Only
//! sealed alerts are delivered, so the table is the record of what device
//! teams were told, and a crash can neither lose a `meter_resumed` (the
//! reading is replayed from the journal) nor repeat a `meter_silent` (the
//! state is rebuilt from the table). `schemas/alerts.md` documents the JSON.

pub mod engine;

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::continuity::SECOND;
use crate::reading::Medium;
use crate::time::format_micros;

/// What an alert says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AlertKind {
    /// A meter passed its deadline without a reading.
    MeterSilent,
    /// A silent (or never seen) meter reported again.
    MeterResumed,
    /// A registry meter has not sent a single reading within its grace.
    MeterNeverSeen,
    /// At least `group_min` meters of one group went silent together.
    GroupSilent,
    /// The group's silent meters reported again.
    GroupResumed,
    /// A cumulative register went down for no known reason.
    RegisterRegression,
    /// A reading conflicts with a stored one (same time, other value).
    ReadingConflict,
    /// Messages carry timestamps too far ahead of their receive time.
    ClockSkew,
    /// Rejections above the configured rate.
    RejectBurst,
    /// The rejection rate fell back below half the threshold.
    RejectBurstEnded,
}

impl AlertKind {
    pub const ALL: [AlertKind; 10] = [
        AlertKind::MeterSilent,
        AlertKind::MeterResumed,
        AlertKind::MeterNeverSeen,
        AlertKind::GroupSilent,
        AlertKind::GroupResumed,
        AlertKind::RegisterRegression,
        AlertKind::ReadingConflict,
        AlertKind::ClockSkew,
        AlertKind::RejectBurst,
        AlertKind::RejectBurstEnded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::MeterSilent => "meter_silent",
            AlertKind::MeterResumed => "meter_resumed",
            AlertKind::MeterNeverSeen => "meter_never_seen",
            AlertKind::GroupSilent => "group_silent",
            AlertKind::GroupResumed => "group_resumed",
            AlertKind::RegisterRegression => "register_regression",
            AlertKind::ReadingConflict => "reading_conflict",
            AlertKind::ClockSkew => "clock_skew",
            AlertKind::RejectBurst => "reject_burst",
            AlertKind::RejectBurstEnded => "reject_burst_ended",
        }
    }

    pub fn parse(s: &str) -> Option<AlertKind> {
        AlertKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Parses a kind; the error lists the kinds.
    pub fn parse_listed(s: &str) -> Result<AlertKind, String> {
        AlertKind::parse(s).ok_or_else(|| {
            let all: Vec<&str> = AlertKind::ALL.iter().map(|k| k.as_str()).collect();
            format!("{s:?} is not one of {}", all.join(", "))
        })
    }

    /// Whether the alert opens a condition that a later alert closes.
    pub fn opens(self) -> bool {
        matches!(
            self,
            AlertKind::MeterSilent
                | AlertKind::MeterNeverSeen
                | AlertKind::GroupSilent
                | AlertKind::RejectBurst
        )
    }

    /// Whether the alert closes an open one (named by `closes`).
    pub fn closes(self) -> bool {
        matches!(
            self,
            AlertKind::MeterResumed | AlertKind::GroupResumed | AlertKind::RejectBurstEnded
        )
    }

    /// `open`, `closed` or `event`.
    pub fn state(self) -> &'static str {
        if self.opens() {
            "open"
        } else if self.closes() {
            "closed"
        } else {
            "event"
        }
    }
}

impl std::fmt::Display for AlertKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The gap a `meter_resumed` alert closes.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertGap {
    /// The register whose gap it is (the meter's longest, when several).
    pub register: Option<String>,
    /// The last reading before the silence and the first after it (µs).
    pub from: i64,
    pub to: i64,
    /// Readings missing by time.
    pub missing: u64,
    /// Consumption across the gap is exactly known (the register is
    /// continuous across it). None: not judged (no register reading on
    /// both sides in this process's view).
    pub consumption_exact: Option<bool>,
}

/// One alert: a state change or an event.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    /// 1, 2, 3, ... across restarts.
    pub seq: u64,
    pub kind: AlertKind,
    /// Meter id, group name, topic (clock skew) or `rejections`.
    pub subject: String,
    /// When gapless raised it (µs, the service clock).
    pub raised_at: i64,
    pub meter_id: Option<String>,
    pub group: Option<String>,
    /// For a closing alert: the `seq` of the alert it closes.
    pub closes: Option<u64>,
    /// The meter's last reading before it went silent (µs).
    pub last_reading_at: Option<i64>,
    /// When the meter became due (µs).
    pub deadline: Option<i64>,
    pub gap: Option<AlertGap>,
    /// Meters of a group alert; rejections of a burst; readings of an event.
    pub count: Option<u64>,
    /// Some of the group's meters (at most [`MEMBERS_LISTED`]).
    pub members: Vec<String>,
    pub message: String,
}

/// Meters named in a group alert; `count` gives the total.
pub const MEMBERS_LISTED: usize = 100;

impl Alert {
    /// The JSON sent to the sinks and kept in the `alerts` table
    /// (`schemas/alert.schema.json`).
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("alert_seq".into(), json!(self.seq));
        m.insert("kind".into(), json!(self.kind.as_str()));
        m.insert("state".into(), json!(self.kind.state()));
        m.insert("subject".into(), json!(self.subject));
        m.insert("raised_at".into(), json!(format_micros(self.raised_at)));
        let mut opt = |k: &str, v: Option<Value>| {
            if let Some(v) = v {
                m.insert(k.into(), v);
            }
        };
        opt("meter_id", self.meter_id.as_ref().map(|v| json!(v)));
        opt("group", self.group.as_ref().map(|v| json!(v)));
        opt("closes", self.closes.map(|v| json!(v)));
        opt(
            "last_reading_at",
            self.last_reading_at.map(|t| json!(format_micros(t))),
        );
        opt("deadline", self.deadline.map(|t| json!(format_micros(t))));
        opt(
            "gap",
            self.gap.as_ref().map(|g| {
                json!({
                    "register": g.register,
                    "from": format_micros(g.from),
                    "to": format_micros(g.to),
                    "duration_s": (g.to - g.from) / SECOND,
                    "missing": g.missing,
                    "consumption_exact": g.consumption_exact,
                })
            }),
        );
        opt("count", self.count.map(|v| json!(v)));
        if !self.members.is_empty() {
            m.insert("members".into(), json!(self.members));
        }
        m.insert("message".into(), json!(self.message));
        Value::Object(m)
    }
}

/// The `[alerts]` table of the TOML config (every key optional).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsFileConfig {
    /// Silence after which a meter is alerted, as a multiple of its
    /// expected interval (default 3).
    pub after_intervals: Option<f64>,
    /// Per-medium silence in seconds, overriding the multiple.
    #[serde(default)]
    pub alert_after_s: BTreeMap<String, u64>,
    /// Grace for a registry meter never seen, from the first start (s).
    pub never_seen_after_s: Option<u64>,
    /// Meters of one group silent together that make one group alert.
    pub group_min: Option<usize>,
    /// After a (re)start, deadlines wait this long, so that the broker can
    /// deliver what it queued (s).
    pub startup_grace_s: Option<u64>,
    /// An event alert (regression, conflict, clock skew) for the same
    /// subject is not repeated within this time (s).
    pub event_quiet_s: Option<u64>,
    /// Rejections within `reject_window_s` that make a `reject_burst`.
    pub reject_burst: Option<u64>,
    pub reject_window_s: Option<u64>,
    /// MQTT sink: on by default, on the ingest broker.
    pub mqtt: Option<bool>,
    pub mqtt_prefix: Option<String>,
    /// Another broker for alerts (`mqtt://HOST:PORT`).
    pub mqtt_broker: Option<String>,
    /// Webhook sink: an `http://` URL that gets each alert's JSON by POST.
    pub webhook_url: Option<String>,
    /// Alerts waiting for the webhook at most; beyond, the oldest is given up.
    pub webhook_queue: Option<usize>,
    /// Attempts per alert before it is given up.
    pub webhook_attempts: Option<u32>,
}

/// Validated alert rules.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertConfig {
    pub after_intervals: f64,
    pub alert_after_s: BTreeMap<Medium, u64>,
    pub never_seen_after_s: Option<u64>,
    pub group_min: usize,
    pub startup_grace_s: u64,
    pub event_quiet_s: u64,
    pub reject_burst: u64,
    pub reject_window_s: u64,
}

pub const DEFAULT_AFTER_INTERVALS: f64 = 3.0;
pub const DEFAULT_GROUP_MIN: usize = 20;
pub const DEFAULT_STARTUP_GRACE_S: u64 = 120;
pub const DEFAULT_EVENT_QUIET_S: u64 = 3_600;
pub const DEFAULT_REJECT_BURST: u64 = 100;
pub const DEFAULT_REJECT_WINDOW_S: u64 = 60;

impl Default for AlertConfig {
    fn default() -> Self {
        AlertConfig {
            after_intervals: DEFAULT_AFTER_INTERVALS,
            alert_after_s: BTreeMap::new(),
            never_seen_after_s: None,
            group_min: DEFAULT_GROUP_MIN,
            startup_grace_s: DEFAULT_STARTUP_GRACE_S,
            event_quiet_s: DEFAULT_EVENT_QUIET_S,
            reject_burst: DEFAULT_REJECT_BURST,
            reject_window_s: DEFAULT_REJECT_WINDOW_S,
        }
    }
}

impl AlertConfig {
    /// Validates the file's `[alerts]` rules; errors name the key.
    pub fn from_file(f: &AlertsFileConfig) -> Result<AlertConfig, String> {
        let mut c = AlertConfig::default();
        if let Some(x) = f.after_intervals {
            if !(x.is_finite() && x >= 1.0) {
                return Err(format!("alerts.after_intervals: {x} must be ≥ 1"));
            }
            c.after_intervals = x;
        }
        for (m, &v) in &f.alert_after_s {
            let medium = Medium::parse(m).ok_or_else(|| {
                format!("alerts.alert_after_s: unknown medium {m:?} (heat, cooling, water, warm_water, hca)")
            })?;
            if v == 0 || v > u32::MAX as u64 {
                return Err(format!(
                    "alerts.alert_after_s.{m}: must be between 1 and {}",
                    u32::MAX
                ));
            }
            c.alert_after_s.insert(medium, v);
        }
        if let Some(v) = f.never_seen_after_s {
            if v == 0 || v > u32::MAX as u64 {
                return Err(
                    "alerts.never_seen_after_s: must be a positive number of seconds".into(),
                );
            }
            c.never_seen_after_s = Some(v);
        }
        if let Some(v) = f.group_min {
            if v < 2 {
                return Err("alerts.group_min: must be at least 2".into());
            }
            c.group_min = v;
        }
        if let Some(v) = f.startup_grace_s {
            c.startup_grace_s = v;
        }
        if let Some(v) = f.event_quiet_s {
            c.event_quiet_s = v;
        }
        if let Some(v) = f.reject_burst {
            if v == 0 {
                return Err("alerts.reject_burst: must be at least 1".into());
            }
            c.reject_burst = v;
        }
        if let Some(v) = f.reject_window_s {
            if v == 0 || v > 86_400 {
                return Err("alerts.reject_window_s: must be between 1 and 86400".into());
            }
            c.reject_window_s = v;
        }
        Ok(c)
    }
}

/// The group a message names for its meters: the gateway in its payload
/// (LoRaWAN), else the topic's parent ([`topic_group`]).
pub fn message_group<'a>(gateway: Option<&'a str>, topic: &'a str) -> Option<&'a str> {
    gateway.or_else(|| topic_group(topic))
}

/// The group a topic names: the topic without its last level, when that
/// leaves at least two levels (`meters/gw-17/HZ-1` → `meters/gw-17`).
pub fn topic_group(topic: &str) -> Option<&str> {
    let (parent, _) = topic.rsplit_once('/')?;
    parent.contains('/').then_some(parent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_and_know_their_state() {
        for k in AlertKind::ALL {
            assert_eq!(AlertKind::parse(k.as_str()), Some(k));
            assert!(!(k.opens() && k.closes()));
        }
        assert_eq!(AlertKind::MeterSilent.state(), "open");
        assert_eq!(AlertKind::MeterResumed.state(), "closed");
        assert_eq!(AlertKind::ClockSkew.state(), "event");
    }

    /// `schemas/alert.schema.json` documents every field the JSON has.
    #[test]
    fn schema_matches_the_json() {
        let schema: Value =
            serde_json::from_str(include_str!("../../../schemas/alert.schema.json")).unwrap();
        let kinds: Vec<&str> = schema["properties"]["kind"]["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(kinds, AlertKind::ALL.map(AlertKind::as_str));
        let full = Alert {
            seq: 3,
            kind: AlertKind::MeterResumed,
            subject: "HZ-1".into(),
            raised_at: 0,
            meter_id: Some("HZ-1".into()),
            group: Some("g".into()),
            closes: Some(2),
            last_reading_at: Some(0),
            deadline: Some(0),
            gap: Some(AlertGap {
                register: Some("energy".into()),
                from: 0,
                to: 900 * SECOND,
                missing: 1,
                consumption_exact: Some(true),
            }),
            count: Some(1),
            members: vec!["HZ-1".into()],
            message: "m".into(),
        };
        let j = full.to_json();
        let keys = |v: &Value| -> Vec<String> {
            let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
            k.sort();
            k
        };
        assert_eq!(keys(&j), keys(&schema["properties"]));
        assert_eq!(
            keys(&j["gap"]),
            keys(&schema["properties"]["gap"]["properties"])
        );
        for r in schema["required"].as_array().unwrap() {
            assert!(j.get(r.as_str().unwrap()).is_some());
        }
        assert_eq!(Alert::from_json(&j).unwrap(), full);
    }

    #[test]
    fn groups_come_from_the_topic_parent() {
        assert_eq!(topic_group("meters/gw-17/HZ-1"), Some("meters/gw-17"));
        assert_eq!(topic_group("wmbusmeters/HZ-1"), None);
        assert_eq!(topic_group("x"), None);
    }

    #[test]
    fn config_errors_name_the_key() {
        let f = AlertsFileConfig {
            group_min: Some(1),
            ..Default::default()
        };
        assert!(AlertConfig::from_file(&f)
            .unwrap_err()
            .contains("alerts.group_min"));
        let mut f = AlertsFileConfig::default();
        f.alert_after_s.insert("gas".into(), 10);
        assert!(AlertConfig::from_file(&f)
            .unwrap_err()
            .contains("alerts.alert_after_s"));
    }
}
