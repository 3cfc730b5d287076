//! The live engine's tests: each rule, and live = batch (property tests).
use super::*;
use crate::continuity::sealed::{LookupError, NoSealed, SealedSeries};
use crate::continuity::series::tests::{rules, MIN};
use crate::continuity::series::{analyze, judge_plausibility};
use crate::continuity::DAY;
use proptest::prelude::*;

/// Observes with no sealed files (the engine keeps every gap).
fn observe(
    live: &mut LiveEngine,
    meter: &str,
    register: &str,
    setup: impl FnOnce() -> SeriesSetup,
    p: Point,
    key: ReceiptKey,
) -> Vec<GapChange> {
    live.observe(meter, register, setup, p, key, &mut NoSealed)
        .expect("no lookup without a gap memory")
}

fn set_day(live: &mut LiveEngine, meter: &str, day: i64) -> Vec<(String, GapChange)> {
    live.set_day(meter, day, &mut NoSealed)
        .expect("no lookup without a gap memory")
}

fn point(ts_min: i64, seq: u64) -> Point {
    Point {
        ts: ts_min * MIN,
        value: ts_min as i128 * 1_000_000_000,
        decimals: 0,
        seq: Some(seq),
        received_at: 0,
    }
}

fn setup(interval: Interval) -> SeriesSetup {
    SeriesSetup {
        medium: Medium::Heat,
        interval: Some(interval),
        seq_wrap: 256,
    }
}

#[test]
fn an_unknown_interval_is_inferred_from_the_first_received_readings() {
    let cfg = ContinuityConfig::default();
    let mut live = LiveEngine::new(cfg);
    let infer = || SeriesSetup {
        medium: Medium::Water,
        interval: None,
        seq_wrap: 256,
    };
    // Every 4 minutes (not the water default of an hour), one 20-minute
    // gap; received newest first, in two batches.
    let mut times: Vec<i64> = (0..8).map(|k| k * 4).collect();
    times.extend([52, 56]);
    let mut changes = Vec::new();
    for (k, &t) in times.iter().rev().enumerate() {
        changes.extend(observe(
            &mut live,
            "W",
            "volume",
            infer,
            point(t, 0),
            (k as u64, 0),
        ));
        if k == 4 {
            assert!(live.settle().is_empty(), "5 readings: not yet");
        }
    }
    assert!(
        changes.is_empty(),
        "no gap at the built-in hour: {changes:?}"
    );
    assert_eq!(live.interval("W", "volume"), None, "until the batch ends");
    let settled = live.settle();
    assert_eq!(settled.len(), 1);
    let i = live.interval("W", "volume").expect("inferred");
    assert_eq!((i.micros, i.source), (4 * MIN, IntervalSource::Inferred));
    assert_eq!(settled[0].interval, i);
    // The 9th received (receipt 8) completed the first readings.
    assert_eq!(settled[0].cause, (8, 0));
    let gaps = live.gaps("W", "volume");
    assert_eq!(gaps.len(), 1);
    assert_eq!(
        (gaps[0].from / MIN, gaps[0].to / MIN, gaps[0].missing),
        (28, 52, 5)
    );
    // What is kept of a gap is its ends' times, values, counters and
    // lateness: the same gap.
    assert_eq!(settled[0].old.len(), 0);
    assert_eq!(normalized(settled[0].new.clone()), normalized(gaps));
}

