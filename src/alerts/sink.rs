//! Delivery of sealed alerts: MQTT and a webhook.
//!
//! Each sink keeps a cursor (`_state/alert_sink_<name>.cursor`: the last
//! `alert_seq` it delivered or gave up), so a restart re-sends what was
//! sealed but not yet delivered: delivery is at least once, and
//! `alert_seq` lets a receiver drop repeats. A sink configured for the
//! first time starts after the alerts already sealed.
//!
//! - MQTT: topic `<prefix>/<kind>/<meter or group>`, QoS 1, one alert in
//!   flight at a time (alerts are state changes: few), delivered when the
//!   broker's PUBACK arrives; reconnects with backoff, never gives up.
//! - Webhook: HTTP POST of the same JSON; retried with exponential backoff
//!   up to `webhook_attempts`, from a queue of at most `webhook_queue`
//!   alerts (beyond, the oldest is given up). Give-ups are counted in the
//!   metrics and logged as errors: never silent.
//!
//! Each sink takes alerts from a bounded channel ([`ALERT_CHANNEL`]); the
//! MQTT sink holds at most [`MQTT_QUEUE`] alerts and stops taking more
//! beyond. A full channel holds the store back (counted as the
//! `alert_queue` bound): never a drop.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rumqttc::{AsyncClient, Event, EventLoop, Incoming, Outgoing, QoS};
use tokio::sync::{mpsc, watch};

use super::table::Told;
use super::AlertsFileConfig;
use crate::mqtt::MqttSettings;
use crate::mqtt::{parse_broker, BrokerUrl};

pub(crate) const DEFAULT_PREFIX: &str = "gapless/alerts";
pub(crate) const DEFAULT_WEBHOOK_QUEUE: usize = 10_000;
pub(crate) const DEFAULT_WEBHOOK_ATTEMPTS: u32 = 8;
/// One webhook request may take this long.
const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);
/// Alerts waiting in the channel from the store to one sink. Alerts are
/// state changes (a storm of silent meters becomes one group alert), a
/// seal tells at most a few hundred; a sink drains the channel into its own
/// queue at once, so this fills only if the sink's queue is full too.
/// Then the store waits (it seals later; acks do not wait for it).
const ALERT_CHANNEL: usize = 1024;
/// Alerts the MQTT sink holds in memory at most (one in flight at a time;
/// a broker away for long builds this up): beyond, it stops taking from its
/// channel.
const MQTT_QUEUE: usize = 10_000;
const BACKOFF_MIN: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Where alerts go.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SinkSettings {
    pub mqtt: Option<MqttSink>,
    pub webhook: Option<WebhookSink>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MqttSink {
    /// Another broker than the ingest one.
    pub broker: Option<BrokerUrl>,
    pub prefix: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct WebhookSink {
    pub url: String,
    host: String,
    port: u16,
    path: String,
    pub queue: usize,
    pub attempts: u32,
}

impl SinkSettings {
    /// From the `[alerts]` table and the `--alert-webhook` flag; errors name
    /// the setting.
    pub fn resolve(
        f: &AlertsFileConfig,
        webhook_flag: Option<String>,
        _ingest: &BrokerUrl,
    ) -> Result<SinkSettings, (&'static str, String)> {
        let mqtt = if f.mqtt.unwrap_or(true) {
            let broker = match &f.mqtt_broker {
                Some(b) => {
                    Some(parse_broker(b).map_err(|e| ("alerts.mqtt_broker", e.to_string()))?)
                }
                None => None,
            };
            let prefix = f
                .mqtt_prefix
                .clone()
                .unwrap_or_else(|| DEFAULT_PREFIX.to_owned());
            let prefix = prefix.trim_end_matches('/').to_owned();
            if prefix.is_empty() || prefix.contains(['+', '#']) {
                return Err((
                    "alerts.mqtt_prefix",
                    format!("{prefix:?} must be a non-empty topic without + or #"),
                ));
            }
            Some(MqttSink { broker, prefix })
        } else {
            None
        };
        let webhook = match webhook_flag.or_else(|| f.webhook_url.clone()) {
            None => None,
            Some(url) => {
                let (host, port, path) =
                    parse_http_url(&url).map_err(|e| ("--alert-webhook", e.to_string()))?;
                let queue = f.webhook_queue.unwrap_or(DEFAULT_WEBHOOK_QUEUE);
                if queue == 0 {
                    return Err(("alerts.webhook_queue", "must be at least 1".into()));
                }
                let attempts = f.webhook_attempts.unwrap_or(DEFAULT_WEBHOOK_ATTEMPTS);
                if attempts == 0 {
                    return Err(("alerts.webhook_attempts", "must be at least 1".into()));
                }
                Some(WebhookSink {
                    url,
                    host,
                    port,
                    path,
                    queue,
                    attempts,
                })
            }
        };
        Ok(SinkSettings { mqtt, webhook })
    }
}

/// Why a webhook's or a witness's URL cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum UrlError {
    #[error("{url:?}: only http:// URLs are supported (put a TLS proxy in front for https)")]
    NotHttp { url: String },
    #[error("{url:?}: bad port {port:?}")]
    BadPort { url: String, port: String },
    #[error("{url:?}: no host")]
    NoHost { url: String },
}

/// `http://HOST[:PORT][/PATH]` → (host, port, path).
pub(crate) fn parse_http_url(url: &str) -> Result<(String, u16, String), UrlError> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| UrlError::NotHttp { url: url.into() })?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (
            h,
            p.parse::<u16>()
                .ok()
                .filter(|&p| p > 0)
                .ok_or_else(|| UrlError::BadPort {
                    url: url.into(),
                    port: p.into(),
                })?,
        ),
        None => (authority, 80),
    };
    if host.is_empty() {
        return Err(UrlError::NoHost { url: url.into() });
    }
    Ok((host.to_owned(), port, path.to_owned()))
}

