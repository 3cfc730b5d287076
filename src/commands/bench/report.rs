//! `gapless bench report`: the batch outage report over stored readings
//! against DuckDB's `LAG() OVER (PARTITION BY meter ORDER BY ts)` gap query,
//! on the same Parquet files, in the same run, with the gap counts compared.
//!
//! The data set is made once (and kept in `--data`) by the real store: JSON
//! messages of 50 readings (one gateway's quarter hour) ingested and sealed
//! every 500,000 rows, as `gapless serve` would write them, with about
//! 0.5 % of readings lost (gaps) and 0.1 % of messages arriving a day late
//! (so later files hold older readings).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

use crate::cli::BenchReportArgs;
use crate::commands::demo::fleet::Rng;
use crate::continuity::window::Window;
use crate::continuity::{Context, ContinuityConfig};
use crate::ingest::IngestConfig;
use crate::journal::JournalRecord;
use crate::reading::Medium;
use crate::report::{self, ReportFilter, StoredReadings};
use crate::service::Pipeline;
use crate::store::StoreConfig;

const T0: i64 = 1_656_633_600_000_000; // 2022-07-01T00:00:00Z
const PER_MESSAGE: usize = 50;

pub fn run(args: &BenchReportArgs) -> anyhow::Result<()> {
    if args.ledger_cost || args.late_cost.is_some() {
        return ledger_cost(args);
    }
    let has_data = crate::store::commit::read_all(&args.data)
        .map(|m| !m.is_empty())
        .unwrap_or(false);
    if !has_data {
        generate(args)?;
    }
    let python = python_with_duckdb(args)?;
    let ctx = bench_context(args);
    let files = args.data.join("readings/**/*.parquet");

    // gapless: load, scan, every rule, over the whole range.
    let mut ours = Vec::new();
    let mut our_gaps = 0;
    let mut rows = 0;
    for _ in 0..args.repeat.max(1) {
        let t = Instant::now();
        let stored = StoredReadings::load(&args.data)?;
        let (from, to) = stored.time_range().context("no readings")?;
        let rep = report::outage_report(
            &stored,
            &ctx,
            Window { from, to: to + 1 },
            &ReportFilter::default(),
        )?;
        ours.push(t.elapsed());
        our_gaps = rep.meters.iter().map(|r| r.gaps).sum::<u64>();
        rows = stored.len();
    }

    // DuckDB: the same files, the gap query alone.
    let script = format!(
        r#"
import duckdb, sys, time
con = duckdb.connect()
con.execute("SET threads = 2")
con.execute("SET enable_progress_bar = false")
q = """SELECT count(*) FROM (
  SELECT epoch_us(ts) - LAG(epoch_us(ts)) OVER (PARTITION BY meter_id, register ORDER BY ts) AS dt
  FROM read_parquet('{files}') WHERE kind = 'measured' AND NOT conflict
) WHERE dt > {threshold}"""
for _ in range({repeat}):
    t = time.perf_counter()
    n = con.execute(q).fetchone()[0]
    print(n, time.perf_counter() - t, flush=True)
"#,
        files = files.display(),
        threshold = interval(args) * 3 / 2,
        repeat = args.repeat.max(1),
    );
    let out = Command::new(&python)
        .args(["-c", &script])
        .output()
        .with_context(|| format!("running {}", python.display()))?;
    if !out.status.success() {
        bail!("duckdb: {}", String::from_utf8_lossy(&out.stderr));
    }
    let mut theirs = Vec::new();
    let mut duck_gaps = 0;
    for line in String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with(|c: char| c.is_ascii_digit()))
    {
        let mut it = line.split_whitespace();
        duck_gaps = it.next().context("duckdb output")?.parse::<u64>()?;
        theirs.push(Duration::from_secs_f64(
            it.next().context("duckdb output")?.parse()?,
        ));
    }
    let (a, b) = (median(&mut ours), median(&mut theirs));
    println!(
        "bench report: {rows} readings in {} (gapless: load, every rule, report; DuckDB: LAG gap query, 2 threads)",
        args.data.display()
    );
    println!(
        "  gapless {:>7.2} s  ({:.1} M readings/s)  gaps {our_gaps}",
        a.as_secs_f64(),
        rows as f64 / a.as_secs_f64() / 1e6
    );
    println!(
        "  DuckDB  {:>7.2} s  ({:.1} M readings/s)  gaps {duck_gaps}",
        b.as_secs_f64(),
        rows as f64 / b.as_secs_f64() / 1e6
    );
    println!(
        "  speed-up {:.2}x (median of {}), gap counts {}",
        b.as_secs_f64() / a.as_secs_f64(),
        args.repeat.max(1),
        if our_gaps == duck_gaps {
            "identical"
        } else {
            "DIFFER"
        }
    );
    if our_gaps != duck_gaps {
        bail!("gap counts differ: gapless {our_gaps}, DuckDB {duck_gaps}");
    }
    Ok(())
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Every meter a 15-minute heat meter, as the registry would say.
/// µs between a meter's readings.
fn interval(args: &BenchReportArgs) -> i64 {
    i64::from(args.interval_minutes.max(1)) * 60_000_000
}

