//! What `audit verify` cannot go below: `cargo bench --bench audit`.
//!
//! Every sealed row is hashed as an RFC 6962 leaf and every pair of
//! subtrees as a node (`schemas/AUDIT.md`), so verifying a file costs at
//! least one leaf hash per row and one node hash per row (n − 1 nodes for n
//! rows), whatever else it does. This measures, per `readings` row of the
//! shape the service writes (152 canonical bytes):
//! - `leaf_hash`: the leaf hash of one already encoded row;
//! - `node_hash`: one interior node;
//! - `row_hashes`: canonical encoding and leaf hash, from an Arrow batch;
//! - `merkle_root`: the tree over a file's row hashes.
//!
//! Elements are rows, so the reported rate is rows/s on one core.

mod support;

use support::RECEIVED_AT;

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use gapless::decode::{decode, DecodeConfig, Format};
use gapless::store::canonical::{encode_row, leaf_hash, merkle_root, node_hash, row_hashes};
use gapless::store::tables::{readings_batch, ReadingRow};

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
    group.bench_function("row_hashes", |b| {
        let mut out = Vec::with_capacity(ROWS);
        b.iter(|| {
            out.clear();
            row_hashes(black_box(&batch), &mut out)
        })
    });
    group.bench_function("merkle_root", |b| {
        b.iter(|| merkle_root(black_box(&hashes)))
    });
    group.finish();
}

criterion_group!(audit_benches, benches);
criterion_main!(audit_benches);
