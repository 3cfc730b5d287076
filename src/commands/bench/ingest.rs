//! `gapless bench ingest`: is gapless ever the bottleneck?
//!
//! Two subscribers drain the same broker in the same run:
//! - *bare*: a plain rumqttc QoS 1 subscriber that acks on arrival and does
//!   nothing else (the broker's own limit);
//! - *gapless*: the real pipeline in this process (journal with group-committed
//!   fdatasync, acks after durability, decode, dedup, Parquet).
//!
//! Two modes, for each message size:
//! - *live*: a publisher streams N messages at QoS 1 as fast as the broker
//!   takes them while the subscriber is connected (steady state: gateways
//!   publishing); the clock runs from the first publish to the last ack;
//! - *backlog*: the broker is preloaded with N messages queued for the
//!   offline persistent session, then the clock runs while the subscriber
//!   drains them (catching up after an outage).
//!
//! The figure that counts is gapless's acked rate over the bare rate; the
//! rate until everything is also sealed in Parquet is printed beside it, and
//! the CPU time per message each run took in this process and in the
//! private broker (where a gap between the two subscribers goes).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::sync::watch;

use crate::cli::{BenchIngestArgs, BenchIngestMode as Mode};
use crate::config::{ServeFlags, ServeSettings};
use crate::mqtt::parse_broker;
use crate::mqtt::ConnectionState;
use crate::service;

/// A private Mosquitto configured as the README requires.
struct PrivateBroker {
    child: Child,
    _dir: tempfile::TempDir,
    port: u16,
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `taskset` (util-linux) with `args`; a missing or failing one is an
/// error that says so.
fn taskset(args: &[&str]) -> anyhow::Result<()> {
    let st = Command::new("taskset")
        .args(args)
        .stdout(Stdio::null())
        .status()
        .context("running taskset (apt-get install util-linux)")?;
    if !st.success() {
        bail!("taskset {} failed: {st}", args.join(" "));
    }
    Ok(())
}

fn start_broker(pin: bool) -> anyhow::Result<PrivateBroker> {
    let dir = tempfile::tempdir()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let conf = dir.path().join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\nuser root\n\
             max_queued_messages 0\nmax_queued_bytes 0\nmax_inflight_messages 0\n"
        ),
    )?;
    let bin = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .unwrap_or("mosquitto");
    let mut cmd = if pin {
        let mut c = Command::new("taskset");
        c.args(["-c", "0", bin]);
        c
    } else {
        Command::new(bin)
    };
    let child = cmd
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting mosquitto (install it, or pass --broker)")?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            bail!("mosquitto did not start listening on port {port}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(PrivateBroker {
        child,
        _dir: dir,
        port,
    })
}

impl Mode {
    fn describe(self) -> &'static str {
        match self {
            Mode::Live => "publisher streaming while the subscriber drains",
            Mode::Backlog => "broker preloaded for the offline session, then drained",
        }
    }
}

