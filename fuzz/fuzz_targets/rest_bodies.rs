//! Arbitrary bytes as a REST request body: the first byte picks the endpoint's body type, the
//! rest is the body. Deserialization and validation must never panic.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = tickethub::fuzzing::rest_body(data);
});
