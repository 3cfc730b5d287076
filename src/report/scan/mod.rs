//! Streams the sealed `readings` series by series, without sorting (the
//! files it reads are listed by `catalog`).
//!
//! Every sealed readings file is a sorted run: rows ordered by meter,
//! register and time. A compacted date is one run (`store::compact`): its
//! newest compacted file, plus the readings files of the date that file does
//! not hold yet. The scan keeps one cursor per run and works through
//! the meters a chunk at a time: each cursor in turn adds its rows of the
//! chunk's meters to per-series buffers (a sequential pass over its decoded
//! batch, finding each run's series by moving forward in the chunk's sorted
//! keys), then the chunk's series are judged in order. Taking a chunk from
//! each cursor in turn, rather than one series from every cursor, keeps the
//! work in cache when there are hundreds of runs. A series' rows from
//! several files are in time order when the files are (arrival order,
//! which is mostly time order); otherwise they are sorted, per series. A
//! meter's series are gathered in one chunk and judged together, so that
//! the set dates one register reports explain a reset in another.
//!
//! `cursor` reads one run; here the runs are merged into series and
//! judged.

mod cursor;

use std::borrow::Cow;

use super::catalog::StoredReadings;
use super::ReportError;
use crate::continuity::series::{inferred_or_builtin, FirstReceived, Point, SeriesRules};
use crate::continuity::window::SeriesInput;
use crate::continuity::{Context, DEFAULT_SEQ_WRAP};
use crate::reading::Medium;
use cursor::Cursor;

/// Scans split the meters between two threads (the machine has 2 cores);
/// `GAPLESS_SCAN_THREADS=1` scans on one (to measure the difference).
fn scan_threads() -> usize {
    std::env::var("GAPLESS_SCAN_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2)
}
/// Below this, one thread is quicker than two.
const MIN_ROWS_TO_SPLIT: u64 = 200_000;

/// Rows decoded at a time per run: a scan thread decodes about
/// [`BATCH_ROWS_PER_SCAN`] rows at a time across its runs, at least
/// [`MIN_BATCH_ROWS`] per run. Few large runs (compacted dates) decode in
/// large batches (8 K rows a batch cost 6 % more time than 64 K on a month
/// of 31 compacted dates), many runs in small ones (memory).
const BATCH_ROWS_PER_SCAN: usize = 2 * 1024 * 1024;
const MIN_BATCH_ROWS: usize = 8 * 1024;
const MAX_BATCH_ROWS: usize = 64 * 1024;

/// A range of meter ids `[lo, hi)`; None = unbounded.
#[derive(Debug, Clone, Copy, Default)]
struct MeterRange<'a> {
    lo: Option<&'a str>,
    hi: Option<&'a str>,
}

impl MeterRange<'_> {
    fn overlaps(&self, first: &str, last: &str) -> bool {
        self.lo.is_none_or(|lo| last >= lo) && self.hi.is_none_or(|hi| first < hi)
    }
}

impl StoredReadings {
    /// Calls `f` once per series (meter, register), in order, and once per
    /// registry meter that has no readings; returns what it returned. The
    /// meters are split in two ranges at the median row group, scanned on
    /// two threads.
    pub(crate) fn map_series<T: Send>(
        &self,
        ctx: &Context,
        f: impl Fn(&SeriesInput) -> T + Sync,
    ) -> Result<Vec<T>, ReportError> {
        let split = scan_threads() > 1 && self.rows >= MIN_ROWS_TO_SPLIT;
        match &self.progress {
            Some(tell) => self.map_series_split(
                ctx,
                |s| {
                    tell((s.points.len() + s.conflicts.len()) as u64);
                    f(s)
                },
                split,
            ),
            None => self.map_series_split(ctx, f, split),
        }
    }

    /// [`map_series`](Self::map_series), on two threads if `split` (and the
    /// row groups give a place to split).
    fn map_series_split<T: Send>(
        &self,
        ctx: &Context,
        f: impl Fn(&SeriesInput) -> T + Sync,
        split: bool,
    ) -> Result<Vec<T>, ReportError> {
        let pivot = if split { self.pivot() } else { None };
        let (mut out, mut seen) = match &pivot {
            Some(p) => {
                let (a, b) = std::thread::scope(|scope| {
                    let lower = scope.spawn(|| {
                        self.scan_range(
                            ctx,
                            &f,
                            MeterRange {
                                lo: None,
                                hi: Some(p),
                            },
                        )
                    });
                    let upper = self.scan_range(
                        ctx,
                        &f,
                        MeterRange {
                            lo: Some(p),
                            hi: None,
                        },
                    );
                    let lower = lower
                        .join()
                        .unwrap_or_else(|e| std::panic::resume_unwind(e));
                    (lower, upper)
                });
                let (mut out, mut seen) = a?;
                let (out_b, seen_b) = b?;
                out.extend(out_b);
                seen.extend(seen_b);
                (out, seen)
            }
            _ => self.scan_range(ctx, &f, MeterRange::default())?,
        };
        seen.sort_unstable();
        for (id, entries) in ctx.registry.meters() {
            if seen.binary_search_by(|s| s.as_str().cmp(id)).is_ok() {
                continue;
            }
            let Some(entry) = entries.last() else {
                continue;
            };
            let setup = ctx.setup(id, entry.medium, false);
            out.push(f(&SeriesInput {
                meter_id: id,
                register: None,
                medium: setup.medium,
                unit: None,
                group: entry.group.as_deref(),
                points: &[],
                conflicts: &[],
                rules: SeriesRules {
                    cfg: &ctx.config,
                    medium: setup.medium,
                    interval: setup
                        .interval
                        .unwrap_or_else(|| inferred_or_builtin(setup.medium, &[])),
                    seq_wrap: setup.seq_wrap,
                    set_days: &[],
                    replacements: &[],
                },
                service: ctx.registry.service_span(id),
                in_registry: true,
            }));
        }
        Ok(out)
    }