pub fn ingest(args: BenchIngestArgs) -> anyhow::Result<()> {
    let (broker, host, port) = match &args.broker {
        Some(url) => {
            let b = parse_broker(url)?;
            (None, b.host, b.port)
        }
        None => {
            let b = start_broker(args.pin)?;
            let port = b.port;
            (Some(b), "127.0.0.1".to_string(), port)
        }
    };
    let broker_pid = broker.as_ref().map(|b| b.child.id());
    if args.pin && args.broker.is_some() {
        bail!("--pin pins the private broker: it cannot be given with --broker");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    if args.pin {
        // Every thread of this process, and those it starts later.
        taskset(&["-a", "-p", "-c", "1", &std::process::id().to_string()])?;
        println!(
            "pinned: the broker to CPU 0, this process (subscribers, publisher, gapless) to CPU 1"
        );
    }
    println!(
        "bench ingest: broker {host}:{port}, {} messages per run",
        args.messages
    );
    if args.hostile_percent > 0.0 {
        println!(
            "{} % of the messages hostile (rejected with their bytes; the rates count them)",
            args.hostile_percent
        );
    }
    for &mode in &args.mode {
        let case = Case {
            mode,
            host: host.clone(),
            port,
            broker_pid,
        };
        println!("\n{mode:?} ({})", mode.describe());
        println!(
            "{:>9} {:>5} {:>12} {:>14} {:>16} {:>7} {:>18} {:>8}",
            "readings",
            "run",
            "bare msg/s",
            "gapless msg/s",
            "gapless rdg/s",
            "ratio",
            "sealed too msg/s",
            "drain"
        );
        for &k in &args.readings_per_message {
            let mut ratios = Vec::new();
            let mut drains = Vec::new();
            let mut ledger_costs: Vec<(f64, f64)> = Vec::new();
            for rep in 0..args.repeat.max(1) {
                let run = format!("{}-{mode:?}-{k}-{rep}", std::process::id());
                let payloads = make_payloads(args.messages, k, &run);
                let hostile = make_hostile(&payloads, args.hostile_percent);
                let payloads = hostile.payloads;
                let hostile = hostile.count;
                let data = match &args.data {
                    Some(d) => d.join(format!("run-{run}")),
                    None => std::env::temp_dir().join(format!("gapless-bench-{run}")),
                };
                // Alternate who goes first, so that neither always meets a
                // fresher broker: even runs bare, gapless (and then gapless
                // without the ledger), odd runs the other way round.
                let gapless = |rt: &tokio::runtime::Runtime, ledger: bool| {
                    let (run, data) = if ledger {
                        (run.clone(), data.clone())
                    } else {
                        // On a session and in a directory of its own.
                        (format!("{run}-noledger"), data.with_extension("noledger"))
                    };
                    let r = on_workers(
                        rt,
                        gapless_run(
                            case.clone(),
                            run,
                            payloads.clone(),
                            hostile,
                            data.clone(),
                            ledger,
                        ),
                    );
                    let _ = std::fs::remove_dir_all(&data);
                    r
                };
                let bare = |rt: &tokio::runtime::Runtime| {
                    on_workers(rt, bare_run(case.clone(), run.clone(), payloads.clone()))
                };
                let compare = args.compare_ledger;
                let ((b, bare_cpu), (acked, sealed, cpu), without) = if rep % 2 == 0 {
                    let b = bare(&rt)?;
                    let g = gapless(&rt, true)?;
                    let w = compare.then(|| gapless(&rt, false)).transpose()?;
                    (b, g, w)
                } else {
                    let w = compare.then(|| gapless(&rt, false)).transpose()?;
                    let g = gapless(&rt, true)?;
                    (bare(&rt)?, g, w)
                };
                let n = payloads.len() as f64;
                if let Some((acked2, sealed2, _)) = without {
                    // The audit ledger's cost: row hashing, entries and
                    // signed checkpoints, as a share of the rate without it.
                    let cost = |with: Duration, without: Duration| {
                        100.0 * (1.0 - without.as_secs_f64() / with.as_secs_f64())
                    };
                    ledger_costs.push((cost(acked.total, acked2.total), cost(sealed, sealed2)));
                    println!(
                        "{:>9} {:>5} without the ledger: {:.0} msg/s acked, {:.0} msg/s sealed; the ledger costs {:.1} % acked, {:.1} % sealed",
                        k,
                        rep + 1,
                        n / acked2.total.as_secs_f64(),
                        n / sealed2.as_secs_f64(),
                        cost(acked.total, acked2.total),
                        cost(sealed, sealed2)
                    );
                }
                let ratio = b.total.as_secs_f64() / acked.total.as_secs_f64();
                ratios.push(ratio);
                let drain = b.flowing.as_secs_f64() / acked.flowing.as_secs_f64();
                drains.push(drain);
                println!(
                    "{:>9} {:>5} {:>12.0} {:>14.0} {:>16.0} {:>6.1}% {:>18.0} {:>7.1}%",
                    k,
                    rep + 1,
                    n / b.total.as_secs_f64(),
                    n / acked.total.as_secs_f64(),
                    n * k as f64 / acked.total.as_secs_f64(),
                    100.0 * ratio,
                    n / sealed.as_secs_f64(),
                    100.0 * drain,
                );
                let per_msg = |ns: Option<u64>| {
                    ns.map_or("?".to_string(), |ns| format!("{:.1}", ns as f64 / 1e3 / n))
                };
                println!(
                    "{:>9} {:>5} CPU µs per message, here / in the broker: bare {} / {}, gapless {} / {}",
                    k,
                    rep + 1,
                    per_msg(bare_cpu.ours),
                    per_msg(bare_cpu.broker),
                    per_msg(cpu.ours),
                    per_msg(cpu.broker),
                );
                let by_thread: Vec<String> = cpu
                    .threads
                    .iter()
                    .map(|(t, ns)| format!("{t} {}", per_msg(Some(*ns))))
                    .collect();
                println!(
                    "{:>9} {:>5} gapless's CPU µs per message by thread, until acked: {}",
                    k,
                    rep + 1,
                    by_thread.join(", ")
                );
                if let Some(ns) = cpu.until_sealed {
                    println!(
                        "{:>9} {:>5} gapless's CPU µs per reading until sealed (start, acks, decoding, duplicates, continuity, sealing, ledger): {:.2}",
                        k,
                        rep + 1,
                        ns as f64 / 1e3 / (n * k as f64)
                    );
                }
            }
            ratios.sort_by(f64::total_cmp);
            drains.sort_by(f64::total_cmp);
            println!(
                "{:>9} {:>5} {:>52} {:>6.1}% from the start, {:.1}% from the first delivery",
                k,
                "median",
                "gapless acked rate / bare rate:",
                100.0 * ratios[ratios.len() / 2],
                100.0 * drains[drains.len() / 2],
            );
            if !ledger_costs.is_empty() {
                let mut a: Vec<f64> = ledger_costs.iter().map(|c| c.0).collect();
                let mut s: Vec<f64> = ledger_costs.iter().map(|c| c.1).collect();
                a.sort_by(f64::total_cmp);
                s.sort_by(f64::total_cmp);
                println!(
                    "{:>9} {:>5} {:>52} {:>6.1}% acked, {:.1}% sealed",
                    k,
                    "median",
                    "cost of the audit ledger:",
                    a[a.len() / 2],
                    s[s.len() / 2]
                );
            }
        }
    }
    Ok(())
}

/// How long a subscriber took to ack every message: from its start
/// (connecting; for gapless also opening its data directory) and from the
/// first message delivered to it (the drain itself).
#[derive(Debug, Clone, Copy)]
struct Drain {
    total: Duration,
    flowing: Duration,
}

/// The live publisher's thread, left out of this process's CPU time: it
/// may end before a window closes, and would then take its time with it.
const PUBLISHER_THREAD: &str = "bench-publisher";

/// CPU time (ns) that the threads of process `pid` (but the publisher's)
/// have run so far, from `/proc/PID/task/*/schedstat`; None where that is
/// not readable. A thread that ends between the two readings of a window
/// takes its time with it; the windows close while the subscriber's
/// threads still run.
fn cpu_ns(pid: u32) -> Option<u64> {
    Some(cpu_by_thread(pid)?.values().sum())
}

/// [`cpu_ns`] by thread name (threads of one name added up).
fn cpu_by_thread(pid: u32) -> Option<std::collections::BTreeMap<String, u64>> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut out = std::collections::BTreeMap::new();
    for t in tasks {
        let Some(dir) = t.ok().map(|t| t.path()) else {
            continue;
        };
        let Ok(comm) = std::fs::read_to_string(dir.join("comm")) else {
            continue;
        };
        let comm = comm.trim_end();
        if comm == PUBLISHER_THREAD {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(dir.join("schedstat")) else {
            continue;
        };
        if let Some(ns) = stat
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
        {
            *out.entry(comm.to_owned()).or_default() += ns;
        }
    }
    Some(out)
}

/// CPU time a run took while the clock ran: in this process (the
/// subscriber under test, not the live publisher) and in the private
/// broker (unknown with `--broker`).
#[derive(Debug, Clone, Default)]
struct CpuUse {
    ours: Option<u64>,
    broker: Option<u64>,
    /// Of `ours`, by thread name (threads that ended in the window left).
    threads: Vec<(String, u64)>,
    /// For gapless: `ours` until everything was sealed and the service
    /// stopped (the window above ends at the last ack).
    until_sealed: Option<u64>,
}

/// Starts measuring a run's CPU time; call the result to stop.
fn cpu_window(broker: Option<u32>) -> impl Fn() -> CpuUse {
    let ours = cpu_by_thread(std::process::id());
    let theirs = broker.and_then(cpu_ns);
    move || {
        let now = cpu_by_thread(std::process::id());
        let threads = match (&ours, &now) {
            (Some(a), Some(b)) => b
                .iter()
                .map(|(k, v)| (k.clone(), v.saturating_sub(a.get(k).copied().unwrap_or(0))))
                .filter(|(_, v)| *v > 0)
                .collect(),
            _ => Vec::new(),
        };
        CpuUse {
            ours: ours
                .as_ref()
                .zip(now.as_ref())
                .map(|(a, b)| b.values().sum::<u64>().saturating_sub(a.values().sum())),
            broker: theirs
                .zip(broker.and_then(cpu_ns))
                .map(|(a, b)| b.saturating_sub(a)),
            threads,
            until_sealed: None,
        }
    }
}

/// N native messages of `k` readings each, all distinct.
/// The messages of one run, shared (not copied) by the publishers.
type Payloads = Arc<Vec<Bytes>>;

fn make_payloads(n: usize, k: usize, run: &str) -> Payloads {
    let base = 1_658_707_200i64; // 2022-07-25T00:00:00Z
    (0..n)
        .map(|i| {
            let meter = format!("B{run}-{:05}", i % 10_000);
            let mut s = String::with_capacity(k * 140 + 2);
            if k > 1 {
                s.push('[');
            }
            for j in 0..k {
                if j > 0 {
                    s.push(',');
                }
                let slot = (i / 10_000) * k + j;
                let ts = chrono::DateTime::from_timestamp(base + slot as i64 * 900, 0)
                    .unwrap_or_default()
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
                s.push_str(&format!(
                    r#"{{"meter_id":"{meter}","medium":"water","register":"total","unit":"m3","value":"{}.{:03}","ts":"{ts}","seq":{}}}"#,
                    slot,
                    i % 1000,
                    slot % 256
                ));
            }
            if k > 1 {
                s.push(']');
            }
            Bytes::from(s.into_bytes())
        })
        .collect::<Vec<_>>()
        .into()
}

/// A run's messages with some made hostile, and how many.
struct WithHostile {
    payloads: Payloads,
    count: u64,
}

/// Replaces `percent` % of the messages, spread evenly (never the first),
/// with hostile ones of about the same size, each class in turn.
fn make_hostile(clean: &Payloads, percent: f64) -> WithHostile {
    if percent <= 0.0 {
        return WithHostile {
            payloads: clean.clone(),
            count: 0,
        };
    }
    let stride = (100.0 / percent.min(100.0)).max(1.0);
    let mut out: Vec<Bytes> = clean.to_vec();
    let mut count = 0u64;
    let mut next = stride;
    while (next as usize) < out.len() {
        let i = next as usize;
        out[i] = hostile_payload(count as usize, out[i].len());
        count += 1;
        next += stride;
    }
    WithHostile {
        payloads: out.into(),
        count,
    }
}

/// Hostile message number `n` of about `len` bytes.
fn hostile_payload(n: usize, len: usize) -> Bytes {
    let ts = "2022-07-25T00:00:00Z";
    let value = |v: &str| {
        format!(
            r#"{{"meter_id":"HOSTILE-{n}","medium":"water","unit":"m3","value":{v},"ts":"{ts}"}}"#
        )
    };
    let depth = (len / 2).clamp(200, 10_000);
    let p = match n % 5 {
        0 => value("0e200000000").into_bytes(),
        1 => format!("{}{}", "[".repeat(depth), "]".repeat(depth)).into_bytes(),
        2 => {
            let mut p = value("1").into_bytes();
            p[14] = 0xff;
            p
        }
        3 => value("1").into_bytes()[..len.clamp(10, 60)].to_vec(),
        _ => value(&"9".repeat(len.clamp(50, 10_000))).into_bytes(),
    };
    Bytes::from(p)
}

fn topic_filter(run: &str, who: &str) -> String {
    format!("bench/{run}/{who}/#")
}

/// Creates a persistent session subscribed to `filter`, then leaves it.
async fn register_session(
    host: &str,
    port: u16,
    client_id: &str,
    filter: &str,
) -> anyhow::Result<()> {
    let mut o = MqttOptions::new(client_id, host, port);
    o.set_clean_session(false);
    let (client, mut ev) = AsyncClient::new(o, 16);
    client.subscribe(filter, QoS::AtLeastOnce).await?;
    loop {
        match ev.poll().await.context("registering session")? {
            Event::Incoming(Packet::SubAck(_)) => break,
            _ => continue,
        }
    }
    client.disconnect().await?;
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while ev.poll().await.is_ok() {}
    })
    .await;
    Ok(())
}

