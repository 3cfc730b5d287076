//! `gapless bench ingest` (implementation below in a later commit).
use crate::cli::BenchIngestArgs;

pub fn ingest(_args: BenchIngestArgs) -> anyhow::Result<()> {
    anyhow::bail!("bench ingest: not built yet")
}