#[test]
fn gaps_judged_with_the_builtin_interval_are_superseded_once_inferred() {
    let cfg = ContinuityConfig::default();
    let mut live = LiveEngine::new(cfg);
    let infer = || SeriesSetup {
        medium: Medium::Heat,
        interval: None,
        seq_wrap: 256,
    };
    // Hourly readings of a heat meter (built in: 15 min): every step is
    // a gap until the interval is inferred.
    let mut found = 0;
    for k in 0..5 {
        let ch = observe(&mut live, "H", "e", infer, point(k * 60, 0), (k as u64, 0));
        found += ch.len();
    }
    assert!(live.settle().is_empty());
    assert_eq!((found, live.gaps("H", "e").len()), (4, 4));
    for k in 5..12 {
        observe(&mut live, "H", "e", infer, point(k * 60, 0), (k as u64, 0));
    }
    let s = live.settle();
    assert_eq!((s[0].old.len(), s[0].new.len()), (11, 0));
    assert!(live.gaps("H", "e").is_empty());
    assert_eq!(live.interval("H", "e").unwrap().micros, 60 * MIN);
}

#[test]
fn a_reported_set_date_explains_an_hca_reset_found_before_it() {
    let cfg = ContinuityConfig::default();
    let mut live = LiveEngine::new(cfg.clone());
    let hca = || SeriesSetup {
        medium: Medium::Hca,
        interval: Some(Interval {
            micros: DAY,
            source: IntervalSource::Registry,
        }),
        seq_wrap: 256,
    };
    let d = |day: i64, v: i128| Point {
        ts: day * DAY + 6 * 3600 * SECOND,
        value: v * 1_000_000_000,
        decimals: 0,
        seq: None,
        received_at: day * DAY,
    };
    // Day 100 = 1970-04-11: not the configured 12-31.
    observe(&mut live, "A", "units", hca, d(97, 300), (1, 0));
    let ch = observe(&mut live, "A", "units", hca, d(103, 2), (2, 0));
    assert!(
        ch.iter().any(|c| matches!(c, GapChange::Decrease { .. })),
        "{ch:?}"
    );
    assert_eq!(live.gaps("A", "units")[0].consumption, None);
    let ch = set_day(&mut live, "A", 100);
    assert_eq!(ch.len(), 1);
    assert!(matches!(&ch[0], (r, GapChange::Split { parts, .. })
        if r == "units" && parts[0].consumption == Some(2_000_000_000)));
    assert!(set_day(&mut live, "A", 100).is_empty(), "known already");
    // Known before the reset: no decrease.
    let ch = observe(&mut live, "A", "units", hca, d(99, 320), (3, 0));
    assert!(!ch.iter().any(|c| matches!(c, GapChange::Decrease { .. })));
    set_day(&mut live, "A", 130);
    let ch = observe(&mut live, "A", "units", hca, d(131, 1), (4, 0));
    assert!(
        !ch.iter().any(|c| matches!(c, GapChange::Decrease { .. })),
        "{ch:?}"
    );
}

fn live_gaps(arrivals: &[i64], cfg: &ContinuityConfig) -> (Vec<Gap>, Vec<GapChange>) {
    let r = rules(cfg, Medium::Heat, 15);
    let mut live = LiveEngine::new(cfg.clone());
    let mut changes = Vec::new();
    for (k, &t) in arrivals.iter().enumerate() {
        changes.extend(observe(
            &mut live,
            "M-1",
            "energy",
            || setup(r.interval),
            point(t, (t / 15) as u64 % 256),
            (k as u64, 0),
        ));
    }
    (live.gaps("M-1", "energy").to_vec(), changes)
}

/// The live state keeps of a reading's receive time only whether it was
/// late: compare gaps without it.
fn normalized(mut gaps: Vec<Gap>) -> Vec<Gap> {
    for g in &mut gaps {
        g.before.received_at = 0;
        if let Some(a) = &mut g.after {
            a.received_at = 0;
        }
    }
    gaps
}

fn batch_gaps(times: &[i64], cfg: &ContinuityConfig) -> Vec<Gap> {
    let mut sorted: Vec<i64> = times.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let pts: Vec<Point> = sorted
        .iter()
        .map(|&t| point(t, (t / 15) as u64 % 256))
        .collect();
    let mut gaps = analyze(&pts, &rules(cfg, Medium::Heat, 15), None).gaps;
    for g in &mut gaps {
        g.plausibility = None; // history-based: not part of the live state
    }
    gaps
}

