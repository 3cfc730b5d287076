//! Parse time per byte across the fuzz corpus: is any input much dearer
//! per byte than the typical one? `cargo bench --bench hostile_parse`
//! (`-- DIR` to measure another corpus root laid out like `tests/fuzz/`).
//!
//! For every file of the decoder and decimal corpora (`tests/fuzz/<target>/
//! {corpus,crashes}`), the time of one parse is the fastest of several
//! rounds (each long enough to time); the figure is that time over the
//! input's length. Printed per target: the median, the 99th percentile and
//! the worst (with its file), and the worst over the median. A benchmark,
//! not a test: nothing here fails on a number.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use gapless::decode::{decode, DecodeConfig, Format};
use gapless::reading::Decimal;

/// 2026-07-01T00:00:00Z, as the fuzz properties use.
const RECEIVED_AT: i64 = 1_782_864_000 * 1_000_000;

/// Seconds of one parse of `data`: the fastest of 5 rounds of at least 2 ms.
fn time_one(mut parse: impl FnMut()) -> f64 {
    let mut per_round = 1u32;
    loop {
        let t = Instant::now();
        for _ in 0..per_round {
            parse();
        }
        if t.elapsed() >= Duration::from_millis(2) || per_round >= 1 << 20 {
            break;
        }
        per_round *= 2;
    }
    (0..5)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..per_round {
                parse();
            }
            t.elapsed().as_secs_f64() / f64::from(per_round)
        })
        .fold(f64::INFINITY, f64::min)
}

fn files(root: &Path, target: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for sub in ["corpus", "crashes"] {
        if let Ok(dir) = std::fs::read_dir(root.join(target).join(sub)) {
            out.extend(dir.flatten().map(|e| e.path()).filter(|p| p.is_file()));
        }
    }
    out.sort();
    out
}

fn main() {
    let root = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz"));
    let cfg = |f: Option<Format>| DecodeConfig {
        pinned: f.map(|f| vec![("#".to_owned(), f)]).unwrap_or_default(),
        ..DecodeConfig::default()
    };
    let targets: [(&str, &str, DecodeConfig); 4] = [
        ("decode_native", "meters/x", cfg(Some(Format::Native))),
        (
            "decode_wmbusmeters",
            "wmbusmeters/x",
            cfg(Some(Format::Wmbusmeters)),
        ),
        (
            "decode_lorawan",
            "application/1/device/0102030405060708/event/up",
            cfg(None),
        ),
        ("decimal", "", cfg(None)),
    ];
    println!(
        "parse time per byte over {} (fastest of 5 rounds per input)",
        root.display()
    );
    println!(
        "{:<20} {:>7} {:>13} {:>13} {:>13} {:>12} {:>9}  worst input",
        "target", "inputs", "median ns/B", "p99 ns/B", "worst ns/B", "worst µs", "worst/med"
    );
    let mut all = Vec::new();
    for (target, topic, cfg) in &targets {
        let mut per_byte: Vec<(f64, f64, PathBuf)> = Vec::new();
        for path in files(&root, target) {
            let data = std::fs::read(&path).expect("read a corpus file");
            let secs = if *target == "decimal" {
                let text = String::from_utf8_lossy(&data).into_owned();
                time_one(|| {
                    let _ = black_box(Decimal::parse(black_box(&text)));
                })
            } else {
                time_one(|| {
                    let _ = black_box(decode(topic, black_box(&data), RECEIVED_AT, cfg));
                })
            };
            per_byte.push((secs * 1e9 / data.len().max(1) as f64, secs, path));
        }
        if per_byte.is_empty() {
            println!("{target:<20} no corpus under {}", root.display());
            continue;
        }
        per_byte.sort_by(|a, b| a.0.total_cmp(&b.0));
        let q = |f: f64| per_byte[((per_byte.len() - 1) as f64 * f).round() as usize].0;
        let (worst, worst_secs, worst_path) = per_byte.last().cloned().expect("not empty");
        println!(
            "{:<20} {:>7} {:>13.2} {:>13.2} {:>13.2} {:>12.1} {:>8.1}x  {}",
            target,
            per_byte.len(),
            q(0.5),
            q(0.99),
            worst,
            worst_secs * 1e6,
            worst / q(0.5),
            worst_path
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
        );
        // Tiny inputs cost a fixed overhead over few bytes: per byte they
        // look dear. The same figures over inputs of at least 256 bytes:
        let big: Vec<f64> = per_byte
            .iter()
            .filter(|p| p.1 * 1e9 / p.0 >= 256.0)
            .map(|p| p.0)
            .collect();
        if let (Some(&w), false) = (big.last(), big.is_empty()) {
            let m = big[(big.len() - 1) / 2];
            println!(
                "{:<20} {:>7} {:>13.2} {:>13} {:>13.2} {:>12} {:>8.1}x  (inputs >= 256 B)",
                "",
                big.len(),
                m,
                "",
                w,
                "",
                w / m
            );
        }
        all.extend(per_byte.into_iter().map(|p| p.0));
    }
    if !all.is_empty() {
        all.sort_by(f64::total_cmp);
        let med = all[(all.len() - 1) / 2];
        let worst = all[all.len() - 1];
        println!(
            "all decoders: {} inputs, median {med:.2} ns/B, worst {worst:.2} ns/B ({:.1}x the median)",
            all.len(),
            worst / med
        );
    }
}