/// Publishes every payload at QoS 1 and waits for every PUBACK.
async fn preload(host: &str, port: u16, topic: &str, payloads: &Payloads) -> anyhow::Result<()> {
    let mut o = MqttOptions::new(format!("bench-pub-{}", std::process::id()), host, port);
    o.set_inflight(1000).set_max_packet_size(1 << 26, 1 << 26);
    let (client, mut ev) = AsyncClient::new(o, 4096);
    let to_send = payloads.clone();
    let topic = topic.to_string();
    let sender = tokio::spawn(async move {
        for p in to_send.iter() {
            client
                .publish_bytes(topic.clone(), QoS::AtLeastOnce, false, p.clone())
                .await?;
        }
        anyhow::Ok(client)
    });
    let mut acked = 0;
    while acked < payloads.len() {
        if let Event::Incoming(Packet::PubAck(_)) = ev.poll().await.context("preloading broker")? {
            acked += 1;
        }
    }
    let client = sender.await??;
    client.disconnect().await?;
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while ev.poll().await.is_ok() {}
    })
    .await;
    Ok(())
}

/// Publishes in a thread of its own (its own runtime, so it does not take
/// turns with the subscriber under test).
fn publish_in_background(
    host: &str,
    port: u16,
    topic: String,
    payloads: &Payloads,
) -> anyhow::Result<std::thread::JoinHandle<anyhow::Result<()>>> {
    let host = host.to_string();
    let payloads = payloads.clone();
    let thread = std::thread::Builder::new()
        .name(PUBLISHER_THREAD.into())
        .spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(preload(&host, port, &topic, &payloads))
        })?;
    Ok(thread)
}