    /// Calls `f` once per series of one meter, reading only the row groups
    /// that can hold it (by their statistics).
    pub(crate) fn map_meter<T>(
        &self,
        ctx: &Context,
        meter: &str,
        f: impl Fn(&SeriesInput) -> T,
    ) -> Result<Vec<T>, ReportError> {
        // The smallest string after `meter`: ids never contain NUL.
        let hi = format!("{meter}\0");
        let range = MeterRange {
            lo: Some(meter),
            hi: Some(&hi),
        };
        Ok(self.scan_range(ctx, &f, range)?.0)
    }

    /// The median of the row groups' first meters: where the key space is
    /// split between the threads (None with too few row groups to split).
    fn pivot(&self) -> Option<String> {
        let mut firsts: Vec<&str> = self
            .files
            .iter()
            .flat_map(|f| f.row_groups.iter().map(|(first, _)| first.as_str()))
            .collect();
        if firsts.len() < 2 {
            return None;
        }
        firsts.sort_unstable();
        let p = firsts[firsts.len() / 2];
        (p > firsts[0]).then(|| p.to_owned())
    }

    /// The series of one range of meters, in order, and the meters seen.
    fn scan_range<T>(
        &self,
        ctx: &Context,
        f: &impl Fn(&SeriesInput) -> T,
        range: MeterRange,
    ) -> Result<(Vec<T>, Vec<String>), ReportError> {
        let mut cursors = Vec::with_capacity(self.files.len());
        let batch_rows =
            (BATCH_ROWS_PER_SCAN / self.files.len().max(1)).clamp(MIN_BATCH_ROWS, MAX_BATCH_ROWS);
        for run in &self.files {
            let groups: Vec<usize> = run
                .row_groups
                .iter()
                .enumerate()
                .filter(|(_, (first, last))| range.overlaps(first, last))
                .map(|(i, _)| i)
                .collect();
            if groups.is_empty() {
                continue;
            }
            // The receipt columns say which readings came first: needed
            // only where an interval may have to be inferred.
            let receipts = run.medium.is_none_or(|m| !interval_always_known(ctx, m));
            if let Some(c) = Cursor::open(&run.path, groups, range, batch_rows, receipts)? {
                cursors.push(c);
            }
        }
        let mut out = Vec::new();
        let mut seen: Vec<String> = Vec::new();
        let mut chunk = Chunk::default();
        // A chunk of meters at a time: each cursor in turn adds its rows of
        // the chunk (a sequential pass over its batch, so that hundreds of
        // runs do not each cost a cache miss per series), then the chunk's
        // meters are judged in order.
        loop {
            cursors.retain(|c| !c.is_done());
            let mut hi: Option<Cow<str>> = None;
            for c in &cursors {
                if let Some(b) = c.chunk_bound(self.chunk_rows) {
                    if hi.as_ref().is_none_or(|h| b < *h) {
                        hi = Some(b);
                    }
                }
            }
            let Some(hi) = hi.map(Cow::into_owned) else {
                break;
            };
            for c in &mut cursors {
                c.take_until(&hi, &mut chunk)?;
            }
            chunk.judge(ctx, f, &mut out, &mut seen);
        }
        Ok((out, seen))
    }
}

/// Whether every series of readings of `medium` has a configured interval
/// (none is inferred): the configuration gives one for the medium, and no
/// registry entry turns a meter into one without.
fn interval_always_known(ctx: &Context, medium: Medium) -> bool {
    let configured = |m: &Medium| ctx.config.intervals_s.contains_key(m);
    configured(&medium)
        && ctx.registry.meters().all(|(_, entries)| {
            entries
                .last()
                .is_none_or(|e| e.expected_interval_s.is_some() || configured(&e.medium))
        })
}

/// The first row in `0..n` for which `below` is false.
fn partition(n: usize, below: impl Fn(usize) -> bool) -> usize {
    crate::continuity::first_not_below(0, n as u64, |i| below(i as usize)) as usize
}

