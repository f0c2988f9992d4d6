//! Fuzz target: `modbus_decode`, Modbus registers to values and back (see
//! `gateway_modbus::fuzzing`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| gateway_modbus::fuzzing::modbus_decode(data));
