//! `gapless bench alerts`: the alert engine with a million meters.
//!
//! 1. Memory: RSS before and after tracking `--meters` meters (12-character
//!    ids, 15-minute interval, phases spread over the interval), and the
//!    bytes the engine holds.
//! 2. Deadline checks when nothing is due: the cost of one `tick`, and what
//!    the store's 10 checks a second cost as a share of one core.
//! 3. Steady state: an hour of simulated time in which every meter reports
//!    every 15 minutes and the deadlines are checked every 100 ms: the time
//!    spent in `tick` (entries coming due and pushed again at the meters'
//!    new deadlines) per simulated second, against one core.
//! 4. Latency: some meters stop; with checks every 100 ms of simulated
//!    time, how long after its deadline each is raised (the engine's part:
//!    the seal and the sinks add their own; `tests/alerts` measures the whole
//!    path through the real broker).

use std::time::{Duration, Instant};

use super::rss_bytes;
use crate::alerts::engine::AlertEngine;
use crate::alerts::{AlertConfig, AlertKind};
use crate::continuity::{Context, SECOND};
use crate::reading::Medium;

/// The store checks deadlines this often (`service::STORE_TICK`).
const CHECK_EVERY: i64 = 100_000; // µs
const INTERVAL: i64 = 900 * SECOND;