#[test]
fn a_late_reading_splits_then_closes_a_gap() {
    let cfg = ContinuityConfig::default();
    // 0, 15, then nothing until 120: one gap of 6 missing.
    let (gaps, changes) = live_gaps(&[0, 15, 120], &cfg);
    assert_eq!(gaps.len(), 1);
    assert_eq!(
        (gaps[0].from, gaps[0].to, gaps[0].missing),
        (15 * MIN, 120 * MIN, 6)
    );
    assert!(matches!(changes[0], GapChange::Found(_)));
    // The gateway forwards 60 late: two gaps of 2 and 3.
    let (gaps, changes) = live_gaps(&[0, 15, 120, 60], &cfg);
    let summary: Vec<(i64, i64, u64)> = gaps
        .iter()
        .map(|g| (g.from / MIN, g.to / MIN, g.missing))
        .collect();
    assert_eq!(summary, vec![(15, 60, 2), (60, 120, 3)]);
    assert!(matches!(&changes[1], GapChange::Split { parts, .. } if parts.len() == 2));
    // Then the rest: no gap left.
    let (gaps, _) = live_gaps(&[0, 15, 120, 60, 30, 45, 75, 90, 105], &cfg);
    assert!(gaps.is_empty(), "{gaps:?}");
    // A reading before the first opens a gap at the head.
    let (gaps, _) = live_gaps(&[100, 115, 0], &cfg);
    assert_eq!(
        gaps.iter()
            .map(|g| (g.from / MIN, g.to / MIN))
            .collect::<Vec<_>>(),
        vec![(0, 100)]
    );
}

#[test]
fn values_beyond_i64_and_late_ends_survive_packing() {
    let cfg = ContinuityConfig::default();
    let r = rules(&cfg, Medium::Heat, 15);
    let mut live = LiveEngine::new(cfg.clone());
    let big = |ts_min: i64, units: i128, late: bool| Point {
        ts: ts_min * MIN,
        value: units * 1_000_000_000,
        decimals: 3,
        seq: Some(1 << 40), // beyond u32: kept as "no counter"
        received_at: ts_min * MIN + if late { 2 * 3600 * SECOND } else { 0 },
    };
    let huge = 100_000_000_000_000i128; // 10^14 units: 10^23 scaled
    observe(
        &mut live,
        "M",
        "e",
        || setup(r.interval),
        big(60, huge, true),
        (1, 0),
    );
    let ch = observe(
        &mut live,
        "M",
        "e",
        || setup(r.interval),
        big(0, huge - 5, false),
        (2, 0),
    );
    let GapChange::Found(g) = &ch[0] else {
        panic!("{ch:?}")
    };
    assert_eq!(g.consumption, Some(5 * 1_000_000_000));
    assert!(
        g.closed_late,
        "the first reading (closing the head gap) was late"
    );
    assert_eq!(g.after.unwrap().value, huge * 1_000_000_000);
    assert_eq!(g.after.unwrap().decimals, 3);
    let ch = observe(
        &mut live,
        "M",
        "e",
        || setup(r.interval),
        big(120, huge + 1, false),
        (3, 0),
    );
    let GapChange::Found(g) = &ch[0] else {
        panic!("{ch:?}")
    };
    assert_eq!(g.before.value, huge * 1_000_000_000);
}

#[test]
fn open_gaps_at_now() {
    let cfg = ContinuityConfig::default();
    let r = rules(&cfg, Medium::Heat, 15);
    let mut live = LiveEngine::new(cfg.clone());
    observe(
        &mut live,
        "A",
        "energy",
        || setup(r.interval),
        point(0, 0),
        (1, 0),
    );
    observe(
        &mut live,
        "B",
        "energy",
        || setup(r.interval),
        point(50, 0),
        (2, 0),
    );
    let open: Vec<(&str, u64)> = {
        let mut v: Vec<_> = live
            .open_gaps(60 * MIN)
            .map(|(m, _, g)| (m, g.missing))
            .collect();
        v.sort();
        v
    };
    assert_eq!(open, vec![("A", 3)]);
}

