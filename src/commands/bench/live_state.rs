//! `gapless bench live-state`: memory of the live continuity state per
//! meter register, measured as the process's resident set before and after.

use std::time::Instant;

use super::rss_bytes;

/// `gapless bench live-state`: the live continuity state's memory per
/// meter register in steady state (interval known, no gaps).
pub fn run(args: &crate::cli::BenchLiveStateArgs) -> anyhow::Result<()> {
    use crate::continuity::live::{LiveEngine, SeriesSetup};
    use crate::continuity::series::Point;
    use crate::continuity::{ContinuityConfig, Interval, IntervalSource};
    use crate::reading::Medium;

    let setup = SeriesSetup {
        medium: Medium::Heat,
        interval: Some(Interval {
            micros: 900_000_000,
            source: IntervalSource::Registry,
        }),
        seq_wrap: 256,
    };
    let t0: i64 = 1_658_707_200_000_000;
    let ids: Vec<String> = (0..args.meters).map(|i| format!("HZ-{i:09}")).collect();
    let before = rss_bytes()?;
    let start = Instant::now();
    let mut live = LiveEngine::new(ContinuityConfig::default());
    let mut gaps = 0usize;
    for k in 0..args.readings.max(1) {
        for (i, id) in ids.iter().enumerate() {
            let ts = t0 + k as i64 * 900_000_000;
            let p = Point {
                ts,
                value: (1_000 + i as i128 + k as i128) * 1_000_000_000 + 123_000_000,
                decimals: 3,
                seq: Some((k % 256) as u64),
                received_at: ts + 5_000_000,
            };
            gaps += live
                .observe(
                    id,
                    "energy",
                    || setup,
                    p,
                    ((k * args.meters + i) as u64, 0),
                    &mut crate::continuity::sealed::NoSealed,
                )
                .expect("no lookup: the gap memory is for ever")
                .len();
        }
    }
    let elapsed = start.elapsed();
    let after = rss_bytes()?;
    let n = args.meters.max(1) as f64;
    println!(
        "bench live-state: {} meter registers (12-character ids), {} readings each, {gaps} gaps",
        args.meters, args.readings
    );
    println!(
        "  RSS {:.1} MiB -> {:.1} MiB: {:.1} bytes per meter register",
        before as f64 / 1048576.0,
        after as f64 / 1048576.0,
        (after.saturating_sub(before)) as f64 / n
    );
    println!(
        "  held by the engine: {:.1} bytes per meter register; {:.0} readings/s observed",
        live.heap_bytes() as f64 / n,
        (args.meters * args.readings) as f64 / elapsed.as_secs_f64()
    );
    drop(ids);
    Ok(())
}
