//! `gapless bench lookup`: how long the ingest stage takes to classify a
//! late reading that memory cannot decide, by looking it up in the sealed
//! files of its date (`store::lookup`). Readings are sampled from every
//! sealed readings file (one row group each), then looked up one at a time
//! in random order, cold footers first.

use std::time::Instant;

use anyhow::Context as _;
use arrow_array::cast::AsArray;
use arrow_array::types::TimestampMicrosecondType;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::cli::BenchLookupArgs;
use crate::ingest::dedup::SealedValues;
use crate::store::lookup::SealedLookup;

pub fn run(args: &BenchLookupArgs) -> anyhow::Result<()> {
    // The commit log, read only (a bench must not write the data).
    let files: Vec<std::path::PathBuf> = crate::store::commit::read_all(&args.data)
        .with_context(|| format!("reading the commit log of {}", args.data.display()))?
        .iter()
        .flat_map(|m| &m.files)
        .filter(|f| f.table == crate::store::tables::READINGS)
        .map(|f| args.data.join(&f.path))
        .collect();
    anyhow::ensure!(
        !files.is_empty(),
        "{} has no sealed readings",
        args.data.display()
    );
    let per_file = args.lookups.div_ceil(files.len()).max(1);
    let mut keys = Vec::new();
    for path in &files {
        let f = std::fs::File::open(path)?;
        let b = ParquetRecordBatchReaderBuilder::try_new(f)?.with_batch_size(64 * 1024);
        let mut r = b.build()?;
        let Some(batch) = r.next().transpose()? else {
            continue;
        };
        let m = batch
            .column_by_name("meter_id")
            .context("meter_id")?
            .as_string::<i32>();
        let g = batch
            .column_by_name("register")
            .context("register")?
            .as_string::<i32>();
        let t = batch
            .column_by_name("ts")
            .context("ts")?
            .as_primitive::<TimestampMicrosecondType>();
        let step = (batch.num_rows() / per_file).max(1);
        for i in (0..batch.num_rows()).step_by(step).take(per_file) {
            keys.push((m.value(i).to_owned(), g.value(i).to_owned(), t.value(i)));
        }
    }
    keys.truncate(args.lookups);
    // A fixed shuffle: dates and files in no order.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for i in (1..keys.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        keys.swap(i, (x % (i as u64 + 1)) as usize);
    }
    let mut lookup = SealedLookup::new(&args.data);
    let mut times = Vec::with_capacity(keys.len());
    let mut found = 0;
    for (m, g, ts) in &keys {
        let t = Instant::now();
        let v = lookup.values_at(m, g, *ts)?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
        found += !v.is_empty() as usize;
    }
    anyhow::ensure!(
        found == keys.len(),
        "{} of {} sampled readings not found",
        keys.len() - found,
        keys.len()
    );
    times.sort_by(f64::total_cmp);
    let q = |p: f64| times[((times.len() - 1) as f64 * p) as usize];
    println!(
        "bench lookup: {} lookups over {} sealed readings files: median {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        times.len(),
        files.len(),
        q(0.5),
        q(0.9),
        q(0.99),
        q(1.0)
    );
    Ok(())
}