proptest! {
    /// For any arrival order (repeats included), the live engine ends
    /// with exactly the gaps the batch pass finds over the sorted readings.
    #[test]
    fn live_gaps_equal_batch_gaps(
        times in prop::collection::vec(0i64..2_000, 1..60),
        tolerance in prop::sample::select(vec![0.0, 0.5, 1.0]),
        seed in any::<u64>(),
    ) {
        let cfg = ContinuityConfig { tolerance, ..ContinuityConfig::default() };
        // A deterministic shuffle from the seed (plus repeats of some readings).
        let mut arrivals = times.clone();
        arrivals.extend(times.iter().step_by(7).copied());
        let mut x = seed | 1;
        for i in (1..arrivals.len()).rev() {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            arrivals.swap(i, (x % (i as u64 + 1)) as usize);
        }
        let (live, _) = live_gaps(&arrivals, &cfg);
        prop_assert_eq!(normalized(live), normalized(batch_gaps(&times, &cfg)));
    }
}

/// A generated series for the live = batch property: readings (time,
/// value), the set dates its meter reports, how it is configured, and
/// the order everything arrives in, cut into batches (seals).
#[derive(Debug)]
struct Case {
    setup: SeriesSetup,
    readings: Vec<(i64, i128)>,
    set_days: Vec<i64>,
    /// Index into `readings`, or `None` for the next set date; repeats.
    arrivals: Vec<Option<usize>>,
    /// Arrivals per batch.
    batches: Vec<usize>,
}

struct Rng(u64);

impl Rng {
    fn next(&mut self, m: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % m.max(1)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next(100) < percent
    }
}

fn case(seed: u64, medium: Medium, configured: bool, spacing_min: i64, n: usize) -> Case {
    let mut rng = Rng(seed | 1);
    let spacing = spacing_min * MIN;
    // Somewhere in 2022 (HCAs: the configured set date 12-31 may fall
    // inside the series).
    let mut ts = (19_000 + rng.next(365) as i64) * DAY + rng.next(86_400) as i64 * SECOND;
    let mut value: i128 = rng.next(50_000) as i128 * 1_000_000_000;
    let mut readings = Vec::with_capacity(n);
    let mut roll_next = false;
    for _ in 0..n {
        readings.push((ts, value));
        // Mostly regular; some gaps, some jitter, a burst now and then.
        let k = match rng.next(20) {
            0..=13 => 1,
            14..=16 => 2 + rng.next(6) as i64,
            17 => 30,
            _ => 1,
        };
        let jitter = match rng.next(10) {
            0 => (rng.next(spacing as u64 / 5) as i64) - spacing / 10,
            1 => -(spacing / 2),
            _ => 0,
        };
        ts += (k * spacing + jitter).max(SECOND);
        value += rng.next(40) as i128 * 250_000_000;
        if roll_next {
            value = rng.next(3) as i128 * 1_000_000_000;
            roll_next = false;
        } else if rng.chance(4) {
            // A reset (an HCA's period, a glitch) or a decrease.
            value = rng.next(5) as i128 * 1_000_000_000;
        } else if rng.chance(3) {
            // Up to the top of five digits: the next one rolls over.
            value = 99_990 * 1_000_000_000;
            roll_next = true;
        }
    }
    let (t0, t1) = (readings[0].0, readings[n - 1].0);
    let set_days: Vec<i64> = (0..rng.next(4))
        .map(|_| (t0 + rng.next((t1 - t0).max(1) as u64) as i64).div_euclid(DAY))
        .collect();
    let mut arrivals: Vec<Option<usize>> = (0..n).map(Some).collect();
    match rng.next(3) {
        // Shuffled.
        0 => {
            for i in (1..arrivals.len()).rev() {
                arrivals.swap(i, rng.next(i as u64 + 1) as usize);
            }
        }
        // In order, but some readings come late (a gateway's buffer).
        1 => {
            for _ in 0..rng.next(n as u64 / 3 + 1) {
                let i = rng.next(arrivals.len() as u64) as usize;
                let late = arrivals.remove(i);
                let to = i + rng.next((arrivals.len() - i) as u64 + 1) as usize;
                arrivals.insert(to.min(arrivals.len()), late);
            }
        }
        // Newest first.
        _ => arrivals.reverse(),
    }
    for _ in 0..rng.next(n as u64 / 4 + 1) {
        let again = arrivals[rng.next(arrivals.len() as u64) as usize];
        let at = rng.next(arrivals.len() as u64 + 1) as usize;
        arrivals.insert(at, again);
    }
    for _ in &set_days {
        let at = rng.next(arrivals.len() as u64 + 1) as usize;
        arrivals.insert(at, None);
    }
    let mut batches = Vec::new();
    let mut left = arrivals.len();
    while left > 0 {
        let b = (1 + rng.next(12) as usize).min(left);
        batches.push(b);
        left -= b;
    }
    let interval = configured.then_some(Interval {
        micros: spacing,
        source: IntervalSource::Registry,
    });
    Case {
        setup: SeriesSetup {
            medium,
            interval,
            seq_wrap: 256,
        },
        readings,
        set_days,
        arrivals,
        batches,
    }
}

