//! MQTT ingest: keep the rumqttc event loop polling, subscribe at QoS 1 on a
//! persistent session, forward every PUBLISH to the journal, and send the
//! PUBACK only when the journal says the message is durable.
//!
//! One task owns the `EventLoop`. It polls, forwards publishes to the
//! journal (waiting when the journal's queue is full, which is the
//! backpressure: the broker keeps what we have not taken), reconnects with
//! capped exponential backoff, and writes the acks of each batch the
//! journal made durable, in arrival order. Acks of an earlier connection
//! are dropped: the broker redelivers those messages (same packet id, DUP
//! set) and the copy is counted as a duplicate, never lost.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rumqttc::{
    AsyncClient, ConnectionError, Event, EventLoop, MqttOptions, Outgoing, Packet, PubAck, Publish,
    QoS, TlsConfiguration, Transport,
};
use tokio::sync::{mpsc, watch};

/// MQTT's own limit on a packet. We accept anything the broker sends and
/// reject oversize payloads ourselves, with their bytes, instead of letting
/// the client drop the connection (which would make the broker redeliver
/// the same message forever).
const MAX_INCOMING_PACKET: usize = 268_435_455;
/// Capacity of rumqttc's request channel: only subscribes and the final
/// disconnect go through it (acks are written directly).
const REQUEST_CHANNEL_CAP: usize = 64;

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
    /// Stamps each delivery's receive time.
    pub clock: crate::time::Clock,
    /// Where the topic filters the broker's session holds are remembered
    /// (`DATA/_state/subscriptions`): a session present with other filters
    /// than these is subscribed again, so that a filter added to the
    /// configuration is never silently missing from a kept session.
    pub subscriptions_file: Option<std::path::PathBuf>,
}

/// The filters the kept session was last subscribed with, as remembered.
fn remembered_filters(file: Option<&std::path::Path>) -> Option<String> {
    std::fs::read_to_string(file?).ok()
}

