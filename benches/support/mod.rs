//! What the benches share.

/// 2026-01-01T00:00:00Z in µs since the epoch: when the benches' messages arrive.
pub const RECEIVED_AT: i64 = 1_767_225_600 * 1_000_000;

/// A native array of `n` readings of `meter`, 15 minutes apart.
pub fn native_array(meter: &str, n: usize) -> String {
    let items: Vec<String> = (0..n)
        .map(|i| {
            format!(
                r#"{{"meter_id":"{meter}","medium":"heat","register":"energy","unit":"kWh","value":"{}.{:03}","ts":"2022-07-25T{:02}:{:02}:00Z","seq":{}}}"#,
                1234 + i,
                (i * 37) % 1000,
                (i / 4) % 24,
                (i % 4) * 15,
                17 + i
            )
        })
        .collect();
    format!("[{}]", items.join(","))
}
