//! Fuzz target: format `xml` of the serial adapter (parser, lookups, the whole read pipeline).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| gateway_serial::fuzzing::xml(data));
