//! Hostile input (issue 18): what the fuzzers explored, replayed on every
//! `cargo test`; bad input through the real broker and binary; output into
//! a pipe closed early.

mod bad_input;
mod corpus;
mod pipe;
pub mod props;
mod state;