/// Delivery counters, for metrics.
#[derive(Debug, Default)]
pub(crate) struct SinkStats {
    pub mqtt_delivered: AtomicU64,
    pub webhook_delivered: AtomicU64,
    pub webhook_failed_attempts: AtomicU64,
    pub webhook_given_up: AtomicU64,
    pub webhook_queued: AtomicU64,
}

fn cursor_path(data: &Path, name: &str) -> PathBuf {
    crate::layout::sink_cursor(data, name)
}

fn read_cursor(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Write-then-rename: the cursor is a hint for at-least-once delivery, so
/// it is not fsynced (a lost update re-sends, never skips). File I/O: on
/// the multi-threaded runtime the worker hands its other tasks (the MQTT
/// keep-alive, the acks) to the others while it writes, so a slow disk
/// delays only this sink.
fn write_cursor(path: &Path, seq: u64) {
    let write = || {
        let tmp = path.with_extension("tmp");
        if let Err(e) =
            std::fs::write(&tmp, seq.to_string()).and_then(|()| std::fs::rename(&tmp, path))
        {
            tracing::warn!(path = %path.display(), error = %e, "alerts: cannot save a sink cursor");
        }
    };
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(write)
        }
        _ => write(),
    }
}

/// The sinks, running: `send` hands them what the store sealed.
pub(crate) struct Sinks {
    senders: Vec<mpsc::Sender<Arc<Told>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Where a full channel is counted.
    health: Arc<crate::health::Health>,
    /// Tells the sinks to stop retrying (when `finish`'s grace is over).
    stop: watch::Sender<bool>,
}

