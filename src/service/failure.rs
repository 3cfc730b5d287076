//! How the service fails: a commit retried while the disk is full, a
//! stage's panic turned into the error that ends the service, and the
//! sealed counters published once at start (for `/metrics`).

use std::path::Path;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::ServiceError;
use crate::health::{Health, Stage};
use crate::journal::{Journal, JournalError};
use crate::mqtt::Delivery;
use crate::store::StoreError;

/// How often the journal retries a commit that found the disk full (nothing
/// of it is acked meanwhile; the broker holds what follows).
const DISK_FULL_RETRY: Duration = Duration::from_secs(1);

impl ServiceError {
    /// Why a stage died, without the "stage died" wrapping.
    pub(super) fn cause(&self) -> String {
        match self {
            ServiceError::StageDied { why, .. } => why.clone(),
            e => e.to_string(),
        }
    }
}

/// A stage's thread panicked: the error that ends the service.
pub(super) fn died(stage: Stage, panic: &(dyn std::any::Any + Send)) -> ServiceError {
    ServiceError::StageDied {
        stage: stage.as_str(),
        why: format!("panicked: {}", crate::health::panic_message(panic)),
    }
}

/// Publishes the commit log's totals for `/metrics` (read once, at start).
pub(super) fn publish_sealed_at_start(
    health: &Health,
    data: &Path,
    sealed_through: u64,
) -> Result<(), ServiceError> {
    let manifests = crate::store::commit::read_all(data).map_err(StoreError::from)?;
    for m in &manifests {
        health.sealed.add_commit(m.files.len());
    }
    let totals = manifests.last().map(|m| m.totals).unwrap_or_default();
    totals.publish(&health.sealed, sealed_through);
    Ok(())
}

/// Commits the pending group; while the disk is full, retries every
/// [`DISK_FULL_RETRY`] (nothing of the group is acked meanwhile: `/readyz`
/// says why, the queue before the journal fills, and the broker holds the
/// rest), until there is room again or the MQTT task has gone (shutdown,
/// or a stage died). Any other failure, fdatasync's above all, ends the
/// journal.
pub(super) fn commit_until_there_is_room(
    journal: &mut Journal,
    rx: &mpsc::Receiver<Delivery>,
    health: &Health,
    first_seq: u64,
    n: usize,
) -> Result<(), JournalError> {
    let mut since: Option<Instant> = None;
    loop {
        match journal.commit() {
            Ok(()) => {
                if let Some(t) = since {
                    health.failing(Stage::Journal, None);
                    tracing::info!(
                        waited_s = t.elapsed().as_secs(),
                        receipts = format!("{first_seq}..={}", first_seq + n as u64 - 1),
                        "journal: there is room again; committed"
                    );
                }
                return Ok(());
            }
            Err(e) if e.is_disk_full() && !rx.is_closed() => {
                if since.is_none() {
                    since = Some(Instant::now());
                    health.failing(
                        Stage::Journal,
                        Some(format!(
                            "disk full: {e}; retrying every {} s, nothing acked meanwhile ({n} messages waiting)",
                            DISK_FULL_RETRY.as_secs()
                        )),
                    );
                }
                health.busy(Stage::Journal);
                std::thread::sleep(DISK_FULL_RETRY);
            }
            Err(e) => {
                tracing::error!(
                    error = %e,
                    receipts = format!("{first_seq}..={}", first_seq + n as u64 - 1),
                    "journal: commit failed; these messages are not acknowledged"
                );
                return Err(e);
            }
        }
    }
}