fn bench_context(args: &BenchReportArgs) -> Context {
    let mut config = ContinuityConfig::default();
    config
        .intervals_s
        .insert(Medium::Heat, u64::from(args.interval_minutes.max(1)) * 60);
    Context {
        config,
        registry: Arc::default(),
    }
}

/// The store's throughput with and without the audit ledger, alternating,
/// on the same generated messages.
fn ledger_cost(args: &BenchReportArgs) -> anyhow::Result<()> {
    let mut rates: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    // CPU time (all threads, user + system) per reading: the work done,
    // which the machine's run-to-run noise in wall time does not hide.
    let mut cpu: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    let late = args.late_cost.unwrap_or(0.0);
    let (what, a_name, b_name) = match args.late_cost {
        Some(p) => (
            "late duplicates",
            format!("{p} % late"),
            "none late  ".to_string(),
        ),
        None => ("ledger", "with    ledger".into(), "without ledger".into()),
    };
    for run in 0..args.repeat.max(1) * 2 {
        let first = run % 2 == 0;
        let with_ledger = first || args.late_cost.is_some();
        let dir = tempfile::tempdir_in(std::env::temp_dir())?;
        let one = BenchReportArgs {
            data: dir.path().join("data"),
            python: None,
            repeat: 1,
            ledger_cost: false,
            late_cost: None,
            late_percent: if first { late } else { 0.0 },
            readings: args.readings,
            meters: args.meters,
            interval_minutes: args.interval_minutes,
        };
        let (t, c) = (Instant::now(), cpu_seconds());
        let readings = ingest_all(&one, with_ledger, false)?;
        let rate = readings as f64 / t.elapsed().as_secs_f64();
        let us = (cpu_seconds() - c) * 1e6 / readings.max(1) as f64;
        rates[usize::from(!first)].push(rate);
        cpu[usize::from(!first)].push(us);
        println!(
            "  {}: {readings} readings decoded, deduplicated, judged and sealed at {:.0} readings/s, {us:.2} µs of CPU each",
            if first { &a_name } else { &b_name },
            rate
        );
    }
    let med = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (a, b) = (med(&mut rates[0]), med(&mut rates[1]));
    let (ca, cb) = (med(&mut cpu[0]), med(&mut cpu[1]));
    println!(
        "bench report: the {what} cost {:.1} % of the store's throughput (medians {:.0} vs {:.0} readings/s) and {:.1} % more CPU per reading (medians {ca:.2} vs {cb:.2} µs)",
        (1.0 - a / b) * 100.0,
        a,
        b,
        (ca / cb - 1.0) * 100.0,
    );
    Ok(())
}

/// CPU time this process has used (user + system, all threads), seconds.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage writes one plain struct that we own.
    #[allow(unsafe_code)]
    let u = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut u);
        u
    };
    let t = |v: libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 / 1e6;
    t(u.ru_utime) + t(u.ru_stime)
}

/// Ingests the synthetic fleet through the real store.
fn generate(args: &BenchReportArgs) -> anyhow::Result<()> {
    ingest_all(args, true, true).map(|_| ())
}