impl Sinks {
    /// Starts the configured sinks. Each first delivers what of `told`
    /// (the alerts sealed before this start) comes after its cursor.
    pub fn start(
        settings: &SinkSettings,
        ingest: &MqttSettings,
        data: &Path,
        told: Vec<Told>,
        stats: Arc<SinkStats>,
        health: Arc<crate::health::Health>,
    ) -> Sinks {
        let (stop, shutdown) = watch::channel(false);
        let mut sinks = Sinks {
            senders: Vec::new(),
            tasks: Vec::new(),
            stop,
            health: health.clone(),
        };
        if settings.mqtt.is_none() && settings.webhook.is_none() {
            return sinks;
        }
        // What was sealed before (in `seq` order): each sink's backlog.
        let told: Vec<Arc<Told>> = told.into_iter().map(Arc::new).collect();
        // A sink's cursor file and what was sealed after it (a sink without
        // one starts after what is sealed now).
        let resume = |name: &str| -> (PathBuf, Vec<Arc<Told>>) {
            let path = cursor_path(data, name);
            let cursor = read_cursor(&path).unwrap_or_else(|| {
                let last_sealed = told.last().map_or(0, |t| t.alert.seq);
                write_cursor(&path, last_sealed);
                last_sealed
            });
            let backlog = told
                .iter()
                .filter(|t| t.alert.seq > cursor)
                .cloned()
                .collect();
            (path, backlog)
        };
        if let Some(m) = &settings.mqtt {
            let (tx, rx) = mpsc::channel(ALERT_CHANNEL);
            let (path, backlog) = resume("mqtt");
            let mut o = ingest.clone();
            if let Some(b) = &m.broker {
                o.host = b.host.clone();
                o.port = b.port;
                o.tls = b.tls;
            }
            o.client_id = format!("{}-alerts", ingest.client_id);
            let task = mqtt_sink(
                o,
                m.prefix.clone(),
                backlog,
                rx,
                path,
                stats.clone(),
                shutdown.clone(),
                health.clone(),
            );
            sinks.senders.push(tx);
            sinks.tasks.push(tokio::spawn(task));
        }
        if let Some(w) = &settings.webhook {
            let (tx, rx) = mpsc::channel(ALERT_CHANNEL);
            let (path, backlog) = resume("webhook");
            let task = webhook_sink(w.clone(), backlog, rx, path, stats, shutdown, health);
            sinks.senders.push(tx);
            sinks.tasks.push(tokio::spawn(task));
        }
        sinks
    }

    /// A sender the store thread can use.
    pub fn sender(&self) -> AlertSender {
        AlertSender {
            sinks: self
                .senders
                .iter()
                .map(|tx| (tx.clone(), Arc::new(AtomicBool::new(false))))
                .collect(),
            health: Some(self.health.clone()),
        }
    }

    /// Lets the sinks deliver what they hold (every sender must be gone:
    /// the store has stopped), for at most `grace`; then stops them. What
    /// they did not deliver, their cursors send on the next start.
    pub async fn finish(self, grace: Duration) {
        drop(self.senders);
        let deadline = tokio::time::Instant::now() + grace;
        for mut t in self.tasks {
            if tokio::time::timeout_at(deadline, &mut t).await.is_err() {
                tracing::warn!("alerts: a sink did not deliver everything in time; its cursor resumes it on the next start");
                let _ = self.stop.send(true);
                if tokio::time::timeout(Duration::from_secs(1), &mut t)
                    .await
                    .is_err()
                {
                    t.abort();
                }
            }
        }
    }
}

/// Hands sealed alerts to every sink (from any thread).
#[derive(Clone, Default)]
pub(crate) struct AlertSender {
    /// Each sink's channel, and whether this run stopped handing it alerts
    /// (see `send`).
    sinks: Vec<(mpsc::Sender<Arc<Told>>, Arc<AtomicBool>)>,
    health: Option<Arc<crate::health::Health>>,
}

impl AlertSender {
    /// Hands the alerts to every sink (the store thread calls this, never
    /// the async runtime). A full channel waits for room: back-pressure on
    /// the store. Only when `give_up()` says so (the service is stopping)
    /// does it stop waiting; that sink then gets nothing more in this run,
    /// so its cursor stays before the alerts it missed and the next start
    /// sends them from the alerts table.
    pub fn send(&self, alerts: Vec<super::Alert>, give_up: &dyn Fn() -> bool) {
        for a in alerts {
            let json = a.to_json().to_string();
            let t = Arc::new(Told { alert: a, json });
            for (tx, abandoned) in &self.sinks {
                if abandoned.load(Ordering::Relaxed) {
                    continue;
                }
                let mut t = t.clone();
                let mut counted = false;
                loop {
                    match tx.try_send(t) {
                        Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => break,
                        Err(mpsc::error::TrySendError::Full(back)) => {
                            if !counted {
                                counted = true;
                                if let Some(h) = &self.health {
                                    h.bound_hit(crate::health::Bound::AlertQueue);
                                }
                            }
                            if give_up() {
                                tracing::warn!(alert_seq = back.alert.seq, "alerts: a sink is full at shutdown; it resumes from the alerts table on the next start");
                                abandoned.store(true, Ordering::Relaxed);
                                break;
                            }
                            t = back;
                            std::thread::sleep(Duration::from_millis(10));
                        }
                    }
                }
            }
        }
    }
}

