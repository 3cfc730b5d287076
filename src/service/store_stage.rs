//! The store thread: follows the journal, runs the ingest stage over each
//! record, judges alert deadlines, seals, and truncates the journal behind
//! each seal.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::handoff::{JournalView, Progress};
use super::{
    Pipeline, PipelineError, Sealed, ServiceError, STORE_READ_CHUNK, STORE_TICK, YIELD_MAX,
    YIELD_MAX_LAG, YIELD_TICK,
};
use crate::alerts::sink::AlertSender;
use crate::health::{Health, LiveStats, Stage};
use crate::journal::{self, JournalRecord, JournalTail};
use crate::mqtt::{self, ConnectionState};
use crate::time::Clock;

/// What the store thread needs besides the store: the clock that judges
/// deadlines, where sealed alerts go, and where it publishes its gauges.
pub(super) struct StoreSide {
    pub(super) clock: Clock,
    pub(super) alerts: AlertSender,
    pub(super) live: Arc<LiveStats>,
    /// The journal's last record at start: deadlines wait until the replay
    /// has read it (a replayed reading is not a silence).
    pub(super) replay_through: u64,
    /// Heartbeats (store, decode) and the sealed counters for `/metrics`.
    pub(super) health: Arc<Health>,
    /// Where the MQTT task says the broker's backlog has drained: the
    /// alerts' startup grace ends once the store has read that far.
    pub(super) conn: Arc<ConnectionState>,
}

/// Deadlines are checked at least this often (µs of receive time) while
/// messages flow, and every [`STORE_TICK`] when none do.
const CHECK_EVERY: i64 = 100_000;

/// How often the open-gap gauge is recounted (it visits every series).
const OPEN_GAPS_EVERY: Duration = Duration::from_secs(10);

/// The store stage: follow the journal, ingest, seal when due, and truncate
/// the journal behind each seal; judge alert deadlines on every turn (one
/// look at a heap when nothing is due). Ends at the end of a closed journal.
pub(super) fn run_store(
    store: &mut Pipeline,
    journal_dir: &Path,
    progress: &Progress,
    side: &StoreSide,
) -> Result<(), ServiceError> {
    let mut tail = JournalTail::new(journal_dir, store.sealed_through() + 1);
    let mut gaps_counted: Option<Instant> = None;
    let mut next_check = i64::MIN;
    // When the store last had read everything durable (nothing unread is
    // older). Not yet while a replay waits: that is read first, unyielding.
    let mut caught_up = (side.replay_through <= store.sealed_through()).then(Instant::now);
    let health = &side.health;
    let mut grace_ended = false;
    loop {
        // Waiting at most STORE_TICK for the journal, so it beats at least
        // that often while alive.
        health.busy(Stage::Store);
        let read = tail.next_seq() - 1;
        let view = progress.wait_for_journal(read, STORE_TICK);
        health.busy(Stage::Store);
        let JournalView {
            durable, closed, ..
        } = view;
        if durable <= read {
            caught_up = Some(Instant::now());
        } else if store_yields(view, read, caught_up.map_or(Duration::MAX, |t| t.elapsed())) {
            // A burst: leave the CPU to the ingest path; the records wait,
            // durable, in the journal.
            std::thread::sleep(YIELD_TICK);
            continue;
        }
        // Silence is judged as of what the store has read. While messages
        // flow, deadlines are checked between them, at each one's receive
        // time (every CHECK_EVERY of it): the journal is in receive order,
        // so every reading received before that moment is in, and the
        // result does not depend on how much one read takes in. When
        // nothing came for a tick, up to now. Never during the replay.
        if durable > read {
            let mut take = |rec: &JournalRecord| -> Result<(), PipelineError> {
                store.ingest(rec)?;
                if rec.seq > side.replay_through && rec.received_at >= next_check {
                    store.ingest.tick_alerts(rec.received_at);
                    next_check = rec.received_at.saturating_add(CHECK_EVERY);
                }
                Ok(())
            };
            // The next commit from memory if the journal left it there,
            // else from the disk. Decoding is its own stage: a payload that
            // takes long to decode shows there.
            health.busy(Stage::Decode);
            let upto = match progress.take_committed(tail.next_seq()) {
                Ok(c) => {
                    let last = c.records.last().map_or(read, |r| r.seq);
                    c.records.iter().try_for_each(&mut take)?;
                    let (path, offset) = c.next;
                    tail.jump(path, offset, last + 1);
                    last
                }
                Err(in_memory_from) => {
                    let upto = durable
                        .min(read + STORE_READ_CHUNK)
                        .min(in_memory_from.map_or(u64::MAX, |first| first - 1));
                    let mut failed = None;
                    tail.read_through(upto, |rec| {
                        if failed.is_none() {
                            failed = take(&rec).err();
                        }
                    })?;
                    if let Some(e) = failed {
                        return Err(e.into());
                    }
                    upto
                }
            };
            health.idle(Stage::Decode);
            progress.set_read(upto);
            if upto >= durable {
                caught_up = Some(Instant::now());
            }
        } else if closed {
            break;
        } else if tail.next_seq() > side.replay_through {
            store.ingest.tick_alerts(side.clock.now_micros());
        }
        if !grace_ended {
            // The grace follows the evidence: it ends once everything the
            // broker had queued for us (none when it had no session) and
            // the journal's replay have been read.
            let drained = side
                .conn
                .drained_at
                .load(std::sync::atomic::Ordering::SeqCst);
            if drained != mqtt::NOT_DRAINED
                && tail.next_seq() > side.replay_through.saturating_add(drained)
            {
                grace_ended = true;
                store.ingest.end_grace(side.clock.now_micros());
            }
        }
        if store.ingest.is_seal_due(Instant::now()) {
            seal(store, journal_dir, side, progress)?;
        }
        if gaps_counted.is_none_or(|t| t.elapsed() >= OPEN_GAPS_EVERY) {
            gaps_counted = Some(Instant::now());
            let n = store.ingest.open_gaps(side.clock.now_micros()) as u64;
            side.live
                .open_gaps
                .store(n, std::sync::atomic::Ordering::Relaxed);
            side.live.set_alerts(&store.ingest.alert_stats());
            let (i, r) = (&store.ingest, std::sync::atomic::Ordering::Relaxed);
            side.live.series.store(i.series() as u64, r);
            side.live.state_bytes.store(i.heap_bytes() as u64, r);
            side.live.lookups.store(i.lookups(), r);
        }
    }
    seal(store, journal_dir, side, progress)?;
    // A clean stop: the next start reads this snapshot and nothing after.
    if !store.ingest.has_pending() {
        store.snapshot()?;
    }
    Ok(())
}

