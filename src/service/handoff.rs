//! Where the journal and the store are, shared between their threads: the
//! durable watermark, what the store has read, and the commits it may take
//! from memory instead of reading them back from the disk.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use super::{BURST_HOLDS, HANDOFF_BYTES, MAX_STORE_LAG};
use crate::health::{Bound, Health};
use crate::journal::JournalRecord;

/// Where the journal and the store are, shared between their threads.
pub(super) struct Progress {
    state: Mutex<ProgressState>,
    changed: Condvar,
}

struct ProgressState {
    /// Last receipt made durable by the journal.
    durable: u64,
    /// Last receipt the store has read.
    read: u64,
    /// The journal will write no more.
    closed: bool,
    /// The store stopped on an error: the journal must not wait for it.
    store_failed: bool,
    /// Commits, in order, that the store may take from memory.
    handoff: VecDeque<Committed>,
    /// Their payload and topic bytes.
    handoff_bytes: usize,
    /// When the journal last committed a group during a burst (see
    /// [`BURST_HOLDS`]).
    burst_at: Option<Instant>,
}

/// What the store sees of the journal when it looks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct JournalView {
    /// Last receipt made durable.
    pub(super) durable: u64,
    /// The journal will write no more.
    pub(super) closed: bool,
    /// A burst is on (see [`BURST_HOLDS`]).
    pub(super) burst: bool,
}

/// The records of one durable commit, and where the journal goes on after
/// it (for [`JournalTail::jump`](crate::journal::JournalTail::jump)).
pub(super) struct Committed {
    pub(super) records: Vec<JournalRecord>,
    pub(super) next: (PathBuf, u64),
    pub(super) bytes: usize,
}

