//! `serve`'s compactor: a thread of its own, at low priority.

use std::sync::Arc;

use super::{lower_priority_of_this_thread, ServiceError};
use crate::config::ServeSettings;
use crate::health::LiveStats;
use crate::store::StoreError;

/// The compaction thread of `serve`: dropping `stop` stops it.
pub(super) struct Compactor {
    pub(super) stop: std::sync::mpsc::Sender<()>,
    pub(super) thread: std::thread::JoinHandle<()>,
}

/// `serve`'s compactor: every `every`, compacts the dates that ended more
/// than `grace` ago (`store::compact`), on a thread of its own at low
/// priority, until the returned sender is dropped. A failure is logged and
/// retried next time: the readings files it would have merged are read
/// as they are meanwhile.
pub(super) fn start_compactor(
    settings: &ServeSettings,
    clock: crate::time::Clock,
    live: Arc<LiveStats>,
) -> Result<Option<Compactor>, ServiceError> {
    use std::sync::mpsc::{self, RecvTimeoutError, TryRecvError};
    let Some(every) = settings.compact_every else {
        return Ok(None);
    };
    let data = settings.store.data.clone();
    let key =
        crate::store::ledger::AuditKey::load_or_create(&data, settings.store.audit_key.as_deref())
            .map_err(StoreError::from)?;
    let grace = i64::try_from(settings.compact_grace.as_micros()).unwrap_or(i64::MAX);
    let (tx, rx) = mpsc::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("gapless-compact".into())
        .spawn(move || {
            lower_priority_of_this_thread();
            while let Err(RecvTimeoutError::Timeout) = rx.recv_timeout(every) {
                let stop = || !matches!(rx.try_recv(), Err(TryRecvError::Empty));
                match crate::store::compact::compact(&data, &key, clock.now_micros(), grace, &stop)
                {
                    // Each date is logged (done or failed) as it goes.
                    Ok(round) if !round.done.is_empty() || !round.failed.is_empty() => {
                        live.compactions_done.fetch_add(
                            round.done.len() as u64,
                            std::sync::atomic::Ordering::Relaxed,
                        );
                        live.compactions_failed.fetch_add(
                            round.failed.len() as u64,
                            std::sync::atomic::Ordering::Relaxed,
                        );
                        tracing::info!(
                            dates = round.done.len(),
                            failed = round.failed.len(),
                            "compaction: round over"
                        )
                    }
                    Ok(_) => {}
                    Err(e) => {
                        live.compactions_failed
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        tracing::error!(error = %e, "compaction: failed; retried in the next round")
                    }
                }
            }
        })
        .map_err(|e| ServiceError::spawn("compaction", e))?;
    Ok(Some(Compactor { stop: tx, thread }))
}