fn reading_point(ts: i64, value: i128, received_at: i64) -> Point {
    Point {
        ts,
        value,
        decimals: 2,
        seq: None,
        received_at,
    }
}

/// What the `gaps` table says after the changes: the gaps whose last
/// event is `found`.
#[derive(Default)]
struct Table(Vec<Gap>);

impl Table {
    fn found(&mut self, g: Gap) {
        assert!(
            !self.0.iter().any(|s| (s.from, s.to) == (g.from, g.to)),
            "found twice without being superseded: {g:?}"
        );
        self.0.push(g);
    }
    /// The `gaps` table matches a superseded gap by its ends; the rest
    /// must be what was found (receive times aside: the engine keeps only
    /// their lateness).
    fn superseded(&mut self, g: &Gap) {
        let k = self.0.iter().position(|s| (s.from, s.to) == (g.from, g.to));
        let k = k.unwrap_or_else(|| panic!("superseded but not standing: {g:?}"));
        let was = self.0.remove(k);
        assert_eq!(normalized(vec![was]), normalized(vec![g.clone()]));
    }
    fn apply(&mut self, c: GapChange) {
        match c {
            GapChange::Found(g) => self.found(g),
            GapChange::Split { old, parts } => {
                self.superseded(&old);
                parts.into_iter().for_each(|g| self.found(g));
            }
            GapChange::Decrease { .. } => {}
        }
    }
}

/// Sealed files for the engine's gap memory: the readings of the batches
/// sealed so far (each time once, the first value).
#[derive(Default)]
struct Files {
    points: Vec<Point>,
    asked: usize,
}

impl SealedSeries for Files {
    fn points_in(
        &mut self,
        _: &str,
        _: &str,
        from: i64,
        to: i64,
        _: Option<u64>,
    ) -> Result<Vec<Point>, LookupError> {
        self.asked += 1;
        let mut v: Vec<Point> = self
            .points
            .iter()
            .filter(|p| (from..=to).contains(&p.ts))
            .copied()
            .collect();
        v.sort_by_key(|p| p.ts);
        Ok(v)
    }
}

impl Files {
    fn seal(&mut self, batch: &[Point]) {
        for p in batch {
            if !self.points.iter().any(|q| q.ts == p.ts) {
                self.points.push(*p);
            }
        }
    }
}

