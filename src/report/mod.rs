//! Queries over what the store committed: the outage-window report, the gap
//! listing and estimates, shared by the CLI (and the API). Reads the sealed
//! `readings` files the commit log names, groups their rows by meter and
//! series in time order, and applies the [`continuity`](crate::continuity)
//! rules. Rendering (table, JSON, CSV, Parquet) lives here too.
//!
//! - `catalog`: which sealed files a scan reads, and what their footers
//!   say ([`StoredReadings`], [`LoadCache`]).
//! - [`scan`]: streams the sealed readings series by series.
//! - [`gap_list`]: `gapless gaps`: the gaps the live engine sealed.
//! - [`coverage`]: per series and time bucket, readings received against
//!   expected (the dashboard's meters × time picture).
//! - [`certificate`]: the outage certificate, one printable page per
//!   window and registry group (`--format html`, `/api/v1/certificate`);
//!   rendered by `certificate_html` with `certificate.css`.

mod catalog;
pub mod certificate;
mod certificate_html;
pub mod coverage;
pub mod gap_list;
pub mod scan;

pub(crate) use certificate_html::document as certificate_document;

pub(crate) use catalog::{LoadCache, StoredReadings};
pub use gap_list::gaps;
pub(crate) use gap_list::{gaps_json, gaps_text, GapFilter};

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::builder::{
    BooleanBuilder, Decimal128Builder, StringBuilder, TimestampMicrosecondBuilder, UInt64Builder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use parquet::file::metadata::KeyValue;
use serde::Serialize;

use crate::continuity::estimate::{self, METHOD_LINEAR};
use crate::continuity::series::analyze;
use crate::continuity::window::{self, MeterRow, OutageReport, Status, Window};
use crate::continuity::Context;
use crate::layout::REPORTS_DIR;
use crate::reading::{format_fixed, Medium, VALUE_SCALE};
use crate::store::ledger::{AuditKey, Ledger};
use crate::store::tables::SCHEMA_VERSION;
use crate::store::{commit, write_parquet, StoreError};
use crate::time::format_micros;

/// Anomalous meters listed in the table format (each needs a look)...
const TABLE_ATTENTION_ROWS: usize = 40;
/// ...and examples of each other status that needs attention.
const TABLE_ROWS_PER_STATUS: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("data directory {0} does not exist")]
    NoData(PathBuf),
    #[error("reading {path}: {why}")]
    Read { path: PathBuf, why: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Commit(#[from] commit::CommitError),
}

/// Which meters a report covers.
#[derive(Debug, Clone, Default)]
pub struct ReportFilter {
    pub medium: Option<Medium>,
    /// Applied to the listed meters only: the summary covers every meter.
    pub status: Option<Status>,
}

/// The outage-window report over the stored readings.
pub(crate) fn outage_report(
    stored: &StoredReadings,
    ctx: &Context,
    window: Window,
    filter: &ReportFilter,
) -> Result<OutageReport, ReportError> {
    let rows = stored.map_series(ctx, |s| {
        if filter.medium.is_some_and(|m| m != s.medium) {
            return None;
        }
        window::evaluate(s, window)
    })?;
    Ok(filtered_report(
        window,
        rows.into_iter().flatten().collect(),
        &ReportFilter {
            medium: None,
            status: filter.status,
        },
    ))
}

/// Every series' row for the window, unfiltered: what [`filtered_report`]
/// makes any report of that window from (the API keeps it between
/// requests).
pub(crate) fn window_rows(
    stored: &StoredReadings,
    ctx: &Context,
    window: Window,
) -> Result<Vec<MeterRow>, ReportError> {
    let rows = stored.map_series(ctx, |s| window::evaluate(s, window))?;
    Ok(rows.into_iter().flatten().collect())
}

/// The report of `filter` from a window's rows: the medium selects the
/// rows the summary counts, the status only the rows listed.
pub(crate) fn filtered_report(
    window: Window,
    rows: Vec<MeterRow>,
    filter: &ReportFilter,
) -> OutageReport {
    let rows = match filter.medium {
        Some(m) => rows.into_iter().filter(|r| r.medium == m).collect(),
        None => rows,
    };
    let mut report = window::assemble(window, rows);
    if let Some(st) = filter.status {
        report.meters.retain(|r| r.status == st);
    }
    report
}

/// One estimated value (never mixed with measured rows).
#[derive(Debug, Clone, PartialEq)]
pub struct EstimateRow {
    pub meter_id: String,
    pub register: String,
    pub medium: Medium,
    pub unit: String,
    pub ts: i64,
    pub value: i128,
    pub decimals: u8,
    pub gap_from: i64,
    pub gap_to: i64,
}

/// Estimates for the missing slots of closed gaps touching the window.
pub fn estimates(
    stored: &StoredReadings,
    ctx: &Context,
    window: Window,
) -> Result<Vec<EstimateRow>, ReportError> {
    let per_series = stored.map_series(ctx, |s| {
        let mut out = Vec::new();
        let (Some(register), Some(unit)) = (s.register, s.unit) else {
            return out;
        };
        for gap in analyze(s.points, &s.rules, None).gaps {
            if gap.to <= window.from || gap.from >= window.to {
                continue;
            }
            let Some(after) = gap.after else { continue };
            let Ok(est) =
                estimate::interpolate(&gap, &gap.before, &after, ctx.config.max_estimate_gap)
            else {
                continue;
            };
            out.extend(
                est.into_iter()
                    .filter(|e| e.ts >= window.from && e.ts < window.to)
                    .map(|e| EstimateRow {
                        meter_id: s.meter_id.to_owned(),
                        register: register.to_owned(),
                        medium: s.medium,
                        unit: unit.to_owned(),
                        ts: e.ts,
                        value: e.value,
                        decimals: e.decimals,
                        gap_from: gap.from,
                        gap_to: gap.to,
                    }),
            );
        }
        out
    })?;
    Ok(per_series.into_iter().flatten().collect())
}

// ---------------------------------------------------------------- rendering

fn consumption_text(r: &MeterRow) -> Option<String> {
    r.consumption
        .map(|c| format_fixed(c, r.consumption_decimals))
}

/// The report as JSON (`schemas/report.schema.json`), fields in a fixed order.
#[derive(Debug, Serialize)]
pub(crate) struct ReportJson {
    pub window: WindowJson,
    pub summary: window::Summary,
    pub meters: Vec<MeterJson>,
    /// Files written under DATA/reports/ (set by the CLI).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<String>,
}

#[derive(Debug, Serialize)]
pub(crate) struct WindowJson {
    pub from: String,
    pub to: String,
}

#[derive(Debug, Serialize)]
pub(crate) struct MeterJson {
    pub meter_id: String,
    pub register: Option<String>,
    pub medium: &'static str,
    pub status: &'static str,
    pub expected: u64,
    pub received: u64,
    pub late: u64,
    pub missing: u64,
    pub gaps: u64,
    pub longest_gap_s: u64,
    pub opening_value: Option<String>,
    pub closing_value: Option<String>,
    pub consumption: Option<String>,
    pub consumption_exact: bool,
    pub interval_s: u64,
    pub interval_source: &'static str,
    pub opening_ts: Option<String>,
    pub closing_ts: Option<String>,
    pub seq_missing: Option<u64>,
    pub unit: Option<String>,
    pub group: Option<String>,
    pub conflicts: u64,
    pub notes: Vec<String>,
}

pub(crate) fn report_json(rep: &OutageReport) -> ReportJson {
    let value = |v: Option<window::ValueAt>| v.map(|v| format_fixed(v.value, v.decimals));
    let ts = |v: Option<window::ValueAt>| v.map(|v| format_micros(v.ts));
    ReportJson {
        window: WindowJson {
            from: format_micros(rep.window.from),
            to: format_micros(rep.window.to),
        },
        summary: rep.summary,
        meters: rep
            .meters
            .iter()
            .map(|r| MeterJson {
                meter_id: r.meter_id.clone(),
                register: r.register.clone(),
                medium: r.medium.as_str(),
                status: r.status.as_str(),
                expected: r.expected,
                received: r.received,
                late: r.late,
                missing: r.missing,
                gaps: r.gaps,
                longest_gap_s: r.longest_gap_s,
                opening_value: value(r.opening),
                closing_value: value(r.closing),
                consumption: consumption_text(r),
                consumption_exact: r.consumption_exact,
                interval_s: r.interval_s,
                interval_source: r.interval_source.as_str(),
                opening_ts: ts(r.opening),
                closing_ts: ts(r.closing),
                seq_missing: r.seq_missing,
                unit: r.unit.clone(),
                group: r.group.clone(),
                conflicts: r.conflicts,
                notes: r.notes.clone(),
            })
            .collect(),
        files: Vec::new(),
    }
}

const REPORT_CSV_HEADER: &str = "meter_id,register,medium,unit,group,status,expected,received,late,missing,gaps,seq_missing,longest_gap_s,opening_ts,opening_value,closing_ts,closing_value,consumption,consumption_exact,interval_s,interval_source,conflicts,notes";

/// Quotes a CSV field when it needs it (RFC 4180).
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// The report's meters as CSV, one line per meter and register.
pub(crate) fn report_csv(rep: &OutageReport) -> String {
    let mut out = String::from(REPORT_CSV_HEADER);
    out.push('\n');
    let opt = |v: Option<String>| v.unwrap_or_default();
    for r in &rep.meters {
        let fields = [
            r.meter_id.clone(),
            opt(r.register.clone()),
            r.medium.as_str().to_owned(),
            opt(r.unit.clone()),
            opt(r.group.clone()),
            r.status.as_str().to_owned(),
            r.expected.to_string(),
            r.received.to_string(),
            r.late.to_string(),
            r.missing.to_string(),
            r.gaps.to_string(),
            opt(r.seq_missing.map(|v| v.to_string())),
            r.longest_gap_s.to_string(),
            opt(r.opening.map(|v| format_micros(v.ts))),
            opt(r.opening.map(|v| format_fixed(v.value, v.decimals))),
            opt(r.closing.map(|v| format_micros(v.ts))),
            opt(r.closing.map(|v| format_fixed(v.value, v.decimals))),
            opt(consumption_text(r)),
            r.consumption_exact.to_string(),
            r.interval_s.to_string(),
            r.interval_source.as_str().to_owned(),
            r.conflicts.to_string(),
            r.notes.join("; "),
        ];
        let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
        out.push_str(&line.join(","));
        out.push('\n');
    }
    out
}

/// What a person reads first: the summary by status and medium, then the
/// meters that need attention, worst first.
pub(crate) fn report_table(rep: &OutageReport) -> String {
    let mut out = String::new();
    let s = &rep.summary;
    let _ = writeln!(
        out,
        "Outage window {} .. {}",
        format_micros(rep.window.from),
        format_micros(rep.window.to)
    );
    let _ = writeln!(
        out,
        "{} meter registers: {} complete, {} bridged, {} open, {} silent, {} anomalous",
        s.meters, s.complete, s.bridged, s.open, s.silent, s.anomalous
    );
    let _ = writeln!(
        out,
        "readings: {} expected, {} received ({} late), {} missing\n",
        s.expected, s.received, s.late, s.missing
    );
    let mut by_medium: BTreeMap<&str, window::Summary> = BTreeMap::new();
    for r in &rep.meters {
        by_medium.entry(r.medium.as_str()).or_default().add(r);
    }
    let _ = writeln!(
        out,
        "{:<11} {:>8} {:>9} {:>8} {:>7} {:>7} {:>9} {:>10} {:>9}",
        "medium",
        "meters",
        "complete",
        "bridged",
        "open",
        "silent",
        "anomalous",
        "received",
        "missing"
    );
    for (m, t) in &by_medium {
        let _ = writeln!(
            out,
            "{:<11} {:>8} {:>9} {:>8} {:>7} {:>7} {:>9} {:>10} {:>9}",
            m,
            t.meters,
            t.complete,
            t.bridged,
            t.open,
            t.silent,
            t.anomalous,
            t.received,
            t.missing
        );
    }
    let attention = rep
        .meters
        .iter()
        .filter(|r| r.status != Status::Complete)
        .count();
    if attention == 0 {
        let _ = writeln!(out, "\nNo meter needs attention: nothing is missing.");
        return out;
    }
    let _ = writeln!(
        out,
        "\nNeeds attention: {attention} meter registers, worst first"
    );
    let _ = writeln!(
        out,
        "{:<10} {:<16} {:<20} {:>8} {:>12} {:>14} {:>5}  note",
        "status", "meter", "register", "missing", "longest gap", "consumption", "exact"
    );
    for status in [
        Status::Anomalous,
        Status::Silent,
        Status::Open,
        Status::Bridged,
    ] {
        let mut rows: Vec<&MeterRow> = rep.meters.iter().filter(|r| r.status == status).collect();
        rows.sort_by_key(|r| std::cmp::Reverse(r.missing));
        let shown = if status == Status::Anomalous {
            TABLE_ATTENTION_ROWS
        } else {
            TABLE_ROWS_PER_STATUS
        };
        for r in rows.iter().take(shown) {
            let _ = writeln!(
                out,
                "{:<10} {:<16} {:<20} {:>8} {:>12} {:>14} {:>5}  {}",
                r.status.as_str(),
                r.meter_id,
                r.register.as_deref().unwrap_or("-"),
                r.missing,
                human_duration(r.longest_gap_s),
                consumption_text(r).unwrap_or_else(|| "-".into()),
                if r.consumption_exact { "yes" } else { "no" },
                r.notes.first().map(String::as_str).unwrap_or("")
            );
        }
        if rows.len() > shown {
            let _ = writeln!(
                out,
                "{:<10} ... and {} more (--status {status} --format csv lists them all)",
                "",
                rows.len() - shown
            );
        }
    }
    out
}

pub(crate) fn human_duration(s: u64) -> String {
    match s {
        0 => "-".into(),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86_400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        s => format!("{}d{:02}h", s / 86_400, s % 86_400 / 3600),
    }
}

// ------------------------------------------------------------------ Parquet

fn ts_field(name: &str, nullable: bool) -> Field {
    Field::new(
        name,
        DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        nullable,
    )
}

/// Writes the report (and estimates, if any) under `DATA/reports/`.
/// Returns the paths written. File names carry the window and the
/// generation time, so reports are never overwritten.
/// Each file is entered in the audit ledger (signed with the data
/// directory's key, or `audit_key`).
pub(crate) fn write_report_parquet(
    data: &Path,
    rep: &OutageReport,
    estimates: Option<&[EstimateRow]>,
    generated_at: i64,
    audit_key: Option<&Path>,
) -> Result<Vec<PathBuf>, ReportError> {
    let dir = data.join(REPORTS_DIR);
    std::fs::create_dir_all(&dir).map_err(|e| ReportError::Read {
        path: dir.clone(),
        why: e.to_string(),
    })?;
    let stamp = |t: i64| crate::time::format_basic(t, false);
    let generated = crate::time::format_basic(generated_at, true);
    let base = format!(
        "report_{}_{}_{generated}",
        stamp(rep.window.from),
        stamp(rep.window.to),
    );
    let meta = |table: &str| {
        vec![
            KeyValue::new("gapless.table".into(), table.to_string()),
            KeyValue::new("gapless.schema_version".into(), SCHEMA_VERSION.to_string()),
            KeyValue::new("gapless.window_from".into(), format_micros(rep.window.from)),
            KeyValue::new("gapless.window_to".into(), format_micros(rep.window.to)),
        ]
    };
    let ledger = Ledger::open(data).map_err(StoreError::from)?;
    let key = AuditKey::load_or_create(data, audit_key).map_err(StoreError::from)?;
    let mut writer = ledger.writer().map_err(StoreError::from)?;
    let first_index = writer.next_index();
    let sealed_at = format_micros(generated_at);
    let mut files = vec![(
        format!("{base}.parquet"),
        "reports",
        report_batch(rep, generated_at),
    )];
    if let Some(est) = estimates {
        files.push((
            format!("{base}.estimates.parquet"),
            "estimates",
            estimates_batch(est),
        ));
    }
    let mut written = Vec::new();
    let mut entries = Vec::new();
    for (index, (name, table, batch)) in (first_index..).zip(files) {
        let path = dir.join(&name);
        let facts = write_parquet(&path, [batch], meta(table), Some(index))?;
        let rel = format!("{REPORTS_DIR}/{name}");
        entries.push(facts.entry(index, table, &rel, None, &sealed_at));
        written.push(path);
    }
    crate::layout::sync_dir(&dir).map_err(StoreError::from)?;
    for e in &entries {
        writer.append(e).map_err(StoreError::from)?;
    }
    writer.checkpoint(&key).map_err(StoreError::from)?;
    Ok(written)
}

fn report_batch(rep: &OutageReport, generated_at: i64) -> RecordBatch {
    let n = rep.meters.len();
    let schema = Arc::new(Schema::new(vec![
        ts_field("window_from", false),
        ts_field("window_to", false),
        ts_field("generated_at", false),
        Field::new("meter_id", DataType::Utf8, false),
        Field::new("register", DataType::Utf8, true),
        Field::new("medium", DataType::Utf8, false),
        Field::new("status", DataType::Utf8, false),
        Field::new("expected", DataType::UInt64, false),
        Field::new("received", DataType::UInt64, false),
        Field::new("late", DataType::UInt64, false),
        Field::new("missing", DataType::UInt64, false),
        Field::new("gaps", DataType::UInt64, false),
        Field::new("seq_missing", DataType::UInt64, true),
        Field::new("longest_gap_s", DataType::UInt64, false),
        ts_field("opening_ts", true),
        Field::new("opening_value", DataType::Utf8, true),
        ts_field("closing_ts", true),
        Field::new("closing_value", DataType::Utf8, true),
        Field::new("consumption", DataType::Utf8, true),
        Field::new(
            "consumption_decimal",
            DataType::Decimal128(38, VALUE_SCALE as i8),
            true,
        ),
        Field::new("consumption_exact", DataType::Boolean, false),
        Field::new("interval_s", DataType::UInt64, false),
        Field::new("interval_source", DataType::Utf8, false),
        Field::new("conflicts", DataType::UInt64, false),
        Field::new("notes", DataType::Utf8, true),
    ]));
    let ts_col = |f: &dyn Fn(&MeterRow) -> Option<i64>| -> ArrayRef {
        let mut b = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
        for r in &rep.meters {
            b.append_option(f(r));
        }
        Arc::new(b.finish())
    };
    let str_col = |f: &dyn Fn(&MeterRow) -> Option<String>| -> ArrayRef {
        let mut b = StringBuilder::new();
        for r in &rep.meters {
            b.append_option(f(r));
        }
        Arc::new(b.finish())
    };
    let u64_col = |f: &dyn Fn(&MeterRow) -> Option<u64>| -> ArrayRef {
        let mut b = UInt64Builder::with_capacity(n);
        for r in &rep.meters {
            b.append_option(f(r));
        }
        Arc::new(b.finish())
    };
    let mut dec = Decimal128Builder::with_capacity(n)
        .with_precision_and_scale(38, VALUE_SCALE as i8)
        .expect("38,9 is a valid decimal type");
    let mut exact = BooleanBuilder::with_capacity(n);
    for r in &rep.meters {
        dec.append_option(r.consumption);
        exact.append_value(r.consumption_exact);
    }
    let cols: Vec<ArrayRef> = vec![
        ts_col(&|_| Some(rep.window.from)),
        ts_col(&|_| Some(rep.window.to)),
        ts_col(&|_| Some(generated_at)),
        str_col(&|r| Some(r.meter_id.clone())),
        str_col(&|r| r.register.clone()),
        str_col(&|r| Some(r.medium.as_str().into())),
        str_col(&|r| Some(r.status.as_str().into())),
        u64_col(&|r| Some(r.expected)),
        u64_col(&|r| Some(r.received)),
        u64_col(&|r| Some(r.late)),
        u64_col(&|r| Some(r.missing)),
        u64_col(&|r| Some(r.gaps)),
        u64_col(&|r| r.seq_missing),
        u64_col(&|r| Some(r.longest_gap_s)),
        ts_col(&|r| r.opening.map(|v| v.ts)),
        str_col(&|r| r.opening.map(|v| format_fixed(v.value, v.decimals))),
        ts_col(&|r| r.closing.map(|v| v.ts)),
        str_col(&|r| r.closing.map(|v| format_fixed(v.value, v.decimals))),
        str_col(&|r| consumption_text(r)),
        Arc::new(dec.finish()),
        Arc::new(exact.finish()),
        u64_col(&|r| Some(r.interval_s)),
        str_col(&|r| Some(r.interval_source.as_str().into())),
        u64_col(&|r| Some(r.conflicts)),
        str_col(&|r| (!r.notes.is_empty()).then(|| r.notes.join("; "))),
    ];
    RecordBatch::try_new(schema, cols).expect("columns match their schema")
}

fn estimates_batch(rows: &[EstimateRow]) -> RecordBatch {
    let n = rows.len();
    let schema = Arc::new(Schema::new(vec![
        Field::new("meter_id", DataType::Utf8, false),
        Field::new("register", DataType::Utf8, false),
        ts_field("ts", false),
        Field::new("medium", DataType::Utf8, false),
        Field::new("unit", DataType::Utf8, false),
        Field::new("value", DataType::Utf8, false),
        Field::new(
            "value_decimal",
            DataType::Decimal128(38, VALUE_SCALE as i8),
            false,
        ),
        Field::new("quality", DataType::Utf8, false),
        Field::new("method", DataType::Utf8, false),
        ts_field("gap_from", false),
        ts_field("gap_to", false),
    ]));
    let mut meter = StringBuilder::new();
    let mut register = StringBuilder::new();
    let mut ts = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut medium = StringBuilder::new();
    let mut unit = StringBuilder::new();
    let mut value = StringBuilder::new();
    let mut dec = Decimal128Builder::with_capacity(n)
        .with_precision_and_scale(38, VALUE_SCALE as i8)
        .expect("38,9 is a valid decimal type");
    let mut quality = StringBuilder::new();
    let mut method = StringBuilder::new();
    let mut gfrom = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut gto = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
    for r in rows {
        meter.append_value(&r.meter_id);
        register.append_value(&r.register);
        ts.append_value(r.ts);
        medium.append_value(r.medium.as_str());
        unit.append_value(&r.unit);
        value.append_value(format_fixed(r.value, r.decimals));
        dec.append_value(r.value);
        quality.append_value("estimated");
        method.append_value(METHOD_LINEAR);
        gfrom.append_value(r.gap_from);
        gto.append_value(r.gap_to);
    }
    let cols: Vec<ArrayRef> = vec![
        Arc::new(meter.finish()),
        Arc::new(register.finish()),
        Arc::new(ts.finish()),
        Arc::new(medium.finish()),
        Arc::new(unit.finish()),
        Arc::new(value.finish()),
        Arc::new(dec.finish()),
        Arc::new(quality.finish()),
        Arc::new(method.finish()),
        Arc::new(gfrom.finish()),
        Arc::new(gto.finish()),
    ];
    RecordBatch::try_new(schema, cols).expect("columns match their schema")
}
