//! A small in-process MQTT 3.1.1 broker, so that `gapless demo` runs on a
//! machine with nothing but Rust installed (no Mosquitto).
//!
//! What it does: CONNECT (with session takeover by client id), SUBSCRIBE and
//! UNSUBSCRIBE with `+`/`#` filters (granted QoS at most 1), PUBLISH at QoS 0
//! and 1 (the publisher's PUBACK is sent once the message is on the queue of
//! every matching session), PINGREQ, DISCONNECT, and persistent sessions:
//! with clean_session=false a session keeps its subscriptions, its unacked
//! in-flight messages and everything published while it is offline; on
//! reconnect the in-flight ones are re-sent first, in order, with DUP set.
//! A malformed or unsupported packet closes only that connection (with a
//! warning), as does silence beyond 1.5 times the client's keep-alive.
//!
//! What it does not do: retained messages, wills, QoS 2 (such a PUBLISH closes
//! the connection), persistence to disk (sessions live in memory, queues are
//! unbounded), authentication, TLS, MQTT 5. It is for the demo only.
//!
//! Design: one task per connection, which reads and writes concurrently; all
//! sessions sit behind one mutex, held only for short in-memory work. The
//! reader encodes its replies into the session; the writer takes them and as
//! many queued messages as the in-flight window allows into one buffer and
//! sends it with one write.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::BytesMut;
use rumqttc::mqttbytes::v4::{
    ConnAck, Connect, ConnectReturnCode, Packet, PubAck, Publish, SubAck, SubscribeReasonCode,
    UnsubAck,
};
use rumqttc::mqttbytes::{self, Protocol, QoS};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, Notify};
use tokio::task::{JoinHandle, JoinSet};

/// Unacked QoS 1 messages per session. Large enough that a subscriber which
/// acks in batches (as gapless does, after each group commit) never waits
/// on the broker; small enough that a redelivery after a crash stays short.
const WINDOW: usize = 1024;
/// Largest packet accepted from a client; bigger ones close the connection.
/// Above the ingest's default payload limit, so the demo can show rejects.
const MAX_PACKET: usize = 16 << 20;
/// Stop adding queued messages to one write once it holds this many bytes.
const MAX_BATCH: usize = 256 << 10;
/// A connection must send CONNECT within this time.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A running broker; dropping it stops the listener and every connection.
pub struct Broker {
    addr: SocketAddr,
    /// Tells the accept loop to stop ([`Broker::shutdown`]).
    stop: Arc<Notify>,
    task: JoinHandle<()>,
}

impl Broker {
    /// Binds `addr` (port 0 picks a free port) and starts accepting clients.
    pub async fn start(addr: SocketAddr) -> io::Result<Broker> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(Notify::new());
        let task = tokio::spawn(accept_loop(listener, stop.clone()));
        tracing::info!(%addr, "demo broker: listening");
        Ok(Broker { addr, stop, task })
    }

    /// The address the broker listens on (with the port actually bound).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, closes every connection and waits until all are gone.
    #[cfg_attr(
        not(test),
        expect(
            dead_code,
            reason = "only the tests stop it gracefully; the demo drops it"
        )
    )]
    pub async fn shutdown(mut self) {
        self.stop.notify_one();
        let _ = (&mut self.task).await;
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        // Aborting the accept loop drops its JoinSet, which aborts the connections.
        self.task.abort();
    }
}

async fn accept_loop(listener: TcpListener, stop: Arc<Notify>) {
    let core = Arc::new(Mutex::new(Core::default()));
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            _ = stop.notified() => break,
            accepted = listener.accept() => match accepted {
                Ok((sock, peer)) => {
                    conns.spawn(connection(core.clone(), sock, peer));
                }
                Err(e) => {
                    // E.g. out of file descriptors: wait instead of spinning.
                    tracing::warn!(error = %e, "demo broker: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(Err(e)) = conns.join_next(), if !conns.is_empty() => {
                tracing::warn!(error = %e, "demo broker: connection task failed");
            }
        }
    }
    conns.shutdown().await;
}

