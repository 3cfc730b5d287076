//! The service: the one place that makes the channels, starts the stages and
//! owns shutdown.
//!
//! ```text
//!  poll task ──Delivery──▶ journal thread ──Vec<JournalRecord>──▶ store thread
//!  (mqtt.rs)   bounded      (group commit,    bounded               (decode, dedup,
//!      ▲                     fdatasync)                              seal Parquet,
//!      │                         │                                   truncate journal)
//!  ack task ◀───AckBatch─────────┘
//! ```
//!
//! Shutdown: the signal reaches only the poll task, which stops taking
//! messages and drops its sender; the journal makes the rest durable, sends
//! its last acks and closes; the ack task sends them and says so; the poll
//! task disconnects; the store seals what it holds and stops.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rumqttc::AsyncClient;
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot, watch};

use crate::config::ServeSettings;
use crate::journal::{self, Journal, JournalError, JournalRecord, DEFAULT_SEGMENT_BYTES};
use crate::mqtt::{self, AckBatch, ConnectionState, Delivery};
use crate::store::commit::Counters;
use crate::store::{Store, StoreError};

/// Deliveries waiting for the journal. Enough for a few group commits at
/// full broker speed (~40k msg/s × 10 ms fsync); when it is full the poll
/// task stops reading and the broker holds the messages.
const JOURNAL_QUEUE: usize = 8 * 1024;
/// Most deliveries in one group commit (bounds the batch's memory).
const MAX_GROUP: usize = 8 * 1024;
/// Journaled batches waiting for the store. When the store falls behind,
/// the journal waits, and through it the poll task.
const STORE_QUEUE: usize = 64;
/// How often the store checks whether its batch is old enough to seal.
const STORE_TICK: Duration = Duration::from_millis(100);

pub const JOURNAL_DIR: &str = "journal";
pub const STATE_DIR: &str = "_state";

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("data directory {path} is not usable: {source}")]
    DataDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("data directory {0} is in use by another gapless process")]
    Locked(PathBuf),
    #[error(transparent)]
    Mqtt(#[from] mqtt::MqttError),
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("internal: {0}")]
    Internal(String),
}

/// What a finished run reports.
#[derive(Debug, Clone)]
pub struct ServeReport {
    pub totals: Counters,
    pub sealed_through: u64,
    pub replayed: u64,
}

/// Holds the data directory's lock for the life of the service.
pub struct DataDir {
    pub path: PathBuf,
    _lock: File,
}

impl DataDir {
    /// Creates the directory if needed, checks it is writable, and takes an
    /// exclusive lock so two services cannot write the same data.
    pub fn open(path: &Path) -> Result<DataDir, AppError> {
        let err = |source| AppError::DataDir {
            path: path.to_owned(),
            source,
        };
        fs::create_dir_all(path.join(STATE_DIR)).map_err(err)?;
        let probe = path.join(STATE_DIR).join(".write-probe");
        File::create(&probe)
            .and_then(|mut f| f.write_all(b"ok"))
            .map_err(err)?;
        let _ = fs::remove_file(&probe);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path.join(STATE_DIR).join("lock"))
            .map_err(err)?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Err(AppError::Locked(path.to_owned())),
            Err(fs::TryLockError::Error(e)) => return Err(err(e)),
        }
        Ok(DataDir {
            path: path.to_owned(),
            _lock: lock,
        })
    }

    /// The MQTT client id of this data directory: created once, then reused,
    /// so a restart resumes the same persistent session at the broker.
    pub fn client_id(&self) -> Result<String, AppError> {
        let path = self.path.join(STATE_DIR).join("client_id");
        let err = |source| AppError::DataDir {
            path: path.clone(),
            source,
        };
        match fs::read_to_string(&path) {
            Ok(s) if !s.trim().is_empty() => return Ok(s.trim().to_string()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(err(e)),
        }
        let canonical = fs::canonicalize(&self.path).unwrap_or_else(|_| self.path.clone());
        let seed = format!(
            "{}|{}|{}",
            canonical.display(),
            std::process::id(),
            chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default()
        );
        let id = format!("gapless-{}", &hex::encode(Sha256::digest(seed.as_bytes()))[..16]);
        let tmp = path.with_extension("tmp");
        fs::write(&tmp, &id).map_err(err)?;
        File::open(&tmp).and_then(|f| f.sync_all()).map_err(err)?;
        fs::rename(&tmp, &path).map_err(err)?;
        Ok(id)
    }
}

