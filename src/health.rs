//! Health that tells the truth: every stage's heartbeat, the first fatal
//! failure, the bounds that were hit, and the sealed counters `/metrics`
//! reads (all in memory: a scrape costs the same whatever the history).
//!
//! A stage is *busy* (working: it must beat again within the stall limit)
//! or *idle* (waiting for input, or for the next stage: waiting is not a
//! stall; the stage it waits for has its own heartbeat). It may be
//! *failing* (a condition it retries, such as a full disk: nothing is acked
//! meanwhile) or *dead* (it stopped: the service stops acking, shuts down
//! and exits non-zero, and the restart replays the journal).
//!
//! `/readyz` answers 503 naming each stage that is dead, failing, or busy
//! without a beat for longer than the stall limit (`serve --stall-limit`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::watch;

/// How long a busy stage may go without a heartbeat before `/readyz`
/// calls it stalled (seconds; `serve --stall-limit`). A seal of the largest
/// batch (`--seal-max-rows`) on a slow disk takes seconds, not a minute.
pub(crate) const DEFAULT_STALL_LIMIT_S: u64 = 60;

/// The pipeline's stages, in data-flow order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The MQTT task: polls the broker, forwards deliveries, sends acks.
    Mqtt,
    /// The journal thread: group commits and fdatasync.
    Journal,
    /// Decoding (in the store thread): payload bytes to readings.
    Decode,
    /// The store thread: dedup, continuity, seals, journal truncation.
    Store,
    /// The alert sinks (MQTT, webhook).
    Alerts,
    /// The async runtime that serves the API and runs the MQTT task: a
    /// ticker on it beats every second, so blocked workers show here.
    Api,
}

pub(crate) const STAGES: [Stage; 6] = [
    Stage::Mqtt,
    Stage::Journal,
    Stage::Decode,
    Stage::Store,
    Stage::Alerts,
    Stage::Api,
];

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Mqtt => "mqtt",
            Stage::Journal => "journal",
            Stage::Decode => "decode",
            Stage::Store => "store",
            Stage::Alerts => "alerts",
            Stage::Api => "api",
        }
    }
}

/// A bound that, when hit, holds the stage before it back (never a drop).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Bound {
    /// Deliveries waiting for the journal (`service::JOURNAL_QUEUE`): the MQTT
    /// task stops polling and the broker holds the messages.
    JournalQueue,
    /// Ack batches waiting for the MQTT task (`service::ACK_QUEUE`): the
    /// journal waits before its next commit.
    AckQueue,
    /// How far the store may trail the journal (`service::MAX_STORE_LAG`): the
    /// journal waits for it.
    StoreLag,
    /// Committed records held in memory for the store (`service::HANDOFF_BYTES`):
    /// the store reads them from the disk instead.
    Handoff,
    /// Concurrent lake scans in the API (`serve --max-scans`): the extra
    /// request gets 429 with Retry-After.
    ApiScans,
    /// Alerts waiting for a sink (`alerts::sink::ALERT_CHANNEL`): the
    /// store waits to hand them over.
    AlertQueue,
}

pub(crate) const BOUNDS: [Bound; 6] = [
    Bound::JournalQueue,
    Bound::AckQueue,
    Bound::StoreLag,
    Bound::Handoff,
    Bound::ApiScans,
    Bound::AlertQueue,
];

impl Bound {
    pub fn as_str(self) -> &'static str {
        match self {
            Bound::JournalQueue => "journal_queue",
            Bound::AckQueue => "ack_queue",
            Bound::StoreLag => "store_lag",
            Bound::Handoff => "handoff_bytes",
            Bound::ApiScans => "api_scans",
            Bound::AlertQueue => "alert_queue",
        }
    }
}

/// One stage's heartbeat.
#[derive(Debug, Default)]
struct Cell {
    /// Milliseconds since [`Health`]'s epoch of the last beat.
    beat_ms: AtomicU64,
    /// Working (must beat within the stall limit), not waiting.
    busy: AtomicBool,
    /// A condition the stage retries (None when clear).
    failing: Mutex<Option<String>>,
}

