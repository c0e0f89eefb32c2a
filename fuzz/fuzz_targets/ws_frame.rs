//! Arbitrary bytes as a WebSocket text frame from a client: decoding, validation and the
//! answer's JSON must never panic.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = tickethub::fuzzing::ws_frame(data);
});
