//! The catalog of the sealed readings: which files a scan reads (per date,
//! the newest compacted file and the readings files it does not hold, in
//! commit order), and what their footers say (rows, time range, each row
//! group's meter range). The scan itself is in `scan`.

use std::collections::HashSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::statistics::Statistics;

use super::ReportError;
use crate::reading::Medium;
use crate::store::tables::{GAPS, READINGS};
use crate::store::{commit, compact};

/// Rows each run adds to a chunk of meters at most (about: a chunk ends at
/// a meter boundary), so that a chunk of hundreds of runs stays in cache;
/// `GAPLESS_SCAN_CHUNK_ROWS` overrides it (to measure).
const CHUNK_ROWS_PER_RUN: usize = 512;

/// The sealed readings of a data directory: the files the commit log
/// names, in commit order, and what their footers say.
pub struct StoredReadings {
    pub(super) files: Vec<SortedRun>,
    /// The sealed `gaps` files, in commit order (what `gapless gaps` lists).
    pub(super) gap_files: Vec<PathBuf>,
    /// Rows each run adds to a chunk at most ([`CHUNK_ROWS_PER_RUN`]; tests
    /// vary it).
    pub(super) chunk_rows: usize,
    pub(super) rows: u64,
    time_range: Option<(i64, i64)>,
    /// Told the rows of each series a scan passes ([`Self::with_progress`]).
    pub(super) progress: Option<Arc<dyn Fn(u64) + Send + Sync>>,
}

/// What a long-lived reader keeps between [`StoredReadings::load_cached`]
/// calls: the commit log read so far and the footers of the runs it read
/// (sealed files never change).
#[derive(Default)]
pub(crate) struct LoadCache {
    log: commit::CommitLog,
    footers: std::collections::HashMap<PathBuf, Arc<Footer>>,
}

/// A readings file and, per row group, its first and last meter id (from
/// the footer's statistics): what lets a scan take a range of meters
/// without decoding the rest.
pub(super) struct SortedRun {
    pub(super) path: PathBuf,
    pub(super) row_groups: Vec<(String, String)>,
    /// The one medium of all its rows, if one (from the statistics).
    pub(super) medium: Option<Medium>,
}

impl StoredReadings {
    /// Lists the sorted runs and reads their footers: per date, its newest
    /// compacted file (`store::compact`) and the readings files that one
    /// does not hold, in commit order.
    pub fn load(data: &Path) -> Result<StoredReadings, ReportError> {
        StoredReadings::load_cached(data, &mut LoadCache::default())
    }