/// One series of the meter being gathered.
#[derive(Debug, Default)]
struct SeriesBuf {
    register: String,
    medium: Option<Medium>,
    unit: String,
    frame_counter: bool,
    points: Vec<Point>,
    conflicts: Vec<i64>,
    /// Only set-date values: not a telegram stream of its own.
    set_date_only: bool,
    /// The most decimals any of its values needs.
    decimals: u8,
    /// Days of its set-date values (they explain resets in every register
    /// of the meter).
    set_days: Vec<i64>,
    /// Its first received readings: what an unknown interval is inferred
    /// from (the live engine's rule).
    first: FirstReceived,
}

impl SeriesBuf {
    fn reset(&mut self, register: &str) {
        self.register.clear();
        self.register.push_str(register);
        self.medium = None;
        self.unit.clear();
        self.frame_counter = false;
        self.points.clear();
        self.conflicts.clear();
        self.set_date_only = true;
        self.decimals = 0;
        self.set_days.clear();
        self.first = FirstReceived::default();
    }
}

/// The series of a range of meters being gathered (buffers reused across
/// chunks).
#[derive(Debug, Default)]
struct Chunk {
    /// Meter, register and buffer of each series, in order.
    keys: Vec<(String, String, usize)>,
    series: Vec<SeriesBuf>,
    used: usize,
    /// The set-date days of the meter being judged.
    set_days: Vec<i64>,
}

impl Chunk {
    /// The buffer of series (`meter`, `register`), created when new. `k` is
    /// where the previous lookup of this pass ended: a cursor's series come
    /// in order, so the search only moves forward.
    fn slot(&mut self, k: &mut usize, meter: &str, register: &str) -> usize {
        // Mostly the next series is the one the last lookup found or the
        // one after it.
        for i in *k..(*k + 2).min(self.keys.len()) {
            let (m, r, slot) = &self.keys[i];
            if m == meter && r == register {
                *k = i;
                return *slot;
            }
        }
        while *k < self.keys.len() && {
            let (m, r, _) = &self.keys[*k];
            (m.as_str(), r.as_str()) < (meter, register)
        } {
            *k += 1;
        }
        if let Some((m, r, slot)) = self.keys.get(*k) {
            if m == meter && r == register {
                return *slot;
            }
        }
        if self.used == self.series.len() {
            self.series.push(SeriesBuf::default());
        }
        let slot = self.used;
        self.used += 1;
        self.series[slot].reset(register);
        self.keys
            .insert(*k, (meter.to_owned(), register.to_owned(), slot));
        slot
    }

    /// Judges every series of the chunk, meter by meter, and empties it.
    fn judge<T>(
        &mut self,
        ctx: &Context,
        f: &impl Fn(&SeriesInput) -> T,
        out: &mut Vec<T>,
        seen: &mut Vec<String>,
    ) {
        let keys = std::mem::take(&mut self.keys);
        for meter in keys.chunk_by(|a, b| a.0 == b.0) {
            let id = meter[0].0.as_str();
            seen.push(id.to_owned());
            self.set_days.clear();
            for (_, _, slot) in meter {
                self.set_days
                    .extend_from_slice(&self.series[*slot].set_days);
            }
            self.set_days.sort_unstable();
            self.set_days.dedup();
            let replacements = ctx.registry.replacements(id);
            let entry = ctx.registry.latest(id);
            for (_, _, slot) in meter {
                let s = &mut self.series[*slot];
                let Some(medium) = s.medium else { continue };
                if s.set_date_only {
                    continue;
                }
                if !s.points.is_sorted_by_key(|p| p.ts) {
                    s.points.sort_by_key(|p| p.ts);
                }
                for p in &mut s.points {
                    p.decimals = s.decimals;
                }
                let setup = ctx.setup(id, medium, s.frame_counter);
                let interval = setup
                    .interval
                    .unwrap_or_else(|| s.first.interval(setup.medium));
                s.conflicts.sort_unstable();
                out.push(f(&SeriesInput {
                    meter_id: id,
                    register: Some(&s.register),
                    medium: setup.medium,
                    unit: Some(&s.unit),
                    group: entry.and_then(|e| e.group.as_deref()),
                    points: &s.points,
                    conflicts: &s.conflicts,
                    rules: SeriesRules {
                        cfg: &ctx.config,
                        medium: setup.medium,
                        interval,
                        seq_wrap: if setup.seq_wrap == 0 {
                            DEFAULT_SEQ_WRAP
                        } else {
                            setup.seq_wrap
                        },
                        set_days: &self.set_days,
                        replacements: &replacements,
                    },
                    service: ctx.registry.service_span(id),
                    in_registry: entry.is_some(),
                }));
            }
        }
        self.keys = keys;
        self.keys.clear();
        self.used = 0;
    }
}

#[cfg(test)]
mod tests;
