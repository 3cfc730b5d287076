//! The Parquet tables gapless writes: their Arrow schemas and row types.
//! `schemas/tables.md` documents every column; keep the two in step.

use std::sync::Arc;

use arrow_array::builder::{
    BinaryBuilder, BooleanBuilder, Decimal128Builder, Int64Builder, StringBuilder,
    TimestampMicrosecondBuilder, UInt32Builder, UInt64Builder, UInt8Builder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};

use crate::decode::Format;
pub use crate::ingest::rows::{Disposition, GapEvent, GapRow, ReadingRow, ReceiptRow, RejectRow};
use crate::reading::VALUE_SCALE;

/// Version of the table layouts, written into every file's footer.
pub(crate) const SCHEMA_VERSION: &str = "2";

/// Table names, which are also their directory names under DATA.
pub(crate) const RECEIPTS: &str = "receipts";
pub(crate) const READINGS: &str = "readings";
pub(crate) const REJECTS: &str = "rejects";

/// Microseconds since the epoch, UTC: every timestamp column.
pub(crate) fn ts_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

pub(crate) fn receipts_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("receipt_seq", DataType::Int64, false),
        Field::new("received_at", ts_type(), false),
        Field::new("topic", DataType::Utf8, false),
        Field::new("payload_sha256", DataType::Utf8, false),
        Field::new("payload_size", DataType::UInt32, false),
        Field::new("format", DataType::Utf8, true),
        Field::new("disposition", DataType::Utf8, false),
        Field::new("reason", DataType::Utf8, true),
        Field::new("readings_stored", DataType::UInt32, false),
        Field::new("readings_duplicate", DataType::UInt32, false),
        Field::new("readings_conflict", DataType::UInt32, false),
    ]))
}

pub(crate) fn readings_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("meter_id", DataType::Utf8, false),
        Field::new("register", DataType::Utf8, false),
        Field::new("ts", ts_type(), false),
        Field::new("medium", DataType::Utf8, false),
        Field::new("unit", DataType::Utf8, false),
        Field::new("value", DataType::Utf8, false),
        Field::new(
            "value_decimal",
            DataType::Decimal128(38, VALUE_SCALE as i8),
            false,
        ),
        Field::new("value_decimals", DataType::UInt8, false),
        Field::new("seq", DataType::UInt64, true),
        Field::new("kind", DataType::Utf8, false),
        Field::new("conflict", DataType::Boolean, false),
        Field::new("receipt_seq", DataType::Int64, false),
        Field::new("reading_index", DataType::UInt32, false),
        Field::new("received_at", ts_type(), false),
        Field::new("format", DataType::Utf8, false),
    ]))
}

pub(crate) fn rejects_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("receipt_seq", DataType::Int64, false),
        Field::new("received_at", ts_type(), false),
        Field::new("topic", DataType::Utf8, false),
        Field::new("format", DataType::Utf8, true),
        Field::new("reason", DataType::Utf8, false),
        Field::new("payload", DataType::Binary, false),
    ]))
}

fn batch(schema: SchemaRef, cols: Vec<ArrayRef>) -> RecordBatch {
    // The builders below produce exactly the schema's columns; a mismatch is a
    // programming error caught by the unit tests, not an input error.
    RecordBatch::try_new(schema, cols).expect("columns match their schema")
}

