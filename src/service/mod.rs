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
//! its own pace, at most `MAX_STORE_LAG` records behind (beyond that the
//! journal waits, the mqtt task stops polling, and the broker holds the
//! messages). During a burst (the broker streaming at full speed) the store
//! steps aside for a bounded while (`YIELD_MAX`, `YIELD_MAX_LAG`) so
//! that the broker and the ack path have the cores; the burst waits, durable,
//! in the journal. On start the store's first reads are the replay.
//!
//! Shutdown: the signal reaches only the mqtt task, which stops taking
//! messages and drops its sender; the journal makes the rest durable, hands
//! over its last acks and closes; the mqtt task sends them and disconnects;
//! the store reads to the end of the journal, seals, and stops.
//!
//! The files: `data_dir` (the data directory's lock and client id),
//! `handoff` (where the journal and the store are, and the commits the
//! store takes from memory), the two threads (`journal_stage`,
//! `store_stage`), what a stage's failure does (`failure`), `serve`'s
//! compactor (`compactor`), and [`Pipeline`] (the ingest stage feeding
//! the store, as the store thread runs it).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rumqttc::AsyncClient;
use tokio::sync::{mpsc, oneshot, watch};

use crate::alerts::sink::{SinkStats, Sinks};
use crate::config::ServeSettings;
use crate::health::LiveStats;
use crate::health::{Health, Stage};
use crate::journal::{Journal, JournalError, DEFAULT_SEGMENT_BYTES};
use crate::layout::{JOURNAL_DIR, STATE_DIR};
use crate::mqtt::{self, AckBatch, ConnectionState, Delivery};
use crate::store::commit::Counters;
use crate::store::StoreError;
use crate::time::Clock;

mod compactor;
mod data_dir;
mod failure;
mod handoff;
mod journal_stage;
mod pipeline;
mod store_stage;
use compactor::start_compactor;
pub(crate) use data_dir::DataDir;
use failure::{died, publish_sealed_at_start};
use handoff::Progress;
use journal_stage::run_journal;
pub use pipeline::{Pipeline, PipelineError, Sealed};
use store_stage::{run_store, StoreSide};

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
pub(crate) const MAX_STORE_LAG: u64 = 1_000_000;
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
pub enum ServiceError {
    #[error("data directory {path} is not usable ({action}): {source}")]
    DataDir {
        path: PathBuf,
        /// What was being done: `creating it`, `locking it`, ...
        action: &'static str,
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
    #[error("starting the {thread} thread: {source}")]
    Spawn {
        thread: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("internal: {0}")]
    Internal(String),
}

impl ServiceError {
    fn spawn(thread: &'static str, source: io::Error) -> ServiceError {
        ServiceError::Spawn { thread, source }
    }
}

/// What a finished run reports.
#[derive(Debug, Clone)]
pub struct ServeReport {
    pub totals: Counters,
    pub sealed_through: u64,
    pub replayed: u64,
}

/// Runs the service until `shutdown` becomes true (or a stage fails).
pub async fn serve(
    settings: ServeSettings,
    shutdown: watch::Receiver<bool>,
) -> Result<ServeReport, ServiceError> {
    serve_with_state(settings, shutdown, Arc::default()).await
}

/// [`serve`], sharing the connection state (connected, delivered, acked)
/// with the caller: the benchmark watches it.
pub(crate) async fn serve_with_state(
    mut settings: ServeSettings,
    shutdown: watch::Receiver<bool>,
    state: Arc<ConnectionState>,
) -> Result<ServeReport, ServiceError> {
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
    let (dup_bytes, live_bytes, alert_bytes) = store.ingest.heap_bytes_by_part();
    tracing::info!(
        series = store.ingest.series(),
        state_bytes = store.ingest.heap_bytes(),
        dup_bytes,
        live_bytes,
        alert_bytes,
        kept_gaps = store.ingest.kept_gaps(),
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
                run_journal(journal, delivery_rx, ack_tx, &p, &h).map_err(ServiceError::from)
            }))
            .unwrap_or_else(|panic| Err(died(Stage::Journal, &*panic)));
            if let Err(e) = &r {
                h.die(Stage::Journal, e.cause());
            }
            p.close();
            let _ = journal_done_tx.send(r);
        })
        .map_err(|e| ServiceError::spawn("journal", e))?;

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
                    ServiceError::StageDied { stage: "decode", .. } => Stage::Decode,
                    _ => Stage::Store,
                };
                h.die(stage, e.cause());
                p.store_failed();
            }
            let _ = store_done_tx.send(r);
        })
        .map_err(|e| ServiceError::spawn("store", e))?;

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
                .map_err(|e| ServiceError::Internal(format!("--http {addr}: {e}")))?;
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
    let journal_result = journal_done.await.map_err(|e| {
        ServiceError::Internal(format!("the journal thread ended without a result: {e}"))
    })?;
    let store_result = store_done.await.map_err(|e| {
        ServiceError::Internal(format!("the store thread ended without a result: {e}"))
    })?;
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
        return Err(ServiceError::StageDied {
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

/// A clock that a test moves by writing an RFC 3339 time into `path`
/// (`serve --clock-file`): read at start, then every 10 ms.
fn file_clock(path: &Path) -> Result<Clock, ServiceError> {
    let read = |path: &Path| -> Result<i64, String> {
        let text = fs::read_to_string(path).map_err(|e| e.to_string())?;
        crate::time::parse_time(text.trim()).map_err(|e| e.to_string())
    };
    let start = read(path)
        .map_err(|e| ServiceError::Internal(format!("--clock-file {}: {e}", path.display())))?;
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
        .map_err(|e| ServiceError::spawn("test clock", e))?;
    Ok(clock)
}

/// Lets the scheduler prefer the ingest path (and the broker beside us) over
/// the store: the store thread runs at nice 10. Its work is catch-up behind
/// a durable journal: during a burst it steps aside ([`store_stage::store_yields`]),
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
