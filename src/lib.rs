//! gapless: a metering data continuity verifier.
//!
//! Meter readings arrive over MQTT; gapless stores every one of them, exactly
//! once, in immutable Parquet, and accounts for every message it was given.
//!
//! # Layout
//!
//! The pipeline, in data-flow order (each stage only knows the ones before it):
//!
//! ```text
//!   broker ──▶ mqtt ──▶ journal ──▶ store ──▶ Parquet + commit log
//!               ▲          │          │ (decode, dedup)
//!               └── acks ──┘          └── truncates the journal behind each seal
//! ```
//!
//! - [`reading`]: domain types (`MeterId`, `Medium`, `Unit`, exact `Decimal`, `Reading`).
//! - [`mqtt`]: ingest: poll the rumqttc event loop, subscribe at QoS 1 on a
//!   persistent session, reconnect with backoff, ack durable batches in order.
//! - [`decode`]: pure: payload bytes → readings or a rejection with a reason
//!   (native, wmbusmeters, ChirpStack v4, The Things Stack v3).
//! - [`journal`]: durable append with group-committed fdatasync, torn-tail
//!   repair, and the tail the store reads from; assigns receipt numbers.
//! - [`store`]: receipts, readings and rejects → sealed Parquet files and
//!   commit manifests; the duplicate index; recovery after a crash.
//! - [`app`]: the one place that makes channels, starts the stages and owns
//!   shutdown; `gapless stats`.
//! - [`config`], [`cli`]: flags and TOML → validated settings.
//! - [`bench`]: `gapless bench ingest`.

pub mod app;
pub mod bench;
pub mod cli;
pub mod config;
pub mod decode;
pub mod journal;
pub mod mqtt;
pub mod reading;
pub mod store;