/// Ingests the synthetic fleet through the real store; returns the readings
/// taken in (stored, or counted as duplicates).
fn ingest_all(args: &BenchReportArgs, ledger: bool, verbose: bool) -> anyhow::Result<u64> {
    let meters = args.meters.max(PER_MESSAGE);
    let ticks = args.readings.div_ceil(meters);
    if verbose {
        eprintln!(
            "bench report: generating {meters} meters x {ticks} readings {} min apart into {} (once)",
            args.interval_minutes.max(1),
            args.data.display()
        );
    }
    let mut store = Pipeline::open(
        StoreConfig {
            ledger,
            ..StoreConfig::new(&args.data)
        },
        IngestConfig {
            seal_max_age: Duration::from_secs(1 << 30),
            continuity: bench_context(args),
            ..IngestConfig::historic(500_000)
        },
    )?;
    let ids: Vec<String> = (0..meters).map(|i| format!("HZ-{i:09}")).collect();
    let per_day = (86_400_000_000 / interval(args)).max(1) as usize;
    let mut rng = Rng::new(7);
    let mut held: Vec<(usize, JournalRecord)> = Vec::new();
    let mut seq = 0u64;
    let started = Instant::now();
    let bar = verbose.then(|| {
        crate::progress::Progress::new(
            "bench report: generating",
            (ticks * meters) as u64,
            "readings",
        )
    });
    let mut ingest = |store: &mut Pipeline, mut rec: JournalRecord| -> anyhow::Result<()> {
        seq += 1;
        rec.seq = seq;
        store.ingest(&rec)?;
        if store.ingest.is_seal_due(Instant::now()) {
            store.seal()?;
        }
        Ok(())
    };
    for tick in 0..ticks {
        let ts = T0 + tick as i64 * interval(args);
        let stamp = crate::time::format_micros(ts);
        for (g, chunk) in ids.chunks(PER_MESSAGE).enumerate() {
            let mut payload = String::with_capacity(PER_MESSAGE * 110);
            payload.push('[');
            for (k, id) in chunk.iter().enumerate() {
                if rng.unit() < 0.005 {
                    continue; // lost telegram: a gap
                }
                let m = g * PER_MESSAGE + k;
                let value = 1_000_000 + (m as u64 % 997) * 10 * tick as u64;
                if payload.len() > 1 {
                    payload.push(',');
                }
                payload.push_str(&format!(
                    r#"{{"meter_id":"{id}","medium":"heat","register":"energy","unit":"kWh","value":"{}.{:03}","ts":"{stamp}","seq":{}}}"#,
                    value / 1000,
                    value % 1000,
                    tick % 256
                ));
            }
            payload.push(']');
            let rec = JournalRecord {
                seq: 0,
                received_at: ts + 5_000_000,
                topic: format!("meters/gw-{g}"),
                payload: payload.into_bytes().into(),
            };
            if args.late_percent > 0.0 && rng.unit() * 100.0 < args.late_percent {
                // Sent again two days later (a gateway replaying its
                // buffer): readings the duplicate index no longer holds.
                held.push((tick + 2 * per_day, rec.clone()));
            }
            if rng.unit() < 0.001 {
                held.push((tick + per_day, rec)); // a gateway forwarding a day late
            } else {
                ingest(&mut store, rec)?;
            }
        }
        let (due, later): (Vec<_>, Vec<_>) = held.drain(..).partition(|(t, _)| *t <= tick);
        held = later;
        for (_, mut rec) in due {
            rec.received_at = ts + 5_000_000;
            ingest(&mut store, rec)?;
        }
        if let Some(bar) = &bar {
            bar.set(((tick + 1) * meters) as u64);
        }
    }
    drop(bar);
    for (_, rec) in held {
        ingest(&mut store, rec)?;
    }
    store.seal()?;
    let t = store.totals();
    if verbose {
        eprintln!(
            "  {} messages, {} readings stored in {:.0} s",
            t.delivered,
            t.readings_stored,
            started.elapsed().as_secs_f64()
        );
    }
    // Readings taken in: stored or counted as duplicates.
    Ok(t.readings_stored + t.readings_duplicate)
}

/// A Python with duckdb: `--python`, GAPLESS_PYTHON, or a virtualenv the
/// benchmark makes for itself.
fn python_with_duckdb(args: &BenchReportArgs) -> anyhow::Result<PathBuf> {
    let has_duckdb = |p: &Path| {
        Command::new(p)
            .args(["-c", "import duckdb"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if let Some(p) = args
        .python
        .clone()
        .or_else(|| std::env::var_os("GAPLESS_PYTHON").map(PathBuf::from))
    {
        if has_duckdb(&p) {
            return Ok(p);
        }
        bail!("{} has no duckdb (pip install duckdb)", p.display());
    }
    let venv = args.data.join(".venv");
    let python = venv.join("bin/python");
    if !has_duckdb(&python) {
        eprintln!("bench report: making {} with duckdb (pip)", venv.display());
        let ok = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()?
            .success()
            && Command::new(venv.join("bin/pip"))
                .args([
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                    "duckdb",
                ])
                .status()?
                .success();
        if !ok || !has_duckdb(&python) {
            bail!("could not install duckdb into {}", venv.display());
        }
    }
    Ok(python)
}
