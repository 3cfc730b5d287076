//! `gapless demo`: the whole pipeline on a simulated fleet, on a fresh
//! machine with nothing installed.
//!
//! An in-process MQTT broker ([`broker`]; `--broker` uses an external one),
//! a simulated fleet of about 10,000 meters over four days with an outage
//! on the third ([`fleet`]), the real service ([`crate::service::serve`]) on a
//! manual clock that follows the simulation (so forwarded buffers are
//! really late), then the outage-window report over the sealed Parquet;
//! with `--serve`, the API and dashboard on that data ([`serve`]).

pub mod broker;
pub mod fleet;
mod serve;
mod witnessed;

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

use crate::cli::DemoArgs;
use crate::config::{ServeFlags, ServeSettings};
use crate::continuity::registry::Registry;
use crate::continuity::window::Window;
use crate::continuity::ContinuityConfig;
use crate::mqtt::parse_broker;
use crate::mqtt::ConnectionState;
use crate::report::{self, ReportFilter, StoredReadings};
use crate::time::parse_time;
use crate::time::Clock;
use fleet::{Fleet, TICK};

/// The simulated period and its outage window (July 2022, when ransomware
/// took a sub-metering company offline for weeks).
const SIM_START: &str = "2022-07-21T00:00:00Z";
const SIM_END: &str = "2022-07-25T00:00:00Z";
const OUTAGE_FROM: &str = "2022-07-23T00:00:00Z";
const OUTAGE_TO: &str = "2022-07-24T00:00:00Z";
/// Registry meters that were installed but never sent a telegram.
const NEVER_HEARD: usize = 3;

/// Runs the demo. Ok(true) when every published reading was stored exactly
/// once and the counters balance.
pub fn run(args: DemoArgs) -> anyhow::Result<bool> {
    prepare_dir(&args.data)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(run_async(args))
}

