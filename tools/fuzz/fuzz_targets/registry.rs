#![no_main]
//! Fuzz target `registry`: the properties are in tests/hostile/props.rs, shared
//! with the corpus replay that `cargo test` runs.

#[path = "../../../tests/hostile/props.rs"]
#[allow(dead_code)] // `TARGETS` is for the corpus replay
mod props;

libfuzzer_sys::fuzz_target!(|data: &[u8]| props::check("registry", data));