impl Progress {
    pub(super) fn new(durable: u64, read: u64) -> Progress {
        Progress {
            state: Mutex::new(ProgressState {
                durable,
                read,
                closed: false,
                store_failed: false,
                handoff: VecDeque::new(),
                handoff_bytes: 0,
                burst_at: None,
            }),
            changed: Condvar::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ProgressState> {
        // A poisoned lock means a stage panicked; its state is still the
        // last consistent one we wrote, so carry on with it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Journal side: everything through `seq` is durable; `committed`
    /// holds the records of the last commit if the store may take them from
    /// memory (there is room for them); `streaming` says whether the commit
    /// was part of a burst.
    pub(super) fn set_durable(&self, seq: u64, committed: Option<Committed>, streaming: bool) {
        let mut s = self.lock();
        s.durable = seq;
        if streaming {
            s.burst_at = Some(Instant::now());
        }
        if let Some(c) = committed {
            if s.handoff_bytes + c.bytes <= HANDOFF_BYTES {
                s.handoff_bytes += c.bytes;
                s.handoff.push_back(c);
            }
        }
        drop(s);
        self.changed.notify_all();
    }

    /// Whether a commit of `bytes` would fit in the handoff now.
    pub(super) fn handoff_has_room(&self, bytes: usize) -> bool {
        self.lock().handoff_bytes + bytes <= HANDOFF_BYTES
    }

    /// Store side: the commit that starts at `next_seq`, if it is in
    /// memory; else the first record in memory after it (read the disk up
    /// to there). Commits the store has read past are dropped.
    pub(super) fn take_committed(&self, next_seq: u64) -> Result<Committed, Option<u64>> {
        let mut s = self.lock();
        while let Some(c) = s.handoff.front() {
            let first = c.records.first().map_or(u64::MAX, |r| r.seq);
            let last = c.records.last().map_or(0, |r| r.seq);
            if last < next_seq {
                let c = s.handoff.pop_front().expect("front exists");
                s.handoff_bytes -= c.bytes;
            } else if first == next_seq {
                let c = s.handoff.pop_front().expect("front exists");
                s.handoff_bytes -= c.bytes;
                return Ok(c);
            } else {
                return Err((first > next_seq).then_some(first));
            }
        }
        Err(None)
    }

    pub(super) fn set_read(&self, seq: u64) {
        self.lock().read = seq;
        self.changed.notify_all();
    }

    pub(super) fn close(&self) {
        self.lock().closed = true;
        self.changed.notify_all();
    }

    pub(super) fn store_failed(&self) {
        self.lock().store_failed = true;
        self.changed.notify_all();
    }

    /// Journal side: waits while the store trails by more than the lag
    /// bound (counted as the `store_lag` bound). False if the store failed.
    pub(super) fn wait_for_store(&self, health: &Health) -> bool {
        let mut s = self.lock();
        if !s.store_failed && s.durable.saturating_sub(s.read) > MAX_STORE_LAG {
            health.bound_hit(Bound::StoreLag);
        }
        while !s.store_failed && s.durable.saturating_sub(s.read) > MAX_STORE_LAG {
            s = self.changed.wait(s).unwrap_or_else(|e| e.into_inner());
        }
        !s.store_failed
    }

    pub(super) fn is_closed(&self) -> bool {
        self.lock().closed
    }

    pub(super) fn has_store_failed(&self) -> bool {
        self.lock().store_failed
    }

    /// Store side: waits up to `tick` for records beyond `read`.
    pub(super) fn wait_for_journal(&self, read: u64, tick: Duration) -> JournalView {
        let s = self.lock();
        let (s, _) = self
            .changed
            .wait_timeout_while(s, tick, |s| s.durable <= read && !s.closed)
            .unwrap_or_else(|e| e.into_inner());
        JournalView {
            durable: s.durable,
            closed: s.closed,
            burst: s.burst_at.is_some_and(|t| t.elapsed() < BURST_HOLDS),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn commit(seqs: std::ops::RangeInclusive<u64>, bytes: usize) -> Committed {
        Committed {
            records: seqs
                .map(|seq| JournalRecord {
                    seq,
                    received_at: 0,
                    topic: "t".into(),
                    payload: bytes::Bytes::new(),
                })
                .collect(),
            next: (PathBuf::from("seg"), 0),
            bytes,
        }
    }

    /// The store takes a commit from memory only when it starts where the
    /// store is; commits it has read past are dropped, one further on says
    /// where to stop reading the disk, and the handoff never holds more than
    /// its bytes (a commit that does not fit is left to the disk).
    #[test]
    fn the_handoff_gives_the_store_what_is_next_and_stays_bounded() {
        let p = Progress::new(0, 0);
        p.set_durable(3, Some(commit(1..=3, 10)), false);
        p.set_durable(5, Some(commit(4..=5, 10)), false);
        assert_eq!(p.take_committed(1).ok().map(|c| c.records.len()), Some(3));
        // Read 4 from the disk meanwhile: 4..=5 is stale, nothing is next.
        assert_eq!(p.take_committed(6).err(), Some(None));
        assert_eq!(p.lock().handoff_bytes, 0);
        p.set_durable(9, Some(commit(8..=9, 10)), false);
        assert_eq!(
            p.take_committed(6).err(),
            Some(Some(8)),
            "read 6 and 7 from the disk"
        );
        assert!(p.handoff_has_room(HANDOFF_BYTES - 10));
        assert!(!p.handoff_has_room(HANDOFF_BYTES - 9));
        p.set_durable(10, Some(commit(10..=10, HANDOFF_BYTES)), false);
        assert_eq!(p.lock().handoff.len(), 1, "the big commit did not fit");
        assert_eq!(p.lock().durable, 10);
        assert!(p.take_committed(8).is_ok());
        assert_eq!(
            p.take_committed(10).err(),
            Some(None),
            "10 is on the disk only"
        );
    }

    /// The journal waiting on a store that trails past MAX_STORE_LAG is
    /// released when the store fails (it used to wait forever when the
    /// store thread panicked), and the wait is counted as back-pressure.
    #[test]
    fn a_failed_store_releases_the_journal_waiting_at_the_lag_bound() {
        let p = Arc::new(Progress::new(0, 0));
        let health = Arc::new(Health::default());
        p.set_durable(MAX_STORE_LAG + 10, None, false);
        let (p2, h2) = (p.clone(), health.clone());
        let waiter = std::thread::spawn(move || p2.wait_for_store(&h2));
        std::thread::sleep(Duration::from_millis(50));
        assert!(!waiter.is_finished(), "waits while the store trails");
        p.store_failed();
        assert!(!waiter.join().unwrap(), "released, told the store failed");
        assert_eq!(health.bound_hits(Bound::StoreLag), 1);
    }

    /// A streaming commit starts a burst, which holds for [`BURST_HOLDS`]
    /// after the last such commit; other commits do not start one.
    #[test]
    fn a_burst_holds_for_a_while_after_a_streaming_commit() {
        let p = Progress::new(0, 0);
        p.set_durable(63, None, false);
        let view = p.wait_for_journal(0, Duration::ZERO);
        assert_eq!((view.durable, view.burst), (63, false));
        p.set_durable(200, None, true);
        assert!(p.wait_for_journal(0, Duration::ZERO).burst);
        p.set_durable(201, None, false);
        assert!(
            p.wait_for_journal(0, Duration::ZERO).burst,
            "a small commit right after does not end it"
        );
        std::thread::sleep(BURST_HOLDS + Duration::from_millis(10));
        assert!(!p.wait_for_journal(0, Duration::ZERO).burst);
        p.close();
        assert!(p.wait_for_journal(0, Duration::ZERO).closed);
    }
}