fn filters_text(topics: &[String]) -> String {
    let mut t: Vec<&str> = topics.iter().map(String::as_str).collect();
    t.sort_unstable();
    t.join("\n") + "\n"
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
#[derive(Debug)]
pub struct ConnectionState {
    pub connected: AtomicBool,
    /// Messages delivered when the first connection's backlog had drained
    /// ([`NOT_DRAINED`] until then): 0 when the broker had no session for
    /// us (nothing can have been queued); else the count once, after the
    /// subscription was in place, no message came for [`DRAIN_QUIET`].
    /// What ends the alerts' startup grace.
    pub drained_at: AtomicU64,
    /// Incremented on every successful connect.
    pub epoch: AtomicU64,
    pub delivered: AtomicU64,
    pub acked: AtomicU64,
}

/// [`ConnectionState::drained_at`] before the backlog has drained.
pub(crate) const NOT_DRAINED: u64 = u64::MAX;
/// A pause this long in the redeliveries after a connect means the broker
/// has handed over what it queued for us.
pub(crate) const DRAIN_QUIET: Duration = Duration::from_millis(500);

impl Default for ConnectionState {
    fn default() -> Self {
        ConnectionState {
            connected: AtomicBool::new(false),
            drained_at: AtomicU64::new(NOT_DRAINED),
            epoch: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            acked: AtomicU64::new(0),
        }
    }
}

/// What tells the MQTT task to stop, and where it reports.
pub struct Signals {
    /// Becomes true on SIGTERM/SIGINT: stop taking messages, send the acks
    /// of what the journal still makes durable, disconnect.
    pub shutdown: watch::Receiver<bool>,
    /// Becomes true when a stage died: stop taking messages and stop
    /// acking at once (nothing may be acked that may not be stored), and
    /// disconnect; the broker redelivers what was not acked.
    pub dead: watch::Receiver<bool>,
    pub health: Arc<crate::health::Health>,
}

/// Builds client options from settings.
pub(crate) fn options(s: &MqttSettings) -> Result<MqttOptions, MqttError> {
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
pub(crate) fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Connects, subscribes, forwards publishes to the journal and sends the
/// acks of durable ones, until `shutdown` fires; then stops taking messages,
/// sends the acks of what the journal still makes durable (until it closes
/// `durable`), and disconnects cleanly. When a stage dies it stops at once,
/// without another ack. Fails only if the broker cannot be reached at start.
///
/// Handing a delivery to a full journal queue waits (the broker holds what
/// we do not take) while still sending the acks of durable batches and
/// watching both signals.
///
/// Acks are written straight to the connection, a whole durable batch per
/// flush, in arrival order: one write per batch instead of one per message,
/// as rumqttc's own automatic acks do per read.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    settings: MqttSettings,
    mut eventloop: EventLoop,
    client: AsyncClient,
    to_journal: mpsc::Sender<Delivery>,
    mut durable: mpsc::Receiver<AckBatch>,
    state: Arc<ConnectionState>,
    signals: Signals,
) -> Result<(), MqttError> {
    use crate::health::{Bound, Stage};
    let Signals {
        mut shutdown,
        mut dead,
        health,
    } = signals;
    let addr = format!("{}:{}", settings.host, settings.port);
    let mut ever_connected = false;
    let mut failures = 0u32;
    let mut backoff = settings.backoff_min;
    let mut to_journal = Some(to_journal);
    let mut epoch = 0u64;
    // Acks wait until our subscriptions are confirmed on a new connection, so
    // that taking an ack batch never interrupts the poll that writes the
    // SUBSCRIBE (a cancelled poll could drop it).
    let mut ready = false;
    let mut journal_open = true;
    // Until the first connection's backlog has drained: when the last
    // message came (or the subscription was confirmed).
    let mut draining: Option<tokio::time::Instant> = None;
    let mut drain_known = false;

    loop {
        if *dead.borrow() {
            tracing::error!("mqtt: a stage died; no more messages taken, no more acks");
            break;
        }
        if to_journal.is_some() && *shutdown.borrow() {
            to_journal = None;
            tracing::info!("mqtt: shutting down, no new messages taken; flushing acks");
        }
        if to_journal.is_none() && !journal_open {
            break;
        }
        health.idle(Stage::Mqtt);
        let event = tokio::select! {
            biased;
            _ = dead.changed() => continue,
            changed = shutdown.changed(), if to_journal.is_some() => {
                if changed.is_err() {
                    // Nobody can ask us to stop any more: stop now rather
                    // than spin on a closed channel.
                    to_journal = None;
                    tracing::info!("mqtt: shutdown signal gone; shutting down");
                }
                continue;
            }
            batch = durable.recv(), if ready && journal_open => {
                match batch {
                    Some(b) => {
                        health.busy(Stage::Mqtt);
                        send_acks(&mut eventloop, &state, b, epoch, &health).await;
                    }
                    None => journal_open = false,
                }
                continue;
            }
            _ = tokio::time::sleep_until(draining.map_or_else(tokio::time::Instant::now, |t| t + DRAIN_QUIET)), if ready && draining.is_some() => {
                let n = state.delivered.load(Ordering::SeqCst);
                state.drained_at.store(n, Ordering::SeqCst);
                tracing::info!(messages = n, "mqtt: the broker's backlog for this session has drained");
                draining = None;
                continue;
            }
            ev = eventloop.poll() => ev,
        };
        health.busy(Stage::Mqtt);
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
                if !drain_known {
                    drain_known = true;
                    if ack.session_present {
                        draining = Some(tokio::time::Instant::now());
                    } else {
                        state.drained_at.store(0, Ordering::SeqCst);
                    }
                }
                let same_filters = remembered_filters(settings.subscriptions_file.as_deref())
                    .is_some_and(|f| f == filters_text(&settings.topics));
                if ack.session_present && same_filters {
                    ready = true;
                } else {
                    // A new session, or one kept with other filters than
                    // ours: (re)create our subscriptions. With a session
                    // present and the same filters the broker kept them, and
                    // subscribing again would replay retained messages for
                    // nothing.
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
                ready = true;
                let all = !ack
                    .return_codes
                    .iter()
                    .any(|c| matches!(c, rumqttc::SubscribeReasonCode::Failure));
                if let (true, Some(file)) = (all, &settings.subscriptions_file) {
                    if let Err(e) =
                        crate::layout::write_atomic(file, filters_text(&settings.topics).as_bytes())
                    {
                        tracing::warn!(error = %e, "mqtt: cannot remember the subscribed filters (the next start subscribes again)");
                    }
                }
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
                state.delivered.fetch_add(1, Ordering::SeqCst);
                if draining.is_some() {
                    draining = Some(tokio::time::Instant::now());
                }
                let Some(tx) = &to_journal else {
                    // Shutting down: not journaled, so not acked; the broker
                    // delivers it again next time.
                    continue;
                };
                let delivery = into_delivery(p, epoch, &settings.clock);
                let permit = match tx.try_reserve() {
                    Ok(permit) => Some(permit),
                    Err(mpsc::error::TrySendError::Closed(())) => None,
                    Err(mpsc::error::TrySendError::Full(())) => {
                        // The journal's queue is full: wait for room (the
                        // broker holds what follows), acking what becomes
                        // durable meanwhile, and hearing both signals.
                        health.bound_hit(Bound::JournalQueue);
                        health.idle(Stage::Mqtt);
                        loop {
                            tokio::select! {
                                biased;
                                _ = dead.changed() => break None,
                                changed = shutdown.changed() => {
                                    if changed.is_err() || *shutdown.borrow() {
                                        tracing::info!("mqtt: shutting down while the journal's queue is full; this message is not acked (the broker delivers it again)");
                                        break None;
                                    }
                                }
                                batch = durable.recv(), if journal_open => match batch {
                                    Some(b) => send_acks(&mut eventloop, &state, b, epoch, &health).await,
                                    None => journal_open = false,
                                },
                                permit = tx.reserve() => break permit.ok(),
                            }
                        }
                    }
                };
                let handed = permit.map(|permit| permit.send(delivery)).is_some();
                if !handed {
                    // The journal stopped, a stage died, or shutdown: take
                    // nothing more (what was not journaled is not acked).
                    to_journal = None;
                }
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) => break,
            Ok(_) => {}
            Err(e) => {
                ready = false;
                state.connected.store(false, Ordering::SeqCst);
                if to_journal.is_none() {
                    // Shutting down and the connection is gone: the
                    // remaining acks cannot be sent; those messages come again.
                    tracing::warn!(error = %e, "mqtt: connection lost during shutdown");
                    return Ok(());
                }
                failures += 1;
                if !ever_connected && failures >= settings.initial_attempts {
                    if let ConnectionError::ConnectionRefused(code) = &e {
                        return Err(MqttError::Refused(format!("{code:?}")));
                    }
                    return Err(MqttError::Unreachable {
                        addr,
                        attempts: failures,
                        last: e.to_string(),
                    });
                }
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "mqtt: connection error");
                health.idle(Stage::Mqtt);
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = dead.changed() => {}
                    changed = shutdown.changed(), if to_journal.is_some() => {
                        if changed.is_err() {
                            to_journal = None;
                        }
                    }
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

/// Writes the PUBACKs of one durable batch and flushes once. Acks of an
/// earlier connection are dropped: the broker redelivers those messages
/// (same packet id, DUP set) and the copy is counted as a duplicate.
async fn send_acks(
    eventloop: &mut EventLoop,
    state: &ConnectionState,
    batch: AckBatch,
    epoch: u64,
    health: &crate::health::Health,
) {
    if health.is_dead() {
        // A stage died: nothing more is acked (the broker redelivers these
        // after the restart, which replays the journal; the copies count
        // as duplicates).
        return;
    }
    if batch.epoch != epoch {
        tracing::debug!(
            stale = batch.acks.len(),
            "mqtt: dropping acks of an earlier connection (the broker redelivers those messages)"
        );
        return;
    }
    let Some(network) = eventloop.network.as_mut() else {
        return;
    };
    let mut sent = 0u64;
    for (pkid, qos) in batch.acks {
        if qos == QoS::AtMostOnce {
            continue;
        }
        if let Err(e) = network.write(Packet::PubAck(PubAck::new(pkid))).await {
            // The next poll sees the broken connection and reconnects; the
            // unacked messages are redelivered.
            tracing::warn!(error = %e, "mqtt: writing acks failed");
            return;
        }
        sent += 1;
    }
    if let Err(e) = network.flush().await {
        tracing::warn!(error = %e, "mqtt: flushing acks failed");
        return;
    }
    state.acked.fetch_add(sent, Ordering::Relaxed);
}

fn into_delivery(p: Publish, epoch: u64, clock: &crate::time::Clock) -> Delivery {
    Delivery {
        epoch,
        pkid: p.pkid,
        qos: p.qos,
        topic: p.topic,
        payload: p.payload,
        received_at: clock.now_micros(),
    }
}

/// Parsed `mqtt://HOST:PORT` or `mqtts://HOST:PORT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    pub tls: bool,
    pub host: String,
    pub port: u16,
}

/// A broker URL that is not `mqtt://HOST:PORT` or `mqtts://HOST:PORT`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{url:?}: {why} (expected mqtt://HOST:PORT or mqtts://HOST:PORT)")]
pub(crate) struct BrokerUrlError {
    pub url: String,
    pub why: &'static str,
}

/// `mqtt://HOST[:PORT]` or `mqtts://HOST[:PORT]` (ports 1883 and 8883 by
/// default; an IPv6 host in brackets).
pub(crate) fn parse_broker(url: &str) -> Result<BrokerUrl, BrokerUrlError> {
    let bad = |why| BrokerUrlError {
        url: url.to_string(),
        why,
    };
    let (tls, rest) = if let Some(r) = url.strip_prefix("mqtt://") {
        (false, r)
    } else if let Some(r) = url.strip_prefix("mqtts://") {
        (true, r)
    } else {
        return Err(bad("unknown scheme"));
    };
    let rest = rest.trim_end_matches('/');
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => {
            let port: u16 = p
                .parse()
                .map_err(|_| bad("port is not a number from 1 to 65535"))?;
            (h, port)
        }
        _ => (rest, if tls { 8883 } else { 1883 }),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || port == 0 {
        return Err(bad("missing host or port"));
    }
    Ok(BrokerUrl {
        tls,
        host: host.to_string(),
        port,
    })
}

/// A topic filter that MQTT does not take.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum FilterError {
    #[error("empty topic filter")]
    Empty,
    #[error("{0:?}: '#' must be a whole level and the last one")]
    Hash(String),
    #[error("{0:?}: '+' must be a whole level")]
    Plus(String),
}

/// Checks an MQTT topic filter: `#` only as the whole last level, `+`
/// only as a whole level.
pub(crate) fn validate_filter(f: &str) -> Result<(), FilterError> {
    if f.is_empty() {
        return Err(FilterError::Empty);
    }
    let levels: Vec<&str> = f.split('/').collect();
    for (i, l) in levels.iter().enumerate() {
        if l.contains('#') && (*l != "#" || i + 1 != levels.len()) {
            return Err(FilterError::Hash(f.to_string()));
        }
        if l.contains('+') && *l != "+" {
            return Err(FilterError::Plus(f.to_string()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_urls() {
        assert_eq!(
            parse_broker("mqtt://127.0.0.1:1883").unwrap(),
            BrokerUrl {
                tls: false,
                host: "127.0.0.1".into(),
                port: 1883
            }
        );
        assert_eq!(parse_broker("mqtts://broker.example").unwrap().port, 8883);
        assert_eq!(parse_broker("mqtt://[::1]:1884").unwrap().host, "::1");
        for bad in [
            "http://x:1",
            "mqtt://:1883",
            "mqtt://h:70000",
            "mqtt://h:x",
            "h:1883",
        ] {
            assert!(parse_broker(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn filters() {
        for ok in ["meters/#", "#", "a/+/c", "wmbusmeters/+"] {
            assert!(validate_filter(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a/#/b", "a#", "a/b+"] {
            assert!(validate_filter(bad).is_err(), "{bad}");
        }
    }
}
