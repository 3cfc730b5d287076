//! Alert delivery for device teams: the sinks that deliver what was
//! sealed (MQTT at QoS 1, a webhook with a bounded queue, retries with
//! backoff and give-ups counted), each resuming after a restart from its
//! own cursor.
//!
//! What an alert is, and the engine that raises them, belong to the ingest
//! stage ([`crate::ingest::alerts`]); the `alerts` table to the store
//! ([`crate::store::alerts_table`]). Both are re-exported here for the
//! readers of alerts (the API, `gapless alerts`). `schemas/alerts.md`
//! documents the JSON.

pub mod sink;

pub use crate::ingest::alerts::*;
pub use crate::store::alerts_table as table;