/// What `/readyz` reports about a stage that is not well.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub stage: Stage,
    /// `dead`, `failing` or `stalled`.
    pub state: &'static str,
    pub why: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}: {}", self.stage.as_str(), self.state, self.why)
    }
}

/// The counters of the last seal, published by the store thread (what
/// `gapless stats` reads from the commit log, kept in memory).
#[derive(Debug, Default)]
pub struct Sealed {
    pub delivered: AtomicU64,
    pub stored: AtomicU64,
    pub duplicate: AtomicU64,
    pub rejected: AtomicU64,
    pub readings_stored: AtomicU64,
    pub readings_duplicate: AtomicU64,
    pub readings_conflict: AtomicU64,
    /// The last receipt in a sealed file.
    pub through: AtomicU64,
    /// Parquet files the commit log names.
    pub files: AtomicU64,
    /// Commits in the commit log.
    pub commits: AtomicU64,
}

/// The totals are published by the store (`store::commit::Counters::
/// publish`): health, a leaf, does not know the commit log's types.
impl Sealed {
    /// Counts one more commit of `files` files.
    pub(crate) fn add_commit(&self, files: usize) {
        self.commits.fetch_add(1, Ordering::Relaxed);
        self.files.fetch_add(files as u64, Ordering::Relaxed);
    }
}

/// The service's health, shared by every stage and the API.
#[derive(Debug)]
pub struct Health {
    epoch: Instant,
    stall_limit: Duration,
    cells: [Cell; STAGES.len()],
    /// The first stage that died, and why.
    dead: Mutex<Option<(Stage, String)>>,
    /// Becomes true when a stage dies (the MQTT task stops on it).
    dead_tx: watch::Sender<bool>,
    /// Times each bound was hit.
    bound_hits: [AtomicU64; BOUNDS.len()],
    /// When each bound was last logged (ms since epoch, +1; 0 = never).
    bound_logged: [AtomicU64; BOUNDS.len()],
    /// The last receipt the journal made durable.
    pub durable: AtomicU64,
    pub sealed: Sealed,
}

impl Default for Health {
    fn default() -> Health {
        Health::new(Duration::from_secs(DEFAULT_STALL_LIMIT_S))
    }
}

/// A hit bound is logged at most this often (it is counted every time).
const BOUND_LOG_EVERY: Duration = Duration::from_secs(10);

impl Health {
    pub fn new(stall_limit: Duration) -> Health {
        Health {
            epoch: Instant::now(),
            stall_limit,
            cells: Default::default(),
            dead: Mutex::new(None),
            dead_tx: watch::channel(false).0,
            bound_hits: Default::default(),
            bound_logged: Default::default(),
            durable: AtomicU64::new(0),
            sealed: Sealed::default(),
        }
    }