/// What every run of a case shares: the mode, and the broker (its process,
/// when it is the private one).
#[derive(Debug, Clone)]
struct Case {
    mode: Mode,
    host: String,
    port: u16,
    broker_pid: Option<u32>,
}

/// Runs a subscriber's run as a task on the runtime's workers, as `serve`
/// runs its MQTT task, so that both subscribers run alike (not one of them
/// on the thread that blocks on it).
fn on_workers<T: Send + 'static>(
    rt: &tokio::runtime::Runtime,
    run: impl std::future::Future<Output = anyhow::Result<T>> + Send + 'static,
) -> anyhow::Result<T> {
    rt.block_on(rt.spawn(run))?
}

/// A subscriber's persistent session for one run.
struct Session {
    client_id: String,
    filter: String,
    /// Where the run's messages are published.
    topic: String,
}

impl Case {
    /// Registers subscriber `who`'s session for `run` and, in backlog mode,
    /// has the broker queue every payload for it.
    async fn session(&self, who: &str, run: &str, payloads: &Payloads) -> anyhow::Result<Session> {
        let s = Session {
            client_id: format!("bench-{who}-{run}"),
            filter: topic_filter(run, who),
            topic: format!("bench/{run}/{who}/x"),
        };
        register_session(&self.host, self.port, &s.client_id, &s.filter).await?;
        if self.mode == Mode::Backlog {
            preload(&self.host, self.port, &s.topic, payloads).await?;
        }
        Ok(s)
    }
}