pub fn run(args: &crate::cli::BenchAlertsArgs) -> anyhow::Result<()> {
    let n = args.meters.max(1);
    let t0: i64 = 1_658_707_200 * SECOND;
    let mut ctx = Context::default();
    ctx.config.intervals_s.insert(Medium::Heat, 900);
    let cfg = AlertConfig {
        startup_grace_s: 0,
        ..AlertConfig::default()
    };
    let ids: Vec<String> = (0..n).map(|i| format!("HZ-{i:09}")).collect();
    // Meter i reports at t0 + phase(i) + k × 15 min; 100 meters per topic
    // group (a gateway each).
    let phase = |i: usize| (i as i64 * INTERVAL) / n as i64;
    let groups: Vec<String> = (0..n.div_ceil(100))
        .map(|g| format!("meters/gw-{g:05}"))
        .collect();

    let before = rss_bytes()?;
    let start = Instant::now();
    let mut e = AlertEngine::new(cfg, ctx);
    for (i, id) in ids.iter().enumerate() {
        let ts = t0 + phase(i);
        e.reading(id, Medium::Heat, false, ts, Some(&groups[i / 100]), ts);
    }
    let fill = start.elapsed();
    let after = rss_bytes()?;
    println!("bench alerts: {n} meters (12-character ids), 15-minute interval, alert after 45 min, groups of 100");
    println!(
        "  memory: RSS {:.1} MiB -> {:.1} MiB: {:.1} bytes per meter; held by the engine: {:.1} bytes per meter ({:.0} first readings/s)",
        before as f64 / 1048576.0,
        after as f64 / 1048576.0,
        after.saturating_sub(before) as f64 / n as f64,
        e.heap_bytes() as f64 / n as f64,
        n as f64 / fill.as_secs_f64()
    );

    // 2. Nothing due: the top of the heap is 45 minutes away.
    let now = t0 + INTERVAL;
    let checks = 2_000_000u32;
    let start = Instant::now();
    for k in 0..checks {
        e.tick(now + k as i64);
    }
    let per = start.elapsed().as_secs_f64() / checks as f64;
    anyhow::ensure!(!e.has_pending(), "nothing should be due");
    println!(
        "  a check with nothing due: {:.1} ns; 10 checks a second = {:.6} % of one core",
        per * 1e9,
        per * 10.0 * 100.0
    );

    // 3. Steady state: an hour of readings and checks.
    let hour = 3_600 * SECOND;
    let mut fleet = Fleet {
        ids: &ids,
        groups: &groups,
        phase: &phase,
        t0,
        next: vec![1; n],
        cursor: 0,
        stop: vec![false; n],
    };
    let (mut in_tick, mut in_reading) = (Duration::ZERO, Duration::ZERO);
    let mut t = t0 + INTERVAL;
    let end = t + hour;
    let mut readings = 0u64;
    while t < end {
        let r0 = Instant::now();
        readings += fleet.report_until(&mut e, t);
        in_reading += r0.elapsed();
        let c0 = Instant::now();
        e.tick(t);
        in_tick += c0.elapsed();
        t += CHECK_EVERY;
    }
    anyhow::ensure!(
        !e.has_pending(),
        "no meter should be silent in steady state"
    );
    println!(
        "  steady state, 1 simulated hour ({readings} readings, 36,000 checks): checks {:.3} s = {:.4} % of one core; readings {:.2} s",
        in_tick.as_secs_f64(),
        in_tick.as_secs_f64() / 3_600.0 * 100.0,
        in_reading.as_secs_f64()
    );

    // 4. Latency: 1,000 meters in different groups stop after their last
    //    reading; everyone else goes on.
    let stopped: Vec<usize> = (0..1_000).map(|k| (k * 997 + 13) % n).collect();
    for &i in &stopped {
        fleet.stop[i] = true;
    }
    let last: Vec<i64> = (0..n)
        .map(|i| t0 + phase(i) + (fleet.next[i] - 1) * INTERVAL)
        .collect();
    let mut lateness: Vec<i64> = Vec::new();
    let end = t + hour;
    let mut worst_tick = Duration::ZERO;
    while t < end {
        fleet.report_until(&mut e, t);
        let c0 = Instant::now();
        e.tick(t);
        worst_tick = worst_tick.max(c0.elapsed());
        for a in e.take() {
            anyhow::ensure!(a.kind == AlertKind::MeterSilent, "unexpected {a:?}");
            let i: usize = a.subject[3..].parse()?;
            lateness.push(a.raised_at - (last[i] + 3 * INTERVAL));
        }
        t += CHECK_EVERY;
    }
    anyhow::ensure!(
        lateness.len() == stopped.len(),
        "{} of {} stopped meters raised",
        lateness.len(),
        stopped.len()
    );
    lateness.sort_unstable();
    println!(
        "  latency: {} stopped meters each raised once, {:.0} ms after its deadline at most (median {:.0} ms; checks every {} ms of the clock); slowest check {:.2} ms",
        lateness.len(),
        *lateness.last().unwrap_or(&0) as f64 / 1e3,
        lateness[lateness.len() / 2] as f64 / 1e3,
        CHECK_EVERY / 1_000,
        worst_tick.as_secs_f64() * 1e3
    );
    drop(ids);
    Ok(())
}

/// The simulated fleet: meter `i` reports at `t0 + phase(i) + k × 15 min`,
/// so its readings come due in meter order, round after round.
struct Fleet<'a, P: Fn(usize) -> i64> {
    ids: &'a [String],
    groups: &'a [String],
    phase: &'a P,
    t0: i64,
    /// Each meter's next round.
    next: Vec<i64>,
    /// The meter whose reading comes due next.
    cursor: usize,
    /// Meters that no longer report.
    stop: Vec<bool>,
}

impl<P: Fn(usize) -> i64> Fleet<'_, P> {
    /// Delivers every reading due by `t`; returns how many were delivered.
    fn report_until(&mut self, e: &mut AlertEngine, t: i64) -> u64 {
        let n = self.ids.len();
        let mut delivered = 0;
        for _ in 0..n {
            let i = self.cursor;
            let due = self.t0 + (self.phase)(i) + self.next[i] * INTERVAL;
            if due > t {
                break;
            }
            if !self.stop[i] {
                let group = Some(self.groups[i / 100].as_str());
                e.reading(&self.ids[i], Medium::Heat, false, due, group, due);
                delivered += 1;
            }
            self.next[i] += 1;
            self.cursor = (self.cursor + 1) % n;
        }
        delivered
    }
}
