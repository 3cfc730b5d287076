//! gapless: a metering data continuity verifier.
//!
//! Meter readings arrive over MQTT; gapless stores every one of them, exactly
//! once, in immutable Parquet, and accounts for every message it was given.
//!
//! # Layout
//!
//! The pipeline, in data-flow order. The order of the modules is written
//! once, in [`LAYERS`], and the `layering` unit test holds the code to it:
//! a module refers only to modules in earlier layers or in its own, no
//! modules refer to each other in a circle (sibling submodules included),
//! and the known exceptions would be listed, with why, in
//! [`ALLOWED_BACKWARD`] (today: none).
//!
//! ```text
//!   broker ──▶ mqtt ──▶ journal ──▶ ingest ──finished rows──▶ store ──▶ Parquet + commits + ledger ──▶ report, api
//!               ▲          │          (decode, duplicates,      │ ▲
//!               └── acks ──┘           live gaps, deadlines)    │ └── lookups of old values (sealed files)
//!                                                               ├── truncates the journal behind each seal
//!                                                               └── sealed alerts ──▶ alert sinks (MQTT, webhook)
//! ```
//!
//! The journal comes before decode: raw bytes are durable before any
//! parsing, so nothing on the ack path can fail on a message's content.
//!
//! - [`reading`]: domain types (`MeterId`, `Medium`, `Unit`, exact `Decimal`, `Reading`).
//! - [`mqtt`]: ingest: poll the rumqttc event loop, subscribe at QoS 1 on a
//!   persistent session, reconnect with backoff, ack durable batches in
//!   order; the broker URL.
//! - [`decode`]: pure: payload bytes → readings or a rejection with a reason
//!   (native, wmbusmeters, ChirpStack v4, The Things Stack v3).
//! - [`journal`]: durable append (block-padded commits written with
//!   `O_DIRECT`, one fdatasync each), torn-tail repair, and the tail the
//!   store reads from; assigns receipt numbers.
//! - [`continuity`]: pure: the rules (gaps, sequence counters, register
//!   continuity, plausibility, estimation), the meter registry, the
//!   outage-window report, the live per-series engine (its state as
//!   bytes; its gap memory, which asks the sealed files through
//!   `continuity::sealed` for gaps older than it keeps), and the one rule
//!   for an unknown interval both passes apply (`continuity::interval`:
//!   the first 9 readings in receipt order).
//! - [`ingest`]: the stage between the journal and the store: decode,
//!   duplicates in bounded memory (lookups in the sealed files through a
//!   trait the store implements), the register bounds, the live
//!   continuity engine and the alert engine (`ingest::alerts`: deadlines in
//!   one heap, group storms, events; pure); finished rows to the store;
//!   snapshots of its state.
//! - [`store`]: finished rows → sealed Parquet files, commit manifests and
//!   the audit ledger (canonical row hashes, RFC 6962 tree, Ed25519-signed
//!   checkpoints, the same tree as a C2SP tlog-tiles log); the `alerts`
//!   table; recovery; the lookups of old values and of a series'
//!   readings in a time range (`store::lookup`); compaction (each ended
//!   date's readings files merged into one sorted run for scans, checked
//!   against them by `audit verify`).
//! - [`alerts`]: the sinks that deliver what was sealed (MQTT, webhook)
//!   from their cursors.
//! - [`report`]: queries over the sealed `readings` (outage report,
//!   estimates, coverage per time bucket), the gap listing over the sealed
//!   `gaps` table (`report::gap_list`), and their rendering (table, JSON,
//!   CSV, Parquet, and the outage certificate: printable HTML per group).
//! - [`audit`]: `gapless audit verify`: recomputes what the ledger claims
//!   (the ledger itself, canonical rows and checkpoints are in [`store`]).
//! - [`witness`]: `gapless witness` (a C2SP tlog-witness an auditor runs)
//!   and `serve --witness`, which has each new checkpoint cosigned by them.
//! - [`api`]: the HTTP API (axum): report, gaps, meters, coverage, alerts,
//!   the outage certificate;
//!   the dashboard page (`api/dashboard.html`, embedded); health, metrics.
//! - [`service`]: the service: the one place that makes channels, starts
//!   the stages and owns shutdown: the data directory's lock and client
//!   id, the journal thread and the store thread (`service::Pipeline`: the
//!   ingest stage feeding the store) with the handoff between them, the
//!   API and witness tasks, and `serve`'s compactor.
//! - [`health`]: every stage's heartbeat, the first fatal failure (which
//!   stops the acks and the service), bounds hit, and the in-memory
//!   counters `/metrics` reads; [`fault`]: the fault tests' seams (armed
//!   only by two environment variables together).
//! - [`config`], [`cli`]: flags and TOML → validated settings.
//! - [`time`]: the clock (system or manual) that stamps receive times, and
//!   timestamps parsed from and formatted as RFC 3339 and dates: the one
//!   copy of each.
//! - [`codec`]: the little binary codec of snapshots.
//! - [`layout`]: the data directory: every path in it, and the writers
//!   that change it durably (replace atomically, create without
//!   overwriting, fsync a directory), with errors naming path and action.
//! - [`commands`]: the commands other than `serve`: `gapless stats`,
//!   `report`, `gaps`, `alerts`, `compact` and `audit` (verify, prove,
//!   check-proof, consistency, pubkey, keygen); a [`commands::Usage`] error
//!   (or [`commands::CommandError::Usage`]) is exit 2. Also `gapless demo`
//!   (an in-process MQTT broker and a simulated fleet with an outage,
//!   through the real pipeline; `--serve` then serves the API and
//!   dashboard on its data) and `gapless bench` (ingest, report,
//!   live-state, lookup, alerts): private modules of `commands`, each
//!   reached through one function ([`commands::demo`], [`commands::bench`]),
//!   so that their brokers, fleets and measurements are no part of the
//!   library's API.
//! - [`progress`]: progress bars of long commands, on a terminal only.