/// Whether the store, having read through `read` and last been caught up
/// `behind_for` ago, leaves the CPU to the ingest path for now: only during
/// a burst, within [`YIELD_MAX`] and [`YIELD_MAX_LAG`], and never once the
/// journal is closed (shutdown reads to the end at once).
fn store_yields(view: JournalView, read: u64, behind_for: Duration) -> bool {
    view.burst
        && !view.closed
        && view.durable.saturating_sub(read) <= YIELD_MAX_LAG
        && behind_for < YIELD_MAX
}

fn seal(
    store: &mut Pipeline,
    journal_dir: &Path,
    side: &StoreSide,
    progress: &Progress,
) -> Result<(), ServiceError> {
    let Some(Sealed {
        manifest: m,
        alerts: told,
    }) = store.seal()?
    else {
        return Ok(());
    };
    if !told.is_empty() {
        for a in &told {
            tracing::info!(
                alert_seq = a.seq,
                kind = a.kind.as_str(),
                subject = %a.subject,
                "alert: {}",
                a.message
            );
        }
        side.live
            .alerts_sealed
            .fetch_add(told.len() as u64, std::sync::atomic::Ordering::Relaxed);
        side.live.set_alerts(&store.ingest.alert_stats());
        // A full sink waits, unless the service is stopping.
        side.alerts
            .send(told, &|| progress.is_closed() || side.health.is_dead());
    }
    side.health.sealed.add_commit(m.files.len());
    m.totals.publish(&side.health.sealed, m.last_seq);
    tracing::info!(
        commit = m.commit,
        receipts = format!("{}..={}", m.first_seq, m.last_seq),
        files = m.files.len(),
        stored = m.counts.stored,
        duplicate = m.counts.duplicate,
        rejected = m.counts.rejected,
        "store: sealed"
    );
    journal::truncate_through(journal_dir, m.last_seq)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The store yields only during a burst, within its time and lag
    /// bounds, and never after the journal closed.
    #[test]
    fn the_store_yields_to_a_burst_within_bounds() {
        let view = |durable, closed, burst| JournalView {
            durable,
            closed,
            burst,
        };
        let soon = Duration::from_secs(1);
        let read = 1_000;
        assert!(store_yields(view(read + 10, false, true), read, soon));
        assert!(store_yields(
            view(read + YIELD_MAX_LAG, false, true),
            read,
            YIELD_MAX - Duration::from_millis(1)
        ));
        assert!(!store_yields(view(read + 10, false, false), read, soon));
        assert!(!store_yields(view(read + 10, true, true), read, soon));
        assert!(!store_yields(
            view(read + YIELD_MAX_LAG + 1, false, true),
            read,
            soon
        ));
        assert!(!store_yields(view(read + 10, false, true), read, YIELD_MAX));
    }
}