async fn bare_run(case: Case, run: String, payloads: Payloads) -> anyhow::Result<(Drain, CpuUse)> {
    let Session {
        client_id: id,
        topic,
        ..
    } = case.session("bare", &run, &payloads).await?;
    let (mode, host, port) = (case.mode, case.host.as_str(), case.port);
    let mut o = MqttOptions::new(&id, host, port);
    o.set_clean_session(false)
        .set_max_packet_size(1 << 26, 1 << 26);
    let start = Instant::now();
    let cpu = cpu_window(case.broker_pid);
    let (client, mut ev) = AsyncClient::new(o, 4096);
    let publisher = (mode == Mode::Live)
        .then(|| publish_in_background(host, port, topic, &payloads))
        .transpose()?;
    let mut got = 0;
    let mut first = None;
    while got < payloads.len() {
        if let Event::Incoming(Packet::Publish(_)) = ev.poll().await.context("bare subscriber")? {
            first.get_or_insert_with(Instant::now);
            got += 1;
        }
    }
    // rumqttc wrote and flushed the last ack in the read that returned the
    // last publish; this poll takes its queued event.
    let _ = tokio::time::timeout(Duration::from_millis(200), ev.poll()).await;
    let elapsed = Drain {
        total: start.elapsed(),
        flowing: first.map_or(Duration::ZERO, |f| f.elapsed()),
    };
    let cpu = cpu();
    client.disconnect().await?;
    if let Some(p) = publisher {
        p.join()
            .map_err(|_| anyhow::anyhow!("publisher panicked"))??;
    }
    Ok((elapsed, cpu))
}