/// Runs a case through the live engine, batch by batch as seals do
/// (set dates first, then the readings sorted by time, then settle; then
/// the batch is sealed and the gaps older than `memory` are dropped).
/// Returns the engine and the table its changes make.
fn run_live(
    c: &Case,
    cfg: &ContinuityConfig,
    registry: Arc<Registry>,
    memory: Option<i64>,
) -> (LiveEngine, Table, Files) {
    let mut live = LiveEngine::new(cfg.clone()).with_registry(registry);
    if let Some(m) = memory {
        live.set_gap_memory(m);
    }
    let mut files = Files::default();
    let mut table = Table::default();
    let (mut next_day, mut k) = (0, 0);
    for &size in &c.batches {
        let batch: Vec<(usize, Option<usize>)> =
            (k..k + size).map(|j| (j, c.arrivals[j])).collect();
        k += size;
        for _ in batch.iter().filter(|(_, a)| a.is_none()) {
            for (_, ch) in live.set_day("M", c.set_days[next_day], &mut files).unwrap() {
                table.apply(ch);
            }
            next_day += 1;
        }
        let mut sealing = Vec::new();
        let mut readings: Vec<(usize, usize)> = batch
            .iter()
            .filter_map(|&(j, a)| a.map(|i| (j, i)))
            .collect();
        readings.sort_by_key(|&(j, i)| (c.readings[i].0, j));
        for (j, i) in readings {
            let (ts, v) = c.readings[i];
            let p = reading_point(ts, v, ts + j as i64 * MIN);
            let key = (j as u64 / 3, (j % 3) as u32);
            for ch in live
                .observe("M", "r", || c.setup, p, key, &mut files)
                .unwrap()
            {
                table.apply(ch);
            }
            sealing.push(p);
        }
        for s in live.settle() {
            s.old.iter().for_each(|g| table.superseded(g));
            s.new.into_iter().for_each(|g| table.found(g));
        }
        files.seal(&sealing);
        live.evict();
    }
    (live, table, files)
}

