//! Integration tests: the real `gapless` binary against a real Mosquitto
//! that each test starts on its own free port. One test binary (ripgrep's
//! habit); support code in `support/`.

mod support;

mod alerts;
mod api;
mod audit;
mod certificate;
mod continuity;
mod dashboard;
mod faults;
mod hostile;
mod ingest;
mod ops;
mod readme;
mod witness;
