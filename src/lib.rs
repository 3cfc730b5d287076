//! gapless: a metering data continuity verifier.
pub mod app;
pub mod bench;
pub mod cli;
pub mod config;
pub mod decode;
pub mod journal;
pub mod mqtt;
pub mod reading;
pub mod store;
