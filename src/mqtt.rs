//! MQTT ingest: keep the rumqttc event loop polling, subscribe at QoS 1 on a
//! persistent session, forward every PUBLISH to the journal, and send the
//! PUBACK only when the journal says the message is durable.
//!
//! Two tasks share one connection:
//! - the *poll* task owns the `EventLoop`: it never does anything but poll,
//!   forward publishes (waiting when the journal is full, which is the
//!   backpressure: the broker keeps what we have not taken), and reconnect
//!   with capped exponential backoff;
//! - the *ack* task receives durable batches from the journal in arrival
//!   order and acks them in that order. Acks of an earlier connection are
//!   dropped: the broker redelivers those messages (same packet id, DUP set)
//!   and the duplicate is counted, never lost.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rumqttc::{
    AsyncClient, ConnectionError, Event, EventLoop, MqttOptions, Outgoing, Packet, Publish, QoS,
    TlsConfiguration, Transport,
};
use tokio::sync::{mpsc, watch};

/// MQTT's own limit on a packet. We accept anything the broker sends and
/// reject oversize payloads ourselves, with their bytes, instead of letting
/// the client drop the connection (which would make the broker redeliver
/// the same message forever).
const MAX_INCOMING_PACKET: usize = 268_435_455;
/// Capacity of rumqttc's request channel (acks and subscribes waiting for
/// the event loop). Acks beyond it wait in the ack task, not in memory here.
const REQUEST_CHANNEL_CAP: usize = 16 * 1024;

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct MqttSettings {
    pub host: String,
    pub port: u16,
    pub tls: bool,
    pub ca_file: Option<std::path::PathBuf>,
    pub client_id: String,
    pub topics: Vec<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub keep_alive: Duration,
    /// Connection attempts at start before giving up (later, reconnecting
    /// never gives up).
    pub initial_attempts: u32,
    /// Backoff between reconnects starts here and doubles...
    pub backoff_min: Duration,
    /// ...up to this.
    pub backoff_max: Duration,
}

/// One message as it arrived, on its way to the journal.
#[derive(Debug)]
pub struct Delivery {
    /// Which connection delivered it (acks are only valid on that one).
    pub epoch: u64,
    pub pkid: u16,
    pub qos: QoS,
    pub topic: String,
    pub payload: Bytes,
    /// Receive time, µs since the epoch, UTC.
    pub received_at: i64,
}

/// Messages the journal made durable, in arrival order.
#[derive(Debug)]
pub struct AckBatch {
    pub epoch: u64,
    pub acks: Vec<(u16, QoS)>,
}

