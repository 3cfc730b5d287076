//! The service: the one place that makes the channels, starts the stages and
//! owns shutdown.
//!
//! ```text
//!  mqtt task ──Delivery (bounded)──▶ journal thread ──durable watermark──▶ store thread
//!  (poll, ack)                       (group commit,                         (tails the journal files:
//!      ▲                              fdatasync)                             decode, dedup, seal
//!      └────────AckBatch (in order)──────┘                                   Parquet, truncate)
//! ```
//!
//! Acks wait only for the journal; the store follows the journal files at
//! its own pace, at most [`MAX_STORE_LAG`] records behind (beyond that the
//! journal waits, the mqtt task stops polling, and the broker holds the
//! messages). During a burst (the broker streaming at full speed) the store
//! steps aside for a bounded while ([`YIELD_MAX`], [`YIELD_MAX_LAG`]) so
//! that the broker and the ack path have the cores; the burst waits, durable,
//! in the journal. On start the store's first reads are the replay.
//!
//! Shutdown: the signal reaches only the mqtt task, which stops taking
//! messages and drops its sender; the journal makes the rest durable, hands
//! over its last acks and closes; the mqtt task sends them and disconnects;
//! the store reads to the end of the journal, seals, and stops.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use rumqttc::AsyncClient;
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot, watch};

use crate::alerts::sink::{AlertSender, SinkStats, Sinks};
use crate::config::ServeSettings;
use crate::health::LiveStats;
use crate::health::{Bound, Health, Stage};
use crate::journal::{
    self, Journal, JournalError, JournalRecord, JournalTail, DEFAULT_SEGMENT_BYTES,
};
use crate::layout::{JOURNAL_DIR, STATE_DIR};
use crate::mqtt::{self, AckBatch, ConnectionState, Delivery};
use crate::store::commit::Counters;
use crate::store::StoreError;
use crate::time::Clock;

mod failure;
mod pipeline;
use failure::{commit_until_there_is_room, died, publish_sealed_at_start};
pub use pipeline::{Pipeline, PipelineError, Sealed};

