//! Benchmarks run as commands (not tests): `gapless bench ingest`,
//! `gapless bench report`, `gapless bench live-state`, `gapless bench alerts`.

pub mod alerts;
pub mod ingest;
pub mod live_state;
pub mod report;