#[derive(Debug, thiserror::Error)]
pub enum MqttError {
    #[error("cannot reach the MQTT broker at {addr} after {attempts} attempts: {last}")]
    Unreachable {
        addr: String,
        attempts: u32,
        last: String,
    },
    #[error("cannot read CA file {path}: {source}")]
    CaFile {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the broker refused the connection: {0}")]
    Refused(String),
}

/// Shared view of the connection, for readiness and stats.
#[derive(Debug, Default)]
pub struct ConnectionState {
    pub connected: AtomicBool,
    /// Incremented on every successful connect.
    pub epoch: AtomicU64,
    pub delivered: AtomicU64,
    pub acked: AtomicU64,
}

/// Builds client options from settings.
pub fn options(s: &MqttSettings) -> Result<MqttOptions, MqttError> {
    let mut o = MqttOptions::new(&s.client_id, &s.host, s.port);
    o.set_clean_session(false)
        .set_manual_acks(true)
        .set_keep_alive(s.keep_alive)
        .set_max_packet_size(MAX_INCOMING_PACKET, MAX_INCOMING_PACKET)
        .set_request_channel_capacity(REQUEST_CHANNEL_CAP);
    if let Some(u) = &s.username {
        o.set_credentials(u, s.password.clone().unwrap_or_default());
    }
    if s.tls {
        install_crypto_provider();
        let transport = match &s.ca_file {
            Some(path) => {
                let ca = std::fs::read(path).map_err(|source| MqttError::CaFile {
                    path: path.clone(),
                    source,
                })?;
                Transport::tls_with_config(TlsConfiguration::Simple {
                    ca,
                    alpn: None,
                    client_auth: None,
                })
            }
            None => Transport::tls_with_default_config(),
        };
        o.set_transport(transport);
    }
    Ok(o)
}

/// rustls needs one process-wide crypto provider; we build with ring only.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Connects, subscribes and forwards publishes until `shutdown` fires; then
/// keeps polling until `acks_done` fires (every durable message acked) and
/// disconnects cleanly. Fails only if the broker cannot be reached at start.
pub async fn run_poll(
    settings: MqttSettings,
    mut eventloop: EventLoop,
    client: AsyncClient,
    to_journal: mpsc::Sender<Delivery>,
    state: Arc<ConnectionState>,
    mut shutdown: watch::Receiver<bool>,
    mut acks_done: watch::Receiver<bool>,
) -> Result<(), MqttError> {
    let addr = format!("{}:{}", settings.host, settings.port);
    let mut ever_connected = false;
    let mut failures = 0u32;
    let mut backoff = settings.backoff_min;
    let mut to_journal = Some(to_journal);
    let mut epoch = 0u64;

    loop {
        // Shutdown first: stop taking new messages, let the journal finish.
        if to_journal.is_some() && *shutdown.borrow() {
            to_journal = None;
            tracing::info!("mqtt: shutting down, no new messages taken; flushing acks");
        }
        if to_journal.is_none() && *acks_done.borrow() {
            break;
        }
        let event = tokio::select! {
            ev = eventloop.poll() => ev,
            _ = shutdown.changed(), if to_journal.is_some() => continue,
            _ = acks_done.changed(), if to_journal.is_none() => continue,
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                ever_connected = true;
                failures = 0;
                backoff = settings.backoff_min;
                epoch = state.epoch.fetch_add(1, Ordering::SeqCst) + 1;
                state.connected.store(true, Ordering::SeqCst);
                tracing::info!(
                    broker = %addr,
                    session_present = ack.session_present,
                    epoch,
                    "mqtt: connected"
                );
                if !ack.session_present {
                    // A new session: (re)create our subscriptions. With a
                    // session present the broker kept them, and subscribing
                    // again would replay retained messages for nothing.
                    let filters = settings
                        .topics
                        .iter()
                        .map(|t| rumqttc::SubscribeFilter::new(t.clone(), QoS::AtLeastOnce));
                    if let Err(e) = client.try_subscribe_many(filters) {
                        tracing::error!(error = %e, "mqtt: cannot queue subscribe");
                    }
                }
            }
            Ok(Event::Incoming(Packet::SubAck(ack))) => {
                for (topic, code) in settings.topics.iter().zip(ack.return_codes.iter()) {
                    match code {
                        rumqttc::SubscribeReasonCode::Failure => {
                            tracing::error!(topic = %topic, "mqtt: broker refused the subscription")
                        }
                        rumqttc::SubscribeReasonCode::Success(q) => {
                            tracing::info!(topic = %topic, qos = ?q, "mqtt: subscribed")
                        }
                    }
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                state.delivered.fetch_add(1, Ordering::Relaxed);
                let Some(tx) = &to_journal else {
                    // Shutting down: not journaled, so not acked; the broker
                    // delivers it again next time.
                    continue;
                };
                let delivery = into_delivery(p, epoch);
                if tx.send(delivery).await.is_err() {
                    // The journal stopped (error or shutdown).
                    to_journal = None;
                }
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) => break,
            Ok(_) => {}
            Err(e) => {
                state.connected.store(false, Ordering::SeqCst);
                if to_journal.is_none() {
                    // Shutting down and the connection is gone: the
                    // remaining acks cannot be sent; those messages come again.
                    tracing::warn!(error = %e, "mqtt: connection lost during shutdown");
                    return Ok(());
                }
                failures += 1;
                if let ConnectionError::ConnectionRefused(code) = &e {
                    tracing::error!(?code, "mqtt: broker refused the connection");
                    if !ever_connected && failures >= settings.initial_attempts {
                        return Err(MqttError::Refused(format!("{code:?}")));
                    }
                }
                if !ever_connected && failures >= settings.initial_attempts {
                    return Err(MqttError::Unreachable {
                        addr,
                        attempts: failures,
                        last: e.to_string(),
                    });
                }
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "mqtt: connection error");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.changed(), if to_journal.is_some() => {}
                }
                backoff = (backoff * 2).min(settings.backoff_max);
            }
        }
    }
    // Leave the session (clean session off: the broker keeps it for us).
    let _ = client.try_disconnect();
    let flush = async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_) => break,
                _ => {}
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), flush).await;
    state.connected.store(false, Ordering::SeqCst);
    Ok(())
}

fn into_delivery(p: Publish, epoch: u64) -> Delivery {
    Delivery {
        epoch,
        pkid: p.pkid,
        qos: p.qos,
        topic: p.topic,
        payload: p.payload,
        received_at: chrono::Utc::now().timestamp_micros(),
    }
}

/// Sends the PUBACKs of durable messages, in the order the journal made
/// them durable (which is arrival order). Ends when the journal closes the
/// channel, then fires `done`.
pub async fn run_acks(
    client: AsyncClient,
    mut durable: mpsc::UnboundedReceiver<AckBatch>,
    state: Arc<ConnectionState>,
    done: watch::Sender<bool>,
) {
    while let Some(batch) = durable.recv().await {
        if batch.epoch != state.epoch.load(Ordering::SeqCst) {
            tracing::debug!(
                stale = batch.acks.len(),
                "mqtt: dropping acks of an earlier connection (the broker redelivers those messages)"
            );
            continue;
        }
        for (pkid, qos) in batch.acks {
            if qos == QoS::AtMostOnce {
                continue;
            }
            let mut p = Publish::new("", qos, Vec::<u8>::new());
            p.pkid = pkid;
            if client.ack(&p).await.is_err() {
                // The event loop is gone: nothing more can be acked.
                let _ = done.send(true);
                return;
            }
            state.acked.fetch_add(1, Ordering::Relaxed);
        }
    }
    let _ = done.send(true);
}