pub(crate) fn receipts_batch(rows: &[&ReceiptRow]) -> RecordBatch {
    let n = rows.len();
    let mut seq = Int64Builder::with_capacity(n);
    let mut recv = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut topic = StringBuilder::with_capacity(n, rows.iter().map(|r| r.topic.len()).sum());
    let mut sha = StringBuilder::with_capacity(n, 64 * n);
    let mut hex_buf = [0u8; 64];
    let mut size = UInt32Builder::with_capacity(n);
    let mut format = StringBuilder::new();
    let mut disp = StringBuilder::new();
    let mut reason = StringBuilder::new();
    let mut stored = UInt32Builder::with_capacity(n);
    let mut dup = UInt32Builder::with_capacity(n);
    let mut conflict = UInt32Builder::with_capacity(n);
    for r in rows {
        seq.append_value(r.seq as i64);
        recv.append_value(r.received_at);
        topic.append_value(&r.topic);
        hex::encode_to_slice(r.sha256, &mut hex_buf).expect("64 hex digits for 32 bytes");
        sha.append_value(std::str::from_utf8(&hex_buf).expect("hex digits are ASCII"));
        size.append_value(r.size);
        format.append_option(r.format.map(Format::as_str));
        disp.append_value(r.disposition.as_str());
        reason.append_option(r.reason.as_deref());
        stored.append_value(r.readings_stored);
        dup.append_value(r.readings_duplicate);
        conflict.append_value(r.readings_conflict);
    }
    batch(
        receipts_schema(),
        vec![
            Arc::new(seq.finish()),
            Arc::new(recv.finish()),
            Arc::new(topic.finish()),
            Arc::new(sha.finish()),
            Arc::new(size.finish()),
            Arc::new(format.finish()),
            Arc::new(disp.finish()),
            Arc::new(reason.finish()),
            Arc::new(stored.finish()),
            Arc::new(dup.finish()),
            Arc::new(conflict.finish()),
        ],
    )
}

/// One chunk of `readings` (the seal writes a row group's worth at a time).
/// String columns are sized up front: grown by doubling, they were copied
/// and page-faulted over and over.
pub fn readings_batch(rows: &[&ReadingRow]) -> RecordBatch {
    let n = rows.len();
    let sized = |len: fn(&ReadingRow) -> usize| {
        StringBuilder::with_capacity(n, rows.iter().map(|r| len(r)).sum())
    };
    let mut meter = sized(|r| r.reading.meter_id.as_str().len());
    let mut register = sized(|r| r.reading.register.len());
    let mut ts = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut medium = sized(|r| r.reading.medium.as_str().len());
    let mut unit = sized(|r| r.reading.unit.as_str().len());
    let mut value = sized(|r| r.reading.value.as_str().len());
    let mut dec = Decimal128Builder::with_capacity(n)
        .with_precision_and_scale(38, VALUE_SCALE as i8)
        .expect("38,9 is a valid decimal type");
    let mut decimals = UInt8Builder::with_capacity(n);
    let mut seq = UInt64Builder::with_capacity(n);
    let mut kind = sized(|r| r.reading.kind.as_str().len());
    let mut conflict = BooleanBuilder::with_capacity(n);
    let mut receipt = Int64Builder::with_capacity(n);
    let mut index = UInt32Builder::with_capacity(n);
    let mut recv = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut format = sized(|r| r.format.as_str().len());
    for r in rows {
        let rd = &r.reading;
        meter.append_value(rd.meter_id.as_str());
        register.append_value(&rd.register);
        ts.append_value(rd.ts_micros);
        medium.append_value(rd.medium.as_str());
        unit.append_value(rd.unit.as_str());
        value.append_value(rd.value.as_str());
        dec.append_value(rd.value.scaled());
        decimals.append_value(crate::reading::fraction_digits(rd.value.as_str()));
        seq.append_option(rd.seq);
        kind.append_value(rd.kind.as_str());
        conflict.append_value(r.conflict);
        receipt.append_value(r.receipt_seq as i64);
        index.append_value(r.reading_index);
        recv.append_value(r.received_at);
        format.append_value(r.format.as_str());
    }
    batch(
        readings_schema(),
        vec![
            Arc::new(meter.finish()),
            Arc::new(register.finish()),
            Arc::new(ts.finish()),
            Arc::new(medium.finish()),
            Arc::new(unit.finish()),
            Arc::new(value.finish()),
            Arc::new(dec.finish()),
            Arc::new(decimals.finish()),
            Arc::new(seq.finish()),
            Arc::new(kind.finish()),
            Arc::new(conflict.finish()),
            Arc::new(receipt.finish()),
            Arc::new(index.finish()),
            Arc::new(recv.finish()),
            Arc::new(format.finish()),
        ],
    )
}