/// Runs the service until `shutdown` becomes true (or a stage fails).
pub async fn serve(
    mut settings: ServeSettings,
    shutdown: watch::Receiver<bool>,
) -> Result<ServeReport, AppError> {
    let data = DataDir::open(&settings.store.data)?;
    if !settings.client_id_given {
        settings.mqtt.client_id = data.client_id()?;
    }
    let journal_dir = data.path.join(JOURNAL_DIR);

    // Recover: sealed files first, then the journal after them.
    let mut store = Store::open(settings.store.clone())?;
    let (journal, recovery) = Journal::open(
        &journal_dir,
        store.sealed_through() + 1,
        DEFAULT_SEGMENT_BYTES,
    )?;
    let replayed = journal::replay(&journal_dir, store.sealed_through(), |rec| {
        store.ingest(&rec);
        Ok(())
    })?;
    tracing::info!(
        data = %data.path.display(),
        sealed_through = store.sealed_through(),
        journal_records = recovery.records,
        replayed,
        next_receipt = journal.next_seq(),
        "store: recovered"
    );

    let state = Arc::new(ConnectionState::default());
    let options = mqtt::options(&settings.mqtt)?;
    let (client, eventloop) = AsyncClient::new(options, 1024);

    let (delivery_tx, delivery_rx) = mpsc::channel::<Delivery>(JOURNAL_QUEUE);
    let (ack_tx, ack_rx) = mpsc::unbounded_channel::<AckBatch>();
    let (store_tx, store_rx) = std_mpsc::sync_channel::<Vec<JournalRecord>>(STORE_QUEUE);
    let (acks_done_tx, acks_done_rx) = watch::channel(false);

    let (journal_done_tx, journal_done) = oneshot::channel();
    std::thread::Builder::new()
        .name("gapless-journal".into())
        .spawn(move || {
            let r = run_journal(journal, delivery_rx, ack_tx, store_tx);
            if let Err(e) = &r {
                tracing::error!(error = %e, "journal: stopped on error; nothing after the last commit was acknowledged");
            }
            let _ = journal_done_tx.send(r);
        })
        .map_err(|e| AppError::Internal(e.to_string()))?;

    let (store_done_tx, store_done) = oneshot::channel();
    let jdir = journal_dir.clone();
    std::thread::Builder::new()
        .name("gapless-store".into())
        .spawn(move || {
            let r = run_store(&mut store, store_rx, &jdir).map(|()| (store.totals(), store.sealed_through()));
            if let Err(e) = &r {
                tracing::error!(error = %e, "store: stopped on error; the journal keeps every message");
            }
            let _ = store_done_tx.send(r);
        })
        .map_err(|e| AppError::Internal(e.to_string()))?;

    let acks = tokio::spawn(mqtt::run_acks(client.clone(), ack_rx, state.clone(), acks_done_tx));
    let poll = tokio::spawn(mqtt::run_poll(
        settings.mqtt.clone(),
        eventloop,
        client,
        delivery_tx,
        state,
        shutdown,
        acks_done_rx,
    ));

    let poll_result = poll.await.map_err(|e| AppError::Internal(e.to_string()))?;
    let journal_result = journal_done
        .await
        .map_err(|e| AppError::Internal(e.to_string()))?;
    let _ = acks.await;
    let store_result = store_done
        .await
        .map_err(|e| AppError::Internal(e.to_string()))?;
    poll_result?;
    journal_result?;
    let (totals, sealed_through) = store_result?;
    tracing::info!(
        delivered = totals.delivered,
        stored = totals.stored,
        duplicate = totals.duplicate,
        rejected = totals.rejected,
        sealed_through,
        "gapless: stopped cleanly"
    );
    Ok(ServeReport {
        totals,
        sealed_through,
        replayed,
    })
}

