//! The journal thread: group commits, acks in order, the durable watermark.

use std::time::Instant;

use tokio::sync::mpsc;

use super::failure::commit_until_there_is_room;
use super::handoff::{Committed, Progress};
use super::{COMMIT_WINDOW, LINGER_MIN_GROUP, MAX_GROUP};
use crate::health::{Bound, Health, Stage};
use crate::journal::{Journal, JournalError, JournalRecord};
use crate::mqtt::{AckBatch, Delivery};

/// The journal stage: take what has arrived, append it, make it durable with
/// one fdatasync, then hand the acks back and move the durable watermark.
pub(super) fn run_journal(
    mut journal: Journal,
    mut rx: mpsc::Receiver<Delivery>,
    acks: mpsc::Sender<AckBatch>,
    progress: &Progress,
    health: &Health,
) -> Result<(), JournalError> {
    let mut group: Vec<Delivery> = Vec::with_capacity(MAX_GROUP);
    let mut last_commit = Instant::now();
    let mut last_group = 0;
    // Hands an ack batch to the MQTT task; a full queue holds the journal
    // back (counted), a closed one means the task is gone (those messages
    // are durable; the broker redelivers them and they count as duplicates).
    let send = |b: AckBatch| match acks.try_send(b) {
        Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
        Err(mpsc::error::TrySendError::Full(b)) => {
            health.bound_hit(Bound::AckQueue);
            health.idle(Stage::Journal);
            let _ = acks.blocking_send(b);
        }
    };
    loop {
        health.idle(Stage::Journal);
        let Some(first) = rx.blocking_recv() else {
            break;
        };
        if progress.has_store_failed() {
            // The store stopped: take nothing more (not journaled, not acked).
            return Ok(());
        }
        health.busy(Stage::Journal);
        group.push(first);
        if last_group >= LINGER_MIN_GROUP {
            let wait = COMMIT_WINDOW.saturating_sub(last_commit.elapsed());
            if !wait.is_zero() {
                std::thread::sleep(wait);
            }
        }
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(d) => group.push(d),
                Err(_) => break,
            }
        }
        let first_seq = journal.next_seq();
        let mut bytes = 0;
        for d in &group {
            journal.append(d.received_at, &d.topic, &d.payload);
            bytes += d.payload.len() + d.topic.len();
        }
        commit_until_there_is_room(&mut journal, &rx, health, first_seq, group.len())?;
        last_commit = Instant::now();
        last_group = group.len();
        // The broker streams on its own: a full group, and more waiting
        // already, before any of its acks went out.
        let streaming = last_group >= LINGER_MIN_GROUP && !rx.is_empty();
        // The store takes these records from memory if there is room.
        let room = progress.handoff_has_room(bytes);
        if !room {
            health.bound_hit(Bound::Handoff);
        }
        let mut records = room.then(|| Vec::with_capacity(group.len()));
        // Durable: release the acks, grouped by connection, in order.
        let mut batch: Option<AckBatch> = None;
        for (seq, d) in (first_seq..).zip(group.drain(..)) {
            match &mut batch {
                Some(b) if b.epoch == d.epoch => b.acks.push((d.pkid, d.qos)),
                _ => {
                    if let Some(b) = batch.take() {
                        send(b);
                    }
                    batch = Some(AckBatch {
                        epoch: d.epoch,
                        acks: vec![(d.pkid, d.qos)],
                    });
                }
            }
            if let Some(r) = &mut records {
                r.push(JournalRecord {
                    seq,
                    received_at: d.received_at,
                    topic: d.topic,
                    payload: d.payload,
                });
            }
        }
        if let Some(b) = batch {
            send(b);
        }
        let committed = records.map(|records| Committed {
            records,
            next: journal.position(),
            bytes,
        });
        progress.set_durable(journal.next_seq() - 1, committed, streaming);
        health
            .durable
            .store(journal.next_seq() - 1, std::sync::atomic::Ordering::Relaxed);
        health.idle(Stage::Journal);
        if !progress.wait_for_store(health) {
            // The store stopped on an error. The journal keeps everything,
            // but continuing would only grow it: take nothing more.
            return Ok(());
        }
    }
    Ok(())
}