pub(crate) fn rejects_batch(rows: &[&RejectRow]) -> RecordBatch {
    let n = rows.len();
    let mut seq = Int64Builder::with_capacity(n);
    let mut recv = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut topic = StringBuilder::new();
    let mut format = StringBuilder::new();
    let mut reason = StringBuilder::new();
    let mut payload = BinaryBuilder::new();
    for r in rows {
        seq.append_value(r.seq as i64);
        recv.append_value(r.received_at);
        topic.append_value(&r.topic);
        format.append_option(r.format.map(Format::as_str));
        reason.append_value(&r.reason);
        payload.append_value(&r.payload);
    }
    batch(
        rejects_schema(),
        vec![
            Arc::new(seq.finish()),
            Arc::new(recv.finish()),
            Arc::new(topic.finish()),
            Arc::new(format.finish()),
            Arc::new(reason.finish()),
            Arc::new(payload.finish()),
        ],
    )
}

/// Gaps found by the live engine as readings are sealed.
pub(crate) const GAPS: &str = "gaps";

pub(crate) fn gaps_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("meter_id", DataType::Utf8, false),
        Field::new("register", DataType::Utf8, false),
        Field::new("medium", DataType::Utf8, false),
        Field::new("event", DataType::Utf8, false),
        Field::new("gap_from", ts_type(), false),
        Field::new("gap_to", ts_type(), false),
        Field::new("duration_s", DataType::UInt64, false),
        Field::new("missing", DataType::UInt64, false),
        Field::new("seq_missing", DataType::UInt64, true),
        Field::new("from_value", DataType::Utf8, false),
        Field::new("to_value", DataType::Utf8, false),
        Field::new("consumption", DataType::Utf8, true),
        Field::new("closed_late", DataType::Boolean, false),
        Field::new("interval_s", DataType::UInt64, false),
        Field::new("interval_source", DataType::Utf8, false),
        Field::new("receipt_seq", DataType::Int64, false),
        Field::new("detected_at", ts_type(), false),
    ]))
}

pub(crate) fn gaps_batch(rows: &[&GapRow]) -> RecordBatch {
    use crate::reading::format_fixed;
    let n = rows.len();
    let mut meter = StringBuilder::new();
    let mut register = StringBuilder::new();
    let mut medium = StringBuilder::new();
    let mut event = StringBuilder::new();
    let mut from = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut to = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut duration = UInt64Builder::with_capacity(n);
    let mut missing = UInt64Builder::with_capacity(n);
    let mut seq_missing = UInt64Builder::with_capacity(n);
    let mut from_value = StringBuilder::new();
    let mut to_value = StringBuilder::new();
    let mut consumption = StringBuilder::new();
    let mut late = BooleanBuilder::with_capacity(n);
    let mut interval = UInt64Builder::with_capacity(n);
    let mut source = StringBuilder::new();
    let mut receipt = Int64Builder::with_capacity(n);
    let mut detected = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
    for r in rows {
        let g = &r.gap;
        let after = g.after.unwrap_or(g.before);
        let decimals = g.before.decimals.max(after.decimals);
        meter.append_value(&r.meter_id);
        register.append_value(&r.register);
        medium.append_value(r.medium.as_str());
        event.append_value(r.event.as_str());
        from.append_value(g.from);
        to.append_value(g.to);
        duration.append_value(((g.to - g.from) / 1_000_000).max(0) as u64);
        missing.append_value(g.missing);
        seq_missing.append_option(g.seq_missing);
        from_value.append_value(format_fixed(g.before.value, g.before.decimals));
        to_value.append_value(format_fixed(after.value, after.decimals));
        consumption.append_option(g.consumption.map(|c| format_fixed(c, decimals)));
        late.append_value(g.closed_late);
        interval.append_value((g.interval / 1_000_000).max(0) as u64);
        source.append_value(r.interval_source.as_str());
        receipt.append_value(r.receipt_seq as i64);
        detected.append_value(r.detected_at);
    }
    batch(
        gaps_schema(),
        vec![
            Arc::new(meter.finish()),
            Arc::new(register.finish()),
            Arc::new(medium.finish()),
            Arc::new(event.finish()),
            Arc::new(from.finish()),
            Arc::new(to.finish()),
            Arc::new(duration.finish()),
            Arc::new(missing.finish()),
            Arc::new(seq_missing.finish()),
            Arc::new(from_value.finish()),
            Arc::new(to_value.finish()),
            Arc::new(consumption.finish()),
            Arc::new(late.finish()),
            Arc::new(interval.finish()),
            Arc::new(source.finish()),
            Arc::new(receipt.finish()),
            Arc::new(detected.finish()),
        ],
    )
}