/// The demo's directory is emptied first, but only if it is one gapless
/// made (or empty): never a directory of someone else's files.
fn prepare_dir(dir: &Path) -> anyhow::Result<()> {
    if dir.exists() {
        let is_ours = dir.join(crate::layout::STATE_DIR).exists();
        let is_empty = std::fs::read_dir(dir)?.next().is_none();
        anyhow::ensure!(
            is_ours || is_empty,
            "{} exists and is not a gapless data directory: refusing to empty it (choose --data)",
            dir.display()
        );
        std::fs::remove_dir_all(dir).with_context(|| format!("emptying {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(())
}

async fn run_async(args: DemoArgs) -> anyhow::Result<bool> {
    let t0 = Instant::now();
    // Bound before the run: a port in use fails now, not after it.
    let listener = match args.serve {
        true => Some(serve::bind(args.http.as_deref().unwrap_or(serve::DEFAULT_HTTP)).await?),
        false => None,
    };
    let start = parse_time(SIM_START).map_err(anyhow::Error::msg)?;
    let end = parse_time(SIM_END).map_err(anyhow::Error::msg)?;
    let outage = Window {
        from: parse_time(OUTAGE_FROM).map_err(anyhow::Error::msg)?,
        to: parse_time(OUTAGE_TO).map_err(anyhow::Error::msg)?,
    };

    let (_broker, url) = match &args.broker {
        Some(url) => (None, url.clone()),
        None => {
            let b = broker::Broker::start(([127, 0, 0, 1], 0).into())
                .await
                .context("starting the in-process broker")?;
            let url = format!("mqtt://{}", b.local_addr());
            (Some(b), url)
        }
    };
    let b = parse_broker(&url)?;
    eprintln!(
        "demo: broker {url}{}; data in {}",
        if args.broker.is_some() {
            ""
        } else {
            " (in-process)"
        },
        args.data.display()
    );

    let mut fleet = Fleet::new(args.meters, args.seed, start, outage);
    let registry_path = args.data.join("registry.csv");
    std::fs::write(&registry_path, fleet.registry_csv(NEVER_HEARD))?;

    // The service, on a clock that follows the simulation.
    let (clock, clock_handle) = Clock::manual(start);
    let run_id = format!("{}-{}", std::process::id(), args.seed);
    let mut settings = ServeSettings::resolve(
        ServeFlags {
            broker: Some(url.clone()),
            topics: vec!["meters/#".into()],
            data: Some(args.data.clone()),
            client_id: Some(format!("gapless-demo-{run_id}")),
            seal_max_age_s: Some(1.0),
            registry: Some(registry_path.clone()),
            // A demo's key may sit with its data (never in production).
            audit_key_in_data: true,
            ..ServeFlags::default()
        },
        None,
    )?;
    settings.mqtt.clock = clock.clone();
    let witness = witnessed::start(&args.data).await?;
    settings.witnesses = vec![witness.target.clone()];
    let state = Arc::new(ConnectionState::default());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let service = tokio::spawn(crate::service::serve_with_state(
        settings,
        stop_rx,
        state.clone(),
    ));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !state.connected.load(Ordering::Relaxed) {
        anyhow::ensure!(
            Instant::now() < deadline && !service.is_finished(),
            "gapless did not connect to {url}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The gateways, publishing at QoS 1 and counting the broker's PUBACKs.
    let mut o = MqttOptions::new(format!("demo-gateways-{run_id}"), b.host, b.port);
    o.set_inflight(500).set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut ev) = AsyncClient::new(o, 1024);
    let acked = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let acks = acked.clone();
    let poller = tokio::spawn(async move {
        loop {
            match ev.poll().await {
                Ok(Event::Incoming(Packet::PubAck(_))) => {
                    acks.fetch_add(1, Ordering::Relaxed);
                }
                Ok(_) => {}
                Err(e) => return e,
            }
        }
    });

    let (mut messages, mut readings) = (0u64, 0u64);
    let mut t = start + TICK;
    let mut last_report = start;
    eprintln!(
        "demo: simulating {} meters on {} gateways, {SIM_START} .. {SIM_END}, outage {OUTAGE_FROM} .. {OUTAGE_TO}",
        fleet.scenario.meters, fleet.scenario.gateways
    );
    while t <= end {
        for m in fleet.tick(t) {
            clock_handle.store(m.at, Ordering::Relaxed);
            client
                .publish(m.topic, QoS::AtLeastOnce, false, m.payload)
                .await
                .context("publishing")?;
            messages += 1;
            readings += m.readings as u64;
        }
        // Let gapless take this quarter hour before the clock moves on, so
        // every message is stamped with the time it "arrived".
        let deadline = Instant::now() + Duration::from_secs(60);
        while state.acked.load(Ordering::Relaxed) < messages {
            anyhow::ensure!(
                Instant::now() < deadline && !service.is_finished() && !poller.is_finished(),
                "gapless stopped taking messages ({} of {messages} acknowledged)",
                state.acked.load(Ordering::Relaxed)
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        if t - last_report >= 12 * 3600 * 1_000_000 || t == end {
            last_report = t;
            eprintln!(
                "demo: {}  published {messages} messages ({readings} readings), gapless acked {}",
                crate::time::format_micros(t),
                state.acked.load(Ordering::Relaxed)
            );
        }
        t += TICK;
    }
    // Every message accepted by the broker, then delivered to gapless.
    let deadline = Instant::now() + Duration::from_secs(120);
    while acked.load(Ordering::Relaxed) < messages || state.acked.load(Ordering::Relaxed) < messages
    {
        anyhow::ensure!(
            Instant::now() < deadline && !poller.is_finished() && !service.is_finished(),
            "waiting for delivery: broker acked {}, gapless acked {} of {messages} messages",
            acked.load(Ordering::Relaxed),
            state.acked.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = client.disconnect().await;
    poller.abort();
    let _ = stop_tx.send(true);
    let served = service.await.context("the service task")??;
    let ingest_s = t0.elapsed().as_secs_f64();
    let totals = served.totals;
    eprintln!(
        "demo: ingested {} messages in {ingest_s:.1} s: {} stored, {} duplicate, {} rejected; {} readings stored (published {readings}); {}",
        totals.delivered,
        totals.stored,
        totals.duplicate,
        totals.rejected,
        totals.readings_stored,
        if totals.is_balanced() { "counters balance" } else { "COUNTERS DO NOT BALANCE" }
    );
    let complete = totals.is_balanced() && totals.readings_stored == readings;

    // The report, over what was sealed.
    let ctx = crate::continuity::Context {
        config: ContinuityConfig::default(),
        registry: Arc::new(Registry::load(&registry_path)?),
    };
    let stored = StoredReadings::load(&args.data)?;
    let rep = report::outage_report(&stored, &ctx, outage, &ReportFilter::default())?;
    let now = crate::time::now_micros();
    let written = report::write_report_parquet(&args.data, &rep, None, now, None)?;
    let s = &fleet.scenario;
    println!(
        "\nSimulated: {} meters on {} gateways; in the outage {} gateways buffered and forwarded late, {} lost what they heard, {} died; {} meters died; {} register went backwards ({}); {} telegrams lost by radio.\n",
        s.meters,
        s.gateways,
        s.buffering_gateways,
        s.lossy_gateways,
        s.dead_gateways,
        s.meters_dying,
        usize::from(s.glitching_meter.is_some()),
        s.glitching_meter.as_deref().unwrap_or("-"),
        s.radio_losses
    );
    print!("{}", report::report_table(&rep));
    let data = args.data.display();
    println!("\nReport written to {}", written[0].display());
    // What device teams were told while it ran.
    let told = crate::alerts::table::read_told(&args.data).map_err(anyhow::Error::msg)?;
    let mut by_kind: std::collections::BTreeMap<&str, usize> = Default::default();
    for t in &told {
        *by_kind.entry(t.alert.kind.as_str()).or_default() += 1;
    }
    let kinds: Vec<String> = by_kind.iter().map(|(k, n)| format!("{n} {k}")).collect();
    println!(
        "Alerts sealed and sent on MQTT (gapless/alerts/#): {}",
        if kinds.is_empty() {
            "none".to_string()
        } else {
            kinds.join(", ")
        }
    );
    println!(
        "Ingest {ingest_s:.1} s, report {:.1} s. Next:\n  gapless alerts --data {data} --open\n  gapless report --data {data} --registry {data}/registry.csv --from {} --to {} --format json\n  gapless gaps --data {data} --open --to {SIM_END}\n  gapless report --data {data} --registry {data}/registry.csv --from {} --to {} --format html --group {} > certificate.html\n  duckdb -c \"SELECT status, medium, count(*) FROM '{data}/reports/*.parquet' GROUP BY ALL\"",
        t0.elapsed().as_secs_f64() - ingest_s,
        &OUTAGE_FROM[..10],
        &OUTAGE_TO[..10],
        &OUTAGE_FROM[..10],
        &OUTAGE_TO[..10],
        fleet.example_group(),
    );
    witness.finish(&args.data).await?;
    if !complete {
        eprintln!("demo: not every published reading was stored exactly once");
    }
    if let Some(listener) = listener {
        serve::serve(
            listener,
            &args.data,
            ctx,
            clock,
            outage,
            &fleet.example_group(),
        )
        .await?;
    }
    Ok(complete)
}