    pub fn stall_limit(&self) -> Duration {
        self.stall_limit
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn cell(&self, s: Stage) -> &Cell {
        &self.cells[s as usize]
    }

    /// The stage is working: it beats now and must beat again within the
    /// stall limit.
    pub(crate) fn busy(&self, s: Stage) {
        let c = self.cell(s);
        c.beat_ms.store(self.now_ms(), Ordering::Relaxed);
        c.busy.store(true, Ordering::Relaxed);
    }

    /// The stage waits for input (or for the next stage): not a stall.
    pub(crate) fn idle(&self, s: Stage) {
        let c = self.cell(s);
        c.beat_ms.store(self.now_ms(), Ordering::Relaxed);
        c.busy.store(false, Ordering::Relaxed);
    }

    /// Whether the stage is working (not waiting) as of its last beat.
    pub(crate) fn is_busy(&self, s: Stage) -> bool {
        self.cell(s).busy.load(Ordering::Relaxed)
    }

    /// The stage hit a condition it retries (`Some`), or it cleared (`None`).
    pub fn failing(&self, s: Stage, why: Option<String>) {
        let mut f = self
            .cell(s)
            .failing
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        match (&*f, &why) {
            (None, Some(w)) => tracing::error!(stage = s.as_str(), "health: {w}"),
            (Some(_), None) => tracing::info!(stage = s.as_str(), "health: recovered"),
            _ => {}
        }
        *f = why;
    }

    /// The stage stopped and cannot go on: the service stops acking, shuts
    /// down and exits non-zero. The first death is the one reported.
    pub(crate) fn die(&self, s: Stage, why: impl Into<String>) {
        let why = why.into();
        let mut d = self.dead.lock().unwrap_or_else(|p| p.into_inner());
        tracing::error!(
            stage = s.as_str(),
            "health: {} died: {why}; no more acks, shutting down",
            s.as_str()
        );
        if d.is_none() {
            *d = Some((s, why));
        }
        drop(d);
        self.dead_tx.send_replace(true);
    }

    /// The first stage that died, and why.
    pub fn dead(&self) -> Option<(Stage, String)> {
        self.dead.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(crate) fn is_dead(&self) -> bool {
        *self.dead_tx.borrow()
    }

    /// Becomes true when a stage dies.
    pub(crate) fn watch_dead(&self) -> watch::Receiver<bool> {
        self.dead_tx.subscribe()
    }

    /// A bound was hit: counted, and logged at most every
    /// [`BOUND_LOG_EVERY`]. What waits on it is held back, never dropped.
    pub(crate) fn bound_hit(&self, b: Bound) {
        let i = b as usize;
        let n = self.bound_hits[i].fetch_add(1, Ordering::Relaxed) + 1;
        let now = self.now_ms() + 1;
        let last = self.bound_logged[i].load(Ordering::Relaxed);
        if (last == 0 || now.saturating_sub(last) >= BOUND_LOG_EVERY.as_millis() as u64)
            && self.bound_logged[i]
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                bound = b.as_str(),
                hits = n,
                "back-pressure: bound {} reached; the stage before it waits (nothing is dropped)",
                b.as_str()
            );
        }
    }

    /// Times `b` was hit since start.
    pub(crate) fn bound_hits(&self, b: Bound) -> u64 {
        self.bound_hits[b as usize].load(Ordering::Relaxed)
    }

    /// Seconds since the stage's last beat.
    pub(crate) fn beat_age(&self, s: Stage) -> Duration {
        let beat = self.cell(s).beat_ms.load(Ordering::Relaxed);
        Duration::from_millis(self.now_ms().saturating_sub(beat))
    }

    /// Every stage that is dead, failing, or busy past the stall limit.
    pub fn problems(&self) -> Vec<Problem> {
        let dead = self.dead();
        let mut out = Vec::new();
        for s in STAGES {
            if let Some((d, why)) = &dead {
                if *d == s {
                    out.push(Problem {
                        stage: s,
                        state: "dead",
                        why: why.clone(),
                    });
                    continue;
                }
            }
            let c = self.cell(s);
            if let Some(why) = c.failing.lock().unwrap_or_else(|p| p.into_inner()).clone() {
                out.push(Problem {
                    stage: s,
                    state: "failing",
                    why,
                });
                continue;
            }
            let age = self.beat_age(s);
            if c.busy.load(Ordering::Relaxed) && age > self.stall_limit {
                out.push(Problem {
                    stage: s,
                    state: "stalled",
                    why: format!(
                        "busy with no heartbeat for {:.1} s (limit {} s)",
                        age.as_secs_f64(),
                        self.stall_limit.as_secs()
                    ),
                });
            }
        }
        out
    }
}