    /// [`load`](Self::load), reading only what changed since `cache` was
    /// last used: new commit manifests, footers of files not read before.
    pub(crate) fn load_cached(
        data: &Path,
        cache: &mut LoadCache,
    ) -> Result<StoredReadings, ReportError> {
        if !data.is_dir() {
            return Err(ReportError::NoData(data.to_owned()));
        }
        let compacted = compact::latest(data)?;
        let held: HashSet<&str> = compacted
            .values()
            .flat_map(|c| c.sources.iter().map(String::as_str))
            .collect();
        // (date, compacted first, commit order, path): date order keeps a
        // series' rows mostly in time order across runs.
        let mut paths: Vec<(String, bool, usize, &str)> = compacted
            .values()
            .map(|c| (c.date.clone(), false, 0, c.path.as_str()))
            .collect();
        let LoadCache { log, footers } = cache;
        let manifests = log.refresh(data)?;
        let mut gap_files = Vec::new();
        for f in manifests.iter().flat_map(|m| &m.files) {
            if f.table == GAPS {
                gap_files.push(data.join(&f.path));
            }
            if f.table == READINGS && !held.contains(f.path.as_str()) {
                let date = compact::date_of(&f.path).unwrap_or_default();
                paths.push((date.to_owned(), true, paths.len(), &f.path));
            }
        }
        paths.sort_unstable();
        let mut files = Vec::with_capacity(paths.len());
        let (mut rows, mut range): (u64, Option<(i64, i64)>) = (0, None);
        let mut used = HashSet::with_capacity(paths.len());
        for (_, _, _, rel) in paths {
            let path = data.join(rel);
            let f = match footers.get(&path) {
                Some(f) => f.clone(),
                None => {
                    let f = Arc::new(footer(&path)?);
                    footers.insert(path.clone(), f.clone());
                    f
                }
            };
            used.insert(path.clone());
            let (n, r, row_groups) = (f.0, f.1, f.2.clone());
            let medium = f.3.as_deref().and_then(Medium::parse);
            rows += n;
            range = match (range, r) {
                (Some((a, b)), Some((c, d))) => Some((a.min(c), b.max(d))),
                (x, y) => x.or(y),
            };
            files.push(SortedRun {
                path,
                row_groups,
                medium,
            });
        }
        // Files no longer read (their date was compacted) leave the cache.
        footers.retain(|p, _| used.contains(p));
        Ok(StoredReadings {
            files,
            gap_files,
            chunk_rows: std::env::var("GAPLESS_SCAN_CHUNK_ROWS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(CHUNK_ROWS_PER_RUN),
            rows,
            time_range: range,
            progress: None,
        })
    }

    /// Tells `progress` the rows (readings and conflicts) of each series
    /// that [`map_series`](Self::map_series) passes, from its threads: what
    /// a progress bar counts against [`len`](Self::len).
    pub(crate) fn with_progress(mut self, progress: impl Fn(u64) + Send + Sync + 'static) -> Self {
        self.progress = Some(Arc::new(progress));
        self
    }

    pub fn len(&self) -> usize {
        self.rows as usize
    }

    /// The sealed `gaps` files, in commit order.
    pub(crate) fn gap_files(&self) -> &[PathBuf] {
        &self.gap_files
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// The earliest and latest reading time (from the files' statistics).
    pub(crate) fn time_range(&self) -> Option<(i64, i64)> {
        self.time_range
    }

    /// The files a scan reads that may hold rows of any of `meters`
    /// (sorted), by their row groups' meter statistics: what a statement
    /// about those meters rests on.
    pub(crate) fn files_holding(&self, meters: &[&str]) -> Vec<&Path> {
        let holds = |first: &str, last: &str| {
            let i = meters.partition_point(|m| *m < first);
            meters.get(i).is_some_and(|m| *m <= last)
        };
        self.files
            .iter()
            .filter(|f| f.row_groups.iter().any(|(a, b)| holds(a, b)))
            .map(|f| f.path.as_path())
            .collect()
    }
}

/// Row count, `ts` range, per row group meter range and the one medium of
/// all its rows (if one) of a readings file, from its footer.
type Footer = (
    u64,
    Option<(i64, i64)>,
    Vec<(String, String)>,
    Option<String>,
);

fn footer(path: &Path) -> Result<Footer, ReportError> {
    let bad = |why: String| ReportError::Read {
        path: path.to_owned(),
        why,
    };
    let file = File::open(path).map_err(|e| bad(e.to_string()))?;
    let b = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| bad(e.to_string()))?;
    let meta = b.metadata();
    let column = |name: &str| {
        meta.file_metadata()
            .schema_descr()
            .columns()
            .iter()
            .position(|c| c.name() == name)
            .ok_or_else(|| bad(format!("no {name} column")))
    };
    let (ts_col, meter_col) = (column("ts")?, column("meter_id")?);
    let medium_col = column("medium")?;
    let mut range: Option<(i64, i64)> = None;
    let mut groups = Vec::new();
    // Some(m) while every row group so far holds medium m only.
    let mut medium: Option<Option<String>> = None;
    for rg in meta.row_groups() {
        let one = match rg.column(medium_col).statistics() {
            Some(Statistics::ByteArray(s)) => match (s.min_opt(), s.max_opt()) {
                (Some(lo), Some(hi)) if lo == hi => {
                    Some(String::from_utf8_lossy(lo.data()).into_owned())
                }
                _ => None,
            },
            _ => None,
        };
        medium = Some(match medium {
            None => one,
            Some(m) if m == one => m,
            Some(_) => None,
        });
        match rg.column(meter_col).statistics() {
            Some(Statistics::ByteArray(s)) => match (s.min_opt(), s.max_opt()) {
                (Some(lo), Some(hi)) => groups.push((
                    String::from_utf8_lossy(lo.data()).into_owned(),
                    String::from_utf8_lossy(hi.data()).into_owned(),
                )),
                _ => return Err(bad("no meter_id statistics".into())),
            },
            _ => return Err(bad("no meter_id statistics".into())),
        }
        match rg.column(ts_col).statistics() {
            Some(Statistics::Int64(s)) => {
                if let (Some(&lo), Some(&hi)) = (s.min_opt(), s.max_opt()) {
                    range = Some(range.map_or((lo, hi), |(a, b)| (a.min(lo), b.max(hi))));
                }
            }
            _ => return Err(bad("no statistics for ts".into())),
        }
    }
    Ok((
        meta.file_metadata().num_rows().max(0) as u64,
        range,
        groups,
        medium.flatten(),
    ))
}
