//! Benchmarks run as commands (not tests): `gapless bench ingest`,
//! `gapless bench report`, `gapless bench live-state`, `gapless bench alerts`.

pub mod alerts;
pub mod ingest;
pub mod live_state;
pub mod lookup;
pub mod report;

/// Resident set size of this process, bytes (Linux `/proc/self/statm`).
pub(crate) fn rss_bytes() -> anyhow::Result<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm")?;
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("unexpected /proc/self/statm: {statm}"))?
        .parse()?;
    Ok(pages * 4096)
}