/// The journal stage: take what has arrived, append it, make it durable with
/// one fdatasync, then release the acks and pass the records on.
fn run_journal(
    mut journal: Journal,
    mut rx: mpsc::Receiver<Delivery>,
    acks: mpsc::UnboundedSender<AckBatch>,
    to_store: std_mpsc::SyncSender<Vec<JournalRecord>>,
) -> Result<(), JournalError> {
    let mut group: Vec<Delivery> = Vec::with_capacity(MAX_GROUP);
    while let Some(first) = rx.blocking_recv() {
        group.push(first);
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(d) => group.push(d),
                Err(_) => break,
            }
        }
        let first_seq = journal.next_seq();
        for d in &group {
            journal.append(d.received_at, &d.topic, &d.payload);
        }
        journal.commit()?;
        // Durable: release the acks, grouped by connection, in order.
        let mut records = Vec::with_capacity(group.len());
        let mut batch: Option<AckBatch> = None;
        for (seq, d) in (first_seq..).zip(group.drain(..)) {
            match &mut batch {
                Some(b) if b.epoch == d.epoch => b.acks.push((d.pkid, d.qos)),
                _ => {
                    if let Some(b) = batch.take() {
                        let _ = acks.send(b);
                    }
                    batch = Some(AckBatch {
                        epoch: d.epoch,
                        acks: vec![(d.pkid, d.qos)],
                    });
                }
            }
            records.push(JournalRecord {
                seq,
                received_at: d.received_at,
                topic: d.topic,
                payload: d.payload,
            });
        }
        if let Some(b) = batch {
            let _ = acks.send(b);
        }
        if to_store.send(records).is_err() {
            // The store stopped on an error; the journal keeps everything,
            // but continuing would only grow it: stop taking messages.
            return Ok(());
        }
    }
    Ok(())
}

/// The store stage: ingest journaled records, seal when due, and truncate
/// the journal behind each seal.
fn run_store(
    store: &mut Store,
    rx: std_mpsc::Receiver<Vec<JournalRecord>>,
    journal_dir: &Path,
) -> Result<(), StoreError> {
    loop {
        match rx.recv_timeout(STORE_TICK) {
            Ok(records) => {
                for r in &records {
                    store.ingest(r);
                }
            }
            Err(std_mpsc::RecvTimeoutError::Timeout) => {}
            Err(std_mpsc::RecvTimeoutError::Disconnected) => break,
        }
        if store.is_seal_due(Instant::now()) {
            seal(store, journal_dir)?;
        }
    }
    seal(store, journal_dir)
}

fn seal(store: &mut Store, journal_dir: &Path) -> Result<(), StoreError> {
    if let Some(m) = store.seal()? {
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
    }
    Ok(())
}

/// `gapless stats`: counters from the commit log, plus what the journal
/// holds beyond the last commit.
pub fn stats(data: &Path) -> Result<serde_json::Value, AppError> {
    if !data.exists() {
        return Err(AppError::DataDir {
            path: data.to_owned(),
            source: io::Error::new(io::ErrorKind::NotFound, "no such directory"),
        });
    }
    let manifests = crate::store::commit::read_all(data).map_err(StoreError::from)?;
    let last = manifests.last();
    let totals = last.map(|m| m.totals).unwrap_or_default();
    let sealed_through = last.map_or(0, |m| m.last_seq);
    let pending = journal::count_after(&data.join(JOURNAL_DIR), sealed_through)?;
    let files: usize = manifests.iter().map(|m| m.files.len()).sum();
    Ok(serde_json::json!({
        "delivered": totals.delivered,
        "stored": totals.stored,
        "duplicate": totals.duplicate,
        "rejected": totals.rejected,
        "balanced": totals.is_balanced(),
        "readings": {
            "stored": totals.readings_stored,
            "duplicate": totals.readings_duplicate,
            "conflict": totals.readings_conflict,
        },
        "sealed_through_receipt": sealed_through,
        "commits": manifests.len(),
        "files": files,
        "journal_pending": pending,
    }))
}

/// A shutdown signal that becomes true on SIGINT or SIGTERM.
pub fn shutdown_on_signals() -> io::Result<watch::Receiver<bool>> {
    use tokio::signal::unix::{signal, SignalKind};
    let (tx, rx) = watch::channel(false);
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = int.recv() => tracing::info!("SIGINT: shutting down"),
        }
        let _ = tx.send(true);
    });
    Ok(rx)
}
