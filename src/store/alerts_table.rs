//! The `alerts` table: what device teams were told, and when. Sealed by the
//! store in the same commit as the readings that caused each alert, and
//! entered in the audit ledger like every table (`schemas/tables.md`).

use std::path::Path;
use std::sync::Arc;

use arrow_array::builder::{
    BooleanBuilder, StringBuilder, TimestampMicrosecondBuilder, UInt64Builder,
};
use arrow_array::cast::AsArray;
use arrow_array::RecordBatch;
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::Value;

use crate::ingest::alerts::{Alert, AlertGap, AlertKind};
use crate::store::commit;
use crate::store::tables::ts_type;
use crate::time::parse_time;

pub(crate) const ALERTS: &str = "alerts";

pub(crate) fn alerts_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("alert_seq", DataType::UInt64, false),
        Field::new("raised_at", ts_type(), false),
        Field::new("kind", DataType::Utf8, false),
        Field::new("state", DataType::Utf8, false),
        Field::new("subject", DataType::Utf8, false),
        Field::new("meter_id", DataType::Utf8, true),
        Field::new("group", DataType::Utf8, true),
        Field::new("closes", DataType::UInt64, true),
        Field::new("last_reading_at", ts_type(), true),
        Field::new("deadline", ts_type(), true),
        Field::new("gap_from", ts_type(), true),
        Field::new("gap_to", ts_type(), true),
        Field::new("missing", DataType::UInt64, true),
        Field::new("consumption_exact", DataType::Boolean, true),
        Field::new("count", DataType::UInt64, true),
        Field::new("message", DataType::Utf8, false),
        Field::new("json", DataType::Utf8, false),
    ]))
}

pub(crate) fn alerts_batch(rows: &[&Alert]) -> RecordBatch {
    let n = rows.len();
    let ts = || TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut seq = UInt64Builder::with_capacity(n);
    let mut raised = ts();
    let mut kind = StringBuilder::new();
    let mut state = StringBuilder::new();
    let mut subject = StringBuilder::new();
    let mut meter = StringBuilder::new();
    let mut group = StringBuilder::new();
    let mut closes = UInt64Builder::with_capacity(n);
    let mut last = ts();
    let mut deadline = ts();
    let mut gap_from = ts();
    let mut gap_to = ts();
    let mut missing = UInt64Builder::with_capacity(n);
    let mut exact = BooleanBuilder::with_capacity(n);
    let mut count = UInt64Builder::with_capacity(n);
    let mut message = StringBuilder::new();
    let mut json = StringBuilder::new();
    for a in rows {
        seq.append_value(a.seq);
        raised.append_value(a.raised_at);
        kind.append_value(a.kind.as_str());
        state.append_value(a.kind.state());
        subject.append_value(&a.subject);
        meter.append_option(a.meter_id.as_deref());
        group.append_option(a.group.as_deref());
        closes.append_option(a.closes);
        last.append_option(a.last_reading_at);
        deadline.append_option(a.deadline);
        gap_from.append_option(a.gap.as_ref().map(|g| g.from));
        gap_to.append_option(a.gap.as_ref().map(|g| g.to));
        missing.append_option(a.gap.as_ref().map(|g| g.missing));
        exact.append_option(a.gap.as_ref().and_then(|g| g.consumption_exact));
        count.append_option(a.count);
        message.append_value(&a.message);
        json.append_value(a.to_json().to_string());
    }
    RecordBatch::try_new(
        alerts_schema(),
        vec![
            Arc::new(seq.finish()),
            Arc::new(raised.finish()),
            Arc::new(kind.finish()),
            Arc::new(state.finish()),
            Arc::new(subject.finish()),
            Arc::new(meter.finish()),
            Arc::new(group.finish()),
            Arc::new(closes.finish()),
            Arc::new(last.finish()),
            Arc::new(deadline.finish()),
            Arc::new(gap_from.finish()),
            Arc::new(gap_to.finish()),
            Arc::new(missing.finish()),
            Arc::new(exact.finish()),
            Arc::new(count.finish()),
            Arc::new(message.finish()),
            Arc::new(json.finish()),
        ],
    )
    .expect("alerts columns match their schema")
}