/// The batch pass over the case's stored rows: each reading once, with
/// the receipt key of its first arrival.
fn run_batch(c: &Case) -> (Vec<Point>, Interval, Vec<i64>) {
    let mut first_arrival: Vec<Option<usize>> = vec![None; c.readings.len()];
    for (j, a) in c.arrivals.iter().enumerate() {
        if let Some(i) = *a {
            first_arrival[i].get_or_insert(j);
        }
    }
    let mut first = FirstReceived::default();
    let mut points = Vec::new();
    for (i, &(ts, v)) in c.readings.iter().enumerate() {
        let j = first_arrival[i].expect("every reading arrives");
        first.offer((j as u64 / 3, (j % 3) as u32), ts);
        points.push(reading_point(ts, v, ts + j as i64 * MIN));
    }
    let interval = c
        .setup
        .interval
        .unwrap_or_else(|| first.interval(c.setup.medium));
    let mut days = c.set_days.clone();
    days.sort_unstable();
    days.dedup();
    (points, interval, days)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]
    /// Live = batch: for any arrival order (repeats, late and
    /// out-of-order readings, any cut into batches), with inferred or
    /// configured intervals, reported set dates, HCA resets, rollovers
    /// and decreases, the live engine's gaps, the table its changes
    /// make, and its interval are the batch pass's over the stored
    /// rows; with plausibility judged against the stored history, they
    /// are the batch gaps exactly.
    #[test]
    fn live_equals_batch_with_inferred_intervals_and_set_dates(
        seed in any::<u64>(),
        medium in prop::sample::select(vec![Medium::Heat, Medium::Hca, Medium::Water]),
        configured in any::<bool>(),
        spacing_min in prop::sample::select(vec![4i64, 15, 60, 1440]),
        n in 1usize..60,
        tolerance in prop::sample::select(vec![0.0, 0.5]),
        replaced_at in prop::option::of(0.0f64..1.0),
        forget in any::<bool>(),
    ) {
        let cfg = ContinuityConfig { tolerance, ..ContinuityConfig::default() };
        let c = case(seed, medium, configured, spacing_min, n);
        // Sometimes the registry records the meter's replacement inside
        // the series (the register restarts there: any decrease across it
        // is explained).
        let (t0, t1) = (c.readings[0].0, c.readings[c.readings.len() - 1].0);
        let registry = match replaced_at {
            Some(f) => {
                let at = t0 + ((t1 - t0) as f64 * f) as i64;
                let iso = chrono::DateTime::from_timestamp_micros(at)
                    .unwrap()
                    .to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
                Registry::parse(&format!(
                    "meter_id,medium,expected_interval_s,group,installed_at,removed_at\n\
                     M,heat,,,,{iso}\nM,heat,,,{iso},\n"
                ))
                .unwrap()
            }
            None => Registry::default(),
        };
        let replacements = registry.replacements("M");
        // Forgetting every gap at each seal: the sealed files answer for
        // all of them, with the same table and the same state in the end.
        let memory = forget.then_some(0);
        let (live, table, files) = run_live(&c, &cfg, Arc::new(registry), memory);
        let (points, interval, days) = run_batch(&c);
        let rules = SeriesRules {
            cfg: &cfg,
            medium,
            interval,
            seq_wrap: 256,
            set_days: &days,
            replacements: &replacements,
        };
        let batch = analyze(&points, &rules, None).gaps;
        let mut live_gaps = live.gaps("M", "r").to_vec();
        let mut table_gaps = table.0;
        table_gaps.sort_by_key(|g| g.from);
        if forget && live.interval("M", "r").is_some() {
            // Only the gaps that end after the horizon are kept (a series
            // still inferring its interval keeps all).
            let horizon = live.horizon();
            prop_assert!(horizon > i64::MIN);
            prop_assert_eq!(files.asked > 0, live.lookups() > 0);
            let kept: Vec<Gap> = table_gaps.iter().filter(|g| g.to >= horizon).cloned().collect();
            prop_assert_eq!(normalized(kept), normalized(live_gaps.clone()));
            live_gaps = table_gaps.clone();
        }
        prop_assert_eq!(normalized(table_gaps), normalized(live_gaps.clone()));
        judge_plausibility(&points, &mut live_gaps, &rules);
        prop_assert_eq!(normalized(live_gaps), normalized(batch));
        let live_interval = live.interval("M", "r").unwrap_or(Interval {
            micros: builtin_interval_s(medium) as i64 * SECOND,
            source: IntervalSource::Default,
        });
        prop_assert_eq!(live_interval, interval);
    }
}

/// Inferred intervals come from untrusted readings: past 65,535 distinct
/// setups a series keeps its own interval rather than share another's.
#[test]
fn series_past_the_profile_capacity_keep_their_own_interval() {
    let cfg = ContinuityConfig::default();
    let mut live = LiveEngine::new(cfg);
    let n = 70_000i64;
    for k in 0..n {
        let s = || {
            setup(Interval {
                micros: (60 + k) * SECOND,
                source: IntervalSource::Registry,
            })
        };
        let id = format!("M{k}");
        observe(&mut live, &id, "r", s, point(0, 0), (k as u64, 0));
        // Three of its intervals later: a gap of 2.
        let p = Point {
            ts: 3 * (60 + k) * SECOND,
            ..point(0, 0)
        };
        observe(&mut live, &id, "r", s, p, (k as u64, 1));
    }
    for k in [0, 65_534, 65_535, 69_999] {
        let id = format!("M{k}");
        assert_eq!(
            live.interval(&id, "r").unwrap().micros,
            (60 + k) * SECOND,
            "{k}"
        );
        let g = live.gaps(&id, "r");
        assert_eq!(
            (g.len(), g[0].missing, g[0].interval),
            (1, 2, (60 + k) * SECOND),
            "{k}"
        );
    }
}