/// The message of a caught panic.
pub(crate) fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Busy without a beat past the limit is a stall; idle is not; a
    /// failing condition shows until cleared; the first death is kept.
    #[test]
    fn problems_name_the_stage_and_why() {
        let h = Health::new(Duration::from_millis(50));
        for s in STAGES {
            h.idle(s);
        }
        assert!(h.problems().is_empty());
        h.busy(Stage::Store);
        h.idle(Stage::Journal);
        std::thread::sleep(Duration::from_millis(80));
        let p = h.problems();
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!((p[0].stage, p[0].state), (Stage::Store, "stalled"));
        h.busy(Stage::Store);
        assert!(h.problems().is_empty(), "a beat clears the stall");

        h.failing(Stage::Journal, Some("no space left on device".into()));
        assert_eq!(
            h.problems()[0].to_string(),
            "journal: failing: no space left on device"
        );
        h.failing(Stage::Journal, None);
        assert!(h.problems().is_empty());

        let mut dead = h.watch_dead();
        assert!(!*dead.borrow_and_update());
        h.die(Stage::Store, "panicked: boom");
        h.die(Stage::Journal, "later");
        assert!(h.is_dead() && dead.has_changed().unwrap());
        assert_eq!(h.dead(), Some((Stage::Store, "panicked: boom".into())));
        let p = h.problems();
        assert_eq!(p[0].to_string(), "store: dead: panicked: boom");
    }

    #[test]
    fn bound_hits_are_counted_every_time() {
        let h = Health::default();
        for _ in 0..3 {
            h.bound_hit(Bound::StoreLag);
        }
        assert_eq!(h.bound_hits(Bound::StoreLag), 3);
        assert_eq!(h.bound_hits(Bound::JournalQueue), 0);
    }
}

/// What the store thread publishes for metrics (the API reads it).
#[derive(Debug, Default)]
pub struct LiveStats {
    /// Meters the alert engine tracks (seen, or in the registry).
    pub meters_known: std::sync::atomic::AtomicU64,
    /// Series silent past their gap threshold (refreshed every few seconds).
    pub open_gaps: std::sync::atomic::AtomicU64,
    /// The ingest stage: series held, the state's bytes, lookups in the
    /// sealed files since start (refreshed with `open_gaps`).
    pub series: std::sync::atomic::AtomicU64,
    pub state_bytes: std::sync::atomic::AtomicU64,
    pub lookups: std::sync::atomic::AtomicU64,
    pub open_meter_silent: std::sync::atomic::AtomicU64,
    pub open_meter_never_seen: std::sync::atomic::AtomicU64,
    pub open_group_silent: std::sync::atomic::AtomicU64,
    pub open_reject_burst: std::sync::atomic::AtomicU64,
    /// Alerts sealed since start.
    pub alerts_sealed: std::sync::atomic::AtomicU64,
    /// Dates compacted, and dates whose compaction failed, since start.
    pub compactions_done: std::sync::atomic::AtomicU64,
    pub compactions_failed: std::sync::atomic::AtomicU64,
    /// Witness requests that failed (`serve --witness`; each retried).
    pub witness_failures: std::sync::atomic::AtomicU64,
    /// The newest tree size every witness has cosigned.
    pub witness_cosigned_size: std::sync::atomic::AtomicU64,
}

impl LiveStats {
    /// The alert engine's gauges.
    pub(crate) fn set_alerts(&self, a: &AlertGauges) {
        self.meters_known
            .store(a.meters, std::sync::atomic::Ordering::Relaxed);
        self.open_meter_silent
            .store(a.open_meter_silent, std::sync::atomic::Ordering::Relaxed);
        self.open_meter_never_seen.store(
            a.open_meter_never_seen,
            std::sync::atomic::Ordering::Relaxed,
        );
        self.open_group_silent
            .store(a.open_group_silent, std::sync::atomic::Ordering::Relaxed);
        self.open_reject_burst
            .store(a.open_reject_burst, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The alert engine's gauges, as [`LiveStats`] publishes them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AlertGauges {
    pub meters: u64,
    pub open_meter_silent: u64,
    pub open_meter_never_seen: u64,
    pub open_group_silent: u64,
    pub open_reject_burst: u64,
}