pub mod alerts;
pub mod api;
pub mod audit;
pub mod cli;
pub mod codec;
pub mod commands;
pub mod config;
pub mod continuity;
pub mod decode;
pub mod fault;
pub mod health;
pub mod ingest;
pub mod journal;
pub mod layout;
pub mod mqtt;
pub mod progress;
pub mod reading;
pub mod report;
pub mod service;
pub mod store;
pub mod time;
pub mod witness;

#[cfg(test)]
mod layering;

/// The top-level modules in data-flow order, leaves first: a module may
/// refer (`use crate::…`, or a path inline) only to modules in an earlier
/// layer or in its own. Why this order:
///
/// 1. Leaves, which know no stage: the data directory's paths and writers
///    ([`layout`]), time ([`time`]), the domain types ([`reading`]), the
///    fault seams, the health every stage reports to, progress bars, the
///    snapshot codec (and `layering`, the check itself, test-only).
/// 2. [`mqtt`]: what the broker delivers, and its URL.
/// 3. [`journal`]: the raw bytes, durable before anything parses them.
/// 4. [`decode`]: bytes → readings, pure.
/// 5. [`continuity`]: the rules over readings, pure.
/// 6. [`ingest`]: decode, duplicates, live continuity and the alert
///    deadlines, over the journal's records; finished rows out. What it
///    must ask of the sealed files it asks through a trait of its own
///    (`ingest::dedup::SealedValues`), which the store implements.
/// 7. [`store`]: sealed Parquet, the commit log and the ledger.
/// 8. What reads what the store sealed: alert delivery ([`alerts`]),
///    [`report`], [`audit`], [`witness`].
/// 9. [`api`]: HTTP over all of them.
/// 10. [`config`], [`cli`]: settings for the stages above.
/// 11. [`service`]: the wiring (channels, stages, shutdown, metrics).
/// 12. [`commands`]: the other commands (`stats`, `report`, `gaps`,
///     `alerts`, `compact`, `audit`), which return or print their result;
///     `main.rs` maps it to an exit code. `demo` and `bench`, which drive
///     the whole service, are commands too (`commands::demo`,
///     `commands::bench`).
pub const LAYERS: &[&[&str]] = &[
    &[
        "layout", "time", "codec", "reading", "fault", "health", "progress", "layering",
    ],
    &["mqtt"],
    &["journal"],
    &["decode"],
    &["continuity"],
    &["ingest"],
    &["store"],
    &["alerts", "report", "audit", "witness"],
    &["api"],
    &["config", "cli"],
    &["service"],
    &["commands"],
];

/// References to a later layer that are known and on their way out, as
/// (from, to, why). The list may only shrink: an entry no reference needs
/// any more fails the check until it is removed.
pub const ALLOWED_BACKWARD: &[(&str, &str, &str)] = &[];