async fn gapless_run(
    case: Case,
    run: String,
    payloads: Payloads,
    hostile: u64,
    data: PathBuf,
    ledger: bool,
) -> anyhow::Result<(Drain, Duration, CpuUse)> {
    let Session {
        client_id: id,
        filter,
        topic,
    } = case.session("gapless", &run, &payloads).await?;
    let (mode, host, port) = (case.mode, case.host.as_str(), case.port);
    let settings = ServeSettings::resolve(
        ServeFlags {
            broker: Some(format!("mqtt://{host}:{port}")),
            topics: vec![filter],
            client_id: Some(id),
            data: Some(data),
            // A scratch directory of the benchmark's own.
            audit_key_in_data: true,
            ..Default::default()
        },
        None,
    )?;
    let mut settings = settings;
    settings.store.ledger = ledger;
    let state = Arc::new(ConnectionState::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let start = Instant::now();
    let cpu = cpu_window(case.broker_pid);
    let cpu_all = cpu_window(case.broker_pid);
    let service = tokio::spawn(service::serve_with_state(settings, stop_rx, state.clone()));
    let publisher = (mode == Mode::Live)
        .then(|| publish_in_background(host, port, topic, &payloads))
        .transpose()?;
    let n = payloads.len() as u64;
    let mut first = None;
    while state.acked.load(Ordering::Relaxed) < n {
        if service.is_finished() {
            service.await??;
            bail!("gapless stopped before acking every message");
        }
        if first.is_none() && state.delivered.load(Ordering::Relaxed) > 0 {
            first = Some(Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let acked = Drain {
        total: start.elapsed(),
        // Seen within a millisecond of the first delivery.
        flowing: first.map_or(Duration::ZERO, |f| f.elapsed()),
    };
    let cpu = cpu();
    if let Some(p) = publisher {
        p.join()
            .map_err(|_| anyhow::anyhow!("publisher panicked"))??;
    }
    let _ = stop_tx.send(true);
    let report = service.await??;
    let sealed = start.elapsed();
    // Everything the service took, its start and the sealing included.
    let all = cpu_all();
    // The first message is never hostile (see `make_hostile`).
    let expected = (payloads.len() as u64 - hostile) * count_readings(&payloads[0]);
    if report.totals.readings_stored != expected || report.totals.rejected != hostile {
        bail!(
            "gapless stored {} readings and rejected {} messages, expected {expected} and {hostile}",
            report.totals.readings_stored,
            report.totals.rejected,
        );
    }
    Ok((
        acked,
        sealed,
        CpuUse {
            until_sealed: all.ours,
            ..cpu
        },
    ))
}

fn count_readings(p: &[u8]) -> u64 {
    p.windows(10).filter(|w| w == b"\"meter_id\"").count() as u64
}