/// Deliveries waiting for the journal. Enough for a few group commits at
/// full broker speed (~40k msg/s × 10 ms fsync); when it is full the poll
/// task stops reading and the broker holds the messages.
const JOURNAL_QUEUE: usize = 8 * 1024;
/// Most deliveries in one group commit (bounds the batch's memory).
const MAX_GROUP: usize = 8 * 1024;
/// Group commit window under load: when the previous group was large, the
/// next commit follows it by at least this much, collecting what arrives
/// meanwhile, so that there are a couple of hundred fdatasyncs (and ack
/// flushes) per second instead of one per handful of messages. Adds at most
/// this much to an ack's latency.
const COMMIT_WINDOW: Duration = Duration::from_millis(5);
/// A group at least this large means load: linger for the window. Smaller
/// groups commit at once, so a broker that caps in-flight messages per
/// client (Mosquitto's default is 20) never waits on the window.
const LINGER_MIN_GROUP: usize = 64;
/// Ack batches waiting for the MQTT task. Each batch holds the acks of one
/// commit (of at most [`MAX_GROUP`] deliveries) for one connection: a few
/// hundred commits a second under load. The MQTT task takes them even
/// while it waits to hand the journal a delivery, so this fills only if the
/// task is stuck on the network (seconds of commits); then the journal
/// waits before its next commit (back-pressure, counted as `ack_queue`).
const ACK_QUEUE: usize = 4096;
/// How often the async runtime's ticker beats for the `api` stage.
const RUNTIME_TICK: Duration = Duration::from_secs(1);
/// How far (in records) the store may trail the journal. The records it has
/// not read are on disk, not in memory; the bound limits the replay after a
/// crash and the journal's disk use.
pub const MAX_STORE_LAG: u64 = 1_000_000;
/// How often the store checks whether its batch is old enough to seal.
const STORE_TICK: Duration = Duration::from_millis(100);
/// A burst: less than this long ago, the journal made a group of at least
/// [`LINGER_MIN_GROUP`] deliveries durable and found more already waiting,
/// before any of that group's acks went out (the broker streams on its own,
/// not in step with our acks). During a burst the store
/// leaves the CPU to the ingest path and to the broker beside it (on two
/// cores, every cycle the store takes is one the broker does not get)...
const BURST_HOLDS: Duration = Duration::from_millis(50);
/// ...for at most this long after it was last caught up with the journal...
const YIELD_MAX: Duration = Duration::from_secs(10);
/// ...and only while it trails by at most this many records. Beyond either
/// bound it works through the burst at its own (lowered) priority, as it
/// does when there is no burst, so that sealing, alerts and the journal's
/// disk use stay bounded however long the burst lasts.
const YIELD_MAX_LAG: u64 = MAX_STORE_LAG / 4;
/// How long the store sleeps each time it yields.
const YIELD_TICK: Duration = Duration::from_millis(5);
/// Most journal records the store reads from the disk before it looks again
/// whether a seal is due (from memory it takes one commit, at most
/// [`MAX_GROUP`] records): the seal-by-rows bound (`--seal-max-rows`) holds
/// to within that many messages, however far the store trails (it used to
/// read all it trailed by in one go: up to `MAX_STORE_LAG` messages).
const STORE_READ_CHUNK: u64 = 4096;
/// Payload bytes of committed records held for the store to take from
/// memory (the journal writes with `O_DIRECT`, so reading them back would
/// go to the disk). A commit that does not fit is read from the disk.
const HANDOFF_BYTES: usize = 64 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("data directory {path} is not usable: {source}")]
    DataDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("data directory {path} is in use by another gapless process ({holder})")]
    Locked { path: PathBuf, holder: String },
    #[error("the {stage} stage died: {why} (acks stopped; the journal keeps what was acknowledged, and the restart replays it)")]
    StageDied { stage: &'static str, why: String },
    #[error(transparent)]
    Mqtt(#[from] mqtt::MqttError),
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
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
        let lock_path = path.join(STATE_DIR).join(crate::layout::LOCK_FILE);
        let mut lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&lock_path)
            .map_err(err)?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                // The holder wrote who it is after taking the lock.
                let holder = fs::read_to_string(&lock_path)
                    .ok()
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(|| "holder unknown".into());
                return Err(AppError::Locked {
                    path: path.to_owned(),
                    holder,
                });
            }
            Err(fs::TryLockError::Error(e)) => return Err(err(e)),
        }
        // Name the holder for a second process that finds the lock taken.
        let host = fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "unknown host".into());
        let holder = format!(
            "pid {} on {host}, since {}",
            std::process::id(),
            crate::time::format_micros(crate::time::now_micros())
        );
        lock.set_len(0)
            .and_then(|()| lock.write_all(holder.as_bytes()))
            .map_err(err)?;
        Ok(DataDir {
            path: path.to_owned(),
            _lock: lock,
        })
    }

    /// The MQTT client id of this data directory: created once, then reused,
    /// so a restart resumes the same persistent session at the broker.
    pub fn client_id(&self) -> Result<String, AppError> {
        let path = self
            .path
            .join(STATE_DIR)
            .join(crate::layout::CLIENT_ID_FILE);
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
        let id = format!(
            "gapless-{}",
            &hex::encode(Sha256::digest(seed.as_bytes()))[..16]
        );
        let tmp = path.with_extension("tmp");
        fs::write(&tmp, &id).map_err(err)?;
        File::open(&tmp).and_then(|f| f.sync_all()).map_err(err)?;
        fs::rename(&tmp, &path).map_err(err)?;
        Ok(id)
    }
}

/// Runs the service until `shutdown` becomes true (or a stage fails).
pub async fn serve(
    settings: ServeSettings,
    shutdown: watch::Receiver<bool>,
) -> Result<ServeReport, AppError> {
    serve_with_state(settings, shutdown, Arc::default()).await
}