/// A topic level from a subject: `+`, `#` and NUL are not allowed in
/// topic names.
pub(crate) fn topic_for(prefix: &str, t: &Told) -> String {
    let subject: String = t
        .alert
        .subject
        .chars()
        .map(|c| {
            if matches!(c, '+' | '#' | '\0') {
                '_'
            } else {
                c
            }
        })
        .collect();
    format!("{prefix}/{}/{subject}", t.alert.kind.as_str())
}

// Each argument is one thing the task owns; a struct would only rename them.
#[allow(clippy::too_many_arguments)]
async fn mqtt_sink(
    settings: MqttSettings,
    prefix: String,
    backlog: Vec<Arc<Told>>,
    mut rx: mpsc::Receiver<Arc<Told>>,
    cursor: PathBuf,
    stats: Arc<SinkStats>,
    mut shutdown: watch::Receiver<bool>,
    health: Arc<crate::health::Health>,
) {
    use crate::health::Stage;
    let mut o = match crate::mqtt::options(&settings) {
        Ok(o) => o,
        Err(e) => {
            tracing::error!(error = %e, "alerts: MQTT sink cannot start");
            return;
        }
    };
    o.set_clean_session(true).set_manual_acks(false);
    // A connection is made when there is something to send, and dropped
    // on an error (a fresh one then sends the alert again).
    let mut conn: Option<(AsyncClient, EventLoop)> = None;
    let mut queue: VecDeque<Arc<Told>> = backlog.into();
    let mut last_queued = queue.back().map_or(0, |t| t.alert.seq);
    let mut open = true;
    let mut backoff = BACKOFF_MIN;
    loop {
        while queue.len() < MQTT_QUEUE {
            let Ok(t) = rx.try_recv() else { break };
            if t.alert.seq > last_queued {
                last_queued = t.alert.seq;
                queue.push_back(t);
            }
        }
        let Some(t) = queue.front().cloned() else {
            if !open {
                break;
            }
            health.idle(Stage::Alerts);
            // Idle: keep the connection serviced (pings) while waiting.
            let idle = async {
                match conn.as_mut() {
                    Some((_, el)) => el.poll().await.map(|_| ()),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                m = rx.recv() => match m {
                    Some(t) => {
                        if t.alert.seq > last_queued {
                            last_queued = t.alert.seq;
                            queue.push_back(t);
                        }
                    }
                    None => open = false,
                },
                r = idle => if r.is_err() { conn = None },
                _ = shutdown.wait_for(|s| *s) => break,
            }
            continue;
        };
        let topic = topic_for(&prefix, &t);
        let (client, el) = conn.get_or_insert_with(|| AsyncClient::new(o.clone(), 16));
        health.busy(Stage::Alerts);
        // Bounded like a webhook attempt, so that a broker that takes the
        // connection but never acks cannot hold the sink forever.
        let r = tokio::select! {
            r = tokio::time::timeout(WEBHOOK_TIMEOUT, publish_one(client, el, &topic, t.json.clone())) => {
                r.unwrap_or_else(|_| Err("timed out".into()))
            }
            _ = shutdown.wait_for(|s| *s) => break,
        };
        health.idle(Stage::Alerts);
        match r {
            Ok(()) => {
                queue.pop_front();
                backoff = BACKOFF_MIN;
                stats.mqtt_delivered.fetch_add(1, Ordering::Relaxed);
                write_cursor(&cursor, t.alert.seq);
            }
            Err(e) => {
                tracing::warn!(error = %e, alert_seq = t.alert.seq, "alerts: MQTT sink failed; retrying");
                conn = None;
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.wait_for(|s| *s) => break,
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
    if let Some((client, _)) = conn {
        let _ = client.try_disconnect();
    }
}

/// Publishes at QoS 1 and drives the connection until the broker acks it.
async fn publish_one(
    client: &AsyncClient,
    eventloop: &mut EventLoop,
    topic: &str,
    json: String,
) -> Result<(), String> {
    client
        .publish(topic, QoS::AtLeastOnce, false, Bytes::from(json))
        .await
        .map_err(|e| e.to_string())?;
    let mut pkid = None;
    loop {
        match eventloop.poll().await.map_err(|e| e.to_string())? {
            Event::Outgoing(Outgoing::Publish(id)) if pkid.is_none() => pkid = Some(id),
            Event::Incoming(Incoming::PubAck(ack)) if Some(ack.pkid) == pkid => return Ok(()),
            _ => {}
        }
    }
}

async fn webhook_sink(
    w: WebhookSink,
    backlog: Vec<Arc<Told>>,
    mut rx: mpsc::Receiver<Arc<Told>>,
    cursor: PathBuf,
    stats: Arc<SinkStats>,
    mut shutdown: watch::Receiver<bool>,
    health: Arc<crate::health::Health>,
) {
    use crate::health::Stage;
    let mut queue: VecDeque<Arc<Told>> = VecDeque::new();
    let mut last_queued = 0;
    let mut open = true;
    let give_up = |t: &Told, why: &str| {
        stats.webhook_given_up.fetch_add(1, Ordering::Relaxed);
        tracing::error!(
            alert_seq = t.alert.seq,
            kind = t.alert.kind.as_str(),
            subject = %t.alert.subject,
            url = %w.url,
            "alerts: webhook gave up on an alert: {why}"
        );
    };
    let mut push = |queue: &mut VecDeque<Arc<Told>>, t: Arc<Told>| {
        if t.alert.seq <= last_queued {
            return;
        }
        last_queued = t.alert.seq;
        queue.push_back(t);
        if queue.len() > w.queue {
            if let Some(old) = queue.pop_front() {
                give_up(&old, "the queue is full");
                write_cursor(&cursor, old.alert.seq);
            }
        }
    };
    for t in backlog {
        push(&mut queue, t);
    }
    let mut attempt = 0u32;
    loop {
        while let Ok(t) = rx.try_recv() {
            push(&mut queue, t);
        }
        stats
            .webhook_queued
            .store(queue.len() as u64, Ordering::Relaxed);
        let Some(t) = queue.front().cloned() else {
            if !open {
                break;
            }
            tokio::select! {
                m = rx.recv() => match m {
                    Some(t) => push(&mut queue, t),
                    None => open = false,
                },
                _ = shutdown.wait_for(|s| *s) => break,
            }
            continue;
        };
        // Each attempt is bounded (WEBHOOK_TIMEOUT) and runs in this
        // sink's own task: a slow receiver delays neither the MQTT sink nor
        // the store (which only hands alerts over) nor any ack.
        health.busy(Stage::Alerts);
        let result = tokio::select! {
            r = tokio::time::timeout(WEBHOOK_TIMEOUT, post(&w, Bytes::from(t.json.clone()))) => {
                r.unwrap_or_else(|_| Err("timed out".into()))
            }
            _ = shutdown.wait_for(|s| *s) => break,
        };
        health.idle(Stage::Alerts);
        match result {
            Ok(status) if (200..300).contains(&status) => {
                queue.pop_front();
                attempt = 0;
                stats.webhook_delivered.fetch_add(1, Ordering::Relaxed);
                write_cursor(&cursor, t.alert.seq);
            }
            r => {
                let why = match r {
                    Ok(status) => format!("HTTP {status}"),
                    Err(e) => e,
                };
                stats
                    .webhook_failed_attempts
                    .fetch_add(1, Ordering::Relaxed);
                attempt += 1;
                if attempt >= w.attempts {
                    queue.pop_front();
                    attempt = 0;
                    give_up(
                        &t,
                        &format!("{} attempts failed, the last: {why}", w.attempts),
                    );
                    write_cursor(&cursor, t.alert.seq);
                    continue;
                }
                tracing::warn!(alert_seq = t.alert.seq, attempt, error = %why, "alerts: webhook failed; retrying");
                let wait = (BACKOFF_MIN * 2u32.saturating_pow(attempt - 1)).min(BACKOFF_MAX);
                let sleep = tokio::time::sleep(wait);
                tokio::pin!(sleep);
                loop {
                    tokio::select! {
                        _ = &mut sleep => break,
                        m = rx.recv(), if open => match m {
                            Some(t) => push(&mut queue, t),
                            None => open = false,
                        },
                        _ = shutdown.wait_for(|s| *s) => return,
                    }
                }
            }
        }
    }
}

/// One POST; the response status.
async fn post(w: &WebhookSink, body: Bytes) -> Result<u16, String> {
    let res = http_post(&w.host, w.port, &w.path, "application/json", body).await?;
    Ok(res.status().as_u16())
}

/// One HTTP/1.1 POST on a connection of its own (the webhook sink and the
/// witness client): the response, its body still to read.
pub(crate) async fn http_post(
    host: &str,
    port: u16,
    path: &str,
    content_type: &str,
    body: Bytes,
) -> Result<hyper::Response<hyper::body::Incoming>, String> {
    use http_body_util::Full;
    use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, HOST};
    let stream = tokio::net::TcpStream::connect((host, port))
        .await
        .map_err(|e| format!("connect {host}:{port}: {e}"))?;
    let io = hyper_util::rt::TokioIo::new(stream);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let len = body.len();
    let req = hyper::Request::post(path)
        .header(HOST, format!("{host}:{port}"))
        .header(CONTENT_TYPE, content_type)
        .header(CONTENT_LENGTH, len)
        .body(Full::new(body))
        .map_err(|e| e.to_string())?;
    sender.send_request(req).await.map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_urls() {
        assert_eq!(
            parse_http_url("http://127.0.0.1:9000/hook?x=1").unwrap(),
            ("127.0.0.1".into(), 9000, "/hook?x=1".into())
        );
        assert_eq!(
            parse_http_url("http://alerts.example").unwrap(),
            ("alerts.example".into(), 80, "/".into())
        );
        assert!(parse_http_url("https://x")
            .unwrap_err()
            .to_string()
            .contains("only http://"));
        assert!(parse_http_url("http://x:0/").is_err());
    }

    fn told(seq: u64, kind: crate::alerts::AlertKind, subject: &str) -> Arc<Told> {
        let a = crate::alerts::engine::tests::bare_alert(seq, kind, subject);
        Arc::new(Told {
            json: a.to_json().to_string(),
            alert: a,
        })
    }

    /// A webhook that always fails: each alert is tried `attempts` times,
    /// then given up, counted, and the cursor moves past it; a full queue
    /// gives up its oldest. Nothing is dropped without a count.
    #[tokio::test]
    async fn a_failing_webhook_gives_up_and_counts() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let hits = Arc::new(AtomicU64::new(0));
        let h = hits.clone();
        tokio::spawn(async move {
            loop {
                let (mut sock, _) = listener.accept().await.unwrap();
                h.fetch_add(1, Ordering::Relaxed);
                let mut buf = [0u8; 4096];
                let _ = sock.read(&mut buf).await;
                let _ = sock
                    .write_all(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    .await;
            }
        });
        let tmp = tempfile::tempdir().unwrap();
        let cursor = tmp.path().join("webhook.cursor");
        let w = WebhookSink {
            url: format!("http://127.0.0.1:{port}/"),
            host: "127.0.0.1".into(),
            port,
            path: "/".into(),
            queue: 2,
            attempts: 2,
        };
        let stats = Arc::new(SinkStats::default());
        let (tx, rx) = mpsc::channel(ALERT_CHANNEL);
        let (_stop_tx, stop) = watch::channel(false);
        // Four alerts into a queue of two: the oldest two are given up at
        // once, the other two after two attempts each.
        let backlog = (1..=4)
            .map(|s| told(s, crate::alerts::AlertKind::MeterSilent, &format!("M-{s}")))
            .collect();
        drop(tx);
        tokio::time::timeout(
            Duration::from_secs(20),
            webhook_sink(
                w,
                backlog,
                rx,
                cursor.clone(),
                stats.clone(),
                stop,
                Arc::default(),
            ),
        )
        .await
        .expect("the sink ends once its queue is empty and its sender gone");
        assert_eq!(stats.webhook_given_up.load(Ordering::Relaxed), 4);
        assert_eq!(stats.webhook_delivered.load(Ordering::Relaxed), 0);
        assert_eq!(stats.webhook_failed_attempts.load(Ordering::Relaxed), 4);
        assert_eq!(hits.load(Ordering::Relaxed), 4);
        assert_eq!(read_cursor(&cursor), Some(4));
    }

    #[test]
    fn topics_carry_kind_and_subject_without_wildcards() {
        let t = told(1, crate::alerts::AlertKind::GroupSilent, "meters/gw+1");
        assert_eq!(
            topic_for("gapless/alerts", &t),
            "gapless/alerts/group_silent/meters/gw_1"
        );
    }
}
