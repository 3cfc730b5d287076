//! The stage's state rebuilt from the sealed `readings` files: what a
//! start without a usable snapshot does.

use std::fs::File;
use std::path::{Path, PathBuf};

use super::alerts::engine::AlertEngine;
use super::dedup::SeriesIndex;
use super::is_series_reading;
use crate::continuity::live::LiveEngine;
use crate::continuity::sealed::{LookupError, SealedSeries};
use crate::continuity::series::Point;
use crate::continuity::Context;
use crate::reading::{fraction_digits, ReadingKind};

/// A sealed file that cannot be read back.
#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    #[error("opening {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("reading {path}: {source}")]
    Parquet {
        path: PathBuf,
        #[source]
        source: parquet::errors::ParquetError,
    },
    #[error(transparent)]
    Lookup(#[from] LookupError),
}

/// Adds every reading of a sealed `readings` file to the duplicate index and
/// the live continuity state (whose changes were sealed with the file).
pub(super) fn load_sealed_readings(
    path: &Path,
    index: &mut SeriesIndex,
    live: &mut LiveEngine,
    alerts: &mut AlertEngine,
    ctx: &Context,
    sealed: &mut dyn SealedSeries,
) -> Result<(), RebuildError> {
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Decimal128Type, Int64Type, TimestampMicrosecondType};
    use arrow_array::types::{UInt32Type, UInt64Type};
    use arrow_array::Array;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use parquet::arrow::ProjectionMask;

    let pq = |source| RebuildError::Parquet {
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(|source| RebuildError::Open {
        path: path.to_owned(),
        source,
    })?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(pq)?;
    let mask = ProjectionMask::columns(
        builder.parquet_schema(),
        [
            "meter_id",
            "register",
            "ts",
            "medium",
            "unit",
            "value",
            "value_decimal",
            "seq",
            "kind",
            "conflict",
            "received_at",
            "format",
            "receipt_seq",
            "reading_index",
        ],
    );
    let reader = builder
        .with_projection(mask)
        .with_batch_size(64 * 1024)
        .build()
        .map_err(pq)?;
    let mut latest: Option<LatestOfMeter> = None;
    for batch in reader {
        let batch = batch.map_err(|e| pq(e.into()))?;
        let col = |name: &str| {
            batch.column_by_name(name).ok_or_else(|| {
                pq(parquet::errors::ParquetError::General(format!(
                    "column {name} missing"
                )))
            })
        };
        let meter = col("meter_id")?.as_string::<i32>();
        let register = col("register")?.as_string::<i32>();
        let ts = col("ts")?.as_primitive::<TimestampMicrosecondType>();
        let medium = col("medium")?.as_string::<i32>();
        let unit = col("unit")?.as_string::<i32>();
        let text = col("value")?.as_string::<i32>();
        let value = col("value_decimal")?.as_primitive::<Decimal128Type>();
        let seq = col("seq")?.as_primitive::<UInt64Type>();
        let kind = col("kind")?.as_string::<i32>();
        let conflict = col("conflict")?.as_boolean();
        let received = col("received_at")?.as_primitive::<TimestampMicrosecondType>();
        let format = col("format")?.as_string::<i32>();
        let receipt = col("receipt_seq")?.as_primitive::<Int64Type>();
        let reading_index = col("reading_index")?.as_primitive::<UInt32Type>();
        for i in 0..batch.num_rows() {
            let (m, r) = (meter.value(i), register.value(i));
            let k = if kind.value(i) == "set_date" {
                // The gaps it re-judged were sealed with it: only the
                // state is rebuilt here.
                live.set_day(m, ts.value(i).div_euclid(crate::continuity::DAY), sealed)?;
                ReadingKind::SetDate
            } else {
                ReadingKind::Measured
            };
            index.restore(
                m,
                r,
                ts.value(i),
                value.value(i),
                unit.value(i),
                k == ReadingKind::SetDate,
            );
            if !is_series_reading(k, conflict.value(i)) {
                continue;
            }
            let Some(md) = crate::reading::Medium::parse(medium.value(i)) else {
                continue;
            };
            let lora = matches!(format.value(i), "chirpstack" | "tts");
            let point = Point {
                ts: ts.value(i),
                value: value.value(i),
                decimals: fraction_digits(text.value(i)),
                seq: (!seq.is_null(i)).then(|| seq.value(i)),
                received_at: received.value(i),
            };
            let key = (receipt.value(i) as u64, reading_index.value(i));
            live.observe(m, r, || ctx.setup(m, md, lora), point, key, sealed)?;
            // Rows are sorted by meter: the alert engine needs each
            // meter's latest time once per run of its rows (intervals
            // inferred meanwhile: at the commit's settle).
            match &mut latest {
                Some(l) if l.meter == m => {
                    l.ts = l.ts.max(point.ts);
                }
                _ => {
                    if let Some(l) = latest.take() {
                        l.tell(alerts);
                    }
                    latest = Some(LatestOfMeter {
                        meter: m.to_owned(),
                        ts: point.ts,
                        medium: md,
                        lora,
                    });
                }
            }
        }
    }
    if let Some(l) = latest {
        l.tell(alerts);
    }
    Ok(())
}

/// A meter's latest reading in a run of sealed rows, for the alert engine.
struct LatestOfMeter {
    meter: String,
    ts: i64,
    medium: crate::reading::Medium,
    lora: bool,
}

impl LatestOfMeter {
    fn tell(self, alerts: &mut AlertEngine) {
        alerts.observe_sealed(&self.meter, self.medium, self.lora, self.ts);
    }
}
