//! What `audit verify` cannot go below: `cargo bench --bench audit`.
//!
//! Every sealed row is hashed as an RFC 6962 leaf and every pair of
//! subtrees as a node (`schemas/AUDIT.md`), so verifying a file costs at
//! least one leaf hash per row and one node hash per row (n − 1 nodes for n
//! rows), whatever else it does. This measures, per `readings` row of the
//! shape the service writes (152 canonical bytes):
//! - `leaf_hash`: the leaf hash of one already encoded row;
//! - `node_hash`: one interior node;
//! - `row_hashes`: canonical encoding and leaf hash, from an Arrow batch
//!   (one `RowHasher` kept across batches, as `audit verify` does);
//! - `row_hashes_dictionary`: the same from string columns read as
//!   dictionaries, as `audit verify` reads dictionary-encoded Parquet;
//! - `merkle_root`: the tree over a file's row hashes.
//!
//! Elements are rows, so the reported rate is rows/s on one core.

mod support;

use support::RECEIVED_AT;

use std::hint::black_box;

use arrow_array::builder::StringDictionaryBuilder;
use arrow_array::cast::AsArray;
use arrow_array::types::Int32Type;
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use gapless::decode::{decode, DecodeConfig, Format};
use gapless::store::canonical::{
    encode_row, leaf_hash, merkle_root, node_hash, row_hashes, RowHasher,
};
use gapless::store::tables::{readings_batch, ReadingRow};
use std::sync::Arc;

const ROWS: usize = 64 * 1024;

/// `ROWS` readings as the service stores them: 1,024 meters, 64 readings
/// each (one message per meter), decoded from native payloads.
fn readings() -> Vec<ReadingRow> {
    let cfg = DecodeConfig::default();
    let mut rows = Vec::with_capacity(ROWS);
    for m in 0..ROWS / 64 {
        let payload = support::native_array(&format!("HZ-{m:06}"), 64);
        let decoded = decode("meters/hz", payload.as_bytes(), RECEIVED_AT, &cfg)
            .unwrap_or_else(|r| panic!("rejected: {r:?}"));
        for (i, reading) in decoded.readings.into_iter().enumerate() {
            rows.push(ReadingRow {
                reading,
                conflict: false,
                receipt_seq: m as u64 + 1,
                reading_index: i as u32,
                received_at: RECEIVED_AT,
                format: Format::Native,
            });
        }
    }
    rows
}

/// `batch` with its string columns as dictionaries.
fn with_dictionaries(batch: &RecordBatch) -> RecordBatch {
    let (fields, columns): (Vec<Field>, Vec<ArrayRef>) = batch
        .schema()
        .fields()
        .iter()
        .zip(batch.columns())
        .map(|(f, c)| match c.data_type() {
            DataType::Utf8 => {
                let mut b = StringDictionaryBuilder::<Int32Type>::new();
                for v in c.as_string::<i32>() {
                    b.append_option(v);
                }
                let dict =
                    DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
                (
                    f.as_ref().clone().with_data_type(dict),
                    Arc::new(b.finish()) as ArrayRef,
                )
            }
            _ => (f.as_ref().clone(), c.clone()),
        })
        .unzip();
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).expect("same columns")
}

fn benches(c: &mut Criterion) {
    let rows = readings();
    let batch = readings_batch(&rows.iter().collect::<Vec<_>>());
    let mut row = Vec::new();
    encode_row(&batch, 0, &mut row);
    let mut hashes = Vec::with_capacity(ROWS);
    row_hashes(&batch, &mut hashes).expect("readings columns are canonical");

    let mut group = c.benchmark_group("audit");
    group.throughput(Throughput::Elements(1));
    group.bench_function(format!("leaf_hash_{}_bytes", row.len()), |b| {
        b.iter(|| leaf_hash(black_box(&row)))
    });
    group.bench_function("node_hash", |b| {
        b.iter(|| node_hash(black_box(&hashes[0]), black_box(&hashes[1])))
    });
    group.throughput(Throughput::Elements(ROWS as u64));
    let dictionaries = with_dictionaries(&batch);
    let mut check = Vec::with_capacity(ROWS);
    RowHasher::default()
        .hash_batch(&dictionaries, &mut check)
        .expect("dictionaries of strings are canonical");
    assert_eq!(check, hashes, "dictionaries hash as their values");
    for (name, batch) in [
        ("row_hashes", &batch),
        ("row_hashes_dictionary", &dictionaries),
    ] {
        group.bench_function(name, |b| {
            let mut out = Vec::with_capacity(ROWS);
            let mut hasher = RowHasher::default();
            b.iter(|| {
                out.clear();
                hasher.hash_batch(black_box(batch), &mut out)
            })
        });
    }
    group.bench_function("merkle_root", |b| {
        b.iter(|| merkle_root(black_box(&hashes)))
    });
    group.finish();
}

criterion_group!(audit_benches, benches);
criterion_main!(audit_benches);