/// [`serve`], sharing the connection state (connected, delivered, acked)
/// with the caller: the benchmark watches it.
pub async fn serve_with_state(
    mut settings: ServeSettings,
    shutdown: watch::Receiver<bool>,
    state: Arc<ConnectionState>,
) -> Result<ServeReport, AppError> {
    crate::fault::announce();
    let data = DataDir::open(&settings.store.data)?;
    crate::store::ledger::check_key_outside(
        &data.path,
        settings.store.audit_key.as_deref(),
        settings.audit_key_in_data,
    )
    .map_err(StoreError::from)?;
    if !settings.client_id_given {
        settings.mqtt.client_id = data.client_id()?;
        // The session is the data directory's: so is what it subscribed.
        settings.mqtt.subscriptions_file = Some(crate::layout::state_file(
            &data.path,
            crate::layout::SUBSCRIPTIONS_FILE,
        ));
    }
    let journal_dir = data.path.join(JOURNAL_DIR);
    if let Some(path) = &settings.clock_file {
        settings.mqtt.clock = file_clock(path)?;
    }
    let clock = settings.mqtt.clock.clone();
    let health = Arc::new(Health::new(settings.stall_limit));

    // Recover: sealed files first, then the journal after them (the store
    // thread's first reads are the replay).
    let mut store = Pipeline::open(settings.store.clone(), settings.ingest.clone())?;
    match &store.start {
        crate::ingest::Start::Snapshot { commit, files_after } => tracing::info!(
            commit,
            files_after,
            "ingest: state from the snapshot of commit {commit} and {files_after} files sealed after it"
        ),
        crate::ingest::Start::Rebuilt { skipped } => tracing::info!(
            skipped = skipped.len(),
            "ingest: state rebuilt from every sealed readings file{}",
            if skipped.is_empty() { "" } else { " (no usable snapshot)" }
        ),
    }
    tracing::info!(
        series = store.ingest.series(),
        state_bytes = store.ingest.heap_bytes(),
        "ingest: state held"
    );
    let told = store.start_alerts(clock.now_micros())?;
    let (journal, recovery) = Journal::open(
        &journal_dir,
        store.sealed_through() + 1,
        DEFAULT_SEGMENT_BYTES,
    )?;
    let durable = journal.next_seq() - 1;
    let replayed = durable.saturating_sub(store.sealed_through());
    tracing::info!(
        data = %data.path.display(),
        sealed_through = store.sealed_through(),
        journal_records = recovery.records,
        to_replay = replayed,
        next_receipt = journal.next_seq(),
        journal_o_direct = journal.is_direct(),
        "store: recovered"
    );
    // What /metrics reports, from memory from now on (the commit log is
    // read this once).
    publish_sealed_at_start(&health, &data.path, store.sealed_through())?;
    health
        .durable
        .store(durable, std::sync::atomic::Ordering::Relaxed);

    let options = mqtt::options(&settings.mqtt)?;
    // rumqttc's request channel: only subscribes and the final disconnect
    // go through it (mqtt::REQUEST_CHANNEL_CAP bounds it the same way).
    let (client, eventloop) = AsyncClient::new(options, 16);

    let (delivery_tx, delivery_rx) = mpsc::channel::<Delivery>(JOURNAL_QUEUE);
    let (ack_tx, ack_rx) = mpsc::channel::<AckBatch>(ACK_QUEUE);
    let progress = Arc::new(Progress::new(durable, store.sealed_through()));

    let (journal_done_tx, journal_done) = oneshot::channel();
    let p = progress.clone();
    let h = health.clone();
    std::thread::Builder::new()
        .name("gapless-journal".into())
        .spawn(move || {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                run_journal(journal, delivery_rx, ack_tx, &p, &h).map_err(AppError::from)
            }))
            .unwrap_or_else(|panic| Err(died(Stage::Journal, &*panic)));
            if let Err(e) = &r {
                h.die(Stage::Journal, e.cause());
            }
            p.close();
            let _ = journal_done_tx.send(r);
        })
        .map_err(|e| AppError::Internal(e.to_string()))?;

    let live = Arc::new(LiveStats::default());
    let sink_stats = Arc::new(SinkStats::default());
    let sinks = Sinks::start(
        &settings.sinks,
        &settings.mqtt,
        &data.path,
        told,
        sink_stats.clone(),
        health.clone(),
    );
    let (store_done_tx, store_done) = oneshot::channel();
    let p = progress.clone();
    let jdir = journal_dir.clone();
    let store_side = StoreSide {
        clock: clock.clone(),
        alerts: sinks.sender(),
        live: live.clone(),
        replay_through: durable,
        health: health.clone(),
        conn: state.clone(),
    };
    std::thread::Builder::new()
        .name("gapless-store".into())
        .spawn(move || {
            lower_priority_of_this_thread();
            let mut store = store;
            let h = store_side.health.clone();
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                run_store(&mut store, &jdir, &p, &store_side)
            }))
            .unwrap_or_else(|panic| {
                // Ingesting a batch (decode, dedup, continuity) is the
                // decode stage; the rest is the store's.
                let stage = if h.is_busy(Stage::Decode) {
                    Stage::Decode
                } else {
                    Stage::Store
                };
                Err(died(stage, &*panic))
            })
            .map(|()| (store.totals(), store.sealed_through()));
            if let Err(e) = &r {
                tracing::error!(error = %e, "store: stopped on error; the journal keeps every message");
                let stage = match e {
                    AppError::StageDied { stage: "decode", .. } => Stage::Decode,
                    _ => Stage::Store,
                };
                h.die(stage, e.cause());
                p.store_failed();
            }
            let _ = store_done_tx.send(r);
        })
        .map_err(|e| AppError::Internal(e.to_string()))?;

    let compactor = start_compactor(&settings, clock.clone(), live.clone())?;
    // Its own task: a witness that is down never holds up ingest.
    let witnessing = crate::witness::client::spawn(
        data.path.clone(),
        settings.witnesses.clone(),
        live.clone(),
        shutdown.clone(),
    );
    // The runtime's own heartbeat: if blocking work held its workers, the
    // ticker would miss its beats and /readyz would say so.
    let ticker = {
        let h = health.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(RUNTIME_TICK);
            loop {
                every.tick().await;
                h.busy(Stage::Api);
            }
        })
    };
    let api = match &settings.http {
        Some((addr, token)) => {
            let api_state = crate::api::ApiState {
                data: data.path.clone(),
                ctx: settings.ingest.continuity.clone(),
                token: token.as_str().into(),
                conn: state.clone(),
                clock: settings.mqtt.clock.clone(),
                live: live.clone(),
                reports: Arc::default(),
                loads: Arc::default(),
                sinks: sink_stats.clone(),
                health: health.clone(),
                scans: crate::api::ScanLimit::new(settings.max_scans),
            };
            // Bind now, so that a port in use fails the start.
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| AppError::Internal(format!("--http {addr}: {e}")))?;
            tracing::info!(addr = %addr, "api: listening");
            let mut stop = shutdown.clone();
            let h = health.clone();
            Some(tokio::spawn(async move {
                let r = axum::serve(listener, crate::api::router(api_state))
                    .with_graceful_shutdown(async move {
                        let _ = stop.wait_for(|s| *s).await;
                    })
                    .await;
                if let Err(e) = r {
                    h.die(Stage::Api, format!("the HTTP server stopped: {e}"));
                }
            }))
        }
        None => None,
    };
    let mqtt = tokio::spawn(mqtt::run(
        settings.mqtt.clone(),
        eventloop,
        client,
        delivery_tx,
        ack_rx,
        state,
        mqtt::Signals {
            shutdown,
            dead: health.watch_dead(),
            health: health.clone(),
        },
    ));

    let poll_result = mqtt.await.unwrap_or_else(|e| {
        health.die(Stage::Mqtt, format!("the MQTT task ended abnormally: {e}"));
        Ok(())
    });
    ticker.abort();
    if let Some(api) = api {
        // Shutdown reached it too; a failed stage does not wait for it.
        api.abort();
    }
    if let Some(w) = witnessing {
        w.abort();
    }
    let journal_result = journal_done
        .await
        .map_err(|e| AppError::Internal(e.to_string()))?;
    let store_result = store_done
        .await
        .map_err(|e| AppError::Internal(e.to_string()))?;
    if let Some(c) = compactor {
        // It stops before its next date (a date in progress is finished).
        drop(c.stop);
        let _ = tokio::task::spawn_blocking(move || c.thread.join()).await;
    }
    // The store sealed its last alerts; give the sinks a moment to deliver
    // them (what they do not deliver, their cursors send on the next start).
    sinks.finish(Duration::from_secs(5)).await;
    // The last checkpoint (the final seal's) to the witnesses, briefly.
    crate::witness::client::finish(&data.path, &settings.witnesses, Duration::from_secs(5)).await;
    poll_result?;
    journal_result?;
    let (totals, sealed_through) = store_result?;
    if let Some((stage, why)) = health.dead() {
        return Err(AppError::StageDied {
            stage: stage.as_str(),
            why,
        });
    }
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

