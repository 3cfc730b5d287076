//! Decode throughput: `cargo bench --bench decode`.
//!
//! Elements are readings, so the reported rate is readings/s.

mod support;

use support::RECEIVED_AT;

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use gapless::decode::{decode, DecodeConfig};

const NATIVE_ONE: &str = r#"{"meter_id":"HZ-000123","medium":"heat","register":"energy","unit":"kWh","value":"1234.567","ts":"2022-07-25T00:15:00Z","seq":17}"#;

const WMBUSMETERS: &str = include_str!("../tests/fixtures/decode/wmbusmeters_samples.jsonl");
const CHIRPSTACK: &str = include_str!("../tests/fixtures/decode/chirpstack_up.json");

fn bench_one(c: &mut Criterion, name: &str, topic: &str, payload: &[u8]) {
    let cfg = DecodeConfig::default();
    let readings = decode(topic, payload, RECEIVED_AT, &cfg)
        .unwrap_or_else(|r| panic!("{name}: rejected: {r:?}"))
        .readings
        .len();
    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Elements(readings as u64));
    group.bench_function(name, |b| {
        b.iter(|| decode(black_box(topic), black_box(payload), RECEIVED_AT, &cfg))
    });
    group.finish();
}

fn benches(c: &mut Criterion) {
    bench_one(c, "native_single", "meters/hz", NATIVE_ONE.as_bytes());
    let array = support::native_array("HZ-000123", 50);
    bench_one(c, "native_array_50", "meters/hz", array.as_bytes());
    let telegram = WMBUSMETERS.lines().next().expect("a wmbusmeters sample");
    bench_one(c, "wmbusmeters", "wmbusmeters/kitchen", telegram.as_bytes());
    bench_one(
        c,
        "chirpstack_up",
        "application/6d1a7c0e/device/a84041000181c0de/event/up",
        CHIRPSTACK.as_bytes(),
    );
}

criterion_group!(decode_benches, benches);
criterion_main!(decode_benches);
