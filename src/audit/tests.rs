//! Unit tests of `audit verify`'s parts.
use super::*;

fn entry(index: u64, size: u64) -> LedgerEntry {
    LedgerEntry {
        index,
        table: READINGS.into(),
        path: format!("readings/date=2022-07-25/part-{index:010}.parquet"),
        size,
        sha256: String::new(),
        rows: 0,
        row_root: String::new(),
        min_time: None,
        max_time: None,
        min_receipt_seq: None,
        max_receipt_seq: None,
        schema_version: "2".into(),
        writer: "gapless test".into(),
        sealed_at: String::new(),
        commit: None,
    }
}

/// Largest first within each window, ledger order between windows, and
/// every entry exactly once.
#[test]
fn files_are_verified_largest_first_within_ledger_windows() {
    let n = ORDER_WINDOW + 3;
    let entries: Vec<LedgerEntry> = (0..n as u64).map(|i| entry(i, i % 7)).collect();
    let order = verify_order(&entries);
    let mut seen = order.clone();
    seen.sort_unstable();
    assert_eq!(seen, (0..n).collect::<Vec<_>>());
    let (first, rest) = order.split_at(ORDER_WINDOW);
    assert!(first.iter().all(|&k| k < ORDER_WINDOW));
    assert!(rest.iter().all(|&k| k >= ORDER_WINDOW));
    for w in [first, rest] {
        let sizes: Vec<u64> = w.iter().map(|&k| entries[k].size).collect();
        assert!(sizes.windows(2).all(|p| p[0] >= p[1]), "{sizes:?}");
    }
    assert_eq!(entries[first[0]].size, 6);
}

#[test]
fn sorted_unique_sorts_and_removes_repeats_dense_or_sparse() {
    let dense: Vec<u64> = (0..5000u64).map(|i| 1000 + (i * 7919) % 3001).collect();
    let sparse = vec![u64::MAX, 3, 3, 0, u64::MAX - 1, 1 << 40];
    for v in [dense, sparse, vec![], vec![9]] {
        let mut want = v.clone();
        want.sort_unstable();
        want.dedup();
        let mut got = v;
        sorted_unique(&mut got);
        assert_eq!(got, want);
    }
}