/// Where the journal and the store are, shared between their threads.
struct Progress {
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
struct JournalView {
    /// Last receipt made durable.
    durable: u64,
    /// The journal will write no more.
    closed: bool,
    /// A burst is on (see [`BURST_HOLDS`]).
    burst: bool,
}

/// The records of one durable commit, and where the journal goes on after
/// it (for [`JournalTail::jump`]).
struct Committed {
    records: Vec<JournalRecord>,
    next: (PathBuf, u64),
    bytes: usize,
}

impl Progress {
    fn new(durable: u64, read: u64) -> Progress {
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
    fn set_durable(&self, seq: u64, committed: Option<Committed>, streaming: bool) {
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
    fn handoff_has_room(&self, bytes: usize) -> bool {
        self.lock().handoff_bytes + bytes <= HANDOFF_BYTES
    }

    /// Store side: the commit that starts at `next_seq`, if it is in
    /// memory; else the first record in memory after it (read the disk up
    /// to there). Commits the store has read past are dropped.
    fn take_committed(&self, next_seq: u64) -> Result<Committed, Option<u64>> {
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

    fn set_read(&self, seq: u64) {
        self.lock().read = seq;
        self.changed.notify_all();
    }

    fn close(&self) {
        self.lock().closed = true;
        self.changed.notify_all();
    }

    fn store_failed(&self) {
        self.lock().store_failed = true;
        self.changed.notify_all();
    }

    /// Journal side: waits while the store trails by more than the lag
    /// bound (counted as the `store_lag` bound). False if the store failed.
    fn wait_for_store(&self, health: &Health) -> bool {
        let mut s = self.lock();
        if !s.store_failed && s.durable.saturating_sub(s.read) > MAX_STORE_LAG {
            health.bound_hit(Bound::StoreLag);
        }
        while !s.store_failed && s.durable.saturating_sub(s.read) > MAX_STORE_LAG {
            s = self.changed.wait(s).unwrap_or_else(|e| e.into_inner());
        }
        !s.store_failed
    }

    fn is_closed(&self) -> bool {
        self.lock().closed
    }

    fn has_store_failed(&self) -> bool {
        self.lock().store_failed
    }

    /// Store side: waits up to `tick` for records beyond `read`.
    fn wait_for_journal(&self, read: u64, tick: Duration) -> JournalView {
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

/// The journal stage: take what has arrived, append it, make it durable with
/// one fdatasync, then hand the acks back and move the durable watermark.
fn run_journal(
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

/// What the store thread needs besides the store: the clock that judges
/// deadlines, where sealed alerts go, and where it publishes its gauges.
struct StoreSide {
    clock: Clock,
    alerts: AlertSender,
    live: Arc<LiveStats>,
    /// The journal's last record at start: deadlines wait until the replay
    /// has read it (a replayed reading is not a silence).
    replay_through: u64,
    /// Heartbeats (store, decode) and the sealed counters for `/metrics`.
    health: Arc<Health>,
    /// Where the MQTT task says the broker's backlog has drained: the
    /// alerts' startup grace ends once the store has read that far.
    conn: Arc<ConnectionState>,
}

/// Deadlines are checked at least this often (µs of receive time) while
/// messages flow, and every [`STORE_TICK`] when none do.
const CHECK_EVERY: i64 = 100_000;

/// How often the open-gap gauge is recounted (it visits every series).
const OPEN_GAPS_EVERY: Duration = Duration::from_secs(10);

/// The store stage: follow the journal, ingest, seal when due, and truncate
/// the journal behind each seal; judge alert deadlines on every turn (one
/// look at a heap when nothing is due). Ends at the end of a closed journal.
fn run_store(
    store: &mut Pipeline,
    journal_dir: &Path,
    progress: &Progress,
    side: &StoreSide,
) -> Result<(), AppError> {
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
) -> Result<(), AppError> {
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

/// A clock that a test moves by writing an RFC 3339 time into `path`
/// (`serve --clock-file`): read at start, then every 10 ms.
fn file_clock(path: &Path) -> Result<Clock, AppError> {
    let read = |path: &Path| -> Result<i64, String> {
        let text = fs::read_to_string(path).map_err(|e| e.to_string())?;
        crate::time::parse_time(text.trim()).map_err(|e| e.to_string())
    };
    let start = read(path)
        .map_err(|e| AppError::Internal(format!("--clock-file {}: {e}", path.display())))?;
    let (clock, handle) = Clock::manual(start);
    let path = path.to_owned();
    std::thread::Builder::new()
        .name("gapless-test-clock".into())
        .spawn(move || loop {
            std::thread::sleep(Duration::from_millis(10));
            if let Ok(t) = read(&path) {
                handle.store(t, std::sync::atomic::Ordering::Relaxed);
            }
        })
        .map_err(|e| AppError::Internal(e.to_string()))?;
    Ok(clock)
}

/// Lets the scheduler prefer the ingest path (and the broker beside us) over
/// the store: the store thread runs at nice 10. Its work is catch-up behind
/// a durable journal: during a burst it steps aside ([`store_yields`]),
/// then trails (bounded by [`MAX_STORE_LAG`], beyond which the journal
/// waits for it) and seals afterwards, while acks keep pace with the
/// broker. (Not SCHED_IDLE: under a busy neighbour that starves sealing
/// outright, and an unprivileged thread cannot leave it again. Nor is a
/// lower priority enough during a burst: even at SCHED_IDLE the store filled
/// every idle moment, and the broker beside it got 78–93 % of a core
/// instead of the ~100 % it got with the store out of the way.)
fn lower_priority_of_this_thread() {
    // SAFETY: gettid and setpriority take plain integers and touch no memory
    // of ours; on Linux, PRIO_PROCESS with a thread id applies to that thread.
    #[allow(unsafe_code)]
    let rc = unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 10)
    };
    if rc != 0 {
        tracing::debug!("store: could not lower its thread priority (not needed for correctness)");
    }
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

/// The compaction thread of `serve`: dropping `stop` stops it.
struct Compactor {
    stop: std::sync::mpsc::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

/// `serve`'s compactor: every `every`, compacts the dates that ended more
/// than `grace` ago (`store::compact`), on a thread of its own at low
/// priority, until the returned sender is dropped. A failure is logged and
/// retried next time: the readings files it would have merged are read
/// as they are meanwhile.
fn start_compactor(
    settings: &ServeSettings,
    clock: crate::time::Clock,
    live: Arc<LiveStats>,
) -> Result<Option<Compactor>, AppError> {
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
        .map_err(|e| AppError::Internal(e.to_string()))?;
    Ok(Some(Compactor { stop: tx, thread }))
}

#[cfg(test)]
mod tests {
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