/// Why a connection ended (other than a clean DISCONNECT).
#[derive(Debug, thiserror::Error)]
enum ConnError {
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
    #[error("closed by the client")]
    Eof,
    #[error("malformed packet: {0}")]
    Codec(#[from] mqttbytes::Error),
    #[error("{0}")]
    Protocol(&'static str),
    #[error("no CONNECT within 10 s, or no packet within 1.5 times the keep-alive")]
    Timeout,
    #[error("taken over by a new connection with the same client id")]
    TakenOver,
}

#[derive(Default)]
struct Core {
    sessions: HashMap<String, Session>,
    last_conn: u64,
}

#[derive(Default)]
struct Session {
    /// clean_session=false: kept after the connection ends.
    persistent: bool,
    /// Filter and granted QoS.
    subs: Vec<(String, QoS)>,
    /// Messages not sent yet, in publish order (pkid 0 until sent).
    queue: VecDeque<Publish>,
    /// QoS 1 messages sent and not acked, in send order.
    inflight: VecDeque<Publish>,
    /// Packet ids of `inflight`.
    pkids: HashSet<u16>,
    last_pkid: u16,
    /// Encoded replies (CONNACK, PUBACK, SUBACK...) for the writer to send.
    replies: BytesMut,
    conn: Option<Attached>,
}

/// The connection a session is attached to.
struct Attached {
    id: u64,
    wake: Arc<Notify>,
    /// Dropped (with this struct) when the session is taken over or
    /// discarded; that closes the connection.
    _kick: oneshot::Sender<()>,
}

/// What a connection's reader and writer share.
struct Conn {
    client_id: String,
    id: u64,
    /// Something for the writer: replies, queued messages, acks, DISCONNECT.
    wake: Arc<Notify>,
    keep_alive: Duration,
    /// DISCONNECT was read: send the replies still pending, then close.
    closing: AtomicBool,
}

fn lock(core: &Mutex<Core>) -> MutexGuard<'_, Core> {
    core.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Core {
    /// The connection's session, or `TakenOver` if another connection owns it now.
    fn owned(&mut self, conn: &Conn) -> Result<&mut Session, ConnError> {
        self.sessions
            .get_mut(&conn.client_id)
            .filter(|s| s.conn.as_ref().is_some_and(|a| a.id == conn.id))
            .ok_or(ConnError::TakenOver)
    }

    /// Puts a copy of `p` on the queue of every session with a matching
    /// filter, at the lower of its QoS and the highest matching grant.
    fn route(&mut self, p: &Publish) {
        for s in self.sessions.values_mut() {
            let matching = s.subs.iter().filter(|(f, _)| topic_matches(f, &p.topic));
            let Some(granted) = matching.map(|&(_, q)| q as u8).max() else {
                continue;
            };
            let qos = match granted.min(p.qos as u8) {
                0 => QoS::AtMostOnce,
                _ => QoS::AtLeastOnce,
            };
            let copy = Publish::from_bytes(p.topic.clone(), qos, p.payload.clone());
            s.queue.push_back(copy);
            if let Some(conn) = &s.conn {
                conn.wake.notify_one();
            }
        }
    }
}

impl Session {
    /// Encodes queued messages into `out` while the in-flight window and the
    /// batch size allow; QoS 1 ones get a packet id and go in flight.
    fn fill(&mut self, out: &mut BytesMut) -> Result<(), mqttbytes::Error> {
        while out.len() < MAX_BATCH {
            let Some(mut p) = self.queue.pop_front() else {
                break;
            };
            if p.qos == QoS::AtMostOnce {
                p.write(out)?;
            } else if self.inflight.len() < WINDOW {
                p.pkid = self.next_pkid();
                p.write(out)?;
                self.inflight.push_back(p);
            } else {
                self.queue.push_front(p); // keeps the order: wait for an ack
                break;
            }
        }
        Ok(())
    }

    /// The next packet id not used by an in-flight message (the window is far
    /// below 65535, so one is always free).
    fn next_pkid(&mut self) -> u16 {
        loop {
            self.last_pkid = self.last_pkid.wrapping_add(1).max(1);
            if self.pkids.insert(self.last_pkid) {
                return self.last_pkid;
            }
        }
    }

    /// Removes an acked message; false if `pkid` was not in flight.
    fn ack(&mut self, pkid: u16) -> bool {
        if !self.pkids.remove(&pkid) {
            return false;
        }
        // Acks usually come in order, so this finds it at the front.
        if let Some(i) = self.inflight.iter().position(|p| p.pkid == pkid) {
            self.inflight.remove(i);
        }
        true
    }
}

/// MQTT 3.1.1 §4.7 topic matching (`filter` is valid, `topic` has no wildcards).
fn topic_matches(filter: &str, topic: &str) -> bool {
    // §4.7.2: wildcards at the first level do not match `$` topics.
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut levels = topic.split('/');
    for f in filter.split('/') {
        if f == "#" {
            return true; // also matches the parent: `a/#` matches `a`
        }
        match levels.next() {
            Some(level) if f == "+" || f == level => {}
            _ => return false,
        }
    }
    levels.next().is_none()
}

async fn connection(core: Arc<Mutex<Core>>, mut sock: TcpStream, peer: SocketAddr) {
    let _ = sock.set_nodelay(true);
    match serve(&core, &mut sock).await {
        Ok(()) => tracing::debug!(%peer, "demo broker: client disconnected"),
        Err(e @ (ConnError::Io(_) | ConnError::Eof)) => {
            tracing::debug!(%peer, "demo broker: connection lost: {e}")
        }
        Err(ConnError::TakenOver) => tracing::info!(%peer, "demo broker: {}", ConnError::TakenOver),
        Err(e) => tracing::warn!(%peer, "demo broker: closing connection: {e}"),
    }
}

async fn serve(core: &Mutex<Core>, sock: &mut TcpStream) -> Result<(), ConnError> {
    let mut buf = BytesMut::new();
    let first = loop {
        match Packet::read(&mut buf, MAX_PACKET) {
            Err(mqttbytes::Error::InsufficientBytes(_)) => {
                read_more(sock, &mut buf, CONNECT_TIMEOUT).await?
            }
            other => break other?,
        }
    };
    let Packet::Connect(connect) = first else {
        return Err(ConnError::Protocol(
            "first packet is not CONNECT (protocol violation)",
        ));
    };
    let code = if connect.protocol != Protocol::V4 {
        ConnectReturnCode::RefusedProtocolVersion
    } else if connect.client_id.is_empty() && !connect.clean_session {
        ConnectReturnCode::BadClientId
    } else {
        ConnectReturnCode::Success
    };
    if code != ConnectReturnCode::Success {
        let mut out = BytesMut::new();
        ConnAck::new(code, false).write(&mut out)?;
        sock.write_all(&out).await?;
        return Err(ConnError::Protocol(
            "CONNECT refused: MQTT 3.1.1 with a client id only",
        ));
    }
    if connect.last_will.is_some() {
        tracing::info!("demo broker: wills are not supported; ignoring it");
    }
    let (kick, kicked) = oneshot::channel();
    let conn = attach(core, &connect, kick)?;

    let (rd, wr) = sock.split();
    let reader = async {
        read_loop(core, &conn, rd, buf).await?;
        conn.closing.store(true, Ordering::Release);
        conn.wake.notify_one();
        std::future::pending().await // the writer ends the connection
    };
    let result = tokio::select! {
        r = reader => r,
        r = write_loop(core, &conn, wr) => r,
        _ = kicked => Err(ConnError::TakenOver),
    };
    let mut c = lock(core);
    if let Ok(s) = c.owned(&conn) {
        if s.persistent {
            s.conn = None;
        } else {
            c.sessions.remove(&conn.client_id);
        }
    }
    result
}

/// Creates or resumes the session for `connect`, taking it over from any
/// connection that holds it, and queues the CONNACK and, for a resumed
/// session, the re-sends of its in-flight messages (DUP set, in order).
fn attach(
    core: &Mutex<Core>,
    connect: &Connect,
    kick: oneshot::Sender<()>,
) -> Result<Conn, ConnError> {
    let mut c = lock(core);
    c.last_conn += 1;
    let id = c.last_conn;
    let client_id = match connect.client_id.as_str() {
        "" => format!("$auto/{id}"),
        given => given.to_owned(),
    };
    let persistent = !connect.clean_session;
    let fresh = Session {
        persistent,
        ..Session::default()
    };
    let (s, present) = match c.sessions.entry(client_id.clone()) {
        Entry::Occupied(e) if persistent && e.get().persistent => (e.into_mut(), true),
        Entry::Occupied(mut e) => {
            e.insert(fresh); // drops the old session (and so kicks its connection)
            (e.into_mut(), false)
        }
        Entry::Vacant(e) => (e.insert(fresh), false),
    };
    let wake = Arc::new(Notify::new());
    // Replacing `conn` drops the old connection's kick sender: it closes.
    let attached = Attached {
        id,
        wake: wake.clone(),
        _kick: kick,
    };
    s.conn = Some(attached);
    s.replies.clear();
    ConnAck::new(ConnectReturnCode::Success, present).write(&mut s.replies)?;
    for p in s.inflight.iter_mut() {
        p.dup = true;
        p.write(&mut s.replies)?;
    }
    wake.notify_one();
    tracing::debug!(
        client_id,
        present,
        resent = s.inflight.len(),
        "demo broker: connected"
    );
    let keep_alive = match connect.keep_alive {
        0 => Duration::MAX,
        secs => Duration::from_millis(u64::from(secs) * 1500),
    };
    let closing = AtomicBool::new(false);
    Ok(Conn {
        client_id,
        id,
        wake,
        keep_alive,
        closing,
    })
}

/// Reads more bytes into `buf`, within `limit`.
async fn read_more(
    rd: &mut (impl AsyncRead + Unpin),
    buf: &mut BytesMut,
    limit: Duration,
) -> Result<(), ConnError> {
    buf.reserve(64 << 10);
    let read = tokio::time::timeout(limit, rd.read_buf(buf)).await;
    match read.map_err(|_| ConnError::Timeout)?? {
        0 => Err(ConnError::Eof),
        _ => Ok(()),
    }
}

async fn read_loop(
    core: &Mutex<Core>,
    conn: &Conn,
    mut rd: ReadHalf<'_>,
    mut buf: BytesMut,
) -> Result<(), ConnError> {
    loop {
        match Packet::read(&mut buf, MAX_PACKET) {
            Ok(Packet::Disconnect) => return Ok(()),
            Ok(packet) => handle(core, conn, packet)?,
            Err(mqttbytes::Error::InsufficientBytes(_)) => {
                read_more(&mut rd, &mut buf, conn.keep_alive).await?
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Acts on one packet from the client and queues its reply for the writer.
fn handle(core: &Mutex<Core>, conn: &Conn, packet: Packet) -> Result<(), ConnError> {
    const NO_QOS2: &str = "QoS 2 is not supported (the demo broker does QoS 0 and 1)";
    let mut c = lock(core);
    let reply = match packet {
        Packet::Publish(p) if p.qos == QoS::ExactlyOnce => {
            return Err(ConnError::Protocol(NO_QOS2))
        }
        Packet::Publish(p) if p.topic.is_empty() || mqttbytes::has_wildcards(&p.topic) => {
            return Err(ConnError::Protocol(
                "PUBLISH to an empty or wildcard topic (protocol violation)",
            ))
        }
        Packet::Publish(p) => {
            c.route(&p); // on every matching queue before the PUBACK
            (p.qos == QoS::AtLeastOnce).then(|| Packet::PubAck(PubAck::new(p.pkid)))
        }
        Packet::PubAck(ack) => {
            if c.owned(conn)?.ack(ack.pkid) {
                conn.wake.notify_one(); // room in the window
            }
            None
        }
        Packet::Subscribe(sub) => {
            let s = c.owned(conn)?;
            let codes = sub.filters.into_iter().map(|f| {
                if !mqttbytes::valid_filter(&f.path) {
                    return SubscribeReasonCode::Failure;
                }
                let qos = match f.qos {
                    QoS::AtMostOnce => QoS::AtMostOnce,
                    _ => QoS::AtLeastOnce,
                };
                s.subs.retain(|(existing, _)| *existing != f.path);
                s.subs.push((f.path, qos));
                SubscribeReasonCode::Success(qos)
            });
            Some(Packet::SubAck(SubAck::new(sub.pkid, codes.collect())))
        }
        Packet::Unsubscribe(unsub) => {
            let s = c.owned(conn)?;
            s.subs.retain(|(f, _)| !unsub.topics.contains(f));
            Some(Packet::UnsubAck(UnsubAck::new(unsub.pkid)))
        }
        Packet::PingReq => Some(Packet::PingResp),
        Packet::Connect(_) => {
            return Err(ConnError::Protocol("second CONNECT (protocol violation)"))
        }
        Packet::PubRec(_) | Packet::PubRel(_) | Packet::PubComp(_) => {
            return Err(ConnError::Protocol(NO_QOS2))
        }
        _ => {
            return Err(ConnError::Protocol(
                "server-to-client packet from a client (protocol violation)",
            ))
        }
    };
    if let Some(reply) = reply {
        reply.write(&mut c.owned(conn)?.replies, usize::MAX)?;
        conn.wake.notify_one();
    }
    Ok(())
}

/// Sends pending replies and queued messages, one write per batch, until
/// the reader has seen DISCONNECT and nothing is left to reply.
async fn write_loop(
    core: &Mutex<Core>,
    conn: &Conn,
    mut wr: WriteHalf<'_>,
) -> Result<(), ConnError> {
    let mut out = BytesMut::with_capacity(MAX_BATCH + (64 << 10));
    loop {
        let closing = conn.closing.load(Ordering::Acquire);
        {
            let mut c = lock(core);
            let s = c.owned(conn)?;
            out.extend_from_slice(&s.replies);
            s.replies.clear();
            if !closing {
                s.fill(&mut out)?;
            }
        }
        if !out.is_empty() {
            wr.write_all(&out).await?;
            out.clear();
        } else if closing {
            return Ok(());
        } else {
            conn.wake.notified().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Outgoing};

    const LIMIT: Duration = Duration::from_secs(4);

    async fn start() -> Broker {
        Broker::start(([127, 0, 0, 1], 0).into())
            .await
            .expect("bind")
    }

    fn client(b: &Broker, id: &str, clean: bool) -> (AsyncClient, EventLoop) {
        let mut o = MqttOptions::new(id, "127.0.0.1", b.local_addr().port());
        o.set_clean_session(clean).set_manual_acks(true);
        AsyncClient::new(o, 1000)
    }

    /// Polls until `want` says yes; fails on a connection error or after LIMIT.
    async fn until<R>(el: &mut EventLoop, mut want: impl FnMut(Event) -> Option<R>) -> R {
        let poll = async {
            loop {
                if let Some(r) = want(el.poll().await.expect("connection")) {
                    return r;
                }
            }
        };
        tokio::time::timeout(LIMIT, poll).await.expect("timed out")
    }

    fn publish_of(ev: Event) -> Option<Publish> {
        match ev {
            Event::Incoming(Packet::Publish(p)) => Some(p),
            _ => None,
        }
    }

    fn connack_of(ev: Event) -> Option<bool> {
        match ev {
            Event::Incoming(Packet::ConnAck(a)) => Some(a.session_present),
            _ => None,
        }
    }

    async fn subscribed(
        b: &Broker,
        id: &str,
        clean: bool,
        filter: &str,
    ) -> (AsyncClient, EventLoop) {
        let (c, mut el) = client(b, id, clean);
        c.subscribe(filter, QoS::AtLeastOnce)
            .await
            .expect("subscribe");
        until(&mut el, |ev| {
            matches!(ev, Event::Incoming(Packet::SubAck(_))).then_some(())
        })
        .await;
        (c, el)
    }

    /// Sends DISCONNECT and waits until it is written.
    async fn disconnect(c: AsyncClient, mut el: EventLoop) {
        c.disconnect().await.expect("disconnect");
        until(&mut el, |ev| {
            matches!(ev, Event::Outgoing(Outgoing::Disconnect)).then_some(())
        })
        .await;
    }

    /// Publishes at QoS 1 and waits for every PUBACK.
    async fn publish_all(b: &Broker, msgs: &[(String, Vec<u8>)]) {
        let (c, mut el) = client(b, "publisher", true);
        for (topic, payload) in msgs {
            c.publish(topic, QoS::AtLeastOnce, false, payload.clone())
                .await
                .expect("publish");
        }
        let mut acked = 0;
        until(&mut el, |ev| {
            acked += usize::from(matches!(ev, Event::Incoming(Packet::PubAck(_))));
            (acked == msgs.len()).then_some(())
        })
        .await;
        disconnect(c, el).await;
    }

    #[tokio::test]
    async fn qos1_publish_reaches_a_wildcard_subscriber() {
        let b = start().await;
        let (_c, mut sub) = subscribed(&b, "sub", true, "meters/+/reading").await;
        let payload = vec![0, 255, b'{', 0x80, 7];
        let msgs = [
            ("other/1/reading".into(), b"no".to_vec()),
            ("meters/7/reading".into(), payload.clone()),
        ];
        publish_all(&b, &msgs).await;
        // Had the first message matched, it would have come first.
        let p = until(&mut sub, publish_of).await;
        assert_eq!(
            (p.topic.as_str(), &p.payload[..]),
            ("meters/7/reading", &payload[..])
        );
        assert_eq!((p.qos, p.dup), (QoS::AtLeastOnce, false));
        b.shutdown().await;
    }

    #[tokio::test]
    async fn persistent_session_keeps_what_was_published_while_offline() {
        let b = start().await;
        let (c, el) = subscribed(&b, "ingest", false, "m/#").await;
        disconnect(c, el).await;
        let msgs: Vec<_> = (0..500u32)
            .map(|i| (format!("m/{}", i % 7), i.to_be_bytes().to_vec()))
            .collect();
        publish_all(&b, &msgs).await;

        let (c, mut el) = client(&b, "ingest", false);
        assert!(until(&mut el, connack_of).await, "session_present");
        for (i, (topic, payload)) in msgs.iter().enumerate() {
            let p = until(&mut el, publish_of).await;
            assert_eq!(
                (&p.topic, &p.payload[..]),
                (topic, &payload[..]),
                "message {i}"
            );
            c.ack(&p).await.expect("ack");
        }
    }

    #[tokio::test]
    async fn unacked_messages_come_again_with_dup_and_nothing_is_lost() {
        let b = start().await;
        let (c, mut el) = subscribed(&b, "crashy", false, "r/#").await;
        let msgs: Vec<_> = (0..30u8).map(|i| (format!("r/{i}"), vec![i])).collect();
        publish_all(&b, &msgs).await;
        for i in 0..10u8 {
            let p = until(&mut el, publish_of).await;
            assert_eq!((&p.payload[..], p.dup), (&[i][..], false));
        }
        drop((c, el)); // the socket dies, nothing acked

        let (c, mut el) = client(&b, "crashy", false);
        assert!(until(&mut el, connack_of).await, "session_present");
        for i in 0..30u8 {
            let p = until(&mut el, publish_of).await;
            assert_eq!(&p.payload[..], &[i][..]);
            assert!(p.dup || i >= 10, "message {i} is a redelivery");
            c.ack(&p).await.expect("ack");
        }
        // Acked means gone: the next session gets only what came since.
        disconnect(c, el).await;
        publish_all(&b, &[("r/x".into(), vec![99])]).await;
        let (_c, mut el) = client(&b, "crashy", false);
        let p = until(&mut el, publish_of).await;
        assert_eq!((&p.payload[..], p.dup), (&[99][..], false));
    }

    #[tokio::test]
    async fn a_second_connection_takes_the_session_over() {
        let b = start().await;
        let (_old, mut old_el) = subscribed(&b, "twice", false, "t/#").await;
        let (_new, mut new_el) = client(&b, "twice", false);
        assert!(until(&mut new_el, connack_of).await, "session_present");
        let closed = tokio::time::timeout(LIMIT, async { while old_el.poll().await.is_ok() {} });
        closed.await.expect("the old connection is closed");
        publish_all(&b, &[("t/1".into(), vec![1])]).await; // the subscription moved too
        assert_eq!(&until(&mut new_el, publish_of).await.payload[..], &[1]);
    }

    #[test]
    fn topic_filters_match_as_mqtt_says() {
        // Filter, topics it matches, topics it does not (space-separated).
        let table = [
            ("a/b/c", "a/b/c", "a/b a/b/c/d a/b/d A/b/c"),
            ("a/+/c", "a/b/c a//c", "a/b/d a/c a/b/b/c"),
            ("a/+", "a/b a/", "a a/b/c"),
            ("+/+", "/x a/b", "a a/b/c"),
            ("#", "a a/b/c /", "$SYS $SYS/x"),
            ("a/#", "a a/ a/b/c", "b/a ab"),
            ("a/+/#", "a/b a/b/c", "a"),
            ("+/x", "a/x /x", "$SYS/x a/y"),
            ("$SYS/#", "$SYS $SYS/x", "SYS/x"),
            ("+/$x", "a/$x", "$x"),
        ];
        for (filter, yes, no) in table {
            for topic in yes.split(' ') {
                assert!(
                    topic_matches(filter, topic),
                    "{filter} should match {topic}"
                );
            }
            for topic in no.split(' ') {
                assert!(
                    !topic_matches(filter, topic),
                    "{filter} should not match {topic}"
                );
            }
        }
    }

    #[tokio::test]
    async fn garbage_closes_only_that_connection() {
        let b = start().await;
        let mut connect = BytesMut::new();
        Connect::new("raw").write(&mut connect).expect("encode");
        let with_connect = |tail: &[u8]| [&connect[..], tail].concat();
        let mut v5 = Connect::new("v5");
        v5.protocol = Protocol::V5;
        let mut v5_bytes = BytesMut::new();
        v5.write(&mut v5_bytes).expect("encode");
        let random: Vec<u8> = (0..4096u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let qos2 = with_connect(&[0x34, 0x05, 0x00, 0x01, b't', 0x00, 0x01]);
        let ok: &[u8] = &[0x20, 2, 0, 0]; // CONNACK, accepted
        let cases: [(Vec<u8>, &[u8]); 10] = [
            (vec![0x00, 0x00], &[]),                             // packet type 0
            (vec![0x10, 0xff, 0xff, 0xff, 0xff, 0x7f], &[]),     // remaining length too long
            (vec![0xc0, 0x00], &[]),                             // PINGREQ before CONNECT
            (v5_bytes.to_vec(), &[0x20, 2, 0, 1]),               // MQTT 5: refused
            (with_connect(&[0x30, 0x03, 0x00, 0x05, b'a']), ok), // topic longer than the packet
            (with_connect(&[0x30, 0x03, 0x00, 0x01, b'#']), ok), // wildcard topic
            (with_connect(&[0x40, 0x00]), ok),                   // PUBACK without a packet id
            (qos2, ok),                                          // QoS 2 PUBLISH
            (with_connect(&random), ok),                         // noise after CONNECT
            (random.clone(), &[]),                               // noise only
        ];
        for (i, (bytes, reply)) in cases.iter().enumerate() {
            let mut s = TcpStream::connect(b.local_addr()).await.expect("connect");
            s.write_all(bytes).await.expect("write");
            if i >= cases.len() - 2 {
                s.shutdown().await.expect("shutdown"); // may announce a longer packet
            }
            let mut got = Vec::new();
            let read = tokio::time::timeout(LIMIT, s.read_to_end(&mut got)).await;
            assert!(matches!(read, Ok(Ok(_))), "case {i}: the broker closes");
            // The close may overtake the CONNACK; nothing else may come.
            assert!(reply.starts_with(&got), "case {i}: got {got:?}");
        }
        // And it still serves everyone else.
        let (_c, mut sub) = subscribed(&b, "after", true, "ok").await;
        publish_all(&b, &[("ok".into(), b"fine".to_vec())]).await;
        assert_eq!(&until(&mut sub, publish_of).await.payload[..], b"fine");
    }
}
