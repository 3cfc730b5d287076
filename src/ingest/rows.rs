//! The rows the ingest stage produces and the store seals: one per
//! receipt, reading, reject and gap event, and the message counters. The
//! store's [`tables`](crate::store::tables) turns them into Arrow batches.

use serde::{Deserialize, Serialize};

use crate::decode::Format;
use crate::reading::Reading;

/// Message and reading counters. Per commit and cumulative; they always
/// satisfy `delivered = stored + duplicate + rejected`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Messages delivered by the broker (= receipts).
    pub delivered: u64,
    /// Messages with at least one new reading.
    pub stored: u64,
    /// Messages whose readings were all stored already.
    pub duplicate: u64,
    /// Messages that could not be decoded (raw bytes in `rejects`).
    pub rejected: u64,
    /// Readings written to `readings` (conflicts included).
    pub readings_stored: u64,
    /// Readings dropped because the same meter, register, time and value
    /// was stored before.
    pub readings_duplicate: u64,
    /// Stored readings flagged as conflicting with an earlier value.
    pub readings_conflict: u64,
}

impl Counters {
    /// Publishes these totals of the commit log to `/metrics` after a
    /// seal (or at start), with the last receipt sealed.
    pub fn publish(&self, to: &crate::health::Sealed, through: u64) {
        use std::sync::atomic::Ordering::Relaxed;
        to.delivered.store(self.delivered, Relaxed);
        to.stored.store(self.stored, Relaxed);
        to.duplicate.store(self.duplicate, Relaxed);
        to.rejected.store(self.rejected, Relaxed);
        to.readings_stored.store(self.readings_stored, Relaxed);
        to.readings_duplicate
            .store(self.readings_duplicate, Relaxed);
        to.readings_conflict.store(self.readings_conflict, Relaxed);
        to.through.store(through, Relaxed);
    }

    pub fn add(&mut self, o: &Counters) {
        self.delivered += o.delivered;
        self.stored += o.stored;
        self.duplicate += o.duplicate;
        self.rejected += o.rejected;
        self.readings_stored += o.readings_stored;
        self.readings_duplicate += o.readings_duplicate;
        self.readings_conflict += o.readings_conflict;
    }

    pub fn is_balanced(&self) -> bool {
        self.delivered == self.stored + self.duplicate + self.rejected
    }
}

/// What became of a delivered message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// At least one reading of it was new.
    Stored,
    /// Every reading of it was already stored (same meter, register, time, value).
    Duplicate,
    /// It could not be decoded; its bytes are in `rejects`.
    Rejected,
}

impl Disposition {
    pub fn as_str(self) -> &'static str {
        match self {
            Disposition::Stored => "stored",
            Disposition::Duplicate => "duplicate",
            Disposition::Rejected => "rejected",
        }
    }
}

/// One row of `receipts`.
#[derive(Debug, Clone)]
pub struct ReceiptRow {
    pub seq: u64,
    pub received_at: i64,
    pub topic: String,
    pub sha256: [u8; 32],
    pub size: u32,
    pub format: Option<Format>,
    pub disposition: Disposition,
    pub reason: Option<String>,
    pub readings_stored: u32,
    pub readings_duplicate: u32,
    pub readings_conflict: u32,
}

/// One row of `readings`.
#[derive(Debug, Clone)]
pub struct ReadingRow {
    pub reading: Reading,
    pub conflict: bool,
    pub receipt_seq: u64,
    pub reading_index: u32,
    pub received_at: i64,
    pub format: Format,
}

/// One row of `rejects`.
#[derive(Debug, Clone)]
pub struct RejectRow {
    pub seq: u64,
    pub received_at: i64,
    pub topic: String,
    pub format: Option<Format>,
    pub reason: String,
    pub payload: bytes::Bytes,
}

/// What a `gaps` row records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GapEvent {
    /// A gap between two readings (closed by the later one).
    Found,
    /// A gap recorded earlier that a late reading split or closed: it no
    /// longer stands; the parts that remain are `found` rows of their own.
    Superseded,
}

impl GapEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            GapEvent::Found => "found",
            GapEvent::Superseded => "superseded",
        }
    }
}

/// One row of `gaps`.
#[derive(Debug, Clone)]
pub struct GapRow {
    pub meter_id: String,
    pub register: String,
    pub medium: crate::reading::Medium,
    pub event: GapEvent,
    pub gap: crate::continuity::series::Gap,
    pub interval_source: crate::continuity::IntervalSource,
    /// The receipt of the reading that caused the event.
    pub receipt_seq: u64,
    /// When that reading was received.
    pub detected_at: i64,
}
