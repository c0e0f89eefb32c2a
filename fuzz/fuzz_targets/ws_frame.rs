//! The `ws_frame` fuzz target: arbitrary bytes through the checks in `fuzz/checks/ws_frame.rs`, which
//! the e2e suite also runs on every committed seed (`tests/e2e/fuzz_seeds.rs`).

#![no_main]

#[path = "../checks/ws_frame.rs"]
mod checks;
#[path = "../checks/send_fields.rs"]
mod send_fields;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::check(data));
