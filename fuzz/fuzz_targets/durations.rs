//! The `durations` fuzz target: arbitrary bytes through the checks in
//! `fuzz/checks/durations.rs`, which the e2e suite also runs on every committed seed
//! (`tests/e2e/fuzz_seeds.rs`).

#![no_main]

#[path = "../checks/durations.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::check(data));