impl Alert {
    /// Reads back the JSON of [`Alert::to_json`].
    pub(crate) fn from_json(v: &Value) -> Result<Alert, String> {
        let s = |k: &str| v.get(k).and_then(Value::as_str);
        let parse = |t: &str| parse_time(t).map_err(|e| e.to_string());
        let t = |k: &str| -> Result<Option<i64>, String> { s(k).map(parse).transpose() };
        let u = |k: &str| v.get(k).and_then(Value::as_u64);
        let kind = s("kind")
            .and_then(AlertKind::parse)
            .ok_or_else(|| format!("unknown alert kind in {v}"))?;
        let gap = match v.get("gap") {
            Some(g) if g.is_object() => Some(AlertGap {
                register: g.get("register").and_then(Value::as_str).map(str::to_owned),
                from: g
                    .get("from")
                    .and_then(Value::as_str)
                    .map(parse)
                    .transpose()?
                    .unwrap_or_default(),
                to: g
                    .get("to")
                    .and_then(Value::as_str)
                    .map(parse)
                    .transpose()?
                    .unwrap_or_default(),
                missing: g.get("missing").and_then(Value::as_u64).unwrap_or_default(),
                consumption_exact: g.get("consumption_exact").and_then(Value::as_bool),
            }),
            _ => None,
        };
        Ok(Alert {
            seq: u("alert_seq").ok_or("alert without alert_seq")?,
            kind,
            subject: s("subject").unwrap_or_default().to_owned(),
            raised_at: t("raised_at")?.ok_or("alert without raised_at")?,
            meter_id: s("meter_id").map(str::to_owned),
            group: s("group").map(str::to_owned),
            closes: u("closes"),
            last_reading_at: t("last_reading_at")?,
            deadline: t("deadline")?,
            gap,
            count: u("count"),
            members: v
                .get("members")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
            message: s("message").unwrap_or_default().to_owned(),
        })
    }
}

/// One sealed alert: as the engine sees it, and the JSON the sinks sent.
#[derive(Debug, Clone)]
pub struct Told {
    pub alert: Alert,
    pub json: String,
}

/// Every sealed alert of the data directory, in `seq` order (the committed
/// files of the `alerts` table).
pub(crate) fn read_told(data: &Path) -> Result<Vec<Told>, String> {
    let mut paths = Vec::new();
    for m in commit::read_all(data).map_err(|e| e.to_string())? {
        for f in m.files.iter().filter(|f| f.table == ALERTS) {
            paths.push(data.join(&f.path));
        }
    }
    read_files(&paths)
}

/// The alerts of these sealed files, in `seq` order.
pub(crate) fn read_files(paths: &[std::path::PathBuf]) -> Result<Vec<Told>, String> {
    let mut out = Vec::new();
    for p in paths {
        out.extend(read_file(p)?);
    }
    out.sort_by_key(|t| t.alert.seq);
    Ok(out)
}

/// Which alerts to list.
#[derive(Debug, Clone, Default)]
pub struct AlertFilter {
    /// Only conditions not closed yet.
    pub open: bool,
    pub kind: Option<AlertKind>,
    pub subject: Option<String>,
    /// Raised in [from, to).
    pub from: Option<i64>,
    pub to: Option<i64>,
}

/// The alerts `filter` selects, in `seq` order.
pub fn select<'a>(told: &'a [Told], filter: &AlertFilter) -> Vec<&'a Told> {
    let closed: std::collections::HashSet<u64> =
        told.iter().filter_map(|t| t.alert.closes).collect();
    told.iter()
        .filter(|t| !filter.open || (t.alert.kind.opens() && !closed.contains(&t.alert.seq)))
        .filter(|t| filter.kind.is_none_or(|k| t.alert.kind == k))
        .filter(|t| {
            filter
                .subject
                .as_ref()
                .is_none_or(|x| &t.alert.subject == x)
        })
        .filter(|t| filter.from.is_none_or(|f| t.alert.raised_at >= f))
        .filter(|t| filter.to.is_none_or(|x| t.alert.raised_at < x))
        .collect()
}

/// The alerts of one sealed file.
pub(crate) fn read_file(path: &Path) -> Result<Vec<Told>, String> {
    let err = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    let file = std::fs::File::open(path).map_err(|e| err(&e))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|b| b.build())
        .map_err(|e| err(&e))?;
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| err(&e))?;
        let col = batch
            .column_by_name("json")
            .ok_or_else(|| err(&"no json column"))?
            .as_string::<i32>();
        for j in col.iter().flatten() {
            let v: Value = serde_json::from_str(j).map_err(|e| err(&e))?;
            out.push(Told {
                alert: Alert::from_json(&v).map_err(|e| err(&e))?,
                json: j.to_owned(),
            });
        }
    }
    Ok(out)
}
