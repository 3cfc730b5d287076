//! Events: register regressions, reading conflicts, rejection bursts,
//! clock skew, and the quiet periods between them.

use super::AlertEngine;
use crate::continuity::SECOND;
use crate::ingest::alerts::AlertKind;
use crate::time::format_micros;

impl AlertEngine {
    pub(super) fn quiet_ok(&mut self, kind: AlertKind, subject: &str, now: i64) -> bool {
        let quiet = self.cfg.event_quiet_s as i64 * SECOND;
        match self.quiet.get_mut(&(kind, subject.to_owned())) {
            Some(t) if now - *t < quiet => false,
            Some(t) => {
                *t = now;
                true
            }
            None => {
                if self.quiet.len() > 100_000 {
                    self.quiet.retain(|_, t| now - *t < quiet);
                }
                self.quiet.insert((kind, subject.to_owned()), now);
                true
            }
        }
    }

    /// A cumulative register went down for no known reason between two
    /// readings (times µs, values as sent).
    #[allow(clippy::too_many_arguments)]
    pub fn regression(
        &mut self,
        meter: &str,
        register: &str,
        before: (i64, &str),
        after: (i64, &str),
        now: i64,
    ) {
        if !self.quiet_ok(AlertKind::RegisterRegression, meter, now) {
            return;
        }
        let group = self.find(meter).and_then(|i| self.group_name(i));
        self.emit(AlertKind::RegisterRegression, meter.to_owned(), now, |a| {
            a.message = format!(
                "meter {meter} register {register} went down from {} at {} to {} at {} (no replacement or reset explains it)",
                before.1,
                format_micros(before.0),
                after.1,
                format_micros(after.0)
            );
            a.meter_id = Some(meter.to_owned());
            a.group = group;
            a.last_reading_at = Some(after.0);
        });
    }

    /// A reading conflicts with a stored one.
    pub fn conflict(&mut self, meter: &str, register: &str, ts: i64, value: &str, now: i64) {
        if !self.quiet_ok(AlertKind::ReadingConflict, meter, now) {
            return;
        }
        let group = self.find(meter).and_then(|i| self.group_name(i));
        self.emit(AlertKind::ReadingConflict, meter.to_owned(), now, |a| {
            a.message = format!(
                "meter {meter} register {register} at {} sent {value}, which differs from the stored value (both kept)",
                format_micros(ts)
            );
            a.meter_id = Some(meter.to_owned());
            a.group = group;
            a.last_reading_at = Some(ts);
        });
    }

    /// A message rejected at `now`; `clock_skew`: its reason was a time
    /// too far ahead.
    pub fn rejection(&mut self, topic: &str, reason: &str, clock_skew: bool, now: i64) {
        if clock_skew && self.quiet_ok(AlertKind::ClockSkew, topic, now) {
            self.emit(AlertKind::ClockSkew, topic.to_owned(), now, |a| {
                a.message = format!("messages on {topic} carry times too far ahead: {reason}");
            });
        }
        let sec = now.div_euclid(SECOND);
        match self.rejects.back_mut() {
            Some((s, n)) if *s == sec => *n += 1,
            _ => self.rejects.push_back((sec, 1)),
        }
        self.rejects_in_window += 1;
        self.prune_rejects(now);
        if self.burst_seq.is_none() && self.rejects_in_window >= self.cfg.reject_burst {
            let n = self.rejects_in_window;
            let w = self.cfg.reject_window_s;
            let seq = self.emit(AlertKind::RejectBurst, "rejections".into(), now, |a| {
                a.count = Some(n);
                a.message = format!("{n} messages rejected in the last {w} s (latest: {reason})");
            });
            self.burst_seq = Some(seq);
        }
    }

    pub(super) fn prune_rejects(&mut self, now: i64) {
        let from = now.div_euclid(SECOND) - self.cfg.reject_window_s as i64;
        while let Some(&(s, n)) = self.rejects.front() {
            if s > from {
                break;
            }
            self.rejects.pop_front();
            self.rejects_in_window -= n;
        }
    }
}
